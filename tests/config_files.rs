//! Every example configuration in `config/` loads, and what `pgsplit check` prints of it keeps
//! its secrets. The directory is listed, so a new example is covered without touching this file.

use std::path::{Path, PathBuf};

use pgsplit::config::{Config, LoadBalancing, NodeConfig, RoutingSettings};

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) => panic!("cannot list {}: {err}", dir.display()),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> Config {
    match Config::load(path) {
        Ok(config) => config,
        Err(err) => panic!("{err}"),
    }
}

#[test]
fn every_example_config_loads() {
    let files = example_files();
    for name in ["pgsplit.toml", "quickstart.toml", "multi-cluster.toml"] {
        assert!(
            files.iter().any(|path| path.ends_with(name)),
            "config/{name} is missing; found {files:?}"
        );
    }
    for path in &files {
        let config = load(path);
        assert_eq!(config.source.as_deref(), Some(path.as_path()));
        assert!(!config.clusters.is_empty(), "{}", path.display());
    }
}

#[test]
fn reports_and_debug_output_of_the_examples_keep_their_secrets() {
    for path in example_files() {
        let config = load(&path);
        let printed = format!("{}\n{config:?}", config.topology_report());
        let secrets = config
            .users
            .iter()
            .flat_map(|user| [&user.password, &user.server_password])
            .flatten();
        for secret in secrets {
            assert!(
                !printed.contains(secret.as_str()),
                "{}: a secret of {secret:.3}... is printed",
                path.display()
            );
        }
    }
}

#[test]
fn the_multi_cluster_example_routes_by_database() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/multi-cluster.toml");
    let config = load(&path);
    assert_eq!(config.cluster_for_database("analytics").name, "reporting");
    assert_eq!(config.cluster_for_database("app").name, "main");
    assert_eq!(config.clusters[0].primary.name, "main.primary");
}

/// The documented example writes out the routing and balancing keys with their defaults, so
/// the values it shows are the ones a file without them gets.
#[test]
fn the_documented_example_shows_the_balancing_defaults() {
    let config = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgsplit.toml"));
    assert_eq!(config.routing, RoutingSettings::default());
    let cluster = &config.clusters[0];
    assert_eq!(cluster.load_balancing, LoadBalancing::default());
    assert_eq!(cluster.primary_read_weight, 0);
    let nodes = std::iter::once(&cluster.primary).chain(&cluster.replicas);
    assert!(
        nodes
            .into_iter()
            .all(|node| node.weight == NodeConfig::DEFAULT_WEIGHT)
    );
}

#[test]
fn an_error_in_the_documented_example_points_at_its_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgsplit.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let good = "{ addr = \"127.0.0.1:5434\" }";
    let line = text
        .lines()
        .position(|line| line.contains(good))
        .map(|index| index + 1);
    assert!(line.is_some(), "the example no longer has {good}");
    let broken = text.replace(good, "{ addr = \"127.0.0.1:99999\" }");
    let err = Config::from_toml(&broken, "config/pgsplit.toml").err();
    assert_eq!(
        err.map(|err| err.to_string()),
        line.map(|line| format!(
            "config/pgsplit.toml:{line}: clusters[0].replicas[1].addr: invalid address \
             \"127.0.0.1:99999\": port must be 1-65535; expected \"host:port\" (a name, an IPv4 \
             address, a bracketed IPv6 address such as \"[::1]:5432\", or the directory of the \
             server's Unix socket such as \"/var/run/postgresql:5432\")"
        ))
    );
}

/// Whatever a half-written file holds, loading it answers with a configuration or an error that
/// names a line; it never panics.
#[test]
fn every_truncation_of_the_examples_is_handled() {
    for path in example_files() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let cuts = text.char_indices().map(|(i, _)| i).step_by(3);
        for cut in cuts {
            if let Err(err) = Config::from_toml(&text[..cut], "cut.toml") {
                assert!(err.line().is_some(), "{err} (cut at {cut})");
            }
        }
    }
}
