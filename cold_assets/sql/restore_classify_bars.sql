-- The windows of [range_start, range_end) where warm and cold both hold a bar and warm's
-- counts fewer trades than cold's, or (once the window is closed, late grace included: one
-- still taking trades is read while its silver and gold rows arrive) does not add up to the
-- trades of the two tiers' silver (those warm silver holds and cold silver lacks, and cold silver's): warm
-- lost trades of the window's bar, or counts trades silver no longer holds. The usual cause:
-- warm lost the window's bar and took new trades of it since, as a replica rebuilt while
-- the feed ran does. Each is `mergeable` where adding cold's bar to warm's states gives the
-- bar an unbroken warm tier holds, which needs the two bars to count disjoint trades;
-- proven per window, from both tiers' silver:
-- - warm's bar is the bar of the new trades: the same count, volumes, high and low, and the
--   same first and last trade (the argMin/argMax states, value and (exchange_ts, trade_id)
--   key, compared as ClickHouse serializes them);
-- - cold's bar is the bar of cold silver's trades of the window: the same count, volumes,
--   high, low, open and close (the two layers were offloaded from the same warm state).
-- The proof compares totals and the first and last trade: a warm bar that lost a middle
-- trade of the new ones and counts one of cold's of the same price and quantities instead
-- (two losses at once) would pass it. A window not proven is named by the restore
-- (restore_partial_bars.sql) and left as it is. Windows over hours of silver a reprocess
-- replaced are not judged: cold silver holds another logic's trades there. $key_filter
-- restricts silver's FINAL to the range's FinalScope (warm/read.py's
-- final_key_filter), or is empty.
INSERT INTO $windows (exchange, symbol, window_start, mergeable, warm_trades, cold_trades, silver_trades)
SELECT
    w.exchange,
    w.symbol,
    w.window_start,
    (
        w.trades = n.trades AND w.volume = n.volume AND w.quote_volume = n.quote_volume AND w.high = n.high
        AND w.low = n.low AND w.open = n.open AND w.close = n.close AS warm_is_new
    )
        AND c.trade_count = k.trades AND c.volume = k.volume AND c.quote_volume = k.quote_volume AND c.high = k.high
        AND c.low = k.low AND c.open = k.open AND c.close = k.close,
    w.trades,
    c.trade_count,
    n.trades + k.trades
FROM (
    SELECT exchange, symbol, window_start, sum(trade_count) AS trades, sum(volume) AS volume,
           sum(quote_volume) AS quote_volume, max(high) AS high, min(low) AS low,
           hex(argMinMergeState(open)) AS open, hex(argMaxMergeState(close)) AS close
    FROM $warm
    WHERE window_start >= {range_start:DateTime64(6, 'UTC')} AND window_start < {range_end:DateTime64(6, 'UTC')}
    GROUP BY exchange, symbol, window_start
) AS w
INNER JOIN $cold_bars AS c ON c.exchange = w.exchange AND c.symbol = w.symbol AND c.window_start = w.window_start
LEFT JOIN (
    -- the trades warm silver holds and cold silver does not, as the gold view aggregates them
    SELECT exchange, symbol,
           toDateTime64(toStartOfInterval(exchange_ts, INTERVAL $interval, 'UTC'), 6, 'UTC') AS window_start,
           count() AS trades, toDecimal128(sum(quantity), 8) AS volume, toDecimal128(sum(quote_quantity), 8) AS quote_volume,
           max(price) AS high, min(price) AS low,
           hex(argMinState(price, (exchange_ts, trade_id))) AS open, hex(argMaxState(price, (exchange_ts, trade_id))) AS close
    FROM $warm_silver FINAL
    WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
      $key_filter
      AND (exchange, exchange_symbol, trade_id) NOT IN (
          SELECT exchange, exchange_symbol, trade_id
          FROM $trade_keys
          WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
      )
    GROUP BY exchange, symbol, window_start
) AS n ON n.exchange = w.exchange AND n.symbol = w.symbol AND n.window_start = w.window_start
LEFT JOIN (
    -- cold silver's trades of the window, as the gold view aggregates them
    SELECT exchange, symbol,
           toDateTime64(toStartOfInterval(exchange_ts, INTERVAL $interval, 'UTC'), 6, 'UTC') AS window_start,
           count() AS trades, toDecimal128(sum(quantity), 8) AS volume, toDecimal128(sum(quote_quantity), 8) AS quote_volume,
           max(price) AS high, min(price) AS low,
           argMin(price, (exchange_ts, trade_id)) AS open, argMax(price, (exchange_ts, trade_id)) AS close
    FROM $trade_keys
    WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
    GROUP BY exchange, symbol, window_start
) AS k ON k.exchange = w.exchange AND k.symbol = w.symbol AND k.window_start = w.window_start
WHERE NOT arrayExists(
        h -> h < w.window_start + INTERVAL $interval AND h + INTERVAL 1 HOUR > w.window_start,
        {silver_reprocessed:Array(DateTime64(6, 'UTC'))}
    )
  AND (w.trades < c.trade_count OR (
       w.window_start + INTERVAL $interval <= {settled_before:DateTime64(6, 'UTC')}
       AND NOT (w.trades = n.trades + k.trades AND w.volume = n.volume + k.volume AND w.quote_volume = n.quote_volume + k.quote_volume)
   ))
SETTINGS join_use_nulls = 0
