"""Writes an ordered Arrow stream into Iceberg data files, each file written once.

One offload covers one value of the time partition, so the only partition column left is the
identity one (`exchange`, the first of the table's `cold_order`): each value gets exactly one
Parquet file, open for the whole offload and written once (no partition splitting of a whole
table in memory, no rewrite). The hour arrives in time slices, each ordered by `cold_order`,
so runs of equal values are cut without sorting. Batches are buffered up to one row group per
open file, so memory is bounded by the row group, not by the size of the hour.
"""

import re
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.io import OutputStream
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table import Table
from pyiceberg.table.locations import load_location_provider

from cold_assets.internals import check_pyarrow_schema_compatible, parquet_writer_kwargs

ROW_GROUP_ROWS = 64 * 1024
PARQUET_FIELD_ID = b"PARQUET:field_id"
# The offload names its files `<range>-<table>-<split value>-<uuid hex>.parquet` (a file it
# splits, `rewrite-<table>-...`); Spark's writer names its own
# `<task>-<attempt>-<uuid with dashes>-<n>-<file>.parquet`.
_OFFLOAD_FILE_NAME = re.compile(r"-[0-9a-f]{32}\.parquet$")


def written_by_offload(path: str) -> bool:
    """Whether a data file is one the hourly offload wrote (with its fast codec; compaction has
    not rewritten it)."""
    return _OFFLOAD_FILE_NAME.search(path) is not None


# A table property of the files kept for years that the hot path does not apply (see
# parquet_options): files the offload wrote into such a table are re-encoded by compaction.
LONG_TERM_ONLY_PROPERTY = "write.parquet.compression-level"


def reencodes_offload_files(table_properties: dict[str, str]) -> bool:
    """Whether the table keeps a long-term encoding its offload files do not have."""
    return LONG_TERM_ONLY_PROPERTY in table_properties


def parquet_options(table_properties: dict[str, str], schema: pa.Schema) -> dict:
    """Writer options: the table's write.parquet.* properties as pyiceberg applies them (but
    its compression level), and
    delta encoding for integer and timestamp columns (ids, event times), which are sorted or
    nearly so within a file and shrink several-fold with it."""
    options = parquet_writer_kwargs(table_properties)
    options.pop("write_batch_size", None)
    # The table's compression level is for the files kept for years, which the nightly
    # compaction writes once; the hot path keeps the codec's fast default.
    options.pop("compression_level", None)  # LONG_TERM_ONLY_PROPERTY
    delta = [f.name for f in schema if pa.types.is_int64(f.type) or pa.types.is_timestamp(f.type)]
    options["use_dictionary"] = [f.name for f in schema if f.name not in delta]
    options["column_encoding"] = {name: "DELTA_BINARY_PACKED" for name in delta}
    return options


def with_field_ids(schema: pa.Schema, table: Table) -> pa.Schema:
    """The stream's schema with each column tagged by its Iceberg field id."""
    iceberg = table.schema()
    return pa.schema(
        [f.with_metadata({PARQUET_FIELD_ID: str(iceberg.find_field(f.name).field_id).encode()}) for f in schema]
    )


class DataFileFormat:
    """What every data file of one commit shares: the schema (with field ids), the writer
    options, where files go, and how a file is described for the commit. Worked out once:
    pyiceberg's `parquet_file_to_data_file` re-reads each footer and re-checks the schema for
    every file, which cost about 3 ms a file (a backfill writes tens of thousands)."""

    def __init__(self, table: Table, schema: pa.Schema):
        metadata = table.metadata
        self.table = table
        self.schema = with_field_ids(schema, table)
        self.options = parquet_options(table.properties, schema)
        self.locations = load_location_provider(table.location(), table.properties)
        self._iceberg_schema = metadata.schema()
        self._spec = metadata.spec()
        # The check pyiceberg makes of each file it adds, made once for the schema they share.
        check_pyarrow_schema_compatible(self._iceberg_schema, self.schema, format_version=metadata.format_version)
        # A file's partition is derived from its bounds, so the partition columns keep full
        # statistics whatever metrics mode the table sets (`none` would leave them unknown).
        partition_columns = {self._iceberg_schema.find_column_name(f.source_id) for f in self._spec.fields}
        metrics = {**metadata.properties, **{f"write.metadata.metrics.column.{name}": "full" for name in partition_columns}}
        self._stats_columns = compute_statistics_plan(self._iceberg_schema, metrics)
        self._column_mapping = parquet_path_to_id_mapping(self._iceberg_schema)

    def describe(self, path: str, footer: pq.FileMetaData, size: int) -> DataFile:
        """The DataFile of a finished file, from the footer its writer just wrote."""
        statistics = data_file_statistics_from_parquet_metadata(
            parquet_metadata=footer, stats_columns=self._stats_columns, parquet_column_mapping=self._column_mapping
        )
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=statistics.partition(self._spec, self._iceberg_schema),
            file_size_in_bytes=size,
            sort_order_id=None,
            spec_id=self._spec.spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )


@dataclass
class _OpenFile:
    path: str
    writer: pq.ParquetWriter
    stream: OutputStream
    buffered: list[pa.RecordBatch] = field(default_factory=list)
    buffered_rows: int = 0


class DataFileWriter:
    """Writes the batches of one offload range into one Parquet data file per split value."""

    def __init__(self, file_format: DataFileFormat, split_column: str, name_prefix: str):
        self._format = file_format
        self._split = split_column
        self._prefix = name_prefix
        self._open_files: dict[object, _OpenFile] = {}
        self.paths: list[str] = []
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        values = batch.column(self._split)
        # The stream is ordered by the split column: cut the batch where the value changes.
        changes = pc.indices_nonzero(pc.not_equal(values[1:], values[:-1])).to_pylist() if batch.num_rows > 1 else []
        start = 0
        for end in [c + 1 for c in changes] + [batch.num_rows]:
            self._write_run(batch.slice(start, end - start))
            start = end
        self.rows += batch.num_rows

    def _write_run(self, run: pa.RecordBatch) -> None:
        value = run.column(self._split)[0].as_py()
        current = self._open_files.get(value) or self._open(value)
        current.buffered.append(run)
        current.buffered_rows += run.num_rows
        if current.buffered_rows >= ROW_GROUP_ROWS:
            self._flush(current)

    def _open(self, value: object) -> _OpenFile:
        name = f"{self._prefix}-{value}-{uuid.uuid4().hex}.parquet".replace("/", "_")
        path = self._format.locations.new_data_location(data_file_name=name)
        stream = self._format.table.io.new_output(path).create(overwrite=False)
        writer = pq.ParquetWriter(stream, self._format.schema, **self._format.options)
        self.paths.append(path)
        self._open_files[value] = _OpenFile(path, writer, stream)
        return self._open_files[value]

    def _flush(self, current: _OpenFile) -> None:
        if current.buffered:
            table = pa.Table.from_batches(current.buffered).cast(self._format.schema)
            current.writer.write_table(table, row_group_size=max(table.num_rows, 1))
            current.buffered, current.buffered_rows = [], 0

    def close(self) -> list[DataFile]:
        """Finishes the files and describes them for the Iceberg commit (from their footers)."""
        files = []
        for current in self._open_files.values():
            self._flush(current)
            current.writer.close()
            size = current.stream.tell()
            current.stream.close()
            files.append(self._format.describe(current.path, current.writer.writer.metadata, size))
        self._open_files = {}
        return files

    def abort(self) -> None:
        """Removes every file this writer created: used when the commit did not happen."""
        for current in self._open_files.values():
            try:
                current.writer.close()
                current.stream.close()
            except Exception:  # noqa: BLE001 - the files are deleted below anyway
                pass
        self._open_files = {}
        for path in self.paths:
            try:
                self._format.table.io.delete(path)
            except FileNotFoundError:
                pass
