-- Gold windows whose trade count differs from the silver trades in that window, per hour of
-- window start. $table is a gold table, $interval its window. Only windows that lie wholly
-- inside [range_start, range_end) are compared: a window cut by the range would compare a
-- whole bar with part of its trades. $key_filter restricts silver's FINAL to the range's
-- FinalScope: key ranges and their partitions (warm/read.py's final_key_filter), or is empty.
SELECT toUnixTimestamp(toStartOfHour(window_start, 'UTC')) AS bucket, count() AS windows_differing
FROM
(
    SELECT exchange, symbol, window_start, sum(trade_count) AS gold_trades
    FROM $table
    WHERE window_start >= {range_start:DateTime64(6, 'UTC')}
      AND window_start + INTERVAL $interval <= {range_end:DateTime64(6, 'UTC')}
    GROUP BY exchange, symbol, window_start
) AS g
FULL OUTER JOIN
(
    SELECT exchange, symbol,
           toDateTime64(toStartOfInterval(exchange_ts, INTERVAL $interval, 'UTC'), 6, 'UTC') AS window_start,
           count() AS silver_trades
    FROM silver_trades FINAL
    WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
    $key_filter
    GROUP BY exchange, symbol, window_start
    HAVING window_start >= {range_start:DateTime64(6, 'UTC')}
       AND window_start + INTERVAL $interval <= {range_end:DateTime64(6, 'UTC')}
) AS s
USING (exchange, symbol, window_start)
WHERE gold_trades != silver_trades
GROUP BY bucket
