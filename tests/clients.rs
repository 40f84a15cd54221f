//! Real command-line clients through pgsplit: psql with a multi-statement script, and pgbench
//! in every protocol mode with a consistency check of the balances afterwards.

mod common;

use std::time::{Duration, Instant};

use common::cluster;
use common::load::{BackgroundTool, ToolRun, failed_transactions};
use common::proxy::proxy;

/// Runs a PostgreSQL client tool with a time bound, failing the test with its output. Output
/// goes to files, not pipes: a tool that prints a lot must never block on a full pipe.
fn run_tool(tool: &str, args: &[String], timeout: Duration) -> ToolRun {
    let run = BackgroundTool::spawn(tool, args).wait_until(Instant::now() + timeout);
    let Some(status) = run.status else {
        panic!("{tool} {args:?} did not finish within {timeout:?}");
    };
    assert!(
        status.success(),
        "{tool} {args:?} failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

fn proxy_args(db: &str, extra: &[&str]) -> Vec<String> {
    let mut args = proxy().cli_args();
    args.extend(["-U".into(), "postgres".into(), "-d".into(), db.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `script` through psql (unaligned, tuples only) with the `-v` variable given; its output.
fn run_psql_script(name: &str, script: &str, variable: &str) -> ToolRun {
    let path = std::env::temp_dir().join(format!("{name}.sql"));
    std::fs::write(&path, script).expect("write the script");
    let file = path.to_str().expect("utf-8 path");
    let args = proxy_args("postgres", &["-X", "-A", "-t", "-v", variable, "-f", file]);
    let output = run_tool("psql", &args, Duration::from_secs(60));
    let _ = std::fs::remove_file(&path);
    output
}

#[test]
fn psql_runs_a_multi_statement_script() {
    let table = common::unique_name("psql_script");
    let script = format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, name text);\n\
         INSERT INTO {table} VALUES (1, 'one'), (2, 'two');\n\
         BEGIN;\n\
         UPDATE {table} SET name = 'TWO' WHERE id = 2;\n\
         COMMIT;\n\
         SELECT 'rows', count(*) FROM {table};\n\
         SELECT name FROM {table} WHERE id = 2; SELECT 'same line';\n\
         \\copy {table} FROM STDIN\n3\tthree\n\\.\n\
         SELECT 'after copy', count(*) FROM {table};\n\
         DROP TABLE {table};\n"
    );
    let output = run_psql_script(&table, &script, "ON_ERROR_STOP=1");
    let stdout = &output.stdout;
    for expected in ["rows|2", "TWO", "same line", "after copy|3"] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

/// psql waits for each statement's answer, as most drivers do: a savepoint that rescues a
/// failed block keeps the settings made before it, and the session's reads elsewhere (a
/// replica, after the commit) have them.
#[test]
fn psql_keeps_the_settings_a_savepoint_rescued() {
    let script = "BEGIN;\n\
         SET application_name = 'rescued';\n\
         SAVEPOINT s;\n\
         SELECT 1 / 0;\n\
         ROLLBACK TO SAVEPOINT s;\n\
         COMMIT;\n"
        .to_string()
        + &"SELECT 'after', current_setting('application_name');\n".repeat(4);
    let output = run_psql_script(&common::unique_name("rescued"), &script, "ON_ERROR_STOP=0");
    assert!(
        output.stderr.contains("division by zero"),
        "{}",
        output.stderr
    );
    let after: Vec<&str> = (output.stdout.lines())
        .filter(|l| l.starts_with("after|"))
        .collect();
    assert_eq!(after, ["after|rescued"; 4], "{}", output.stdout);
}

/// Sums of the four balance columns, which tpcb-like transactions keep equal.
fn balance_sums(db: &str) -> Vec<String> {
    let sql = "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), \
               (SELECT sum(bbalance) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)";
    let out = run_tool(
        "psql",
        &proxy_args(db, &["-X", "-A", "-t", "-c", sql]),
        Duration::from_secs(30),
    );
    out.stdout.trim().split('|').map(str::to_string).collect()
}

#[test]
fn pgbench_in_every_protocol_mode_keeps_balances_consistent() {
    let db = common::unique_name("bench");
    cluster()
        .psql(
            cluster().primary(),
            "postgres",
            &format!("CREATE DATABASE {db}"),
        )
        .expect("create the bench database");
    run_tool(
        "pgbench",
        &proxy_args(&db, &["-i", "-s", "1", "-q"]),
        Duration::from_secs(120),
    );
    for mode in ["simple", "extended", "prepared"] {
        for builtin in ["tpcb-like", "select-only"] {
            let out = run_tool(
                "pgbench",
                &proxy_args(
                    &db,
                    &[
                        "-M", mode, "-b", builtin, "-c", "16", "-j", "2", "-t", "50", "-n",
                    ],
                ),
                Duration::from_secs(120),
            );
            let stdout = &out.stdout;
            assert_eq!(
                failed_transactions(stdout),
                Some(0),
                "{mode} {builtin}:\n{stdout}"
            );
        }
    }
    let sums = balance_sums(&db);
    assert_eq!(sums.len(), 4, "{sums:?}");
    assert!(
        sums.iter().all(|s| s == &sums[0]),
        "balances differ: {sums:?}"
    );
    assert_ne!(sums[0], "0", "tpcb-like ran no updates");
}
