//! Counters and histograms shared by every session, exported at `/metrics` in Prometheus text
//! format. The data path only increments (no locks held across awaits).
//!
//! CONTRACT for the data path (keep these methods): `route`, `unit_finished`, `error`.

use std::time::Duration;

use crate::route::Reason;

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {}

impl Metrics {
    /// A unit of work was routed to `node` for `reason`.
    pub fn route(&self, _node: &str, _reason: Reason) {}

    /// A unit of work on `node` ended after `elapsed` (from dispatch to its ReadyForQuery).
    pub fn unit_finished(&self, _node: &str, _elapsed: Duration) {}

    /// A client received an error with this SQLSTATE (from a server or from pgsplit).
    pub fn error(&self, _sqlstate: &str) {}
}
