-- $view: one table over both tiers. Warm rows at or after the cutover (read exactly as the
-- offload reads them: silver FINAL, gold as finalized bars), cold rows before it, read by
-- ClickHouse's own Iceberg reader. The cutover is a literal: a view's DDL cannot bind
-- parameters (federation.py renders it from a datetime). SQL SECURITY DEFINER: the view reads
-- with its definer's rights (cold-assets', which may use the cold_s3 named collection), so an
-- analyst needs SELECT on the view, never the collection (whose URL a user could point anywhere).
CREATE OR REPLACE VIEW $view DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT $columns FROM ($warm_read)
UNION ALL
SELECT $columns FROM $cold_source WHERE $time_column < $cutover
COMMENT '$comment'
