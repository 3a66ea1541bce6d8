-- Files under the table's location that no snapshot references and that are older than
-- $older_than (a crashed writer's leftovers). Iceberg refuses an interval under 24 hours.
CALL $catalog.system.remove_orphan_files(
  table => '$table',
  older_than => TIMESTAMP '$older_than',
  dry_run => $dry_run,
  max_concurrent_deletes => 4
)
