-- The warm medallion's own consistency per hour of exchange time: every raw message is
-- either a bronze trade or a reject, and silver (deduplicated) never has more than bronze.
-- $key_filter restricts silver's FINAL to the range's FinalScope (warm/read.py's
-- final_key_filter, sql/final_key_ranges.sql), or is empty.
SELECT
    toUnixTimestamp(toStartOfHour(exchange_ts, 'UTC')) AS bucket,
    countIf(layer = 'raw')     AS raw,
    countIf(layer = 'bronze')  AS bronze,
    countIf(layer = 'rejects') AS rejects,
    countIf(layer = 'silver')  AS silver
FROM
(
    SELECT exchange_ts, 'raw' AS layer FROM trades_raw
    WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
    UNION ALL
    SELECT exchange_ts, 'bronze' FROM bronze_trades
    WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
    UNION ALL
    SELECT exchange_ts, 'rejects' FROM trades_rejects
    WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
    UNION ALL
    SELECT exchange_ts, 'silver' FROM silver_trades FINAL
    WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')} AND exchange_ts < {range_end:DateTime64(6, 'UTC')}
    $key_filter
)
GROUP BY bucket
