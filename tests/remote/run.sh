#!/bin/bash
# tests/remote/run.sh PREFIX — the libpq client's in-backend tests (src/remote/pg_tests.rs)
# without `cargo pgrx test`: build the extension with the `pg_test` feature, install that
# build into a private copy of the PostgreSQL 15 tree at PREFIX (never the system tree),
# start a throwaway cluster from it and run every `tests.remote_*` function, each in its
# own transaction. The functions connect over libpq to the cluster itself.
# Prints "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PREFIX=${1:?usage: tests/remote/run.sh PREFIX (a private tree, e.g. /opt/pgq-dev/NAME-pgtest)}
PREFIX=$(realpath -m "$PREFIX")
SYS_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
case "$PREFIX" in /usr|/usr/*|/) echo "run.sh: refusing to install into $PREFIX" >&2; exit 2 ;; esac

if [ ! -x "$PREFIX/usr/lib/postgresql/15/bin/postgres" ]; then
  mkdir -p "$PREFIX/usr/lib/postgresql" "$PREFIX/usr/share/postgresql"
  cp -a /usr/lib/postgresql/15 "$PREFIX/usr/lib/postgresql/"
  cp -a /usr/share/postgresql/15 "$PREFIX/usr/share/postgresql/"
fi
out=$(mktemp -d /tmp/pgq-remote-pkg.XXXXXX)
trap 'rm -rf "$out"' EXIT
flock "${PGQ_BUILD_LOCK:-/tmp/pgq-build.lock}" \
  cargo pgrx package --features pg_test --pg-config "$SYS_PG_CONFIG" --out-dir "$out" 2>&1 \
  | grep -E "^error|Finished" || true
[ -n "$(find "$out" -name pgq.so)" ] || { echo "run.sh: build failed" >&2; exit 1; }
(cd "$out" && find . -type f) | while read -r f; do
  f=${f#./}
  case "$f" in usr/*) ;; *) continue ;; esac
  mode=644; case "$f" in *.so) mode=755 ;; esac
  install -D -m "$mode" "$out/$f" "$PREFIX/$f"
done
libs=$(ldd "$PREFIX/usr/lib/postgresql/15/lib/pgq.so")
grep -q 'libpq\.so\.5 => /' <<<"$libs" \
  || { echo "run.sh: pgq.so does not link the system libpq.so.5 dynamically" >&2; exit 1; }

export PG_BIN=$PREFIX/usr/lib/postgresql/15/bin
source tests/lib/cluster.sh
cluster_init
trap 'cluster_stop_all; rm -rf "$out"' EXIT
cluster_start remote
psql() { "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U postgres "$@"; }
psql -q -d postgres -c "create database remote_tests"
psql -q -d remote_tests -c "create extension pgq"
tests=$(psql -d remote_tests -Atc "select proname from pg_proc
  where pronamespace = 'tests'::regnamespace and proname like 'remote\_%' order by 1")
[ -n "$tests" ] || { echo "run.sh: no tests.remote_* functions in the build" >&2; exit 1; }
pass=0; fail=0
for t in $tests; do
  start=$(date +%s%N)
  if msg=$(psql -q -d remote_tests -c "begin" -c "select tests.$t()" -c "rollback" 2>&1); then
    pass=$((pass + 1)); echo "ok   $t ($((($(date +%s%N) - start) / 1000000)) ms)"
  else
    fail=$((fail + 1)); echo "FAIL $t"; echo "$msg" | sed 's/^/     /'
  fi
done
# no password given in any test reached the server log
if grep -E "Hunter2Secret|Unused5ecret" "$PGHOST/server.log"; then
  echo "FAIL a test password appears in the server log"; fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
