#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan +
# libFuzzer) into build-fuzz/ and runs each for SECONDS (default 60) under a
# memory limit, so amplification is a finding like a crash.
#
#   ops/fuzz.sh [SECONDS] [TARGET...]     e.g. ops/fuzz.sh 600 batch_decode
#
# Environment:
#   FUZZ_RSS_LIMIT_MB     total RSS limit per target (default 1024)
#   FUZZ_MALLOC_LIMIT_MB  largest single allocation (default 256)
#   FUZZ_BUILD_DIR        build directory (default build-fuzz)
#   FUZZ_KEEP_GOING=1     fork mode: keep fuzzing after a finding
#                         (-fork=1 -ignore_crashes=1 -ignore_ooms=1)
#   FUZZ_JOBS             parallel compile jobs (default 2)
#   CC                    the compiler (default clang-14, else clang)
# Seeds are read from tests/fuzz/corpus/<target>/ (never written); the
# growing corpus is build-fuzz/corpus/<target>/, findings (crash-*, oom-*,
# leak-*, timeout-*) go to build-fuzz/findings/<target>/, the logs to
# build-fuzz/logs/<target>.log. Prints per target execs, exec/s, cov, ft,
# corpus size and findings; exits 1 if any target had a finding, 2 on a
# build or usage error.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-60}
[ $# -gt 0 ] && shift
case $SECS in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
B=${FUZZ_BUILD_DIR:-build-fuzz}
RSS_MB=${FUZZ_RSS_LIMIT_MB:-1024}
MALLOC_MB=${FUZZ_MALLOC_LIMIT_MB:-256}
JOBS=${FUZZ_JOBS:-2}
if [ -z "${CC:-}" ]; then
    CC=$(command -v clang-14 || command -v clang || true)
fi
[ -n "$CC" ] || { echo "fuzz: clang not found (ops/install-deps.sh installs it)" >&2; exit 2; }

if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    TARGETS=()
    for f in tests/fuzz/fuzz_*.c; do
        t=${f#tests/fuzz/fuzz_}
        TARGETS+=("${t%.c}")
    done
fi

PKGS="hiredis jansson zlib libpq inih libmicrohttpd"
CFLAGS=(-g -O1 -std=gnu11 -Wall -Wextra -ffp-contract=off -fno-fast-math
        -fno-omit-frame-pointer -fno-sanitize-recover=all -Iinclude
        -Wno-unused-function -DAN_SOURCE_DIR="\"$PWD\"" -DAN_VERSION="\"fuzz\""
        $(pkg-config --cflags $PKGS))
LIBS=($(pkg-config --libs $PKGS) -lm)

# ---- build: the library once (instrumented, no main), then each target
mkdir -p "$B/obj" "$B/logs"
objs=()
running=0
for src in src/*.c; do
    case $(basename "$src") in main_* | ctl_*) continue ;; esac
    o="$B/obj/$(basename "${src%.c}").o"
    objs+=("$o")
    if [ ! -e "$o" ] || [ "$src" -nt "$o" ] ||
        [ -n "$(find include src -name '*.h' -newer "$o" -print -quit)" ]; then
        "$CC" -fsanitize=fuzzer-no-link,address,undefined "${CFLAGS[@]}" -c "$src" -o "$o" &
        running=$((running + 1))
        if [ "$running" -ge "$JOBS" ]; then
            wait -n || { echo "fuzz: library build failed" >&2; exit 2; }
            running=$((running - 1))
        fi
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || { echo "fuzz: library build failed" >&2; exit 2; }
    running=$((running - 1))
done
rm -f "$B/libanomaly-fuzz.a"
ar rcs "$B/libanomaly-fuzz.a" "${objs[@]}"
for t in "${TARGETS[@]}"; do
    src=tests/fuzz/fuzz_$t.c
    [ -f "$src" ] || { echo "fuzz: no target $t ($src)" >&2; exit 2; }
    "$CC" -fsanitize=fuzzer,address,undefined -Werror "${CFLAGS[@]}" "$src" \
        "$B/libanomaly-fuzz.a" "${LIBS[@]}" -o "$B/fuzz_$t" \
        || { echo "fuzz: build of $t failed" >&2; exit 2; }
done
[ "$SECS" -gt 0 ] || { echo "fuzz: built ${TARGETS[*]} in $B/"; exit 0; }

# ---- run
# A smaller quarantine than ASan's 256 MB keeps the RSS limit about the
# target's own memory.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:quarantine_size_mb=64}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
found=0
summary=()
for t in "${TARGETS[@]}"; do
    corpus=$B/corpus/$t
    findings=$B/findings/$t
    log=$B/logs/$t.log
    mkdir -p "$corpus" "$findings"
    seeds=()
    if [ -d "tests/fuzz/corpus/$t" ]; then seeds=("tests/fuzz/corpus/$t"); fi
    dict=()
    if [ -f "tests/fuzz/$t.dict" ]; then dict=("-dict=tests/fuzz/$t.dict"); fi
    mode=()
    if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
        mode=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    fi
    before=$(find "$findings" -type f | wc -l)
    echo "fuzz: $t for ${SECS}s (rss ${RSS_MB} MB, malloc ${MALLOC_MB} MB) -> $log"
    set +e
    "$B/fuzz_$t" -max_total_time="$SECS" -rss_limit_mb="$RSS_MB" \
        -malloc_limit_mb="$MALLOC_MB" -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$findings/" "${dict[@]}" "${mode[@]}" \
        "$corpus" "${seeds[@]}" >"$log" 2>&1
    rc=$?
    set -e
    after=$(find "$findings" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'leak-*' -o -name 'timeout-*' \) | wc -l)
    new=$((after - before))
    if [ $new -lt 0 ]; then new=0; fi
    # cov/ft/exec/s: the last status line ("#N DONE cov: ..." or, in fork
    # mode, "#N: cov: ..."); execs from the final stats when printed.
    last=$(grep -E '^#[0-9]+:?[[:space:]].*cov: ' "$log" | tail -1 || true)
    stat() { grep -Eo "stat::$1: *[0-9]+" "$log" | grep -Eo '[0-9]+$' | tail -1 || true; }
    execs=$(stat number_of_executed_units)
    [ -n "$execs" ] || execs=$(echo "$last" | grep -Eo '^#[0-9]+' | tr -d '#' || true)
    # average over the run (fork mode's status line has only the last job's)
    eps=$(stat average_exec_per_sec)
    cov=$(echo "$last" | grep -Eo 'cov: [0-9]+' | grep -Eo '[0-9]+' || true)
    ft=$(echo "$last" | grep -Eo 'ft: [0-9]+' | grep -Eo '[0-9]+' || true)
    if [ -z "$eps" ] || [ "$eps" = 0 ]; then
        eps=$(( ${execs:-0} / (SECS > 0 ? SECS : 1) ))
    fi
    rss=$(stat peak_rss_mb)
    [ -n "$rss" ] || rss=$(grep -Eo 'rss: [0-9]+Mb' "$log" | grep -Eo '[0-9]+' | sort -n | tail -1 || true)
    ncorp=$(find "$corpus" -type f | wc -l)
    verdict=ok
    if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
        verdict="FINDING (rc $rc, $new new in $findings)"
        found=1
    fi
    summary+=("$(printf '%-14s %6ss %12s %8s %6s %7s %7s %8s  %s' "$t" "$SECS" "${execs:-?}" \
        "${eps:-?}" "${cov:-?}" "${ft:-?}" "$ncorp" "${rss:-?}" "$verdict")")
    echo "${summary[-1]}"
done
echo
printf '%-14s %7s %12s %8s %6s %7s %7s %8s  %s\n' target time execs exec/s cov ft corpus rss_mb result
printf '%s\n' "${summary[@]}"
exit $found
