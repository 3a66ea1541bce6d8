"""The warm tier: ClickHouse's DDL for the medallion, the offload's reads (SQL in ../sql), the embedded chDB lock."""
