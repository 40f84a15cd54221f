//! Statement classification on typical OLTP texts: the first time a text is seen (a full parse
//! and AST walk) and when it repeats (a cache hit in `Classifier`).
//!
//! `cargo bench --bench classify`; targets (issue 10): a hit under 300 ns, a first parse of a
//! typical statement under 20 us.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pgsplit::route::classify::{Classifier, FunctionPolicy, classify};

/// What applications send most: pgbench's statements, ORM-generated reads and writes with bind
/// parameters, transaction control and session settings.
const CORPUS: &[(&str, &str)] = &[
    (
        "point_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    ),
    (
        "pgbench_update",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    ),
    (
        "pgbench_insert",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
    ),
    ("begin", "BEGIN"),
    ("commit", "COMMIT"),
    ("set", "SET statement_timeout = '5s'"),
    (
        "orm_select",
        "SELECT \"users\".\"id\", \"users\".\"email\", \"users\".\"created_at\" FROM \"users\" \
         WHERE \"users\".\"email\" = $1 AND \"users\".\"deleted_at\" IS NULL LIMIT $2",
    ),
    (
        "join_order_by",
        "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.customer_id = $1 AND o.status IN ('paid', 'shipped') ORDER BY o.created_at DESC LIMIT 20",
    ),
    (
        "aggregate",
        "SELECT status, count(*), sum(total) FROM orders WHERE created_at > now() - interval '1 day' \
         GROUP BY status",
    ),
    (
        "upsert",
        "INSERT INTO carts (user_id, item_id, qty) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, item_id) DO UPDATE SET qty = carts.qty + EXCLUDED.qty",
    ),
    (
        "select_for_update",
        "SELECT id, stock FROM items WHERE id = $1 FOR UPDATE",
    ),
    (
        "commented_select",
        "/* pgsplit: consistency=eventual */ SELECT id, name FROM products \
         WHERE category_id = $1 /*controller='products',action='index'*/",
    ),
    (
        "cte_subquery",
        "WITH recent AS (SELECT customer_id, max(created_at) AS last FROM orders GROUP BY customer_id) \
         SELECT c.id, r.last FROM customers c JOIN recent r ON r.customer_id = c.id \
         WHERE c.id IN (SELECT customer_id FROM vip)",
    ),
];

/// A first sight of each text: the pure `classify` (parse and walk), no cache involved.
fn uncached(c: &mut Criterion) {
    let policy = FunctionPolicy::new(&[]);
    let mut group = c.benchmark_group("classify_uncached");
    for (name, sql) in CORPUS {
        group.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| classify(black_box(sql), &policy))
        });
    }
    group.finish();
}

/// A first sight through `Classifier`, as the proxy does it: unique texts (a counter in a
/// comment makes each one new), so every call parses and inserts into the cache.
fn unique_texts(c: &mut Criterion) {
    let classifier = Classifier::new(FunctionPolicy::new(&[]), 8 << 20);
    let mut n: u64 = 0;
    c.bench_function("classify_unique_text/point_select", |b| {
        b.iter(|| {
            n += 1;
            let sql = format!("/* {n} */ SELECT abalance FROM pgbench_accounts WHERE aid = $1");
            classifier.classify(black_box(&sql))
        })
    });
}

/// A repeated text: the cache hit every statement after the first costs.
fn cached(c: &mut Criterion) {
    let classifier = Classifier::new(FunctionPolicy::new(&[]), 8 << 20);
    let mut group = c.benchmark_group("classify_cached");
    for (name, sql) in CORPUS {
        classifier.classify(sql);
        group.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| classifier.classify(black_box(sql)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::short_runs();
    targets = uncached, unique_texts, cached
}
criterion_main!(benches);
