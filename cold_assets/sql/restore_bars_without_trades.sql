-- Of cold's bars in a restore's staging: how many have no trade in cold silver's staging
-- (their open and close are keyed by the window's bounds), and how many whose trades there do
-- not end in the bar's open and close or add up to its count (cold silver and gold were
-- offloaded at different moments: the keys may belong to other trades than the bar's).
SELECT
    countIf(NOT k.has_trades),
    countIf(k.has_trades AND (k.first_price != b.open OR k.last_price != b.close OR k.trades != b.trade_count))
FROM $cold_bars AS b
LEFT JOIN (
    SELECT
        exchange,
        symbol,
        toDateTime64(toStartOfInterval(exchange_ts, INTERVAL $interval, 'UTC'), 6, 'UTC') AS window_start,
        argMin(price, (exchange_ts, trade_id)) AS first_price,
        argMax(price, (exchange_ts, trade_id)) AS last_price,
        count() AS trades,
        true AS has_trades
    FROM $trade_keys
    GROUP BY exchange, symbol, window_start
) AS k ON k.exchange = b.exchange AND k.symbol = b.symbol AND k.window_start = b.window_start
SETTINGS join_use_nulls = 0
