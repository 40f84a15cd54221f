//! Two-phase commit across shards, the part no session holds: the names pgsplit gives the
//! transactions it prepares, and recovery of those a stopped pgsplit left prepared.
//!
//! A multi-shard commit prepares every participant but one as
//! `pgsplit:<coordinator cluster>:<xid>:<i>`, where `<xid>` is the coordinator's own
//! transaction (`txid_current()`, epoch-qualified), then commits the coordinator: that commit
//! is the decision. So anyone can finish the work from the servers alone: a prepared
//! participant is committed if `txid_status(xid)` on the coordinator says committed, rolled
//! back if aborted or unknown, and left alone while in progress (a live pgsplit is on it).
//! Any instance recovers any other's transactions; pgsplit keeps no log of its own.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::config::MonitorSettings;
use crate::frontend::Shared;
use crate::topology::{Node, Topology};

/// Every gid pgsplit prepares starts so; recovery looks at no other.
pub const GID_PREFIX: &str = "pgsplit:";

/// How often recovery looks for prepared transactions left behind.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(3);

/// The bound on each of recovery's connections and queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of one prepared participant of a multi-shard transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gid {
    /// The cluster whose plain COMMIT decides the transaction.
    pub coordinator: String,
    /// The coordinator's transaction id, epoch-qualified (`txid_current()`).
    pub xid: i64,
    /// The participant's number in the transaction.
    pub index: usize,
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{GID_PREFIX}{}:{}:{}",
            self.coordinator, self.xid, self.index
        )
    }
}

impl Gid {
    /// Reads a gid pgsplit wrote; None for any other. The cluster name may hold colons: the
    /// numbers are taken from the right.
    pub fn parse(text: &str) -> Option<Gid> {
        let rest = text.strip_prefix(GID_PREFIX)?;
        let (rest, index) = rest.rsplit_once(':')?;
        let (coordinator, xid) = rest.rsplit_once(':')?;
        if coordinator.is_empty() {
            return None;
        }
        Some(Gid {
            coordinator: coordinator.to_string(),
            xid: xid.parse().ok()?,
            index: index.parse().ok()?,
        })
    }

    /// The gid as an SQL string literal.
    pub fn literal(&self) -> String {
        format!("'{}'", self.to_string().replace('\'', "''"))
    }
}

/// What to do with a prepared participant, from its coordinator's transaction status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Rollback,
    /// Still in progress: a live pgsplit is committing it.
    Leave,
}

impl Decision {
    /// `txid_status(xid)`: committed, aborted, in progress, or NULL when too old or unknown
    /// (then nothing can show it committed: roll back).
    pub fn from_status(status: Option<&str>) -> Decision {
        match status {
            Some("committed") => Decision::Commit,
            Some("in progress") => Decision::Leave,
            _ => Decision::Rollback,
        }
    }

    /// The statement that carries it out on the participant's server.
    fn sql(self, gid: &Gid) -> Option<String> {
        match self {
            Decision::Commit => Some(format!("COMMIT PREPARED {}", gid.literal())),
            Decision::Rollback => Some(format!("ROLLBACK PREPARED {}", gid.literal())),
            Decision::Leave => None,
        }
    }

    /// The event kind, and the metric's `outcome` label.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Decision::Commit => ("two_phase_commit", "commit"),
            Decision::Rollback => ("two_phase_rollback", "rollback"),
            Decision::Leave => ("two_phase_in_progress", "in_progress"),
        }
    }
}

/// Runs recovery now and then every few seconds while `[sharding] two_phase_commit` is on
/// (a reload may turn it on or off), until shutdown.
pub fn spawn(shared: Arc<Shared>) {
    tokio::spawn(async move {
        while !shared.is_shutting_down() {
            let enabled = shared
                .live()
                .sharding
                .as_ref()
                .is_some_and(|s| s.two_phase_commit);
            if enabled {
                let resolved = recover_all(&shared).await;
                if resolved > 0 {
                    tracing::info!(
                        resolved,
                        "two-phase recovery resolved prepared transactions"
                    );
                }
            }
            tokio::time::sleep(RECOVERY_INTERVAL).await;
        }
    });
}

/// One round over every cluster's primary; how many prepared transactions it resolved.
pub async fn recover_all(shared: &Shared) -> usize {
    let topology = shared.topology.load_full();
    let settings = shared.live().config.monitor.clone();
    let mut resolved = 0;
    for cluster in &topology.clusters {
        let recovery = Recovery {
            topology: &topology,
            settings: &settings,
            shared,
        };
        match recovery.shard(&cluster.primary).await {
            Ok(n) => resolved += n,
            Err(e) => {
                // The monitor reports a primary that is down; this says only what waits for it.
                tracing::info!(node = %cluster.primary.name, error = %e, "two-phase recovery could not check this shard");
            }
        }
    }
    resolved
}

struct Recovery<'a> {
    topology: &'a Topology,
    settings: &'a MonitorSettings,
    shared: &'a Shared,
}

impl Recovery<'_> {
    /// Resolves the prepared transactions pgsplit left on one shard's primary.
    async fn shard(&self, primary: &Node) -> Result<usize, String> {
        let listing = self.connect(primary, None).await?;
        let rows = bounded(listing.simple_query(&format!(
            "SELECT gid, database FROM pg_prepared_xacts WHERE gid LIKE '{GID_PREFIX}%' ORDER BY prepared"
        )))
        .await?;
        let mut by_database: HashMap<String, Client> = HashMap::new();
        let mut resolved = 0;
        for (gid, database) in rows.iter().filter_map(gid_and_database) {
            let decision = self.decide(&gid).await?;
            let Some(sql) = decision.sql(&gid) else {
                continue;
            };
            // COMMIT PREPARED must run in the database the transaction was prepared in.
            if !by_database.contains_key(&database) {
                let client = self.connect(primary, Some(&database)).await?;
                by_database.insert(database.clone(), client);
            }
            if let Some(client) = by_database.get(&database) {
                bounded(client.simple_query(&sql)).await?;
            }
            self.record(primary, &gid, decision);
            resolved += 1;
        }
        Ok(resolved)
    }

    /// Asks the coordinator's primary how its transaction ended.
    async fn decide(&self, gid: &Gid) -> Result<Decision, String> {
        let Some(cluster) = self
            .topology
            .clusters
            .iter()
            .find(|c| c.name == gid.coordinator)
        else {
            // Unknown coordinator (a config change?): its status cannot be known, so leave it
            // for an operator rather than guess.
            tracing::warn!(%gid, "two-phase recovery: the coordinator cluster is not configured; left prepared");
            return Ok(Decision::Leave);
        };
        let client = self.connect(&cluster.primary, None).await?;
        let rows =
            bounded(client.simple_query(&format!("SELECT txid_status({})", gid.xid))).await?;
        let status = rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        });
        Ok(Decision::from_status(status.flatten().as_deref()))
    }

    async fn connect(&self, node: &Node, database: Option<&str>) -> Result<Client, String> {
        let mut config =
            crate::topology::monitor::monitor_config(node, self.settings, QUERY_TIMEOUT);
        config.application_name("pgsplit two-phase recovery");
        if let Some(database) = database {
            config.dbname(database);
        }
        let (client, connection) =
            tokio::time::timeout(QUERY_TIMEOUT, crate::tls::connect_internal(&mut config))
                .await
                .map_err(|_| format!("connecting to {} timed out", node.name))?
                .map_err(|e| format!("connecting to {}: {e}", node.name))?;
        tokio::spawn(connection);
        Ok(client)
    }

    fn record(&self, node: &Node, gid: &Gid, decision: Decision) {
        let (event, outcome) = decision.names();
        tracing::warn!(node = %node.name, %gid, outcome, "two-phase recovery resolved a prepared transaction");
        crate::events::record(event, Some(&node.name), gid.to_string());
        self.shared.metrics.two_phase_resolved(outcome);
    }
}

fn gid_and_database(message: &SimpleQueryMessage) -> Option<(Gid, String)> {
    let SimpleQueryMessage::Row(row) = message else {
        return None;
    };
    Some((Gid::parse(row.get(0)?)?, row.get(1)?.to_string()))
}

async fn bounded<T>(
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    tokio::time::timeout(QUERY_TIMEOUT, query)
        .await
        .map_err(|_| format!("a query took longer than {QUERY_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_read_back_what_they_wrote() {
        let gid = Gid {
            coordinator: "shard:a".into(),
            xid: 4_294_967_301,
            index: 2,
        };
        assert_eq!(gid.to_string(), "pgsplit:shard:a:4294967301:2");
        assert_eq!(Gid::parse(&gid.to_string()), Some(gid));
    }

    #[test]
    fn foreign_or_malformed_gids_are_not_ours() {
        for text in [
            "other:shard_a:1:1",
            "pgsplit:",
            "pgsplit::1:1",
            "pgsplit:shard_a:x:1",
            "pgsplit:shard_a:1",
            "pgsplit:shard_a:1:-1",
        ] {
            assert_eq!(Gid::parse(text), None, "{text}");
        }
    }

    #[test]
    fn literals_escape_quotes() {
        let gid = Gid {
            coordinator: "o'brien".into(),
            xid: 7,
            index: 1,
        };
        assert_eq!(gid.literal(), "'pgsplit:o''brien:7:1'");
    }

    #[test]
    fn the_coordinators_status_decides() {
        assert_eq!(Decision::from_status(Some("committed")), Decision::Commit);
        assert_eq!(Decision::from_status(Some("aborted")), Decision::Rollback);
        assert_eq!(Decision::from_status(None), Decision::Rollback);
        assert_eq!(Decision::from_status(Some("in progress")), Decision::Leave);
    }
}
