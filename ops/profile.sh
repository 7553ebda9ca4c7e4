#!/usr/bin/env bash
# ops/profile.sh: instructions per live entry of anomalyd (callgrind), on the
# bench's workloads (ops/bench.sh), counted by valgrind and so independent of
# the machine's load. Needs the stack (ops/stack.sh up; its env is read here).
#
#   ops/profile.sh steady   PROFILE_METRICS (64) metrics with 9,000 processed
#                           rows; anomalyd (under callgrind) first drains a
#                           24-round warm-up (every metric re-estimates once,
#                           which builds its sample window), then the counters
#                           are zeroed and PROFILE_ROUNDS (48) 1-row rounds
#                           are queued and drained: the steady state only
#   ops/profile.sh young    PROFILE_METRICS (1000) metrics with 400 processed
#                           rows, PROFILE_ROUNDS (4) 1-row rounds queued, then
#                           drained by a fresh process (as the bench's live
#                           saturation row: first sight of each metric
#                           included)
#
# Prints "Ir per entry" and the top of callgrind_annotate; the raw profile is
# left in build-bench/profile/callgrind.out.<kind>. PROFILE_ANOMALYD runs
# another build. Keys and metrics live under bench:prof: (cleaned before and
# after).
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:-steady}
case $KIND in
    steady) M=${PROFILE_METRICS:-64} W=9000 K=${PROFILE_ROUNDS:-48} WARM=24 ;;
    young) M=${PROFILE_METRICS:-1000} W=400 K=${PROFILE_ROUNDS:-4} WARM=0 ;;
    *) echo "usage: ops/profile.sh steady|young" >&2; exit 2 ;;
esac
BUILD=build-bench
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DANOMALYD_SANITIZE=OFF \
      -DANOMALYD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j2 >/dev/null
ANOMALYD=${PROFILE_ANOMALYD:-$BUILD/anomalyd}
LOAD=$BUILD/bench/bench_load
mkdir -p "$BUILD/bench" "$BUILD/profile"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -Wall -Wextra -Iinclude ops/bench/bench_load.c "$BUILD/libanomaly.a" \
   $(pkg-config --cflags --libs hiredis jansson zlib libpq inih) -lm -o "$LOAD"
eval "$(ops/stack.sh env)"
"$BUILD/anomalyctl" db init >/dev/null

P=bench:prof:
OUT=$BUILD/profile/callgrind.out.$KIND
"$LOAD" clean --prefix "$P" >/dev/null
trap '"$LOAD" clean --prefix "$P" >/dev/null 2>&1 || true' EXIT
"$LOAD" setup --prefix "${P}L" --metrics "$M" --prewarm "$W" --rows $((W + WARM + K)) \
    --params-prefix "${P}params:" >/dev/null
psql "$ANOMALYD_PG_DSN" -X -q -c "VACUUM (ANALYZE) metric" -c "VACUUM (ANALYZE) metric_data"
export ANOMALYD_STREAMS_INPUT="${P}in" ANOMALYD_STREAMS_OUTPUT="${P}out" \
       ANOMALYD_STREAMS_DEAD_LETTER="${P}dead" ANOMALYD_STREAMS_PARAMS_PREFIX="${P}params:" \
       ANOMALYD_STREAMS_BLOCK_MS=100 ANOMALYD_HTTP_LISTEN=
rm -f "$OUT"
if [ "$WARM" -gt 0 ]; then
    "$LOAD" produce --stream "${P}in" --prefix "${P}L" --metrics "$M" --from-row $((W + 1)) \
        --rounds "$WARM" >/dev/null
fi
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$ANOMALYD" --consumer prof \
    --exit-when-idle 5000 >"$BUILD/profile/$KIND.log" 2>&1 &
VPID=$!
if [ "$WARM" -gt 0 ]; then
    "$LOAD" report --stream "${P}out" --expect $((WARM * M)) --timeout 1200 >/dev/null
    callgrind_control -z "$VPID" >/dev/null
fi
"$LOAD" produce --stream "${P}in" --prefix "${P}L" --metrics "$M" --from-row $((W + WARM + 1)) \
    --rounds "$K" >/dev/null
wait "$VPID"
N=$((M * K))
DONE=$("$LOAD" report --stream "${P}out" --expect $((N + WARM * M)) --timeout 5 |
       sed -n 's/.*entries=\([0-9]*\).*/\1/p')
[ "$DONE" = $((N + WARM * M)) ] || { echo "profile: $DONE outputs, expected $((N + WARM * M))" >&2; exit 1; }
IR=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$OUT" | tail -n1)
echo "$KIND: $N entries ($M metrics x $K rounds, $W processed rows each), Ir $IR, Ir per entry $((IR / N))"
callgrind_annotate --inclusive=yes "$OUT" 2>/dev/null | sed -n '1,60p' | cut -c1-160
