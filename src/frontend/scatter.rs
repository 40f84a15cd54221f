//! Scatter-gather for a sharded read with no single shard: the planned statement runs on every
//! shard at once (each on a node the session's consistency allows, through the pools), and the
//! answers are merged (`crate::fanout`) into the one answer the client gets. And writes to
//! replicated tables, which run on every shard's primary in turn.

use bytes::{BufMut, BytesMut};
use futures_util::future::join_all;

use crate::backend::BackendError;
use crate::fanout::{Merged, ShardAnswer, merge, plan_co_located};
use crate::protocol::{Frame, tag};
use crate::topology::Cluster;

use super::client::ClientConn;
use super::error::FrontendError;
use super::session::Session;
use super::work::Work;

impl Session {
    /// Answers a unit that ran on several shards: their combined answer, or the error.
    pub(super) fn answer_from_shards(
        &mut self,
        client: &mut ClientConn,
        answer: Result<BytesMut, FrontendError>,
        frames: &[Frame],
    ) -> Result<(), FrontendError> {
        match answer {
            Ok(answer) => {
                client.out.extend_from_slice(&answer);
                client.writer().ready_for_query(self.transaction_status());
                Ok(())
            }
            Err(e) => self.fail_unit(client, e, frames),
        }
    }

    /// Runs `sql` on every cluster of `clusters`: the merged answer's messages (without the
    /// ReadyForQuery), or the first error, or a refusal when it cannot be merged correctly.
    pub(super) async fn gather(
        &self,
        clusters: &[String],
        sql: &str,
        work: &Work,
    ) -> Result<BytesMut, FrontendError> {
        let plan = plan_co_located(sql).map_err(refusal)?;
        let topology = self.shared.topology.load();
        let shards: Vec<&Cluster> = clusters
            .iter()
            .filter_map(|name| topology.clusters.iter().find(|c| &c.name == name))
            .collect();
        let runs = shards
            .iter()
            .map(|cluster| self.run_on_shard(cluster, plan.shard_sql(), work));
        let mut answers = Vec::with_capacity(shards.len());
        for answer in join_all(runs).await {
            answers.push(answer?.0);
        }
        let merged = merge(&plan, answers).map_err(refusal)?;
        Ok(encode(&merged))
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
            match self.run_on_shard(cluster, sql, work).await {
                Ok((answer, lsn)) => {
                    if lsn > self.causal_for(name) {
                        self.causal.insert(name.clone(), lsn);
                        self.causal_token = lsn;
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

    /// One shard's whole answer to `sql`, on a connection of its own that goes back to the pool,
    /// and for a write the WAL position after it (0 for a read).
    async fn run_on_shard(
        &self,
        cluster: &Cluster,
        sql: &str,
        work: &Work,
    ) -> Result<(ShardAnswer, u64), FrontendError> {
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
        let mut query = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut query)
            .map_err(|e| BackendError::Malformed(e.to_string()))?;
        let conn = &mut checkout.conn;
        conn.write_all(&query).await?;
        let mut answer = ShardAnswer {
            row_description: Default::default(),
            rows: Vec::new(),
            command_tag: String::new(),
        };
        let mut error = None;
        loop {
            let frame = conn.read_frame().await?;
            conn.observe(&frame);
            match frame.tag {
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
            let position = checkout
                .conn
                .run_internal("SELECT pg_current_wal_insert_lsn()::text")
                .await?;
            position
                .as_deref()
                .and_then(crate::topology::monitor::parse_lsn)
                .unwrap_or(0)
        } else {
            0
        };
        self.shared.pools.checkin(checkout);
        Ok((answer, lsn))
    }
}

fn refusal(r: crate::fanout::Refusal) -> FrontendError {
    FrontendError::Refused(r.error_fields())
}

/// RowDescription, DataRows and CommandComplete as the client gets them.
fn encode(merged: &Merged) -> BytesMut {
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
