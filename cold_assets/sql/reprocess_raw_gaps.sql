-- The trades cold bronze holds for a day whose message cold raw does not: raw's offload left
-- a gap there. Reprocessing the day would delete them from bronze, silver and gold, where
-- they may be the only copy left.
SELECT count()
FROM $bronze_keys AS b
LEFT ANTI JOIN (SELECT DISTINCT exchange, symbol, trade_id FROM $raw) AS r
    ON r.exchange = b.exchange AND r.symbol = b.symbol AND r.trade_id = toString(b.trade_id)
