//! A read a replica refuses runs again on the primary, unseen: here a function declared
//! read-only in the config that in fact writes (the replica answers 25006).

mod common;

use std::time::Duration;

use common::cluster;
use common::proxy::{TestProxy, cluster_config, start_proxy};
use common::wire;
use tokio_postgres::NoTls;

/// A function that writes, on every node, and a pgsplit told it only reads (so a replica
/// refuses it with 25006); returns the proxy, the function's table and its name.
fn sneaky_function() -> (TestProxy, String, String) {
    let c = cluster();
    let table = common::unique_name("sneaky");
    let function = format!("{table}_fn");
    c.psql(
        c.primary(),
        "postgres",
        &format!(
            "CREATE TABLE {table} (i int); \
             CREATE FUNCTION {function}() RETURNS int LANGUAGE sql AS 'INSERT INTO {table} VALUES (1) RETURNING i'"
        ),
    )
    .expect("create the function");
    let lsn = c.current_lsn().expect("lsn");
    for r in c.replicas() {
        c.wait_replayed(r, &lsn, Duration::from_secs(20))
            .expect("replicas have it");
    }
    let mut config = cluster_config();
    config.routing.read_only_functions = vec![function.clone()];
    (start_proxy(config), table, function)
}

/// How many rows `table` has on the primary.
fn rows_on_primary(table: &str) -> String {
    let c = cluster();
    c.psql(
        c.primary(),
        "postgres",
        &format!("SELECT count(*) FROM {table}"),
    )
    .expect("count")
}

#[tokio::test]
async fn a_read_refused_as_a_write_by_a_replica_runs_on_the_primary() {
    let c = cluster();
    let (proxy, table, function) = sneaky_function();
    let (client, connection) =
        tokio_postgres::connect(&proxy.connstr("postgres", "postgres"), NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    let sql = format!("SELECT {function}(), inet_server_port()");
    let primary_port = i32::from(c.primary().port);
    for attempt in 0..3 {
        let row = client
            .query_one(sql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        assert_eq!(row.get::<_, i32>(0), 1);
        // The first run is refused by a replica and retried; later runs go to the primary at once
        // (the text is remembered as a write).
        assert_eq!(row.get::<_, i32>(1), primary_port);
    }
    let simple = client
        .simple_query(&sql)
        .await
        .expect("the simple protocol too");
    assert!(
        simple
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
    );
    let count = rows_on_primary(&table);
    assert_eq!(count.trim(), "4", "each statement ran once, on the primary");
}

/// Reads pipelined in one write, the refused one behind another: it runs again on the primary
/// once the first is answered, and the client gets both answers, whole and in order.
#[tokio::test]
async fn a_refused_read_behind_another_in_a_pipeline_runs_again_in_order() {
    let (proxy, table, function) = sneaky_function();
    let mut s = wire::logged_in(proxy.addr).await;
    let mut pipeline = wire::query("SELECT 'first', inet_server_port()");
    pipeline.extend(wire::extended_unit(&format!(
        "SELECT {function}()::text, inet_server_port()"
    )));
    wire::send(&mut s, &pipeline).await;
    let first = wire::read_until_ready(&mut s).await;
    let second = wire::read_until_ready(&mut s).await;
    assert_eq!(wire::tags(&first), "TDCZ", "{first:?}");
    assert_eq!(wire::first_columns(&first), ["first"]);
    // Its run on the primary wrote: the causal token comes with it.
    assert_eq!(
        wire::tags(&second),
        "12DCSZ",
        "one answer, nothing of the refusal: {second:?}"
    );
    assert_eq!(wire::first_columns(&second), ["1"]);
    let count = rows_on_primary(&table);
    assert_eq!(count.trim(), "1", "the write ran once, on the primary");
}

/// An unlogged table exists on the replicas but its rows only on the primary: a replica
/// refuses to read it (0A000), the read runs on the primary unseen, and the statement goes
/// there at once from then on, over either protocol.
#[tokio::test]
async fn a_read_of_an_unlogged_table_runs_on_the_primary() {
    let c = cluster();
    let table = common::unique_name("unlogged");
    c.psql(
        c.primary(),
        "postgres",
        &format!("CREATE UNLOGGED TABLE {table} AS SELECT generate_series(1, 3) AS i"),
    )
    .expect("create the table");
    let lsn = c.current_lsn().expect("lsn");
    for r in c.replicas() {
        c.wait_replayed(r, &lsn, Duration::from_secs(20))
            .expect("replicas know the table");
    }
    let proxy = start_proxy(cluster_config());
    let (client, connection) =
        tokio_postgres::connect(&proxy.connstr("postgres", "postgres"), NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    let sql = format!("SELECT count(*)::int, inet_server_port() FROM {table}");
    let primary_port = i32::from(c.primary().port);
    for attempt in 0..3 {
        let row = client
            .query_one(sql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        assert_eq!(
            (row.get::<_, i32>(0), row.get::<_, i32>(1)),
            (3, primary_port),
            "attempt {attempt}"
        );
    }
    let simple = client
        .simple_query(&sql)
        .await
        .expect("the simple protocol too");
    let port = simple.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(1).map(str::to_string),
        _ => None,
    });
    assert_eq!(port, Some(primary_port.to_string()));
}
