"""cold-assets: mirror a ClickHouse market-data medallion into Apache Iceberg, exactly once."""
