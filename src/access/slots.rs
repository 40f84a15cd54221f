//! Per-user connection limits: a slot is taken when a user's login succeeds and given back when
//! the session ends (the slot is dropped with the client's connection).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct UserSlots {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open session of a user; dropping it frees the slot.
pub struct UserSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl UserSlots {
    /// A slot for `user`, or None when `limit` sessions are open already (0: no limit).
    pub fn acquire(&self, user: &str, limit: usize) -> Option<UserSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(user.to_string()).or_default();
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(UserSlot {
            open: Arc::clone(&self.open),
            user: user.to_string(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// Client connections open in the whole process, limited by the limit in force when each one
/// arrives (so a reload that lowers it refuses new clients without closing open ones).
#[derive(Default)]
pub struct ClientSlots {
    open: Arc<AtomicUsize>,
}

/// One open client connection; dropping it frees the slot.
pub struct ClientSlot {
    open: Arc<AtomicUsize>,
}

impl ClientSlots {
    /// A slot, or None when `limit` connections are open already.
    pub fn acquire(&self, limit: usize) -> Option<ClientSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .ok()?;
        Some(ClientSlot {
            open: Arc::clone(&self.open),
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_slots_follow_the_limit_in_force() {
        let slots = ClientSlots::default();
        let held: Vec<_> = (0..3).map(|_| slots.acquire(3).expect("under")).collect();
        assert!(slots.acquire(3).is_none());
        assert!(slots.acquire(4).is_some(), "a raised limit admits at once");
        assert!(
            slots.acquire(2).is_none(),
            "a lowered one refuses new clients"
        );
        drop(held);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn slots_are_limited_per_user_and_freed_on_drop() {
        let slots = UserSlots::default();
        let a1 = slots.acquire("a", 2).expect("first");
        let _a2 = slots.acquire("a", 2).expect("second");
        assert!(slots.acquire("a", 2).is_none());
        assert!(slots.acquire("b", 2).is_some());
        drop(a1);
        assert!(slots.acquire("a", 2).is_some());
        assert!((0..100).all(|_| slots.acquire("c", 0).is_some()));
    }
}
