//! Server connections pooled per (node, database, user), with a cap per pool and a bounded wait
//! for a free connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{BackendError, ConnectSpec, ServerConn};

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
    pools: Mutex<HashMap<PoolKey, Arc<NodePool>>>,
}

/// The connections of one (node, database, user).
struct NodePool {
    /// Boxed as in [`Checkout`]: a connection leaves and rejoins this list without a copy.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<ServerConn>>>,
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

/// A server connection on loan. Give it back with [`Pools::checkin`]; dropping it closes it,
/// which is the safe default when its state is unknown.
pub struct Checkout {
    /// Boxed: a connection moves from the pool to the session and back for every unit, and
    /// a pointer moves cheaper than the whole record (some 400 bytes).
    pub conn: Box<ServerConn>,
    pool: Arc<NodePool>,
    _permit: OwnedSemaphorePermit,
}

impl Pools {
    pub fn new(max_per_pool: usize, checkout_timeout: Duration) -> Self {
        Pools {
            max_per_pool: AtomicUsize::new(max_per_pool),
            checkout_timeout_ms: AtomicU64::new(millis(checkout_timeout)),
            pools: Mutex::new(HashMap::new()),
        }
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
    /// pass-through login lets the server itself check the client's password.
    /// `spec` is called only when a new connection must be opened.
    pub async fn checkout(
        &self,
        handle: &PoolHandle,
        spec: impl FnOnce() -> ConnectSpec,
        fresh: bool,
    ) -> Result<Checkout, PoolError> {
        let pool = Arc::clone(&handle.pool);
        let permit = match pool.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // Only a full pool pays for a timer.
            Err(_) => self.wait_for_permit(handle).await?,
        };
        let idle = if fresh { None } else { pool.take_live_idle() };
        let conn = match idle {
            Some(conn) => conn,
            None => Box::new(ServerConn::connect(&spec()).await?),
        };
        Ok(Checkout {
            conn,
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
        let Checkout {
            conn,
            pool,
            _permit,
        } = checkout;
        let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Fresh logins can open connections beside idle ones; keeping at most the pool's cap
        // idle bounds what the pool holds open.
        if conn.tx_status == b'I' && idle.len() < self.max_per_pool.load(Ordering::Relaxed) {
            idle.push(conn);
        }
    }

    /// Applies reloaded settings: every pool grows or shrinks to `max_per_pool` (shrinking takes
    /// effect as connections come back), and later checkouts wait `checkout_timeout`.
    pub fn resize(&self, max_per_pool: usize, checkout_timeout: Duration) {
        self.max_per_pool.store(max_per_pool, Ordering::Relaxed);
        self.checkout_timeout_ms
            .store(millis(checkout_timeout), Ordering::Relaxed);
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
    /// The most recently used idle connection that is still open (LIFO keeps few connections
    /// warm and lets the rest age out).
    fn take_live_idle(&self) -> Option<Box<ServerConn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.is_stale() {
                return Some(conn);
            }
        }
        None
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
