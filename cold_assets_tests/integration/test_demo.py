"""`cold-assets demo` (what `make demo` runs), twice, then the audit over the demo's hours, all
with the production settle lag: the audit runs while the demo's rows are still in flight."""

import json
import re
import subprocess
from datetime import datetime, timedelta


def _cli(installed, cwd, *args):
    """The command as a user runs it: the console script of the wheel's install, outside the
    repository (support/installed.py)."""
    return subprocess.run([str(installed.cli), *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def _table_rows(stdout: str) -> dict[str, tuple[int, int]]:
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(raw_trades|trades_rejects|bronze_trades|silver_trades|gold_ohlcv_\w+)\s+(\d+)\s+(\d+)\s+\d+\s+\d+\s+\d+", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return rows


def test_demo_twice_adds_nothing_and_the_audit_of_its_hours_passes(live, installed, tmp_path):
    settings = live
    first = _cli(installed, tmp_path, "demo", "--trades-per-hour", "6000")
    assert first.returncode == 0, first.stderr[-3000:]
    tables = _table_rows(first.stdout)
    # Ten tables, the rejects over the hours the feed was ingested in (they are partitioned by it).
    assert len(tables) == 10 and all(warm == cold > 0 for warm, cold in tables.values()), first.stdout
    second = _cli(installed, tmp_path, "demo", "--trades-per-hour", "6000")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "not simulated again" in second.stdout
    assert _table_rows(second.stdout) == tables
    window = json.loads((settings.home / "demo_window.json").read_text())
    start = datetime.fromisoformat(window["start"])
    audit = _cli(installed, tmp_path, "audit", "--from", start.isoformat(), "--to", (start + timedelta(hours=window["hours"])).isoformat())
    assert audit.returncode == 0, audit.stdout[-3000:]
    assert "60 table-hours checked, 0 mismatched" in audit.stdout
    # The demo offloaded with no settle lag (its feed is complete): its report says so, and
    # the audit, run with the default lag before the rows settled, counts them as in flight.
    assert "settle lag 0 s" in first.stdout
