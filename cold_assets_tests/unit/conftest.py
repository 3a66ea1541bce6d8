"""The unit tier: no ClickHouse, no catalog, no Spark, no Dagster instance on disk (an
in-memory one at most). Each test runs in milliseconds, or a child Python process's start
(test_warm_child); `make unit` runs them alone."""
