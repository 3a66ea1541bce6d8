"""Exclusive use of the embedded chDB data path.

chDB lets one process at a time open a data path, and a process one path at a time. Every
Dagster process that reads the embedded warm tier (run workers, sensors and checks in the
code server, the CLI) takes this lock for as long as it holds the path open, and waits for
it instead of failing on chDB's own lock file. Inside a process the lock is reentrant, so
nested users share one open client.
"""

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class EmbeddedWarmTierBusy(RuntimeError):
    pass


_process_lock = threading.RLock()
_open: dict[str, tuple[object, int]] = {}  # path -> (client, nesting depth)


@contextmanager
def exclusive_client(path: Path, open_client: Callable[[], T], timeout_s: float) -> Iterator[T]:
    key = str(path)
    if not _process_lock.acquire(timeout=timeout_s):
        raise EmbeddedWarmTierBusy(f"embedded warm tier {key} is busy in this process for more than {timeout_s:.0f}s")
    try:
        if key in _open:
            client, depth = _open[key]
            _open[key] = (client, depth + 1)
            try:
                yield client  # type: ignore[misc]
            finally:
                client, depth = _open[key]
                _open[key] = (client, depth - 1)
            return
        if _open:
            other = next(iter(_open))
            raise EmbeddedWarmTierBusy(f"this process already has chDB path {other} open; it cannot open {key} too")
        path.mkdir(parents=True, exist_ok=True)
        with _file_lock(path.parent / f"{path.name}.lock", timeout_s):
            client = open_client()
            _open[key] = (client, 1)
            try:
                yield client
            finally:
                del _open[key]
                client.close()  # type: ignore[attr-defined]
    finally:
        _process_lock.release()


@contextmanager
def _file_lock(lock_path: Path, timeout_s: float) -> Iterator[None]:
    with open(lock_path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    raise EmbeddedWarmTierBusy(
                        f"embedded warm tier is held by another process ({holder}) for more than "
                        f"{timeout_s:.0f}s (lock {lock_path}); wait for it or raise "
                        "COLD_CHDB_LOCK_TIMEOUT_SECONDS"
                    ) from None
                time.sleep(0.1)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
