//! pgsplit itself, started in-process for tests on a runtime of its own, so that it outlives
//! the per-test runtimes of `#[tokio::test]`.

use std::net::SocketAddr;
use std::sync::OnceLock;

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

/// The shared cluster's topology as a quick-start config (no users: pass-through auth).
pub fn cluster_config() -> Config {
    super::load::config_for(cluster())
}

/// One pass-through pgsplit in front of the shared cluster, for the whole test binary.
pub fn proxy() -> &'static TestProxy {
    static PROXY: OnceLock<TestProxy> = OnceLock::new();
    PROXY.get_or_init(|| start_proxy(cluster_config()))
}
