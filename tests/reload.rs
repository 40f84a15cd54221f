//! Hot reload through the admin API: a 4th replica added while 16 clients run serves reads at once
//! with no client error; an invalid file is refused whole and the running config stays.

mod common;

use std::time::{Duration, Instant};

use common::load::{fresh_read_port, wait_served_by};
use common::private_cluster;
use common::process::http;
use common::proxy::start_proxy;
use pgsplit::config::Config;
use pgsplit::localcluster::PgNode;

/// A config file for the primary and `replicas`, with the admin server on. Lag is not what
/// these tests are about: on two cores, a primary + 4 replicas + 16 busy clients can leave an
/// idle replica's replay a few seconds behind, which the default `max_lag` (1 s) would rightly
/// refuse reads for, so the limit here is far beyond it.
fn config_text(primary: &PgNode, replicas: &[PgNode]) -> String {
    let replicas: Vec<String> = replicas
        .iter()
        .map(|r| format!("{{ name = \"{}\", addr = \"{}\" }}", r.name, r.addr()))
        .collect();
    format!(
        "admin = \"127.0.0.1:9\"\n\n[[clusters]]\nmax_lag = \"1h\"\nprimary = {{ addr = \"{}\" }}\nreplicas = [{}]\n",
        primary.addr(),
        replicas.join(", ")
    )
}

/// POST /reload on the admin server: (status, body).
fn post_reload(admin: std::net::SocketAddr) -> (u16, String) {
    http(
        &admin.to_string(),
        "POST",
        "/reload",
        Duration::from_secs(10),
    )
    .expect("the admin server answers")
}

/// The admin server's view of the nodes (health, lag, reads), for a failure's message.
fn node_status(admin: std::net::SocketAddr) -> String {
    let (_, body) = http(
        &admin.to_string(),
        "GET",
        "/api/status",
        Duration::from_secs(10),
    )
    .expect("the admin server answers");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    status["nodes"].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_added_by_reload_serves_reads_and_a_bad_reload_changes_nothing() {
    let c = private_cluster(4);
    let dir = std::env::temp_dir().join(common::unique_name("reload"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("pgsplit.toml");
    std::fs::write(&file, config_text(c.primary(), &c.replicas()[..3])).expect("write config");
    let proxy = start_proxy(Config::load(&file).expect("config loads"));
    let admin = proxy.admin.expect("admin server");

    // 16 clients read and write for the whole test; none may see an error.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Clients that have run a statement: each must have run through the reloads.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let connstr = proxy.connstr("postgres", "postgres");
    let setup = common::connect(&connstr).await.expect("connect");
    setup
        .batch_execute("CREATE TABLE reload_t (id serial PRIMARY KEY, v int)")
        .await
        .expect("table");
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (connstr, stop, running) = (connstr.clone(), stop.clone(), running.clone());
            tokio::spawn(async move {
                let client = common::connect(&connstr).await.map_err(|e| e.to_string())?;
                let mut done = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && done < 10_000 {
                    if i % 4 == 0 {
                        client
                            .execute("INSERT INTO reload_t (v) VALUES (1)", &[])
                            .await
                            .map_err(|e| e.to_string())?;
                    } else {
                        client
                            .query_one("SELECT count(*) FROM pg_class", &[])
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    done += 1;
                    if done == 1 {
                        running.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Ok::<u32, String>(done)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    std::fs::write(&file, config_text(c.primary(), c.replicas())).expect("rewrite config");
    let (status, body) = tokio::task::spawn_blocking(move || post_reload(admin))
        .await
        .expect("reload");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("replica4"), "{body}");
    let started = Instant::now();
    if let Err(e) = wait_served_by(&proxy, c.replicas()[3].port, Duration::from_secs(5)).await {
        let status = tokio::task::spawn_blocking(move || node_status(admin)).await;
        panic!("the new replica serves no reads: {e}\nnodes: {status:?}");
    }
    eprintln!(
        "the added replica served its first read {:?} after the reload",
        started.elapsed()
    );

    std::fs::write(
        &file,
        "[[clusters]]\nprimary = { addr = \"127.0.0.1:99999\" }\n",
    )
    .expect("break config");
    let (status, body) = tokio::task::spawn_blocking(move || post_reload(admin))
        .await
        .expect("reload");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("pgsplit.toml:2"),
        "the error names the file and line: {body}"
    );
    // The running configuration still serves, replica3 included.
    wait_served_by(&proxy, c.replicas()[3].port, Duration::from_secs(5))
        .await
        .expect("still in force");
    fresh_read_port(&proxy, Duration::from_secs(5))
        .await
        .expect("reads still work");

    // Under load a client may still be logging in: it gets 10 s to run its first statement.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.load(std::sync::atomic::Ordering::Relaxed) < clients.len()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let done = client
            .await
            .expect("client task")
            .unwrap_or_else(|e| panic!("a client saw an error: {e}"));
        assert!(done > 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reloaded_client_limit_applies_to_new_clients_and_keeps_open_ones() {
    let c = common::cluster();
    let dir = std::env::temp_dir().join(common::unique_name("reload_limit"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("pgsplit.toml");
    let with_limit = |limit: usize| {
        format!(
            "{}\n[limits]\nmax_client_connections = {limit}\n",
            config_text(c.primary(), c.replicas())
        )
    };
    std::fs::write(&file, with_limit(2)).expect("write config");
    let proxy = start_proxy(Config::load(&file).expect("config loads"));
    let admin = proxy.admin.expect("admin server");
    let connstr = proxy.connstr("postgres", "postgres");
    let reload_with = |limit: usize| {
        std::fs::write(&file, with_limit(limit)).expect("rewrite config");
        let (status, body) = post_reload(admin);
        assert_eq!(status, 200, "{body}");
    };
    let sqlstate = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_string());

    let first = common::connect(&connstr).await.expect("first client");
    let second = common::connect(&connstr).await.expect("second client");
    let refused = common::connect(&connstr).await.expect_err("over the limit");
    assert_eq!(sqlstate(refused).as_deref(), Some("53300"));

    tokio::task::block_in_place(|| reload_with(3));
    let third = common::connect(&connstr)
        .await
        .expect("a raised limit admits");

    tokio::task::block_in_place(|| reload_with(1));
    let refused = common::connect(&connstr)
        .await
        .expect_err("a lowered limit refuses");
    assert_eq!(sqlstate(refused).as_deref(), Some("53300"));
    for client in [&first, &second, &third] {
        client
            .simple_query("SELECT 1")
            .await
            .expect("open clients stay");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
