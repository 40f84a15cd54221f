//! Recent events worth an operator's attention (bans, recoveries, promotions, reloads), kept in a
//! small ring for the dashboard and the admin API. Logged as they happen too.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How many events are kept.
const KEPT: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// "ban", "healthy", "promotion", "reload", "reload_refused".
    pub kind: &'static str,
    pub node: Option<String>,
    pub detail: String,
}

static EVENTS: Mutex<VecDeque<Event>> = Mutex::new(VecDeque::new());

/// Records an event.
pub fn record(kind: &'static str, node: Option<&str>, detail: impl Into<String>) {
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut events = EVENTS.lock().unwrap_or_else(|p| p.into_inner());
    if events.len() == KEPT {
        events.pop_front();
    }
    events.push_back(Event {
        at_ms,
        kind,
        node: node.map(str::to_string),
        detail: detail.into(),
    });
}

/// The most recent events, newest last.
pub fn recent() -> Vec<Event> {
    EVENTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect()
}
