//! Running the proxy: binding the listeners, serving, and shutting down gracefully on SIGTERM
//! or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, Overrides};
use crate::frontend::{self, Shared};

/// How often pooled server connections are checked for `pool.server_idle_timeout`.
const IDLE_SWEEP: Duration = Duration::from_secs(1);

/// A running proxy: where it listens, and the handle to stop it.
pub struct Running {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    served: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Begins a graceful shutdown and waits for it to complete.
    pub async fn shutdown(self) {
        self.shared.begin_shutdown();
        let _ = self.served.await;
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully; SIGHUP reloads the config.
    pub async fn run_until_signalled(self) {
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            tokio::select! {
                _ = wait_for_signal() => break,
                Some(()) = next_hangup(&mut hangups) => {
                    if let Err(e) = crate::reload::reload(&self.shared) {
                        tracing::error!(error = %e, "reload refused; the running configuration stays in force");
                    }
                }
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

async fn next_hangup(signals: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signals {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Binds the client and admin listeners and starts serving in the background.
pub async fn start(config: Config) -> Result<Running, String> {
    start_with(config, Overrides::default()).await
}

/// Like [`start`], remembering the command-line flags so that a reload applies them again.
pub async fn start_with(config: Config, overrides: Overrides) -> Result<Running, String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    let admin_listener = match config.admin {
        Some(addr) => Some(crate::admin::bind(addr).await.map_err(|e| e.to_string())?),
        None => None,
    };
    let admin = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let shared = Shared::new(config, overrides)?;
    start_watching(&shared);
    crate::shard::twophase::spawn(shared.clone());
    spawn_idle_reaper(shared.clone());
    wait_for_replica_state(&shared).await;
    if let Some(listener) = admin_listener {
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::admin::serve(listener, shared).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
    }
    let served = tokio::spawn(frontend::serve(listener, shared.clone()));
    tracing::info!(%listen, ?admin, "pgsplit is listening");
    Ok(Running {
        listen,
        admin,
        shared,
        served,
    })
}

/// Starts the node monitor (health and lag) and, if configured, pgsplit's own failover.
fn start_watching(shared: &Shared) {
    let live = shared.live();
    let config = &live.config;
    let monitor = crate::topology::monitor::spawn(
        shared.topology.clone(),
        &config.monitor,
        &config.health,
        config.timeouts.connect,
    );
    shared.set_monitor(monitor);
    if let Some(cache) = live.cache.clone() {
        crate::cache::related::spawn(
            cache.related(),
            shared.topology.clone(),
            config.monitor.clone(),
            config.timeouts.connect,
        );
        let channel = crate::cache::channel::spawn(
            cache.clone(),
            shared.topology.clone(),
            config.monitor.clone(),
            config.timeouts.connect,
        );
        let _ = shared.invalidation.set(channel);
        if config.cache.invalidation == crate::config::Invalidation::Wal {
            let follower = crate::cache::wal::spawn(
                cache,
                shared.topology.clone(),
                config.monitor.clone(),
                config.timeouts.connect,
                config.cache.wal_poll_interval,
            );
            let _ = shared.wal_follower.set(follower);
        }
    }
    crate::topology::failover::spawn(
        shared.topology.clone(),
        config.failover.clone(),
        config.monitor.interval,
    );
}

/// Closes pooled server connections idle past `pool.server_idle_timeout`, checking every second.
fn spawn_idle_reaper(shared: Arc<Shared>) {
    tokio::spawn(async move {
        while !shared.is_shutting_down() {
            tokio::time::sleep(IDLE_SWEEP).await;
            shared.pools.close_expired().await;
        }
    });
}

/// Until the monitor knows every replica's lag, reads cannot be sent to replicas safely: wait
/// for its first round (bounded, since a replica may be down) before taking clients.
async fn wait_for_replica_state(shared: &Shared) {
    const FIRST_ROUND: std::time::Duration = std::time::Duration::from_secs(3);
    let all_known = || {
        let topology = shared.topology.load();
        topology
            .clusters
            .iter()
            .flat_map(|c| &c.replicas)
            .all(|r| r.stats.lag().is_some())
    };
    let wait = async {
        while !all_known() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(FIRST_ROUND, wait).await.is_err() {
        tracing::warn!(
            "some replicas' lag is still unknown; they get reads once the monitor reaches them"
        );
    }
}

/// SIGTERM (what service managers and orchestrators send) or Ctrl-C.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
