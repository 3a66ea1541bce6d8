"""Exclusive use of the embedded chDB data path.

chDB lets one process at a time open a data path, and a process one path at a time. Every
Dagster process that reads the embedded warm tier (run workers, sensors and checks in the
code server, the CLI) takes this lock for as long as it holds the path open, and waits for
it instead of failing on chDB's own lock file.

Inside a process, each use takes a reentrant process lock: nested users, and threads of the
process one after another, share one open client.

A run holds the path open between its uses (`held_open`): every open attaches every table,
about 0.1 s at demo volume, and a run has a step per table. A held path is not kept from
anyone. A process that waits for it says so with a ticket beside the lock file; the holder
closes the path as soon as no use of it is in progress (a watcher thread looks every
`_WATCH_S`), and takes a ticket of its own to open it again. Tickets are served oldest first,
so a long run and the sensors' short looks take turns.
"""

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")
_log = logging.getLogger(__name__)

_WATCH_S = 0.2  # how often a holder looks for waiters while no use is in progress
_POLL_S = 0.1  # how often a waiter tries the lock
_TICKET_FRESH_S = 2.0  # a waiter refreshes its ticket at every try: an older one is a dead process's


class EmbeddedWarmTierBusy(RuntimeError):
    pass


@dataclass
class _OpenPath:
    key: str
    client: Any
    lock_file: IO[str]
    uses: int = 0  # uses in progress (nested, or one thread after another)


@dataclass
class _ProcessState:
    open_path: _OpenPath | None = None
    holds: dict[str, int] = field(default_factory=dict)  # path -> holders keeping it open between uses
    watcher: threading.Thread | None = None


_process_lock = threading.RLock()
_state = _ProcessState()


@contextmanager
def exclusive_client(path: Path, open_client: Callable[[], T], timeout_s: float) -> Iterator[T]:
    key = str(path)
    if not _process_lock.acquire(timeout=timeout_s):
        raise EmbeddedWarmTierBusy(f"embedded warm tier {key} is busy in this process for more than {timeout_s:.0f}s")
    try:
        opened = _state.open_path
        if opened is not None and opened.key != key:
            if opened.uses:
                raise EmbeddedWarmTierBusy(f"this process already has chDB path {opened.key} open; it cannot open {key} too")
            _close()  # held between uses only: it opens again when next used
        if _state.open_path is None:
            _state.open_path = _open(path, open_client, timeout_s)
        opened = _state.open_path
        opened.uses += 1
        try:
            yield opened.client
        finally:
            opened.uses -= 1
            if not opened.uses and (not _state.holds.get(key) or _waiters(_lock_path(key))):
                _close()
    finally:
        _process_lock.release()


@contextmanager
def held_open(path: Path) -> Iterator[None]:
    """Keep `path` open between this process's uses of it, until the end of the block, for as
    long as no other process waits for it. It is opened at its first use, not here."""
    key = str(path)
    with _process_lock:
        if _state.watcher is None:
            watcher = threading.Thread(target=_watch, name="cold-assets-warm-holder", daemon=True)
            watcher.start()
            _state.watcher = watcher
        _state.holds[key] = _state.holds.get(key, 0) + 1
    try:
        yield
    finally:
        with _process_lock:
            _state.holds[key] -= 1
            if not _state.holds[key]:
                del _state.holds[key]
                opened = _state.open_path
                if opened is not None and opened.key == key and not opened.uses:
                    _close()


def _watch() -> None:
    """Let a held path go to a waiting process while this one is not using it."""
    while True:
        time.sleep(_WATCH_S)
        if not _process_lock.acquire(blocking=False):
            continue  # a use is in progress: it looks for waiters itself when it ends
        try:
            if not _state.holds:
                _state.watcher = None
                return
            opened = _state.open_path
            if opened is not None and not opened.uses and _waiters(_lock_path(opened.key)):
                _close()
        except Exception:
            # The watcher must outlive a failed look or close (the path is closed and the lock
            # released whatever close() raised): without it a held path waits for the next use.
            _log.exception("the embedded warm tier's holder failed to look for waiters or to let go; it looks again")
        finally:
            _process_lock.release()


def _open(path: Path, open_client: Callable[[], T], timeout_s: float) -> _OpenPath:
    path.mkdir(parents=True, exist_ok=True)
    lock_file = _acquire(_lock_path(str(path)), timeout_s)
    try:
        return _OpenPath(str(path), open_client(), lock_file)
    except BaseException:
        _release(lock_file)
        raise


def _close() -> None:
    opened = _state.open_path
    assert opened is not None and not opened.uses
    _state.open_path = None
    try:
        opened.client.close()
    finally:
        _release(opened.lock_file)


def _lock_path(key: str) -> Path:
    path = Path(key)
    return path.parent / f"{path.name}.lock"


def _tickets(lock_path: Path) -> Path:
    return lock_path.parent / f"{lock_path.name}.waiting"


def _waiters(lock_path: Path) -> bool:
    """Another process holds a fresh ticket for this lock."""
    return any(pid != os.getpid() for _, pid in _fresh_tickets(_tickets(lock_path)))


def _fresh_tickets(folder: Path) -> list[tuple[int, int]]:
    """(issue time in ns, pid) of the live tickets in `folder`, oldest first. A ticket is
    named by both: `<issued>-<pid>`."""
    now = time.time()
    tickets = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            # abs(): a clock stepped back leaves no ticket fresh for longer than this.
            fresh = abs(now - entry.stat().st_mtime) < _TICKET_FRESH_S
        except FileNotFoundError:
            continue  # served meanwhile
        if not fresh:  # a waiter that died waiting (killed, timed out in a child)
            Path(entry.path).unlink(missing_ok=True)
            continue
        issued, _, pid = entry.name.partition("-")
        if issued.isdigit() and pid.isdigit():
            tickets.append((int(issued), int(pid)))
    return sorted(tickets)


def _acquire(lock_path: Path, timeout_s: float) -> IO[str]:
    """The lock file, locked by this process. Waits its turn behind older tickets."""
    fh = open(lock_path, "a+")
    try:
        # Behind a waiter this process let go for, or any other: its turn comes first.
        if _waiters(lock_path) or not _try_lock(fh):
            _wait_turn(fh, lock_path, timeout_s)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        return fh
    except BaseException:
        fh.close()
        raise


def _wait_turn(fh: IO[str], lock_path: Path, timeout_s: float) -> None:
    folder = _tickets(lock_path)
    folder.mkdir(exist_ok=True)
    mine = (time.time_ns(), os.getpid())
    ticket = folder / f"{mine[0]}-{mine[1]}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            ticket.touch()  # fresh: the holder lets go for it, later waiters queue behind it
            first = not any(other < mine for other in _fresh_tickets(folder))
            if first and _try_lock(fh):
                return
            if time.monotonic() >= deadline:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise EmbeddedWarmTierBusy(
                    f"embedded warm tier is held by another process ({holder}) for more than "
                    f"{timeout_s:.0f}s (lock {lock_path}); wait for it or raise "
                    "COLD_CHDB_LOCK_TIMEOUT_SECONDS"
                )
            time.sleep(_POLL_S)
    finally:
        ticket.unlink(missing_ok=True)


def _try_lock(fh: IO[str]) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _release(fh: IO[str]) -> None:
    try:
        fh.seek(0)
        fh.truncate()
        fh.flush()
        fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()
