//! Hot reload (SIGHUP or the admin API), in steps that either all apply or change nothing:
//! 1. read and validate the file, with the command-line flags over it;
//! 2. build what sessions use from it (users, balancers, classifier);
//! 3. reconcile the topology, keeping the nodes that stay (their stats, health, monitor);
//! 4. publish both snapshots, resize the pools, and start monitoring the new nodes.
//!
//! Sessions keep running throughout: they read the new snapshots at their next statement.

use std::sync::Arc;

use crate::config::Config;
use crate::frontend::{Live, Shared};

/// Reloads the configuration file the process started with. Returns a summary, or the error
/// that left the running configuration in force.
pub fn reload(shared: &Shared) -> Result<String, String> {
    let result = apply(shared);
    match &result {
        Ok(summary) => crate::events::record("reload", None, summary.clone()),
        Err(e) => crate::events::record("reload_refused", None, e.clone()),
    }
    result
}

fn apply(shared: &Shared) -> Result<String, String> {
    let current = shared.live();
    let Some(path) = current.config.source.clone() else {
        return Err(
            "pgsplit was started without a config file: there is nothing to reload".to_string(),
        );
    };
    let mut config = Config::load(&path).map_err(|e| e.to_string())?;
    config
        .apply_overrides(&shared.overrides)
        .map_err(|e| e.to_string())?;
    let live = Live::build(config, Some(&current))?;
    let topology = shared.topology.load().reconcile(&live.config);
    let summary = summarize(&topology);
    shared.pools.resize(&live.config.pool);
    crate::tls::use_for_internal_connections(&live.server_tls);
    shared.live.store(Arc::new(live));
    shared.topology.store(Arc::new(topology));
    if let Some(monitor) = shared.monitor() {
        monitor.watch_new_nodes();
    }
    tracing::info!(file = %path.display(), %summary, "configuration reloaded");
    Ok(summary)
}

fn summarize(topology: &crate::topology::Topology) -> String {
    topology
        .clusters
        .iter()
        .map(|c| {
            let replicas: Vec<&str> = c.replicas.iter().map(|r| r.name.as_str()).collect();
            format!(
                "cluster {}: primary {}, replicas [{}]",
                c.name,
                c.primary.name,
                replicas.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
