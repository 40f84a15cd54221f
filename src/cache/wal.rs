//! `invalidation = "wal"`: writes that bypass pgsplit (other applications, psql on the server,
//! triggers writing other tables) invalidate too. One task per process follows the primary's
//! WAL through a temporary logical replication slot with the built-in `test_decoding` plugin,
//! polling `pg_logical_slot_get_changes`, and drops the entries that read every table a
//! committed transaction changed (INSERT, UPDATE, DELETE, TRUNCATE), stamped with the commit's
//! WAL position so that a lagging replica's older answer is not stored afterwards.
//!
//! A temporary slot belongs to its connection: when pgsplit stops or the connection is lost,
//! the server drops it, so no slot is left behind to hold WAL forever. The price is that
//! changes made while no slot exists are never seen: the cache is emptied and unused until a
//! new slot follows again. Without `wal_level = logical` no slot can exist: pgsplit says so
//! once and the cache keeps working with commit invalidation (the TTL bounds other writes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_postgres::Client;

use super::names::normalize;
use super::store::ResultCache;
use crate::config::MonitorSettings;
use crate::topology::Topology;
use crate::topology::monitor::parse_lsn;

/// How long to wait before following again after the slot was lost.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Creating a logical slot waits for transactions running at that moment to end.
const CREATE_SLOT_TIMEOUT: Duration = Duration::from_secs(10);

const STARTING: u8 = 0;
const FOLLOWING: u8 = 1;
const LOST: u8 = 2;
/// The primary's wal_level is not logical: no slot can follow it.
const UNAVAILABLE: u8 = 3;

/// Whether the WAL is being followed.
pub struct WalFollower {
    state: AtomicU8,
}

impl WalFollower {
    /// The cache may be used: every committed change reaches it, or no slot can exist (and
    /// commit invalidation with the TTL is what the operator gets, as the log said).
    pub fn cache_usable(&self) -> bool {
        matches!(self.state.load(Ordering::Relaxed), FOLLOWING | UNAVAILABLE)
    }

    pub fn is_following(&self) -> bool {
        self.state.load(Ordering::Relaxed) == FOLLOWING
    }
}

/// Starts following the first cluster's primary for `cache`.
pub fn spawn(
    cache: Arc<ResultCache>,
    topology: Arc<ArcSwap<Topology>>,
    settings: MonitorSettings,
    connect_timeout: Duration,
    poll_interval: Duration,
) -> Arc<WalFollower> {
    let follower = Arc::new(WalFollower {
        state: AtomicU8::new(STARTING),
    });
    let state = Arc::clone(&follower);
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            let Err(stopped) = follow(
                &state,
                &cache,
                &topology,
                &settings,
                connect_timeout,
                poll_interval,
            )
            .await;
            match stopped {
                Stopped::WalLevel(level) => {
                    state.state.store(UNAVAILABLE, Ordering::Relaxed);
                    if !warned {
                        warned = true;
                        tracing::warn!(wal_level = %level, "cache.invalidation = \"wal\" needs wal_level = logical on the primary; until it is set (and the primary restarted), writes that bypass pgsplit are bounded only by the cache TTL");
                        crate::events::record(
                            "cache_wal_unavailable",
                            None,
                            format!("wal_level = {level}"),
                        );
                    }
                }
                Stopped::Error(error) => {
                    if state.state.swap(LOST, Ordering::Relaxed) == FOLLOWING {
                        tracing::warn!(%error, "cache WAL follower lost its slot: the cache is emptied and unused until it follows again");
                        crate::events::record("cache_wal_lost", None, error);
                    }
                    cache.clear();
                }
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
    });
    follower
}

enum Stopped {
    WalLevel(String),
    Error(String),
}

impl<E: std::fmt::Display> From<E> for Stopped {
    fn from(e: E) -> Self {
        Stopped::Error(e.to_string())
    }
}

/// Follows the current primary until something stops it.
async fn follow(
    state: &WalFollower,
    cache: &ResultCache,
    topology: &ArcSwap<Topology>,
    settings: &MonitorSettings,
    connect_timeout: Duration,
    poll_interval: Duration,
) -> Result<std::convert::Infallible, Stopped> {
    let (client, connection) =
        crate::topology::monitor::connect_first_primary(topology, settings, connect_timeout)
            .await?;
    let driver = tokio::spawn(connection);
    let result = poll_slot(state, cache, &client, poll_interval).await;
    driver.abort();
    result
}

async fn poll_slot(
    state: &WalFollower,
    cache: &ResultCache,
    client: &Client,
    poll_interval: Duration,
) -> Result<std::convert::Infallible, Stopped> {
    let level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    if level != "logical" {
        return Err(Stopped::WalLevel(level));
    }
    let slot = format!("pgsplit_cache_{:016x}", rand::random::<u64>());
    let create = "SELECT pg_create_logical_replication_slot($1, 'test_decoding', true)";
    tokio::time::timeout(CREATE_SLOT_TIMEOUT, client.execute(create, &[&slot]))
        .await
        .map_err(|_| Stopped::Error("creating the logical slot timed out".into()))??;
    // What was written before the slot existed went unseen.
    cache.clear();
    state.state.store(FOLLOWING, Ordering::Relaxed);
    tracing::info!(%slot, "cache follows the primary's WAL");
    let changes = client
        .prepare("SELECT lsn::text, data FROM pg_logical_slot_get_changes($1, NULL, NULL)")
        .await?;
    let mut transaction = Vec::new();
    loop {
        for row in client.query(&changes, &[&slot]).await? {
            let (lsn, data): (&str, &str) = (row.get(0), row.get(1));
            if let Some(tables) = changed_tables(data) {
                transaction.extend(tables);
            } else if data.starts_with("COMMIT") && !transaction.is_empty() {
                // Past the commit record's start: a node that replayed it reflects the change.
                let committed = parse_lsn(lsn).map_or(0, |l| l + 1);
                cache.invalidate_tables(&std::mem::take(&mut transaction), committed);
            } else if data.starts_with("BEGIN") {
                transaction.clear();
            }
        }
        tokio::time::sleep(poll_interval).await;
    }
}

/// The tables a `test_decoding` change line names (`table public.t: INSERT: ...`,
/// `table public.a, public.b: TRUNCATE: ...`), normalized; None for other lines.
fn changed_tables(line: &str) -> Option<Vec<String>> {
    let rest = line.strip_prefix("table ")?;
    let end = [": INSERT:", ": UPDATE:", ": DELETE:", ": TRUNCATE:"]
        .iter()
        .filter_map(|op| rest.find(op))
        .min()?;
    Some(
        split_names(&rest[..end])
            .into_iter()
            .map(normalize)
            .collect(),
    )
}

/// Comma-separated, possibly quoted names; a comma inside quotes is part of a name.
fn split_names(list: &str) -> Vec<&str> {
    let mut quoted = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts
}

#[cfg(test)]
mod tests {
    use super::changed_tables;

    #[test]
    fn reads_the_tables_of_change_lines() {
        let tables = |line| changed_tables(line).unwrap_or_default();
        assert_eq!(tables("table public.t: INSERT: id[integer]:1"), ["t"]);
        assert_eq!(tables("table s.u: UPDATE: v[text]:'x: INSERT:'"), ["s.u"]);
        assert_eq!(
            tables("table public.\"Odd, name\": DELETE: (no-tuple-data)"),
            ["odd, name"]
        );
        assert_eq!(
            tables("table public.a, public.b: TRUNCATE: (no-flags)"),
            ["a", "b"]
        );
        assert_eq!(changed_tables("BEGIN 740"), None);
        assert_eq!(changed_tables("COMMIT 740"), None);
        assert_eq!(
            changed_tables("message: transactional: 1 prefix: p, sz: 1 content:x"),
            None
        );
    }
}
