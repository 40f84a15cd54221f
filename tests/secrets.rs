//! No secret ever leaves pgsplit: the real binary, logging everything at debug level as JSON,
//! is given a user's plain password, a stored md5 hash, a SCRAM verifier, an auth_query
//! password, a monitor password and an admin token; clients log in with right and wrong
//! passwords (configured users and auth_query users), the console shows its config, and the
//! admin server is asked for `/metrics`, `/api/status` and the dashboard. Then the logs and every
//! answer are searched for each secret, and for the secret-bearing parts of the verifier.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster;
use common::load::bounded;
use common::process::{KillOnDrop, free_port, http_with, sigterm, wait_or_kill};
use pgsplit::localcluster::{
    APP_MD5_PASSWORD, APP_MD5_USER, APP_SCRAM_PASSWORD, APP_SCRAM_USER, LocalCluster,
};
use tokio_postgres::SimpleQueryMessage;

const PGSPLIT: &str = env!("CARGO_BIN_EXE_pgsplit");

const PLAIN_PASSWORD: &str = "plain-pw-4e1b7d";
const WRONG_PASSWORD: &str = "wrong-pw-90c3aa";
const AUTH_QUERY_PASSWORD: &str = "authq-pw-2d8f51";
const MONITOR_PASSWORD: &str = "monitor-pw-b7e6c0";
const ADMIN_TOKEN: &str = "admin-token-61fa39";

/// A user with a plain password; one whose configured secret is a SCRAM verifier.
const PLAIN_USER: &str = "carol";
const VERIFIER_USER: &str = "erin";

/// pgsplit running as a process of its own, logging to files (a pipe nobody reads would
/// eventually block its writes).
struct Pgsplit {
    child: KillOnDrop,
    port: u16,
    admin: String,
    dir: PathBuf,
}

impl Pgsplit {
    fn start(config: &str) -> Pgsplit {
        let dir = std::env::temp_dir().join(common::unique_name("pgsplit_secrets"));
        std::fs::create_dir_all(&dir).expect("test directory");
        let (port, admin_port) = (free_port(), free_port());
        let admin = format!("127.0.0.1:{admin_port}");
        let file = dir.join("pgsplit.toml");
        let config = format!("listen = \"127.0.0.1:{port}\"\nadmin = \"{admin}\"\n{config}");
        std::fs::write(&file, config).expect("write config");
        let log = |name: &str| File::create(dir.join(name)).expect("log file");
        let child = Command::new(PGSPLIT)
            .args(["--log-format", "json", "run", "--config"])
            .arg(&file)
            .env("PGSPLIT_LOG", "debug")
            .stdout(Stdio::from(log("stdout")))
            .stderr(Stdio::from(log("stderr")))
            .spawn()
            .expect("start pgsplit");
        let pgsplit = Pgsplit {
            child: KillOnDrop(child),
            port,
            admin,
            dir,
        };
        pgsplit.wait_ready(Duration::from_secs(30));
        pgsplit
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !matches!(self.get("/readyz"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "pgsplit not ready within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        http_with(
            &self.admin,
            "GET",
            path,
            &[("Authorization", &bearer)],
            Duration::from_secs(10),
        )
    }

    fn connstr(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres password='{password}' \
             connect_timeout=10",
            self.port
        )
    }

    /// Stops it with SIGTERM (bounded) and returns its stdout and stderr.
    fn stop(mut self) -> String {
        sigterm(&self.child.0);
        let exited = wait_or_kill(&mut self.child.0, Instant::now() + Duration::from_secs(30));
        assert!(
            exited.is_some(),
            "pgsplit did not stop within 30 s of SIGTERM"
        );
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).expect("log");
        let output = read("stdout") + &read("stderr");
        let _ = std::fs::remove_dir_all(&self.dir);
        output
    }
}

/// The secret a role has in `pg_authid` (a SCRAM verifier or an md5 hash), read directly on
/// the primary.
async fn stored_secret(cluster: &LocalCluster, role: &str) -> String {
    let primary = cluster.primary();
    let client = common::connect(&primary.connstr("postgres", "postgres"))
        .await
        .expect("connect to the primary");
    let rows = client
        .simple_query(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"
        ))
        .await
        .expect("read pg_authid");
    rows.iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{role} has no stored password"))
}

/// The config after `listen` and `admin`: every kind of secret pgsplit may hold.
fn config(cluster: &LocalCluster, md5_hash: &str, verifier: &str) -> String {
    format!(
        r#"
admin_token = "{ADMIN_TOKEN}"

[monitor]
password = "{MONITOR_PASSWORD}"

[[clusters]]
primary = {{ addr = "{primary}" }}

[[users]]
name = "postgres"
auth = "trust"

[[users]]
name = "{PLAIN_USER}"
password = "{PLAIN_PASSWORD}"
server_user = "postgres"

[[users]]
name = "{APP_MD5_USER}"
password = "{md5_hash}"
auth = "md5"
server_user = "postgres"

[[users]]
name = "{VERIFIER_USER}"
password = "{verifier}"
server_user = "postgres"

[auth_query]
user = "postgres"
password = "{AUTH_QUERY_PASSWORD}"
"#,
        primary = cluster.primary().addr()
    )
}

/// Logs in as `user` with `password`, and runs one statement if that works.
async fn try_login(pgsplit: &Pgsplit, user: &str, password: &str) -> bool {
    let connstr = pgsplit.connstr(user, password);
    match bounded("login", Duration::from_secs(15), common::connect(&connstr)).await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// The console's `SHOW CONFIG`, every cell as text.
async fn show_config(pgsplit: &Pgsplit) -> String {
    let connstr = pgsplit
        .connstr("postgres", "")
        .replace("dbname=postgres", "dbname=pgsplit");
    let client = bounded(
        "console",
        Duration::from_secs(15),
        common::connect(&connstr),
    )
    .await
    .expect("console login");
    let rows = client
        .simple_query("SHOW CONFIG")
        .await
        .expect("SHOW CONFIG");
    let cells: Vec<String> = rows
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join("="),
            ),
            _ => None,
        })
        .collect();
    cells.join("\n")
}

/// Each secret, and the parts of a SCRAM verifier that are secret (StoredKey and ServerKey:
/// with them a client can be impersonated towards pgsplit), by name for the failure message.
fn secrets(md5_hash: &str, verifier: &str) -> Vec<(String, String)> {
    let mut secrets: Vec<(String, String)> = [
        ("plain password", PLAIN_PASSWORD),
        ("wrong password", WRONG_PASSWORD),
        ("auth_query password", AUTH_QUERY_PASSWORD),
        ("monitor password", MONITOR_PASSWORD),
        ("admin token", ADMIN_TOKEN),
        ("md5 user's password", APP_MD5_PASSWORD),
        ("SCRAM user's password", APP_SCRAM_PASSWORD),
        ("md5 hash", md5_hash),
        ("md5 hash digits", md5_hash.trim_start_matches("md5")),
        ("SCRAM verifier", verifier),
    ]
    .into_iter()
    .map(|(what, secret)| (what.to_string(), secret.to_string()))
    .collect();
    let keys = verifier.rsplit('$').next().unwrap_or_default();
    for (what, key) in ["StoredKey", "ServerKey"].into_iter().zip(keys.split(':')) {
        secrets.push((format!("SCRAM {what}"), key.to_string()));
    }
    secrets
}

fn assert_no_secret_in(place: &str, text: &str, secrets: &[(String, String)]) {
    for (what, secret) in secrets {
        assert!(!secret.is_empty(), "{what} is empty");
        let leak = text.lines().find(|line| line.contains(secret.as_str()));
        assert!(leak.is_none(), "{place} shows the {what}: {leak:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_logs_console_metrics_status_or_dashboard() {
    let cluster = cluster();
    let md5_hash = stored_secret(cluster, APP_MD5_USER).await;
    let verifier = stored_secret(cluster, APP_SCRAM_USER).await;
    assert!(md5_hash.starts_with("md5") && verifier.starts_with("SCRAM-SHA-256$"));
    let pgsplit = Pgsplit::start(&config(cluster, &md5_hash, &verifier));

    for (user, password) in [
        (PLAIN_USER, PLAIN_PASSWORD),
        (APP_MD5_USER, APP_MD5_PASSWORD),
        (VERIFIER_USER, APP_SCRAM_PASSWORD),
        (APP_SCRAM_USER, APP_SCRAM_PASSWORD),
    ] {
        assert!(try_login(&pgsplit, user, password).await, "{user} logs in");
        assert!(
            !try_login(&pgsplit, user, WRONG_PASSWORD).await,
            "{user} is refused a wrong password"
        );
    }
    let mut answers = vec![("SHOW CONFIG".to_string(), show_config(&pgsplit).await)];
    assert!(
        answers[0].1.contains("auth_query.user=postgres"),
        "{}",
        answers[0].1
    );
    for path in ["/metrics", "/api/status", "/"] {
        let (status, body) = pgsplit.get(path).expect("admin answers");
        assert_eq!(status, 200, "{path}: {body}");
        answers.push((path.to_string(), body));
    }
    let logs = pgsplit.stop();

    // The logs did record the logins (so the search below had something to search).
    assert!(
        logs.contains(PLAIN_USER) && logs.contains(APP_SCRAM_USER),
        "{logs}"
    );
    let secrets = secrets(&md5_hash, &verifier);
    assert_no_secret_in("the log", &logs, &secrets);
    for (place, answer) in &answers {
        assert_no_secret_in(place, answer, &secrets);
    }
}
