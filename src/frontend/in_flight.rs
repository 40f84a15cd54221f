//! The units sent on the attached connection whose answers have not all come back. The session
//! state takes in each unit's effects at that unit's own ReadyForQuery, with its own outcome: a
//! ROLLBACK TO SAVEPOINT pipelined behind a statement that fails rescues the transaction's
//! settings, as it does on the server. What the cache and the connection's release need is
//! kept for all of them together, until nothing is in flight.

use std::collections::VecDeque;

use smallvec::SmallVec;

use crate::route::classify::{SessionEffect, TxControl};

/// One unit's effects on the session, and whether the server reported an error in it.
#[derive(Debug, Default, PartialEq)]
pub struct SentUnit {
    pub effects: Vec<SessionEffect>,
    pub failed: bool,
}

#[derive(Debug, Default)]
pub struct InFlight {
    /// Oldest first; one per ReadyForQuery awaited, and the unit still gathering last.
    units: VecDeque<SentUnit>,
    /// The last unit has no Query, Sync or function call yet: the client cut it at Flush (or
    /// it outgrew the gathering limit), and its next messages belong to it.
    open: bool,
    /// What the units since the connection was last quiet did to the transaction, in order.
    pub tx: SmallVec<[TxControl; 2]>,
    /// One of them failed.
    pub failed: bool,
}

impl InFlight {
    /// A unit's messages go out with these effects.
    pub fn send(&mut self, tx: impl IntoIterator<Item = TxControl>, effects: Vec<SessionEffect>) {
        self.tx.extend(tx);
        match self.units.back_mut() {
            Some(open) if self.open => open.effects.extend(effects),
            _ => {
                self.units.push_back(SentUnit {
                    effects,
                    failed: false,
                });
                self.open = true;
            }
        }
    }

    /// A Query, Sync or function call went out: the last unit awaits its ReadyForQuery.
    pub fn close(&mut self) {
        if !self.open {
            // A second Sync in the same messages: its ReadyForQuery ends a unit of its own.
            self.units.push_back(SentUnit::default());
        }
        self.open = false;
    }

    /// An ErrorResponse: it belongs to the oldest unit not answered yet.
    pub fn fail(&mut self) {
        self.failed = true;
        if let Some(oldest) = self.units.front_mut() {
            oldest.failed = true;
        }
    }

    /// A ReadyForQuery: the oldest unit is answered.
    pub fn answered(&mut self) -> SentUnit {
        if self.units.len() == 1 {
            self.open = false;
        }
        self.units.pop_front().unwrap_or_default()
    }

    /// Nothing is in flight any more: what the units did together, for the cache.
    pub fn quiet(&mut self) -> (SmallVec<[TxControl; 2]>, bool) {
        (
            std::mem::take(&mut self.tx),
            std::mem::take(&mut self.failed),
        )
    }

    /// The units in flight have opened a transaction block that they have not closed.
    pub fn opens_transaction(&self) -> bool {
        super::work::opens_transaction(&self.tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str) -> SessionEffect {
        SessionEffect::Set {
            name: name.into(),
            sql: format!("SET {name} = 1"),
        }
    }

    #[test]
    fn each_answer_takes_its_own_units_effects_and_failure() {
        let mut in_flight = InFlight::default();
        in_flight.send([], vec![set("a")]);
        in_flight.close();
        in_flight.send([], vec![set("b")]);
        in_flight.close();
        in_flight.fail();
        let first = in_flight.answered();
        assert_eq!((first.effects, first.failed), (vec![set("a")], true));
        let second = in_flight.answered();
        assert_eq!((second.effects, second.failed), (vec![set("b")], false));
        assert!(in_flight.quiet().1, "the failure counts for the cache");
    }

    #[test]
    fn a_unit_cut_at_flush_gathers_until_its_sync() {
        let mut in_flight = InFlight::default();
        in_flight.send([], vec![set("a")]);
        in_flight.send([TxControl::Rollback], vec![set("b")]);
        in_flight.close();
        assert_eq!(in_flight.answered().effects, vec![set("a"), set("b")]);
        assert_eq!(in_flight.answered(), SentUnit::default());
        // Answered by pgsplit's own Sync while still open: the next unit starts afresh.
        in_flight.send([], vec![set("c")]);
        in_flight.answered();
        in_flight.send([], vec![set("d")]);
        in_flight.close();
        assert_eq!(in_flight.answered().effects, vec![set("d")]);
        assert_eq!(in_flight.quiet().0.as_slice(), &[TxControl::Rollback]);
    }
}
