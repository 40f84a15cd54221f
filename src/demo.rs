//! `pgsplit demo`: a local primary with 3 streaming replicas and pgsplit in front, on one
//! command, stopped together on Ctrl-C or SIGTERM. Scripts (the benchmarks in `benches/`) can
//! ask for the servers alone (`--no-proxy`), server settings (`--server-conf`) and the ports
//! as one JSON line (`--json`).

use std::path::PathBuf;

use crate::config::Config;
use crate::localcluster::{ClusterOptions, LocalCluster, PgBinaries};

const DEMO_REPLICAS: usize = 3;
const DEMO_ADMIN: &str = "127.0.0.1:9930";

/// What `pgsplit demo` starts and how it reports.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the servers keep their data (a fresh directory under /tmp by default; it must be
    /// empty or absent); removed at the end.
    pub dir: Option<PathBuf>,
    /// pgsplit's port on 127.0.0.1.
    pub port: u16,
    /// Start the servers only, without pgsplit.
    pub no_proxy: bool,
    /// Print the addresses as one JSON line (for scripts) instead of the welcome text.
    pub json: bool,
    /// Extra `postgresql.conf` lines for every server (e.g. `max_connections = 500`).
    pub server_conf: Vec<String>,
}

/// Runs the demo until signalled.
pub async fn run(options: DemoOptions) -> Result<(), String> {
    let bins = PgBinaries::find().map_err(|e| e.to_string())?;
    if !options.json {
        println!(
            "Starting a PostgreSQL {} primary and {DEMO_REPLICAS} streaming replicas from {} ...",
            bins.version,
            bins.bindir.display()
        );
    }
    let mut cluster_options = ClusterOptions::new(DEMO_REPLICAS);
    if let Some(dir) = options.dir.clone() {
        cluster_options.dir = dir;
    }
    cluster_options.extra_conf = options.server_conf.clone();
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&bins, cluster_options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if options.no_proxy {
        report(&cluster, None, None, options.json);
        crate::app::wait_for_signal().await;
    } else {
        let config = demo_config(&cluster, options.port)?;
        let running = crate::app::start(config).await?;
        report(
            &cluster,
            Some(running.listen.port()),
            running.admin,
            options.json,
        );
        running.run_until_signalled().await;
    }
    if !options.json {
        let what = if options.no_proxy { "" } else { "pgsplit and " };
        println!("Stopping {what}the demo servers ...");
    }
    tokio::task::spawn_blocking(move || cluster.stop_all())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

fn demo_config(cluster: &LocalCluster, port: u16) -> Result<Config, String> {
    let replicas: Vec<String> = cluster.replicas().iter().map(|r| r.addr()).collect();
    let mut config =
        Config::quick_start(&cluster.primary().addr(), &replicas).map_err(|e| e.to_string())?;
    config.listen = ([127, 0, 0, 1], port).into();
    config.admin = Some(
        DEMO_ADMIN
            .parse()
            .map_err(|e| format!("{DEMO_ADMIN}: {e}"))?,
    );
    Ok(config)
}

fn report(
    cluster: &LocalCluster,
    port: Option<u16>,
    admin: Option<std::net::SocketAddr>,
    json: bool,
) {
    match port {
        _ if json => println!("{}", addresses_json(cluster, port)),
        Some(port) => print_welcome(cluster, port, admin),
        None => print_servers(cluster),
    }
}

/// `{"dir": ..., "socket_dir": ..., "primary": 5432, "replicas": [5433, ...], "pgsplit": 6432 or
/// null}` on one line; `socket_dir` holds every server's Unix-domain socket.
fn addresses_json(cluster: &LocalCluster, pgsplit: Option<u16>) -> serde_json::Value {
    let replicas: Vec<u16> = cluster.replicas().iter().map(|r| r.port).collect();
    serde_json::json!({
        "dir": cluster.dir().display().to_string(),
        "socket_dir": cluster.primary().socket_dir.display().to_string(),
        "primary": cluster.primary().port,
        "replicas": replicas,
        "pgsplit": pgsplit,
    })
}

fn print_servers(cluster: &LocalCluster) {
    println!();
    println!("The demo servers are running (no pgsplit).");
    for node in cluster.nodes() {
        println!("  {:<9} 127.0.0.1:{}", node.name, node.port);
    }
    println!();
    println!("Press Ctrl-C to stop them.");
}

fn print_welcome(cluster: &LocalCluster, port: u16, admin: Option<std::net::SocketAddr>) {
    println!();
    println!("pgsplit demo is running.");
    for node in cluster.nodes() {
        println!("  {:<9} 127.0.0.1:{}", node.name, node.port);
    }
    println!("  pgsplit   127.0.0.1:{port}");
    if let Some(admin) = admin {
        println!("  dashboard http://{admin}/   (status: /api/status, metrics: /metrics)");
    }
    println!();
    println!("Connect with:");
    println!("  psql -h 127.0.0.1 -p {port} -U postgres postgres");
    println!("Admin console:");
    println!("  psql -h 127.0.0.1 -p {port} -U postgres pgsplit   (then SHOW NODES;)");
    println!();
    println!("Press Ctrl-C to stop everything.");
}
