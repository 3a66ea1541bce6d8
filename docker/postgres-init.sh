#!/bin/sh
# Second database on the same server: the Iceberg catalog (the first holds Dagster's storage).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -c "CREATE DATABASE \"$ICEBERG_DB\""
