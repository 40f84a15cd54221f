//! Scatter-gather for a sharded read with no single shard: the planned statement runs on every
//! shard at once (each on a node the session's consistency allows, through the pools), and the
//! answers are merged (`crate::fanout`) into the one answer the client gets. And writes to
//! replicated tables, which run on every shard's primary in turn.
//!
//! A read of every shard may come as a simple Query or over the extended protocol
//! ([`extended`]); either way the shards answer in text and the merge reads that.

mod extended;

pub(super) use extended::{ExtendedRead, parse_in_unit, remember, statement_parse};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::join_all;

use crate::backend::BackendError;
use crate::fanout::{Merged, ShardAnswer, merge, plan_co_located};
use crate::protocol::{Frame, tag};
use crate::topology::Cluster;

use super::client::ClientConn;
use super::error::FrontendError;
use super::session::Session;
use super::work::Work;

/// What one shard runs: a simple Query, or the extended protocol's messages for it.
enum ShardRequest<'a> {
    Query(&'a str),
    Extended(BytesMut),
}

/// One shard's answer, and what it ran leaves behind.
struct ShardRun {
    answer: ShardAnswer,
    /// The ParameterDescription body, when the statement was described.
    parameters: Option<Bytes>,
    /// The WAL position after a write (0 for a read).
    lsn: u64,
}

impl Session {
    /// Answers a unit that ran on several shards: their combined answer, or the error.
    pub(super) async fn answer_from_shards(
        &mut self,
        client: &mut ClientConn,
        answer: Result<BytesMut, FrontendError>,
        frames: &[Frame],
    ) -> Result<(), FrontendError> {
        match answer {
            Ok(answer) => {
                client.out.extend_from_slice(&answer);
                let last = frames.last().map(|f| f.tag);
                if matches!(last, Some(tag::SYNC | tag::QUERY)) {
                    client.writer().ready_for_query(self.transaction_status());
                }
                Ok(())
            }
            Err(e) => self.fail_unit(client, e, frames).await,
        }
    }

    /// Runs `sql` on every cluster of `clusters`: the merged answer's messages (without the
    /// ReadyForQuery), or the first error, or a refusal when it cannot be merged correctly.
    /// `frames` are the client's: a simple Query, or an extended-protocol unit whose messages
    /// are answered one by one (and recorded in the session, as a server would have).
    pub(super) async fn gather(
        &mut self,
        clusters: &[String],
        sql: &str,
        work: &Work,
        frames: &[Frame],
    ) -> Result<BytesMut, FrontendError> {
        let plan = plan_co_located(sql).map_err(refusal)?;
        let extended = ExtendedRead::read(frames, &self.state)?;
        let request = match &extended {
            Some(unit) => ShardRequest::Extended(unit.shard_messages(plan.shard_sql())),
            None => ShardRequest::Query(plan.shard_sql()),
        };
        let topology = self.shared.topology.load();
        let shards: Vec<&Cluster> = clusters
            .iter()
            .filter_map(|name| topology.clusters.iter().find(|c| &c.name == name))
            .collect();
        let runs = shards
            .iter()
            .map(|cluster| self.run_on_shard(cluster, &request, work));
        let mut answers = Vec::with_capacity(shards.len());
        let mut parameters = None;
        for run in join_all(runs).await {
            let run = run?;
            parameters = parameters.or(run.parameters);
            answers.push(run.answer);
        }
        let merged = merge(&plan, answers).map_err(refusal)?;
        let Some(unit) = extended else {
            return Ok(encode(&merged));
        };
        let answer = unit.answer(&merged, parameters.as_ref()).map_err(refusal)?;
        extended::remember(frames, &mut self.state);
        Ok(answer)
    }

    /// A write to replicated tables, on every shard's primary in turn (in autocommit: each
    /// shard commits its own copy). Answers the first shard's CommandComplete; a failure after
    /// some shards committed says which, so the operator can repair the copies.
    pub(super) async fn write_everywhere(
        &mut self,
        clusters: &[String],
        sql: &str,
        work: &Work,
    ) -> Result<BytesMut, FrontendError> {
        let topology = self.shared.topology.load_full();
        let mut done: Vec<&str> = Vec::new();
        let mut first = None;
        for name in clusters {
            let Some(cluster) = topology.clusters.iter().find(|c| &c.name == name) else {
                continue;
            };
            match self
                .run_on_shard(cluster, &ShardRequest::Query(sql), work)
                .await
            {
                Ok(ShardRun { answer, lsn, .. }) => {
                    if lsn > self.causal_for(name) {
                        self.causal.insert(name.clone(), lsn);
                    }
                    first.get_or_insert(answer);
                    done.push(name);
                }
                Err(e) if done.is_empty() => return Err(e),
                Err(e) => return Err(partly_written(&done, name, &e)),
            }
        }
        self.invalidate(work.writes.clone(), 0);
        let answer = first.ok_or_else(|| {
            FrontendError::refuse(
                crate::protocol::SqlState::FEATURE_NOT_SUPPORTED,
                "no shard to write to",
            )
        })?;
        let mut out = BytesMut::new();
        put_message(&mut out, b'C', &nul_terminated(&answer.command_tag));
        Ok(out)
    }

    /// One shard's whole answer to `request`, on a connection of its own that goes back to
    /// the pool, and for a write the WAL position after it.
    async fn run_on_shard(
        &self,
        cluster: &Cluster,
        request: &ShardRequest<'_>,
        work: &Work,
    ) -> Result<ShardRun, FrontendError> {
        let route = self.decide_in(cluster, work);
        let mut checkout = self.checkout(&route).await?;
        self.shared.route_counters.record(route.reason);
        self.shared.metrics.route(&route.node, route.reason);
        let writes = work.access() == crate::route::classify::Access::Write;
        if writes {
            route.node.stats.count_write();
        } else {
            route.node.stats.count_read();
        }
        let conn = &mut checkout.conn;
        match request {
            ShardRequest::Query(sql) => {
                let mut query = BytesMut::new();
                postgres_protocol::message::frontend::query(sql, &mut query)
                    .map_err(|e| BackendError::Malformed(e.to_string()))?;
                conn.write_all(&query).await?;
            }
            ShardRequest::Extended(messages) => {
                // The unnamed statement is ours now, not the one the session parsed.
                conn.prepared.remove("");
                conn.write_all(messages).await?;
            }
        }
        let mut answer = ShardAnswer {
            row_description: Default::default(),
            rows: Vec::new(),
            command_tag: String::new(),
        };
        let mut parameters = None;
        let mut error = None;
        loop {
            let frame = conn.read_frame().await?;
            conn.observe(&frame);
            match frame.tag {
                b't' => parameters = Some(Bytes::copy_from_slice(frame.body())),
                b'T' => answer.row_description = frame.body().to_vec().into(),
                b'D' => answer.rows.push(frame.body().to_vec().into()),
                b'C' => {
                    answer.command_tag = crate::protocol::read_cstr(frame.body())
                        .map_or_else(String::new, |(t, _)| t.to_string())
                }
                tag::ERROR_RESPONSE => error = Some(frame.bytes),
                tag::READY_FOR_QUERY => break,
                _ => {}
            }
        }
        if let Some(bytes) = error {
            self.shared.pools.checkin(checkout);
            return Err(BackendError::Server(bytes).into());
        }
        let lsn = if writes {
            checkout.conn.commit_position().await?
        } else {
            0
        };
        self.shared.pools.checkin(checkout);
        Ok(ShardRun {
            answer,
            parameters,
            lsn,
        })
    }
}

pub(super) fn refusal(r: crate::fanout::Refusal) -> FrontendError {
    FrontendError::Refused(r.error_fields())
}

/// RowDescription, DataRows and CommandComplete as the client gets them.
pub(super) fn encode(merged: &Merged) -> BytesMut {
    let mut out = BytesMut::new();
    put_message(&mut out, b'T', &merged.row_description);
    for row in &merged.rows {
        put_message(&mut out, b'D', row);
    }
    put_message(&mut out, b'C', &nul_terminated(&merged.command_tag));
    out
}

pub(super) fn put_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32((body.len() + 4) as i32);
    out.put_slice(body);
}

fn nul_terminated(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// A replicated write that some shards committed and one refused.
fn partly_written(done: &[&str], failed: &str, e: &FrontendError) -> FrontendError {
    FrontendError::refuse(
        crate::protocol::SqlState("XX000"),
        format!(
            "the write to a replicated table committed on shard(s) {} but failed on shard \"{failed}\" ({e}): the copies differ until it is repaired",
            done.join(", ")
        ),
    )
}
