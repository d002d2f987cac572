#!/bin/bash
# install-original.sh [PREFIX] — the original SkyTools stack, for the benchmarks and the
# interoperability tests that compare this extension with it.
#
# The original PgQ 3.5, pgq_node 3.5 and londiste SQL 3.8 (Debian packages) install an
# extension called `pgq` too, so they cannot share the system PostgreSQL tree with this
# one. Their packages, with PostgreSQL 15's own, are unpacked into PREFIX (default
# /opt/pgq-reference) instead: a server started from $PREFIX/usr/lib/postgresql/15/bin
# finds its share/ and lib/ relative to its bin/, so `CREATE EXTENSION pgq` there is the
# original. Nothing is installed into the system tree from those packages.
#
# System-wide (they do not collide with anything here): the original's client side,
# `pgqd`, the `londiste` CLI and the Python `pgq` library (/usr/bin/python3).
#
# Idempotent. The last line printed is the original's bin directory.
set -euo pipefail
PREFIX=${1:-/opt/pgq-reference}
BIN=$PREFIX/usr/lib/postgresql/15/bin
TREE_PKGS="postgresql-15 postgresql-client-15 postgresql-15-pgq3 postgresql-15-pgq-node postgresql-15-londiste-sql"
CLIENT_PKGS="pgqd python3-londiste python3-pgq python3-skytools python3-psycopg2"

updated=""
apt_update() { [ -n "$updated" ] || { apt-get update -qq; updated=1; }; }

missing=""
for p in $CLIENT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

control=$PREFIX/usr/share/postgresql/15/extension/pgq.control
if [ ! -x "$BIN/postgres" ] || [ ! -f "$control" ]; then
  apt_update
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download $TREE_PKGS >/dev/null 2>&1) \
    || { echo "install-original: apt-get download failed" >&2; exit 1; }
  mkdir -p "$PREFIX"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$PREFIX"; done
fi

# the copy must resolve its own share directory, and hold the original's pgq 3.5
case "$("$BIN/pg_config" --sharedir)" in
  "$PREFIX"/*) ;;
  *) echo "install-original: $BIN/pg_config does not report a share dir under $PREFIX" >&2; exit 1 ;;
esac
grep -q "^default_version = '3.5" "$control" \
  || { echo "install-original: $control is not PgQ 3.5" >&2; exit 1; }
echo "$BIN"
