//! The result cache through pgsplit, with the real cluster: a repeated read is answered from
//! memory, a committed write drops it before its client sees the commit, a rolled-back one
//! leaves it, and a session never reads a cached value older than its own write.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::proxy::{TestProxy, cluster_config, start_proxy};
use pgsplit::config::CacheTable;
use tokio_postgres::{Client, SimpleQueryMessage};

fn proxy() -> &'static TestProxy {
    static PROXY: OnceLock<TestProxy> = OnceLock::new();
    PROXY.get_or_init(|| cached_proxy("cached_t"))
}

fn stats() -> serde_json::Value {
    common::proxy::status_of(proxy())["cache"].clone()
}

fn hits() -> u64 {
    stats()["hits"].as_u64().expect("hits")
}

async fn value(client: &Client) -> String {
    read_one(client, "SELECT v FROM cached_t WHERE id = 1").await
}

#[tokio::test]
async fn reads_hit_writes_invalidate_at_commit_and_rollbacks_keep_entries() {
    common::proxy::wait_for_cache_channel(proxy()).await;
    let client = common::connect(&proxy().connstr("postgres", "postgres"))
        .await
        .expect("connect");
    client
        .batch_execute(
            "CREATE TABLE cached_t (id int PRIMARY KEY, v int); INSERT INTO cached_t VALUES (1, 1)",
        )
        .await
        .expect("setup");
    assert_eq!(value(&client).await, "1");
    let before = hits();
    assert_eq!(value(&client).await, "1");
    assert_eq!(hits(), before + 1, "the second read is a hit: {}", stats());

    client
        .batch_execute("UPDATE cached_t SET v = 2 WHERE id = 1")
        .await
        .expect("update");
    assert_eq!(
        value(&client).await,
        "2",
        "a committed write is never followed by a stale hit"
    );

    let before = hits();
    client
        .batch_execute("BEGIN; UPDATE cached_t SET v = 3 WHERE id = 1; ROLLBACK")
        .await
        .expect("rollback");
    assert_eq!(value(&client).await, "2");
    assert_eq!(hits(), before + 1, "a rolled-back write leaves the entry");

    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute("UPDATE cached_t SET v = 4 WHERE id = 1")
        .await
        .expect("update in a transaction");
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(value(&client).await, "4", "the commit dropped the entry");

    // Another session (no writes of its own) is served the same fresh entry.
    let other = common::connect(&proxy().connstr("postgres", "postgres"))
        .await
        .expect("connect");
    assert_eq!(value(&other).await, "4");
    // The same figures in the admin console and in /metrics.
    let console = common::connect(&proxy().connstr("postgres", "pgsplit"))
        .await
        .expect("console");
    let rows = console
        .simple_query("SHOW CACHE")
        .await
        .expect("SHOW CACHE");
    let console_hits = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) if r.get(0) == Some("hits") => r.get(1).map(str::to_string),
        _ => None,
    });
    assert!(console_hits.is_some_and(|h| h.parse::<u64>().is_ok_and(|h| h >= 2)));
    let admin = proxy().admin.expect("admin").to_string();
    let (_, metrics) =
        common::process::http(&admin, "GET", "/metrics", Duration::from_secs(5)).expect("metrics");
    assert!(metrics.contains("pgsplit_cache_hits"), "{metrics}");
    assert!(
        metrics.contains("pgsplit_cache_table_invalidations{table=\"cached_t\"}"),
        "{metrics}"
    );
    let cache = stats();
    assert!(
        cache["invalidations"]["cached_t"].as_u64().unwrap_or(0) >= 2,
        "{cache}"
    );
}

#[tokio::test]
async fn wal_invalidation_without_logical_wal_warns_and_keeps_the_cache() {
    let mut config = cluster_config();
    config.admin = Some("127.0.0.1:0".parse().expect("loopback"));
    config.cache.max_bytes = 1 << 20;
    config.cache.invalidation = pgsplit::config::Invalidation::Wal;
    config.cache.tables = vec![CacheTable {
        name: "nowal_t".into(),
        ttl: Some(Duration::from_secs(60)),
    }];
    let proxy = start_proxy(config);
    common::proxy::wait_for_cache_channel(&proxy).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = common::proxy::status_of(&proxy);
        let said = status["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["kind"] == "cache_wal_unavailable" && e["detail"] == "wal_level = replica"
            })
        });
        if said {
            assert_eq!(status["cache_wal"], false);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no warning: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect");
    client
        .batch_execute("CREATE TABLE nowal_t (v int); INSERT INTO nowal_t VALUES (7)")
        .await
        .expect("setup");
    let hits = || common::proxy::status_of(&proxy)["cache"]["hits"].as_u64();
    assert_eq!(read_one(&client, "SELECT v FROM nowal_t").await, "7");
    let before = hits();
    assert_eq!(read_one(&client, "SELECT v FROM nowal_t").await, "7");
    assert_eq!(
        hits(),
        before.map(|h| h + 1),
        "commit invalidation and the TTL still serve"
    );
}

#[tokio::test]
async fn writes_to_partitions_and_base_tables_invalidate_parents_and_views() {
    let proxy = cached_proxy_for(&["rel_p", "rel_p_low", "rel_v"]);
    common::proxy::wait_for_cache_channel(&proxy).await;
    let client = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect");
    client
        .batch_execute(
            "CREATE TABLE rel_p (id int, v int) PARTITION BY RANGE (id);
             CREATE TABLE rel_p_low PARTITION OF rel_p FOR VALUES FROM (0) TO (100);
             CREATE VIEW rel_v AS SELECT id, v FROM rel_p_low;
             INSERT INTO rel_p VALUES (1, 0)",
        )
        .await
        .expect("setup");
    let reads = [
        "SELECT v FROM rel_p WHERE id = 1",
        "SELECT v FROM rel_v WHERE id = 1",
        "SELECT v FROM rel_p_low WHERE id = 1",
    ];
    // The catalog is read every few seconds: until then a write may not reach the view.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for value in 1..=20 {
        for sql in reads {
            read_one(&client, sql).await; // cached now
        }
        let write = if value % 2 == 0 {
            format!("UPDATE rel_p_low SET v = {value} WHERE id = 1")
        } else {
            format!("UPDATE rel_p SET v = {value} WHERE id = 1")
        };
        client.batch_execute(&write).await.expect("write");
        let mut fresh = true;
        for sql in reads {
            fresh &= read_one(&client, sql).await == value.to_string();
        }
        if fresh && value > 2 {
            return; // both spellings of the write reached all three
        }
        assert!(
            std::time::Instant::now() < deadline,
            "views and partitions never resolved"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A proxy with the cache on for `table`, with an admin server.
fn cached_proxy(table: &str) -> TestProxy {
    cached_proxy_for(&[table])
}

fn cached_proxy_for(tables: &[&str]) -> TestProxy {
    let mut config = cluster_config();
    config.admin = Some("127.0.0.1:0".parse().expect("loopback"));
    config.cache.max_bytes = 16 * 1024 * 1024;
    config.cache.tables = tables
        .iter()
        .map(|table| CacheTable {
            name: table.to_string(),
            ttl: Some(Duration::from_secs(60)),
        })
        .collect();
    start_proxy(config)
}

async fn read_one(client: &Client, sql: &str) -> String {
    let answer = client.simple_query(sql).await.expect("read");
    answer
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test]
async fn a_write_through_one_instance_invalidates_the_other() {
    let (a, b) = (cached_proxy("shared_t"), cached_proxy("shared_t"));
    for p in [&a, &b] {
        common::proxy::wait_for_cache_channel(p).await;
    }
    let on_a = common::connect(&a.connstr("postgres", "postgres"))
        .await
        .expect("connect a");
    let on_b = common::connect(&b.connstr("postgres", "postgres"))
        .await
        .expect("connect b");
    on_b.batch_execute(
        "CREATE TABLE shared_t (id int PRIMARY KEY, v int); INSERT INTO shared_t VALUES (1, 1)",
    )
    .await
    .expect("setup");
    let sql = "SELECT v FROM shared_t WHERE id = 1";
    // Wait until a (which has not written) sees the row on a replica, then cache it there. A
    // replica that has not replayed the CREATE TABLE yet says the table does not exist.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = match on_a.simple_query(sql).await {
            Ok(answer) => answer,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                Vec::new()
            }
            Err(e) => panic!("read: {e}"),
        };
        if answer
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(_)))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the row reaches the replicas"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A fill is stored once the answering replica is known (polled) to have replayed b's
    // write: until then a's reads miss.
    let hits = || common::proxy::status_of(&a)["cache"]["hits"].as_u64();
    let hits_before = hits();
    while hits() == hits_before {
        assert_eq!(read_one(&on_a, sql).await, "1");
        assert!(
            std::time::Instant::now() < deadline,
            "a's reads become hits"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    on_b.batch_execute("UPDATE shared_t SET v = 2 WHERE id = 1")
        .await
        .expect("write through b");
    // a drops its entry when b's invalidation arrives; its next reads reach a server, which
    // (eventual for a, within max_lag) soon has the new value.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while read_one(&on_a, sql).await != "2" {
        assert!(
            std::time::Instant::now() < deadline,
            "a never saw b's write"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let invalidations = common::proxy::status_of(&a)["cache"]["invalidations"]["shared_t"]
        .as_u64()
        .unwrap_or(0);
    assert!(invalidations >= 1, "a received b's invalidation");
}
