//! The result cache on a cluster with `wal_level = logical` and pg_stat_statements: a hit
//! sends no query to any server (extended and simple protocol), writes that bypass pgsplit
//! invalidate through the WAL, and under 4 writers and 8 readers for 20 s no read is older than
//! the documented bound.

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::proxy::{TestProxy, start_proxy, status_of, wait_for_cache_channel};
use pgsplit::config::{CacheTable, Invalidation};
use pgsplit::localcluster::{LocalCluster, PgNode};
use tokio_postgres::{Client, SimpleQueryMessage};

const LOGICAL: &[&str] = &[
    "wal_level = logical",
    "shared_preload_libraries = 'pg_stat_statements'",
];

/// A proxy with the cache on for `tables` (60 s TTL, far longer than any wait here), following
/// the WAL.
fn cached_proxy(cluster: &LocalCluster, tables: &[&str]) -> TestProxy {
    let mut config = common::load::config_for(cluster);
    config.admin = Some("127.0.0.1:0".parse().expect("loopback"));
    config.cache.max_bytes = 16 << 20;
    config.cache.invalidation = Invalidation::Wal;
    config.cache.tables = tables
        .iter()
        .map(|name| CacheTable {
            name: name.to_string(),
            ttl: Some(Duration::from_secs(60)),
        })
        .collect();
    start_proxy(config)
}

async fn wait_until_following(proxy: &TestProxy) {
    wait_for_cache_channel(proxy).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_of(proxy)["cache_wal"] != true {
        assert!(Instant::now() < deadline, "the WAL follower never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every replica has replayed what the primary wrote so far: tables made directly on
/// the primary are then there for the proxy's first reads, which may go to a replica.
fn replicas_replayed(cluster: &LocalCluster) {
    let lsn = cluster.current_lsn().expect("the primary's position");
    for replica in cluster.replicas() {
        cluster
            .wait_replayed(replica, &lsn, Duration::from_secs(30))
            .expect("replicas replay the setup");
    }
}

async fn direct(node: &PgNode) -> Client {
    common::connect(&node.connstr("postgres", "postgres"))
        .await
        .expect("direct connection")
}

fn hits(proxy: &TestProxy) -> u64 {
    status_of(proxy)["cache"]["hits"].as_u64().expect("hits")
}

/// Executions of statements on `table` that pg_stat_statements counted on every node.
async fn server_calls(cluster: &LocalCluster, table: &str) -> i64 {
    let mut calls = 0;
    for node in std::iter::once(cluster.primary()).chain(cluster.replicas()) {
        let client = direct(node).await;
        let row = client
            .query_one(
                "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query LIKE $1",
                &[&format!("SELECT v FROM {table}%")],
            )
            .await
            .expect("pg_stat_statements");
        calls += row.get::<_, i64>(0);
    }
    calls
}

async fn simple_value(client: &Client, sql: &str) -> Option<String> {
    let answer = client.simple_query(sql).await.expect("read");
    answer.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_sends_no_query_to_any_server() {
    let cluster = common::private_cluster_with(2, LOGICAL);
    let primary = direct(cluster.primary()).await;
    primary
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements;
             CREATE TABLE ext_t (id int PRIMARY KEY, v text);
             INSERT INTO ext_t VALUES (1, 'one'), (2, 'two')",
        )
        .await
        .expect("setup");
    replicas_replayed(&cluster);
    let proxy = cached_proxy(&cluster, &["ext_t"]);
    wait_until_following(&proxy).await;
    let client = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect");
    let statement = client
        .prepare("SELECT v FROM ext_t WHERE id = $1")
        .await
        .expect("prepare");
    let read = |id: i32| {
        let (client, statement) = (&client, &statement);
        async move {
            let row = client.query_one(statement, &[&id]).await.expect("read");
            row.get::<_, String>(0)
        }
    };
    // Misses fill the cache, one entry per parameter value.
    assert_eq!(read(1).await, "one");
    assert_eq!(read(2).await, "two");
    let simple = "SELECT v FROM ext_t WHERE id = 2";
    assert_eq!(simple_value(&client, simple).await.as_deref(), Some("two"));

    let (calls, hits_before) = (server_calls(&cluster, "ext_t").await, hits(&proxy));
    for _ in 0..10 {
        assert_eq!(read(1).await, "one");
        assert_eq!(read(2).await, "two");
        assert_eq!(simple_value(&client, simple).await.as_deref(), Some("two"));
    }
    assert_eq!(
        hits(&proxy),
        hits_before + 30,
        "every repeated read is a hit"
    );
    assert_eq!(
        server_calls(&cluster, "ext_t").await,
        calls,
        "a hit reaches no server"
    );

    client
        .execute("UPDATE ext_t SET v = 'uno' WHERE id = 1", &[])
        .await
        .expect("update");
    assert_eq!(read(1).await, "uno", "a committed write drops the entry");
    assert_eq!(read(2).await, "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_bypass_pgsplit_invalidate_through_the_wal() {
    let cluster = common::private_cluster_with(2, LOGICAL);
    let primary = direct(cluster.primary()).await;
    primary
        .batch_execute(
            "CREATE TABLE wal_t (id int PRIMARY KEY, v int); INSERT INTO wal_t VALUES (1, 1)",
        )
        .await
        .expect("setup");
    replicas_replayed(&cluster);
    let proxy = cached_proxy(&cluster, &["wal_t"]);
    wait_until_following(&proxy).await;
    let client = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect");
    let sql = "SELECT v FROM wal_t WHERE id = 1";
    assert_eq!(simple_value(&client, sql).await.as_deref(), Some("1"));
    let before = hits(&proxy);
    assert_eq!(simple_value(&client, sql).await.as_deref(), Some("1"));
    assert_eq!(hits(&proxy), before + 1, "cached");

    for (write, expected) in [
        ("UPDATE wal_t SET v = 2 WHERE id = 1", Some("2")),
        ("TRUNCATE wal_t", None),
    ] {
        primary.batch_execute(write).await.expect("direct write");
        let written = Instant::now();
        // The TTL is 60 s: only the WAL follower can make the new value show this soon.
        loop {
            let seen = simple_value(&client, sql).await;
            if seen.as_deref() == expected {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(3),
                "{write} (bypassing pgsplit) still not seen: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Committed values of one row, in commit order, with when their commit returned.
type History = Arc<Mutex<Vec<(Instant, i64)>>>;

const WRITERS: usize = 4;
const READERS: usize = 8;
const RUN: Duration = Duration::from_secs(20);
/// Reads of rows other sessions wrote may be as old as a replica may lag (`max_lag`, 1 s),
/// give or take one lag measurement (the monitor's interval): 2 s in all.
const BOUND: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_writers_and_eight_readers_never_read_older_than_the_bound() {
    let cluster = common::private_cluster_with(2, LOGICAL);
    let primary = direct(cluster.primary()).await;
    primary
        .batch_execute(
            "CREATE TABLE conc_t (id int PRIMARY KEY, v bigint NOT NULL);
             INSERT INTO conc_t SELECT g, 0 FROM generate_series(0, 99) g",
        )
        .await
        .expect("setup");
    replicas_replayed(&cluster);
    let proxy = Arc::new(cached_proxy(&cluster, &["conc_t"]));
    wait_until_following(&proxy).await;
    let histories: Arc<Vec<History>> = Arc::new(
        (0..WRITERS)
            .map(|_| Arc::new(Mutex::new(vec![(Instant::now(), 0)])))
            .collect(),
    );
    let stop = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (proxy, history) = (proxy.clone(), histories[w].clone());
        tasks.push(tokio::spawn(async move {
            write_loop(&proxy, w, &history, stop).await
        }));
    }
    for r in 0..READERS {
        let (proxy, histories) = (proxy.clone(), histories.clone());
        tasks.push(tokio::spawn(async move {
            read_loop(&proxy, r, &histories, stop).await
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        let outcome = tokio::time::timeout(RUN + Duration::from_secs(30), task)
            .await
            .expect("the load ends in time")
            .expect("a load task panicked");
        failures.extend(outcome);
    }
    assert!(
        failures.is_empty(),
        "{} bad reads: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let cache = &status_of(&proxy)["cache"];
    assert!(
        cache["hits"].as_u64().unwrap_or(0) > 100,
        "the cache was used: {cache}"
    );
}

/// Increments row `w` and checks it reads its own write back at once.
async fn write_loop(proxy: &TestProxy, w: usize, history: &History, stop: Instant) -> Vec<String> {
    let client = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("writer connects");
    let mut failures = Vec::new();
    let id = w as i32;
    while Instant::now() < stop {
        let row = client
            .query_one(
                "UPDATE conc_t SET v = v + 1 WHERE id = $1 RETURNING v",
                &[&id],
            )
            .await
            .expect("update");
        let written: i64 = row.get(0);
        history
            .lock()
            .expect("history")
            .push((Instant::now(), written));
        let read = read_row(&client, id).await;
        if read != written {
            failures.push(format!("writer {w} wrote {written}, read back {read}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    failures
}

/// Reads the writers' rows (cached) and checks each value against what was committed before
/// the read started; every tenth round also writes its own row and reads it back.
async fn read_loop(
    proxy: &TestProxy,
    r: usize,
    histories: &[History],
    stop: Instant,
) -> Vec<String> {
    let client = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("reader connects");
    let own = (50 + r) as i32;
    let mut failures = Vec::new();
    let mut round = 0usize;
    while Instant::now() < stop {
        round += 1;
        let w = round % WRITERS;
        let started = Instant::now();
        let floor = started
            .checked_sub(BOUND)
            .map_or(0, |at| committed_before(&histories[w], at));
        let seen = read_row(&client, w as i32).await;
        if seen < floor {
            failures.push(format!(
                "reader {r} read {seen} from row {w}; {floor} was committed over {BOUND:?} before"
            ));
        }
        if round.is_multiple_of(10) {
            let row = client
                .query_one(
                    "UPDATE conc_t SET v = v + 1 WHERE id = $1 RETURNING v",
                    &[&own],
                )
                .await
                .expect("reader's own write");
            let written: i64 = row.get(0);
            let read = read_row(&client, own).await;
            if read != written {
                failures.push(format!("reader {r} wrote {written}, read back {read}"));
            }
        }
    }
    failures
}

async fn read_row(client: &Client, id: i32) -> i64 {
    client
        .query_one("SELECT v FROM conc_t WHERE id = $1", &[&id])
        .await
        .expect("read")
        .get(0)
}

/// The last value committed at or before `at`.
fn committed_before(history: &History, at: Instant) -> i64 {
    let history = history.lock().expect("history");
    history
        .iter()
        .take_while(|(when, _)| *when <= at)
        .last()
        .map_or(0, |(_, v)| *v)
}
