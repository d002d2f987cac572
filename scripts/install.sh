#!/bin/bash
# install.sh [PREFIX] — build the extension (release) and install it.
#
# Without PREFIX: into the system PostgreSQL 15 tree (what setup.sh does).
# With PREFIX: into a relocatable copy of the system PostgreSQL 15 tree under PREFIX,
# made on first use. A server started from $PREFIX/usr/lib/postgresql/15/bin finds its
# share/ and lib/ relative to its own bin/, so two builds (two checkouts) can be
# tested side by side: PG_BIN=$PREFIX/usr/lib/postgresql/15/bin scripts/test.sh ...
#
# Files are replaced by rename (install(1) unlinks first), never rewritten in place, so
# servers already running keep the library they mapped. Builds are serialized across
# checkouts with a lock file (the machine has two cores; two cargo builds at once only
# slow each other down). Set CARGO_TARGET_DIR to share one target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${1:-}
SYS_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
LOCK=${PGQ_BUILD_LOCK:-/tmp/pgq-build.lock}

if [ -n "$PREFIX" ]; then
  PREFIX=$(realpath -m "$PREFIX")
  if [ ! -x "$PREFIX/usr/lib/postgresql/15/bin/postgres" ]; then
    mkdir -p "$PREFIX/usr/lib/postgresql" "$PREFIX/usr/share/postgresql"
    cp -a /usr/lib/postgresql/15 "$PREFIX/usr/lib/postgresql/"
    cp -a /usr/share/postgresql/15 "$PREFIX/usr/share/postgresql/"
  fi
  share=$("$PREFIX/usr/lib/postgresql/15/bin/pg_config" --sharedir)
  case "$share" in
    "$PREFIX"/*) ;;
    *) echo "install.sh: $PREFIX tree reports sharedir $share" >&2; exit 1 ;;
  esac
fi

out=$(mktemp -d /tmp/pgq-package.XXXXXX)
trap 'rm -rf "$out"' EXIT
# the package is built against the system tree's headers (the copy has the same ones)
flock "$LOCK" cargo pgrx package --pg-config "$SYS_PG_CONFIG" --out-dir "$out" 2>&1 \
  | grep -E "^error|warning: unused|Finished|Writing" || true
so=$(find "$out" -name pgq.so | head -1)
[ -n "$so" ] || { echo "install.sh: build failed (no pgq.so in the package)" >&2; exit 1; }
# the frozen install scripts of earlier versions (sql/archive), so that CREATE EXTENSION
# pgq VERSION '<old>' works (tests/upgrade); cargo pgrx package ships only the current
# install script and the update scripts sql/pgq--<from>--<to>.sql
ctl=$(find "$out" -name pgq.control | head -1)
cp sql/archive/pgq--*.sql "$(dirname "$ctl")/"

dest=${PREFIX:-}
(cd "$out" && find . -type f) | while read -r f; do
  f=${f#./}
  mode=644; case "$f" in *.so) mode=755 ;; esac
  install -D -m "$mode" "$out/$f" "$dest/$f"
done
echo "installed into ${PREFIX:-the system tree}: $(find "$out" -type f | wc -l) files"
