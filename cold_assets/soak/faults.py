"""The soak's faults, injected into the real code paths of a run's process (soak/child.py), once each.

- a second writer committing between a checkpoint's plan and its commit: the hook runs a
  whole offload of the same hours by another writer (its own table object, the same warm
  client) right before the first writer reads warm;
- a writer committing between the run's load of its table and its first plan, which starts
  from that load (protocol.py): the same, right before the first checkpoint;
- the catalog raising after it committed (the outcome is unknown to the writer);
- a run SIGKILLed at a random moment (soak/driver.py);
- the webhook down is the soak's own receiver answering 503 (soak/driver.py).

The hooks wrap functions by their module attribute, the way a test's monkeypatch does; they
are installed by the soak only, never by the product.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitStateUnknownException

import cold_assets.offload.protocol as protocol
import cold_assets.offload.stream as stream


class Injected:
    """Counts what a fault did, so that the soak can say it happened."""

    def __init__(self) -> None:
        self.fired = 0
        self._lock = threading.Lock()

    def fire(self) -> None:
        with self._lock:
            self.fired += 1


def _offload_by_another_writer(catalog: Any, client: Any, spec: Any, keys: list[str], settle_lag: timedelta, run_id: str) -> None:
    """A whole offload of `keys` (read, write, commit) by another writer: its own table
    object, the same warm client."""
    for _ in protocol.offload_partitions(client, catalog.load_table(spec.cold_identifier), spec, keys, run_id, settle_lag=settle_lag):
        pass


@contextmanager
def second_writer(catalog: Any, settle_lag: timedelta) -> Iterator[Injected]:
    """The next checkpoint that reads warm first lets another writer offload the same hours
    completely (read, write, commit): the first writer's plan is then stale."""
    injected, real = Injected(), stream.read_slices
    armed = [True]

    def hook(client, table, spec, columns, ranges):  # type: ignore[no-untyped-def]
        if armed[0] and ranges:
            armed[0] = False
            _offload_by_another_writer(catalog, client, spec, [k for r in ranges for k in r.span.keys], settle_lag, "soak-second-writer")
            injected.fire()
        return real(client, table, spec, columns, ranges)

    stream.read_slices = hook
    try:
        yield injected
    finally:
        stream.read_slices = real


@contextmanager
def writer_before_plan(catalog: Any, settle_lag: timedelta) -> Iterator[Injected]:
    """The next checkpoint lets another writer offload the same hours completely first: the
    table the first writer loaded, and plans from, is then behind the catalog."""
    injected, real = Injected(), protocol._checkpoint
    armed = [True]

    def hook(client, table, spec, chunk, options, cold_files):  # type: ignore[no-untyped-def]
        if armed[0] and chunk:
            armed[0] = False
            keys = [k for _, range_keys in chunk for k in range_keys]
            _offload_by_another_writer(catalog, client, spec, keys, settle_lag, "soak-writer-before-plan")
            injected.fire()
        return real(client, table, spec, chunk, options, cold_files)

    protocol._checkpoint = hook
    try:
        yield injected
    finally:
        protocol._checkpoint = real


@contextmanager
def unknown_commit_outcome() -> Iterator[Injected]:
    """The next catalog commit lands, then the call raises as if the answer was lost."""
    injected, real = Injected(), SqlCatalog.commit_table
    armed = [True]

    def commit_then_raise(self, table, requirements, updates):  # type: ignore[no-untyped-def]
        response = real(self, table, requirements, updates)
        if armed[0]:
            armed[0] = False
            injected.fire()
            raise CommitStateUnknownException("soak: the catalog committed, then the connection was lost")
        return response

    SqlCatalog.commit_table = commit_then_raise  # type: ignore[method-assign]
    try:
        yield injected
    finally:
        SqlCatalog.commit_table = real  # type: ignore[method-assign]


Fault = Callable[..., Any]
