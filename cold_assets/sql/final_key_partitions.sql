-- The partitions holding any row, any version of it, in a FINAL read's key ranges
-- ($key_ranges, from sql/final_key_ranges.sql), read without FINAL (the primary index prunes).
-- A FINAL does not prune partitions by the event-time filter (ClickHouse 26.3 on defers that
-- pruning past the merge: a later version of a row may sit in another month), so it opened
-- every part of every partition warm keeps. Restricted to these (by _partition_id, which a
-- merge never changes) it merges the same versions of the same rows, as of this query: a
-- partition left out held no row in the key ranges, and a row outside them never merges with
-- one inside (the ranges are of the key). A version inserted into another partition after
-- this query is not seen, as if it had arrived after the read: the next read of the hour
-- takes it in.
SELECT DISTINCT _partition_id
FROM $table
WHERE $key_ranges
