"""Fixtures on real parts: chDB (the ClickHouse engine, through clickhouse-connect), a
SQLite Iceberg catalog with its warehouse on disk, under a per-test COLD_HOME."""

import os
from pathlib import Path

import pytest

from cold_assets.cold_ddl import ensure_cold_tables
from cold_assets.resources import ClickHouseResource, IcebergResource
from cold_assets.settings import Settings
from cold_assets.warm_ddl import apply_warm_ddl

from cold_assets_tests.offload_helpers import PARTITIONS_START

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("COLD_HOME", str(tmp_path / "cold"))
    # Tests insert and offload within milliseconds; production keeps the 30 s default.
    monkeypatch.setenv("COLD_SETTLE_LAG_SECONDS", "0")
    monkeypatch.setenv("COLD_PARTITIONS_START", PARTITIONS_START)
    # The Spark jars are provisioned once per checkout (`make jars`), not per test.
    monkeypatch.setenv("COLD_SPARK_JARS_DIR", os.environ.get("COLD_SPARK_JARS_DIR") or str(REPO / ".cold" / "spark-jars"))
    for name in list(os.environ):
        if name.startswith(("CLICKHOUSE_", "PYICEBERG_CATALOG__")):
            monkeypatch.delenv(name)
    return Settings.from_env()


@pytest.fixture
def warm(settings: Settings) -> ClickHouseResource:
    """The embedded warm tier with the medallion applied."""
    resource = ClickHouseResource.from_settings(settings)
    with resource.connect() as client:
        apply_warm_ddl(client)
    return resource


@pytest.fixture
def cold(settings: Settings) -> IcebergResource:
    """The embedded cold tier with the nine tables created."""
    resource = IcebergResource.from_settings(settings)
    ensure_cold_tables(resource.catalog())
    return resource
