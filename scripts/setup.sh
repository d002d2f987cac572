#!/bin/bash
# setup.sh — everything the demo and the tests need, on a fresh Debian bookworm
# machine (root, PostgreSQL 15, Rust): Debian packages, cargo-pgrx at exactly the
# pgrx version in Cargo.lock, `cargo pgrx init`, then build and install the
# extension into the system PostgreSQL 15. Idempotent; quick when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PKGS="postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo libpq-dev"

missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# cargo-pgrx must match the pgrx in Cargo.lock exactly
want=$(awk '/^name = "pgrx"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
have=$(cargo pgrx --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "setup: installing cargo-pgrx $want (found: ${have:-none})"
  cargo install cargo-pgrx --version "=$want" --locked
fi

if ! grep -qs "^pg15 *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

# Build and install into the system PostgreSQL tree (files replaced by rename).
scripts/install.sh
test -f "$("$PG_CONFIG" --sharedir)/extension/pgq.control"
test -f "$("$PG_CONFIG" --pkglibdir)/pgq.so"
