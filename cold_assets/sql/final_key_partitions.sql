-- The partitions holding any row, any version of it, in a FINAL read's key ranges
-- ($key_ranges, from sql/final_key_ranges.sql), read without FINAL (the primary index prunes).
-- A FINAL cannot prune partitions by the event-time filter, so it opened every part of every
-- partition warm keeps; restricted to these (by _partition_id, which a merge never changes) it
-- merges the same versions of the same rows: a partition left out holds no row in the key
-- ranges, and a row outside them never merges with one inside (the ranges are of the key).
SELECT DISTINCT _partition_id
FROM $table
WHERE $key_ranges
