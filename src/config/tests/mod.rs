//! Loading whole configurations: defaults, the documented layout, errors with exact places,
//! overrides, and that secrets stay secret.

use std::net::SocketAddr;
use std::time::Duration;

use super::secret::tests::VERIFIER;
use super::*;

mod errors;

/// Joins lines, so a test's line numbers are its array indexes plus one.
fn lines(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

fn load(text: &str) -> Config {
    match Config::from_toml(text, "test.toml") {
        Ok(config) => config,
        Err(err) => panic!("expected a valid configuration, got: {err}"),
    }
}

/// The line, key and full message of the error `text` must produce.
fn error(text: &str) -> (Option<usize>, String, String) {
    match Config::from_toml(text, "test.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(err) => (
            err.line(),
            err.key().unwrap_or_default().to_owned(),
            err.to_string(),
        ),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("bad test address {text}"))
}

/// Two lines, no trailing newline: what follows it in `lines` starts at line 3.
const MINIMAL: &str = "[[clusters]]\nprimary = { addr = \"db1:5432\" }";

#[test]
fn defaults_fill_everything_left_out() {
    let config = load(MINIMAL);
    assert_eq!(config.listen, addr("127.0.0.1:6432"));
    assert_eq!(config.admin, None);
    assert_eq!(config.worker_threads, 0);
    assert_eq!(config.pool, PoolSettings::default());
    assert_eq!(config.pool.mode, PoolMode::Transaction);
    assert_eq!(config.pool.max_server_connections, 100);
    assert_eq!(config.pool.checkout_timeout, Duration::from_secs(5));
    assert_eq!(config.pool.server_idle_timeout, Duration::from_secs(600));
    assert_eq!(config.timeouts.connect, Duration::from_secs(5));
    assert_eq!(config.timeouts.client_login, Duration::from_secs(60));
    assert_eq!(config.timeouts.shutdown, Duration::from_secs(30));
    assert_eq!(config.limits.max_message_size, 268_435_456);
    assert_eq!(config.limits.max_client_connections, 10_000);
    assert_eq!(config.routing, RoutingSettings::default());
    assert!(config.routing.read_only_functions.is_empty());
    assert_eq!(config.routing.classify_cache_bytes, 8_388_608);
    assert!(config.users.is_empty());
    assert_eq!(config.source, None);
    let cluster = &config.clusters[0];
    assert_eq!(cluster.name, "main");
    assert!(cluster.databases.is_empty());
    assert_eq!(cluster.load_balancing, LoadBalancing::Sticky);
    assert_eq!(cluster.primary_read_weight, 0);
    assert_eq!(
        cluster.primary,
        NodeConfig {
            name: "primary".into(),
            host: "db1".into(),
            port: 5432,
            weight: 1,
        }
    );
    assert!(cluster.replicas.is_empty());
}

#[test]
fn every_key_of_the_documented_layout_is_read() {
    let config = load(&lines(&[
        "listen = \"0.0.0.0:7432\"",
        "admin = \"127.0.0.1:9930\"",
        "worker_threads = 1",
        "[pool]",
        "mode = \"session\"",
        "max_server_connections = 7",
        "checkout_timeout = \"250ms\"",
        "server_idle_timeout = \"0s\"",
        "[timeouts]",
        "connect = \"2s\"",
        "client_login = \"1m\"",
        "shutdown = \"1m 30s\"",
        "[limits]",
        "max_message_size = 1024",
        "max_client_connections = 3",
        "[routing]",
        "read_only_functions = [\"price_of\", \"Shop.Stock_Level\"]",
        "classify_cache_bytes = 0",
        "[[clusters]]",
        "name = \"east\"",
        "databases = [\"app\", \"shop\"]",
        "load_balancing = \"least_response_time\"",
        "primary_read_weight = 2",
        "causal_token = \"on_read\"",
        "primary = { name = \"p\", addr = \"10.0.0.1:5432\", weight = 0 }",
        "replicas = [ { name = \"r\", addr = \"[::1]:5433\", weight = 7 }, { addr = \"db3:5434\" }, { addr = \"/run/pg:5435\" } ]",
        "[[users]]",
        "name = \"app\"",
        "password = \"secret\"",
        "auth = \"md5\"",
        "server_user = \"app_server\"",
        "server_password = \"other\"",
    ]));
    assert_eq!(config.listen, addr("0.0.0.0:7432"));
    assert_eq!(config.admin, Some(addr("127.0.0.1:9930")));
    assert_eq!(config.worker_threads, 1);
    assert_eq!(config.pool.mode, PoolMode::Session);
    assert_eq!(config.pool.max_server_connections, 7);
    assert_eq!(config.pool.checkout_timeout, Duration::from_millis(250));
    assert_eq!(config.pool.server_idle_timeout, Duration::ZERO);
    assert_eq!(config.timeouts.connect, Duration::from_secs(2));
    assert_eq!(config.timeouts.client_login, Duration::from_secs(60));
    assert_eq!(config.timeouts.shutdown, Duration::from_secs(90));
    assert_eq!(config.limits.max_message_size, 1024);
    assert_eq!(config.limits.max_client_connections, 3);
    // Unquoted names are folded to lower case, as PostgreSQL does.
    assert_eq!(
        config.routing.read_only_functions,
        ["price_of", "shop.stock_level"]
    );
    assert_eq!(config.routing.classify_cache_bytes, 0);
    let cluster = &config.clusters[0];
    assert_eq!(cluster.name, "east");
    assert_eq!(cluster.databases, ["app", "shop"]);
    assert_eq!(cluster.load_balancing, LoadBalancing::LeastResponseTime);
    assert_eq!(cluster.primary_read_weight, 2);
    assert_eq!(
        cluster.consistency.causal_token,
        crate::config::CausalTokenTiming::OnRead
    );
    assert_eq!(cluster.primary.addr(), "10.0.0.1:5432");
    assert_eq!(cluster.primary.weight, 0);
    let replicas: Vec<_> = cluster
        .replicas
        .iter()
        .map(|n| (n.name.as_str(), n.host.as_str(), n.port, n.weight))
        .collect();
    assert_eq!(
        replicas,
        [
            ("r", "::1", 5433, 7),
            ("replica2", "db3", 5434, 1),
            ("replica3", "/run/pg", 5435, 1)
        ]
    );
    let user = config.user("app").cloned();
    assert_eq!(
        user,
        Some(UserConfig {
            name: "app".into(),
            password: Some("secret".into()),
            auth: AuthMethod::Md5,
            server_user: Some("app_server".into()),
            server_password: Some("other".into()),
        })
    );
    assert_eq!(config.user("nobody"), None);
}

#[test]
fn default_node_names_carry_the_cluster_when_there_are_several() {
    let config = load(&lines(&[
        "[[clusters]]",
        "primary = { addr = \"a:1\" }",
        "replicas = [ { addr = \"b:1\" } ]",
        "[[clusters]]",
        "name = \"shard2\"",
        "databases = [\"s2\"]",
        "primary = { addr = \"c:1\" }",
        "replicas = [ { addr = \"d:1\" }, { name = \"mine\", addr = \"e:1\" } ]",
    ]));
    let names: Vec<&str> = config
        .clusters
        .iter()
        .flat_map(|c| std::iter::once(&c.primary).chain(&c.replicas))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "main.primary",
            "main.replica1",
            "shard2.primary",
            "shard2.replica1",
            "mine"
        ]
    );
}

#[test]
fn databases_go_to_the_cluster_listing_them_else_the_first() {
    let config = load(&lines(&[
        "[[clusters]]",
        "name = \"general\"",
        "primary = { addr = \"a:1\" }",
        "[[clusters]]",
        "name = \"reports\"",
        "databases = [\"reporting\", \"analytics\"]",
        "primary = { addr = \"b:1\" }",
    ]));
    assert_eq!(config.cluster_for_database("analytics").name, "reports");
    assert_eq!(config.cluster_for_database("app").name, "general");
    assert_eq!(config.default_cluster().name, "general");
}

#[test]
fn every_load_balancing_algorithm_is_read_by_its_documented_name() {
    for algorithm in LoadBalancing::ALL {
        let text = format!("{MINIMAL}\nload_balancing = \"{algorithm}\"\n");
        assert_eq!(load(&text).clusters[0].load_balancing, algorithm);
    }
}

#[test]
fn weight_zero_is_allowed_while_something_else_can_be_weighed() {
    let config = load(&lines(&[
        "[[clusters]]",
        "load_balancing = \"weighted\"",
        "primary = { addr = \"a:1\" }",
        "replicas = [ { addr = \"b:1\", weight = 0 }, { addr = \"c:1\", weight = 3 } ]",
        "[[clusters]]",
        "name = \"primary-reads\"",
        "databases = [\"x\"]",
        "load_balancing = \"weighted\"",
        "primary_read_weight = 1",
        "primary = { addr = \"d:1\" }",
        "replicas = [ { addr = \"e:1\", weight = 0 } ]",
        "[[clusters]]",
        "name = \"unweighted\"",
        "databases = [\"y\"]",
        "primary = { addr = \"f:1\" }",
        "replicas = [ { addr = \"g:1\", weight = 0 } ]",
    ]));
    let weights: Vec<u32> = config.clusters[0]
        .replicas
        .iter()
        .map(|n| n.weight)
        .collect();
    assert_eq!(weights, [0, 3]);
}

#[test]
fn trust_needs_no_password_but_may_keep_one_for_the_servers() {
    let config = load(&lines(&[
        MINIMAL,
        "[[users]]",
        "name = \"a\"",
        "auth = \"trust\"",
        "[[users]]",
        "name = \"b\"",
        "auth = \"trust\"",
        "password = \"for-the-server\"",
    ]));
    assert_eq!(config.users[0].password_kind(), None);
    assert_eq!(config.users[1].password_kind(), Some(PasswordKind::Plain));
}

#[test]
fn load_names_the_file_in_errors_and_records_the_source() {
    let dir = std::env::temp_dir().join(format!("pgsplit-config-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let good = dir.join("good.toml");
    let bad = dir.join("bad.toml");
    let written = std::fs::write(&good, MINIMAL).and_then(|()| std::fs::write(&bad, "x = 1\n"));
    assert!(written.is_ok(), "{written:?}");

    let config = Config::load(&good).map_err(|e| e.to_string());
    assert_eq!(config.map(|c| c.source), Ok(Some(good.clone())));
    let err = Config::load(&bad).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref()
            .map(|e| e.starts_with(&format!("{}:1: x: unknown key", bad.display()))),
        Some(true),
        "{err:?}"
    );
    let missing = Config::load(&dir.join("missing.toml")).err();
    assert!(
        matches!(missing, Some(ConfigError::Read { .. })),
        "{missing:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quick_start_is_one_cluster_with_defaults() {
    let config = Config::quick_start("db1:5432", &["db2:5432".into(), "[::1]:5433".into()]);
    let Ok(config) = config else {
        panic!("{config:?}");
    };
    assert_eq!(config.listen, addr("127.0.0.1:6432"));
    assert_eq!(config.clusters.len(), 1);
    let cluster = &config.clusters[0];
    assert_eq!(cluster.name, "main");
    assert_eq!(cluster.primary.addr(), "db1:5432");
    assert_eq!(cluster.load_balancing, LoadBalancing::Sticky);
    assert_eq!(cluster.primary_read_weight, 0);
    let replicas: Vec<_> = cluster
        .replicas
        .iter()
        .map(|n| (n.name.clone(), n.addr(), n.weight))
        .collect();
    assert_eq!(
        replicas,
        [
            ("replica1".to_owned(), "db2:5432".to_owned(), 1),
            ("replica2".to_owned(), "[::1]:5433".to_owned(), 1)
        ]
    );
    assert_eq!(config.routing, RoutingSettings::default());
    assert!(config.users.is_empty());
}

#[test]
fn quick_start_rejects_bad_addresses_by_flag() {
    let err = Config::quick_start("db1", &[]).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref()
            .map(|e| e.starts_with("command line: --primary: invalid address \"db1\"")),
        Some(true),
        "{err:?}"
    );
    let err = Config::quick_start("db1:1", &["db2:0".into()]).err();
    assert_eq!(err.as_ref().and_then(ConfigError::key), Some("--replica"));
}

#[test]
fn overrides_replace_what_they_name_and_nothing_else() {
    let mut config = load(&lines(&[
        "[[clusters]]",
        "primary = { name = \"pg\", addr = \"a:1\" }",
        "replicas = [ { name = \"r\", addr = \"b:1\" } ]",
        "[[clusters]]",
        "name = \"other\"",
        "databases = [\"x\"]",
        "primary = { addr = \"c:1\" }",
    ]));
    let before = config.clone();

    assert!(config.apply_overrides(&Overrides::default()).is_ok());
    assert_eq!(config, before);

    let overrides = Overrides {
        listen: Some(addr("0.0.0.0:7000")),
        admin: Some(addr("127.0.0.1:7001")),
        primary: Some("new:5432".into()),
        replicas: vec!["n1:5432".into(), "n2:5432".into()],
    };
    assert!(config.apply_overrides(&overrides).is_ok());
    assert_eq!(config.listen, addr("0.0.0.0:7000"));
    assert_eq!(config.admin, Some(addr("127.0.0.1:7001")));
    let first = &config.clusters[0];
    // The primary keeps its name; new replicas get default names.
    assert_eq!(
        (first.primary.name.as_str(), first.primary.addr()),
        ("pg", "new:5432".into())
    );
    let names: Vec<(&str, u32)> = first
        .replicas
        .iter()
        .map(|n| (n.name.as_str(), n.weight))
        .collect();
    assert_eq!(names, [("main.replica1", 1), ("main.replica2", 1)]);
    assert_eq!(config.clusters[1], before.clusters[1]);
}

#[test]
fn a_failed_override_changes_nothing() {
    let mut config = load(MINIMAL);
    let before = config.clone();
    let bad_addr = Overrides {
        listen: Some(addr("0.0.0.0:7000")),
        replicas: vec!["ok:1".into(), "bad".into()],
        ..Overrides::default()
    };
    let err = config.apply_overrides(&bad_addr).err();
    assert_eq!(err.as_ref().and_then(ConfigError::key), Some("--replica"));
    assert_eq!(config, before);

    let clash = Overrides {
        admin: Some(config.listen),
        ..Overrides::default()
    };
    let err = config.apply_overrides(&clash).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "command line: admin: the admin server cannot share the listen address 127.0.0.1:6432; give it another port"
        )
    );
    assert_eq!(config, before);
}

#[test]
fn from_overrides_needs_a_primary() {
    let err = Config::from_overrides(&Overrides::default()).err();
    assert_eq!(err.as_ref().and_then(ConfigError::key), Some("--primary"));

    let overrides = Overrides {
        listen: Some(addr("127.0.0.1:7432")),
        primary: Some("db1:5432".into()),
        replicas: vec!["db2:5432".into()],
        ..Overrides::default()
    };
    let Ok(config) = Config::from_overrides(&overrides) else {
        panic!("valid overrides rejected");
    };
    assert_eq!(config.listen, addr("127.0.0.1:7432"));
    assert_eq!(config.clusters[0].primary.addr(), "db1:5432");
    assert_eq!(config.clusters[0].replicas[0].name, "replica1");
}

const SECRET_USERS: [&str; 8] = [
    "[[users]]",
    "name = \"app\"",
    "password = \"hunter2-plain\"",
    "server_password = \"hunter3-server\"",
    "[[users]]",
    "name = \"legacy\"",
    "auth = \"md5\"",
    "password = \"md56a422f785c9e20873908ce25d1736ae2\"",
];

fn config_with_secrets() -> Config {
    let mut text = lines(&[MINIMAL]);
    text.push_str(&lines(&SECRET_USERS));
    text.push_str(&lines(&["[[users]]", "name = \"s\""]));
    text.push_str(&format!("password = \"{VERIFIER}\"\n"));
    load(&text)
}

const SECRETS: [&str; 4] = ["hunter2", "hunter3", "6a422f785c9e", "CaG8K8qaABah8PPF"];

#[test]
fn debug_output_never_shows_secrets() {
    let config = config_with_secrets();
    let debug = format!("{config:?} {:#?}", config.users);
    for secret in SECRETS {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
    assert!(debug.contains("<redacted>"));
    assert!(debug.contains("legacy"));
}

#[test]
fn topology_report_shows_the_topology_and_no_secrets() {
    let mut config = config_with_secrets();
    config.admin = Some(addr("127.0.0.1:9930"));
    let report = config.topology_report();
    for secret in SECRETS {
        assert!(!report.contains(secret), "{secret} leaked in {report}");
    }
    for expected in [
        "listen    127.0.0.1:6432",
        "admin     127.0.0.1:9930",
        "transaction mode",
        "cluster main (default",
        "databases       any",
        "load balancing  sticky over the replicas (weights unused)",
        "role     node     address   read weight",
        "primary  primary  db1:5432  0",
        "routing   classification cache 8 MiB, extra read-only functions: none",
        "app     scram-sha-256  a plain password",
        "legacy  md5            an md5 hash",
        "s       scram-sha-256  a SCRAM-SHA-256 verifier",
    ] {
        assert!(
            report.contains(expected),
            "{expected:?} missing in:\n{report}"
        );
    }
}

#[test]
fn topology_report_without_users_says_pass_through() {
    let report = load(MINIMAL).topology_report();
    assert!(report.contains("pass-through"), "{report}");
    assert!(report.contains("admin     off"), "{report}");
}

#[test]
fn topology_report_shows_the_algorithm_and_read_weights() {
    let report = load(&lines(&[
        "[routing]",
        "read_only_functions = [\"f\", \"s.g\"]",
        "[[clusters]]",
        "load_balancing = \"weighted\"",
        "primary_read_weight = 2",
        "primary = { addr = \"a:1\", weight = 9 }",
        "replicas = [ { addr = \"b:1\", weight = 5 }, { addr = \"c:1\", weight = 0 } ]",
    ]))
    .topology_report();
    for expected in [
        "load balancing  weighted over the replicas and the primary",
        "primary  primary   a:1      2",
        "replica  replica1  b:1      5",
        "replica  replica2  c:1      0",
        "extra read-only functions: f, s.g",
    ] {
        assert!(
            report.contains(expected),
            "{expected:?} missing in:\n{report}"
        );
    }
}

#[test]
fn console_users_default_to_postgres_and_are_checked() {
    assert_eq!(load(MINIMAL).console.users, ["postgres"]);
    let config = load(&lines(&[
        MINIMAL,
        "[console]",
        "users = [\"admin\", \"ops\"]",
    ]));
    assert_eq!(config.console.users, ["admin", "ops"]);
    let (line, key, message) = error(&lines(&[MINIMAL, "[console]", "user = [\"admin\"]"]));
    assert_eq!((line, key.as_str()), (Some(4), "console.user"));
    assert!(message.contains("expected `users`"), "{message}");
    let (line, key, message) = error(&lines(&[MINIMAL, "[console]", "users = [\"a\", \"\"]"]));
    assert_eq!((line, key.as_str()), (Some(4), "console.users[1]"));
    assert!(message.contains("cannot be empty"), "{message}");
    let (_, key, message) = error(&lines(&[MINIMAL, "[console]", "users = [\"a\", \"a\"]"]));
    assert_eq!(key, "console.users[1]");
    assert!(message.contains("duplicate console user"), "{message}");
}
