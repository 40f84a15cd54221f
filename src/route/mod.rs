//! Where a statement runs, and why. `decide` is the one decision point the session calls when
//! it needs a server; it is pure, so it is tested as a table of inputs and routes.

use std::sync::Arc;

use crate::topology::{Cluster, Node};

/// Why a statement went where it went: every route carries one, for logs, metrics and
/// `EXPLAIN ROUTE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The session keeps the server connection it was first given, on the primary.
    SessionHeld,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SessionHeld => "session_held",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub node: Arc<Node>,
    pub reason: Reason,
}

/// Chooses the node for a session's next unit of work in `cluster`.
pub fn decide(cluster: &Cluster) -> Route {
    Route {
        node: cluster.primary.clone(),
        reason: Reason::SessionHeld,
    }
}
