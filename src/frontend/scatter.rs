//! Scatter-gather for a sharded read with no single shard: the planned statement runs on every
//! shard at once (each on a node the session's consistency allows, through the pools), and the
//! answers are merged (`crate::fanout`) into the one answer the client gets.

use bytes::{BufMut, BytesMut};
use futures_util::future::join_all;

use crate::backend::BackendError;
use crate::fanout::{Merged, ShardAnswer, merge, plan_co_located};
use crate::protocol::tag;
use crate::topology::Cluster;

use super::error::FrontendError;
use super::session::Session;
use super::work::Work;

impl Session {
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
            answers.push(answer?);
        }
        let merged = merge(&plan, answers).map_err(refusal)?;
        Ok(encode(&merged))
    }

    /// One shard's whole answer to `sql`, on a connection of its own that goes back to the pool.
    async fn run_on_shard(
        &self,
        cluster: &Cluster,
        sql: &str,
        work: &Work,
    ) -> Result<ShardAnswer, FrontendError> {
        let route = self.decide_in(cluster, work);
        let mut checkout = self.checkout(&route).await?;
        self.shared.route_counters.record(route.reason);
        self.shared.metrics.route(&route.node.name, route.reason);
        route.node.stats.count_read();
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
        self.shared.pools.checkin(checkout);
        match error {
            Some(bytes) => Err(BackendError::Server(bytes).into()),
            None => Ok(answer),
        }
    }
}

fn refusal(r: crate::fanout::Refusal) -> FrontendError {
    FrontendError::Refused(r.error_fields())
}

/// RowDescription, DataRows and CommandComplete as the client gets them.
fn encode(merged: &Merged) -> BytesMut {
    let mut out = BytesMut::new();
    let mut message = |tag: u8, body: &[u8]| {
        out.put_u8(tag);
        out.put_i32((body.len() + 4) as i32);
        out.put_slice(body);
    };
    message(b'T', &merged.row_description);
    for row in &merged.rows {
        message(b'D', row);
    }
    let mut tag = merged.command_tag.clone().into_bytes();
    tag.push(0);
    message(b'C', &tag);
    out
}
