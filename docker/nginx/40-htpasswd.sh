#!/bin/sh
# Writes the basic-auth user file from DAGSTER_UI_USER and DAGSTER_UI_PASSWORD (the nginx
# image runs /docker-entrypoint.d/*.sh before it starts). The password is stored as an
# apr1 hash, never in plain text, and never echoed.
set -eu
: "${DAGSTER_UI_USER:?set DAGSTER_UI_USER}"
: "${DAGSTER_UI_PASSWORD:?set DAGSTER_UI_PASSWORD}"
file="${HTPASSWD_FILE:-/etc/nginx/htpasswd}"
command -v openssl >/dev/null || { echo "40-htpasswd.sh: openssl is needed to hash DAGSTER_UI_PASSWORD" >&2; exit 1; }
umask 077
hash=$(printf '%s' "$DAGSTER_UI_PASSWORD" | openssl passwd -apr1 -stdin)
printf '%s:%s\n' "$DAGSTER_UI_USER" "$hash" > "$file"
# nginx's workers run as the image's nginx user: they read it, nobody else does.
if id nginx >/dev/null 2>&1; then chown nginx "$file"; fi
