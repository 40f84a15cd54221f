//! Child processes and HTTP for tests that run the `pgsplit` binary (or a client tool) as a
//! process of its own: a guard that kills it, bounded waits, SIGTERM, free ports, the
//! quick-start `run` arguments, and plain HTTP/1.1 requests to the admin server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use pgsplit::localcluster::LocalCluster;

/// A child process killed if the test ends early (a failed assertion must not leave it holding
/// its ports for the next run).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for `child` to exit; at `deadline` kills it (and reaps it) and returns None.
pub fn wait_or_kill(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    // SAFETY: a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// A loopback port nothing listens on (at the time of the call).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `pgsplit run` with quick-start flags: listening on loopback `port`, `cluster`'s primary and
/// replicas, and the admin server on `admin`.
pub fn quick_start_args(cluster: &LocalCluster, port: u16, admin: &str) -> Vec<String> {
    let mut args = vec![
        "run".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--primary".into(),
        cluster.primary().addr(),
    ];
    for r in cluster.replicas() {
        args.extend(["--replica".to_string(), r.addr()]);
    }
    args.extend(["--admin".to_string(), admin.to_string()]);
    args
}

/// A plain HTTP/1.1 request with an empty body (`Connection: close`), its answer read within
/// `timeout`: (status, body), or the connect or read error.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    http_with(addr, method, path, &[], timeout)
}

/// [`http`] with extra request headers.
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    http_response(addr, method, path, headers, timeout).map(|r| (r.status, r.body))
}

/// An HTTP answer: status, the response headers' text, body.
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// A response header's value (names compared without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }
}

/// [`http_with`], keeping the response headers.
pub fn http_response(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {response:?}")))?;
    Ok(HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}
