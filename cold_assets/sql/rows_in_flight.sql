-- Per bucket: rows of $source ingested after the settle line (an append layer's rows in
-- flight, which parity judges once they settled). The audit shows them beside its verdict.
SELECT toUnixTimestamp($bucket_function($time_column, 'UTC')) AS bucket, count()
FROM $source
WHERE $time_column >= {range_start:DateTime64(6, 'UTC')}
  AND $time_column <  {range_end:DateTime64(6, 'UTC')}
  AND ingested_at > {settled:DateTime64(6, 'UTC')}
GROUP BY bucket
