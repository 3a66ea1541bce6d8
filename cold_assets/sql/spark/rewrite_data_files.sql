-- Compaction of the closed partitions of one table that still hold files the hourly offload
-- wrote (maintenance/operations.py renders every value from a typed Python value; Spark procedures take
-- literals only). The where filter selects whole time partitions; every file in them is
-- rewritten (rewrite-all), sorted by the table's cold order and re-encoded with the session's
-- compression level, so a partition is rewritten once, not every night. One commit per call
-- (no partial progress): a race with an offload fails the call as a whole, and
-- maintenance.compact plans it again.
CALL $catalog.system.rewrite_data_files(
  table => '$table',
  strategy => 'sort',
  sort_order => '$sort_order',
  where => "$where",
  options => map(
    'rewrite-all', 'true',
    'max-concurrent-file-group-rewrites', '$concurrent_groups',
    'target-file-size-bytes', '$target_file_size_bytes'
  )
)
