//! Read/write routing through pgsplit in front of the real cluster: which node runs what,
//! transactions and session state over transaction pooling, balancing, and EXPLAIN ROUTE.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use common::proxy::{TestProxy, cluster_config, proxy, start_proxy};
use common::{cluster, wire};
use pgsplit::config::{Config, LoadBalancing};
use tokio_postgres::{Client, NoTls};

async fn connect_to(p: &TestProxy) -> Client {
    let (client, connection) = tokio_postgres::connect(&p.connstr("postgres", "postgres"), NoTls)
        .await
        .expect("connect through pgsplit");
    tokio::spawn(connection);
    client
}

async fn connect() -> Client {
    connect_to(proxy()).await
}

/// A pgsplit that balances reads statement by statement (round robin) rather than by session,
/// for tests whose one session must reach several servers; shared by the tests that need it.
fn round_robin_proxy() -> &'static TestProxy {
    static PROXY: OnceLock<TestProxy> = OnceLock::new();
    PROXY.get_or_init(|| start_proxy(common::load::round_robin(cluster_config())))
}

/// Node name ("primary", "replica1", ...) by server port.
fn node_by_port() -> &'static HashMap<i32, String> {
    static MAP: OnceLock<HashMap<i32, String>> = OnceLock::new();
    MAP.get_or_init(|| {
        cluster()
            .nodes()
            .iter()
            .map(|n| (i32::from(n.port), n.name.clone()))
            .collect()
    })
}

/// Which node ran `SELECT inet_server_port()` (or any query returning a port first).
async fn node_of(client: &Client, sql: &str) -> String {
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let port: i32 = row.get(0);
    node_by_port()
        .get(&port)
        .cloned()
        .unwrap_or_else(|| format!("port {port}"))
}

/// The reason `EXPLAIN ROUTE` gives for `sql`, asked over the extended protocol.
async fn route_reason(client: &Client, sql: &str) -> String {
    let explained = format!("EXPLAIN ROUTE {sql}");
    client
        .query_one(&explained, &[])
        .await
        .expect("EXPLAIN ROUTE answers")
        .get(2)
}

fn is_replica(node: &str) -> bool {
    node.starts_with("replica")
}

/// Runs `probe` until it reports a replica (a session's reads return to the replicas once
/// they have replayed its last write, as the monitor sees within ~100 ms), for at most 5 s.
async fn eventually_on_a_replica<F, Fut>(mut probe: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let node = probe().await;
        if is_replica(&node) || std::time::Instant::now() > deadline {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reads_go_to_replicas_and_writes_to_the_primary() {
    let client = connect().await;
    let table = common::unique_name("rw");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id serial PRIMARY KEY, port int)"
        ))
        .await
        .unwrap();
    // Right after its own write (CREATE TABLE) the session reads from the primary until a
    // replica has replayed it; then reads spread over the replicas.
    let first = eventually_on_a_replica(|| node_of(&client, "SELECT inet_server_port()")).await;
    assert!(is_replica(&first), "{first}");
    for _ in 0..6 {
        assert!(is_replica(
            &node_of(&client, "SELECT inet_server_port()").await
        ));
    }
    let writer = node_of(
        &client,
        &format!("INSERT INTO {table} (port) VALUES (inet_server_port()) RETURNING port"),
    )
    .await;
    assert_eq!(writer, "primary");
    assert_eq!(
        node_of(
            &client,
            "WITH w AS (SELECT 1) SELECT inet_server_port() FOR UPDATE"
        )
        .await,
        "primary"
    );
    assert_eq!(
        node_of(
            &client,
            "SELECT inet_server_port() WHERE txid_current() > 0"
        )
        .await,
        "primary"
    );
    assert_eq!(
        node_of(&client, &format!("WITH ins AS (INSERT INTO {table} (port) VALUES (0) RETURNING id) SELECT inet_server_port() FROM ins")).await,
        "primary"
    );
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn transactions_stay_on_one_backend_and_read_only_ones_may_use_a_replica() {
    let mut client = connect().await;
    let table = common::unique_name("tx");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, v int); INSERT INTO {table} VALUES (1, 0)"
        ))
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let first: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    tx.execute(&format!("UPDATE {table} SET v = v + 1 WHERE id = 1"), &[])
        .await
        .unwrap();
    let second: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, second);
    let port: i32 = tx
        .query_one("SELECT inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(node_by_port()[&port], "primary");
    tx.commit().await.unwrap();

    let node = eventually_on_a_replica(|| async {
        client.batch_execute("BEGIN READ ONLY").await.unwrap();
        let node = node_of(&client, "SELECT inet_server_port()").await;
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        client.batch_execute("COMMIT").await.unwrap();
        assert_eq!(
            row.get::<_, bool>(0),
            is_replica(&node),
            "the whole transaction ran on {node}"
        );
        node
    })
    .await;
    assert!(is_replica(&node), "read-only transaction ran on {node}");
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

/// The status ReadyForQuery ended `answer` with, and its command tags.
fn status_and_tags(answer: &[(u8, Vec<u8>)]) -> (char, Vec<String>) {
    let status = answer.last().map_or('?', |(_, body)| char::from(body[0]));
    let tags = answer
        .iter()
        .filter(|(tag, _)| *tag == b'C')
        .map(|(_, body)| {
            String::from_utf8_lossy(body)
                .trim_end_matches('\0')
                .to_string()
        })
        .collect();
    (status, tags)
}

#[tokio::test]
async fn a_begin_is_answered_at_once_and_sent_with_the_first_statement() {
    let mut s = wire::logged_in(proxy().addr).await;
    let begin = wire::round_trip(&mut s, &wire::query("BEGIN")).await;
    assert_eq!(status_and_tags(&begin), ('T', vec!["BEGIN".to_string()]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The server's transaction starts with the first statement, not 300 ms before it.
    let first = "SELECT statement_timestamp() - now() < interval '200 ms', txid_current()";
    let answer = wire::round_trip(&mut s, &wire::query(first)).await;
    assert_eq!(wire::first_columns(&answer), ["t"], "{answer:?}");
    assert_eq!(status_and_tags(&answer).0, 'T');
    // The first statement took a transaction id: the next one runs in the same transaction.
    let later = "SELECT txid_current_if_assigned() IS NOT NULL";
    let same = wire::round_trip(&mut s, &wire::query(later)).await;
    assert_eq!(
        wire::first_columns(&same),
        ["t"],
        "one transaction: {same:?}"
    );
    let commit = wire::round_trip(&mut s, &wire::query("COMMIT")).await;
    assert_eq!(status_and_tags(&commit), ('I', vec!["COMMIT".to_string()]));

    // A SET LOCAL of pgsplit's own in a transaction pgsplit ends lasts as long as it.
    let show = wire::query("SHOW pgsplit.consistency");
    let before = wire::first_columns(&wire::round_trip(&mut s, &show).await);
    for sql in ["BEGIN", "SET LOCAL pgsplit.consistency = 'strong'"] {
        wire::round_trip(&mut s, &wire::query(sql)).await;
    }
    let inside = wire::first_columns(&wire::round_trip(&mut s, &show).await);
    assert_eq!(inside, ["strong"]);
    let commit = wire::round_trip(&mut s, &wire::query("COMMIT")).await;
    assert_eq!(status_and_tags(&commit), ('I', vec!["COMMIT".to_string()]));
    let after = wire::first_columns(&wire::round_trip(&mut s, &show).await);
    assert_eq!(after, before);
    // Ended over the extended protocol, it is answered message by message.
    wire::round_trip(&mut s, &wire::query("BEGIN")).await;
    let commit = wire::round_trip(&mut s, &wire::extended_unit("COMMIT")).await;
    assert_eq!(wire::tags(&commit), "12CZ");
    assert_eq!(status_and_tags(&commit), ('I', vec!["COMMIT".to_string()]));

    // A text that begins with BEGIN runs whole.
    let whole = wire::round_trip(&mut s, &wire::query("BEGIN; SELECT 42; COMMIT")).await;
    assert_eq!(wire::first_columns(&whole), ["42"], "{whole:?}");
    assert_eq!(status_and_tags(&whole).0, 'I');
}

/// Sends `refused` inside a transaction: pgsplit refuses it as PostgreSQL refuses an error,
/// the transaction is aborted; it takes only its end, and COMMIT rolls back.
/// `commit` is a COMMIT, as a simple query or an extended-protocol unit (as pgjdbc sends it):
/// either way it rolls the failed transaction back.
async fn refusal_aborts_the_transaction(
    s: &mut tokio::net::TcpStream,
    refused: &str,
    commit: &[u8],
) {
    let answer = wire::round_trip(s, &wire::query(refused)).await;
    assert_eq!(wire::tags(&answer), "EZ");
    assert_eq!(status_and_tags(&answer).0, 'E');
    let ignored = wire::round_trip(s, &wire::query("SELECT 1")).await;
    assert_eq!(wire::tags(&ignored), "EZ");
    assert!(
        String::from_utf8_lossy(&ignored[0].1).contains("25P02"),
        "{ignored:?}"
    );
    let commit = wire::round_trip(s, commit).await;
    assert_eq!(
        status_and_tags(&commit),
        ('I', vec!["ROLLBACK".to_string()])
    );
}

#[tokio::test]
async fn a_unit_refused_before_reaching_a_server_aborts_its_transaction() {
    let table = common::unique_name("refused");
    let mut s = wire::logged_in(proxy().addr).await;
    let create = format!("CREATE TABLE {table} (v int)");
    wire::round_trip(&mut s, &wire::query(&create)).await;
    let refused = "SET pgsplit.consistency = 'sometimes'; SELECT 1";
    let (commit, extended_commit) = (wire::query("COMMIT"), wire::extended_unit("COMMIT"));
    // Held BEGIN: nothing reached a server yet.
    for end in [&commit, &extended_commit] {
        wire::round_trip(&mut s, &wire::query("BEGIN")).await;
        refusal_aborts_the_transaction(&mut s, refused, end).await;
    }
    // The transaction runs on a server, with a write in it.
    let insert = format!("INSERT INTO {table} VALUES (1)");
    for end in [&commit, &extended_commit] {
        wire::round_trip(&mut s, &wire::query("BEGIN")).await;
        let answer = wire::round_trip(&mut s, &wire::query(&insert)).await;
        assert_eq!(status_and_tags(&answer).0, 'T', "{answer:?}");
        refusal_aborts_the_transaction(&mut s, refused, end).await;
    }
    // A bad pgsplit setting sent alone, which pgsplit answers itself.
    wire::round_trip(&mut s, &wire::query("BEGIN")).await;
    wire::round_trip(&mut s, &wire::query(&insert)).await;
    let bad_set = "SET pgsplit.consistency = 'sometimes'";
    refusal_aborts_the_transaction(&mut s, bad_set, &commit).await;
    // tokio-postgres prepares the COMMIT first: PostgreSQL takes that in a failed transaction.
    let client = connect().await;
    client.batch_execute("BEGIN").await.expect("begin");
    client.batch_execute(refused).await.expect_err("refused");
    let other = client.prepare("SELECT 1").await.expect_err("nothing else");
    assert_eq!(other.code().map(|c| c.code()), Some("25P02"));
    let prepared = client
        .prepare("COMMIT")
        .await
        .expect("prepare in a failed transaction");
    client
        .execute(&prepared, &[])
        .await
        .expect("commit rolls back");
    let row = client.query_one("SELECT 1", &[]).await;
    assert_eq!(row.expect("out of the transaction").get::<_, i32>(0), 1);
    let count = format!("/* pgsplit: consistency=strong */ SELECT count(*) FROM {table}");
    let answer = wire::round_trip(&mut s, &wire::query(&count)).await;
    assert_eq!(
        wire::first_columns(&answer),
        ["0"],
        "the insert rolled back"
    );
    wire::round_trip(&mut s, &wire::query(&format!("DROP TABLE {table}"))).await;
}

#[tokio::test]
async fn settings_follow_the_session_to_every_server() {
    let client = connect_to(round_robin_proxy()).await;
    client
        .batch_execute("SET application_name = 'routing_test'; SET search_path = information_schema, public; SET statement_timeout = '12345ms'")
        .await
        .unwrap();
    let mut nodes = std::collections::HashSet::new();
    for _ in 0..20 {
        let row = client
            .query_one(
                "SELECT current_setting('application_name'), current_setting('search_path'), current_setting('statement_timeout'), inet_server_port()",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>(0), "routing_test");
        assert_eq!(row.get::<_, &str>(1), "information_schema, public");
        assert_eq!(row.get::<_, &str>(2), "12345ms");
        nodes.insert(row.get::<_, i32>(3));
    }
    assert!(
        nodes.len() >= 2,
        "reads spread over several servers: {nodes:?}"
    );
    client.batch_execute("RESET search_path").await.unwrap();
    let row = client
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "\"$user\", public");
}

/// The session's `application_name` as every server of a round-robin pgsplit sees it.
async fn application_names(client: &Client) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let row = client.query_one("SELECT current_setting('application_name')", &[]);
        seen.insert(row.await.expect("read a setting").get::<_, String>(0));
    }
    seen
}

/// The `application_name` every server sees for a new session of the round-robin pgsplit
/// once it has run `texts`, one simple query each.
async fn application_names_after(texts: &[&str]) -> std::collections::BTreeSet<String> {
    let client = connect_to(round_robin_proxy()).await;
    for text in texts {
        let ran = client.batch_execute(text).await;
        ran.unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    application_names(&client).await
}

/// A ROLLBACK TO SAVEPOINT undoes the settings made since the savepoint, as on the server (a
/// savepoint that rescues a failed block: `tests/clients.rs`).
#[tokio::test]
async fn settings_follow_savepoints() {
    let names = application_names_after(&[
        "BEGIN; SET application_name = 'kept'; SAVEPOINT s",
        "SET application_name = 'undone'; ROLLBACK TO SAVEPOINT s; COMMIT",
    ]);
    assert_eq!(names.await, ["kept".to_string()].into());
}

/// COMMIT AND CHAIN keeps the settings of the block it commits; ROLLBACK AND CHAIN drops those
/// of the block it rolls back.
#[tokio::test]
async fn settings_follow_chained_blocks() {
    let names = application_names_after(&[
        "BEGIN",
        "SET application_name = 'chained'",
        "COMMIT AND CHAIN",
        "SET application_name = 'dropped'",
        "ROLLBACK AND CHAIN",
        "COMMIT",
    ]);
    assert_eq!(names.await, ["chained".to_string()].into());
}

/// One text holding two blocks: the first one's settings commit, the second one's roll back.
#[tokio::test]
async fn settings_follow_each_block_of_one_text() {
    let names = application_names_after(&["BEGIN; SET application_name = 'first'; COMMIT; \
         BEGIN; SET application_name = 'second'; ROLLBACK"]);
    assert_eq!(names.await, ["first".to_string()].into());
}

/// A ROLLBACK TO SAVEPOINT sent behind the statement that fails, before its answer (as
/// pipelining drivers do), rescues the block's settings, as it does on the server.
#[tokio::test]
async fn settings_follow_a_rollback_to_pipelined_behind_an_error() {
    let mut stream = wire::logged_in(round_robin_proxy().addr).await;
    let begin = wire::query("BEGIN; SET application_name = 'kept'; SAVEPOINT s");
    wire::round_trip(&mut stream, &begin).await;
    let mut pipeline = wire::extended_unit("SELECT 1/0");
    pipeline.extend(wire::extended_unit("ROLLBACK TO SAVEPOINT s"));
    pipeline.extend(wire::query("COMMIT"));
    wire::send(&mut stream, &pipeline).await;
    let failed = wire::read_until_ready(&mut stream).await;
    assert!(wire::tags(&failed).contains('E'), "{failed:?}");
    for answer in [
        wire::read_until_ready(&mut stream).await,
        wire::read_until_ready(&mut stream).await,
    ] {
        assert!(!wire::tags(&answer).contains('E'), "{answer:?}");
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let read = wire::query("SELECT current_setting('application_name')");
        seen.extend(wire::first_columns(
            &wire::round_trip(&mut stream, &read).await,
        ));
    }
    assert_eq!(seen, ["kept".to_string()].into());
}

/// A cursor WITH HOLD outlives its transaction on the connection that declared it, so the
/// session stays there until it is closed: on the primary, where its writes can run too, though
/// the cursor reads.
#[tokio::test]
async fn a_cursor_with_hold_pins_the_session_to_the_primary() {
    let client = connect_to(round_robin_proxy()).await;
    client
        .batch_execute("DECLARE held CURSOR WITH HOLD FOR SELECT inet_server_port()")
        .await
        .unwrap();
    assert_eq!(node_of(&client, "FETCH 1 FROM held").await, "primary");
    client.batch_execute("SELECT txid_current()").await.unwrap();
    // Closed, it no longer holds the session: reads spread again.
    for sql in ["CLOSE held", "SET pgsplit.consistency = eventual"] {
        client.batch_execute(sql).await.unwrap();
    }
    let node = node_of(&client, "SELECT inet_server_port()").await;
    assert!(is_replica(&node), "{node}");
}

/// A LISTEN keeps the session on its connection while it listens: not after a rollback (the
/// server listens only once the LISTEN commits), nor once the last channel is unlistened.
#[tokio::test]
async fn a_listen_pins_the_session_while_it_listens() {
    let client = connect_to(round_robin_proxy()).await;
    client
        .batch_execute("SET pgsplit.consistency = eventual")
        .await
        .unwrap();
    let read = "SELECT inet_server_port()";
    client
        .batch_execute("BEGIN; LISTEN undone; ROLLBACK")
        .await
        .unwrap();
    let node = node_of(&client, read).await;
    assert!(is_replica(&node), "after a rolled-back LISTEN: {node}");
    for sql in ["LISTEN first", "LISTEN second", "UNLISTEN first"] {
        client.batch_execute(sql).await.unwrap();
        assert_eq!(node_of(&client, read).await, "primary", "after {sql}");
    }
    client.batch_execute("UNLISTEN second").await.unwrap();
    let node = node_of(&client, read).await;
    assert!(is_replica(&node), "after the last UNLISTEN: {node}");
}

#[tokio::test]
async fn a_temp_table_pins_the_session_to_the_primary() {
    let client = connect().await;
    client
        .batch_execute("CREATE TEMP TABLE pinned_t AS SELECT generate_series(1, 5) AS i")
        .await
        .unwrap();
    for _ in 0..10 {
        let n: i64 = client
            .query_one("SELECT count(*) FROM pinned_t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 5);
    }
    assert_eq!(
        node_of(&client, "SELECT inet_server_port()").await,
        "primary"
    );
    let reason = route_reason(&client, "SELECT 1").await;
    assert_eq!(reason, "pinned: temp table", "over the extended protocol");
    let answer = client.simple_query("EXPLAIN ROUTE SELECT 1").await.unwrap();
    let reason = answer.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(2).map(str::to_string),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("pinned: temp table"), "{answer:?}");
    client.batch_execute("DISCARD ALL").await.unwrap();
    let node = eventually_on_a_replica(|| node_of(&client, "SELECT inet_server_port()")).await;
    assert!(is_replica(&node), "DISCARD ALL unpins the session");
}

#[tokio::test]
async fn state_that_a_rollback_undoes_does_not_keep_its_pin() {
    let client = connect().await;
    client
        .batch_execute("BEGIN; CREATE TEMP TABLE gone_t (i int); ROLLBACK")
        .await
        .unwrap();
    assert_eq!(
        route_reason(&client, "SELECT 1").await,
        "read: balanced",
        "no temp table is left"
    );
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("DECLARE gone_c CURSOR WITH HOLD FOR SELECT 1")
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        route_reason(&client, "SELECT 1").await,
        "read: balanced",
        "no cursor is left"
    );
    // A statement that fails creates nothing either.
    let failed = client
        .batch_execute("CREATE TEMP TABLE gone_t AS SELECT 1 / 0 AS i")
        .await;
    assert!(failed.is_err());
    let after_failure = route_reason(&client, "SELECT 1").await;
    assert!(!after_failure.starts_with("pinned"), "{after_failure}");
    let node = eventually_on_a_replica(|| node_of(&client, "SELECT inet_server_port()")).await;
    assert!(is_replica(&node));

    // A session-level advisory lock outlives the rollback of its transaction, as in PostgreSQL.
    client
        .batch_execute("BEGIN; SELECT pg_advisory_lock(4242); ROLLBACK")
        .await
        .unwrap();
    assert_eq!(
        route_reason(&client, "SELECT 1").await,
        "pinned: advisory lock"
    );
    let held: bool = client
        .query_one("SELECT pg_advisory_unlock(4242)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(held, "the lock is still held on the session's connection");
}

#[tokio::test]
async fn prepared_statements_are_reused_across_connections_and_transactions() {
    let mut client = connect_to(round_robin_proxy()).await;
    let stmt = client
        .prepare("SELECT $1::int + 1, inet_server_port()")
        .await
        .unwrap();
    let mut ports = std::collections::HashSet::new();
    for i in 0..100 {
        let row = client.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        ports.insert(row.get::<_, i32>(1));
        if i % 10 == 0 {
            let tx = client.transaction().await.unwrap();
            let row = tx.query_one(&stmt, &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i + 1);
            tx.commit().await.unwrap();
        }
    }
    assert!(
        ports.len() >= 2,
        "the statement ran on several servers: {ports:?}"
    );
    client
        .batch_execute("PREPARE sql_level(int) AS SELECT $1 * 2")
        .await
        .unwrap();
    for i in 0..20 {
        let rows = client
            .simple_query(&format!("EXECUTE sql_level({i})"))
            .await
            .unwrap();
        let value = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(value, Some((i * 2).to_string()));
    }
}

#[tokio::test]
async fn explain_route_says_where_and_why_without_running() {
    let client = connect().await;
    let explain = |sql: &'static str| {
        let client = &client;
        async move {
            let answer = client
                .simple_query(&format!("EXPLAIN ROUTE {sql}"))
                .await
                .unwrap();
            answer
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                        r.get(1).unwrap_or("").to_string(),
                        r.get(2).unwrap_or("").to_string(),
                    )),
                    _ => None,
                })
                .expect("one row")
        }
    };
    assert_eq!(
        explain("SELECT 1").await,
        ("replica".into(), "read: balanced".into())
    );
    let (role, reason) = explain("DELETE FROM no_such_table").await;
    assert_eq!(role, "primary");
    assert!(reason.starts_with("write"), "{reason}");
    assert_eq!(explain("SELEC oops").await.0, "primary");
    // After a BEGIN pgsplit holds, the read would open the transaction on the primary.
    client.batch_execute("BEGIN").await.unwrap();
    let in_transaction = explain("SELECT 1").await;
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        in_transaction,
        ("primary".into(), "read-write transaction".into())
    );
}

#[tokio::test]
async fn explain_route_answers_over_the_extended_protocol() {
    // As pgjdbc, psycopg 3 and asyncpg send every statement: Parse, Describe, Bind, Execute.
    let client = connect().await;
    let explain = client
        .prepare("EXPLAIN ROUTE INSERT INTO no_such_table VALUES (1)")
        .await
        .unwrap();
    let names: Vec<&str> = explain.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["node", "role", "reason"]);
    for _ in 0..2 {
        let row = client.query_one(&explain, &[]).await.unwrap();
        assert_eq!(row.get::<_, &str>(0), "primary");
        assert!(row.get::<_, &str>(2).starts_with("write"));
    }
    let hinted = route_reason(&client, "/* pgsplit: route=primary */ SELECT 1").await;
    assert_eq!(hinted, "hint: route=primary");
    let row = client
        .query_one("EXPLAIN ROUTE SELECT 1", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, &str>(1), row.get::<_, &str>(2)),
        ("replica", "read: balanced")
    );
    // Nothing ran: the session is still usable and nothing was prepared on a server.
    let port: i32 = client
        .query_one("SELECT inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(port > 0);
}

#[tokio::test]
async fn fresh_sessions_spread_their_reads_over_the_replicas() {
    // A proxy of its own, so other tests' reads do not take turns from the balancer.
    let p = start_proxy(cluster_config());
    let mut by_node: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let client = connect_to(&p).await;
        *by_node
            .entry(node_of(&client, "SELECT inet_server_port()").await)
            .or_default() += 1;
    }
    let on_replicas: usize = by_node
        .iter()
        .filter(|(n, _)| is_replica(n))
        .map(|(_, c)| c)
        .sum();
    assert!(on_replicas >= 270, "{by_node:?}");
    for replica in cluster().replicas() {
        let count = by_node.get(&replica.name).copied().unwrap_or(0);
        assert!(
            count >= 60,
            "{} got {count} of 300: {by_node:?}",
            replica.name
        );
    }
}

/// A proxy with the given balancing algorithm (weights 1, 2, 3 on the replicas).
fn proxy_with(algorithm: LoadBalancing) -> TestProxy {
    let mut config: Config = cluster_config();
    let cluster = &mut config.clusters[0];
    cluster.load_balancing = algorithm;
    for (i, replica) in cluster.replicas.iter_mut().enumerate() {
        replica.weight = i as u32 + 1;
    }
    start_proxy(config)
}

async fn spread(p: &TestProxy, reads: usize) -> HashMap<String, usize> {
    let client = connect_to(p).await;
    let mut by_node = HashMap::new();
    for _ in 0..reads {
        *by_node
            .entry(node_of(&client, "SELECT inet_server_port()").await)
            .or_insert(0) += 1;
    }
    by_node
}

#[tokio::test]
async fn each_balancing_algorithm_spreads_reads_as_defined() {
    let replicas: Vec<String> = cluster()
        .replicas()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let count = |m: &HashMap<String, usize>, i: usize| m.get(&replicas[i]).copied().unwrap_or(0);

    let rr = spread(&proxy_with(LoadBalancing::RoundRobin), 300).await;
    assert!((0..3).all(|i| count(&rr, i) == 100), "round_robin: {rr:?}");

    let weighted = spread(&proxy_with(LoadBalancing::Weighted), 600).await;
    assert_eq!(
        (
            count(&weighted, 0),
            count(&weighted, 1),
            count(&weighted, 2)
        ),
        (100, 200, 300),
        "weighted: {weighted:?}"
    );

    let random = spread(&proxy_with(LoadBalancing::Random), 600).await;
    assert!(
        (0..3).all(|i| count(&random, i) > 120),
        "random: {random:?}"
    );

    let least = spread(&proxy_with(LoadBalancing::LeastConnections), 300).await;
    assert!(
        (0..3).all(|i| count(&least, i) >= 60),
        "least_connections (idle nodes share): {least:?}"
    );

    let hashed = spread(&proxy_with(LoadBalancing::ClientHash), 100).await;
    assert_eq!(
        hashed.len(),
        1,
        "client_hash keeps one client on one replica: {hashed:?}"
    );

    let fastest = spread(&proxy_with(LoadBalancing::LeastResponseTime), 200).await;
    assert!(
        fastest.keys().all(|n| is_replica(n)),
        "least_response_time: {fastest:?}"
    );

    // Sticky: each session stays on one replica; sessions spread over them.
    let sticky = proxy_with(LoadBalancing::Sticky);
    let mut homes = HashMap::new();
    for _ in 0..6 {
        let session = spread(&sticky, 30).await;
        assert_eq!(
            session.len(),
            1,
            "sticky keeps a session on one replica: {session:?}"
        );
        for node in session.keys() {
            assert!(is_replica(node), "sticky: {session:?}");
            *homes.entry(node.clone()).or_insert(0) += 1;
        }
    }
    assert!(homes.len() > 1, "sticky spreads sessions: {homes:?}");
}

/// A pgsplit whose pools hold two connections, and whose clients wait 300 ms for one.
fn two_connection_proxy() -> TestProxy {
    let mut config = cluster_config();
    config.pool.max_server_connections = 2;
    config.pool.checkout_timeout = Duration::from_millis(300);
    start_proxy(config)
}

#[tokio::test]
async fn a_full_pool_makes_clients_wait_then_fail_with_53300() {
    let p = two_connection_proxy();
    // Logging in needs a server connection too (pass-through authentication), so all three
    // sessions log in first.
    let holders = [connect_to(&p).await, connect_to(&p).await];
    let third = connect_to(&p).await;
    for h in &holders {
        h.batch_execute("BEGIN; SELECT txid_current()")
            .await
            .unwrap();
    }
    let err = third
        .batch_execute("BEGIN; SELECT txid_current()")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    third.batch_execute("ROLLBACK").await.ok();
    for h in &holders {
        h.batch_execute("COMMIT").await.unwrap();
    }
    third
        .batch_execute("BEGIN; SELECT txid_current(); COMMIT")
        .await
        .unwrap();
}

/// Two sessions of a pgsplit whose pools hold one connection each: what one session leaves on
/// a server connection, the other gets.
async fn two_sessions_one_connection_per_node() -> (TestProxy, Client, Client) {
    let mut config = cluster_config();
    config.pool.max_server_connections = 1;
    let proxy = start_proxy(config);
    let (first, second) = (connect_to(&proxy).await, connect_to(&proxy).await);
    (proxy, first, second)
}

#[tokio::test]
async fn a_prepare_outlives_the_rollback_of_its_transaction() {
    // As in PostgreSQL, where no rollback undoes a PREPARE. With one server connection per
    // node, the second session gets the first one's connection to the primary, which must be
    // known to hold the statement (or its own PREPARE of the name would fail).
    let (_proxy, first, second) = two_sessions_one_connection_per_node().await;
    for sql in ["BEGIN", "PREPARE kept AS SELECT 7", "ROLLBACK"] {
        first.batch_execute(sql).await.expect(sql);
    }
    let on_primary = "BEGIN; PREPARE kept AS SELECT 8; EXECUTE kept; COMMIT";
    let rows = second.simple_query(on_primary).await;
    assert_eq!(
        first_value(&rows.expect("the second session's own statement")),
        "8"
    );
    // The first session still has its statement, wherever it runs.
    for _ in 0..3 {
        let rows = first.simple_query("EXECUTE kept").await;
        assert_eq!(
            first_value(&rows.expect("the statement outlived the rollback")),
            "7"
        );
    }
}

#[tokio::test]
async fn what_a_text_did_before_its_error_outlives_the_error() {
    // As in PostgreSQL: a PREPARE that ran before the failing statement holds, and so does
    // what a COMMIT inside the text committed; what ran after the COMMIT rolls back with the
    // error. pgsplit counts the statements the server completed. With one server connection
    // per node, the second session gets the first one's connection to the primary, whose
    // record must show the statement (or the second session's PREPARE of the name would fail).
    let (_proxy, first, second) = two_sessions_one_connection_per_node().await;
    let failed = "/* pgsplit: route=primary */ PREPARE kept AS SELECT 2; BEGIN; \
        SET application_name = 'committed'; COMMIT; SET application_name = 'rolled back'; \
        SELECT 1/0";
    let err = first
        .batch_execute(failed)
        .await
        .expect_err("division by zero");
    assert_eq!(err.code().map(|c| c.code()), Some("22012"));
    let mine = "/* pgsplit: route=primary */ PREPARE kept AS SELECT 3; EXECUTE kept";
    let rows = second.simple_query(mine).await;
    assert_eq!(
        first_value(&rows.expect("the second session's own statement")),
        "3"
    );
    for _ in 0..3 {
        let rows = first.simple_query("EXECUTE kept").await;
        assert_eq!(
            first_value(&rows.expect("the statement outlived the error")),
            "2"
        );
        let rows = first.simple_query("SHOW application_name").await;
        assert_eq!(first_value(&rows.expect("show")), "committed");
    }
}

#[tokio::test]
async fn a_prepare_before_the_error_of_an_extended_pipeline_outlives_it() {
    // Two statements before one Sync (psycopg's pipeline mode, pgjdbc's batches): the server
    // completes the PREPARE, fails the division and skips to the Sync; the PREPARE holds,
    // on whichever connection the session's next statements run.
    let mut s = wire::logged_in(proxy().addr).await;
    let mut pipeline = wire::extended_unit("PREPARE piped AS SELECT 5");
    pipeline.truncate(pipeline.len() - 5); // its Sync: one follows the second statement
    pipeline.extend(wire::extended_unit("SELECT 1/0"));
    let answer = wire::round_trip(&mut s, &pipeline).await;
    assert_eq!(wire::tags(&answer), "12C1EZ", "{answer:?}"); // 1/0 fails at Bind
    for _ in 0..3 {
        let rows = wire::round_trip(&mut s, &wire::query("EXECUTE piped")).await;
        assert_eq!(wire::first_columns(&rows), ["5"], "{rows:?}");
    }
}

/// The first column of the first row of a simple query's answer.
fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> String {
    let row = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    row.unwrap_or_default()
}

/// Server backends, on every node, whose application_name is `name`.
async fn backends_named(name: &str) -> i64 {
    let mut total = 0;
    for node in cluster().nodes() {
        let direct = common::connect(&node.connstr("postgres", "postgres"))
            .await
            .expect("connect to a node directly");
        let row = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .expect("pg_stat_activity");
        total += row.get::<_, i64>(0);
    }
    total
}

#[tokio::test]
async fn server_connections_idle_past_the_idle_timeout_are_closed() {
    let mut config = cluster_config();
    config.pool.server_idle_timeout = Duration::from_secs(1);
    let p = start_proxy(config);
    // The startup options open (and key) the session's own pooled connections, so they carry
    // this name on the servers.
    let name = common::unique_name("idle");
    let connstr = format!(
        "{} options='-c application_name={name}'",
        p.connstr("postgres", "postgres")
    );
    let (client, connection) = tokio_postgres::connect(&connstr, NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("SELECT 1").await.unwrap();
    drop(client);
    assert!(backends_named(&name).await > 0, "the pool keeps them first");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while backends_named(&name).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle server connections still open 10 s after a 1 s idle timeout"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Which node ran `sql` (whose first column is the server's port setting), and whether the server
/// saw a Unix-socket client (`inet_server_addr()` is NULL there).
async fn node_and_transport(client: &Client, sql: &str) -> (String, bool) {
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let port: i32 = row.get(0);
    let over_unix: bool = row.get(1);
    let node = node_by_port().get(&port).cloned();
    (node.unwrap_or_else(|| format!("port {port}")), over_unix)
}

#[tokio::test]
async fn nodes_addressed_by_their_unix_socket_serve_reads_writes_and_cancels() {
    let c = cluster();
    let replicas: Vec<String> = c.replicas().iter().map(|r| r.socket_addr()).collect();
    let config = Config::quick_start(&c.primary().socket_addr(), &replicas).expect("config");
    let p = start_proxy(config);
    let client = connect_to(&p).await;
    let table = common::unique_name("unix");
    client
        .batch_execute(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    let where_and_how = "current_setting('port')::int, inet_server_addr() IS NULL";
    let (writer, unix) = node_and_transport(
        &client,
        &format!("INSERT INTO {table} VALUES (1) RETURNING {where_and_how}"),
    )
    .await;
    assert_eq!((writer.as_str(), unix), ("primary", true));
    // The read returns to a replica only once the monitor (also over the socket) has seen
    // the replica replay the write.
    let reader = eventually_on_a_replica(|| async {
        let (node, unix) = node_and_transport(&client, &format!("SELECT {where_and_how}")).await;
        assert!(unix, "{node} reached over TCP");
        node
    })
    .await;
    assert!(is_replica(&reader), "{reader}");
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await
    });
    let err = common::load::bounded(
        "a cancelled sleep",
        Duration::from_secs(5),
        client.simple_query("SELECT pg_sleep(10)"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    canceller.await.unwrap().unwrap();
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

/// Of `rounds` writes, each followed by reads 0, 10 and 20 ms later: how many rounds had a read
/// on a replica. Every read must see the write before it (read-your-writes).
async fn rounds_reading_on_a_replica(p: &TestProxy, table: &str, rounds: i32) -> i32 {
    let client = connect_to(p).await;
    let read = format!("SELECT current_setting('port')::int, v FROM {table} WHERE id = 1");
    let mut on_a_replica = 0;
    for v in 0..rounds {
        client
            .execute(&format!("UPDATE {table} SET v = $1 WHERE id = 1"), &[&v])
            .await
            .expect("write");
        let mut reached = false;
        for _ in 0..3 {
            let row = client.query_one(&read, &[]).await.expect("read");
            assert_eq!(row.get::<_, i32>(1), v, "a read missed its session's write");
            reached |= is_replica(&node_by_port()[&row.get::<_, i32>(0)]);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        on_a_replica += i32::from(reached);
    }
    on_a_replica
}

/// A session writing far more often than the monitor's interval still reads from replicas: a
/// read that finds them behind its write has the monitor look again within
/// `catch_up_interval`, so the session's next reads find the replica that caught up. Without
/// it, such a session reads from the primary until the next regular poll.
#[tokio::test]
async fn a_session_writing_often_reads_from_replicas_once_they_catch_up() {
    let table = common::unique_name("catch_up");
    let setup = connect().await;
    setup
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL); INSERT INTO {table} VALUES (1, -1)"
        ))
        .await
        .expect("create table");
    let with_catch_up = |catch_up| {
        let mut config = cluster_config();
        config.monitor.interval = Duration::from_millis(500);
        config.monitor.catch_up_interval = catch_up;
        start_proxy(config)
    };
    let rounds = 30;
    let eager = with_catch_up(Duration::from_millis(5));
    let probe = format!("SELECT current_setting('port')::int FROM {table}");
    let eager_client = connect_to(&eager).await;
    eventually_on_a_replica(|| node_of(&eager_client, &probe)).await;
    let reached = rounds_reading_on_a_replica(&eager, &table, rounds).await;
    assert!(
        reached >= rounds * 2 / 3,
        "only {reached} of {rounds} rounds read from a replica with a 5 ms catch-up"
    );
    let regular_only = with_catch_up(Duration::ZERO);
    let reached = rounds_reading_on_a_replica(&regular_only, &table, rounds).await;
    assert!(
        reached <= rounds / 3,
        "{reached} of {rounds} rounds read from a replica with polls every 500 ms only"
    );
}

async fn insert_returning_id(client: &Client, table: &str) -> i32 {
    let sql = format!("INSERT INTO {table} (item) VALUES ('x') RETURNING id");
    let row = client.query_one(&sql, &[]).await;
    row.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

async fn lastval(client: &Client) -> Result<i64, tokio_postgres::Error> {
    Ok(client.query_one("SELECT lastval()", &[]).await?.get(0))
}

/// `lastval()` and `currval()` answer from the backend that ran the session's `nextval()`
/// (here an INSERT's serial default): through transaction pooling, with another session
/// borrowing a connection in between, each session gets its own value.
#[tokio::test]
async fn lastval_and_currval_give_each_session_its_own_value() {
    let (a, b) = (connect().await, connect().await);
    a.batch_execute("CREATE TABLE IF NOT EXISTS seq_own (id serial PRIMARY KEY, item text)")
        .await
        .unwrap();
    let id_a = insert_returning_id(&a, "seq_own").await;
    let written = std::time::Instant::now();
    // The connection a just gave back is the pool's most recent: b would have taken it.
    let id_b = insert_returning_id(&b, "seq_own").await;
    match lastval(&a).await {
        Ok(value) => assert_eq!(value, i64::from(id_a)),
        // Others leave a's connection alone for a second; a machine that slow may lend it.
        Err(e) if written.elapsed() > Duration::from_secs(1) => {
            assert_eq!(e.code().map(|c| c.code()), Some("55000"), "{e}");
            return;
        }
        Err(e) => panic!("lastval: {e}"),
    }
    let currval: i64 = a
        .query_one("SELECT currval('seq_own_id_seq')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(currval, i64::from(id_a));
    let simple = b.simple_query("SELECT lastval()").await.unwrap();
    let value = simple.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value, Some(id_b.to_string()));
    // In one text, lastval() reads the text's own INSERT, wherever it runs.
    let answer = a
        .simple_query("INSERT INTO seq_own (item) VALUES ('y'); SELECT lastval()")
        .await
        .unwrap();
    let own = answer.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(own, Some((id_b + 1).to_string()), "{answer:?}");
}

/// When the pool is full, the connection kept for a session's sequence state goes to another
/// session rather than make it wait; `lastval()` then fails with 55000, never with the value
/// the other session left there.
#[tokio::test]
async fn lastval_after_the_pool_lent_its_connection_away_fails_with_55000() {
    let p = two_connection_proxy();
    // Logging in takes a connection of its own (pass-through authentication): all log in first.
    let (a, b, c) = (
        connect_to(&p).await,
        connect_to(&p).await,
        connect_to(&p).await,
    );
    a.batch_execute("CREATE TABLE IF NOT EXISTS seq_lent (id serial PRIMARY KEY, item text)")
        .await
        .unwrap();
    let id_a = insert_returning_id(&a, "seq_lent").await;
    // A transaction that may write runs on the primary: b holds a connection there.
    b.batch_execute("BEGIN; SELECT pg_backend_pid()")
        .await
        .unwrap();
    // The pool is full (b holds one connection, c needs the other): c takes a's.
    let id_c = insert_returning_id(&c, "seq_lent").await;
    b.batch_execute("COMMIT").await.unwrap();
    let err = lastval(&a).await.unwrap_err();
    let db = err.as_db_error().expect("a server-style error");
    assert_eq!(db.code().code(), "55000", "{err}");
    assert!(db.message().contains("lent"), "{}", db.message());
    assert_eq!(lastval(&c).await.unwrap(), i64::from(id_c));
    // The session carries on, and its next nextval() defines lastval() again.
    let again = insert_returning_id(&a, "seq_lent").await;
    assert!(again > id_a);
    assert_eq!(lastval(&a).await.unwrap(), i64::from(again));
}
