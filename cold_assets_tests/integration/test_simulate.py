"""The feed simulator: deterministic, realistic, and both exchange formats parse alike."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from cold_assets.tools.simulate import FeedConfig, Trades, generate, load_instruments, render_binance, render_kraken, simulate
from cold_assets_tests.support.offload_helpers import START


def _concat(tables):
    return pa.concat_tables(list(tables))


def test_the_feed_is_deterministic_for_a_seed(warm):
    with warm.connect() as client:
        instruments = load_instruments(client)
    cfg = FeedConfig(start=START, hours=3, trades_per_hour=3_000, seed=11)
    first, again = _concat(generate(cfg, instruments)), _concat(generate(cfg, instruments))
    other = _concat(generate(FeedConfig(start=START, hours=3, trades_per_hour=3_000, seed=12), instruments))
    assert first.equals(again)
    assert not first.equals(other)


def test_simulated_trades_look_like_real_ones(warm):
    cfg = FeedConfig(start=START, hours=2, trades_per_hour=60_000, duplicate_share=0.01, malformed_share=0.002)
    with warm.connect() as client:
        written = simulate(client, cfg)
        assert written == client.query("SELECT count() FROM trades_raw").result_rows[0][0]
        # Prices on the instrument's tick size, quantities on its lot size.
        off_grid = client.query(
            "SELECT countIf(b.price % i.tick_size != 0), countIf(b.quantity % i.lot_size != 0), count() "
            "FROM bronze_trades b JOIN instruments i ON i.exchange = b.exchange AND i.exchange_symbol = b.symbol"
        ).result_rows[0]
        assert off_grid[0] == 0 and off_grid[1] == 0 and off_grid[2] > 100_000
        # Sequential trade ids per instrument: no gaps among the unique trades.
        gaps = client.query(
            "SELECT exchange, symbol, max(trade_id) - min(trade_id) + 1 - uniqExact(trade_id) "
            "FROM bronze_trades GROUP BY ALL"
        ).result_rows
        assert len(gaps) == 6
        rejected = client.query("SELECT count() FROM trades_rejects").result_rows[0][0]
        assert all(g <= rejected for *_, g in gaps)  # a malformed message can leave a hole, nothing else
        # Duplicates near the configured share; silver has none.
        dup = client.query("SELECT count() - uniqExact(exchange, symbol, trade_id) FROM bronze_trades").result_rows[0][0]
        assert 0.005 * written < dup < 0.02 * written
        silver = client.query("SELECT count(), uniqExact(exchange, exchange_symbol, trade_id) FROM silver_trades").result_rows[0]
        assert silver[0] == silver[1]
        assert 0.001 * written < rejected < 0.004 * written
        # Heavy-tailed sizes: the largest trades are far above the median.
        median, p999 = client.query(
            "SELECT quantile(0.5)(quote_quantity), quantile(0.999)(quote_quantity) FROM bronze_trades WHERE symbol = 'BTCUSDT'"
        ).result_rows[0]
        assert p999 > 20 * median
        # Bursty: the busiest second carries many times the average rate.
        peak = client.query(
            "SELECT max(c) FROM (SELECT count() AS c FROM bronze_trades WHERE symbol = 'BTCUSDT' "
            "GROUP BY toStartOfSecond(exchange_ts))"
        ).result_rows[0][0]
        assert peak > 20 * (10_000 / 3600)
        # Late arrivals: some trades were received hours after their exchange time.
        late = client.query("SELECT countIf(received_at - exchange_ts > 3600) FROM trades_raw").result_rows[0][0]
        assert late > 0


def test_binance_and_kraken_messages_parse_to_the_same_typed_trades(warm):
    with warm.connect() as client:
        instruments = load_instruments(client)
        binance, kraken = instruments[("binance", "BTC-USDT")], instruments[("kraken", "BTC-USDT")]
        rng = np.random.default_rng(3)
        n = 500
        us = int(START.timestamp() * 1e6) + np.sort(rng.integers(0, 3_600_000_000, n))

        def trades(inst):
            return Trades(
                inst,
                trade_id=np.arange(7_000, 7_000 + n, dtype=np.int64),
                price_e8=(9_100_000 + rng.integers(-5000, 5000, n)) * 10_000_000 // 10,  # on a 0.1 grid
                qty_e8=rng.integers(1, 10**8, n),
                buyer_is_maker=rng.random(n) < 0.5,
                exchange_us=us,
                received_us=us + 2_000,
                corrupt=np.zeros(n, dtype=np.int8),
            )

        rng = np.random.default_rng(3)
        b = render_binance(trades(binance))
        rng = np.random.default_rng(3)
        k = render_kraken(trades(kraken))
        # The messages are the exchanges' own formats.
        first_b, first_k = json.loads(b["message"][0].as_py()), json.loads(k["message"][0].as_py())
        assert set(first_b) == {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"}
        assert len(first_k) == 7 and first_k[3] in ("b", "s") and isinstance(first_k[2], float)
        client.insert_arrow("trades_raw", b)
        client.insert_arrow("trades_raw", k)
        typed = "trade_id, price, quantity, quote_quantity, side, is_buyer_maker, exchange_ts, symbol"
        rows = {
            ex: client.query(f"SELECT {typed} FROM silver_trades WHERE exchange = '{ex}' ORDER BY trade_id").result_rows
            for ex in ("binance", "kraken")
        }
    assert len(rows["binance"]) == n
    assert rows["binance"] == rows["kraken"]


def test_a_history_fed_as_if_live_is_ingested_when_received_after_its_backlog(warm):
    """ingested_from (bench steady's month): each message's ingested_at is its received_at, no
    earlier than the backlog's time, no later than the insert; without it, the insert's time.
    The feed's last hour is the current one: its late messages are received in the future."""
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now_hour - timedelta(hours=2)
    backlog = start + timedelta(minutes=30)

    def fed(**options) -> tuple[datetime, datetime, list[tuple[datetime, datetime]]]:
        before = datetime.now(UTC)
        with warm.connect() as client:
            client.command("TRUNCATE TABLE trades_raw")
            simulate(client, FeedConfig(start=start, hours=3, trades_per_hour=6_000, late_share=0.02, **options))
            after = datetime.now(UTC)
            rows = client.query("SELECT received_at, ingested_at FROM trades_raw").result_rows
        return before, after, [(r.replace(tzinfo=UTC), i.replace(tzinfo=UTC)) for r, i in rows]

    before, after, rows = fed(ingested_from=backlog)
    assert len(rows) > 17_000
    future = [(received, ingested) for received, ingested in rows if received > after]
    assert future  # late messages of the current hour
    for received, ingested in rows:
        if received < before:
            assert ingested == max(received, backlog), (received, ingested)
        else:
            assert before <= ingested <= after, (received, ingested)
    assert any(ingested == backlog for _, ingested in rows) and any(ingested > backlog for _, ingested in rows)

    before, after, rows = fed()
    assert all(before <= ingested <= after for _, ingested in rows)
    with pytest.raises(ValueError, match="ingested_from"):
        FeedConfig(start=START, ingested_from=backlog.replace(tzinfo=None))


def test_bad_feed_options_are_refused_with_the_option_named():
    with pytest.raises(ValueError, match="duplicate_share"):
        FeedConfig(start=START, duplicate_share=0.7)
    with pytest.raises(ValueError, match="on the hour"):
        FeedConfig(start=START.replace(minute=5))
    with pytest.raises(ValueError, match="DOGE-USDT"):
        FeedConfig(start=START, symbols=("DOGE-USDT",))
