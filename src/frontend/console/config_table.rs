//! `SHOW CONFIG`: the settings in force, as key and value, never a secret.

use std::time::Duration;

use crate::config::{ClusterConfig, Config};

use super::{Table, opt};

/// The main settings as key and value. Built from an explicit list of keys rather than from
/// the whole config, so that no password, verifier or token can ever slip in: users show
/// their auth method and server user only, the monitor and auth_query their user and database,
/// the admin token only whether there is one.
pub(super) fn config_table(config: &Config) -> Table {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let mut rows = vec![
        ("listen", config.listen.to_string()),
        ("admin", opt(config.admin)),
        ("worker_threads", config.worker_threads.to_string()),
        ("source", opt(config.source.as_ref().map(|p| p.display()))),
        ("pool.mode", config.pool.mode.to_string()),
        (
            "pool.max_server_connections",
            config.pool.max_server_connections.to_string(),
        ),
        (
            "pool.checkout_timeout",
            duration(config.pool.checkout_timeout),
        ),
        (
            "pool.server_idle_timeout",
            duration(config.pool.server_idle_timeout),
        ),
        ("timeouts.connect", duration(config.timeouts.connect)),
        (
            "timeouts.client_login",
            duration(config.timeouts.client_login),
        ),
        ("timeouts.shutdown", duration(config.timeouts.shutdown)),
        (
            "timeouts.client_idle",
            duration(config.timeouts.client_idle),
        ),
        (
            "timeouts.idle_in_transaction",
            duration(config.timeouts.idle_in_transaction),
        ),
        (
            "limits.max_message_size",
            config.limits.max_message_size.to_string(),
        ),
        (
            "limits.max_client_connections",
            config.limits.max_client_connections.to_string(),
        ),
        (
            "limits.max_connections_per_user",
            config.limits.max_connections_per_user.to_string(),
        ),
        (
            "routing.read_only_functions",
            config.routing.read_only_functions.join(", "),
        ),
        ("monitor.user", config.monitor.user.clone()),
        ("monitor.database", config.monitor.database.clone()),
        ("monitor.interval", duration(config.monitor.interval)),
        ("health.timeout", duration(config.health.timeout)),
        ("health.ban_after", config.health.ban_after.to_string()),
        ("health.ban_time", duration(config.health.ban_time)),
        ("failover.after", duration(config.failover.after)),
        ("console.users", config.console.users.join(", ")),
    ]
    .into_iter()
    .map(|(key, value)| vec![key.to_string(), value])
    .collect::<Vec<_>>();
    rows.extend(security_rows(config));
    rows.extend(config.clusters.iter().flat_map(cluster_rows));
    rows.extend(config.users.iter().flat_map(|u| {
        let server_user = u.server_user.clone().unwrap_or_else(|| u.name.clone());
        [
            vec![format!("users.{}.auth", u.name), u.auth.to_string()],
            vec![format!("users.{}.server_user", u.name), server_user],
        ]
    }));
    Table {
        columns: &["key", "value"],
        rows,
    }
}

/// TLS, access rules and auth_query: modes, file names and counts, never the password.
fn security_rows(config: &Config) -> Vec<Vec<String>> {
    let tls = &config.tls;
    let file = |path: &Option<std::path::PathBuf>| opt(path.as_ref().map(|p| p.display()));
    let mut rows = vec![
        (
            "admin_token",
            if config.admin_token.is_some() {
                "set"
            } else {
                "none"
            }
            .to_string(),
        ),
        ("tls.mode", tls.mode.as_str().to_string()),
        ("tls.cert_file", file(&tls.cert_file)),
        ("tls.key_file", file(&tls.key_file)),
        ("tls.server_tls", tls.server_tls.as_str().to_string()),
        ("tls.ca_file", file(&tls.ca_file)),
        ("access.rules", config.access.len().to_string()),
    ];
    if let Some(auth_query) = &config.auth_query {
        rows.extend([
            ("auth_query.user", auth_query.user.clone()),
            ("auth_query.database", auth_query.database.clone()),
            ("auth_query.query", auth_query.query.clone()),
            (
                "auth_query.cache_ttl",
                humantime::format_duration(auth_query.cache_ttl).to_string(),
            ),
        ]);
    }
    rows.into_iter()
        .map(|(key, value)| vec![key.to_string(), value])
        .collect()
}

fn cluster_rows(cluster: &ClusterConfig) -> Vec<Vec<String>> {
    let key = |name: &str| format!("clusters.{}.{name}", cluster.name);
    let replicas: Vec<String> = cluster
        .replicas
        .iter()
        .map(|r| format!("{} {}", r.name, r.addr()))
        .collect();
    let consistency = &cluster.consistency;
    vec![
        vec![key("databases"), cluster.databases.join(", ")],
        vec![
            key("primary"),
            format!("{} {}", cluster.primary.name, cluster.primary.addr()),
        ],
        vec![key("replicas"), replicas.join(", ")],
        vec![key("load_balancing"), cluster.load_balancing.to_string()],
        vec![key("consistency"), consistency.mode.as_str().to_string()],
        vec![
            key("max_lag"),
            humantime::format_duration(consistency.max_lag).to_string(),
        ],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_table_never_shows_a_secret() {
        let config = Config::from_toml(
            "[monitor]\npassword = \"monitor-secret\"\n\
             [[clusters]]\nprimary = { addr = \"db:5432\" }\n\
             [[users]]\nname = \"app\"\npassword = \"user-secret\"\n\
             server_password = \"server-secret\"\n\
             [auth_query]\nuser = \"auth\"\npassword = \"auth-secret\"\n",
            "test.toml",
        )
        .expect("valid config");
        let table = config_table(&config);
        let text: String = table.rows.concat().join(" ");
        assert!(text.contains("users.app.auth"), "{text}");
        assert!(text.contains("auth_query.user auth"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
