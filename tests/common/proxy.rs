//! pgsplit itself, started in-process for tests on a runtime of its own, so that it outlives
//! the per-test runtimes of `#[tokio::test]`.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use pgsplit::config::Config;

use super::cluster;

/// A pgsplit instance serving on a loopback port for the life of the test binary.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
}

impl TestProxy {
    /// A libpq-style connection string for tokio-postgres.
    pub fn connstr(&self, user: &str, database: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={database} connect_timeout=10",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// Arguments for psql and pgbench.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.addr.ip().to_string(),
            "-p".into(),
            self.addr.port().to_string(),
        ]
    }
}

/// Starts pgsplit with `config` (its listen address replaced by a free loopback port) on a
/// background thread that keeps it running until the process exits.
pub fn start_proxy(mut config: Config) -> TestProxy {
    show_logs_on_failure();
    config.listen = "127.0.0.1:0".parse().expect("loopback address");
    if config.admin.is_some() {
        config.admin = Some("127.0.0.1:0".parse().expect("loopback address"));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime");
        runtime.block_on(async move {
            let running = pgsplit::app::start(config).await.expect("pgsplit starts");
            tx.send(TestProxy {
                addr: running.listen,
                admin: running.admin,
            })
            .expect("report address");
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("pgsplit started within 30 s")
}

/// pgsplit's logs (`info` and up, or what RUST_LOG asks for) go to the output of the test
/// whose proxy wrote them (the proxy's threads inherit the test's capture), which the test
/// runner prints only when that test fails: a failure under load names what the proxy saw.
fn show_logs_on_failure() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_target("pgsplit", tracing::Level::INFO)
        });
    let logs = tracing_subscriber::fmt::layer()
        .with_test_writer()
        .with_ansi(false);
    let _already = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .try_init();
}

/// The shared cluster's topology as a quick-start config (no users: pass-through auth).
pub fn cluster_config() -> Config {
    super::load::config_for(cluster())
}

/// One pass-through pgsplit in front of the shared cluster, for the whole test binary.
pub fn proxy() -> &'static TestProxy {
    static PROXY: OnceLock<TestProxy> = OnceLock::new();
    PROXY.get_or_init(|| start_proxy(cluster_config()))
}

/// The proxy's `/api/status`, parsed.
pub fn status_of(proxy: &TestProxy) -> serde_json::Value {
    let admin = proxy.admin.expect("admin").to_string();
    let (_, body) =
        super::process::http(&admin, "GET", "/api/status", Duration::from_secs(5)).expect("status");
    serde_json::from_str(&body).expect("json")
}

/// Waits (up to 10 s) until the proxy's cache listens for other instances' invalidations:
/// until then the cache is not used.
pub async fn wait_for_cache_channel(proxy: &TestProxy) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status_of(proxy)["cache_channel"] != true {
        assert!(
            std::time::Instant::now() < deadline,
            "the invalidation channel comes up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
