#!/usr/bin/env bash
# ops/retention-run.sh: the long retention run (not part of ops/test.sh; the
# short form is ctest integration.test_retention).
#
# ENTRIES input entries (default 1,000,000): METRICS metrics (1000) with
# 1-row live batches, round-robin (bench_load produce --order rr), paced at
# RATE entries/s (3000), through one anomalyd with the DEFAULT retention
# settings (trim_interval_ms 5000, input_retention 0, output_maxlen 1000000),
# while a second, slow consumer group ("audit", ops/bench/retention_watch.c)
# reads the same stream: it lets LAG_HIGH (50000) entries pile up before it
# reads down to LAG_LOW (20000), and checks that every entry it gets is
# intact and in order. Prints Redis used_memory and the streams' sizes
# before, during (a sample every SAMPLE_MS, 10000) and after, the input
# stream's length at the end, anomalyd's stats line, and exits non-zero when
# an entry was missing or damaged, anything is left pending, or the input
# stream holds more at the end than one stream node.
#
#   ops/retention-run.sh                       the 1,000,000-entry run
#   ENTRIES=100000 RATE=5000 ops/retention-run.sh   a shorter one
#
# Builds a Release tree in build-retention-run/, uses the stack of
# ops/stack.sh (ANOMALYD_STACK_* ports), cleans its keys and metrics after.
set -euo pipefail
cd "$(dirname "$0")/.."

ENTRIES=${ENTRIES:-1000000}
METRICS=${METRICS:-1000}
RATE=${RATE:-3000}
LAG_HIGH=${LAG_HIGH:-50000}
LAG_LOW=${LAG_LOW:-20000}
SAMPLE_MS=${SAMPLE_MS:-10000}
BUILD=${BUILD:-build-retention-run}
ROUNDS=$(( (ENTRIES + METRICS - 1) / METRICS ))
ENTRIES=$(( ROUNDS * METRICS ))
say() { printf '== %s\n' "$*" >&2; }

say "build: Release, no sanitizer, in $BUILD/"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DANOMALYD_SANITIZE=OFF \
      -DANOMALYD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
for prog in bench_load retention_watch; do
    # shellcheck disable=SC2046
    cc -std=gnu11 -O2 -Wall -Wextra -Werror -Iinclude "ops/bench/$prog.c" "$BUILD/libanomaly.a" \
       $(pkg-config --cflags --libs hiredis jansson zlib libpq inih) -lm -o "$BUILD/$prog"
done

ops/stack.sh up >&2
eval "$(ops/stack.sh env)"
"$BUILD/anomalyctl" db init >/dev/null

P="rr$$_"
IN="${P}in"
OUT="${P}out"
export ANOMALYD_STREAMS_INPUT=$IN ANOMALYD_STREAMS_OUTPUT=$OUT \
       ANOMALYD_STREAMS_DEAD_LETTER="${P}dead" ANOMALYD_STREAMS_PARAMS_PREFIX="${P}params:"
LOG=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    "$BUILD/bench_load" clean --prefix "$P" >/dev/null 2>&1 || say "clean failed: $BUILD/bench_load clean --prefix $P"
    say "logs kept in $LOG"
}
trap cleanup EXIT
rcli() { redis-cli -u "$ANOMALYD_REDIS_URL" "$@"; }
mem() { rcli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }

say "setup: $METRICS metrics x $ROUNDS rows (PostgreSQL)"
"$BUILD/bench_load" setup --prefix "$P" --metrics "$METRICS" --prewarm 0 --rows "$ROUNDS" >&2
rcli XGROUP CREATE "$IN" audit 0 MKSTREAM >/dev/null

before=$(mem)
echo "before used_memory=$before"

"$BUILD/anomalyd" --consumer rr1 2>"$LOG/anomalyd.log" &
pids+=($!)
anomalyd_pid=$!
"$BUILD/retention_watch" --stream "$IN" --group audit --prefix "$P" --metrics "$METRICS" \
    --total "$ENTRIES" --lag-high "$LAG_HIGH" --lag-low "$LAG_LOW" --sample-ms "$SAMPLE_MS" \
    --output "$OUT" >"$LOG/watch.out" 2>"$LOG/watch.err" &
pids+=($!)
watch_pid=$!
tail -f "$LOG/watch.out" --pid "$watch_pid" &

say "produce: $ENTRIES entries at $RATE/s"
t0=$SECONDS
"$BUILD/bench_load" produce --stream "$IN" --prefix "$P" --metrics "$METRICS" --from-row 1 \
    --rounds "$ROUNDS" --rate "$RATE" >/dev/null
say "produced in $((SECONDS - t0)) s"

watch_rc=0
wait "$watch_pid" || watch_rc=$?
# anomalyd has everything; wait until it acked the last entry, then for two
# trim intervals (the default 5 s) so its last trims ran
deadline=$((SECONDS + 600))
while [ "$(rcli XINFO GROUPS "$IN" | awk '/^anomalyd$/ {f=1} f && /^lag$/ {getline; print; exit}')" != 0 ] ||
      [ "$(rcli XPENDING "$IN" anomalyd | head -n1)" != 0 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { say "anomalyd did not finish"; break; }
    sleep 1
done
sleep 11
after=$(mem)
in_len=$(rcli XLEN "$IN")
in_bytes=$(rcli MEMORY USAGE "$IN")
out_len=$(rcli XLEN "$OUT")
out_bytes=$(rcli MEMORY USAGE "$OUT")
dead=$(rcli XLEN "${P}dead")
attempts=$(rcli HLEN "$IN:attempts")
pending=$(rcli XPENDING "$IN" anomalyd | head -n1)
node=$(rcli CONFIG GET stream-node-max-entries | sed -n 2p)
kill -TERM "$anomalyd_pid"
wait "$anomalyd_pid" || true
scored=$(psql -X -tA "$ANOMALYD_PG_DSN" -c "SELECT coalesce(sum(scored_rowid), 0) FROM metric WHERE uid LIKE '${P}%'")

grep -o 'stats: .*' "$LOG/anomalyd.log" | tail -n1
max_during=$(awk '/^sample/ {for (i = 1; i <= NF; i++) if ($i ~ /^used_memory=/) {split($i, a, "="); if (a[2] > m) m = a[2]}} END {print m + 0}' "$LOG/watch.out")
max_in=$(awk '/^sample/ {for (i = 1; i <= NF; i++) if ($i ~ /^input_len=/) {split($i, a, "="); if (a[2] > m) m = a[2]}} END {print m + 0}' "$LOG/watch.out")
echo "during max used_memory=$max_during max input_len=$max_in"
echo "after used_memory=$after input_len=$in_len input_bytes=$in_bytes output_len=$out_len output_bytes=$out_bytes"
echo "anomalyd: pending=$pending scored_rows=$scored of $ENTRIES, dead_letters=$dead attempts_fields=$attempts"
grep '^done' "$LOG/watch.out"

rc=0
[ "$watch_rc" -eq 0 ] || { say "FAIL: the slow group found missing or damaged entries"; rc=1; }
[ "$pending" = 0 ] || { say "FAIL: $pending entries still pending"; rc=1; }
[ "$scored" = "$ENTRIES" ] || { say "FAIL: $scored rows scored, expected $ENTRIES"; rc=1; }
[ "$in_len" -le "$node" ] || { say "FAIL: input stream holds $in_len entries at the end (> one node, $node)"; rc=1; }
[ "$rc" -eq 0 ] && say "retention run: ok"
exit $rc
