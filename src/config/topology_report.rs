//! The effective configuration as `pgsplit check` prints it: what pgsplit will listen on, which
//! servers it will forward to, and who may log in. Secrets never appear: a user's password is
//! described by its kind only.

use std::fmt::Write as _;
use std::time::Duration;

use super::secret::PasswordKind;
use super::{ClusterConfig, Config, LoadBalancing, NodeConfig, RoutingSettings, UserConfig};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

impl Config {
    /// A human-readable table of the effective topology and settings.
    pub fn topology_report(&self) -> String {
        let mut out = String::new();
        let _ = match &self.source {
            Some(path) => writeln!(out, "pgsplit configuration from {}\n", path.display()),
            None => writeln!(out, "pgsplit configuration (no file)\n"),
        };
        out.push_str(&render_table(&self.settings_rows(), ""));
        for (i, cluster) in self.clusters.iter().enumerate() {
            out.push('\n');
            out.push_str(&cluster_section(cluster, i == 0));
        }
        out.push('\n');
        out.push_str(&users_section(&self.users));
        out
    }

    fn settings_rows(&self) -> Vec<Vec<String>> {
        let pool = &self.pool;
        let timeouts = &self.timeouts;
        let limits = &self.limits;
        let max_message_size = u64::try_from(limits.max_message_size).unwrap_or(u64::MAX);
        let rows = [
            ("listen", self.listen.to_string()),
            (
                "admin",
                self.admin
                    .map_or_else(|| "off".to_owned(), |a| a.to_string()),
            ),
            (
                "pool",
                format!(
                    "{} mode, up to {} server connections per node, database and user, \
                     checkout timeout {}, idle ones closed after {}",
                    pool.mode,
                    pool.max_server_connections,
                    duration(pool.checkout_timeout),
                    duration(pool.server_idle_timeout)
                ),
            ),
            (
                "timeouts",
                format!(
                    "connect {}, client login {}, shutdown {}",
                    duration(timeouts.connect),
                    duration(timeouts.client_login),
                    duration(timeouts.shutdown)
                ),
            ),
            (
                "limits",
                format!(
                    "messages up to {}, up to {} client connections",
                    size(max_message_size),
                    limits.max_client_connections
                ),
            ),
            ("routing", routing_summary(&self.routing)),
        ];
        rows.into_iter()
            .map(|(name, value)| vec![name.to_owned(), value])
            .collect()
    }
}

fn cluster_section(cluster: &ClusterConfig, is_default: bool) -> String {
    let mut out = format!("cluster {}", cluster.name);
    if is_default {
        out.push_str(" (default: serves every database no other cluster lists)");
    }
    out.push('\n');
    let databases = if cluster.databases.is_empty() {
        "any".to_owned()
    } else {
        cluster.databases.join(", ")
    };
    let settings = [
        vec!["databases".into(), databases],
        vec!["load balancing".into(), balancing_summary(cluster)],
        vec![
            "consistency".into(),
            consistency_summary(&cluster.consistency),
        ],
    ];
    out.push_str(&render_table(&settings, "  "));
    // A read weight is what balancing uses: the primary's comes from the cluster, since it
    // belongs to the primary role rather than to the node.
    let mut rows = vec![header(&["role", "node", "address", "read weight"])];
    rows.push(node_row(
        "primary",
        &cluster.primary,
        cluster.primary_read_weight,
    ));
    rows.extend(
        cluster
            .replicas
            .iter()
            .map(|node| node_row("replica", node, node.weight)),
    );
    out.push_str(&render_table(&rows, "  "));
    out
}

fn balancing_summary(cluster: &ClusterConfig) -> String {
    let over = if cluster.primary_read_weight > 0 {
        "the replicas and the primary"
    } else {
        "the replicas"
    };
    let weights = if cluster.load_balancing == LoadBalancing::Weighted {
        ""
    } else {
        " (weights unused)"
    };
    format!("{} over {over}{weights}", cluster.load_balancing)
}

fn node_row(role: &str, node: &NodeConfig, read_weight: u32) -> Vec<String> {
    vec![
        role.to_owned(),
        node.name.clone(),
        node.addr(),
        read_weight.to_string(),
    ]
}

fn routing_summary(routing: &RoutingSettings) -> String {
    let functions = if routing.read_only_functions.is_empty() {
        "none".to_owned()
    } else {
        routing.read_only_functions.join(", ")
    };
    format!(
        "classification cache {}, extra read-only functions: {functions}",
        size(routing.classify_cache_bytes)
    )
}

fn users_section(users: &[UserConfig]) -> String {
    if users.is_empty() {
        return "users: none; clients authenticate with the servers themselves (pass-through)\n"
            .to_owned();
    }
    let mut rows = vec![header(&["user", "auth", "password", "server user"])];
    rows.extend(users.iter().map(user_row));
    format!("users\n{}", render_table(&rows, "  "))
}

fn user_row(user: &UserConfig) -> Vec<String> {
    let password = user
        .password
        .as_deref()
        .map_or("none", |secret| PasswordKind::of(secret).describe());
    vec![
        user.name.clone(),
        user.auth.to_string(),
        password.to_owned(),
        user.server_user
            .clone()
            .unwrap_or_else(|| user.name.clone()),
    ]
}

fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|&cell| cell.to_owned()).collect()
}

/// Left-aligned columns, two spaces apart, each line indented.
fn render_table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// "read_your_writes, max_lag 1s, else primary".
fn consistency_summary(c: &super::ConsistencyConfig) -> String {
    let mut text = format!("{}, max_lag {}", c.mode.as_str(), duration(c.max_lag));
    if let Some(bytes) = c.max_lag_bytes {
        text.push_str(&format!(" or {}", size(bytes)));
    }
    text.push_str(&match c.lag_fallback {
        super::LagFallback::Primary => ", else the primary".to_string(),
        super::LagFallback::Wait => {
            format!(", else wait {} then the primary", duration(c.lag_wait))
        }
        super::LagFallback::Error => ", else an error".to_string(),
    });
    if !c.ryw_wait.is_zero() {
        text.push_str(&format!(
            "; read-your-writes waits {}",
            duration(c.ryw_wait)
        ));
    }
    if c.causal_token == super::CausalTokenTiming::OnRead {
        text.push_str("; causal token read by the monitor after each commit");
    }
    text
}

fn duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_largest_exact_unit() {
        assert_eq!(size(256 * MIB), "256 MiB");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(1500), "1500 bytes");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![header(&["a", "long"]), header(&["longer", "b"])];
        assert_eq!(render_table(&rows, "  "), "  a       long\n  longer  b\n");
    }
}
