-- The benchmark's recent-trades query (tools/bench.py): per instrument, the trades and volume
-- of $source since range_start, the hours an analyst asks of the warm tier. $source is the
-- federated view, or silver read FINAL alone.
SELECT exchange, symbol, count() AS trades, sum(quantity) AS volume, max(trade_id) AS last_trade
FROM $source
WHERE exchange_ts >= {range_start:DateTime64(6, 'UTC')}
GROUP BY exchange, symbol
ORDER BY exchange, symbol
