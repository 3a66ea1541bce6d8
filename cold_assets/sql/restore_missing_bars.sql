-- The bars cold holds for windows starting in [range_start, range_end) that warm does not
-- (or holds a bar of proven to count other trades: restore_classify_bars.sql), as the
-- aggregate states warm keeps. Each value is cold's; the open and close states also
-- carry the (exchange_ts, trade_id) of the bar's first and last trade, from cold silver, so
-- that a trade of the window arriving later merges with the restored bar as it would have
-- with the original one. A bar whose trades cold silver does not hold gets the window's
-- bounds as keys (counted by the restore: the restored open and close then win over any
-- later trade of the window).
INSERT INTO $added (exchange, symbol, window_start, open, high, low, close, volume, quote_volume, trade_count)
SELECT
    b.exchange,
    b.symbol,
    b.window_start,
    initializeAggregation('argMinState', b.open, if(k.has_trades, k.first_trade, (b.window_start, toUInt64(0)))),
    b.high,
    b.low,
    initializeAggregation('argMaxState', b.close,
        if(k.has_trades, k.last_trade, (b.window_start + INTERVAL $interval - INTERVAL 1 MICROSECOND, toUInt64(18446744073709551615)))),
    b.volume,
    b.quote_volume,
    b.trade_count
FROM $cold_bars AS b
LEFT JOIN (
    SELECT
        exchange,
        symbol,
        toDateTime64(toStartOfInterval(exchange_ts, INTERVAL $interval, 'UTC'), 6, 'UTC') AS window_start,
        min((exchange_ts, trade_id)) AS first_trade,
        max((exchange_ts, trade_id)) AS last_trade,
        true AS has_trades
    FROM $trade_keys
    GROUP BY exchange, symbol, window_start
) AS k ON k.exchange = b.exchange AND k.symbol = b.symbol AND k.window_start = b.window_start
WHERE (b.exchange, b.symbol, b.window_start) NOT IN (
    SELECT exchange, symbol, window_start
    FROM $warm
    WHERE window_start >= {range_start:DateTime64(6, 'UTC')} AND window_start < {range_end:DateTime64(6, 'UTC')}
) OR (b.exchange, b.symbol, b.window_start) IN (SELECT exchange, symbol, window_start FROM $windows WHERE mergeable)
SETTINGS join_use_nulls = 0
