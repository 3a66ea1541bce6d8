-- The first hour the warm table still holds (what the TTL has not dropped yet).
SELECT toStartOfHour(min($time_column), 'UTC') FROM $table HAVING count() > 0
