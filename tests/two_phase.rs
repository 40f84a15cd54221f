//! Two-phase commit across shards (`[sharding] two_phase_commit = true`), on real shards with
//! `max_prepared_transactions = 10` (and one with 0): a transaction writing on three shards
//! commits on all of them or rolls back on all of them; a multi-row INSERT is split over the
//! shards its rows belong to, and a COPY's rows commit as one; a PREPARE that fails leaves nothing behind; and a real crash of
//! the `pgsplit` binary (aborted by its `PGSPLIT_FAULT` test hook) before and after the
//! coordinator's commit is resolved by the next pgsplit's recovery, all or nothing.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::process::{KillOnDrop, free_port};
use common::proxy::{TestProxy, start_proxy};
use common::shards::rows_of;
use pgsplit::config::Config;
use pgsplit::localcluster::LocalCluster;
use pgsplit::shard::KeyValue;
use pgsplit::shard::hash::hash_shard;
use tokio_postgres::{Client, SimpleQueryMessage};

const PGSPLIT: &str = env!("CARGO_BIN_EXE_pgsplit");
const SHARDS: [&str; 3] = ["shard_a", "shard_b", "shard_c"];
const PREPARED_ON: &str = "max_prepared_transactions = 10";

const SCHEMA: &str = "CREATE TABLE items (id int8 PRIMARY KEY, v text, \
                      code int UNIQUE DEFERRABLE INITIALLY DEFERRED)";

struct Setup {
    shards: Vec<LocalCluster>,
    /// A shard with prepared transactions disabled (`max_prepared_transactions = 0`).
    no_prepare: LocalCluster,
    proxy: TestProxy,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        // shard_a has a replica, so that a transaction's first read may be routed to it.
        let mut shards = common::shards::start_shards(&SHARDS[..1], 1, &[PREPARED_ON]);
        shards.extend(common::shards::start_shards(&SHARDS[1..], 0, &[PREPARED_ON]));
        let no_prepare =
            common::shards::start_shards(&["shard_d"], 0, &["max_prepared_transactions = 0"])
                .remove(0);
        for shard in shards.iter().chain([&no_prepare]) {
            shard
                .psql(shard.primary(), "postgres", SCHEMA)
                .expect("schema");
        }
        let mut text = common::shards::clusters_toml(&SHARDS, &shards);
        text += &common::shards::clusters_toml(&["shard_d"], std::slice::from_ref(&no_prepare));
        text += &sharding_toml();
        text += "\n[[sharding.tables]]\nname = \"gadgets\"\nkey = \"id\"\nkey_type = \"int8\"\nmap = \"with_d\"\n\
                 [[sharding.maps]]\nname = \"with_d\"\nkind = \"hash\"\nshards = [\"shard_a\", \"shard_d\"]\n";
        for shard in shards.iter().chain([&no_prepare]) {
            shard
                .psql(shard.primary(), "postgres", "CREATE TABLE gadgets (id int8 PRIMARY KEY)")
                .expect("schema");
        }
        let config = Config::from_toml(&text, "two-phase test").expect("config");
        let proxy = start_proxy(config);
        Setup {
            shards,
            no_prepare,
            proxy,
        }
    })
}

fn sharding_toml() -> String {
    r#"
[sharding]
default = "shard_a"
two_phase_commit = true

[[sharding.tables]]
name = "items"
key = "id"
key_type = "int8"
map = "by_id"

[[sharding.maps]]
name = "by_id"
kind = "hash"
shards = ["shard_a", "shard_b", "shard_c"]
"#
    .to_string()
}

async fn connect(connstr: &str) -> Client {
    common::connect(connstr).await.expect("connect")
}

async fn through_pgsplit() -> Client {
    connect(&setup().proxy.connstr("postgres", "postgres")).await
}

/// The server's (or pgsplit's) message of an error.
fn message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| error.to_string(), |e| e.message().to_string())
}

fn command_tags(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// Ids of `items` (or another table) on one shard's primary, read directly.
async fn ids_on(shard: &LocalCluster, table: &str, from: i64, to: i64) -> Vec<i64> {
    let client = connect(&shard.primary().connstr("postgres", "postgres")).await;
    let answer = client
        .simple_query(&format!(
            "SELECT id FROM {table} WHERE id >= {from} AND id < {to} ORDER BY id"
        ))
        .await
        .expect("read a shard");
    rows_of(&answer)
        .into_iter()
        .filter_map(|row| row[0].as_ref()?.parse().ok())
        .collect()
}

/// BEGIN, then one row of `table` per key, each in its own statement.
async fn begin_and_insert(client: &Client, table: &str, keys: &[i64]) {
    client.simple_query("BEGIN").await.expect("begin");
    for key in keys {
        client
            .simple_query(&format!("INSERT INTO {table} (id) VALUES ({key})"))
            .await
            .expect("insert");
    }
}

/// No shard holds an `items` id in [from, to).
async fn assert_none_between(shards: &[LocalCluster], from: i64, to: i64) {
    for shard in shards {
        assert_eq!(ids_on(shard, "items", from, to).await, Vec::<i64>::new());
    }
}

/// One test at a time: "nothing is left prepared" cannot tell another test's transaction, in
/// the middle of its commit, from one left behind.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The gids left prepared on a shard.
async fn prepared_on(shard: &LocalCluster) -> Vec<String> {
    let client = connect(&shard.primary().connstr("postgres", "postgres")).await;
    let answer = client
        .simple_query("SELECT gid FROM pg_prepared_xacts ORDER BY gid")
        .await
        .expect("pg_prepared_xacts");
    rows_of(&answer)
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect()
}

async fn nothing_prepared(shards: &[&LocalCluster]) {
    for shard in shards {
        assert_eq!(prepared_on(shard).await, Vec::<String>::new());
    }
}

/// The first `count` keys from `from` that a hash map over `map` (cluster names in shard
/// order) places on `cluster`: PostgreSQL's hash partitioning, as pgsplit computes it.
fn keys_on(map: &[&str], cluster: &str, from: i64, count: usize) -> Vec<i64> {
    let shard = map
        .iter()
        .position(|c| *c == cluster)
        .expect("a shard of the map");
    (from..)
        .filter(|&key| hash_shard(&KeyValue::Int8(key), map.len()) == shard)
        .take(count)
        .collect()
}

/// One key on each of the three shards (`names`, in map order), from `from` on.
fn keys_per_shard(names: &[&str; 3], from: i64) -> [i64; 3] {
    let mut keys = [0; 3];
    for (i, shard) in names.iter().enumerate() {
        keys[i] = keys_on(names, shard, from, 1)[0];
    }
    keys
}

fn one_per_shard(from: i64) -> [i64; 3] {
    keys_per_shard(&SHARDS, from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_on_three_shards_commits_or_rolls_back_on_all() {
    let _turn = one_at_a_time().await;
    let setup = setup();
    let client = through_pgsplit().await;
    let keys = one_per_shard(1000);
    let mut script = String::from("BEGIN;");
    for key in keys {
        script += &format!("INSERT INTO items (id, v) VALUES ({key}, 'committed');");
    }
    for statement in script.split_terminator(';') {
        client.simple_query(statement).await.expect(statement);
    }
    // The transaction reads its own write on a shard it left for another one.
    let own = client
        .simple_query(&format!("SELECT v FROM items WHERE id = {}", keys[0]))
        .await
        .expect("read back");
    assert_eq!(rows_of(&own), vec![vec![Some("committed".to_string())]]);
    client.simple_query("COMMIT").await.expect("commit");
    for (shard, key) in setup.shards.iter().zip(keys) {
        assert_eq!(ids_on(shard, "items", 1000, 2000).await, vec![key]);
    }
    nothing_prepared(&setup.shards.iter().collect::<Vec<_>>()).await;

    let keys = one_per_shard(2000);
    begin_and_insert(&client, "items", &keys).await;
    client.simple_query("ROLLBACK").await.expect("rollback");
    assert_none_between(&setup.shards, 2000, 3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_first_statement_reads_still_writes_everywhere() {
    let _turn = one_at_a_time().await;
    let setup = setup();
    let client = through_pgsplit().await;
    let keys = one_per_shard(12_000);
    client.simple_query("BEGIN").await.expect("begin");
    // A read first (shard_a has a replica): the transaction still begins on shard_a's primary.
    let read = client
        .simple_query(&format!("SELECT v FROM items WHERE id = {}", keys[0]))
        .await
        .expect("first read");
    assert!(rows_of(&read).is_empty());
    for key in [keys[1], keys[0]] {
        client
            .simple_query(&format!("INSERT INTO items (id) VALUES ({key})"))
            .await
            .expect("insert");
    }
    client.simple_query("COMMIT").await.expect("commit");
    assert_eq!(
        ids_on(&setup.shards[0], "items", 12_000, 13_000).await,
        vec![keys[0]]
    );
    assert_eq!(
        ids_on(&setup.shards[1], "items", 12_000, 13_000).await,
        vec![keys[1]]
    );
    nothing_prepared(&setup.shards.iter().collect::<Vec<_>>()).await;

    // A savepoint lives on one shard: rolling back to it is refused, and like any error the
    // refusal aborts the transaction (what it meant to undo must not commit): COMMIT rolls
    // back on every shard.
    begin_and_insert(&client, "items", &one_per_shard(13_000)).await;
    let refused = client
        .simple_query("ROLLBACK TO SAVEPOINT nowhere")
        .await
        .expect_err("savepoint across shards");
    assert!(message(&refused).contains("across shards"), "{refused}");
    client.simple_query("COMMIT").await.expect("commit");
    assert_none_between(&setup.shards, 13_000, 14_000).await;
    nothing_prepared(&setup.shards.iter().collect::<Vec<_>>()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_aborts_the_transaction_on_every_shard() {
    let _turn = one_at_a_time().await;
    let setup = setup();
    let client = through_pgsplit().await;
    let keys = one_per_shard(3000);
    begin_and_insert(&client, "items", &keys[..2]).await;
    let error = client
        .simple_query(&format!(
            "INSERT INTO items (id, v) VALUES ({}, 1/0)",
            keys[2]
        ))
        .await
        .expect_err("division by zero");
    assert!(message(&error).contains("division by zero"), "{error}");
    let refused = client
        .simple_query(&format!("SELECT * FROM items WHERE id = {}", keys[0]))
        .await
        .expect_err("aborted transaction");
    assert!(message(&refused).contains("aborted"), "{refused}");
    // COMMIT of a failed transaction rolls back, as PostgreSQL does.
    client
        .simple_query("COMMIT")
        .await
        .expect("commit answered");
    assert_none_between(&setup.shards, 3000, 4000).await;
    nothing_prepared(&setup.shards.iter().collect::<Vec<_>>()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_protocol_and_a_vanishing_client_work_too() {
    let _turn = one_at_a_time().await;
    let setup = setup();
    let mut client = through_pgsplit().await;
    let keys = one_per_shard(4000);
    let transaction = client.transaction().await.expect("begin");
    for key in keys {
        transaction
            .execute(
                "INSERT INTO items (id, v) VALUES ($1, $2)",
                &[&key, &"bound"],
            )
            .await
            .expect("insert");
    }
    transaction.commit().await.expect("commit");
    for (shard, key) in setup.shards.iter().zip(keys) {
        assert_eq!(ids_on(shard, "items", 4000, 5000).await, vec![key]);
    }

    let keys = one_per_shard(5000);
    let gone = through_pgsplit().await;
    begin_and_insert(&gone, "items", &keys).await;
    drop(gone);
    // Its participants are closed, which rolls them back: their row locks go too, so the same
    // keys can be written directly on each shard within the bound.
    for (shard, key) in setup.shards.iter().zip(keys) {
        let direct = connect(&shard.primary().connstr("postgres", "postgres")).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let insert = format!("SET lock_timeout = '200ms'; INSERT INTO items (id) VALUES ({key})");
        while let Err(e) = direct.batch_execute(&insert).await {
            assert!(
                Instant::now() < deadline,
                "the vanished client's rows stay locked: {e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_row_insert_is_split_over_its_shards() {
    let _turn = one_at_a_time().await;
    let setup = setup();
    let client = through_pgsplit().await;
    let mut on = Vec::new();
    for shard in SHARDS {
        on.push(keys_on(&SHARDS, shard, 6000, 2));
    }
    let all: Vec<i64> = on.iter().flatten().copied().collect();
    let values: Vec<String> = all.iter().map(|k| format!("({k}, 'split')")).collect();
    let answer = client
        .simple_query(&format!(
            "INSERT INTO items (id, v) VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("split insert");
    assert_eq!(command_tags(&answer), vec![6]);
    for (shard, keys) in setup.shards.iter().zip(&on) {
        assert_eq!(&ids_on(shard, "items", 6000, 7000).await, keys);
    }
    nothing_prepared(&setup.shards.iter().collect::<Vec<_>>()).await;

    let returning = client
        .simple_query(&format!(
            "INSERT INTO items (id) VALUES ({}), ({}) RETURNING id",
            keys_on(&SHARDS, "shard_a", 7000, 1)[0],
            keys_on(&SHARDS, "shard_b", 7000, 1)[0],
        ))
        .await
        .expect_err("RETURNING over shards");
    assert!(message(&returning).contains("RETURNING"), "{returning}");

    // Inside a transaction the split rows join it, and roll back with it.
    let later: Vec<String> = on
        .iter()
        .map(|keys| format!("({}, 'tx')", keys[0] + 2000))
        .collect();
    client.simple_query("BEGIN").await.expect("begin");
    let answer = client
        .simple_query(&format!(
            "INSERT INTO items (id, v) VALUES {}",
            later.join(", ")
        ))
        .await
        .expect("split insert in a transaction");
    assert_eq!(command_tags(&answer), vec![3]);
    client.simple_query("ROLLBACK").await.expect("rollback");
    assert_none_between(&setup.shards, 8000, 9000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prepare_leaves_nothing_behind() {
    let _turn = one_at_a_time().await;
    let setup = setup();
    let client = through_pgsplit().await;
    let keys = one_per_shard(10_000);
    // A row on shard_b already holds code 77: a duplicate inserted in a transaction is found
    // only at its end (the constraint is deferred). The transaction's first shard coordinates.
    client
        .simple_query(&format!(
            "INSERT INTO items (id, code) VALUES ({}, 77)",
            keys[1]
        ))
        .await
        .expect("existing row");
    let duplicates = keys_on(&SHARDS, "shard_b", keys[1] + 1, 2);
    let duplicate = |n: usize| {
        format!(
            "INSERT INTO items (id, code) VALUES ({}, 77)",
            duplicates[n]
        )
    };
    let plain = |key: i64| format!("INSERT INTO items (id) VALUES ({key})");
    // shard_b fails its PREPARE (after shard_a and shard_c took their rows); then shard_b is the
    // coordinator and fails its COMMIT, after shard_a prepared.
    for statements in [
        vec![plain(keys[0]), plain(keys[2]), duplicate(0)],
        vec![duplicate(1), plain(keys[0])],
    ] {
        client.simple_query("BEGIN").await.expect("begin");
        for statement in &statements {
            client.simple_query(statement).await.expect(statement);
        }
        let error = client.simple_query("COMMIT").await.expect_err("duplicate");
        let db_error = error.as_db_error().expect("a server error");
        assert_eq!(db_error.code().code(), "23505", "{error}");
        let on_shards = [
            ids_on(&setup.shards[0], "items", 10_000, 11_000).await,
            ids_on(&setup.shards[1], "items", 10_000, 11_000).await,
            ids_on(&setup.shards[2], "items", 10_000, 11_000).await,
        ];
        assert_eq!(on_shards, [vec![], vec![keys[1]], vec![]], "{statements:?}");
        nothing_prepared(&setup.shards.iter().collect::<Vec<_>>()).await;
    }
    // The session goes on, outside any transaction.
    client
        .simple_query("SELECT 1")
        .await
        .expect("session alive");

    // A shard that cannot prepare: named, with the setting, and nothing left anywhere.
    let on_d = keys_on(&["shard_a", "shard_d"], "shard_d", 1, 1)[0];
    let on_a = keys_on(&["shard_a", "shard_d"], "shard_a", 1, 1)[0];
    begin_and_insert(&client, "gadgets", &[on_a, on_d]).await;
    let in_transaction = client.simple_query("COMMIT").await;
    // The same rows as one INSERT in autocommit: split, and refused the same way.
    let split = client
        .simple_query(&format!(
            "INSERT INTO gadgets (id) VALUES ({on_a}), ({on_d})"
        ))
        .await;
    for result in [in_transaction, split] {
        let text = message(&result.expect_err("cannot prepare"));
        assert!(
            text.contains("max_prepared_transactions") && text.contains("shard_d"),
            "{text}"
        );
    }
    assert_eq!(
        ids_on(&setup.shards[0], "gadgets", 0, 100_000).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_on(&setup.no_prepare, "gadgets", 0, 100_000).await,
        Vec::<i64>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_over_shards_commits_through_two_phase_commit() {
    let _turn = one_at_a_time().await;
    use futures_util::SinkExt;
    let setup = setup();
    let client = through_pgsplit().await;
    let copy = |rows: String| async {
        let sink = client
            .copy_in::<_, bytes::Bytes>("COPY items (id, code) FROM STDIN")
            .await?;
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from(rows)).await?;
        sink.finish().await
    };
    let keys = one_per_shard(20_000);
    let rows: String = keys.iter().map(|k| format!("{k}\t\\N\n")).collect();
    assert_eq!(copy(rows).await.expect("COPY on three shards"), 3);
    for (i, shard) in setup.shards.iter().enumerate() {
        assert_eq!(ids_on(shard, "items", 20_000, 21_000).await, vec![keys[i]]);
    }
    // A deferred duplicate on shard_b fails its PREPARE: no shard keeps its rows.
    let more = one_per_shard(21_000);
    let twin = keys_on(&SHARDS, "shard_b", more[1] + 1, 1)[0];
    let rows = format!(
        "{}\t\\N\n{}\t88\n{}\t88\n{}\t\\N\n",
        more[0], more[1], twin, more[2]
    );
    let error = copy(rows)
        .await
        .expect_err("the duplicate fails the commit");
    assert_eq!(error.code().map(|c| c.code()), Some("23505"), "{error}");
    assert_none_between(&setup.shards, 21_000, 22_000).await;
    nothing_prepared(&setup.shards.iter().collect::<Vec<_>>()).await;
}

/// pgsplit as a process of its own, logging to a file.
struct Pgsplit {
    child: KillOnDrop,
    port: u16,
    admin: String,
}

impl Pgsplit {
    fn start(dir: &Path, config: &str, fault: Option<&str>) -> Pgsplit {
        let (port, admin) = (free_port(), free_port());
        let file = dir.join("pgsplit.toml");
        std::fs::write(
            &file,
            format!("listen = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\"\n{config}"),
        )
        .expect("write config");
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("pgsplit.log"))
            .expect("log file");
        let mut command = Command::new(PGSPLIT);
        command
            .args(["run", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(fault) = fault {
            command.env("PGSPLIT_FAULT", fault);
        }
        let child = command.spawn().expect("start pgsplit");
        Pgsplit {
            child: KillOnDrop(child),
            port,
            admin: format!("127.0.0.1:{admin}"),
        }
    }

    async fn client(&self) -> Client {
        let connstr = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match common::connect(&connstr).await {
                Ok(client) => return client,
                Err(e) => assert!(Instant::now() < deadline, "pgsplit not up: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The recovery resolutions `/metrics` counts with this outcome.
    fn resolutions(&self, outcome: &str) -> String {
        let (_, body) =
            common::process::http(&self.admin, "GET", "/metrics", Duration::from_secs(5))
                .expect("metrics");
        let series = format!("pgsplit_two_phase_resolutions_total{{outcome=\"{outcome}\"}} ");
        body.lines()
            .find_map(|line| line.strip_prefix(&series))
            .unwrap_or("0")
            .to_string()
    }

    /// How many events of this kind `/api/status` lists.
    fn events(&self, kind: &str) -> usize {
        let (_, body) =
            common::process::http(&self.admin, "GET", "/api/status", Duration::from_secs(5))
                .expect("status");
        let status: serde_json::Value = serde_json::from_str(&body).expect("json");
        status["events"].as_array().map_or(0, |events| {
            events.iter().filter(|e| e["kind"] == kind).count()
        })
    }

    /// Waits (bounded) for the process to end, as the fault point makes it.
    fn wait_crashed(&mut self) {
        let status = common::process::wait_or_kill(
            &mut self.child.0,
            Instant::now() + Duration::from_secs(10),
        )
        .expect("pgsplit aborted at its fault point");
        assert!(!status.success(), "{status:?}");
    }
}

/// Crashes pgsplit at `fault` in the COMMIT of a transaction on three shards, checks what it
/// left prepared, starts pgsplit again, and returns the ids each shard holds once recovery
/// has emptied every shard's pg_prepared_xacts.
async fn crash_and_recover(
    shards: &[LocalCluster],
    names: &[&str; 3],
    config: &str,
    fault: &str,
    from: i64,
    outcome: &str,
) -> Vec<Vec<i64>> {
    let dir = std::env::temp_dir().join(common::unique_name("pgsplit_two_phase"));
    std::fs::create_dir_all(&dir).expect("test directory");
    let mut crashing = Pgsplit::start(&dir, config, Some(fault));
    let client = crashing.client().await;
    let keys = keys_per_shard(names, from);
    begin_and_insert(&client, "items", &keys).await;
    assert!(
        client.simple_query("COMMIT").await.is_err(),
        "pgsplit crashed during COMMIT"
    );
    crashing.wait_crashed();
    let mut left = Vec::new();
    for shard in shards {
        left.extend(prepared_on(shard).await);
    }
    // The two participants other than the coordinator (the first shard), named after it.
    let coordinator = format!("pgsplit:{}:", names[0]);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().all(|gid| gid.starts_with(&coordinator)),
        "{left:?}"
    );

    let recovering = Pgsplit::start(&dir, config, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = 0;
        for shard in shards {
            left += prepared_on(shard).await.len();
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recovery resolves what the crash left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(recovering.resolutions(outcome), "2", "counted in /metrics");
    let event = format!("two_phase_{outcome}");
    assert_eq!(recovering.events(&event), 2, "{event} events");
    let mut ids = Vec::new();
    for shard in shards {
        ids.push(ids_on(shard, "items", from, from + 1000).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_finishes_what_a_crash_left_all_or_nothing() {
    let _turn = one_at_a_time().await;
    // Shards of its own: no other pgsplit's recovery may see what the crash leaves.
    let names = ["crash_a", "crash_b", "crash_c"];
    let shards = common::shards::start_shards(&names, 0, &[PREPARED_ON]);
    for shard in &shards {
        shard
            .psql(shard.primary(), "postgres", SCHEMA)
            .expect("schema");
    }
    let config = common::shards::clusters_toml(&names, &shards)
        + &sharding_toml()
            .replace("shard_a", "crash_a")
            .replace("shard_b", "crash_b")
            .replace("shard_c", "crash_c");

    // Crashed after PREPARE, before the coordinator's COMMIT: recovery rolls back.
    let ids = crash_and_recover(&shards, &names, &config, "after_prepare", 100, "rollback").await;
    assert!(ids.iter().all(Vec::is_empty), "{ids:?}");

    // Crashed right after the coordinator's COMMIT: recovery commits the others.
    let ids = crash_and_recover(
        &shards,
        &names,
        &config,
        "after_coordinator_commit",
        200,
        "commit",
    )
    .await;
    assert!(ids.iter().all(|shard| shard.len() == 1), "{ids:?}");
}
