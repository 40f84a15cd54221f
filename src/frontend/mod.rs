//! The client side: accepting connections and running one task per client session.

mod attach;
mod caching;
mod cancel;
mod causal;
mod client;
mod commands;
mod commits;
mod console;
mod error;
mod extended_answers;
mod forward;
mod held_begin;
mod in_flight;
mod live;
mod login;
mod options;
mod recovery;
mod routing;
mod scatter;
mod sequences;
mod session;
mod sharding;
mod state;
mod users;
mod work;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{Config, Overrides};
use crate::pool::Pools;
use crate::protocol::{ErrorFields, SqlState};
use crate::route::RouteCounters;
use crate::topology::Topology;
use crate::topology::monitor::Monitor;

pub use cancel::{CancelRegistry, CancelTarget};
use client::ClientConn;
pub use live::Live;

/// State shared by every session of the process.
pub struct Shared {
    /// The configuration and what is built from it, replaced whole by a reload.
    pub live: ArcSwap<Live>,
    pub topology: Arc<ArcSwap<Topology>>,
    pub pools: Pools,
    pub cancels: Arc<CancelRegistry>,
    pub route_counters: RouteCounters,
    pub metrics: crate::metrics::Metrics,
    /// The command-line flags, applied again over the file at every reload.
    pub overrides: Overrides,
    /// The node monitor, told about nodes a reload adds.
    monitor: std::sync::OnceLock<Arc<Monitor>>,
    /// The result cache's invalidation channel to other instances, when the cache is on.
    pub invalidation: std::sync::OnceLock<Arc<crate::cache::channel::Broadcaster>>,
    /// The WAL follower, with `cache.invalidation = "wal"`.
    pub wal_follower: std::sync::OnceLock<Arc<crate::cache::wal::WalFollower>>,
    client_slots: crate::access::ClientSlots,
    /// Open sessions per user, for `limits.max_connections_per_user`.
    user_slots: crate::access::UserSlots,
    shutting_down: AtomicBool,
    /// Set by the console's PAUSE, cleared by RESUME: sessions wait for RESUME before they start
    /// a new unit of work (PgBouncer's PAUSE), so servers can be restarted under idle clients.
    paused: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
}

impl Shared {
    /// Prepares everything sessions need from a validated config.
    pub fn new(config: Config, overrides: Overrides) -> Result<Arc<Shared>, String> {
        let (shutdown_tx, _) = watch::channel(false);
        Ok(Arc::new(Shared {
            topology: Arc::new(ArcSwap::from_pointee(Topology::from_config(&config))),
            pools: Pools::new(&config.pool),
            cancels: Arc::new(CancelRegistry::default()),
            route_counters: RouteCounters::default(),
            metrics: crate::metrics::Metrics::default(),
            client_slots: crate::access::ClientSlots::default(),
            user_slots: crate::access::UserSlots::default(),
            shutting_down: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            shutdown_tx,
            overrides,
            monitor: std::sync::OnceLock::new(),
            invalidation: std::sync::OnceLock::new(),
            wal_follower: std::sync::OnceLock::new(),
            live: {
                let live = Live::build(config, None)?;
                crate::tls::use_for_internal_connections(&live.server_tls);
                ArcSwap::from_pointee(live)
            },
        }))
    }

    pub fn set_monitor(&self, monitor: Arc<Monitor>) {
        let _ = self.monitor.set(monitor);
    }

    pub fn monitor(&self) -> Option<&Arc<Monitor>> {
        self.monitor.get()
    }

    /// The current configuration and what is built from it.
    pub fn live(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// Starts a graceful shutdown: no new sessions, idle sessions are told and closed.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown_tx.send_replace(true);
    }

    /// Client connections open now.
    pub fn client_count(&self) -> usize {
        self.client_slots.open()
    }

    /// The console's PAUSE is in force: new units wait for RESUME.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
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
    let deadline = shared.live().config.timeouts.shutdown;
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
    let mut client = ClientConn::new(stream, shared.live().config.limits.max_message_size);
    let limit = shared.live().config.limits.max_client_connections;
    let Some(_slot) = shared.client_slots.acquire(limit) else {
        client
            .send_error(&ErrorFields::fatal(
                SqlState::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            ))
            .await;
        return;
    };
    tracing::debug!(%peer, "client connected");
    let span = tracing::info_span!(
        "session",
        client = %peer,
        id = tracing::field::Empty,
        user = tracing::field::Empty,
        database = tracing::field::Empty
    );
    session::run(client, shared, peer.ip())
        .instrument(span)
        .await;
}
