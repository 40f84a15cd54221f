//! Cross-checks on a typed [`Config`]: what serde cannot see from one value alone (uniqueness,
//! which cluster serves what, passwords that fit their auth method) and range checks.
//!
//! Checks run on the typed configuration, not the file, so a configuration built from flags is
//! checked by the same code. A failure is a [`Problem`] with a key path; the caller gives it a line.

use std::collections::HashMap;
use std::time::Duration;

use super::error::{KeyPath, Problem};
use super::secret::{PasswordKind, SCRAM_SHAPE, is_malformed_scram};
use super::security;
use super::{AuthMethod, ClusterConfig, Config, LoadBalancing, RoutingSettings, UserConfig};

/// Below this a client could not even send a modest query; PostgreSQL's own startup packets
/// and error messages fit well within it.
pub(crate) const MIN_MESSAGE_SIZE: usize = 1024;
/// The largest length a message header (a signed 32-bit integer) can carry.
const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;
/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), so a longer name never matches.
const MAX_IDENTIFIER_LEN: usize = 63;

/// Returns the first problem found, in file order within each kind of check.
pub(crate) fn validate(config: &Config) -> Result<(), Problem> {
    check_settings(config)?;
    check_routing(&config.routing)?;
    check_clusters(config)?;
    check_node_names(config)?;
    check_databases(config)?;
    check_users(&config.users)?;
    check_console_users(&config.console.users)?;
    security::check_tls(&config.tls)?;
    security::check_access(&config.access)?;
    security::check_auth_query(config.auth_query.as_ref())?;
    check_sharding(config)
}

/// Whether a sharding map places rows on the cluster named `name`.
fn is_shard(config: &Config, name: &str) -> bool {
    config
        .sharding
        .iter()
        .flat_map(|s| &s.maps)
        .any(|map| map.shards.iter().any(|shard| shard == name))
}

/// The `[sharding]` section against the clusters (directory maps are not reached here).
fn check_sharding(config: &Config) -> Result<(), Problem> {
    let Some(sharding) = &config.sharding else {
        return Ok(());
    };
    let clusters: Vec<String> = config.clusters.iter().map(|c| c.name.clone()).collect();
    let unused = |_: &str| tokio_postgres::Config::new();
    match sharding.build(&clusters, &unused) {
        Ok(_) => Ok(()),
        Err(issue) => Err(Problem::new(key_path(&issue.path), issue.message)),
    }
}

fn key_path(parts: &[crate::shard::config::PathPart]) -> KeyPath {
    use crate::shard::config::PathPart;
    parts
        .iter()
        .fold(KeyPath::default(), |path, part| match part {
            PathPart::Key(key) => path.key(key),
            PathPart::Index(index) => path.index(*index),
        })
}

/// More threads than this only adds switching: sessions wait on the network, not on CPU.
const MAX_WORKER_THREADS: usize = 1024;

fn check_settings(config: &Config) -> Result<(), Problem> {
    let pool = KeyPath::top("pool");
    let timeouts = KeyPath::top("timeouts");
    let limits = KeyPath::top("limits");
    at_least(
        pool.key("max_server_connections"),
        config.pool.max_server_connections,
        1,
    )?;
    not_zero(pool.key("checkout_timeout"), config.pool.checkout_timeout)?;
    if config.worker_threads > MAX_WORKER_THREADS {
        return Err(Problem::new(
            KeyPath::top("worker_threads"),
            format!(
                "must be at most {MAX_WORKER_THREADS} (0: one per CPU core), not {}",
                config.worker_threads
            ),
        ));
    }
    not_zero(timeouts.key("connect"), config.timeouts.connect)?;
    not_zero(timeouts.key("client_login"), config.timeouts.client_login)?;
    not_zero(
        KeyPath::top("cache").key("wal_poll_interval"),
        config.cache.wal_poll_interval,
    )?;
    check_message_size(
        limits.key("max_message_size"),
        config.limits.max_message_size,
    )?;
    at_least(
        limits.key("max_client_connections"),
        config.limits.max_client_connections,
        1,
    )?;
    if config.admin == Some(config.listen) {
        return Err(Problem::new(
            KeyPath::top("admin"),
            format!(
                "the admin server cannot share the listen address {}; give it another port",
                config.listen
            ),
        ));
    }
    Ok(())
}

fn at_least(path: KeyPath, value: usize, min: usize) -> Result<(), Problem> {
    if value >= min {
        return Ok(());
    }
    Err(Problem::new(
        path,
        format!("must be at least {min}, not {value}"),
    ))
}

fn not_zero(path: KeyPath, value: Duration) -> Result<(), Problem> {
    if !value.is_zero() {
        return Ok(());
    }
    Err(Problem::new(
        path,
        "must be longer than zero; write a duration such as \"100ms\", \"5s\" or \"2m\"",
    ))
}

fn check_message_size(path: KeyPath, value: usize) -> Result<(), Problem> {
    if (MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&value) {
        return Ok(());
    }
    Err(Problem::new(
        path,
        format!(
            "{value} bytes is out of range; allowed: {MIN_MESSAGE_SIZE} to {MAX_MESSAGE_SIZE} \
             (the largest length a PostgreSQL message header can carry)"
        ),
    ))
}

fn check_clusters(config: &Config) -> Result<(), Problem> {
    if config.clusters.is_empty() {
        return Err(Problem::new(
            KeyPath::top("clusters"),
            "at least one [[clusters]] section is required, naming a primary to forward to",
        ));
    }
    let clusters = KeyPath::top("clusters");
    for (i, cluster) in config.clusters.iter().enumerate() {
        let path = clusters.index(i);
        check_name(&cluster.name, path.key("name"), "a cluster", false)?;
        check_weights(cluster, path.key("load_balancing"))?;
        // The first cluster is the default; an empty list anywhere else would make a cluster
        // nothing can reach, unless it is a shard (reached by key).
        if i > 0 && cluster.databases.is_empty() && !is_shard(config, &cluster.name) {
            return Err(Problem::new(
                path.key("databases"),
                format!(
                    "list the databases cluster {:?} serves: only the first cluster may leave \
                     `databases` empty (it serves every database no other cluster lists)",
                    cluster.name
                ),
            ));
        }
    }
    let names = config.clusters.iter().enumerate();
    check_unique(
        names.map(|(i, c)| (c.name.as_str(), clusters.index(i).key("name"))),
        "cluster name",
        "cluster names must be unique",
    )
}

/// Weight 0 takes a node out of weighted balancing; when every candidate has it, the balancer
/// would have to ignore the weights after all, which is surely not what was meant.
fn check_weights(cluster: &ClusterConfig, path: KeyPath) -> Result<(), Problem> {
    let all_zero =
        cluster.primary_read_weight == 0 && cluster.replicas.iter().all(|r| r.weight == 0);
    if cluster.load_balancing != LoadBalancing::Weighted || cluster.replicas.is_empty() || !all_zero
    {
        return Ok(());
    }
    Err(Problem::new(
        path,
        format!(
            "every read candidate of cluster {:?} has weight 0, so \"weighted\" has nothing to \
             weigh; give a replica (or `primary_read_weight`) a weight above 0",
            cluster.name
        ),
    ))
}

fn check_routing(routing: &RoutingSettings) -> Result<(), Problem> {
    let path = KeyPath::top("routing").key("read_only_functions");
    let names = routing.read_only_functions.iter().enumerate();
    for (i, name) in names.clone() {
        check_function_name(name, path.index(i))?;
    }
    check_unique(
        names.map(|(i, name)| (name.as_str(), path.index(i))),
        "function",
        "list each function once",
    )
}

/// `name` or `schema.name`, each part an unquoted PostgreSQL identifier: what a statement can
/// call without quotes, so what the classifier can match.
fn check_function_name(name: &str, path: KeyPath) -> Result<(), Problem> {
    let mut parts = name.split('.');
    let valid = match (parts.next(), parts.next(), parts.next()) {
        (Some(function), None, None) => is_identifier(function),
        (Some(schema), Some(function), None) => is_identifier(schema) && is_identifier(function),
        _ => false,
    };
    if valid {
        return Ok(());
    }
    Err(Problem::new(
        path,
        format!(
            "invalid function name {name:?}; write `name` or `schema.name`, each part a letter \
             or '_' followed by letters, digits, '_' or '$', at most {MAX_IDENTIFIER_LEN} \
             characters"
        ),
    ))
}

fn is_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    starts_well
        && part.len() <= MAX_IDENTIFIER_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

fn check_node_names(config: &Config) -> Result<(), Problem> {
    let nodes: Vec<(&str, KeyPath)> = config
        .clusters
        .iter()
        .enumerate()
        .flat_map(|(i, cluster)| {
            let path = KeyPath::top("clusters").index(i);
            let primary = (
                cluster.primary.name.as_str(),
                path.key("primary").key("name"),
            );
            let replicas = cluster.replicas.iter().enumerate().map(move |(j, node)| {
                let name = path.key("replicas").index(j).key("name");
                (node.name.as_str(), name)
            });
            std::iter::once(primary).chain(replicas)
        })
        .collect();
    for (name, path) in &nodes {
        check_name(name, path.clone(), "a node", true)?;
    }
    // Node names identify nodes in metrics, logs and the admin console, whichever cluster they
    // belong to.
    check_unique(
        nodes,
        "node name",
        "node names must be unique across all clusters",
    )
}

fn check_databases(config: &Config) -> Result<(), Problem> {
    let mut listed = Vec::new();
    for (i, cluster) in config.clusters.iter().enumerate() {
        let path = KeyPath::top("clusters").index(i).key("databases");
        for (j, database) in cluster.databases.iter().enumerate() {
            if database.is_empty() {
                return Err(Problem::new(
                    path.index(j),
                    "a database name cannot be empty",
                ));
            }
            listed.push((database.as_str(), path.index(j)));
        }
    }
    // A database served by two clusters would make routing depend on file order.
    check_unique(
        listed,
        "database",
        "each database is served by one cluster only",
    )
}

fn check_users(users: &[UserConfig]) -> Result<(), Problem> {
    let path = KeyPath::top("users");
    for (i, user) in users.iter().enumerate() {
        if user.name.is_empty() {
            return Err(Problem::new(
                path.index(i).key("name"),
                "a user name cannot be empty",
            ));
        }
        check_password(user, path.index(i).key("password"))?;
    }
    let names = users.iter().enumerate();
    check_unique(
        names.map(|(i, u)| (u.name.as_str(), path.index(i).key("name"))),
        "user",
        "each user may appear once",
    )
}

/// Console users are plain role names; an empty one could never log in, so it is a typo.
fn check_console_users(users: &[String]) -> Result<(), Problem> {
    let path = KeyPath::top("console").key("users");
    for (i, user) in users.iter().enumerate() {
        if user.is_empty() {
            return Err(Problem::new(path.index(i), "a user name cannot be empty"));
        }
    }
    let names = users.iter().enumerate();
    check_unique(
        names.map(|(i, u)| (u.as_str(), path.index(i))),
        "console user",
        "list each user once",
    )
}

/// The password must be something the user's auth method can check a client against.
fn check_password(user: &UserConfig, path: KeyPath) -> Result<(), Problem> {
    let auth = user.auth;
    let kind = match user.password.as_deref() {
        None => None,
        Some("") => {
            return Err(Problem::new(
                path,
                "an empty password is not allowed; for no password use auth = \"trust\"",
            ));
        }
        Some(secret) if is_malformed_scram(secret) => {
            return Err(Problem::new(
                path,
                format!("malformed SCRAM-SHA-256 verifier; expected {SCRAM_SHAPE}"),
            ));
        }
        Some(secret) => Some(PasswordKind::of(secret)),
    };
    let (accepted, needs) = accepted_passwords(auth);
    match kind {
        _ if auth == AuthMethod::Trust => Ok(()),
        Some(kind) if accepted.contains(&kind) => Ok(()),
        Some(kind) => Err(Problem::new(
            path,
            format!(
                "auth = \"{auth}\" needs {needs}; this is {}",
                kind.describe()
            ),
        )),
        None => Err(Problem::new(
            path,
            format!("auth = \"{auth}\" needs {needs}; none is set"),
        )),
    }
}

/// The password kinds each method can verify a client with, and how to say so.
fn accepted_passwords(auth: AuthMethod) -> (&'static [PasswordKind], String) {
    use PasswordKind::{Md5, Plain, ScramSha256};
    match auth {
        AuthMethod::Trust => (&[], "no password".to_owned()),
        AuthMethod::Password => (
            &[Plain],
            "a plain password (clients send theirs in clear text, to be compared with it)"
                .to_owned(),
        ),
        AuthMethod::Md5 => (
            &[Plain, Md5],
            "a plain password or an md5 hash (\"md5\" and 32 lowercase hex digits)".to_owned(),
        ),
        AuthMethod::ScramSha256 => (
            &[Plain, ScramSha256],
            format!("a plain password or a SCRAM-SHA-256 verifier ({SCRAM_SHAPE})"),
        ),
    }
}

/// Cluster and node names appear in metrics labels, logs and admin commands, so they are kept to
/// characters that need no quoting there. Nodes may also use '.', which default names of
/// several clusters contain ("main.replica1").
fn check_name(name: &str, path: KeyPath, what: &str, allow_dot: bool) -> Result<(), Problem> {
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.');
    if !name.is_empty() && name.chars().all(allowed) {
        return Ok(());
    }
    let dot = if allow_dot { ", '.'" } else { "" };
    Err(Problem::new(
        path,
        format!("invalid name {name:?} for {what}; use one or more letters, digits, '_', '-'{dot}"),
    ))
}

/// Fails at the second occurrence of a value, naming where the first one is.
fn check_unique<'a>(
    items: impl IntoIterator<Item = (&'a str, KeyPath)>,
    what: &str,
    rule: &str,
) -> Result<(), Problem> {
    let mut seen: HashMap<&str, KeyPath> = HashMap::new();
    for (value, path) in items {
        if let Some(first) = seen.get(value) {
            return Err(Problem::new(
                path,
                format!("duplicate {what} {value:?}, already given at {first}; {rule}"),
            ));
        }
        seen.insert(value, path);
    }
    Ok(())
}
