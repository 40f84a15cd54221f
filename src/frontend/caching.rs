//! The result cache in a session: answering a cacheable read from memory, filling the cache
//! from a read's answer, and dropping what a committed write made stale before the client sees
//! its commit.

use bytes::BytesMut;
use std::time::Duration;

use crate::cache::{CacheContext, CacheKey, CachedResult, FillTicket, WriteScope, cacheable};
use crate::protocol::{Frame, messages, tag};

use crate::route::classify::TxControl;

use super::client::ClientConn;
use super::session::Session;
use super::state::UnitOutcome;
use super::work::Work;

/// A read being answered by a server whose answer will fill the cache.
pub struct Fill {
    key: CacheKey,
    ticket: FillTicket,
    ttl: Duration,
    tables: Vec<String>,
    /// RowDescription, DataRows and CommandComplete, as the server sent them.
    messages: BytesMut,
    /// The WAL position the answering node had reached when the read was sent.
    pub stamp: u64,
}

impl Session {
    /// Answers a cacheable single-statement simple query from the cache (true), or arranges for
    /// its answer to fill the cache (false). The session's consistency holds for hits too: an
    /// entry older than the session's causal token (or what it already read) misses.
    pub(super) fn answer_from_cache(
        &mut self,
        client: &mut ClientConn,
        frames: &[Frame],
        work: &Work,
    ) -> bool {
        self.fill = None;
        let live = self.shared.live();
        let Some(cache) = live.cache.clone() else {
            return false;
        };
        // Without the channel, other instances' writes could go unseen: no cache then.
        if self
            .shared
            .invalidation
            .get()
            .is_some_and(|c| !c.is_listening())
        {
            return false;
        }
        let [frame] = frames else {
            return false;
        };
        let Some(sql) = (frame.tag == tag::QUERY)
            .then(|| messages::query_text(frame.body()))
            .flatten()
        else {
            return false;
        };
        let in_transaction = self
            .server
            .as_ref()
            .is_some_and(|a| a.checkout.conn.tx_status != b'I');
        let context = CacheContext {
            pinned: self.state.pin().is_some(),
            in_transaction,
        };
        let classification = live.classifier.classify(sql);
        let Ok(plan) = cacheable(
            sql,
            &classification,
            work.hints.cache,
            &live.cache_rules,
            context,
        ) else {
            return false;
        };
        let topology = self.shared.topology.load();
        let settings = live.consistency(&topology.cluster_for_database(&self.database).name);
        let wanted = work.hints.or(&self.local_hints.or(&self.hints));
        let (freshness, primary_only) = self.freshness(&wanted, settings);
        if primary_only.is_some() {
            return false; // strong reads and route=primary see the primary, not a copy
        }
        let key = CacheKey::new(
            &self.database,
            &self.credentials.user,
            self.state.desired_settings(),
            sql,
            &[],
        );
        if let Some(hit) = cache.get(&key, freshness.min_lsn) {
            client.out.extend_from_slice(&hit.messages);
            client.writer().ready_for_query(b'I');
            return true;
        }
        self.fill = Some(Fill {
            key,
            ticket: cache.ticket(),
            ttl: plan.ttl,
            tables: plan.tables,
            messages: BytesMut::new(),
            stamp: 0,
        });
        false
    }

    /// Keeps what a filling read's server sends; anything but rows ends the fill.
    pub(super) fn collect_for_cache(&mut self, frame: &Frame) {
        let Some(fill) = self.fill.as_mut() else {
            return;
        };
        match frame.tag {
            b'T' | b'D' | b'C' => fill.messages.extend_from_slice(&frame.bytes),
            tag::READY_FOR_QUERY | tag::NOTICE_RESPONSE | tag::PARAMETER_STATUS => {}
            _ => self.fill = None,
        }
    }

    /// The filling read succeeded: its answer goes into the cache.
    pub(super) fn finish_fill(&mut self, succeeded: bool) {
        let Some(fill) = self.fill.take() else {
            return;
        };
        let Some(cache) = self.shared.live().cache.clone() else {
            return;
        };
        if succeeded && !fill.messages.is_empty() {
            let result = CachedResult {
                messages: fill.messages.freeze(),
                lsn: fill.stamp,
                tables: fill.tables,
            };
            cache.insert(fill.key, result, fill.ttl, fill.ticket);
        }
    }

    /// A unit ended (its ReadyForQuery is not yet with the client): a filling read goes into
    /// the cache; writes drop what they made stale once their transaction commits (outside a
    /// block at once; in one at COMMIT; never after an error or a ROLLBACK).
    pub(super) fn settle_cache(&mut self, outcome: UnitOutcome, tx: &[TxControl]) {
        self.finish_fill(!outcome.failed && outcome.status == b'I');
        if outcome.status != b'I' {
            return; // still in a transaction block: its writes wait for its end
        }
        let rolled_back = !outcome.failed && tx.iter().any(|t| matches!(t, TxControl::Rollback));
        let writes = self.pending_writes.take();
        if rolled_back {
            self.wrote = false;
        } else {
            // A failed multi-statement query may still have committed statements before an
            // explicit COMMIT inside it: dropping too much only costs misses.
            self.invalidate(writes);
        }
    }

    /// A write committed: drop what it made stale, before its client sees the commit.
    fn invalidate(&self, scope: Option<WriteScope>) {
        let Some(cache) = self.shared.live().cache.clone() else {
            return;
        };
        let channel = self.shared.invalidation.get();
        match scope {
            Some(WriteScope::Tables(tables)) => {
                cache.invalidate_tables(&tables);
                if let Some(channel) = channel {
                    channel.tables_written(&tables);
                }
            }
            Some(WriteScope::All) => {
                cache.clear();
                if let Some(channel) = channel {
                    channel.everything_written();
                }
            }
            Some(WriteScope::Nothing) | None => {}
        }
    }
}
