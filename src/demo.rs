//! `pgsplit demo`: a local primary with 3 streaming replicas and pgsplit in front, on one
//! command, stopped together on Ctrl-C or SIGTERM.

use std::path::PathBuf;

use crate::config::Config;
use crate::localcluster::{ClusterOptions, LocalCluster, PgBinaries};

const DEMO_REPLICAS: usize = 3;
const DEMO_ADMIN: &str = "127.0.0.1:9930";

/// Runs the demo until signalled. `dir` holds the servers' data (a fresh directory under /tmp
/// by default; it must be empty or absent) and is removed at the end.
pub async fn run(dir: Option<PathBuf>, port: u16) -> Result<(), String> {
    let bins = PgBinaries::find().map_err(|e| e.to_string())?;
    println!(
        "Starting a PostgreSQL {} primary and {DEMO_REPLICAS} streaming replicas from {} ...",
        bins.version,
        bins.bindir.display()
    );
    let mut options = ClusterOptions::new(DEMO_REPLICAS);
    if let Some(dir) = dir {
        options.dir = dir;
    }
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&bins, options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let config = demo_config(&cluster, port)?;
    let running = crate::app::start(config).await?;
    print_welcome(&cluster, running.listen.port(), running.admin);
    running.run_until_signalled().await;
    println!("Stopping pgsplit and the demo servers ...");
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
