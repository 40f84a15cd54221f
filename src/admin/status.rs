//! `/api/status`: everything the dashboard shows, as JSON, read from the live snapshots and
//! counters (the admin server keeps no state of its own).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::events::Event;
use crate::frontend::Shared;
use crate::topology::{Cluster, Node};

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub ready: bool,
    pub clients: usize,
    pub clusters: Vec<ClusterStatus>,
    pub nodes: Vec<NodeStatus>,
    /// Units routed, by reason.
    pub routes: Vec<RouteCount>,
    pub pools: Vec<PoolStatus>,
    pub events: Vec<Event>,
    /// The result cache's counters, when the cache is on.
    pub cache: Option<crate::cache::CacheStats>,
    /// The cache's invalidation channel to other instances is up (None: no cache).
    pub cache_channel: Option<bool>,
    /// Whether the WAL follower is following (with `cache.invalidation = "wal"`).
    pub cache_wal: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub primary: String,
    pub load_balancing: &'static str,
    pub consistency: &'static str,
    pub max_lag_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub addr: String,
    pub cluster: String,
    /// "primary", "replica" or "fenced".
    pub role: &'static str,
    pub healthy: bool,
    pub ban_reason: Option<String>,
    /// None while unknown.
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub reads_total: u64,
    pub writes_total: u64,
    pub in_flight: usize,
    /// Moving average of response times, milliseconds (None before the first).
    pub response_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct RouteCount {
    pub reason: &'static str,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub node: String,
    pub database: String,
    pub user: String,
    pub idle: usize,
    pub in_use: usize,
}

pub async fn api_status(State(shared): State<Arc<Shared>>) -> Json<Status> {
    Json(snapshot(&shared))
}

/// The process's state now.
pub fn snapshot(shared: &Shared) -> Status {
    let topology = shared.topology.load();
    let live = shared.live();
    let clusters = topology
        .clusters
        .iter()
        .map(|c| {
            let consistency = live.consistency(&c.name);
            ClusterStatus {
                name: c.name.clone(),
                primary: c.primary.name.clone(),
                load_balancing: c.load_balancing.as_str(),
                consistency: consistency.mode.as_str(),
                max_lag_ms: u64::try_from(consistency.max_lag.as_millis()).unwrap_or(u64::MAX),
            }
        })
        .collect();
    let nodes = topology.clusters.iter().flat_map(cluster_nodes).collect();
    let routes = shared
        .route_counters
        .snapshot()
        .into_iter()
        .map(|(reason, count)| RouteCount { reason, count })
        .collect();
    let pools = shared
        .pools
        .usage()
        .into_iter()
        .map(|(key, idle, in_use)| PoolStatus {
            node: key.node,
            database: key.database,
            user: key.user,
            idle,
            in_use,
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: started().elapsed().as_secs_f64(),
        ready: !shared.is_shutting_down(),
        clients: shared.client_count(),
        clusters,
        nodes,
        routes,
        pools,
        events: crate::events::recent(),
        cache: live.cache.as_ref().map(|c| c.stats()),
        cache_channel: shared.invalidation.get().map(|c| c.is_listening()),
        cache_wal: shared.wal_follower.get().map(|w| w.is_following()),
    }
}

fn cluster_nodes(cluster: &Cluster) -> impl Iterator<Item = NodeStatus> + '_ {
    cluster
        .nodes()
        .map(move |node| node_status(&cluster.name, node))
}

fn node_status(cluster: &str, node: &Node) -> NodeStatus {
    let stats = &node.stats;
    let lag = stats.lag();
    let ewma = stats.ewma_micros.load(Ordering::Relaxed);
    NodeStatus {
        name: node.name.clone(),
        addr: node.addr.clone(),
        cluster: cluster.to_string(),
        role: node.role().as_str(),
        healthy: node.is_available(),
        ban_reason: stats.health.ban_reason(),
        lag_bytes: lag.map(|(bytes, _)| bytes),
        lag_seconds: lag.map(|(_, time)| time.as_secs_f64()),
        reads_total: stats.reads_total.load(Ordering::Relaxed),
        writes_total: stats.writes_total.load(Ordering::Relaxed),
        in_flight: stats.in_flight.load(Ordering::Relaxed),
        response_ms: (ewma > 0).then(|| Duration::from_micros(ewma).as_secs_f64() * 1000.0),
    }
}

/// When the process started (first asked: at the admin server's start).
pub fn started() -> Instant {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}
