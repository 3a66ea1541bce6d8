"""Beside the code location: the `cold-assets` command, the feed simulator, the benchmarks, the embedded Dagster instance."""
