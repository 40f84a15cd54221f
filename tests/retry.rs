//! A read a replica refuses runs again on the primary, unseen: here a function declared
//! read-only in the config that in fact writes (the replica answers 25006).

mod common;

use std::time::Duration;

use common::cluster;
use common::proxy::{cluster_config, start_proxy};
use tokio_postgres::NoTls;

#[tokio::test]
async fn a_read_refused_as_a_write_by_a_replica_runs_on_the_primary() {
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
    let proxy = start_proxy(config);
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
    let count = c
        .psql(
            c.primary(),
            "postgres",
            &format!("SELECT count(*) FROM {table}"),
        )
        .expect("count");
    assert_eq!(count.trim(), "4", "each statement ran once, on the primary");
}
