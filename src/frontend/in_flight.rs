//! The units sent on the attached connection whose answers have not all come back. The session
//! state takes in each unit's effects at that unit's own ReadyForQuery, with its own outcome: a
//! ROLLBACK TO SAVEPOINT pipelined behind a statement that fails rescues the transaction's
//! settings, as it does on the server. What the cache and the connection's release need is
//! kept for all of them together, until nothing is in flight.

use std::collections::VecDeque;

use smallvec::SmallVec;

use crate::route::classify::{SessionEffect, TxControl};

use super::work::UnitEffects;

/// One unit's effects on the session, and how far the server got with its statements.
#[derive(Debug, Default, PartialEq)]
pub struct SentUnit {
    pub effects: UnitEffects,
    /// The statements the server completed (CommandComplete, PortalSuspended or
    /// EmptyQueryResponse) before an error, if any, ended the unit.
    pub completed: usize,
    pub failed: bool,
}

impl SentUnit {
    /// The effects of the statements that ran (the session state sorts out the rest).
    pub fn effects_that_ran(self) -> Vec<SessionEffect> {
        let completed_before_error = self.failed.then_some(self.completed);
        self.effects.that_ran(completed_before_error)
    }
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
    pub fn send(&mut self, tx: impl IntoIterator<Item = TxControl>, effects: UnitEffects) {
        self.tx.extend(tx);
        match self.units.back_mut() {
            Some(open) if self.open => open.effects.extend(effects),
            _ => {
                self.units.push_back(SentUnit {
                    effects,
                    ..SentUnit::default()
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

    /// A statement's end (CommandComplete, PortalSuspended, EmptyQueryResponse): it belongs
    /// to the oldest unit not answered yet.
    pub fn statement_done(&mut self) {
        if let Some(oldest) = self.units.front_mut() {
            oldest.completed += 1;
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
    use crate::route::classify::{FunctionPolicy, classify};

    fn set(name: &str) -> SessionEffect {
        SessionEffect::Set {
            name: name.into(),
            sql: format!("SET {name} = 1"),
        }
    }

    /// What the statements of `sql`, classified, do to the session.
    fn effects_of(sql: &str) -> UnitEffects {
        let mut effects = UnitEffects::default();
        effects.add(&classify(sql, &FunctionPolicy::default()));
        effects
    }

    fn taken(unit: SentUnit) -> Vec<SessionEffect> {
        unit.effects_that_ran()
    }

    #[test]
    fn a_failed_unit_keeps_the_effects_of_the_statements_completed_before_the_error() {
        // A text of five statements, and pipelined after it a unit cut at Flush: its
        // statements count after the text's.
        let text = || effects_of("SET a = 1; SELECT 1; SET b = 1; COMMIT; SET c = 1");
        let ran = |completed| {
            taken(SentUnit {
                effects: text(),
                completed,
                failed: true,
            })
        };
        assert_eq!(ran(0), vec![]);
        assert_eq!(ran(2), vec![set("a")], "the SELECT completed, SET b failed");
        assert_eq!(ran(4), vec![set("a"), set("b"), SessionEffect::Commit]);
        assert_eq!(text().that_ran(None).len(), 4, "no error: all of them");

        let mut in_flight = InFlight::default();
        in_flight.send([], text());
        in_flight.send([], effects_of("SET d = 1"));
        in_flight.close();
        for _ in 0..5 {
            in_flight.statement_done();
        }
        in_flight.fail();
        assert_eq!(taken(in_flight.answered()).len(), 4);
    }

    #[test]
    fn each_answer_takes_its_own_units_effects_and_failure() {
        let mut in_flight = InFlight::default();
        in_flight.send([], effects_of("SET a = 1"));
        in_flight.close();
        in_flight.send([], effects_of("SET b = 1"));
        in_flight.close();
        in_flight.fail();
        let first = in_flight.answered();
        assert!(first.failed);
        assert_eq!(taken(first), vec![]);
        let second = in_flight.answered();
        assert!(!second.failed);
        assert_eq!(taken(second), vec![set("b")]);
        assert!(in_flight.quiet().1, "the failure counts for the cache");
    }

    #[test]
    fn a_unit_cut_at_flush_gathers_until_its_sync() {
        let mut in_flight = InFlight::default();
        in_flight.send([], effects_of("SET a = 1"));
        in_flight.send([TxControl::Rollback], effects_of("SET b = 1"));
        in_flight.close();
        assert_eq!(taken(in_flight.answered()), vec![set("a"), set("b")]);
        assert_eq!(in_flight.answered(), SentUnit::default());
        // Answered by pgsplit's own Sync while still open: the next unit starts afresh.
        in_flight.send([], effects_of("SET c = 1"));
        in_flight.answered();
        in_flight.send([], effects_of("SET d = 1"));
        in_flight.close();
        assert_eq!(taken(in_flight.answered()), vec![set("d")]);
        assert_eq!(in_flight.quiet().0.as_slice(), &[TxControl::Rollback]);
    }
}
