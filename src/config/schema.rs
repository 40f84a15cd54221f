//! The file format: serde structs for the parts of the file that differ from the public types
//! (clusters and nodes, whose `addr` becomes host and port and whose names have defaults), the
//! string-valued types (durations, addresses), and the conversion into [`Config`].
//!
//! Every struct here denies unknown keys: a misspelt key is an error, never a silently ignored
//! setting. Values are checked while deserializing, so their errors carry the toml crate's span.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::address::{parse_listen_address, parse_node_address};
use super::security::{AccessRule, AuthQuerySettings, TlsSettings};
use super::{
    CacheSettings, CausalTokenTiming, ClusterConfig, Config, ConsistencyConfig, ConsistencyMode,
    ConsoleSettings, FailoverSettings, HealthSettings, LagFallback, Limits, LoadBalancing,
    LogSettings, MonitorSettings, NodeConfig, PoolSettings, RoutingSettings, Timeouts, UserConfig,
};

/// The name of a cluster that does not give one, and of the quick-start cluster.
pub(crate) const DEFAULT_CLUSTER_NAME: &str = "main";

/// The whole file. Sections that are absent take their defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub listen: Option<ListenAddr>,
    #[serde(default)]
    pub admin: Option<ListenAddr>,
    #[serde(default)]
    pub admin_token: Option<super::Token>,
    #[serde(default)]
    pub worker_threads: usize,
    #[serde(default)]
    pub pool: PoolSettings,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub routing: RoutingSettings,
    #[serde(default)]
    pub monitor: MonitorSettings,
    #[serde(default)]
    pub health: HealthSettings,
    #[serde(default)]
    pub failover: FailoverSettings,
    #[serde(default)]
    pub console: ConsoleSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub sharding: Option<crate::shard::config::ShardingConfig>,
    /// Absent means none; validation then says at least one is needed, which reads better than
    /// serde's "missing field".
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub access: Vec<AccessRule>,
    #[serde(default)]
    pub auth_query: Option<AuthQuerySettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    #[serde(default = "default_cluster_name")]
    pub name: String,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    #[serde(default)]
    pub primary_read_weight: u32,
    #[serde(default)]
    pub consistency: ConsistencyMode,
    #[serde(default = "default_max_lag", deserialize_with = "duration")]
    pub max_lag: Duration,
    #[serde(default)]
    pub max_lag_bytes: Option<u64>,
    #[serde(default)]
    pub lag_fallback: LagFallback,
    #[serde(default = "default_lag_wait", deserialize_with = "duration")]
    pub lag_wait: Duration,
    #[serde(default, deserialize_with = "duration")]
    pub ryw_wait: Duration,
    #[serde(default)]
    pub causal_token: CausalTokenTiming,
    pub primary: RawNode,
    #[serde(default)]
    pub replicas: Vec<RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    #[serde(default)]
    pub name: Option<String>,
    pub addr: NodeAddr,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// A listener address: numeric IP and port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenAddr(pub SocketAddr);

/// A server address: host (name or IP) and port.
#[derive(Debug, Clone)]
pub(crate) struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = parse_node_address(text)?;
        Ok(Self { host, port })
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_string(deserializer, "an \"ip:port\" string", |text| {
            parse_listen_address(text).map(ListenAddr)
        })
    }
}

impl<'de> Deserialize<'de> for NodeAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_string(deserializer, "a \"host:port\" string", NodeAddr::parse)
    }
}

/// `deserialize_with` for durations written as humantime strings: "100ms", "5s", "2m".
pub(crate) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    parse_string(
        deserializer,
        "a duration string such as \"100ms\", \"5s\" or \"2m\"",
        |text| {
            humantime::parse_duration(text).map_err(|err| {
                format!(
                    "invalid duration {text:?}: {err}; expected a number and a unit, such as \
                     \"100ms\", \"5s\" or \"2m\""
                )
            })
        },
    )
}

/// `deserialize_with` for an optional duration string.
pub(crate) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// Deserializes a string and parses it. The `expecting` text is what serde prints when the value
/// is not a string at all, so a number where a duration belongs says what to write instead.
fn parse_string<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_str(ParseVisitor {
        expecting,
        parse,
        marker: PhantomData,
    })
}

struct ParseVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
    marker: PhantomData<T>,
}

impl<T> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.parse)(text).map_err(E::custom)
    }
}

fn default_weight() -> u32 {
    NodeConfig::DEFAULT_WEIGHT
}

fn default_max_lag() -> Duration {
    ConsistencyConfig::default().max_lag
}

fn default_lag_wait() -> Duration {
    ConsistencyConfig::default().lag_wait
}

fn default_cluster_name() -> String {
    DEFAULT_CLUSTER_NAME.to_owned()
}

/// The name of a node that does not give one: "primary", "replica1", "replica2", ... With
/// several clusters these would clash, so they are prefixed with the cluster's name:
/// "main.primary", "main.replica1", "shard2.primary".
pub(crate) fn default_node_name(cluster: &str, several_clusters: bool, role: &str) -> String {
    if several_clusters {
        format!("{cluster}.{role}")
    } else {
        role.to_owned()
    }
}

/// The role part of the default name of replica `index` (0-based).
pub(crate) fn replica_role(index: usize) -> String {
    format!("replica{}", index + 1)
}

impl RawConfig {
    /// Applies defaults and names. Nothing here can fail: values were checked while
    /// deserializing, and cross-checks belong to validation.
    pub fn into_config(self, source: Option<PathBuf>) -> Config {
        let several = self.clusters.len() > 1;
        Config {
            listen: self.listen.map_or_else(default_listen, |addr| addr.0),
            admin: self.admin.map(|addr| addr.0),
            admin_token: self.admin_token,
            worker_threads: self.worker_threads,
            pool: self.pool,
            timeouts: self.timeouts,
            limits: self.limits,
            routing: self.routing.normalized(),
            monitor: self.monitor,
            health: self.health,
            failover: self.failover,
            console: self.console,
            log: self.log,
            cache: self.cache,
            sharding: self.sharding,
            clusters: self
                .clusters
                .into_iter()
                .map(|cluster| cluster.into_cluster(several))
                .collect(),
            users: self.users,
            tls: self.tls,
            access: self.access,
            auth_query: self.auth_query,
            source,
        }
    }
}

/// Where clients connect when the file does not say.
pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6432))
}

impl RawCluster {
    fn into_cluster(self, several_clusters: bool) -> ClusterConfig {
        let name_node = |node: RawNode, role: String| {
            let default = || default_node_name(&self.name, several_clusters, &role);
            node.into_node(default)
        };
        let primary = name_node(self.primary, "primary".to_owned());
        let replicas = self
            .replicas
            .into_iter()
            .enumerate()
            .map(|(i, node)| name_node(node, replica_role(i)))
            .collect();
        ClusterConfig {
            name: self.name,
            databases: self.databases,
            load_balancing: self.load_balancing,
            primary_read_weight: self.primary_read_weight,
            primary,
            replicas,
            consistency: ConsistencyConfig {
                mode: self.consistency,
                max_lag: self.max_lag,
                max_lag_bytes: self.max_lag_bytes,
                lag_fallback: self.lag_fallback,
                lag_wait: self.lag_wait,
                ryw_wait: self.ryw_wait,
                causal_token: self.causal_token,
            },
        }
    }
}

impl RawNode {
    fn into_node(self, default_name: impl FnOnce() -> String) -> NodeConfig {
        NodeConfig {
            name: self.name.unwrap_or_else(default_name),
            host: self.addr.host,
            port: self.addr.port,
            weight: self.weight,
        }
    }

    /// A node given by address alone (a command-line flag): default name and weight.
    pub fn at(addr: NodeAddr) -> Self {
        Self {
            name: None,
            addr,
            weight: NodeConfig::DEFAULT_WEIGHT,
        }
    }
}

impl RoutingSettings {
    /// PostgreSQL folds unquoted names to lower case, so the file's `MyFunc` is `myfunc`.
    fn normalized(mut self) -> Self {
        for name in &mut self.read_only_functions {
            name.make_ascii_lowercase();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_listen_matches_its_documentation() {
        assert_eq!(default_listen().to_string(), "127.0.0.1:6432");
    }

    #[test]
    fn node_names_are_prefixed_only_with_several_clusters() {
        assert_eq!(default_node_name("main", false, "primary"), "primary");
        assert_eq!(
            default_node_name("shard2", true, &replica_role(0)),
            "shard2.replica1"
        );
    }
}
