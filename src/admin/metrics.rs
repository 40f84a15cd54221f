//! `/metrics`: the OpenMetrics 1.0 text exposition (see [`CONTENT_TYPE`]).
//!
//! The process's counters and histograms come from [`crate::metrics::Metrics`]. Gauges about
//! the live state (node health, lag, per-node totals, pools, clients) are built at each scrape
//! from the same [`snapshot`] as `/api/status`, in a registry of their own, so the two views
//! never disagree and the admin server keeps no state between scrapes.
//!
//! OpenMetrics rather than Prometheus text 0.0.4 because it is what prometheus-client encodes,
//! and Prometheus (2.5 and later) asks for it first; an older scraper that only speaks 0.0.4
//! still reads every sample line, since the sample syntax is the same.
//!
//! Labels carry names only (node, cluster, role, database, user, reason, SQLSTATE class):
//! never a password, verifier or token, and not a pool's startup `options` either, which are
//! free text a client chose.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::status::{NodeStatus, PoolStatus, Status, snapshot};
use crate::frontend::Shared;
use crate::metrics::{NodeLabels, PREFIX};
use crate::topology::Role;

/// The media type of the exposition, as the OpenMetrics specification names it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn render(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match exposition(&shared) {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        // Only a metric's own encoder can fail (writing to a String cannot): say so rather
        // than serve a truncated exposition that would read as vanished series.
        Err(fmt::Error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

/// The whole exposition: the process's metrics, the scrape-time gauges, then `# EOF`.
fn exposition(shared: &Shared) -> Result<String, fmt::Error> {
    let mut body = String::new();
    shared.metrics.encode(&mut body)?;
    encode_registry(&mut body, &live_registry(&snapshot(shared)))?;
    encode_eof(&mut body)?;
    Ok(body)
}

/// Gauges (and the nodes' own running totals) for the state in `status`.
fn live_registry(status: &Status) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    let nodes = NodeFamilies::register(&mut registry);
    status.nodes.iter().for_each(|node| nodes.record(node));
    let pools = register_pools(&mut registry);
    status
        .pools
        .iter()
        .for_each(|pool| record_pool(&pools, pool));
    let clients = Gauge::<i64>::default();
    clients.set(gauge_value(status.clients));
    registry.register("clients_connected", "Client connections open now", clients);
    if let Some(cache) = &status.cache {
        register_cache(&mut registry, cache);
    }
    registry
}

/// The result cache's figures, as gauges of the totals at scrape time.
fn register_cache(registry: &mut Registry, cache: &crate::cache::CacheStats) {
    let figures = [
        (
            "cache_hits",
            "Reads answered from the result cache",
            cache.hits,
        ),
        (
            "cache_misses",
            "Cacheable reads that went to a server",
            cache.misses,
        ),
        (
            "cache_inserts",
            "Results stored in the cache",
            cache.inserts,
        ),
        (
            "cache_evictions",
            "Entries dropped to stay within max_bytes",
            cache.evictions,
        ),
        (
            "cache_invalidated_entries",
            "Entries dropped by committed writes",
            cache.invalidated_entries,
        ),
        ("cache_bytes", "Bytes held by the result cache", cache.bytes),
    ];
    for (name, help, value) in figures {
        let gauge = Gauge::<i64>::default();
        gauge.set(gauge_value(value));
        registry.register(name, help, gauge);
    }
    let per_table = Family::<TableLabels, Gauge>::default();
    for (table, count) in &cache.invalidations {
        per_table
            .get_or_create(&TableLabels {
                table: table.clone(),
            })
            .set(gauge_value(*count));
    }
    registry.register(
        "cache_table_invalidations",
        "Invalidations received per table",
        per_table,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeRoleLabels {
    node: String,
    cluster: String,
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterNodeLabels {
    node: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    node: String,
    database: String,
    user: String,
    state: &'static str,
}

/// The per-node families of one scrape, registered empty and then filled node by node.
struct NodeFamilies {
    up: Family<NodeRoleLabels, Gauge>,
    lag_seconds: Family<ClusterNodeLabels, Gauge<f64, AtomicU64>>,
    lag_bytes: Family<ClusterNodeLabels, Gauge>,
    reads: Family<NodeLabels, Counter>,
    writes: Family<NodeLabels, Counter>,
    in_flight: Family<NodeLabels, Gauge>,
}

impl NodeFamilies {
    fn register(registry: &mut Registry) -> NodeFamilies {
        let families = NodeFamilies {
            up: Family::default(),
            lag_seconds: Family::default(),
            lag_bytes: Family::default(),
            reads: Family::default(),
            writes: Family::default(),
            in_flight: Family::default(),
        };
        registry.register(
            "node_up",
            "1 while the node takes work, 0 while it is banned or fenced",
            families.up.clone(),
        );
        registry.register_with_unit(
            "replica_lag",
            "How long ago the primary first went past what the replica has replayed",
            Unit::Seconds,
            families.lag_seconds.clone(),
        );
        registry.register_with_unit(
            "replica_lag",
            "WAL the replica has yet to replay",
            Unit::Bytes,
            families.lag_bytes.clone(),
        );
        registry.register(
            "node_reads",
            "Reads the node has run",
            families.reads.clone(),
        );
        registry.register(
            "node_writes",
            "Writes the node has run",
            families.writes.clone(),
        );
        registry.register(
            "node_in_flight",
            "Units running on the node now",
            families.in_flight.clone(),
        );
        families
    }

    fn record(&self, node: &NodeStatus) {
        let role = NodeRoleLabels {
            node: node.name.clone(),
            cluster: node.cluster.clone(),
            role: node.role,
        };
        self.up.get_or_create(&role).set(i64::from(node.healthy));
        self.record_lag(node);
        let labels = NodeLabels {
            node: node.name.clone(),
        };
        self.reads.get_or_create(&labels).inc_by(node.reads_total);
        self.writes.get_or_create(&labels).inc_by(node.writes_total);
        self.in_flight
            .get_or_create(&labels)
            .set(gauge_value(node.in_flight));
    }

    /// Replicas only, and only once measured: a missing series says "unknown", where a 0
    /// would claim a replica is caught up. (The primary's lag is 0 by definition.)
    fn record_lag(&self, node: &NodeStatus) {
        if node.role != Role::Replica.as_str() {
            return;
        }
        let labels = ClusterNodeLabels {
            node: node.name.clone(),
            cluster: node.cluster.clone(),
        };
        if let Some(seconds) = node.lag_seconds {
            self.lag_seconds.get_or_create(&labels).set(seconds);
        }
        if let Some(bytes) = node.lag_bytes {
            self.lag_bytes
                .get_or_create(&labels)
                .set(gauge_value(bytes));
        }
    }
}

fn register_pools(registry: &mut Registry) -> Family<PoolLabels, Gauge> {
    let pools = Family::<PoolLabels, Gauge>::default();
    registry.register(
        "pool_connections",
        "Server connections per node, database and user, idle or in use",
        pools.clone(),
    );
    pools
}

/// Pools that differ only in their startup options share a label set, so their connections
/// are added up rather than the last one winning.
fn record_pool(family: &Family<PoolLabels, Gauge>, pool: &PoolStatus) {
    for (state, count) in [("idle", pool.idle), ("in_use", pool.in_use)] {
        let labels = PoolLabels {
            node: pool.node.clone(),
            database: pool.database.clone(),
            user: pool.user.clone(),
            state,
        };
        family.get_or_create(&labels).inc_by(gauge_value(count));
    }
}

/// Gauges are signed; counts beyond i64 cannot happen in practice, and saturate if they do.
fn gauge_value(count: impl TryInto<i64>) -> i64 {
    count.try_into().unwrap_or(i64::MAX)
}
