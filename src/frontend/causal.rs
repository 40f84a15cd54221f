//! The session's causal token: per cluster, a WAL position at or past its last committed
//! write, which a replica must have replayed before it serves the session's reads, and which
//! the client may pass to another session (`after=`).
//!
//! With `causal_token = "on_read"` a commit's position is not asked: the commit leaves an
//! [`UnaskedCommit`] and asks the monitor to look at the primary sooner, and the first poll
//! begun on that primary after the commit was answered reads an insert position at or past it.
//! Until that poll has answered, the session's reads on the cluster go to the primary (or wait
//! `ryw_wait`); once it has, the position joins the token and the client hears of it before the
//! answers of its next unit.

use std::sync::Arc;
use std::time::Duration;

use crate::hint::CausalToken;
use crate::protocol::{ErrorFields, SqlState};
use crate::topology::{Node, Role};

use super::client::ClientConn;
use super::session::Session;

/// How often `SHOW pgsplit.causal_token` looks again for the position of an unasked commit.
const SHOW_RECHECK: Duration = Duration::from_millis(1);

/// A committed write whose WAL position was not asked.
pub(super) struct UnaskedCommit {
    cluster: String,
    /// The primary it committed on.
    node: Arc<Node>,
    /// The primary's poll count when the commit had been answered.
    mark: u64,
}

impl UnaskedCommit {
    /// A position at or past the commit, once the monitor has read one. A node no longer the
    /// primary (a failover came between) will not be read again as one: its last position
    /// stands, as a position asked on it would have (0 if none, which asks nothing of replicas).
    fn position(&self) -> Option<u64> {
        let insert = &self.node.stats.insert;
        if self.node.role() != Role::Primary {
            return Some(insert.last());
        }
        insert.past(self.mark)
    }
}

impl Session {
    /// The session's known causal WAL position on `cluster` (0: no write there yet).
    pub(super) fn causal_for(&self, cluster: &str) -> u64 {
        self.causal.get(cluster).copied().unwrap_or(0)
    }

    /// What a replica must have replayed to serve the session's reads on `cluster`: the known
    /// position, or past it an unasked commit's; `u64::MAX` (no replica) while that one is not
    /// known yet, and the primary's monitor is asked to look sooner.
    pub(super) fn causal_for_reads(&self, cluster: &str) -> u64 {
        let known = self.causal_for(cluster);
        let Some(unasked) = self.unasked.iter().find(|u| u.cluster == cluster) else {
            return known;
        };
        match unasked.position() {
            Some(position) => known.max(position),
            None => {
                unasked.node.stats.want_newer_position();
                u64::MAX
            }
        }
    }

    /// After a write committed on `node`, the primary of `cluster`, without its position asked.
    pub(super) fn note_unasked_commit(&mut self, node: &Arc<Node>, cluster: &str) {
        let mark = node.stats.insert.mark();
        // Looked at sooner than its interval, so the session's next reads may find the
        // position known (at most one poll per `catch_up_interval`, however many commits).
        node.stats.want_newer_position();
        // A later commit's mark covers the earlier ones on the same cluster.
        match self.unasked.iter_mut().find(|u| u.cluster == cluster) {
            Some(unasked) => {
                unasked.node = Arc::clone(node);
                unasked.mark = mark;
            }
            None => self.unasked.push(UnaskedCommit {
                cluster: cluster.to_owned(),
                node: Arc::clone(node),
                mark,
            }),
        }
    }

    /// Takes the positions of the unasked commits the monitor has read past into the token
    /// (telling the client if it rose).
    pub(super) fn learn_unasked_positions(&mut self, client: &mut ClientConn) {
        let mut i = 0;
        while i < self.unasked.len() {
            match self.unasked[i].position() {
                Some(position) => {
                    let learned = self.unasked.swap_remove(i);
                    self.advance_causal(client, [(learned.cluster.as_str(), position)]);
                }
                None => i += 1,
            }
        }
    }

    /// Learns every unasked commit's position, for a token that is shown: the primaries'
    /// monitors are asked to look now, and waited for up to an interval and a query timeout.
    pub(super) async fn learn_every_unasked_position(
        &mut self,
        client: &mut ClientConn,
    ) -> Result<(), ErrorFields> {
        let deadline = {
            let live = self.shared.live();
            tokio::time::Instant::now() + live.config.monitor.interval + live.config.health.timeout
        };
        loop {
            self.learn_unasked_positions(client);
            let Some(unasked) = self.unasked.first() else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ErrorFields::error(
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "the WAL position of the session's last write on cluster \"{}\" is not known: the monitor has not read primary \"{}\" since",
                        unasked.cluster, unasked.node.name
                    ),
                ));
            }
            unasked.node.stats.want_newer_position();
            tokio::time::sleep(SHOW_RECHECK).await;
        }
    }

    /// The session's causal token, for another session to read at least what this one wrote.
    /// Positions are named per cluster when there are shards or several clusters written (an
    /// LSN means nothing on another cluster); otherwise it is the one bare position.
    pub(super) fn causal_token(&self) -> CausalToken {
        let named = self.causal.len() > 1 || self.shared.live().sharding.is_some();
        if named {
            CausalToken::per_cluster(self.causal.iter().map(|(c, lsn)| (c.as_str(), *lsn)))
        } else {
            CausalToken::everywhere(self.causal.values().copied().max().unwrap_or(0))
        }
    }

    /// Raises the session's positions to where its writes committed, and tells the client the
    /// new causal token (ParameterStatus, before the ReadyForQuery) if any position rose.
    /// Allocation-free for a cluster written before: it runs at every committed write.
    pub(super) fn advance_causal<'a>(
        &mut self,
        client: &mut ClientConn,
        committed: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        let mut rose = false;
        for (cluster, position) in committed {
            match self.causal.get_mut(cluster) {
                Some(known) if position > *known => *known = position,
                Some(_) => continue,
                None if position > 0 => {
                    self.causal.insert(cluster.to_string(), position);
                }
                None => continue,
            }
            rose = true;
        }
        if rose {
            client
                .writer()
                .parameter_status("pgsplit.causal_token", self.causal_token());
        }
    }
}
