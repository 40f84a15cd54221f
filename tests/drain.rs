//! Graceful shutdown: SIGTERM to a `pgsplit run` process while clients run transactions. No
//! transaction is lost: those in flight finish, new ones are refused with a clear error, and the
//! process exits 0 within the drain timeout.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::load::{STATEMENT, Verdicts, bounded, describe, on_cluster, psql_ids, sqlstate};
use common::private_cluster;
use common::process::{KillOnDrop, free_port, http, quick_start_args, sigterm, wait_or_kill};

const PGSPLIT: &str = env!("CARGO_BIN_EXE_pgsplit");

/// What a GET of `path` gets: an HTTP status, or the connect error.
fn http_get(addr: &str, path: &str) -> Result<u16, std::io::Error> {
    http(addr, "GET", path, Duration::from_secs(2)).map(|(status, _)| status)
}

/// One `BEGIN; INSERT; SELECT pg_sleep(0.2); COMMIT` of a drain client.
#[derive(Debug)]
struct Txn {
    client: usize,
    id: i64,
    inserted: Option<Instant>,
    /// When its last statement returned (or failed).
    ended: Instant,
    /// Ok(when COMMIT returned), or Err(stage, SQLSTATE, closed, description).
    outcome: Result<Instant, (&'static str, Option<String>, bool, String)>,
}

async fn drain_client(
    n: usize,
    connstr: String,
    next_id: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) -> Vec<Txn> {
    let client = match tokio::time::timeout(STATEMENT, common::connect(&connstr)).await {
        Ok(Ok(c)) => c,
        other => panic!("drain client {n} cannot connect: {other:?}"),
    };
    let mut txns = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        let mut txn = Txn {
            client: n,
            id,
            inserted: None,
            ended: Instant::now(),
            outcome: Ok(Instant::now()),
        };
        let insert = format!("INSERT INTO drain (id, client) VALUES ({id}, {n})");
        let steps: [(&'static str, &str); 4] = [
            ("BEGIN", "BEGIN"),
            ("INSERT", &insert),
            ("pg_sleep", "SELECT pg_sleep(0.2)"),
            ("COMMIT", "COMMIT"),
        ];
        for (stage, sql) in steps {
            match tokio::time::timeout(STATEMENT, client.batch_execute(sql)).await {
                Ok(Ok(())) => {
                    if stage == "INSERT" {
                        txn.inserted = Some(Instant::now());
                    }
                    if stage == "COMMIT" {
                        txn.outcome = Ok(Instant::now());
                    }
                }
                Ok(Err(e)) => {
                    txn.outcome = Err((stage, sqlstate(&e), e.is_closed(), describe(&e)));
                    break;
                }
                Err(_) => {
                    txn.outcome = Err((
                        stage,
                        None,
                        false,
                        format!("no answer within {STATEMENT:?}"),
                    ));
                    break;
                }
            }
        }
        txn.ended = Instant::now();
        let failed = txn.outcome.is_err();
        txns.push(txn);
        if failed {
            break;
        }
    }
    txns
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_load_drains_and_exits_zero() {
    let c = on_cluster(|| private_cluster(1));
    on_cluster(|| {
        c.psql(
            c.primary(),
            "postgres",
            "CREATE TABLE drain (id bigint PRIMARY KEY, client int NOT NULL)",
        )
    })
    .expect("create the table");
    let (port, admin_port) = (free_port(), free_port());
    let admin = format!("127.0.0.1:{admin_port}");
    let log_path = std::env::temp_dir().join(common::unique_name("pgsplit_drain") + ".log");
    let mut child = KillOnDrop(
        Command::new(PGSPLIT)
            .args(quick_start_args(&c, port, &admin))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log file"))
            .spawn()
            .expect("start pgsplit run"),
    );
    let pgsplit_log = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let ready_deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(http_get(&admin, "/readyz"), Ok(200))
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    {
        assert!(
            Instant::now() < ready_deadline,
            "pgsplit run is not ready within 20 s; its log:\n{}",
            pgsplit_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let connstr =
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10");
    let next_id = Arc::new(AtomicI64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            tokio::spawn(drain_client(
                n,
                connstr.clone(),
                next_id.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let sigterm_at = Instant::now();
    sigterm(&child.0);
    // Not ready any more (or gone) shortly after.
    let readyz_deadline = sigterm_at + Duration::from_secs(3);
    let readyz = loop {
        let got = http_get(&admin, "/readyz");
        let settled = match &got {
            Ok(503) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            Ok(_) => false,
        };
        if settled || Instant::now() > readyz_deadline {
            break (sigterm_at.elapsed(), got);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // New sessions are refused.
    let new_session = tokio::time::timeout(Duration::from_secs(5), async {
        let (client, connection) = tokio_postgres::connect(&connstr, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.simple_query("SELECT 1").await
    })
    .await;
    let new_session_refused = matches!(new_session, Ok(Err(_)));

    let status = on_cluster(|| wait_or_kill(&mut child.0, sigterm_at + Duration::from_secs(35)));
    let exited_after = sigterm_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut txns = Vec::new();
    for client in clients {
        txns.extend(
            bounded("a drain client ends", Duration::from_secs(15), client)
                .await
                .expect("drain client"),
        );
    }
    let in_table = on_cluster(|| psql_ids(&c, c.primary(), "SELECT id FROM drain ORDER BY id"));
    let log = pgsplit_log();
    let _ = std::fs::remove_file(&log_path);

    // Times relative to SIGTERM, for readable messages.
    let rel = |at: Instant| -> String {
        if at >= sigterm_at {
            format!("+{:?}", at - sigterm_at)
        } else {
            format!("-{:?}", sigterm_at - at)
        }
    };
    let show = |ts: &[&Txn]| -> String {
        ts.iter()
            .map(|t| {
                format!(
                    "\n  client {} id {}: inserted {:?}, ended {}, outcome {}",
                    t.client,
                    t.id,
                    t.inserted.map(rel),
                    rel(t.ended),
                    match &t.outcome {
                        Ok(at) => format!("committed {}", rel(*at)),
                        Err((stage, _, _, e)) => format!("{stage} failed: {e}"),
                    }
                )
            })
            .collect()
    };
    let mut v = Verdicts::default();
    v.check(
        matches!(readyz.1, Ok(503))
            || matches!(&readyz.1, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        || {
            format!(
                "/readyz after SIGTERM: {:?} (after {:?}); expected 503 or a closed port",
                readyz.1, readyz.0
            )
        },
    );
    v.check(new_session_refused, || {
        format!("after SIGTERM a new session must be refused; got {new_session:?}")
    });
    v.check(status.is_some_and(|s| s.success()), || match status {
        None => "pgsplit did not exit within 35 s of SIGTERM".to_string(),
        Some(s) => format!("pgsplit exited with {s:?} ({exited_after:?} after SIGTERM)"),
    });
    let committed_before = txns
        .iter()
        .filter(|t| matches!(t.outcome, Ok(at) if at < sigterm_at))
        .count();
    v.check(committed_before > 0, || {
        "no transaction committed before SIGTERM: the load did not run".to_string()
    });
    let missing: Vec<_> = txns
        .iter()
        .filter(|t| t.outcome.is_ok() && !in_table.contains(&t.id))
        .collect();
    v.check(missing.is_empty(), || {
        format!(
            "transactions whose COMMIT returned Ok are missing from the table:{}",
            show(&missing)
        )
    });
    let bad_commit_errors: Vec<_> = txns
        .iter()
        .filter(|t| match &t.outcome {
            Err(("COMMIT", code, closed, _)) => {
                let connection_closed = *closed || code.as_deref() == Some("57P01");
                !connection_closed || in_table.contains(&t.id)
            }
            _ => false,
        })
        .collect();
    v.check(bad_commit_errors.is_empty(), || {
        format!(
            "COMMIT errors other than a closed connection for a transaction that had not \
             committed:{}",
            show(&bad_commit_errors)
        )
    });
    // Transactions in flight at SIGTERM (their INSERT answered before it) complete.
    let cut: Vec<_> = txns
        .iter()
        .filter(|t| t.inserted.is_some_and(|at| at < sigterm_at) && t.outcome.is_err())
        .collect();
    v.check(cut.is_empty(), || {
        format!(
            "transactions in flight at SIGTERM (INSERT answered before it) did not complete:{}",
            show(&cut)
        )
    });
    let early: Vec<_> = txns
        .iter()
        .filter(|t| t.outcome.is_err() && t.ended < sigterm_at)
        .collect();
    v.check(early.is_empty(), || {
        format!(
            "transactions failed before SIGTERM was sent:{}",
            show(&early)
        )
    });
    if !v.all_passed() {
        eprintln!(
            "pgsplit run log (last lines):\n{log}\nall transactions:{}",
            show(&txns.iter().collect::<Vec<_>>())
        );
    }
    v.finish();
}
