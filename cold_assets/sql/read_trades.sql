-- One hour of a trades table (raw, bronze, silver) as the cold table stores it.
-- $columns is the select list made from the warm table's own columns (warm/read.py), so a
-- column added in ClickHouse reaches Iceberg; $final is FINAL where the table deduplicates
-- at merge time (silver). Only rows ingested in (after, until] are read: the append layers
-- move a watermark on ingested_at; the replace layers read the whole hour. $order_by is
-- the cold file order (tables.py): one file per exchange, neighbouring rows alike. The
-- bounds are bound parameters ({range_start:DateTime64(6, 'UTC')}, ...), or literals in a
-- view's DDL, where parameters cannot be bound (warm_read.time_bound). $row_hash is empty, or
-- each row's content hash as one more column (replace layers: the fingerprint of what is read).
-- $key_prewhere is empty, or, with FINAL, a PREWHERE on the sorting-key ranges that hold the
-- range's rows and the partitions that hold those (warm/read.py's FinalScope), or in a view's
-- DDL, whose bounds are literals, on the key blocks of a subquery (sql/final_key_blocks.sql):
-- the primary index and the partitions prune what FINAL merges, and the granules the index
-- cannot rule out (where one instrument's ids end, in each part) are dropped before the merge
-- by reading their key columns alone. Exact before FINAL: all versions of a row share its key
-- (the id is compared as the Int64 the SELECT makes of it), and the partitions named hold every
-- version of those keys (sql/final_key_partitions.sql).
SELECT $columns$row_hash
FROM $table $final
$key_prewhere
WHERE $time_column >= $range_start
  AND $time_column <  $range_end
  AND ingested_at  >  $after
  AND ingested_at  <= $until
ORDER BY $order_by
