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
    PROXY.get_or_init(|| {
        let mut config = cluster_config();
        config.admin = Some("127.0.0.1:0".parse().expect("loopback"));
        config.cache.max_bytes = 16 * 1024 * 1024;
        config.cache.tables = vec![CacheTable {
            name: "cached_t".to_string(),
            ttl: Some(Duration::from_secs(60)),
        }];
        start_proxy(config)
    })
}

fn stats() -> serde_json::Value {
    let admin = proxy().admin.expect("admin").to_string();
    let (_, body) = common::process::http(&admin, "GET", "/api/status", Duration::from_secs(5))
        .expect("status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("json");
    status["cache"].clone()
}

fn hits() -> u64 {
    stats()["hits"].as_u64().expect("hits")
}

async fn value(client: &Client) -> String {
    let answer = client
        .simple_query("SELECT v FROM cached_t WHERE id = 1")
        .await
        .expect("read");
    answer
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test]
async fn reads_hit_writes_invalidate_at_commit_and_rollbacks_keep_entries() {
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
    let cache = stats();
    assert!(
        cache["invalidations"]["cached_t"].as_u64().unwrap_or(0) >= 2,
        "{cache}"
    );
}
