//! Relations whose cached reads a write to another relation makes stale: a write to a
//! partition changes what its partitioned ancestors return (and a write to a partitioned
//! table what its partitions return), a write to a table changes every view built on it
//! (transitively), and a write through an updatable view changes its base tables.
//!
//! The primary's catalog says which is which; a task reads it every [`REFRESH`] and the cache
//! expands every invalidation through the latest map. A view or partition created since the
//! last read is resolved from the next one on (the TTL bounds that window); DDL through pgsplit
//! already empties the whole cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::names::relation;
use crate::config::MonitorSettings;
use crate::topology::Topology;

/// How often the catalog is read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Pairs (written relation, relation whose reads that write changes), by relation name.
const QUERY: &str = "
WITH partitions AS (
    SELECT c.relname AS part, a.relname AS ancestor
    FROM pg_class c
    CROSS JOIN LATERAL pg_partition_ancestors(c.oid) AS anc(relid)
    JOIN pg_class a ON a.oid = anc.relid
    WHERE c.relispartition AND a.oid <> c.oid
), views AS (
    SELECT DISTINCT t.relname AS base, v.relname AS view
    FROM pg_depend d
    JOIN pg_rewrite r ON r.oid = d.objid
    JOIN pg_class v ON v.oid = r.ev_class
    JOIN pg_class t ON t.oid = d.refobjid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND v.relkind = 'v' AND t.oid <> v.oid
)
SELECT part, ancestor FROM partitions
UNION SELECT ancestor, part FROM partitions
UNION SELECT base, view FROM views
UNION SELECT view, base FROM views";

/// Written relation -> every relation a write to it makes stale (transitively).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Related {
    affected: HashMap<String, Vec<String>>,
}

impl Related {
    /// From direct (written, affected) pairs; closes them transitively (a view on a view on a
    /// partitioned table).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Related {
        let mut direct: HashMap<String, Vec<String>> = HashMap::new();
        for (written, affected) in pairs {
            direct
                .entry(relation(written))
                .or_default()
                .push(relation(affected));
        }
        let affected = direct
            .keys()
            .map(|start| (start.clone(), reachable(&direct, start)))
            .collect();
        Related { affected }
    }

    /// `tables` and every relation their writes make stale, without repeats.
    pub fn expand(&self, tables: &[String]) -> Vec<String> {
        let mut out: Vec<String> = tables.to_vec();
        for table in tables {
            if let Some(more) = self.affected.get(&relation(table)) {
                out.extend(more.iter().filter(|r| !tables.contains(r)).cloned());
            }
        }
        let mut seen = HashSet::new();
        out.retain(|t| seen.insert(t.clone()));
        out
    }
}

/// Every relation reachable from `start` in `direct`, `start` excluded.
fn reachable(direct: &HashMap<String, Vec<String>>, start: &str) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::from([start]);
    let mut queue: VecDeque<&str> = VecDeque::from([start]);
    let mut out = Vec::new();
    while let Some(next) = queue.pop_front() {
        for affected in direct.get(next).into_iter().flatten() {
            if seen.insert(affected) {
                out.push(affected.clone());
                queue.push_back(affected);
            }
        }
    }
    out
}

/// Reads the first cluster's primary catalog into `related` every [`REFRESH`], for good.
pub fn spawn(
    related: Arc<ArcSwap<Related>>,
    topology: Arc<ArcSwap<Topology>>,
    settings: MonitorSettings,
    connect_timeout: Duration,
) {
    tokio::spawn(async move {
        loop {
            match read_catalog(&topology, &settings, connect_timeout).await {
                Ok(fresh) => related.store(Arc::new(fresh)),
                Err(e) => tracing::debug!(error = %e, "views and partitions not read"),
            }
            tokio::time::sleep(REFRESH).await;
        }
    });
}

async fn read_catalog(
    topology: &ArcSwap<Topology>,
    settings: &MonitorSettings,
    connect_timeout: Duration,
) -> Result<Related, String> {
    let (client, connection) =
        crate::topology::monitor::connect_first_primary(topology, settings, connect_timeout)
            .await?;
    let driver = tokio::spawn(connection);
    let rows = client.query(QUERY, &[]).await.map_err(|e| e.to_string());
    driver.abort();
    let rows = rows?;
    let pairs: Vec<(&str, &str)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(Related::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::Related;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn expands_transitively_and_without_repeats() {
        let related = Related::from_pairs([
            ("orders_2024", "orders"),
            ("orders", "orders_2024"),
            ("orders", "recent_orders"),
            ("recent_orders", "orders"),
            ("recent_orders", "big_recent_orders"),
        ]);
        let mut got = related.expand(&strings(&["public.orders_2024"]));
        got.sort();
        assert_eq!(
            got,
            strings(&[
                "big_recent_orders",
                "orders",
                "public.orders_2024",
                "recent_orders"
            ])
        );
        assert_eq!(related.expand(&strings(&["other"])), strings(&["other"]));
    }
}
