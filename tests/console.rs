//! The admin console: the virtual database `pgsplit`, answered by pgsplit itself, over the
//! PostgreSQL protocol (tokio-postgres simple queries, and psql's table output).

mod common;

use std::process::Command;
use std::time::Duration;

use common::proxy::{TestProxy, cluster_config, start_proxy};
use pgsplit::access::AccessAction;
use pgsplit::config::{AccessRule, AuthMethod, AuthQuerySettings, Config, Token, UserConfig};
use tokio_postgres::{Client, SimpleQueryMessage};

/// One result set: its column names and rows (NULLs as empty text).
struct ResultSet {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl ResultSet {
    /// The value of column `name` in `row`.
    fn column(&self, row: &[String], name: &str) -> String {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns));
        row[i].clone()
    }

    /// The row whose first column is `key`.
    fn row(&self, key: &str) -> &[String] {
        self.rows
            .iter()
            .find(|r| r[0] == key)
            .unwrap_or_else(|| panic!("no row {key} in {:?}", self.rows))
    }
}

async fn console(proxy: &TestProxy, user: &str) -> Result<Client, tokio_postgres::Error> {
    common::connect(&proxy.connstr(user, "pgsplit")).await
}

/// Runs one console statement; panics on an error.
async fn show(client: &Client, statement: &str) -> ResultSet {
    let messages = client
        .simple_query(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {}", common::load::describe(&e)));
    let mut set = ResultSet {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                set.columns = columns.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => set.rows.push(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => {}
        }
    }
    set
}

/// The error a statement must end with: (SQLSTATE, message).
async fn refused(client: &Client, statement: &str) -> (String, String) {
    let e = client
        .simple_query(statement)
        .await
        .expect_err(&format!("{statement} should fail"));
    let db = e.as_db_error().expect("an error from pgsplit");
    (db.code().code().to_string(), db.message().to_string())
}

/// The names pgsplit gives the shared cluster's nodes.
fn node_names() -> Vec<String> {
    let config = cluster_config();
    let cluster = &config.clusters[0];
    std::iter::once(&cluster.primary)
        .chain(&cluster.replicas)
        .map(|n| n.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn show_commands_answer_as_result_sets() {
    let proxy = start_proxy(cluster_config());
    let client = console(&proxy, "postgres").await.expect("console login");

    let nodes = show(&client, "SHOW NODES").await;
    assert_eq!(
        nodes.columns,
        [
            "name",
            "cluster",
            "role",
            "addr",
            "healthy",
            "ban_reason",
            "lag_bytes",
            "lag_seconds",
            "reads",
            "writes",
            "in_flight"
        ]
    );
    let cluster = common::cluster();
    assert_eq!(nodes.rows.len(), cluster.nodes().len());
    let primary = nodes.row("primary");
    assert_eq!(nodes.column(primary, "role"), "primary");
    assert_eq!(nodes.column(primary, "addr"), cluster.primary().addr());
    for (i, replica) in cluster.replicas().iter().enumerate() {
        let row = nodes.row(&format!("replica{}", i + 1));
        assert_eq!(nodes.column(row, "role"), "replica");
        assert_eq!(nodes.column(row, "addr"), replica.addr());
        assert_eq!(nodes.column(row, "healthy"), "true");
    }

    // Keywords in any case, a trailing semicolon, several statements in one string.
    let lag = show(&client, "show lag;").await;
    assert_eq!(
        lag.columns,
        ["node", "lag_seconds", "lag_bytes", "replay_lsn"]
    );
    assert_eq!(lag.rows.len(), cluster.nodes().len());
    let both = client
        .simple_query("SHOW STATS; Show Clients")
        .await
        .expect("two statements");
    let completions = both
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completions, 2);

    let stats = show(&client, "SHOW STATS").await;
    assert_eq!(
        stats.columns,
        ["node", "reads", "writes", "in_flight", "response_ms"]
    );
    let clients = show(&client, "SHOW CLIENTS").await;
    let connected: usize = clients
        .column(&clients.rows[0], "connected")
        .parse()
        .expect("a count");
    assert!(connected >= 1, "this console client is connected");

    // The pass-through login was checked on a real database: "pgsplit" never reaches a server.
    let pools = show(&client, "SHOW POOLS").await;
    assert_eq!(
        pools.columns,
        ["node", "database", "user", "idle", "in_use"]
    );
    assert!(
        pools
            .rows
            .iter()
            .all(|r| pools.column(r, "database") != "pgsplit"),
        "{:?}",
        pools.rows
    );

    let events = show(&client, "SHOW EVENTS").await;
    assert_eq!(events.columns, ["at", "kind", "node", "detail"]);
    let help = show(&client, "SHOW HELP").await;
    let commands: Vec<&str> = help.rows.iter().map(|r| r[0].as_str()).collect();
    for command in ["SHOW NODES", "RELOAD", "PAUSE", "BAN <node> [seconds]"] {
        assert!(commands.contains(&command), "{commands:?}");
    }

    let (code, message) = refused(&client, "SHOW TABLES").await;
    assert_eq!(code, "42601");
    assert!(
        message.contains("SHOW NODES") && message.contains("UNBAN"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn route_counts_rise_with_reads() {
    let proxy = start_proxy(cluster_config());
    let client = console(&proxy, "postgres").await.expect("console login");
    let total = |routes: &ResultSet| -> u64 {
        routes
            .rows
            .iter()
            .map(|r| routes.column(r, "count").parse::<u64>().expect("a count"))
            .sum()
    };
    let before = show(&client, "SHOW ROUTES").await;
    assert_eq!(before.columns, ["reason", "count"]);
    let app = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect");
    for _ in 0..5 {
        app.simple_query("SELECT 1").await.expect("read");
    }
    let after = show(&client, "SHOW ROUTES").await;
    assert!(
        total(&after) >= total(&before) + 5,
        "{:?} then {:?}",
        before.rows,
        after.rows
    );
    assert!(
        after.rows.iter().any(|r| r[0].starts_with("read")),
        "{:?}",
        after.rows
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ban_and_unban_take_a_node_out_and_back() {
    let proxy = start_proxy(cluster_config());
    let client = console(&proxy, "postgres").await.expect("console login");
    let health = |nodes: &ResultSet| {
        let row = nodes.row("replica1");
        (
            nodes.column(row, "healthy"),
            nodes.column(row, "ban_reason"),
        )
    };

    client.simple_query("BAN replica1 60").await.expect("ban");
    let (healthy, reason) = health(&show(&client, "SHOW NODES").await);
    assert_eq!(healthy, "false");
    assert!(reason.contains("console"), "{reason}");
    let events = show(&client, "SHOW EVENTS").await;
    assert!(
        events
            .rows
            .iter()
            .any(|r| r[1] == "ban" && r[2] == "replica1"),
        "{:?}",
        events.rows
    );

    client.simple_query("unban replica1;").await.expect("unban");
    let (healthy, reason) = health(&show(&client, "SHOW NODES").await);
    assert_eq!((healthy.as_str(), reason.as_str()), ("true", ""));

    let (code, message) = refused(&client, "BAN nosuchnode").await;
    assert_eq!(code, "42704");
    assert!(message.contains("nosuchnode"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_without_a_file_pause_and_resume() {
    let proxy = start_proxy(cluster_config());
    let client = console(&proxy, "postgres").await.expect("console login");
    let (_, message) = refused(&client, "RELOAD").await;
    assert!(message.contains("config file"), "{message}");

    let paused = |clients: ResultSet| clients.column(&clients.rows[0], "paused");
    let app = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("app session");
    client.simple_query("PAUSE").await.expect("pause");
    assert_eq!(paused(show(&client, "SHOW CLIENTS").await), "true");
    // A new unit waits while paused, and runs once resumed.
    let held = tokio::spawn(async move { app.simple_query("SELECT 1").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "a statement ran while pgsplit was paused"
    );
    client.simple_query("RESUME").await.expect("resume");
    assert_eq!(paused(show(&client, "SHOW CLIENTS").await), "false");
    tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the held statement runs after RESUME")
        .expect("task")
        .expect("statement");
}

#[tokio::test(flavor = "multi_thread")]
async fn show_config_shows_security_settings_but_never_a_secret() {
    const SECRETS: [&str; 5] = [
        "app-user-secret",
        "app-server-secret",
        "monitor-secret",
        "auth-query-secret",
        "admin-token-secret",
    ];
    let mut config: Config = cluster_config();
    config.users = vec![
        user("postgres", AuthMethod::Trust, None, None),
        user(
            "app",
            AuthMethod::ScramSha256,
            Some(SECRETS[0]),
            Some(SECRETS[1]),
        ),
    ];
    config.monitor.password = Some(SECRETS[2].to_string());
    config.auth_query = Some(AuthQuerySettings {
        user: "postgres".to_string(),
        password: Some(SECRETS[3].to_string()),
        database: "postgres".to_string(),
        query: "SELECT usename, passwd FROM pg_shadow WHERE usename = $1".to_string(),
        cache_ttl: Duration::from_secs(10),
    });
    config.admin_token = Some(Token(SECRETS[4].to_string()));
    config.access = vec![AccessRule {
        users: Vec::new(),
        databases: Vec::new(),
        addresses: Vec::new(),
        action: AccessAction::Allow,
    }];
    config.timeouts.client_idle = Duration::from_secs(600);
    config.limits.max_connections_per_user = 50;
    let proxy = start_proxy(config);
    let client = console(&proxy, "postgres").await.expect("console login");
    let settings = show(&client, "SHOW CONFIG").await;
    assert_eq!(settings.columns, ["key", "value"]);
    assert_eq!(
        settings.column(settings.row("users.app.auth"), "value"),
        "scram-sha-256"
    );
    assert_eq!(
        settings.column(settings.row("console.users"), "value"),
        "postgres"
    );
    for (key, value) in [
        ("tls.mode", "disable"),
        ("tls.server_tls", "disable"),
        ("access.rules", "1"),
        ("auth_query.user", "postgres"),
        ("auth_query.database", "postgres"),
        ("admin_token", "set"),
        ("timeouts.client_idle", "10m"),
        ("timeouts.idle_in_transaction", "0s"),
        ("limits.max_connections_per_user", "50"),
    ] {
        assert_eq!(settings.column(settings.row(key), "value"), value, "{key}");
    }
    let text = format!("{:?}", settings.rows);
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
}

fn user(
    name: &str,
    auth: AuthMethod,
    password: Option<&str>,
    server_password: Option<&str>,
) -> UserConfig {
    UserConfig {
        name: name.to_string(),
        password: password.map(str::to_string),
        auth,
        server_user: None,
        server_password: server_password.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_not_in_console_users_is_refused() {
    let proxy = start_proxy(cluster_config());
    let Err(e) = console(&proxy, "someone_else").await else {
        panic!("someone_else opened the console");
    };
    let db = e.as_db_error().expect("an error from pgsplit");
    assert_eq!(db.code().code(), "28000");
    assert_eq!(
        db.message(),
        "user someone_else may not use the pgsplit console"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_extended_protocol_is_refused_and_the_session_goes_on() {
    let proxy = start_proxy(cluster_config());
    let client = console(&proxy, "postgres").await.expect("console login");
    let e = client
        .query("SHOW NODES", &[])
        .await
        .expect_err("extended protocol");
    let db = e.as_db_error().expect("an error from pgsplit");
    assert_eq!(db.code().code(), "0A000");
    assert!(db.message().contains("simple query protocol only"));
    assert_eq!(
        show(&client, "SHOW NODES").await.rows.len(),
        node_names().len()
    );
}

#[test]
fn psql_shows_the_nodes_as_a_table() {
    let proxy = start_proxy(cluster_config());
    let out = Command::new(common::binaries().tool("psql"))
        .args(["-X", "-d", "pgsplit", "-U", "postgres", "-c", "SHOW NODES"])
        .args(proxy.cli_args())
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("name") && header.contains("role") && header.contains("healthy"),
        "{stdout}"
    );
    for name in node_names() {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(&name)),
            "{name} missing:\n{stdout}"
        );
    }
    let count = format!("({} rows)", node_names().len());
    assert!(stdout.contains(&count), "{stdout}");
}
