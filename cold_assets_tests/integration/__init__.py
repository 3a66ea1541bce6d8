"""Tests on real parts: chDB, Iceberg tables on disk, PostgreSQL, Spark, the Dagster instance and webserver."""
