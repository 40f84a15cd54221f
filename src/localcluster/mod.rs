//! A real local PostgreSQL cluster: one primary and N streaming replicas, started from the
//! system's server binaries and driven by plain synchronous calls.
//!
//! Used by `pgsplit demo` and by the integration tests, which need real replication lag and real
//! failures: lag comes from `recovery_min_apply_delay` or paused replay, failures from stopping,
//! killing or SIGSTOPping server processes.
//!
//! ```no_run
//! use pgsplit::localcluster::{ClusterOptions, LocalCluster, PgBinaries};
//! # fn main() -> Result<(), pgsplit::localcluster::LocalClusterError> {
//! let bins = PgBinaries::find()?;
//! let cluster = LocalCluster::start(&bins, ClusterOptions::new(2))?;
//! cluster.psql(cluster.primary(), "app", "CREATE TABLE t (id int)")?;
//! let lsn = cluster.current_lsn()?;
//! cluster.wait_replayed(&cluster.replicas()[0], &lsn, std::time::Duration::from_secs(10))?;
//! # Ok(()) }
//! ```
//!
//! Everything is isolated from any system server: the nodes listen on free ports of 127.0.0.1
//! only, and their unix sockets live inside the cluster directory. When this process runs as
//! root, the servers run as the `postgres` OS user (PostgreSQL refuses to run as root).
//!
//! Cleanup happens three ways: [`LocalCluster::stop_all`] (also called by `Drop`); and, for a
//! process that dies without unwinding, a watchdog process that notices and does the same.
//!
//! Layout of the cluster directory:
//! ```text
//! <dir>/sock/                 unix sockets of all nodes
//! <dir>/<node>/data/          data directory (primary, replica1, replica2, ...)
//! <dir>/<node>/postgres.log   server log
//! ```

mod binaries;
mod command;
mod conf;
mod control;
mod error;
mod ports;
mod procfs;
mod setup;
mod watchdog;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use binaries::PgBinaries;
pub use error::LocalClusterError;

use command::OsUser;

/// The superuser every node is initialised with (`initdb -U postgres`), trusted on loopback.
pub const SUPERUSER: &str = "postgres";
/// A superuser role with a password, owner of the [`APP_DB`] database (trusted on loopback).
pub const APP_USER: &str = "app";
/// Password of [`APP_USER`].
pub const APP_PASSWORD: &str = "app_pw";
/// A database owned by [`APP_USER`].
pub const APP_DB: &str = "app";
/// A role that must authenticate with SCRAM-SHA-256 (member of [`APP_USER`]).
pub const APP_SCRAM_USER: &str = "app_scram";
/// Password of [`APP_SCRAM_USER`].
pub const APP_SCRAM_PASSWORD: &str = "scram_pw";
/// A role that must authenticate with md5, its password stored as md5 (member of [`APP_USER`]).
pub const APP_MD5_USER: &str = "app_md5";
/// Password of [`APP_MD5_USER`].
pub const APP_MD5_PASSWORD: &str = "md5_pw";

/// How many lines of a node's log an error about that node carries.
const LOG_TAIL_LINES: usize = 25;

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The cluster directory; created if missing, and must be empty if present. Keep it short
    /// (unix socket paths are limited to 107 bytes) and under a directory the `postgres` user
    /// can traverse when running as root, such as /tmp.
    pub dir: PathBuf,
    /// Number of streaming replicas besides the primary.
    pub replicas: usize,
    /// `fsync = on`. Off for tests and benchmarks: faster, and nothing survives them anyway.
    pub fsync: bool,
    /// Extra `postgresql.conf` lines for every node, applied after (so overriding) ours.
    pub extra_conf: Vec<String>,
    /// Use ports `base_port, base_port+1, ...` (primary first) instead of random free ones.
    pub base_port: Option<u16>,
    /// Start the orphan watchdog (see the module docs). Harmless; on by default.
    pub watchdog: bool,
    /// Leave the directory (data and logs) in place when the cluster is stopped.
    pub keep_dir: bool,
}

impl ClusterOptions {
    /// Defaults for tests: a fresh directory under /tmp, fsync off, the watchdog on, and the
    /// directory removed at the end.
    pub fn new(replicas: usize) -> ClusterOptions {
        ClusterOptions {
            dir: unique_temp_dir(),
            replicas,
            fsync: false,
            extra_conf: Vec::new(),
            base_port: None,
            watchdog: true,
            keep_dir: false,
        }
    }
}

/// A directory path under /tmp that does not exist yet. /tmp rather than `$TMPDIR`: it is short
/// (socket paths) and traversable by the `postgres` user.
fn unique_temp_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/pgsplit-{pid}-{n}"));
        if !dir.exists() {
            return dir;
        }
    }
}

/// One server of the cluster. Its role can change (see [`LocalCluster::promote`]); its name,
/// port and directories do not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgNode {
    /// `primary`, `replica1`, `replica2`, ... (also its `cluster_name` and, for replicas, the
    /// `application_name` the primary sees in `pg_stat_replication`).
    pub name: String,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Data directory.
    pub datadir: PathBuf,
    /// Server log file.
    pub log_file: PathBuf,
    /// Directory of its unix socket.
    pub socket_dir: PathBuf,
}

impl PgNode {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The node's Unix-domain socket, as a pgsplit node address names it (`<socket dir>:PORT`).
    pub fn socket_addr(&self) -> String {
        format!("{}:{}", self.socket_dir.display(), self.port)
    }

    /// A libpq keyword/value connection string over TCP, usable by `tokio_postgres::connect`
    /// and psql, e.g. `host=127.0.0.1 port=15432 user=postgres dbname=postgres`.
    pub fn connstr(&self, db: &str, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname={}",
            self.port,
            conf::conninfo_value(user),
            conf::conninfo_value(db)
        )
    }

    /// The last `lines` lines of this node's server log (empty if there is none yet).
    pub fn log_tail(&self, lines: usize) -> String {
        procfs::log_tail(&self.log_file, lines)
    }

    /// Wraps an error about this node with the tail of its log.
    fn error(&self, error: LocalClusterError) -> LocalClusterError {
        if matches!(error, LocalClusterError::Node { .. }) {
            return error;
        }
        LocalClusterError::Node {
            node: self.name.clone(),
            error: Box::new(error),
            log_file: self.log_file.clone(),
            log_tail: self.log_tail(LOG_TAIL_LINES),
        }
    }
}

/// A running primary with its replicas. Stopped, and its directory removed, on drop.
#[derive(Debug)]
pub struct LocalCluster {
    bins: PgBinaries,
    dir: PathBuf,
    /// Primary first, then `replica1..`.
    nodes: Vec<PgNode>,
    /// The OS user the servers run as, when it is not us (we are root).
    run_as: Option<OsUser>,
    keep_dir: bool,
    /// Set once stopped (or kept): later stops and `Drop` do nothing.
    stopped: AtomicBool,
    watchdog: Mutex<Option<Child>>,
}

impl LocalCluster {
    /// The node initialised as primary (node 0). After [`LocalCluster::promote`] of a replica
    /// this is still the original primary.
    pub fn primary(&self) -> &PgNode {
        &self.nodes[0]
    }

    /// The replicas, `replica1` first.
    pub fn replicas(&self) -> &[PgNode] {
        &self.nodes[1..]
    }

    /// Node `i`: 0 is the primary, `i` is `replica{i}`.
    pub fn node(&self, i: usize) -> Option<&PgNode> {
        self.nodes.get(i)
    }

    /// All nodes, primary first.
    pub fn nodes(&self) -> &[PgNode] {
        &self.nodes
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The binaries the cluster runs.
    pub fn binaries(&self) -> &PgBinaries {
        &self.bins
    }

    /// Stops every node immediately and removes the directory (unless `keep_dir`). Idempotent,
    /// and only `&self` so a cluster in a `static` can be stopped from an `atexit` handler.
    ///
    /// Stopping is what `pg_ctl stop -m immediate` does, done in-process: SIGCONT (a paused
    /// node cannot act), SIGQUIT to the postmaster, a bounded wait, SIGKILL for stragglers.
    /// No child processes are spawned, so it also works while the process is exiting.
    pub fn stop_all(&self) -> Result<(), LocalClusterError> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut result = Ok(());
        for node in &self.nodes {
            if let Err(e) = stop_immediately(node) {
                result = result.and(Err(node.error(e)));
            }
        }
        if !self.keep_dir
            && let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            let context = format!("could not remove {}", self.dir.display());
            result = result.and(Err(LocalClusterError::io(context, e)));
        }
        // On failure the watchdog stays armed: it tries again when this process exits.
        if result.is_ok() {
            self.disarm_watchdog();
        }
        result
    }

    /// Leaves the servers running and the directory in place, for someone else to manage
    /// (e.g. with `pg_ctl -D <datadir> stop`), and returns the directory.
    pub fn keep(self) -> PathBuf {
        self.stopped.store(true, Ordering::SeqCst);
        self.disarm_watchdog();
        self.dir.clone()
    }

    fn disarm_watchdog(&self) {
        let mut guard = self.watchdog.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            // We started it; ending it by its own handle. Failure means it already exited.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all() {
            tracing::warn!("stopping local cluster in {}: {e}", self.dir.display());
        }
    }
}

/// Immediate shutdown of one node, if it runs; then removes what a dead server left behind.
fn stop_immediately(node: &PgNode) -> Result<(), LocalClusterError> {
    if let Some(pid) = procfs::live_postmaster(&node.datadir) {
        let mut all = procfs::descendants(pid);
        all.push(pid);
        for &p in &all {
            procfs::signal(p, libc::SIGCONT);
        }
        procfs::signal(pid, libc::SIGQUIT);
        let left = procfs::wait_gone(&all, Instant::now() + Duration::from_secs(10));
        if !left.is_empty() {
            for &p in &left {
                procfs::signal(p, libc::SIGKILL);
            }
            let left = procfs::wait_gone(&left, Instant::now() + Duration::from_secs(5));
            if !left.is_empty() {
                return Err(LocalClusterError::Timeout {
                    what: "immediate shutdown".to_string(),
                    after: Duration::from_secs(15),
                    detail: format!("processes {left:?} survived SIGKILL"),
                });
            }
        }
    }
    remove_stale_server_files(node);
    Ok(())
}

/// After a server died without cleaning up (SIGKILL), removes what it left behind: its
/// orphaned shared memory, its `postmaster.pid`, and its socket and socket lock file. The lock
/// files must go: where PID 1 does not reap, the dead postmaster stays a zombie, and a new
/// postmaster takes a lock file naming a zombie for a live server and refuses to start.
fn remove_stale_server_files(node: &PgNode) {
    if procfs::live_postmaster(&node.datadir).is_some() {
        return;
    }
    // No live postmaster names this directory, so the file is stale even if its pid has been
    // recycled by an unrelated process.
    if let Some(pid_file) = procfs::read_pid_file(&node.datadir) {
        if let Some(shmid) = pid_file.shmid {
            procfs::remove_orphaned_shmem(shmid);
        }
        let _ = std::fs::remove_file(node.datadir.join("postmaster.pid"));
    }
    let socket = node.socket_dir.join(format!(".s.PGSQL.{}", node.port));
    let lock = node.socket_dir.join(format!(".s.PGSQL.{}.lock", node.port));
    let lock_holder = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| procfs::parse_pid_file(&text))
        .map(|pid_file| pid_file.pid);
    if lock_holder.is_some_and(|pid| !procfs::is_alive(pid)) {
        let _ = std::fs::remove_file(&lock);
        let _ = std::fs::remove_file(&socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> PgNode {
        PgNode {
            name: "replica1".to_string(),
            port: 15433,
            datadir: PathBuf::from("/tmp/x/replica1/data"),
            log_file: PathBuf::from("/nonexistent/replica1/postgres.log"),
            socket_dir: PathBuf::from("/tmp/x/sock"),
        }
    }

    #[test]
    fn node_addresses() {
        let n = node();
        assert_eq!(n.addr(), "127.0.0.1:15433");
        assert_eq!(
            n.connstr("app db", "postgres"),
            "host=127.0.0.1 port=15433 user=postgres dbname='app db'"
        );
    }

    #[test]
    fn node_errors_carry_the_node_name_once() {
        let n = node();
        let err = n.error(n.error(LocalClusterError::NoPostgresUser));
        let text = err.to_string();
        assert!(text.starts_with("replica1: "), "{text}");
        assert_eq!(text.matches("replica1: ").count(), 1, "{text}");
    }

    #[test]
    fn temp_dirs_are_distinct() {
        assert_ne!(unique_temp_dir(), unique_temp_dir());
    }
}
