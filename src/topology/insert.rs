//! The primary's WAL insert position as the monitor reads it, numbered by poll, so that a
//! session can learn where its commit stands without asking (`causal_token = "on_read"`): any
//! position read in a poll begun after the commit was answered is at or past its commit record.

use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers the monitor's polls of one node and keeps the insert position of the latest one.
#[derive(Debug, Default)]
pub struct InsertPosition {
    /// Polls begun so far; a poll's number is the count once it has begun.
    begun: AtomicU64,
    /// The number of the poll that read `position` (written after it, read before it).
    read_by: AtomicU64,
    /// The WAL insert position the node reported; 0 while unknown (a replica has none).
    position: AtomicU64,
}

impl InsertPosition {
    /// Counts a poll about to be sent, and returns its number for [`Self::publish`].
    pub fn begin_poll(&self) -> u64 {
        self.begun.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records what the poll numbered `poll` read (0: none).
    pub fn publish(&self, poll: u64, position: u64) {
        self.position.store(position, Ordering::Relaxed);
        // Released after the position: whoever sees this number sees that position or a newer.
        self.read_by.fetch_max(poll, Ordering::Release);
    }

    /// The mark to take once a commit has been answered, for [`Self::past`].
    pub fn mark(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// A position at or past every commit answered before `mark` was taken: the position of a
    /// poll begun after it, once one has been read; None until then.
    pub fn past(&self, mark: u64) -> Option<u64> {
        if self.read_by.load(Ordering::Acquire) <= mark {
            return None;
        }
        Some(self.position.load(Ordering::Relaxed)).filter(|&position| position > 0)
    }

    /// The last position read, whichever poll read it (0: none).
    pub fn last(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_poll_begun_after_the_mark_is_past_it() {
        let insert = InsertPosition::default();
        let before = insert.begin_poll();
        let mark = insert.mark();
        insert.publish(before, 100);
        assert_eq!(
            insert.past(mark),
            None,
            "begun before the commit was answered"
        );
        let after = insert.begin_poll();
        insert.publish(after, 200);
        assert_eq!(insert.past(mark), Some(200));
        assert_eq!(
            insert.past(insert.mark()),
            None,
            "a later commit waits again"
        );
    }

    #[test]
    fn a_poll_that_read_no_position_is_not_past_anything() {
        let insert = InsertPosition::default();
        let mark = insert.mark();
        let poll = insert.begin_poll();
        insert.publish(poll, 0);
        assert_eq!(insert.past(mark), None);
    }

    #[test]
    fn a_slow_poll_answered_last_does_not_hide_a_newer_one() {
        let insert = InsertPosition::default();
        let mark = insert.mark();
        let first = insert.begin_poll();
        let second = insert.begin_poll();
        insert.publish(second, 300);
        insert.publish(first, 250);
        assert!(insert.past(mark).is_some());
    }
}
