#!/usr/bin/env bash
# Benchmarks the likelihood hot paths from ONE run and prints:
#   - ns per row of an_update_one (online update over the real raw scores
#     of numenta_nyc_taxi, median of 7 runs of ~20M rows), both variants;
#   - ms per an_estimate over 8640 samples, both variants;
#   - the helper in-process with 1-row batches (rows/s);
#   - rows/s, wall time and peak RSS of `anomalyctl likelihood` on a
#     generated ROWS-row CSV (default 1,000,000: the four NAB inputs of
#     tests/data/likelihood/htmengine cycled, timestamps every 5 minutes),
#     with the default 1-row batches and with 1440-row (catch-up) batches.
# Targets: online update < 100 ns/row; 1M rows offline < 2 s; < 50 MB RSS.
#
# It builds a Release (no sanitizer) tree in build-bench/ and compiles
# ops/bench/bench_likelihood.c with cc against build-bench/libanomaly.a.
# Peak RSS and wall time come from wait4()'s rusage in bench_likelihood's
# "run" mode (what /usr/bin/time -v reports as "Maximum resident set
# size"), so the Debian `time` package is not needed.
#
#   ops/bench-likelihood.sh            everything
#   ROWS=200000 ops/bench-likelihood.sh
#   KEEP=1 ops/bench-likelihood.sh     keep the temp dir (CSV and output)
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
BUILD=${BUILD:-build-bench}
DATA=tests/data/likelihood/htmengine

echo "== build: Release, no sanitizer, in $BUILD/"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DANOMALYD_SANITIZE=OFF \
      -DANOMALYD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target anomalyctl >/dev/null

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-likelihood.XXXXXX")
if [ -z "${KEEP:-}" ]; then
    trap 'rm -rf "$TMP"' EXIT
else
    echo "(keeping $TMP)"
fi

BENCH="$TMP/bench_likelihood"
# shellcheck disable=SC2046
cc -std=gnu11 -O3 -DNDEBUG -Wall -Wextra -Werror -ffp-contract=off -fno-fast-math \
   -Iinclude $(pkg-config --cflags jansson) \
   ops/bench/bench_likelihood.c "$BUILD/libanomaly.a" \
   $(pkg-config --libs hiredis jansson zlib libpq inih) -lm -o "$BENCH"

echo "== cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== micro-benchmarks"
"$BENCH" micro "$DATA/numenta_nyc_taxi.inputs.csv" | tee "$TMP/micro.txt"

echo "== anomalyctl likelihood on $ROWS generated rows"
"$BENCH" gen "$TMP/big.csv" "$ROWS" "$DATA"/numenta_*.inputs.csv
echo "input: $(du -h "$TMP/big.csv" | cut -f1) ($ROWS rows)"

offline() { # label, extra args...
    local label=$1
    shift
    local line
    line=$("$BENCH" run "$TMP/out.csv" -- "$BUILD/anomalyctl" likelihood \
           --csv "$TMP/big.csv" "$@")
    local lines
    lines=$(wc -l < "$TMP/out.csv")
    if [ "$lines" -ne $((ROWS + 1)) ]; then
        echo "bench: $label: expected $((ROWS + 1)) output lines, got $lines" >&2
        exit 1
    fi
    local wall rss
    wall=$(sed -n 's/.*wall_s=\([0-9.]*\).*/\1/p' <<<"$line")
    rss=$(sed -n 's/.*maxrss_kb=\([0-9]*\).*/\1/p' <<<"$line")
    awk -v l="$label" -v w="$wall" -v r="$rss" -v n="$ROWS" -v raw="$line" 'BEGIN {
        printf "%-22s %9.0f rows/s  %6.3f s  peak RSS %5.1f MB   (%s)\n",
               l, n / w, w, r / 1024, raw }' | tee -a "$TMP/offline.txt"
}
offline "batch size 1" 
offline "batch size 1440" --batch-size 1440

echo "== summary (targets: update < 100 ns/row; 1M rows < 2 s; RSS < 50 MB)"
awk -v rows="$ROWS" '
    FNR == 1 { f++ }
    f == 1 && /^an_update_one\[htmengine\]/ { upd = $2 }
    f == 1 && /^an_estimate\[htmengine\]/ { est = $4 }
    f == 2 && /^batch size 1 / { w = $6; rss = $10 }
    END {
        printf "an_update_one        %6.1f ns/row   %s\n", upd, upd < 100 ? "ok" : "MISSED"
        printf "an_estimate(8640)    %6.4f ms/call\n", est
        if (rows == 1000000)
            printf "offline 1M rows      %6.3f s        %s\n", w, w < 2 ? "ok" : "MISSED"
        else
            printf "offline %d rows   %6.3f s        (target is for 1000000 rows)\n", rows, w
        printf "offline peak RSS     %6.1f MB       %s\n", rss, rss < 50 ? "ok" : "MISSED"
    }' "$TMP/micro.txt" "$TMP/offline.txt"
