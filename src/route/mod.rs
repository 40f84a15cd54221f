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
    /// A read a replica refused (recovery conflict, or a write it could not run), run again on
    /// the primary.
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
        }
    }
}

/// How many reasons there are.
pub(crate) const REASON_COUNT: usize = REASON_NAMES.len();

const REASON_NAMES: [&str; 21] = [
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
        let replayed = node.stats.replay_lsn.load(Ordering::Relaxed);
        (self.min_lsn > 0 && replayed < self.min_lsn).then_some(Reason::ReadYourWrites)
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
    let starts = transaction_start(req.tx, req.default_read_only);
    if starts == Some(false) {
        return primary(Reason::Transaction);
    }
    if let Some(reason) = req.primary_only {
        return primary(reason);
    }
    match starts {
        Some(false) => primary(Reason::Transaction),
        Some(true) => balanced_read(req, Reason::ReadOnlyTransaction(req.balancer.algorithm())),
        None => balanced_read(req, Reason::Balanced(req.balancer.algorithm())),
    }
}

/// Some(read_only) when the unit opens a transaction block. A block that might write (or
/// switches to READ WRITE) belongs on the primary from its first statement.
fn transaction_start(tx: &[TxControl], default_read_only: bool) -> Option<bool> {
    let mut read_only = None;
    for control in tx {
        match control {
            TxControl::Begin {
                read_only: explicit,
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
        .chain(Candidate::primary(cluster))
        .collect();
    if candidates.is_empty()
        && let Some(reason) = refusal
    {
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
