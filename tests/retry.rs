//! A read a replica refuses runs again on the primary, unseen: here a function declared
//! read-only in the config that in fact writes (the replica answers 25006).

mod common;

use common::cluster;
use common::proxy::{TestProxy, cluster_config, start_proxy};
use common::wire;

/// A function that writes, on every node, and a pgsplit told it only reads (so a replica
/// refuses it with 25006); returns the proxy, the function's table and its name.
fn sneaky_function() -> (TestProxy, String, String) {
    let c = cluster();
    let table = common::unique_name("sneaky");
    let function = format!("{table}_fn");
    common::run_on_primary_and_replay(
        c,
        &format!(
            "CREATE TABLE {table} (i int); \
             CREATE FUNCTION {function}() RETURNS int LANGUAGE sql AS 'INSERT INTO {table} VALUES (1) RETURNING i'"
        ),
    );
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

/// Runs `sql`, whose columns are an int and `inet_server_port()`, through `proxy` three times
/// over the extended protocol and once over the simple one; each run must answer from the
/// primary. The int of each run.
async fn values_from_the_primary(proxy: &TestProxy, sql: &str) -> Vec<i32> {
    let client = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect");
    let primary_port = cluster().primary().port.to_string();
    let mut runs = Vec::new();
    for attempt in 0..3 {
        let row = client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        assert_eq!(
            row.get::<_, i32>(1).to_string(),
            primary_port,
            "attempt {attempt}"
        );
        runs.push(row.get::<_, i32>(0));
    }
    let simple = client
        .simple_query(sql)
        .await
        .expect("the simple protocol too");
    let row = simple
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((r.get(0), r.get(1))),
            _ => None,
        })
        .expect("a row over the simple protocol");
    assert_eq!(row.1, Some(primary_port.as_str()), "the simple protocol");
    runs.push(row.0.and_then(|v| v.parse().ok()).unwrap_or(-1));
    runs
}

#[tokio::test]
async fn a_read_refused_as_a_write_by_a_replica_runs_on_the_primary() {
    let (proxy, table, function) = sneaky_function();
    let sql = format!("SELECT {function}(), inet_server_port()");
    // The first run is refused by a replica and retried; later runs go to the primary at once
    // (the text is remembered as a write).
    assert_eq!(values_from_the_primary(&proxy, &sql).await, [1, 1, 1, 1]);
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
    common::run_on_primary_and_replay(
        c,
        &format!("CREATE UNLOGGED TABLE {table} AS SELECT generate_series(1, 3) AS i"),
    );
    let proxy = start_proxy(cluster_config());
    let sql = format!("SELECT count(*)::int, inet_server_port() FROM {table}");
    assert_eq!(values_from_the_primary(&proxy, &sql).await, [3, 3, 3, 3]);
}
