//! [`ResultCache`]: the entries, bounded in bytes, each with its own TTL and LSN stamp, and the
//! index that finds them by table for invalidation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use moka::Expiry;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use serde::Serialize;

use super::key::CacheKey;
use super::names::{normalize, normalize_all, relation, relations};
use super::related::Related;

/// Bytes counted per entry on top of its messages and table names: the key, the `Arc`s, the
/// index, moka's own bookkeeping. An estimate, so small entries are not free.
const ENTRY_OVERHEAD: usize = 160;

/// One cached answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResult {
    /// The exact server messages, RowDescription through CommandComplete, as sent.
    pub messages: Bytes,
    /// The WAL position the answer reflects at least: a session that needs newer data misses.
    pub lsn: u64,
    /// The tables it read (any spelling: normalized on insert).
    pub tables: Vec<String>,
}

/// Taken before a result is fetched from a server, given back to [`ResultCache::insert`]: an
/// invalidation of one of its tables in between means the result may predate that write, so
/// it is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket(u64);

/// What moka stores: the shared result, its TTL, the generation that tells this insert from
/// a later one under the same key in the index, and whether the insert was confirmed fresh
/// (until then the entry is in moka but never served; see [`ResultCache::insert`]).
#[derive(Clone)]
struct Entry {
    result: Arc<CachedResult>,
    ttl: Duration,
    generation: u64,
    confirmed: Arc<AtomicBool>,
}

/// Each entry lives for its own TTL from its insert (a replacement restarts it).
struct PerEntryTtl;

impl Expiry<CacheKey, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &CacheKey, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Which keys read which relation, and when each relation was last invalidated.
#[derive(Default)]
struct Index {
    /// Relation (see [`relation`]) -> key -> generation of the insert that registered it.
    by_relation: HashMap<String, HashMap<CacheKey, u64>>,
    /// Relation -> `seq` of its last invalidation (one string per table ever written).
    invalidated_at: HashMap<String, u64>,
    /// `seq` of the last [`ResultCache::clear`].
    cleared_at: u64,
    /// Relation -> the WAL position of its last write (0: unknown). A result stamped older
    /// came from a node that may not have replayed that write yet (a lagging replica read
    /// after the invalidation) and is not stored: it would outlive the lag until its TTL.
    written_lsn: HashMap<String, u64>,
    /// The WAL position of the last write to an unknown set of tables.
    written_floor: u64,
    /// Bumped by every invalidation and clear; a [`FillTicket`] is its value.
    seq: u64,
    next_generation: u64,
    /// Invalidations per table as named (normalized), for the statistics.
    invalidations: BTreeMap<String, u64>,
}

impl Index {
    /// Whether something the result read was invalidated since `ticket`, or written at a
    /// WAL position the result (stamped `lsn`) may not reflect.
    fn stale_since(&self, ticket: FillTicket, lsn: u64, relations: &[String]) -> bool {
        self.cleared_at > ticket.0
            || lsn < self.written_floor
            || relations.iter().any(|r| {
                self.invalidated_at.get(r).is_some_and(|&at| at > ticket.0)
                    || self.written_lsn.get(r).is_some_and(|&at| lsn < at)
            })
    }

    /// Registers `key` under its relations, unless one was invalidated since `ticket`; the
    /// generation of this registration.
    fn register_if_fresh(
        &mut self,
        key: CacheKey,
        ticket: FillTicket,
        lsn: u64,
        relations: &[String],
    ) -> Option<u64> {
        if self.stale_since(ticket, lsn, relations) {
            return None;
        }
        self.next_generation += 1;
        for r in relations {
            let keys = self.by_relation.entry(r.clone()).or_default();
            keys.insert(key, self.next_generation);
        }
        Some(self.next_generation)
    }

    /// Forgets an entry that left the cache, unless the key was registered again since.
    fn forget(&mut self, key: &CacheKey, generation: u64, tables: &[String]) {
        for r in tables.iter().map(|t| relation(t)) {
            let Some(keys) = self.by_relation.get_mut(&r) else {
                continue;
            };
            if keys.get(key) == Some(&generation) {
                keys.remove(key);
            }
            if keys.is_empty() {
                self.by_relation.remove(&r);
            }
        }
    }

    /// Marks the tables invalidated (written at `lsn`, 0 if unknown) and takes every key that
    /// read them.
    fn invalidate(&mut self, tables: &[String], lsn: u64) -> HashSet<CacheKey> {
        self.seq += 1;
        let mut keys = HashSet::new();
        for table in tables {
            *self.invalidations.entry(normalize(table)).or_default() += 1;
            let r = relation(table);
            self.invalidated_at.insert(r.clone(), self.seq);
            if lsn > 0 {
                let written = self.written_lsn.entry(r.clone()).or_default();
                *written = (*written).max(lsn);
            }
            if let Some(found) = self.by_relation.remove(&r) {
                keys.extend(found.into_keys());
            }
        }
        keys
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale_misses: AtomicU64,
    inserts: AtomicU64,
    rejected_inserts: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    invalidated_entries: AtomicU64,
    clears: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// For `/metrics`, `/api/status` and `SHOW CACHE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub max_bytes: u64,
    pub bytes: u64,
    pub entries: u64,
    pub hits: u64,
    /// Every lookup that found nothing usable, `stale_misses` included.
    pub misses: u64,
    /// Found, but older than the session's causal LSN.
    pub stale_misses: u64,
    pub inserts: u64,
    /// Not stored: invalidated while being fetched, or too big.
    pub rejected_inserts: u64,
    /// Dropped to stay within `max_bytes`.
    pub evictions: u64,
    /// Dropped at the end of their TTL.
    pub expirations: u64,
    /// Dropped by invalidations.
    pub invalidated_entries: u64,
    pub clears: u64,
    /// Invalidations received per table (normalized), local and remote.
    pub invalidations: BTreeMap<String, u64>,
}

/// The query-result cache. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct ResultCache {
    entries: Cache<CacheKey, Entry>,
    index: Arc<Mutex<Index>>,
    counters: Arc<Counters>,
    max_bytes: u64,
    /// Views and partitions: what else a write to a table makes stale.
    related: Arc<ArcSwap<Related>>,
}

impl ResultCache {
    /// A cache holding up to `max_bytes` (messages, table names and a fixed overhead per
    /// entry). One result larger than a quarter of that is not stored: it would flush the rest.
    pub fn new(max_bytes: u64) -> Self {
        let index = Arc::new(Mutex::new(Index::default()));
        let counters = Arc::new(Counters::default());
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &CacheKey, entry: &Entry| weight(&entry.result))
            .expire_after(PerEntryTtl)
            .eviction_listener(removal_listener(index.clone(), counters.clone()))
            .build();
        ResultCache {
            entries,
            index,
            counters,
            max_bytes,
            related: Arc::default(),
        }
    }

    /// The entry for `key` if it reflects at least `min_lsn` (the session's causal LSN; 0 when
    /// it has none or reads eventually consistent).
    pub fn get(&self, key: &CacheKey, min_lsn: u64) -> Option<Arc<CachedResult>> {
        let found = self
            .entries
            .get(key)
            .filter(|entry| entry.confirmed.load(Ordering::Acquire));
        match found {
            Some(entry) if entry.result.lsn >= min_lsn => {
                bump(&self.counters.hits);
                Some(entry.result)
            }
            Some(_) => {
                bump(&self.counters.stale_misses);
                bump(&self.counters.misses);
                None
            }
            None => {
                bump(&self.counters.misses);
                None
            }
        }
    }

    /// To take before sending the statement whose result may be inserted.
    pub fn ticket(&self) -> FillTicket {
        FillTicket(self.lock().seq)
    }

    /// Stores `result` for `ttl`, unless one of its tables was invalidated since `ticket` (or
    /// the cache cleared), or it is too big. Returns whether it is stored.
    pub fn insert(
        &self,
        key: CacheKey,
        mut result: CachedResult,
        ttl: Duration,
        ticket: FillTicket,
    ) -> bool {
        result.tables = normalize_all(&result.tables);
        let relations = relations(&result.tables);
        if u64::from(weight(&result)) > self.max_bytes / 4 || ttl.is_zero() {
            return self.reject();
        }
        let lsn = result.lsn;
        let registered = self.lock().register_if_fresh(key, ticket, lsn, &relations);
        let Some(generation) = registered else {
            return self.reject();
        };
        // In moka before it is confirmed, so that an invalidation from now on finds it; served
        // only once confirmed, so that one which came in between never lets it show.
        let confirmed = Arc::new(AtomicBool::new(false));
        let entry = Entry {
            result: Arc::new(result),
            ttl,
            generation,
            confirmed: confirmed.clone(),
        };
        self.entries.insert(key, entry);
        if !self.confirm(ticket, lsn, &relations, &confirmed) {
            self.entries.invalidate(&key);
            return self.reject();
        }
        bump(&self.counters.inserts);
        true
    }

    fn reject(&self) -> bool {
        bump(&self.counters.rejected_inserts);
        false
    }

    /// Confirms an inserted entry unless one of its relations was invalidated since `ticket`.
    /// Under the index lock: an invalidation either came before (and the entry is dropped)
    /// or comes after and finds the key in the index.
    fn confirm(
        &self,
        ticket: FillTicket,
        lsn: u64,
        relations: &[String],
        confirmed: &AtomicBool,
    ) -> bool {
        let index = self.lock();
        let fresh = !index.stale_since(ticket, lsn, relations);
        if fresh {
            confirmed.store(true, Ordering::Release);
        }
        fresh
    }

    /// Drops every entry that read one of `tables` (any spelling; by relation name, see
    /// [`super::names`]), written at WAL position `lsn` (0 if unknown): results stamped older
    /// are not stored from now on. Returns how many entries were dropped.
    pub fn invalidate_tables(&self, tables: &[String], lsn: u64) -> usize {
        let tables = self.related.load().expand(tables);
        let keys = self.lock().invalidate(&tables, lsn);
        let dropped = keys
            .iter()
            .filter(|key| self.entries.remove(*key).is_some())
            .count();
        self.counters
            .invalidated_entries
            .fetch_add(dropped as u64, Ordering::Relaxed);
        dropped
    }

    /// Drops everything: when invalidations from other instances may have been lost.
    pub fn clear(&self) {
        {
            let mut index = self.lock();
            index.seq += 1;
            index.cleared_at = index.seq;
            index.by_relation.clear();
        }
        self.entries.invalidate_all();
        bump(&self.counters.clears);
    }

    /// Where the views and partitions of the database are kept current (see [`Related`]).
    pub fn related(&self) -> Arc<ArcSwap<Related>> {
        Arc::clone(&self.related)
    }

    /// Drops everything after a write to tables unknown, at WAL position `lsn` (0 if unknown).
    pub fn clear_written(&self, lsn: u64) {
        {
            let mut index = self.lock();
            index.written_floor = index.written_floor.max(lsn);
        }
        self.clear();
    }

    /// Runs moka's pending work (evictions, expirations, listener calls) now rather than on a
    /// later access: for exact statistics and for tests.
    pub fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }

    pub fn stats(&self) -> CacheStats {
        self.run_pending_tasks();
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let c = &self.counters;
        CacheStats {
            max_bytes: self.max_bytes,
            bytes: self.entries.weighted_size(),
            entries: self.entries.entry_count(),
            hits: read(&c.hits),
            misses: read(&c.misses),
            stale_misses: read(&c.stale_misses),
            inserts: read(&c.inserts),
            rejected_inserts: read(&c.rejected_inserts),
            evictions: read(&c.evictions),
            expirations: read(&c.expirations),
            invalidated_entries: read(&c.invalidated_entries),
            clears: read(&c.clears),
            invalidations: self.lock().invalidations.clone(),
        }
    }

    /// How many tables the index holds keys for (it must not grow with evicted entries).
    pub fn indexed_tables(&self) -> usize {
        self.lock().by_relation.len()
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }
}

/// A panic elsewhere while holding the lock leaves the index consistent enough (each step
/// is one map operation), so carry on rather than poison every session.
fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the index in step with moka: whatever leaves the cache, for any cause, leaves the
/// index, so the index never holds more keys than the cache.
fn removal_listener(
    index: Arc<Mutex<Index>>,
    counters: Arc<Counters>,
) -> impl Fn(Arc<CacheKey>, Entry, RemovalCause) + Send + Sync + 'static {
    move |key, entry, cause| {
        match cause {
            RemovalCause::Size => bump(&counters.evictions),
            RemovalCause::Expired => bump(&counters.expirations),
            RemovalCause::Explicit | RemovalCause::Replaced => {}
        }
        lock(&index).forget(&key, entry.generation, &entry.result.tables);
    }
}

fn weight(result: &CachedResult) -> u32 {
    let tables: usize = result.tables.iter().map(String::len).sum();
    let bytes = result.messages.len() + tables + ENTRY_OVERHEAD;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
