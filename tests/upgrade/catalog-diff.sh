#!/bin/bash
# tests/upgrade/catalog-diff.sh [FROM...] — does ALTER EXTENSION pgq UPDATE from FROM
# (default: every version frozen in sql/archive) give exactly what a fresh
# CREATE EXTENSION pgq of the current version gives?
#
# For each FROM, in an empty database: CREATE EXTENSION pgq VERSION 'FROM' and
# ALTER EXTENSION pgq UPDATE; in another: CREATE EXTENSION pgq. Both are described with
# tests/upgrade/catalog.sql (functions, relations, columns, constraints, indexes,
# triggers, sequences, privileges, init privileges, extension membership, extconfig)
# and tests/upgrade/data.sql (rows of the extension's tables, sequence states), and the
# descriptions diffed. Prints what the update script sql/pgq--FROM--<new>.sql misses:
#   "> ..." lines: in a fresh install, missing after the update (create/alter these)
#   "< ..." lines: left behind by the update, not in a fresh install (drop/alter these)
# Exit status 0 when identical, 1 otherwise.
#
# The procedure after a change of the SQL (README, "Versions and upgrades"):
# scripts/install.sh into your tree, then run this; write the missing statements into
# sql/pgq--FROM--<new>.sql (the generated install script shows them:
#   diff sql/archive/pgq--FROM.sql $(pg_config --sharedir)/extension/pgq--<new>.sql),
# reinstall, repeat until it passes.
#
# Env: PG_BIN (the tree to test, with this checkout installed); REUSE_CLUSTER=1 uses the
# running cluster at $PGHOST/$PGPORT (tests/upgrade/run.sh) instead of starting one;
# DIFF_DIR keeps the descriptions there.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PG_BIN
if [ -z "${REUSE_CLUSTER:-}" ]; then
  source "$REPO/tests/lib/cluster.sh"
  cluster_init
  cluster_start upgrade-diff "shared_preload_libraries = 'pgq'" "pgq.enabled = off" >/dev/null
fi
export PGUSER=${PGUSER:-postgres}
psql_() { "$PG_BIN/psql" -X -Atq -v ON_ERROR_STOP=1 "$@"; }

froms=("$@")
if [ ${#froms[@]} -eq 0 ]; then
  for f in "$REPO"/sql/archive/pgq--*.sql; do
    v=${f##*/pgq--}; froms+=("${v%.sql}")
  done
fi
new=$(psql_ -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'pgq'")
[ -n "$new" ] || { echo "catalog-diff: extension pgq is not installed in $PG_BIN's tree" >&2; exit 1; }
out=${DIFF_DIR:-$(mktemp -d /tmp/pgq-catalog-diff.XXXXXX)}
mkdir -p "$out"

describe() {  # DB FILE
  { psql_ -d "$1" -f "$HERE/catalog.sql"; psql_ -d "$1" -f "$HERE/data.sql"; } > "$2"
}

psql_ -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS upg_fresh" -c "CREATE DATABASE upg_fresh"
psql_ -d upg_fresh -c "CREATE EXTENSION pgq"
describe upg_fresh "$out/fresh-$new.txt"

rc=0
for from in "${froms[@]}"; do
  db="upg_from_$(echo "$from" | tr -c 'a-zA-Z0-9\n' '_')"
  psql_ -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  if ! psql_ -d "$db" -c "CREATE EXTENSION pgq VERSION '$from'" -c "ALTER EXTENSION pgq UPDATE" \
      2> "$out/update-$from.err"; then
    echo "catalog-diff: $from -> $new: the update failed:"; cat "$out/update-$from.err"
    rc=1; continue
  fi
  describe "$db" "$out/updated-$from.txt"
  if diff "$out/updated-$from.txt" "$out/fresh-$new.txt" > "$out/diff-$from.txt"; then
    echo "catalog-diff: $from -> $new: identical to a fresh install ($(wc -l < "$out/fresh-$new.txt") facts)"
  else
    echo "catalog-diff: $from -> $new: differs from a fresh install (sql/pgq--$from--$new.sql):"
    echo "  > in a fresh install, missing after the update; < left by the update, not in a fresh install"
    grep '^[<>]' "$out/diff-$from.txt" | sort -k2 | head -200
    # where the generated install script of the new version defines those objects
    gen=$("$PG_BIN/pg_config" --sharedir)/extension/pgq--$new.sql
    grep '^[<>] \(function\|relation\|column\|constraint\|index\|trigger\|sequence\) | ' "$out/diff-$from.txt" \
      | awk -F' [|] ' '{print $2}' | sed 's/(.*//; s/ .*//' | sort -u | while read -r obj; do
        sch=${obj%%.*}; nam=${obj#*.}
        hits=$(grep -n -E "^CREATE +(OR REPLACE +)?(FUNCTION|TABLE|SEQUENCE|VIEW) +(IF NOT EXISTS +)?$sch\.\"?$nam\"?[ (]" "$gen" \
               | cut -d: -f1 | tr '\n' ' ')
        if [ -n "$hits" ]; then echo "  $obj: defined in pgq--$new.sql at line(s) $hits"
        else echo "  $obj: not created by name in pgq--$new.sql (dropped, or made some other way)"; fi
      done
    rc=1
  fi
  psql_ -d postgres -c "DROP DATABASE $db"
done
psql_ -d postgres -c "DROP DATABASE upg_fresh"
[ -n "${DIFF_DIR:-}" ] || rm -rf "$out"
exit $rc
