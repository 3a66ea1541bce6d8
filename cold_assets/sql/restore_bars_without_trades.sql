-- How many of cold's bars in a restore's staging have no trade in cold silver's staging.
SELECT count()
FROM $cold_bars AS b
LEFT ANTI JOIN (
    SELECT DISTINCT exchange, symbol, toDateTime64(toStartOfInterval(exchange_ts, INTERVAL $interval, 'UTC'), 6, 'UTC') AS window_start
    FROM $trade_keys
) AS k ON k.exchange = b.exchange AND k.symbol = b.symbol AND k.window_start = b.window_start
