#!/usr/bin/env bash
# ops/hostile.sh: the LONG form of the hostile-producer harness.
#
#   ops/hostile.sh [--build DIR] [--no-build] [--keep] [--rss-mb N]
#
# Builds a normal (RelWithDebInfo, no sanitizers) tree in DIR (default
# build-hostile-long), starts the private servers (ops/stack.sh up) and runs
# tests/integration/test_hostile.c in its long form: 3 whole NAB files
# replayed as 3 healthy models with K = 2 anomalyd consumers while a
# catalogue of 40 bad entries (every case of issue 9 and more) goes into
# the same input stream between their batches; then every healthy metric is
# compared with a clean single-consumer run (rows bit for bit, params,
# watermark), every bad entry's outcome is checked (dead letter with its
# reason, or the original's reject), no consumer may die, each consumer's
# peak RSS must stay under the bound (default 256 MiB for this build), no
# watermark may pass its metric's rows, and no control byte from input may
# reach a log. The same harness runs in its short form under CTest (label
# "hostile"). Prints the result table (also appended to DIR/hostile-table.txt).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BUILD=$ROOT/build-hostile-long
DO_BUILD=1
export AN_HOSTILE_MODE=long

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$(realpath -m "${2:?--build needs a directory}"); shift 2 ;;
        --no-build) DO_BUILD=0; shift ;;
        --keep) export AN_E2E_KEEP=1; shift ;;
        --rss-mb) export AN_HOSTILE_RSS_MB=${2:?--rss-mb needs a number}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

if [ "$DO_BUILD" = 1 ]; then
    echo "hostile: building $BUILD (RelWithDebInfo)"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANOMALYD_SANITIZE=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target anomalyd anomalyctl test_hostile >/dev/null
fi
for f in anomalyd anomalyctl tests/test_hostile; do
    [ -x "$BUILD/$f" ] || { echo "hostile: $BUILD/$f is missing (build first)" >&2; exit 1; }
done

"$ROOT/ops/stack.sh" up >/dev/null
eval "$("$ROOT/ops/stack.sh" env)"
export CK_FORK=no CK_DEFAULT_TIMEOUT=3600
export AN_BIN_DIR=$BUILD AN_SOURCE_DIR=$ROOT AN_TEST_DATA=$ROOT/tests/data
export AN_HOSTILE_TABLE=$BUILD/hostile-table.txt

LOG=$BUILD/hostile-$(date -u +%Y%m%dT%H%M%SZ).log
echo "hostile: long form, log in $LOG"
start=$SECONDS
set +e
"$BUILD/tests/test_hostile" >"$LOG" 2>&1
rc=$?
set -e
grep -E '^PROBLEM' "$LOG" | cut -c1-300 || true
sed -n '/^hostile-producer harness/,$p' "$LOG" | grep -v '^Running suite' || true
echo "hostile: total wall time $((SECONDS - start)) s; exit $rc (log $LOG)"
exit $rc
