-- One hour of a trades table (raw, bronze, silver) as the cold table stores it.
-- $columns is the select list made from the warm table's own columns (warm/read.py), so a
-- column added in ClickHouse reaches Iceberg; $final is FINAL where the table deduplicates
-- at merge time (silver). Only rows ingested in (after, until] are read: the append layers
-- move a watermark on ingested_at; the replace layers read the whole hour. $order_by is
-- the cold file order (tables.py): one file per exchange, neighbouring rows alike. The
-- bounds are bound parameters ({range_start:DateTime64(6, 'UTC')}, ...), or literals in a
-- view's DDL, where parameters cannot be bound (warm_read.time_bound). $row_hash is empty, or
-- each row's content hash as one more column (replace layers: the fingerprint of what is read).
-- $key_filter is empty, or, with FINAL, the sorting-key ranges that hold the range's rows
-- (sql/final_key_ranges.sql): the primary index then prunes what FINAL merges.
SELECT $columns$row_hash
FROM $table $final
WHERE $time_column >= $range_start
  AND $time_column <  $range_end
  AND ingested_at  >  $after
  AND ingested_at  <= $until
  $key_filter
ORDER BY $order_by
