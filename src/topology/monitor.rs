//! The replay monitor: reads every replica's replayed WAL position over connections of its
//! own, off the data path, and publishes it in the node's stats for the router to compare with
//! a session's causal token.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_postgres::NoTls;

use super::{Node, Topology};
use crate::config::MonitorSettings;

/// Starts one monitoring task per replica of every cluster.
pub fn spawn(topology: &Topology, settings: &MonitorSettings, connect_timeout: Duration) {
    for cluster in &topology.clusters {
        for replica in &cluster.replicas {
            let node = replica.clone();
            let settings = settings.clone();
            tokio::spawn(async move { watch_replica(node, settings, connect_timeout).await });
        }
    }
}

/// Polls one replica forever, reconnecting after failures. While it cannot read the position,
/// the node's LSN is 0 (unknown), so no session that needs its own writes is sent there.
async fn watch_replica(node: Arc<Node>, settings: MonitorSettings, connect_timeout: Duration) {
    loop {
        if let Err(e) = poll_replica(&node, &settings, connect_timeout).await {
            tracing::debug!(node = %node.name, error = %e, "replay monitor lost its connection");
        }
        node.stats.replay_lsn.store(0, Ordering::Relaxed);
        tokio::time::sleep(settings.interval.max(Duration::from_millis(100))).await;
    }
}

async fn poll_replica(
    node: &Node,
    settings: &MonitorSettings,
    connect_timeout: Duration,
) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = monitor_config(node, settings, connect_timeout)
        .connect(NoTls)
        .await?;
    let connection = tokio::spawn(connection);
    let statement = client
        .prepare("SELECT pg_last_wal_replay_lsn()::text")
        .await?;
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        ticks.tick().await;
        let row = match client.query_one(&statement, &[]).await {
            Ok(row) => row,
            Err(e) => break Err(e),
        };
        let lsn = row
            .get::<_, Option<&str>>(0)
            .and_then(parse_lsn)
            .unwrap_or(0);
        node.stats.replay_lsn.store(lsn, Ordering::Relaxed);
    };
    connection.abort();
    result
}

fn monitor_config(
    node: &Node,
    settings: &MonitorSettings,
    connect_timeout: Duration,
) -> tokio_postgres::Config {
    let (host, port) = split_addr(&node.addr);
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(&settings.user)
        .dbname(&settings.database)
        .application_name("pgsplit monitor")
        .connect_timeout(connect_timeout);
    if let Some(password) = &settings.password {
        config.password(password);
    }
    config
}

/// "host:port" or "[v6]:port" into its parts (the topology built it that way).
fn split_addr(addr: &str) -> (&str, u16) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "5432"));
    (
        host.trim_start_matches('[').trim_end_matches(']'),
        port.parse().unwrap_or(5432),
    )
}

/// PostgreSQL's text form of an LSN, "16/B374D848", as one 64-bit number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    if high > u64::from(u32::MAX) || low > u64::from(u32::MAX) {
        return None;
    }
    Some(high << 32 | low)
}

/// The text form of an LSN.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("1"), None);
        assert_eq!(parse_lsn("100000000/0"), None);
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_addr("127.0.0.1:5433"), ("127.0.0.1", 5433));
        assert_eq!(split_addr("[::1]:5432"), ("::1", 5432));
    }
}
