//! A node's health: the verdict of its checks (the monitor's polls) and of live requests, as
//! atomics the data path reads without waiting. A banned node gets no work until its ban has
//! run out; a check or request that fails again bans it again.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::HealthSettings;

/// The moment health times are counted from (atomics hold microseconds since it): an hour
/// before it was first asked for, so that moments shortly before that are told apart too.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
    })
}

fn micros_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_micros()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
pub struct Health {
    /// Checks failed in a row.
    failures: AtomicU32,
    /// Banned until this many microseconds after the epoch (0: never banned).
    banned_until: AtomicU64,
    /// Why the last ban happened, for logs and status pages (never read on the data path).
    reason: Mutex<Option<String>>,
    /// When the node last finished a unit of live work, in microseconds after the epoch.
    last_answer: AtomicU64,
}

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Passed,
    /// Refused or broken: counts towards `ban_after`.
    Failed,
    /// Not answered in time: a hung node, banned at once when other nodes take its work
    /// (`replaceable`: a replica); unless it finished live work within that time, which a hung
    /// node cannot (then it is only slow: a loaded primary must not be taken out of service by
    /// one slow poll). A primary's work has nowhere else to go, so for it a timeout counts
    /// towards `ban_after` like a refused check: a ban would turn one stall of the machine (an
    /// idle primary's poll late behind everything else that ran) into refused statements.
    TimedOut {
        replaceable: bool,
    },
}

impl Health {
    /// Asked for every candidate of every balanced read: a node never banned, or whose ban
    /// was seen to run out, answers without reading the clock.
    pub fn is_banned(&self) -> bool {
        let until = self.banned_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if micros_since_epoch(Instant::now()) < until {
            return true;
        }
        // Over: forget it, unless a new ban came in meanwhile.
        let _ = self
            .banned_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    /// Why the node was last banned, while it is.
    pub fn ban_reason(&self) -> Option<String> {
        if !self.is_banned() {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Bans the node for `duration` (a live request failed, or checks did).
    pub fn ban(&self, node: &str, reason: &str, duration: Duration) {
        let until = micros_since_epoch(Instant::now() + duration);
        let was_banned = self.is_banned();
        self.banned_until.fetch_max(until, Ordering::Relaxed);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
        if !was_banned {
            tracing::warn!(node, reason, ban = ?duration, "node banned");
            crate::events::record("ban", Some(node), reason);
        }
    }

    /// Lifts a ban at once (an operator's UNBAN from the console). The failure count starts
    /// over too, so one more failed check does not ban the node straight back.
    pub fn unban(&self, node: &str) {
        let was_banned = self.is_banned();
        self.banned_until.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if was_banned {
            tracing::info!(node, "node unbanned");
            crate::events::record("unban", Some(node), "ban lifted by an operator");
        }
    }

    /// The node finished a unit of live work at `at`.
    pub fn note_answer(&self, at: Instant) {
        // At least 1: 0 means "never".
        self.last_answer
            .fetch_max(micros_since_epoch(at).max(1), Ordering::Relaxed);
    }

    /// Whether the node finished live work within the last `span`.
    fn answered_within(&self, span: Duration) -> bool {
        let since = Instant::now()
            .checked_sub(span)
            .map_or(0, micros_since_epoch);
        self.last_answer.load(Ordering::Relaxed) > since
    }

    /// Counts a check: passing ones reset the count, failing ones ban after `ban_after` in a
    /// row, and a timed-out one bans a replaceable node at once (see [`CheckOutcome`]), unless
    /// the node is answering live work.
    pub fn record_check(
        &self,
        node: &str,
        outcome: CheckOutcome,
        reason: &str,
        settings: &HealthSettings,
    ) {
        match outcome {
            CheckOutcome::Passed => {
                if self.failures.swap(0, Ordering::Relaxed) > 0 && !self.is_banned() {
                    tracing::info!(node, "node healthy again");
                    crate::events::record("healthy", Some(node), "health checks pass again");
                }
            }
            CheckOutcome::TimedOut { .. } if self.answered_within(settings.timeout) => {
                tracing::info!(
                    node,
                    reason,
                    "a health check timed out, but the node is answering work: slow, not banned"
                );
            }
            CheckOutcome::TimedOut { replaceable: true } => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.ban(node, reason, settings.ban_time);
            }
            CheckOutcome::TimedOut { replaceable: false } | CheckOutcome::Failed => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= settings.ban_after.max(1) {
                    self.ban(node, reason, settings.ban_time);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUNG_REPLICA: CheckOutcome = CheckOutcome::TimedOut { replaceable: true };

    fn settings() -> HealthSettings {
        HealthSettings {
            timeout: Duration::from_secs(1),
            ban_after: 2,
            ban_time: Duration::from_millis(200),
        }
    }

    #[test]
    fn failures_in_a_row_ban_and_the_ban_runs_out() {
        let h = Health::default();
        h.record_check("n", CheckOutcome::Failed, "refused", &settings());
        assert!(!h.is_banned());
        h.record_check("n", CheckOutcome::Failed, "refused", &settings());
        assert!(h.is_banned());
        assert_eq!(h.ban_reason().as_deref(), Some("refused"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!h.is_banned());
        // The ban that ran out is forgotten; a new one still counts.
        h.ban("n", "lost", Duration::from_millis(200));
        assert!(h.is_banned());
        assert_eq!(h.ban_reason().as_deref(), Some("lost"));
    }

    #[test]
    fn unban_lifts_a_ban_at_once() {
        let h = Health::default();
        h.ban("n", "by hand", Duration::from_secs(60));
        assert!(h.is_banned());
        h.unban("n");
        assert!(!h.is_banned());
        assert_eq!(h.ban_reason(), None);
    }

    #[test]
    fn a_pass_resets_the_count_and_a_timeout_bans_at_once() {
        let h = Health::default();
        h.record_check("n", CheckOutcome::Failed, "refused", &settings());
        h.record_check("n", CheckOutcome::Passed, "", &settings());
        h.record_check("n", CheckOutcome::Failed, "refused", &settings());
        assert!(!h.is_banned());
        h.record_check("n", HUNG_REPLICA, "hung", &settings());
        assert!(h.is_banned());
    }

    #[test]
    fn a_primary_that_times_out_is_banned_only_after_ban_after_in_a_row() {
        let h = Health::default();
        let primary = CheckOutcome::TimedOut { replaceable: false };
        h.record_check("n", primary, "one stall", &settings());
        assert!(!h.is_banned(), "one timeout");
        h.record_check("n", CheckOutcome::Passed, "", &settings());
        h.record_check("n", primary, "another stall", &settings());
        assert!(!h.is_banned(), "a pass in between starts the count again");
        h.record_check("n", primary, "hung", &settings());
        assert!(h.is_banned(), "ban_after (2) timeouts in a row");
    }

    #[test]
    fn a_timeout_while_the_node_answers_work_is_slowness_not_a_hang() {
        let h = Health::default();
        h.note_answer(Instant::now());
        h.record_check("n", HUNG_REPLICA, "slow poll", &settings());
        assert!(!h.is_banned(), "work answered within the timeout");
        let stale = Health::default();
        stale.note_answer(Instant::now() - Duration::from_secs(5));
        stale.record_check("n", HUNG_REPLICA, "hung", &settings());
        assert!(
            stale.is_banned(),
            "nothing answered for longer than the timeout"
        );
    }
}
