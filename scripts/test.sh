#!/bin/bash
# test.sh [LAYER...] — the whole test suite (README's test command; .ci/run calls it).
# Layers: lint (cargo fmt --check, clippy -D warnings), unit (pure Rust), pgtest (#[pg_test]), regress (pg_regress), isolation
# (pg_isolation_regress), compat (the original's Python consumer and pgqd against this
# extension), bgworker (in-server ticker scenarios on preloaded clusters), cascade (the
# Python londiste CLI driving a root/branch/leaf cascade, tests/cascade/run.sh), replay
# (the same cascade replicated by the in-server `pgq replay` workers alone, no londiste
# worker and no pgqd, tests/replay/run.sh), robust (that cascade while replay workers,
# their COPY and subscriber postmasters are SIGKILLed under load and the leaf's provider
# is down for a minute: nothing lost or doubled, tests/robust/run.sh), interop
# (in-server replay below a root of the original stack, and through change-provider /
# takeover / takeover --dead-root, tests/interop/run.sh; needs
# scripts/install-original.sh's tree), compare (pgq_cascade.compare / repair on that
# cascade, tests/compare/run.sh), security
# (issue 8's exploits on a preloaded cluster, tests/security/run.sh), upgrade (the
# previous extension version updated in place, tests/upgrade/run.sh), remote (the libpq
# client's in-backend tests, tests/remote/run.sh), merge (londiste merge-leaf setups,
# tests/merge/run.sh; only when named). Default: all but merge, after setup.sh. Every
# cluster started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# PG_BIN: the PostgreSQL 15 tree to test (default the system one; scripts/install.sh
# PREFIX makes a side-by-side copy with another build in it)
PGBIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PG_BIN=$PGBIN
PGXS=$("$PGBIN/pg_config" --pkglibdir)/pgxs
# pgtest runs `cargo pgrx test` against a private copy of the server tree (run_pgtest)
LAYERS=${*:-lint unit regress isolation compat bgworker security cascade replay robust interop sqladmin syncwm merge demo compare upgrade pgtest remote}

[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh

# The original's client side, for the compat / bgworker / cascade / replay / robust /
# interop layers: the Python pgq consumer library, the londiste CLI and pgqd (all from
# Debian, system-wide).
TEST_PKGS="pgqd python3-pgq python3-londiste python3-skytools python3-psycopg2"
missing=""
for p in $TEST_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "test.sh: installing Debian packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

source tests/lib/cluster.sh
cluster_init
failed=""

# formatting and clippy first: a red lint is a red CI
run_lint() {
  cargo fmt --check && flock "${PGQ_BUILD_LOCK:-/tmp/pgq-build.lock}" cargo clippy --release --lib -- -D warnings
}

run_unit() {
  cargo test --lib --release -- logic:: remote::conninfo
}

run_pgtest() {
  # `cargo pgrx test` installs a pg_test build into the tree of the pg_config that
  # $PGRX_HOME/config.toml names and runs a throw-away server from that tree. Point it
  # at a private copy of the PostgreSQL tree (PGTEST_TREE, one per checkout, made on
  # first use from the system tree, headers linked read-only), so no tree a server or
  # another test run uses is ever written to.
  local tree=${PGTEST_TREE:-/tmp/pgq-pgtest-tree.$(echo "$ROOT" | md5sum | cut -c1-8)}
  local sys=/usr/lib/postgresql/15
  if [ ! -x "$tree/usr/lib/postgresql/15/bin/postgres" ]; then
    rm -rf "$tree"
    mkdir -p "$tree/usr/lib/postgresql" "$tree/usr/share/postgresql" "$tree/usr/include"
    cp -a "$sys" "$tree/usr/lib/postgresql/"
    cp -a /usr/share/postgresql/15 "$tree/usr/share/postgresql/"
    ln -s /usr/include/postgresql "$tree/usr/include/postgresql"
  fi
  local pg_config=$tree/usr/lib/postgresql/15/bin/pg_config
  case "$("$pg_config" --pkglibdir) $("$pg_config" --sharedir)" in
    "$tree"/*" $tree"/*) ;;
    *) echo "run_pgtest: $pg_config does not report paths inside $tree" >&2; return 1 ;;
  esac
  local home=$tree/pgrx-home pgdata=$tree/pgdata
  mkdir -p "$home"
  printf '[configs]\npg15 = "%s"\n' "$pg_config" > "$home/config.toml"
  rm -rf "$pgdata"; mkdir -p "$pgdata"; chown postgres: "$pgdata"
  local rc=0
  PGRX_HOME=$home flock "${PGQ_BUILD_LOCK:-/tmp/pgq-build.lock}" \
    cargo pgrx test pg15 --release --runas postgres --pgdata "$pgdata" || rc=$?
  rm -rf "$pgdata"
  return $rc
}

# pg_regress / pg_isolation_regress against a fresh cluster, preloaded like
# production with background work off so ticks stay deterministic.
run_pg_regress() {  # LAYER TOOL EXT
  local layer=$1 tool=$2 ext=$3 db=pgq_$1
  # RUST_BACKTRACE set: an error that picks up a Rust backtrace on its way out shows in
  # the output diff (users must see PostgreSQL's error as it is)
  CLUSTER_ENV="RUST_BACKTRACE=1" cluster_start "$layer" "shared_preload_libraries = 'pgq'" "pgq.enabled = off"
  as_pg "$PGBIN/createdb" -h "$PGHOST" -p "$PGPORT" "$db"
  local out=$ROOT/tests/$layer/results-run
  rm -rf "$out"; mkdir -p "$out"
  local dir=sql; [ "$ext" = spec ] && dir=specs
  local tests; tests=$(cd "tests/$layer/$dir" && ls *."$ext" | sed "s/\.$ext\$//" | sort)
  "$tool" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
    --inputdir="tests/$layer" --outputdir="$out" --dbname="$db" $tests \
    || { head -300 "$out/regression.diffs" 2>/dev/null; return 1; }
}

run_regress() {
  run_pg_regress regress "$PGXS/src/test/regress/pg_regress" sql
}

run_isolation() {
  run_pg_regress isolation "$PGXS/src/test/isolation/pg_isolation_regress" spec
}

run_bgworker() {
  tests/bgworker/run.sh
}

run_security() {
  PG_BIN=$PGBIN tests/security/run.sh
}

run_compat() {
  PG_BIN=$PGBIN tests/compat/run.sh
}

run_cascade() {
  PG_BIN=$PGBIN tests/cascade/run.sh
}

run_replay() {
  PG_BIN=$PGBIN tests/replay/run.sh
}

# replay under crashes: SIGKILLed workers, COPYs and postmasters, a provider down
run_robust() {
  PG_BIN=$PGBIN tests/robust/run.sh
}

# a root of the original stack (PgQ 3.5, pgq_node, londiste SQL, pgqd) in its own tree
run_interop() {
  local ref=${REF_PREFIX:-/opt/pgq-reference}
  scripts/install-original.sh "$ref" >/dev/null || return 1
  PG_BIN=$PGBIN REF_BIN=$ref/usr/lib/postgresql/15/bin tests/interop/run.sh
}

# a cascade administered with the pgq_cascade SQL functions only (no CLI)
run_sqladmin() {
  PG_BIN=$PGBIN tests/sqladmin/run.sh
}

# sync_watermark branches under in-server replay (root, two synced branches, a leaf)
run_syncwm() {
  PG_BIN=$PGBIN tests/syncwm/run.sh
}

# londiste merge setups: two part roots, a combined root and a combined branch with
# merge leaves (MERGE_REPLAY=server, the default: in-server replay; python: one Python
# `londiste worker` per node). Not in the default LAYERS yet.
run_merge() {
  PG_BIN=$PGBIN tests/merge/run.sh
}

# the README's demo (the seed cascade in SQL): it must run from a fresh clone
run_demo() {
  SKIP_SETUP=1 PG_BIN=$PGBIN LOAD_SECONDS=8 scripts/demo.sh
}

run_compare() {
  PG_BIN=$PGBIN tests/compare/run.sh
}

# the libpq client's in-backend tests (a pg_test-feature build in a private tree copy)
run_remote() {
  tests/remote/run.sh "${REMOTE_TREE:-/tmp/pgq-remote-tree.$(echo "$ROOT" | md5sum | cut -c1-8)}"
}

# the previous extension version (sql/archive) created with this library, updated with
# ALTER EXTENSION pgq UPDATE: state, catalog = fresh install, regress suite, worker check
run_upgrade() {
  PG_BIN=$PGBIN tests/upgrade/run.sh
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
