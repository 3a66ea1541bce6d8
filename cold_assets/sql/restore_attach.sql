-- Adds a staging partition's rows to the warm table: atomic, and runs no materialized view
-- (a partition move is not an insert), so nothing downstream is derived twice.
ALTER TABLE $warm ATTACH PARTITION ID $partition_id FROM $added
