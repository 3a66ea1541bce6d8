-- Rows and bytes of a warm table's active parts (bench storage): what ClickHouse keeps on
-- disk for it, with the DDL's codecs.
SELECT sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes)
FROM system.parts
WHERE active AND database = currentDatabase() AND table = {table:String}
