//! Memory held by idle clients: opens IDLE_CLIENTS (default 10 000) client connections to a
//! pgsplit process, logs each one in and leaves it idle, and prints pgsplit's resident memory
//! (VmRSS in /proc/<pid>/status) before and after, and per client.
//!
//! `cargo bench --bench idle_clients` (or `IDLE_CLIENTS=2000 cargo bench --bench idle_clients`).
//!
//! Clients log in pass-through as `postgres` (trusted on loopback) in transaction pooling: a
//! login borrows a pooled server connection and gives it back, so 10 000 idle clients hold a
//! handful of server connections, which the program reports too. Target (issue 10): under
//! 300 MiB for 10 000 clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgsplit::localcluster::{ClusterOptions, LocalCluster, PgBinaries};

const DEFAULT_CLIENTS: usize = 10_000;
/// Bound for every client's login, and for the whole run.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    // `cargo bench` passes `--bench`; a filter other than ours means another bench was asked for.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"idle_clients".contains(a.as_str()))
    {
        return Ok(());
    }
    let clients = match std::env::var("IDLE_CLIENTS") {
        Ok(n) => n.parse()?,
        Err(_) => DEFAULT_CLIENTS,
    };
    let fd_limit = raise_fd_limit(clients)?;
    println!("idle_clients: {clients} clients (open-file limit {fd_limit})");
    let cluster = LocalCluster::start(&PgBinaries::find()?, ClusterOptions::new(3))?;
    let proxy = Proxy::start(&cluster, clients)?;
    let result = measure(&cluster, &proxy, clients);
    drop(proxy);
    cluster.stop_all()?;
    result
}

fn measure(cluster: &LocalCluster, proxy: &Proxy, clients: usize) -> Result<(), Error> {
    // One login first, so that the pools, the classifier and the runtime's threads exist.
    drop(login(proxy.addr)?);
    let before = proxy.rss_kib()?;
    let started = Instant::now();
    let mut held = Vec::with_capacity(clients);
    for i in 0..clients {
        if started.elapsed() > RUN_TIMEOUT {
            return Err(format!("only {i} clients logged in within {RUN_TIMEOUT:?}").into());
        }
        held.push(login(proxy.addr).map_err(|e| format!("client {i}: {e}"))?);
    }
    let login_time = started.elapsed();
    // Let freed buffers and background tasks settle before reading the figure.
    std::thread::sleep(Duration::from_secs(2));
    let after = proxy.rss_kib()?;
    let servers = cluster.psql(
        cluster.primary(),
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
         AND datname = 'postgres' AND pid <> pg_backend_pid()",
    )?;
    println!(
        "pgsplit VmRSS: {} before, {} with {} idle clients (logged in in {:.1} s)",
        mib(before),
        mib(after),
        held.len(),
        login_time.as_secs_f64()
    );
    println!(
        "per client: {:.1} KiB; server connections on the primary (all pools and monitors): {}",
        (after.saturating_sub(before)) as f64 / clients as f64,
        servers.trim()
    );
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Raises this process's open-file limit (pgsplit, started from here, inherits it) to what
/// `clients` connections need, up to the hard limit (raised too when we may).
fn raise_fd_limit(clients: usize) -> Result<u64, Error> {
    let wanted = (clients as u64 + 1024).max(4096);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if limit.rlim_max < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(wanted);
            }
        }
        limit.rlim_cur = limit.rlim_max.min(wanted);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    if limit.rlim_cur < wanted {
        return Err(format!(
            "open-file limit {} is below the {wanted} needed (raise it with ulimit -Hn as root)",
            limit.rlim_cur
        )
        .into());
    }
    Ok(limit.rlim_cur)
}

/// A pgsplit process of its own (so its memory is its alone), killed on drop.
struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Proxy {
    fn start(cluster: &LocalCluster, clients: usize) -> Result<Proxy, Error> {
        let addr = free_loopback_addr()?;
        let config_path = cluster.dir().join("idle_clients.toml");
        std::fs::write(&config_path, config(cluster, addr, clients))?;
        let log = std::fs::File::create(cluster.dir().join("pgsplit.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let proxy = Proxy { child, addr };
        proxy.wait_ready(&cluster.dir().join("pgsplit.log"))?;
        Ok(proxy)
    }

    fn wait_ready(&self, log: &Path) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if login(self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        Err(format!("pgsplit not ready within {READY_TIMEOUT:?}; its log:\n{log}").into())
    }

    fn rss_kib(&self) -> Result<u64, Error> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS line in /proc/<pid>/status".into())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Our own child, by its handle; failure means it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(cluster: &LocalCluster, addr: SocketAddr, clients: usize) -> String {
    let replicas: Vec<String> = cluster
        .replicas()
        .iter()
        .map(|r| format!("{{ name = \"{}\", addr = \"{}\" }}", r.name, r.addr()))
        .collect();
    format!(
        "listen = \"{addr}\"\n\
         [limits]\nmax_client_connections = {}\n\
         [[clusters]]\nprimary = {{ name = \"primary\", addr = \"{}\" }}\nreplicas = [{}]\n",
        clients + 100,
        cluster.primary().addr(),
        replicas.join(", ")
    )
}

fn free_loopback_addr() -> Result<SocketAddr, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Connects and logs in as `postgres` to database `postgres`, reading up to ReadyForQuery.
fn login(addr: SocketAddr) -> Result<TcpStream, Error> {
    let mut stream = TcpStream::connect_timeout(&addr, LOGIN_TIMEOUT)?;
    stream.set_read_timeout(Some(LOGIN_TIMEOUT))?;
    stream.write_all(&startup_message())?;
    loop {
        let mut header = [0u8; 5];
        stream.read_exact(&mut header)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut body = vec![0u8; (len as usize).saturating_sub(4)];
        stream.read_exact(&mut body)?;
        match header[0] {
            b'Z' => return Ok(stream),
            b'E' => {
                let text = String::from_utf8_lossy(&body).replace('\0', " ");
                return Err(format!("login refused: {text}").into());
            }
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                return Err("the server asked for a password; use a trusted user".into());
            }
            _ => {}
        }
    }
}

fn startup_message() -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec(); // protocol 3.0
    for part in ["user", "postgres", "database", "postgres", ""] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    let len = i32::try_from(body.len() + 4).unwrap_or(i32::MAX);
    let mut message = len.to_be_bytes().to_vec();
    message.extend(body);
    message
}
