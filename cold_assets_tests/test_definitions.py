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
