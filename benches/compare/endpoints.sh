# shellcheck shell=bash disable=SC2034 # ENDPOINT_PORT and MAX_CLIENTS belong to compare.sh
# Endpoints for benches/compare.sh: pgsplit (several configurations), PgBouncer and pgpool-II,
# each listening on loopback, configured in $WORK and started in the background. Sourced, not run.
# Expects: WORK, PGSPLIT (the binary), PRIMARY_PORT, REPLICA_PORTS (array), SOCKET_DIR,
# MAX_CLIENTS, and log, die, track_pid, wait_ready and free_port from compare/common.sh.

# The prefix that runs a command as the servers' OS user: PgBouncer refuses to run as root, and
# so do the PostgreSQL servers the demo starts (as `postgres`). A prefix, not a function, so that
# `$!` of a background command is runuser's pid and not a subshell's.
AS_SERVER_USER=()
((EUID == 0)) && AS_SERVER_USER=(runuser -u postgres --)

# track_daemon NAME PIDFILE SIGNAL: tracks the daemon's own pid (from its pid file), which
# cleanup stops with SIGNAL; runuser, tracked before it, then exits by itself.
track_daemon() {
    local name=$1 pidfile=$2 signal=$3 pid
    # pgpool-II pads its pid file with NUL bytes.
    pid=$(head -1 "$pidfile" 2>/dev/null | tr -d '\0') || die "$name wrote no pid file $pidfile"
    [[ $pid =~ ^[0-9]+$ ]] || die "$name: unexpected pid file content: $pid"
    track_pid "$pid" "$name" "$signal"
}

# Stops the run when the servers' Unix-socket directory is unknown and endpoint $1 needs it.
require_socket_dir() {
    [[ -n $SOCKET_DIR ]] || die "$1: the demo's JSON line names no socket_dir (a pgsplit before it did)"
}

# The [[clusters]] table of a pgsplit config: the primary and, unless "primary-only", the replicas,
# each at NODE_HOST:port, where NODE_HOST is 127.0.0.1 or a Unix-socket directory (libpq's way).
pgsplit_cluster_toml() {
    local with_replicas=$1 port host=${NODE_HOST:-127.0.0.1}
    echo '[[clusters]]'
    if [[ -n ${BALANCING:-} ]]; then echo "load_balancing = \"$BALANCING\""; fi
    if [[ -n ${CAUSAL_TOKEN:-} ]]; then echo "causal_token = \"$CAUSAL_TOKEN\""; fi
    echo "primary = { name = \"primary\", addr = \"$host:$PRIMARY_PORT\" }"
    if [[ $with_replicas == yes ]]; then
        echo 'replicas = ['
        local i=1
        for port in "${REPLICA_PORTS[@]}"; do
            echo "  { name = \"replica$i\", addr = \"$host:$port\" },"
            i=$((i + 1))
        done
        echo ']'
    else
        echo 'replicas = []'
    fi
}

# start_pgsplit NAME with_replicas(yes|no) [extra TOML lines...]: sets ENDPOINT_PORT[NAME].
start_pgsplit() {
    local name=$1 with_replicas=$2
    shift 2
    local port conf="$WORK/$name.toml"
    port=$(free_port)
    {
        echo "listen = \"127.0.0.1:$port\""
        echo "worker_threads = ${PGSPLIT_THREADS:-0}"
        printf '%s\n' "$@"
        pgsplit_cluster_toml "$with_replicas"
    } >"$conf"
    timeout 10 "$PGSPLIT" check --config "$conf" >"$WORK/$name.check" 2>&1 ||
        die "$name: invalid config $conf: $(cat "$WORK/$name.check")"
    "$PGSPLIT" run --config "$conf" >"$WORK/$name.log" 2>&1 &
    track_pid $! "$name"
    wait_ready "$name" "$port"
    ENDPOINT_PORT["$name"]=$port
}

# start_pgbouncer NAME HOST: transaction pooling to the primary at HOST, 127.0.0.1 or the
# Unix-socket directory (PgBouncer runs as the servers' user, who owns it); sets ENDPOINT_PORT[NAME].
start_pgbouncer() {
    local name=$1 host=$2 port dir="$WORK/$1"
    port=$(free_port)
    mkdir -p "$dir"
    echo '"postgres" ""' >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
bench = host=$host port=$PRIMARY_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $MAX_CLIENTS
max_client_conn = $((MAX_CLIENTS + 50))
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
EOF
    ((EUID == 0)) && chown -R postgres: "$dir"
    "${AS_SERVER_USER[@]}" pgbouncer "$dir/pgbouncer.ini" >"$dir/stdout.log" 2>&1 &
    track_pid $! "runuser-$name"
    wait_ready "$name" "$port"
    # SIGTERM: PgBouncer's immediate shutdown.
    track_daemon "$name" "$dir/pgbouncer.pid" TERM
    ENDPOINT_PORT["$name"]=$port
}

# Streaming-replication mode, reads balanced over the replicas only (weight 0 on the primary).
start_pgpool() {
    local port pcp_port dir="$WORK/pgpool" i
    port=$(free_port)
    pcp_port=$(free_port)
    mkdir -p "$dir"
    {
        cat <<EOF
backend_clustering_mode = 'streaming_replication'
listen_addresses = '127.0.0.1'
port = $port
socket_dir = '$dir'
pcp_listen_addresses = '127.0.0.1'
pcp_port = $pcp_port
pcp_socket_dir = '$dir'
wd_ipc_socket_dir = '$dir'
pid_file_name = '$dir/pgpool.pid'
logdir = '$dir'
log_destination = 'stderr'
num_init_children = $((MAX_CLIENTS + 4))
max_pool = 1
reserved_connections = 0
enable_pool_hba = off
pool_passwd = ''
load_balance_mode = on
sr_check_period = 10
sr_check_user = 'postgres'
sr_check_database = 'postgres'
health_check_period = 0
failover_on_backend_error = off
memory_cache_enabled = off
use_watchdog = off
backend_hostname0 = '127.0.0.1'
backend_port0 = $PRIMARY_PORT
backend_weight0 = 0
backend_flag0 = 'DISALLOW_TO_FAILOVER'
EOF
        i=1
        for rport in "${REPLICA_PORTS[@]}"; do
            echo "backend_hostname$i = '127.0.0.1'"
            echo "backend_port$i = $rport"
            echo "backend_weight$i = 1"
            echo "backend_flag$i = 'DISALLOW_TO_FAILOVER'"
            i=$((i + 1))
        done
    } >"$dir/pgpool.conf"
    : >"$dir/pcp.conf"
    ((EUID == 0)) && chown -R postgres: "$dir"
    "${AS_SERVER_USER[@]}" pgpool -n -f "$dir/pgpool.conf" -F "$dir/pcp.conf" >"$dir/pgpool.log" 2>&1 &
    track_pid $! runuser-pgpool
    wait_ready pgpool "$port"
    # SIGINT: pgpool-II's fast shutdown (SIGTERM waits for every client to leave).
    track_daemon pgpool "$dir/pgpool.pid" INT
    ENDPOINT_PORT["pgpool"]=$port
}

# installed ENDPOINT BINARY PACKAGE: whether a peer is there; if not, says how to install it.
installed() {
    command -v "$2" >/dev/null && return 0
    log "skipping $1: not installed (Debian: apt-get install -y $3)"
    return 1
}

# start_endpoint NAME: starts one endpoint of ENDPOINTS; fails for a peer this machine lacks.
# direct and direct-replicas are the servers themselves (pgbench reaches the replicas by their
# ports, REPLICA_PORTS).
start_endpoint() {
    local name=$1
    case $name in
    direct | direct-replicas) ;;
    pgsplit) start_pgsplit pgsplit yes ;;
    pgsplit-primary) start_pgsplit pgsplit-primary no ;;
    pgsplit-rr) BALANCING=round_robin start_pgsplit pgsplit-rr yes ;;
    pgsplit-on-read) CAUSAL_TOKEN=on_read start_pgsplit pgsplit-on-read yes ;;
    pgsplit-unix) require_socket_dir "$name" && NODE_HOST=$SOCKET_DIR start_pgsplit "$name" yes ;;
    pgbouncer) installed "$name" pgbouncer pgbouncer && start_pgbouncer "$name" 127.0.0.1 ;;
    pgbouncer-unix)
        require_socket_dir "$name" && installed "$name" pgbouncer pgbouncer &&
            start_pgbouncer "$name" "$SOCKET_DIR"
        ;;
    pgpool) installed "$name" pgpool pgpool2 && start_pgpool ;;
    *) die "unknown endpoint '$name' in ENDPOINTS" ;;
    esac
}

# Starts every endpoint named in ENDPOINTS (and pgsplit-cache for the cache workload) and
# drops, with a note on how to install them, the peers this machine lacks.
start_endpoints() {
    local wanted=() name
    ENDPOINT_PORT["direct"]=$PRIMARY_PORT
    for name in $ENDPOINTS; do
        if start_endpoint "$name"; then wanted+=("$name"); fi
    done
    if [[ " $WORKLOADS " == *" cached "* ]]; then
        start_pgsplit pgsplit-cache yes '[cache]' 'max_bytes = 67108864' 'default_ttl = "600s"'
    fi
    ENDPOINTS="${wanted[*]}"
}
