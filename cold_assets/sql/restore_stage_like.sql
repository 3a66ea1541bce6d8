-- A restore's staging table with a warm table's columns and partitioning. `$engine` is empty
-- (the warm table's own engine, partition key, sort key and TTL: its partitions can be
-- attached to the warm table) or `ENGINE = MergeTree ORDER BY tuple()` (a plain copy of cold
-- rows, which must not collapse or aggregate anything).
CREATE TABLE $stage AS $warm $engine
