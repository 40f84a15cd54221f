//! Sharding through pgsplit, on three real shards (each a primary with a streaming replica):
//! the same data loaded through pgsplit into the shards and directly into one unsharded
//! database answers a corpus of more than 100 queries (point, IN, ranges, fan-out, ORDER BY
//! with LIMIT/OFFSET, aggregates, GROUP BY, joins on the shard key) the same way; writes with no
//! key, cross-shard transactions and unmergeable reads are refused; rows land where
//! PostgreSQL's own hash partitioning would put them; a directory map follows a moved key.
//! `sharding_more` runs the corpus over the extended protocol (binary results), pgbench in
//! extended and prepared modes, and carries a causal token across shards to another instance.

mod common;
mod sharding_more;

use std::sync::OnceLock;

use common::proxy::{TestProxy, start_proxy};
use common::shards::rows;
use pgsplit::config::Config;
use pgsplit::localcluster::LocalCluster;
use tokio_postgres::{Client, SimpleQueryMessage};

const SHARDS: [&str; 3] = ["shard_a", "shard_b", "shard_c"];
const USERS: i64 = 240;
const ORDERS_PER_USER: i64 = 3;

struct Setup {
    shards: Vec<LocalCluster>,
    proxy: TestProxy,
}

/// Three shards and a proxy over them, loaded once for the whole binary.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let shards = common::shards::start_shards(&SHARDS, 1, &[]);
        let config = Config::from_toml(&config_text(&shards), "sharding test").expect("config");
        let proxy = start_proxy(config);
        Setup { shards, proxy }
    })
}

fn config_text(shards: &[LocalCluster]) -> String {
    let mut text = String::from("admin = \"127.0.0.1:0\"\n");
    text += &common::shards::clusters_toml(&SHARDS, shards);
    text += r#"
[sharding]
default = "shard_a"
replicated = ["countries"]

[[sharding.tables]]
name = "users"
key = "id"
key_type = "int8"
map = "by_user"

[[sharding.tables]]
name = "orders"
key = "user_id"
key_type = "int8"
map = "by_user"

[[sharding.tables]]
name = "notes"
key = "id"
key_type = "int8"
map = "by_user"

[[sharding.tables]]
name = "tenants_data"
key = "tenant"
key_type = "text"
map = "by_directory"

[[sharding.maps]]
name = "by_user"
kind = "hash"
shards = ["shard_a", "shard_b", "shard_c"]

[[sharding.maps]]
name = "by_directory"
kind = "directory"
shards = ["shard_a", "shard_b", "shard_c"]
directory = { cluster = "shard_a", table = "tenant_shards", key_column = "tenant", shard_column = "shard" }
"#;
    text
}

const SCHEMA: &str = "
CREATE TABLE users (id int8 PRIMARY KEY, name text COLLATE \"C\", country text COLLATE \"C\",
                    score int, balance numeric(12,2), born date);
CREATE TABLE orders (id int8, user_id int8, amount numeric(10,2), qty int, PRIMARY KEY (user_id, id));
CREATE TABLE countries (code text COLLATE \"C\" PRIMARY KEY, name text COLLATE \"C\");
CREATE TABLE tenants_data (tenant text, v int);
CREATE TABLE notes (id int8 PRIMARY KEY, v text);
";

fn user_row(id: i64) -> String {
    let countries = ["fr", "de", "it", "es", "pt"];
    let score = if id % 17 == 0 {
        "NULL".to_string()
    } else {
        ((id * 37) % 101).to_string()
    };
    format!(
        "({id}, 'user{:03}', '{}', {score}, {}.{:02}, DATE '1990-01-01' + {})",
        (id * 7919) % 1000,
        countries[(id % 5) as usize],
        (id * 13) % 500,
        id % 100,
        id * 11
    )
}

fn order_row(user: i64, n: i64) -> String {
    format!(
        "({}, {user}, {}.{:02}, {})",
        user * 10 + n,
        (user * n * 7) % 300,
        (user + n) % 100,
        (user + n) % 9 + 1
    )
}

const COUNTRIES: &str = "INSERT INTO countries VALUES ('fr','France'),('de','Germany'),('it','Italy'),('es','Spain'),('pt','Portugal')";

/// The unsharded reference: the same data in one database on the harness's shared cluster.
async fn reference() -> Client {
    static LOADED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let connstr = common::cluster().primary().connstr("postgres", "postgres");
    let client = common::connect(&connstr).await.expect("reference");
    LOADED
        .get_or_init(|| async {
            client
                .batch_execute(SCHEMA)
                .await
                .expect("reference schema");
            client
                .batch_execute(COUNTRIES)
                .await
                .expect("reference countries");
            for id in 1..=USERS {
                client
                    .batch_execute(&format!("INSERT INTO users VALUES {}", user_row(id)))
                    .await
                    .expect("reference user");
                for n in 0..ORDERS_PER_USER {
                    client
                        .batch_execute(&format!("INSERT INTO orders VALUES {}", order_row(id, n)))
                        .await
                        .expect("reference order");
                }
            }
        })
        .await;
    client
}

/// A session through pgsplit, with the data loaded through it (once).
async fn sharded() -> Client {
    static LOADED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let setup = setup();
    let client = common::connect(&setup.proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect through pgsplit");
    LOADED
        .get_or_init(|| async {
            // DDL and replicated tables go to every shard directly: pgsplit routes by key.
            for shard in &setup.shards {
                let direct = common::connect(&shard.primary().connstr("postgres", "postgres"))
                    .await
                    .expect("shard");
                direct.batch_execute(SCHEMA).await.expect("shard schema");
                direct.batch_execute(COUNTRIES).await.expect("shard countries");
            }
            for id in 1..=USERS {
                client
                    .batch_execute(&format!(
                        "INSERT INTO users (id, name, country, score, balance, born) VALUES {}",
                        user_row(id)
                    ))
                    .await
                    .expect("insert a user through pgsplit");
                for n in 0..ORDERS_PER_USER {
                    client
                        .execute(
                            "INSERT INTO orders (id, user_id, amount, qty) VALUES ($1, $2, $3::text::numeric, $4)",
                            &[&(id * 10 + n), &id, &format!("{}.{:02}", (id * n * 7) % 300, (id + n) % 100), &(((id + n) % 9 + 1) as i32)],
                        )
                        .await
                        .expect("insert an order through pgsplit (extended protocol)");
                }
            }
            // Other tests read through sessions of their own, which do not wait for the
            // loader's writes: the replicas must have them before anyone reads.
            for shard in &setup.shards {
                let lsn = shard.current_lsn().expect("primary position");
                for replica in shard.replicas() {
                    shard
                        .wait_replayed(replica, &lsn, std::time::Duration::from_secs(30))
                        .expect("the replica replays the load");
                }
            }
        })
        .await;
    client
}

/// The corpus: every query must give the same rows through pgsplit as on the unsharded copy.
fn corpus() -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    for id in (1..=USERS).step_by(8) {
        q.push(format!("SELECT * FROM users WHERE id = {id}"));
        q.push(format!(
            "SELECT id, amount FROM orders WHERE user_id = {id} ORDER BY id"
        ));
    }
    for (a, b, c) in [(1, 2, 3), (10, 50, 90), (7, 77, 177), (5, 6, 200)] {
        q.push(format!(
            "SELECT id, name FROM users WHERE id IN ({a}, {b}, {c}) ORDER BY id"
        ));
        q.push(format!(
            "SELECT count(*) FROM orders WHERE user_id IN ({a}, {b}, {c})"
        ));
    }
    for (lo, hi) in [(10, 20), (50, 60), (0, 100)] {
        q.push(format!(
            "SELECT id, score FROM users WHERE score BETWEEN {lo} AND {hi} ORDER BY id"
        ));
        q.push(format!("SELECT count(*), sum(score), min(score), max(score) FROM users WHERE score BETWEEN {lo} AND {hi}"));
    }
    for (limit, offset) in [(5, 0), (10, 3), (1, 0), (20, 100), (7, 230)] {
        q.push(format!(
            "SELECT id, name FROM users ORDER BY name, id LIMIT {limit} OFFSET {offset}"
        ));
        q.push(format!("SELECT id, score FROM users ORDER BY score DESC NULLS LAST, id LIMIT {limit} OFFSET {offset}"));
        q.push(format!(
            "SELECT id, balance FROM users ORDER BY balance, id DESC LIMIT {limit} OFFSET {offset}"
        ));
        q.push(format!(
            "SELECT id, born FROM users ORDER BY born DESC, id LIMIT {limit}"
        ));
    }
    for column in ["score", "balance", "id"] {
        q.push(format!("SELECT count({column}), sum({column}), min({column}), max({column}), avg({column}) FROM users"));
        q.push(format!("SELECT country, count(*), sum({column}), avg({column}) FROM users GROUP BY country ORDER BY country"));
    }
    for column in ["amount", "qty"] {
        q.push(format!("SELECT count(*), sum({column}), min({column}), max({column}), avg({column}) FROM orders"));
        q.push(format!(
            "SELECT qty, count(*), sum({column}) FROM orders GROUP BY qty ORDER BY qty"
        ));
    }
    q.push("SELECT count(*) FROM users".into());
    q.push("SELECT count(*) FROM orders".into());
    q.push("SELECT DISTINCT country FROM users ORDER BY country".into());
    q.push("SELECT DISTINCT qty FROM orders".into());
    q.push("SELECT country, min(name), max(name) FROM users GROUP BY country".into());
    q.push("SELECT country, count(*) AS n FROM users WHERE score > 50 GROUP BY country ORDER BY n DESC, country LIMIT 3".into());
    q.push("SELECT * FROM users WHERE name LIKE 'user1%' ORDER BY id".into());
    q.push("SELECT id FROM users WHERE score IS NULL".into());
    q.push("SELECT max(born), min(born) FROM users".into());
    q.push("SELECT code, name FROM countries ORDER BY code".into());
    for id in [3, 33, 133] {
        q.push(format!("SELECT u.name, o.id, o.amount FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = {id} ORDER BY o.id"));
        q.push(format!("SELECT u.id, c.name FROM users u JOIN countries c ON c.code = u.country WHERE u.id = {id}"));
    }
    q.push(
        "SELECT u.id, o.id FROM users u JOIN orders o ON o.user_id = u.id WHERE o.qty = 5".into(),
    );
    q.push(
        "SELECT u.country, o.qty FROM users u JOIN orders o ON u.id = o.user_id WHERE u.score > 90"
            .into(),
    );
    q
}

/// The corpus compares whole tables with the reference database: a test that writes to a
/// replicated table (whose rows every corpus read of it would see) holds this for writing,
/// the corpus tests for reading.
static REPLICATED_ROWS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn ordered(sql: &str) -> bool {
    sql.contains("ORDER BY")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_queries_answers_the_same_as_one_database() {
    let (sharded, reference) = (sharded().await, reference().await);
    let _rows_as_loaded = REPLICATED_ROWS.read().await;
    let corpus = corpus();
    assert!(corpus.len() >= 100, "{} queries", corpus.len());
    let mut differences = Vec::new();
    for sql in &corpus {
        let want = rows(&reference, sql).await.expect("reference answers");
        let got = match rows(&sharded, sql).await {
            Ok(got) => got,
            Err(e) => {
                differences.push(format!("{sql}\n  failed: {}", common::load::describe(&e)));
                continue;
            }
        };
        let (mut want_set, mut got_set) = (want.clone(), got.clone());
        if !ordered(sql) {
            want_set.sort();
            got_set.sort();
        }
        if want_set != got_set {
            differences.push(format!("{sql}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} differ:\n{}",
        differences.len(),
        corpus.len(),
        differences.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_where_postgres_hash_partitioning_puts_them() {
    let _ = sharded().await;
    let setup = setup();
    for (i, shard) in setup.shards.iter().enumerate() {
        let direct = common::connect(&shard.primary().connstr("postgres", "postgres"))
            .await
            .expect("shard");
        let misplaced = common::shards::misplaced_rows(&direct, "users", "id", "int8", 3, i).await;
        assert_eq!(misplaced, 0, "shard {i}");
        let held = rows(&direct, "SELECT count(*) FROM users")
            .await
            .expect("count");
        let held: i64 = held[0][0]
            .as_deref()
            .unwrap_or("0")
            .parse()
            .expect("a count");
        assert!(
            held > USERS / 6,
            "shard {i} holds {held} users: the hash spreads them"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_run_on_one_shard_is_refused_with_the_reason() {
    let client = sharded().await;
    let refusals = [
        (
            "UPDATE users SET score = 1 WHERE score = 2",
            "sharded table \"users\" must name its key",
        ),
        (
            "DELETE FROM orders",
            "sharded table \"orders\" must name its key",
        ),
        (
            "INSERT INTO users (id, name) VALUES (1001, 'a'), (1002, 'b'), (1003, 'c'), (1004, 'd')",
            "more than one shard",
        ),
        (
            "SELECT a.id FROM users a JOIN users b ON a.country = b.country",
            "other than on their sharding keys",
        ),
        (
            "SELECT country, count(*) FROM users GROUP BY country HAVING count(*) > 3",
            "HAVING",
        ),
        ("SELECT count(DISTINCT country) FROM users", "DISTINCT"),
    ];
    for (sql, expected) in refusals {
        let e = client.simple_query(sql).await.expect_err(sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(db.code().code(), "0A000", "{sql}: {}", db.message());
        assert!(db.message().contains(expected), "{sql}: {}", db.message());
    }
    // The session is still usable, and a transaction stays on its first shard.
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute("UPDATE users SET score = score WHERE id = 1")
        .await
        .expect("first statement picks the shard");
    let other = (2..USERS)
        .find(|id| shard_of(*id) != shard_of(1))
        .expect("a user on another shard");
    let e = client
        .batch_execute(&format!(
            "UPDATE users SET score = score WHERE id = {other}"
        ))
        .await
        .expect_err("a second shard in one transaction");
    assert!(
        e.to_string().contains("transaction")
            || e.as_db_error()
                .is_some_and(|d| d.message().contains("transaction stays on one shard")),
        "{e:?}"
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute("COMMIT")
        .await
        .expect("an empty transaction commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_after_a_write_on_another_shard_starts_on_its_own_first_shard() {
    let client = sharded().await;
    let other = (2..USERS)
        .find(|id| shard_of(*id) != shard_of(1))
        .expect("a user on another shard");
    let touch = |id: i64| format!("UPDATE users SET score = score WHERE id = {id}");
    // A write in autocommit (extended protocol), then a transaction on another shard.
    client.execute(&touch(other), &[]).await.expect("write");
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute(&touch(1))
        .await
        .expect("the transaction's first statement picks its shard");
    client.batch_execute("COMMIT").await.expect("commit");
    // The same with BEGIN and the first statement sent together, before either is answered.
    client.execute(&touch(other), &[]).await.expect("write");
    let first_statement = touch(1);
    let (begin, first) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.batch_execute(&first_statement)
    );
    begin.expect("begin");
    first.expect("the pipelined first statement picks its shard");
    client.batch_execute("COMMIT").await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_pipelined_behind_a_slow_statement_is_answered_after_it() {
    let client = sharded().await;
    let (slow, refused) = tokio::join!(
        client.simple_query("SELECT 'slow' FROM pg_sleep(0.3)"),
        client.simple_query("DELETE FROM orders"),
    );
    let slow = slow.expect("the slow statement gets its own answer");
    let value = slow.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("slow"));
    let e = refused.expect_err("a keyless DELETE of a sharded table is refused");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e}");
}

/// The shard index PostgreSQL's hash partitioning gives an int8 key (modulus 3).
fn shard_of(id: i64) -> usize {
    pgsplit::shard::hash::hash_shard(&pgsplit::shard::KeyValue::Int8(id), 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_map_follows_a_moved_key_after_its_table_changes() {
    let client = sharded().await;
    let setup = setup();
    let directory = common::connect(&setup.shards[0].primary().connstr("postgres", "postgres"))
        .await
        .expect("directory cluster");
    directory
        .batch_execute(
            "CREATE TABLE tenant_shards (tenant text PRIMARY KEY, shard text);
             INSERT INTO tenant_shards VALUES ('acme', 'shard_b')",
        )
        .await
        .expect("directory table");
    client
        .batch_execute("INSERT INTO tenants_data (tenant, v) VALUES ('acme', 1)")
        .await
        .expect("write for acme");
    assert_eq!(
        held_by(setup, 1, "acme").await,
        1,
        "acme's row is on shard_b"
    );
    // The directory table is on the default shard: updating it through pgsplit tells the map.
    client
        .batch_execute("UPDATE tenant_shards SET shard = 'shard_c' WHERE tenant = 'acme'")
        .await
        .expect("move acme");
    client
        .batch_execute("INSERT INTO tenants_data (tenant, v) VALUES ('acme', 2)")
        .await
        .expect("write for acme again");
    assert_eq!(
        held_by(setup, 2, "acme").await,
        1,
        "the moved key's row is on shard_c"
    );
    let e = client
        .simple_query("SELECT * FROM tenants_data WHERE tenant = 'nobody'")
        .await
        .expect_err("an unknown key");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("no entry for the key")),
        "{e:?}"
    );
}

async fn held_by(setup: &Setup, shard: usize, tenant: &str) -> usize {
    let direct = common::connect(
        &setup.shards[shard]
            .primary()
            .connstr("postgres", "postgres"),
    )
    .await
    .expect("shard");
    rows(
        &direct,
        &format!("SELECT v FROM tenants_data WHERE tenant = '{tenant}'"),
    )
    .await
    .expect("read")
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_replicated_tables_reach_every_shard() {
    let client = sharded().await;
    let _no_corpus_meanwhile = REPLICATED_ROWS.write().await;
    let setup = setup();
    client
        .batch_execute("INSERT INTO countries VALUES ('nl', 'Netherlands')")
        .await
        .expect("a replicated insert");
    client
        .batch_execute("UPDATE countries SET name = 'Nederland' WHERE code = 'nl'")
        .await
        .expect("a replicated update");
    for shard in &setup.shards {
        let direct = common::connect(&shard.primary().connstr("postgres", "postgres"))
            .await
            .expect("shard");
        let copy = rows(&direct, "SELECT name FROM countries WHERE code = 'nl'")
            .await
            .expect("read the copy");
        assert_eq!(copy, vec![vec![Some("Nederland".to_string())]]);
    }
    // Its own write is read back at once, from whichever shard serves the read.
    let read = rows(&client, "SELECT name FROM countries WHERE code = 'nl'")
        .await
        .expect("read");
    assert_eq!(read, vec![vec![Some("Nederland".to_string())]]);
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute("SELECT * FROM users WHERE id = 1")
        .await
        .expect("first statement");
    let e = client
        .batch_execute("DELETE FROM countries WHERE code = 'nl'")
        .await
        .expect_err("a replicated write inside a one-shard transaction");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("replicated table")),
        "{e:?}"
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
    client
        .batch_execute("DELETE FROM countries WHERE code = 'nl'")
        .await
        .expect("a replicated delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_plan_counts_the_rows_a_new_shard_would_take() {
    let _ = sharded().await;
    let setup = setup();
    let file = std::env::temp_dir()
        .join(common::unique_name("shard_plan"))
        .with_extension("toml");
    std::fs::write(&file, config_text(&setup.shards)).expect("write the config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["shard", "plan", "--config"])
        .arg(&file)
        .args(["--add", "shard_d", "--from-data"])
        .output()
        .expect("run pgsplit shard plan");
    let _ = std::fs::remove_file(&file);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let users = report
        .lines()
        .find(|l| l.starts_with("table \"users\""))
        .unwrap_or_else(|| panic!("no line for users: {report}"));
    assert!(
        users.contains(&format!("of {USERS} rows would move")),
        "{users}"
    );
    let moved: u64 = users
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    // PostgreSQL's hash modulo 4 instead of 3 keeps a key only where both remainders agree.
    assert!((USERS as u64 / 2..USERS as u64).contains(&moved), "{users}");
}
