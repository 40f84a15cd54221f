//! COPY FROM STDIN into sharded tables through pgsplit, on three real shards: thousands of rows
//! in text (tokio-postgres `copy_in`) and CSV (psql's `\copy`, with quotes, commas, newlines and
//! NULLs) land on the shard PostgreSQL's hash partitioning gives their key, rows cut across
//! CopyData messages included; a bad row or a CopyFail leaves nothing on any shard; a
//! replicated table gets every row on every shard. And `SET pgsplit.shard_key` /
//! `pgsplit.shard` send a session's keyless statements to one shard until RESET.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::load::{BackgroundTool, bounded};
use common::proxy::{TestProxy, start_proxy};
use common::shards::{Rows, misplaced_rows, rows};
use futures_util::SinkExt;
use pgsplit::config::Config;
use pgsplit::localcluster::LocalCluster;
use pgsplit::shard::KeyValue;
use pgsplit::shard::hash::hash_shard;
use tokio_postgres::Client;

const SHARDS: [&str; 3] = ["shard_a", "shard_b", "shard_c"];
const LIMIT: Duration = Duration::from_secs(60);

struct Setup {
    shards: Vec<LocalCluster>,
    proxy: TestProxy,
}

/// Three shards (a primary each) with the tables created directly on each, and pgsplit over
/// them, once for the whole binary.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let shards = common::shards::start_shards(&SHARDS, 0, &[]);
        // A runtime of its own, on a thread of its own: the tests' runtimes cannot block.
        std::thread::scope(|s| {
            s.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    for shard in &shards {
                        direct(shard)
                            .await
                            .batch_execute(SCHEMA)
                            .await
                            .expect("schema");
                    }
                    // Only the last shard checks, and only at commit: its commit can fail
                    // after the others committed.
                    direct(&shards[2])
                        .await
                        .batch_execute(
                            "ALTER TABLE partial ADD UNIQUE (v) DEFERRABLE INITIALLY DEFERRED",
                        )
                        .await
                        .expect("deferred constraint");
                });
            });
        });
        let config = Config::from_toml(&config_text(&shards), "copy test").expect("config");
        let proxy = start_proxy(config);
        Setup { shards, proxy }
    })
}

const SCHEMA: &str = "
CREATE TABLE items (id int8 PRIMARY KEY, label text, note text);
CREATE TABLE events (tenant text, seq int, body text);
CREATE TABLE refused (v text, id int8);
CREATE TABLE keyed (id int8, v text);
CREATE TABLE partial (id int8, v int);
CREATE TABLE countries (code text PRIMARY KEY, name text);
";

fn config_text(shards: &[LocalCluster]) -> String {
    let mut text = common::shards::clusters_toml(&SHARDS, shards);
    text += r#"
[sharding]
replicated = ["countries"]

[[sharding.tables]]
name = "items"
key = "id"
key_type = "int8"
map = "by_id"

[[sharding.tables]]
name = "refused"
key = "id"
key_type = "int8"
map = "by_id"

[[sharding.tables]]
name = "keyed"
key = "id"
key_type = "int8"
map = "by_id"

[[sharding.tables]]
name = "partial"
key = "id"
key_type = "int8"
map = "by_id"

[[sharding.tables]]
name = "events"
key = "tenant"
key_type = "text"
map = "by_tenant"

[[sharding.maps]]
name = "by_id"
kind = "hash"
shards = ["shard_a", "shard_b", "shard_c"]

[[sharding.maps]]
name = "by_tenant"
kind = "hash"
shards = ["shard_a", "shard_b", "shard_c"]
"#;
    text
}

async fn direct(shard: &LocalCluster) -> Client {
    common::connect(&shard.primary().connstr("postgres", "postgres"))
        .await
        .expect("connect to a shard directly")
}

async fn through_pgsplit() -> Client {
    common::connect(&setup().proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect through pgsplit")
}

/// Each shard's rows of `sql`, read on the shard itself.
async fn rows_per_shard(sql: &str) -> Vec<Rows> {
    let mut all = Vec::new();
    for shard in &setup().shards {
        all.push(rows(&direct(shard).await, sql).await.expect(sql));
    }
    all
}

fn count(rows: &Rows) -> i64 {
    rows[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("a count")
}

/// Sends `data` to `COPY ...` in CopyData messages of `piece` bytes (tokio-postgres sends a
/// piece over 4096 bytes as a message of its own, so rows are cut across messages).
async fn copy_in(
    client: &Client,
    sql: &str,
    data: &[u8],
    piece: usize,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures_util::pin_mut!(sink);
    for chunk in data.chunks(piece) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

/// The items rows in text format, with escapes (tab, newline, backslash) and NULLs, and the
/// values they stand for.
fn items(ids: std::ops::RangeInclusive<i64>) -> (String, Vec<(i64, String, Option<String>)>) {
    let mut data = String::new();
    let mut expected = Vec::new();
    for id in ids {
        let (label_text, label) = if id % 7 == 0 {
            (format!("tab\\there {id}"), format!("tab\there {id}"))
        } else {
            (format!("item {id}"), format!("item {id}"))
        };
        let (note_text, note) = match id % 5 {
            0 => ("\\N".to_string(), None),
            1 => (
                "two\\nlines \\\\ back".to_string(),
                Some("two\nlines \\ back".to_string()),
            ),
            _ => (format!("note {}", id * 3), Some(format!("note {}", id * 3))),
        };
        data += &format!("{id}\t{label_text}\t{note_text}\n");
        expected.push((id, label, note));
    }
    (data, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_copy_puts_each_row_on_its_hash_shard() {
    let client = through_pgsplit().await;
    let (data, expected) = items(1..=3000);
    // Pieces of 4099 bytes: almost every piece ends in the middle of a row.
    let copied = bounded(
        "copy items",
        LIMIT,
        copy_in(&client, "COPY items FROM STDIN", data.as_bytes(), 4099),
    )
    .await
    .expect("COPY items through pgsplit");
    assert_eq!(copied, 3000);
    // The session's causal token names every shard the COPY committed on.
    let token = rows(&client, "SHOW pgsplit.causal_token")
        .await
        .expect("SHOW pgsplit.causal_token");
    let token = format!("{token:?}");
    for shard in SHARDS {
        assert!(token.contains(&format!("{shard}:")), "{token}");
    }
    let held = rows_per_shard("SELECT id, label, note FROM items ORDER BY id").await;
    for (shard, rows) in held.iter().enumerate() {
        let want: Vec<Vec<Option<String>>> = expected
            .iter()
            .filter(|(id, _, _)| hash_shard(&KeyValue::Int8(*id), 3) == shard)
            .map(|(id, label, note)| vec![Some(id.to_string()), Some(label.clone()), note.clone()])
            .collect();
        assert!(want.len() > 800, "shard {shard} gets a third of the rows");
        assert_eq!(
            rows, &want,
            "shard {shard} holds exactly its rows, values intact"
        );
    }
    // PostgreSQL's own hash partitioning agrees with where they went.
    for (i, shard) in setup().shards.iter().enumerate() {
        let direct = direct(shard).await;
        let misplaced = misplaced_rows(&direct, "items", "id", "int8", 3, i).await;
        assert_eq!(misplaced, 0, "shard {i}");
    }
    // A column list in another order finds the key where the list puts it.
    let listed = bounded(
        "copy with a column list",
        LIMIT,
        copy_in(
            &client,
            "COPY items (note, id) FROM STDIN WITH (DELIMITER '|', NULL 'nil')",
            b"nil|5001\nx|5002\n",
            64,
        ),
    )
    .await
    .expect("COPY with a column list");
    assert_eq!(listed, 2);
    let found = rows(
        &client,
        "SELECT note FROM items WHERE id IN (5001, 5002) ORDER BY id",
    )
    .await
    .expect("read back");
    assert_eq!(found, vec![vec![None], vec![Some("x".to_string())]]);
}

/// The events rows as CSV with a header: quoted keys, commas, quotes and newlines in values,
/// NULLs (empty unquoted) and empty strings (`""`); and the values they stand for.
fn events(n: i64) -> (String, Vec<(String, i64, Option<String>)>) {
    let mut data = String::from("tenant,seq,body\n");
    let mut expected = Vec::new();
    for seq in 1..=n {
        let tenant = format!("tenant-{}", seq % 101);
        let tenant_field = if seq % 2 == 0 {
            format!("\"{tenant}\"")
        } else {
            tenant.clone()
        };
        let (body_field, body) = match seq % 6 {
            0 => (String::new(), None),
            1 => ("\"\"".to_string(), Some(String::new())),
            2 => (
                format!("\"a, b, \"\"c\"\" {seq}\""),
                Some(format!("a, b, \"c\" {seq}")),
            ),
            3 => (
                format!("\"first\nsecond {seq}\""),
                Some(format!("first\nsecond {seq}")),
            ),
            _ => (format!("plain {seq}"), Some(format!("plain {seq}"))),
        };
        data += &format!("{tenant_field},{seq},{body_field}\n");
        expected.push((tenant, seq, body));
    }
    (data, expected)
}

/// psql with `args` through pgsplit, within the test's limit.
fn psql(args: &[&str]) -> common::load::ToolRun {
    let mut all = setup().proxy.cli_args();
    all.extend(
        [
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        .map(String::from),
    );
    all.extend(args.iter().map(|a| a.to_string()));
    BackgroundTool::spawn("psql", &all).wait_until(Instant::now() + LIMIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_of_csv_splits_quoted_rows_by_text_key() {
    let _ = setup();
    let (data, expected) = events(2500);
    let file = std::env::temp_dir().join(common::unique_name("events.csv"));
    std::fs::write(&file, &data).expect("write the CSV file");
    let command = format!(
        "\\copy events FROM '{}' WITH (FORMAT csv, HEADER)",
        file.display()
    );
    let run = tokio::task::block_in_place(|| psql(&["-c", &command]));
    let _ = std::fs::remove_file(&file);
    assert!(run.status.is_some_and(|s| s.success()), "{}", run.report());
    assert!(run.stdout.contains("COPY 2500"), "{}", run.report());
    let held = rows_per_shard("SELECT tenant, seq, body FROM events ORDER BY seq").await;
    for (shard, rows) in held.iter().enumerate() {
        let want: Vec<Vec<Option<String>>> = expected
            .iter()
            .filter(|(tenant, _, _)| hash_shard(&KeyValue::Text(tenant.clone()), 3) == shard)
            .map(|(tenant, seq, body)| {
                vec![Some(tenant.clone()), Some(seq.to_string()), body.clone()]
            })
            .collect();
        assert!(!want.is_empty(), "shard {shard} gets rows");
        assert_eq!(rows, &want, "shard {shard}");
        let direct = direct(&setup().shards[shard]).await;
        let misplaced = misplaced_rows(&direct, "events", "tenant", "text", 3, shard).await;
        assert_eq!(
            misplaced, 0,
            "shard {shard}: PostgreSQL's hash of text agrees"
        );
    }
    // A bad CSV row through psql: the error names its line (the header is line 1).
    let bad = std::env::temp_dir().join(common::unique_name("bad.csv"));
    std::fs::write(&bad, "tenant,seq,body\nx,1,a\n,2,\"no key\"\n").expect("write");
    let command = format!(
        "\\copy events FROM '{}' WITH (FORMAT csv, HEADER)",
        bad.display()
    );
    let run = tokio::task::block_in_place(|| psql(&["-c", &command]));
    let _ = std::fs::remove_file(&bad);
    assert!(!run.status.is_some_and(|s| s.success()), "{}", run.report());
    assert!(run.stderr.contains("line 3"), "{}", run.report());
}

async fn assert_nothing_in_refused() {
    for (shard, rows) in rows_per_shard("SELECT count(*) FROM refused")
        .await
        .iter()
        .enumerate()
    {
        assert_eq!(count(rows), 0, "shard {shard} holds rows of a failed COPY");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_aborts_the_copy_on_every_shard_naming_its_line() {
    let client = through_pgsplit().await;
    let mut data: String = (1..=2000).map(|id| format!("v{id}\t{id}\n")).collect();
    data += "bad\tnot-a-number\n";
    data += "v2001\t2001\n";
    let e = bounded(
        "bad key",
        LIMIT,
        copy_in(&client, "COPY refused FROM STDIN", data.as_bytes(), 5000),
    )
    .await
    .expect_err("a malformed key fails the COPY");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "22P02", "{}", db.message());
    assert!(db.message().contains("line 2001"), "{}", db.message());
    assert!(db.message().contains("not-a-number"), "{}", db.message());
    assert_nothing_in_refused().await;
    // A row without the key's field: PostgreSQL's "missing data", with its line.
    let e = bounded(
        "missing key",
        LIMIT,
        copy_in(
            &client,
            "COPY refused FROM STDIN",
            b"v1\t1\nonly-one-field\n",
            64,
        ),
    )
    .await
    .expect_err("a row without its key fails the COPY");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "22P04", "{}", db.message());
    assert!(db.message().contains("line 2"), "{}", db.message());
    // A shard's own refusal (a value its column rejects) aborts the others too.
    let e = bounded(
        "shard error",
        LIMIT,
        copy_in(
            &client,
            "COPY refused FROM STDIN",
            b"a\t1\nb\t2\nc\t3\nd\t4\n\\N\t5\textra\n",
            64,
        ),
    )
    .await
    .expect_err("a shard refuses a row");
    assert_eq!(e.code().map(|c| c.code()), Some("22P04"), "{e:?}");
    // The shard counts only its own rows (fewer than 5 here); the client reads its own line.
    let shard_of = |id: i64| hash_shard(&KeyValue::Int8(id), 3);
    assert!((1..5).filter(|id| shard_of(*id) == shard_of(5)).count() < 4);
    let context = e
        .as_db_error()
        .and_then(|db| db.where_())
        .unwrap_or_default();
    assert!(context.starts_with("COPY refused, line 5"), "{context}");
    assert_nothing_in_refused().await;
    // The session goes on.
    let one = rows(&client, "SELECT 1")
        .await
        .expect("the session goes on");
    assert_eq!(one, vec![vec![Some("1".to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_fail_leaves_nothing() {
    let client = through_pgsplit().await;
    let data: String = (1..=1500).map(|id| format!("v{id}\t{id}\n")).collect();
    bounded("copy then fail", LIMIT, async {
        let sink = client
            .copy_in::<_, Bytes>("COPY refused FROM STDIN")
            .await
            .expect("COPY starts");
        futures_util::pin_mut!(sink);
        for chunk in data.as_bytes().chunks(5000) {
            sink.send(Bytes::copy_from_slice(chunk))
                .await
                .expect("send rows");
        }
        sink.flush().await.expect("flush");
        // Dropping the sink unfinished sends CopyFail.
    })
    .await;
    let one = bounded("next statement", LIMIT, rows(&client, "SELECT 1"))
        .await
        .expect("the session goes on after CopyFail");
    assert_eq!(one, vec![vec![Some("1".to_string())]]);
    assert_nothing_in_refused().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_split_is_refused_and_replicated_tables_get_every_row() {
    let client = through_pgsplit().await;
    let binary = copy_in(
        &client,
        "COPY items FROM STDIN WITH (FORMAT binary)",
        b"",
        64,
    )
    .await;
    let e = binary.expect_err("binary COPY into a sharded table");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");
    let e = client
        .simple_query("COPY items TO STDOUT")
        .await
        .expect_err("COPY out of a sharded table");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");
    let e = copy_in(&client, "COPY items (label) FROM STDIN", b"x\n", 64)
        .await
        .expect_err("a column list without the key");
    assert!(
        e.to_string().contains("\"id\"") || format!("{e:?}").contains("sharding key"),
        "{e:?}"
    );
    // Each shard's part commits on its own: not inside a client's transaction block.
    let in_transaction = through_pgsplit().await;
    set(&in_transaction, "BEGIN").await;
    let e = copy_in(&in_transaction, "COPY items FROM STDIN", b"1\ta\tb\n", 64)
        .await
        .expect_err("COPY inside a transaction block");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");
    let copied = bounded(
        "replicated",
        LIMIT,
        copy_in(
            &client,
            "COPY countries FROM STDIN WITH (FORMAT csv)",
            b"fr,France\nde,Germany\nit,Italy\n",
            8,
        ),
    )
    .await
    .expect("COPY into a replicated table");
    assert_eq!(copied, 3);
    for (shard, rows) in rows_per_shard("SELECT code FROM countries ORDER BY code")
        .await
        .iter()
        .enumerate()
    {
        let codes: Vec<&str> = rows.iter().filter_map(|r| r[0].as_deref()).collect();
        assert_eq!(codes, ["de", "fr", "it"], "shard {shard}");
    }
}

/// The count `sql` answers through `client`.
async fn count_through(client: &Client, sql: &str) -> i64 {
    count(
        &rows(client, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}")),
    )
}

/// Runs `SET`/`RESET` statements, which pgsplit answers itself.
async fn set(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_shard_key_routes_keyless_statements_until_reset() {
    let client = through_pgsplit().await;
    for id in 1..=60 {
        client
            .batch_execute(&format!("INSERT INTO keyed (id, v) VALUES ({id}, 'v{id}')"))
            .await
            .expect("insert by key");
    }
    let shard_of = |id: i64| hash_shard(&KeyValue::Int8(id), 3);
    let on_shard = |shard: usize| (1..=60).filter(|id| shard_of(*id) == shard).count() as i64;
    let everything = "SELECT count(*) FROM keyed";
    assert_eq!(count_through(&client, everything).await, 60);

    set(&client, "SET pgsplit.shard_key = '42'").await;
    let shown = rows(&client, "SHOW pgsplit.shard_key").await.expect("show");
    assert_eq!(shown, vec![vec![Some("42".to_string())]]);
    let here = count_through(&client, everything).await;
    assert_eq!(
        here,
        on_shard(shard_of(42)),
        "a keyless read goes to 42's shard"
    );
    set(&client, "UPDATE keyed SET v = 'touched'").await; // not refused: 42's shard
    // A statement with a key of its own still goes by it.
    let other = (1..=60)
        .find(|id| shard_of(*id) != shard_of(42))
        .expect("another shard's key");
    let own = rows(&client, &format!("SELECT v FROM keyed WHERE id = {other}"))
        .await
        .expect("own key");
    assert_eq!(own, vec![vec![Some(format!("v{other}"))]]);

    set(&client, "RESET pgsplit.shard_key").await;
    let shown = rows(&client, "SHOW pgsplit.shard_key").await.expect("show");
    assert_eq!(shown, vec![vec![Some(String::new())]]);
    let touched = count_through(&client, "SELECT count(*) FROM keyed WHERE v = 'touched'").await;
    assert_eq!(
        touched,
        on_shard(shard_of(42)),
        "the UPDATE ran on 42's shard only"
    );
    let e = client
        .batch_execute("UPDATE keyed SET v = 'again'")
        .await
        .expect_err("after RESET a keyless write is refused again");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");

    for (choice, shard) in [("'shard_c'", 2), ("0", 0)] {
        set(&client, &format!("SET pgsplit.shard = {choice}")).await;
        assert_eq!(
            count_through(&client, everything).await,
            on_shard(shard),
            "{choice}"
        );
    }
    set(&client, "SET pgsplit.shard = 'nowhere'").await;
    let e = client
        .simple_query(everything)
        .await
        .expect_err("an unknown shard");
    assert!(format!("{e:?}").contains("no shard"), "{e:?}");
    set(&client, "RESET ALL").await;
    assert_eq!(count_through(&client, everything).await, 60);
    // The same choice from the startup packet.
    let connstr = setup().proxy.connstr("postgres", "postgres");
    let chosen = common::connect(&format!("{connstr} options='-c pgsplit.shard_key=42'"))
        .await
        .expect("connect with a shard key");
    let here = count_through(&chosen, everything).await;
    assert_eq!(here, on_shard(shard_of(42)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_failing_after_others_names_the_shards_that_committed() {
    let client = through_pgsplit().await;
    let on = |shard: usize| {
        (1..)
            .filter(move |id| hash_shard(&KeyValue::Int8(*id), 3) == shard)
            .take(2)
            .collect::<Vec<i64>>()
    };
    let (a, b, c) = (on(0), on(1), on(2));
    // Shards start (and commit) in the order of their first rows: shard_c last, where the
    // deferred unique check fails at commit.
    let data = format!("{}\t1\n{}\t2\n{}\t3\n{}\t3\n", a[0], b[0], c[0], c[1]);
    let e = bounded(
        "partial commit",
        LIMIT,
        copy_in(&client, "COPY partial FROM STDIN", data.as_bytes(), 64),
    )
    .await
    .expect_err("shard_c's commit fails");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "XX000", "{}", db.message());
    assert!(
        db.message().contains("shard(s) shard_a, shard_b")
            && db.message().contains("\"shard_c\" (23505: duplicate key"),
        "{}",
        db.message()
    );
    let held = rows_per_shard("SELECT count(*) FROM partial").await;
    let counts: Vec<i64> = held.iter().map(count).collect();
    assert_eq!(
        counts,
        [1, 1, 0],
        "what the error says is what the shards hold"
    );
}
