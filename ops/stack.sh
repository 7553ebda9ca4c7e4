#!/usr/bin/env bash
# ops/stack.sh: a private Redis and PostgreSQL 15 for development and tests.
#
#   ops/stack.sh up [--tls]      start both (idempotent: running ones are left alone)
#   ops/stack.sh down            stop both (only the servers this script started)
#   ops/stack.sh env             print export lines for ANOMALYD_REDIS_URL / ANOMALYD_PG_DSN
#   ops/stack.sh status          show what runs (exit 0 if both answer, 1 otherwise)
#   ops/stack.sh restart-redis [--kill]   graceful (or SIGKILL) stop, then start
#   ops/stack.sh restart-pg [--kill]      fast (or immediate = crash) stop, then start
#   ops/stack.sh start-redis|stop-redis [--kill]|start-pg|stop-pg [--kill]
#   ops/stack.sh destroy         down, then delete all data
#
# --tls (with up, start-redis, start-pg, restart-*): generate, once, a
# self-signed CA and a server certificate for localhost / 127.0.0.1 under
# .stack/tls/ (openssl), and from then on start Redis with a tls-port
# (ANOMALYD_STACK_REDIS_TLS_PORT, default Redis port + 20000; the plain port
# stays) and PostgreSQL with ssl=on. A running server without TLS is
# restarted. `env` then also prints ANOMALYD_STACK_TLS_CA,
# ANOMALYD_STACK_REDIS_TLS_PORT and ANOMALYD_STACK_PG_TLS_DSN (sslmode=verify-full).
#
# Both servers listen on 127.0.0.1 only, on non-default ports:
#   Redis       ANOMALYD_STACK_REDIS_PORT (6479)
#   PostgreSQL  ANOMALYD_STACK_PG_PORT    (5479)
# ANOMALYD_STACK_TIMEOUT (seconds, 30) bounds the wait for a server to answer.
#
# Data lives under .stack/ at the repo root (git-ignored):
#   .stack/redis/   redis.conf (generated), redis.pid, redis.log, AOF
#                   (appendonly yes, appendfsync everysec)
#   .stack/pg       the PostgreSQL area: data/ (PGDATA, fsync and
#                   synchronous_commit on; started with shared_buffers
#                   512MB and max_wal_size 4GB), run/ (unix socket),
#                   postgres.log
# PostgreSQL refuses to run as root. When run as root the PG area belongs to
# the `postgres` OS user and pg_ctl runs through `runuser -u postgres --`.
# If that user cannot reach .stack/pg (a repo under a directory it cannot
# traverse), the PG area goes to /tmp/anomalyd-stack-<hash of repo path>/pg
# and .stack/pg is a symlink to it.
# First start: initdb (trust authentication: local socket and 127.0.0.1,
# the only addresses it listens on), then role `anomalyd` (LOGIN) and
# database `anomalyd` owned by it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
STACK="$ROOT/.stack"
REDIS_PORT=${ANOMALYD_STACK_REDIS_PORT:-6479}
PG_PORT=${ANOMALYD_STACK_PG_PORT:-5479}
REDIS_TLS_PORT=${ANOMALYD_STACK_REDIS_TLS_PORT:-$((REDIS_PORT + 20000))}
TLS_DIR="$STACK/tls"
TIMEOUT=${ANOMALYD_STACK_TIMEOUT:-30}
PGBIN=${ANOMALYD_STACK_PGBIN:-/usr/lib/postgresql/15/bin}
DB_NAME=anomalyd
DB_ROLE=anomalyd

REDIS_DIR="$STACK/redis"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_SOCK="$REDIS_DIR/redis.sock"
REDIS_LOG="$REDIS_DIR/redis.log"
PG_LINK="$STACK/pg"

# The PG area's real path: the server (running as postgres) must never go
# through .stack/pg when that is a symlink to the /tmp fallback.
pg_resolve_paths() {
    if [ -L "$PG_LINK" ]; then
        PG_AREA=$(readlink "$PG_LINK")
    else
        PG_AREA=$PG_LINK
    fi
    PG_DATA="$PG_AREA/data"
    PG_SOCK="$PG_AREA/run"
    PG_LOG="$PG_AREA/postgres.log"
}
pg_resolve_paths

die() {
    echo "stack: $*" >&2
    exit 1
}
say() { echo "stack: $*"; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as the PostgreSQL OS user (postgres when root, else self).
as_pg() {
    if is_root; then
        # from / : the postgres user may not be able to enter the caller's cwd
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

log_tail() {
    local f=$1
    if [ -r "$f" ]; then
        echo "---- last lines of $f ----" >&2
        tail -n 30 "$f" >&2 || true
        echo "----" >&2
    else
        echo "(no log at $f)" >&2
    fi
}

port_check() {
    case $1 in
        '' | *[!0-9]*) die "$2 must be a port number, got '$1'" ;;
    esac
    if [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
        die "$2 out of range: $1"
    fi
}

# ------------------------------------------------------------------ TLS

tls_on() { [ -s "$TLS_DIR/ca.crt" ] && [ -s "$TLS_DIR/server.crt" ]; }

# A CA and a server certificate for localhost and 127.0.0.1 signed by it
# (10 years; made once, kept across restarts, removed by destroy).
tls_setup() {
    tls_on && return 0
    command -v openssl >/dev/null || die "openssl not found (ops/install-deps.sh)"
    mkdir -p "$TLS_DIR"
    local d=$TLS_DIR
    (
        set -e
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=anomalyd stack CA" \
            -keyout "$d/ca.key" -out "$d/ca.crt"
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$d/server.key" -out "$d/server.csr"
        printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n' \
            >"$d/server.ext"
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
            -CAcreateserial -days 3650 -extfile "$d/server.ext" -out "$d/server.crt"
        chmod 600 "$d/ca.key" "$d/server.key"
    ) >"$d/openssl.log" 2>&1 || {
        log_tail "$d/openssl.log"
        rm -f "$d/ca.crt" "$d/server.crt"
        die "could not make the TLS certificates"
    }
    say "TLS: CA and server certificate (localhost, 127.0.0.1) in $TLS_DIR"
}

# ---------------------------------------------------------------- Redis

redis_pid() {
    local pid
    [ -s "$REDIS_PID" ] || return 1
    pid=$(cat "$REDIS_PID" 2>/dev/null) || return 1
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    grep -q redis "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

redis_ping() {
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

redis_write_conf() {
    mkdir -p "$REDIS_DIR"
    cat >"$REDIS_CONF.tmp" <<EOF
# generated by ops/stack.sh; rewritten at every start
bind 127.0.0.1
protected-mode yes
port $REDIS_PORT
unixsocket $REDIS_SOCK
unixsocketperm 700
daemonize yes
pidfile $REDIS_PID
logfile $REDIS_LOG
dir $REDIS_DIR
appendonly yes
appendfsync everysec
save ""
EOF
    if tls_on; then
        cat >>"$REDIS_CONF.tmp" <<EOF
tls-port $REDIS_TLS_PORT
tls-cert-file $TLS_DIR/server.crt
tls-key-file $TLS_DIR/server.key
tls-ca-cert-file $TLS_DIR/ca.crt
tls-auth-clients no
EOF
    fi
    mv "$REDIS_CONF.tmp" "$REDIS_CONF"
}

redis_has_tls() {
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get tls-port 2>/dev/null | sed -n 2p)" = "$REDIS_TLS_PORT" ]
}

redis_start() {
    if redis_pid >/dev/null && tls_on && ! redis_has_tls; then
        redis_wait
        say "redis runs without TLS: restarting it with tls-port $REDIS_TLS_PORT"
        redis_stop
    fi
    if redis_pid >/dev/null; then
        redis_wait
        say "redis already running (pid $(redis_pid), port $REDIS_PORT)"
        return 0
    fi
    rm -f "$REDIS_PID"
    if redis_ping; then
        die "port $REDIS_PORT already answers Redis PING but not a server of this stack (set ANOMALYD_STACK_REDIS_PORT)"
    fi
    command -v redis-server >/dev/null || die "redis-server not found (ops/install-deps.sh)"
    redis_write_conf
    if ! redis-server "$REDIS_CONF"; then
        log_tail "$REDIS_LOG"
        die "redis-server failed to start"
    fi
    redis_wait
    say "redis started (pid $(redis_pid || echo '?'), port $REDIS_PORT$(tls_on && echo ", TLS port $REDIS_TLS_PORT"))"
}

redis_wait() {
    local deadline=$((SECONDS + TIMEOUT))
    until redis_ping; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_tail "$REDIS_LOG"
            die "redis did not answer PING on 127.0.0.1:$REDIS_PORT within ${TIMEOUT}s"
        fi
        sleep 0.1
    done
    # Wait until the AOF is loaded (PING answers during loading too).
    until redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info persistence 2>/dev/null | grep -q '^loading:0'; do
        [ "$SECONDS" -lt "$deadline" ] || die "redis still loading its data after ${TIMEOUT}s"
        sleep 0.1
    done
}

redis_stop() {
    local kill=${1:-} pid
    if ! pid=$(redis_pid); then
        rm -f "$REDIS_PID"
        say "redis not running"
        return 0
    fi
    if [ "$kill" = --kill ]; then
        kill -KILL "$pid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_tail "$REDIS_LOG"
            die "redis (pid $pid) did not stop within ${TIMEOUT}s"
        fi
        sleep 0.1
    done
    rm -f "$REDIS_PID"
    say "redis stopped${kill:+ (killed)}"
}

# ------------------------------------------------------------ PostgreSQL

# Makes sure the PG area exists and the PG OS user can use it.
pg_prepare_area() {
    mkdir -p "$STACK"
    if [ -L "$PG_LINK" ]; then
        mkdir -p "$(readlink "$PG_LINK")"
    else
        mkdir -p "$PG_LINK"
    fi
    if is_root; then
        id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user (apt-get install postgresql)"
        if [ ! -L "$PG_LINK" ] && ! runuser -u postgres -- test -x "$PG_LINK/.." 2>/dev/null; then
            # postgres cannot traverse to the repo: keep the PG area in /tmp.
            local hash alt
            hash=$(printf '%s' "$ROOT" | md5sum | cut -c1-12)
            alt="/tmp/anomalyd-stack-$hash/pg"
            mkdir -p "$alt"
            chmod 755 "/tmp/anomalyd-stack-$hash"
            if [ -z "$(ls -A "$PG_LINK")" ]; then
                rmdir "$PG_LINK"
            else
                die "$PG_LINK is not reachable by the postgres user and not empty; move it away"
            fi
            ln -s "$alt" "$PG_LINK"
            say "PG area at $alt (.stack/pg links to it: postgres cannot traverse $ROOT)"
        fi
        pg_resolve_paths
        chown postgres: "$PG_AREA" 2>/dev/null || chown postgres "$PG_AREA"
        chmod 700 "$PG_AREA"
    fi
    pg_resolve_paths
    as_pg mkdir -p "$PG_SOCK"
    as_pg chmod 755 "$PG_SOCK"
}

pg_running() {
    [ -f "$PG_DATA/postmaster.pid" ] || return 1
    as_pg "$PGBIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_ready() {
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres >/dev/null 2>&1
}

pg_init() {
    [ -x "$PGBIN/initdb" ] || die "$PGBIN/initdb not found (apt-get install postgresql-15)"
    [ -f "$PG_DATA/PG_VERSION" ] && return 0
    say "initdb $PG_DATA"
    if ! as_pg "$PGBIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >"$STACK/initdb.log" 2>&1; then
        log_tail "$STACK/initdb.log"
        die "initdb failed"
    fi
    # listen_addresses, port and socket directory are given at every start
    # (so the port can be overridden); the durability settings live here.
    as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# ---- ops/stack.sh ----
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
EOF
}

pg_has_ssl() {
    [ "$(pg_psql -d postgres -tAc 'SHOW ssl' 2>/dev/null)" = on ]
}

# The server's copy of the certificate and key, owned by the PG OS user
# (PostgreSQL refuses a key others can read).
pg_tls_files() {
    as_pg mkdir -p "$PG_AREA/tls"
    local f
    for f in server.crt server.key; do
        as_pg tee "$PG_AREA/tls/$f" <"$TLS_DIR/$f" >/dev/null
    done
    as_pg chmod 600 "$PG_AREA/tls/server.key"
}

pg_start() {
    pg_prepare_area
    pg_init
    if pg_running && tls_on && pg_ready && ! pg_has_ssl; then
        say "postgres runs without ssl: restarting it with ssl=on"
        pg_stop
    fi
    if pg_running; then
        pg_wait
        pg_bootstrap
        say "postgres already running (port $PG_PORT, data $PG_DATA)"
        return 0
    fi
    if pg_ready; then
        die "port $PG_PORT already answers PostgreSQL but not a server of this stack (set ANOMALYD_STACK_PG_PORT)"
    fi
    # Sizing as for a small production server rather than initdb's
    # defaults (128 MB buffers, 1 GB of WAL): the tests and ops/bench.sh
    # write GBs of rows, and with the defaults a checkpoint was forced every
    # few seconds, its I/O showing up as tens of ms on unrelated commits.
    local ssl=""
    if tls_on; then
        pg_tls_files
        ssl="-c ssl=on -c ssl_cert_file=$PG_AREA/tls/server.crt -c ssl_key_file=$PG_AREA/tls/server.key"
    fi
    if ! as_pg "$PGBIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" \
        -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_SOCK -c shared_buffers=512MB -c max_wal_size=4GB $ssl" \
        >/dev/null; then
        log_tail "$PG_LOG"
        die "postgres failed to start"
    fi
    pg_wait
    pg_bootstrap
    say "postgres started (port $PG_PORT, data $PG_DATA)"
}

pg_wait() {
    local deadline=$((SECONDS + TIMEOUT))
    until pg_ready; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_tail "$PG_LOG"
            die "postgres did not become ready on 127.0.0.1:$PG_PORT within ${TIMEOUT}s"
        fi
        sleep 0.1
    done
}

pg_psql() {
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

# Role and database, created once (checked at every start: cheap).
pg_bootstrap() {
    if [ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_ROLE'")" != 1 ]; then
        pg_psql -d postgres -c "CREATE ROLE $DB_ROLE LOGIN" || die "cannot create role $DB_ROLE"
        say "created role $DB_ROLE"
    fi
    if [ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
        pg_psql -d postgres -c "CREATE DATABASE $DB_NAME OWNER $DB_ROLE" || die "cannot create database $DB_NAME"
        say "created database $DB_NAME"
    fi
}

pg_stop() {
    local mode=fast
    [ "${1:-}" = --kill ] && mode=immediate
    if ! pg_running; then
        say "postgres not running"
        return 0
    fi
    if ! as_pg "$PGBIN/pg_ctl" stop -D "$PG_DATA" -m "$mode" -w -t "$TIMEOUT" >/dev/null; then
        log_tail "$PG_LOG"
        die "postgres did not stop within ${TIMEOUT}s"
    fi
    say "postgres stopped ($mode)"
}

# ------------------------------------------------------------------ verbs

print_env() {
    echo "export ANOMALYD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    # the same server on its unix socket (tests of unix:// URLs)
    echo "export ANOMALYD_STACK_REDIS_SOCKET=$REDIS_SOCK"
    echo "export ANOMALYD_PG_DSN=postgresql://$DB_ROLE@127.0.0.1:$PG_PORT/$DB_NAME"
    if tls_on; then
        echo "export ANOMALYD_STACK_TLS_CA=$TLS_DIR/ca.crt"
        echo "export ANOMALYD_STACK_REDIS_TLS_PORT=$REDIS_TLS_PORT"
        echo "export ANOMALYD_STACK_PG_TLS_DSN='postgresql://$DB_ROLE@localhost:$PG_PORT/$DB_NAME?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.crt'"
    fi
}

status() {
    local rc=0 pid
    if pid=$(redis_pid) && redis_ping; then
        echo "redis     up    pid $pid  127.0.0.1:$REDIS_PORT  $REDIS_DIR"
    else
        echo "redis     down  127.0.0.1:$REDIS_PORT"
        rc=1
    fi
    if pg_running && pg_ready; then
        echo "postgres  up    pid $(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null)  127.0.0.1:$PG_PORT  $PG_DATA"
    else
        echo "postgres  down  127.0.0.1:$PG_PORT"
        rc=1
    fi
    return $rc
}

usage() {
    sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

port_check "$REDIS_PORT" ANOMALYD_STACK_REDIS_PORT
port_check "$PG_PORT" ANOMALYD_STACK_PG_PORT
port_check "$REDIS_TLS_PORT" ANOMALYD_STACK_REDIS_TLS_PORT

verb=${1:-}
[ $# -gt 0 ] && shift
# --tls anywhere after the verb: make the certificates (then TLS stays on).
args=()
for a in "$@"; do
    if [ "$a" = --tls ]; then
        tls_setup
    else
        args+=("$a")
    fi
done
set -- "${args[@]+"${args[@]}"}"
case $verb in
    up)
        redis_start
        pg_start
        ;;
    down)
        redis_stop
        pg_stop
        ;;
    env) print_env ;;
    status) status ;;
    start-redis) redis_start ;;
    stop-redis) redis_stop "${1:-}" ;;
    restart-redis)
        redis_stop "${1:-}"
        redis_start
        ;;
    start-pg) pg_start ;;
    stop-pg) pg_stop "${1:-}" ;;
    restart-pg)
        pg_stop "${1:-}"
        pg_start
        ;;
    destroy)
        redis_stop
        pg_stop
        if [ -L "$PG_LINK" ]; then
            rm -rf "$PG_AREA"
            case $(dirname "$PG_AREA") in
                /tmp/anomalyd-stack-*) rmdir "$(dirname "$PG_AREA")" 2>/dev/null || true ;;
            esac
        fi
        rm -rf "$STACK"
        say "removed $STACK"
        ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
esac
