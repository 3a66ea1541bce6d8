"""The offload protocol: one (table, hour) from ClickHouse into Iceberg, exactly once.

Two stores must agree: the Iceberg table (data) and Dagster's event log (watermark). Iceberg
commits are atomic and come first, so every commit carries its own bookkeeping in the
snapshot summary (partition, watermark, fingerprint, rows, run id), and every offload starts
by reconciling what Dagster recorded with what the table committed. The table wins: a crash
after the commit and before Dagster recorded it never leads to a second copy.

- Append layers (raw, bronze) load rows ingested after the watermark, up to the warm clock
  minus a settle lag (inserts still in flight are not skipped).
- Replace layers (silver, gold) replace the hour with an overwrite filtered on it, unless
  the hour's fingerprint is unchanged.

Every commit is one transaction: a delete filtered on what this offload owns, then the new
files. Under Iceberg's serializable isolation the delete makes a concurrent writer of the
same partition fail validation instead of committing a second copy; the loser retries from
reconciliation and finds nothing left to do. For append layers the delete (rows of the hour
newer than the watermark) matches nothing unless such a race happened.
"""

import queue
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import And, BooleanExpression, GreaterThan
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.table import Table

from cold_assets.cold_files import DataFileWriter
from cold_assets.cold_ranges import range_filter
from cold_assets.parity import warm_fingerprint
from cold_assets.tables import MirroredTable, OffloadMode
from cold_assets.warm_read import EPOCH, WarmQuery, read_columns, read_query, render

SUMMARY = "cold-assets."  # prefix of our snapshot summary properties
STREAM_QUEUE_BATCHES = 4
# Rows per read slice. chDB buffers a query's whole result, so an hour is read as time
# slices of about this many rows each: memory does not grow with the size of the hour.
SLICE_ROWS = 100_000
MAX_CONFLICT_RETRIES = 3


class IncompatibleWarmSchema(ValueError):
    """The warm table changed in a way the cold table cannot follow (not an added nullable column)."""


@dataclass(frozen=True)
class PartitionState:
    """What is known about one offloaded (table, hour): from Dagster metadata or a snapshot."""

    watermark: datetime | None = None  # append: rows ingested up to here are in cold
    fingerprint: str | None = None  # replace: fingerprint of the warm hour last written
    snapshot_id: int | None = None
    run_id: str | None = None
    source: str = "none"  # dagster | snapshot | data

    def to_summary(self, partition_key: str, mode: str, rows: int) -> dict[str, str]:
        props = {
            f"{SUMMARY}partition": partition_key,
            f"{SUMMARY}mode": mode,
            f"{SUMMARY}rows": str(rows),
            f"{SUMMARY}run-id": self.run_id or "",
        }
        if self.watermark is not None:
            props[f"{SUMMARY}watermark"] = self.watermark.isoformat()
        if self.fingerprint is not None:
            props[f"{SUMMARY}fingerprint"] = self.fingerprint
        return props


@dataclass(frozen=True)
class OffloadResult:
    partition_key: str
    mode: str  # append | replace | unchanged
    watermark: datetime | None
    fingerprint: str | None
    rows_written: int
    snapshot_id: int | None
    files: int
    seconds: float
    reconciled_from: str  # where the starting state came from

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0


def committed_state(table: Table, partition_key: str) -> PartitionState | None:
    """The newest snapshot that committed this partition, if it has not been expired."""
    for snapshot in sorted(table.metadata.snapshots, key=lambda s: s.sequence_number or 0, reverse=True):
        props = snapshot.summary.additional_properties if snapshot.summary else {}
        if props.get(f"{SUMMARY}partition") != partition_key:
            continue
        watermark = props.get(f"{SUMMARY}watermark")
        return PartitionState(
            watermark=datetime.fromisoformat(watermark) if watermark else None,
            fingerprint=props.get(f"{SUMMARY}fingerprint"),
            snapshot_id=snapshot.snapshot_id,
            run_id=props.get(f"{SUMMARY}run-id"),
            source="snapshot",
        )
    return None


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
    taken, since it describes what the table actually holds."""
    known = [s for s in (committed, recorded) if s is not None]
    if data_floor is not None:
        known.append(PartitionState(watermark=data_floor, source="data"))
    if not known:
        return PartitionState()
    return max(known, key=lambda s: (s.watermark or EPOCH, s.source == "snapshot"))


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
    """One transaction: delete what this offload owns, add its files (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Delete operation did not match any records")
        tx = table.transaction()
        tx.delete(delete_filter, snapshot_properties=summary)
        if data_files:
            with tx.update_snapshot(snapshot_properties=summary).fast_append() as append:
                for data_file in data_files:
                    append.append_data_file(data_file)
        committed = tx.commit_transaction()
    snapshot = committed.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def count_rows(client: Client, query: WarmQuery) -> int:
    return int(client.query(render("count", query=query.sql), parameters=query.parameters).result_rows[0][0])


def read_slices(client: Client, spec: MirroredTable, columns, start: datetime, end: datetime, **bounds) -> list[WarmQuery]:
    """The read of [start, end) as consecutive time slices of about SLICE_ROWS rows."""
    rows = count_rows(client, read_query(spec, columns, start, end, **bounds))
    slices = max(1, -(-rows // SLICE_ROWS))
    step = (end - start) / slices
    edges = [start + step * i for i in range(slices)] + [end]
    return [read_query(spec, columns, lo, hi, **bounds) for lo, hi in zip(edges, edges[1:])]


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
) -> OffloadResult:
    """Offloads one hourly partition of one table; see the module docstring for the protocol.

    `replace_hour` forces an append layer's hour to be replaced wholesale (a repair)."""
    for attempt in range(MAX_CONFLICT_RETRIES + 1):
        try:
            return _offload_once(client, table.refresh(), spec, hour, partition_key, run_id, recorded, settle_lag, replace_hour)
        except (ValidationException, CommitFailedException):
            # A concurrent offload of the same partition committed first; start over from
            # reconciliation, which now sees its commit.
            if attempt == MAX_CONFLICT_RETRIES:
                raise
    raise AssertionError("unreachable")


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
) -> OffloadResult:
    started = time.perf_counter()
    start, end = spec.offload_range(hour)
    columns = read_columns(client, spec)
    mode = OffloadMode.REPLACE if replace_hour else spec.mode
    committed = committed_state(table, partition_key)
    floor = cold_data_watermark(table, spec, start, end) if mode is OffloadMode.APPEND else None
    state = reconcile(recorded, committed, floor)
    now = warm_now(client)

    if mode is OffloadMode.APPEND:
        after = state.watermark or EPOCH
        until = now - settle_lag
        if until <= after:
            return _unchanged(table, partition_key, state, started)
        slices = read_slices(client, spec, columns, start, end, after=after, until=until)
        new_state = PartitionState(watermark=until, run_id=run_id)
        delete_filter = And(range_filter(spec.time_column, start, end), GreaterThan("ingested_at", after.isoformat()))
    else:
        query = read_query(spec, columns, start, end)
        # The fingerprint is the content parity checksum of the warm hour (parity.py): the
        # check of this run then reuses it instead of reading warm again.
        digest = warm_fingerprint(client, table, spec, query)
        if digest == state.fingerprint and not replace_hour:
            return _unchanged(table, partition_key, state, started)
        slices = read_slices(client, spec, columns, start, end)
        new_state = PartitionState(watermark=now, fingerprint=digest, run_id=run_id)
        delete_filter = range_filter(spec.time_column, start, end)

    stream = _WarmStream(client, slices)
    writer = None
    try:
        schema = stream.schema()
        if schema is not None:
            table = evolve_schema(table, spec, schema)
            writer = DataFileWriter(table, spec.split_column, f"{partition_key.replace(':', '')}-{spec.cold}", schema)
            for batch in stream:
                writer.write(batch)
        else:
            list(stream)  # drain: an empty result
        if writer is None and mode is OffloadMode.APPEND:
            # Nothing new: the watermark moves in Dagster's record only. No commit is needed,
            # since reading an empty range again later is harmless.
            return _unchanged(table, partition_key, new_state, started, state.source)
        rows = writer.rows if writer else 0
        data_files = writer.close() if writer else []  # a replace of an hour now empty: delete only
        snapshot_id = _commit(table, data_files, delete_filter, new_state.to_summary(partition_key, mode.value, rows))
    except BaseException:
        stream.close()
        if writer is not None:
            writer.abort()
        raise
    table = table.refresh()
    return OffloadResult(
        partition_key=partition_key,
        mode=mode.value,
        watermark=new_state.watermark,
        fingerprint=new_state.fingerprint,
        rows_written=rows,
        snapshot_id=snapshot_id,
        files=len(data_files),
        seconds=time.perf_counter() - started,
        reconciled_from=state.source,
    )


def _unchanged(table, partition_key, state, started, reconciled_from=None) -> OffloadResult:
    return OffloadResult(
        partition_key=partition_key,
        mode="unchanged",
        watermark=state.watermark,
        fingerprint=state.fingerprint,
        rows_written=0,
        snapshot_id=state.snapshot_id or (table.current_snapshot().snapshot_id if table.current_snapshot() else None),
        files=0,
        seconds=time.perf_counter() - started,
        reconciled_from=reconciled_from or state.source,
    )
