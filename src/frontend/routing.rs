//! The routing side of a session: what a unit's hints, the session's settings and the
//! cluster's consistency (with the causal token, see [`super::causal`]) ask of a replica, and
//! the fallbacks when none qualifies.

use crate::config::{ConsistencyConfig, ConsistencyMode, LagFallback};
use crate::hint::{Consistency, Hints, RouteHint};
use crate::protocol::SqlState;
use crate::route::classify::Access;
use crate::route::{self, Reason, Route};
use crate::topology::{Cluster, Topology};

use super::error::FrontendError;
use super::session::Session;
use super::work::Work;

/// How often a read waiting for a fresh enough replica decides again.
const WAIT_RECHECK: std::time::Duration = std::time::Duration::from_millis(1);

impl Session {
    /// The routing decision for a unit that needs a server.
    pub(super) fn decide(&self, work: &Work) -> Route {
        let topology = self.shared.topology.load();
        let cluster = self.unit_cluster_in(&topology);
        self.decide_in(cluster, work)
    }

    /// The cluster the unit goes to: the shard sharding picked, else the database's cluster.
    pub(super) fn unit_cluster_in<'t>(&self, topology: &'t Topology) -> &'t Cluster {
        self.unit_cluster
            .as_ref()
            .and_then(|name| topology.clusters.iter().find(|c| &c.name == name))
            .unwrap_or_else(|| topology.cluster_for_database(&self.database))
    }

    /// The routing decision for a unit on one cluster.
    pub(super) fn decide_in(&self, cluster: &Cluster, work: &Work) -> Route {
        let live = self.shared.live();
        let balancer = live.balancer(&cluster.name);
        let settings = live.consistency(&cluster.name);
        let wanted = work.hints.or(&self.local_hints.or(&self.hints));
        let (freshness, mut primary_only) = self.freshness(&wanted, &cluster.name, settings);
        if self.force_primary {
            primary_only = Some(Reason::Retry);
        }
        let route = route::decide(&route::Request {
            cluster,
            balancer,
            access: work.access(),
            parsed: work.parsed,
            write_reason: work.write_reason.as_deref(),
            tx: &work.tx,
            default_read_only: self.state.default_read_only(),
            pin: self.state.pin().or_else(|| work.pin()),
            session_mode: live.session_pooling(),
            client: self.client_ip,
            executes: work.executes,
            last_read_node: self.last_read_node.as_ref(),
            freshness,
            primary_only,
            reuse: self.prepared_on.as_ref().filter(|_| work.executes),
        });
        tracing::debug!(node = %route.node.name, reason = route.reason.as_str(), detail = ?route.detail, "route");
        route
    }

    /// What a replica must offer for this read, from the statement's hints over the session's
    /// settings over the cluster's defaults; or the reason the read must go to the primary.
    pub(super) fn freshness(
        &self,
        wanted: &Hints,
        cluster: &str,
        settings: &ConsistencyConfig,
    ) -> (route::Freshness, Option<Reason>) {
        let causal_lsn = self.causal_for_reads(cluster);
        let mode = match wanted.route {
            // route=replica asks for any replica within the lag limit, own writes or not.
            Some(RouteHint::Replica) => Consistency::Eventual,
            _ => wanted.consistency.unwrap_or(match settings.mode {
                ConsistencyMode::Eventual => Consistency::Eventual,
                ConsistencyMode::ReadYourWrites => Consistency::ReadYourWrites,
                ConsistencyMode::Monotonic => Consistency::Monotonic,
                ConsistencyMode::Strong => Consistency::Strong,
            }),
        };
        let primary_only = match (wanted.route, mode) {
            (Some(RouteHint::Primary), _) => Some(Reason::Hint),
            (_, Consistency::Strong) => Some(Reason::Strong),
            _ => None,
        };
        let mut max_lag = wanted.max_lag.unwrap_or(settings.max_lag);
        let after = wanted.after.as_ref().map_or(0, |t| t.position_for(cluster));
        let min_lsn = match mode {
            Consistency::Eventual | Consistency::Strong => after,
            Consistency::ReadYourWrites => after.max(causal_lsn),
            Consistency::Bounded(bound) => {
                max_lag = max_lag.min(bound);
                after.max(causal_lsn)
            }
            Consistency::Monotonic => after.max(causal_lsn).max(self.read_floor),
        };
        let freshness = route::Freshness {
            max_lag,
            max_lag_bytes: settings.max_lag_bytes,
            min_lsn,
            freshest_if_primary_down: settings.lag_fallback != LagFallback::Error,
        };
        (freshness, primary_only)
    }

    /// Routes a unit, applying the cluster's fallback when no replica is fresh enough: wait
    /// (bounded) for one, fail the read, or take the primary.
    pub(super) async fn decide_with_fallback(&self, work: &Work) -> Result<Route, FrontendError> {
        let route = self.decide(work);
        if !matches!(route.reason, Reason::ReplicaLag | Reason::ReadYourWrites) {
            return Ok(route);
        }
        // Only a read no replica could take looks at the fallback settings.
        let topology = self.shared.topology.load();
        let live = self.shared.live();
        let settings = live.consistency(&self.unit_cluster_in(&topology).name);
        let wait = match route.reason {
            Reason::ReplicaLag => match settings.lag_fallback {
                LagFallback::Primary => return Ok(route),
                LagFallback::Wait => settings.lag_wait,
                LagFallback::Error => {
                    return Err(FrontendError::refuse(
                        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!(
                            "no replica is within max_lag ({:?}) for this read, and lag_fallback is \"error\"",
                            settings.max_lag
                        ),
                    ));
                }
            },
            Reason::ReadYourWrites => settings.ryw_wait,
            _ => return Ok(route),
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut route = route;
        while matches!(route.reason, Reason::ReplicaLag | Reason::ReadYourWrites)
            && tokio::time::Instant::now() < deadline
        {
            // Often enough to catch a replica the monitor sees catch up (it looks again every
            // `monitor.catch_up_interval` while reads wait), never past the deadline.
            let recheck = tokio::time::Instant::now() + WAIT_RECHECK;
            tokio::time::sleep_until(recheck.min(deadline)).await;
            route = self.decide(work);
        }
        Ok(route)
    }

    /// Monotonic reads: a read on a node sees at least what that node had replayed when it was
    /// chosen, so later reads must not come from a node further behind.
    pub(super) fn note_read_position(&mut self, work: &Work) {
        if let Some(attached) = &self.server
            && work.access() == Access::Read
            && work.executes
        {
            let seen = attached
                .route
                .node
                .stats
                .replay_lsn
                .load(std::sync::atomic::Ordering::Relaxed);
            self.read_floor = self.read_floor.max(seen);
        }
    }
}
