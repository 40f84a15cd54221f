//! Where a unit of work runs, and why. `decide` is the one decision point the session calls
//! when it needs a server; it is pure apart from the balancer's cursor, so it is tested as a
//! table of inputs and routes.

pub mod balance;
pub mod classify;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use smallvec::SmallVec;

use crate::config::LoadBalancing;
use crate::topology::{Cluster, Node};

use balance::{Balancer, Candidate};
use classify::{Access, PinCause, TxControl};

/// Why a unit of work went where it went: every route carries one, for logs, metrics and
/// `EXPLAIN ROUTE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The first connection of a session, used to log in (the primary).
    Login,
    /// `pool.mode = "session"`: the session keeps its first (primary) connection.
    SessionMode,
    /// The session holds state that lives on one connection.
    Pinned(PinCause),
    /// The unit writes, may write, or calls a function not known to be read-only.
    Write,
    /// The text could not be parsed: when unsure, the primary.
    Unparsable,
    /// A read-write transaction block starts: it runs on the primary from its first statement.
    Transaction,
    /// A read-only transaction block starts on a replica.
    ReadOnlyTransaction(LoadBalancing),
    /// A read, on a node chosen by the cluster's balancing algorithm.
    Balanced(LoadBalancing),
    /// A read with no replica to take it.
    NoReplica,
    /// The unit belongs to a transaction block already running on this connection.
    InTransaction,
    /// A read that no replica can serve yet: none has replayed the session's own last write
    /// (or the causal token it was given, or what it already read).
    ReadYourWrites,
    /// A read with no replica within the allowed lag.
    ReplicaLag,
    /// Consistency `strong`: the primary only.
    Strong,
    /// A hint sent the read to the primary.
    Hint,
    /// A read with every replica down (banned by its health checks or a failed request).
    NodeDown,
    /// A read no replica was fresh enough for, while the primary, where it would have gone
    /// instead, is down: the replica that has replayed the most takes it.
    FreshestReplica,
    /// A read a replica refused (recovery conflict, a write it could not run, an unlogged
    /// table it does not hold), run again on the primary.
    Retry,
    /// The unit only prepares or describes statements: it goes where the session's last read
    /// went, without taking a turn from the balancer.
    Prepare,
}

impl Reason {
    /// Stable names, used as metric labels and in `EXPLAIN ROUTE`.
    pub fn as_str(self) -> &'static str {
        REASON_NAMES[self.index()]
    }

    /// Index into [`RouteCounters`] (and a node's metric slots), below [`REASON_COUNT`].
    pub(crate) fn index(self) -> usize {
        match self {
            Reason::Login => 0,
            Reason::SessionMode => 1,
            Reason::Pinned(PinCause::TempTable) => 2,
            Reason::Pinned(PinCause::AdvisoryLock) => 3,
            Reason::Pinned(PinCause::Listen) => 4,
            Reason::Pinned(PinCause::HoldCursor) => 5,
            Reason::Pinned(PinCause::SessionFunction) => 6,
            Reason::Write => 7,
            Reason::Unparsable => 8,
            Reason::Transaction => 9,
            Reason::ReadOnlyTransaction(_) => 10,
            Reason::Balanced(_) => 11,
            Reason::NoReplica => 12,
            Reason::InTransaction => 13,
            Reason::Prepare => 14,
            Reason::ReadYourWrites => 15,
            Reason::ReplicaLag => 16,
            Reason::Strong => 17,
            Reason::Hint => 18,
            Reason::NodeDown => 19,
            Reason::Retry => 20,
            Reason::FreshestReplica => 21,
        }
    }
}

/// How many reasons there are.
pub(crate) const REASON_COUNT: usize = REASON_NAMES.len();

const REASON_NAMES: [&str; 22] = [
    "login",
    "session_mode",
    "pinned: temp table",
    "pinned: advisory lock",
    "pinned: listen",
    "pinned: cursor with hold",
    "pinned: session function",
    "write",
    "unparsable",
    "read-write transaction",
    "read-only transaction",
    "read: balanced",
    "read: no replica",
    "in transaction",
    "prepare",
    "read-your-writes: no replica caught up",
    "replica lag: no replica within max_lag",
    "consistency strong",
    "hint: route=primary",
    "replica down: every replica banned",
    "retry on the primary",
    "replica lag: primary down, freshest replica",
];

#[derive(Debug, Clone)]
pub struct Route {
    pub node: Arc<Node>,
    pub reason: Reason,
    /// What made it a write, when it is one ("INSERT", "function nextval", ...).
    pub detail: Option<String>,
}

/// What the router needs to know about the unit of work and the session.
pub struct Request<'a> {
    pub cluster: &'a Cluster,
    pub balancer: &'a Balancer,
    pub access: Access,
    pub parsed: bool,
    pub write_reason: Option<&'a str>,
    pub tx: &'a [TxControl],
    /// `default_transaction_read_only` is on for the session.
    pub default_read_only: bool,
    pub pin: Option<PinCause>,
    pub session_mode: bool,
    pub client: IpAddr,
    /// The unit runs statements (false: it only prepares or describes them).
    pub executes: bool,
    /// Where the session's last balanced read went.
    pub last_read_node: Option<&'a Arc<Node>>,
    /// How fresh a replica must be to take this read.
    pub freshness: Freshness,
    /// Consistency `strong`, or a hint `route=primary`: reads go to the primary.
    pub primary_only: Option<Reason>,
    /// A replica the balancer already chose for the statements this unit runs (when it
    /// prepared them): it serves them, if still fresh, without taking another turn.
    pub reuse: Option<&'a Arc<Node>>,
}

/// What makes a replica fresh enough for a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub max_lag: Duration,
    pub max_lag_bytes: Option<u64>,
    /// The replica must have replayed at least this far (0: no constraint): the session's
    /// causal token, a token it was given, or (monotonic) what it already read.
    pub min_lsn: u64,
    /// When no replica is within the lag limits and the primary is down, the read goes to the
    /// replica that has replayed the most rather than to the primary (which would fail it).
    /// Lag is measured against the primary: without it, a replica's lag is soon unknown,
    /// though what it holds is as fresh as any data left. Off for `lag_fallback = "error"`.
    pub freshest_if_primary_down: bool,
}

impl Freshness {
    /// Why `node` may not take the read, if it may not. The primary is always fresh.
    fn refuses(&self, node: &Node) -> Option<Reason> {
        if node.role() == crate::topology::Role::Primary {
            return None;
        }
        if !node.is_available() {
            return Some(Reason::NodeDown);
        }
        let Some((bytes, lag)) = node.stats.lag() else {
            return Some(Reason::ReplicaLag);
        };
        if lag > self.max_lag || self.max_lag_bytes.is_some_and(|max| bytes > max) {
            return Some(Reason::ReplicaLag);
        }
        self.lacks_session_writes(node)
            .then_some(Reason::ReadYourWrites)
    }

    /// The node has not replayed what the session must see, as far as the monitor last saw:
    /// then the monitor is asked to look again soon, so that the session's next reads can go
    /// to the replica once it has caught up, rather than to the primary until the next
    /// regular poll (a session writing more often than the poll interval would never read
    /// from a replica).
    fn lacks_session_writes(&self, node: &Node) -> bool {
        let lacks =
            self.min_lsn > 0 && node.stats.replay_lsn.load(Ordering::Relaxed) < self.min_lsn;
        if lacks {
            node.stats.want_newer_position();
        }
        lacks
    }
}

/// Chooses the node for a session's next unit of work.
pub fn decide(req: &Request<'_>) -> Route {
    let primary = |reason| Route {
        node: req.cluster.primary.clone(),
        reason,
        detail: None,
    };
    if req.session_mode {
        return primary(Reason::SessionMode);
    }
    if let Some(cause) = req.pin {
        return primary(Reason::Pinned(cause));
    }
    if req.access == Access::Write {
        let reason = if req.parsed {
            Reason::Write
        } else {
            Reason::Unparsable
        };
        return Route {
            detail: req.write_reason.map(str::to_string),
            ..primary(reason)
        };
    }
    // Before the shortcut for units that only prepare: a read-write transaction's first
    // unit may be one (a held BEGIN goes with it), and the transaction needs the primary.
    let starts = transaction_start(req.tx, req.default_read_only);
    if starts == Some(false) {
        return primary(Reason::Transaction);
    }
    if !req.executes
        && let Some(last) = req.last_read_node
        && is_read_candidate(req.cluster, last)
        && req.freshness.refuses(last).is_none()
    {
        return Route {
            node: last.clone(),
            reason: Reason::Prepare,
            detail: None,
        };
    }
    if let Some(reason) = req.primary_only {
        return primary(reason);
    }
    // What is left opens no transaction, or a read-only one.
    let algorithm = req.balancer.algorithm();
    let reason = match starts {
        Some(_) => Reason::ReadOnlyTransaction(algorithm),
        None => Reason::Balanced(algorithm),
    };
    balanced_read(req, reason)
}

/// Some(read_only) when the unit opens a transaction block. A block that might write (or
/// switches to READ WRITE) belongs on the primary from its first statement.
fn transaction_start(tx: &[TxControl], default_read_only: bool) -> Option<bool> {
    let mut read_only = None;
    for control in tx {
        match control {
            TxControl::Begin {
                read_only: explicit,
                ..
            } => read_only = Some(*explicit || default_read_only),
            TxControl::SetReadOnly {
                read_only: ro,
                session: false,
            } => read_only = read_only.map(|_| *ro),
            TxControl::TwoPhase => read_only = Some(false),
            _ => {}
        }
    }
    read_only
}

/// A node of the cluster that may take balanced reads now.
fn is_read_candidate(cluster: &Cluster, node: &Arc<Node>) -> bool {
    cluster.replicas.iter().any(|r| Arc::ptr_eq(r, node))
        || (cluster.primary_read_weight > 0 && Arc::ptr_eq(&cluster.primary, node))
}

fn balanced_read(req: &Request<'_>, reason: Reason) -> Route {
    let cluster = req.cluster;
    let sticky = (req.balancer.algorithm() == LoadBalancing::Sticky)
        .then_some(req.last_read_node)
        .flatten();
    if let Some(node) = req.reuse.or(sticky)
        && is_read_candidate(cluster, node)
        && req.freshness.refuses(node).is_none()
    {
        return Route {
            node: node.clone(),
            reason,
            detail: None,
        };
    }
    let mut refusal = None;
    // On the stack for up to 8 nodes: a cluster rarely has more, and a read allocates nothing.
    let candidates: SmallVec<[Candidate<'_>; 8]> = cluster
        .replicas
        .iter()
        .filter(|node| match req.freshness.refuses(node) {
            None => true,
            Some(why) => {
                // Read-your-writes explains more than lag when both apply: name the first.
                refusal.get_or_insert(why);
                false
            }
        })
        .map(Candidate::replica)
        // A primary down takes no reads, as a replica down takes none.
        .chain(Candidate::primary(cluster).filter(|c| c.node.is_available()))
        .collect();
    if candidates.is_empty()
        && let Some(reason) = refusal
    {
        if req.freshness.freshest_if_primary_down
            && !cluster.primary.is_available()
            && let Some(route) = freshest_replica(req)
        {
            return route;
        }
        return Route {
            node: cluster.primary.clone(),
            reason,
            detail: None,
        };
    }
    match req.balancer.pick(&candidates, req.client) {
        Some(i) => Route {
            node: candidates[i].node.clone(),
            reason,
            detail: None,
        },
        None => Route {
            node: cluster.primary.clone(),
            reason: Reason::NoReplica,
            detail: None,
        },
    }
}

/// The available replicas that have what the session must see, balanced among those that
/// have replayed the most, whatever their lag; None if there are none.
fn freshest_replica(req: &Request<'_>) -> Option<Route> {
    let usable = || {
        req.cluster
            .replicas
            .iter()
            .filter(|node| node.is_available() && !req.freshness.lacks_session_writes(node))
    };
    let replayed = |node: &Node| node.stats.replay_lsn.load(Ordering::Relaxed);
    let furthest = usable().map(|node| replayed(node)).max()?;
    let candidates: SmallVec<[Candidate<'_>; 8]> = usable()
        .filter(|node| replayed(node) == furthest)
        .map(Candidate::replica)
        .collect();
    let pick = req.balancer.pick(&candidates, req.client)?;
    Some(Route {
        node: candidates[pick].node.clone(),
        reason: Reason::FreshestReplica,
        detail: None,
    })
}

/// How many units went each way, by reason, for metrics and the dashboard.
#[derive(Default)]
pub struct RouteCounters {
    counts: [AtomicU64; REASON_NAMES.len()],
}

impl RouteCounters {
    pub fn record(&self, reason: Reason) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// (reason, count) for every reason seen at least once.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        REASON_NAMES
            .iter()
            .zip(&self.counts)
            .map(|(name, count)| (*name, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::topology::Role;

    fn node(name: &str, role: Role, replayed: u64) -> Arc<Node> {
        let node = Node::new(name.to_owned(), format!("{name}:5432"), role, 1);
        node.stats.replay_lsn.store(replayed, Ordering::Relaxed);
        Arc::new(node)
    }

    /// A primary and three replicas whose lag is unknown (as once the primary stops answering
    /// the monitor): replica1 has replayed the most, replica3 more still but it is banned.
    fn cluster() -> Cluster {
        let replicas = vec![
            node("replica1", Role::Replica, 300),
            node("replica2", Role::Replica, 200),
            node("replica3", Role::Replica, 400),
        ];
        replicas[2]
            .stats
            .health
            .ban("replica3", "down", Duration::from_secs(60));
        Cluster {
            name: "main".into(),
            fenced: Vec::new(),
            databases: Vec::new(),
            load_balancing: LoadBalancing::RoundRobin,
            primary_read_weight: 0,
            primary: node("primary", Role::Primary, 0),
            replicas,
        }
    }

    fn primary_down(cluster: &Cluster) {
        cluster
            .primary
            .stats
            .health
            .ban("primary", "connection refused", Duration::from_secs(60));
    }

    /// Where a read goes with lag limits of 1 s, the session needing `min_lsn`.
    fn read(cluster: &Cluster, min_lsn: u64, freshest_if_primary_down: bool) -> (String, Reason) {
        read_with(
            &Balancer::new(LoadBalancing::RoundRobin),
            cluster,
            min_lsn,
            freshest_if_primary_down,
        )
    }

    fn read_with(
        balancer: &Balancer,
        cluster: &Cluster,
        min_lsn: u64,
        freshest_if_primary_down: bool,
    ) -> (String, Reason) {
        let route = decide(&Request {
            cluster,
            balancer,
            access: Access::Read,
            parsed: true,
            write_reason: None,
            tx: &[],
            default_read_only: false,
            pin: None,
            session_mode: false,
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
            executes: true,
            last_read_node: None,
            freshness: Freshness {
                max_lag: Duration::from_secs(1),
                max_lag_bytes: None,
                min_lsn,
                freshest_if_primary_down,
            },
            primary_only: None,
            reuse: None,
        });
        (route.node.name.clone(), route.reason)
    }

    #[test]
    fn with_the_primary_down_a_read_no_replica_is_fresh_for_goes_to_the_freshest_replica() {
        let cluster = cluster();
        primary_down(&cluster);
        for _ in 0..3 {
            assert_eq!(
                read(&cluster, 0, true),
                ("replica1".into(), Reason::FreshestReplica)
            );
        }
        // The session's own writes still bound where it may read.
        assert_eq!(
            read(&cluster, 250, true),
            ("replica1".into(), Reason::FreshestReplica)
        );
        assert_eq!(
            read(&cluster, 350, true),
            ("primary".into(), Reason::ReplicaLag)
        );
    }

    #[test]
    fn replicas_of_equal_position_share_the_reads_of_a_down_primary() {
        let cluster = cluster();
        primary_down(&cluster);
        cluster.replicas[1]
            .stats
            .replay_lsn
            .store(300, Ordering::Relaxed);
        let balancer = Balancer::new(LoadBalancing::RoundRobin);
        let picked: std::collections::BTreeSet<String> = (0..4)
            .map(|_| read_with(&balancer, &cluster, 0, true).0)
            .collect();
        assert_eq!(picked, ["replica1".into(), "replica2".into()].into());
    }

    #[test]
    fn a_primary_down_takes_no_balanced_reads() {
        let mut cluster = cluster();
        cluster.primary_read_weight = 1;
        for replica in &cluster.replicas {
            replica.stats.lag_bytes.store(0, Ordering::Relaxed);
            replica.stats.lag_micros.store(0, Ordering::Relaxed);
        }
        primary_down(&cluster);
        let balancer = Balancer::new(LoadBalancing::RoundRobin);
        for _ in 0..4 {
            let (node, reason) = read_with(&balancer, &cluster, 0, true);
            assert!(node.starts_with("replica"), "{node}");
            assert_eq!(reason, Reason::Balanced(LoadBalancing::RoundRobin));
        }
    }

    #[test]
    fn lag_still_sends_reads_to_a_primary_that_is_up_or_fails_them_as_configured() {
        let cluster = cluster();
        assert_eq!(
            read(&cluster, 0, true),
            ("primary".into(), Reason::ReplicaLag)
        );
        primary_down(&cluster);
        // lag_fallback = "error": the session refuses the read.
        assert_eq!(
            read(&cluster, 0, false),
            ("primary".into(), Reason::ReplicaLag)
        );
    }
}
