//! Reads of every shard over the extended protocol: tokio-postgres `query` (Parse, Describe,
//! Bind with binary result formats, Execute), named statements run many times, and pgbench in
//! `-M extended` and `-M prepared`.

use std::error::Error;
use std::time::{Duration, Instant};

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, Row};

use crate::common;
use crate::common::load::{BackgroundTool, failed_transactions, processed_transactions};

/// A column value exactly as the server sent it (binary format for tokio-postgres).
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

type RawRows = Vec<Vec<Option<Vec<u8>>>>;

/// Column types and raw values of an answer.
fn raw_answer(rows: &[Row]) -> (Vec<u32>, RawRows) {
    let types = rows.first().map_or_else(Vec::new, |row| {
        row.columns().iter().map(|c| c.type_().oid()).collect()
    });
    let values = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.get::<_, Option<Raw>>(i).map(|raw| raw.0))
                .collect()
        })
        .collect();
    (types, values)
}

/// Runs `sql` with `params` on both clients; a sentence if the answers differ.
async fn compare(
    sharded: &Client,
    reference: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Option<String> {
    let want = reference
        .query(sql, params)
        .await
        .expect("reference answers");
    let got = match sharded.query(sql, params).await {
        Ok(got) => got,
        Err(e) => return Some(format!("{sql}\n  failed: {}", common::load::describe(&e))),
    };
    let (want_types, mut want) = raw_answer(&want);
    let (got_types, mut got) = raw_answer(&got);
    if !crate::ordered(sql) {
        want.sort();
        got.sort();
    }
    (want_types != got_types || want != got).then(|| {
        format!("{sql} {params:?}\n  want {want_types:?} {want:?}\n  got  {got_types:?} {got:?}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_answers_the_same_over_the_extended_protocol_in_binary() {
    let (sharded, reference) = (crate::sharded().await, crate::reference().await);
    let _rows_as_loaded = crate::REPLICATED_ROWS.read().await;
    let corpus = crate::corpus();
    let mut differences = Vec::new();
    for sql in &corpus {
        differences.extend(compare(&sharded, &reference, sql, &[]).await);
    }
    // Parameters bound in binary, on statements with no shard key.
    let with_params: [(&str, &[&(dyn tokio_postgres::types::ToSql + Sync)]); 4] = [
        (
            "SELECT count(*), sum(score) FROM users WHERE score > $1",
            &[&50i32],
        ),
        (
            "SELECT id, name FROM users WHERE country = $1 ORDER BY id LIMIT 5",
            &[&"fr"],
        ),
        (
            "SELECT qty, avg(amount) FROM orders WHERE amount > $1::text::numeric GROUP BY qty ORDER BY qty",
            &[&"100"],
        ),
        (
            "SELECT id, born FROM users WHERE born > $1::text::date ORDER BY born, id LIMIT 4",
            &[&"1995-01-01"],
        ),
    ];
    for (sql, params) in with_params {
        differences.extend(compare(&sharded, &reference, sql, params).await);
    }
    assert!(
        differences.is_empty(),
        "{} of {} differ:\n{}",
        differences.len(),
        corpus.len() + with_params.len(),
        differences.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_statement_reading_every_shard_runs_many_times() {
    let (sharded, reference) = (crate::sharded().await, crate::reference().await);
    let sql = "SELECT count(*), sum(amount), min(id) FROM orders WHERE qty = $1";
    let prepared = sharded.prepare(sql).await.expect("prepare through pgsplit");
    let param_types: Vec<u32> = prepared.params().iter().map(Type::oid).collect();
    assert_eq!(
        param_types,
        [Type::INT4.oid()],
        "the shard's parameter description"
    );
    for qty in 1..=9i32 {
        let got = sharded
            .query(&prepared, &[&qty])
            .await
            .expect("execute again");
        let want = reference.query(sql, &[&qty]).await.expect("reference");
        assert_eq!(raw_answer(&got), raw_answer(&want), "qty {qty}");
    }
    // The same statement, with a key, runs on one shard.
    let point = sharded
        .prepare("SELECT name FROM users WHERE id = $1")
        .await
        .expect("prepare a point read");
    for id in [1i64, 2, 3] {
        let got = sharded.query_one(&point, &[&id]).await.expect("point read");
        assert_eq!(
            got.get::<_, String>(0),
            format!("user{:03}", (id * 7919) % 1000)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_of_a_type_without_an_encoding_are_refused_naming_the_column() {
    let sharded = crate::sharded().await;
    let e = sharded
        .query(
            "SELECT id, name::bytea AS raw_name FROM users WHERE score IS NULL",
            &[],
        )
        .await
        .expect_err("bytea in binary from every shard");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "0A000", "{}", db.message());
    assert!(db.message().contains("\"raw_name\""), "{}", db.message());
    // Asked in text (the simple protocol), the same read is answered; the session goes on.
    let rows = sharded
        .simple_query("SELECT id, name::bytea AS raw_name FROM users WHERE score IS NULL")
        .await
        .expect("text results");
    assert!(rows.len() > 2);
    let one: i64 = sharded
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("the session goes on")
        .get(0);
    assert_eq!(one, crate::USERS);
}

const PGBENCH_SCRIPT: &str = "\\set id random(1, 240)
SELECT count(*), sum(score) FROM users;
SELECT country, count(*), avg(balance) FROM users GROUP BY country ORDER BY country;
SELECT name FROM users WHERE id = :id;
SELECT id, amount FROM orders WHERE qty = 3 ORDER BY amount DESC, id LIMIT 3;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_extended_and_prepared_read_every_shard_without_errors() {
    let _ = crate::sharded().await;
    let proxy = &crate::setup().proxy;
    let script = std::env::temp_dir()
        .join(common::unique_name("fanout"))
        .with_extension("sql");
    std::fs::write(&script, PGBENCH_SCRIPT).expect("write the script");
    for mode in ["extended", "prepared"] {
        let mut args = proxy.cli_args();
        args.extend(
            [
                "-U", "postgres", "-n", "-M", mode, "-c", "2", "-t", "25", "-f",
            ]
            .map(String::from),
        );
        args.push(script.display().to_string());
        args.push("postgres".into());
        let tool = BackgroundTool::spawn("pgbench", &args);
        let run = tokio::task::block_in_place(|| {
            tool.wait_until(Instant::now() + Duration::from_secs(90))
        });
        assert!(
            run.status.is_some_and(|s| s.success()),
            "pgbench -M {mode}:\n{}",
            run.report()
        );
        assert_eq!(
            processed_transactions(&run.stdout),
            Some(50),
            "{}",
            run.report()
        );
        assert!(
            failed_transactions(&run.stdout).unwrap_or(0) == 0,
            "{}",
            run.report()
        );
    }
    let _ = std::fs::remove_file(&script);
}
