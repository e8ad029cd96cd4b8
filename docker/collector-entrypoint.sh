#!/bin/bash
# The collector image's entrypoint. Where secrets arrive as environment variables (ECS task secrets), it writes
# them to the files the collector reads, then runs the collector with the given arguments:
#
#   GPUCOST_AUTH_TOML     → $GPUCOST_RUNTIME_DIR/auth.toml → GPUCOST_AUTH       (token hashes, --auth)
#   GPUCOST_TLS_CERT_PEM  → $GPUCOST_RUNTIME_DIR/tls.crt   → GPUCOST_TLS_CERT   (--tls-cert)
#   GPUCOST_TLS_KEY_PEM   → $GPUCOST_RUNTIME_DIR/tls.key   → GPUCOST_TLS_KEY    (--tls-key)
#
# A file variable that is already set wins (Kubernetes mounts Secrets as files). The content variables are removed
# from the collector's environment. GPUCOST_RUNTIME_DIR defaults to /tmp/gpucost (a writable volume: the root
# filesystem is read-only).
set -euo pipefail

dir="${GPUCOST_RUNTIME_DIR:-/tmp/gpucost}"

materialize() {
  local content_var="$1" path_var="$2" file="$3"
  if [ -n "${!content_var:-}" ] && [ -z "${!path_var:-}" ]; then
    (umask 077 && mkdir -p "$dir" && printf '%s\n' "${!content_var}" >"$dir/$file")
    export "$path_var=$dir/$file"
  fi
  unset "$content_var"
}

materialize GPUCOST_AUTH_TOML GPUCOST_AUTH auth.toml
materialize GPUCOST_TLS_CERT_PEM GPUCOST_TLS_CERT tls.crt
materialize GPUCOST_TLS_KEY_PEM GPUCOST_TLS_KEY tls.key

collector="${GPUCOST_COLLECTOR_BIN:-/usr/local/bin/gpucost-collector}"

# A postgres:// ledger needs a collector built with the PostgreSQL ledger (cargo feature `postgres`, on by default).
# One without it would take the URL for a SQLite file name and keep a private ledger in every task: refuse instead.
case "${GPUCOST_DB:-}" in
  postgres://* | postgresql://*)
    if ! env -u GPUCOST_DB "$collector" serve --help 2>/dev/null | grep -q 'postgres://'; then
      echo "gpucost-entrypoint: GPUCOST_DB is a PostgreSQL URL, but this gpucost-collector has only the SQLite ledger; refusing to start (each task would keep its own ledger). Build the image with the default cargo features (they include postgres), or deploy with ledger = \"sqlite-efs\"." >&2
      exit 64
    fi
    ;;
esac

exec "$collector" "$@"
