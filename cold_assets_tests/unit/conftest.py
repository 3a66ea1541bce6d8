"""The unit tier: pure functions, no ClickHouse, no catalog, no Spark, no Dagster instance.
Each test runs in milliseconds; `make unit` runs them alone."""
