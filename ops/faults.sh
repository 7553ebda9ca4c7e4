#!/usr/bin/env bash
# ops/faults.sh: the LONG form of the fault-injection harness.
#
#   ops/faults.sh [--seed N] [--k 1,2,4] [--kills N] [--poison N] [--models SPEC]
#                 [--restarts redis,pg|none] [--build DIR] [--no-build] [--keep]
#
# Builds a normal (RelWithDebInfo, no sanitizers) tree in DIR (default
# build-faults-long), starts the private servers (ops/stack.sh up) and runs
# tests/integration/test_faults.c in its long form: several NAB files
# (tests/data/likelihood/htmengine/*.inputs.csv) as several models, for each
# K (default 1, 2 and 4 consumers): random SIGKILLs of consumers at random
# moments (respawned with the same name or a new one, the dead name pruned
# with `anomalyctl consumers prune`), one restart of Redis and one of
# PostgreSQL, injected poison entries; then the database, the params, the
# output stream and the dead-letter stream are compared with a clean
# single-consumer run, row for row and bit for bit.
#
# The harness is ONE implementation: the Check test that CTest runs in its
# short form (label "faults"); this script only builds it and selects the
# long form. Prints the result table (also appended to DIR/faults-table.txt);
# the whole log goes to DIR/faults-<time>.log. Exit status non-zero on any
# mismatch or problem (the seed is printed: --seed N replays the same kill
# moments and choices; process interleavings still vary).
#
# NOTE: restarting the servers affects everything else using the stack.
#
# SPEC for --models: file:rows:batch:live,... (rows 0 = whole file, live -1 =
# never go live), files under tests/data/likelihood/htmengine/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BUILD=$ROOT/build-faults-long
DO_BUILD=1
KEEP=0
export AN_FAULTS_MODE=long

usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --seed) export AN_FAULTS_SEED=${2:?--seed needs a value}; shift 2 ;;
        --k) export AN_FAULTS_K=${2:?--k needs a list}; shift 2 ;;
        --kills) export AN_FAULTS_KILLS=${2:?--kills needs a number}; shift 2 ;;
        --poison) export AN_FAULTS_POISON=${2:?--poison needs a number}; shift 2 ;;
        --models) export AN_FAULTS_MODELS=${2:?--models needs a spec}; shift 2 ;;
        --restarts) export AN_FAULTS_RESTARTS=${2:?--restarts needs a value}; shift 2 ;;
        --build) BUILD=$(realpath -m "${2:?--build needs a directory}"); shift 2 ;;
        --no-build) DO_BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

if [ "$DO_BUILD" = 1 ]; then
    echo "faults: building $BUILD (RelWithDebInfo)"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DANOMALYD_SANITIZE=OFF >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target anomalyd anomalyctl test_faults >/dev/null
fi
for f in anomalyd anomalyctl tests/test_faults; do
    [ -x "$BUILD/$f" ] || { echo "faults: $BUILD/$f is missing (build first)" >&2; exit 1; }
done

"$ROOT/ops/stack.sh" up >/dev/null
eval "$("$ROOT/ops/stack.sh" env)"

export CK_FORK=no CK_DEFAULT_TIMEOUT=7200
export AN_BIN_DIR=$BUILD AN_SOURCE_DIR=$ROOT AN_TEST_DATA=$ROOT/tests/data
export AN_FAULTS_TABLE=$BUILD/faults-table.txt
[ "$KEEP" = 1 ] && export AN_E2E_KEEP=1

LOG=$BUILD/faults-$(date -u +%Y%m%dT%H%M%SZ).log
echo "faults: long form, log in $LOG"
start=$SECONDS
set +e
"$BUILD/tests/test_faults" >"$LOG" 2>&1
rc=$?
set -e
# progress lines and problems (stderr of the harness), then the table
grep -E '^\[faults\]|SIGKILL|restarting|injected|PROBLEM|never fired|NOTE' "$LOG" | cut -c1-200 || true
sed -n '/^fault-injection harness/,$p' "$LOG" | grep -v '^Running suite' || true
echo "faults: total wall time $((SECONDS - start)) s; exit $rc (log $LOG)"
exit $rc
