//! The part of the shared state that a reload replaces whole: the configuration and what is
//! built from it (users ready to check, balancers, the classifier). Sessions read it through
//! one `ArcSwap`, so a reload never blocks them and never leaves a half-applied mix.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::access::AuthQuery;
use crate::cache::{ResultCache, TableRules};
use crate::config::{Config, ConsistencyConfig, LoadBalancing, PoolMode};
use crate::route::balance::Balancer;
use crate::route::classify::{Classifier, FunctionPolicy};
use crate::shard::map::Sharding;
use crate::tls::{ClientTls, ServerTls};

use super::users::{self, ClientUser};

pub struct Live {
    pub config: Config,
    pub users: HashMap<String, ClientUser>,
    pub classifier: Arc<Classifier>,
    /// The result cache, when `cache.max_bytes` is above 0 (kept across reloads that leave its
    /// size alone), and the tables it may hold.
    pub cache: Option<Arc<ResultCache>>,
    pub cache_rules: TableRules,
    /// TLS towards clients and servers, with the certificate files read when this was built.
    pub client_tls: ClientTls,
    pub server_tls: ServerTls,
    /// Reads the passwords of users not in `users` from the primary, when configured.
    pub auth_query: Option<Arc<AuthQuery>>,
    /// Tables sharded by key, when `[sharding]` is configured.
    pub sharding: Option<Arc<Sharding>>,
    /// One balancer per cluster, by name. Kept across reloads when the algorithm stays, so
    /// their cursors carry on.
    /// foldhash: every balanced read looks its cluster up here.
    balancers: foldhash::HashMap<String, Arc<Balancer>>,
}

impl Live {
    /// Builds everything from a validated config, reusing what `previous` had that still fits.
    pub fn build(config: Config, previous: Option<&Live>) -> Result<Live, String> {
        let users = users::prepare_users(&config.users)?;
        let client_tls = ClientTls::load(&config.tls)?;
        let server_tls = ServerTls::load(&config.tls)?;
        let auth_query = match previous {
            Some(p) if p.config.auth_query == config.auth_query => p.auth_query.clone(),
            _ => config
                .auth_query
                .clone()
                .map(|settings| Arc::new(AuthQuery::new(settings, config.timeouts.connect))),
        };
        let classifier = match previous {
            Some(p) if p.config.routing == config.routing => Arc::clone(&p.classifier),
            _ => Arc::new(Classifier::new(
                FunctionPolicy::new(&config.routing.read_only_functions),
                config.routing.classify_cache_bytes,
            )),
        };
        let balancers = config
            .clusters
            .iter()
            .map(|c| {
                let kept = previous
                    .and_then(|p| p.balancers.get(&c.name))
                    .filter(|b| b.algorithm() == c.load_balancing);
                let balancer =
                    kept.map_or_else(|| Arc::new(Balancer::new(c.load_balancing)), Arc::clone);
                (c.name.clone(), balancer)
            })
            .collect();
        let cache = match previous {
            Some(p) if p.config.cache.max_bytes == config.cache.max_bytes => p.cache.clone(),
            _ => (config.cache.max_bytes > 0)
                .then(|| Arc::new(ResultCache::new(config.cache.max_bytes))),
        };
        let cache_rules = TableRules::new(
            config
                .cache
                .tables
                .iter()
                .map(|t| (t.name.clone(), t.ttl.unwrap_or(config.cache.default_ttl))),
        )
        .with_default_ttl(config.cache.default_ttl);
        let sharding = build_sharding(&config)?;
        Ok(Live {
            cache,
            cache_rules,
            sharding,
            config,
            users,
            client_tls,
            server_tls,
            auth_query,
            classifier,
            balancers,
        })
    }

    /// `pool.mode = "session"`: a client keeps its server connection from login to logout.
    pub fn session_pooling(&self) -> bool {
        self.config.pool.mode == PoolMode::Session
    }

    /// The balancer of a cluster (the default kind for a name the config does not know).
    pub fn balancer(&self, cluster: &str) -> &Balancer {
        static FALLBACK: OnceLock<Balancer> = OnceLock::new();
        self.balancers.get(cluster).map_or_else(
            || FALLBACK.get_or_init(|| Balancer::new(LoadBalancing::default())),
            |b| b.as_ref(),
        )
    }

    /// The consistency settings of a cluster (the defaults for a name the config does not know).
    pub fn consistency(&self, cluster: &str) -> &ConsistencyConfig {
        static DEFAULT: OnceLock<ConsistencyConfig> = OnceLock::new();
        self.config
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .map_or_else(
                || DEFAULT.get_or_init(ConsistencyConfig::default),
                |c| &c.consistency,
            )
    }
}

/// The checked `[sharding]` section; a directory map reaches its cluster's primary as the
/// monitor does (its user, password and database).
fn build_sharding(config: &Config) -> Result<Option<Arc<Sharding>>, String> {
    let Some(section) = &config.sharding else {
        return Ok(None);
    };
    let names: Vec<String> = config.clusters.iter().map(|c| c.name.clone()).collect();
    let connection_for = |cluster: &str| {
        config
            .primary_connection(cluster, "pgsplit shard directory")
            .unwrap_or_default()
    };
    section
        .build(&names, &connection_for)
        .map(|sharding| Some(Arc::new(sharding)))
        .map_err(|issue| issue.to_string())
}
