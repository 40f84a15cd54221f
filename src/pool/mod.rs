//! Server connections pooled per (node, database, user), with a cap per pool, a bounded wait
//! for a free connection, and idle connections closed after `pool.server_idle_timeout`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{BackendError, ConnectSpec, ServerConn};
use crate::config::PoolSettings;

/// How long closing an expired idle connection may take (it is one 5-byte Terminate).
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long other sessions leave a connection kept for a session alone while the pool has
/// room for another: `currval()` and `lastval()` come right after their `nextval()`, and a
/// longer claim would have the pool open a connection per session that wrote.
const KEEP_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub node: String,
    pub database: String,
    pub user: String,
    /// The startup `options` (e.g. `-c geqo=off`): they set what RESET returns to, so
    /// connections opened with different ones are not interchangeable.
    pub options: String,
}

#[derive(Debug, Error)]
pub enum PoolError {
    #[error(
        "no server connection to {node} became free within {waited:?} (all {max} in use); raise pool.max_server_connections or pool.checkout_timeout"
    )]
    Exhausted {
        node: String,
        waited: Duration,
        max: usize,
    },
    #[error(transparent)]
    Connect(#[from] BackendError),
}

/// All pools of the process.
pub struct Pools {
    /// Settings a reload may change; read at each checkout.
    max_per_pool: AtomicUsize,
    checkout_timeout_ms: AtomicU64,
    /// 0: idle connections are kept for good.
    idle_timeout_ms: AtomicU64,
    pools: Mutex<HashMap<PoolKey, Arc<NodePool>>>,
}

/// The connections of one (node, database, user).
struct NodePool {
    /// Oldest first: connections rejoin at the end and leave from it.
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    /// The permits this pool was last sized to.
    size: AtomicUsize,
}

/// One pool, as [`Pools::handle`] found it. Sessions clone it for every checkout, so the clone
/// only counts references.
#[derive(Clone)]
pub struct PoolHandle {
    pool: Arc<NodePool>,
    node: Arc<str>,
}

impl PoolHandle {
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// A connection waiting in its pool, and since when.
struct Idle {
    /// Boxed as in [`Checkout`]: a connection leaves and rejoins the pool without a copy.
    conn: Box<ServerConn>,
    since: Instant,
    /// The session this connection is kept for, if any (see [`Reservation`]); dead once that
    /// session ends.
    kept_for: Weak<()>,
}

impl Idle {
    fn is_kept(&self) -> bool {
        self.kept_for.strong_count() > 0 && self.since.elapsed() < KEEP_FOR
    }
}

/// A session's claim on one idle connection: the one that holds what `currval()` and
/// `lastval()` read (they answer from the connection's own backend). The session finds it
/// again as long as nobody else took it; others leave it alone for [`KEEP_FOR`] while the pool
/// has room to open another, and take it (ending the claim) when the pool is full, so a
/// claim never makes anyone wait.
#[derive(Default)]
pub struct Reservation(Arc<()>);

impl Reservation {
    fn holds(&self, idle: &Idle) -> bool {
        std::ptr::eq(self.0.as_ref(), idle.kept_for.as_ptr())
    }
}

/// A server connection on loan. Give it back with [`Pools::checkin`]; dropping it closes it,
/// which is the safe default when its state is unknown.
pub struct Checkout {
    /// Boxed: a connection moves from the pool to the session and back for every unit, and
    /// a pointer moves cheaper than the whole record (some 400 bytes).
    pub conn: Box<ServerConn>,
    /// The connection was kept for the borrower's reservation, so nobody used it meanwhile.
    pub reserved: bool,
    pool: Arc<NodePool>,
    _permit: OwnedSemaphorePermit,
}

impl Pools {
    pub fn new(settings: &PoolSettings) -> Self {
        let pools = Pools {
            max_per_pool: AtomicUsize::new(0),
            checkout_timeout_ms: AtomicU64::new(0),
            idle_timeout_ms: AtomicU64::new(0),
            pools: Mutex::new(HashMap::new()),
        };
        pools.resize(settings);
        pools
    }

    /// The pool of `key`, for [`Pools::checkout`]; sessions keep it, so the map is searched
    /// once per session and node rather than once per unit.
    pub fn handle(&self, key: &PoolKey) -> PoolHandle {
        PoolHandle {
            pool: self.pool(key),
            node: Arc::from(key.node.as_str()),
        }
    }

    fn pool(&self, key: &PoolKey) -> Arc<NodePool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(key) {
            return Arc::clone(pool);
        }
        pools
            .entry(key.clone())
            .or_insert_with(|| {
                let size = self.max_per_pool.load(Ordering::Relaxed);
                Arc::new(NodePool {
                    idle: Mutex::new(Vec::new()),
                    permits: Arc::new(Semaphore::new(size)),
                    size: AtomicUsize::new(size),
                })
            })
            .clone()
    }

    /// An idle connection of the pool (unless `fresh`), or a new one made from `spec`, waiting
    /// at most the checkout timeout for the pool to have room. A fresh connection is how a
    /// pass-through login lets the server itself check the client's password. The connection
    /// kept for `reservation` comes first; connections kept for other sessions come last.
    /// `spec` is called only when a new connection must be opened.
    pub async fn checkout(
        &self,
        handle: &PoolHandle,
        spec: impl FnOnce() -> ConnectSpec,
        fresh: bool,
        reservation: Option<&Reservation>,
    ) -> Result<Checkout, PoolError> {
        let pool = Arc::clone(&handle.pool);
        let permit = match pool.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // Only a full pool pays for a timer.
            Err(_) => self.wait_for_permit(handle).await?,
        };
        let idle = if fresh {
            None
        } else {
            pool.take_live_idle(reservation)
        };
        let (conn, reserved) = match idle {
            Some(taken) => taken,
            None => (Box::new(ServerConn::connect(&spec()).await?), false),
        };
        Ok(Checkout {
            conn,
            reserved,
            pool,
            _permit: permit,
        })
    }

    async fn wait_for_permit(
        &self,
        handle: &PoolHandle,
    ) -> Result<OwnedSemaphorePermit, PoolError> {
        let waited = self.checkout_timeout();
        tokio::time::timeout(waited, handle.pool.permits.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| PoolError::Exhausted {
                node: handle.node.to_string(),
                waited,
                max: self.max_per_pool.load(Ordering::Relaxed),
            })
    }

    /// Returns a connection that is idle outside any transaction; anything else is closed.
    pub fn checkin(&self, checkout: Checkout) {
        self.checkin_for(checkout, None);
    }

    /// [`Self::checkin`], the connection kept for `reservation` (see [`Reservation`]).
    pub fn checkin_for(&self, checkout: Checkout, reservation: Option<&Reservation>) {
        let Checkout { conn, pool, .. } = checkout;
        let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Fresh logins can open connections beside idle ones; keeping at most the pool's cap
        // idle bounds what the pool holds open.
        let reusable = conn.tx_status == b'I';
        if reusable && idle.len() < self.max_per_pool.load(Ordering::Relaxed) {
            idle.push(Idle {
                conn,
                since: Instant::now(),
                kept_for: reservation.map_or_else(Weak::new, |r| Arc::downgrade(&r.0)),
            });
        }
    }

    /// Closes (with Terminate) every connection idle for longer than `pool.server_idle_timeout`,
    /// so that the servers get back the backends a burst of clients made the pool open.
    pub async fn close_expired(&self) {
        for conn in self.take_expired() {
            let _ = tokio::time::timeout(TERMINATE_TIMEOUT, conn.terminate()).await;
        }
    }

    /// Still boxed as they were pooled: unboxing only to drop them would copy each.
    #[allow(clippy::vec_box)]
    fn take_expired(&self) -> Vec<Box<ServerConn>> {
        let timeout = Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed));
        if timeout.is_zero() {
            return Vec::new();
        }
        // None only within `timeout` of the clock's origin, when nothing can be that old yet.
        let Some(cutoff) = Instant::now().checked_sub(timeout) else {
            return Vec::new();
        };
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let mut expired = Vec::new();
        for pool in pools.values() {
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            let old = idle.partition_point(|entry| entry.since < cutoff);
            expired.extend(idle.drain(..old).map(|entry| entry.conn));
        }
        expired
    }

    /// Applies (reloaded) settings: every pool grows or shrinks to `max_server_connections`
    /// (shrinking takes effect as connections come back), later checkouts wait
    /// `checkout_timeout`, and idle connections expire after `server_idle_timeout`.
    pub fn resize(&self, settings: &PoolSettings) {
        let max_per_pool = settings.max_server_connections;
        self.max_per_pool.store(max_per_pool, Ordering::Relaxed);
        self.checkout_timeout_ms
            .store(millis(settings.checkout_timeout), Ordering::Relaxed);
        self.idle_timeout_ms
            .store(millis(settings.server_idle_timeout), Ordering::Relaxed);
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        for pool in pools.values() {
            let old = pool.size.swap(max_per_pool, Ordering::Relaxed);
            if max_per_pool > old {
                pool.permits.add_permits(max_per_pool - old);
            } else {
                let _ = pool.permits.forget_permits(old - max_per_pool);
            }
        }
    }

    fn checkout_timeout(&self) -> Duration {
        Duration::from_millis(self.checkout_timeout_ms.load(Ordering::Relaxed))
    }

    /// (idle, in use) per pool, for status pages.
    pub fn usage(&self) -> Vec<(PoolKey, usize, usize)> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .iter()
            .map(|(key, pool)| {
                let idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).len();
                let in_use = pool
                    .size
                    .load(Ordering::Relaxed)
                    .saturating_sub(pool.permits.available_permits());
                (key.clone(), idle, in_use)
            })
            .collect()
    }
}

impl NodePool {
    /// An idle connection that is still open, and whether it is the one kept for
    /// `reservation`: that one if it waits here, else the most recently used one kept for
    /// nobody (LIFO keeps few connections warm and lets the rest age out), else, when the pool
    /// has no room to open another, the oldest one kept for another session.
    fn take_live_idle(&self, reservation: Option<&Reservation>) -> Option<(Box<ServerConn>, bool)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let (i, reserved) = self.pick_idle(&idle, reservation)?;
            let entry = idle.remove(i);
            if !entry.conn.is_stale() {
                return Some((entry.conn, reserved));
            }
        }
    }

    fn pick_idle(&self, idle: &[Idle], reservation: Option<&Reservation>) -> Option<(usize, bool)> {
        if let Some(i) = reservation.and_then(|r| idle.iter().rposition(|entry| r.holds(entry))) {
            return Some((i, true));
        }
        if let Some(i) = idle.iter().rposition(|entry| !entry.is_kept()) {
            return Some((i, false));
        }
        // The borrower's own permit is counted among those in use.
        let size = self.size.load(Ordering::Relaxed);
        let in_use = size.saturating_sub(self.permits.available_permits());
        let full = in_use + idle.len() >= size;
        (full && !idle.is_empty()).then_some((0, false))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
