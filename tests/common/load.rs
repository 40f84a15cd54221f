//! Helpers for tests that put load on pgsplit while they break servers: bounded waits, fresh
//! sessions that report where they ran, SQLSTATEs as text, and client tools (pgbench) running in
//! the background with their output in files and a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use pgsplit::config::Config;
use pgsplit::localcluster::{LocalCluster, PgNode};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::process::wait_or_kill;
use super::proxy::TestProxy;

/// The cluster's topology as a quick-start config (pass-through auth, every default).
pub fn config_for(c: &LocalCluster) -> Config {
    let replicas: Vec<String> = c.replicas().iter().map(|r| r.addr()).collect();
    Config::quick_start(&c.primary().addr(), &replicas).expect("quick-start config")
}

/// `config` with every cluster balancing reads round robin rather than by session (the
/// default): for tests that watch which replicas are in the rotation, statement by statement.
pub fn round_robin(mut config: Config) -> Config {
    for cluster in &mut config.clusters {
        cluster.load_balancing = pgsplit::config::LoadBalancing::RoundRobin;
    }
    config
}

/// `work`, which must end within `limit`; panics naming `what` otherwise.
pub async fn bounded<T>(what: &str, limit: Duration, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}

/// The SQLSTATE of a server (or pgsplit) error, if the error carries one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// An error as a line for assertion messages: SQLSTATE (or "no SQLSTATE"), whether the
/// connection is closed, and the message with its source.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let code = sqlstate(e).unwrap_or_else(|| "no SQLSTATE".to_string());
    let detail = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => format!("{e:?}"),
    };
    format!(
        "[{code}{}] {detail}",
        if e.is_closed() { ", closed" } else { "" }
    )
}

/// Connects through `proxy` within `limit` (connect and login).
pub async fn connect_within(proxy: &TestProxy, limit: Duration) -> Result<Client, String> {
    match tokio::time::timeout(
        limit,
        super::connect(&proxy.connstr("postgres", "postgres")),
    )
    .await
    {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("connect: {}", describe(&e))),
        Err(_) => Err(format!("connect: no answer within {limit:?}")),
    }
}

/// `SELECT inet_server_port()` on `client` (simple query protocol: one unit, hence one pick of
/// the balancer per read), within `limit`: the port of the server that ran it.
pub async fn read_port(client: &Client, limit: Duration) -> Result<i32, String> {
    let read = client.simple_query("SELECT inet_server_port()");
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(messages)) => messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .ok_or_else(|| format!("read: no port in {messages:?}")),
        Ok(Err(e)) => Err(format!("read: {}", describe(&e))),
        Err(_) => Err(format!("read: no answer within {limit:?}")),
    }
}

/// [`read_port`] over the extended query protocol (Parse/Describe, then Bind/Execute).
pub async fn read_port_extended(client: &Client, limit: Duration) -> Result<i32, String> {
    match tokio::time::timeout(limit, client.query_one("SELECT inet_server_port()", &[])).await {
        Ok(Ok(row)) => Ok(row.get(0)),
        Ok(Err(e)) => Err(format!("read: {}", describe(&e))),
        Err(_) => Err(format!("read: no answer within {limit:?}")),
    }
}

/// A fresh session through `proxy` that runs `SELECT inet_server_port()`; the whole of it
/// (connect, login, read) bounded by `limit`.
pub async fn fresh_read_port(proxy: &TestProxy, limit: Duration) -> Result<i32, String> {
    let started = Instant::now();
    let client = connect_within(proxy, limit).await?;
    read_port(&client, limit.saturating_sub(started.elapsed())).await
}

/// Polls fresh sessions (each bounded by 5 s, all together by `limit`) until a read runs on
/// the server listening on `port`. Err lists what the reads returned instead.
pub async fn wait_served_by(proxy: &TestProxy, port: u16, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(5));
        match fresh_read_port(proxy, left).await {
            Ok(p) if p == i32::from(port) => return Ok(()),
            other => seen.push(other),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tail: Vec<_> = seen.iter().rev().take(10).collect();
    Err(format!(
        "no read on port {port} within {limit:?} ({} reads; last ones, newest first: {tail:?})",
        seen.len()
    ))
}

/// A PostgreSQL client tool (pgbench, psql) running in the background, its stdout and stderr
/// in files (never pipes, which a chatty tool could fill). Killed if dropped while running.
pub struct BackgroundTool {
    what: String,
    child: Option<Child>,
    out_path: PathBuf,
    err_path: PathBuf,
}

/// How a [`BackgroundTool`] ended: `status` is None if it was killed at the deadline.
#[derive(Debug)]
pub struct ToolRun {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolRun {
    /// Everything it printed, for assertion messages.
    pub fn report(&self) -> String {
        format!(
            "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl BackgroundTool {
    /// Starts `tool` (from the system's PostgreSQL binaries) with `args`.
    pub fn spawn(tool: &str, args: &[String]) -> BackgroundTool {
        Self::spawn_program(tool, &super::binaries().tool(tool), args)
    }

    /// Starts the program at `path` (called `tool` in file names and messages) with `args`.
    pub fn spawn_program(tool: &str, path: &Path, args: &[String]) -> BackgroundTool {
        let out_path = std::env::temp_dir().join(super::unique_name(tool));
        let err_path = out_path.with_extension("err");
        let child = Command::new(path)
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdout(std::fs::File::create(&out_path).expect("stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {tool}: {e}"));
        BackgroundTool {
            what: format!("{tool} {args:?}"),
            child: Some(child),
            out_path,
            err_path,
        }
    }

    /// Waits for it to exit, killing it at `deadline`. Blocking: call it inside
    /// `tokio::task::block_in_place` from async code.
    pub fn wait_until(mut self, deadline: Instant) -> ToolRun {
        let mut child = self.child.take().expect("a running tool");
        let status = wait_or_kill(&mut child, deadline);
        let run = ToolRun {
            status,
            stdout: std::fs::read_to_string(&self.out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err_path).unwrap_or_default(),
        };
        if run.status.is_none() {
            eprintln!("{} killed at its deadline", self.what);
        }
        run
    }
}

impl Drop for BackgroundTool {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Ok(None) = child.try_wait()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.out_path);
        let _ = std::fs::remove_file(&self.err_path);
    }
}

/// pgbench's "number of failed transactions: N (...)" (PostgreSQL 15 and later).
pub fn failed_transactions(stdout: &str) -> Option<u64> {
    pgbench_count(stdout, "number of failed transactions")
}

/// pgbench's "number of transactions actually processed: N".
pub fn processed_transactions(stdout: &str) -> Option<u64> {
    pgbench_count(stdout, "number of transactions actually processed")
}

/// The first number after the colon of pgbench's summary line that starts with `label`.
fn pgbench_count(stdout: &str, label: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.starts_with(label))?;
    line.split(':')
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Bound for one statement (or connect) that should take well under a second.
pub const STATEMENT: Duration = Duration::from_secs(10);

/// Blocking work on the cluster (pg_ctl, psql, signals) from async code.
pub fn on_cluster<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// Failed checks of a test with several parts, reported together at the end.
#[derive(Default)]
pub struct Verdicts(Vec<String>);

impl Verdicts {
    pub fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }

    pub fn all_passed(&self) -> bool {
        self.0.is_empty()
    }

    pub fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// The integers `sql` returns on `node`, one per line (psql).
pub fn psql_ids(c: &LocalCluster, node: &PgNode, sql: &str) -> std::collections::BTreeSet<i64> {
    c.psql(node, "postgres", sql)
        .unwrap_or_else(|e| panic!("{sql} on {}: {e}", node.name))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}
