//! Invalidations between pgsplit instances, over LISTEN/NOTIFY on the primary (a channel that
//! needs no new server). One task per process: it listens on channel `pgsplit_invalidate`,
//! applies what other instances send, and sends this instance's invalidations. While it has no
//! channel, the cache is emptied and not used: no other instance's write can then go unseen.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::notify::{CHANNEL, Invalidation, Remote};
use super::store::ResultCache;
use crate::config::MonitorSettings;
use crate::topology::Topology;

/// How long to wait before listening again after the channel was lost.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// This instance's end of the channel.
pub struct Broadcaster {
    codec: Invalidation,
    outgoing: mpsc::UnboundedSender<String>,
    listening: AtomicBool,
}

impl Broadcaster {
    /// The cache may be used: the channel is up, so other instances' writes reach it.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Tells the other instances to drop entries that read `tables`.
    pub fn tables_written(&self, tables: &[String], lsn: u64) {
        for payload in self.codec.encode(tables, lsn) {
            let _ = self.outgoing.send(payload);
        }
    }

    /// Tells the other instances to drop everything.
    pub fn everything_written(&self, lsn: u64) {
        let _ = self.outgoing.send(self.codec.encode_all(lsn));
    }
}

/// Starts the channel task for `cache`.
pub fn spawn(
    cache: Arc<ResultCache>,
    topology: Arc<ArcSwap<Topology>>,
    settings: MonitorSettings,
    connect_timeout: Duration,
) -> Arc<Broadcaster> {
    let (outgoing, mut queue) = mpsc::unbounded_channel();
    let broadcaster = Arc::new(Broadcaster {
        codec: Invalidation::random(),
        outgoing,
        listening: AtomicBool::new(false),
    });
    let end = Arc::clone(&broadcaster);
    tokio::spawn(async move {
        loop {
            let error = listen(
                &end,
                &cache,
                &topology,
                &settings,
                connect_timeout,
                &mut queue,
            )
            .await;
            if end.listening.swap(false, Ordering::Relaxed) {
                tracing::warn!(%error, "cache invalidation channel lost: the cache is emptied and unused until it is back");
                crate::events::record("cache_channel_lost", None, error.clone());
            }
            cache.clear();
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    });
    broadcaster
}

/// Listens on the current primary until the connection fails; returns why.
async fn listen(
    end: &Broadcaster,
    cache: &ResultCache,
    topology: &ArcSwap<Topology>,
    settings: &MonitorSettings,
    connect_timeout: Duration,
    queue: &mut mpsc::UnboundedReceiver<String>,
) -> String {
    let connected =
        crate::topology::monitor::connect_first_primary(topology, settings, connect_timeout).await;
    let (client, mut connection) = match connected {
        Ok(connected) => connected,
        Err(e) => return e,
    };
    let (notices, mut incoming) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = notices.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
        "the server closed the connection".to_string()
    });
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        driver.abort();
        return e.to_string();
    }
    // Anything written while the channel was down went unseen: start from an empty cache.
    cache.clear();
    end.listening.store(true, Ordering::Relaxed);
    let error = loop {
        tokio::select! {
            Some(payload) = incoming.recv() => apply(end, cache, &payload),
            Some(payload) = queue.recv() => {
                if let Err(e) = client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL as &(dyn tokio_postgres::types::ToSql + Sync), &payload]).await {
                    break e.to_string();
                }
            }
            else => break "the channel closed".to_string(),
        }
        if driver.is_finished() {
            break "the server closed the connection".to_string();
        }
    };
    driver.abort();
    error
}

fn apply(end: &Broadcaster, cache: &ResultCache, payload: &str) {
    match end.codec.decode(payload) {
        Some(Remote::Tables(tables, lsn)) => {
            cache.invalidate_tables(&tables, lsn);
        }
        Some(Remote::All(lsn)) => cache.clear_written(lsn),
        None => {}
    }
}
