//! The deployment files hold together: the HAProxy configs pass `haproxy -c`, the systemd unit
//! passes `systemd-analyze verify`, the compose demo runs scalable proxies behind HAProxy, the
//! Kubernetes example probes `/readyz` and has a disruption budget, and every stop deadline
//! (compose, systemd, Kubernetes) outlasts the `timeouts.shutdown` of the config it runs.
//! No Docker engine or Kubernetes cluster is needed: the files are parsed and checked.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::wait_or_kill;
use pgsplit::config::Config;
use yaml_rust2::{Yaml, YamlLoader};

const PGSPLIT: &str = env!("CARGO_BIN_EXE_pgsplit");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs a validator within 60 s: (success, stdout and stderr together).
fn validate(program: &str, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); .ci/run installs it"));
    let status = wait_or_kill(&mut child, Instant::now() + Duration::from_secs(60));
    let mut output = String::new();
    for pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut pipe = pipe;
        let _ = pipe.read_to_string(&mut output);
    }
    (status.is_some_and(|s| s.success()), output)
}

fn yaml_documents(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn load_config(path: &str) -> Config {
    Config::load(&repo(path)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_haproxy_configs_are_valid_and_check_readiness() {
    for path in ["docker/haproxy.cfg", "deploy/haproxy.cfg"] {
        let file = repo(path);
        let (valid, output) = validate("haproxy", &["-c", "-f", &file.to_string_lossy()]);
        assert!(valid, "haproxy -c -f {path}:\n{output}");
        let text = read(path);
        let directives: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert!(
            directives.iter().any(|l| l.ends_with("uri /readyz")),
            "{path} checks /readyz"
        );
        assert!(
            !directives.iter().any(|l| l.contains("shutdown-sessions")),
            "{path} must let a draining instance finish its transactions"
        );
    }
}

#[test]
fn the_compose_demo_runs_scalable_proxies_behind_haproxy() {
    let compose = &yaml_documents("docker/docker-compose.yml")[0];
    let services = &compose["services"];
    for name in [
        "primary", "replica1", "replica2", "replica3", "pgsplit", "haproxy", "load",
    ] {
        assert!(!services[name].is_badvalue(), "service {name} is missing");
    }
    let pgsplit = &services["pgsplit"];
    for key in ["ports", "container_name"] {
        assert!(
            pgsplit[key].is_badvalue(),
            "pgsplit has {key}, so `--scale pgsplit=3` would fail"
        );
    }
    assert_eq!(pgsplit["deploy"]["replicas"].as_i64(), Some(2));
    let config = load_config("docker/pgsplit.toml");
    let grace = duration(pgsplit["stop_grace_period"].as_str().unwrap_or("10s"));
    assert!(
        grace > config.timeouts.shutdown,
        "stop_grace_period {grace:?} must outlast timeouts.shutdown {:?}",
        config.timeouts.shutdown
    );
    let published = services["haproxy"]["ports"]
        .as_vec()
        .expect("haproxy publishes ports");
    for port in published {
        let port = port.as_str().unwrap_or_default();
        assert!(port.starts_with("127.0.0.1:"), "{port} is loopback only");
    }
    assert!(
        read("docker/haproxy.cfg").contains(&format!("check port {}", admin_port(&config))),
        "HAProxy checks the admin port of docker/pgsplit.toml"
    );
}

fn admin_port(config: &Config) -> u16 {
    config.admin.expect("an admin server").port()
}

/// The Kubernetes documents of one kind.
fn of_kind<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    documents
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("deploy/kubernetes.yaml has no {kind}"))
}

/// The containerPort named `name`.
fn container_port(container: &Yaml, name: &str) -> i64 {
    container["ports"]
        .as_vec()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

#[test]
fn the_kubernetes_example_probes_readiness_and_outlasts_the_shutdown_timeout() {
    let documents = yaml_documents("deploy/kubernetes.yaml");
    let config_map = of_kind(&documents, "ConfigMap");
    let deployment = of_kind(&documents, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    let toml = config_map["data"]["pgsplit.toml"]
        .as_str()
        .expect("the ConfigMap holds pgsplit.toml");
    let config = Config::from_toml(toml, "deploy/kubernetes.yaml (ConfigMap pgsplit.toml)")
        .unwrap_or_else(|e| panic!("{e}"));
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"].as_str(), Some("/readyz"));
    let probed = readiness["port"].as_str().expect("a named port");
    assert_eq!(
        container_port(container, probed),
        i64::from(admin_port(&config))
    );
    assert_eq!(
        container_port(container, "postgres"),
        i64::from(config.listen.port())
    );

    // The kubelet waits preStop, then SIGTERM, then the drain: all within the grace period.
    let pre_stop = &container["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(pre_stop[0].as_str(), Some("sleep"));
    let pre_stop = pre_stop[1]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .expect("sleep seconds");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    let needed = Duration::from_secs(pre_stop) + config.timeouts.shutdown;
    assert!(
        Duration::from_secs(u64::try_from(grace).unwrap_or(0)) > needed,
        "terminationGracePeriodSeconds {grace} must outlast preStop + timeouts.shutdown ({needed:?})"
    );

    // The container reads the ConfigMap's file.
    let args: Vec<&str> = container["args"]
        .as_vec()
        .expect("args")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| Path::new(w[1]))
        .expect("run --config");
    let mount = container["volumeMounts"][0]["mountPath"].as_str();
    assert_eq!(config_path.parent(), mount.map(Path::new));
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        config_map["metadata"]["name"]
    );

    // Service and budget select the Deployment's pods; no stickiness.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let budget = of_kind(&documents, "PodDisruptionBudget");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels);
    let replicas = deployment["spec"]["replicas"].as_i64().expect("replicas");
    let min_available = budget["spec"]["minAvailable"]
        .as_i64()
        .expect("minAvailable");
    assert!((1..replicas).contains(&min_available));
    let service = of_kind(&documents, "Service");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(service["spec"]["sessionAffinity"].as_str(), Some("None"));
}

/// The values of `key` in a unit file, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_unit_verifies_and_outlasts_the_shutdown_timeout() {
    const INSTALLED: &str = "/usr/local/bin/pgsplit";
    let unit = read("deploy/pgsplit.service");
    assert!(unit_values(&unit, "ExecStart")[0].contains(&format!("{INSTALLED} ")));
    assert_eq!(
        unit_values(&unit, "ExecReload"),
        ["/bin/kill -HUP $MAINPID"]
    );
    assert_eq!(unit_values(&unit, "KillSignal"), ["SIGTERM"]);
    let stop = duration(unit_values(&unit, "TimeoutStopSec")[0]);
    let config = load_config("config/pgsplit.toml");
    assert!(
        stop > config.timeouts.shutdown,
        "TimeoutStopSec {stop:?} must outlast timeouts.shutdown {:?}",
        config.timeouts.shutdown
    );

    // systemd checks the unit against the built binary (verify wants the program to exist).
    let dir = std::env::temp_dir().join(common::unique_name("unit"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let copy = dir.join("pgsplit.service");
    std::fs::write(&copy, unit.replace(INSTALLED, PGSPLIT)).expect("unit copy");
    let (ok, output) = validate("systemd-analyze", &["verify", &copy.to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&dir);
    // verify also reads the machine's own units and may warn about them: only ours count.
    let ours: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("pgsplit.service"))
        .collect();
    assert!(ok && ours.is_empty(), "systemd-analyze verify:\n{output}");

    // The start check accepts a real config with the unit's own arguments.
    let pre = unit_values(&unit, "ExecStartPre")[0].replace(INSTALLED, PGSPLIT);
    let example = repo("config/pgsplit.toml");
    let pre = pre.replace("/etc/pgsplit/pgsplit.toml", &example.to_string_lossy());
    let words: Vec<&str> = pre.split_whitespace().collect();
    let (ok, output) = validate(words[0], &words[1..]);
    assert!(ok, "{pre}:\n{output}");
}
