"""Reading a checkpoint's ranges from warm into data files: the warm rows arrive as one Arrow
stream (read on its own thread, so reading and writing overlap) of slices of about SLICE_ROWS
rows, and each range gets its own files, finished as soon as the stream has passed it. The
files are not part of the table until commit.py commits them."""

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from pyiceberg.table import Table

from cold_assets.cold.bounds import micros
from cold_assets.cold.files import DataFileFormat, DataFileWriter
from cold_assets.offload.phases import ToRead, WarmRead, Written
from cold_assets.offload.schema import evolve_for_checkpoint
from cold_assets.parity.checksums import canonical_row
from cold_assets.partitions import partition_key_of
from cold_assets.tables import MirroredTable
from cold_assets.warm.read import ROW_HASH, WarmColumn, WarmQuery, identifier, read_query, render, warm_read_query

STREAM_QUEUE_BATCHES = 4
# Rows per read slice. chDB buffers a query's whole result, so a checkpoint is read as
# slices of about this many rows each (whole hours together, a bigger hour cut into time
# slices): memory does not grow with the size of the hour or of the checkpoint. A day at demo
# volume is one slice.
SLICE_ROWS = 500_000


class WarmStream:
    """Reads queries' Arrow streams on its own thread; the bounded queue keeps memory bounded
    when the writer is the slower side."""

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


def count_rows(client: Client, query: WarmQuery) -> int:
    return int(client.query(render("count", query=query.sql), parameters=query.parameters).result_rows[0][0])


def read_slices(
    client: Client, table: Table, spec: MirroredTable, columns: list[WarmColumn] | None, ranges: list[ToRead]
) -> list[WarmQuery]:
    """The reads of a checkpoint's ranges as queries of about SLICE_ROWS rows each: adjacent
    ranges with the same bounds are read together (ordered by range), one grouped count per
    such run sizes the slices, and a range bigger than a slice is cut into time slices."""
    runs: list[list[ToRead]] = []
    for r in ranges:
        if runs and runs[-1][-1].span.end == r.span.start and runs[-1][-1].read.bounds() == r.read.bounds():
            runs[-1].append(r)
        else:
            runs.append([r])
    queries: list[WarmQuery] = []
    for run in runs:
        after, until, row_hash = run[0].read.bounds()
        hashed = canonical_row(table, columns) if row_hash else ""

        def query(
            lo: datetime, hi: datetime, by_range: bool, after: datetime = after, until: datetime = until, hashed: str = hashed
        ) -> WarmQuery:
            return warm_read_query(client, spec, columns, lo, hi, after=after, until=until, row_hash=hashed, by_range=by_range)

        # Sized without silver's FINAL (an upper bound of the rows, and a cheap query).
        sizing = read_query(spec, columns, run[0].span.start, run[-1].span.end, after=after, until=until, deduplicated=False)
        counts = _rows_by_range(client, spec, sizing)
        group: list[ToRead] = []
        group_rows = 0
        for r in run:
            rows = counts.get(int(r.span.start.timestamp()), 0)
            if rows > SLICE_ROWS:
                if group:
                    queries.append(query(group[0].span.start, group[-1].span.end, len(group) > 1))
                    group, group_rows = [], 0
                slices = -(-rows // SLICE_ROWS)
                step = (r.span.end - r.span.start) / slices
                edges = [r.span.start + step * i for i in range(slices)] + [r.span.end]
                queries += [query(lo, hi, False) for lo, hi in zip(edges, edges[1:], strict=False)]
                continue
            if group and group_rows + rows > SLICE_ROWS:
                queries.append(query(group[0].span.start, group[-1].span.end, len(group) > 1))
                group, group_rows = [], 0
            group.append(r)
            group_rows += rows
        if group:
            queries.append(query(group[0].span.start, group[-1].span.end, len(group) > 1))
    return queries


def _rows_by_range(client: Client, spec: MirroredTable, query: WarmQuery) -> dict[int, int]:
    sql = render(
        "count_by_range", query=query.sql, range_function=spec.range_function, time_column=identifier(spec.time_column)
    )
    return {int(start): int(rows) for start, rows in client.query(sql, parameters=query.parameters).result_rows}


@dataclass
class _Accumulating:
    """One range while the stream passes it."""

    planned: ToRead
    rows: int = 0
    checksum: int = 0
    newer_rows: int = 0
    writer: DataFileWriter | None = None
    data_files: list = field(default_factory=list)
    closed: bool = False

    def close(self) -> None:
        if self.writer is not None and not self.closed:
            self.data_files = self.writer.close()
        self.closed = True

    def written(self) -> Written:
        return Written(self.planned, WarmRead(self.rows, self.checksum, self.newer_rows), tuple(self.data_files))


def read_into_files(
    client: Client, table: Table, spec: MirroredTable, columns: list[WarmColumn] | None, ranges: list[ToRead]
) -> tuple[Table, list[Written]]:
    """Reads `ranges` from warm into one set of data files per range (one file per split
    value), finishing a range's files as soon as the stream has passed it: memory holds at
    most one range's open row groups. Returns the table (its schema evolved if warm added
    columns) and each range as written. On any failure, every file it wrote is deleted."""
    accumulating = [_Accumulating(r) for r in ranges]
    stream = WarmStream(client, read_slices(client, table, spec, columns, ranges))
    try:
        table = _write(stream, table, spec, accumulating)
    except BaseException:
        stream.close()
        for a in accumulating:
            if a.writer is not None:
                a.writer.abort()
        raise
    return table, [a.written() for a in accumulating]


def _write(stream: WarmStream, table: Table, spec: MirroredTable, ranges: list[_Accumulating]) -> Table:
    schema = stream.schema()
    if schema is None:
        list(stream)  # drain: an empty result
        return table
    if ROW_HASH in schema.names:
        schema = schema.remove(schema.get_field_index(ROW_HASH))
    table = evolve_for_checkpoint(table, spec, schema)
    file_format = DataFileFormat(table, schema)
    starts = np.array([micros(a.planned.span.start) for a in ranges], dtype=np.int64)
    current: _Accumulating | None = None
    for batch in stream:
        if batch.num_rows == 0:
            continue
        times = np.asarray(batch.column(spec.time_column).cast(pa.int64()))
        index = np.searchsorted(starts, times, side="right") - 1
        if index[0] < 0:  # the reads cover the ranges' spans only; anything else is a bug
            raise AssertionError(f"cold.{spec.cold}: a row before the first range of the checkpoint")
        cuts = [0, *(np.flatnonzero(np.diff(index)) + 1).tolist(), batch.num_rows]
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            a = ranges[int(index[lo])]
            if a is not current:
                if current is not None and a.planned.span.start > current.planned.span.start:
                    current.close()
                current = a
            if a.closed:
                raise AssertionError(f"cold.{spec.cold}: rows of range {a.planned.span.start} after the stream passed it")
            if a.writer is None:
                prefix = f"{partition_key_of(a.planned.span.start).replace(':', '')}-{spec.cold}"
                a.writer = DataFileWriter(file_format, spec.split_column, prefix)
            a.writer.write(_account(batch.slice(lo, hi - lo), a))
    for a in ranges:
        a.close()
    return table


def _account(batch: pa.RecordBatch, a: _Accumulating) -> pa.RecordBatch:
    """Counts a batch into its range and returns it without its row hashes."""
    a.rows += batch.num_rows
    newer_than = a.planned.read.newer_than
    if newer_than is not None and batch.num_rows:
        newer = pc.greater(batch.column("ingested_at"), pa.scalar(newer_than, batch.schema.field("ingested_at").type))
        a.newer_rows += pc.sum(newer).as_py() or 0
    index = batch.schema.get_field_index(ROW_HASH)
    if index < 0:
        return batch
    # uint64 sums wrap modulo 2^64, as ClickHouse's sum of cityHash64 does.
    a.checksum = (a.checksum + int(np.asarray(batch.column(index)).sum(dtype=np.uint64))) % 2**64
    return batch.remove_column(index)
