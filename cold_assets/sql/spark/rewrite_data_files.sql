-- Compaction of the closed partitions of one table (maintenance.py renders every value from
-- a typed Python value; Spark procedures take literals only). The where filter selects files,
-- so whole partitions are merged: min-input-files 2 merges a day's hourly files. One commit
-- per call (no partial progress): a race with an offload fails the call as a whole, and
-- maintenance.compact plans it again.
CALL $catalog.system.rewrite_data_files(
  table => '$table',
  strategy => 'binpack',
  where => "$time_column >= TIMESTAMP '$lower' AND $time_column < TIMESTAMP '$upper'",
  options => map(
    'min-input-files', '$min_input_files',
    'target-file-size-bytes', '$target_file_size_bytes'
  )
)
