#!/bin/sh
# One-shot set-up of MinIO: the warehouse bucket, and the read-only user ClickHouse reads the
# cold tier with (the cold_s3 named collection): it may list and read under warehouse/ of
# that bucket and nothing else, so a query that points the collection's URL elsewhere in
# MinIO reads nothing and can write nowhere. Idempotent: safe on every start.
set -eu
mc alias set cold http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "cold/$COLD_BUCKET"
sed "s/\${COLD_BUCKET}/$COLD_BUCKET/g" /init/cold-reader-policy.json > /tmp/cold-reader-policy.json
mc admin policy create cold cold-reader /tmp/cold-reader-policy.json
mc admin user add cold "$COLD_S3_READER_USER" "$COLD_S3_READER_PASSWORD"
mc admin policy attach cold cold-reader --user "$COLD_S3_READER_USER" || true  # already attached
