#!/usr/bin/env bash
# Runs every lasting fault of tests/integration/test_pause.c (the default
# CTest run takes three) and prints the per-fault table: time to pause, time
# to resume, dead letters, mismatches. Then the PostgreSQL black hole once
# more with the default liveness settings (keepalives, tcp_user_timeout,
# response_timeout_ms) to measure how long a dead peer takes to notice.
#   ops/pause-faults.sh [--build DIR]      (default: build, as ops/test.sh)
# Needs the stack (ops/stack.sh up) and its environment (ops/stack.sh env).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
[ "${1:-}" = "--build" ] && BUILD=$2
export AN_TEST_DATA=$PWD/tests/data AN_BIN_DIR=$PWD/$BUILD AN_SOURCE_DIR=$PWD CK_FORK=no
eval "$(ops/stack.sh env)"
echo "== all faults (short liveness settings)"
AN_PAUSE_FAULTS=disk_full,revoke,read_only,stmt_timeout,no_table,wrongtype,pg_blackhole,redis_blackhole \
    "$BUILD/tests/test_pause" 2>&1 | grep -E '^\[e2e\] pause|^fault |^[a-z_]+ +2 |Checks|:F:'
echo "== PostgreSQL black hole with the default liveness settings"
AN_PAUSE_DEFAULT_LIVENESS=1 AN_PAUSE_FAULTS=pg_blackhole \
    "$BUILD/tests/test_pause" 2>&1 | grep -E '^\[e2e\] pause|Checks|:F:|did not answer' | head -5
