//! Counters and histograms shared by every session, exported at `/metrics` in the OpenMetrics
//! text format (`crate::admin::metrics` adds the gauges read from the live state at scrape
//! time). The data path only increments: a node's series are looked up in their families once
//! and then kept in the node's [`NodeSlots`], so a unit costs two atomic adds, no lookup and no
//! allocation.
//!
//! CONTRACT for the data path (keep these methods): `route`, `unit_finished`, `error`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::route::{REASON_COUNT, Reason};
use crate::topology::Node;

/// Prefix of every metric name pgsplit exports (the registry adds it and the `_`).
pub const PREFIX: &str = "pgsplit";

/// Upper bounds of the unit duration buckets, in seconds: from a point read over loopback
/// (0.5 ms) to a long report (10 s), about three buckets per decade; slower units land in +Inf.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Labels of a per-node series. Node names are validated to be plain identifiers (see
/// `config::validate`), so they are safe as label values; shared with the scrape-time gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    node: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    class: SqlstateClass,
}

/// The first two characters of a SQLSTATE (its class, e.g. `22` for data exceptions), kept
/// inline so that counting an error allocates nothing.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct SqlstateClass([u8; 2]);

impl SqlstateClass {
    /// A SQLSTATE is five digits or upper-case letters; anything else (a server bug or a
    /// truncated field) is counted under `??` rather than dropped or echoed as is.
    fn of(sqlstate: &str) -> SqlstateClass {
        match sqlstate.as_bytes() {
            [a, b, ..] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                SqlstateClass([*a, *b])
            }
            _ => SqlstateClass(*b"??"),
        }
    }
}

impl EncodeLabelValue for SqlstateClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        // Always ASCII (see `of`), so the conversion cannot fail.
        let text = std::str::from_utf8(&self.0).map_err(|_| fmt::Error)?;
        fmt::Write::write_str(encoder, text)
    }
}

/// Unit durations over [`DURATION_BUCKETS`]. prometheus-client's `Histogram` takes a mutex on
/// every observation, which every session finishing a unit on a node would contend on; here an
/// observation is two atomic adds. Clones share their counts (the family and the node's slot
/// hold the same series).
#[derive(Clone, Debug, Default)]
pub struct DurationHistogram(Arc<DurationCounts>);

#[derive(Debug, Default)]
struct DurationCounts {
    /// Observations per bucket, the last one +Inf; not cumulative (the encoder sums them), so
    /// the count is their sum and always agrees with them.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        // The encoder writes `le="+Inf"` for an infinite bound.
        let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.0.buckets)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = Duration::from_nanos(self.0.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A node's series, found in their families on first use (a node may move between
/// [`Metrics`] of different processes only in tests, where each keeps its own node objects).
pub struct NodeSlots {
    routes: [OnceLock<Counter>; REASON_COUNT],
    duration: OnceLock<DurationHistogram>,
}

impl fmt::Debug for NodeSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeSlots")
    }
}

impl Default for NodeSlots {
    fn default() -> Self {
        NodeSlots {
            routes: std::array::from_fn(|_| OnceLock::new()),
            duration: OnceLock::new(),
        }
    }
}

/// The process's metrics.
pub struct Metrics {
    /// Owns clones of the families below (they share their series), for encoding.
    registry: Registry,
    routes: Family<RouteLabels, Counter>,
    unit_duration: Family<NodeLabels, DurationHistogram>,
    errors: Family<ErrorLabels, Counter>,
    two_phase: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let routes = Family::<RouteLabels, Counter>::default();
        let unit_duration = Family::<NodeLabels, DurationHistogram>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let two_phase = Family::<OutcomeLabels, Counter>::default();
        // Names get the prefix, then the unit and `_total` suffixes from the registry.
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "routes",
            "Units of work routed, by node and reason",
            routes.clone(),
        );
        registry.register_with_unit(
            "unit_duration",
            "Time from a unit's dispatch to its ReadyForQuery, by node",
            Unit::Seconds,
            unit_duration.clone(),
        );
        registry.register(
            "errors",
            "Errors sent to clients, by SQLSTATE class",
            errors.clone(),
        );
        registry.register(
            "two_phase_resolutions",
            "Prepared multi-shard transactions resolved by recovery, by outcome",
            two_phase.clone(),
        );
        Metrics {
            registry,
            routes,
            unit_duration,
            errors,
            two_phase,
        }
    }
}

impl Metrics {
    /// A unit of work was routed to `node` for `reason`.
    pub fn route(&self, node: &Node, reason: Reason) {
        node.metric_slots.routes[reason.index()]
            .get_or_init(|| {
                let labels = RouteLabels {
                    node: node.name.clone(),
                    reason: reason.as_str(),
                };
                self.routes.get_or_create(&labels).clone()
            })
            .inc();
    }

    /// A unit of work on `node` ended after `elapsed` (from dispatch to its ReadyForQuery).
    pub fn unit_finished(&self, node: &Node, elapsed: Duration) {
        node.metric_slots
            .duration
            .get_or_init(|| {
                let labels = NodeLabels {
                    node: node.name.clone(),
                };
                self.unit_duration.get_or_create(&labels).clone()
            })
            .observe(elapsed);
    }

    /// A client received an error with this SQLSTATE (from a server or from pgsplit).
    pub fn error(&self, sqlstate: &str) {
        let labels = ErrorLabels {
            class: SqlstateClass::of(sqlstate),
        };
        self.errors.get_or_create(&labels).inc();
    }

    /// Two-phase recovery committed or rolled back a prepared transaction left behind.
    pub fn two_phase_resolved(&self, outcome: &'static str) {
        self.two_phase
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Appends these metrics to `out` in the OpenMetrics text format, without the closing
    /// `# EOF` (the caller adds its own metrics first).
    pub fn encode(&self, out: &mut String) -> fmt::Result {
        encode_registry(out, &self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut out = String::new();
        metrics.encode(&mut out).expect("encodes");
        out
    }

    #[test]
    fn counts_routes_durations_and_error_classes() {
        let metrics = Metrics::default();
        let node = Node::new(
            "replica1".into(),
            "h:1".into(),
            crate::topology::Role::Replica,
            1,
        );
        metrics.route(&node, Reason::Write);
        metrics.route(&node, Reason::Write);
        metrics.unit_finished(&node, Duration::from_millis(3));
        metrics.error("22012");
        let text = encoded(&metrics);
        assert!(
            text.contains(r#"pgsplit_routes_total{node="replica1",reason="write"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsplit_unit_duration_seconds_bucket{le="0.005",node="replica1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsplit_unit_duration_seconds_bucket{le="+Inf",node="replica1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsplit_unit_duration_seconds_count{node="replica1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsplit_errors_total{class="22"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn malformed_sqlstates_share_one_class() {
        assert_eq!(SqlstateClass::of("42P01"), SqlstateClass(*b"42"));
        assert_eq!(SqlstateClass::of("4"), SqlstateClass(*b"??"));
        assert_eq!(SqlstateClass::of("\"}"), SqlstateClass(*b"??"));
    }
}
