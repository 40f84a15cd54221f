//! A bare `BEGIN` sent as a simple query is answered by pgsplit at once (`BEGIN`, then
//! ReadyForQuery `T`, as the server would) and held. The transaction's first statement then
//! decides where the transaction runs (a sharded session's shard; a replica only when the
//! BEGIN said READ ONLY), and the BEGIN goes to that server in the same write as the
//! statement: no round trip of its own, and no connection taken while the client thinks.
//! Its answer is the server's to give but pgsplit's to take (see `forward`).
//!
//! Only a BEGIN the server cannot refuse is held: one statement, in PostgreSQL's own grammar,
//! with no hints. A READ ONLY one with SERIALIZABLE that lands on a hot standby is refused
//! there; the error reaches the client, and what follows it only reads.

use crate::fanout::Merged;
use crate::hint::Hints;
use crate::protocol::{Frame, messages, tag};
use crate::route::classify::TxControl;

use super::Shared;
use super::client::ClientConn;
use super::error::FrontendError;
use super::scatter::{ExtendedRead, parse_in_unit, refusal, remember};
use super::session::Session;
use super::work::Work;

/// A BEGIN pgsplit answered and has not sent yet.
pub(super) struct HeldBegin {
    frame: Frame,
    control: TxControl,
    /// A unit of the transaction failed before reaching a server: as in PostgreSQL, the
    /// transaction is aborted and only its end is accepted.
    failed: bool,
}

impl HeldBegin {
    fn text(&self) -> &str {
        messages::query_text(self.frame.body()).unwrap_or("BEGIN")
    }

    /// What the client is told in ReadyForQuery: in a transaction, or in a failed one.
    pub(super) fn status(&self) -> u8 {
        if self.failed { b'E' } else { b'T' }
    }
}

impl Session {
    /// Holds `frames` if it is a bare `BEGIN` (see the module) and answers it; true if so.
    /// What is in flight is answered first: only its answers tell whether it opened a
    /// transaction the BEGIN belongs to. A connection that holds the session keeps it.
    pub(super) async fn hold_begin(
        &mut self,
        client: &mut ClientConn,
        frames: &[Frame],
        work: &Work,
    ) -> Result<bool, FrontendError> {
        let (Some(control), [frame]) = (bare_begin(work), frames) else {
            return Ok(false);
        };
        if self.held_begin.is_some() || frame.tag != tag::QUERY {
            return Ok(false);
        }
        self.settle(client).await?;
        if let Some(attached) = &self.server
            && (self.holds_session(attached) || self.bound_since_sync)
        {
            return Ok(false);
        }
        self.held_begin = Some(HeldBegin {
            frame: frame.clone(),
            control,
            failed: false,
        });
        client.writer().command_complete("BEGIN");
        client.writer().ready_for_query(b'T');
        Ok(true)
    }

    /// COMMIT or ROLLBACK of a held transaction that never reached a server: pgsplit answers
    /// it, as a simple query or over the extended protocol (a failed one rolls back whatever
    /// the client asked, as PostgreSQL does); any other unit of a failed one is refused but
    /// one that only prepares its end. True when the unit was answered.
    pub(super) async fn end_held_transaction(
        &mut self,
        client: &mut ClientConn,
        frames: &[Frame],
        work: &Work,
    ) -> Result<bool, FrontendError> {
        // Nothing ran since the BEGIN was held (a statement would have sent it), so no
        // connection the session may still have is in this transaction.
        let Some(held) = self.held_begin.as_ref().filter(|_| self.pending == 0) else {
            return Ok(false);
        };
        let (failed, alone) = (held.failed, work.effects.statements == 1);
        let (command_tag, ends) = match work.tx.as_slice() {
            [TxControl::Commit] if alone && failed => ("ROLLBACK", true),
            [TxControl::Commit] if alone => ("COMMIT", true),
            [TxControl::Rollback] if alone => ("ROLLBACK", true),
            // As PostgreSQL: a driver may prepare the COMMIT that ends a failed transaction.
            _ if failed && !work.executes && prepares_transaction_end(frames, &self.shared) => {
                ("", false)
            }
            _ if failed => {
                let refusal = FrontendError::Refused(super::commands::in_failed_transaction());
                self.fail_unit(client, refusal, frames).await?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        let extended = match frames {
            [frame] if frame.tag == tag::QUERY => None,
            _ => match ExtendedRead::read(frames, &self.state)? {
                Some(unit) => {
                    let answer = unit.answer(&Merged::command(command_tag), None);
                    Some(answer.map_err(refusal)?)
                }
                None => return Ok(false),
            },
        };
        if ends {
            self.held_begin = None;
            self.forget_transaction();
        }
        match extended {
            Some(answer) => {
                remember(frames, &mut self.state);
                self.answer_from_shards(client, Ok(answer), frames).await?;
            }
            None => {
                client.writer().command_complete(command_tag);
                client.writer().ready_for_query(b'I');
            }
        }
        Ok(true)
    }

    /// The unit about to be routed is the held transaction's first: it opens the transaction,
    /// and is routed as such.
    pub(super) fn join_held_begin(&self, work: &mut Work) {
        if let Some(held) = &self.held_begin {
            work.tx.insert(0, held.control.clone());
        }
    }

    /// Queues the held BEGIN for the attached connection, ahead of the unit that follows it.
    pub(super) fn send_held_begin(&mut self) {
        let Some(attached) = self.server.as_mut() else {
            return;
        };
        let Some(held) = self.held_begin.take() else {
            return;
        };
        self.responses.send_begin(
            &held.frame,
            &mut attached.checkout.conn,
            &mut self.to_server,
        );
        self.remember_for_shards(&held);
    }

    /// Runs the held BEGIN on the attached connection now, in a round trip of its own (for
    /// a unit pgsplit runs statement by statement itself).
    pub(super) async fn run_held_begin(&mut self) -> Result<(), FrontendError> {
        let Some(attached) = self.server.as_mut() else {
            return Ok(());
        };
        let Some(held) = self.held_begin.take() else {
            return Ok(());
        };
        attached.checkout.conn.run_internal(held.text()).await?;
        self.remember_for_shards(&held);
        Ok(())
    }

    /// Shards a sharded transaction reaches later open theirs with the same BEGIN.
    fn remember_for_shards(&mut self, held: &HeldBegin) {
        if self.shared.live().sharding.is_some() {
            self.multi_shard.remember_begin(held.text());
        }
    }

    /// A unit of a held transaction failed before reaching a server.
    pub(super) fn fail_held_transaction(&mut self) {
        if let Some(held) = self.held_begin.as_mut() {
            held.failed = true;
        }
    }
}

/// The transaction control of a unit that is one BEGIN and nothing else pgsplit must act on.
fn bare_begin(work: &Work) -> Option<TxControl> {
    let control = match work.tx.as_slice() {
        [control @ TxControl::Begin { plain: true, .. }] => control.clone(),
        _ => return None,
    };
    let alone =
        work.effects.statements == 1 && work.effects.is_empty() && work.hints == Hints::default();
    alone.then_some(control)
}

/// Whether `frames` only prepare COMMIT or ROLLBACK statements (and describe them).
fn prepares_transaction_end(frames: &[Frame], shared: &Shared) -> bool {
    let classifier = &shared.live().classifier;
    let ends_transaction = |sql: &str| {
        let class = classifier.classify(sql);
        matches!(
            class.tx.as_slice(),
            [TxControl::Commit | TxControl::Rollback]
        )
    };
    frames.iter().any(|f| f.tag == tag::PARSE)
        && frames.iter().all(|frame| match frame.tag {
            tag::PARSE => {
                messages::parse_message(frame.body()).is_some_and(|(_, sql)| ends_transaction(sql))
            }
            tag::DESCRIBE => messages::target(frame.body())
                .is_some_and(|(kind, name)| kind == b'S' && parse_in_unit(frames, name).is_some()),
            tag::SYNC | tag::FLUSH => true,
            _ => false,
        })
}
