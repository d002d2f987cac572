#!/bin/bash
# test.sh [LAYER...] — the whole test suite (README's test command; .ci/run calls it).
# Layers: unit (pure Rust), pgtest (#[pg_test]), regress (pg_regress), isolation
# (pg_isolation_regress), compat (the original's Python consumer against this
# extension), bgworker (in-server ticker scenarios on preloaded clusters). Default: all, after setup.sh. Every cluster started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PGBIN=/usr/lib/postgresql/15/bin
PGXS=$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/pgxs
LAYERS=${*:-unit pgtest regress isolation compat bgworker}

[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh

source tests/lib/cluster.sh
cluster_init
failed=""

run_unit() {
  cargo test --lib --release logic::
}

run_pgtest() {
  local pgdata=/tmp/pgq-pgrx-test
  rm -rf "$pgdata"; mkdir -p "$pgdata"; chown postgres: "$pgdata"
  cargo pgrx test pg15 --release --runas postgres --pgdata "$pgdata"
}

run_regress() {
  # preloaded like production, with background work off so ticks stay deterministic
  cluster_start regress "shared_preload_libraries = 'pgq'" "pgq.enabled = off"
  local out=$ROOT/tests/regress/results-run
  rm -rf "$out"; mkdir -p "$out"
  as_pg "$PGBIN/createdb" -h "$PGHOST" -p "$PGPORT" pgq_regress
  local tests; tests=$(cd tests/regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
  "$PGXS/src/test/regress/pg_regress" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
    --inputdir=tests/regress --outputdir="$out" --dbname=pgq_regress $tests \
    || { cat "$out/regression.diffs" 2>/dev/null | head -300; return 1; }
}

run_isolation() {
  cluster_start isolation "shared_preload_libraries = 'pgq'" "pgq.enabled = off"
  local out=$ROOT/tests/isolation/results-run
  rm -rf "$out"; mkdir -p "$out"
  as_pg "$PGBIN/createdb" -h "$PGHOST" -p "$PGPORT" pgq_isolation
  local tests; tests=$(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//' | sort)
  "$PGXS/src/test/isolation/pg_isolation_regress" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
    --inputdir=tests/isolation --outputdir="$out" --dbname=pgq_isolation $tests \
    || { cat "$out/regression.diffs" 2>/dev/null | head -300; return 1; }
}

run_bgworker() {
  tests/bgworker/run.sh
}

run_compat() {
  PG_BIN=$PGBIN tests/compat/run.sh
}

for layer in $LAYERS; do
  echo "=== layer: $layer"
  start=$(date +%s)
  if "run_$layer"; then
    echo "=== layer $layer: ok ($(( $(date +%s) - start ))s)"
  else
    echo "=== layer $layer: FAILED ($(( $(date +%s) - start ))s)"
    failed="$failed $layer"
  fi
  cluster_stop_all
done

if [ -n "$failed" ]; then
  echo "FAILED layers:$failed"
  exit 1
fi
echo "all layers passed: $LAYERS"
