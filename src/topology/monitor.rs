//! The replication monitor: over connections of its own, off the data path, it reads every
//! replica's replayed WAL position and the primary's written and inserted ones, and publishes
//! them in the nodes' stats: the router compares a replica's position with a session's causal
//! token, and its lag (bytes and time behind the primary, from the cluster's [`LsnHistory`])
//! with limits; a session whose commit's position was not asked takes the primary's insert
//! position from a poll begun after the commit ([`super::insert`]).
//!
//! One task per node, each a bounded loop: every query has a deadline, a failed or stuck
//! connection is dropped and made again after a short pause, and while a node cannot be read,
//! what it published is unknown (position 0, lag unknown) rather than stale.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::Client;

use arc_swap::ArcSwap;

use super::health::CheckOutcome;
use super::lag::LsnHistory;
use super::{Node, Role, Topology};
use crate::config::address::split_node_addr;
use crate::config::{HealthSettings, MonitorSettings};

/// The shortest pause before reconnecting, so a node refusing connections is not hammered.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// The shortest poll interval (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Whether the node is a standby, and its position: replayed on a standby, written on a primary;
/// and a primary's insert position, at or past every commit it had answered when the poll
/// arrived (the written one may not be, under `synchronous_commit = off`). One query for every
/// node, so a replica that was promoted is seen at its next poll.
const POLL: &str = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() \
     THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END, \
     CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_insert_lsn()::text END";

/// The monitor of a set of nodes: one task per node, started for every node of the topology
/// that has none, so that a reload can add nodes; a task ends once its node has left the
/// topology. A cluster's tasks share its history of primary positions: the primary's task
/// records into it, the replicas' tasks measure against it (both briefly, under a lock the data
/// path never takes).
pub struct Monitor {
    topology: Arc<ArcSwap<Topology>>,
    settings: MonitorSettings,
    health: HealthSettings,
    connect_timeout: Duration,
    histories: Mutex<HashMap<String, Arc<Mutex<LsnHistory>>>>,
    /// Nodes with a task, by address of their `Node` (the same `Arc` across snapshots).
    watched: Mutex<HashSet<usize>>,
}

impl Monitor {
    pub fn new(
        topology: Arc<ArcSwap<Topology>>,
        settings: &MonitorSettings,
        health: &HealthSettings,
        connect_timeout: Duration,
    ) -> Arc<Monitor> {
        Arc::new(Monitor {
            topology,
            settings: settings.clone(),
            health: health.clone(),
            connect_timeout,
            histories: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
        })
    }

    /// Starts a task for every node of the current topology that has none.
    pub fn watch_new_nodes(self: &Arc<Self>) {
        let interval = self.settings.interval.max(MIN_INTERVAL);
        let snapshot = self.topology.load_full();
        for cluster in &snapshot.clusters {
            let history = self.history_of(&cluster.name, interval);
            for node in cluster.serving() {
                let key = Arc::as_ptr(node) as usize;
                if !self
                    .watched
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key)
                {
                    continue;
                }
                let watch = Watch {
                    node: Arc::clone(node),
                    history: Arc::clone(&history),
                    settings: self.settings.clone(),
                    health: self.health.clone(),
                    topology: Arc::clone(&self.topology),
                    interval,
                    connect_timeout: self.connect_timeout,
                };
                let monitor = Arc::clone(self);
                tokio::spawn(async move {
                    watch.run().await;
                    monitor
                        .watched
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                });
            }
        }
    }

    fn history_of(&self, cluster: &str, interval: Duration) -> Arc<Mutex<LsnHistory>> {
        let mut histories = self
            .histories
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let history = histories.entry(cluster.to_string()).or_insert_with(|| {
            Arc::new(Mutex::new(LsnHistory::new(
                interval,
                stale_after(interval, self.health.timeout),
            )))
        });
        Arc::clone(history)
    }
}

/// Starts a monitor for every node of `topology` (see [`Monitor`]).
pub fn spawn(
    topology: Arc<ArcSwap<Topology>>,
    settings: &MonitorSettings,
    health: &HealthSettings,
    connect_timeout: Duration,
) -> Arc<Monitor> {
    let monitor = Monitor::new(topology, settings, health, connect_timeout);
    monitor.watch_new_nodes();
    monitor
}

/// How long the primary's position stays valid without being confirmed: a poll may take up to
/// [`QUERY_TIMEOUT`] and each comes an interval after the last, so beyond both (with a margin of
/// one interval) the primary's poller is failing and no lag can be told.
fn stale_after(interval: Duration, query_timeout: Duration) -> Duration {
    query_timeout + interval.saturating_mul(2)
}

/// Why a monitoring connection was given up.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0} took longer than {1:?}")]
    Timeout(&'static str, Duration),
    #[error("the node left the topology")]
    Removed,
}

/// One node's monitoring task.
struct Watch {
    node: Arc<Node>,
    history: Arc<Mutex<LsnHistory>>,
    settings: MonitorSettings,
    /// Each poll is also the node's health check.
    health: HealthSettings,
    /// Where a promotion is published.
    topology: Arc<ArcSwap<Topology>>,
    interval: Duration,
    connect_timeout: Duration,
}

impl Watch {
    /// Polls forever, reconnecting after failures.
    async fn run(self) {
        while self.in_topology() {
            let error = self.poll_until_failure().await;
            tracing::debug!(node = %self.node.name, %error, "replication monitor lost its connection");
            let outcome = match error {
                PollError::Removed => break,
                PollError::Timeout(..) => CheckOutcome::TimedOut {
                    replaceable: self.node.role() != Role::Primary,
                },
                PollError::Postgres(_) => CheckOutcome::Failed,
            };
            self.node.stats.health.record_check(
                &self.node.name,
                outcome,
                &error.to_string(),
                &self.health,
            );
            // Nothing known until the next successful poll, so no session waits on a stale
            // position and no lag limit trusts a stale figure.
            self.publish(None, Instant::now());
            tokio::time::sleep(self.interval.max(MIN_RECONNECT_DELAY)).await;
        }
    }

    /// The node still belongs to the topology (a reload may have removed it).
    fn in_topology(&self) -> bool {
        self.topology
            .load()
            .nodes()
            .any(|n| Arc::ptr_eq(n, &self.node))
    }

    /// Connects and polls every interval until something fails.
    async fn poll_until_failure(&self) -> PollError {
        let timeout = self.health.timeout;
        let (client, _connection) = match within(timeout, "connecting", self.connect()).await {
            Ok(connected) => connected,
            Err(e) => return e,
        };
        let statement = match within(timeout, "preparing", client.prepare(POLL)).await {
            Ok(statement) => statement,
            Err(e) => return e,
        };
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.wait_for_next_poll(&mut ticks).await;
            if !self.in_topology() {
                return PollError::Removed;
            }
            let poll = self.node.stats.insert.begin_poll();
            match within(timeout, "polling", client.query_one(&statement, &[])).await {
                Ok(row) => {
                    self.node.stats.health.record_check(
                        &self.node.name,
                        CheckOutcome::Passed,
                        "",
                        &self.health,
                    );
                    let in_recovery = row.try_get::<_, bool>(0).unwrap_or(true);
                    self.follow_role(in_recovery);
                    self.publish(position(&row, 1), Instant::now());
                    let insert = position(&row, 2).filter(|_| self.node.role() == Role::Primary);
                    self.node.stats.insert.publish(poll, insert.unwrap_or(0));
                }
                Err(e) => return e,
            }
        }
    }

    /// Waits for the interval's next tick, or less when a read wants a newer position than
    /// the last poll saw, though never less than `catch_up_interval` after the last poll. The
    /// interval then starts again, so a node read on demand is not read again at once. A
    /// catch-up longer than the interval waits no longer than the interval would.
    async fn wait_for_next_poll(&self, ticks: &mut tokio::time::Interval) {
        let catch_up = self.settings.catch_up_interval.min(self.interval);
        if catch_up.is_zero() {
            ticks.tick().await;
            return;
        }
        let last_poll = tokio::time::Instant::now();
        tokio::select! {
            _ = ticks.tick() => {}
            () = self.node.stats.newer_position_wanted.notified() => {
                tokio::time::sleep_until(last_poll + catch_up).await;
                ticks.reset();
            }
        }
    }

    /// A connection to the node, driven by a task that ends with the returned guard.
    async fn connect(&self) -> Result<(Client, AbortOnDrop), tokio_postgres::Error> {
        let mut config = monitor_config(&self.node, &self.settings, self.connect_timeout);
        let (client, connection) = crate::tls::connect_internal(&mut config).await?;
        Ok((client, AbortOnDrop(tokio::spawn(connection))))
    }

    /// A replica that reports it is no longer in recovery was promoted: it becomes its
    /// cluster's primary, and the old primary is fenced. A fenced node that comes back writable
    /// stays fenced until an operator re-adds it.
    fn follow_role(&self, in_recovery: bool) {
        if in_recovery || self.node.role() != Role::Replica {
            return;
        }
        let mut promoted = false;
        self.topology
            .rcu(|current| match current.with_promotion(&self.node) {
                Some(next) => {
                    promoted = true;
                    Arc::new(next)
                }
                None => Arc::clone(current),
            });
        if !promoted {
            return;
        }
        let topology = self.topology.load();
        for cluster in &topology.clusters {
            for fenced in &cluster.fenced {
                fenced.set_role(Role::Fenced);
            }
        }
        self.node.set_role(Role::Primary);
        crate::events::record(
            "promotion",
            Some(&self.node.name),
            "replica promoted: now the primary; the former primary is fenced",
        );
        tracing::warn!(node = %self.node.name, "replica promoted: it is now the primary; the former primary is fenced");
    }

    /// Publishes the node's position (None: unknown) as read at `at`, and what follows from it:
    /// the primary's goes into the history, a replica's lag is measured against the history.
    fn publish(&self, position: Option<u64>, at: Instant) {
        let stats = &self.node.stats;
        let position = position.filter(|_| self.node.role() != Role::Fenced);
        stats
            .replay_lsn
            .store(position.unwrap_or(0), Ordering::Relaxed);
        let lag = match (self.node.role(), position) {
            (_, None) | (Role::Fenced, _) => None,
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

/// The position in a poll's answer's `column`; 0, NULL or unreadable text are all "unknown".
fn position(row: &tokio_postgres::Row, column: usize) -> Option<u64> {
    row.try_get::<_, Option<&str>>(column)
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

/// A connection to the first cluster's primary as the monitor connects (its user, database and
/// password, the configured server TLS), for tasks that follow the primary: the cache's
/// invalidation channel, WAL follower and catalog reads.
pub(crate) async fn connect_first_primary(
    topology: &ArcSwap<Topology>,
    settings: &MonitorSettings,
    connect_timeout: Duration,
) -> Result<
    (
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, crate::tls::InternalStream>,
    ),
    String,
> {
    let primary = match topology.load().clusters.first() {
        Some(cluster) => Arc::clone(&cluster.primary),
        None => return Err("no cluster".into()),
    };
    let mut config = monitor_config(&primary, settings, connect_timeout);
    crate::tls::connect_internal(&mut config)
        .await
        .map_err(|e| e.to_string())
}

pub(crate) fn monitor_config(
    node: &Node,
    settings: &MonitorSettings,
    connect_timeout: Duration,
) -> tokio_postgres::Config {
    let (host, port) = split_node_addr(&node.addr);
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
    LsnText(lsn).to_string()
}

/// An LSN written in its text form (`16/B374D848`) where it is formatted.
pub struct LsnText(pub u64);

impl std::fmt::Display for LsnText {
    /// The digits by hand, not with `{:X}`: a causal token, one or more of these, goes out with
    /// every committed write, and the formatting machinery cost more than the rest of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut text = [0u8; 17];
        let mut len = 0;
        for (i, half) in [self.0 >> 32, self.0 & 0xffff_ffff].into_iter().enumerate() {
            if i == 1 {
                text[len] = b'/';
                len += 1;
            }
            let digits = (64 - half.leading_zeros()).div_ceil(4).max(1);
            for shift in (0..digits).rev().map(|d| d * 4) {
                text[len] = DIGITS[((half >> shift) & 0xf) as usize];
                len += 1;
            }
        }
        f.write_str(std::str::from_utf8(&text[..len]).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        assert_eq!(format_lsn(u64::MAX), "FFFFFFFF/FFFFFFFF");
        assert_eq!(format_lsn(0x1_0000_000A), "1/A");
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("1"), None);
        assert_eq!(parse_lsn("100000000/0"), None);
    }
}
