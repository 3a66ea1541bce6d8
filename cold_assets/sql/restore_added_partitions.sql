-- The partitions a restore's staging table holds rows in (their ids, as ATTACH takes them).
SELECT DISTINCT partition_id FROM system.parts
WHERE database = currentDatabase() AND table = {table:String} AND active AND rows > 0
ORDER BY partition_id
