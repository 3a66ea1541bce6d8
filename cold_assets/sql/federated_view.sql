-- $view: one table over both tiers. Warm rows at or after the cutover (read exactly as the
-- offload reads them: silver FINAL, gold as finalized bars), cold rows before it, read by
-- ClickHouse's own Iceberg reader. The cutover is a literal: a view's DDL cannot bind
-- parameters (federation.py renders it from a datetime).
CREATE OR REPLACE VIEW $view AS
SELECT $columns FROM ($warm_read)
UNION ALL
SELECT $columns FROM $cold_source WHERE $time_column < $cutover
COMMENT '$comment'
