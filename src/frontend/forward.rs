//! Forwarding extended-protocol messages over pooled connections. A statement the client
//! prepared on one server connection may be executed on another: pgsplit then sends that
//! connection the Parse first, and drops the ParseComplete (and CloseComplete) that answer
//! its own messages, so the client sees exactly the answers it asked for. After a unit that
//! commits a write, pgsplit may also ask for the commit's WAL position in the same write, and
//! takes the answer for itself; so it does with the answer to a BEGIN it held.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use bytes::{BufMut, BytesMut};
use foldhash::fast::FixedState;

use crate::backend::{COMMIT_POSITION_QUERY, ServerConn, commit_position_in};
use crate::protocol::{Frame, messages, tag};

use super::state::SessionState;

/// An answer still to come for a message sent, in the order the server will send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    ParseComplete {
        ours: bool,
    },
    CloseComplete {
        ours: bool,
    },
    /// ReadyForQuery ends what a Sync or Query started; after an error the server skips the
    /// rest up to it, so unanswered expectations before it are void.
    ReadyForQuery,
    /// The whole answer to pgsplit's question for a commit's WAL position, up to its own
    /// ReadyForQuery.
    CommitPosition,
    /// The answer to a BEGIN pgsplit already answered (see `held_begin`), up to its own
    /// ReadyForQuery: only an error in it goes on to the client.
    HeldBegin,
}

/// What became of the last question for a commit's WAL position.
#[derive(Default)]
enum Asked {
    #[default]
    Nothing,
    Waiting,
    Answered(u64),
}

#[derive(Default)]
pub struct ResponseFilter {
    expected: VecDeque<Expect>,
    asked: Asked,
}

impl ResponseFilter {
    /// No answer to anything sent is outstanding.
    pub fn is_settled(&self) -> bool {
        self.expected.is_empty()
    }

    /// Appends `frame` to `out` for `conn`, preceded by whatever `conn` needs to run it, and
    /// notes the answers to expect.
    pub fn forward(
        &mut self,
        frame: &Frame,
        conn: &mut ServerConn,
        state: &mut SessionState,
        out: &mut BytesMut,
    ) {
        // What this message runs may commit after the position asked for: it no longer counts.
        self.asked = Asked::Nothing;
        let body = frame.body();
        match frame.tag {
            tag::PARSE => {
                if let Some((name, _)) = messages::parse_message(body) {
                    if !name.is_empty() && conn.prepared.contains_key(name) {
                        self.close_statement(name, out);
                    }
                    conn.prepared
                        .insert(name.to_string(), definition_hash(body));
                    state
                        .statements
                        .insert(name.to_string(), frame.bytes.clone());
                }
                self.expected
                    .push_back(Expect::ParseComplete { ours: false });
            }
            tag::BIND => {
                if let Some((portal, statement)) = messages::bind_names(body) {
                    self.ensure_statement(statement, conn, state, out);
                    remember_portal(state, portal, statement);
                }
            }
            tag::DESCRIBE => {
                if let Some((b'S', name)) = messages::target(body) {
                    self.ensure_statement(name, conn, state, out);
                }
            }
            tag::CLOSE => {
                match messages::target(body) {
                    Some((b'S', name)) => {
                        conn.prepared.remove(name);
                        state.statements.remove(name);
                    }
                    Some((_, portal)) => {
                        state.portals.remove(portal);
                    }
                    None => {}
                }
                self.expected
                    .push_back(Expect::CloseComplete { ours: false });
            }
            tag::QUERY => {
                // A simple query destroys the unnamed statement.
                conn.prepared.remove("");
                self.expected.push_back(Expect::ReadyForQuery);
            }
            tag::SYNC | tag::FUNCTION_CALL => self.expected.push_back(Expect::ReadyForQuery),
            _ => {}
        }
        out.extend_from_slice(&frame.bytes);
    }

    /// Sends the session's definition of statement `name` to `conn` if `conn` lacks it or
    /// has another one under that name.
    fn ensure_statement(
        &mut self,
        name: &str,
        conn: &mut ServerConn,
        state: &SessionState,
        out: &mut BytesMut,
    ) {
        let Some(parse) = state.statements.get(name) else {
            return; // unknown to the session: the server will say so
        };
        let wanted = definition_hash(parse.get(5..).unwrap_or_default());
        match conn.prepared.get(name) {
            Some(have) if *have == wanted => return,
            Some(_) if !name.is_empty() => self.close_statement(name, out),
            _ => {}
        }
        out.extend_from_slice(parse);
        self.expected
            .push_back(Expect::ParseComplete { ours: true });
        conn.prepared.insert(name.to_string(), wanted);
    }

    fn close_statement(&mut self, name: &str, out: &mut BytesMut) {
        out.put_u8(tag::CLOSE);
        out.put_i32((4 + 1 + name.len() + 1) as i32);
        out.put_u8(b'S');
        out.put_slice(name.as_bytes());
        out.put_u8(0);
        self.expected
            .push_back(Expect::CloseComplete { ours: true });
    }

    /// Appends to `out` a simple query asking for a WAL position at or after the last commit on
    /// `conn`: sent right behind a unit that commits, it saves a round trip of its own. Its
    /// answer is kept for [`Self::take_commit_position`], never passed to the client.
    pub fn ask_commit_position(&mut self, conn: &mut ServerConn, out: &mut BytesMut) {
        out.put_u8(tag::QUERY);
        out.put_i32((4 + COMMIT_POSITION_QUERY.len() + 1) as i32);
        out.put_slice(COMMIT_POSITION_QUERY.as_bytes());
        out.put_u8(0);
        conn.prepared.remove(""); // as any simple query does
        self.expected.push_back(Expect::CommitPosition);
        self.asked = Asked::Waiting;
    }

    /// Appends to `out` the BEGIN pgsplit held for the transaction, ahead of its first unit;
    /// its answer is taken here (the client had pgsplit's).
    pub fn send_begin(&mut self, begin: &Frame, conn: &mut ServerConn, out: &mut BytesMut) {
        conn.prepared.remove(""); // as any simple query does
        self.expected.push_back(Expect::HeldBegin);
        out.extend_from_slice(&begin.bytes);
    }

    /// A question for a commit's WAL position is still to be answered.
    pub fn awaits_commit_position(&self) -> bool {
        self.expected.contains(&Expect::CommitPosition)
    }

    /// The answer to the last question for a commit's WAL position, if it came, parsed, and
    /// nothing was sent after the question.
    pub fn take_commit_position(&mut self) -> Option<u64> {
        match std::mem::take(&mut self.asked) {
            Asked::Answered(position) => Some(position),
            _ => None,
        }
    }

    /// Whether a server message goes on to the client (false for answers to our own messages).
    pub fn pass_to_client(&mut self, frame: &Frame) -> bool {
        match self.expected.front() {
            Some(Expect::CommitPosition) if !is_asynchronous(frame.tag) => {
                self.note_commit_position(frame);
                return false;
            }
            Some(Expect::HeldBegin) if !is_asynchronous(frame.tag) => {
                if frame.tag == tag::READY_FOR_QUERY {
                    self.expected.pop_front();
                }
                return frame.tag == tag::ERROR_RESPONSE;
            }
            _ => {}
        }
        match frame.tag {
            b'1' => self.take(|e| matches!(e, Expect::ParseComplete { .. })),
            b'3' => self.take(|e| matches!(e, Expect::CloseComplete { .. })),
            tag::READY_FOR_QUERY => {
                while let Some(expect) = self.expected.pop_front() {
                    if expect == Expect::ReadyForQuery {
                        break;
                    }
                }
                true
            }
            _ => true,
        }
    }

    /// Takes in one message of the answer to the question for a commit's WAL position (an
    /// error leaves it unanswered: the caller then asks on its own).
    fn note_commit_position(&mut self, frame: &Frame) {
        match frame.tag {
            tag::DATA_ROW => {
                if let (Asked::Waiting, Some(position)) =
                    (&self.asked, commit_position_in(frame.body()))
                {
                    self.asked = Asked::Answered(position);
                }
            }
            tag::READY_FOR_QUERY => {
                self.expected.pop_front();
            }
            _ => {}
        }
    }

    /// Consumes the expectation an answer matches; false if it answered one of ours.
    fn take(&mut self, matches: impl Fn(&Expect) -> bool) -> bool {
        match self.expected.front() {
            Some(e) if matches(e) => {
                let ours = matches!(
                    e,
                    Expect::ParseComplete { ours: true } | Expect::CloseComplete { ours: true }
                );
                self.expected.pop_front();
                !ours
            }
            _ => true,
        }
    }
}

/// Messages a server may send at any time, between or within the answers to queries
/// (NotificationResponse, ParameterStatus, NoticeResponse): they belong to the client.
fn is_asynchronous(message: u8) -> bool {
    matches!(
        message,
        tag::NOTIFICATION_RESPONSE | tag::PARAMETER_STATUS | tag::NOTICE_RESPONSE
    )
}

/// Records which statement `portal` was bound from. Clients bind the same portal (usually the
/// unnamed one) to the same statement unit after unit: then nothing is allocated.
fn remember_portal(state: &mut SessionState, portal: &str, statement: &str) {
    match state.portals.get_mut(portal) {
        Some(bound) if bound == statement => {}
        Some(bound) => statement.clone_into(bound),
        None => {
            state
                .portals
                .insert(portal.to_string(), statement.to_string());
        }
    }
}

/// Identifies a statement's definition (text and parameter types), whatever its name. The
/// seed is fixed, as std's `DefaultHasher::new()` was: every connection of the process must
/// agree on the value. foldhash, because a Bind of a prepared statement hashes its text.
fn definition_hash(parse_body: &[u8]) -> u64 {
    FixedState::with_seed(DEFINITION_SEED).hash_one(messages::parse_definition(parse_body))
}

const DEFINITION_SEED: u64 = 0x7067_7370_6c69_7421;
