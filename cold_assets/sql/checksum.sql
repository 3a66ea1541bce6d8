-- Per bucket (hour, or day for the daily bars): row count and an order-independent checksum
-- of the rows of $source whose $time_column is in [range_start, range_end). $canonical is the
-- row's canonical form (parity/checksums.py says how it is made identical on both tiers); summing
-- 64-bit hashes (mod 2^64) does not depend on row order and, unlike XOR, counts a
-- duplicated row twice.
SELECT toUnixTimestamp($bucket_function($time_column, 'UTC')) AS bucket, count(), sum(cityHash64($canonical))
FROM $source
WHERE $time_column >= {range_start:DateTime64(6, 'UTC')}
  AND $time_column <  {range_end:DateTime64(6, 'UTC')}
GROUP BY bucket
