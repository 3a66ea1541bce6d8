"""The code location loads, validates, and shows the warm medallion's lineage."""

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

from dagster import AssetKey

ROOT = Path(__file__).resolve().parents[1]


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
    assert len(warm) == 9
    parents = {key.path[1]: {p.path[1] for p in graph.get(key).parent_keys} for key in warm}
    assert parents["trades_raw"] == set()
    assert parents["bronze_trades"] == {"trades_raw"}
    assert parents["silver_trades"] == {"bronze_trades"}
    for window in ("1m", "5m", "15m", "30m", "1h", "1d"):
        assert parents[f"gold_ohlcv_{window}"] == {"silver_trades"}
    assert graph.get(AssetKey(["warm", "trades_raw"])).group_name == "warm"


def test_dagster_validates_the_workspace(settings, tmp_path):
    # Run outside the repo: dagster would read the production dagster.yaml from the cwd.
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_schedule_requests_the_previous_and_the_current_hour_every_15_minutes(settings):
    from datetime import datetime, timezone

    from dagster import build_schedule_context

    from cold_assets.definitions import build_definitions

    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("offload_every_15_minutes")
    assert schedule.cron_schedule == "*/15 * * * *" and schedule.execution_timezone == "UTC"
    context = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 10, 45, tzinfo=timezone.utc))
    requests = list(schedule(context))
    assert [r.partition_key for r in requests] == ["2026-11-20-09:00", "2026-11-20-10:00"]
    assert len({r.run_key for r in requests}) == 2


def test_cold_assets_are_hourly_with_a_backfill_policy_of_few_runs(settings):
    from dagster import AssetKey

    from cold_assets.definitions import build_definitions

    graph = build_definitions(settings).resolve_asset_graph()
    cold = [k for k in graph.get_all_asset_keys() if k.path[0] == "cold"]
    assert len(cold) == 9
    node = graph.get(AssetKey(["cold", "bronze_trades"]))
    assert node.group_name == "cold"
    assert {p.path[1] for p in node.parent_keys} == {"bronze_trades"}
    assert node.backfill_policy.max_partitions_per_run == 168  # 30 days = 5 runs
    keys = node.partitions_def.get_partition_keys(current_time=datetime_utc(2026, 12, 1))
    assert keys[0] == "2026-11-01-00:00" and keys[-1] == "2026-12-01-00:00"  # the open hour too


def datetime_utc(*args):
    from datetime import datetime, timezone

    return datetime(*args, tzinfo=timezone.utc)
