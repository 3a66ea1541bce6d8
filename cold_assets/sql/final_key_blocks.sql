-- For a FINAL read whose bounds are literals (a view's DDL, where final_key_ranges' bound
-- key ranges cannot be used): restricts the read to the blocks of $block consecutive ids
-- (per group of the sorting key) that hold a version of a row whose event time is in
-- [range_start, range_end), found by a subquery without FINAL. All versions of a row share
-- its key, so FINAL still sees every version of every row it returns, while the primary
-- index reads only those blocks' granules instead of every part warm keeps. The set
-- stays small: one entry per group and block, not per row.
($groups, intDiv($id, $block)) IN (
    SELECT DISTINCT $groups, intDiv($id, $block)
    FROM $table
    WHERE $time_column >= $range_start
      AND $time_column <  $range_end
)
