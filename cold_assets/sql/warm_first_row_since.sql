-- The first row a warm table holds at or after `since` (none: no row).
SELECT min($time_column) FROM $table WHERE $time_column >= {since:DateTime64(6, 'UTC')} HAVING count() > 0
