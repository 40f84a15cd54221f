# The Markdown report of benches/compare.sh, from its raw TSV (POSIX awk; mawk is enough).
# Input fields: workload clients endpoint round tps p50_us p99_us count_primary count_replica1...
# One row per (workload, clients, endpoint), in the order they first ran; medians over rounds.

# Sorts v[1..n] numerically in place (a few rounds: insertion sort is plenty).
function sort_values(v, n,    i, j, x) {
    for (i = 2; i <= n; i++) {
        x = v[i]
        for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]
        v[j + 1] = x
    }
}

# Median of the space-separated numbers in s ("" when there are none).
function median(s,    v, n) {
    n = split(s, v, " ")
    if (n == 0) return ""
    sort_values(v, n)
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}

function spread(s,    v, n) {
    n = split(s, v, " ")
    if (n == 0) return "-"
    sort_values(v, n)
    return sprintf("%.0f-%.0f", v[1], v[n])
}

function ratio(a, b) {
    return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b)
}

function thousands(x) {
    return (x >= 10000) ? sprintf("%.0fk", x / 1000) : (x >= 1000 ? sprintf("%.1fk", x / 1000) : sprintf("%d", x))
}

{
    group = $1 SUBSEP $2
    key = group SUBSEP $3
    if (!(key in seen)) {
        seen[key] = 1
        order[++rows] = key
    }
    runs[key]++
    endpoints[$3] = 1
    if ($5 != "fail") {
        tps[key] = tps[key] " " $5
        if ($6 != "-") { p50[key] = p50[key] " " $6; p99[key] = p99[key] " " $7 }
    }
    nodes = NF - 7
    for (i = 8; i <= NF; i++) count[key, i - 7] += $i
}

END {
    print "| workload | clients | endpoint | tps median | tps min-max | x direct | x pgsplit | p50 us | p99 us | p50 added vs direct, us | statements per node (primary / replicas), all rounds |"
    print "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    for (r = 1; r <= rows; r++) {
        key = order[r]
        split(key, part, SUBSEP)
        group = part[1] SUBSEP part[2]
        direct = group SUBSEP "direct"
        nok = split(tps[key], ok, " ")
        m = median(tps[key])
        shown = (m == "") ? "fails" : sprintf("%.0f", m)
        if (m != "" && nok < runs[key]) shown = shown " (" nok "/" runs[key] " ok)"
        lat50 = median(p50[key]); lat99 = median(p99[key]); base50 = median(p50[direct])
        added = (lat50 == "" || base50 == "" || part[3] == "direct") ? "-" : sprintf("%+.0f", lat50 - base50)
        per_node = thousands(count[key, 1])
        for (i = 2; i <= nodes; i++) per_node = per_node (i == 2 ? " / " : " ") thousands(count[key, i])
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", part[1], part[2], part[3], shown, spread(tps[key]), ratio(m, median(tps[direct])), ratio(m, median(tps[group SUBSEP "pgsplit"])), (lat50 == "" ? "-" : sprintf("%.0f", lat50)), (lat99 == "" ? "-" : sprintf("%.0f", lat99)), added, per_node
    }
    print ""
    print "tps: pgbench's, without connection time; medians and min-max over the rounds. x direct / x pgsplit: median tps over"
    print "the median of PostgreSQL directly / of pgsplit (reads to replicas). p50 / p99: per-transaction latency from pgbench --log,"
    print "median over rounds. Statements per node: pg_stat_statements calls in database bench on each node during the runs"
    print "(pgsplit's own statements on server connections included); workload cached compares pgsplit with its result cache"
    print "(hint /* pgsplit: cache */, 1000 hot rows) with the same query sent to the primary directly."
    if ("direct-replicas" in endpoints) {
        print ""
        print "direct-replicas, no proxy and one pgbench per replica at once (select workloads only), is the ceiling of reads"
        print "spread on the 3 replicas at zero proxy cost: pgsplit's x direct over direct-replicas' x direct is the proxy's own share."
    }
    if ("pgsplit-unix" in endpoints || "pgbouncer-unix" in endpoints) {
        print ""
        print "pgsplit-unix, pgbouncer-unix: as pgsplit, pgbouncer, but reaching the servers over their Unix-domain socket, not TCP."
    }
}
