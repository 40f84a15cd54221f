#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Where pgsplit spends its CPU on select-only: pgsplit runs under valgrind's callgrind (perf's
# hardware counters are not available on every machine, virtual ones included) while pgbench
# sends select-only through it; the top functions, by own cost and with callees, go to stdout
# and to benches/results/<date>-callgrind-<mode>.txt.
#
#   benches/profile.sh                  # -M simple, 4 clients, 20 s
#   MODE=extended benches/profile.sh
#
# Settings (environment): MODE (simple, extended, prepared), CLIENTS, DURATION (s), SCALE.
# Needs valgrind (Debian: apt-get install -y valgrind). Under callgrind pgsplit runs some 50
# times slower, so the figures are shares of its instructions, not times.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
MODE=${MODE:-simple}
CLIENTS=${CLIENTS:-4}
DURATION=${DURATION:-20}
SCALE=${SCALE:-2}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
WORK=$(mktemp -d /tmp/pgsplit-profile.XXXXXX)
chmod 755 "$WORK"

# shellcheck source=compare/common.sh
source "$HERE/compare/common.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

start_pgsplit_under_callgrind() {
    local port=$1 conf="$WORK/pgsplit.toml" i=1 replicas=()
    for rport in "${REPLICA_PORTS[@]}"; do
        replicas+=("{ name = \"replica$i\", addr = \"127.0.0.1:$rport\" }")
        i=$((i + 1))
    done
    {
        echo "listen = \"127.0.0.1:$port\""
        echo '[[clusters]]'
        echo "primary = { name = \"primary\", addr = \"127.0.0.1:$PRIMARY_PORT\" }"
        echo "replicas = [$(
            IFS=,
            echo "${replicas[*]}"
        )]"
    } >"$conf"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
        "$PGSPLIT" run --config "$conf" >"$WORK/pgsplit.log" 2>&1 &
    track_pid $! pgsplit
    wait_ready pgsplit "$port" 300
}

# Stops pgsplit with SIGTERM (its graceful shutdown) so that callgrind writes its profile.
stop_pgsplit() {
    local pid=${PIDS[-1]}
    kill -TERM "$pid"
    timeout 120 tail --pid="$pid" -f /dev/null || die "pgsplit did not stop within 120 s"
}

report() {
    local out="$HERE/results/$STAMP-callgrind-$MODE.txt"
    mkdir -p "$HERE/results"
    {
        echo "callgrind of pgsplit, pgbench -S -M $MODE -c $CLIENTS -T $DURATION (scale $SCALE), $STAMP"
        echo "pgbench: $(grep -E '^(tps|number of transactions actually processed)' "$WORK/pgbench.out" | paste -sd';')"
        echo
        echo "== by own cost (exclusive) =="
        callgrind_annotate --inclusive=no "$WORK/callgrind.out" 2>/dev/null | sed -n '1,60p'
        echo
        echo "== with callees (inclusive) =="
        callgrind_annotate --inclusive=yes "$WORK/callgrind.out" 2>/dev/null | sed -n '1,80p'
    } | tee "$out"
    log "profile: $out (raw: keep it with KEEP_WORK=1, in $WORK/callgrind.out)"
}

main() {
    command -v valgrind >/dev/null || die "valgrind not found (Debian: apt-get install -y valgrind)"
    build_pgsplit
    start_cluster
    prepare_data "$SCALE"
    local port
    port=$(free_port)
    start_pgsplit_under_callgrind "$port"
    log "pgbench -S -M $MODE -c $CLIENTS for $DURATION s through pgsplit under callgrind"
    timeout $((DURATION + 120)) pgbench -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$DURATION" \
        -h 127.0.0.1 -p "$port" -U postgres bench >"$WORK/pgbench.out" 2>&1 ||
        die "pgbench failed: $(tail -5 "$WORK/pgbench.out")"
    stop_pgsplit
    report
}

main "$@"
