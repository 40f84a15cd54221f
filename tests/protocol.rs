//! Every protocol path through pgsplit, with tokio-postgres as the client, against the real
//! cluster of the harness.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{cluster_config, proxy, start_proxy};
use common::{cluster, wire};
use futures_util::{SinkExt, StreamExt, TryStreamExt, pin_mut};
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// A client through pgsplit; its connection task runs in the background.
async fn connect() -> Client {
    let (client, connection) =
        tokio_postgres::connect(&proxy().connstr("postgres", "postgres"), NoTls)
            .await
            .expect("connect through pgsplit");
    tokio::spawn(connection);
    client
}

fn rows_of(messages: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn simple_query_with_several_statements_returns_each_result_set() {
    let client = connect().await;
    let messages = client
        .simple_query("SELECT 1 AS a; SELECT 'x' AS b, 2 AS c; CREATE TEMP TABLE IF NOT EXISTS simple_t(i int)")
        .await
        .unwrap();
    assert_eq!(
        rows_of(&messages),
        vec![
            vec!["1".to_string()],
            vec!["x".to_string(), "2".to_string()]
        ]
    );
    let completions = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completions, 3);
}

#[tokio::test]
async fn extended_query_with_parameters_and_named_statements() {
    let client = connect().await;
    let stmt = client
        .prepare_typed(
            "SELECT $1::int + $2::int, $3::text",
            &[Type::INT4, Type::INT4, Type::TEXT],
        )
        .await
        .unwrap();
    for i in 0..20 {
        let row = client.query_one(&stmt, &[&i, &1i32, &"t"]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        assert_eq!(row.get::<_, &str>(1), "t");
    }
}

#[tokio::test]
async fn pipelined_extended_queries_keep_their_order() {
    let client = connect().await;
    let stmt = client.prepare("SELECT $1::int8 * 2").await.unwrap();
    let queries = (0..50i64).map(|i| {
        let client = &client;
        let stmt = &stmt;
        async move {
            client
                .query_one(stmt, &[&i])
                .await
                .map(|row| (i, row.get::<_, i64>(0)))
        }
    });
    // Polled together, tokio-postgres pipelines them on the one connection.
    let results = futures_util::future::join_all(queries).await;
    for result in results {
        let (i, doubled) = result.unwrap();
        assert_eq!(doubled, i * 2);
    }
}

/// A statement with a malformed hint, pipelined behind a slow one: the hint's WARNING comes
/// with its own statement's answer, after the slow one's.
#[tokio::test]
async fn a_hint_warning_comes_after_the_answers_ahead_of_it() {
    let mut s = wire::logged_in(proxy().addr).await;
    let mut pipeline = wire::query("SELECT 'slow' FROM pg_sleep(0.2)");
    pipeline.extend(wire::query("/* pgsplit: rout=primary */ SELECT 'hinted'"));
    wire::send(&mut s, &pipeline).await;
    let first = wire::read_until_ready(&mut s).await;
    let second = wire::read_until_ready(&mut s).await;
    assert_eq!(wire::tags(&first), "TDCZ", "{first:?}");
    assert_eq!(wire::tags(&second), "NTDCZ", "{second:?}");
}

#[tokio::test]
async fn portals_with_row_limits_suspend_and_resume() {
    let mut client = connect().await;
    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT g FROM generate_series(1, 25) g")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 10).await.unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 10);
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn errors_pass_through_and_the_session_stays_usable() {
    let client = connect().await;
    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22012"));
    client.batch_execute("BEGIN").await.unwrap();
    assert!(client.simple_query("SELECT no_such_column").await.is_err());
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25P02"));
    client.batch_execute("ROLLBACK").await.unwrap();
    let rows = client.query("SELECT 42", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 42);
}

/// A table (rows 1 and 2) that every replica has replayed, so that a fresh session's reads
/// of it may go to any of them.
async fn table_on_every_replica(prefix: &str) -> String {
    let table = common::unique_name(prefix);
    connect()
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1), (2)"
        ))
        .await
        .expect("create the table");
    let lsn = cluster().current_lsn().expect("the primary's position");
    for replica in cluster().replicas() {
        cluster()
            .wait_replayed(replica, &lsn, Duration::from_secs(30))
            .expect("replicas replay the table");
    }
    table
}

/// Whether a replica's server has a session whose last statement is `sql`.
fn a_replica_ran(sql: &str) -> bool {
    let count = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query = '{}'",
        sql.replace('\'', "''")
    );
    cluster().replicas().iter().any(|replica| {
        cluster()
            .psql(replica, "postgres", &count)
            .is_ok_and(|n| n.trim() != "0")
    })
}

/// The SQLSTATE of the first ErrorResponse in `messages`.
fn error_code(messages: &[(u8, Vec<u8>)]) -> Option<String> {
    let (_, body) = messages.iter().find(|(tag, _)| *tag == b'E')?;
    body.split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"C"))
        .map(|code| String::from_utf8_lossy(code).into_owned())
}

/// A raw session through pgsplit that described `select` as statement s1 (Parse, Describe,
/// Flush: no Sync) on a replica.
async fn described_on_a_replica(select: &str) -> tokio::net::TcpStream {
    let mut stream = wire::logged_in(proxy().addr).await;
    wire::send(&mut stream, &wire::describe_then_flush("s1", select)).await;
    let described = wire::read_until(&mut stream, b'T').await;
    assert_eq!(wire::tags(&described), "1tT");
    assert!(
        a_replica_ran(select),
        "the statement was described on a replica"
    );
    stream
}

/// asyncpg's COPY of records: it describes the target table (Parse, Describe, Flush: no Sync,
/// so the sequence stays open on the replica that read it), then sends the COPY as a simple
/// query. A write behind a unit that only described must run on the primary.
#[tokio::test]
async fn a_write_behind_a_statement_described_without_sync_runs_on_the_primary() {
    let table = table_on_every_replica("described_then_written").await;
    let mut stream = described_on_a_replica(&format!("SELECT id FROM {table}")).await;
    let insert = format!("INSERT INTO {table} VALUES (3)");
    let inserted = wire::round_trip(&mut stream, &wire::query(&insert)).await;
    assert_eq!(error_code(&inserted), None, "{inserted:?}");
    // The client's own Sync comes later, and the session reads its write.
    let synced = wire::round_trip(&mut stream, &wire::message(Some(b'S'), &[])).await;
    assert_eq!(wire::tags(&synced), "Z");
    let select_all = format!("SELECT id FROM {table} ORDER BY id");
    let rows = wire::round_trip(&mut stream, &wire::query(&select_all)).await;
    assert_eq!(wire::first_columns(&rows), ["1", "2", "3"]);
}

/// The same sent in one go, without waiting for the Describe's answers: pgsplit reads them
/// before it moves, and they still reach the client, ahead of the write's.
#[tokio::test]
async fn a_write_pipelined_behind_a_describe_cut_at_flush_gets_every_answer() {
    let table = table_on_every_replica("described_pipelined").await;
    let select = format!("SELECT id FROM {table}");
    let mut both = wire::describe_then_flush("s1", &select);
    both.extend_from_slice(&wire::query(&format!("INSERT INTO {table} VALUES (3)")));
    // A pgsplit of its own: the replica's connection goes back to a pool nobody else uses, so
    // its last statement, looked at below, stays the Describe's.
    let own = start_proxy(cluster_config());
    let mut stream = wire::logged_in(own.addr).await;
    let answers = wire::round_trip(&mut stream, &both).await;
    assert_eq!(error_code(&answers), None, "{answers:?}");
    let tags = wire::tags(&answers);
    assert!(tags.starts_with("1tTC"), "answers: {tags}");
    assert!(
        a_replica_ran(&select),
        "the statement was described on a replica"
    );
}

/// A Describe cut at Flush fails on a replica, and the client sends a write and its Sync
/// without waiting: PostgreSQL skips every message after an error up to the Sync, and so does
/// pgsplit, which closed the cut unit with a Sync of its own before moving to the primary.
#[tokio::test]
async fn messages_after_a_failed_describe_cut_at_flush_are_skipped_up_to_the_sync() {
    let table = table_on_every_replica("failed_describe_then_written").await;
    let mut unit = wire::describe_then_flush("s1", &format!("SELECT no_such_column FROM {table}"));
    unit.extend_from_slice(&wire::query(&format!("INSERT INTO {table} VALUES (3)")));
    unit.extend_from_slice(&wire::message(Some(b'S'), &[]));
    let primary = cluster()
        .primary()
        .addr()
        .parse()
        .expect("the primary's address");
    let mut direct = wire::logged_in(primary).await;
    let postgres_answers = wire::tags(&wire::round_trip(&mut direct, &unit).await);
    assert_eq!(postgres_answers, "EZ", "PostgreSQL's own answers");
    let mut stream = wire::logged_in(proxy().addr).await;
    let answers = wire::round_trip(&mut stream, &unit).await;
    assert_eq!(wire::tags(&answers), postgres_answers, "{answers:?}");
    assert_eq!(error_code(&answers).as_deref(), Some("42703"));
    // Neither ran the INSERT, and the session goes on.
    let select_all = format!("SELECT id FROM {table} ORDER BY id");
    let rows = wire::round_trip(&mut stream, &wire::query(&select_all)).await;
    assert_eq!(wire::first_columns(&rows), ["1", "2"]);
}

/// A portal bound without Sync lives on its server's connection, which the session keeps until
/// the Sync: a write sent meanwhile runs there, and a replica's refusal reaches the client as
/// an error; the session carries on.
#[tokio::test]
async fn a_write_behind_a_portal_open_on_a_replica_gets_its_error_and_the_session_goes_on() {
    let table = table_on_every_replica("portal_then_written").await;
    let mut stream = described_on_a_replica(&format!("SELECT id FROM {table} ORDER BY id")).await;
    wire::send(&mut stream, &wire::execute_then_flush("s1", 1)).await;
    let first = wire::read_until(&mut stream, b's').await;
    assert_eq!(wire::first_columns(&first), ["1"]);
    let insert = format!("INSERT INTO {table} VALUES (3)");
    let refused = wire::round_trip(&mut stream, &wire::query(&insert)).await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("25006"),
        "{refused:?}"
    );
    let synced = wire::round_trip(&mut stream, &wire::message(Some(b'S'), &[])).await;
    assert_eq!(wire::tags(&synced), "Z");
    let rows = wire::round_trip(&mut stream, &wire::query("SELECT 42")).await;
    assert_eq!(wire::first_columns(&rows), ["42"]);
}

#[tokio::test]
async fn text_copy_in_and_out() {
    let client = connect().await;
    client
        .batch_execute("CREATE TEMP TABLE copy_text(i int, t text)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY copy_text FROM STDIN").await.unwrap();
    pin_mut!(sink);
    for i in 0..1000 {
        sink.send(bytes::Bytes::from(format!("{i}\trow {i}\n")))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 1000);
    let stream = client
        .copy_out("COPY (SELECT * FROM copy_text ORDER BY i) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(text.lines().count(), 1000);
    assert_eq!(text.lines().nth(999), Some("999\trow 999"));
}

#[tokio::test]
async fn binary_copy_in_and_out() {
    let client = connect().await;
    client
        .batch_execute("CREATE TEMP TABLE copy_bin(i int8, t text, b bytea)")
        .await
        .unwrap();
    let sink = client
        .copy_in("COPY copy_bin FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::BYTEA]);
    pin_mut!(writer);
    for i in 0..500i64 {
        let blob = vec![(i % 256) as u8; 100];
        writer
            .as_mut()
            .write(&[&i, &format!("bin {i}"), &blob])
            .await
            .unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 500);
    let stream = client
        .copy_out("COPY (SELECT * FROM copy_bin ORDER BY i) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    let rows = BinaryCopyOutStream::new(stream, &[Type::INT8, Type::TEXT, Type::BYTEA]);
    let rows: Vec<_> = rows.try_collect().await.unwrap();
    assert_eq!(rows.len(), 500);
    assert_eq!(rows[499].get::<i64>(0), 499);
    assert_eq!(rows[499].get::<&str>(1), "bin 499");
    assert_eq!(rows[7].get::<&[u8]>(2), &[7u8; 100][..]);
}

#[tokio::test]
async fn a_failed_copy_leaves_the_session_usable() {
    let client = connect().await;
    client
        .batch_execute("CREATE TEMP TABLE copy_fail(i int)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY copy_fail FROM STDIN").await.unwrap();
    pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"not a number\n"))
        .await
        .unwrap();
    assert!(sink.finish().await.is_err());
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM copy_fail", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}

#[tokio::test]
async fn notifications_and_notices_are_relayed_as_they_come() {
    let (listener, mut connection) =
        tokio_postgres::connect(&proxy().connstr("postgres", "postgres"), NoTls)
            .await
            .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            let _ = tx.send(message);
        }
    });
    listener
        .batch_execute("LISTEN pgsplit_test_channel")
        .await
        .unwrap();
    let notifier = connect().await;
    notifier
        .batch_execute("NOTIFY pgsplit_test_channel, 'hello'")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("notification within 5 s");
    match got {
        Some(AsyncMessage::Notification(n)) => {
            assert_eq!(n.channel(), "pgsplit_test_channel");
            assert_eq!(n.payload(), "hello");
        }
        other => panic!("expected a notification, got {other:?}"),
    }
    listener
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'notice from the server'; END $$")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("notice within 5 s");
    match got {
        Some(AsyncMessage::Notice(n)) => assert_eq!(n.message(), "notice from the server"),
        other => panic!("expected a notice, got {other:?}"),
    }
}

#[tokio::test]
async fn cancel_reaches_the_server_and_the_session_stays_usable() {
    let client = connect().await;
    let token = client.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await
    });
    let err = client
        .simple_query("SELECT pg_sleep(10)")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cancelled after {:?}",
        started.elapsed()
    );
    canceller.await.unwrap().unwrap();
    assert_eq!(
        client
            .query_one("SELECT 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
}

#[tokio::test]
async fn startup_parameters_reach_the_server_and_come_back_as_parameter_status() {
    let connstr = format!(
        "{} application_name=pgsplit_app options='-c search_path=pg_catalog'",
        proxy().connstr("postgres", "postgres")
    );
    let (client, connection) = tokio_postgres::connect(&connstr, NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "pgsplit_app");
    assert_eq!(row.get::<_, &str>(1), "pg_catalog");
    // A later session with other settings on a reused pooled connection sees its own.
    drop(client);
    let other = connect().await;
    let row = other
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap();
    assert_ne!(row.get::<_, &str>(0), "pgsplit_app");
}

#[tokio::test]
async fn many_concurrent_sessions_each_get_their_own_answers() {
    let started = Instant::now();
    let sessions = (0..200i32).map(|s| {
        tokio::spawn(async move {
            let client = connect().await;
            let stmt = client
                .prepare("SELECT $1::int4 * 1000 + $2::int4")
                .await
                .unwrap();
            for q in 0..50i32 {
                let row = client.query_one(&stmt, &[&s, &q]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), s * 1000 + q);
            }
        })
    });
    let all = futures_util::future::join_all(sessions);
    let results = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("200 sessions finish within 120 s");
    for r in results {
        r.unwrap();
    }
    eprintln!("200 sessions x 50 queries in {:?}", started.elapsed());
}
