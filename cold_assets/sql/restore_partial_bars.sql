-- The windows warm holds a bar of with fewer trades than cold's bar: warm lost part of the
-- window's trades and took new ones since (a replica rebuilt while the feed ran), and that
-- restore_mergeable_bars.sql could not prove to count other trades than cold's bar. Their
-- states cannot be merged without risking a trade counted twice: the restore names them and
-- leaves them.
-- (A bar with more trades in warm than in cold is one still taking rows: nothing was lost.)
SELECT w.exchange, w.symbol, toString(w.window_start), toUInt64(w.trades), c.trade_count
FROM (
    SELECT exchange, symbol, window_start, sum(trade_count) AS trades
    FROM $warm
    WHERE window_start >= {range_start:DateTime64(6, 'UTC')} AND window_start < {range_end:DateTime64(6, 'UTC')}
    GROUP BY exchange, symbol, window_start
) AS w
INNER JOIN $cold_bars AS c ON c.exchange = w.exchange AND c.symbol = w.symbol AND c.window_start = w.window_start
WHERE w.trades < c.trade_count
  AND (w.exchange, w.symbol, w.window_start) NOT IN (SELECT exchange, symbol, window_start FROM $mergeable)
ORDER BY w.exchange, w.symbol, w.window_start
