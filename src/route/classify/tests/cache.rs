//! The classification cache: same answer, same allocation, within its byte budget.

use std::sync::Arc;
use std::time::Instant;

use super::policy;
use crate::route::classify::Classifier;

#[test]
fn a_repeated_text_gets_the_same_arc() {
    let classifier = Classifier::new(policy(), 1 << 20);
    let first = classifier.classify("SELECT * FROM accounts WHERE id = $1");
    let second = classifier.classify("SELECT * FROM accounts WHERE id = $1");
    assert!(Arc::ptr_eq(&first, &second));
    let other = classifier.classify("SELECT * FROM accounts WHERE id = $2");
    assert!(!Arc::ptr_eq(&first, &other));
    let (entries, bytes) = classifier.cache_stats();
    assert_eq!(entries, 2);
    assert!(bytes > 2 * "SELECT * FROM accounts WHERE id = $1".len() as u64);
}

#[test]
fn unparsable_and_very_long_texts_are_not_cached() {
    let classifier = Classifier::new(policy(), 1 << 24);
    let bad = "SELEC 1";
    assert!(!Arc::ptr_eq(
        &classifier.classify(bad),
        &classifier.classify(bad)
    ));
    let long = format!("SELECT 1 /* {} */", "x".repeat(64 * 1024));
    let first = classifier.classify(&long);
    assert!(first.parsed);
    assert!(!Arc::ptr_eq(&first, &classifier.classify(&long)));
    assert_eq!(classifier.cache_stats(), (0, 0));
}

#[test]
fn the_cache_stays_within_its_byte_budget() {
    const BUDGET: u64 = 64 * 1024;
    let classifier = Classifier::new(policy(), BUDGET);
    for i in 0..5_000 {
        classifier.classify(&format!("SELECT * FROM accounts WHERE id = {i}"));
    }
    let (entries, bytes) = classifier.cache_stats();
    assert!(entries > 0, "nothing cached");
    assert!(entries < 5_000, "{entries} entries: nothing evicted");
    assert!(
        bytes <= BUDGET,
        "{bytes} bytes cached over a budget of {BUDGET}"
    );
}

#[test]
fn a_zero_budget_caches_nothing() {
    let classifier = Classifier::new(policy(), 0);
    let first = classifier.classify("SELECT 1");
    assert!(!Arc::ptr_eq(&first, &classifier.classify("SELECT 1")));
    assert_eq!(classifier.cache_stats(), (0, 0));
}

/// Not asserted: run with `--nocapture` to see what a cache hit saves.
#[test]
fn cached_versus_uncached_cost() {
    const ROUNDS: u32 = 2_000;
    let sql = "SELECT a.id, a.owner, sum(o.amount) FROM accounts a JOIN orders o \
               ON o.account_id = a.id WHERE a.created_at > now() - interval '7 days' \
               GROUP BY a.id, a.owner ORDER BY 3 DESC LIMIT 10";
    let uncached = Classifier::new(policy(), 0);
    let cached = Classifier::new(policy(), 1 << 20);
    cached.classify(sql);
    let per_call = |classifier: &Classifier| {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            std::hint::black_box(classifier.classify(std::hint::black_box(sql)));
        }
        start.elapsed() / ROUNDS
    };
    let (miss, hit) = (per_call(&uncached), per_call(&cached));
    println!(
        "classify: uncached {miss:?} per call, cached {hit:?} per call ({} chars)",
        sql.len()
    );
}

#[test]
fn texts_that_differ_only_in_literals_share_one_classification() {
    let classifier = Classifier::new(policy(), 1 << 20);
    let first = classifier.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 1");
    let second = classifier.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 99");
    assert!(Arc::ptr_eq(&first, &second), "one parse for the shape");
    let update = classifier.classify("UPDATE t SET v = 'a' WHERE id = 1");
    assert!(Arc::ptr_eq(
        &update,
        &classifier.classify("UPDATE t SET v = 'b' WHERE id = 2")
    ));
    // Session effects carry their literal: each text keeps its own classification.
    let utc = classifier.classify("SET timezone = 'UTC'");
    let paris = classifier.classify("SET timezone = 'Europe/Paris'");
    assert_ne!(utc.effects, paris.effects);
    let lock = classifier.classify("SELECT pg_advisory_lock(1)");
    assert!(!lock.effects.is_empty());
    assert!(!Arc::ptr_eq(
        &lock,
        &classifier.classify("SELECT pg_advisory_lock(2)")
    ));
    // A text found to write makes its whole shape a write.
    classifier.mark_write("SELECT my_func(1)", "function my_func");
    assert_eq!(
        classifier.classify("SELECT my_func(2)").access,
        crate::route::classify::Access::Write
    );
}

#[test]
fn what_a_thread_remembers_follows_mark_write_and_reloads() {
    use crate::route::classify::Access;
    let sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
    let classifier = Classifier::new(policy(), 1 << 20);
    let first = classifier.classify(sql);
    assert_eq!(first.access, Access::Read);
    assert!(Arc::ptr_eq(&first, &classifier.classify(sql)), "remembered");
    classifier.mark_write(sql, "refused by a replica as a write");
    assert_eq!(classifier.classify(sql).access, Access::Write);
    // A reloaded classifier starts from its own cache, not from this thread's slots.
    let reloaded = Classifier::new(policy(), 1 << 20);
    assert_eq!(reloaded.classify(sql).access, Access::Read);
    assert_eq!(classifier.classify(sql).access, Access::Write);
}
