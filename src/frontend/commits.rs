//! Read-your-writes after a commit: the WAL position of each committed write, learned on the
//! connection that committed it, raises the session's causal token and drops what the write
//! made stale from the result cache, all before the client hears of the commit. The position
//! is asked in the same write as the committing unit when nothing else can come between them
//! (no extra round trip); otherwise in a round trip of its own once the commit is answered.

use crate::protocol::{Frame, tag};
use crate::route::classify::TxControl;

use super::client::ClientConn;
use super::error::FrontendError;
use super::session::Session;
use super::work::{Work, opens_transaction};

impl Session {
    /// Whether the unit about to be sent (nothing else in flight) ends a transaction that
    /// wrote, so that the question for its commit's position can follow it in the same write.
    /// Not after a COPY FROM or a text pgsplit could not parse (the question would break into
    /// copy data), nor a unit that ends without Sync, nor a commit across shards (its
    /// participants are settled first).
    pub(super) fn commits_a_write(&self, work: &Work, frames: &[Frame]) -> bool {
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
    /// commit's ReadyForQuery.
    pub(super) async fn take_causal_token(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<(), FrontendError> {
        let held = self.held_ready.take();
        // A transaction that rolled back committed nothing: no new token (end_units knew).
        let mut committed_at = 0;
        let mut asked = Ok(0);
        if let Some(attached) = self.server.as_mut().filter(|_| self.wrote) {
            self.wrote = false;
            asked = match self.responses.take_commit_position() {
                Some(position) => Ok(position),
                None => attached.checkout.conn.commit_position().await,
            };
            committed_at = *asked.as_ref().unwrap_or(&0);
        }
        // Even when the position could not be learned (then at once, position unknown).
        let writes = self.committed_writes.take();
        self.invalidate(writes, committed_at);
        asked?;
        if let Some(attached) = &self.server {
            // Found by reference (no copy of the name): this runs at every committed write.
            let topology = self.shared.topology.load();
            let node = attached.route.node.name.as_str();
            if let Some(cluster) = topology.cluster_of_node(node) {
                self.advance_causal(client, [(cluster.name.as_str(), committed_at)]);
            }
        }
        if let Some(ready) = held {
            client.out.extend_from_slice(&ready.bytes);
        }
        self.release_if_idle();
        Ok(())
    }
}
