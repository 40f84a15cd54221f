//! The replication monitor: over connections of its own, off the data path, it reads every
//! replica's replayed WAL position and the primary's written one, and publishes them in the
//! nodes' stats: the router compares a replica's position with a session's causal token, and
//! its lag (bytes and time behind the primary, from the cluster's [`LsnHistory`]) with limits.
//!
//! One task per node, each a bounded loop: every query has a deadline, a failed or stuck
//! connection is dropped and made again after a short pause, and while a node cannot be read,
//! what it published is unknown (position 0, lag unknown) rather than stale.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use super::lag::LsnHistory;
use super::{Node, Role, Topology};
use crate::config::MonitorSettings;

/// A poll answered later than this counts as failed: the connection is dropped and made again.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest pause before reconnecting, so a node refusing connections is not hammered.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// The shortest poll interval (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// The replica's position: NULL on a server that was never in recovery.
const REPLICA_POSITION: &str = "SELECT pg_last_wal_replay_lsn()::text";
/// The primary's position: NULL if the configured primary is in fact in recovery (a standby has
/// no write position of its own, and `pg_current_wal_lsn()` would fail there).
const PRIMARY_POSITION: &str =
    "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END";

/// Starts one monitoring task per node of every cluster. A cluster's tasks share its history of
/// primary positions: the primary's task records into it, the replicas' tasks measure against
/// it (both briefly, under a lock the data path never takes).
pub fn spawn(topology: &Topology, settings: &MonitorSettings, connect_timeout: Duration) {
    let interval = settings.interval.max(MIN_INTERVAL);
    for cluster in &topology.clusters {
        let history = Arc::new(Mutex::new(LsnHistory::new(interval, stale_after(interval))));
        for node in std::iter::once(&cluster.primary).chain(&cluster.replicas) {
            let watch = Watch {
                node: Arc::clone(node),
                history: Arc::clone(&history),
                settings: settings.clone(),
                interval,
                connect_timeout,
            };
            tokio::spawn(watch.run());
        }
    }
}

/// How long the primary's position stays valid without being confirmed: a poll may take up to
/// [`QUERY_TIMEOUT`] and each comes an interval after the last, so beyond both (with a margin of
/// one interval) the primary's poller is failing and no lag can be told.
fn stale_after(interval: Duration) -> Duration {
    QUERY_TIMEOUT + interval.saturating_mul(2)
}

/// Why a monitoring connection was given up.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0} took longer than {1:?}")]
    Timeout(&'static str, Duration),
}

/// One node's monitoring task.
struct Watch {
    node: Arc<Node>,
    history: Arc<Mutex<LsnHistory>>,
    settings: MonitorSettings,
    interval: Duration,
    connect_timeout: Duration,
}

impl Watch {
    /// Polls forever, reconnecting after failures.
    async fn run(self) {
        loop {
            let error = self.poll_until_failure().await;
            tracing::debug!(node = %self.node.name, %error, "replication monitor lost its connection");
            // Nothing known until the next successful poll, so no session waits on a stale
            // position and no lag limit trusts a stale figure.
            self.publish(None, Instant::now());
            tokio::time::sleep(self.interval.max(MIN_RECONNECT_DELAY)).await;
        }
    }

    /// Connects and polls every interval until something fails.
    async fn poll_until_failure(&self) -> PollError {
        let connect_deadline = self.connect_timeout.saturating_add(QUERY_TIMEOUT);
        let (client, _connection) =
            match within(connect_deadline, "connecting", self.connect()).await {
                Ok(connected) => connected,
                Err(e) => return e,
            };
        let sql = match self.node.role {
            Role::Primary => PRIMARY_POSITION,
            Role::Replica => REPLICA_POSITION,
        };
        let statement = match within(QUERY_TIMEOUT, "preparing", client.prepare(sql)).await {
            Ok(statement) => statement,
            Err(e) => return e,
        };
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match within(QUERY_TIMEOUT, "polling", client.query_one(&statement, &[])).await {
                Ok(row) => self.publish(position(&row), Instant::now()),
                Err(e) => return e,
            }
        }
    }

    /// A connection to the node, driven by a task that ends with the returned guard.
    async fn connect(&self) -> Result<(Client, AbortOnDrop), tokio_postgres::Error> {
        let (client, connection) = monitor_config(&self.node, &self.settings, self.connect_timeout)
            .connect(NoTls)
            .await?;
        Ok((client, AbortOnDrop(tokio::spawn(connection))))
    }

    /// Publishes the node's position (None: unknown) as read at `at`, and what follows from it:
    /// the primary's goes into the history, a replica's lag is measured against the history.
    fn publish(&self, position: Option<u64>, at: Instant) {
        let stats = &self.node.stats;
        stats
            .replay_lsn
            .store(position.unwrap_or(0), Ordering::Relaxed);
        let lag = match (self.node.role, position) {
            (_, None) => None,
            (Role::Primary, Some(lsn)) => {
                self.history().record(lsn, at);
                Some(super::lag::Lag {
                    bytes: 0,
                    time: Duration::ZERO,
                })
            }
            (Role::Replica, Some(lsn)) => self.history().lag(lsn, at),
        };
        stats.set_lag(lag);
    }

    /// The cluster's history. Nothing panics while holding it (it is plain arithmetic), but a
    /// poisoned lock would still hold a consistent history, so it is used regardless.
    fn history(&self) -> std::sync::MutexGuard<'_, LsnHistory> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The position in a poll's answer; 0, NULL or unreadable text are all "unknown".
fn position(row: &tokio_postgres::Row) -> Option<u64> {
    row.try_get::<_, Option<&str>>(0)
        .ok()
        .flatten()
        .and_then(parse_lsn)
        .filter(|&lsn| lsn != 0)
}

/// `work`, failed if it takes longer than `limit`.
async fn within<T, E: Into<PollError>>(
    limit: Duration,
    what: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, PollError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(PollError::Timeout(what, limit)),
    }
}

/// Stops a connection's task when the monitor lets go of it: a dropped client would normally
/// end it, but not while the server it waits on is stuck.
struct AbortOnDrop(JoinHandle<Result<(), tokio_postgres::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn monitor_config(
    node: &Node,
    settings: &MonitorSettings,
    connect_timeout: Duration,
) -> tokio_postgres::Config {
    let (host, port) = split_addr(&node.addr);
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(&settings.user)
        .dbname(&settings.database)
        .application_name("pgsplit monitor")
        .connect_timeout(connect_timeout);
    if let Some(password) = &settings.password {
        config.password(password);
    }
    config
}

/// "host:port" or "[v6]:port" into its parts (the topology built it that way).
fn split_addr(addr: &str) -> (&str, u16) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "5432"));
    (
        host.trim_start_matches('[').trim_end_matches(']'),
        port.parse().unwrap_or(5432),
    )
}

/// PostgreSQL's text form of an LSN, "16/B374D848", as one 64-bit number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    if high > u64::from(u32::MAX) || low > u64::from(u32::MAX) {
        return None;
    }
    Some(high << 32 | low)
}

/// The text form of an LSN.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("1"), None);
        assert_eq!(parse_lsn("100000000/0"), None);
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_addr("127.0.0.1:5433"), ("127.0.0.1", 5433));
        assert_eq!(split_addr("[::1]:5432"), ("::1", 5432));
    }
}
