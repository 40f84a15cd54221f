//! Replica lag in time, measured against the history of the primary's WAL position.
//!
//! A replica only tells us how far it has replayed (an LSN). To turn that into time, the
//! monitor keeps, per cluster, the positions it saw on the primary and when it first saw each:
//! a replica that has replayed up to `R` is as late as the time since the primary first went
//! beyond `R`. This measure is zero on an idle primary whatever the replica's apply delay
//! (nothing is missing), starts growing the moment a paused replica misses a write, and keeps
//! growing with wall time while it stays paused.
//!
//! Pure logic: time comes in as arguments, so tests drive it with synthetic instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the history reaches at the poll interval, and the cap on its entries (10
/// minutes at the default 100 ms; a shorter interval keeps a shorter span). A replica further
/// behind than the oldest entry shows at least that entry's age.
const SPAN: Duration = Duration::from_secs(600);
const MAX_SAMPLES: usize = 6000;

/// One replica's distance from the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// WAL bytes the primary has written and the replica has not replayed.
    pub bytes: u64,
    /// How long the primary has been past the replica's position.
    pub time: Duration,
}

/// A position the primary reached, and when the monitor first saw it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    at: Instant,
    lsn: u64,
}

/// The primary's recent WAL positions, oldest first, with strictly increasing LSNs: a sample is
/// only added when the position moved, so an idle primary costs nothing and a replica's lag is
/// measured from the first moment the primary was seen beyond it.
#[derive(Debug)]
pub struct LsnHistory {
    samples: VecDeque<Sample>,
    capacity: usize,
    /// When the latest position was last confirmed (first seen, or seen again unchanged).
    confirmed: Option<Instant>,
    /// Past this age without a confirmation, the history no longer says where the primary is
    /// (its poller is failing or stuck) and every lag is unknown.
    stale_after: Duration,
}

impl LsnHistory {
    /// A history for a primary polled every `interval`.
    pub fn new(interval: Duration, stale_after: Duration) -> LsnHistory {
        let per_span = SPAN.as_nanos() / interval.max(Duration::from_millis(1)).as_nanos();
        let capacity = usize::try_from(per_span)
            .unwrap_or(MAX_SAMPLES)
            .clamp(1, MAX_SAMPLES);
        LsnHistory {
            samples: VecDeque::with_capacity(capacity),
            capacity,
            confirmed: None,
            stale_after,
        }
    }

    /// Records that the primary was at `lsn` at `at`.
    pub fn record(&mut self, lsn: u64, at: Instant) {
        match self.samples.back() {
            Some(latest) if latest.lsn == lsn => {}
            // A position going back is another server's WAL (a failover, a restore): the old
            // samples say nothing about it.
            Some(latest) if latest.lsn > lsn => {
                self.samples.clear();
                self.push(Sample { at, lsn });
            }
            _ => self.push(Sample { at, lsn }),
        }
        self.confirmed = Some(at);
    }

    fn push(&mut self, sample: Sample) {
        if self.samples.len() >= self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The primary's latest known position, while the history is fresh at `now`.
    pub fn latest(&self, now: Instant) -> Option<u64> {
        let confirmed = self.confirmed?;
        if now.saturating_duration_since(confirmed) > self.stale_after {
            return None;
        }
        self.samples.back().map(|s| s.lsn)
    }

    /// How late a replica that has replayed up to `replayed` is at `now`: zero if it has
    /// everything the primary was last seen to have (even when that is ahead of our latest
    /// sample, as the polls of the two nodes interleave), else the time since the primary was
    /// first seen beyond `replayed`. None while the primary's position is unknown.
    pub fn lag_of(&self, replayed: u64, now: Instant) -> Option<Duration> {
        self.lag(replayed, now).map(|lag| lag.time)
    }

    /// [`LsnHistory::lag_of`] together with the distance in bytes.
    pub fn lag(&self, replayed: u64, now: Instant) -> Option<Lag> {
        let latest = self.latest(now)?;
        let time = if replayed >= latest {
            Duration::ZERO
        } else {
            self.time_beyond(replayed, now)
        };
        Some(Lag {
            bytes: latest.saturating_sub(replayed),
            time,
        })
    }

    /// Time since the first sample beyond `replayed` (zero if there is none). LSNs increase
    /// strictly, so it is found by bisection. When it is the oldest sample, the primary may have
    /// passed `replayed` earlier still: the lag is then at least its age, which is what we give.
    fn time_beyond(&self, replayed: u64, now: Instant) -> Duration {
        let first_beyond = self.samples.partition_point(|s| s.lsn <= replayed);
        self.samples
            .get(first_beyond)
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);
    const STALE: Duration = Duration::from_secs(3);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A history fed one primary sample per interval from `start`, at the given positions.
    fn polled(start: Instant, positions: &[u64]) -> LsnHistory {
        let mut history = LsnHistory::new(INTERVAL, STALE);
        for (i, &lsn) in (0u32..).zip(positions) {
            history.record(lsn, start + INTERVAL * i);
        }
        history
    }

    #[test]
    fn an_empty_history_knows_no_lag() {
        let history = LsnHistory::new(INTERVAL, STALE);
        let now = Instant::now();
        assert_eq!(history.lag_of(0, now), None);
        assert_eq!(history.lag_of(100, now), None);
        assert_eq!(history.lag(100, now), None);
        assert_eq!(history.latest(now), None);
    }

    #[test]
    fn an_idle_primary_never_makes_a_caught_up_replica_late() {
        let t0 = Instant::now();
        // The primary sits at 500 for a minute.
        let history = polled(t0, &[500; 600]);
        let now = t0 + ms(60_000);
        assert_eq!(history.lag_of(500, now), Some(Duration::ZERO));
        assert_eq!(
            history.lag(500, now),
            Some(Lag {
                bytes: 0,
                time: Duration::ZERO
            })
        );
        // Unchanged positions are not stored again.
        assert_eq!(history.samples.len(), 1);
    }

    #[test]
    fn a_replica_ahead_of_our_last_primary_sample_is_not_late() {
        let t0 = Instant::now();
        let history = polled(t0, &[100, 200]);
        // The replica was polled after the primary moved to 250, before we sampled it.
        assert_eq!(history.lag_of(250, t0 + ms(150)), Some(Duration::ZERO));
        assert_eq!(history.lag(250, t0 + ms(150)).map(|l| l.bytes), Some(0));
    }

    #[test]
    fn under_steady_writes_a_replica_just_behind_is_barely_late() {
        let t0 = Instant::now();
        let history = polled(t0, &[100, 200, 300, 400, 500]);
        // At t0+420 ms the replica has replayed 400 but not 500 (sampled at t0+400 ms).
        let lag = history.lag(400, t0 + ms(420));
        assert_eq!(
            lag,
            Some(Lag {
                bytes: 100,
                time: ms(20)
            })
        );
        // Between two samples: late since the first sample beyond it (300, at t0+200 ms).
        assert_eq!(history.lag_of(250, t0 + ms(420)), Some(ms(220)));
        // Exactly at a sample's position: that sample is not beyond it.
        assert_eq!(history.lag_of(300, t0 + ms(420)), Some(ms(120)));
    }

    #[test]
    fn a_paused_replica_grows_late_with_wall_time() {
        let t0 = Instant::now();
        // Idle at 100 for 2 s, then the primary moves on every interval for 3 s.
        let mut positions = vec![100; 20];
        positions.extend((1..=30).map(|i| 100 + i * 10));
        let mut history = polled(t0, &positions);
        let first_write = t0 + ms(2000);
        assert_eq!(history.lag(100, first_write).map(|l| l.bytes), Some(300));
        for later in [0, 500, 3000, 60_000] {
            let now = first_write + ms(later);
            // The primary is still polled (and sits at 400 after its writes).
            history.record(400, now.max(first_write + ms(2900)));
            assert_eq!(history.lag_of(100, now), Some(ms(later)));
        }
        // Replayed up to the middle of the writes (250): late since 260, the 16th write.
        let now = first_write + ms(60_000);
        assert_eq!(history.lag_of(250, now), Some(ms(60_000 - 1500)));
    }

    #[test]
    fn a_replica_older_than_the_whole_history_is_at_least_as_late_as_it() {
        let t0 = Instant::now();
        let history = polled(t0, &[1000, 2000]);
        assert_eq!(history.lag_of(10, t0 + ms(500)), Some(ms(500)));
        assert_eq!(history.lag_of(0, t0 + ms(500)), Some(ms(500)));
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_and_the_oldest_bounds_the_lag() {
        let t0 = Instant::now();
        // A third of the span per poll: a ring of 3.
        let mut history = LsnHistory::new(SPAN / 3, STALE);
        for i in 0..10u32 {
            history.record(u64::from(i + 1) * 100, t0 + ms(10) * i);
        }
        assert_eq!(history.samples.len(), 3);
        assert_eq!(history.samples.front().map(|s| s.lsn), Some(800));
        // 150 was passed at t0+10 ms in truth, but the oldest sample left is from t0+70 ms.
        assert_eq!(history.lag_of(150, t0 + ms(100)), Some(ms(30)));
        assert_eq!(history.lag_of(850, t0 + ms(100)), Some(ms(20)));
    }

    #[test]
    fn the_ring_is_capped_however_short_the_interval() {
        let mut history = LsnHistory::new(Duration::ZERO, STALE);
        let t0 = Instant::now();
        for i in 0..(MAX_SAMPLES as u64 + 50) {
            history.record(i + 1, t0);
        }
        assert_eq!(history.samples.len(), MAX_SAMPLES);
        assert_eq!(LsnHistory::new(INTERVAL, STALE).capacity, 6000);
        assert_eq!(LsnHistory::new(Duration::MAX, STALE).capacity, 1);
    }

    #[test]
    fn a_stale_history_knows_no_lag() {
        let t0 = Instant::now();
        let mut history = polled(t0, &[100, 200]);
        let last = t0 + INTERVAL;
        assert_eq!(history.lag_of(200, last + STALE), Some(Duration::ZERO));
        assert_eq!(history.lag_of(200, last + STALE + ms(1)), None);
        assert_eq!(history.lag(100, last + STALE + ms(1)), None);
        // Seeing the same position again makes it fresh, without a new sample.
        history.record(200, last + ms(5000));
        assert_eq!(history.lag_of(100, last + ms(5000)), Some(ms(5000)));
        assert_eq!(history.samples.len(), 2);
    }

    #[test]
    fn a_position_going_back_starts_a_new_history() {
        let t0 = Instant::now();
        let mut history = polled(t0, &[1000, 2000]);
        history.record(50, t0 + ms(300));
        assert_eq!(history.samples.len(), 1);
        assert_eq!(history.lag_of(50, t0 + ms(400)), Some(Duration::ZERO));
        assert_eq!(history.lag_of(10, t0 + ms(400)), Some(ms(100)));
    }

    #[test]
    fn a_sample_newer_than_the_replica_poll_counts_as_no_time() {
        let t0 = Instant::now();
        let history = polled(t0, &[100, 200]);
        // The replica's answer is timed before the primary sample that passed it.
        assert_eq!(history.lag_of(150, t0 + ms(50)), Some(Duration::ZERO));
    }

    #[test]
    fn the_distance_in_bytes_saturates() {
        let t0 = Instant::now();
        let history = polled(t0, &[u64::MAX]);
        assert_eq!(history.lag(0, t0).map(|l| l.bytes), Some(u64::MAX));
        assert_eq!(history.lag(u64::MAX, t0).map(|l| l.bytes), Some(0));
    }
}
