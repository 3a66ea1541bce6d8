-- Per group of a deduplicated table's sorting key (silver: exchange, exchange_symbol), the
-- least and greatest id (trade_id) of its rows whose event time is in [range_start,
-- range_end). Read without FINAL, so every version of a row is seen; all versions of a row
-- share its key, so a FINAL read restricted to these key ranges returns the same rows as
-- one that is not, while ClickHouse's primary index reads only their granules instead of
-- merging every part warm keeps.
SELECT $groups, min($id), max($id)
FROM $table
WHERE $time_column >= {range_start:DateTime64(6, 'UTC')}
  AND $time_column <  {range_end:DateTime64(6, 'UTC')}
GROUP BY $groups
