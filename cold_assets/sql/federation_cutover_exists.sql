-- Whether the warm tier has the federation_cutover table (ddl/clickhouse/050): a warm tier
-- without the federated views has no cutover to watch.
SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'federation_cutover'
