-- The warm tier's clock: ingested_at comes from it, so watermarks are measured on it too.
SELECT now64(6, 'UTC')
