-- The windows warm holds a bar of with fewer trades than cold's bar (it lost the window's
-- bar and took new trades of it since: a replica rebuilt while the feed ran) whose two bars
-- count disjoint trades, so that cold's bar added as states merges into the bar an unbroken
-- warm tier would hold. Proven per window, from both tiers' silver:
-- - warm's bar is, in count, volumes, high and low, the bar of the trades warm silver holds
--   and cold silver does not (the new ones), and
-- - cold's bar counts exactly the window's trades of cold silver (the two layers were
--   offloaded from the same warm state).
-- A window failing either is named by restore_partial_bars.sql and left as it is.
INSERT INTO $mergeable (exchange, symbol, window_start)
SELECT w.exchange, w.symbol, w.window_start
FROM (
    SELECT exchange, symbol, window_start, sum(trade_count) AS trades, sum(volume) AS volume,
           sum(quote_volume) AS quote_volume, max(high) AS high, min(low) AS low
    FROM $warm
    WHERE window_start >= {range_start:DateTime64(6, 'UTC')} AND window_start < {range_end:DateTime64(6, 'UTC')}
    GROUP BY exchange, symbol, window_start
) AS w
INNER JOIN $cold_bars AS c ON c.exchange = w.exchange AND c.symbol = w.symbol AND c.window_start = w.window_start
INNER JOIN (
    SELECT exchange, symbol,
           toDateTime64(toStartOfInterval(exchange_ts, INTERVAL $interval, 'UTC'), 6, 'UTC') AS window_start,
           count() AS trades, sum(quantity) AS volume, sum(quote_quantity) AS quote_volume,
           max(price) AS high, min(price) AS low
    FROM (
        SELECT exchange, symbol, exchange_symbol, trade_id, exchange_ts, price, quantity, quote_quantity
        FROM $warm_silver
        WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
          AND (exchange, exchange_symbol, trade_id) NOT IN (SELECT exchange, exchange_symbol, trade_id FROM $trade_keys)
        LIMIT 1 BY exchange, exchange_symbol, trade_id
    )
    GROUP BY exchange, symbol, window_start
) AS n ON n.exchange = w.exchange AND n.symbol = w.symbol AND n.window_start = w.window_start
INNER JOIN (
    SELECT exchange, symbol,
           toDateTime64(toStartOfInterval(exchange_ts, INTERVAL $interval, 'UTC'), 6, 'UTC') AS window_start,
           count() AS trades
    FROM $trade_keys
    GROUP BY exchange, symbol, window_start
) AS k ON k.exchange = w.exchange AND k.symbol = w.symbol AND k.window_start = w.window_start
WHERE w.trades < c.trade_count
  AND w.trades = n.trades AND w.volume = n.volume AND w.quote_volume = n.quote_volume
  AND w.high = n.high AND w.low = n.low
  AND c.trade_count = k.trades
