#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Side-by-side pgbench: PostgreSQL directly, pgsplit (reads to replicas), pgsplit with the primary
# only, PgBouncer (transaction pooling) and pgpool-II (streaming replication, load balancing),
# on a local primary + 3 streaming replicas with fsync off (`pgsplit demo --no-proxy`).
#
#   benches/compare.sh                 # full run: 3 rounds of 10 s, 1 / 16 / 64 clients
#   QUICK=1 benches/compare.sh         # smoke run, a few minutes
#
# Settings (environment): DURATION (s per run), ROUNDS, CLIENTS ("1 16 64"), SCALE (pgbench
# scale), WORKLOADS, ENDPOINTS (see below), NOTE (a line for the report, e.g. "machine shared"),
# PGSPLIT_THREADS (every pgsplit's worker_threads; default 0, one per core).
# Workloads: select-simple select-extended select-prepared tpcb readmostly cached.
# Endpoints: direct pgsplit pgsplit-primary pgbouncer pgpool, and on request:
#   pgsplit-rr       pgsplit with load_balancing = "round_robin" instead of its default, "sticky";
#   pgsplit-on-read  pgsplit with causal_token = "on_read" (no commit's position asked; the
#                    monitor's next look at the primary gives it) instead of "at_commit";
#   direct-replicas  no proxy: one pgbench per replica at once, the clients split evenly (16 ->
#                    6/5/5; 1 -> the first replica only), one thread each, tps summed, latencies
#                    pooled; the ceiling of reads spread on the replicas. Select workloads only;
#   pgsplit-unix     pgsplit reaching every server over its Unix-domain socket, not TCP;
#   pgbouncer-unix   PgBouncer reaching the primary over its Unix-domain socket, not TCP.
# The report (Markdown) goes to stdout and to benches/results/<date>.md; raw numbers to
# benches/results/<date>.tsv. Nothing is installed: PgBouncer and pgpool-II are used when
# present (Debian: apt-get install -y pgbouncer pgpool2) and skipped otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

if [[ ${QUICK:-0} == 1 ]]; then
    DURATION=${DURATION:-2} ROUNDS=${ROUNDS:-3} CLIENTS=${CLIENTS:-16} SCALE=${SCALE:-2}
fi
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-1 16 64}
SCALE=${SCALE:-10}
WORKLOADS=${WORKLOADS:-select-simple select-extended select-prepared tpcb readmostly cached}
ENDPOINTS=${ENDPOINTS:-direct pgsplit pgsplit-primary pgbouncer pgpool}
NOTE=${NOTE:-}
# shellcheck disable=SC2086 # CLIENTS is a list of words
MAX_CLIENTS=$(printf '%s\n' $CLIENTS | sort -n | tail -1)
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS="$HERE/results"
WORK=$(mktemp -d /tmp/pgsplit-bench.XXXXXX)
chmod 755 "$WORK"
declare -A ENDPOINT_PORT=()
# shellcheck source=compare/common.sh
source "$HERE/compare/common.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# Statements run in `bench` on each node so far (pg_stat_statements, updated as each statement
# ends). pg_stat_database.xact_commit would be the natural count, but a pooled server connection
# reports it up to 10 s late (PGSTAT_IDLE_INTERVAL), which would credit one run's work to the next.
node_counts() {
    local port
    for port in "${NODE_PORTS[@]}"; do
        psql_at "$port" postgres "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s
            JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'bench'"
    done | paste -sd' '
}

pgbench_args() { # the pgbench options of a workload
    case $1 in
    select-simple) echo "-S -M simple" ;;
    select-extended) echo "-S -M extended" ;;
    select-prepared) echo "-S -M prepared" ;;
    tpcb) echo "-b tpcb-like -M simple" ;;
    readmostly) echo "-f $HERE/compare/readmostly.sql -M extended -D naccounts=$((SCALE * 100000))" ;;
    cached) echo "-f $HERE/compare/cached.sql -M simple" ;;
    *) die "unknown workload '$1'" ;;
    esac
}

# The endpoints a workload runs on: the cache workload compares pgsplit's cache with the server,
# and direct-replicas runs only the select workloads (the replicas are read-only).
endpoints_for() {
    local name
    case $1 in
    cached) echo "direct pgsplit-cache" ;;
    select-*) echo "$ENDPOINTS" ;;
    *) for name in $ENDPOINTS; do [[ $name == direct-replicas ]] || printf '%s ' "$name"; done ;;
    esac
}

# pgbench_at PORT CLIENTS THREADS WORKLOAD DIR OUT: one bounded pgbench run; its transaction log
# goes to DIR/tx.<pid>..., its output to OUT.
pgbench_at() {
    local port=$1 clients=$2 threads=$3 workload=$4 dir=$5 out=$6
    # shellcheck disable=SC2046 # the workload's options are words
    timeout $((DURATION + 60)) pgbench $(pgbench_args "$workload") -n -c "$clients" \
        -j "$threads" -T "$DURATION" --log --log-prefix="$dir/tx" \
        -h 127.0.0.1 -p "$port" -U postgres bench >"$out" 2>&1
}

# direct-replicas: one pgbench per replica, all at once, the clients split as evenly as possible
# (16 -> 6/5/5; with fewer clients than replicas the last replicas stay idle), one thread each.
pgbench_on_replicas() {
    local workload=$1 clients=$2 dir=$3 n=${#REPLICA_PORTS[@]} i pids=() pid rc=0
    for ((i = 0; i < n && i < clients; i++)); do
        pgbench_at "${REPLICA_PORTS[i]}" $((clients / n + (i < clients % n ? 1 : 0))) 1 \
            "$workload" "$dir" "$dir/out.$i" &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
    return "$rc"
}

# The sum of the tps of pgbench outputs (without connection time); nothing when one lacks it.
summed_tps() {
    local values
    values=$(sed -nE 's/^tps = ([0-9.]+) \(without.*/\1/p' "$@")
    [[ -n $values && $(wc -l <<<"$values") == "$#" ]] || return 0
    awk '{ sum += $1 } END { printf "%.6f\n", sum }' <<<"$values"
}

# The first error line of pgbench outputs, or else their last line.
failure_line() {
    awk 'tolower($0) ~ /error|fatal|abort/ { print; found = 1; exit } { last = $0 }
        END { if (!found) print last }' "$@"
}

# One pgbench run (for direct-replicas, one per replica at once); appends a line to the raw TSV:
# workload clients endpoint round tps p50_us p99_us and the statement counts per node (primary
# first). Latencies come from --log (every transaction's latency, so exact percentiles); -r would
# give only per-statement averages.
run_one() {
    local workload=$1 clients=$2 endpoint=$3 round=$4
    local dir="$WORK/runs/$workload-$clients-$endpoint-$round" before after tps p50 p99 rc=0
    mkdir -p "$dir"
    before=$(node_counts)
    if [[ $endpoint == direct-replicas ]]; then
        pgbench_on_replicas "$workload" "$clients" "$dir" || rc=$?
    else
        pgbench_at "${ENDPOINT_PORT[$endpoint]}" "$clients" "$((clients < 2 ? clients : 2))" \
            "$workload" "$dir" "$dir/out" || rc=$?
    fi
    after=$(node_counts)
    tps=$(summed_tps "$dir"/out*)
    if ((rc != 0)) || [[ -z $tps ]]; then
        tps=fail
        log "$workload c=$clients $endpoint: pgbench failed: $(failure_line "$dir"/out*)"
    fi
    read -r p50 p99 < <(cat "$dir"/tx.* 2>/dev/null | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "- -"; else print v[int((NR - 1) * 0.5) + 1], v[int((NR - 1) * 0.99) + 1] }')
    rm -f "$dir"/tx.*
    paste -d' ' <(echo "$before") <(echo "$after") |
        awk -v head="$workload	$clients	$endpoint	$round	$tps	$p50	$p99" '{
            n = NF / 2; line = head
            for (i = 1; i <= n; i++) line = line "\t" ($(i + n) - $i)
            print line }' >>"$RAW"
    log "$workload c=$clients $endpoint round $round: tps $tps, p50 ${p50} us, p99 ${p99} us"
}

# Rounds interleaved (A B C A B C ...), so drift on a shared machine hits every endpoint alike.
run_all() {
    local workload clients round endpoint
    for workload in $WORKLOADS; do
        for clients in $CLIENTS; do
            for ((round = 1; round <= ROUNDS; round++)); do
                for endpoint in $(endpoints_for "$workload"); do
                    run_one "$workload" "$clients" "$endpoint" "$round"
                done
            done
            wait_replicas_caught_up
        done
    done
}

machine_description() {
    local pg_version
    pg_version=$(psql_at "$PRIMARY_PORT" postgres 'SHOW server_version')
    echo "- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, $(uname -sr)"
    echo "- PostgreSQL $pg_version (fsync off, primary + 3 streaming replicas on loopback); $(pgbench --version)"
    command -v pgbouncer >/dev/null && echo "- $(pgbouncer --version | head -1) (transaction pooling, primary)"
    command -v pgpool >/dev/null && echo "- $(pgpool --version 2>&1 | head -1) (streaming replication, load balancing over the replicas)"
    echo "- pgsplit $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') (build: ${PGSPLIT}, worker_threads = ${PGSPLIT_THREADS:-0})"
    echo "- Load average before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

write_report() {
    local report="$RESULTS/$STAMP.md"
    {
        echo "# pgsplit benchmark, $STAMP"
        echo
        echo "Command: \`DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS=\"$CLIENTS\" SCALE=$SCALE benches/compare.sh\`"
        [[ -n $NOTE ]] && echo && echo "Note: $NOTE"
        echo
        machine_description
        echo
        awk -F'\t' -f "$HERE/compare/report.awk" "$RAW"
    } | tee "$report"
    log "report: $report, raw numbers: $RAW"
}

main() {
    command -v pgbench >/dev/null || die "pgbench not found (Debian: apt-get install -y postgresql)"
    mkdir -p "$RESULTS"
    RAW="$RESULTS/$STAMP.tsv"
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    build_pgsplit
    start_cluster
    prepare_data "$SCALE"
    # shellcheck source=compare/endpoints.sh
    source "$HERE/compare/endpoints.sh"
    start_endpoints
    log "endpoints: $ENDPOINTS; workloads: $WORKLOADS; clients: $CLIENTS; $ROUNDS rounds of $DURATION s"
    run_all
    write_report
}

main "$@"
