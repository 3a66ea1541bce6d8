"""The private APIs cold-assets uses (cold_assets/internals.py), held to the names, fields
and parameters its code relies on: a dependency's new version that changes one fails here,
by name, instead of in a sensor tick or an offload."""

import inspect

import pyarrow as pa
import pytest
from dagster import AssetCheckKey, AssetKey, DailyPartitionsDefinition, asset, define_asset_job
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from cold_assets import internals


def test_the_check_history_reads_records_with_the_fields_and_filters_it_uses():
    parameters = inspect.signature(internals.EventLogStorage.get_asset_check_execution_history).parameters
    assert {"check_key", "limit"} <= set(parameters)  # check_history.new_evaluations
    fields = list(inspect.signature(internals.AssetCheckExecutionRecord).parameters)
    assert {"id", "run_id", "status", "event", "create_timestamp"} <= set(fields)
    assert {s.value for s in internals.COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES} == {"SUCCEEDED", "FAILED"}
    assert AssetCheckKey(AssetKey(["cold", "raw_trades"]), "row_count_parity").name == "row_count_parity"


def test_the_backfill_filter_takes_statuses_and_requested_is_one():
    requested = internals.BulkActionsFilter(statuses=[internals.BulkActionStatus.REQUESTED])
    assert requested.statuses == [internals.BulkActionStatus.REQUESTED]


def test_define_asset_job_returns_the_type_the_offload_job_is_annotated_with():
    @asset(partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
    def a() -> None: ...

    assert isinstance(define_asset_job("j", selection=[a]), internals.UnresolvedAssetJobDefinition)


def test_pyiceberg_maps_the_parquet_properties_and_checks_arrow_schemas_as_files_does():
    options = internals.parquet_writer_kwargs({"write.parquet.compression-codec": "zstd"})
    assert options["compression"] == "zstd" and "write_batch_size" in options  # files.parquet_options pops it
    parameters = inspect.signature(internals.check_pyarrow_schema_compatible).parameters
    assert list(parameters)[:2] == ["requested_schema", "provided_schema"] and "format_version" in parameters
    schema = Schema(NestedField(1, "trade_id", LongType(), required=True))
    internals.check_pyarrow_schema_compatible(schema, pa.schema([pa.field("trade_id", pa.int64(), nullable=False)]), format_version=2)
    with pytest.raises(ValueError):
        internals.check_pyarrow_schema_compatible(schema, pa.schema([pa.field("other", pa.string())]), format_version=2)
