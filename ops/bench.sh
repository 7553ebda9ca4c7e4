#!/usr/bin/env bash
# ops/bench.sh: anomalyd's throughput benchmark. One run measures, on the
# same data and the same servers (ops/stack.sh), three consumers:
#   anomalyd   build-bench/anomalyd (Release, no sanitizer), group commit
#   floor      ops/bench/bench_floor.c: the same Redis and PostgreSQL calls
#              (XREADGROUP, HMGET pipeline, an_repo_group_read, attempts,
#              the helper's tail reads, an_repo_group_write_commit,
#              an_publish_many) with no decoding and no scoring
#   original   ops/bench/bench_original.c: htmengine's pattern, one
#              transaction per entry and one UPDATE per row, then XADD+XACK
# over these workloads:
#   live       M metrics (BENCH_METRICS, 1000), each pre-warmed with W
#              processed rows (BENCH_PREWARM, 400: the helper is in its
#              normal regime, params cached in Redis), receiving 1-row
#              batches round-robin:
#                paced: BENCH_RATE entries/s (1000) for BENCH_PACED_SECONDS
#                       (10): results/s and end-to-end latency p50/p99
#                sat:   BENCH_ENTRIES (20000) entries queued first, then
#                       the consumer drains them: results/s
#   steady     the live saturation run on mature metrics: BENCH_STEADY_METRICS
#              (100) metrics pre-warmed with BENCH_STEADY_PREWARM (9000)
#              processed rows each (past statistics_sample_size, 8640: every
#              24th batch re-estimates over the newest 8640 samples). The
#              consumer is started on a warm-up of 24 rounds (every metric
#              re-estimates once: the process is in its steady state, as
#              after its first day), then BENCH_STEADY_ENTRIES (10000) 1-row
#              entries are queued at once and drained: results/s over those
#   catch-up   BENCH_CATCHUP_METRICS (40) fresh metrics x
#              BENCH_CATCHUP_BATCHES (8) batches of BENCH_BATCH (1440) rows,
#              queued first: rows/s
# anomalyd and the floor run BENCH_REPEAT (3) interleaved times each (median
# reported, every value listed); the original runs once.
# Plus: anomalyd with 2 consumers (BENCH_TWO_CONSUMERS=1), anomalyd on rows
# written at fillfactor 50 (BENCH_FILLFACTOR=1; the table's setting is
# restored right after the insert), peak RSS of anomalyd (also on
# BENCH_RSS_METRICS=10000 metrics whose params are cached in Redis), the
# commit latency of this machine (200 x BEGIN; UPDATE 1 row; COMMIT, at the
# start and at the end), and whether anomalyd's results with read_count 64
# are identical to read_count 1 (one entry per transaction, and no
# in-process state cache) on the same
# input (BENCH_IDENTITY_METRICS=100 live metrics, 5 of them with 20
# consecutive entries, and 6 catch-up metrics).
#
# Latency = output entry id ms - its `source` input entry id ms (both the
# Redis server clock, 1 ms resolution). Rate = rows in the output entries /
# (last output id ms - Redis clock when the consumer was started).
#
# Everything lives under the key/uid prefix BENCH_PREFIX (bench:): cleaned
# at the start and (unless BENCH_KEEP=1) at the end. The stack is shared:
# the servers are never restarted here; a run during which another user
# restarted one (or whose output is incomplete) is redone on fresh data up to
# BENCH_RETRIES (3) times, then flagged "DISTURBED".
#
#   ops/bench.sh                          everything (about 8 minutes, 2 cores)
#   BENCH_REPEAT=1 ops/bench.sh           quicker, noisier
#   BENCH_METRICS=200 BENCH_ENTRIES=4000 ops/bench.sh      smaller
#   BENCH_ANOMALYD=/path/to/anomalyd ops/bench.sh          another build
#   BENCH_DOC= ops/bench.sh               do not rewrite docs/performance.md
#   BENCH_ONLY="a.sat f.sat" BENCH_DOC= ops/bench.sh   only these runs (names:
#       {a,f,o}.{paced,sat,steady,catch} a2.sat a2.catch ff.sat ff.catch i64 i1 rss)
# The final table goes to stdout and, between the "bench.sh results"
# markers, into docs/performance.md (BENCH_DOC).
set -euo pipefail
cd "$(dirname "$0")/.."

M=${BENCH_METRICS:-1000}
W=${BENCH_PREWARM:-400}
SM=${BENCH_STEADY_METRICS:-100}
SW=${BENCH_STEADY_PREWARM:-9000}
SENTRIES=${BENCH_STEADY_ENTRIES:-10000}
RATE=${BENCH_RATE:-1000}
PACED_S=${BENCH_PACED_SECONDS:-10}
ENTRIES=${BENCH_ENTRIES:-20000}
CM=${BENCH_CATCHUP_METRICS:-40}
CB=${BENCH_CATCHUP_BATCHES:-8}
BATCH=${BENCH_BATCH:-1440}
RSS_M=${BENCH_RSS_METRICS:-10000}
REPEAT=${BENCH_REPEAT:-3}
RC=${BENCH_READ_COUNT:-64}
TWO=${BENCH_TWO_CONSUMERS:-1}
FF=${BENCH_FILLFACTOR:-1}
IM=${BENCH_IDENTITY_METRICS:-100}
DOC=${BENCH_DOC-docs/performance.md}
KEEP=${BENCH_KEEP:-0}
P=${BENCH_PREFIX:-bench:}
BUILD=build-bench
ANOMALYD=${BENCH_ANOMALYD:-$BUILD/anomalyd}
IDLE_MS=300

case $P in bench*) ;; *) echo "bench: BENCH_PREFIX must start with 'bench'" >&2; exit 2 ;; esac
CMDLINE="ops/bench.sh"
for v in $(env | sed -n 's/^\(BENCH_[A-Z_]*\)=.*/\1/p' | sort); do
    CMDLINE="$v=${!v} $CMDLINE"
done

say() { printf '== %s\n' "$*" >&2; }

# ---------------------------------------------------------------- build
say "build: Release, no sanitizer, in $BUILD/"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DANOMALYD_SANITIZE=OFF \
      -DANOMALYD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
# What was built (taken now: the tree may move on while the bench runs).
BUILT="$(git log -1 --format=%h 2>/dev/null)$(git diff --quiet HEAD -- src include lua CMakeLists.txt 2>/dev/null || echo '+uncommitted changes')"
BIN=$BUILD/bench
mkdir -p "$BIN"
for prog in bench_load bench_floor bench_original; do
    # shellcheck disable=SC2046
    cc -std=gnu11 -O2 -Wall -Wextra -Iinclude ops/bench/$prog.c "$BUILD/libanomaly.a" \
       $(pkg-config --cflags --libs hiredis jansson zlib libpq inih libmicrohttpd) -pthread -lm -o "$BIN/$prog"
done
LOAD=$BIN/bench_load
[ -x "$ANOMALYD" ] || { echo "bench: $ANOMALYD not found" >&2; exit 1; }

# ---------------------------------------------------------------- servers
eval "$(ops/stack.sh env)"
# The stack is shared: someone may be restarting it. When `up` fails but
# both servers answer, go on (e.g. a pid file lost by someone else's test).
servers_answer() {
    [ "$(redis-cli -u "$ANOMALYD_REDIS_URL" ping 2>/dev/null)" = PONG ] &&
        psql "$ANOMALYD_PG_DSN" -X -q -At -c 'SELECT 1' >/dev/null 2>&1
}
for try in 1 2 3 4 5; do
    { ops/stack.sh up >&2 || servers_answer; } && "$BUILD/anomalyctl" db init >&2 && break
    [ "$try" = 5 ] && { echo "bench: the servers do not come up" >&2; exit 1; }
    sleep 3
done
PSQL=(psql "$ANOMALYD_PG_DSN" -X -q -At -v ON_ERROR_STOP=1)
RCLI=(redis-cli -u "$ANOMALYD_REDIS_URL")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/anomalyd-bench.XXXXXX")
PIDS=()
FF_RESTORE=""
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        pkill -TERM -P "$pid" 2>/dev/null || true # the consumer under /usr/bin/time
        kill "$pid" 2>/dev/null || true
    done
    if [ -n "$FF_RESTORE" ]; then
        "${PSQL[@]}" -c "$FF_RESTORE" >/dev/null 2>&1 || true
    fi
    "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_hot_schema_ff100, bench_hot_schema_ff50,
        bench_hot_noscoreidx_ff100, bench_hot_noscoreidx_ff50" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "clean ${P}* (metrics, rows, Redis keys)"
for try in 1 2 3 4 5; do
    "$LOAD" clean --prefix "$P" >&2 && break
    [ "$try" = 5 ] && exit 1
    sleep 3
done

# ---------------------------------------------------------------- helpers
kv() { # kv "k=v k2=v2" key
    local x
    for x in $1; do
        case $x in "$2"=*) echo "${x#*=}"; return ;; esac
    done
    echo "?"
}

lnow() { # the Redis clock in ms (retried: the stack is shared)
    local try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        "$LOAD" now 2>/dev/null && return 0
        sleep 1
    done
    echo 0
}

servers_id() {
    echo "$("${RCLI[@]}" info server 2>/dev/null | sed -n 's/^run_id:\([0-9a-f]*\).*/\1/p')/$("${PSQL[@]}" -c 'SELECT pg_postmaster_start_time()' 2>/dev/null)"
}

# run_env RUN [READ_COUNT]: the consumer configuration of one measured run;
# every key of the run is under ${P}RUN:
run_env() {
    export ANOMALYD_STREAMS_INPUT="${P}$1:in" ANOMALYD_STREAMS_OUTPUT="${P}$1:out" \
           ANOMALYD_STREAMS_DEAD_LETTER="${P}$1:dead" ANOMALYD_STREAMS_PARAMS_PREFIX="${P}$1:params:" \
           ANOMALYD_STREAMS_BLOCK_MS=100 ANOMALYD_STREAMS_READ_COUNT="${2:-$RC}"
    # The metrics endpoint on, on a free port: another run on this host
    # may hold the default one.
    export ANOMALYD_HTTP_LISTEN=127.0.0.1:0
    # The one-entry-per-transaction reference (identity run i1) also runs
    # without the in-process state cache and sample windows: the plain
    # parse-every-time, read-every-time path.
    if [ "$1" = i1 ]; then
        export ANOMALYD_ANOMALY_LIKELIHOOD_STATE_CACHE_METRICS=0
        export ANOMALYD_ANOMALY_LIKELIHOOD_SAMPLE_WINDOW_BYTES=0
    else
        unset ANOMALYD_ANOMALY_LIKELIHOOD_STATE_CACHE_METRICS
        unset ANOMALYD_ANOMALY_LIKELIHOOD_SAMPLE_WINDOW_BYTES
    fi
}

# start_consumer KIND RUN NAME: background; pid appended to PIDS
start_consumer() {
    local kind=$1 run=$2 name=$3 cmd
    case $kind in
        anomalyd) cmd=("$ANOMALYD" --consumer "$name" --exit-when-idle "$IDLE_MS") ;;
        floor) cmd=("$BIN/bench_floor" --params "$TMP/params.json" --consumer "$name"
                    --exit-when-idle "$IDLE_MS") ;;
        original) cmd=("$BIN/bench_original" --params "$TMP/params.json" --consumer "$name"
                       --exit-when-idle "$IDLE_MS") ;;
    esac
    /usr/bin/time -f "%M %e %U %S" -o "$TMP/$run.$name.time" "${cmd[@]}" \
        >"$TMP/$run.$name.out" 2>"$TMP/$run.$name.log" &
    PIDS+=($!)
}

# wait_consumers: waits for every started consumer; non-zero if one failed
wait_consumers() {
    local rc=0 pid
    for pid in "${PIDS[@]}"; do
        wait "$pid" || rc=1
    done
    PIDS=()
    return $rc
}

declare -A R # results: R[run.key]

# finish RUN EXPECT START_MS SERVERS_BEFORE CONSUMER_RC: report + RSS + checks;
# returns 1 when the run must be redone (disturbed, incomplete, failed)
finish() {
    local run=$1 expect=$2 t0=$3 before=$4 crc=$5 line rss=0 f m dead flag="" cpu=0
    line=$("$LOAD" report --stream "${P}$run:out" --expect $((expect + WARM)) --skip "$WARM" \
        --start-ms "$t0" --timeout 5) || line=""
    for f in "$TMP/$run".*.time; do
        m=$(head -n1 "$f" 2>/dev/null | cut -d' ' -f1)
        case $m in '' | *[!0-9]*) m=0 ;; esac
        [ "$m" -gt "$rss" ] && rss=$m
        cpu=$(awk -v c="$cpu" 'NR == 1 { c += $3 + $4 } END { print c }' "$f" 2>/dev/null || echo "$cpu")
    done
    dead=$("${RCLI[@]}" xlen "${P}$run:dead" 2>/dev/null || echo "?")
    R[$run.rate]=$(kv "$line" rate)
    R[$run.rows]=$(kv "$line" rows)
    R[$run.entries]=$(kv "$line" entries)
    R[$run.p50]=$(kv "$line" p50_ms)
    R[$run.p99]=$(kv "$line" p99_ms)
    R[$run.rss]=$rss
    R[$run.cpu]=$cpu
    # CPU time covers the warm-up too: per entry over all entries processed
    R[$run.cpurows]=$(awk -v r="${R[$run.rows]}" -v w="$WARM" 'BEGIN { if (r ~ /^[0-9]+$/) print r + w; else print "?" }')
    R[$run.warn]=$(cat "$TMP/$run".*.log 2>/dev/null | grep -c -E 'WARNING|ERROR' || true)
    R[$run.phases]=$(sed -n 's/^floor: ms per group: //p' "$TMP/$run".*.out 2>/dev/null | head -n1)
    R[$run.stats]=$(sed -n 's/^floor: \(entries.*\)/\1/p' "$TMP/$run".*.out 2>/dev/null | head -n1)
    [ "$crc" = 0 ] || flag="$flag FAILED(consumer exit)"
    [ "${R[$run.entries]}" = "$expect" ] || flag="$flag INCOMPLETE(${R[$run.entries]}/$expect outputs)"
    case $dead in 0 | '' | *[!0-9]*) ;; *) flag="$flag DEAD_LETTERS($dead)" ;; esac
    [ "$(servers_id)" = "$before" ] || flag="$flag DISTURBED(a server was restarted by someone)"
    R[$run.flag]=$flag
    printf '   %-10s %s rss_kb=%s cpu_s=%s warnings=%s%s\n' "$run" "$line" "$rss" "$cpu" "${R[$run.warn]}" "$flag" >&2
    [ -z "$flag" ]
}

# setup RUN SET-ARGS...: creates the run's metrics (retried: the stack is
# shared and may be restarted by someone else under us)
setup() {
    local run=$1 try
    shift
    for try in 1 2 3 4 5; do
        if "$LOAD" setup "$@" >&2; then
            return 0
        fi
        say "setup of $run failed (try $try); cleaning and retrying"
        sleep 3
        "$LOAD" clean --prefix "${P}$run:" >&2 || true
    done
    return 1
}

# After a run's data is loaded: fresh statistics, and a CHECKPOINT so the
# setup's bulk WAL is flushed now rather than on the consumer's time.
# (CHECKPOINT needs the stack's superuser.)
SUPER_PSQL=(psql "${ANOMALYD_PG_DSN/\/\/anomalyd@/\/\/postgres@}" -X -q -At)
vacuum() { "${PSQL[@]}" -c "VACUUM (ANALYZE) metric" -c "VACUUM (ANALYZE) metric_data" || true
           "${SUPER_PSQL[@]}" -c "CHECKPOINT" >/dev/null || true; }

# data RUN TYPE: creates the data of one run and sets EXPECT and PRODUCE
# (the producer's arguments; more than one call separated by ';;')
data() {
    local run=$1 type=$2
    WARM=0
    case $type in
        live-paced | live-sat | live-ff)
            local k=$SR
            [ "$type" = live-paced ] && k=$PR
            setup "$run" --prefix "${P}$run:L" --metrics "$M" --prewarm "$W" --rows $((W + k)) \
                --params-prefix "${P}$run:params:" --write-params "$TMP/params.json"
            EXPECT=$((k * M))
            PRODUCE=(--prefix "${P}$run:L" --metrics "$M" --from-row $((W + 1)) --rounds "$k") ;;
        live-steady)
            setup "$run" --prefix "${P}$run:L" --metrics "$SM" --prewarm "$SW" --rows $((SW + SWARM + SSR)) \
                --params-prefix "${P}$run:params:" --write-params "$TMP/params.json"
            WARM=$((SWARM * SM))
            WARM_PRODUCE=(--prefix "${P}$run:L" --metrics "$SM" --from-row $((SW + 1)) --rounds "$SWARM")
            EXPECT=$((SSR * SM))
            PRODUCE=(--prefix "${P}$run:L" --metrics "$SM" --from-row $((SW + SWARM + 1)) --rounds "$SSR") ;;
        catch | catch-ff)
            setup "$run" --prefix "${P}$run:C" --metrics "$CM" --prewarm 0 --rows "$CROWS"
            EXPECT=$NC
            PRODUCE=(--prefix "${P}$run:C" --metrics "$CM" --from-row 1 --rounds "$CB" --batch "$BATCH") ;;
        rss)
            setup "$run" --prefix "${P}$run:L" --metrics "$RSS_M" --prewarm "$W" --rows $((W + 1)) \
                --sparse --params-prefix "${P}$run:params:"
            EXPECT=$RSS_M
            PRODUCE=(--prefix "${P}$run:L" --metrics "$RSS_M" --from-row $((W + 1)) --rounds 1) ;;
        identity)
            setup "$run" --prefix "${P}$run:L" --metrics "$IM" --prewarm "$W" --rows $((W + 32)) \
                --params-prefix "${P}$run:params:"
            setup "$run" --prefix "${P}$run:C" --metrics 6 --prewarm 0 --rows $((2 * BATCH))
            EXPECT=$((IM * 12 + 5 * 20 + 6 * 2))
            PRODUCE=(--prefix "${P}$run:L" --metrics "$IM" --from-row $((W + 1)) --rounds 12 ";;"
                     --prefix "${P}$run:L" --metrics 5 --from-row $((W + 13)) --rounds 20 --order seq ";;"
                     --prefix "${P}$run:C" --metrics 6 --from-row 1 --rounds 2 --batch "$BATCH") ;;
    esac
}

produce() { # produce RUN [--rate X]: runs PRODUCE (split at ';;')
    local run=$1 a one=()
    shift
    for a in "${PRODUCE[@]}" ";;"; do
        if [ "$a" = ";;" ]; then
            "$LOAD" produce --stream "${P}$run:in" "$@" "${one[@]}" >/dev/null
            one=()
        else
            one+=("$a")
        fi
    done
}

# measure RUN KIND NCONSUMERS MODE TYPE [READ_COUNT]
#   MODE sat:   queue the whole workload, then start the consumer(s): drain
#   MODE paced: start the consumer, then produce at RATE entries/s
# A run disturbed by someone else's server restart (or otherwise incomplete)
# is redone on fresh data, up to BENCH_RETRIES (3) times.
measure() {
    local run=$1 kind=$2 nc=$3 mode=$4 type=$5 rc=${6:-$RC} try before t0 crc i
    if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" ${run%.[0-9]} "* ]]; then
        return 0
    fi
    for ((try = 0; try <= ${BENCH_RETRIES:-3}; try++)); do
        if [ "$try" -gt 0 ]; then
            say "redoing $run on fresh data"
            "$LOAD" clean --prefix "${P}$run:" >&2 || true
            rm -f "$TMP/$run".*
        fi
        if [ "$type" = live-ff ] || [ "$type" = catch-ff ]; then
            FF_RESTORE=$FF_RESTORE_SQL
            "${PSQL[@]}" -c "ALTER TABLE metric_data SET (fillfactor = 50)"
            data "$run" "$type" || true
            "${PSQL[@]}" -c "$FF_RESTORE"
            FF_RESTORE=""
        else
            data "$run" "$type"
        fi
        vacuum
        run_env "$run" "$rc"
        before=$(servers_id)
        crc=0
        if [ "$mode" = paced ]; then
            IDLE_MS=1500 start_consumer "$kind" "$run" "bench-$run-1"
            sleep 0.3
            t0=$(lnow)
            produce "$run" --rate "$RATE" || crc=1
        elif [ "$WARM" -gt 0 ]; then
            # warm-up first (not measured), then the workload queued at once
            "$LOAD" produce --stream "${P}$run:in" "${WARM_PRODUCE[@]}" >/dev/null || crc=1
            for ((i = 1; i <= nc; i++)); do
                IDLE_MS=3000 start_consumer "$kind" "$run" "bench-$run-$i"
            done
            "$LOAD" report --stream "${P}$run:out" --expect "$WARM" --timeout 600 >/dev/null || crc=1
            t0=$(lnow)
            produce "$run" || crc=1
        else
            produce "$run" || crc=1
            t0=$(lnow)
            for ((i = 1; i <= nc; i++)); do
                start_consumer "$kind" "$run" "bench-$run-$i"
            done
        fi
        wait_consumers || crc=1
        finish "$run" "$EXPECT" "$t0" "$before" "$crc" && return 0
    done
    return 0
}

# median_of BASE KEY K...: copies the fields of the run BASE.K with the median
# KEY (rate, p99) to BASE; BASE.rss is the largest of them, BASE.all lists KEY.
median_of() {
    local base=$1 key=$2 k med f list=() rss=0
    shift 2
    for k in "$@"; do
        case ${R[$base.$k.$key]:-?} in '' | *[!0-9]*) ;; *) list+=("${R[$base.$k.$key]} $base.$k") ;; esac
        [ "${R[$base.$k.rss]:-0}" -gt "$rss" ] && rss=${R[$base.$k.rss]}
    done
    R[$base.all]=$(for k in "$@"; do printf '%s ' "${R[$base.$k.$key]:-?}"; done)
    [ "${#list[@]}" -gt 0 ] || return 0
    med=$(printf '%s\n' "${list[@]}" | sort -n | awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }')
    for f in rate rows entries p50 p99 cpu cpurows warn phases stats; do
        R[$base.$f]=${R[$med.$f]:-}
    done
    R[$base.rss]=$rss
}

upd_stats() { "${PSQL[@]}" -c "SELECT n_tup_upd || ' ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'metric_data'"; }

commitlat() {
    local try
    for try in 1 2 3; do
        "$LOAD" commitlat --uid "${P}probe" --n 200 && return 0
        sleep 3
    done
    echo "commit_p50_ms=? commit_p90_ms=?"
}

# ---------------------------------------------------------------- workloads
PR=$(((RATE * PACED_S + M - 1) / M))   # paced rounds per metric
SR=$(((ENTRIES + M - 1) / M))          # saturation rounds per metric
SSR=$(((SENTRIES + SM - 1) / SM))      # steady-state rounds per metric
SWARM=24                               # steady-state warm-up rounds (one re-estimate each)
NSS=$((SSR * SM))
NP=$((PR * M)) NS=$((SR * M)) NC=$((CM * CB))
CROWS=$((CB * BATCH))
FF_OLD=$("${PSQL[@]}" -c "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class WHERE oid = 'metric_data'::regclass")
if [ -z "$FF_OLD" ]; then
    FF_RESTORE_SQL="ALTER TABLE metric_data RESET (fillfactor)"
else
    FF_RESTORE_SQL="ALTER TABLE metric_data SET ($FF_OLD)"
fi

T_START=$SECONDS
# A real params text for the floor and the original (any live setup rewrites it).
setup params0 --prefix "${P}params0:L" --metrics 1 --prewarm "$W" --rows "$W" \
    --write-params "$TMP/params.json"
"$LOAD" clean --prefix "${P}params0:" >/dev/null
say "commit latency (start)"
CL1=$(commitlat)
echo "   $CL1" >&2
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# anomalyd and the floor: REPEAT interleaved pairs (the machine is shared and
# a single run of a few seconds varies by 10-20 %); the median is reported.
U0=$(upd_stats)
for ((k = 1; k <= REPEAT; k++)); do
    say "anomalyd and floor, repeat $k/$REPEAT: live sat ($NS entries), steady ($NSS entries on $SM metrics of $SW rows), catch-up ($NC x $BATCH rows), live paced ($NP entries at $RATE/s)"
    measure "a.sat.$k" anomalyd 1 sat live-sat
    measure "f.sat.$k" floor 1 sat live-sat
    measure "a.steady.$k" anomalyd 1 sat live-steady
    measure "f.steady.$k" floor 1 sat live-steady
    measure "a.catch.$k" anomalyd 1 sat catch
    measure "f.catch.$k" floor 1 sat catch
    measure "a.paced.$k" anomalyd 1 paced live-paced
done
sleep 1.5
U1=$(upd_stats)
measure f.paced floor 1 paced live-paced
say "original: live paced ($NP entries at $RATE/s), live sat ($NS entries), steady ($NSS entries), catch-up ($NC x $BATCH rows)"
measure o.paced original 1 paced live-paced
measure o.sat original 1 sat live-sat
measure o.steady original 1 sat live-steady
measure o.catch original 1 sat catch
REPS=()
for ((k = 1; k <= REPEAT; k++)); do REPS+=("$k"); done
median_of a.sat rate "${REPS[@]}"
median_of f.sat rate "${REPS[@]}"
median_of a.steady rate "${REPS[@]}"
median_of f.steady rate "${REPS[@]}"
median_of a.catch rate "${REPS[@]}"
median_of f.catch rate "${REPS[@]}"
median_of a.paced p99 "${REPS[@]}"
if [ "$TWO" = 1 ]; then
    say "anomalyd, 2 consumers: live sat, catch-up"
    measure a2.sat anomalyd 2 sat live-sat
    measure a2.catch anomalyd 2 sat catch
fi
if [ "$FF" = 1 ]; then
    say "anomalyd on rows written at fillfactor 50 (table setting restored right after each insert): live sat, catch-up"
    F0=$(upd_stats)
    measure ff.sat anomalyd 1 sat live-ff
    measure ff.catch anomalyd 1 sat catch-ff
    sleep 1.5
    F1=$(upd_stats)
fi

say "identity: read_count $RC vs 1 on the same input"
for try in 0 1 2; do
    measure i64 anomalyd 1 sat identity "$RC"
    measure i1 anomalyd 1 sat identity 1
    IDENT="identical=? (not run)"
    [ -n "${R[i64.rate]:-}" ] && [ -n "${R[i1.rate]:-}" ] && IDENT=$("$LOAD" compare --a "${P}i64:" --b "${P}i1:" --params-a "${P}i64:params:" \
        --params-b "${P}i1:params:" || true)
    echo "   $IDENT" >&2
    [ -z "${R[i64.flag]:-}${R[i1.flag]:-}" ] && break
done

say "RSS: anomalyd over $RSS_M metrics whose params are cached in Redis"
measure rss anomalyd 1 sat rss
NKEYS=$("${RCLI[@]}" --scan --pattern "${P}rss:params:*" | wc -l)

HOTC=""
if [ "$FF" = 1 ]; then
    say "fillfactor / HOT on private copies of the table (bench_hot_*: created, measured, dropped)"
    for try in 1 2 3; do
        HOTC=$("$LOAD" hotcheck) && break
        HOTC=""
        sleep 3
    done
    echo "$HOTC" | sed 's/^/   /' >&2
fi

say "commit latency (end)"
CL2=$(commitlat)
echo "   $CL2" >&2
LOAD2=$(cut -d' ' -f1-3 /proc/loadavg)
T_TOTAL=$((SECONDS - T_START))

# ---------------------------------------------------------------- table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "?") printf "%.2f", a / b; else printf "?" }'; }
check() { # check VALUE OP LIMIT -> PASS/FAIL
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "?" || v == "") { print "?"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 < l + 0); print ok ? "PASS" : "FAIL" }'
}
perx() { awk -v c="$1" -v n="$2" 'BEGIN { if (n + 0 > 0) printf "%.1f", c * 1e6 / n; else printf "?" }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
hot() { # hot "upd hot" "upd hot"
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); u = y[1] - x[1]; h = y[2] - x[2];
        pc = 0; if (u > 0) pc = 100 * h / u;
        printf "%d updates, %d HOT (%.0f%%)", u, h, pc }'
}

for run in a.paced a.sat a.catch f.paced f.sat f.catch o.paced o.sat o.catch a2.sat a2.catch \
           a.steady f.steady o.steady \
           ff.sat ff.catch i64 i1 rss; do
    for key in rate rows entries p50 p99 warn cpurows; do
        [ -n "${R[$run.$key]:-}" ] || R[$run.$key]="?"
    done
    [ -n "${R[$run.rss]:-}" ] || R[$run.rss]=0
    [ -n "${R[$run.cpu]:-}" ] || R[$run.cpu]=0
    [ -n "${R[$run.flag]:-}" ] || R[$run.flag]=""
done
: "${U0:=0 0}" "${U1:=0 0}" "${F0:=0 0}" "${F1:=0 0}" "${NKEYS:=0}"

LA=${R[a.sat.rate]} LF=${R[f.sat.rate]} LO=${R[o.sat.rate]}
CA=${R[a.catch.rate]} CF=${R[f.catch.rate]} CO=${R[o.catch.rate]}
RL_AO=$(ratio "$LA" "$LO") RL_AF=$(ratio "$LA" "$LF")
SA=${R[a.steady.rate]} SF=${R[f.steady.rate]} SO=${R[o.steady.rate]}
RS_AO=$(ratio "$SA" "$SO") RS_AF=$(ratio "$SA" "$SF") RS_AL=$(ratio "$SA" "$LA")
RC_AO=$(ratio "$CA" "$CO") RC_AF=$(ratio "$CA" "$CF")
CLP50=$(kv "$CL1" commit_p50_ms) CLP90=$(kv "$CL1" commit_p90_ms)
CLP50b=$(kv "$CL2" commit_p50_ms) CLP90b=$(kv "$CL2" commit_p90_ms)
RSS_MAX=0
for k in a.paced a.sat a.catch rss; do
    [ "${R[$k.rss]}" -gt "$RSS_MAX" ] && RSS_MAX=${R[$k.rss]}
done
[ "$RSS_MAX" -gt 0 ] || RSS_MAX="?"   # no anomalyd run measured: no verdict
FLAGS=""
for k in "${!R[@]}"; do
    case $k in *.flag) [ -n "${R[$k]}" ] && FLAGS="$FLAGS ${k%.flag}:${R[$k]}" ;; esac
done

TABLE=$(
    echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "servers: $("${PSQL[@]}" -c 'SHOW server_version' | cut -d' ' -f1) (synchronous_commit=$("${PSQL[@]}" -c 'SHOW synchronous_commit'), fsync=$("${PSQL[@]}" -c 'SHOW fsync'), shared_buffers=$("${PSQL[@]}" -c 'SHOW shared_buffers'), max_wal_size=$("${PSQL[@]}" -c 'SHOW max_wal_size')), Redis $("${RCLI[@]}" info server | sed -n 's/^redis_version:\([^[:space:]]*\).*/\1/p') (appendfsync $("${RCLI[@]}" config get appendfsync | tail -n1))"
    echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); anomalyd built from $BUILT ($ANOMALYD)"
    echo "command: $CMDLINE   (total ${T_TOTAL}s; load avg at start $LOAD1, at end $LOAD2)"
    echo "workload: live $M metrics, 1-row batches, $W rows pre-processed each; steady $SM metrics, $SW rows pre-processed each; read_count $RC; catch-up $CM metrics x $CB batches of $BATCH rows"
    echo "commit latency (200 x BEGIN; UPDATE 1 row; COMMIT): p50 $CLP50 ms, p90 $CLP90 ms at start; p50 $CLP50b ms, p90 $CLP90b ms at end"
    echo
    printf '%-40s %10s %10s %10s %9s %9s\n' "" anomalyd floor original "a/floor" "a/orig"
    printf '%-40s %10s %10s %10s %9s %9s\n' "live, saturation: results/s" "$LA" "$LF" "$LO" "$RL_AF" "$RL_AO"
    printf '%-40s %10s %10s %10s\n' "  (drain of $NS queued) latency p50/p99 ms" \
        "${R[a.sat.p50]}/${R[a.sat.p99]}" "${R[f.sat.p50]}/${R[f.sat.p99]}" "${R[o.sat.p50]}/${R[o.sat.p99]}"
    printf '%-40s %10s %10s %10s %9s %9s\n' "live, steady ($SW-row metrics): results/s" "$SA" "$SF" "$SO" "$RS_AF" "$RS_AO"
    printf '%-40s %10s   (x%s of the live rate with %s-row metrics)\n' "  steady / young live, anomalyd" "$SA" "$RS_AL" "$W"
    printf '%-40s %10s %10s %10s\n' "live, paced $RATE/s: results/s" "${R[a.paced.rate]}" "${R[f.paced.rate]}" "${R[o.paced.rate]}"
    printf '%-40s %10s %10s %10s\n' "  latency p50/p99 ms" \
        "${R[a.paced.p50]}/${R[a.paced.p99]}" "${R[f.paced.p50]}/${R[f.paced.p99]}" "${R[o.paced.p50]}/${R[o.paced.p99]}"
    printf '%-40s %10s %10s %10s %9s %9s\n' "catch-up ($BATCH-row batches): rows/s" "$CA" "$CF" "$CO" "$RC_AF" "$RC_AO"
    echo "  (ceiling of the ratio to the original: floor/original = $(ratio "$LF" "$LO") live, $(ratio "$CF" "$CO") catch-up)"
    if [ "$TWO" = 1 ]; then
        printf '%-40s %10s   (x%s of 1 consumer)\n' "anomalyd, 2 consumers: live results/s" "${R[a2.sat.rate]}" "$(ratio "${R[a2.sat.rate]}" "$LA")"
        printf '%-40s %10s   (x%s of 1 consumer)\n' "anomalyd, 2 consumers: catch-up rows/s" "${R[a2.catch.rate]}" "$(ratio "${R[a2.catch.rate]}" "$CA")"
    fi
    if [ "$FF" = 1 ]; then
        printf '%-40s %10s   (x%s of fillfactor 100)\n' "fillfactor 50: live results/s" "${R[ff.sat.rate]}" "$(ratio "${R[ff.sat.rate]}" "$LA")"
        printf '%-40s %10s   (x%s of fillfactor 100)\n' "fillfactor 50: catch-up rows/s" "${R[ff.catch.rate]}" "$(ratio "${R[ff.catch.rate]}" "$CA")"
        echo "  metric_data updates: anomalyd+floor runs (fillfactor 100) $(hot "$U0" "$U1"); fillfactor 50 runs $(hot "$F0" "$F1") (table-wide pg_stat counters: other users' updates included, reset by a server restart)"
        echo "  the group write's UPDATE alone, private copies of the table (median of 3; live = 64 metrics x 1 row per transaction, catch-up = 1400 rows of a metric per transaction):"
        echo "$HOTC" | awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
            printf "    %-17s fillfactor %3s, anomaly_score_idx + processed_idx %-3s: live %6s rows/s, catch-up %6s rows/s, HOT %3s%%, heap %s MiB\n",
                   f["variant"], f["fillfactor"], f["score_indexes"], f["live_rows_s"], f["catchup_rows_s"], f["hot_pct"], f["heap_mib_after"] }'

    fi
    echo "repeats (median reported): live sat results/s: anomalyd ${R[a.sat.all]:-}/ floor ${R[f.sat.all]:-}/ steady results/s: anomalyd ${R[a.steady.all]:-}/ floor ${R[f.steady.all]:-}/ catch-up rows/s: anomalyd ${R[a.catch.all]:-}/ floor ${R[f.catch.all]:-}/ paced p99 ms: anomalyd ${R[a.paced.all]:-}"
    echo "consumer CPU (user+sys) per live entry: anomalyd $(perx "${R[a.sat.cpu]}" "${R[a.sat.rows]}") us, floor $(perx "${R[f.sat.cpu]}" "${R[f.sat.rows]}") us, original $(perx "${R[o.sat.cpu]}" "${R[o.sat.rows]}") us; per steady entry (warm-up included): anomalyd $(perx "${R[a.steady.cpu]}" "${R[a.steady.cpurows]}") us, floor $(perx "${R[f.steady.cpu]}" "${R[f.steady.cpurows]}") us, original $(perx "${R[o.steady.cpu]}" "${R[o.steady.cpurows]}") us; per catch-up row: anomalyd $(perx "${R[a.catch.cpu]}" "${R[a.catch.rows]}") us, floor $(perx "${R[f.catch.cpu]}" "${R[f.catch.rows]}") us"
    echo "floor, ms per group (read_count $RC): live sat: ${R[f.sat.phases]:-?}; steady: ${R[f.steady.phases]:-?}; catch-up: ${R[f.catch.phases]:-?}"
    echo "peak RSS of anomalyd (MiB): live paced $(mb "${R[a.paced.rss]}"), live sat $(mb "${R[a.sat.rss]}"), steady ($SM metrics' windows) $(mb "${R[a.steady.rss]}"), catch-up $(mb "${R[a.catch.rss]}"), $RSS_M metrics $(mb "${R[rss.rss]}") ($NKEYS params hashes in Redis)"
    echo "identical to one entry per transaction (read_count $RC vs 1 without state cache and sample windows): $(kv "$IDENT" identical)   [$IDENT]"
    echo "anomalyd sample windows, steady run: $(sed -n 's/.*stats:.*\( sample_window=[0-9]*\).*\( sample_window_hits=[0-9]*\)\( sample_window_misses=[0-9]*\).*/\1\2\3/p' "$TMP"/a.steady.*.log 2>/dev/null | tail -n1)"
    echo "anomalyd warnings/errors logged: paced ${R[a.paced.warn]}, sat ${R[a.sat.warn]}, steady ${R[a.steady.warn]}, catch-up ${R[a.catch.warn]}, identity ${R[i64.warn]}/${R[i1.warn]}, rss ${R[rss.warn]}"
    [ -n "$FLAGS" ] && echo "FLAGS:$FLAGS"
    echo
    echo "targets:"
    printf '  %-58s %s\n' "live: anomalyd >= 5x original results/s ($RL_AO x)" "$(check "$RL_AO" '>=' 5)"
    printf '  %-58s %s\n' "live: anomalyd >= 0.8x floor ($RL_AF x)" "$(check "$RL_AF" '>=' 0.8)"
    printf '  %-58s %s\n' "steady: anomalyd >= 5x original results/s ($RS_AO x)" "$(check "$RS_AO" '>=' 5)"
    printf '  %-58s %s\n' "steady: anomalyd >= 0.85x its young live rate ($RS_AL x)" "$(check "$RS_AL" '>=' 0.85)"
    printf '  %-58s %s\n' "catch-up: anomalyd >= 2x original rows/s ($RC_AO x)" "$(check "$RC_AO" '>=' 2)"
    printf '  %-58s %s\n' "catch-up: anomalyd >= 0.8x floor ($RC_AF x)" "$(check "$RC_AF" '>=' 0.8)"
    printf '  %-58s %s\n' "p99 latency at $RATE results/s offered < 25 ms (${R[a.paced.p99]} ms)" "$(check "${R[a.paced.p99]}" '<' 25)"
    printf '  %-58s %s\n' "peak RSS < 30 MiB, $RSS_M metrics' params in Redis ($(mb "$RSS_MAX") MiB)" "$(check "$RSS_MAX" '<' 30720)"
    printf '  %-58s %s\n' "results identical to one entry per transaction" "$(case "$(kv "$IDENT" identical)" in yes) echo PASS ;; no) echo FAIL ;; *) echo "?" ;; esac)"
)
echo
echo "$TABLE"

if [ -n "$DOC" ]; then
    begin='<!-- bench.sh results: begin -->'
    end='<!-- bench.sh results: end -->'
    block="$TMP/block.md"
    { echo "$begin"; echo '```text'; echo "$TABLE"; echo '```'; echo "$end"; } >"$block"
    if [ -f "$DOC" ] && grep -qF "$begin" "$DOC" && grep -qF "$end" "$DOC"; then
        awk -v b="$begin" -v e="$end" -v f="$block" '
            $0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
            $0 == e { skip = 0; next }
            !skip { print }' "$DOC" >"$TMP/doc.md"
        cat "$TMP/doc.md" >"$DOC"
    else
        { echo "# Performance"; echo; cat "$block"; } >"$DOC"
    fi
    say "results written to $DOC"
fi

if [ "$KEEP" = 1 ]; then
    say "kept ${P}* data and $TMP (BENCH_KEEP=1)"
else
    "$LOAD" clean --prefix "$P" >&2 || say "cleaning ${P}* failed: run '$LOAD clean --prefix $P'"
    rm -rf "$TMP"
fi
