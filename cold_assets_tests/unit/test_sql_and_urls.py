"""Identifiers that reach SQL, the S3 URLs ClickHouse reads, the bookkeeping a commit carries,
and the Parquet options of the hot path."""

import json

import pyarrow as pa
import pytest

from cold_assets.cold.files import parquet_options
from cold_assets.offload.bookkeeping import PARTITIONS, RUN_ID, commit_summary
from cold_assets.parity.checksums import parse_fingerprint, s3_http_url
from cold_assets.warm.read import identifier


@pytest.mark.parametrize("name", ["bronze_trades", "_x1", "gold_ohlcv_1m"])
def test_plain_identifiers_pass(name):
    assert identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "t; DROP TABLE x", "`t`", "t'"])
def test_anything_else_is_refused_before_it_reaches_sql(name):
    with pytest.raises(ValueError, match="not a valid SQL identifier"):
        identifier(name)


def test_s3_locations_map_to_the_endpoint_path_style_or_to_aws_virtual_hosts():
    key = "s3://cold/warehouse/cold/raw_trades/data/a.parquet"
    assert s3_http_url(key, {"s3.endpoint": "http://minio:9000/"}) == "http://minio:9000/cold/warehouse/cold/raw_trades/data/a.parquet"
    assert s3_http_url(key, {"s3.region": "eu-west-1"}) == "https://cold.s3.eu-west-1.amazonaws.com/warehouse/cold/raw_trades/data/a.parquet"
    assert s3_http_url(key, {}) == "https://cold.s3.us-east-1.amazonaws.com/warehouse/cold/raw_trades/data/a.parquet"


def test_a_commit_summary_carries_the_run_and_every_range_it_committed_in_key_order():
    entries = {"2026-03-10-15:00": {"mode": "append", "rows": 2}, "2026-03-10-14:00": {"mode": "append", "rows": 1}}
    summary = commit_summary("run-1", entries)
    assert summary[RUN_ID] == "run-1"
    assert list(json.loads(summary[PARTITIONS])) == ["2026-03-10-14:00", "2026-03-10-15:00"]
    assert json.loads(summary[PARTITIONS])["2026-03-10-15:00"] == {"mode": "append", "rows": 2}


def test_a_fingerprint_is_rows_and_checksum():
    assert parse_fingerprint("120:18446744073709551615") == (120, 2**64 - 1)
    with pytest.raises(ValueError):
        parse_fingerprint("120")


def test_the_hot_path_ignores_the_tables_compression_level_and_delta_encodes_ids_and_times():
    schema = pa.schema([("trade_id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("symbol", pa.string())])
    options = parquet_options({"write.parquet.compression-codec": "zstd", "write.parquet.compression-level": "19"}, schema)
    assert options["compression"] == "zstd" and "compression_level" not in options
    assert options["column_encoding"] == {"trade_id": "DELTA_BINARY_PACKED", "ts": "DELTA_BINARY_PACKED"}
    assert options["use_dictionary"] == ["symbol"]
