-- Compressed bytes per column of a warm table's active parts (bench storage).
SELECT column, sum(column_data_compressed_bytes)
FROM system.parts_columns
WHERE active AND database = currentDatabase() AND table = {table:String}
GROUP BY column
