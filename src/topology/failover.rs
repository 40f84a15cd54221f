//! pgsplit promoting a replica itself (`failover.promote_command`): once a cluster's primary has
//! been down for `failover.after`, the most advanced available replica is promoted by the
//! configured command. The monitor then sees it leave recovery and makes it the primary.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{Cluster, Node, Topology};
use crate::config::FailoverSettings;

/// How long the promote command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Watches every cluster's primary, every `interval`, for as long as the process runs.
pub fn spawn(topology: Arc<ArcSwap<Topology>>, settings: FailoverSettings, interval: Duration) {
    let Some(command) = settings.promote_command.clone() else {
        return;
    };
    tokio::spawn(async move {
        // When each cluster's current primary was first seen down (by node address, so a new
        // primary starts a new count), and whether its replacement was already asked for.
        let mut down_since: HashMap<usize, (Instant, bool)> = HashMap::new();
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
        loop {
            ticks.tick().await;
            let snapshot = topology.load_full();
            for cluster in &snapshot.clusters {
                let key = Arc::as_ptr(&cluster.primary) as usize;
                if cluster.primary.is_available() {
                    down_since.remove(&key);
                    continue;
                }
                let (since, asked) = down_since.entry(key).or_insert((Instant::now(), false));
                if *asked || since.elapsed() < settings.after {
                    continue;
                }
                if let Some(replica) = most_advanced_replica(cluster) {
                    *asked = true;
                    promote(&command, cluster, &replica).await;
                }
            }
        }
    });
}

/// The available replica that has replayed the most WAL (it loses the least).
fn most_advanced_replica(cluster: &Cluster) -> Option<Arc<Node>> {
    cluster
        .replicas
        .iter()
        .filter(|r| r.is_available() && r.stats.lag().is_some())
        .max_by_key(|r| {
            r.stats
                .replay_lsn
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .cloned()
}

async fn promote(command: &str, cluster: &Cluster, node: &Node) {
    let (host, port) = crate::config::address::split_node_addr(&node.addr);
    tracing::warn!(cluster = %cluster.name, node = %node.name, "primary down: running the promote command");
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PGSPLIT_CLUSTER", &cluster.name)
        .env("PGSPLIT_NODE", &node.name)
        .env("PGSPLIT_HOST", host)
        .env("PGSPLIT_PORT", port.to_string())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => {
            tracing::info!(node = %node.name, "promote command succeeded")
        }
        Ok(Ok(out)) => {
            tracing::error!(node = %node.name, status = %out.status, stderr = %String::from_utf8_lossy(&out.stderr), "promote command failed")
        }
        Ok(Err(e)) => {
            tracing::error!(node = %node.name, error = %e, "promote command could not start")
        }
        Err(_) => {
            tracing::error!(node = %node.name, "promote command did not finish within {COMMAND_TIMEOUT:?}")
        }
    }
}
