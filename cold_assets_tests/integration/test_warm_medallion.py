"""The warm medallion on the real ClickHouse engine (chDB): DDL, parsing, dedup, bars."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from cold_assets.warm.ddl import WarmLimits, apply_warm_ddl, warm_statements
from cold_assets_tests.support.offload_helpers import START

H = START + timedelta(hours=10)
RAW_COLUMNS = ["exchange", "symbol", "trade_id", "price", "quantity", "side", "exchange_ts", "received_at", "message"]


def _schema(client):
    return client.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    ).result_rows


def test_ddl_applies_to_an_empty_path_and_again_without_change(settings, warm):
    with warm.connect() as client:
        before = _schema(client)
        instruments = client.query("SELECT count() FROM instruments").result_rows
        apply_warm_ddl(client, WarmLimits.from_settings(settings))
        assert _schema(client) == before
        assert client.query("SELECT count() FROM instruments").result_rows == instruments
    names = {name for name, _ in before}
    assert {"trades_raw", "trades_rejects", "bronze_trades", "silver_trades"} <= names
    assert {f"gold_ohlcv_{w}" for w in ("1m", "5m", "15m", "30m", "1h", "1d")} <= names
    # Every statement is idempotent (the gold template expanded once per window): creations
    # and drops guarded, seed rows inserted only where missing, a TTL set to what it is.
    idempotent = ("IF NOT EXISTS", "IF EXISTS", "NOT IN (SELECT", "MODIFY TTL")
    assert all(any(mark in s for mark in idempotent) for s in warm_statements(WarmLimits.from_settings(settings)))


def _binance(trade_id, price, qty, buyer_maker, ts, received):
    msg = (
        f'{{"id":{trade_id},"price":"{price}","qty":"{qty}","time":{int(ts.timestamp() * 1e6)},'
        f'"isBuyerMaker":{buyer_maker},"isBestMatch":true}}'
    )
    return ["binance", "BTCUSDT", str(trade_id), price, qty, buyer_maker, ts, received, msg]


def _kraken(trade_id, price, qty, side, ts, received):
    msg = f'["{price}","{qty}",{ts.timestamp():.6f},"{side}","m","",{trade_id}]'
    return ["kraken", "XBT/USDT", str(trade_id), price, qty, side, ts, received, msg]


def at(minutes: float) -> datetime:
    return H + timedelta(minutes=minutes)


def test_hand_written_feed_gives_the_bronze_silver_gold_and_reject_rows_worked_out_by_hand(warm):
    t1 = _binance(100, "91000.00000000", "0.50000000", "false", at(0.0834), at(0.0835))
    t2 = _binance(101, "91010.50000000", "0.25000000", "true", at(0.5), at(0.501))
    t3 = _binance(102, "90990.00000000", "1.00000000", "false", at(1.2), at(1.201))
    k1 = _kraken(5001, "91005.10000", "0.20000000", "b", at(0.17), at(0.171))
    k2 = _kraken(5002, "91007.30000", "0.30000000", "s", at(2.0), at(2.001))
    k1_again = k1[:7] + [at(0.18)] + k1[8:]  # duplicate delivery in the same insert
    t2_again = t2[:7] + [at(3.0)] + t2[8:]  # duplicate delivery in a later insert
    bad = _binance(104, "NaN", "0.10000000", "false", at(3.5), at(3.501))
    t4_late = _binance(103, "91100.00000000", "0.10000000", "true", at(0.8333), at(180))  # 3 h late
    with warm.connect() as client:
        client.insert("trades_raw", [t1, t2, k1, k1_again, t3, k2], column_names=RAW_COLUMNS)
        client.insert("trades_raw", [t2_again, bad], column_names=RAW_COLUMNS)
        client.insert("trades_raw", [t4_late], column_names=RAW_COLUMNS)

        assert client.query("SELECT count() FROM trades_raw").result_rows == [(9,)]
        rejects = client.query("SELECT trade_id, price, reason, message FROM trades_rejects").result_rows
        assert rejects == [("104", "NaN", "price is not a positive decimal", bad[8])]

        bronze = client.query(
            "SELECT exchange, trade_id, price, quantity, quote_quantity, side, is_buyer_maker "
            "FROM bronze_trades ORDER BY exchange, trade_id, received_at"
        ).result_rows
        D = Decimal
        assert bronze == [
            ("binance", 100, D("91000"), D("0.5"), D("45500"), "buy", False),
            ("binance", 101, D("91010.5"), D("0.25"), D("22752.625"), "sell", True),
            ("binance", 101, D("91010.5"), D("0.25"), D("22752.625"), "sell", True),
            ("binance", 102, D("90990"), D("1"), D("90990"), "buy", False),
            ("binance", 103, D("91100"), D("0.1"), D("9110"), "sell", True),
            ("kraken", 5001, D("91005.1"), D("0.2"), D("18201.02"), "buy", False),
            ("kraken", 5001, D("91005.1"), D("0.2"), D("18201.02"), "buy", False),
            ("kraken", 5002, D("91007.3"), D("0.3"), D("27302.19"), "sell", True),
        ]

        silver = client.query(
            "SELECT exchange, symbol, exchange_symbol, base_asset, quote_asset, trade_id "
            "FROM silver_trades ORDER BY exchange, trade_id"
        ).result_rows
        assert silver == [
            ("binance", "BTC-USDT", "BTCUSDT", "BTC", "USDT", 100),
            ("binance", "BTC-USDT", "BTCUSDT", "BTC", "USDT", 101),
            ("binance", "BTC-USDT", "BTCUSDT", "BTC", "USDT", 102),
            ("binance", "BTC-USDT", "BTCUSDT", "BTC", "USDT", 103),
            ("kraken", "BTC-USDT", "XBT/USDT", "BTC", "USDT", 5001),
            ("kraken", "BTC-USDT", "XBT/USDT", "BTC", "USDT", 5002),
        ]

        def bars(window):
            return client.query(
                "SELECT exchange, symbol, toDateTime(window_start, 'UTC'), argMinMerge(open), max(high), min(low), "
                f"argMaxMerge(close), sum(volume), sum(quote_volume), sum(trade_count) FROM gold_ohlcv_{window} "
                "GROUP BY ALL ORDER BY ALL"
            ).result_rows

        def vwap(quote, volume):
            return (D(quote) / D(volume)).quantize(D("1e-8"), ROUND_DOWN)

        naive = H.replace(tzinfo=None)
        assert bars("1m") == [
            ("binance", "BTC-USDT", naive, D("91000"), D("91100"), D("91000"), D("91100"), D("0.85"), D("77362.625"), 3),
            ("binance", "BTC-USDT", naive + timedelta(minutes=1), D("90990"), D("90990"), D("90990"), D("90990"), D("1"), D("90990"), 1),
            ("kraken", "BTC-USDT", naive, D("91005.1"), D("91005.1"), D("91005.1"), D("91005.1"), D("0.2"), D("18201.02"), 1),
            (
                "kraken",
                "BTC-USDT",
                naive + timedelta(minutes=2),
                D("91007.3"),
                D("91007.3"),
                D("91007.3"),
                D("91007.3"),
                D("0.3"),
                D("27302.19"),
                1,
            ),
        ]
        for window in ("1h", "1d"):
            start = naive if window == "1h" else naive.replace(hour=0)
            assert bars(window) == [
                ("binance", "BTC-USDT", start, D("91000"), D("91100"), D("90990"), D("90990"), D("1.85"), D("168352.625"), 4),
                ("kraken", "BTC-USDT", start, D("91005.1"), D("91007.3"), D("91005.1"), D("91007.3"), D("0.5"), D("45503.21"), 2),
            ]
        # The VWAP the offload reads is quote volume / volume, truncated to 8 decimals.
        got = client.query(
            "SELECT toDecimal64(sum(quote_volume) / sum(volume), 8) FROM gold_ohlcv_1m "
            "WHERE exchange = 'binance' AND window_start = {w:DateTime64(6, 'UTC')}",
            parameters={"w": H},
        ).result_rows[0][0]
        assert got == vwap("77362.625", "0.85")


def test_a_message_that_cannot_be_typed_is_a_reject_and_the_rest_of_its_insert_reaches_bronze(warm):
    """One insert: an ordinary trade, one whose price x quantity overflows bronze's decimal,
    one stamped 1970 (a unit bug) and one a year ahead. Nothing fails; each bad message is a
    reject with its reason, raw = bronze + rejects, and the rejects outlive raw's own TTL."""
    now = datetime.now(UTC)
    rows = [
        _binance(1, "91000.00000000", "0.01000000", "false", now, now),
        _binance(2, "90000.00000000", "2000000.00000000", "false", now, now),
        _binance(3, "91000.00000000", "0.01000000", "false", datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), now),
        _binance(4, "91000.00000000", "0.01000000", "false", now + timedelta(days=365), now),
    ]
    with warm.connect() as client:
        client.insert("trades_raw", rows, column_names=RAW_COLUMNS)  # raises on the old views: DECIMAL_OVERFLOW
        assert client.query("SELECT trade_id FROM bronze_trades").result_rows == [(1,)]
        client.command("OPTIMIZE TABLE trades_rejects FINAL")  # TTLs apply at merges
        rejects = dict(client.query("SELECT trade_id, reason FROM trades_rejects").result_rows)
        assert rejects == {
            "2": "price x quantity overflows Decimal(18, 8)",
            "3": "exchange_ts is earlier than feed_limits.max_lateness before ingestion",
            "4": "exchange_ts is later than feed_limits.max_lead after ingestion",
        }
        hour = now.replace(minute=0, second=0, microsecond=0)
        in_hour = "WHERE exchange_ts >= {h:DateTime64(6, 'UTC')} AND exchange_ts < {h:DateTime64(6, 'UTC')} + INTERVAL 1 HOUR"
        raw, bronze, rejected = (
            client.query(f"SELECT count() FROM {t} {in_hour}", parameters={"h": hour}).result_rows[0][0]
            for t in ("trades_raw", "bronze_trades", "trades_rejects")
        )
        assert raw == bronze + rejected == 2
        # The plausible window is the operator's to set.
        client.command("INSERT INTO feed_limits (name, seconds) VALUES ('max_lead', 400 * 86400)")
        client.insert(
            "trades_raw", [_binance(5, "91000.00000000", "0.01000000", "false", now + timedelta(days=365), now)], column_names=RAW_COLUMNS
        )
        assert (5,) in client.query("SELECT trade_id FROM bronze_trades").result_rows


def test_a_final_read_pruned_to_its_key_ranges_returns_what_the_whole_final_returns(warm, monkeypatch):
    """Silver is read FINAL; warm_read_query first narrows that FINAL to each instrument's
    trade-id range in the window, in the partitions holding those ranges. Redeliveries that
    FINAL must resolve sit in their own parts (never merged): a later version with another
    price, one whose exchange time moved to the next hour, and one whose exchange time moved
    into another month (another partition). Each hour, a two-hour window and an empty hour read
    the same rows, pruned or not; so does a view's read, whose literal bounds cannot bind key
    ranges."""
    from cold_assets.tables import table_by_cold_name
    from cold_assets.tools.simulate import FeedConfig, simulate
    from cold_assets.warm import read
    from cold_assets.warm.read import FAR_FUTURE, FinalScope, final_scope, read_columns, read_query, warm_read_query

    silver = table_by_cold_name("silver_trades")
    with warm.connect() as client:
        simulate(client, FeedConfig(start=H, hours=2, trades_per_hour=400))
        client.command("SYSTEM STOP MERGES silver_trades")
        (first,) = client.query(
            "SELECT trade_id, exchange_ts FROM silver_trades WHERE exchange = 'binance' AND exchange_symbol = 'BTCUSDT' "
            "ORDER BY trade_id LIMIT 1"
        ).result_rows
        (second,) = client.query(
            "SELECT trade_id FROM silver_trades WHERE exchange = 'binance' AND exchange_symbol = 'BTCUSDT' "
            "ORDER BY trade_id LIMIT 1 OFFSET 1"
        ).result_rows
        (last_of_hour,) = client.query(
            "SELECT trade_id FROM silver_trades WHERE exchange = 'kraken' AND exchange_ts < {h:DateTime64(6, 'UTC')} "
            "ORDER BY trade_id DESC LIMIT 1",
            parameters={"h": H + timedelta(hours=1)},
        ).result_rows
        columns = read_columns(client, silver) or []
        names = ", ".join(c.name for c in columns)
        # A later version of the first binance trade at another price, and a later version of
        # the last kraken trade of hour 1 whose exchange time moved into hour 2.
        client.command(
            f"INSERT INTO silver_trades ({names}) SELECT {names.replace('price', 'price + 1', 1)} FROM silver_trades "
            "WHERE exchange = 'binance' AND exchange_symbol = 'BTCUSDT' AND trade_id = {t:UInt64}",
            parameters={"t": first[0]},
        )
        client.command(
            f"INSERT INTO silver_trades ({names}) SELECT {names.replace('exchange_ts', 'exchange_ts + INTERVAL 1 HOUR', 1)} "
            "FROM silver_trades WHERE exchange = 'kraken' AND trade_id = {t:UInt64}",
            parameters={"t": last_of_hour[0]},
        )
        # A later version of the second binance trade whose exchange time moved 40 days on, into
        # the next month's partition: FINAL merges it with the first (the later partition's wins).
        client.command(
            f"INSERT INTO silver_trades ({names}) SELECT {names.replace('exchange_ts', 'exchange_ts + INTERVAL 40 DAY', 1)} "
            "FROM silver_trades WHERE exchange = 'binance' AND exchange_symbol = 'BTCUSDT' AND trade_id = {t:UInt64}",
            parameters={"t": second[0]},
        )
        windows = [(H, H + timedelta(hours=1)), (H + timedelta(hours=1), H + timedelta(hours=2)), (H, H + timedelta(hours=2)),
                   (H + timedelta(hours=5), H + timedelta(hours=6)), (H + timedelta(hours=1), FAR_FUTURE)]
        for lo, hi in windows:
            whole = read_query(silver, columns, lo, hi)
            pruned = warm_read_query(client, silver, columns, lo, hi)
            assert "PREWHERE _partition_id IN" in pruned.sql or lo == H + timedelta(hours=5)  # (an empty hour: PREWHERE (0))
            expected = client.query_arrow(whole.sql, parameters=whole.parameters)
            got = client.query_arrow(pruned.sql, parameters=pruned.parameters)
            assert got.equals(expected), (lo, hi)
            # A view's read (literal bounds) prunes its FINAL by a subquery instead, to the same
            # rows: with blocks of one id (the exact key set) and with the default blocks.
            for block in (1, read.FINAL_KEY_BLOCK_IDS):
                monkeypatch.setattr(read, "FINAL_KEY_BLOCK_IDS", block)
                literal = read_query(silver, columns, lo, hi, literal=True)
                assert f"intDiv(trade_id, {block})" in literal.sql and not literal.parameters
                assert client.query_arrow(literal.sql).equals(expected), (lo, hi, block)
            monkeypatch.undo()
        # FINAL resolved both redeliveries: the moved kraken trade is read in hour 2 only, and
        # the repriced binance trade once.
        def kraken_ids(lo):
            query = warm_read_query(client, silver, columns, lo, lo + timedelta(hours=1))
            rows = client.query_arrow(query.sql, parameters=query.parameters)
            return [t for e, t in zip(rows["exchange"].to_pylist(), rows["trade_id"].to_pylist(), strict=True) if e == "kraken"]

        assert last_of_hour[0] not in kraken_ids(H) and last_of_hour[0] in kraken_ids(H + timedelta(hours=1))
        first_hour = warm_read_query(client, silver, columns, H, H + timedelta(hours=1))
        assert second[0] not in client.query_arrow(first_hour.sql, parameters=first_hour.parameters)["trade_id"].to_pylist()
        scope = final_scope(client, silver, H, H + timedelta(hours=1))
        assert scope and {r.groups[0] for r in scope.ranges} == {"binance", "kraken"}
        # The first hour holds a version of the trade moved into the next month: both partitions.
        # The second hour's keys are in its own month's partition only, which FINAL then opens alone.
        month, later_month = f"{H:%Y%m}", f"{H + timedelta(days=40):%Y%m}"
        assert scope.partitions == sorted([month, later_month])
        second_hour = final_scope(client, silver, H + timedelta(hours=1), H + timedelta(hours=2))
        assert second_hour is not None and second_hour.partitions == [month]
        # Key ranges whose rows were gone by the partitions' query (a TTL merge between the
        # two): the read keeps the key ranges alone, never a read of no partition.
        unfound = read_query(silver, columns, H, H + timedelta(hours=1), scope=FinalScope(scope.ranges, []))
        assert "_partition_id" not in unfound.sql
        whole = read_query(silver, columns, H, H + timedelta(hours=1))
        assert client.query_arrow(unfound.sql, parameters=unfound.parameters).equals(
            client.query_arrow(whole.sql, parameters=whole.parameters)
        )
        assert final_scope(client, silver, H + timedelta(hours=5), H + timedelta(hours=6)) == FinalScope([], [])
        client.command("SYSTEM START MERGES silver_trades")


# One short-lived process of the embedded tier, as a run worker or the CLI is: it opens the
# warm tier, inserts trades (the views write bronze, silver and the bars), merges what it wrote,
# lives a moment, and prints the outdated parts it saw when it opened and the MergeTree tables.
PROCESS = """
import sys, time
from datetime import datetime, timedelta
from cold_assets.defs.resources import ClickHouseResource
from cold_assets.settings import Settings
from cold_assets_tests.support.offload_helpers import RAW_COLUMNS
hour, first_id = datetime.fromisoformat(sys.argv[1]), int(sys.argv[2])
with ClickHouseResource.from_settings(Settings.from_env()).connect() as client:
    outdated = client.query("SELECT count() FROM system.parts WHERE database = currentDatabase() AND NOT active").result_rows[0][0]
    rows = [["binance", "BTCUSDT", str(first_id + i), "91000.00000000", "0.01000000", "false", hour + timedelta(seconds=i),
             hour + timedelta(minutes=5), "{}"] for i in range(50)]
    client.insert("trades_raw", rows, column_names=RAW_COLUMNS)
    tables = client.query("SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'").result_rows
    for (name,) in tables:
        client.command(f"OPTIMIZE TABLE `{name}` FINAL")
    time.sleep(1.5)
print(outdated, len(tables))
"""


def test_the_embedded_tiers_outdated_parts_stay_bounded_across_short_lived_processes(warm, settings, monkeypatch):
    """ClickHouse removes a merge's source parts a while after the merge, in a background
    thread of a process that lives long enough. The embedded tier's processes (runs, the CLI,
    the sensors' children) live seconds, so the parts stayed on disk and every process opened
    them all again: after a day of ticks the open had grown from 0.7 s to 2.5 s (issue 24).
    Each process now removes those of the processes before it that are older than the parts'
    lifetime: a minute, here a second, so that the processes need not be a minute apart."""
    import os
    import subprocess
    import sys

    import cold_assets.warm.ddl as ddl

    monkeypatch.setitem(ddl.EMBEDDED_MERGE_TREE, "old_parts_lifetime", 1)
    with warm.connect() as client:
        apply_warm_ddl(client, WarmLimits.from_settings(settings))

    seen, tables = [], 0
    for cycle in range(4):
        done = subprocess.run([sys.executable, "-c", PROCESS, H.isoformat(), str(7_000_000 + 100 * cycle)],
                              env=os.environ.copy(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        outdated, tables = map(int, done.stdout.split()[-2:])
        seen.append(outdated)
    # One process's merges leave at most two outdated parts per table (the part before its
    # insert, and its insert's): a process may find those of the one before it, never more.
    assert max(seen) <= 2 * tables, (seen, tables)


def test_the_embedded_tier_merges_no_more_than_a_process_of_seconds_can_finish(warm, settings, monkeypatch):
    """Silver and gold are partitioned by month. Once the month held weeks, every process
    opening the embedded tier started merging most of it, a merge none lived to finish,
    cancelled at close and started again by the next: CPU burnt beside every tick (issue 24).
    Merges are capped (EMBEDDED_MERGE_TREE; 64 MiB, here a few of this test's inserts): asked
    to merge again and again, ClickHouse leaves the month in parts, none past the cap."""
    import cold_assets.warm.ddl as ddl

    def silver_parts(client) -> list[int]:
        query = "SELECT bytes_on_disk FROM system.parts WHERE database = currentDatabase() AND table = 'silver_trades' AND active"
        return [int(b) for (b,) in client.query(query).result_rows]

    def insert(client, batch: int) -> None:
        rows = [["binance", "BTCUSDT", str(8_000_000 + 2_000 * batch + i), "91000.00000000", "0.01000000", "false",
                 H + timedelta(hours=batch, seconds=i), H + timedelta(hours=batch, seconds=i), "{}"] for i in range(2_000)]
        client.insert("trades_raw", rows, column_names=RAW_COLUMNS)

    with warm.connect() as client:
        apply_warm_ddl(client, WarmLimits.from_settings(settings))
        tables = client.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
        ).result_rows
        assert tables and all("max_bytes_to_merge_at_max_space_in_pool = 67108864" in ddl_text for _, ddl_text in tables), tables
        insert(client, 0)
        (one,) = silver_parts(client)
        cap = int(2.5 * one)  # two of an insert's parts fit, three do not
        monkeypatch.setitem(ddl.EMBEDDED_MERGE_TREE, "max_bytes_to_merge_at_max_space_in_pool", cap)
        apply_warm_ddl(client, WarmLimits.from_settings(settings))  # as `cold-assets init` again, on an existing tier
        for batch in range(1, 8):  # eight parts of one month in all
            insert(client, batch)
        for _ in range(6):
            client.command("OPTIMIZE TABLE silver_trades")
        merged = silver_parts(client)
    assert len(merged) < 8, "no merge ran at all"
    assert len(merged) >= 3 and max(merged) <= cap, (one, merged, cap)
