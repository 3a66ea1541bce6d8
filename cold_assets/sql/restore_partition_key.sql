-- A warm table's partition expression, as ClickHouse stores it.
SELECT partition_key FROM system.tables WHERE database = currentDatabase() AND name = {table:String}
