-- The cutover of each federated view `<warm table>_all` (cold_assets/federation.py): rows
-- before it are read from the cold tier, rows at or after it from the warm tier. One row per
-- table and move; the newest wins. It only ever moves forward.
CREATE TABLE IF NOT EXISTS federation_cutover
(
    table_name  LowCardinality(String),
    cutover     DateTime64(6, 'UTC'),
    moved_at    DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(moved_at)
ORDER BY table_name
