"""Nightly maintenance on Spark: compaction, expiry, orphans and their proofs; the Spark session, its pinned jars and class-data archive."""
