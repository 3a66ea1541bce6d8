"""The cold tier: Iceberg DDL, the data file writer, range filters, DuckDB as a reader."""
