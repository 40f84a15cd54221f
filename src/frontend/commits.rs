//! Read-your-writes after a commit: the WAL position of each committed write raises the
//! session's causal token, and what the write made stale leaves the result cache, before the
//! client hears of the commit. With `causal_token = "at_commit"`, or while the result cache is
//! on (it needs the position), the position is asked on the connection that committed, in the
//! same write as the committing unit when nothing else can come between them (no extra round
//! trip), otherwise in a round trip of its own once the commit is answered. Otherwise it is
//! left to the session's next reads (see [`super::causal`]).

use std::sync::Arc;

use crate::config::CausalTokenTiming;
use crate::protocol::{Frame, tag};
use crate::route::classify::TxControl;
use crate::topology::Node;

use super::client::ClientConn;
use super::error::FrontendError;
use super::session::Session;
use super::work::{Work, opens_transaction};
use super::{Live, Shared};

impl Session {
    /// Whether the unit about to be sent (nothing else in flight) ends a transaction that
    /// wrote, so that the question for its commit's position can follow it in the same write.
    /// Not after a COPY FROM or a text pgsplit could not parse (the question would break into
    /// copy data), nor a unit that ends without Sync, nor a commit across shards (its
    /// participants are settled first).
    pub(super) fn commits_a_write(&self, work: &Work, frames: &[Frame], live: &Live) -> bool {
        let Some(attached) = &self.server else {
            return false;
        };
        let ends_transaction = match attached.checkout.conn.tx_status {
            b'I' => !opens_transaction(&work.tx),
            b'T' => matches!(work.tx.last(), Some(TxControl::Commit)),
            _ => false,
        };
        self.wrote
            && ends_transaction
            && work.executes
            && work.parsed
            && !work.copy_in
            && self.replay.is_none()
            && matches!(frames.last().map(|f| f.tag), Some(tag::QUERY | tag::SYNC))
            && !self.multi_shard.spans_shards()
            && asks_commit_positions(live, &self.shared, &attached.route.node)
    }

    /// Sends the question for the WAL position of the commit just forwarded (see
    /// [`Self::commits_a_write`]).
    pub(super) fn ask_commit_position(&mut self) {
        if let Some(attached) = self.server.as_mut() {
            self.responses
                .ask_commit_position(&mut attached.checkout.conn, &mut self.to_server);
        }
    }

    /// After a write committed, takes a WAL position at or after its commit record, learned on
    /// the connection that committed it (asked behind the commit, or now, in a round trip of
    /// its own), and tells the client as ParameterStatus `pgsplit.causal_token` before its
    /// commit's ReadyForQuery; or, when such positions are not asked, notes the commit for
    /// the session's next reads.
    pub(super) async fn take_causal_token(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<(), FrontendError> {
        let held = self.held_ready.take();
        // A transaction that rolled back committed nothing: no new token (end_units knew).
        let mut committed_at = 0;
        let mut asked = Ok(0);
        let mut unasked = false;
        if let Some(attached) = self.server.as_mut().filter(|_| self.wrote) {
            self.wrote = false;
            asked = match self.responses.take_commit_position() {
                Some(position) => Ok(position),
                None if !asks_commit_positions(
                    &self.shared.live(),
                    &self.shared,
                    &attached.route.node,
                ) =>
                {
                    unasked = true;
                    Ok(0)
                }
                None => attached.checkout.conn.commit_position().await,
            };
            committed_at = *asked.as_ref().unwrap_or(&0);
        }
        // Even when the position could not be learned (then at once, position unknown).
        let writes = self.committed_writes.take();
        self.invalidate(writes, committed_at);
        asked?;
        if let Some(node) = self.server.as_ref().map(|a| Arc::clone(&a.route.node)) {
            let topology = self.shared.topology.load();
            if let Some(cluster) = topology.cluster_of_node(&node.name) {
                if unasked {
                    self.note_unasked_commit(&node, &cluster.name);
                } else {
                    self.advance_causal(client, [(cluster.name.as_str(), committed_at)]);
                }
            }
        }
        if let Some(ready) = held {
            client.out.extend_from_slice(&ready.bytes);
        }
        self.release_if_idle();
        Ok(())
    }
}

/// Whether commits on `node` have their WAL position asked (see the module).
fn asks_commit_positions(live: &Live, shared: &Shared, node: &Node) -> bool {
    if live.cache.is_some() {
        return true;
    }
    let topology = shared.topology.load();
    topology
        .cluster_of_node(&node.name)
        .is_none_or(|c| live.consistency(&c.name).causal_token == CausalTokenTiming::AtCommit)
}
