"""Restore: warm's rows back from cold (real chDB, Iceberg on disk, the Dagster instance)."""

import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from pyiceberg.expressions import And, EqualTo

from cold_assets.cold.ranges import range_filter
from cold_assets.federation import federate
from cold_assets.hours import HourPolicy
from cold_assets.parity.checksums import local_file_access
from cold_assets.partitions import partition_key_of
from cold_assets.recovery.restore import STAGE_PREFIX, RestoreRefused, restore
from cold_assets.tables import GOLD_WINDOWS, TABLES, Layer, table_by_cold_name
from cold_assets.warm.read import warm_now
from cold_assets_tests.support.offload_helpers import (
    NO_OVERLAP,
    RAW_COLUMNS,
    START,
    assert_tiers_equal,
    feed,
    insert_late_raw,
    run_offload,
    warm_hour,
)

HOURS = 24  # a day
LATE_A = 200  # late trades of a window warm lost (test_a_gold_window_warm_holds_in_part_...)
DAY_KEYS = [partition_key_of(START + timedelta(hours=h)) for h in range(HOURS)]
HOUR_STARTS = [START + timedelta(hours=h) for h in range(HOURS)]
END = START + timedelta(hours=HOURS)


def _warm_content(warm) -> dict[str, list]:
    """Every table's rows of the range as the offload reads them (gold: finalized bars), sorted."""
    with warm.connect() as client:
        content = {}
        for table in TABLES:
            hours = sorted({table.offload_range(h)[0] for h in HOUR_STARTS})
            rows = []
            for hour in hours:
                rows += [tuple(str(v) for v in r.values()) for r in warm_hour(client, table, hour).to_pylist()]
            content[table.cold] = sorted(rows)
        return content


def _views(client, catalog) -> dict:
    """Every view's definition (materialized and federated), and each `_all` view's rows of the range."""
    definitions = dict(client.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() "
        "AND engine IN ('View', 'MaterializedView') ORDER BY name"
    ).result_rows)
    with local_file_access(catalog.load_table(TABLES[0].cold_identifier)):
        rows = {
            t.warm: client.query(
                f"SELECT count() FROM {t.warm}_all WHERE {t.time_column} >= {{start:DateTime64(6, 'UTC')}} "
                f"AND {t.time_column} < {{end:DateTime64(6, 'UTC')}}",
                parameters={"start": START, "end": END},
            ).result_rows[0][0]
            for t in TABLES
        }
    return {"definitions": definitions, "rows": rows}


def _stages(client) -> list[str]:
    return [r[0] for r in client.query(f"SELECT name FROM system.tables WHERE name LIKE '{STAGE_PREFIX}%'").result_rows]


@pytest.mark.runs_for(78)
def test_a_restore_after_warm_lost_its_hours_brings_back_every_layer_once_and_the_offload_adds_nothing(live, settings, warm, cold):
    """Warm loses a day from every table (one hour only in part); a dry run writes nothing; the
    restore brings every layer back from its own cold table without running a view, the audit
    (production lag) is green, the views are as they were, a second restore adds nothing, and
    the offload after it adds nothing to cold."""
    feed(warm, hours=HOURS, trades_per_hour=1000)
    run_offload(settings, DAY_KEYS)
    before = _warm_content(warm)
    with warm.connect() as client:
        # The federated views cut over inside the day: its first hours from cold, the rest from warm.
        federate(client, cold.catalog(), now=START + timedelta(hours=4))
        views = _views(client, cold.catalog())
    assert views["rows"]["trades_raw"] > 0 and "trades_raw_all" in views["definitions"]
    with warm.connect() as client:
        for table in TABLES:
            column = table.time_column
            in_range = f"{column} >= {{start:DateTime64(6, 'UTC')}} AND {column} < {{end:DateTime64(6, 'UTC')}}"
            # The trade layers keep half of hour 2: that hour is restored by adding to what warm holds.
            kept = " AND NOT (toHour(exchange_ts) = 2 AND toUnixTimestamp64Micro(received_at) % 2 = 0)"
            client.command(
                f"ALTER TABLE {table.warm} DELETE WHERE {in_range}" + (kept if table.layer is not Layer.GOLD else ""),
                parameters={"start": START, "end": END}, settings={"mutations_sync": 2},
            )
        held = {t.cold: client.query(f"SELECT count() FROM {t.warm}").result_rows[0][0] for t in TABLES}
    assert held["raw_trades"] > 0 and held["gold_ohlcv_1m"] == 0  # hour 2 of the trade layers kept in part
    policy = HourPolicy.from_settings(live)

    with warm.connect() as client:
        dry = restore(client, cold.catalog(), START, END, policy=policy, dry_run=True)
        assert dry.rows_added > 0 and dry.audit is None
        assert {t.cold: client.query(f"SELECT count() FROM {t.warm}").result_rows[0][0] for t in TABLES} == held
        assert _stages(client) == []

        done = restore(client, cold.catalog(), START, END, policy=policy)
        assert done.audit is not None and done.audit.ok, done.audit
        assert [(p.table, p.partition, p.rows_added) for p in done.partitions] == [
            (p.table, p.partition, p.rows_added) for p in dry.partitions
        ]
        assert _stages(client) == []
    # Every layer as it was: no view ran on the restored rows (bronze, silver and gold would
    # otherwise hold the range twice), and the part of hour 2 warm kept is not doubled.
    assert _warm_content(warm) == before
    with warm.connect() as client:
        assert _views(client, cold.catalog()) == views

    with warm.connect() as client:
        again = restore(client, cold.catalog(), START, END, policy=policy)
    assert again.rows_added == 0 and again.audit is not None and again.audit.ok

    cold_rows = {t.cold: cold.catalog().load_table(t.cold_identifier).scan().count() for t in TABLES}
    run_offload(settings, DAY_KEYS, NO_OVERLAP)
    run_offload(settings, DAY_KEYS)
    assert {t.cold: cold.catalog().load_table(t.cold_identifier).scan().count() for t in TABLES} == cold_rows
    assert_tiers_equal(warm, cold, HOUR_STARTS)


def test_a_range_outside_the_retention_is_refused_before_anything_is_written(live, warm, cold):
    policy = HourPolicy.from_settings(live)
    with warm.connect() as client:
        now = warm_now(client)
        old = (now - timedelta(days=31)).replace(minute=0, second=0, microsecond=0)
        with pytest.raises(RestoreRefused, match="outside warm's retention"):
            restore(client, cold.catalog(), old, old + timedelta(hours=2), policy=policy)
        with pytest.raises(RestoreRefused, match="not on the hour"):
            restore(client, cold.catalog(), START + timedelta(minutes=5), END, policy=policy)
        with pytest.raises(RestoreRefused, match="empty"):
            restore(client, cold.catalog(), END, START, policy=policy)
        assert _stages(client) == []


def test_a_restored_bar_merged_with_later_trades_of_its_window_is_the_unbroken_bar(settings, warm, cold):
    """gold keeps bars as aggregate states: a restored bar's open and close must still lose to
    an earlier and a later trade of its window arriving after the restore."""
    feed(warm, hours=2)
    keys = DAY_KEYS[:2]
    run_offload(settings, keys)
    gold = [t for t in TABLES if t.layer is Layer.GOLD]
    with warm.connect() as client:
        for table in gold:
            client.command(f"TRUNCATE TABLE {table.warm}")
        restore(client, cold.catalog(), START, START + timedelta(hours=2), tables=gold, policy=HourPolicy.from_settings(settings))
        # A trade before the first and one after the last of the first hour, both late.
        first, last = client.query(
            "SELECT min(exchange_ts), max(exchange_ts) FROM silver_trades FINAL WHERE exchange = 'binance' AND symbol = 'BTC-USDT' "
            "AND exchange_ts >= {start:DateTime64(6, 'UTC')} AND exchange_ts < {start:DateTime64(6, 'UTC')} + INTERVAL 1 HOUR",
            parameters={"start": START},
        ).result_rows[0]
        assert START < first.replace(tzinfo=UTC) < last.replace(tzinfo=UTC) < START + timedelta(hours=1)
        client.insert(
            "trades_raw",
            [
                ["binance", "BTCUSDT", "990000001", "1.00000000", "0.01000000", "false", START, START + timedelta(hours=3), "{}"],
                ["binance", "BTCUSDT", "990000002", "99999.00000000", "0.01000000", "true",
                 START + timedelta(hours=1) - timedelta(microseconds=1), START + timedelta(hours=3), "{}"],
            ],
            column_names=["exchange", "symbol", "trade_id", "price", "quantity", "side", "exchange_ts", "received_at", "message"],
        )
        day = {"start": START, "end": START + timedelta(days=1)}  # the feed's two hours, and the day's bar
        for table in gold:
            got = _warm_bars(client, table, **day)
            assert got == _unbroken_bars(client, table, **day), table.cold
            opened = next(r for r in got if r[0] == "binance" and r[1] == "BTC-USDT" and r[2].replace(tzinfo=UTC) == START)
            assert str(opened[3]) == "1.00000000"  # the late trade at the hour's first instant opens it
            if table.gold_window == "1h":
                assert str(opened[6]) == "99999.00000000"  # and the one at its last instant closes it


def _unbroken_bars(client, table, start, end) -> list[tuple]:
    """The bars of warm silver's trades in [start, end), computed here, independently of gold
    and of the restore: those an unbroken warm tier holds."""
    interval = GOLD_WINDOWS[table.gold_window]
    return client.query(
        f"SELECT exchange, symbol, toDateTime64(toStartOfInterval(exchange_ts, INTERVAL {interval}, 'UTC'), 6, 'UTC') AS w, "
        "argMin(price, (exchange_ts, trade_id)), max(price), min(price), argMax(price, (exchange_ts, trade_id)), "
        "sum(quantity), sum(quote_quantity), count() FROM silver_trades FINAL "
        "WHERE exchange_ts >= {start:DateTime64(6, 'UTC')} AND exchange_ts < {end:DateTime64(6, 'UTC')} "
        "GROUP BY exchange, symbol, w ORDER BY exchange, symbol, w",
        parameters={"start": start, "end": end},
    ).result_rows


def _warm_bars(client, table, start, end) -> list[tuple]:
    """warm gold's bars of windows starting in [start, end), merged."""
    return client.query(
        f"SELECT exchange, symbol, window_start, argMinMerge(open), max(high), min(low), argMaxMerge(close), "
        f"sum(volume), sum(quote_volume), sum(trade_count) FROM {table.warm} "
        "WHERE window_start >= {start:DateTime64(6, 'UTC')} AND window_start < {end:DateTime64(6, 'UTC')} "
        "GROUP BY exchange, symbol, window_start ORDER BY exchange, symbol, window_start",
        parameters={"start": start, "end": end},
    ).result_rows


def test_the_restore_command_dry_runs_restores_and_refuses_with_its_exit_codes(live, settings, warm, cold, capsys):
    """The command an operator runs at 3 a.m.: production lag, rows of the current hour still
    arriving, warm lost an hour of bronze."""
    from cold_assets.tools.cli import main

    feed(warm, hours=2)
    run_offload(settings, DAY_KEYS[:2])
    hour = START + timedelta(hours=1)
    with warm.connect() as client:
        client.command(
            "ALTER TABLE bronze_trades DELETE WHERE exchange_ts >= {h:DateTime64(6, 'UTC')} AND exchange_ts < {h:DateTime64(6, 'UTC')} "
            "+ INTERVAL 1 HOUR", parameters={"h": hour}, settings={"mutations_sync": 2},
        )
        in_hour = range_filter("exchange_ts", hour, hour + timedelta(hours=1))
        lost = cold.catalog().load_table(("cold", "bronze_trades")).scan(row_filter=in_hour).count()
        now = warm_now(client).replace(minute=0, second=0, microsecond=0)
    insert_late_raw(warm, now, 20, 900_000_000)  # rows still arriving, outside the range
    span = ["--from", hour.isoformat(), "--to", (hour + timedelta(hours=1)).isoformat()]

    assert main(["restore", *span, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out and f"{lost} rows would add" in out
    bronze = [line.split() for line in out.splitlines() if line.strip().startswith("bronze_trades")]
    assert bronze == [["bronze_trades", f"{hour:%Y%m%d}", "0", str(lost), str(lost)]]

    assert main(["restore", *span, "--tables", "bronze_trades", "raw_trades"]) == 0
    out = capsys.readouterr().out
    assert f"{lost} rows added" in out and "audit of the range after the restore: green" in out
    assert_tiers_equal(warm, cold, [hour], tables=[table_by_cold_name("bronze_trades")])

    old = (now - timedelta(days=40)).isoformat()
    assert main(["restore", "--from", old, "--to", (now - timedelta(days=39)).isoformat()]) == 2
    assert "outside warm's retention" in capsys.readouterr().err
    assert main(["restore", *span, "--tables", "bronze"]) == 2
    assert "unknown cold table 'bronze'" in capsys.readouterr().err


def test_a_gold_window_whose_warm_bar_lost_trades_is_merged_where_proven_and_named_where_not(settings, warm, cold):
    """A replica rebuilt empty while the feed ran: warm lost four hours' trades and bars (A to
    D), then took late trades of each; hour E kept its rows and took a late trade too.
    - A: 200 late trades (more than cold's bars of their windows count), in warm silver and
      not in cold's: warm's bars of their windows count exactly them, so cold's bars are
      merged in and the windows hold the unbroken bars.
    - B: the late trade was lost from warm silver too; C: its price in warm silver is not the
      one its bars took; D: cold silver lost one of its trades, so cold's bar is not cold
      silver's: nothing proves the merge, so those windows (and the day's) are named.
    - E: warm's bars hold cold's trades and the late one: whole, neither merged nor named.
    The restore does not end green; a second one changes nothing."""
    hours = [START + timedelta(hours=h) for h in range(5)]
    hour_a, hour_b, hour_c, hour_d, hour_e = hours
    feed(warm, hours=5, trades_per_hour=300)
    run_offload(settings, DAY_KEYS[:5])
    with warm.connect() as client:
        for table in TABLES:
            if table.layer in (Layer.SILVER, Layer.GOLD):
                client.command(
                    f"ALTER TABLE {table.warm} DELETE WHERE {table.time_column} >= {{h:DateTime64(6, 'UTC')}}"
                    f" AND {table.time_column} < {{h:DateTime64(6, 'UTC')}} + INTERVAL 4 HOUR",
                    parameters={"h": START}, settings={"mutations_sync": 2},
                )
    catalog = cold.catalog()
    silver = catalog.load_table(table_by_cold_name("silver_trades").cold_identifier)
    # binance BTC-USDT's trades come in a burst an hour (the feed is seeded): late trades go
    # into the burst's windows, where cold holds bars of every size.
    trades = silver.scan(row_filter=range_filter("exchange_ts", hour_a, hour_e + timedelta(hours=1))).to_arrow().to_pylist()
    bursts = {hour: sorted(
        r["exchange_ts"] for r in trades
        if r["exchange"] == "binance" and r["symbol"] == "BTC-USDT" and hour <= r["exchange_ts"] < hour + timedelta(hours=1)
    ) for hour in hours}
    late_a = [bursts[hour_a][0] + timedelta(microseconds=i + 1) for i in range(LATE_A)]
    # D's late trade at the end of its burst, cold silver's lost trade at its start (a burst
    # lasts seconds: the same window of every size, here).
    late = {hour: bursts[hour][0] + timedelta(microseconds=1) for hour in hours} | {hour_d: bursts[hour_d][-1] + timedelta(microseconds=1)}
    _insert_late(warm, late_a, 990_000_000)
    for hour, trade_id in ((hour_b, 990_001_000), (hour_c, 990_002_000), (hour_d, 990_003_000), (hour_e, 990_004_000)):
        _insert_late(warm, [late[hour]], trade_id)
    lost = next(
        r for r in silver.scan(row_filter=range_filter("exchange_ts", bursts[hour_d][0], bursts[hour_d][0] + timedelta(microseconds=1)))
        .to_arrow().to_pylist() if r["exchange"] == "binance" and r["symbol"] == "BTC-USDT"
    )
    silver.delete(And(EqualTo("exchange", "binance"), EqualTo("trade_id", lost["trade_id"])))
    with warm.connect() as client:
        client.command("ALTER TABLE silver_trades DELETE WHERE trade_id = 990001000", settings={"mutations_sync": 2})
        client.command("ALTER TABLE silver_trades UPDATE price = 90000 WHERE trade_id = 990002000", settings={"mutations_sync": 2})
        report = restore(client, catalog, START, hour_e + timedelta(hours=1), policy=HourPolicy.from_settings(settings))
        # Hour A's windows hold the unbroken bars (warm silver: cold's trades back, and the late ones).
        for table in (t for t in TABLES if t.layer is Layer.GOLD and t.gold_window != "1d"):
            assert _warm_bars(client, table, hour_a, hour_b) == _unbroken_bars(client, table, hour_a, hour_b), table.cold
    assert not report.ok

    gold = [t for t in TABLES if t.layer is Layer.GOLD]

    def window(table, at):
        size = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600}.get(table.gold_window or "")
        return table.offload_range(at)[0] if size is None else START + timedelta(seconds=int((at - START).total_seconds()) // size * size)

    def cold_bar(table, at) -> int | None:
        """The trade count of cold's binance BTC-USDT bar of the window `at` falls in (None: no bar)."""
        start = window(table, at)
        bars = catalog.load_table(table.cold_identifier).scan(
            row_filter=range_filter("window_start", start, start + timedelta(microseconds=1))
        ).to_arrow().to_pylist()
        return next((b["trade_count"] for b in bars if b["exchange"] == "binance" and b["symbol"] == "BTC-USDT"), None)

    expected_merged, expected_named = {}, {}
    for table in gold:
        if table.gold_window == "1d":  # the day's bar took every late trade: warm silver holds all but B's
            expected_named[table.cold] = {window(table, hour_a)}
            continue
        merged = {window(table, t) for t in late_a if cold_bar(table, t) is not None}
        named = {window(table, late[h]) for h in (hour_b, hour_c) if cold_bar(table, late[h]) is not None}
        if cold_bar(table, late[hour_d]) is not None:
            # D's window is proven where cold silver's lost trade is not in it
            same = window(table, late[hour_d]) == window(table, lost["exchange_ts"])
            (named if same else merged).add(window(table, late[hour_d]))
        expected_merged[table.cold], expected_named[table.cold] = len(merged), named
    assert {t: n for t, n in report.bars_merged.items() if n} == {t: n for t, n in expected_merged.items() if n}
    assert _named(report) == {t: w for t, w in expected_named.items() if w}
    # Merged in every size, where warm's late trades outnumber cold's trades (300 an hour, all instruments).
    hour_table = next(t for t in gold if t.gold_window == "1h")
    assert all(expected_merged[t.cold] >= 1 and cold_bar(t, late_a[0]) < LATE_A for t in gold if t.gold_window != "1d")
    # Every named window of the hour's bars, each for its reason: B, C and D (cold silver lost a trade of its hour).
    assert expected_named[hour_table.cold] == {hour_b, hour_c, hour_d}
    day = next(w for w in report.partial_windows["gold_ohlcv_1d"] if "binance BTC-USDT" in w)
    assert f"warm's bar {LATE_A + 4}," in day
    assert report.audit is not None and not report.audit.ok  # (the late trades are not in cold yet either)
    with warm.connect() as client:  # a second restore changes nothing: the merged windows are whole now
        again = restore(client, catalog, START, hour_e + timedelta(hours=1), policy=HourPolicy.from_settings(settings))
    assert again.rows_added == 0 and not any(again.bars_merged.values())
    # It names, besides, the windows of the trade cold silver lost: their bars, restored from
    # cold's (the first restore counted them as keyed uncertainly), count it and no silver does.
    assert sum(report.bars_keyed_uncertainly.values()) > 0
    assert _named(again) == {
        t.cold: expected_named[t.cold] | ({window(t, lost["exchange_ts"])} if t.gold_window != "1d" else set()) for t in gold
    }


def _insert_late(warm, times: list, first_trade_id: int) -> None:
    """binance BTC-USDT trades at `times`, delivered four hours late."""
    rows = [
        ["binance", "BTCUSDT", str(first_trade_id + i), "91000.00000000", "0.01000000", "false", at, at + timedelta(hours=4), "{}"]
        for i, at in enumerate(times)
    ]
    with warm.connect() as client:
        client.insert("trades_raw", rows, column_names=RAW_COLUMNS)


def _named(report) -> dict[str, set]:
    """The windows a restore named (not restored), per gold table."""
    return {
        table: {datetime.fromisoformat(w.split(" (")[0].split(" ", 2)[2]).replace(tzinfo=UTC) for w in windows}
        for table, windows in report.partial_windows.items() if windows
    }


def test_one_restore_at_a_time_and_a_lock_left_by_a_killed_restore_is_taken_over(settings, warm, cold):
    from cold_assets.recovery.restore import LOCK

    policy = HourPolicy.from_settings(settings)
    with warm.connect() as client:
        client.command(f"CREATE TABLE {LOCK} (holder String) ENGINE = Memory COMMENT 'db-host-2 4242 2026-12-06T03:00:00+00:00'")
        with pytest.raises(RestoreRefused, match="another restore is running on this warm tier \\(db-host-2 4242"):
            restore(client, cold.catalog(), START, END, policy=policy, dry_run=True)
        client.command(f"DROP TABLE {LOCK}")
        # This host, a process that is gone: the restore takes the lock over.
        dead = subprocess.Popen(["true"])
        dead.wait()
        client.command(f"CREATE TABLE {LOCK} (holder String) ENGINE = Memory COMMENT '{socket.gethostname()} {dead.pid} x'")
        assert restore(client, cold.catalog(), START, END, policy=policy, dry_run=True).dry_run
        assert _stages(client) == []  # (the lock too)
