"""The cold-assets command, as a user runs it."""

import subprocess
import sys

from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cold_assets.cli", *args], capture_output=True, text=True, timeout=300)


def test_init_twice_then_a_conflicting_table_is_refused_with_a_clear_error(settings, cold):
    first = _cli("init")
    assert first.returncode == 0, first.stderr
    assert "cold.raw_trades: unchanged" in first.stdout
    # Someone created cold.silver_trades differently: init refuses and names table and difference.
    catalog = cold.catalog()
    catalog.drop_table(("cold", "silver_trades"))
    catalog.create_table(("cold", "silver_trades"), schema=Schema(NestedField(1, "trade_id", LongType(), required=True)))
    location = catalog.load_table(("cold", "silver_trades")).metadata_location
    refused = _cli("init")
    assert refused.returncode == 2
    assert "cold.silver_trades conflicts with ddl/iceberg: column exchange is missing and is required" in refused.stderr
    assert catalog.load_table(("cold", "silver_trades")).metadata_location == location


def test_simulate_refuses_a_bad_start(settings):
    result = _cli("simulate", "--start", "2026-11-20T10:30", "--hours", "1")
    assert result.returncode == 2
    assert "start must be on the hour" in result.stderr
