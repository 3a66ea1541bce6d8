-- The benchmark's OHLCV query (tools/bench.py): hourly bars from the 1-minute bars of $source over
-- [range_start, range_end). $source is the federated view, or the warm read alone.
SELECT exchange, symbol, toStartOfHour(window_start) AS hour,
       argMin(open, window_start) AS open, max(high) AS high, min(low) AS low,
       argMax(close, window_start) AS close, sum(volume) AS volume, sum(trade_count) AS trades
FROM $source
WHERE window_start >= {range_start:DateTime64(6, 'UTC')}
  AND window_start <  {range_end:DateTime64(6, 'UTC')}
GROUP BY exchange, symbol, hour
ORDER BY exchange, symbol, hour
