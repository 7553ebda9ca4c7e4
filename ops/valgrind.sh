#!/usr/bin/env bash
# Runs the unit tests, the likelihood vector runner and a short service
# replay under valgrind memcheck (a separate build without sanitizers, in
# build-vg/). Any memcheck error or definite leak fails the run.
#   ops/valgrind.sh          (needs the stack: ops/stack.sh up)
set -euo pipefail
cd "$(dirname "$0")/.."

cmake -S . -B build-vg -DANOMALYD_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-vg -j"$(nproc)" >/dev/null
VG=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite)
fails=0
passes=0
run() {
    local name=$1
    shift
    if "${VG[@]}" "$@" >/tmp/anomalyd-vg.$$.out 2>&1; then
        echo "valgrind ok:   $name"
        passes=$((passes + 1))
    else
        echo "valgrind FAIL: $name"
        tail -40 /tmp/anomalyd-vg.$$.out
        fails=$((fails + 1))
    fi
}
export CK_FORK=no AN_TEST_DATA=$PWD/tests/data
for t in build-vg/tests/test_*; do
    # unit tests only: the integration tests (tests/integration/) need
    # ctest's environment and the servers (the replay below runs the service,
    # its endpoint included)
    [ -f "tests/integration/$(basename "$t").c" ] && continue
    run "$(basename "$t")" "$t"
done
run "vectors functions" build-vg/tests/likelihood_vectors tests/data/likelihood/htmengine/functions.jsonl
run "vectors flatline" build-vg/tests/likelihood_vectors tests/data/likelihood/htmengine/numenta_art_flatline.jsonl
# The fuzz targets' seed corpora (tests/fuzz/, docs/fuzzing.md).
for t in build-vg/tests/fuzz_*_replay; do
    [ -x "$t" ] || continue
    n=$(basename "$t" _replay)
    run "fuzz corpus ${n#fuzz_}" "$t" "tests/fuzz/corpus/${n#fuzz_}"
done

# A short replay through the real service (2000 rows: catch-up then live).
eval "$(ops/stack.sh env)"
P="vg$$:"
export ANOMALYD_STREAMS_INPUT=${P}results ANOMALYD_STREAMS_OUTPUT=${P}out \
       ANOMALYD_STREAMS_DEAD_LETTER=${P}dead ANOMALYD_STREAMS_PARAMS_PREFIX=${P}params: \
       ANOMALYD_HTTP_LISTEN=127.0.0.1:0   # the endpoint runs under valgrind too; any free port
build-vg/anomalyctl db init >/dev/null
head -2001 tests/data/likelihood/htmengine/numenta_ec2_cpu_utilization_825cc2.inputs.csv > /tmp/anomalyd-vg.$$.csv
build-vg/anomalyctl replay --csv /tmp/anomalyd-vg.$$.csv --metric vg --uid "vg-$$" \
    --batch-size 500 --live-after 1500 >/dev/null
run "anomalyd replay 2000 rows" build-vg/anomalyd --consumer vg --exit-when-idle 1000
run "anomalyctl tail" build-vg/anomalyctl tail --count 5
run "anomalyctl alerts" build-vg/anomalyctl alerts --max-age 0 --threshold 0.9 --min-rowid 0 \
    --stream "${P}alerts" --exit-when-idle 500
run "anomalyctl plot" build-vg/anomalyctl plot --metric "vg-$$" --max-points 500 \
    --out /tmp/anomalyd-vg.$$.svg
export ANOMALYD_PLOT_REPORT_METRICS=3
run "anomalyctl report" build-vg/anomalyctl report --out /tmp/anomalyd-vg.$$.report
unset ANOMALYD_PLOT_REPORT_METRICS
scored=$(psql "$ANOMALYD_PG_DSN" -Atc "SELECT count(*) FROM metric_data WHERE uid = 'vg-$$' AND raw_anomaly_score IS NOT NULL")
if [ "$scored" != 2000 ]; then
    echo "valgrind FAIL: the service scored $scored of 2000 rows"
    fails=$((fails + 1))
else
    passes=$((passes + 1))
fi
redis-cli -p "${ANOMALYD_STACK_REDIS_PORT:-6479}" del "${P}results" "${P}out" "${P}dead" \
    "${P}params:vg-$$" "${P}alerts" "${P}alerts:last" "${P}alerts:fired" \
    "${P}alerts:fired:order" >/dev/null || true
rm -rf /tmp/anomalyd-vg.$$.csv /tmp/anomalyd-vg.$$.out /tmp/anomalyd-vg.$$.svg \
    /tmp/anomalyd-vg.$$.report
echo "valgrind: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
