"""The code location loads, validates, and shows the warm medallion's lineage."""

import importlib
import os
import subprocess
import sys
import warnings
from datetime import UTC
from pathlib import Path

import pytest
from dagster import AssetKey

ROOT = Path(__file__).resolve().parents[2]


def _load_defs():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.reload(importlib.import_module("cold_assets.definitions"))
    ours = [w for w in caught if "cold_assets" in str(w.filename) and issubclass(w.category, DeprecationWarning)]
    return module.defs, ours


def test_definitions_load_without_deprecation_warnings_from_our_code(settings):
    defs, ours = _load_defs()
    assert ours == []
    defs.resolve_all_job_defs()


def test_warm_medallion_lineage(settings):
    defs, _ = _load_defs()
    graph = defs.resolve_asset_graph()
    warm = {key for key in graph.get_all_asset_keys() if key.path[0] == "warm"}
    assert len(warm) == 10
    parents = {key.path[1]: {p.path[1] for p in graph.get(key).parent_keys} for key in warm}
    assert parents["trades_raw"] == set()
    assert parents["trades_rejects"] == {"trades_raw"}
    assert parents["bronze_trades"] == {"trades_raw"}
    assert parents["silver_trades"] == {"bronze_trades"}
    for window in ("1m", "5m", "15m", "30m", "1h", "1d"):
        assert parents[f"gold_ohlcv_{window}"] == {"silver_trades"}
    assert graph.get(AssetKey(["warm", "trades_raw"])).group_name == "warm"


def test_dagster_validates_the_workspace(settings, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


@pytest.mark.parametrize("command", [["dagster", "dev"], ["dg", "dev"]], ids=["dagster-dev", "dg-dev"])
def test_dev_in_the_repository_root_runs_on_the_local_instance_of_make_demo(settings, tmp_path, command):
    """What `dagster dev` and `dg dev` find in the root (dagster.yaml, workspace.yaml and
    pyproject.toml's [tool.dg], copied to a folder of the test's own with the package linked in,
    so that the checkout's .cold stays untouched): they serve the code location and keep its
    storage under .cold/dagster, where `make demo`'s instance is."""
    import json
    import shutil
    import socket
    import time
    import urllib.request

    import yaml

    from cold_assets.tools.instance import EMBEDDED_INSTANCE_YAML

    root_instance = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    embedded = yaml.safe_load(EMBEDDED_INSTANCE_YAML)
    assert {k: root_instance[k] for k in embedded} == embedded  # one instance, two spellings of it
    for name in ("dagster.yaml", "workspace.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "cold_assets").symlink_to(ROOT / "cold_assets")  # dg looks for the root module in the project
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"COLD_HOME": str(tmp_path / ".cold")}
    log = open(tmp_path / "dev.log", "w")
    dev = subprocess.Popen([str(Path(sys.executable).parent / command[0]), *command[1:], "-p", str(port)],
                           cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql",
                data=json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    entries = json.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    break
            except OSError:
                pass
            assert dev.poll() is None and time.monotonic() < deadline, (tmp_path / "dev.log").read_text()[-3000:]
            time.sleep(1)
        assert entries == [{"name": "cold_assets", "loadStatus": "LOADED"}]
        assert (tmp_path / ".cold" / "dagster" / "history" / "runs.db").exists()
        assert not list(tmp_path.glob(".tmp_dagster_home_*/history"))  # nothing stored in dagster's temporary home
    finally:
        if dev.poll() is None:  # a process that died already has its cause in the assertion above
            os.killpg(dev.pid, 15)
        dev.wait(30)
        log.close()


def test_schedule_requests_the_previous_and_the_current_hour_every_15_minutes(settings):
    from datetime import datetime

    from dagster import build_schedule_context

    from cold_assets.definitions import build_definitions

    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("offload_every_15_minutes")
    assert schedule.cron_schedule == "*/15 * * * *" and schedule.execution_timezone == "UTC"
    context = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 10, 45, tzinfo=UTC))
    (request,) = list(schedule(context))  # one run per tick: the previous and the current hour
    assert request.tags["dagster/asset_partition_range_start"] == "2026-11-20-09:00"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-11-20-10:00"
    later = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 11, 0, tzinfo=UTC))
    assert next(iter(schedule(later))).run_key != request.run_key


def test_cold_assets_are_hourly_with_a_backfill_policy_of_few_runs(settings):
    from dagster import AssetKey

    from cold_assets.definitions import build_definitions

    graph = build_definitions(settings).resolve_asset_graph()
    cold = [k for k in graph.get_all_asset_keys() if k.path[0] == "cold"]
    assert len(cold) == 10
    node = graph.get(AssetKey(["cold", "bronze_trades"]))
    assert node.group_name == "cold"
    assert {p.path[1] for p in node.parent_keys} == {"bronze_trades"}
    assert node.backfill_policy.max_partitions_per_run == 168  # 30 days = 5 runs
    keys = node.partitions_def.get_partition_keys(current_time=datetime_utc(2027, 1, 1))
    assert keys[0] == os.environ["COLD_PARTITIONS_START"] and keys[-1] == "2027-01-01-00:00"  # the open hour too


def datetime_utc(*args):
    from datetime import datetime

    return datetime(*args, tzinfo=UTC)


def test_nightly_jobs_run_in_order_compaction_expiry_audit_and_the_offload_leaves_their_check_out(settings):
    import yaml

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.checks import COMPACTION_PRESERVED_CONTENT
    from cold_assets.defs.nightly import COMPACTION_JOB, DAILY_AUDIT_JOB, EXPIRY_JOB, NIGHTLY_TAG
    from cold_assets.defs.schedules import OFFLOAD_JOB

    defs = build_definitions(settings)
    crons = {s.job_name: s.cron_schedule for s in defs.schedules}
    assert (crons[COMPACTION_JOB], crons[EXPIRY_JOB], crons[DAILY_AUDIT_JOB]) == ("0 2 * * *", "20 2 * * *", "30 2 * * *")
    for name in (COMPACTION_JOB, EXPIRY_JOB, DAILY_AUDIT_JOB):
        assert NIGHTLY_TAG in defs.resolve_job_def(name).tags
    limits = yaml.safe_load((ROOT / "docker" / "dagster.yaml").read_text())["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": NIGHTLY_TAG, "limit": 1} in limits
    offload = defs.resolve_job_def(OFFLOAD_JOB)
    checks = {k.name for k in offload.asset_layer.asset_graph.asset_check_keys}
    assert COMPACTION_PRESERVED_CONTENT not in checks and "row_count_parity" in checks
    graph = defs.resolve_asset_graph()
    assert COMPACTION_PRESERVED_CONTENT in {k.name for k in graph.asset_check_keys}  # shown on every cold asset
    assert defs.resolve_job_def(COMPACTION_JOB).executor_def.name == "in_process"


def test_without_a_configured_start_the_partitions_begin_the_warm_retention_back_and_stay(settings, monkeypatch):
    """A fresh demo shows the weeks warm holds, not every hour since a fixed date; and the start,
    chosen once, never moves (no partition drops out of the definition as days pass)."""
    from datetime import datetime, timedelta

    from cold_assets.partitions import hour_of, hourly_partitions
    from cold_assets.settings import Settings

    monkeypatch.delenv("COLD_PARTITIONS_START")
    unset = Settings.from_env()
    partitions = hourly_partitions(unset)
    first = hour_of(partitions.get_first_partition_key())
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert first == today - timedelta(days=unset.warm_retention_days)
    assert 24 * 30 <= len(partitions.get_partition_keys()) <= 24 * 31 + 1
    (unset.home / "partitions_start").write_text("2026-11-01-00:00\n")  # as if chosen earlier
    assert hourly_partitions(Settings.from_env()).get_first_partition_key() == "2026-11-01-00:00"
