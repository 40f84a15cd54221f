//! Limits that keep pgsplit standing: 500 stalled connections do not hold up a well-behaved
//! client and are closed at the login timeout; idle and idle-in-transaction clients are closed
//! (57P05, 25P03); a user's sessions beyond its limit get 53300. (A 2 GiB announced message is
//! refused at once: tests/bad_input.rs.)

mod common;

use std::time::{Duration, Instant};

use common::cluster;
use common::load::{bounded, sqlstate};
use common::proxy::{TestProxy, start_proxy};
use pgsplit::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

fn proxy_with(settings: &str) -> TestProxy {
    let toml = format!(
        "{settings}\n\n[[clusters]]\nprimary = {{ addr = \"{}\" }}\n",
        cluster().primary().addr()
    );
    start_proxy(Config::from_toml(&toml, "limits test config").expect("valid test config"))
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_connections_do_not_hold_up_a_good_client_and_are_closed_at_the_login_timeout() {
    let proxy = proxy_with("[timeouts]\nclient_login = \"2s\"");
    let mut stalled = Vec::new();
    for _ in 0..500 {
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.write_all(&[0]).await.expect("one byte");
        stalled.push(s);
    }
    let started = Instant::now();
    let client = bounded(
        "good client",
        Duration::from_secs(1),
        common::connect(&proxy.connstr("postgres", "postgres")),
    )
    .await
    .expect("login");
    client.simple_query("SELECT 1").await.expect("query");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Each stalled connection is told and closed once its login time is up.
    bounded(
        "stalled connections closed",
        Duration::from_secs(10),
        async {
            for s in &mut stalled {
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
            }
        },
    )
    .await;
}

/// Connects and returns the client and the connection task, whose result carries an error the
/// server sends unasked (a FATAL before closing).
async fn connect_watched(
    proxy: &TestProxy,
    user: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
    tokio_postgres::Error,
> {
    let (client, connection) =
        tokio_postgres::connect(&proxy.connstr(user, "postgres"), NoTls).await?;
    Ok((client, tokio::spawn(connection)))
}

async fn closing_error(task: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>) -> String {
    let ended = bounded("connection closed", Duration::from_secs(10), task).await;
    let err = ended.expect("task").expect_err("closed with an error");
    sqlstate(&err).unwrap_or_else(|| format!("{err:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_clients_are_closed_as_postgresql_does() {
    let proxy = proxy_with("[timeouts]\nclient_idle = \"1500ms\"\nidle_in_transaction = \"300ms\"");
    let (client, task) = connect_watched(&proxy, "postgres").await.expect("login");
    client.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(closing_error(task).await, "25P03");

    let (client, task) = connect_watched(&proxy, "postgres").await.expect("login");
    // Active within the limit: still open.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.simple_query("SELECT 1").await.expect("still open");
    }
    assert_eq!(closing_error(task).await, "57P05");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_beyond_its_connection_limit_gets_53300() {
    let proxy = proxy_with("[limits]\nmax_connections_per_user = 2");
    let first = connect_watched(&proxy, "postgres").await.expect("first");
    let _second = connect_watched(&proxy, "postgres").await.expect("second");
    let err = connect_watched(&proxy, "postgres")
        .await
        .expect_err("third is refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");
    // Another user is not affected.
    connect_watched(&proxy, "app").await.expect("another user");

    // A slot freed by a session that ended can be taken again.
    drop(first);
    bounded("slot freed", Duration::from_secs(10), async {
        while connect_watched(&proxy, "postgres").await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
