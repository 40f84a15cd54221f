//! The dashboard at `/` in a real browser: Debian's chromium, headless, loads the page from a
//! pgsplit in front of a private cluster (a primary and two replicas) and runs its script; the
//! test reads the DOM it leaves (`--dump-dom`) and saves screenshots. Replay is then paused on
//! one replica while the primary takes writes, and the page must show that replica falling
//! behind while the other stays current.
//!
//! chromium is required, not optional: without it the test fails and says to install it
//! (`.ci/run` does).

mod common;

use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgsplit::localcluster::{LocalCluster, PgNode};

use common::process::{http, wait_or_kill};

const CHROMIUM: &str = "/usr/bin/chromium";
/// A chromium run (start, load, script, dump or screenshot) takes about a second; past this it
/// is hung and gets killed.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(30);
/// Virtual time the page gets after loading: its 1 s poll runs about three times (virtual time
/// stands still while a request is in flight, so every poll gets its answer).
const VIRTUAL_TIME_BUDGET_MS: u32 = 3000;
/// Bound for pgsplit's monitor to measure every node once.
const MONITOR_LIMIT: Duration = Duration::from_secs(30);
/// The paused replica must be shown late on a page loaded this soon after the pause.
const PAUSED_LOAD_WITHIN: Duration = Duration::from_secs(3);
/// Time to let the paused replica fall behind before loading the page.
const FALL_BEHIND: Duration = Duration::from_secs(1);
/// Displayed lag above this is "late", below it is "current": a streaming replica replays in
/// milliseconds, and the monitor measures every 100 ms.
const LATE: f64 = 0.5;
/// The writes on the primary while replay is paused: this many, this far apart (~3 s in all).
const WRITES: u32 = 12;
const WRITE_EVERY: Duration = Duration::from_millis(250);

#[test]
fn dashboard_shows_every_node_and_a_paused_replica_falling_behind() {
    let browser = Browser::new();
    let cluster = common::private_cluster(2);
    let mut config = common::load::config_for(&cluster);
    config.admin = Some("127.0.0.1:0".parse().expect("loopback address"));
    config.cache.max_bytes = 1 << 20;
    config.cache.tables = vec![pgsplit::config::CacheTable {
        name: "dash_cached".into(),
        ttl: Some(Duration::from_secs(60)),
    }];
    let topology = &config.clusters[0];
    let primary = topology.primary.name.clone();
    let replicas: Vec<String> = topology.replicas.iter().map(|r| r.name.clone()).collect();
    let proxy = common::proxy::start_proxy(config);
    let admin = proxy.admin.expect("the admin server is on");
    let url = format!("http://{admin}/");
    wait_until_lag_known(admin);
    read_a_cached_table_four_times(&proxy);

    let dom = browser.dump_dom(&url);
    assert_eq!(text_of(&dom, "data-cache", "hit-ratio"), "75.0 %");
    for node in std::iter::once(&primary).chain(&replicas) {
        assert_eq!(text_of(&dom, "data-health-node", node), "healthy", "{node}");
    }
    for replica in &replicas {
        let lag = displayed_lag(&dom, replica);
        assert!(
            lag < LATE,
            "{replica} shown {lag} s behind before any pause"
        );
    }

    let paused = PausedReplay::new(&cluster, &cluster.replicas()[0]);
    std::thread::scope(|s| {
        s.spawn(|| keep_writing(&cluster));
        std::thread::sleep(FALL_BEHIND);
        assert!(
            paused.since.elapsed() < PAUSED_LOAD_WITHIN,
            "too slow to reload the page"
        );
        let dom = browser.dump_dom(&url);
        let (late, current) = (&replicas[0], &replicas[1]);
        let lag = displayed_lag(&dom, late);
        assert!(
            lag > LATE,
            "{late} (replay paused) shown only {lag} s behind"
        );
        let lag = displayed_lag(&dom, current);
        assert!(lag < LATE, "{current} shown {lag} s behind while streaming");
        for (name, size) in [("laptop", (1280, 900)), ("phone", (390, 844))] {
            let png = browser.screenshot(&url, name, size);
            eprintln!("dashboard screenshot ({name}): {}", png.display());
        }
    });
    drop(paused);
}

/// One miss, then three hits (the cache channel may need a moment to listen first).
fn read_a_cached_table_four_times(proxy: &common::proxy::TestProxy) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = common::connect(&proxy.connstr("postgres", "postgres"))
            .await
            .expect("connect");
        client
            .batch_execute("CREATE TABLE dash_cached (v int); INSERT INTO dash_cached VALUES (1)")
            .await
            .expect("create the cached table");
        common::proxy::wait_for_cache_channel(proxy).await;
        for _ in 0..4 {
            client
                .simple_query("SELECT v FROM dash_cached")
                .await
                .expect("read the cached table");
        }
    });
}

/// Pauses WAL replay on a replica, and resumes it when dropped (a failed assertion included).
struct PausedReplay<'a> {
    cluster: &'a LocalCluster,
    node: &'a PgNode,
    since: Instant,
}

impl<'a> PausedReplay<'a> {
    fn new(cluster: &'a LocalCluster, node: &'a PgNode) -> Self {
        cluster.pause_replay(node).expect("pause replay");
        PausedReplay {
            cluster,
            node,
            since: Instant::now(),
        }
    }
}

impl Drop for PausedReplay<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.cluster.resume_replay(self.node) {
            eprintln!("resuming replay on {}: {e}", self.node.name);
        }
    }
}

/// Moves the primary's WAL on: a paused replica's lag in time only grows while the primary
/// writes past what it has replayed.
fn keep_writing(cluster: &LocalCluster) {
    for _ in 0..WRITES {
        cluster
            .psql(
                cluster.primary(),
                "postgres",
                "CREATE TABLE IF NOT EXISTS dashboard_writes(i int); INSERT INTO dashboard_writes VALUES (1)",
            )
            .expect("write on the primary");
        std::thread::sleep(WRITE_EVERY);
    }
}

/// Waits until `/api/status` has a lag for every node: before the monitor's first round the page
/// could only say "unknown".
fn wait_until_lag_known(admin: SocketAddr) {
    let deadline = Instant::now() + MONITOR_LIMIT;
    loop {
        let status = http(&admin.to_string(), "GET", "/api/status", MONITOR_LIMIT)
            .map(|(_, body)| body)
            .unwrap_or_default();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        if let Some(nodes) = status["nodes"].as_array()
            && !nodes.is_empty()
            && nodes.iter().all(|n| n["lag_seconds"].is_number())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lag not known for every node within {MONITOR_LIMIT:?}: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The text of the element whose `attr` is `value`, e.g. `<span data-lag-node="r1">0.001 s</span>`.
fn text_of(dom: &str, attr: &str, value: &str) -> String {
    let at = dom
        .find(&format!("{attr}=\"{value}\""))
        .unwrap_or_else(|| panic!("no element with {attr}={value:?} in the page:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').map_or(rest.len(), |i| i + 1);
    let end = rest[start..].find('<').map_or(rest.len(), |i| start + i);
    rest[start..end].to_string()
}

/// The lag the page shows for `node`, in seconds ("0.123 s").
fn displayed_lag(dom: &str, node: &str) -> f64 {
    let text = text_of(dom, "data-lag-node", node);
    text.strip_suffix(" s")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{node}: lag shown as {text:?}, not seconds"))
}

/// Headless chromium, each run with a fresh profile, its files under the test's output
/// directory.
struct Browser {
    out: PathBuf,
}

impl Browser {
    /// Panics unless chromium is installed: a dashboard test that skips itself would let a
    /// broken page through CI unnoticed.
    fn new() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`; \
             .ci/run installs it) to run the dashboard browser test"
        );
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
        // Files of earlier runs would pass for this run's.
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).expect("create the test's output directory");
        Browser { out }
    }

    /// The DOM after the page's script has run for the virtual time budget.
    fn dump_dom(&self, url: &str) -> String {
        self.run("dump-dom", &["--dump-dom".into(), url.into()])
    }

    /// A PNG of the page at `width`x`height` after its script has run: its path.
    fn screenshot(&self, url: &str, name: &str, (width, height): (u32, u32)) -> PathBuf {
        let png = self.out.join(format!("{name}.png"));
        self.run(
            name,
            &[
                format!("--window-size={width},{height}"),
                format!("--screenshot={}", png.display()),
                url.into(),
            ],
        );
        let bytes = fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 1000,
            "{}: not a screenshot ({} bytes)",
            png.display(),
            bytes.len()
        );
        png
    }

    /// Runs chromium with `args` after the fixed flags, within [`CHROMIUM_LIMIT`]: its stdout.
    /// stdout and stderr go to files, so a large DOM cannot fill a pipe and stall it.
    fn run(&self, name: &str, args: &[String]) -> String {
        let profile = self.out.join(format!("{name}-profile"));
        let (stdout, stderr) = (
            self.out.join(format!("{name}.out")),
            self.out.join(format!("{name}.err")),
        );
        let file = |path: &Path| File::create(path).expect("create a chromium output file");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(file(&stdout))
            .stderr(file(&stderr))
            // A group of its own, so that its helper processes can be killed along with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMIUM}: {e}"));
        let status = wait_or_kill(&mut child, Instant::now() + CHROMIUM_LIMIT);
        kill_group(child.id());
        let _ = fs::remove_dir_all(&profile);
        let log = fs::read_to_string(&stderr).unwrap_or_default();
        match status {
            Some(s) if s.success() => fs::read_to_string(&stdout).expect("chromium's output"),
            Some(s) => panic!("chromium {args:?}: {s}\n{log}"),
            None => panic!("chromium {args:?}: killed after {CHROMIUM_LIMIT:?}\n{log}"),
        }
    }
}

/// Kills what is left of the process group led by `leader` (renderers, helpers). The leader has
/// been reaped, but its id stays reserved while any member of its group lives.
fn kill_group(leader: u32) {
    let group = i32::try_from(leader).expect("a process id");
    // SAFETY: a signal to the process group of a child we started.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}
