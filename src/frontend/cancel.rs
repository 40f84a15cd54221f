//! Cancel keys: each client gets a key issued by pgsplit, mapped to whichever server process
//! runs its statement at the moment a CancelRequest arrives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::protocol::CancelKey;

/// A server process that a cancel would reach: its address and its own key.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    pub addr: Arc<str>,
    pub key: CancelKey,
}

impl CancelTarget {
    /// The server process behind `conn` (no copy of its address: one target per attach).
    pub fn of(conn: &crate::backend::ServerConn) -> Self {
        CancelTarget {
            addr: conn.addr.clone(),
            key: conn.key,
        }
    }
}

type Slot = Arc<Mutex<Option<CancelTarget>>>;

#[derive(Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<i32, (i32, Slot)>>,
}

/// A session's entry in the registry; dropping it unregisters the key.
pub struct CancelHandle {
    pub key: CancelKey,
    slot: Slot,
    registry: Arc<CancelRegistry>,
}

impl CancelRegistry {
    /// Issues a fresh key, unique among live sessions.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        let slot: Slot = Arc::new(Mutex::new(None));
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let key = loop {
            let key = CancelKey {
                pid: rand::random_range(1..i32::MAX),
                secret: rand::random(),
            };
            if !sessions.contains_key(&key.pid) {
                break key;
            }
        };
        sessions.insert(key.pid, (key.secret, slot.clone()));
        CancelHandle {
            key,
            slot,
            registry: self.clone(),
        }
    }

    /// Forwards a client's CancelRequest to the server process running its statement. A wrong
    /// key is ignored silently, as PostgreSQL does.
    pub async fn cancel(&self, key: CancelKey, timeout: Duration) {
        let target = {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            match sessions.get(&key.pid) {
                Some((secret, slot)) if *secret == key.secret => {
                    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
                }
                _ => None,
            }
        };
        if let Some(target) = target
            && let Err(e) = crate::backend::send_cancel(&target.addr, target.key, timeout).await
        {
            tracing::warn!(addr = %target.addr, error = %e, "could not forward a cancel request");
        }
    }
}

impl CancelHandle {
    /// Points the key at the server process now serving the session (None: no server).
    pub fn set_target(&self, target: Option<CancelTarget>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        let mut sessions = self
            .registry
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        sessions.remove(&self.key.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_unregister_on_drop() {
        let registry = Arc::new(CancelRegistry::default());
        let a = registry.register();
        let b = registry.register();
        assert_ne!(a.key.pid, b.key.pid);
        drop(a);
        assert_eq!(registry.sessions.lock().unwrap().len(), 1);
    }
}
