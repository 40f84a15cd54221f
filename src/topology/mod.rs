//! The nodes behind pgsplit and their roles, published as an immutable snapshot that the data
//! path reads without waiting. Health monitoring will update it.
//!
//! Each node also carries live [`NodeStats`]: atomics that the data path and the [`monitor`]
//! update and the router reads, neither ever waiting on the other.

pub mod failover;
pub mod health;
pub mod insert;
pub mod lag;
pub mod monitor;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::{ClusterConfig, Config, LoadBalancing, NodeConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    /// A former primary, replaced by a promoted replica: it gets no work until an operator
    /// adds it back (a reload), so writes never go to two primaries.
    Fenced,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Fenced => "fenced",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Role::Primary => 0,
            Role::Replica => 1,
            Role::Fenced => 2,
        }
    }

    fn from_u8(value: u8) -> Role {
        match value {
            0 => Role::Primary,
            1 => Role::Replica,
            _ => Role::Fenced,
        }
    }
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    /// "host:port", as a socket connect accepts it.
    pub addr: String,
    /// The node's current role (it changes when a replica is promoted).
    role: AtomicU8,
    /// Share of balanced reads under [`LoadBalancing::Weighted`] while the node serves as a
    /// replica; 0: never chosen by weight.
    pub weight: u32,
    pub stats: NodeStats,
    /// Its series in the process's metrics, kept here so the data path needs no lookup.
    pub metric_slots: crate::metrics::NodeSlots,
}

/// Live load figures of one node. Updated with single atomic operations, so the data path never
/// waits, and read by the balancer as plain loads (a slightly stale figure only skews one pick).
#[derive(Debug)]
pub struct NodeStats {
    /// The last WAL position this node is known to have replayed (a replica) or written (the
    /// primary), as a 64-bit LSN; 0 while unknown. Kept by the [`monitor`].
    pub replay_lsn: AtomicU64,
    /// How far a replica is behind its primary, in WAL bytes and in microseconds (see
    /// [`lag::LsnHistory`]); [`LAG_UNKNOWN`] while the monitor cannot tell. The primary is 0
    /// behind itself while its position is known. Kept by the [`monitor`]; read both at once
    /// with [`NodeStats::lag`].
    pub lag_bytes: AtomicU64,
    pub lag_micros: AtomicU64,
    /// Server connections currently checked out to serve work on this node.
    pub in_flight: AtomicUsize,
    /// Moving average of response times in microseconds (see [`NodeStats::record_response`]);
    /// 0 until the first sample.
    pub ewma_micros: AtomicU64,
    /// Statements routed here as reads, and as writes.
    pub reads_total: AtomicU64,
    pub writes_total: AtomicU64,
    /// Checks and bans.
    pub health: health::Health,
    /// Rung when a read found this replica behind the writes its session must see: the
    /// monitor polls it sooner than its interval (see [`NodeStats::want_newer_position`]).
    pub newer_position_wanted: tokio::sync::Notify,
    /// The primary's WAL insert position by poll, for commits whose position was not asked.
    pub insert: insert::InsertPosition,
}

/// One unit of work on a node, from checkout to checkin: it counts in `in_flight` for as long as
/// it lives. [`WorkGuard::finish`] also records how long the node took to answer; dropping the
/// guard without it (the work failed or was abandoned) records nothing, so a node that fails
/// fast never looks fast.
#[derive(Debug)]
#[must_use = "the work counts as in flight only while the guard lives"]
pub struct WorkGuard {
    node: Arc<Node>,
    started: Instant,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    /// Former primaries replaced by a promotion, kept out of all routing.
    pub fenced: Vec<Arc<Node>>,
    pub databases: Vec<String>,
    pub load_balancing: LoadBalancing,
    /// The primary's weight among read candidates; 0: it takes no balanced reads.
    pub primary_read_weight: u32,
    pub primary: Arc<Node>,
    pub replicas: Vec<Arc<Node>>,
}

#[derive(Debug)]
pub struct Topology {
    pub clusters: Vec<Cluster>,
}

impl Topology {
    /// Every node of every cluster, fenced ones included.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.clusters.iter().flat_map(Cluster::nodes)
    }

    /// The cluster that has a node called `node` (serving or fenced).
    pub fn cluster_of_node(&self, node: &str) -> Option<&Cluster> {
        self.clusters
            .iter()
            .find(|c| c.nodes().any(|n| n.name == node))
    }

    /// The node called `name`, in any cluster.
    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.nodes().find(|n| n.name == name)
    }

    /// The topology after `promoted` became its cluster's primary; None if it is no replica.
    pub fn with_promotion(&self, promoted: &Arc<Node>) -> Option<Topology> {
        let index = self
            .clusters
            .iter()
            .position(|c| c.replicas.iter().any(|r| Arc::ptr_eq(r, promoted)))?;
        let mut clusters = self.clusters.clone();
        clusters[index] = self.clusters[index].with_promotion(promoted);
        Some(Topology { clusters })
    }

    /// The topology of a reloaded `config`. Nodes that keep their name and address keep their
    /// `Node` (and so their stats, health and monitor); the config's roles apply again, so a
    /// fenced former primary that the operator lists again is back.
    pub fn reconcile(&self, config: &Config) -> Topology {
        let existing: Vec<&Arc<Node>> = self.nodes().collect();
        let reuse = |n: &NodeConfig, role: Role| {
            let fresh = node(n, role);
            match existing
                .iter()
                .find(|e| e.name == fresh.name && e.addr == fresh.addr)
            {
                Some(kept) => {
                    kept.set_role(role);
                    Arc::clone(kept)
                }
                None => Arc::new(fresh),
            }
        };
        let clusters = config
            .clusters
            .iter()
            .map(|c| Cluster {
                primary: reuse(&c.primary, Role::Primary),
                replicas: c.replicas.iter().map(|r| reuse(r, Role::Replica)).collect(),
                ..Cluster::from_config(c)
            })
            .collect();
        Topology { clusters }
    }

    pub fn from_config(config: &Config) -> Topology {
        Topology {
            clusters: config.clusters.iter().map(Cluster::from_config).collect(),
        }
    }

    /// The cluster that serves `database`: the one listing it, else the first that lists none.
    /// Config validation guarantees that one of them exists.
    pub fn cluster_for_database(&self, database: &str) -> &Cluster {
        self.clusters
            .iter()
            .find(|c| c.databases.iter().any(|d| d == database))
            .or_else(|| self.clusters.iter().find(|c| c.databases.is_empty()))
            .unwrap_or(&self.clusters[0])
    }
}

impl Cluster {
    /// The nodes that serve: the primary, then the replicas.
    pub fn serving(&self) -> impl Iterator<Item = &Arc<Node>> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }

    /// Every node, fenced ones included.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.serving().chain(&self.fenced)
    }

    /// This cluster after `promoted` (one of its replicas) became its primary: the old primary
    /// is fenced, so writes never go to two primaries.
    pub fn with_promotion(&self, promoted: &Arc<Node>) -> Cluster {
        let mut next = self.clone();
        next.replicas.retain(|r| !Arc::ptr_eq(r, promoted));
        next.fenced
            .push(std::mem::replace(&mut next.primary, promoted.clone()));
        next
    }

    fn from_config(c: &ClusterConfig) -> Cluster {
        Cluster {
            name: c.name.clone(),
            fenced: Vec::new(),
            databases: c.databases.clone(),
            load_balancing: c.load_balancing,
            primary_read_weight: c.primary_read_weight,
            primary: Arc::new(node(&c.primary, Role::Primary)),
            replicas: c
                .replicas
                .iter()
                .map(|r| Arc::new(node(r, Role::Replica)))
                .collect(),
        }
    }
}

fn node(n: &NodeConfig, role: Role) -> Node {
    let addr = if n.host.contains(':') {
        format!("[{}]:{}", n.host, n.port)
    } else {
        format!("{}:{}", n.host, n.port)
    };
    Node::new(n.name.clone(), addr, role, n.weight)
}

impl Node {
    pub fn new(name: String, addr: String, role: Role, weight: u32) -> Node {
        Node {
            name,
            addr,
            role: AtomicU8::new(role.to_u8()),
            weight,
            stats: NodeStats::default(),
            metric_slots: Default::default(),
        }
    }

    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Relaxed))
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(role.to_u8(), Ordering::Relaxed);
    }

    /// The node may be given work: not banned by its checks or a failed request.
    pub fn is_available(&self) -> bool {
        !self.stats.health.is_banned()
    }

    /// Starts a unit of work on this node; it is in flight until the guard is finished or
    /// dropped. Takes the `Arc` so the guard can live as long as a checkout does, across awaits
    /// and topology changes.
    pub fn start_work(self: &Arc<Self>) -> WorkGuard {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        WorkGuard {
            node: Arc::clone(self),
            started: Instant::now(),
        }
    }
}

impl WorkGuard {
    /// Time since the work started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the work, recording `elapsed` as the node's response time. The caller chooses what
    /// to measure (time to the first answer, or to the end of it); [`WorkGuard::elapsed`] is
    /// there for the simple case.
    pub fn finish(self, elapsed: Duration) {
        self.node.stats.record_response(elapsed);
        self.node.stats.health.note_answer(self.started + elapsed);
    }
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.node.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Weight of each new sample in the moving average, as a fraction: 1/5 = 0.2, so a change in a
/// node's speed shows within a handful of statements while one outlier moves it little.
const EWMA_NEW_PARTS: u64 = 1;
const EWMA_ALL_PARTS: u64 = 5;

/// The value of [`NodeStats::lag_bytes`] and [`NodeStats::lag_micros`] while the lag is unknown.
pub const LAG_UNKNOWN: u64 = u64::MAX;

impl Default for NodeStats {
    /// Nothing known yet: in particular the lag is unknown, not zero, until the monitor has
    /// measured it.
    fn default() -> Self {
        NodeStats {
            replay_lsn: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(LAG_UNKNOWN),
            lag_micros: AtomicU64::new(LAG_UNKNOWN),
            in_flight: AtomicUsize::new(0),
            ewma_micros: AtomicU64::new(0),
            reads_total: AtomicU64::new(0),
            writes_total: AtomicU64::new(0),
            health: health::Health::default(),
            newer_position_wanted: tokio::sync::Notify::new(),
            insert: insert::InsertPosition::default(),
        }
    }
}

impl NodeStats {
    /// How far this node is behind its primary, in WAL bytes and in time; None while unknown.
    /// The two figures are separate atomics, so they may come from consecutive polls.
    pub fn lag(&self) -> Option<(u64, Duration)> {
        let bytes = known(self.lag_bytes.load(Ordering::Relaxed))?;
        let micros = known(self.lag_micros.load(Ordering::Relaxed))?;
        Some((bytes, Duration::from_micros(micros)))
    }

    /// Publishes a measured lag, or None for unknown. Figures too large to store are capped
    /// just below [`LAG_UNKNOWN`], so they stay known.
    fn set_lag(&self, lag: Option<lag::Lag>) {
        let (bytes, micros) = lag.map_or((LAG_UNKNOWN, LAG_UNKNOWN), |lag| {
            let micros = u64::try_from(lag.time.as_micros()).unwrap_or(u64::MAX);
            (lag.bytes.min(LAG_UNKNOWN - 1), micros.min(LAG_UNKNOWN - 1))
        });
        self.lag_bytes.store(bytes, Ordering::Relaxed);
        self.lag_micros.store(micros, Ordering::Relaxed);
    }

    /// Folds one response time into `ewma_micros`. A compare-and-swap loop rather than a lock:
    /// a racing update makes this one retry against the newer average.
    pub fn record_response(&self, elapsed: Duration) {
        // At least 1: 0 is reserved for "no sample yet".
        let sample = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self
            .ewma_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(ewma(old, sample))
            });
    }

    /// Asks the monitor to read this replica's position again soon, because a read needs more
    /// than it last saw. Calls before that poll share it (a pending wake-up is kept once), so
    /// however many reads ask, the replica is polled at most every `monitor.catch_up_interval`.
    pub fn want_newer_position(&self) {
        self.newer_position_wanted.notify_one();
    }

    pub fn count_read(&self) {
        self.reads_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_write(&self) {
        self.writes_total.fetch_add(1, Ordering::Relaxed);
    }
}

fn known(figure: u64) -> Option<u64> {
    (figure != LAG_UNKNOWN).then_some(figure)
}

/// The next moving average: the first sample as is, then 0.2 of the new and 0.8 of the old,
/// rounded (truncating would let the average stick below a slightly slower node's real time).
/// Computed in u128 so that no sample, however long, can overflow.
fn ewma(old: u64, sample: u64) -> u64 {
    if old == 0 {
        return sample;
    }
    let old_parts = u128::from(EWMA_ALL_PARTS - EWMA_NEW_PARTS) * u128::from(old);
    let new_parts = u128::from(EWMA_NEW_PARTS) * u128::from(sample);
    let all = u128::from(EWMA_ALL_PARTS);
    let average = (old_parts + new_parts + all / 2) / all;
    // Between old and sample, so within u64; at least 1 as both are.
    u64::try_from(average).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(text: &str) -> Topology {
        match Config::from_toml(text, "test.toml") {
            Ok(config) => Topology::from_config(&config),
            Err(err) => panic!("{err}"),
        }
    }

    fn replica() -> Arc<Node> {
        Arc::new(Node::new("r".into(), "r:5432".into(), Role::Replica, 1))
    }

    #[test]
    fn the_configuration_gives_weights_and_the_algorithm() {
        let topology = topology(
            "[[clusters]]\n\
             load_balancing = \"weighted\"\n\
             primary_read_weight = 2\n\
             primary = { addr = \"[::1]:5432\" }\n\
             replicas = [ { addr = \"b:1\", weight = 3 }, { addr = \"c:1\" } ]\n",
        );
        let cluster = topology.cluster_for_database("any");
        assert_eq!(cluster.load_balancing, LoadBalancing::Weighted);
        assert_eq!(cluster.primary_read_weight, 2);
        assert_eq!(cluster.primary.addr, "[::1]:5432");
        assert_eq!(cluster.primary.weight, 1);
        let weights: Vec<u32> = cluster.replicas.iter().map(|r| r.weight).collect();
        assert_eq!(weights, [3, 1]);
        assert_eq!(
            cluster.replicas[0].stats.in_flight.load(Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn work_is_in_flight_until_finished_or_dropped() {
        let node = replica();
        let in_flight = || node.stats.in_flight.load(Ordering::Relaxed);
        let first = node.start_work();
        let second = node.start_work();
        assert_eq!(in_flight(), 2);
        first.finish(Duration::from_millis(4));
        assert_eq!(in_flight(), 1);
        drop(second);
        assert_eq!(in_flight(), 0);
        // Only the finished work left a sample.
        assert_eq!(node.stats.ewma_micros.load(Ordering::Relaxed), 4000);
    }

    #[test]
    fn the_average_starts_at_the_first_sample_then_moves_a_fifth_of_the_way() {
        assert_eq!(ewma(0, 1000), 1000);
        assert_eq!(ewma(1000, 2000), 1200);
        assert_eq!(ewma(1000, 0), 800);
        // Rounded, so a slightly slower node still moves the average up.
        assert_eq!(ewma(10, 13), 11);
        assert_eq!(ewma(u64::MAX, u64::MAX), u64::MAX);
        // Rounding keeps the average within 2 of a steady response time, from either side.
        for start in [100_000, 1] {
            let settled = (0..60).fold(start, |average, _| ewma(average, 500));
            assert!(settled.abs_diff(500) <= 2, "{settled}");
        }
    }

    #[test]
    fn an_instant_answer_still_counts_as_a_sample() {
        let stats = NodeStats::default();
        stats.record_response(Duration::ZERO);
        assert_eq!(stats.ewma_micros.load(Ordering::Relaxed), 1);
        stats.record_response(Duration::MAX);
        assert!(stats.ewma_micros.load(Ordering::Relaxed) > u64::MAX / 10);
    }

    #[test]
    fn the_lag_is_unknown_until_measured_and_after_being_lost() {
        let stats = NodeStats::default();
        assert_eq!(stats.lag(), None);
        stats.set_lag(Some(lag::Lag {
            bytes: 4096,
            time: Duration::from_millis(250),
        }));
        assert_eq!(stats.lag(), Some((4096, Duration::from_millis(250))));
        // Huge figures stay known rather than turning into "unknown".
        stats.set_lag(Some(lag::Lag {
            bytes: u64::MAX,
            time: Duration::MAX,
        }));
        assert_eq!(
            stats.lag(),
            Some((u64::MAX - 1, Duration::from_micros(u64::MAX - 1)))
        );
        stats.set_lag(None);
        assert_eq!(stats.lag(), None);
        assert_eq!(stats.lag_bytes.load(Ordering::Relaxed), LAG_UNKNOWN);
    }

    #[test]
    fn concurrent_work_leaves_nothing_in_flight() {
        let node = replica();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for i in 0..1000 {
                        let work = node.start_work();
                        node.stats.count_read();
                        if i % 2 == 0 {
                            work.finish(Duration::from_micros(100));
                        }
                    }
                });
            }
        });
        assert_eq!(node.stats.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(node.stats.reads_total.load(Ordering::Relaxed), 8000);
        assert_eq!(node.stats.ewma_micros.load(Ordering::Relaxed), 100);
    }
}
