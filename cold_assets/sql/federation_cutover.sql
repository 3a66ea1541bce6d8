-- The current cutover of each federated table (ddl/clickhouse/050_federation_cutover.sql).
SELECT table_name, max(cutover) FROM federation_cutover GROUP BY table_name
