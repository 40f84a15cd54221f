# shellcheck shell=bash
# What benches/compare.sh and benches/profile.sh share: logging, process tracking and cleanup,
# building pgsplit, and the local cluster with its `bench` database. Sourced, not run.
# Expects ROOT (the repository) and WORK (a scratch directory, removed at exit).

declare -a PIDS=() PID_NAMES=() PID_SIGNALS=()

log() { echo "[${0##*/} $(date +%H:%M:%S)] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# track_pid PID NAME [SIGNAL]: remembers a background process of ours so that cleanup stops it,
# by its pid (never by name), with SIGNAL (default TERM).
track_pid() {
    PIDS+=("$1")
    PID_NAMES+=("$2")
    PID_SIGNALS+=("${3:-TERM}")
}

# Stops our processes, newest first (the demo, which owns the servers, last), then removes WORK.
cleanup() {
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -"${PID_SIGNALS[i]}" "$pid" 2>/dev/null || continue
        # The demo stops its servers on SIGTERM; give everyone 30 s, then SIGKILL.
        timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP_WORK:-0} == 1 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}

# Ports handed out by this script, so two endpoints never get the same one.
declare -a TAKEN_PORTS=()

# A loopback TCP port nobody listens on (nothing holds it between this check and the bind,
# but the range is wide and the check immediate).
free_port() {
    local port tries=0
    while ((tries < 200)); do
        port=$((20000 + RANDOM % 20000))
        tries=$((tries + 1))
        [[ " ${TAKEN_PORTS[*]} " == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            TAKEN_PORTS+=("$port")
            echo "$port"
            return 0
        fi
    done
    die "no free loopback port found"
}

psql_at() { # psql_at PORT DB SQL: one value per line, bounded
    timeout 30 psql -X -At -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}

# wait_ready NAME PORT [SECONDS]: until a PostgreSQL-speaking endpoint answers in `bench`.
wait_ready() {
    local name=$1 port=$2 limit=${3:-60}
    local deadline=$((SECONDS + limit))
    until psql_at "$port" bench 'SELECT 1' >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$name on port $port not ready within $limit s (logs in $WORK)"
        sleep 0.2
    done
    log "$name ready on 127.0.0.1:$port"
}

# Builds pgsplit as it ships (the production profile: release with link-time optimisation),
# unless PGSPLIT already names a binary (say, a build kept from
# before a change, to profile both).
build_pgsplit() {
    if [[ -n ${PGSPLIT:-} ]]; then
        [[ -x $PGSPLIT ]] || die "PGSPLIT=$PGSPLIT is not an executable"
        return
    fi
    log "building pgsplit (production profile)"
    (cd "$ROOT" && timeout 3600 cargo build --profile production --quiet --bin pgsplit) ||
        die "cargo build failed"
    PGSPLIT="${CARGO_TARGET_DIR:-$ROOT/target}/production/pgsplit"
    [[ -x $PGSPLIT ]] || die "no binary at $PGSPLIT"
}

# Starts the servers (no proxy; fsync off, the test harness's way) and reads their ports from
# the demo's JSON line: PRIMARY_PORT, REPLICA_PORTS, NODE_PORTS (primary first), and SOCKET_DIR,
# the directory of every server's Unix-domain socket (empty from a pgsplit that does not name it).
# max_connections has room for every endpoint's pool filled at 64 clients (600 ran out at the
# last workload of a run with eight endpoints).
start_cluster() {
    log "starting a primary and 3 streaming replicas (fsync off)"
    "$PGSPLIT" demo --no-proxy --json \
        --server-conf "max_connections = 1200" \
        --server-conf "shared_preload_libraries = 'pg_stat_statements'" \
        >"$WORK/demo.json" 2>"$WORK/demo.log" &
    track_pid $! demo
    local deadline=$((SECONDS + 300)) line
    until line=$(grep -m1 '"primary"' "$WORK/demo.json" 2>/dev/null); do
        kill -0 "${PIDS[-1]}" 2>/dev/null || die "the demo exited: $(tail -20 "$WORK/demo.log")"
        ((SECONDS < deadline)) || die "the cluster did not start within 300 s"
        sleep 0.5
    done
    PRIMARY_PORT=$(sed -E 's/.*"primary":([0-9]+).*/\1/' <<<"$line")
    read -r -a REPLICA_PORTS <<<"$(sed -E 's/.*"replicas":\[([0-9,]*)\].*/\1/; s/,/ /g' <<<"$line")"
    # shellcheck disable=SC2034 # read by compare.sh
    NODE_PORTS=("$PRIMARY_PORT" "${REPLICA_PORTS[@]}")
    SOCKET_DIR=$(sed -nE 's/.*"socket_dir":"([^"]*)".*/\1/p' <<<"$line")
    log "primary 127.0.0.1:$PRIMARY_PORT, replicas ${REPLICA_PORTS[*]}, sockets in ${SOCKET_DIR:-?}"
}

# Database `bench` with pgbench's tables at scale $1 (and pg_stat_statements), on every replica.
prepare_data() {
    local scale=$1 db
    log "creating database bench, pgbench scale $scale"
    psql_at "$PRIMARY_PORT" postgres 'CREATE DATABASE bench' >/dev/null
    for db in postgres bench; do
        psql_at "$PRIMARY_PORT" "$db" 'CREATE EXTENSION pg_stat_statements' >/dev/null
    done
    timeout 900 pgbench -i -q -s "$scale" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres bench \
        >"$WORK/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -5 "$WORK/pgbench-init.log")"
    wait_replicas_caught_up
}

wait_replicas_caught_up() {
    local lsn port deadline=$((SECONDS + 120))
    lsn=$(psql_at "$PRIMARY_PORT" postgres 'SELECT pg_current_wal_lsn()')
    for port in "${REPLICA_PORTS[@]}"; do
        until [[ $(psql_at "$port" postgres "SELECT pg_last_wal_replay_lsn() >= '$lsn'") == t ]]; do
            ((SECONDS < deadline)) || die "replica $port did not replay $lsn within 120 s"
            sleep 0.2
        done
    done
}
