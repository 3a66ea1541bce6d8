#!/bin/bash
# First start of ClickHouse: the cold-assets user may use the cold_s3 collection (the views
# it defines then read through it with its rights). Analysts get SELECT on the views only.
set -eu
clickhouse client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" \
  --query "GRANT NAMED COLLECTION ON cold_s3 TO \`$CLICKHOUSE_USER\`"
