//! The `pgsplit` binary as users run it: `check`, `run` with quick-start flags (admin endpoints,
//! psql through it, SIGTERM), and `demo` from start to Ctrl-C.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{KillOnDrop, free_port, http, quick_start_args, sigterm, wait_or_kill};
use common::{binaries, cluster};

const PGSPLIT: &str = env!("CARGO_BIN_EXE_pgsplit");

/// Runs pgsplit to completion (bounded), returning (success, stdout, stderr).
fn pgsplit(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(PGSPLIT)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgsplit");
    let status = wait_or_kill(&mut child, Instant::now() + Duration::from_secs(30))
        .expect("pgsplit finishes within 30 s");
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .map(|mut s| s.read_to_string(&mut stdout));
    child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    (status.success(), stdout, stderr)
}

fn psql(port: u16, sql: &str) -> String {
    let out = Command::new(binaries().tool("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A GET of `path` on the admin server: its HTTP status.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    http(addr, "GET", path, Duration::from_secs(5))
        .ok()
        .map(|(status, _)| status)
}

/// Waits until something accepts connections on `port`.
fn wait_listening(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn check_prints_the_topology_of_every_example_config() {
    for entry in std::fs::read_dir("config").expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (ok, stdout, stderr) =
                pgsplit(&["check", "--config", path.to_str().expect("utf-8")]);
            assert!(ok, "{}: {stderr}", path.display());
            assert!(stdout.contains("primary"), "{stdout}");
            assert!(!stdout.contains("secret"), "a password leaked: {stdout}");
        }
    }
}

#[test]
fn check_names_file_line_and_key_of_a_bad_config() {
    let path = std::env::temp_dir().join(common::unique_name("bad") + ".toml");
    std::fs::write(
        &path,
        "[[clusters]]\nprimary = { addr = \"127.0.0.1:5432\" }\n\n[pool]\nmode = \"sometimes\"\n",
    )
    .expect("write");
    let (ok, _, stderr) = pgsplit(&["check", "--config", path.to_str().expect("utf-8")]);
    let _ = std::fs::remove_file(&path);
    assert!(!ok);
    let expected = format!("{}:5: pool.mode", path.display());
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in {stderr}"
    );
    assert!(
        stderr.contains("transaction") && stderr.contains("session"),
        "the allowed values are named: {stderr}"
    );
}

#[test]
fn run_with_quick_start_flags_serves_clients_and_admin_and_stops_on_sigterm() {
    let c = cluster();
    let (port, admin_port) = (free_port(), free_port());
    let admin = format!("127.0.0.1:{admin_port}");
    let mut child = KillOnDrop(
        Command::new(PGSPLIT)
            .args(quick_start_args(c, port, &admin))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgsplit run"),
    );
    wait_listening(port, Duration::from_secs(20));
    assert_eq!(http_status(&admin, "/healthz"), Some(200));
    assert_eq!(http_status(&admin, "/readyz"), Some(200));
    assert_eq!(psql(port, "SELECT 40 + 2"), "42");
    sigterm(&child.0);
    let status = wait_or_kill(&mut child.0, Instant::now() + Duration::from_secs(20))
        .expect("pgsplit exits within 20 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed after shutdown"
    );
}

#[test]
fn demo_starts_a_cluster_serves_psql_and_cleans_up_on_sigterm() {
    let port = free_port();
    let dir = std::env::temp_dir().join(common::unique_name("demo"));
    let mut child = KillOnDrop(
        Command::new(PGSPLIT)
            .args([
                "demo",
                "--port",
                &port.to_string(),
                "--dir",
                dir.to_str().expect("utf-8"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgsplit demo"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let connect_line = format!("psql -h 127.0.0.1 -p {port} -U postgres postgres");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(&connect_line)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                panic!(
                    "the demo did not print {connect_line:?} within 90 s; it printed:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
    // txid_current() makes it a write, so it runs on the primary, which has the 3 replicas.
    assert_eq!(
        psql(
            port,
            "WITH w AS (SELECT txid_current()) SELECT count(*) FROM pg_stat_replication, w"
        ),
        "3"
    );
    sigterm(&child.0);
    let status = wait_or_kill(&mut child.0, Instant::now() + Duration::from_secs(30))
        .expect("the demo stops within 30 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        !Path::new(&dir).exists(),
        "the demo removed {}",
        dir.display()
    );
}

#[test]
fn demo_without_server_binaries_says_how_to_install_them() {
    let out = Command::new(PGSPLIT)
        .args(["demo"])
        .env("PGSPLIT_PG_BINDIR", "/nonexistent/postgresql/bin")
        .output()
        .expect("run pgsplit demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apt-get install"), "{stderr}");
}

/// How many threads process `pid` has.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .count()
}

#[test]
fn json_logs_carry_session_fields_and_slow_queries() {
    let c = cluster();
    let port = free_port();
    let dir = std::env::temp_dir().join(common::unique_name("logs"));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("pgsplit.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nworker_threads = 1\n[log]\nslow_query = \"100ms\"\n[[clusters]]\nprimary = {{ addr = \"{}\" }}\n",
            c.primary().addr()
        ),
    )
    .expect("write config");
    let log = dir.join("pgsplit.log");
    let mut child = KillOnDrop(
        Command::new(PGSPLIT)
            .args([
                "run",
                "--log-format",
                "json",
                "--config",
                config.to_str().expect("utf-8"),
            ])
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start pgsplit run"),
    );
    wait_listening(port, Duration::from_secs(20));
    assert_eq!(psql(port, "SELECT 1 FROM pg_sleep(0.3)"), "1");
    assert_eq!(psql(port, "SELECT 2"), "2");
    // One worker thread is the main thread itself (tokio's current-thread scheduler).
    assert_eq!(threads_of(child.0.id()), 1, "worker_threads = 1");
    sigterm(&child.0);
    wait_or_kill(&mut child.0, Instant::now() + Duration::from_secs(20)).expect("exits");
    let text = std::fs::read_to_string(&log).expect("log");
    let slow: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "slow query")
        .collect();
    assert_eq!(
        slow.len(),
        1,
        "exactly the slow statement is logged:\n{text}"
    );
    let line = &slow[0];
    assert!(
        line["fields"]["statement"]
            .as_str()
            .is_some_and(|s| s.contains("pg_sleep")),
        "{line}"
    );
    assert_eq!(line["span"]["user"], "postgres", "{line}");
    assert!(line["span"]["id"].is_number(), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}
