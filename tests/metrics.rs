//! The admin server's `/metrics` and `/api/status` over real HTTP, after real traffic through
//! pgsplit in front of the shared cluster. The exposition is read with an independent parser
//! (prometheus-parse), not by searching the text, so a malformed line fails the test.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::proxy::{TestProxy, cluster_config, start_proxy};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::Value as Json;
use tokio_postgres::Client;

/// How long the node monitor may take to measure every replica's lag.
const MONITOR_LIMIT: Duration = Duration::from_secs(15);

/// pgsplit with an admin server, shared by the tests of this binary.
fn proxy() -> &'static TestProxy {
    static PROXY: OnceLock<TestProxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let mut config = cluster_config();
        config.admin = Some("127.0.0.1:0".parse().expect("loopback address"));
        start_proxy(config)
    })
}

fn admin() -> SocketAddr {
    proxy().admin.expect("the proxy has an admin server")
}

struct Response {
    status: u16,
    content_type: String,
    body: String,
}

/// One GET over a fresh connection (the shared test HTTP helper), with the content type.
async fn get(addr: SocketAddr, path: &str) -> Response {
    let (addr, path) = (addr.to_string(), path.to_string());
    let response = tokio::task::spawn_blocking(move || {
        common::process::http_response(&addr, "GET", &path, &[], std::time::Duration::from_secs(10))
    })
    .await
    .expect("the request task")
    .expect("an HTTP response");
    Response {
        status: response.status,
        content_type: response
            .header("content-type")
            .unwrap_or_default()
            .to_string(),
        body: response.body,
    }
}

async fn status_json() -> Json {
    let response = get(admin(), "/api/status").await;
    assert_eq!(response.status, 200, "{}", response.body);
    serde_json::from_str(&response.body).expect("/api/status is JSON")
}

/// Node names from `/api/status`, optionally only those with `role`.
fn node_names(status: &Json, role: Option<&str>) -> Vec<String> {
    status["nodes"]
        .as_array()
        .expect("nodes is an array")
        .iter()
        .filter(|node| role.is_none_or(|role| node["role"] == role))
        .map(|node| node["name"].as_str().expect("a node name").to_string())
        .collect()
}

async fn scrape() -> Scrape {
    let response = get(admin(), "/metrics").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        response.body.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF: {}",
        response.body
    );
    Scrape::parse(response.body.lines().map(|line| Ok(line.to_string()))).expect("parses")
}

/// The samples of `metric` whose labels include every pair of `labels`.
fn samples<'a>(
    scrape: &'a Scrape,
    metric: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    scrape.samples.iter().filter(move |s| {
        s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    })
}

/// The value of a counter or gauge sample. The parser knows OpenMetrics counters only as
/// untyped samples, since their `# TYPE` line names them without `_total`.
fn number(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{} is not a number: {other:?}", sample.metric),
    }
}

/// The one sample of `metric` with `labels`, as a number.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(scrape, metric, labels).next().map(number)
}

/// Waits until `/metrics` shows a lag for every replica: before the monitor's first round it
/// is unknown, and replicas take no balanced reads.
async fn wait_until_lag_known(replicas: &[String]) {
    let deadline = Instant::now() + MONITOR_LIMIT;
    loop {
        let scrape = scrape().await;
        let known = |metric| {
            replicas
                .iter()
                .all(|r| value(&scrape, metric, &[("node", r)]).is_some())
        };
        if known("pgsplit_replica_lag_seconds") && known("pgsplit_replica_lag_bytes") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lag of {replicas:?} not known within {MONITOR_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect() -> Client {
    common::connect(&proxy().connstr("postgres", "postgres"))
        .await
        .expect("connect through pgsplit")
}

/// Reads on a session that never writes (so they are balanced over the replicas), writes on
/// another, then a division by zero (SQLSTATE 22012).
async fn run_traffic() {
    let reader = connect().await;
    for _ in 0..6 {
        reader.simple_query("SELECT 1").await.expect("a read");
    }
    let writer = connect().await;
    let table = common::unique_name("metrics");
    for sql in [
        format!("CREATE TABLE {table} (id int)"),
        format!("INSERT INTO {table} VALUES (1)"),
        format!("UPDATE {table} SET id = 2"),
        format!("DROP TABLE {table}"),
    ] {
        writer.batch_execute(&sql).await.expect(&sql);
    }
    let error = reader
        .simple_query("SELECT 1/0")
        .await
        .expect_err("division by zero fails");
    assert_eq!(error.code().map(|c| c.code()), Some("22012"), "{error:?}");
}

#[tokio::test]
async fn metrics_count_routes_durations_errors_and_show_every_node() {
    let status = status_json().await;
    let nodes = node_names(&status, None);
    let primary = node_names(&status, Some("primary"));
    let replicas = node_names(&status, Some("replica"));
    assert_eq!(replicas.len(), common::SHARED_REPLICAS, "{status}");
    wait_until_lag_known(&replicas).await;
    run_traffic().await;
    let scrape = scrape().await;

    let writes = value(
        &scrape,
        "pgsplit_routes_total",
        &[("node", &primary[0]), ("reason", "write")],
    );
    assert!(writes.is_some_and(|n| n >= 4.0), "writes: {writes:?}");
    let balanced_reads: f64 = samples(
        &scrape,
        "pgsplit_routes_total",
        &[("reason", "read: balanced")],
    )
    .filter(|s| {
        s.labels
            .get("node")
            .is_some_and(|n| replicas.iter().any(|r| r == n))
    })
    .map(number)
    .sum();
    assert!(balanced_reads > 0.0, "no balanced read on a replica");

    let timed_units: f64 = samples(&scrape, "pgsplit_unit_duration_seconds_count", &[])
        .map(number)
        .sum();
    assert!(timed_units >= 10.0, "units timed: {timed_units}");
    let in_inf_buckets: f64 = samples(&scrape, "pgsplit_unit_duration_seconds", &[])
        .filter_map(|s| match &s.value {
            Value::Histogram(buckets) => buckets.iter().find(|b| b.less_than.is_infinite()),
            _ => None,
        })
        .map(|bucket| bucket.count)
        .sum();
    assert_eq!(in_inf_buckets, timed_units, "+Inf buckets hold every unit");

    let data_exceptions = value(&scrape, "pgsplit_errors_total", &[("class", "22")]);
    assert!(
        data_exceptions.is_some_and(|n| n >= 1.0),
        "class 22 errors: {data_exceptions:?}"
    );

    for replica in &replicas {
        for metric in ["pgsplit_replica_lag_seconds", "pgsplit_replica_lag_bytes"] {
            let lag = value(&scrape, metric, &[("node", replica)]);
            assert!(
                lag.is_some_and(|v| v >= 0.0),
                "{metric} of {replica}: {lag:?}"
            );
        }
    }
    for node in &nodes {
        let up = value(&scrape, "pgsplit_node_up", &[("node", node)]);
        assert_eq!(up, Some(1.0), "pgsplit_node_up of {node}");
        let reads = value(&scrape, "pgsplit_node_reads_total", &[("node", node)]);
        assert!(reads.is_some(), "pgsplit_node_reads_total of {node}");
    }
    let pooled = samples(
        &scrape,
        "pgsplit_pool_connections",
        &[("node", &primary[0]), ("state", "idle")],
    )
    .count();
    assert!(pooled > 0, "no pool gauge for the primary");
    assert!(value(&scrape, "pgsplit_clients_connected", &[]).is_some());
}

#[tokio::test]
async fn status_api_describes_every_node() {
    let status = status_json().await;
    let nodes = status["nodes"].as_array().expect("nodes is an array");
    assert_eq!(nodes.len(), 1 + common::SHARED_REPLICAS, "{status}");
    for node in nodes {
        for key in ["name", "addr", "role"] {
            assert!(node[key].is_string(), "{key} in {node}");
        }
        assert!(node["healthy"].is_boolean(), "healthy in {node}");
        // Unknown until the monitor's first round: null, never absent.
        for key in ["lag_bytes", "lag_seconds"] {
            let known_or_null = node.get(key).is_some_and(|v| v.is_null() || v.is_number());
            assert!(known_or_null, "{key} in {node}");
        }
        for key in ["reads_total", "writes_total"] {
            assert!(node[key].is_u64(), "{key} in {node}");
        }
    }
}

#[test]
fn an_admin_token_guards_everything_but_health_and_readiness() {
    let mut config = common::proxy::cluster_config();
    config.admin = Some("127.0.0.1:0".parse().expect("loopback address"));
    config.admin_token = Some(pgsplit::config::Token("s3cret-token".to_string()));
    let proxy = common::proxy::start_proxy(config);
    let admin = proxy.admin.expect("admin server").to_string();
    let timeout = std::time::Duration::from_secs(5);
    let status = |path: &str, headers: &[(&str, &str)]| {
        common::process::http_with(&admin, "GET", path, headers, timeout)
            .expect("http")
            .0
    };
    assert_eq!(status("/healthz", &[]), 200);
    assert_eq!(status("/readyz", &[]), 200);
    for path in ["/api/status", "/metrics", "/"] {
        assert_eq!(status(path, &[]), 401, "{path} without the token");
        assert_eq!(
            status(path, &[("Authorization", "Bearer wrong")]),
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            status(path, &[("Authorization", "Bearer s3cret-token")]),
            200,
            "{path} with the token"
        );
    }
    assert_eq!(
        status("/?token=s3cret-token", &[]),
        200,
        "the dashboard opens with ?token="
    );
    let (_, body) = common::process::http_with(
        &admin,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer s3cret-token")],
        timeout,
    )
    .expect("status");
    assert!(
        !body.contains("s3cret-token"),
        "the token never appears in the status"
    );
}
