//! What a client has set up in its session, kept by pgsplit so that it follows the client to
//! whichever server connection runs its next statement: settings, prepared statements, pins,
//! and the effects of the transaction in progress (which count only once it commits).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::backend::{ServerConn, Settings};

use crate::route::classify::{PinCause, SessionEffect};

#[derive(Default)]
pub struct SessionState {
    /// Settings from the startup packet, as SQL that sets them (name -> SET statement).
    startup: BTreeMap<String, String>,
    /// Settings the client SET since, which override the startup ones.
    explicit: BTreeMap<String, String>,
    /// The two merged (what a server connection must have), rebuilt when either changes:
    /// every checkout compares it with the connection's.
    desired: Settings,
    /// Whether `desired` sets `default_transaction_read_only` on (asked by every unit).
    read_only_by_default: bool,
    /// SQL-level prepared statements: name -> the PREPARE statement.
    pub sql_prepared: HashMap<String, String>,
    /// Protocol-level prepared statements: name ("" for the unnamed one) -> the Parse message.
    /// Looked up and replaced by every extended-protocol unit, hence foldhash over SipHash.
    pub statements: foldhash::HashMap<String, Bytes>,
    /// Portal -> the statement it was bound from (for classifying an Execute).
    pub portals: foldhash::HashMap<String, String>,
    /// Why the session must stay on its primary connection, if it must.
    pins: Vec<PinCause>,
    /// Pins taken when their statement was sent, for state that a rollback undoes (a temporary
    /// table, a cursor WITH HOLD, a session-wide `set_config`), whose statement has not
    /// committed yet: they lift if it never does.
    unconfirmed_pins: Vec<PinCause>,
    /// The cursors WITH HOLD declared and not known to be closed: the last one closed lifts
    /// the session's pin for them.
    hold_cursors: Vec<String>,
    /// The channels the session listens on, as far as committed LISTENs and UNLISTENs tell:
    /// once none is left, the session's pin for them lifts.
    listening: Vec<String>,
    /// Effects of the open transaction block and its savepoints, in order: applied at COMMIT,
    /// dropped at ROLLBACK, cut back to a savepoint by ROLLBACK TO.
    in_transaction: Vec<SessionEffect>,
    /// The transaction block failed (status E): its COMMIT is a rollback, unless a ROLLBACK TO
    /// a savepoint rescues it first.
    aborted: bool,
}

/// How one unit of work (a Query, or messages up to Sync) ended, from its ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitOutcome {
    /// Transaction status after the unit: b'I', b'T' or b'E'.
    pub status: u8,
    /// The server reported an error during the unit.
    pub failed: bool,
}

impl SessionState {
    pub fn new(startup_settings: impl Iterator<Item = (String, String)>) -> Self {
        let mut state = SessionState {
            startup: startup_settings
                .map(|(name, value)| (name.to_ascii_lowercase(), set_sql(&name, &value)))
                .collect(),
            ..Default::default()
        };
        state.merge_settings();
        state
    }

    /// The settings a server connection must have for this session: name -> SQL that sets it
    /// (the startup ones first, then those the client SET).
    pub fn desired_settings(&self) -> &Settings {
        &self.desired
    }

    fn merge_settings(&mut self) {
        let overridden = |name: &String| self.explicit.contains_key(name);
        let merged = self
            .startup
            .iter()
            .filter(|(name, _)| !overridden(name))
            .chain(self.explicit.iter())
            .map(|(name, sql)| (name.clone(), sql.clone()))
            .collect();
        self.desired = Settings::from_pairs(merged);
        self.read_only_by_default = self
            .desired
            .get("default_transaction_read_only")
            .is_some_and(sets_on);
    }

    pub fn pin(&self) -> Option<PinCause> {
        self.pins.first().copied()
    }

    /// Pins take effect as soon as their statement is sent: the state exists on the server
    /// connection from then on. Those whose state a rollback undoes hold once it commits, see
    /// [`SessionState::lift_unconfirmed_pins`].
    pub fn add_pins(&mut self, effects: &[SessionEffect]) {
        for effect in effects {
            if let SessionEffect::Pin(cause) = effect
                && !self.pins.contains(cause)
            {
                tracing::info!(cause = ?cause, "session pinned to its primary connection");
                self.pins.push(*cause);
                if undone_by_rollback(*cause) {
                    self.unconfirmed_pins.push(*cause);
                }
            }
        }
    }

    /// Nothing is in flight and no transaction is open: the pins whose statement never
    /// committed (it failed, or its transaction rolled back) lift, as the state they stood for
    /// is gone from the server too.
    pub fn lift_unconfirmed_pins(&mut self) {
        for cause in std::mem::take(&mut self.unconfirmed_pins) {
            tracing::info!(cause = ?cause, "pin lifted: its statement did not commit");
            self.pins.retain(|pin| *pin != cause);
        }
    }

    /// A pin's statement committed. Taken again if a rollback pipelined before it lifted it.
    fn confirm_pin(&mut self, cause: PinCause) {
        self.unconfirmed_pins.retain(|pin| *pin != cause);
        if !self.pins.contains(&cause) {
            self.pins.push(cause);
        }
    }

    /// Whether `SET default_transaction_read_only = on` (or the session characteristic) holds.
    pub fn default_read_only(&self) -> bool {
        self.read_only_by_default
    }

    /// Applies what a finished unit did, given the effects of the statements that ran (those
    /// the server completed, before an error if one ended the unit): they count once they ran
    /// outside a transaction block, wait for COMMIT inside one, and vanish with a ROLLBACK, an
    /// error in their block, or a ROLLBACK TO a savepoint set before them; but SQL PREPARE and
    /// DEALLOCATE, which no rollback undoes, count once they ran. Returns the effects that took
    /// hold (the connection that ran them has them too).
    pub fn finish_unit(
        &mut self,
        ran: Vec<SessionEffect>,
        outcome: UnitOutcome,
    ) -> Vec<SessionEffect> {
        let mut taken = Vec::new();
        for effect in ran {
            self.follow(effect, &mut taken);
        }
        match outcome.status {
            // Out of any block: what the unit did outside one (or in the implicit block of a
            // text of several statements) ends with it.
            b'I' => self.end_block(!outcome.failed, &mut taken),
            b'E' => self.aborted = true,
            _ => {}
        }
        taken
    }

    /// The transaction ended without a server's answer saying so (pgsplit rolled it back, or
    /// answered the end of one nothing ran in): none of its effects holds.
    pub fn forget_transaction(&mut self) {
        let rolled_back = UnitOutcome {
            status: b'I',
            failed: true,
        };
        self.finish_unit(vec![SessionEffect::Rollback], rolled_back);
    }

    /// One effect of the transaction in progress (or of a unit outside one), in order.
    fn follow(&mut self, effect: SessionEffect, taken: &mut Vec<SessionEffect>) {
        match &effect {
            SessionEffect::RollbackToSavepoint { name } => {
                // The savepoint stays; what came after it goes, and the block runs again.
                if let Some(at) = self.savepoint_position(name) {
                    self.in_transaction.truncate(at + 1);
                    self.aborted = false;
                }
            }
            SessionEffect::ReleaseSavepoint { name } => {
                // It and the savepoints after it go; the effects stay.
                if let Some(at) = self.savepoint_position(name) {
                    let since = self.in_transaction.split_off(at);
                    let effects = since.into_iter().filter(|e| !is_savepoint_mark(e));
                    self.in_transaction.extend(effects);
                }
            }
            SessionEffect::Commit => self.end_block(true, taken),
            SessionEffect::Rollback => self.end_block(false, taken),
            // Not transactional in PostgreSQL: no ROLLBACK undoes them.
            SessionEffect::Prepare { .. } | SessionEffect::Deallocate { .. } => {
                self.apply(&effect);
                taken.push(effect);
            }
            _ => self.in_transaction.push(effect),
        }
    }

    /// The block ends: its effects take hold if it commits and did not fail (the server
    /// answers the COMMIT of a failed block with a rollback).
    fn end_block(&mut self, commits: bool, taken: &mut Vec<SessionEffect>) {
        // Taken in any case: a rollback that ends a failed block clears the failure too.
        let aborted = std::mem::take(&mut self.aborted);
        let effects = std::mem::take(&mut self.in_transaction);
        if !commits || aborted {
            // A LISTEN pins when sent, but only takes hold at commit.
            self.unpin_listen_if_silent();
            return;
        }
        for effect in effects {
            if !lasts_only_the_transaction(&effect) {
                self.apply(&effect);
                taken.push(effect);
            }
        }
    }

    /// No channel is listened on any more: the session may leave its connection.
    fn unpin_listen_if_silent(&mut self) {
        if self.listening.is_empty() {
            self.pins.retain(|p| *p != PinCause::Listen);
        }
    }

    /// The `SET LOCAL`s in force in the transaction in progress, in order: a ROLLBACK TO a
    /// savepoint undoes those set after it, as in PostgreSQL.
    pub fn local_settings(&self) -> impl Iterator<Item = &SessionEffect> {
        self.in_transaction
            .iter()
            .filter(|effect| matches!(effect, SessionEffect::SetLocal { .. }))
    }

    /// A `SET LOCAL` pgsplit answered itself takes its place among the transaction's effects,
    /// so that a later ROLLBACK TO a savepoint set before it undoes it.
    pub fn note_set_local(&mut self, effect: SessionEffect) {
        self.in_transaction.push(effect);
    }

    /// Where the latest savepoint of that name is in the transaction's effects.
    fn savepoint_position(&self, name: &str) -> Option<usize> {
        self.in_transaction
            .iter()
            .rposition(|effect| matches!(effect, SessionEffect::Savepoint { name: n } if n == name))
    }

    fn apply(&mut self, effect: &SessionEffect) {
        match effect {
            SessionEffect::Set { name, sql } => {
                self.explicit.insert(name.clone(), sql.clone());
                self.merge_settings();
            }
            SessionEffect::Reset { name } => {
                self.explicit.remove(name);
                self.merge_settings();
            }
            SessionEffect::ResetAll => {
                self.explicit.clear();
                self.merge_settings();
            }
            SessionEffect::Prepare { name, sql } => {
                self.sql_prepared.insert(name.clone(), sql.clone());
            }
            SessionEffect::Deallocate { name: Some(name) } => {
                self.sql_prepared.remove(name);
            }
            SessionEffect::Deallocate { name: None } => {
                self.sql_prepared.clear();
                self.statements.clear();
            }
            SessionEffect::DiscardAll => {
                self.explicit.clear();
                self.merge_settings();
                self.sql_prepared.clear();
                self.statements.clear();
                self.pins.clear();
                self.hold_cursors.clear();
                self.listening.clear();
            }
            SessionEffect::CloseCursor { name } => {
                match name {
                    Some(name) => self.hold_cursors.retain(|held| held != name),
                    None => self.hold_cursors.clear(),
                }
                if self.hold_cursors.is_empty() {
                    self.pins.retain(|p| *p != PinCause::HoldCursor);
                }
            }
            SessionEffect::DiscardTemp => self.pins.retain(|p| *p != PinCause::TempTable),
            SessionEffect::Pin(cause) => self.confirm_pin(*cause),
            SessionEffect::HoldCursor { name } => self.hold_cursors.push(name.clone()),
            SessionEffect::Listen { channel } => {
                if !self.listening.contains(channel) {
                    self.listening.push(channel.clone());
                }
                // Lifted meanwhile by a rollback answered before this LISTEN was.
                if !self.pins.contains(&PinCause::Listen) {
                    self.pins.push(PinCause::Listen);
                }
            }
            SessionEffect::Unlisten { channel } => {
                match channel {
                    Some(channel) => self.listening.retain(|c| c != channel),
                    None => self.listening.clear(),
                }
                self.unpin_listen_if_silent();
            }
            SessionEffect::Execute { .. }
            | SessionEffect::SetLocal { .. }
            | SessionEffect::SequenceState
            | SessionEffect::Savepoint { .. }
            | SessionEffect::RollbackToSavepoint { .. }
            | SessionEffect::ReleaseSavepoint { .. }
            | SessionEffect::Commit
            | SessionEffect::Rollback => {}
        }
    }
}

/// Savepoints mark places in a transaction's effects; they are not effects on the session.
fn is_savepoint_mark(effect: &SessionEffect) -> bool {
    matches!(effect, SessionEffect::Savepoint { .. })
}

/// Whether an effect changes which `SET LOCAL`s are in force (see `local_settings`).
pub fn changes_local_settings(effect: &SessionEffect) -> bool {
    matches!(
        effect,
        SessionEffect::SetLocal { .. } | SessionEffect::RollbackToSavepoint { .. }
    )
}

/// Whether the state a pin stands for goes with a rollback of the statement that made it. A
/// session-level advisory lock stays (PostgreSQL's documentation says so); a LISTEN's pin has
/// its own record, the channels listened on.
fn undone_by_rollback(cause: PinCause) -> bool {
    matches!(
        cause,
        PinCause::TempTable | PinCause::HoldCursor | PinCause::SessionFunction
    )
}

/// Savepoints and `SET LOCAL`s end with their transaction, committed or not.
fn lasts_only_the_transaction(effect: &SessionEffect) -> bool {
    matches!(
        effect,
        SessionEffect::Savepoint { .. } | SessionEffect::SetLocal { .. }
    )
}

/// Keeps a connection's record of its own state in step with effects that ran on it.
pub fn record_on_connection(conn: &mut ServerConn, effects: &[SessionEffect]) {
    for effect in effects {
        match effect {
            SessionEffect::Set { name, sql } => conn.settings.set(name, sql),
            SessionEffect::Reset { name } => {
                conn.settings.remove(name);
            }
            SessionEffect::ResetAll => conn.settings.clear(),
            SessionEffect::Prepare { name, sql } => {
                conn.sql_prepared.insert(name.clone(), sql.clone());
            }
            SessionEffect::Deallocate { name: Some(name) } => {
                conn.sql_prepared.remove(name);
            }
            SessionEffect::Deallocate { name: None } => {
                conn.sql_prepared.clear();
                conn.prepared.clear();
            }
            SessionEffect::DiscardAll => conn.forget_session_state(),
            _ => {}
        }
    }
}

/// Whether a `SET name = value` statement sets a boolean on.
fn sets_on(sql: &str) -> bool {
    let value = sql
        .rsplit(['=', ' '])
        .next()
        .unwrap_or("")
        .trim_matches(['\'', ';', ' '])
        .to_ascii_lowercase();
    matches!(value.as_str(), "on" | "true" | "1" | "yes")
}

/// `SET "name" = 'value'`, quoted so that any name and value survive.
pub fn set_sql(name: &str, value: &str) -> String {
    format!("SET {} = {}", quote_ident(name), quote_literal(value))
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests;
