"""The production storage on a real (throwaway) PostgreSQL: a Dagster instance from the
repository's own docker/dagster.yaml (dagster-postgres) and the Iceberg SqlCatalog on the same
server, through the offload, its checks and a Spark maintenance run (JDBC catalog)."""

import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from cold_assets.cold.ddl import ensure_cold_tables
from cold_assets.definitions import build_definitions
from cold_assets.defs.checks import COMPACTION_PRESERVED_CONTENT
from cold_assets.defs.nightly import COMPACTION_JOB
from cold_assets.defs.resources import IcebergResource
from cold_assets.defs.schedules import OFFLOAD_JOB
from cold_assets.maintenance.operations import file_stats
from cold_assets.partitions import hour_of
from cold_assets.settings import Settings
from cold_assets.tables import table_by_cold_name
from cold_assets_tests.support.offload_helpers import KEYS, assert_tiers_equal, check_results, feed
from cold_assets_tests.support.throwaway_postgres import throwaway_postgres

ROOT = Path(__file__).resolve().parents[2]
SILVER = table_by_cold_name("silver_trades")
HOURS = [hour_of(k) for k in KEYS]


@pytest.fixture(scope="module")
def postgres():
    with throwaway_postgres(databases=("dagster", "iceberg")) as server:
        yield server


def test_offload_checks_and_maintenance_on_dagster_postgres_and_a_postgresql_catalog(settings, warm, postgres, monkeypatch, tmp_path):
    monkeypatch.setenv("COLD_WARM", "embedded")  # the embedded warm tier beside a real catalog, on purpose
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__TYPE", "sql")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__URI", postgres.url("iceberg"))
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", (tmp_path / "warehouse").as_uri())
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres.url("dagster"))
    settings = Settings.from_env()
    cold = IcebergResource.from_settings(settings)
    assert not cold.embedded
    assert cold.catalog().properties["uri"].startswith("postgresql+psycopg2://")
    ensure_cold_tables(cold.catalog())
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "docker" / "dagster.yaml", home / "dagster.yaml")  # the production instance file itself
    instance = DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"

    feed(warm, hours=len(KEYS), trades_per_hour=300)
    defs = build_definitions(settings)
    offload = defs.resolve_job_def(OFFLOAD_JOB).execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]},
    )
    assert offload.success
    checks = check_results(instance, offload.run_id)
    assert len(checks) == 20 and all(checks.values())
    assert_tiers_equal(warm, cold, HOURS)
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(["cold", "bronze_trades"]), asset_partitions=[KEYS[1]]), limit=1
    ).records
    assert records and records[0].asset_materialization.metadata["offload"].value[KEYS[1]]["cold_rows"] > 0

    maintenance = defs.resolve_job_def(COMPACTION_JOB).execute_in_process(
        instance=instance,
        run_config={"ops": {"compact_cold_tables": {"config": {"tables": ["silver_trades"], "lookback_days": 3650}}}},
    )
    assert maintenance.success
    assert check_results(instance, maintenance.run_id) == {("silver_trades", COMPACTION_PRESERVED_CONTENT): True}
    stats = file_stats(cold.catalog().load_table(SILVER.cold_identifier), SILVER)
    assert stats.max_files_per_partition == 1
    assert_tiers_equal(warm, cold, HOURS, tables=[SILVER])
