//! What the criterion benchmarks share.

use std::time::Duration;

use criterion::Criterion;

/// Short runs: the machine is small and shared, and these numbers are stable well within them.
pub fn short_runs() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}
