//! The causal token across shards and pgsplit instances: a session that wrote on two shards
//! gets a token with a position per shard; a session of another pgsplit instance that passes
//! it back reads those writes while both shards' replicas have replay paused, and is not held
//! to those positions on a third shard.

use std::time::{Duration, Instant};

use pgsplit::config::Config;
use pgsplit::localcluster::LocalCluster;
use tokio_postgres::Client;

use crate::common;
use crate::common::proxy::start_proxy;

/// The first value of the first row of a simple query.
async fn first_value(client: &Client, sql: &str) -> Result<String, String> {
    let rows = crate::rows(client, sql)
        .await
        .map_err(|e| format!("{sql}: {}", common::load::describe(&e)))?;
    rows.first()
        .and_then(|row| row.first().cloned().flatten())
        .ok_or_else(|| format!("{sql}: no value"))
}

/// A key of the `by_user` map on shard `index` (users' keys above the loaded ones).
fn key_on(index: usize) -> i64 {
    (1_000_000..)
        .find(|id| crate::shard_of(*id) == index)
        .expect("a key on every shard")
}

fn lsn(text: &str) -> u64 {
    pgsplit::topology::monitor::parse_lsn(text.trim()).expect("an LSN")
}

/// Moves shard `s`'s WAL on by whole segments (a logical message, then a switch), so that its
/// positions are well past another shard's.
fn advance_wal(shard: &LocalCluster) {
    let sql = "SELECT pg_logical_emit_message(false, 'pgsplit-test', 'x'); SELECT pg_switch_wal()";
    shard
        .psql(shard.primary(), "postgres", sql)
        .expect("advance the WAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_writes_on_two_shards_serves_another_instance_and_spares_the_third() {
    let _ = crate::sharded().await;
    let setup = crate::setup();
    let [a, b, c] = [&setup.shards[0], &setup.shards[1], &setup.shards[2]];
    // The written shards' positions must be ahead of the third's for a bare position to
    // make a difference there.
    for _ in 0..5 {
        let third = lsn(&c.current_lsn().expect("shard_c's position"));
        let behind = [a, b]
            .iter()
            .all(|s| lsn(&s.current_lsn().expect("position")) > third + 0x100_0000);
        if behind {
            break;
        }
        tokio::task::block_in_place(|| [a, b].iter().for_each(|s| advance_wal(s)));
    }
    let second = start_proxy(
        Config::from_toml(&crate::config_text(&setup.shards), "second instance").expect("config"),
    );
    let (key_a, key_b, key_c) = (key_on(0), key_on(1), key_on(2));
    tokio::task::block_in_place(|| {
        for shard in [a, b] {
            shard
                .pause_replay(&shard.replicas()[0])
                .expect("pause replay");
        }
    });
    let outcome = async {
        let writer = common::connect(&setup.proxy.connstr("postgres", "postgres"))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        for (key, v) in [(key_a, "on a"), (key_b, "on b")] {
            writer
                .batch_execute(&format!("INSERT INTO notes (id, v) VALUES ({key}, '{v}')"))
                .await
                .map_err(|e| format!("insert {key}: {}", common::load::describe(&e)))?;
        }
        let token = first_value(&writer, "SHOW pgsplit.causal_token").await?;
        if !(token.contains("shard_a:") && token.contains("shard_b:") && !token.contains("shard_c"))
        {
            return Err(format!("a position per written shard: {token}"));
        }
        let reader = common::connect(&second.connstr("postgres", "postgres"))
            .await
            .map_err(|e| format!("connect to the second instance: {e}"))?;
        reader
            .batch_execute(&format!("SET pgsplit.after = '{token}'"))
            .await
            .map_err(|e| format!("set the token: {e}"))?;
        for (key, v) in [(key_a, "on a"), (key_b, "on b")] {
            let sql = format!("SELECT v FROM notes WHERE id = {key}");
            let read = first_value(&reader, &sql).await?;
            if read != v {
                return Err(format!("{sql}: {read}"));
            }
        }
        // The third shard owes nothing to this token: its replica serves the read.
        let third_replica = c.replicas()[0].port.to_string();
        let on_third = format!("SELECT inet_server_port(), count(*) FROM notes WHERE id = {key_c}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut served_by = String::new();
        while served_by != third_replica && Instant::now() < deadline {
            served_by = first_value(&reader, &on_third).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if served_by != third_replica {
            return Err(format!(
                "shard_c's read ran on port {served_by}, not its replica"
            ));
        }
        // A bare position is for every cluster: shard_c's replica is not that far.
        let bare = pgsplit::topology::monitor::format_lsn(lsn(&a.current_lsn().expect("lsn")));
        reader
            .batch_execute(&format!("SET pgsplit.after = '{bare}'"))
            .await
            .map_err(|e| format!("set a bare token: {e}"))?;
        let served_by = first_value(&reader, &on_third).await?;
        if served_by != c.primary().port.to_string() {
            return Err(format!(
                "a bare token ran shard_c's read on port {served_by}"
            ));
        }
        let e = reader
            .batch_execute("SET pgsplit.after = 'shard_a:0/10,shard_b:nope'")
            .await
            .err()
            .ok_or("a bad token is refused")?;
        let db = e.as_db_error().ok_or_else(|| format!("{e:?}"))?;
        if db.code().code() != "22023" || !db.message().contains("shard_b:nope") {
            return Err(format!("bad token: {} {}", db.code().code(), db.message()));
        }
        Ok::<(), String>(())
    }
    .await;
    tokio::task::block_in_place(|| {
        for shard in [a, b] {
            shard
                .resume_replay(&shard.replicas()[0])
                .expect("resume replay");
        }
    });
    outcome.unwrap_or_else(|e| panic!("{e}"));
}
