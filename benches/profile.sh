#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Where pgsplit spends its CPU on select-only: pgsplit runs under valgrind's callgrind (perf's
# hardware counters are not available on every machine, virtual ones included) while pgbench
# sends a fixed number of select-only transactions through it. Instrumentation is on only
# while pgbench runs, so the totals are those transactions' (plus the monitor's polls meanwhile)
# and the report gives instructions (Ir) per transaction, which the machine's other load does
# not change. The top functions, by own cost and with callees, go to stdout and to
# benches/results/<date>-callgrind-<mode>.txt.
#
#   benches/profile.sh                  # -M simple, 4 clients x 2000 transactions
#   MODE=extended benches/profile.sh
#   MODES="simple extended prepared" benches/profile.sh   # one cluster, a report per mode
#   TOOL=strace MODE=prepared benches/profile.sh   # syscalls per transaction instead
#   BUILTIN=tpcb-like MODE=prepared benches/profile.sh   # another pgbench script
#
# Settings (environment): MODE (simple, extended, prepared) or MODES (several), BUILTIN (a
# pgbench built-in script, select-only by default), CLIENTS, PGSPLIT_THREADS (pgsplit's
# worker_threads, as in compare.sh; default 0, one per core),
# TRANSACTIONS (per client), SCALE, PGSPLIT (a binary to profile instead of building one),
# TOOL (callgrind, or strace: attached to every thread once pgsplit is ready, it counts the
# system calls of the run, `strace -c`).
# Needs valgrind (Debian: apt-get install -y valgrind) or strace. Under callgrind pgsplit runs
# some 50 times slower: the figures are instruction counts, not times.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
MODES=${MODES:-${MODE:-simple}}
CLIENTS=${CLIENTS:-4}
TRANSACTIONS=${TRANSACTIONS:-2000}
TOOL=${TOOL:-callgrind}
BUILTIN=${BUILTIN:-select-only}
SCALE=${SCALE:-2}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
WORK=$(mktemp -d /tmp/pgsplit-profile.XXXXXX)
chmod 755 "$WORK"

# shellcheck source=compare/common.sh
source "$HERE/compare/common.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# pgsplit's config: the cluster, reads balanced over the 3 replicas.
write_config() {
    local port=$1 conf=$2 i=1 replicas=()
    for rport in "${REPLICA_PORTS[@]}"; do
        replicas+=("{ name = \"replica$i\", addr = \"127.0.0.1:$rport\" }")
        i=$((i + 1))
    done
    {
        echo "listen = \"127.0.0.1:$port\""
        echo "worker_threads = ${PGSPLIT_THREADS:-0}"
        echo '[[clusters]]'
        echo "primary = { name = \"primary\", addr = \"127.0.0.1:$PRIMARY_PORT\" }"
        echo "replicas = [$(
            IFS=,
            echo "${replicas[*]}"
        )]"
    } >"$conf"
}

# Starts pgsplit (under callgrind with instrumentation off, or plain for strace) and waits
# until it answers.
start_pgsplit() {
    local port=$1 conf="$WORK/pgsplit.toml"
    write_config "$port" "$conf"
    if [[ $TOOL == callgrind ]]; then
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind-$MODE.out" \
            "$PGSPLIT" run --config "$conf" >"$WORK/pgsplit.log" 2>&1 &
    else
        "$PGSPLIT" run --config "$conf" >"$WORK/pgsplit.log" 2>&1 &
    fi
    track_pid $! pgsplit
    wait_ready pgsplit "$port" 300
}

# Starts measuring: callgrind's instrumentation on, or strace attached to every thread.
start_measuring() {
    local pid=${PIDS[-1]} args=() tid
    if [[ $TOOL == callgrind ]]; then
        callgrind_control -i on "$pid" >/dev/null
        return
    fi
    for tid in /proc/"$pid"/task/*; do
        args+=(-p "${tid##*/}")
    done
    strace -c -f -o "$WORK/strace.out" "${args[@]}" 2>"$WORK/strace.log" &
    track_pid $! strace INT
    sleep 1 # strace attaches before the first transaction
}

stop_measuring() {
    if [[ $TOOL == callgrind ]]; then
        callgrind_control -i off "${PIDS[-1]}" >/dev/null
        return
    fi
    local pid=${PIDS[-1]}
    kill -INT "$pid"
    timeout 60 tail --pid="$pid" -f /dev/null || die "strace did not stop within 60 s"
}

# Stops pgsplit with SIGTERM (its graceful shutdown) so that callgrind writes its profile.
stop_pgsplit() {
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        if [[ ${PID_NAMES[i]} == pgsplit ]]; then
            pid=${PIDS[i]}
            break
        fi
    done
    kill -TERM "$pid"
    timeout 120 tail --pid="$pid" -f /dev/null || die "pgsplit did not stop within 120 s"
}

report() {
    local script=${BUILTIN/#select-only/}
    local out="$HERE/results/$STAMP-$TOOL${script:+-$script}-$MODE.txt" total=$((CLIENTS * TRANSACTIONS))
    mkdir -p "$HERE/results"
    {
        echo "$TOOL of pgsplit (worker_threads = ${PGSPLIT_THREADS:-0}), pgbench -b $BUILTIN -M $MODE -c $CLIENTS -t $TRANSACTIONS (scale $SCALE), $STAMP"
        echo "pgbench: $(grep -E '^(tps|number of transactions actually processed)' "$WORK/pgbench.out" | paste -sd';')"
        if [[ $TOOL == strace ]]; then
            awk -v n="$total" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
                printf "%-16s %8.2f per transaction\n", $NF, $4 / n } $NF == "total" {
                printf "%-16s %8.2f per transaction\n", "all", $4 / n }' "$WORK/strace.out"
            echo
            cat "$WORK/strace.out"
            return
        fi
        local ir
        ir=$(callgrind_annotate "$WORK/callgrind-$MODE.out" 2>/dev/null |
            awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }')
        # The sessions' own work (their tasks' polls), apart from the runtime's parking and
        # waking, which varies by a few percent from run to run. The outermost frame of a
        # session's poll is the span's wrapper, or, once link-time optimisation inlined that,
        # the session's own future (the larger comes first).
        session=$(callgrind_annotate --inclusive=yes "$WORK/callgrind-$MODE.out" 2>/dev/null |
            awk '/frontend\/session.rs:(<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll|pgsplit::frontend::session::run::\{\{closure\}\})/ && !done {
                gsub(",", "", $1); print $1; done = 1 }')
        echo "Ir: $ir in all, $((ir / total)) per transaction; session tasks $((session / total)) per transaction"
        echo
        echo "== by own cost (exclusive) =="
        callgrind_annotate --inclusive=no "$WORK/callgrind-$MODE.out" 2>/dev/null | sed -n '1,60p'
        echo
        echo "== with callees (inclusive) =="
        callgrind_annotate --inclusive=yes "$WORK/callgrind-$MODE.out" 2>/dev/null | sed -n '1,80p'
    } | tee "$out"
    log "profile: $out (raw: keep it with KEEP_WORK=1, in $WORK)"
}

main() {
    case $TOOL in
    callgrind) command -v valgrind >/dev/null || die "valgrind not found (Debian: apt-get install -y valgrind)" ;;
    strace) command -v strace >/dev/null || die "strace not found (Debian: apt-get install -y strace)" ;;
    *) die "TOOL is callgrind or strace, not $TOOL" ;;
    esac
    build_pgsplit
    start_cluster
    prepare_data "$SCALE"
    for MODE in $MODES; do
        profile_mode
    done
}

# One pgsplit, one measured pgbench run in $MODE, one report.
profile_mode() {
    local port
    port=$(free_port)
    start_pgsplit "$port"
    start_measuring
    log "pgbench -b $BUILTIN -M $MODE -c $CLIENTS -t $TRANSACTIONS through pgsplit under $TOOL"
    timeout 1200 pgbench -n -b "$BUILTIN" -M "$MODE" -c "$CLIENTS" -j 2 -t "$TRANSACTIONS" \
        -h 127.0.0.1 -p "$port" -U postgres bench >"$WORK/pgbench.out" 2>&1 ||
        die "pgbench failed: $(tail -5 "$WORK/pgbench.out")"
    stop_measuring
    stop_pgsplit
    report
}

main "$@"
