-- The finalized OHLCV bars of a gold table whose window starts in [range_start, range_end).
-- Bars are aggregate states in ClickHouse: merged here, so each bar is one row. $row_hash is
-- empty, or each bar's content hash as one more column (read_trades.sql says why, and what
-- $order_by is).
SELECT
    exchange,
    symbol,
    window_start,
    argMinMerge(open)                                   AS open,
    max(high)                                           AS high,
    min(low)                                            AS low,
    argMaxMerge(close)                                  AS close,
    sum(volume)                                         AS volume,
    sum(quote_volume)                                   AS quote_volume,
    toInt64(sum(trade_count))                           AS trade_count,
    toDecimal64(quote_volume / volume, 8)               AS vwap  -- the aliases above: finalized sums
    $row_hash
FROM $table
WHERE window_start >= $range_start
  AND window_start <  $range_end
GROUP BY exchange, symbol, window_start
ORDER BY $order_by
