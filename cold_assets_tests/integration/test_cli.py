"""The cold-assets command, as a user runs it."""

import os
import subprocess
import sys

import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cold_assets.tools.cli", *args], capture_output=True, text=True, timeout=300)


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
    assert "argument --start" in result.stderr and "not on the hour" in result.stderr


def test_simulated_trades_go_into_a_configured_tier_only_when_a_flag_names_it(settings, tmp_path, monkeypatch):
    """Refused before anything is opened: the server below listens nowhere (with the flag the
    command gets as far as connecting), and the configured catalog's file is never created."""
    monkeypatch.setenv("CLICKHOUSE_HOST", "127.0.0.1")
    monkeypatch.setenv("CLICKHOUSE_PORT", str(_free_port()))
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__URI", f"sqlite:///{tmp_path / 'production.db'}")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", "s3://cold/warehouse")
    simulate = ("simulate", "--start", "2026-11-20T10:00", "--hours", "1")
    refused = _cli(*simulate)
    assert refused.returncode == 2, refused.stderr
    assert "simulate writes simulated trades, and the warm tier is the ClickHouse server '127.0.0.1'" in refused.stderr
    assert "--into-server 127.0.0.1" in refused.stderr
    assert _cli(*simulate, "--into-server", "clickhouse.prod").returncode == 2  # a flag naming another server
    assert _cli(*simulate, "--into-server", "127.0.0.1").returncode == 3  # allowed: it tried the server
    monkeypatch.delenv("CLICKHOUSE_HOST")
    monkeypatch.delenv("CLICKHOUSE_PORT")
    monkeypatch.setenv("COLD_WARM", "embedded")
    demo = _cli("demo", "--hours", "1")
    assert demo.returncode == 2 and "and the cold tier is the configured catalog 'iceberg'" in demo.stderr, demo.stderr
    assert "--into-catalog iceberg" in demo.stderr
    assert not (tmp_path / "production.db").exists() and not settings.chdb_path.exists()


def test_audit_and_federate_on_an_empty_home_say_run_init_and_create_nothing(settings):
    window = ("--from", "2026-11-20T00:00", "--to", "2026-11-20T02:00")
    for argv in (("audit", *window), ("federate",)):
        said = _cli(*argv)
        assert said.returncode == 2, said.stderr
        assert "holds no embedded warm tier and no embedded catalog: run `cold-assets init` first" in said.stderr
        assert not settings.chdb_path.exists() and not settings.embedded_catalog_path.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_audit_exit_codes_tell_a_mismatch_from_bad_usage_from_an_unreachable_tier(settings, warm, cold, monkeypatch):
    """0 all equal (and 1 on a mismatch: test_checks), 2 bad usage or configuration, 3 a tier
    that cannot be reached: a scheduler or a runbook must tell these apart."""
    window = ("--from", "2026-11-20T00:00", "--to", "2026-11-20T02:00")
    green = _cli("audit", *window)
    assert green.returncode == 0
    # Which tiers, on one line, before anything else.
    assert green.stderr.startswith(
        f"cold-assets audit: warm chdb:{settings.chdb_path}; cold catalog 'iceberg' (embedded SQLite, warehouse "
    ), green.stderr
    assert _cli("audit", "--from", "yesterday", "--to", "2026-11-20T02:00").returncode == 2
    unknown = _cli("audit", *window, "--table", "platinum_trades")
    assert unknown.returncode == 2 and "unknown cold table 'platinum_trades'" in unknown.stderr
    monkeypatch.setenv("CLICKHOUSE_HOST", "127.0.0.1")
    monkeypatch.setenv("CLICKHOUSE_PORT", str(_free_port()))  # nothing listens there
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__URI", f"sqlite:///{settings.embedded_catalog_path}")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", "s3://cold/warehouse")  # a server reads none on local disk
    unreachable = _cli("audit", *window)
    assert unreachable.returncode == 3 and "a tier cannot be reached" in unreachable.stderr, unreachable.stderr
    for command in ("init", "federate"):  # every command that reads a tier says so alike, without a traceback
        said = _cli(command)
        assert said.returncode == 3 and "a tier cannot be reached" in said.stderr and "Traceback" not in said.stderr, said.stderr
    monkeypatch.delenv("CLICKHOUSE_HOST")
    monkeypatch.delenv("CLICKHOUSE_PORT")
    monkeypatch.setenv("COLD_WARM", "embedded")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__URI", f"postgresql+psycopg2://nobody:s3cret@127.0.0.1:{_free_port()}/nowhere")
    down = _cli("audit", *window)
    assert down.returncode == 3 and "cold catalog 'iceberg' (sql, warehouse" in down.stderr, down.stderr
    assert "s3cret" not in down.stdout + down.stderr  # the catalog's URI carries its password: never printed


def test_settings_treat_empty_variables_as_unset_and_refuse_malformed_ones(settings, monkeypatch):
    from cold_assets.settings import Settings

    for name in ("CLICKHOUSE_HOST", "CLICKHOUSE_USER", "CLICKHOUSE_DATABASE", "CLICKHOUSE_SECURE", "COLD_CATALOG",
                 "COLD_SPARK_MASTER", "COLD_SPARK_PACKAGES", "COLD_SETTLE_LAG_SECONDS", "COLD_PARTITIONS_START"):
        monkeypatch.setenv(name, "")
    empty = Settings.from_env()
    assert empty.clickhouse_host is None and empty.clickhouse_user == "default" and empty.clickhouse_database == "default"
    assert empty.catalog_name == "iceberg" and empty.spark_master == "local[2]" and empty.spark_packages is None
    assert empty.settle_lag_seconds == 30 and empty.partitions_start is None and not empty.clickhouse_secure
    monkeypatch.setenv("COLD_SPARK_CONF", "spark.sql.shuffle.partitions=8,spark.ui.enabled")
    with pytest.raises(ValueError, match=r"COLD_SPARK_CONF: 'spark.ui.enabled' is not key=value"):
        Settings.from_env()
    monkeypatch.setenv("COLD_SPARK_CONF", "=8")
    with pytest.raises(ValueError, match=r"COLD_SPARK_CONF: '=8' is not key=value"):
        Settings.from_env()


def _tree_digest(root) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.runs_for(52)
def test_bench_and_the_archive_warm_up_never_touch_a_configured_catalog(settings, tmp_path, monkeypatch):
    """A throwaway SQLite catalog stands in for production, configured the way production is
    (PYICEBERG_CATALOG__*): a benchmark and the class-data archive's warm-up (`cold-assets
    jars`) must leave it byte for byte as it was."""
    import os

    production = tmp_path / "production"
    monkeypatch.setenv("COLD_WARM", "embedded")  # init fills the catalog from the embedded warm tier
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__URI", f"sqlite:///{production / 'catalog.db'}")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", (production / "warehouse").as_uri())
    production.mkdir()
    assert _cli("init").returncode == 0
    before = _tree_digest(production)
    assert any(name.endswith(".metadata.json") for name in before)
    bench = _cli("bench", "--rows", "20000", "--skip-dagster", "--home", str(tmp_path / "bench"))
    assert bench.returncode == 0, bench.stderr[-2000:]
    (tmp_path / "cds").mkdir()
    # The pinned jars without their archive, as `cold-assets jars` has them when it builds one.
    jars = tmp_path / "jars"
    jars.mkdir()
    for jar in settings.spark_jars_dir.glob("*.jar"):
        (jars / jar.name).symlink_to(jar)
    monkeypatch.setenv("COLD_SPARK_JARS_DIR", str(jars))
    warm_up = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "cold_assets.maintenance.class_data",
            str(tmp_path / "cds"),
            str(tmp_path / "cds" / "probe.jsa"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )
    assert warm_up.returncode == 0, warm_up.stderr[-2000:]
    assert _tree_digest(production) == before


@pytest.mark.runs_for(70)
def test_bench_sensors_builds_its_history_once_and_ticks_both_sensors(settings, tmp_path):
    """A day at a low rate, from a build stopped after 9 hours: the command feeds on from there
    (no trade id twice), prints both sensors' ticks and the baseline; a second run under the
    same --state reuses the history, and one asking for other figures is refused."""
    import json
    from datetime import datetime, timedelta
    from pathlib import Path

    from cold_assets.defs.resources import ClickHouseResource
    from cold_assets.settings import Settings, throwaway
    from cold_assets.tools.bench import build_bench_warm
    from cold_assets.tools.bench_history import history_window
    from cold_assets.tools.bench_sensors import PLAN

    state = str(tmp_path / "state")
    stopped = throwaway(Settings.from_env(), Path(state))
    Path(state).mkdir()
    start = history_window(1)[0]
    (Path(state) / PLAN).write_text(json.dumps({"days": 1, "trades_per_hour": 2000, "start": start.isoformat()}))
    build_bench_warm(stopped, 2000, 9, False, start=start)  # what the stopped build had fed

    first = _cli("bench", "sensors", "--days", "1", "--trades-per-hour", "2000", "--state", state)
    assert first.returncode == 0, first.stderr[-2000:]
    figures = json.loads(first.stdout[first.stdout.index("{"):])
    assert figures["build"]["resumed"]["after_hours"] == 9
    with ClickHouseResource.from_settings(stopped).connect() as client:
        hours, trades = client.query(
            "SELECT uniqExact(toStartOfHour(exchange_ts)), uniqExact(exchange, symbol, trade_id) FROM trades_raw"
        ).result_rows[0]
        bronze = client.query("SELECT count() FROM bronze_trades").result_rows[0][0]
    # Every hour of the day fed, 2,000 trades each: trade ids that started again would collapse.
    built = figures["build"]
    expected = int((datetime.fromisoformat(built["end"]) - datetime.fromisoformat(built["start"])) / timedelta(hours=1))
    assert hours == expected >= 21 and trades == 2000 * expected
    assert figures["build"]["cold_rows_written"]["bronze_trades"] == bronze
    assert set(figures["tick_s"]) == {"self_healing", "ttl_guard"}
    assert set(figures["look_s"]) == set(figures["baseline_look_cold_counts_from_data_files_s"]) == {"self_healing", "ttl_guard"}
    # The baseline's switch took: the manifests answered cold's counts in the look only.
    assert figures["cold_hours_counted_from_manifests"]["look"] > 0
    assert figures["cold_hours_counted_from_manifests"]["baseline"] == 0
    assert figures["build"]["cold_rows_written"]["raw_trades"] > 30_000
    again = _cli("bench", "sensors", "--days", "1", "--trades-per-hour", "2000", "--state", state)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout[again.stdout.index("{"):])["build"] == figures["build"]
    other = _cli("bench", "sensors", "--days", "2", "--trades-per-hour", "2000", "--state", state)
    assert other.returncode == 2 and "holds 1 days at 2000 trades/h" in other.stderr


def test_the_wheel_carries_the_ddl_and_reads_it_from_itself(installed, tmp_path):
    """Installed from a wheel, outside the repository: ddl_dir() is inside the installed
    package (`demo` runs from the same install: test_demo)."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
    shipped = {f"cold_assets/ddl/{p.relative_to(root / 'ddl')}" for p in (root / "ddl").rglob("*") if p.is_file()}
    assert shipped and shipped <= names, shipped - names
    env = {k: v for k, v in os.environ.items() if k != "COLD_DDL_DIR"}
    said = subprocess.run([str(installed.python), "-c", "import cold_assets.settings as s; print(s.ddl_dir())"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    ddl = Path(said.stdout.strip())
    assert ddl.is_dir() and root not in ddl.parents and "site-packages" in ddl.parts, said.stderr
    version = subprocess.run([str(installed.cli), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("cold-assets "), version.stderr
