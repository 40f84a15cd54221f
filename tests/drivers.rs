//! The client drivers applications use, through pgsplit with reads on the replicas: psycopg 3
//! and asyncpg (Python), pgjdbc (Java) and node-postgres, each running a probe script from
//! `tests/drivers/` (parameters, server-side prepared statements, pipelines and batches,
//! transactions and savepoints, cursors, COPY both ways, LISTEN/NOTIFY, cancel, errors,
//! read-your-writes). Debian's packages: `apt-get install python3-psycopg python3-asyncpg
//! libpostgresql-jdbc-java default-jdk-headless nodejs npm`; node-postgres with the cursor and
//! COPY modules Debian lacks comes from npm (`npm ci --prefix tests/drivers/node`). `.ci/run`
//! installs what is missing. A missing driver fails its test with that advice: a driver test
//! that skipped itself would let a claim go unchecked.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::load::{BackgroundTool, ToolRun};
use common::proxy::proxy;

/// A probe runs a dozen checks, each bounded by the driver itself to 30 s at most.
const PROBE_LIMIT: Duration = Duration::from_secs(120);

/// Debian's interpreter, which has Debian's driver packages (a PATH may put another first).
const PYTHON: &str = "/usr/bin/python3";
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn probe_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/drivers")
        .join(name)
}

/// Runs `program` with `args` within [`PROBE_LIMIT`] and fails the test with everything the
/// probe printed unless every check passed.
fn run_probe(program: &str, path: &Path, args: &[String]) {
    let run: ToolRun = tokio::task::block_in_place(|| {
        BackgroundTool::spawn_program(program, path, args).wait_until(Instant::now() + PROBE_LIMIT)
    });
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{program} probe failed:\n{}",
        run.report()
    );
    eprintln!("{}", run.stdout);
}

/// The arguments of a probe that takes pgsplit's address apart: `probe HOST PORT DB TABLE`.
fn address_args(probe: &str, table: String) -> [String; 5] {
    let addr = proxy().addr;
    [
        probe_file(probe).display().to_string(),
        addr.ip().to_string(),
        addr.port().to_string(),
        "postgres".to_string(),
        table,
    ]
}

/// Fails unless Debian's Python has `module`, saying which package to install.
fn require_python_module(module: &str, package: &str) {
    let found = std::process::Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "{PYTHON} cannot import {module}: install Debian's {package} (`apt-get install {package}`)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn psycopg_runs_every_kind_of_statement() {
    require_python_module("psycopg", "python3-psycopg");
    let table = common::unique_name("psycopg");
    let args = [
        probe_file("psycopg_probe.py").display().to_string(),
        proxy().connstr("postgres", "postgres"),
        table,
    ];
    run_probe("psycopg", Path::new(PYTHON), &args);
}

#[tokio::test(flavor = "multi_thread")]
async fn asyncpg_runs_every_kind_of_statement() {
    require_python_module("asyncpg", "python3-asyncpg");
    let table = common::unique_name("asyncpg");
    let args = address_args("asyncpg_probe.py", table);
    run_probe("asyncpg", Path::new(PYTHON), &args);
}

#[tokio::test(flavor = "multi_thread")]
async fn pgjdbc_runs_every_kind_of_statement() {
    let advice = "install Debian's libpostgresql-jdbc-java and default-jdk-headless";
    assert!(
        Path::new(PGJDBC_JAR).exists(),
        "{PGJDBC_JAR} not found: {advice}"
    );
    let classes = std::env::temp_dir().join(common::unique_name("pgjdbc_probe"));
    let compiled = std::process::Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .args(["-cp", PGJDBC_JAR])
        .arg(probe_file("PgjdbcProbe.java"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run javac ({e}): {advice}"));
    assert!(
        compiled.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let addr = proxy().addr;
    let args = [
        "-cp".to_string(),
        format!("{PGJDBC_JAR}:{}", classes.display()),
        "PgjdbcProbe".to_string(),
        format!("jdbc:postgresql://{addr}/postgres?user=postgres&connectTimeout=10"),
        common::unique_name("pgjdbc"),
    ];
    run_probe("pgjdbc", Path::new("java"), &args);
    let _ = std::fs::remove_dir_all(&classes);
}

#[tokio::test(flavor = "multi_thread")]
async fn node_postgres_runs_every_kind_of_statement() {
    let modules = probe_file("node/node_modules/pg");
    assert!(
        modules.exists(),
        "{} not found: install nodejs and npm (`apt-get install nodejs npm`), then run \
         `npm ci --prefix tests/drivers/node`",
        modules.display()
    );
    let args = address_args("node/pg_probe.js", common::unique_name("node_pg"));
    run_probe("node-postgres", Path::new("node"), &args);
}
