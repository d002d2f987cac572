#!/bin/bash
# run_against.sh BINDIR [SPEC...] — run the isolation specs against a fresh
# cluster from BINDIR (e.g. the original PgQ 3.5 install under
# /opt/pgq-reference/usr/lib/postgresql/15/bin, or the system tree with ours).
# Results go to /tmp/pgq-isolation-results-<tag>; the cluster is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
PG_BIN=${1:?bindir}; shift
TAG=${TAG:-$(echo "$PG_BIN" | grep -q pgq-reference && echo ref || echo ours)}
PGXS=/usr/lib/postgresql/15/lib/pgxs
export PORT_BASE=${PORT_BASE:-$((55000 + RANDOM % 5000))}
source tests/lib/cluster.sh
cluster_init
cluster_start "iso-$TAG"
as_pg "$PG_BIN/createdb" -h "$PGHOST" -p "$PGPORT" pgq_isolation
out=${OUT:-/tmp/pgq-isolation-results-$TAG}
rm -rf "$out"; mkdir -p "$out"
tests=${*:-$(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//' | sort)}
"$PGXS/src/test/isolation/pg_isolation_regress" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
  --inputdir=tests/isolation --outputdir="$out" --dbname=pgq_isolation $tests
