//! The units sent on the attached connection whose answers have not all come back. The session
//! state takes in each unit's effects at that unit's own ReadyForQuery, with its own outcome: a
//! ROLLBACK TO SAVEPOINT pipelined behind a statement that fails rescues the transaction's
//! settings, as it does on the server. What the cache and the connection's release need is
//! kept for all of them together, until nothing is in flight.

use std::collections::VecDeque;

use smallvec::SmallVec;

use crate::route::classify::{SessionEffect, TxControl};

/// One unit's effects on the session, and how far the server got with its statements.
#[derive(Debug, Default, PartialEq)]
pub struct SentUnit {
    pub effects: Vec<SessionEffect>,
    /// Where each statement's effects end: (statements up to and including it, effects up to
    /// and including its own), for the statements that have any.
    pub effect_ends: Vec<(usize, usize)>,
    /// The statements the unit runs.
    pub statements: usize,
    /// The statements the server completed (CommandComplete, PortalSuspended or
    /// EmptyQueryResponse) before an error, if any, ended the unit.
    pub completed: usize,
    pub failed: bool,
}

impl SentUnit {
    /// The effects of the statements that ran: all of them, or those of the statements the
    /// server completed before the error (a SQL PREPARE, or what a COMMIT inside the text
    /// committed, outlives the error; the session state sorts out the rest).
    pub fn effects_that_ran(mut self) -> Vec<SessionEffect> {
        if self.failed {
            let ran = self
                .effect_ends
                .iter()
                .take_while(|&&(statements, _)| statements <= self.completed)
                .last()
                .map_or(0, |&(_, effects)| effects);
            self.effects.truncate(ran);
        }
        self.effects
    }

    /// Adds the effects of more statements of the unit (a unit cut at Flush gathers until
    /// its Sync).
    fn extend(&mut self, more: SentUnit) {
        let before = (self.statements, self.effects.len());
        append_effect_ends(&mut self.effect_ends, &more.effect_ends, before);
        self.statements += more.statements;
        self.effects.extend(more.effects);
    }
}

/// Appends `more`, the effect ends of statements that come after `before` (statements,
/// effects), counted from there, to `ends`.
pub fn append_effect_ends(
    ends: &mut Vec<(usize, usize)>,
    more: &[(usize, usize)],
    before: (usize, usize),
) {
    let (statements, effects) = before;
    ends.extend(more.iter().map(|&(s, e)| (statements + s, effects + e)));
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
    pub fn send(&mut self, tx: impl IntoIterator<Item = TxControl>, unit: SentUnit) {
        self.tx.extend(tx);
        match self.units.back_mut() {
            Some(open) if self.open => open.extend(unit),
            _ => {
                self.units.push_back(unit);
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

    fn set(name: &str) -> SessionEffect {
        SessionEffect::Set {
            name: name.into(),
            sql: format!("SET {name} = 1"),
        }
    }

    /// A unit of one statement with one effect.
    fn one_statement(effect: SessionEffect) -> SentUnit {
        SentUnit {
            effects: vec![effect],
            effect_ends: vec![(1, 1)],
            statements: 1,
            ..SentUnit::default()
        }
    }

    #[test]
    fn a_failed_unit_keeps_the_effects_of_the_statements_completed_before_the_error() {
        // `SET a; SELECT; SET b; COMMIT; SET c` as one text, and pipelined after it a unit
        // cut at Flush: its statements count after the text's.
        let text = || SentUnit {
            effects: vec![set("a"), set("b"), SessionEffect::Commit, set("c")],
            effect_ends: vec![(1, 1), (3, 2), (4, 3), (5, 4)],
            statements: 5,
            ..SentUnit::default()
        };
        let ran = |completed| {
            let mut unit = text();
            unit.completed = completed;
            unit.failed = true;
            unit.effects_that_ran()
        };
        assert_eq!(ran(0), vec![]);
        assert_eq!(ran(2), vec![set("a")], "the SELECT completed, SET b failed");
        assert_eq!(ran(4), vec![set("a"), set("b"), SessionEffect::Commit]);
        assert_eq!(text().effects_that_ran().len(), 4, "no error: all of them");

        let mut in_flight = InFlight::default();
        in_flight.send([], text());
        in_flight.send([], one_statement(set("d")));
        in_flight.close();
        for _ in 0..5 {
            in_flight.statement_done();
        }
        in_flight.fail();
        assert_eq!(in_flight.answered().effects_that_ran().len(), 4);
    }

    #[test]
    fn each_answer_takes_its_own_units_effects_and_failure() {
        let mut in_flight = InFlight::default();
        in_flight.send([], one_statement(set("a")));
        in_flight.close();
        in_flight.send([], one_statement(set("b")));
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
        in_flight.send([], one_statement(set("a")));
        in_flight.send([TxControl::Rollback], one_statement(set("b")));
        in_flight.close();
        assert_eq!(in_flight.answered().effects, vec![set("a"), set("b")]);
        assert_eq!(in_flight.answered(), SentUnit::default());
        // Answered by pgsplit's own Sync while still open: the next unit starts afresh.
        in_flight.send([], one_statement(set("c")));
        in_flight.answered();
        in_flight.send([], one_statement(set("d")));
        in_flight.close();
        assert_eq!(in_flight.answered().effects, vec![set("d")]);
        assert_eq!(in_flight.quiet().0.as_slice(), &[TxControl::Rollback]);
    }
}
