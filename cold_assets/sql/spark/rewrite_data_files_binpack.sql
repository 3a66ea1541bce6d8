-- Compaction of hour partitions (raw, bronze), whose files the offload already wrote in the
-- cold order: the rows keep their order and are re-encoded with the table's Parquet settings,
-- without the sort's shuffle. Otherwise as rewrite_data_files.sql.
CALL $catalog.system.rewrite_data_files(
  table => '$table',
  strategy => 'binpack',
  where => "$where",
  options => map(
    'rewrite-all', 'true',
    'max-concurrent-file-group-rewrites', '$concurrent_groups',
    'target-file-size-bytes', '$target_file_size_bytes'
  )
)
