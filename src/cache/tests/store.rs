use std::sync::Arc;
use std::thread::sleep;
use std::time::Duration;

use bytes::Bytes;

use crate::cache::{CacheKey, CachedResult, ResultCache};

const TTL: Duration = Duration::from_secs(60);

fn key(sql: &str) -> CacheKey {
    CacheKey::new("db", "u", std::iter::empty(), sql, &[])
}

fn result(tables: &[&str], lsn: u64, size: usize) -> CachedResult {
    CachedResult {
        messages: Bytes::from(vec![b'D'; size]),
        lsn,
        tables: tables.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// Inserts `sql`'s result with a fresh ticket; asserts it was stored.
fn put(cache: &ResultCache, sql: &str, tables: &[&str]) {
    let stored = cache.insert(key(sql), result(tables, 0, 10), TTL, cache.ticket());
    assert!(stored, "{sql} not stored");
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn hit_only_when_the_stamp_is_recent_enough() {
    let cache = ResultCache::new(1 << 20);
    let k = key("SELECT * FROM t");
    assert!(cache.get(&k, 0).is_none());
    let stored = result(&["t"], 100, 10);
    assert!(cache.insert(k, stored.clone(), TTL, cache.ticket()));
    assert_eq!(cache.get(&k, 0).as_deref(), Some(&stored));
    assert!(cache.get(&k, 100).is_some());
    assert!(
        cache.get(&k, 101).is_none(),
        "a newer causal token must miss"
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.stale_misses), (2, 2, 1));
    assert_eq!((stats.inserts, stats.entries), (1, 1));
}

#[test]
fn entries_expire_at_their_own_ttl() {
    let cache = ResultCache::new(1 << 20);
    let (short, long) = (key("short"), key("long"));
    let ticket = cache.ticket();
    assert!(cache.insert(
        short,
        result(&["t"], 0, 10),
        Duration::from_millis(100),
        ticket
    ));
    assert!(cache.insert(long, result(&["t"], 0, 10), TTL, ticket));
    assert!(cache.get(&short, 0).is_some());
    sleep(Duration::from_millis(250));
    assert!(cache.get(&short, 0).is_none());
    assert!(cache.get(&long, 0).is_some());
    // moka's timer wheel removes an expired entry within about a second of its expiry.
    let removed = (0..40).any(|_| {
        sleep(Duration::from_millis(100));
        cache.stats().expirations == 1
    });
    assert!(removed, "the expired entry was never removed");
    assert_eq!(cache.stats().entries, 1);
    // The expired entry left the index; the live one is still found by its table.
    assert_eq!(cache.invalidate_tables(&strings(&["t"]), 0), 1);
}

#[test]
fn bytes_stay_within_the_budget_and_the_index_follows_evictions() {
    let budget = 64 * 1024;
    let cache = ResultCache::new(budget);
    for i in 0..100 {
        let sql = format!("SELECT * FROM t{i}");
        let table = format!("t{i}");
        cache.insert(key(&sql), result(&[&table], 0, 4096), TTL, cache.ticket());
    }
    let stats = cache.stats();
    assert!(stats.bytes <= budget, "{} > {budget}", stats.bytes);
    assert!(stats.evictions > 0);
    assert!(stats.entries < 100);
    // One table per entry: the index holds exactly the live entries' tables.
    assert_eq!(cache.indexed_tables() as u64, stats.entries);
}

#[test]
fn a_result_too_big_for_the_budget_is_not_stored() {
    let cache = ResultCache::new(64 * 1024);
    let stored = cache.insert(
        key("big"),
        result(&["t"], 0, 20 * 1024),
        TTL,
        cache.ticket(),
    );
    assert!(!stored);
    assert!(cache.get(&key("big"), 0).is_none());
    assert_eq!(cache.stats().rejected_inserts, 1);
    assert_eq!(cache.indexed_tables(), 0);
}

#[test]
fn invalidation_matches_every_spelling_of_a_table() {
    let cache = ResultCache::new(1 << 20);
    put(&cache, "a", &["t"]);
    put(&cache, "b", &["public.t"]);
    put(&cache, "c", &["s.t"]);
    put(&cache, "d", &["u"]);
    put(&cache, "e", &["\"T\"", "u"]);
    assert_eq!(cache.invalidate_tables(&strings(&["PUBLIC.T"]), 0), 4);
    for gone in ["a", "b", "c", "e"] {
        assert!(cache.get(&key(gone), 0).is_none(), "{gone}");
    }
    assert!(cache.get(&key("d"), 0).is_some());
    // Nothing left that read t; u's entry "e" left the index with its cache entry.
    assert_eq!(cache.invalidate_tables(&strings(&["t"]), 0), 0);
    cache.run_pending_tasks();
    assert_eq!(cache.indexed_tables(), 1);
    assert_eq!(cache.invalidate_tables(&strings(&["u"]), 0), 1);
    cache.run_pending_tasks();
    assert_eq!(cache.indexed_tables(), 0);
    let stats = cache.stats();
    assert_eq!(stats.invalidated_entries, 5);
    let per_table: Vec<(&str, u64)> = stats
        .invalidations
        .iter()
        .map(|(t, n)| (t.as_str(), *n))
        .collect();
    assert_eq!(per_table, [("t", 2), ("u", 1)]);
}

#[test]
fn a_result_fetched_across_an_invalidation_is_not_stored() {
    let cache = ResultCache::new(1 << 20);
    let ticket = cache.ticket();
    cache.invalidate_tables(&strings(&["t"]), 0);
    assert!(!cache.insert(key("a"), result(&["public.t"], 0, 10), TTL, ticket));
    // Another table's invalidation does not matter.
    assert!(cache.insert(key("b"), result(&["u"], 0, 10), TTL, ticket));
    assert!(cache.insert(key("a"), result(&["t"], 0, 10), TTL, cache.ticket()));
    assert_eq!(cache.stats().rejected_inserts, 1);
}

#[test]
fn clear_drops_everything_and_older_tickets() {
    let cache = ResultCache::new(1 << 20);
    let ticket = cache.ticket();
    put(&cache, "a", &["t"]);
    put(&cache, "b", &["u"]);
    cache.clear();
    assert!(cache.get(&key("a"), 0).is_none());
    assert!(cache.get(&key("b"), 0).is_none());
    assert!(!cache.insert(key("c"), result(&["v"], 0, 10), TTL, ticket));
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.clears), (0, 1));
    assert_eq!(cache.indexed_tables(), 0);
}

#[test]
fn a_replaced_entry_is_indexed_by_its_new_tables_only() {
    let cache = ResultCache::new(1 << 20);
    put(&cache, "a", &["t"]);
    put(&cache, "a", &["u"]);
    cache.run_pending_tasks();
    assert_eq!(cache.invalidate_tables(&strings(&["t"]), 0), 0);
    assert_eq!(cache.invalidate_tables(&strings(&["u"]), 0), 1);
}

#[test]
fn hits_share_the_stored_bytes() {
    let cache = ResultCache::new(1 << 20);
    put(&cache, "a", &["t"]);
    let (first, second) = (cache.get(&key("a"), 0), cache.get(&key("a"), 0));
    assert!(matches!((first, second), (Some(x), Some(y)) if Arc::ptr_eq(&x, &y)));
}

#[test]
fn stats_serialize_for_the_status_api() {
    let cache = ResultCache::new(1 << 20);
    put(&cache, "a", &["t"]);
    cache.invalidate_tables(&strings(&["t"]), 0);
    let json = serde_json::to_value(cache.stats()).unwrap_or_default();
    assert_eq!(json["inserts"], 1);
    assert_eq!(json["invalidations"]["t"], 1);
    assert_eq!(json["max_bytes"], 1 << 20);
}

#[test]
fn concurrent_fills_never_outlive_a_write() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    // The "server": a version number that writers bump (commit) before invalidating.
    let cache = Arc::new(ResultCache::new(1 << 20));
    let version = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (cache, version, done) = (cache.clone(), version.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let ticket = cache.ticket();
                    let seen = version.load(Ordering::SeqCst);
                    let fetched = CachedResult {
                        messages: Bytes::from(seen.to_be_bytes().to_vec()),
                        lsn: 0,
                        tables: strings(&["t"]),
                    };
                    cache.insert(key("q"), fetched, TTL, ticket);
                }
            })
        })
        .collect();
    for _ in 0..2000 {
        version.fetch_add(1, Ordering::SeqCst);
        cache.invalidate_tables(&strings(&["public.t"]), 0);
        // Right after a write, a hit may only show the new version.
        if let Some(hit) = cache.get(&key("q"), 0) {
            let current = version.load(Ordering::SeqCst).to_be_bytes();
            assert_eq!(hit.messages.as_ref(), current.as_slice());
        }
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        assert!(reader.join().is_ok());
    }
}

#[test]
fn results_older_than_a_known_write_are_not_stored() {
    let cache = ResultCache::new(1 << 20);
    cache.invalidate_tables(&strings(&["t"]), 500);
    // Read after the invalidation, but from a node that had not replayed the write yet.
    let lagging = cache.insert(key("old"), result(&["t"], 499, 10), TTL, cache.ticket());
    assert!(
        !lagging,
        "a result older than the write would outlive the lag"
    );
    assert!(cache.insert(key("new"), result(&["t"], 500, 10), TTL, cache.ticket()));
    assert!(cache.insert(key("other"), result(&["u"], 1, 10), TTL, cache.ticket()));
    cache.clear_written(700);
    assert!(!cache.insert(key("u"), result(&["u"], 699, 10), TTL, cache.ticket()));
    assert!(cache.insert(key("u"), result(&["u"], 700, 10), TTL, cache.ticket()));
}
