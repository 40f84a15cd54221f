//! Shared test harness: real PostgreSQL clusters (a primary and streaming replicas) started
//! from the system's server binaries by `pgsplit::localcluster`.
//!
//! - [`cluster`]: one cluster (primary + 3 replicas) per test binary, started on first use and
//!   shared by every test in that binary. Tests on it must not break nodes, and should use
//!   their own objects (see [`unique_name`]), since other tests run alongside.
//! - [`private_cluster`]: an owned cluster for tests that stop, kill, pause or promote nodes;
//!   dropped (stopped and removed) at the end of the test.
//!
//! Cleanup of the shared cluster: an `atexit` handler stops it when the test binary exits
//! normally; if the binary is killed instead, the cluster's watchdog process does it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use pgsplit::localcluster::{ClusterOptions, LocalCluster, PgBinaries};

/// pgsplit itself, started in-process against [`cluster`] (maintained alongside the proxy).
pub mod proxy;

/// Helpers for tests that load pgsplit while breaking servers (failover tests).
pub mod load;

/// Several shard clusters at once, and their config text (sharding tests).
pub mod shards;

/// A client in raw protocol bytes (several messages in one write, every answer seen).
pub mod wire;

/// Child processes (the `pgsplit` binary, client tools) and HTTP requests to the admin server.
pub mod process;

/// Replicas in the shared cluster.
pub const SHARED_REPLICAS: usize = 3;

/// Ok, or the start error as text (kept, so every test reports it instead of retrying).
static SHARED: OnceLock<Result<LocalCluster, String>> = OnceLock::new();

/// The shared cluster of this test binary (primary + [`SHARED_REPLICAS`] replicas, fsync off).
/// The first caller starts it; concurrent callers wait for that start.
pub fn cluster() -> &'static LocalCluster {
    let shared = SHARED.get_or_init(|| {
        let started = start(SHARED_REPLICAS).map_err(|e| e.to_string());
        if started.is_ok() {
            // SAFETY: registers a plain function; it only touches the `SHARED` static, which
            // lives for the whole process and is initialised by the time it can run.
            unsafe {
                libc::atexit(stop_shared_cluster);
            }
        }
        started
    });
    match shared {
        Ok(cluster) => cluster,
        Err(e) => panic!("the shared test cluster could not start: {e}"),
    }
}

/// Runs at process exit: statics are never dropped, so this is what stops the shared cluster.
extern "C" fn stop_shared_cluster() {
    if let Some(Ok(cluster)) = SHARED.get()
        && let Err(e) = cluster.stop_all()
    {
        eprintln!("stopping the shared test cluster: {e}");
    }
}

/// A cluster of its own for a test that breaks nodes; stopped and removed when dropped.
pub fn private_cluster(replicas: usize) -> LocalCluster {
    private_cluster_with(replicas, &[])
}

/// A private cluster whose nodes get `conf` lines (e.g. `wal_level = logical`) too.
pub fn private_cluster_with(replicas: usize, conf: &[&str]) -> LocalCluster {
    let mut options = ClusterOptions::new(replicas);
    options.extra_conf = conf.iter().map(|line| line.to_string()).collect();
    LocalCluster::start(binaries(), options)
        .unwrap_or_else(|e| panic!("a private test cluster could not start: {e}"))
}

/// The system's PostgreSQL binaries, looked up once.
pub fn binaries() -> &'static PgBinaries {
    static BINS: OnceLock<Result<PgBinaries, String>> = OnceLock::new();
    match BINS.get_or_init(|| PgBinaries::find().map_err(|e| e.to_string())) {
        Ok(bins) => bins,
        Err(e) => panic!("{e}"),
    }
}

fn start(replicas: usize) -> Result<LocalCluster, pgsplit::localcluster::LocalClusterError> {
    LocalCluster::start(binaries(), ClusterOptions::new(replicas))
}

/// Runs `sql` on the primary of `c` as the superuser and waits (20 s at most) until every
/// replica has replayed it, so that a test through pgsplit finds it wherever a read goes.
pub fn run_on_primary_and_replay(c: &LocalCluster, sql: &str) {
    c.psql(c.primary(), "postgres", sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let lsn = c.current_lsn().expect("the primary's position");
    for replica in c.replicas() {
        c.wait_replayed(replica, &lsn, std::time::Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{} replays {sql}: {e}", replica.name));
    }
}

/// A name no other test in this process uses (for tables and the like on the shared cluster).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connects with tokio-postgres (no TLS) and drives the connection on a spawned task.
pub async fn connect(connstr: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(connstr, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        // The connection ends with an error when the server goes away; tests see that through
        // the client.
        let _ = connection.await;
    });
    Ok(client)
}
