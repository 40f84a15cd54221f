//! `currval()` and `lastval()` answer from the backend that ran the session's `nextval()`.
//! Under transaction pooling that backend is one connection of a pool that other sessions
//! borrow between this session's statements, and on another connection the statement would
//! get that connection's value: another session's. So the session remembers the connection
//! its last write on a primary ran on (`nextval()` is a write, and so is an INSERT whose
//! column default calls it), the pool keeps that connection for the session while it is idle
//! (a [`Reservation`]), and a statement that reads the sequence state runs there. When the
//! connection is gone (the pool, full, lent it to another session; it closed; the primary
//! changed), the statement fails with SQLSTATE 55000, as PostgreSQL fails it in a session that
//! never called `nextval()`: never with another session's value.

use std::sync::Arc;

use crate::pool::{Checkout, Reservation};
use crate::protocol::SqlState;
use crate::route::classify::SessionEffect;
use crate::topology::Node;

use super::error::FrontendError;
use super::session::{Attached, Session};
use super::work::Work;

/// Where the session's sequence state lives.
#[derive(Default)]
pub(super) struct SequenceHome {
    reservation: Reservation,
    place: Place,
}

#[derive(Default)]
enum Place {
    /// No write on a primary yet.
    #[default]
    Nowhere,
    /// The backend (by its process id) on the node that ran the session's last write.
    On(Arc<Node>, i32),
    /// That backend served another session meanwhile.
    Lost(Arc<Node>),
}

impl SequenceHome {
    /// The reservation to borrow with on `node`: only where the home connection waits.
    pub(super) fn reservation_on(&self, node: &Arc<Node>) -> Option<&Reservation> {
        match &self.place {
            Place::On(home, _) if Arc::ptr_eq(home, node) => Some(&self.reservation),
            _ => None,
        }
    }

    /// A connection borrowed on `node`: unless the pool kept it for this session, the home
    /// connection on that node is lost (had it waited idle, the reservation would have found it).
    pub(super) fn borrowed(&mut self, node: &Arc<Node>, checkout: &Checkout) {
        if let Place::On(home, pid) = &self.place
            && Arc::ptr_eq(home, node)
            && !(checkout.reserved && checkout.conn.key.pid == *pid)
        {
            self.place = Place::Lost(node.clone());
        }
    }

    /// A write was sent on a primary's connection: what `nextval()` leaves is there now.
    pub(super) fn wrote_on(&mut self, node: &Arc<Node>, pid: i32) {
        self.place = Place::On(node.clone(), pid);
    }

    /// The reservation to give `attached` back with: the home connection's.
    pub(super) fn reservation_for(&self, attached: &Attached) -> Option<&Reservation> {
        self.is_home(attached).then_some(&self.reservation)
    }

    fn is_home(&self, attached: &Attached) -> bool {
        matches!(&self.place, Place::On(node, pid)
            if Arc::ptr_eq(node, &attached.route.node) && attached.checkout.conn.key.pid == *pid)
    }

    /// Why a statement reading the sequence state cannot run where it is about to.
    fn refusal(&self, attached: &Attached) -> FrontendError {
        let here = &attached.route.node.name;
        let reason = match &self.place {
            Place::Nowhere => {
                "currval() and lastval() are not yet defined in this session: it has run no nextval() on the primary".to_string()
            }
            Place::Lost(node) => format!(
                "currval() and lastval() answer from the server connection that ran this session's last nextval(), and pgsplit lent that connection on {} to another session meanwhile (the pool had no other): read the value with INSERT ... RETURNING, or in the transaction that called nextval()",
                node.name
            ),
            Place::On(node, _) => format!(
                "currval() and lastval() answer from the server connection that ran this session's last nextval(), on {}, and this statement runs on another connection, on {here} (a transaction begun elsewhere, or a new primary)",
                node.name
            ),
        };
        FrontendError::refuse(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, reason)
    }
}

impl Session {
    /// A unit that runs what reads an earlier unit's `nextval()` runs only on the connection
    /// that ran it (in session mode every statement does, and the server answers for itself).
    pub(super) fn check_sequence_home(&self, work: &Work) -> Result<(), FrontendError> {
        let Some(attached) = &self.server else {
            return Ok(());
        };
        let reads_sequence = work.executes && work.effects.contains(&SessionEffect::SequenceState);
        if !reads_sequence || self.session_mode() || self.sequences.is_home(attached) {
            return Ok(());
        }
        Err(self.sequences.refusal(attached))
    }
}
