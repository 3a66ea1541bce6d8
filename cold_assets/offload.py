"""The offload protocol: one (table, hour) from ClickHouse into Iceberg, exactly once.

Two stores must agree: the Iceberg table (data) and Dagster's event log (watermark). Iceberg
commits are atomic and come first, so every commit carries its own bookkeeping in the
snapshot summary (partition, watermark, fingerprint, rows, run id), and every offload starts
by reconciling what Dagster recorded with what the table committed. The table wins: a crash
after the commit and before Dagster recorded it never leads to a second copy. Only the
ancestry of the current snapshot counts: after a rollback, the bookkeeping of the snapshots
it removed (and a Dagster record that points at one of them) no longer describes the table.

- Append layers (raw, bronze) load rows ingested after the watermark, up to the warm clock
  minus a settle lag (inserts still in flight are not skipped). They re-read an overlap
  before the watermark and replace it in the same commit, so a row that became visible late
  (a long insert through the view chain, a replica behind) is still offloaded once.
- Replace layers (silver, gold) replace the hour with an overwrite filtered on it, unless
  the hour's fingerprint is unchanged. The fingerprint recorded is summed from per-row
  hashes that travel with the rows written, so it describes exactly those rows, however
  the warm hour moves during the read.
- Warm is the source of new rows, not the judge of old ones: a commit that would leave an
  hour with fewer cold rows than it holds is refused (unless `allow_fewer_rows`), and an
  hour older than the warm retention is cold-only, never read from warm again.

Every commit is one transaction: a delete filtered on what this offload owns, then the new
files. Under Iceberg's serializable isolation the delete makes a concurrent writer of the
same partition fail validation instead of committing a second copy; the loser retries from
reconciliation and finds nothing left to do. Files are deleted only after a definite
failure (before the catalog call, or the catalog refusing it); when the outcome of the
catalog call is unknown they stay, and the next run reconciles from the table.
"""

import queue
import threading
import time
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import And, BooleanExpression, GreaterThan
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.table import Table

from cold_assets.bookkeeping import (
    PartitionState,
    StateSource,
    committed_state,
    describes_table,
)
from cold_assets.cold_files import DataFileWriter
from cold_assets.cold_ranges import range_filter
from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.parity import absent_columns, canonical_row, warm_fingerprint
from cold_assets.tables import MirroredTable, OffloadMode
from cold_assets.warm_read import EPOCH, ROW_HASH, WarmQuery, read_columns, read_query, render

STREAM_QUEUE_BATCHES = 4
# Rows per read slice. chDB buffers a query's whole result, so an hour is read as time
# slices of about this many rows each: memory does not grow with the size of the hour.
SLICE_ROWS = 100_000
MAX_CONFLICT_RETRIES = 3


class IncompatibleWarmSchema(ValueError):
    """The warm table changed in a way the cold table cannot follow (not an added nullable column)."""


class ColdRowsWouldBeLost(RuntimeError):
    """Warm holds fewer rows than the cold rows a commit would replace: the warm tier lost
    rows (a dropped part, a TTL), and cold is their only copy. Nothing was written."""

    def __init__(self, spec: MirroredTable, partition_key: str, warm_rows: int, cold_rows: int, what: str):
        self.table, self.partition_key, self.warm_rows, self.cold_rows = spec.cold, partition_key, warm_rows, cold_rows
        super().__init__(
            f"cold.{spec.cold} hour {partition_key}: warm {spec.warm} has {warm_rows} rows where cold holds "
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


def cold_data_watermark(table: Table, spec: MirroredTable, start: datetime, end: datetime) -> datetime | None:
    """The newest ingested_at among the cold files of the range, from file statistics alone.

    The floor under every other record: even with Dagster's history and the snapshots gone,
    rows already in cold are never loaded again."""
    field = table.schema().find_field("ingested_at")
    newest = None
    for task in table.scan(row_filter=range_filter(spec.time_column, start, end)).plan_files():
        upper = (task.file.upper_bounds or {}).get(field.field_id)
        if upper is not None:
            micros = from_bytes(field.field_type, upper)
            newest = micros if newest is None else max(newest, micros)
    return EPOCH + timedelta(microseconds=newest) if newest is not None else None


def reconcile(
    recorded: PartitionState | None, committed: PartitionState | None, data_floor: datetime | None = None
) -> PartitionState:
    """The state an offload starts from: the newest of Dagster's record, the partition's
    newest snapshot and the cold files' own floor. The table wins: a commit Dagster never
    heard of (a crash in between) is newer than the record, and on a tie the snapshot is
    taken, since it describes what the table actually holds. The caller passes only a record
    that still describes the table (`describes_table`)."""
    known = [s for s in (committed, recorded) if s is not None]
    if data_floor is not None:
        known.append(PartitionState(watermark=data_floor, source=StateSource.DATA))
    if not known:
        return PartitionState()
    return max(known, key=lambda s: (s.watermark or EPOCH, s.source is StateSource.SNAPSHOT))


def warm_now(client: Client) -> datetime:
    value = client.query(render("warm_now")).result_rows[0][0]
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _comparable(t: pa.DataType) -> pa.DataType:
    return {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}.get(t, t)


def evolve_schema(table: Table, spec: MirroredTable, stream_schema: pa.Schema) -> Table:
    """Adds warm columns the cold table lacks (as optional); refuses any other difference."""
    cold = {f.name: f for f in schema_to_pyarrow(table.schema(), include_field_ids=False)}
    problems, added = [], []
    for field in stream_schema:
        have = cold.get(field.name)
        if have is None:
            added.append(field.with_nullable(True))
        elif _comparable(have.type) != _comparable(field.type):
            problems.append(f"column {field.name} is {field.type} in warm {spec.warm}, {have.type} in cold")
        elif field.nullable and not have.nullable:
            problems.append(f"column {field.name} is nullable in warm {spec.warm} but required in cold")
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


def _commit(table: Table, data_files: list, delete_filter: BooleanExpression, summary: dict[str, str]) -> int | None:
    """One transaction: delete what this offload owns, add its files (see the module docstring).

    The bookkeeping goes on the transaction's last snapshot only: a table rolled back to the
    delete in between holds none of the rows, so it must not claim their watermark."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Delete operation did not match any records")
        tx = table.transaction()
        tx.delete(delete_filter, snapshot_properties={} if data_files else summary)
        if data_files:
            with tx.update_snapshot(snapshot_properties=summary).fast_append() as append:
                for data_file in data_files:
                    append.append_data_file(data_file)
        committed = tx.commit_transaction()
    snapshot = committed.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def count_rows(client: Client, query: WarmQuery) -> int:
    return int(client.query(render("count", query=query.sql), parameters=query.parameters).result_rows[0][0])


def read_slices(
    client: Client, spec: MirroredTable, columns, start: datetime, end: datetime, row_hash: str = "", **bounds
) -> list[WarmQuery]:
    """The read of [start, end) as consecutive time slices of about SLICE_ROWS rows."""
    rows = count_rows(client, read_query(spec, columns, start, end, **bounds))
    slices = max(1, -(-rows // SLICE_ROWS))
    step = (end - start) / slices
    edges = [start + step * i for i in range(slices)] + [end]
    return [read_query(spec, columns, lo, hi, row_hash=row_hash, **bounds) for lo, hi in zip(edges, edges[1:])]


def cold_rows(table: Table, row_filter: BooleanExpression) -> int:
    """Cold rows matching a filter (record counts of whole files, a read of the others)."""
    if table.current_snapshot() is None:
        return 0
    return table.scan(row_filter=row_filter).count()


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
    """Offloads one hourly partition of one table; see the module docstring for the protocol.

    `replace_hour` forces an append layer's hour to be replaced wholesale (a repair), still
    only up to the settle lag. `allow_fewer_rows` lets a replace delete cold rows warm no
    longer has (an operator correcting history). `now` is the warm clock the run decides by
    (default: read now); one reading per run keeps its offloads and checks consistent."""
    if settle_lag < timedelta(0) or overlap < timedelta(0):
        raise ValueError(f"settle lag ({settle_lag}) and append overlap ({overlap}) must not be negative")
    now = now or warm_now(client)
    policy = HourPolicy(settle_lag=settle_lag, warm_retention=warm_retention)
    status = policy.status(spec, hour, now)
    if status is HourStatus.COLD_ONLY:
        # ClickHouse's TTL may have dropped some of its rows: cold is the copy of record.
        state = committed_state(table, spec, hour) or recorded or PartitionState()
        return _unchanged(table, partition_key, state, time.perf_counter(), Outcome.COLD_ONLY, HourStatus.COLD_ONLY)
    for attempt in range(MAX_CONFLICT_RETRIES + 1):
        try:
            result = _offload_once(
                client, table.refresh(), spec, hour, partition_key, run_id, recorded, settle_lag, replace_hour,
                overlap, allow_fewer_rows, now,
            )
            return replace(result, status=status)
        except (ValidationException, CommitFailedException):
            # A concurrent offload of the same partition committed first; start over from
            # reconciliation, which now sees its commit.
            if attempt == MAX_CONFLICT_RETRIES:
                raise
    raise AssertionError("unreachable")


@dataclass
class _Read:
    """What the stream delivered: rows, their summed row hashes, rows newer than a bound."""

    rows: int = 0
    checksum: int = 0
    newer_rows: int = 0

    @property
    def fingerprint(self) -> str:
        return f"{self.rows}:{self.checksum % 2**64}"


def _offload_once(
    client: Client,
    table: Table,
    spec: MirroredTable,
    hour: datetime,
    partition_key: str,
    run_id: str,
    recorded: PartitionState | None,
    settle_lag: timedelta,
    replace_hour: bool,
    overlap: timedelta,
    allow_fewer_rows: bool,
    now: datetime,
) -> OffloadResult:
    started = time.perf_counter()
    start, end = spec.offload_range(hour)
    columns = read_columns(client, spec, table.schema())
    mode = OffloadMode.REPLACE if replace_hour else spec.mode
    committed = committed_state(table, spec, hour)
    trusted = recorded if describes_table(table, recorded) else None
    floor = cold_data_watermark(table, spec, start, end) if mode is OffloadMode.APPEND else None
    state = reconcile(trusted, committed, floor)
    until = now - settle_lag
    row_hash = ""

    if mode is OffloadMode.APPEND:
        after = state.watermark or EPOCH
        if until <= after:
            return _unchanged(table, partition_key, state, started)
        # Re-read an overlap before the watermark: rows that became visible after it passed them.
        lower = max(after - overlap, EPOCH) if after > EPOCH else EPOCH
        slices = read_slices(client, spec, columns, start, end, after=lower, until=until)
        new_state = PartitionState(watermark=until, run_id=run_id, snapshot_id=state.snapshot_id)
        delete_filter = And(range_filter(spec.time_column, start, end), GreaterThan("ingested_at", lower.isoformat()))
        newer_than = after
    else:
        # Replace layers read the whole range, up to the settle lag too when an append layer is
        # repaired (rows younger than it stay for the next append).
        repair_of_append = spec.mode is OffloadMode.APPEND
        bounds = {"until": until} if repair_of_append else {}
        if not replace_hour:
            digest = warm_fingerprint(client, table, spec, read_query(spec, columns, start, end), absent_columns(columns))
            if digest == state.fingerprint:
                return _unchanged(table, partition_key, state, started)
        if not repair_of_append:
            row_hash = canonical_row(table, absent_columns(columns))
        slices = read_slices(client, spec, columns, start, end, row_hash=row_hash, **bounds)
        # An append layer's watermark is where its read stopped; a replace layer's records when.
        new_state = PartitionState(watermark=until if repair_of_append else now, run_id=run_id)
        delete_filter = range_filter(spec.time_column, start, end)
        newer_than = None

    stream = _WarmStream(client, slices)
    writer: DataFileWriter | None = None
    read = _Read()
    committing = False
    try:
        schema = stream.schema()
        if schema is not None:
            if ROW_HASH in schema.names:
                schema = schema.remove(schema.get_field_index(ROW_HASH))
            table = evolve_schema(table, spec, schema)
            writer = DataFileWriter(table, spec.split_column, f"{partition_key.replace(':', '')}-{spec.cold}", schema)
            for batch in stream:
                writer.write(_account(batch, read, newer_than))
        else:
            list(stream)  # drain: an empty result
        replaced = cold_rows(table, delete_filter)
        kept_by_read = read.rows - read.newer_rows if newer_than is not None else read.rows
        if kept_by_read < replaced and not allow_fewer_rows:
            raise ColdRowsWouldBeLost(
                spec, partition_key, kept_by_read, replaced,
                "ingested in the overlap re-read" if newer_than is not None else "in the whole range",
            )
        if mode is OffloadMode.APPEND and read.newer_rows == 0 and kept_by_read == replaced:
            # Nothing new: the watermark moves in Dagster's record only. No commit is needed,
            # since reading the same range again later is harmless.
            if writer is not None:
                writer.abort()
                writer = None
            return _unchanged(table, partition_key, new_state, started, reconciled_from=state.source)
        if spec.mode is OffloadMode.REPLACE:
            new_state = replace(new_state, fingerprint=read.fingerprint)
        data_files = writer.close() if writer else []  # a replace of an hour now empty: delete only
        committing = True
        snapshot_id = _commit(table, data_files, delete_filter, new_state.to_summary(partition_key, mode.value, read.rows))
    except (CommitFailedException, ValidationException):
        # The catalog refused the commit: nothing of it is visible, the files can go.
        stream.close()
        if writer is not None:
            writer.abort()
        raise
    except BaseException:
        stream.close()
        # Before the catalog call the files are certainly unreferenced. During it, the commit
        # may have landed (a lost connection after COMMIT, a 5xx after the REST catalog
        # committed, a run terminated mid-call): the files stay, and the next run reconciles
        # from the table; if the commit did not land they are orphans for the maintenance.
        if writer is not None and not committing:
            writer.abort()
        raise
    return OffloadResult(
        partition_key=partition_key,
        mode=Outcome(mode.value),
        watermark=new_state.watermark,
        fingerprint=new_state.fingerprint,
        rows_written=read.rows,
        snapshot_id=snapshot_id,
        files=len(data_files),
        seconds=time.perf_counter() - started,
        reconciled_from=state.source,
    )


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


def _unchanged(
    table: Table,
    partition_key: str,
    state: PartitionState,
    started: float,
    mode: Outcome = Outcome.UNCHANGED,
    status: HourStatus = HourStatus.CLOSED,
    reconciled_from: StateSource | None = None,
) -> OffloadResult:
    current = table.current_snapshot()
    return OffloadResult(
        partition_key=partition_key,
        mode=mode,
        watermark=state.watermark,
        fingerprint=state.fingerprint,
        rows_written=0,
        snapshot_id=state.snapshot_id or (current.snapshot_id if current else None),
        files=0,
        seconds=time.perf_counter() - started,
        reconciled_from=reconciled_from or state.source,
        status=status,
    )
