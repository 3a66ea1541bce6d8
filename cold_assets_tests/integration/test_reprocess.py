"""Reprocess: bronze, silver and gold recomputed from cold raw (real chDB scratch medallion,
Iceberg on disk)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from pyiceberg.expressions import EqualTo, In

from cold_assets.defs.resources import ClickHouseResource
from cold_assets.hours import HourPolicy
from cold_assets.offload.bookkeeping import SOURCE
from cold_assets.partitions import partition_key_of
from cold_assets.recovery.reprocess import DERIVED, ReprocessRefused, read_reference_data, reprocess
from cold_assets.settings import ddl_dir
from cold_assets.warm.ddl import WarmLimits
from cold_assets.warm.read import warm_now
from cold_assets_tests.support.offload_helpers import START, feed, run_offload

DAY = [partition_key_of(START + timedelta(hours=h)) for h in range(24)]
# The day is older than this retention: warm no longer holds it, cold is its only copy.
RETENTION = HourPolicy(warm_retention=timedelta(days=5))


def _open(path):
    return ClickHouseResource(chdb_path=str(path)).connect()


def _snapshots(cold) -> dict[str, int | None]:
    return {t.cold: cold.catalog().load_table(t.cold_identifier).metadata.current_snapshot_id for t in DERIVED}


@pytest.fixture
def offloaded_day(settings, warm, cold):
    """A day of the feed (duplicates, late, out-of-order and malformed messages among it);
    then, in inserts of their own, 50 of its messages delivered again (silver's anti-join drops
    them live) and the trades of an instrument an operator added at runtime; offloaded. The
    reprocess then takes the day for one warm's retention has passed."""
    feed(warm, hours=24, trades_per_hour=600)
    with warm.connect() as client:
        client.command(
            "INSERT INTO trades_raw (exchange, symbol, trade_id, price, quantity, side, exchange_ts, received_at, message) "
            "SELECT exchange, symbol, trade_id, price, quantity, side, exchange_ts, received_at + INTERVAL 1 SECOND, message "
            "FROM trades_raw ORDER BY cityHash64(trade_id) LIMIT 50"
        )
        client.command(
            "INSERT INTO instruments VALUES ('binance', 'DOGEUSDT', 'DOGE-USDT', 'DOGE', 'USDT', 0.00001, 1)"
        )
        client.insert(
            "trades_raw",
            [["binance", "DOGEUSDT", str(7_000 + i), "0.40000000", "10.00000000", "false",
              START + timedelta(hours=5, minutes=i), START + timedelta(hours=5, minutes=i, seconds=1), "{}"] for i in range(5)],
            column_names=["exchange", "symbol", "trade_id", "price", "quantity", "side", "exchange_ts", "received_at", "message"],
        )
    run_offload(settings, DAY)
    with warm.connect() as client:
        now, reference = warm_now(client), read_reference_data(client)
    doge = cold.catalog().load_table(("cold", "silver_trades")).scan(row_filter=EqualTo("symbol", "DOGE-USDT")).count()
    assert doge == 5
    return settings, now, reference


def test_reprocessing_with_unchanged_logic_changes_no_row_of_any_cold_table(offloaded_day, cold, tmp_path):
    settings, now, reference = offloaded_day
    before = _snapshots(cold)
    report = reprocess(
        cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "reprocess-test",
        WarmLimits.from_settings(settings), now, RETENTION, reference=reference,
    )
    assert report.raw_rows > 14_000
    assert {t: len(c.hours_changed) for t, c in report.changes.items()} == {t.cold: 0 for t in DERIVED}
    assert {t: c.hours_compared for t, c in report.changes.items()} == {t.cold: 1 if t.gold_window == "1d" else 24 for t in DERIVED}
    assert _snapshots(cold) == before  # nothing committed
    assert not (tmp_path / "scratch").exists()


def test_a_changed_close_rule_reprocesses_the_bars_into_what_the_new_rule_computes(offloaded_day, cold, tmp_path):
    """The close is chosen by receive time instead of exchange time (a test copy of the DDL);
    the reprocessed bars equal bars computed here from cold silver, independently."""
    settings, now, reference = offloaded_day
    ddl = tmp_path / "ddl"
    shutil.copytree(ddl_dir() / "clickhouse", ddl)
    gold = ddl / "040_gold_ohlcv.sql"
    rule = "argMaxState(price, (exchange_ts, trade_id))"
    assert rule in gold.read_text()
    gold.write_text(gold.read_text().replace(rule, "argMaxState(price, (received_at, trade_id))"))
    silver_before = _snapshots(cold)["silver_trades"]

    dry = reprocess(
        cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "reprocess-dry",
        WarmLimits.from_settings(settings), now, RETENTION, ddl=ddl, dry_run=True, reference=reference,
    )
    assert dry.changes["gold_ohlcv_1m"].hours_changed and dry.changes["gold_ohlcv_1m"].added
    assert not dry.changes["silver_trades"].hours_changed and not dry.changes["bronze_trades"].hours_changed
    before = _snapshots(cold)

    done = reprocess(
        cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "reprocess-close",
        WarmLimits.from_settings(settings), now, RETENTION, ddl=ddl, reference=reference,
    )
    assert [(t, c.hours_changed) for t, c in done.changes.items()] == [(t, c.hours_changed) for t, c in dry.changes.items()]
    assert _snapshots(cold)["silver_trades"] == silver_before
    # Independently: from cold silver, the last trade of each window by (received_at, trade_id).
    silver = cold.catalog().load_table(("cold", "silver_trades")).scan().to_arrow().to_pylist()
    for table in [t for t in DERIVED if t.gold_window in ("1m", "1h")]:
        size = timedelta(minutes=1) if table.gold_window == "1m" else timedelta(hours=1)
        last: dict = defaultdict(lambda: None)
        for r in silver:
            window = START + ((r["exchange_ts"] - START) // size) * size
            key = (r["exchange"], r["symbol"], window)
            if last[key] is None or (r["received_at"], r["trade_id"]) > (last[key]["received_at"], last[key]["trade_id"]):
                last[key] = r
        bars = cold.catalog().load_table(table.cold_identifier).scan().to_arrow().to_pylist()
        assert len(bars) == len(last)
        wrong = [b for b in bars if b["close"] != last[(b["exchange"], b["symbol"], b["window_start"])]["price"]]
        assert not wrong, (table.cold, wrong[:3])
        # And some close changed: the rule is not the old one on this feed (out-of-order trades).
        assert len(done.changes[table.cold].hours_changed) > 0
        snapshot = cold.catalog().load_table(table.cold_identifier).current_snapshot()
        assert snapshot is not None and snapshot.snapshot_id != before[table.cold]
        assert snapshot.summary.additional_properties.get(SOURCE) == "reprocess"
    assert isinstance(bars[0]["close"], Decimal)


def test_days_that_can_still_take_trades_and_bad_ranges_are_refused_before_anything_is_written(offloaded_day, cold, tmp_path):
    settings, now, reference = offloaded_day
    with pytest.raises(ReprocessRefused, match="can still take trades"):
        reprocess(
            cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "x",
            # The day is 6 days old; the feed's max_lateness (the DDL's default) is days longer.
            WarmLimits.from_settings(settings), now, HourPolicy(),
        )
    with pytest.raises(ReprocessRefused, match="midnight"):
        reprocess(
            cold.catalog(), _open, tmp_path / "scratch", START + timedelta(hours=1), START + timedelta(days=1), "x",
            WarmLimits.from_settings(settings), now, RETENTION,
        )
    assert not (tmp_path / "scratch").exists()
    # Feed limits that reject every trade (a misconfiguration) would empty the day; a gap in cold
    # raw would delete the derived rows of its trades: the run stops before the day is replaced.
    before = _snapshots(cold)
    rejecting = replace(reference, feed_limits=reference.feed_limits | {"max_lateness": 1})
    report = reprocess(
        cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "x",
        WarmLimits.from_settings(settings), now, RETENTION, reference=rejecting,
    )
    assert report.stopped is not None and "would empty bronze_trades, silver_trades" in report.stopped
    assert _snapshots(cold) == before and report.days_replaced == []
    raw = cold.catalog().load_table(("cold", "raw_trades"))
    raw.delete(In("trade_id", ["1000000000", "1000000001", "1000000002"]))
    report = reprocess(
        cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "x",
        WarmLimits.from_settings(settings), now, RETENTION, reference=reference,
    )
    assert report.stopped is not None and "cold raw lacks the messages of" in report.stopped, report.stopped
    assert _snapshots(cold) == before


def _hours_content(cold, days: int) -> dict[tuple[str, str], int]:
    """Each derived table's hours (the daily bars' days), as a hash of their rows."""
    content = {}
    for table in DERIVED:
        rows = cold.catalog().load_table(table.cold_identifier).scan().to_arrow().to_pylist()
        by_range: dict[str, list] = defaultdict(list)
        for r in rows:
            start, _ = table.offload_range(r[table.time_column].replace(minute=0, second=0, microsecond=0))
            by_range[partition_key_of(start)].append(tuple(sorted((k, str(v)) for k, v in r.items())))
        for key in [partition_key_of(START + timedelta(hours=h)) for h in range(24 * days)]:
            if table.gold_window != "1d" or key.endswith("00:00"):
                content[(table.cold, key)] = hash(tuple(sorted(by_range.get(key, []))))
    return content


@pytest.mark.runs_for(38)
def test_a_reprocess_killed_midway_leaves_every_hour_as_before_or_as_after(settings, warm, cold, tmp_path, monkeypatch):
    """SIGKILL once the first reprocessed commit is in: every (table, hour) holds its rows from
    before or its rows from after, none half; a second reprocess finishes it."""
    feed(warm, hours=48, trades_per_hour=300)
    run_offload(settings, [partition_key_of(START + timedelta(hours=h)) for h in range(48)])
    ddl = tmp_path / "ddl"
    shutil.copytree(ddl_dir() / "clickhouse", ddl)
    gold = ddl / "040_gold_ohlcv.sql"
    gold.write_text(gold.read_text().replace("argMaxState(price, (exchange_ts, trade_id))", "argMaxState(price, (received_at, trade_id))"))
    before = _hours_content(cold, 2)
    monkeypatch.setenv("COLD_WARM_RETENTION_DAYS", "3")
    span = ["--from", START.isoformat(), "--to", (START + timedelta(days=2)).isoformat(), "--ddl", str(ddl)]
    process = subprocess.Popen([sys.executable, "-m", "cold_assets.tools.cli", "reprocess", *span], env=os.environ.copy())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        snapshots = [cold.catalog().load_table(t.cold_identifier).current_snapshot() for t in DERIVED]
        if any(s is not None and s.summary.additional_properties.get(SOURCE) == "reprocess" for s in snapshots):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the reprocess ended before a commit could be caught"
    midway = _hours_content(cold, 2)

    from cold_assets.tools.cli import main

    assert main(["reprocess", *span]) == 0
    after = _hours_content(cold, 2)
    half = {cell for cell in midway if midway[cell] not in (before[cell], after[cell])}
    assert not half, sorted(half)[:5]
    changed = {cell for cell in after if after[cell] != before[cell]}
    assert changed and {cell for cell in changed if midway[cell] == after[cell]}  # some were in at the kill
    assert {cell for cell in changed if midway[cell] == before[cell]}  # and some not yet


def test_the_reprocess_job_runs_a_day_as_a_partition_and_records_what_it_replaced(offloaded_day, cold, tmp_path, monkeypatch):
    """The job the webserver backfills by day: its form is a dry run first; then the day's
    changed hours are replaced and recorded as observations of each table."""
    from dagster import AssetKey

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.recovery import REPROCESS_JOB
    from cold_assets.settings import Settings
    from cold_assets.tools.instance import embedded_instance

    ddl = tmp_path / "ddl"
    shutil.copytree(ddl_dir() / "clickhouse", ddl)
    gold = ddl / "040_gold_ohlcv.sql"
    gold.write_text(gold.read_text().replace("argMaxState(price, (exchange_ts, trade_id))", "argMaxState(price, (received_at, trade_id))"))
    monkeypatch.setenv("COLD_WARM_RETENTION_DAYS", "5")
    settings = Settings.from_env()
    job = build_definitions(settings).resolve_job_def(REPROCESS_JOB)
    instance = embedded_instance(settings)
    day = f"{START:%Y-%m-%d}"
    before = _snapshots(cold)
    dry_config = {"ops": {"reprocess_day": {"config": {"ddl_dir": str(ddl)}}}}  # dry_run: the default
    dry = job.execute_in_process(instance=instance, partition_key=day, run_config=dry_config)
    assert dry.success and _snapshots(cold) == before
    config = {"ddl_dir": str(ddl), "dry_run": False}
    assert job.execute_in_process(instance=instance, partition_key=day, run_config={"ops": {"reprocess_day": {"config": config}}}).success
    assert _snapshots(cold)["gold_ohlcv_1h"] != before["gold_ohlcv_1h"] and _snapshots(cold)["silver_trades"] == before["silver_trades"]
    observed = instance.fetch_observations(AssetKey(["cold", "gold_ohlcv_1h"]), limit=5).records
    hours = [r.asset_observation.metadata["reprocess_hours"].value for r in observed if "reprocess_hours" in r.asset_observation.metadata]
    assert hours and len(hours[0]) > 0 and all(h.startswith(f"{START:%Y-%m-%d}") for h in hours[0])
    # A day that can still take trades is refused by the job as by the command, before anything is written.
    recent = job.execute_in_process(instance=instance, partition_key=f"{START + timedelta(days=5):%Y-%m-%d}", raise_on_error=False)
    assert not recent.success


def _close_by_receive_time(tmp_path):
    """A test copy of the DDL whose bars close on the last trade received, not the last traded."""
    ddl = tmp_path / "ddl"
    shutil.copytree(ddl_dir() / "clickhouse", ddl)
    gold = ddl / "040_gold_ohlcv.sql"
    gold.write_text(gold.read_text().replace("argMaxState(price, (exchange_ts, trade_id))", "argMaxState(price, (received_at, trade_id))"))
    return ddl


def _gold_requests(requests) -> list[tuple[str, str]]:
    """(table, hour) of the gold tables a sensor tick asked to repair."""
    if not isinstance(requests, list):
        return []
    return [(k.path[-1], r.partition_key) for r in requests for k in r.asset_selection if k.path[-1].startswith("gold_")]


@pytest.mark.runs_for(65)
def test_a_day_warm_still_holds_is_reprocessed_left_unequal_and_every_feature_takes_cold_s_rows(
    settings, warm, cold, tmp_path, monkeypatch, capsys
):
    """A changed close rule reprocessed over a day warm still holds (6 days old; the feed's
    max_lateness two days at most), under the production lag: warm is left as it was and reported
    unequal; the hours are marked; a backfill of the day from warm keeps them, its checks
    pass, the audit is green, the self-healing asks for no repair, the federated view cuts over
    them and serves the new bars. A rollback of a gold table to before the reprocess fails its
    check and is alerted, not repaired from warm; a reprocess with warm's logic then clears
    the marks and the tiers are equal again."""
    from cold_assets.federation import current_cutovers, federate
    from cold_assets.offload.reprocessed import reprocessed_marks
    from cold_assets.parity.checksums import local_file_access
    from cold_assets.settings import Settings
    from cold_assets.tables import table_by_cold_name
    from cold_assets.tools.cli import main
    from cold_assets_tests.integration.test_alerts_and_healing import _sensor
    from cold_assets_tests.support.offload_helpers import (
        age_trades,
        assert_tiers_equal,
        check_results,
        insert_late_raw,
        warm_hour,
    )

    # Fed as a live feed would have been (ingested as received), so that a max_lateness of two
    # days parses the day as it was parsed then.
    feed(warm, hours=24, trades_per_hour=300, ingested_from=START)
    run_offload(settings, DAY)
    _reprocessable(warm, monkeypatch)
    # A message of the day arriving now (a reject: later than max_lateness) is in warm raw only,
    # settled (past the settle lag).
    insert_late_raw(warm, START + timedelta(hours=3), 1, 9_000_000)
    age_trades(warm, 9_000_000, 1, minutes=1)
    monkeypatch.delenv("COLD_SETTLE_LAG_SECONDS")  # the production lag from here on
    live = Settings.from_env()
    assert live.settle_lag_seconds == 30
    span = ["--from", START.isoformat(), "--to", (START + timedelta(days=1)).isoformat()]
    ddl = _close_by_receive_time(tmp_path)
    before = _snapshots(cold)
    assert main(["reprocess", *span, "--ddl", str(ddl)]) == 2  # cold raw lacks it: refused
    assert "cold raw differs from warm raw" in capsys.readouterr().err
    assert _snapshots(cold) == before
    run_offload(settings, DAY)  # raw takes it (no settle lag: it was ingested just now)

    gold_1m = table_by_cold_name("gold_ohlcv_1m")
    def warm_bars():
        with warm.connect() as client:
            bars = [b for h in range(24) for b in warm_hour(client, gold_1m, START + timedelta(hours=h)).to_pylist()]
        return len(bars), sum(b["close"] for b in bars)

    warm_before = warm_bars()
    assert main(["reprocess", *span, "--ddl", str(ddl)]) == 0
    out = capsys.readouterr().out
    assert "gold_ohlcv_1m:" in out and "left unequal by design" in out, out
    marks = reprocessed_marks(cold.catalog().load_table(gold_1m.cold_identifier))
    assert marks and set(marks) <= set(DAY)
    assert not reprocessed_marks(cold.catalog().load_table(("cold", "silver_trades")))  # unchanged: not marked
    assert warm_bars() == warm_before  # warm untouched
    cold_close = sum(b["close"] for b in cold.catalog().load_table(gold_1m.cold_identifier).scan().to_arrow().to_pylist())
    assert cold_close != warm_before[1]

    # A backfill of the day from warm keeps the marked hours.
    reprocessed = _snapshots(cold)
    result, instance = run_offload(live, DAY)
    assert _snapshots(cold) == reprocessed
    checks = check_results(instance, result.run_id)
    assert checks and all(checks.values()), {k: v for k, v in checks.items() if not v}
    assert main(["audit", *span]) == 0
    assert "ok (reprocessed" in capsys.readouterr().out
    requests, _ = _sensor(live, "self_healing")
    assert _gold_requests(requests) == []
    with warm.connect() as client:
        federate(client, cold.catalog(), HourPolicy.from_settings(live))
        assert current_cutovers(client)["gold_ohlcv_1m"] >= START + timedelta(days=1)
        with local_file_access(cold.catalog().load_table(gold_1m.cold_identifier)):
            view = client.query(
                "SELECT sum(close) FROM gold_ohlcv_1m_all WHERE window_start < {end:DateTime64(6, 'UTC')}",
                parameters={"end": START + timedelta(days=1)},
            ).result_rows[0][0]
    assert view == cold_close

    # A rollback to before the reprocess: the marked hours no longer hold what it wrote.
    table = cold.catalog().load_table(gold_1m.cold_identifier)
    table.manage_snapshots().rollback_to_snapshot(table.current_snapshot().parent_snapshot_id).commit()
    result, instance = run_offload(live, DAY, raise_on_error=False)
    checks = check_results(instance, result.run_id)
    assert checks[("gold_ohlcv_1m", "content_parity")] is False
    assert all(passed for (t, _), passed in checks.items() if t != "gold_ohlcv_1m")
    requests, cursor = _sensor(live, "self_healing")
    assert "gold_ohlcv_1m" not in {t for t, _ in _gold_requests(requests)}  # never repaired from warm
    import json

    assert any(item.startswith("gold_ohlcv_1m|") for item in json.loads(cursor)["shrunk"])

    # Reprocessed with warm's own logic: every mark cleared, the tiers equal again.
    assert main(["reprocess", *span]) == 0
    for spec in DERIVED:
        assert not reprocessed_marks(cold.catalog().load_table(spec.cold_identifier)), spec.cold
    assert_tiers_equal(warm, cold, [START + timedelta(hours=h) for h in range(24)], tables=DERIVED)
    result, instance = run_offload(live, DAY)
    assert all(check_results(instance, result.run_id).values())


def _reprocessable(warm, monkeypatch) -> None:
    """The feed's max_lateness at two days, and COLD_TTL_MARGIN_DAYS letting it be raised no
    further: the 6-day-old day is then one no trade can still reach."""
    monkeypatch.setenv("COLD_TTL_MARGIN_DAYS", "3")
    with warm.connect() as client:
        client.command("INSERT INTO feed_limits (name, seconds) VALUES ('max_lateness', 172800)")


def test_reprocessed_hours_stay_proven_after_warm_adds_a_column_and_are_left_out_of_a_restore(
    settings, warm, cold, tmp_path, monkeypatch
):
    """A reprocess that changes bronze and silver (every received_at a microsecond later) over
    a day warm holds marks their hours. A restore of the day leaves them out (adding cold's
    changed rows beside warm's own would double every trade). Warm then adds a column to
    bronze and silver, and an offload of a later hour evolves cold's schema: the marked hours
    still hold what the reprocess wrote, and their checks pass (the mark is compared over the
    columns it was made with)."""
    from cold_assets.offload.reprocessed import reprocessed_marks
    from cold_assets.recovery.restore import restore
    from cold_assets.tools.cli import main
    from cold_assets_tests.support.offload_helpers import check_results

    feed(warm, hours=25, trades_per_hour=300, ingested_from=START)
    run_offload(settings, DAY)
    _reprocessable(warm, monkeypatch)
    ddl = tmp_path / "ddl"
    shutil.copytree(ddl_dir() / "clickhouse", ddl)
    bronze = ddl / "020_bronze_trades.sql"
    old = "    received_at,\n    ingested_at\nFROM trades_parsed"
    new = "    received_at + toIntervalMicrosecond(1) AS received_at,\n    ingested_at\nFROM trades_parsed"
    assert old in bronze.read_text()
    bronze.write_text(bronze.read_text().replace(old, new))
    span = ["--from", START.isoformat(), "--to", (START + timedelta(days=1)).isoformat(), "--ddl", str(ddl)]
    assert main(["reprocess", *span]) == 0
    for name in ("bronze_trades", "silver_trades"):
        assert len(reprocessed_marks(cold.catalog().load_table(("cold", name)))) == 24, name
    with warm.connect() as client:
        dry = restore(client, cold.catalog(), START, START + timedelta(days=1), dry_run=True)
    added = {t: sum(p.rows_added for p in dry.partitions if p.table == t) for t in ("bronze_trades", "silver_trades")}
    assert added == {"bronze_trades": 0, "silver_trades": 0}
    assert dry.reprocessed["bronze_trades"] == DAY and dry.reprocessed["raw_trades"] == []
    with warm.connect() as client:
        for table in ("bronze_trades", "silver_trades"):
            client.command(f"ALTER TABLE {table} ADD COLUMN venue_note Nullable(String)")
    next_hour = partition_key_of(START + timedelta(days=1))
    run_offload(settings, [next_hour])
    assert "venue_note" in cold.catalog().load_table(("cold", "silver_trades")).schema().column_names
    result, instance = run_offload(settings, DAY)
    checks = check_results(instance, result.run_id)
    assert checks and all(checks.values()), {k: v for k, v in checks.items() if not v}


def test_a_late_trade_reaching_a_reprocessed_hour_fails_its_check_and_is_alerted_a_late_reject_does_not(
    live, settings, warm, cold, tmp_path, monkeypatch
):
    """After a reprocess marked a day's bars: a message of the day arriving later than
    max_lateness is a reject, warm's bars stay as they were, and the hour's checks pass. Once
    max_lateness is raised past what the reprocess allowed for, a late message is a trade:
    warm's bars take it, the reprocessed ones cannot. The offload repairs raw, bronze and
    silver, keeps the bars, and their check fails (warm changed since the reprocess); the
    self-healing sensor (at the production lag) alerts it and asks for no repair of the bars."""
    from cold_assets.offload.reprocessed import reprocessed_marks
    from cold_assets.tools.cli import main
    from cold_assets_tests.integration.test_alerts_and_healing import _sensor
    from cold_assets_tests.support.offload_helpers import age_trades, check_results, insert_late_raw

    feed(warm, hours=24, trades_per_hour=300, ingested_from=START)
    run_offload(settings, DAY)
    _reprocessable(warm, monkeypatch)
    span = ["--from", START.isoformat(), "--to", (START + timedelta(days=1)).isoformat()]
    assert main(["reprocess", *span, "--ddl", str(_close_by_receive_time(tmp_path))]) == 0
    hour = partition_key_of(START + timedelta(hours=3))
    assert hour in reprocessed_marks(cold.catalog().load_table(("cold", "gold_ohlcv_1m")))

    insert_late_raw(warm, START + timedelta(hours=3), 1, 9_100_000)  # 6 days late: a reject
    age_trades(warm, 9_100_000, 1, minutes=1)
    # (No settle lag here: the hour's watermark is seconds old, from the offload at lag 0 above.)
    result, instance = run_offload(settings, [hour])
    checks = check_results(instance, result.run_id)
    assert checks and all(checks.values()), {k: v for k, v in checks.items() if not v}

    with warm.connect() as client:
        client.command("INSERT INTO feed_limits (name, seconds) VALUES ('max_lateness', 864000)")
    insert_late_raw(warm, START + timedelta(hours=3), 1, 9_100_100)  # now a trade
    age_trades(warm, 9_100_100, 1, minutes=1)
    result, instance = run_offload(settings, [hour], raise_on_error=False)
    checks = check_results(instance, result.run_id)
    failed = {table for (table, _), passed in checks.items() if not passed}
    assert "gold_ohlcv_1m" in failed and not failed & {"raw_trades", "bronze_trades", "silver_trades"}, failed
    requests, cursor = _sensor(live, "self_healing")
    repaired = {(k.path[-1], r.partition_key) for r in requests for k in r.asset_selection} if isinstance(requests, list) else set()
    assert ("gold_ohlcv_1m", hour) not in repaired
    import json

    assert f"gold_ohlcv_1m|{hour}" in set(json.loads(cursor)["shrunk"])
