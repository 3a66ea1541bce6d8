"""The offload protocol: hours of one table from ClickHouse into Iceberg, exactly once.

Two stores must agree: the Iceberg table (data) and Dagster's event log (watermark). Iceberg
commits are atomic and come first, so every commit carries its own bookkeeping in the
snapshot summary (offload/bookkeeping.py: a map of every hour it wrote to its watermark,
fingerprint and rows, and the run id), and every offload starts by reconciling what Dagster
recorded with what the table committed. The table wins: a crash after the commit and before
Dagster recorded it never leads to a second copy. Only the ancestry of the current snapshot
counts: after a rollback, the bookkeeping of the snapshots it removed (and a Dagster record
that points at one of them) no longer describes the table.

A run covering many hours (a backfill, the schedule's tick) commits each table once per
checkpoint of at most `checkpoint_hours` offload ranges, not once per hour: a commit's cost
(pyiceberg's metadata handling grows with the snapshot count) is paid once per checkpoint,
the table's history grows by one snapshot per checkpoint, and a crash redoes at most one
checkpoint. Within a checkpoint the warm tier is read with a few queries (one grouped count
sizes the slices, adjacent hours with the same bounds are read together, ordered by hour)
and each hour gets its own data files, so that a later repair of one hour replaces whole
files. The daily bars' day is one range, written once per run.

- Append layers (raw, bronze) load rows ingested after the watermark, up to the warm clock
  minus a settle lag (inserts still in flight are not skipped). They re-read an overlap
  before the watermark and replace it in the same commit, so a row that became visible late
  (a long insert through the view chain, a replica behind) is still offloaded once.
- Replace layers (silver, gold) replace the hour with an overwrite filtered on it, unless
  the hour's fingerprint is unchanged (one grouped query fingerprints the checkpoint). The
  fingerprint recorded is summed from per-row hashes that travel with the rows written, so
  it describes exactly those rows, however the warm hour moves during the read.
- Warm is the source of new rows, not the judge of old ones: an hour whose commit would
  leave it with fewer cold rows than it holds is refused (unless `allow_fewer_rows`) and
  left out of the commit, and an hour older than the warm retention is cold-only, never
  read from warm again.

Every commit is one transaction: a delete filtered on what the checkpoint owns (where cold
holds any of it), then the new files. Every snapshot asserts the branch's snapshot it was
planned on, and pyiceberg's own retries (a rebase onto whatever committed meanwhile) are off:
of two concurrent writers of a table, the second fails instead of committing a second copy,
starts the checkpoint over from reconciliation and finds done what the other wrote. Files are deleted only after a definite
failure (before the catalog call, or the catalog refusing it); when the outcome of the
catalog call is unknown they stay, and the next run reconciles from the table.
"""

import queue
import random
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import reduce
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import And, BooleanExpression, GreaterThan, Or
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.table import Table, TableProperties
from pyiceberg.types import NestedField, PrimitiveType

from cold_assets.cold.files import DataFileFormat, DataFileWriter
from cold_assets.cold.ranges import range_filter
from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.offload.bookkeeping import Ancestry, PartitionState, StateSource, commit_summary
from cold_assets.parity.checksums import canonical_row, warm_fingerprints
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.tables import MirroredTable, OffloadMode
from cold_assets.warm.read import (
    EPOCH,
    FAR_FUTURE,
    ROW_HASH,
    WarmColumn,
    WarmQuery,
    identifier,
    read_columns,
    read_query,
    render,
    warm_read_query,
)

STREAM_QUEUE_BATCHES = 4
# Rows per read slice. chDB buffers a query's whole result, so a checkpoint is read as
# slices of about this many rows each (whole hours together, a bigger hour cut into time
# slices): memory does not grow with the size of the hour or of the checkpoint. A day at demo
# volume is one slice.
SLICE_ROWS = 500_000
# A conflict (another writer of the table committed first) redoes the checkpoint; the wait
# grows, with jitter, so that two runs committing alike do not keep colliding.
MAX_CONFLICT_RETRIES = 8
CONFLICT_WAIT_SECONDS = 0.2
# Offload ranges (hours) per commit: a crash redoes at most this many hours of one table, and
# a commit's fixed cost (pyiceberg's metadata handling grows with the snapshot count) is paid
# once per this many hours. COLD_CHECKPOINT_HOURS overrides it (settings.py).
DEFAULT_CHECKPOINT_HOURS = 24


class IncompatibleWarmSchema(ValueError):
    """The warm table changed in a way the cold table cannot follow (not an added nullable column)."""


class PlanOutdated(CommitFailedException):
    """The table's current snapshot moved on between planning a checkpoint and writing it
    (evolving the schema reloaded the table after another writer's commit). A commit now would
    assert the other writer's snapshot while carrying a plan made before it: the checkpoint
    starts over from reconciliation instead, as after any conflict."""


class ColdRowsWouldBeLost(RuntimeError):
    """Warm holds fewer rows than the cold rows a commit would replace: the warm tier lost
    rows (a dropped part, a TTL), and cold is their only copy. Nothing was written."""

    def __init__(self, spec: MirroredTable, partition_keys: list[str], warm_rows: int, cold_rows: int, what: str):
        self.table, self.warm_rows, self.cold_rows = spec.cold, warm_rows, cold_rows
        # The run's partition keys the refused range serves (the daily bars' day serves 24).
        self.partition_keys = list(partition_keys)
        self.partition_key = self.partition_keys[0]
        super().__init__(
            f"cold.{spec.cold} hour {self.partition_key}: warm {spec.warm} has {warm_rows} rows where cold holds "
            f"{cold_rows} ({what}); replacing them would delete {cold_rows - warm_rows} cold rows, so the "
            "offload of this hour was refused and nothing was written. If the deletion is meant (correcting "
            "history), run it again with allow_fewer_rows: true"
        )


class Outcome(str, Enum):
    """What an offload did to its hour."""

    APPEND = "append"
    REPLACE = "replace"
    UNCHANGED = "unchanged"
    COLD_ONLY = "cold_only"  # older than the warm retention: not read from warm


@dataclass(frozen=True)
class OffloadResult:
    partition_key: str
    mode: Outcome
    watermark: datetime | None
    fingerprint: str | None
    rows_written: int
    snapshot_id: int | None
    files: int
    seconds: float
    reconciled_from: StateSource  # where the starting state came from
    status: HourStatus = HourStatus.CLOSED

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    def state(self) -> PartitionState:
        """The state this offload leaves its hour in (what its checks compare against)."""
        return PartitionState(self.watermark, self.fingerprint, self.snapshot_id, source=StateSource.SNAPSHOT)


def reconcile(
    recorded: PartitionState | None, committed: PartitionState | None, data_floor: datetime | None = None
) -> PartitionState:
    """The state an offload starts from: the newest of Dagster's record, the partition's
    newest snapshot and the cold files' own floor. The table wins: a commit Dagster never
    heard of (a crash in between) is newer than the record, and on a tie the snapshot is
    taken, since it describes what the table actually holds. The caller passes only a record
    that still describes the table (`Ancestry.describes`)."""
    known = [s for s in (committed, recorded) if s is not None]
    if data_floor is not None:
        known.append(PartitionState(watermark=data_floor, source=StateSource.DATA))
    if not known:
        return PartitionState()
    return max(known, key=lambda s: (s.watermark or EPOCH, s.source is StateSource.SNAPSHOT))


def warm_now(client: Client) -> datetime:
    value = client.query(render("warm_now")).result_rows[0][0]
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _comparable(t: pa.DataType) -> pa.DataType:
    return {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}.get(t, t)


def evolve_schema(table: Table, spec: MirroredTable, stream_schema: pa.Schema) -> Table:
    """Adds warm columns the cold table lacks (as optional); refuses any other difference."""
    cold = {f.name: f for f in schema_to_pyarrow(table.schema(), include_field_ids=False)}
    problems, added = [], []
    for column in stream_schema:
        have = cold.get(column.name)
        if have is None:
            added.append(column.with_nullable(True))
        elif _comparable(have.type) != _comparable(column.type):
            problems.append(f"column {column.name} is {column.type} in warm {spec.warm}, {have.type} in cold")
        elif column.nullable and not have.nullable:
            problems.append(f"column {column.name} is nullable in warm {spec.warm} but required in cold")
    stream_names = set(stream_schema.names)
    for name, have in cold.items():
        if name not in stream_names and not have.nullable:
            problems.append(f"required cold column {name} is missing from warm {spec.warm}")
    if problems:
        raise IncompatibleWarmSchema(
            f"cold.{spec.cold} cannot follow warm {spec.warm}: " + "; ".join(problems) + "; nothing was written"
        )
    if added:
        with table.update_schema() as update:
            update.union_by_name(pa.schema(added))
        table = table.refresh()
    return table


class _WarmStream:
    """Reads a query's Arrow stream on its own thread, so reading and writing overlap; the
    bounded queue keeps memory bounded when the writer is the slower side."""

    _END = object()

    def __init__(self, client: Client, queries: list[WarmQuery]):
        self._queue: queue.Queue = queue.Queue(maxsize=STREAM_QUEUE_BATCHES)
        self._schema: pa.Schema | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, queries), daemon=True)
        self._thread.start()

    def _run(self, client: Client, queries: list[WarmQuery]) -> None:
        try:
            for query in queries:
                with client.query_arrow_stream(query.sql, parameters=query.parameters) as stream:
                    for batch in stream:
                        if self._schema is None:
                            self._schema = batch.schema
                            self._ready.set()
                        while not self._stop.is_set():
                            try:
                                self._queue.put(batch, timeout=0.5)
                                break
                            except queue.Full:
                                continue
                        if self._stop.is_set():
                            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._error = exc
        finally:
            self._ready.set()
            self._queue.put(self._END)

    def schema(self) -> pa.Schema | None:
        self._ready.wait()
        if self._error:
            raise self._error
        return self._schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._queue.get()
            if item is self._END:
                break
            yield item
        self._thread.join()
        if self._error:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()


def _commit(table: Table, data_files: list, delete_filter: BooleanExpression | None, summary: dict[str, str]) -> int | None:
    """One transaction: delete what this checkpoint owns, add its files (see the module docstring).

    The bookkeeping goes on the transaction's last snapshot only: a table rolled back to the
    delete in between holds none of the rows, so it must not claim their watermark."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Delete operation did not match any records")
        tx = _without_commit_retries(table).transaction()
        if delete_filter is not None:
            tx.delete(delete_filter, snapshot_properties={} if data_files else summary)
        if data_files:
            with tx.update_snapshot(snapshot_properties=summary).fast_append() as append:
                for data_file in data_files:
                    append.append_data_file(data_file)
        committed = tx.commit_transaction()
    snapshot = committed.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def _without_commit_retries(table: Table) -> Table:
    """The table with pyiceberg's own commit retries off, for one transaction. On a conflict
    pyiceberg would rebase the commit onto the concurrent one, and an append validates
    nothing: it would add a second copy of rows the other writer committed. A conflict fails
    the commit instead, and the checkpoint starts over from reconciliation. (The table's
    stored property is untouched: Spark's compaction keeps its retries.)"""
    properties = {**table.metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}
    metadata = table.metadata.model_copy(update={"properties": properties})
    return Table(table.name(), metadata, table.metadata_location, table.io, table.catalog)


def count_rows(client: Client, query: WarmQuery) -> int:
    return int(client.query(render("count", query=query.sql), parameters=query.parameters).result_rows[0][0])


def cold_rows(table: Table, row_filter: BooleanExpression) -> int:
    """Cold rows matching a filter (record counts of whole files, a read of the others)."""
    if table.current_snapshot() is None:
        return 0
    return table.scan(row_filter=row_filter).count()


class _ColdFiles:
    """The cold files of a run's span, planned once: which offload ranges hold any, and the
    newest ingestion among them (the append layers' floor). A run's own commits only touch
    ranges it has finished, so the plan holds for the ranges still to come as long as the
    table's current snapshot is the one it was planned on or the run's own last commit
    (`valid_at`); after anyone else's commit it is planned again."""

    def __init__(self, table: Table, spec: MirroredTable, start: datetime, end: datetime):
        self.valid_at = _snapshot_id(table)
        schema = table.schema()
        time_field = schema.find_field(spec.time_column)
        ingest_field = schema.find_field("ingested_at") if "ingested_at" in schema.column_names else None
        # (first, last event time, newest ingestion) in micros; a file without statistics
        # spans every range, and gives no floor (its newest ingestion is unknown).
        self._files: list[tuple[int, int, int | None]] = []
        if table.current_snapshot() is None:
            return
        for task in table.scan(row_filter=range_filter(spec.time_column, start, end)).plan_files():
            lower, upper = task.file.lower_bounds or {}, task.file.upper_bounds or {}

            def bound(bounds: dict, field: NestedField) -> int | None:
                raw = bounds.get(field.field_id)  # timestamptz: microseconds since the epoch
                return cast(int, from_bytes(cast(PrimitiveType, field.field_type), raw)) if raw is not None else None

            first, last = bound(lower, time_field), bound(upper, time_field)
            newest = bound(upper, ingest_field) if ingest_field is not None else None
            self._files.append((-(2**62) if first is None else first, 2**62 if last is None else last, newest))

    def _in(self, start: datetime, end: datetime) -> list[tuple[int, int, int | None]]:
        lo, hi = _micros(start), _micros(end)
        return [f for f in self._files if f[0] < hi and f[1] >= lo]

    def holds(self, start: datetime, end: datetime) -> bool:
        return bool(self._in(start, end))

    def newest_ingestion(self, start: datetime, end: datetime) -> datetime | None:
        newest = [f[2] for f in self._in(start, end) if f[2] is not None]
        return EPOCH + timedelta(microseconds=max(newest)) if newest else None


def _micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


@dataclass
class _Read:
    """What the stream delivered for one range: rows, their summed row hashes, rows newer
    than a bound."""

    rows: int = 0
    checksum: int = 0
    newer_rows: int = 0

    @property
    def fingerprint(self) -> str:
        return f"{self.rows}:{self.checksum % 2**64}"


@dataclass
class _Range:
    """One offload range of a checkpoint (an hour; a day for the daily bars): the partition
    keys of the run it serves, what it starts from, and what this checkpoint does with it."""

    keys: list[str]
    start: datetime
    end: datetime
    status: HourStatus
    state: PartitionState = field(default_factory=PartitionState)
    outcome: Outcome | None = None  # decided: no read needed, or after it
    # The read (ranges that have one):
    after: datetime = EPOCH  # rows ingested in (after, until]
    until: datetime = FAR_FUTURE
    row_hash: bool = False
    newer_than: datetime | None = None  # append: rows ingested after the watermark are new
    delete_filter: BooleanExpression | None = None
    new_state: PartitionState = field(default_factory=PartitionState)
    read: _Read = field(default_factory=_Read)
    writer: DataFileWriter | None = None
    data_files: list = field(default_factory=list)
    replaced: int = 0  # cold rows the delete filter matches
    was_read: bool = False

    def read_bounds(self) -> tuple[datetime, datetime, bool]:
        return (self.after, self.until, self.row_hash)


@dataclass(frozen=True)
class Checkpoint:
    """What one commit (or none) of a ranged offload did: per partition key its result, and
    the hours refused because they would lose cold rows (nothing of them was written)."""

    results: list[OffloadResult]
    refused: list[ColdRowsWouldBeLost]
    snapshot_id: int | None
    seconds: float


def offload_partitions(
    client: Client,
    table: Table,
    spec: MirroredTable,
    partition_keys: list[str],
    run_id: str,
    recorded: Mapping[str, PartitionState | None] | None = None,
    settle_lag: timedelta = timedelta(seconds=30),
    replace_hour: bool = False,
    *,
    overlap: timedelta = timedelta(minutes=5),
    allow_fewer_rows: bool = False,
    warm_retention: timedelta = timedelta(days=30),
    now: datetime | None = None,
    checkpoint_hours: int = DEFAULT_CHECKPOINT_HOURS,
) -> Iterator[Checkpoint]:
    """Offloads hourly partitions of one table, one commit per checkpoint of at most
    `checkpoint_hours` offload ranges (see the module docstring for the protocol), yielding
    each checkpoint once committed: a crash redoes at most one checkpoint, and a long backfill
    becomes visible progressively.

    `recorded` holds Dagster's record per partition key. `replace_hour` forces an append
    layer's hours to be replaced wholesale (a repair), still only up to the settle lag.
    `allow_fewer_rows` lets a replace delete cold rows warm no longer has (an operator
    correcting history). `now` is the warm clock the run decides by (default: read now); one
    reading per run keeps its offloads and checks consistent."""
    if settle_lag < timedelta(0) or overlap < timedelta(0):
        raise ValueError(f"settle lag ({settle_lag}) and append overlap ({overlap}) must not be negative")
    if checkpoint_hours < 1:
        raise ValueError(f"checkpoint_hours must be at least 1, got {checkpoint_hours}")
    now = now or warm_now(client)
    policy = HourPolicy(settle_lag=settle_lag, warm_retention=warm_retention)
    by_range: dict[datetime, list[str]] = {}
    for key in sorted(set(partition_keys)):
        by_range.setdefault(spec.offload_range(hour_of(key))[0], []).append(key)
    starts = sorted(by_range)
    options = _Options(run_id, recorded or {}, settle_lag, replace_hour, overlap, allow_fewer_rows, now, policy)
    span = (starts[0], spec.offload_range(starts[-1])[1]) if starts else None
    cold_files: _ColdFiles | None = None
    for i in range(0, len(starts), checkpoint_hours):
        chunk = [(start, by_range[start]) for start in starts[i : i + checkpoint_hours]]
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                table = table.refresh()
                if cold_files is None or cold_files.valid_at != _snapshot_id(table):
                    cold_files = _ColdFiles(table, spec, *span)  # type: ignore[misc]
                checkpoint = _checkpoint(client, table, spec, chunk, options, cold_files)
                if checkpoint.snapshot_id is not None:
                    cold_files.valid_at = checkpoint.snapshot_id
                break
            except (ValidationException, CommitFailedException):
                # A concurrent writer of the table committed first; start the checkpoint over
                # from reconciliation, which now sees its commit.
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
                time.sleep(CONFLICT_WAIT_SECONDS * (attempt + 1) * random.uniform(0.5, 1.5))
        yield checkpoint


def offload_partition(
    client: Client,
    table: Table,
    spec: MirroredTable,
    hour: datetime,
    partition_key: str,
    run_id: str,
    recorded: PartitionState | None = None,
    settle_lag: timedelta = timedelta(seconds=30),
    replace_hour: bool = False,
    *,
    overlap: timedelta = timedelta(minutes=5),
    allow_fewer_rows: bool = False,
    warm_retention: timedelta = timedelta(days=30),
    now: datetime | None = None,
) -> OffloadResult:
    """Offloads one hourly partition (`offload_partitions` of one key); raises
    ColdRowsWouldBeLost when the offload was refused."""
    if hour_of(partition_key) != hour:
        raise ValueError(f"partition key {partition_key} is not the hour {hour.isoformat()}")
    (checkpoint,) = offload_partitions(
        client, table, spec, [partition_key], run_id, {partition_key: recorded}, settle_lag, replace_hour,
        overlap=overlap, allow_fewer_rows=allow_fewer_rows, warm_retention=warm_retention, now=now,
    )
    if checkpoint.refused:
        raise checkpoint.refused[0]
    return checkpoint.results[0]


@dataclass(frozen=True)
class _Options:
    run_id: str
    recorded: Mapping[str, PartitionState | None]
    settle_lag: timedelta
    replace_hour: bool
    overlap: timedelta
    allow_fewer_rows: bool
    now: datetime
    policy: HourPolicy


def _checkpoint(
    client: Client,
    table: Table,
    spec: MirroredTable,
    chunk: list[tuple[datetime, list[str]]],
    options: _Options,
    cold_files: _ColdFiles,
) -> Checkpoint:
    started = time.perf_counter()
    columns = read_columns(client, spec, table.schema())
    ancestry = Ancestry(table, spec)
    ranges = [_plan(spec, start, keys, ancestry, cold_files, options) for start, keys in chunk]
    _skip_unchanged_replaces(client, table, spec, columns, ranges, options)
    reading = [r for r in ranges if r.outcome is None]
    refused: list[ColdRowsWouldBeLost] = []
    snapshot_id = None
    committing = False
    stream = _WarmStream(client, _read_slices(client, table, spec, columns, reading)) if reading else None
    try:
        if stream is not None:
            table = _write(stream, table, spec, reading)
        for r in reading:
            r.was_read = True
            holds = cold_files.holds(r.start, r.end)
            r.replaced = cold_rows(table, r.delete_filter) if holds and r.delete_filter is not None else 0
            refusal = _decide(spec, r, options)
            if refusal is not None:
                refused.append(refusal)
        to_commit = [r for r in reading if r.outcome in (Outcome.APPEND, Outcome.REPLACE)]
        if to_commit:
            data_files = [f for r in to_commit for f in r.data_files]
            # Only what matches cold rows is deleted: a first backfill commits appends only,
            # without evaluating a delete against every file of the month (gold's partition).
            # Concurrent writers still cannot both commit: every snapshot asserts the branch's
            # current snapshot, and retries are off (_without_commit_retries).
            deletes = [r.delete_filter for r in to_commit if r.replaced]
            delete_filter = reduce(lambda a, b: Or(a, b), [d for d in deletes if d is not None]) if deletes else None
            summary = commit_summary(
                options.run_id,
                {partition_key_of(r.start): r.new_state.entry(_committed_mode(r), r.read.rows) for r in to_commit},
            )
            committing = True
            snapshot_id = _commit(table, data_files, delete_filter, summary)
    except (CommitFailedException, ValidationException):
        # The catalog refused the commit: nothing of it is visible, the files can go.
        if stream is not None:
            stream.close()
        _abort(reading)
        raise
    except BaseException:
        if stream is not None:
            stream.close()
        # Before the catalog call the files are certainly unreferenced. During it, the commit
        # may have landed (a lost connection after COMMIT, a 5xx after the REST catalog
        # committed, a run terminated mid-call): the files stay, and the next run reconciles
        # from the table; if the commit did not land they are orphans for the maintenance.
        if not committing:
            _abort(reading)
        raise
    seconds = time.perf_counter() - started
    current = table.current_snapshot() if snapshot_id is None else None
    # Each partition key's share of the checkpoint (the daily bars' day serves 24 keys).
    share = seconds / sum(len(r.keys) for r in ranges)
    results = []
    for r in ranges:
        if r.outcome is None:
            continue  # refused
        wrote = r.outcome in (Outcome.APPEND, Outcome.REPLACE)
        # A range that was read is left at its new state (an append's watermark moves even
        # when nothing was new); one decided without a read stays where it was.
        state = r.new_state if r.was_read else r.state
        ids = snapshot_id if wrote else state.snapshot_id or (current.snapshot_id if current else None)
        for key in r.keys:
            results.append(
                OffloadResult(
                    partition_key=key,
                    mode=r.outcome,
                    watermark=state.watermark,
                    fingerprint=state.fingerprint,
                    rows_written=r.read.rows if wrote else 0,
                    snapshot_id=ids,
                    files=len(r.data_files) if wrote else 0,
                    seconds=share,
                    reconciled_from=r.state.source,
                    status=r.status,
                )
            )
    return Checkpoint(results, refused, snapshot_id, seconds)


def _plan(
    spec: MirroredTable,
    start: datetime,
    keys: list[str],
    ancestry: Ancestry,
    cold_files: _ColdFiles,
    options: _Options,
) -> _Range:
    """Where one range starts from, and the read and delete it needs (if any)."""
    end = spec.offload_range(start)[1]
    r = _Range(keys, start, end, options.policy.status(spec, start, options.now))
    # Only a record of a snapshot on the current ancestry counts (bookkeeping.Ancestry.describes).
    trusted = [x for x in (options.recorded.get(key) for key in keys) if x is not None and ancestry.describes(x)]
    if r.status is HourStatus.COLD_ONLY:
        offloaded = ancestry.state(start) or next((x for x in trusted if x.watermark is not None), None)
        if offloaded is not None or cold_files.holds(start, end):
            # ClickHouse's TTL may have dropped some of its rows: cold is the copy of record.
            r.state = offloaded or PartitionState()
            r.outcome = Outcome.COLD_ONLY
            return r
        # Never offloaded and past the retention (a first backfill that reached it late, an
        # outage): the TTL deletes at merges, so what warm still holds may be the only copy
        # left. It is offloaded as any range; cold holds nothing it could replace.
    recorded = max(trusted, key=lambda x: x.watermark or EPOCH) if trusted else None
    mode = OffloadMode.REPLACE if options.replace_hour else spec.mode
    floor = cold_files.newest_ingestion(start, end) if mode is OffloadMode.APPEND else None
    r.state = reconcile(recorded, ancestry.state(start), floor)
    until = options.now - options.settle_lag
    if mode is OffloadMode.APPEND:
        after = r.state.watermark or EPOCH
        if until <= after:
            r.outcome = Outcome.UNCHANGED
            return r
        # Re-read an overlap before the watermark: rows that became visible after it passed them.
        r.after = max(after - options.overlap, EPOCH) if after > EPOCH else EPOCH
        r.until = until
        r.new_state = PartitionState(watermark=until, run_id=options.run_id, snapshot_id=r.state.snapshot_id)
        newer = GreaterThan("ingested_at", r.after.isoformat())  # type: ignore[call-arg, arg-type]  # pyiceberg's pydantic signature
        r.delete_filter = And(range_filter(spec.time_column, start, end), newer)
        r.newer_than = after
        return r
    # Replace layers read the whole range, up to the settle lag too when an append layer is
    # repaired (rows younger than it stay for the next append).
    repair_of_append = spec.mode is OffloadMode.APPEND
    if repair_of_append:
        r.until = until
    r.row_hash = not repair_of_append
    # An append layer's watermark is where its read stopped; a replace layer's records when.
    r.new_state = PartitionState(watermark=until if repair_of_append else options.now, run_id=options.run_id)
    r.delete_filter = range_filter(spec.time_column, start, end)
    return r


def _committed_mode(r: _Range) -> str:
    if r.outcome is None:
        raise AssertionError(f"range {r.start} is committed before its outcome was decided")
    return r.outcome.value


def _skip_unchanged_replaces(
    client: Client,
    table: Table,
    spec: MirroredTable,
    columns: list[WarmColumn] | None,
    ranges: list[_Range],
    options: _Options,
) -> None:
    """A replace layer's range whose warm fingerprint equals the one last written needs no
    read: one grouped query fingerprints every range of the checkpoint."""
    if options.replace_hour or spec.mode is not OffloadMode.REPLACE:
        return
    # A range without a recorded fingerprint (never offloaded: a first backfill) is read anyway.
    candidates = [r for r in ranges if r.outcome is None and r.state.fingerprint is not None]
    if not candidates:
        return
    query = warm_read_query(client, spec, columns, candidates[0].start, candidates[-1].end)
    digests = warm_fingerprints(client, table, spec, query, columns)
    for r in candidates:
        if digests.get(int(r.start.timestamp()), "0:0") == r.state.fingerprint:
            r.outcome = Outcome.UNCHANGED


def _read_slices(
    client: Client, table: Table, spec: MirroredTable, columns: list[WarmColumn] | None, ranges: list[_Range]
) -> list[WarmQuery]:
    """The reads of a checkpoint's ranges as queries of about SLICE_ROWS rows each: adjacent
    ranges with the same bounds are read together (ordered by range), one grouped count per
    such run sizes the slices, and a range bigger than a slice is cut into time slices."""
    runs: list[list[_Range]] = []
    for r in ranges:
        if runs and runs[-1][-1].end == r.start and runs[-1][-1].read_bounds() == r.read_bounds():
            runs[-1].append(r)
        else:
            runs.append([r])
    queries: list[WarmQuery] = []
    for run in runs:
        after, until, row_hash = run[0].read_bounds()
        hashed = canonical_row(table, columns) if row_hash else ""

        def query(
            lo: datetime, hi: datetime, by_range: bool, after: datetime = after, until: datetime = until, hashed: str = hashed
        ) -> WarmQuery:
            return warm_read_query(client, spec, columns, lo, hi, after=after, until=until, row_hash=hashed, by_range=by_range)

        # Sized without silver's FINAL (an upper bound of the rows, and a cheap query).
        sizing = read_query(spec, columns, run[0].start, run[-1].end, after=after, until=until, deduplicated=False)
        counts = _rows_by_range(client, spec, sizing)
        group: list[_Range] = []
        group_rows = 0
        for r in run:
            rows = counts.get(int(r.start.timestamp()), 0)
            if rows > SLICE_ROWS:
                if group:
                    queries.append(query(group[0].start, group[-1].end, len(group) > 1))
                    group, group_rows = [], 0
                slices = -(-rows // SLICE_ROWS)
                step = (r.end - r.start) / slices
                edges = [r.start + step * i for i in range(slices)] + [r.end]
                queries += [query(lo, hi, False) for lo, hi in zip(edges, edges[1:], strict=False)]
                continue
            if group and group_rows + rows > SLICE_ROWS:
                queries.append(query(group[0].start, group[-1].end, len(group) > 1))
                group, group_rows = [], 0
            group.append(r)
            group_rows += rows
        if group:
            queries.append(query(group[0].start, group[-1].end, len(group) > 1))
    return queries


def _rows_by_range(client: Client, spec: MirroredTable, query: WarmQuery) -> dict[int, int]:
    sql = render(
        "count_by_range", query=query.sql, range_function=spec.range_function, time_column=identifier(spec.time_column)
    )
    return {int(start): int(rows) for start, rows in client.query(sql, parameters=query.parameters).result_rows}


def _write(stream: "_WarmStream", table: Table, spec: MirroredTable, ranges: list[_Range]) -> Table:
    """Writes the stream into one set of data files per range (one file per split value),
    finishing a range's files as soon as the stream has passed it: memory holds at most one
    range's open row groups. Returns the table (its schema evolved if warm added columns)."""
    schema = stream.schema()
    if schema is None:
        list(stream)  # drain: an empty result
        return table
    if ROW_HASH in schema.names:
        schema = schema.remove(schema.get_field_index(ROW_HASH))
    planned_on = _snapshot_id(table)
    table = evolve_schema(table, spec, schema)
    if _snapshot_id(table) != planned_on:
        raise PlanOutdated(
            f"cold.{spec.cold}: snapshot {_snapshot_id(table)} was committed by another writer after this checkpoint was "
            f"planned on {planned_on}"
        )
    file_format = DataFileFormat(table, schema)
    starts = np.array([_micros(r.start) for r in ranges], dtype=np.int64)
    current: _Range | None = None
    for batch in stream:
        if batch.num_rows == 0:
            continue
        times = np.asarray(batch.column(spec.time_column).cast(pa.int64()))
        index = np.searchsorted(starts, times, side="right") - 1
        if index[0] < 0:  # the reads cover the ranges' spans only; anything else is a bug
            raise AssertionError(f"cold.{spec.cold}: a row before the first range of the checkpoint")
        cuts = [0, *(np.flatnonzero(np.diff(index)) + 1).tolist(), batch.num_rows]
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            r = ranges[int(index[lo])]
            if r is not current:
                if current is not None and current.writer is not None and r.start > current.start:
                    current.data_files = current.writer.close()
                current = r
            if r.writer is None:
                prefix = f"{partition_key_of(r.start).replace(':', '')}-{spec.cold}"
                r.writer = DataFileWriter(file_format, spec.split_column, prefix)
            r.writer.write(_account(batch.slice(lo, hi - lo), r.read, r.newer_than))
    for r in ranges:
        if r.writer is not None and not r.data_files:
            r.data_files = r.writer.close()
    return table


def _snapshot_id(table: Table) -> int | None:
    current = table.current_snapshot()
    return current.snapshot_id if current else None


def _decide(spec: MirroredTable, r: _Range, options: _Options) -> ColdRowsWouldBeLost | None:
    """What a range that was read becomes: refused, unchanged, or part of the commit."""
    # An append compares the cold rows it replaces with the warm rows of the overlap re-read
    # (not newer than the watermark), so that new rows cannot mask rows warm lost. With no
    # watermark known (EPOCH: cold rows without bookkeeping or statistics), every row read is
    # the re-read.
    overlap_only = r.newer_than is not None and r.newer_than > EPOCH
    kept_by_read = r.read.rows - r.read.newer_rows if overlap_only else r.read.rows
    if kept_by_read < r.replaced and not options.allow_fewer_rows:
        _abort([r])
        r.outcome = None
        return ColdRowsWouldBeLost(
            spec, r.keys, kept_by_read, r.replaced,
            "ingested in the overlap re-read" if overlap_only else "in the whole range",
        )
    appending = r.newer_than is not None
    if spec.mode is OffloadMode.REPLACE:
        r.new_state = replace(r.new_state, fingerprint=r.read.fingerprint)
    if (appending and r.read.newer_rows == 0 and kept_by_read == r.replaced) or (r.read.rows == 0 and r.replaced == 0):
        # Nothing new: the watermark (or the fingerprint of an empty range) moves in Dagster's
        # record only. No commit is needed, since reading the same range again is harmless.
        _abort([r])
        r.outcome = Outcome.UNCHANGED
        return None
    r.outcome = Outcome.APPEND if appending else Outcome.REPLACE
    return None


def _abort(ranges: list[_Range]) -> None:
    for r in ranges:
        if r.writer is not None:
            r.writer.abort()
            r.writer = None
        r.data_files = []


def _account(batch: pa.RecordBatch, read: _Read, newer_than: datetime | None) -> pa.RecordBatch:
    """Counts a batch into `read` and returns it without its row hashes."""
    read.rows += batch.num_rows
    if newer_than is not None and batch.num_rows:
        newer = pc.greater(batch.column("ingested_at"), pa.scalar(newer_than, batch.schema.field("ingested_at").type))
        read.newer_rows += pc.sum(newer).as_py() or 0
    index = batch.schema.get_field_index(ROW_HASH)
    if index < 0:
        return batch
    # uint64 sums wrap modulo 2^64, as ClickHouse's sum of cityHash64 does.
    read.checksum = (read.checksum + int(np.asarray(batch.column(index)).sum(dtype=np.uint64))) % 2**64
    return batch.remove_column(index)
