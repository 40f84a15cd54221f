//! The text we write into server configuration files, and quoting helpers. All pure.

use std::path::Path;

use super::{APP_MD5_USER, APP_SCRAM_USER};

/// Settings shared by every node, appended to the primary's `postgresql.conf` after initdb (the
/// replicas inherit them through pg_basebackup).
pub(crate) struct ServerSettings<'a> {
    pub(crate) port: u16,
    pub(crate) socket_dir: &'a Path,
    pub(crate) name: &'a str,
    pub(crate) fsync: bool,
    pub(crate) replicas: usize,
    pub(crate) extra: &'a [String],
}

/// The lines appended to the primary's `postgresql.conf`. Later lines win, so this overrides
/// initdb's defaults, and `extra` overrides this.
pub(crate) fn primary_conf(s: &ServerSettings<'_>) -> String {
    let senders = s.replicas + 10;
    let mut lines = vec![
        "# --- written by pgsplit localcluster ---".to_string(),
        "listen_addresses = '127.0.0.1'".to_string(),
        format!("port = {}", s.port),
        format!(
            "unix_socket_directories = {}",
            conf_quote(&s.socket_dir.to_string_lossy())
        ),
        format!("cluster_name = {}", conf_quote(s.name)),
        // Proxy tests open a few hundred sessions at once.
        "max_connections = 300".to_string(),
        "shared_buffers = 32MB".to_string(),
        "wal_level = replica".to_string(),
        format!("max_wal_senders = {senders}"),
        format!("max_replication_slots = {senders}"),
        "wal_keep_size = 128MB".to_string(),
        "hot_standby = on".to_string(),
        "hot_standby_feedback = on".to_string(),
        // Replicas report their replay position often, so the primary's view of lag is fresh.
        "wal_receiver_status_interval = 1s".to_string(),
        // A replica whose primary went away (restart, failover test) retries every 0.5 s, not 5 s.
        "wal_retrieve_retry_interval = 500ms".to_string(),
        format!("fsync = {}", on_off(s.fsync)),
        // With fsync off a WAL flush is only a write(), so synchronous commit costs nothing, and
        // it keeps replication prompt: walsenders only ship flushed WAL, and an asynchronous
        // commit would wait for the WAL writer (up to 3 x wal_writer_delay) before leaving.
        "synchronous_commit = on".to_string(),
        "password_encryption = 'scram-sha-256'".to_string(),
        "logging_collector = off".to_string(),
        "log_line_prefix = '%m [%p] %q%u@%d '".to_string(),
        "log_min_messages = warning".to_string(),
    ];
    lines.extend(s.extra.iter().cloned());
    lines.join("\n") + "\n"
}

/// The lines appended to a replica's `postgresql.conf` (copied from the primary) so it listens
/// on its own port and names itself; `cluster_name` also becomes its walreceiver's
/// `application_name`, which is how `pg_stat_replication` on the primary identifies it.
pub(crate) fn replica_conf(port: u16, name: &str) -> String {
    format!(
        "# --- replica overrides, written by pgsplit localcluster ---\nport = {port}\ncluster_name = {}\n",
        conf_quote(name)
    )
}

/// `pg_hba.conf`: password-checked users first (first match wins), then trust for everyone on
/// the socket and on 127.0.0.1, for all databases and for replication.
pub(crate) fn pg_hba() -> String {
    let mut lines =
        vec!["# TYPE  DATABASE     USER  ADDRESS  METHOD  (pgsplit localcluster)".to_string()];
    for (user, method) in [(APP_SCRAM_USER, "scram-sha-256"), (APP_MD5_USER, "md5")] {
        lines.push(format!("local all {user} {method}"));
        lines.push(format!("host all {user} 127.0.0.1/32 {method}"));
    }
    lines.extend([
        "local all all trust".to_string(),
        "host all all 127.0.0.1/32 trust".to_string(),
        "local replication all trust".to_string(),
        "host replication all 127.0.0.1/32 trust".to_string(),
    ]);
    lines.join("\n") + "\n"
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Quotes a value for `postgresql.conf` (single quotes, embedded ones doubled).
pub(crate) fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quotes an SQL string literal.
pub(crate) fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quotes a value for a libpq keyword/value connection string when it needs it.
pub(crate) fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_conf_sets_port_socket_and_extra_last() {
        let extra = vec!["work_mem = 8MB".to_string()];
        let text = primary_conf(&ServerSettings {
            port: 15432,
            socket_dir: Path::new("/tmp/x/sock"),
            name: "primary",
            fsync: false,
            replicas: 3,
            extra: &extra,
        });
        assert!(text.contains("port = 15432\n"));
        assert!(text.contains("unix_socket_directories = '/tmp/x/sock'\n"));
        assert!(text.contains("fsync = off\n"));
        assert!(text.contains("max_wal_senders = 13\n"));
        assert!(text.trim_end().ends_with("work_mem = 8MB"));
    }

    #[test]
    fn hba_puts_password_users_before_trust() {
        let text = pg_hba();
        let scram = text
            .find("app_scram 127.0.0.1/32 scram-sha-256")
            .expect("scram line");
        let md5 = text.find("app_md5 127.0.0.1/32 md5").expect("md5 line");
        let trust = text
            .find("host all all 127.0.0.1/32 trust")
            .expect("trust line");
        assert!(scram < trust && md5 < trust);
        assert!(text.contains("host replication all 127.0.0.1/32 trust"));
    }

    #[test]
    fn quotes_values() {
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(sql_literal("0/3000060"), "'0/3000060'");
        assert_eq!(conninfo_value("postgres"), "postgres");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value("o'k\\"), "'o\\'k\\\\'");
        assert_eq!(conninfo_value(""), "''");
    }
}
