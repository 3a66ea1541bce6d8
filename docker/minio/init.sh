#!/bin/sh
# One-shot set-up of MinIO, the only place its root key is used: the warehouse bucket and two
# users scoped to warehouse/ of that bucket.
# - the writer (the code location's pyiceberg and Spark, the REST catalog): read, write and
#   delete objects there (the offload, compaction, expiry, orphan removal);
# - the reader (ClickHouse's cold_s3 named collection): list and read there only, so a query
#   that points the collection's URL elsewhere in MinIO reads nothing and can write nowhere.
# Idempotent: safe on every start.
set -eu
mc alias set cold http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "cold/$COLD_BUCKET"
for role in reader writer; do
  sed "s/\${COLD_BUCKET}/$COLD_BUCKET/g" "/init/cold-$role-policy.json" > "/tmp/cold-$role-policy.json"
  mc admin policy create cold "cold-$role" "/tmp/cold-$role-policy.json"
done
mc admin user add cold "$COLD_S3_READER_USER" "$COLD_S3_READER_PASSWORD"
mc admin policy attach cold cold-reader --user "$COLD_S3_READER_USER" || true  # already attached
mc admin user add cold "$COLD_S3_WRITER_USER" "$COLD_S3_WRITER_PASSWORD"
mc admin policy attach cold cold-writer --user "$COLD_S3_WRITER_USER" || true  # already attached
