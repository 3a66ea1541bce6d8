#!/bin/sh
# First start of PostgreSQL: one role and one database each for Dagster's storage and the
# Iceberg catalog. Neither role is a superuser, neither can connect to the other's database;
# the superuser (POSTGRES_USER) stays with this container.
set -eu
for name in "$DAGSTER_PG_USER" "$DAGSTER_DB" "$ICEBERG_PG_USER" "$ICEBERG_DB"; do
  case "$name" in
    ''|*[!A-Za-z0-9_]*) echo "postgres-init: '$name' is not a plain identifier (letters, digits, _)" >&2; exit 1 ;;
  esac
done
case "$DAGSTER_PG_PASSWORD" in  # it goes into DAGSTER_POSTGRES_URL unescaped
  ''|*[!A-Za-z0-9._~-]*) echo "postgres-init: DAGSTER_PG_PASSWORD must be letters, digits and - _ . ~ (it is part of a URL)" >&2; exit 1 ;;
esac
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v dagster_user="$DAGSTER_PG_USER" -v dagster_password="$DAGSTER_PG_PASSWORD" -v dagster_db="$DAGSTER_DB" \
  -v iceberg_user="$ICEBERG_PG_USER" -v iceberg_password="$ICEBERG_PG_PASSWORD" -v iceberg_db="$ICEBERG_DB" <<'SQL'
CREATE ROLE :"dagster_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'dagster_password';
CREATE DATABASE :"dagster_db" OWNER :"dagster_user";
REVOKE ALL ON DATABASE :"dagster_db" FROM PUBLIC;
CREATE ROLE :"iceberg_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'iceberg_password';
CREATE DATABASE :"iceberg_db" OWNER :"iceberg_user";
REVOKE ALL ON DATABASE :"iceberg_db" FROM PUBLIC;
SQL
