"""Monitoring on a seeded deployment: one mismatched hour, one cold-only hour (warm has
forgotten it, as its TTL does), rows still arriving in the current hour, the production
settle lag. The exporter is scraped by Debian's real Prometheus, and its status page rendered
by headless Chromium; both must say what the audit says of every (table, hour)."""

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cold_assets.definitions import build_definitions
from cold_assets.defs.nightly import DAILY_AUDIT_JOB
from cold_assets.defs.recovery import RESTORE_JOB
from cold_assets.hours import HourPolicy
from cold_assets.monitoring.exporter import exporter_server
from cold_assets.monitoring.hour_states import HourState
from cold_assets.monitoring.metrics import TierCollector
from cold_assets.monitoring.status_page import render_html
from cold_assets.monitoring.tier_status import TierReader
from cold_assets.parity.audit import run_audit
from cold_assets.parity.checksums import ParityBasis
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.settings import Settings
from cold_assets.tables import TABLES
from cold_assets.tools.instance import embedded_instance
from cold_assets.tools.simulate import FeedConfig, simulate
from cold_assets.tools.webserver import free_port
from cold_assets_tests.support.offload_helpers import insert_late_raw, latest_metadata, op_config, run_offload, settle
from cold_assets_tests.support.webserver_harness import render_page

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".cold" / "test-artifacts"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
RULES = REPO / "docker" / "prometheus" / "cold_assets_rules.yml"


def _floor(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def seeded(settings, warm, cold, monkeypatch):
    """Three hours offloaded; then warm forgets the first (its retention set to 6 days makes it
    cold-only) and loses one raw row of the second; trades of the current hour arrive; the daily
    audit runs as its schedule would. Returns the live settings and the hours."""
    first = _floor(datetime.now(UTC) - timedelta(days=6))
    keys = [partition_key_of(first + timedelta(hours=h)) for h in range(3)]
    with warm.connect() as client:
        simulate(client, FeedConfig(start=first, hours=3, trades_per_hour=2_000))
    settle(warm)  # received ten minutes ago: settled under the production lag too
    run_offload(settings, keys)
    with warm.connect() as client:
        for spec in TABLES:
            if spec.time_column != "ingested_at":  # (the rejects' hours are their ingestion's)
                client.command(
                    f"ALTER TABLE {spec.warm} DELETE WHERE {spec.time_column} < {{h:DateTime64(6, 'UTC')}}",
                    parameters={"h": first + timedelta(hours=1)}, settings={"mutations_sync": 2},
                )
        victim = client.query(
            "SELECT trade_id FROM trades_raw WHERE exchange_ts >= {h:DateTime64(6, 'UTC')} "
            "AND exchange_ts < {h:DateTime64(6, 'UTC')} + INTERVAL 1 HOUR ORDER BY trade_id LIMIT 1",
            parameters={"h": first + timedelta(hours=1)},
        ).result_rows[0][0]
        client.command(
            "ALTER TABLE trades_raw DELETE WHERE trade_id = {t:String}", parameters={"t": victim}, settings={"mutations_sync": 2}
        )
    insert_late_raw(warm, _floor(datetime.now(UTC)), 20, 900_000_000)  # rows still arriving
    monkeypatch.setenv("COLD_WARM_RETENTION_DAYS", "6")
    monkeypatch.delenv("COLD_SETTLE_LAG_SECONDS")  # the production settle lag from here on
    live = Settings.from_env()
    # Before any audit: the hours no run touched were never offloaded; the three were checked.
    before = TierReader(embedded_instance(live), cold.catalog(), live).read()
    raw = next(t for t in before.tables if t.spec.cold == "raw_trades")
    assert raw.hours[keys[2]] is HourState.PROVEN and raw.hours[keys[1]] is HourState.PROVEN
    assert {raw.hours[h] for h in raw.hours if h not in keys} == {HourState.NEVER_OFFLOADED}
    audit_again(live)
    return live, keys


def audit_again(live: Settings) -> None:
    """The daily audit, as its schedule runs it, over the whole status window; it finds the mismatch."""
    job = build_definitions(live).resolve_job_def(DAILY_AUDIT_JOB)
    until = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    audit = job.execute_in_process(
        instance=embedded_instance(live), raise_on_error=False,
        run_config={"ops": {"audit_cold_tier": {"config": {"lookback_days": 9, "until": until}}}},
    )
    assert not audit.success


def audit_states(live: Settings, warm, cold, window: list[str]) -> dict[tuple[str, str], HourState]:
    """The audit's verdict of every (table, hour) of the window, computed here on its own."""
    with warm.connect() as client:
        start = datetime.strptime(window[0], "%Y-%m-%d-%H:%M").replace(tzinfo=UTC)
        report = run_audit(client, cold.catalog(), start, start + timedelta(hours=len(window)), policy=HourPolicy.from_settings(live))
    states = {}
    for p in report.parity:
        if p.cold_only:
            states[(p.table, p.partition_key)] = HourState.COLD_ONLY
        elif not p.content_matches:
            states[(p.table, p.partition_key)] = HourState.MISMATCHED
        else:
            states[(p.table, p.partition_key)] = HourState.PROVEN if p.basis is ParityBasis.WARM_HOUR else HourState.OPEN
    return states


DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "cold-assets.json"


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def served_metric_names(exposition: str) -> set[str]:
    """Every series name the exposition can hold: its families' names, with the suffixes
    Prometheus' text format gives counters and histograms."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names.add(name)
        names.update({"counter": [f"{name}_total", f"{name}_created"], "histogram": [f"{name}_bucket", f"{name}_count", f"{name}_sum"],
                      "info": [f"{name}_info"]}.get(kind, []))
    return names


def _edge(window: list[str]) -> set[str]:
    # The live edge: an hour the audit found open may have closed since (unverified until
    # the next check), and the current hour may have turned over in between.
    return set(window[-2:])


def _serve(collector: TierCollector) -> tuple[str, threading.Thread, object]:
    port = free_port()
    server = exporter_server(f"127.0.0.1:{port}", collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"127.0.0.1:{port}", thread, server


def _prometheus_query(url: str, query: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query}), timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_and_the_status_page_show_every_hour_as_the_audit_judged_it(seeded, warm, cold, tmp_path):
    live, keys = seeded
    reader = TierReader(embedded_instance(live), cold.catalog(), live)
    collector = TierCollector(reader, refresh_seconds=0)  # read on demand first; served, in the background
    status = collector.status()
    window = status.window
    expected = audit_states(live, warm, cold, window)
    shown = {(t.spec.cold, hour): state for t in status.tables for hour, state in t.hours.items()}
    # What the seed made, as the audit says it: the cold-only hour, the mismatched one.
    assert all(expected[(t.cold, keys[0])] is HourState.COLD_ONLY for t in TABLES)
    assert expected[("raw_trades", keys[1])] is HourState.MISMATCHED
    assert expected[("bronze_trades", keys[1])] is HourState.PROVEN
    differing = {
        cell: (shown[cell], expected[cell]) for cell in expected
        if shown[cell] is not expected[cell] and not (cell[1] in _edge(window) and shown[cell] is HourState.UNVERIFIED)
    }
    assert not differing, differing

    collector.refresh_seconds = 1.0
    collector.start()
    address, _, server = _serve(collector)
    try:
        with urllib.request.urlopen(f"http://{address}/-/healthy", timeout=10) as response:
            assert response.status == 200
        # The page, in headless Chromium: each cell's state is the audit's.
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = ARTIFACTS / "status-page.png"
        dom = render_page(f"http://{address}/", screenshot)
        assert screenshot.stat().st_size > 10_000
        cells = {
            (table, hour): HourState(state)
            for table, hour, state in re.findall(r'data-table="([^"]+)" data-hour="([^"]+)" data-state="([^"]+)"', dom)
        }
        assert len(cells) == len(TABLES) * len(window)
        assert {cell: state for cell, state in cells.items() if state is not shown[cell]} == {}
        assert "hours mismatched or refused" in dom

        # Prometheus (Debian's) scrapes the exporter; its API returns the seeded deployment.
        prometheus_port = free_port()
        config = tmp_path / "prometheus.yml"
        shutil.copy(RULES, tmp_path / RULES.name)
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{RULES.name}]\n"
            f"scrape_configs: [{{job_name: cold-assets, static_configs: [{{targets: ['{address}']}}]}}]\n"
        )
        prometheus = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"),
        )
        try:
            url = f"http://127.0.0.1:{prometheus_port}"
            deadline = time.monotonic() + 60
            result: list[dict] = []
            while time.monotonic() < deadline:
                try:
                    result = _prometheus_query(url, 'cold_assets_table_hours{state="mismatched"} > 0')
                except OSError:
                    result = []
                if result:
                    break
                time.sleep(0.5)
            assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
            mismatched = {r["metric"]["table"]: float(r["value"][1]) for r in result}
            expected_mismatched = {
                table: float(sum(1 for (t, _), s in expected.items() if t == table and s is HourState.MISMATCHED))
                for table, _ in expected
            }
            assert mismatched == {t: n for t, n in expected_mismatched.items() if n}
            cold_only = {
                r["metric"]["table"]: float(r["value"][1]) for r in _prometheus_query(url, 'cold_assets_table_hours{state="cold_only"}')
            }
            assert cold_only == {
                t.cold: float(sum(1 for (c, _), s in expected.items() if c == t.cold and s is HourState.COLD_ONLY)) for t in TABLES
            }
            assert _prometheus_query(url, 'up{job="cold-assets"} == 1')
            (build,) = _prometheus_query(url, "cold_assets_build_info")
            assert build["metric"]["clickhouse"] not in ("", "unknown")  # recorded by the audit
            # Freshness: the watermark of each table's newest hour offloaded, as its offload recorded it.
            instance = embedded_instance(live)
            watermarks = {
                r["metric"]["table"]: float(r["value"][1])
                for r in _prometheus_query(url, "cold_assets_table_watermark_timestamp_seconds")
            }
            recorded = {
                t.cold: latest_metadata(instance, t, keys[2])["watermark"] for t in TABLES if t.cold != "trades_rejects"
            }
            assert watermarks.keys() >= recorded.keys()
            assert all(abs(watermarks[table] - value) < 1e-3 for table, value in recorded.items()), (watermarks, recorded)
            behind = {r["metric"]["table"]: float(r["value"][1]) for r in _prometheus_query(url, "cold_assets_table_behind_seconds")}
            assert all(0 <= behind[table] < 3600 for table in recorded), behind

            # The counters start at the exporter's start and count what offloads record after.
            assert all(float(r["value"][1]) == 0 for r in _prometheus_query(url, "cold_assets_offload_rows_total"))
            # Late trades of the previous hour, offloaded at once (no settle lag): one commit.
            previous = _floor(datetime.now(UTC)) - timedelta(hours=1)
            insert_late_raw(warm, previous, 5, 910_000_000)
            run_offload(live, [partition_key_of(previous)], op_config(settle_lag_seconds=0), raise_on_error=False)
            deadline = time.monotonic() + 30
            rows: list[dict] = []
            while time.monotonic() < deadline and not rows:
                rows = _prometheus_query(url, 'cold_assets_offload_hours_total{table="raw_trades"} > 0')
                time.sleep(0.5)
            assert rows
            (histogram,) = _prometheus_query(url, 'cold_assets_offload_duration_seconds_count{table="raw_trades"}')
            assert float(histogram["value"][1]) >= 1
            (commits,) = _prometheus_query(url, 'cold_assets_commit_seconds_count{table="raw_trades"}')
            assert float(commits["value"][1]) == 1  # one commit, whatever the hours it served

            # The rules evaluate on what the exporter serves: the audit's failed run fires its alert,
            # labelled with the nightly job (not Prometheus' own `job`).
            deadline = time.monotonic() + 30
            firing: list[dict] = []
            while time.monotonic() < deadline and not firing:
                firing = _prometheus_query(url, 'ALERTS{alertname="ColdNightlyJobFailed",alertstate="firing"}')
                time.sleep(0.5)
            assert [a["metric"]["nightly_job"] for a in firing] == ["daily_audit"]
            with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10) as response:
                rules = [r for g in json.loads(response.read())["data"]["groups"] for r in g["rules"]]
            assert rules and all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]

            # The dashboard: every query parses in Prometheus and names only metrics the exporter serves.
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
                served = served_metric_names(response.read().decode())
            for title, expr in dashboard_queries():
                _prometheus_query(url, expr)  # a query Prometheus cannot parse fails here (HTTP 400)
                named = set(re.findall(r"\bcold_assets_[a-z0-9_]+", expr))
                assert named and named <= served, (title, named - served)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
        collector.stop()  # (a reader left running would read the instance of the next test in this process)

    # A repair of the hour warm lost a row of is refused (a replace would delete it from cold):
    # its check says so, newer than the audit; the next audit, which knows nothing of refusals,
    # finds it mismatched, and the hour stays refused.
    repair = {"ops": {"cold__raw_trades": {"config": {"replace_hour": True}}}}
    run_offload(live, [keys[1]], repair, raise_on_error=False)
    assert _state(collector, "raw_trades", keys[1]) is HourState.REFUSED
    audit_again(live)
    assert _state(collector, "raw_trades", keys[1]) is HourState.REFUSED
    # The operator restores the row warm lost from cold, with the restore job as the webserver
    # launches it: its audit of the hour is green and recorded, and the hour is proven again.
    restore = build_definitions(live).resolve_job_def(RESTORE_JOB)
    hour = hour_of(keys[1])
    config = {"from_hour": hour.isoformat(), "to_hour": (hour + timedelta(hours=1)).isoformat(), "dry_run": False}
    run_config = {"ops": {"restore_from_cold": {"config": config}}}
    assert restore.execute_in_process(instance=embedded_instance(live), run_config=run_config).success
    assert _state(collector, "raw_trades", keys[1]) is HourState.PROVEN


def _state(collector: TierCollector, table: str, hour: str) -> HourState:
    return next(t for t in collector.refresh().status.tables if t.spec.cold == table).hours[hour]


PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def test_the_alert_rules_pass_promtool_and_each_fires_on_its_synthetic_series():
    folder = RULES.parent
    for command in (["check", "rules", RULES.name], ["check", "config", "prometheus.yml"], ["test", "rules", "cold_assets_rules_test.yml"]):
        run = subprocess.run([PROMTOOL, *command], cwd=folder, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
    # Every alert has a test that expects it to fire.
    import yaml

    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((folder / "cold_assets_rules_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == fired


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def test_each_alert_rule_points_at_a_runbook_entry_that_exists():
    import yaml

    anchors = {_anchor(line[3:]) for line in (REPO / "docs" / "runbook.md").read_text().splitlines() if line.startswith("## ")}
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("{{ $externalLabels.runbook_base }}/runbook.md#"), (rule["alert"], url)
        assert url.rsplit("#", 1)[1] in anchors, (rule["alert"], url)


def test_the_page_says_stale_when_readings_fail_after_a_good_one(settings, warm, cold, monkeypatch):
    """A reading that fails (fault injected: the instance's database down) leaves the last
    good reading served; the page names it stale and why, instead of showing it as current."""
    reader = TierReader(embedded_instance(settings), cold.catalog(), settings)
    collector = TierCollector(reader, refresh_seconds=3600)  # a scrape serves the last reading
    collector.refresh()
    assert collector.staleness() is None
    assert "STALE" not in render_html(collector.status(), collector.staleness())

    def database_down(now=None):
        raise RuntimeError("could not connect to server: Connection refused")

    monkeypatch.setattr(reader, "read", database_down)
    with pytest.raises(RuntimeError):
        collector.refresh()
    stale = collector.staleness()
    assert stale is not None and "Connection refused" in stale
    page = render_html(collector.status(), stale)
    assert "STALE: readings fail" in page and "All hours proven" not in page
