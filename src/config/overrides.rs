//! Command-line flags on top of a file, and configurations made from flags alone.

use std::net::SocketAddr;

use super::error::{COMMAND_LINE, ConfigError};
use super::schema::{
    DEFAULT_CLUSTER_NAME, NodeAddr, RawCluster, RawConfig, RawNode, default_node_name, replica_role,
};
use super::validate::validate;
use super::{Config, ConsistencyConfig, LoadBalancing, NodeConfig};

/// Settings given as flags. They win over the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`: replaces `listen`.
    pub listen: Option<SocketAddr>,
    /// `--admin`: replaces (or enables) `admin`.
    pub admin: Option<SocketAddr>,
    /// `--primary host:port`: replaces the address of the first cluster's primary.
    pub primary: Option<String>,
    /// `--replica host:port`, repeatable: when any is given, they replace all replicas of the
    /// first cluster (with default names and weights). None given: the file's replicas stay.
    pub replicas: Vec<String>,
}

const PRIMARY_FLAG: &str = "--primary";
const REPLICA_FLAG: &str = "--replica";

impl Config {
    /// The configuration of `pgsplit quick-start`: one cluster "main" with the given primary and
    /// replicas (named "primary", "replica1", ..., each of weight 1; round-robin reads, none on
    /// the primary), no users (pass-through authentication), and
    /// every other setting at its default.
    pub fn quick_start(primary: &str, replicas: &[String]) -> Result<Config, ConfigError> {
        let defaults = ConsistencyConfig::default();
        let cluster = RawCluster {
            name: DEFAULT_CLUSTER_NAME.to_owned(),
            databases: Vec::new(),
            load_balancing: LoadBalancing::default(),
            primary_read_weight: 0,
            consistency: defaults.mode,
            max_lag: defaults.max_lag,
            max_lag_bytes: defaults.max_lag_bytes,
            lag_fallback: defaults.lag_fallback,
            lag_wait: defaults.lag_wait,
            ryw_wait: defaults.ryw_wait,
            causal_token: defaults.causal_token,
            primary: flag_node(PRIMARY_FLAG, primary)?,
            replicas: replicas
                .iter()
                .map(|addr| flag_node(REPLICA_FLAG, addr))
                .collect::<Result<_, _>>()?,
        };
        let raw = RawConfig {
            clusters: vec![cluster],
            ..RawConfig::default()
        };
        let config = raw.into_config(None);
        validate(&config).map_err(|problem| problem.without_line(COMMAND_LINE))?;
        Ok(config)
    }

    /// A configuration from flags alone, when no file is given: `--primary` is required.
    pub fn from_overrides(overrides: &Overrides) -> Result<Config, ConfigError> {
        let primary = overrides.primary.as_deref().ok_or_else(|| {
            ConfigError::flag(
                PRIMARY_FLAG,
                "required when no configuration file is given (or pass --config <file>)",
            )
        })?;
        let mut config = Config::quick_start(primary, &overrides.replicas)?;
        // Primary and replicas are already in place; applying them again changes nothing, and
        // listen and admin go through the one code path that handles them.
        config.apply_overrides(overrides)?;
        Ok(config)
    }

    /// Applies flags on top of this configuration and checks the result. On error nothing
    /// changes.
    pub fn apply_overrides(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        let mut next = self.clone();
        if let Some(listen) = overrides.listen {
            next.listen = listen;
        }
        if let Some(admin) = overrides.admin {
            next.admin = Some(admin);
        }
        next.override_first_cluster(overrides)?;
        validate(&next).map_err(|problem| problem.without_line(&next.override_origin()))?;
        *self = next;
        Ok(())
    }

    fn override_first_cluster(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        let several = self.clusters.len() > 1;
        // No cluster at all only happens in a hand-built Config; validation reports it.
        let Some(cluster) = self.clusters.first_mut() else {
            return Ok(());
        };
        if let Some(primary) = &overrides.primary {
            let addr = flag_addr(PRIMARY_FLAG, primary)?;
            cluster.primary.host = addr.host;
            cluster.primary.port = addr.port;
        }
        if overrides.replicas.is_empty() {
            return Ok(());
        }
        let mut replicas = Vec::with_capacity(overrides.replicas.len());
        for (i, text) in overrides.replicas.iter().enumerate() {
            let addr = flag_addr(REPLICA_FLAG, text)?;
            replicas.push(NodeConfig {
                name: default_node_name(&cluster.name, several, &replica_role(i)),
                host: addr.host,
                port: addr.port,
                weight: NodeConfig::DEFAULT_WEIGHT,
            });
        }
        cluster.replicas = replicas;
        Ok(())
    }

    /// Where values checked after overriding came from, for error messages.
    fn override_origin(&self) -> String {
        match &self.source {
            Some(path) => format!("{} with command-line overrides", path.display()),
            None => COMMAND_LINE.to_owned(),
        }
    }
}

fn flag_addr(flag: &str, text: &str) -> Result<NodeAddr, ConfigError> {
    NodeAddr::parse(text).map_err(|message| ConfigError::flag(flag, message))
}

fn flag_node(flag: &str, text: &str) -> Result<RawNode, ConfigError> {
    Ok(RawNode::at(flag_addr(flag, text)?))
}
