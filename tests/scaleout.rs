//! Scale-out behind HAProxy: two `pgsplit` processes started from one config file, with Debian's
//! haproxy in front of them on loopback, checking each one's `/readyz` (`option httpchk`).
//!
//! - 16 pgbench clients run through HAProxy; one instance gets SIGTERM mid-run. It drains (a
//!   transaction open on it still commits after HAProxy has marked it down), exits 0, HAProxy
//!   sends it nothing more, fresh clients carry on through the other instance, and
//!   pgbench_history holds exactly the transactions pgbench was told committed.
//! - The instances share no session state: a cached read on one is invalidated by a write
//!   through the other, and a client that reconnects through the other instance with its causal
//!   token (`-c pgsplit.after=...`) reads its own write while every replica lags.
//! - The figures the README's sizing advice rests on: memory per client and CPU per transaction
//!   of one instance.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::load::{BackgroundTool, ToolRun, bounded, processed_transactions};
use common::process::{KillOnDrop, free_port, http, http_response, sigterm, wait_or_kill};
use pgsplit::localcluster::LocalCluster;
use tokio::task::block_in_place;
use tokio_postgres::{Client, SimpleQueryMessage};

const PGSPLIT: &str = env!("CARGO_BIN_EXE_pgsplit");
/// The table the shared config caches.
const CACHED_TABLE: &str = "scaleout_cached";
/// pgbench clients, as the issue asks.
const CLIENTS: u32 = 16;
/// Bound for one HTTP request to an admin server or HAProxy's stats page.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The config file every instance of a test reads (only the ports come from flags, as each host
/// of a real deployment would have the same ones): the cluster, the cache on for
/// [`CACHED_TABLE`], a short shutdown timeout, and a `max_lag` high enough for replicas with a
/// replay delay to keep serving reads.
fn shared_config(c: &LocalCluster) -> String {
    let replicas: Vec<String> = c
        .replicas()
        .iter()
        .map(|r| format!("{{ name = \"{}\", addr = \"{}\" }}", r.name, r.addr()))
        .collect();
    format!(
        "[timeouts]\nshutdown = \"10s\"\n\n\
         [cache]\nmax_bytes = 16777216\ntables = [{{ name = \"{CACHED_TABLE}\", ttl = \"60s\" }}]\n\n\
         [[clusters]]\nmax_lag = \"30s\"\n\
         primary = {{ name = \"primary\", addr = \"{}\" }}\nreplicas = [{}]\n",
        c.primary().addr(),
        replicas.join(", ")
    )
}

/// A directory for one test's config files and logs, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(common::unique_name(prefix));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last lines of a log file, for assertion messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// One `pgsplit run` process on free loopback ports, killed if the test ends early.
struct Instance {
    name: &'static str,
    port: u16,
    admin: String,
    process: KillOnDrop,
    log: PathBuf,
}

impl Instance {
    fn start(name: &'static str, config: &Path, scratch: &Scratch) -> Instance {
        let (port, admin) = (free_port(), format!("127.0.0.1:{}", free_port()));
        let log = scratch.0.join(format!("pgsplit-{name}.log"));
        let process = Command::new(PGSPLIT)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--admin", &admin])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start pgsplit run");
        Instance {
            name,
            port,
            admin,
            process: KillOnDrop(process),
            log,
        }
    }

    fn connstr(&self, extra: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10 {extra}",
            self.port
        )
    }

    async fn connect(&self, extra: &str) -> Client {
        let connstr = self.connstr(extra);
        bounded("connect", HTTP_TIMEOUT * 3, common::connect(&connstr))
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.name, tail(&self.log)))
    }

    /// `/readyz` answers 200 (the client port is bound before the admin server serves).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(
            http(&self.admin, "GET", "/readyz", HTTP_TIMEOUT),
            Ok((200, _))
        ) {
            assert!(
                Instant::now() < deadline,
                "{} is not ready within 30 s; its log:\n{}",
                self.name,
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn status(&self) -> serde_json::Value {
        let (_, body) =
            http(&self.admin, "GET", "/api/status", HTTP_TIMEOUT).expect("/api/status answers");
        serde_json::from_str(&body).expect("/api/status is JSON")
    }

    /// The cache is used only while the invalidation channel is up.
    async fn wait_cache_channel(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.status()["cache_channel"] != true {
            assert!(
                Instant::now() < deadline,
                "{}: the invalidation channel is not up within 10 s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn cache_counter(&self, name: &str) -> u64 {
        self.status()["cache"][name].as_u64().unwrap_or(0)
    }

    /// One line of `/proc/PID/status` (e.g. `VmRSS`), in its unit (kB).
    fn proc_status(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.process.0.id());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no {field}"))
    }

    /// User plus system CPU time the process has used so far.
    fn cpu_time(&self) -> Duration {
        let path = format!("/proc/{}/stat", self.process.0.id());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th
        // fields of the whole line, in clock ticks.
        let after_name = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<u64> = after_name
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().expect("a tick count"))
            .collect();
        // SAFETY: sysconf only reads a system constant.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(fields.iter().sum::<u64>() * 1000 / ticks_per_second)
    }
}

/// A server of HAProxy's backend as its stats page shows it.
#[derive(Debug, Clone)]
struct ServerState {
    /// `UP`, `DOWN`, `UP 1/2` (going down), ...
    status: String,
    /// Sessions HAProxy has sent it so far.
    sessions_total: u64,
}

/// HAProxy (Debian's package) in front of instances, on loopback, killed when dropped.
struct Balancer {
    port: u16,
    stats: String,
    _process: KillOnDrop,
    log: PathBuf,
}

impl Balancer {
    fn start(instances: &[&Instance], scratch: &Scratch) -> Balancer {
        let (port, stats_port) = (free_port(), free_port());
        let config = scratch.write("haproxy.cfg", &haproxy_config(port, stats_port, instances));
        let log = scratch.0.join("haproxy.log");
        let process = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start haproxy ({e}): install Debian's haproxy"));
        Balancer {
            port,
            stats: format!("127.0.0.1:{stats_port}"),
            _process: KillOnDrop(process),
            log,
        }
    }

    /// The backend's servers by name, from the stats page's CSV export (an error while
    /// HAProxy is not listening yet).
    fn servers(&self) -> std::io::Result<HashMap<String, ServerState>> {
        let answer = http_response(&self.stats, "GET", "/stats;csv", &[], HTTP_TIMEOUT)?;
        let csv = match answer.header("Transfer-Encoding") {
            Some(coding) if coding.eq_ignore_ascii_case("chunked") => dechunk(&answer.body),
            _ => answer.body,
        };
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| {
            header
                .iter()
                .position(|c| *c == name)
                .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
        };
        let (proxy, server, status, total) = (
            column("pxname"),
            column("svname"),
            column("status"),
            column("stot"),
        );
        let servers = lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > total && f[proxy] == "pgsplit")
            .filter(|f| f[server] != "BACKEND")
            .map(|f| {
                let state = ServerState {
                    status: f[status].to_string(),
                    sessions_total: f[total].parse().unwrap_or(0),
                };
                (f[server].to_string(), state)
            })
            .collect();
        Ok(servers)
    }

    fn server(&self, name: &str) -> ServerState {
        self.servers()
            .unwrap_or_else(|e| panic!("HAProxy's stats page: {e}\n{}", tail(&self.log)))
            .remove(name)
            .unwrap_or_else(|| panic!("HAProxy has no server {name}"))
    }

    /// Waits until HAProxy (once listening) shows `server` as exactly `wanted`.
    async fn wait_status(&self, server: &str, wanted: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.servers().map(|mut s| s.remove(server));
            if matches!(&state, Ok(Some(s)) if s.status == wanted) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy shows {server} as {state:?}, not {wanted}, after {limit:?}\n{}",
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A pgbench run of [`CLIENTS`] clients through HAProxy for `seconds`.
    fn pgbench(&self, seconds: u32) -> BackgroundTool {
        pgbench_through(self.port, &["-T", &seconds.to_string()])
    }
}

/// An HTTP/1.1 chunked body put back together (HAProxy's stats page answers in chunks).
fn dechunk(body: &str) -> String {
    let mut rest = body;
    let mut whole = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        whole.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    whole
}

/// Leastconn over the instances, each in rotation while its `/readyz` answers 200 (checked
/// every 200 ms, so the test is quick); a connection an instance refuses goes to another.
fn haproxy_config(port: u16, stats_port: u16, instances: &[&Instance]) -> String {
    let servers: String = instances
        .iter()
        .map(|i| {
            let admin_port = i.admin.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
            format!(
                "    server {} 127.0.0.1:{} check port {admin_port}\n",
                i.name, i.port
            )
        })
        .collect();
    format!(
        "global\n    maxconn 1000\n\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n    \
         timeout server 60s\n    retries 3\n    option redispatch 1\n\n\
         frontend postgres\n    bind 127.0.0.1:{port}\n    default_backend pgsplit\n\n\
         backend pgsplit\n    balance leastconn\n    option httpchk\n    \
         http-check send meth GET uri /readyz\n    http-check expect status 200\n    \
         default-server inter 200ms fall 2 rise 2\n{servers}\n\
         listen stats\n    bind 127.0.0.1:{stats_port}\n    mode http\n    timeout client 5s\n    \
         timeout server 5s\n    stats enable\n    stats uri /stats\n"
    )
}

/// pgbench with [`CLIENTS`] clients against a loopback `port`, plus `extra` arguments.
fn pgbench_through(port: u16, extra: &[&str]) -> BackgroundTool {
    let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port.to_string()]
        .into_iter()
        .chain([
            "-U",
            "postgres",
            "-n",
            "-j",
            "2",
            "-c",
            &CLIENTS.to_string(),
        ])
        .chain(extra.iter().copied())
        .map(str::to_string)
        .collect();
    args.push("postgres".into());
    BackgroundTool::spawn("pgbench", &args)
}

/// Waits for a pgbench run (blocking this worker thread) until `limit` from now.
fn finish(run: BackgroundTool, limit: Duration) -> ToolRun {
    block_in_place(|| run.wait_until(Instant::now() + limit))
}

/// What pgbench was told committed in `run`.
fn processed(run: &ToolRun) -> u64 {
    processed_transactions(&run.stdout)
        .unwrap_or_else(|| panic!("no transaction count from pgbench:\n{}", run.report()))
}

/// pgbench's tables in the shared cluster, created once per test binary (scale 1), directly
/// on the primary.
fn pgbench_tables() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let primary = common::cluster().primary();
        let args: Vec<String> = ["-i", "-q", "-s", "1", "-h", "127.0.0.1"]
            .into_iter()
            .map(str::to_string)
            .chain(["-p".to_string(), primary.port.to_string()])
            .chain(["-U", "postgres", "postgres"].map(str::to_string))
            .collect();
        let run = BackgroundTool::spawn("pgbench", &args)
            .wait_until(Instant::now() + Duration::from_secs(120));
        assert!(
            run.status.is_some_and(|s| s.success()),
            "pgbench -i: {}",
            run.report()
        );
    });
}

/// The first column of the first row `sql` returns on `client`, if any.
async fn first_value(client: &Client, sql: &str) -> Option<String> {
    let answer = bounded(sql, HTTP_TIMEOUT * 3, client.simple_query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    answer.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// A count on the primary of `c`, read with psql.
fn count_on_primary(c: &LocalCluster, table: &str) -> u64 {
    let sql = format!("SELECT count(*) FROM {table}");
    let out = block_in_place(|| c.psql(c.primary(), "postgres", &sql)).expect("count");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: {out:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_to_one_instance_behind_haproxy_drains_it_and_loses_no_transaction() {
    let c = block_in_place(common::cluster);
    block_in_place(pgbench_tables);
    block_in_place(|| {
        c.psql(
            c.primary(),
            "postgres",
            "CREATE TABLE scaleout_drain (id int PRIMARY KEY)",
        )
    })
    .expect("drain table");
    let scratch = Scratch::new("scaleout_drain");
    let config = scratch.write("pgsplit.toml", &shared_config(c));
    let (mut a, b) = (
        Instance::start("a", &config, &scratch),
        Instance::start("b", &config, &scratch),
    );
    a.wait_ready().await;
    b.wait_ready().await;
    let haproxy = Balancer::start(&[&a, &b], &scratch);
    for name in ["a", "b"] {
        haproxy
            .wait_status(name, "UP", Duration::from_secs(10))
            .await;
    }

    // A transaction left open on a, to be committed while a drains.
    let open = a.connect("").await;
    open.batch_execute("BEGIN; INSERT INTO scaleout_drain VALUES (1)")
        .await
        .expect("open a transaction on a");

    let round = haproxy.pgbench(10);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = haproxy.server("a");
    assert!(
        before.sessions_total > 1,
        "HAProxy sent pgbench clients to a: {before:?}"
    );
    sigterm(&a.process.0);
    haproxy
        .wait_status("a", "DOWN", Duration::from_secs(5))
        .await;
    assert!(
        matches!(a.process.0.try_wait(), Ok(None)),
        "a still drains when HAProxy marks it down (its open transaction keeps it)"
    );
    bounded("COMMIT on a", HTTP_TIMEOUT, open.batch_execute("COMMIT"))
        .await
        .expect("a transaction open on a draining instance commits");
    let exit =
        block_in_place(|| wait_or_kill(&mut a.process.0, Instant::now() + Duration::from_secs(20)));
    assert!(
        exit.is_some_and(|s| s.success()),
        "a exits 0 once drained: {exit:?}\n{}",
        tail(&a.log)
    );

    let first = finish(round, Duration::from_secs(30));
    let aborted = first.stderr.matches("aborted in command").count();
    let told = first
        .stderr
        .matches("FATAL:  terminating connection because pgsplit is shutting down")
        .count();
    assert!(
        aborted > 0 && told == aborted,
        "a's pgbench clients, and only they, were told to reconnect (57P01 between \
         transactions):\n{}",
        first.report()
    );

    // Clients that reconnect carry on, all through b: HAProxy sends a nothing more.
    let sent_to_a = haproxy.server("a").sessions_total;
    let second = finish(haproxy.pgbench(4), Duration::from_secs(30));
    assert!(
        second.status.is_some_and(|s| s.success()) && !second.stderr.contains("aborted"),
        "fresh clients through HAProxy run without error:\n{}",
        second.report()
    );
    let after = haproxy.server("a");
    assert_eq!(
        (after.status.as_str(), after.sessions_total),
        ("DOWN", sent_to_a),
        "a stays out of rotation"
    );

    let reported = processed(&first) + processed(&second);
    assert!(processed(&second) > 0, "{}", second.report());
    assert_eq!(
        count_on_primary(c, "pgbench_history"),
        reported,
        "every transaction pgbench was told committed, and no other, is in pgbench_history\n\
         first round:\n{}\nsecond round:\n{}",
        first.report(),
        second.report()
    );
    assert_eq!(count_on_primary(c, "scaleout_drain"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_share_invalidations_and_a_reconnecting_client_keeps_its_writes() {
    let c = block_in_place(|| common::private_cluster(2));
    block_in_place(|| {
        c.psql(
            c.primary(),
            "postgres",
            &format!(
                "CREATE TABLE {CACHED_TABLE} (id int PRIMARY KEY, v int);\
                 INSERT INTO {CACHED_TABLE} VALUES (1, 1);\
                 CREATE TABLE scaleout_ryw (id int PRIMARY KEY)"
            ),
        )?;
        let lsn = c.current_lsn()?;
        for r in c.replicas() {
            c.wait_replayed(r, &lsn, Duration::from_secs(30))?;
        }
        Ok::<_, pgsplit::localcluster::LocalClusterError>(())
    })
    .expect("tables on every node");
    let scratch = Scratch::new("scaleout_state");
    let config = scratch.write("pgsplit.toml", &shared_config(&c));
    let (a, b) = (
        Instance::start("a", &config, &scratch),
        Instance::start("b", &config, &scratch),
    );
    for instance in [&a, &b] {
        instance.wait_ready().await;
        instance.wait_cache_channel().await;
    }

    // A read cached on a, then a write through b: a drops the entry when b's invalidation
    // arrives, and its next reads reach a server.
    let (on_a, on_b) = (a.connect("").await, b.connect("").await);
    let sql = format!("SELECT v FROM {CACHED_TABLE} WHERE id = 1");
    assert_eq!(first_value(&on_a, &sql).await.as_deref(), Some("1"));
    let hits = a.cache_counter("hits");
    assert_eq!(first_value(&on_a, &sql).await.as_deref(), Some("1"));
    assert_eq!(
        a.cache_counter("hits"),
        hits + 1,
        "a's second read is a hit"
    );
    on_b.batch_execute(&format!("UPDATE {CACHED_TABLE} SET v = 2 WHERE id = 1"))
        .await
        .expect("write through b");
    let deadline = Instant::now() + Duration::from_secs(5);
    while first_value(&on_a, &sql).await.as_deref() != Some("2") {
        assert!(Instant::now() < deadline, "a never sees b's write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let invalidations = a.status()["cache"]["invalidations"][CACHED_TABLE].as_u64();
    assert!(
        invalidations.is_some_and(|n| n >= 1),
        "a received b's invalidation: {invalidations:?}"
    );

    // Every replica now replays 5 s late. A client writes through a, leaves, and reconnects
    // through b: without its token b reads from a replica that lacks the row; with it
    // (a startup option, no shared session store) b serves the client its own write.
    block_in_place(|| {
        for r in c.replicas() {
            c.set_apply_delay(r, Duration::from_secs(5))
                .expect("apply delay");
        }
    });
    let writer = a.connect("").await;
    writer
        .batch_execute("INSERT INTO scaleout_ryw VALUES (1)")
        .await
        .expect("write through a");
    let token = first_value(&writer, "SHOW pgsplit.causal_token")
        .await
        .expect("a causal token after a commit");
    drop(writer);
    let read = "SELECT id FROM scaleout_ryw WHERE id = 1";
    let stranger = b.connect("").await;
    assert_eq!(
        first_value(&stranger, read).await,
        None,
        "the replicas really lag (a client without the token reads there)"
    );
    let returning = b
        .connect(&format!("options='-c pgsplit.after={token}'"))
        .await;
    assert_eq!(
        first_value(&returning, read).await.as_deref(),
        Some("1"),
        "a client reconnecting through b with token {token} reads its own write"
    );
}

/// Sessions opened to measure memory per client: enough to dwarf the process's noise.
const IDLE_SESSIONS: u64 = 200;

#[tokio::test(flavor = "multi_thread")]
async fn sizing_memory_per_client_and_cpu_per_transaction() {
    let c = block_in_place(common::cluster);
    block_in_place(pgbench_tables);
    let scratch = Scratch::new("scaleout_sizing");
    let config = scratch.write("pgsplit.toml", &shared_config(c));
    let instance = Instance::start("sizing", &config, &scratch);
    instance.wait_ready().await;

    // Memory: idle sessions that have each run a statement (buffers and session state in
    // place; their server connections back in the pool).
    let first = instance.connect("").await;
    first_value(&first, "SELECT 1").await;
    let rss_before = instance.proc_status("VmRSS");
    let mut sessions = vec![first];
    for _ in 0..IDLE_SESSIONS {
        let client = instance.connect("").await;
        first_value(&client, "SELECT 1").await;
        sessions.push(client);
    }
    let rss_after = instance.proc_status("VmRSS");
    let per_client_kib = rss_after.saturating_sub(rss_before) / IDLE_SESSIONS;
    drop(sessions);

    // CPU: pgbench's select-only script through this one instance.
    let cpu_before = instance.cpu_time();
    let run = finish(
        pgbench_through(instance.port, &["-S", "-T", "5"]),
        Duration::from_secs(30),
    );
    let cpu = instance.cpu_time().saturating_sub(cpu_before);
    assert!(run.status.is_some_and(|s| s.success()), "{}", run.report());
    let transactions = processed(&run).max(1);
    let cpu_per_transaction = cpu / u32::try_from(transactions).unwrap_or(u32::MAX);
    eprintln!(
        "sizing: {per_client_kib} KiB per idle client ({IDLE_SESSIONS} sessions, RSS {rss_before} \
         -> {rss_after} kB); {transactions} select-only transactions from {CLIENTS} clients in 5 s, \
         {cpu:?} of pgsplit CPU, {cpu_per_transaction:?} per transaction"
    );
    assert!(
        per_client_kib < 512,
        "an idle client costs {per_client_kib} KiB (the README's sizing says well under 512)"
    );
    assert!(
        cpu_per_transaction < Duration::from_millis(2),
        "a select-only transaction costs {cpu_per_transaction:?} of pgsplit CPU"
    );
}
