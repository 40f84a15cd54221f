//! Proves the test harness: real streaming replicas, and every way `localcluster` bends or
//! breaks a node (replay pause, apply delay, SIGSTOP, SIGKILL, promotion).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use pgsplit::localcluster::{
    APP_DB, APP_MD5_PASSWORD, APP_MD5_USER, APP_SCRAM_PASSWORD, APP_SCRAM_USER, LocalCluster,
    LocalClusterError, PgNode,
};

const WAIT: Duration = Duration::from_secs(20);

/// Runs SQL, failing the test with the error (which carries the node's log tail).
fn sql(cluster: &LocalCluster, node: &PgNode, query: &str) -> String {
    cluster
        .psql(node, "postgres", query)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Creates a table on the primary and waits until `replica` has it.
fn table_on(cluster: &LocalCluster, replica: &PgNode) -> String {
    let table = common::unique_name("t");
    sql(
        cluster,
        cluster.primary(),
        &format!("CREATE TABLE {table} (id int)"),
    );
    let lsn = cluster.current_lsn().expect("primary lsn");
    cluster
        .wait_replayed(replica, &lsn, WAIT)
        .expect("table replayed");
    table
}

fn count(cluster: &LocalCluster, node: &PgNode, table: &str) -> i64 {
    sql(cluster, node, &format!("SELECT count(*) FROM {table}"))
        .parse()
        .expect("a count")
}

/// `a > b` for two LSNs, asked of the server (LSN text does not sort as strings).
fn lsn_after(cluster: &LocalCluster, a: &str, b: &str) -> bool {
    sql(
        cluster,
        cluster.primary(),
        &format!("SELECT '{a}'::pg_lsn > '{b}'::pg_lsn"),
    ) == "t"
}

#[test]
fn shared_cluster_has_three_streaming_replicas() {
    let cluster = common::cluster();
    assert_eq!(cluster.replicas().len(), 3);
    let streaming = sql(
        cluster,
        cluster.primary(),
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
    );
    assert_eq!(streaming, "3");
    assert_eq!(
        sql(cluster, cluster.primary(), "SELECT pg_is_in_recovery()"),
        "f"
    );
    for replica in cluster.replicas() {
        assert_eq!(
            sql(cluster, replica, "SELECT pg_is_in_recovery()"),
            "t",
            "{}",
            replica.name
        );
    }
    let names: Vec<&str> = cluster.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["primary", "replica1", "replica2", "replica3"]);
}

#[test]
fn write_on_primary_is_visible_on_replicas_after_wait_replayed() {
    let cluster = common::cluster();
    let table = common::unique_name("t");
    sql(
        cluster,
        cluster.primary(),
        &format!("CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1), (2)"),
    );
    let lsn = cluster.current_lsn().expect("primary lsn");
    for replica in cluster.replicas() {
        cluster
            .wait_replayed(replica, &lsn, WAIT)
            .expect("replayed");
        assert_eq!(count(cluster, replica, &table), 2, "{}", replica.name);
    }
}

#[tokio::test]
async fn connection_strings_and_password_auth_work() {
    let cluster = common::cluster();
    let replica = &cluster.replicas()[0];
    let client = common::connect(&replica.connstr("postgres", "postgres"))
        .await
        .expect("connect to a replica as postgres");
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("query");
    assert!(row.get::<_, bool>(0));

    let primary = cluster.primary();
    for (user, password) in [
        (APP_SCRAM_USER, APP_SCRAM_PASSWORD),
        (APP_MD5_USER, APP_MD5_PASSWORD),
    ] {
        let base = primary.connstr(APP_DB, user);
        let wrong = common::connect(&format!("{base} password=wrong")).await;
        assert!(wrong.is_err(), "{user} got in with a wrong password");
        let client = common::connect(&format!("{base} password={password}"))
            .await
            .unwrap_or_else(|e| panic!("{user} with its password: {e}"));
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .expect("query");
        assert_eq!(row.get::<_, String>(0), user);
    }
}

#[test]
fn paused_replay_freezes_a_replica_until_resumed() {
    let cluster = common::private_cluster(1);
    let replica = &cluster.replicas()[0];
    let table = table_on(&cluster, replica);

    cluster.pause_replay(replica).expect("pause replay");
    let frozen = cluster.replay_lsn(replica).expect("replay lsn");
    sql(
        &cluster,
        cluster.primary(),
        &format!("INSERT INTO {table} VALUES (1)"),
    );
    let target = cluster.current_lsn().expect("primary lsn");
    assert!(
        lsn_after(&cluster, &target, &frozen),
        "primary did not advance"
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.replay_lsn(replica).expect("replay lsn"), frozen);
    assert_eq!(count(&cluster, replica, &table), 0);

    cluster.resume_replay(replica).expect("resume replay");
    cluster
        .wait_replayed(replica, &target, WAIT)
        .expect("caught up");
    assert_eq!(count(&cluster, replica, &table), 1);
}

#[test]
fn apply_delay_delays_visibility() {
    let cluster = common::private_cluster(1);
    let replica = &cluster.replicas()[0];
    let table = table_on(&cluster, replica);
    let delay = Duration::from_millis(300);
    cluster.set_apply_delay(replica, delay).expect("set delay");

    sql(
        &cluster,
        cluster.primary(),
        &format!("INSERT INTO {table} VALUES (1)"),
    );
    let committed = Instant::now();
    let target = cluster.current_lsn().expect("primary lsn");
    assert_eq!(
        count(&cluster, replica, &table),
        0,
        "visible before the delay"
    );
    cluster
        .wait_replayed(replica, &target, WAIT)
        .expect("replayed");
    let took = committed.elapsed();
    // The delay counts from the commit timestamp, taken just before `committed`.
    assert!(
        took >= delay - Duration::from_millis(100),
        "replayed after only {took:?}"
    );
    assert_eq!(count(&cluster, replica, &table), 1);

    cluster
        .set_apply_delay(replica, Duration::ZERO)
        .expect("remove delay");
    sql(
        &cluster,
        cluster.primary(),
        &format!("INSERT INTO {table} VALUES (2)"),
    );
    let target = cluster.current_lsn().expect("primary lsn");
    cluster
        .wait_replayed(replica, &target, WAIT)
        .expect("replayed");
}

#[test]
fn paused_replica_hangs_until_resumed() {
    let cluster = common::private_cluster(1);
    let replica = &cluster.replicas()[0];
    cluster.pause(replica).expect("pause");
    let hung =
        cluster.psql_with_timeout(replica, "postgres", "SELECT 1", Duration::from_millis(700));
    match hung {
        Err(LocalClusterError::Node { error, .. }) => {
            assert!(
                matches!(*error, LocalClusterError::Timeout { .. }),
                "{error}"
            )
        }
        other => panic!("a paused node answered: {other:?}"),
    }
    // The primary is unaffected.
    assert_eq!(sql(&cluster, cluster.primary(), "SELECT 1"), "1");

    cluster.resume(replica).expect("resume");
    assert_eq!(sql(&cluster, replica, "SELECT 1"), "1");
    cluster
        .wait_streaming(replica, WAIT)
        .expect("streaming again");
}

#[test]
fn killed_replica_comes_back_streaming() {
    let cluster = common::private_cluster(1);
    let replica = &cluster.replicas()[0];
    cluster.kill(replica).expect("kill -9");
    assert!(!cluster.is_running(replica));
    assert!(
        cluster
            .psql_with_timeout(replica, "postgres", "SELECT 1", Duration::from_secs(5))
            .is_err()
    );

    // The primary notices at once: the replica's connection was reset by the kernel.
    let deadline = Instant::now() + WAIT;
    while sql(
        &cluster,
        cluster.primary(),
        "SELECT count(*) FROM pg_stat_replication",
    ) != "0"
    {
        assert!(
            Instant::now() < deadline,
            "walsender of the killed replica lingers"
        );
        thread::sleep(Duration::from_millis(20));
    }

    cluster.start_node(replica).expect("start after kill");
    cluster
        .wait_streaming(replica, WAIT)
        .expect("streaming again");
    let table = table_on(&cluster, replica);
    assert_eq!(count(&cluster, replica, &table), 0);
}

#[test]
fn promoted_replica_leaves_recovery_and_takes_writes() {
    let cluster = common::private_cluster(1);
    let replica = &cluster.replicas()[0];
    cluster.promote(replica).expect("promote");
    assert_eq!(sql(&cluster, replica, "SELECT pg_is_in_recovery()"), "f");
    sql(
        &cluster,
        replica,
        "CREATE TABLE after_promotion (id int); INSERT INTO after_promotion VALUES (1)",
    );
    assert_eq!(count(&cluster, replica, "after_promotion"), 1);
}

#[test]
fn stopped_node_starts_again_and_cluster_cleans_up() {
    let cluster = common::private_cluster(1);
    let replica = cluster.replicas()[0].clone();
    let dir = cluster.dir().to_path_buf();
    cluster.stop(&replica).expect("stop");
    assert!(!cluster.is_running(&replica));
    cluster.start_node(&replica).expect("start");
    cluster
        .wait_streaming(&replica, WAIT)
        .expect("streaming again");
    cluster.restart(cluster.primary()).expect("restart primary");
    cluster
        .wait_streaming(&replica, WAIT)
        .expect("streaming after primary restart");

    drop(cluster);
    assert!(!dir.exists(), "{} left behind", dir.display());
}
