//! The client side: accepting connections and running one task per client session.

mod cancel;
mod client;
mod commands;
mod error;
mod forward;
mod login;
mod options;
mod recovery;
mod routing;
mod session;
mod state;
mod users;
mod work;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::{Config, ConsistencyConfig, LoadBalancing};
use crate::pool::Pools;
use crate::protocol::{ErrorFields, SqlState};
use crate::route::RouteCounters;
use crate::route::balance::Balancer;
use crate::route::classify::{Classifier, FunctionPolicy};
use crate::topology::Topology;

pub use cancel::{CancelRegistry, CancelTarget};
use client::ClientConn;
use users::ClientUser;

/// State shared by every session of the process.
pub struct Shared {
    pub config: Arc<Config>,
    pub topology: Arc<ArcSwap<Topology>>,
    pub pools: Pools,
    pub cancels: Arc<CancelRegistry>,
    pub classifier: Classifier,
    pub route_counters: RouteCounters,
    /// One balancer per cluster, by name: their cursors outlive topology snapshots.
    balancers: HashMap<String, Balancer>,
    fallback_balancer: Balancer,
    users: HashMap<String, ClientUser>,
    client_slots: Arc<Semaphore>,
    shutting_down: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
}

impl Shared {
    /// Prepares everything sessions need from a validated config.
    pub fn new(config: Config) -> Result<Arc<Shared>, String> {
        let users = users::prepare_users(&config.users)?;
        let (shutdown_tx, _) = watch::channel(false);
        Ok(Arc::new(Shared {
            topology: Arc::new(ArcSwap::from_pointee(Topology::from_config(&config))),
            pools: Pools::new(
                config.pool.max_server_connections,
                config.pool.checkout_timeout,
            ),
            cancels: Arc::new(CancelRegistry::default()),
            classifier: Classifier::new(
                FunctionPolicy::new(&config.routing.read_only_functions),
                config.routing.classify_cache_bytes,
            ),
            route_counters: RouteCounters::default(),
            balancers: config
                .clusters
                .iter()
                .map(|c| (c.name.clone(), Balancer::new(c.load_balancing)))
                .collect(),
            fallback_balancer: Balancer::new(LoadBalancing::default()),
            users,
            client_slots: Arc::new(Semaphore::new(config.limits.max_client_connections)),
            shutting_down: AtomicBool::new(false),
            shutdown_tx,
            config: Arc::new(config),
        }))
    }

    /// Starts a graceful shutdown: no new sessions, idle sessions are told and closed.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown_tx.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The balancer of a cluster (a cluster added by a reload gets the default one until the
    /// balancers are rebuilt).
    pub fn balancer(&self, cluster: &str) -> &Balancer {
        self.balancers
            .get(cluster)
            .unwrap_or(&self.fallback_balancer)
    }

    /// The consistency settings of a cluster (the defaults for one the config does not know).
    pub fn consistency(&self, cluster: &str) -> &ConsistencyConfig {
        static DEFAULT: std::sync::OnceLock<ConsistencyConfig> = std::sync::OnceLock::new();
        self.config
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .map_or_else(
                || DEFAULT.get_or_init(ConsistencyConfig::default),
                |c| &c.consistency,
            )
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}

/// Resolves once shutdown has begun. (The guard `wait_for` returns is not `Send`, so it is
/// dropped here rather than held in a caller's `select!`.)
async fn stopping(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

/// Accepts clients until shutdown begins, then waits (up to the shutdown timeout) for the
/// sessions still running.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    let mut shutdown = shared.shutdown_signal();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    sessions.spawn(async move { accept_client(stream, peer, shared).await });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stopping(&mut shutdown) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    let deadline = shared.config.timeouts.shutdown;
    if tokio::time::timeout(deadline, async {
        while sessions.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            remaining = sessions.len(),
            "shutdown timeout reached; closing the remaining sessions"
        );
        sessions.shutdown().await;
    }
}

async fn accept_client(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let mut client = ClientConn::new(stream, shared.config.limits.max_message_size);
    let Ok(_slot) = shared.client_slots.clone().try_acquire_owned() else {
        client
            .send_error(&ErrorFields::fatal(
                SqlState::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            ))
            .await;
        return;
    };
    tracing::debug!(%peer, "client connected");
    session::run(client, shared, peer.ip()).await;
}
