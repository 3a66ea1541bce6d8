-- Snapshots committed before $older_than go, with the files only they referenced; the
-- current snapshot always stays.
CALL $catalog.system.expire_snapshots(
  table => '$table',
  older_than => TIMESTAMP '$older_than',
  retain_last => 1,
  max_concurrent_deletes => 4
)
