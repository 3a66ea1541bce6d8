-- Rows per warm partition (the warm table's own partition expression, $partition_key, read
-- from system.tables) of a table's rows in [range_start, range_end).
SELECT toString($partition_key) AS partition, count()
FROM $table
WHERE $time_column >= {range_start:DateTime64(6, 'UTC')} AND $time_column < {range_end:DateTime64(6, 'UTC')}
GROUP BY partition
