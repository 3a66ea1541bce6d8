"""Reprocess: bronze, silver and gold recomputed from cold raw (real chDB scratch medallion,
Iceberg on disk)."""

import shutil
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest

from cold_assets.defs.resources import ClickHouseResource
from cold_assets.hours import HourPolicy
from cold_assets.offload.bookkeeping import SOURCE
from cold_assets.partitions import partition_key_of
from cold_assets.recovery.reprocess import DERIVED, ReprocessRefused, reprocess
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
    """A day of the feed (duplicates, late, out-of-order and malformed messages among it),
    offloaded; then warm's retention passes it."""
    feed(warm, hours=24, trades_per_hour=600)
    run_offload(settings, DAY)
    with warm.connect() as client:
        now = warm_now(client)
    return settings, now


def test_reprocessing_with_unchanged_logic_changes_no_row_of_any_cold_table(offloaded_day, cold, tmp_path):
    settings, now = offloaded_day
    before = _snapshots(cold)
    report = reprocess(
        cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "reprocess-test",
        WarmLimits.from_settings(settings), now, RETENTION,
    )
    assert report.raw_rows > 14_000
    assert {t: len(c.hours_changed) for t, c in report.changes.items()} == {t.cold: 0 for t in DERIVED}
    assert {t: c.hours_compared for t, c in report.changes.items()} == {t.cold: 1 if t.gold_window == "1d" else 24 for t in DERIVED}
    assert _snapshots(cold) == before  # nothing committed
    assert not (tmp_path / "scratch").exists()


def test_a_changed_close_rule_reprocesses_the_bars_into_what_the_new_rule_computes(offloaded_day, cold, tmp_path):
    """The close is chosen by receive time instead of exchange time (a test copy of the DDL);
    the reprocessed bars equal bars computed here from cold silver, independently."""
    settings, now = offloaded_day
    ddl = tmp_path / "ddl"
    shutil.copytree(ddl_dir() / "clickhouse", ddl)
    gold = ddl / "040_gold_ohlcv.sql"
    rule = "argMaxState(price, (exchange_ts, trade_id))"
    assert rule in gold.read_text()
    gold.write_text(gold.read_text().replace(rule, "argMaxState(price, (received_at, trade_id))"))
    silver_before = _snapshots(cold)["silver_trades"]

    dry = reprocess(
        cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "reprocess-dry",
        WarmLimits.from_settings(settings), now, RETENTION, ddl=ddl, dry_run=True,
    )
    assert dry.changes["gold_ohlcv_1m"].hours_changed and dry.changes["gold_ohlcv_1m"].added
    assert not dry.changes["silver_trades"].hours_changed and not dry.changes["bronze_trades"].hours_changed
    before = _snapshots(cold)

    done = reprocess(
        cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "reprocess-close",
        WarmLimits.from_settings(settings), now, RETENTION, ddl=ddl,
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


def test_a_range_warm_still_holds_is_refused_before_anything_is_written(offloaded_day, cold, tmp_path):
    settings, now = offloaded_day
    with pytest.raises(ReprocessRefused, match="warm still holds"):
        reprocess(
            cold.catalog(), _open, tmp_path / "scratch", START, START + timedelta(days=1), "x",
            WarmLimits.from_settings(settings), now, HourPolicy(),  # the default 30 days: warm holds the day
        )
    with pytest.raises(ReprocessRefused, match="midnight"):
        reprocess(
            cold.catalog(), _open, tmp_path / "scratch", START + timedelta(hours=1), START + timedelta(days=1), "x",
            WarmLimits.from_settings(settings), now, RETENTION,
        )
    assert not (tmp_path / "scratch").exists()
