//! Keeping sessions alive when servers fail: a read whose server failed (or refused it as a
//! write or as impossible during recovery, or cancelled it for a recovery conflict) before any
//! byte of its answer reached the client runs again elsewhere; a failure mid-answer is an
//! error for that statement only, when no transaction is lost with it.

use bytes::BytesMut;

use crate::backend::BackendError;
use crate::protocol::{ErrorFields, Frame, SqlState, error_code, error_field, tag};
use crate::route::Reason;
use crate::topology::Role;

use super::client::ClientConn;
use super::error::FrontendError;
use super::session::Session;

/// How many times one unit may be sent again before its error reaches the client.
pub const MAX_RETRIES: usize = 3;

/// A unit that may still run again: nothing of its answer has reached the client.
#[derive(Default)]
pub struct Replay {
    /// The unit's messages, as the client sent them.
    pub frames: Vec<Frame>,
    /// Answers that say nothing yet (ParseComplete, descriptions...), held back until the
    /// unit's first row or completion so that a retry repeats none of them.
    pub held: BytesMut,
    /// A server error that calls for a retry on the primary was seen; the rest of the unit's
    /// answer is dropped until its ReadyForQuery.
    pub on_primary: bool,
    pub attempts: usize,
    /// Units sent before this one on the connection and not answered yet (a pipeline): their
    /// answers are relayed as usual, up to their ReadyForQuery, before this unit's begin.
    pub ahead: usize,
}

/// What the relay does with a server message (see [`Session::screen_replay`]).
pub enum Step {
    Relay,
    /// Held back, or dropped because the unit runs again.
    Skip,
    /// The unit's refused answer is over: send it again, on the primary.
    Retry,
}

/// Answers that carry no result yet: holding them back costs the client nothing.
fn is_preamble(tag: u8) -> bool {
    matches!(
        tag,
        b'1' | b'2' | b't' | b'n' | b'T' | tag::PARAMETER_STATUS
    )
}

/// SQLSTATEs a replica answers with that the primary would not: a query cancelled by a
/// conflict with recovery (40001), a write it refused (25006), and what a server in recovery
/// cannot do at all (0A000: reading an unlogged table, above all, which only the primary
/// holds). A 0A000 the primary gives too reaches the client from there: the read ran twice
/// before any of its answer was sent, which is harmless.
fn retry_on_primary(body: &[u8]) -> bool {
    matches!(error_code(body), Some("40001" | "25006" | "0A000"))
}

/// Why a statement a replica refused goes to the primary from now on; None for a refusal that
/// says nothing about the statement (a recovery conflict is a matter of timing).
fn primary_from_now_on(body: &[u8]) -> Option<&'static str> {
    match error_code(body)? {
        "25006" => Some("refused by a replica as a write"),
        "0A000" => Some("refused by a replica as impossible during recovery (an unlogged table?)"),
        _ => None,
    }
}

/// What to do with one server message of a unit that may be retried.
enum Screened {
    /// Pass it (and what was held) to the client: the unit can no longer be retried.
    Pass,
    /// Keep it back (held, or dropped because the unit will run again).
    Keep,
}

impl Session {
    /// A unit is about to be sent behind one that may still run again elsewhere. That one's
    /// answer must come first: if it was refused, it runs again now (the new unit waits);
    /// otherwise it gives up its second chance and what it held goes to the client.
    pub(super) async fn close_earlier_replay(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<(), FrontendError> {
        match &self.replay {
            Some(replay) if replay.on_primary => self.settle(client).await,
            Some(_) => {
                self.commit_to_answer(client);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Looks at a server message while a unit in flight may still run again.
    pub(super) fn screen_replay(&mut self, client: &mut ClientConn, frame: &Frame) -> Step {
        let Some(replay) = self.replay.as_mut() else {
            return Step::Relay;
        };
        if replay.ahead > 0 {
            // The answer of a unit sent before the one that may run again.
            if frame.tag == tag::READY_FOR_QUERY {
                replay.ahead -= 1;
            }
            return Step::Relay;
        }
        if frame.tag == tag::READY_FOR_QUERY && replay.on_primary {
            self.pending = self.pending.saturating_sub(1);
            return if self.pending == 0 {
                Step::Retry
            } else {
                Step::Skip
            };
        }
        if frame.tag != tag::READY_FOR_QUERY && matches!(self.screen(frame), Screened::Keep) {
            return Step::Skip;
        }
        self.commit_to_answer(client);
        Step::Relay
    }

    /// Looks at a server message of the unit that may still be retried.
    fn screen(&mut self, frame: &Frame) -> Screened {
        let Some(replay) = self.replay.as_mut() else {
            return Screened::Pass;
        };
        if replay.on_primary {
            return Screened::Keep;
        }
        if is_preamble(frame.tag) {
            replay.held.extend_from_slice(&frame.bytes);
            return Screened::Keep;
        }
        if frame.tag == tag::ERROR_RESPONSE && error_field(frame.body(), b'S') == Some("FATAL") {
            // The server is ending this connection (shutting down, or its postmaster died):
            // the read runs elsewhere once the connection closes.
            tracing::info!(message = ?error_field(frame.body(), b'M'), "server ended the connection before answering a read");
            return Screened::Keep;
        }
        if frame.tag == tag::ERROR_RESPONSE
            && retry_on_primary(frame.body())
            && replay.attempts < MAX_RETRIES
        {
            tracing::info!(code = ?error_code(frame.body()), "a replica refused a read; running it on the primary");
            replay.on_primary = true;
            if let Some(reason) = primary_from_now_on(frame.body()) {
                let frames = replay.frames.clone();
                self.remember_writes(&frames, reason);
            }
            return Screened::Keep;
        }
        Screened::Pass
    }

    /// An ErrorResponse from the server: the unit failed, and the error counts in the metrics.
    pub(super) fn note_server_error(&mut self, frame: &Frame) {
        self.in_flight.fail();
        if let Some(code) = error_code(frame.body()) {
            self.shared.metrics.error(code);
        }
    }

    /// The unit's answer begins: what was held goes to the client first, and there is no way
    /// back.
    pub(super) fn commit_to_answer(&mut self, client: &mut ClientConn) {
        if let Some(mut replay) = self.replay.take() {
            client.out.extend_from_slice(&replay.held);
            replay.held.clear();
            self.spare_held = replay.held;
        }
    }

    /// A replica refused the statements of `frames` for `reason`: remember their texts, so
    /// they go to the primary from now on.
    fn remember_writes(&self, frames: &[Frame], reason: &str) {
        for frame in frames {
            if let Some(text) = super::work::statement_text(frame) {
                self.shared.live().classifier.mark_write(text, reason);
            }
        }
    }

    /// The unit's ReadyForQuery came after a refusal: send it again, on the primary.
    pub(super) async fn retry_unit(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<(), FrontendError> {
        let Some(replay) = self.replay.take() else {
            return Ok(());
        };
        self.reset_unit();
        self.release_if_idle();
        self.dispatch_again(client, replay, true).await
    }

    /// The server connection failed (lost, or its node was banned while a unit was in flight).
    pub(super) async fn server_failed(
        &mut self,
        client: &mut ClientConn,
        error: BackendError,
    ) -> Result<(), FrontendError> {
        let Some(attached) = self.server.take() else {
            return Ok(());
        };
        self.cancel.set_target(None);
        let node = attached.route.node.clone();
        let ban_time = self.shared.live().config.health.ban_time;
        node.stats
            .health
            .ban(&node.name, &error.to_string(), ban_time);
        let in_transaction =
            attached.checkout.conn.tx_status != b'I' || self.in_flight.opens_transaction();
        drop(attached); // closes the broken connection
        if self.pending == 0 {
            return match self.state.pin() {
                Some(_) => Err(lost_state(&node.name, &error)),
                None => Ok(()),
            };
        }
        if let Some(replay) = self.replay.take()
            && replay.attempts < MAX_RETRIES
            && replay.ahead == 0
        {
            tracing::info!(node = %node.name, %error, "server lost before answering; sending the read elsewhere");
            self.reset_unit();
            return self
                .dispatch_again(client, replay, node.role() == Role::Primary)
                .await;
        }
        if in_transaction || self.state.pin().is_some() {
            return Err(lost_state(&node.name, &error));
        }
        // Mid-answer, outside a transaction: what was in flight fails, the session goes on.
        // The client waits for a ReadyForQuery per Query or Sync it sent, and a pipeline (a
        // driver's Close + Sync, then its next statement) can have several on the lost
        // connection: each gets its error, or the client would wait forever for the rest.
        let unanswered = self.pending;
        self.reset_unit();
        let message = format!(
            "lost the connection to server {} in the middle of an answer: {error}",
            node.name
        );
        let failed = ErrorFields::error(SqlState::CONNECTION_FAILURE, message);
        for _ in 0..unanswered {
            client.writer().error_response(&failed);
            client.writer().ready_for_query(b'I');
        }
        client.flush().await.map_err(|_| FrontendError::ClientGone)
    }

    async fn dispatch_again(
        &mut self,
        client: &mut ClientConn,
        replay: Replay,
        on_primary: bool,
    ) -> Result<(), FrontendError> {
        self.force_primary = on_primary;
        self.retries = replay.attempts + 1;
        let result = self.dispatch(client, replay.frames).await;
        self.force_primary = false;
        self.retries = 0;
        result
    }

    /// Forgets the unit in flight as if it had never been sent.
    fn reset_unit(&mut self) {
        self.pending = 0;
        self.fill = None;
        self.in_flight = Default::default();
        self.responses = Default::default();
        self.held_ready = None;
        if let Some(attached) = self.server.as_mut() {
            attached.work = None;
        }
    }

    /// The route a retry or a failed node leaves: a banned primary fails writes at once.
    pub(super) fn check_primary_up(
        &self,
        reason: Reason,
        node: &crate::topology::Node,
    ) -> Result<(), FrontendError> {
        if node.role() != Role::Primary || node.is_available() {
            return Ok(());
        }
        let why = node
            .stats
            .health
            .ban_reason()
            .unwrap_or_else(|| "failing health checks".to_string());
        Err(FrontendError::refuse(
            SqlState::CONNECTION_FAILURE,
            format!(
                "the primary {} is down ({why}); {} cannot run until it is back or a replica is promoted",
                node.name,
                reason.as_str()
            ),
        ))
    }
}

fn lost_state(node: &str, error: &BackendError) -> FrontendError {
    FrontendError::refuse(
        SqlState::CONNECTION_FAILURE,
        format!(
            "lost the connection to server {node} with a transaction or session state on it: {error}"
        ),
    )
}
