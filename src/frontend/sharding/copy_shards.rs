//! The shards' side of a split COPY: one primary connection per shard, each in a transaction of
//! its own running the client's COPY statement, started when the shard's first row arrives; the
//! rows for each, sent in CopyData batches; then the end of every COPY, and the commits one
//! after another (or the rollback of all of them).

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::BackendError;
use crate::pool::Checkout;
use crate::protocol::{Frame, tag};
use crate::shard::copy_rows::Row;

use super::super::error::FrontendError;
use super::super::scatter::put_message;
use super::super::session::Session;
use super::twophase::Participant;

/// Rows for one shard are sent once this many bytes wait, and at the end of each client
/// message.
const BATCH_BYTES: usize = 64 * 1024;

/// How many of a shard's lines keep their client line number (8 bytes each), for its errors.
const MAPPED_LINES: usize = 1 << 20;

/// One shard's COPY in progress.
struct ShardCopy {
    /// The shard's primary connection, in a transaction of its own.
    part: Participant,
    /// Row bytes not yet sent.
    pending: BytesMut,
    /// The server is in copy-in mode (not yet ended by CopyDone or CopyFail).
    copying: bool,
    /// The client's line number of each line sent (the first [`MAPPED_LINES`]): the shard's
    /// errors count only its own lines.
    lines: Vec<u64>,
}

/// Every shard's COPY of one client COPY.
pub(super) struct ShardCopies {
    /// The client's COPY statement, run as is on each shard.
    sql: String,
    /// The CSV header line, sent first to each shard (whose COPY says HEADER too).
    pub(super) header: Option<Bytes>,
    shards: Vec<ShardCopy>,
    /// The first shard's CopyInResponse.
    pub(super) response: Option<Frame>,
}

/// What a COPY left on the shards once every part committed.
pub(super) struct Committed {
    /// Rows per shard, in the order the shards started.
    pub(super) rows: Vec<u64>,
    /// Each shard's WAL position after its commit, for the session's causal positions.
    pub(super) positions: Vec<(String, u64)>,
}

impl ShardCopies {
    pub(super) fn new(sql: String) -> Self {
        ShardCopies {
            sql,
            header: None,
            shards: Vec::new(),
            response: None,
        }
    }

    /// Queues `row` for `cluster`, starting that shard's COPY if this is its first row.
    pub(super) async fn queue(
        &mut self,
        session: &Session,
        cluster: &str,
        row: &Row,
    ) -> Result<(), FrontendError> {
        let index = match self.shards.iter().position(|s| s.part.cluster == cluster) {
            Some(index) => index,
            None => self.start(session, cluster).await?,
        };
        let shard = &mut self.shards[index];
        shard.pending.extend_from_slice(&row.bytes);
        if shard.lines.len() < MAPPED_LINES {
            shard.lines.push(row.line);
        }
        if shard.pending.len() >= BATCH_BYTES {
            shard.send_pending().await?;
        }
        Ok(())
    }

    /// Sends the client's CopyData message whole to every shard (a replicated table).
    pub(super) async fn send_everywhere(&mut self, frame: &Frame) -> Result<(), FrontendError> {
        for shard in &mut self.shards {
            shard.conn().write_all(&frame.bytes).await?;
        }
        Ok(())
    }

    /// Sends every shard's queued rows.
    pub(super) async fn flush(&mut self) -> Result<(), FrontendError> {
        for shard in &mut self.shards {
            shard.send_pending().await?;
        }
        Ok(())
    }

    /// Starts the COPY on `cluster`'s primary, in a transaction; its index in `shards`.
    pub(super) async fn start(
        &mut self,
        session: &Session,
        cluster: &str,
    ) -> Result<usize, FrontendError> {
        let mut part = session.begin_on_primary(cluster).await?;
        part.attached.route.node.stats.count_write();
        let checkout = &mut part.attached.checkout;
        let mut query = BytesMut::new();
        postgres_protocol::message::frontend::query(&self.sql, &mut query)
            .map_err(|e| BackendError::Malformed(e.to_string()))?;
        checkout.conn.write_all(&query).await?;
        let mut error = None;
        loop {
            let frame = checkout.conn.read_frame().await?;
            checkout.conn.observe(&frame);
            match frame.tag {
                tag::COPY_IN_RESPONSE => {
                    self.response.get_or_insert(frame);
                    break;
                }
                tag::ERROR_RESPONSE => error = Some(frame.bytes),
                tag::READY_FOR_QUERY => break,
                _ => {}
            }
        }
        if let Some(bytes) = error {
            session.roll_back(vec![part]).await;
            return Err(BackendError::Server(bytes).into());
        }
        let mut pending = BytesMut::new();
        let mut lines = Vec::new();
        if let Some(header) = &self.header {
            pending.extend_from_slice(header);
            lines.push(1);
        }
        self.shards.push(ShardCopy {
            part,
            pending,
            copying: true,
            lines,
        });
        Ok(self.shards.len() - 1)
    }

    /// The client's data is all in: ends every shard's COPY, then commits them as one (through
    /// two-phase commit when it is on). On any shard's error, nothing is committed.
    pub(super) async fn finish(
        mut self,
        session: &mut Session,
    ) -> Result<Committed, FrontendError> {
        if let Err(e) = self.flush().await {
            self.abort(session).await;
            return Err(e);
        }
        let mut rows = Vec::with_capacity(self.shards.len());
        for shard in &mut self.shards {
            match shard.end_copy().await {
                Ok(count) => rows.push(count),
                Err(e) => {
                    self.abort(session).await;
                    return Err(e);
                }
            }
        }
        let parts = self.shards.into_iter().map(|shard| shard.part).collect();
        let positions = session.commit_participants(parts).await?;
        Ok(Committed { rows, positions })
    }

    /// Ends every shard's COPY without effect and rolls its transaction back. A connection
    /// that does not answer cleanly is closed (which rolls back too) rather than reused.
    pub(super) async fn abort(self, session: &Session) {
        for shard in self.shards {
            shard.roll_back(session).await;
        }
    }
}

impl ShardCopy {
    fn conn(&mut self) -> &mut crate::backend::ServerConn {
        &mut self.part.attached.checkout.conn
    }

    async fn send_pending(&mut self) -> Result<(), FrontendError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut message = BytesMut::with_capacity(self.pending.len() + 5);
        put_message(&mut message, tag::COPY_DATA, &self.pending);
        self.pending.clear();
        self.conn().write_all(&message).await?;
        Ok(())
    }

    /// Sends CopyDone and reads the answer: the number of rows, or the shard's error.
    async fn end_copy(&mut self) -> Result<u64, FrontendError> {
        let mut done = BytesMut::new();
        put_message(&mut done, tag::COPY_DONE, &[]);
        self.conn().write_all(&done).await?;
        self.copying = false;
        let (answer, error) = read_to_ready(&mut self.part.attached.checkout).await?;
        match error {
            Some(bytes) => Err(BackendError::Server(with_client_line(&bytes, &self.lines)).into()),
            None => Ok(answer),
        }
    }

    /// Leaves copy-in mode (CopyFail) if still in it, rolls back, and gives the connection
    /// back; or closes it when it does not answer as expected.
    async fn roll_back(mut self, session: &Session) {
        if self.copying {
            let mut fail = BytesMut::new();
            put_message(&mut fail, tag::COPY_FAIL, b"COPY aborted by pgsplit\0");
            let ended = match self.conn().write_all(&fail).await {
                Ok(()) => read_to_ready(&mut self.part.attached.checkout)
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            if !ended {
                return; // dropped: closing the connection rolls it back
            }
        }
        session.roll_back(vec![self.part]).await;
    }
}

/// Reads a shard's answer up to ReadyForQuery: the row count of its `COPY n` tag, and its
/// error if it sent one.
async fn read_to_ready(checkout: &mut Checkout) -> Result<(u64, Option<Bytes>), FrontendError> {
    let mut count = 0;
    let mut error = None;
    loop {
        let frame = checkout.conn.read_frame().await?;
        checkout.conn.observe(&frame);
        match frame.tag {
            b'C' => count = copied_rows(frame.body()),
            tag::ERROR_RESPONSE => error = Some(frame.bytes),
            tag::READY_FOR_QUERY => return Ok((count, error)),
            _ => {}
        }
    }
}

/// A shard's ErrorResponse with the line of its context (`COPY t, line 3: ...`) turned into
/// the client's line number; unchanged where the line is not known.
fn with_client_line(frame: &Bytes, lines: &[u64]) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len() + 8);
    out.extend_from_slice(&[tag::ERROR_RESPONSE, 0, 0, 0, 0]);
    let mut body = frame.get(5..).unwrap_or_default();
    while let Some((&code, rest)) = body.split_first() {
        let Some((value, after)) = crate::protocol::read_cstr(rest).filter(|_| code != 0) else {
            break;
        };
        let value = match code {
            b'W' => client_line_context(value, lines),
            _ => Cow::Borrowed(value),
        };
        out.put_u8(code);
        out.put_slice(value.as_bytes());
        out.put_u8(0);
        body = after;
    }
    out.put_u8(0);
    let len = i32::try_from(out.len() - 1).unwrap_or(i32::MAX);
    out[1..5].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

/// `COPY t, line 3, column v: "x"` with the shard's line 3 replaced by the client's.
fn client_line_context<'a>(context: &'a str, lines: &[u64]) -> Cow<'a, str> {
    const MARK: &str = ", line ";
    let Some(start) = context.find(MARK).map(|at| at + MARK.len()) else {
        return Cow::Borrowed(context);
    };
    let digits = context[start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let shard_line: Option<usize> = context[start..start + digits].parse().ok();
    match shard_line.and_then(|n| lines.get(n.checked_sub(1)?)) {
        Some(line) => Cow::Owned(format!(
            "{}{line}{}",
            &context[..start],
            &context[start + digits..]
        )),
        None => Cow::Borrowed(context),
    }
}

/// The number in a `COPY n` command tag.
fn copied_rows(body: &[u8]) -> u64 {
    crate::protocol::read_cstr(body)
        .and_then(|(text, _)| text.strip_prefix("COPY "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_with_context(context: &str) -> Bytes {
        let mut body = BytesMut::new();
        for (code, value) in [(b'S', "ERROR"), (b'C', "22P04"), (b'W', context)] {
            body.put_u8(code);
            body.put_slice(value.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        let mut frame = BytesMut::new();
        put_message(&mut frame, tag::ERROR_RESPONSE, &body);
        frame.freeze()
    }

    #[test]
    fn a_shard_error_names_the_clients_line() {
        let lines = [1, 4, 9, 12];
        let mapped = with_client_line(
            &error_with_context("COPY t, line 3, column v: \"x\""),
            &lines,
        );
        let body = &mapped[5..];
        assert_eq!(
            crate::protocol::error_field(body, b'W'),
            Some("COPY t, line 9, column v: \"x\"")
        );
        assert_eq!(crate::protocol::error_code(body), Some("22P04"));
        // A line pgsplit did not keep stays as the shard said it.
        let unknown = with_client_line(&error_with_context("COPY t, line 30"), &lines);
        assert_eq!(
            crate::protocol::error_field(&unknown[5..], b'W'),
            Some("COPY t, line 30")
        );
    }
}
