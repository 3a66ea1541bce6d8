-- The rows a read query returns, per offload range (toUnixTimestamp of its start): how a
-- checkpoint's read is cut into slices of bounded size.
SELECT toUnixTimestamp($range_function($time_column, 'UTC')) AS range_start, count()
FROM ($query)
GROUP BY range_start
