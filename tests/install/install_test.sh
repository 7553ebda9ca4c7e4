#!/usr/bin/env bash
# install_test.sh BUILD_DIR SOURCE_DIR: `cmake --install` of the build tree
# into a DESTDIR, then the INSTALLED programs against the stack's Redis and
# PostgreSQL (ANOMALYD_REDIS_URL / ANOMALYD_PG_DSN): db init, a short replay,
# anomalyd --exit-when-idle with the installed example config; the installed
# unit names installed paths; the man pages render without warnings.
set -euo pipefail
build=$1
src=$2
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }
: "${ANOMALYD_REDIS_URL:?not set: ops/stack.sh up; eval \"\$(ops/stack.sh env)\"}"
: "${ANOMALYD_PG_DSN:?not set}"

tmp=$(mktemp -d)
tag="inst$$"
uid="${tag}-metric"
cleanup() {
    redis-cli -u "$ANOMALYD_REDIS_URL" --scan --pattern "$tag:*" 2>/dev/null |
        while read -r k; do redis-cli -u "$ANOMALYD_REDIS_URL" DEL "$k" >/dev/null; done
    psql -X -q "$ANOMALYD_PG_DSN" -c \
        "WITH e AS (DELETE FROM scored_entry WHERE uid = '$uid') DELETE FROM metric WHERE uid = '$uid'" \
        >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

DESTDIR=$tmp/root cmake --install "$build" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
[ -n "$prefix" ] || fail "no CMAKE_INSTALL_PREFIX in $build/CMakeCache.txt"
bin=$tmp/root$prefix/bin
for p in anomalyd anomalyctl; do
    [ -x "$bin/$p" ] || fail "$bin/$p not installed"
done

# The unit as installed: its ExecStart binary and --config file are the ones installed.
unit=$(find "$tmp/root" -name anomalyd.service -path '*/systemd/system/*')
[ -n "$unit" ] || fail "no systemd unit installed"
exec_bin=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$unit")
conf=$(sed -n 's/^ExecStart=.* --config \([^ ]*\).*/\1/p' "$unit")
[ -x "$tmp/root$exec_bin" ] || fail "the unit's ExecStart $exec_bin is not an installed program"
[ -f "$tmp/root$conf" ] || fail "the unit's config $conf is not installed"
[ "$exec_bin" = "$prefix/bin/anomalyd" ] || fail "ExecStart $exec_bin, expected $prefix/bin/anomalyd"
conf=$tmp/root$conf

# Man pages and docs.
for m in man8/anomalyd.8 man1/anomalyctl.1; do
    page=$tmp/root$prefix/share/man/$m
    [ -f "$page" ] || fail "$page not installed"
    warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    [ -z "$warn" ] || fail "man $m: $warn"
    MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q "SYNOPSIS" || fail "man $m has no SYNOPSIS"
done
[ -f "$tmp/root$prefix/share/doc/anomalyd/operations.md" ] || fail "docs not installed"

# The installed programs against the stack, with the installed example config.
export ANOMALYD_STREAMS_INPUT=$tag:results ANOMALYD_STREAMS_OUTPUT=$tag:model_results
export ANOMALYD_STREAMS_DEAD_LETTER=$tag:dead ANOMALYD_STREAMS_PARAMS_PREFIX=$tag:params:
export ANOMALYD_STREAMS_BLOCK_MS=200
"$bin/anomalyd" --config "$conf" --check-config || fail "installed config does not check"
"$bin/anomalyd" --version | grep -q '^anomalyd ' || fail "anomalyd --version"
"$bin/anomalyctl" db init --config "$conf" >"$tmp/db.log" 2>&1 || { cat "$tmp/db.log"; fail "db init"; }
head -n 301 "$src/tests/data/likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv" >"$tmp/short.csv"
out=$("$bin/anomalyctl" replay --config "$conf" --csv "$tmp/short.csv" --metric "$tag.m" \
    --uid "$uid" --batch-size 100 --live-after 200)
echo "$out" | grep -q "rows=300 entries=103" || fail "replay said: $out"
"$bin/anomalyd" --config "$conf" --consumer "$tag" --exit-when-idle 1500 2>"$tmp/anomalyd.log" ||
    { tail -20 "$tmp/anomalyd.log"; fail "installed anomalyd failed"; }
grep -q "stats: entries=103 inference_batches=102 rows_scored=300" "$tmp/anomalyd.log" ||
    { tail -5 "$tmp/anomalyd.log"; fail "anomalyd did not score the 300 rows of 103 entries"; }
status=$("$bin/anomalyctl" status --config "$conf" --json)
echo "$status" | grep -q '"group":{"name":"anomalyd","pending":0,"lag":0' || fail "status: $status"
last=$("$bin/anomalyctl" tail --config "$conf" --count 1)
echo "$last" | grep -q '"rows":"300-300"' || fail "last output: $last"
echo "install_test: ok (prefix $prefix, unit $exec_bin --config ${conf#$tmp/root})"
