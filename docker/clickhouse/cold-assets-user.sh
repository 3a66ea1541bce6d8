#!/bin/bash
# First start of ClickHouse: the user cold-assets connects as. The image's own user (`admin`,
# with access management and, by admin.xml, the control of named collections) creates it and
# stays inside this container. The image runs this once, on an empty data volume: if it
# fails, fix the cause and run it again with `docker compose exec clickhouse bash
# /docker-entrypoint-initdb.d/10-cold-assets-user.sh` (every statement is idempotent).
# cold-assets gets what its work needs and no more: everything on its database (the medallion,
# the federated views), the S3 source and the cold_s3 collection (reading the cold tier; the
# views then read through it with their definer's rights). Analysts get SELECT on the views.
set -eu
case "$COLD_CLICKHOUSE_USER" in
  ''|*[!A-Za-z0-9_-]*) echo "cold-assets-user: '$COLD_CLICKHOUSE_USER' is not a plain user name" >&2; exit 1 ;;
esac
case "$COLD_CLICKHOUSE_DATABASE" in
  ''|*[!A-Za-z0-9_]*) echo "cold-assets-user: '$COLD_CLICKHOUSE_DATABASE' is not a plain database name" >&2; exit 1 ;;
esac
# The password reaches SQL only as its SHA-256 (hex): no quoting, and not in the query log.
hash=$(printf '%s' "$COLD_CLICKHOUSE_PASSWORD" | sha256sum | cut -d' ' -f1)
clickhouse client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --multiquery <<SQL
CREATE DATABASE IF NOT EXISTS \`$COLD_CLICKHOUSE_DATABASE\`;
CREATE USER IF NOT EXISTS \`$COLD_CLICKHOUSE_USER\` IDENTIFIED WITH sha256_hash BY '$hash' DEFAULT DATABASE \`$COLD_CLICKHOUSE_DATABASE\`;
GRANT ALL ON \`$COLD_CLICKHOUSE_DATABASE\`.* TO \`$COLD_CLICKHOUSE_USER\`;
GRANT S3 ON *.* TO \`$COLD_CLICKHOUSE_USER\`;
GRANT NAMED COLLECTION ON cold_s3 TO \`$COLD_CLICKHOUSE_USER\`;
SQL
