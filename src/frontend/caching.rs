//! The result cache in a session: answering a cacheable read from memory, filling the cache
//! from a read's answer, and dropping what a committed write made stale before the client sees
//! its commit.

use bytes::BytesMut;
use std::time::Duration;

use crate::cache::{CacheContext, CacheKey, CachedResult, FillTicket, WriteScope, cacheable};
use crate::protocol::{Frame, messages, tag};

use crate::route::classify::TxControl;

use super::Live;
use super::client::ClientConn;
use super::session::Session;
use super::state::{SessionState, UnitOutcome};
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

const PARSE_COMPLETE: u8 = b'1';
const BIND_COMPLETE: u8 = b'2';

/// A unit the cache may answer: one simple Query, or the extended protocol's
/// `[Parse (unnamed)] Bind [Describe portal] Execute (all rows) Sync`.
struct CacheableRead<'a> {
    sql: &'a str,
    /// What besides the text decides the answer's bytes: the statement's parameter types,
    /// the Bind's parameter formats and values and result formats, and whether the portal was
    /// described (a RowDescription is part of the answer then). Empty for a simple Query.
    arguments: Vec<u8>,
    /// The unit's unnamed Parse, which a hit still makes the session's unnamed statement.
    parse: Option<&'a Frame>,
    extended: bool,
}

fn cacheable_read<'a>(frames: &'a [Frame], state: &'a SessionState) -> Option<CacheableRead<'a>> {
    match frames {
        [query] if query.tag == tag::QUERY => Some(CacheableRead {
            sql: messages::query_text(query.body())?,
            arguments: Vec::new(),
            parse: None,
            extended: false,
        }),
        _ => extended_read(frames, state),
    }
}

fn extended_read<'a>(frames: &'a [Frame], state: &'a SessionState) -> Option<CacheableRead<'a>> {
    let (parse, rest) = match frames {
        [first, rest @ ..] if first.tag == tag::PARSE => (Some(first), rest),
        _ => (None, frames),
    };
    let (bind, rest) = rest.split_first().filter(|(f, _)| f.tag == tag::BIND)?;
    let (portal, statement) = messages::bind_names(bind.body())?;
    let (described, rest) = match rest {
        [describe, rest @ ..] if describe.tag == tag::DESCRIBE => {
            (messages::target(describe.body())? == (b'P', portal)).then_some((true, rest))?
        }
        _ => (false, rest),
    };
    let [execute, sync] = rest else {
        return None;
    };
    let runs_whole_portal =
        execute.tag == tag::EXECUTE && messages::execute_message(execute.body())? == (portal, 0);
    if !runs_whole_portal || sync.tag != tag::SYNC {
        return None;
    }
    // A named Parse would fail on a server that has the name already; only the unnamed one
    // is answered without a server.
    let definition = match parse {
        Some(parse) => {
            let (name, _) = messages::parse_message(parse.body())?;
            if !name.is_empty() || !statement.is_empty() {
                return None;
            }
            messages::parse_definition(parse.body())
        }
        None => messages::parse_definition(state.statements.get(statement)?.get(5..)?),
    };
    let (sql, parameter_types) = crate::protocol::read_cstr(definition)?;
    let mut arguments = parameter_types.to_vec();
    arguments.extend_from_slice(messages::bind_arguments(bind.body())?);
    arguments.push(described as u8);
    Some(CacheableRead {
        sql,
        arguments,
        parse,
        extended: true,
    })
}

impl Session {
    /// Answers a cacheable single-statement read from the cache (true), or arranges for
    /// its answer to fill the cache (false). The session's consistency holds for hits too: an
    /// entry older than the session's causal token (or what it already read) misses.
    pub(super) fn answer_from_cache(
        &mut self,
        client: &mut ClientConn,
        frames: &[Frame],
        work: &Work,
        live: &Live,
    ) -> bool {
        self.fill = None;
        let Some(cache) = live.cache.clone() else {
            return false;
        };
        // Without the channel (or the WAL follower), writes could go unseen: no cache then.
        let channel_down = self
            .shared
            .invalidation
            .get()
            .is_some_and(|c| !c.is_listening());
        let wal_down = self
            .shared
            .wal_follower
            .get()
            .is_some_and(|w| !w.cache_usable());
        if channel_down || wal_down {
            return false;
        }
        let Some(read) = cacheable_read(frames, &self.state) else {
            return false;
        };
        let sql = read.sql;
        let in_transaction = self.held_begin.is_some()
            || self
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
        let cluster = &self.unit_cluster_in(&topology).name;
        let settings = live.consistency(cluster);
        let wanted = work.hints.or(&self.local_hints.or(&self.hints));
        let (freshness, primary_only) = self.freshness(&wanted, cluster, settings);
        if primary_only.is_some() {
            return false; // strong reads and route=primary see the primary, not a copy
        }
        let key = CacheKey::new(
            &self.database,
            &self.credentials.user,
            self.state.desired_settings().iter(),
            sql,
            &read.arguments,
        );
        if let Some(hit) = cache.get(&key, freshness.min_lsn) {
            if read.extended {
                if let Some(parse) = read.parse {
                    // The unnamed statement is the session's now, as if the server had parsed it.
                    self.state
                        .statements
                        .insert(String::new(), parse.bytes.clone());
                    client.writer().bodiless(PARSE_COMPLETE);
                }
                client.writer().bodiless(BIND_COMPLETE);
            }
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

    /// The WAL position a read sent now to the attached node reflects at least: what the node
    /// had replayed when last polled, and on the primary also the session's own last commit
    /// there (the primary has every commit made before the read began).
    pub(super) fn fill_stamp(&self) -> Option<u64> {
        let node = &self.server.as_ref()?.route.node;
        let polled = node
            .stats
            .replay_lsn
            .load(std::sync::atomic::Ordering::Relaxed);
        let own = if node.role() == crate::topology::Role::Primary {
            let topology = self.shared.topology.load();
            topology
                .cluster_of_node(&node.name)
                .map_or(0, |cluster| self.causal_for(&cluster.name))
        } else {
            0
        };
        Some(polled.max(own))
    }

    /// Keeps what a filling read's server sends; anything but rows ends the fill.
    pub(super) fn collect_for_cache(&mut self, frame: &Frame) {
        let Some(fill) = self.fill.as_mut() else {
            return;
        };
        match frame.tag {
            b'T' | b'D' | b'C' => fill.messages.extend_from_slice(&frame.bytes),
            PARSE_COMPLETE | BIND_COMPLETE => {} // a hit writes its own
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
        } else if self.wrote {
            // Dropped once the commit's WAL position is known, still before the client hears
            // of the commit (see `take_causal_token`).
            self.committed_writes = super::work::merge_scopes(self.committed_writes.take(), writes);
        } else {
            // A failed multi-statement query may still have committed statements before an
            // explicit COMMIT inside it: dropping too much only costs misses.
            self.invalidate(writes, 0);
        }
    }

    /// A write committed at WAL position `lsn` (0 if unknown): drop what it made stale, before
    /// its client sees the commit, here and on the other instances.
    pub(super) fn invalidate(&self, scope: Option<WriteScope>, lsn: u64) {
        let live = self.shared.live();
        if let (Some(sharding), Some(WriteScope::Tables(tables))) = (&live.sharding, &scope) {
            sharding.tables_written(tables);
        }
        let Some(cache) = live.cache.clone() else {
            return;
        };
        let channel = self.shared.invalidation.get();
        match scope {
            Some(WriteScope::Tables(tables)) => {
                cache.invalidate_tables(&tables, lsn);
                if let Some(channel) = channel {
                    channel.tables_written(&tables, lsn);
                }
            }
            Some(WriteScope::All) => {
                cache.clear_written(lsn);
                if let Some(channel) = channel {
                    channel.everything_written(lsn);
                }
            }
            Some(WriteScope::Nothing) | None => {}
        }
    }
}
