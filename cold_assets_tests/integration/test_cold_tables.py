"""The nine cold Iceberg tables: created from ddl/iceberg, evolved additively, conflicts refused."""

from dataclasses import replace
from datetime import timedelta

import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from cold_assets.cold.ddl import ColdTableConflict, ensure_cold_tables, load_definitions
from cold_assets.tables import TABLES
from cold_assets.warm.read import read_columns, read_query
from cold_assets_tests.support.offload_helpers import START


def test_init_creates_the_nine_tables_as_ddl_iceberg_declares_them(cold):
    catalog = cold.catalog()
    definitions = load_definitions()
    assert sorted(t[1] for t in catalog.list_tables("cold")) == sorted(t.cold for t in TABLES)
    for name, d in definitions.items():
        table = catalog.load_table(("cold", name))
        assert table.metadata.format_version == 2
        assert [(f.name, f.field_type, f.required) for f in table.schema().fields] == [
            (f.name, f.field_type, f.required) for f in d.schema.fields
        ]
        spec = [(table.schema().find_column_name(f.source_id), str(f.transform)) for f in table.spec().fields]
        assert tuple(spec) == d.partitioning
        assert table.properties["write.parquet.compression-codec"] == "zstd"
        assert table.properties["write.metadata.delete-after-commit.enabled"] == "true"
    by_layer = {name: d.partitioning for name, d in definitions.items()}
    assert by_layer["raw_trades"] == (("exchange_ts", "hour"), ("exchange", "identity"))
    assert by_layer["silver_trades"] == (("exchange_ts", "day"), ("exchange", "identity"))
    assert by_layer["gold_ohlcv_1m"] == (("window_start", "month"), ("exchange", "identity"))
    # A second init changes nothing.
    before = {name: catalog.load_table(("cold", name)).metadata_location for name in definitions}
    assert {p.action for p in ensure_cold_tables(catalog)} == {"unchanged"}
    assert before == {name: catalog.load_table(("cold", name)).metadata_location for name in definitions}


def test_cold_columns_mirror_the_warm_tables_as_the_offload_reads_them(warm, cold):
    """The Arrow schema of each warm read query is the Iceberg schema of its cold table."""
    catalog = cold.catalog()
    hour = START
    with warm.connect() as client:
        for t in TABLES:
            query = read_query(t, read_columns(client, t), hour, hour)
            arrow = client.query_arrow(query.sql + " LIMIT 0", parameters=query.parameters).schema
            iceberg = catalog.load_table(t.cold_identifier).schema().as_arrow()
            assert _shape(arrow) == _shape(iceberg), t.cold


def _shape(schema: pa.Schema) -> list[tuple]:
    # pyiceberg renders strings as large_string; the width of the offsets is not a type difference.
    return [(f.name, pa.string() if f.type == pa.large_string() else f.type, f.nullable) for f in schema]


def test_a_new_optional_column_is_added_and_a_conflict_is_refused_untouched(cold, monkeypatch):
    catalog = cold.catalog()
    definitions = load_definitions()
    raw = definitions["raw_trades"]
    # Additive: a new optional column in ddl/iceberg is added, nothing else changes.
    wider = replace(raw, schema=Schema(*raw.schema.fields, NestedField(99, "venue_region", StringType(), required=False)))
    monkeypatch.setattr("cold_assets.cold.ddl.load_definitions", lambda: {**definitions, "raw_trades": wider})
    plans = {p.definition.name: p for p in ensure_cold_tables(catalog)}
    assert plans["raw_trades"].action == "evolve"
    assert [f.name for f in plans["raw_trades"].add_columns] == ["venue_region"]
    assert catalog.load_table(("cold", "raw_trades")).schema().find_field("venue_region").required is False
    assert {p.action for name, p in plans.items() if name != "raw_trades"} == {"unchanged"}

    # Conflict: price as a long instead of a string. Refused, naming table and difference.
    fields = [NestedField(f.field_id, f.name, LongType() if f.name == "price" else f.field_type, f.required) for f in wider.schema.fields]
    conflicting = replace(wider, schema=Schema(*fields))
    # ...a required column that does not exist yet in bronze, and a valid additive change in
    # silver that must not be applied either: init changes nothing when any table conflicts.
    bronze, silver = definitions["bronze_trades"], definitions["silver_trades"]
    bronze_more = replace(bronze, schema=Schema(*bronze.schema.fields, NestedField(98, "fee", LongType(), required=True)))
    silver_more = replace(silver, schema=Schema(*silver.schema.fields, NestedField(97, "note", StringType(), required=False)))
    monkeypatch.setattr(
        "cold_assets.cold.ddl.load_definitions",
        lambda: {**definitions, "raw_trades": conflicting, "bronze_trades": bronze_more, "silver_trades": silver_more},
    )
    locations = {n: catalog.load_table(("cold", n)).metadata_location for n in definitions}
    with pytest.raises(ColdTableConflict) as refused:
        ensure_cold_tables(catalog)
    assert "cold.raw_trades conflicts with ddl/iceberg: column price is string in the table, long in ddl/iceberg" in str(refused.value)
    assert "cold.bronze_trades conflicts with ddl/iceberg: column fee is missing and is required" in str(refused.value)
    assert "silver" not in str(refused.value)
    assert locations == {n: catalog.load_table(("cold", n)).metadata_location for n in definitions}


def test_a_partitioning_change_is_refused(cold, monkeypatch):
    catalog = cold.catalog()
    definitions = load_definitions()
    daily = replace(definitions["raw_trades"], partitioning=(("exchange_ts", "day"), ("exchange", "identity")))
    monkeypatch.setattr("cold_assets.cold.ddl.load_definitions", lambda: {**definitions, "raw_trades": daily})
    location = catalog.load_table(("cold", "raw_trades")).metadata_location
    with pytest.raises(ColdTableConflict, match=r"cold.raw_trades .*partitioning is .*hour.* in the table, .*day"):
        ensure_cold_tables(catalog)
    assert catalog.load_table(("cold", "raw_trades")).metadata_location == location


def test_the_offload_describes_its_files_as_pyiceberg_reads_them_back(warm, cold):
    """DataFileFormat describes each file from the footer its writer just wrote, with the
    schema checked once; pyiceberg's parquet_file_to_data_file re-reads the file. The two
    descriptions (size, rows, partition, per-column counts and bounds) are the same."""
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    from cold_assets.cold.files import DataFileFormat, DataFileWriter
    from cold_assets.tables import table_by_cold_name
    from cold_assets.tools.simulate import FeedConfig, simulate

    catalog = cold.catalog()
    for name in ("bronze_trades", "silver_trades", "gold_ohlcv_1m"):
        spec = table_by_cold_name(name)
        table = catalog.load_table(spec.cold_identifier)
        with warm.connect() as client:
            if name == "bronze_trades":
                simulate(client, FeedConfig(start=START, hours=1, trades_per_hour=500))
            query = read_query(spec, read_columns(client, spec), START, START + timedelta(hours=1))
            arrow = client.query_arrow(query.sql, parameters=query.parameters)
        writer = DataFileWriter(DataFileFormat(table, arrow.schema), spec.split_column, f"test-{name}")
        for batch in arrow.to_batches(max_chunksize=97):
            writer.write(batch)
        described = writer.close()
        assert len(described) == 2 and sum(f.record_count for f in described) == arrow.num_rows
        for data_file in described:
            expected = parquet_file_to_data_file(table.io, table.metadata, data_file.file_path)
            for attribute in ("file_size_in_bytes", "record_count", "partition", "column_sizes", "value_counts",
                              "null_value_counts", "nan_value_counts", "lower_bounds", "upper_bounds", "split_offsets"):
                assert getattr(data_file, attribute) == getattr(expected, attribute), (name, attribute)

