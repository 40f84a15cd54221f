//! Health checks and failover against real servers: replicas killed, hung (SIGSTOP) and
//! restarted under load, the primary stopped and a replica promoted (graceful shutdown is in
//! `drain.rs`).
//!
//! Each test breaks the nodes of a private cluster of its own. Every wait is bounded, client
//! tools write their output to files, and each test stays under about a minute.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::load::{
    BackgroundTool, bounded, config_for, connect_within, describe, failed_transactions,
    fresh_read_port, processed_transactions, read_port, read_port_extended, sqlstate,
    wait_served_by,
};
use common::load::{STATEMENT, Verdicts, on_cluster, psql_ids, round_robin};
use common::private_cluster;
use common::proxy::{TestProxy, start_proxy};
use common::wire;
use pgsplit::localcluster::{LocalCluster, PgNode};
use tokio::task::block_in_place;
use tokio::time::sleep_until;

/// SQLSTATE classes of a clear "the server is not there" error: 08 (connection exception) and
/// 57 (operator intervention: 57P01 admin shutdown, 57P03 cannot connect now, ...).
fn is_unavailable(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("57"))
}

fn wait_replicas_caught_up(c: &LocalCluster) {
    let lsn = c.current_lsn().expect("primary position");
    for r in c.replicas() {
        c.wait_replayed(r, &lsn, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{} replays the primary: {e}", r.name));
    }
}

/// Resumes a paused node when dropped, so a failed assertion never leaves it frozen.
struct Resume<'a> {
    cluster: &'a LocalCluster,
    node: &'a PgNode,
    done: bool,
}

impl Resume<'_> {
    fn now(&mut self) {
        if !self.done {
            self.done = true;
            on_cluster(|| self.cluster.resume(self.node)).expect("SIGCONT");
        }
    }
}

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.cluster.resume(self.node);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. pgbench through a replica crash

#[tokio::test(flavor = "multi_thread")]
async fn pgbench_select_only_survives_a_replica_killed_and_restarted() {
    let c = on_cluster(|| private_cluster(2));
    let primary = c.primary();
    let init = BackgroundTool::spawn(
        "pgbench",
        &[
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            primary.port.to_string(),
            "-U".into(),
            "postgres".into(),
            "-i".into(),
            "-s".into(),
            "1".into(),
            "-q".into(),
            "postgres".into(),
        ],
    );
    let init = on_cluster(|| init.wait_until(Instant::now() + Duration::from_secs(60)));
    assert!(
        init.status.is_some_and(|s| s.success()),
        "pgbench -i on the primary:\n{}",
        init.report()
    );
    on_cluster(|| wait_replicas_caught_up(&c));
    let proxy = on_cluster(|| start_proxy(config_for(&c)));
    let victim = c.replicas()[0].clone();

    let started = Instant::now();
    let mut args = proxy.cli_args();
    args.extend(
        [
            "-U", "postgres", "-S", "-c", "8", "-j", "2", "-T", "20", "-n", "-P", "2", "postgres",
        ]
        .map(String::from),
    );
    let bench = BackgroundTool::spawn("pgbench", &args);
    sleep_until((started + Duration::from_secs(4)).into()).await;
    on_cluster(|| c.kill(&victim)).expect("SIGKILL replica1");
    let killed_at = started.elapsed();
    sleep_until((started + Duration::from_secs(10)).into()).await;
    on_cluster(|| c.start_node(&victim)).expect("restart replica1");
    let restarted_at = started.elapsed();
    let run = on_cluster(|| bench.wait_until(started + Duration::from_secs(60)));
    let back = wait_served_by(&proxy, victim.port, Duration::from_secs(10)).await;

    let context = format!(
        "replica1 killed at {killed_at:?}, restarted at {restarted_at:?}; pgbench:\n{}",
        run.report()
    );
    assert!(
        run.status.is_some(),
        "pgbench did not finish within 60 s; {context}"
    );
    assert_eq!(
        failed_transactions(&run.stdout),
        Some(0),
        "failed transactions; {context}"
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "pgbench exit status; {context}"
    );
    assert!(
        processed_transactions(&run.stdout).is_some_and(|n| n > 0),
        "pgbench processed nothing; {context}"
    );
    if let Err(e) = back {
        panic!("after its restart, replica1 serves no reads: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A hung replica

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_replica_leaves_the_rotation_within_the_health_timeout() {
    let c = on_cluster(|| private_cluster(2));
    let mut config = config_for(&c);
    config.health.timeout = Duration::from_secs(1);
    let limit = config.health.timeout + Duration::from_secs(2);
    let proxy = on_cluster(|| start_proxy(config));
    for r in c.replicas() {
        if let Err(e) = wait_served_by(&proxy, r.port, Duration::from_secs(10)).await {
            panic!("before the test, {} serves no reads: {e}", r.name);
        }
    }
    let hung = &c.replicas()[0];
    on_cluster(|| c.pause(hung)).expect("SIGSTOP replica1");
    let mut resume = Resume {
        cluster: &c,
        node: hung,
        done: false,
    };
    let paused_at = Instant::now();
    let mut reads = Vec::new();
    let mut bad = 0;
    for _ in 0..30 {
        let t = Instant::now();
        // Bounded above the limit, so a read that hangs is measured, not waited for forever.
        let result = fresh_read_port(&proxy, limit + Duration::from_secs(2)).await;
        let took = t.elapsed();
        if result.is_err() || took > limit {
            bad += 1;
        }
        reads.push((paused_at.elapsed(), took, result));
        if bad >= 5 {
            break; // the verdict is clear; keep the test short
        }
    }
    resume.now();
    let back = wait_served_by(&proxy, hung.port, Duration::from_secs(10)).await;

    let failed: Vec<_> = reads.iter().filter(|(_, _, r)| r.is_err()).collect();
    let slow: Vec<_> = reads.iter().filter(|(_, t, _)| *t > limit).collect();
    assert!(
        failed.is_empty() && slow.is_empty() && reads.len() == 30,
        "with replica1 hung, every read in a fresh session must succeed within {limit:?} \
         (health.timeout + 2 s); {} of 30 ran, failed: {failed:?}, slow: {slow:?} \
         (each: since the pause, duration, result)",
        reads.len()
    );
    if let Err(e) = back {
        panic!("10 s after SIGCONT, replica1 serves no reads: {e}");
    }
}

/// A primary stalled past one health check (the whole machine can stall like this under load)
/// stays in service: its work has nowhere else to go, so a timed-out check counts towards
/// `ban_after` rather than banning it at once, and the statements after the stall run.
#[tokio::test(flavor = "multi_thread")]
async fn a_primary_stalled_for_one_health_check_stays_in_service() {
    let c = on_cluster(|| private_cluster(1));
    let config = config_for(&c);
    // Past one check's deadline (the first timeout), short of the reconnect's (the second).
    let stall = config.health.timeout + config.health.timeout / 2;
    let proxy = on_cluster(|| start_proxy(config));
    let writer = connect_within(&proxy, STATEMENT).await.expect("connect");
    let write = || {
        bounded(
            "a write",
            STATEMENT,
            writer.batch_execute(
                "CREATE TABLE IF NOT EXISTS stall_t (id int); INSERT INTO stall_t VALUES (1)",
            ),
        )
    };
    write().await.expect("a write before the stall");
    let primary = c.primary();
    on_cluster(|| c.pause(primary)).expect("SIGSTOP the primary");
    let mut resume = Resume {
        cluster: &c,
        node: primary,
        done: false,
    };
    tokio::time::sleep(stall).await;
    resume.now();
    write()
        .await
        .map_err(|e| describe(&e))
        .expect("a write right after the stall (the primary must not be banned)");
    let fresh = connect_within(&proxy, STATEMENT)
        .await
        .expect("a new session");
    let count = bounded(
        "a read",
        STATEMENT,
        fresh.query_one("SELECT count(*) FROM stall_t", &[]),
    )
    .await
    .map_err(|e| describe(&e))
    .expect("a read right after the stall");
    assert!(count.get::<_, i64>(0) >= 1);
}

// ---------------------------------------------------------------------------------------------
// 3. Primary down, then a promotion

/// One INSERT of the background loop.
#[derive(Debug, Clone)]
struct Attempt {
    id: i64,
    started: Instant,
    ended: Instant,
    /// Err: (SQLSTATE, description).
    result: Result<(), (Option<String>, String)>,
}

impl Attempt {
    fn took(&self) -> Duration {
        self.ended - self.started
    }

    /// Failed within [`FAILS_FAST`] with a clear "the server is not there" error.
    fn failed_clearly(&self) -> bool {
        self.took() <= FAILS_FAST
            && matches!(&self.result, Err((code, _)) if is_unavailable(code.as_deref()))
    }
}

/// Autocommit INSERTs through pgsplit, one after another, until `stop`; every attempt logged.
/// A session pgsplit closes is replaced by a new one.
async fn insert_loop(
    connstr: String,
    next_id: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
    reconnects: Arc<Mutex<Vec<String>>>,
) {
    let hard_stop = Instant::now() + Duration::from_secs(90);
    let mut client = None;
    while !stop.load(Ordering::SeqCst) && Instant::now() < hard_stop {
        let Some(c) = &client else {
            match tokio::time::timeout(STATEMENT, common::connect(&connstr)).await {
                Ok(Ok(c)) => client = Some(c),
                Ok(Err(e)) => reconnects.lock().expect("log").push(describe(&e)),
                Err(_) => reconnects.lock().expect("log").push("timed out".into()),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let result = match tokio::time::timeout(
            STATEMENT,
            c.execute(
                "INSERT INTO failover_t (id, src) VALUES ($1, 'loop')",
                &[&id],
            ),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let closed = e.is_closed();
                let r = Err((sqlstate(&e), describe(&e)));
                if closed {
                    client = None;
                }
                r
            }
            Err(_) => {
                client = None;
                Err((None, format!("no answer within {STATEMENT:?}")))
            }
        };
        log.lock().expect("log").push(Attempt {
            id,
            started,
            ended: Instant::now(),
            result,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh session's `INSERT ... RETURNING inet_server_port()`, all of it within `limit`.
async fn insert_returning_port(
    proxy: &TestProxy,
    id: i64,
    src: &str,
    limit: Duration,
) -> Result<i32, (Option<String>, String)> {
    let work = async {
        let client = common::connect(&proxy.connstr("postgres", "postgres"))
            .await
            .map_err(|e| (sqlstate(&e), format!("connect: {}", describe(&e))))?;
        let row = client
            .query_one(
                "INSERT INTO failover_t (id, src) VALUES ($1, $2) RETURNING inet_server_port()",
                &[&id, &src],
            )
            .await
            .map_err(|e| (sqlstate(&e), format!("insert: {}", describe(&e))))?;
        Ok(row.get::<_, i32>(0))
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err((None, format!("no answer within {limit:?}"))),
    }
}

/// How soon a write must fail once the primary is down. pgsplit fails it at once (the server
/// ends its connections, and a stopped server refuses new ones on loopback), so this is only
/// room for a loaded machine to schedule pgsplit and the test.
const FAILS_FAST: Duration = Duration::from_secs(5);

/// A read in a fresh session, and an eventual read in `writer`, a session that has written.
async fn reads_in_an_outage(
    proxy: &TestProxy,
    writer: &tokio_postgres::Client,
) -> [Result<i64, String>; 2] {
    let fresh = match connect_within(proxy, STATEMENT).await {
        Ok(client) => bounded(
            "a read with the primary down",
            STATEMENT,
            client.query_one("SELECT count(*) FROM failover_t", &[]),
        )
        .await
        .map(|r| r.get::<_, i64>(0))
        .map_err(|e| describe(&e)),
        Err(e) => Err(e),
    };
    let eventual = bounded("an eventual read with the primary down", STATEMENT, async {
        writer
            .batch_execute("SET pgsplit.consistency = 'eventual'")
            .await?;
        writer
            .query_one("SELECT count(*) FROM failover_t", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    })
    .await
    .map_err(|e| describe(&e));
    [fresh, eventual]
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_down_then_promotion() {
    let c = on_cluster(|| private_cluster(2));
    let config = config_for(&c);
    // The monitor measures lag against the primary's position, which it stops trusting this
    // long after its last poll: past it, no replica's lag is known.
    let lag_unknown_after = config.health.timeout + 2 * config.monitor.interval;
    let proxy = on_cluster(|| start_proxy(config));
    let (old_primary, new_primary) = (c.primary().clone(), c.replicas()[0].clone());

    let setup = connect_within(&proxy, STATEMENT).await.expect("connect");
    bounded("setup", STATEMENT, async {
        setup
            .batch_execute(
                "CREATE TABLE failover_t (id bigint PRIMARY KEY, src text NOT NULL); \
                 INSERT INTO failover_t VALUES (0, 'setup')",
            )
            .await
            .expect("create the table through pgsplit");
    })
    .await;
    // A session that has written, for the eventual reads while the primary is down.
    let writer = connect_within(&proxy, STATEMENT).await.expect("connect");
    bounded(
        "a write",
        STATEMENT,
        writer.execute("INSERT INTO failover_t VALUES (-1, 'writer')", &[]),
    )
    .await
    .expect("insert through pgsplit");

    let next_id = Arc::new(AtomicI64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let reconnects = Arc::new(Mutex::new(Vec::new()));
    let writes = tokio::spawn(insert_loop(
        proxy.connstr("postgres", "postgres"),
        next_id.clone(),
        stop.clone(),
        log.clone(),
        reconnects.clone(),
    ));
    let warm = Instant::now() + STATEMENT;
    while log
        .lock()
        .expect("log")
        .iter()
        .filter(|a| a.result.is_ok())
        .count()
        < 10
    {
        assert!(
            Instant::now() < warm,
            "the insert loop did not get 10 inserts through within {STATEMENT:?}: {:?}",
            log.lock().expect("log")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The primary goes down.
    let stop_started = Instant::now();
    on_cluster(|| c.stop(&old_primary)).expect("stop the primary");
    let stop_done = Instant::now();
    // Ids from here on are taken once the old primary is down: none may ever land on it (an
    // INSERT sent while it was shutting down may have committed there, legitimately).
    let first_outage_id = next_id.load(Ordering::SeqCst);

    // A write in a fresh session fails fast, with a clear error.
    let t = Instant::now();
    let fresh_write = insert_returning_port(
        &proxy,
        next_id.fetch_add(1, Ordering::SeqCst),
        "outage",
        FAILS_FAST,
    )
    .await;
    let fresh_write_took = t.elapsed();

    // The running loop sees its writes fail fast too.
    let loop_deadline = stop_done + FAILS_FAST;
    let first_loop_failure = loop {
        let found = log
            .lock()
            .expect("log")
            .iter()
            .find(|a| a.ended > stop_started && a.result.is_err())
            .cloned();
        if found.is_some() || Instant::now() > loop_deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Reads keep working: a fresh session, and the session that wrote (eventual consistency);
    // right away, and again once the replicas' lag is unknown for want of a primary.
    let early_reads = reads_in_an_outage(&proxy, &writer).await;
    sleep_until((stop_started + lag_unknown_after + Duration::from_secs(1)).into()).await;
    let late_reads = reads_in_an_outage(&proxy, &writer).await;

    // The attempts of the loop during the outage, before any promotion.
    let promote_started = Instant::now();
    let outage: Vec<Attempt> = log
        .lock()
        .expect("log")
        .iter()
        .filter(|a| a.started >= stop_done && a.started < promote_started)
        .cloned()
        .collect();

    on_cluster(|| c.promote(&new_primary)).expect("promote replica1");
    let promote_done = Instant::now();

    // Writes reach the promoted replica through the same address.
    let deadline = promote_done + Duration::from_secs(10);
    let mut after_promotion = Vec::new();
    let promoted_write = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        match insert_returning_port(&proxy, id, "promoted", left.min(Duration::from_secs(5))).await
        {
            Ok(port) => break Some((promote_done.elapsed(), port)),
            Err(e) => after_promotion.push(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The old primary comes back, as a primary: it must get no writes.
    on_cluster(|| c.start_node(&old_primary)).expect("restart the old primary");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut after_restart = Vec::new();
    for _ in 0..5 {
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        after_restart
            .push(insert_returning_port(&proxy, id, "after-restart", Duration::from_secs(5)).await);
    }

    stop.store(true, Ordering::SeqCst);
    bounded("the insert loop stops", Duration::from_secs(15), writes)
        .await
        .expect("insert loop");
    let attempts = log.lock().expect("log").clone();
    let on_new = on_cluster(|| psql_ids(&c, &new_primary, "SELECT id FROM failover_t ORDER BY id"));
    let on_old = on_cluster(|| {
        psql_ids(
            &c,
            &old_primary,
            &format!("SELECT id FROM failover_t WHERE id >= {first_outage_id} ORDER BY id"),
        )
    });

    // Verdicts, in the order of the story; all of them are reported.
    let port = |p: &PgNode| i32::from(p.port);
    let mut v = Verdicts::default();
    v.check(
        matches!(&fresh_write, Err((code, _)) if is_unavailable(code.as_deref()))
            && fresh_write_took <= FAILS_FAST,
        || {
            format!(
                "with the primary stopped, a write in a fresh session must fail within \
                 {FAILS_FAST:?} with SQLSTATE class 08 or 57; got {fresh_write:?} after \
                 {fresh_write_took:?}"
            )
        },
    );
    v.check(
        matches!(&first_loop_failure, Some(a)
            if a.ended <= loop_deadline
                && is_unavailable(a.result.as_ref().err().and_then(|e| e.0.as_deref()))),
        || {
            let since_stop = |t: Instant| t.saturating_duration_since(stop_done);
            format!(
                "with the primary stopped (the stop took {:?}), the running session's INSERT must \
                 fail within {FAILS_FAST:?} of the stop with SQLSTATE class 08 or 57; first \
                 failure (started, ended after the stop): {:?}; the loop's failed reconnects: {:?}",
                stop_done - stop_started,
                first_loop_failure.as_ref().map(|a| (
                    since_stop(a.started),
                    since_stop(a.ended),
                    &a.result
                )),
                reconnects.lock().expect("log")
            )
        },
    );
    let unclear: Vec<_> = outage.iter().filter(|a| !a.failed_clearly()).collect();
    v.check(unclear.is_empty(), || {
        format!(
            "during the outage, every INSERT must fail within {FAILS_FAST:?} with SQLSTATE class \
             08 or 57; not so ({} of {}): {unclear:?}",
            unclear.len(),
            outage.len()
        )
    });
    // The INSERTs the stop caught in flight may have committed, but none may hang: a lost
    // server connection answers every unit sent on it.
    let stuck: Vec<_> = attempts
        .iter()
        .filter(|a| a.ended > stop_started && a.started < stop_done)
        .filter(|a| !a.failed_clearly() && (a.result.is_err() || a.took() > FAILS_FAST))
        .map(|a| (a.id, a.took(), &a.result))
        .collect();
    v.check(stuck.is_empty(), || {
        format!(
            "an INSERT in flight while the primary stopped must commit, or fail with SQLSTATE \
             class 08 or 57, within {FAILS_FAST:?}; not so (id, duration, result): {stuck:?}"
        )
    });
    for (when, [fresh_read, writer_read]) in [
        ("right after the stop", early_reads),
        ("with every replica's lag unknown", late_reads),
    ] {
        v.check(fresh_read.is_ok(), || {
            format!(
                "with the primary down ({when}), a read in a fresh session fails: {fresh_read:?}"
            )
        });
        v.check(writer_read.is_ok(), || {
            format!(
                "with the primary down ({when}), an eventual read in a session that has \
                 written fails: {writer_read:?}"
            )
        });
    }
    v.check(
        matches!(promoted_write, Some((_, p)) if p == port(&new_primary)),
        || match promoted_write {
            Some((after, p)) => format!(
                "after the promotion, a write ran on port {p} ({after:?} after), not on replica1 \
                 ({})",
                new_primary.port
            ),
            None => format!(
                "no write succeeded within 10 s of promoting replica1; errors: {after_promotion:?}"
            ),
        },
    );
    v.check(
        after_restart
            .iter()
            .all(|r| matches!(r, Ok(p) if *p == port(&new_primary))),
        || {
            format!(
                "with the old primary back, writes must still go to replica1 (port {}): \
                 {after_restart:?}",
                new_primary.port
            )
        },
    );
    v.check(on_old.is_empty(), || {
        format!(
            "the old primary got writes sent after it had stopped (ids >= {first_outage_id}): \
             {on_old:?}"
        )
    });
    let committed: BTreeSet<i64> = attempts
        .iter()
        .filter(|a| a.result.is_ok())
        .map(|a| a.id)
        .collect();
    let lost: Vec<_> = committed.difference(&on_new).collect();
    v.check(lost.is_empty() && on_new.len() >= committed.len(), || {
        format!(
            "committed inserts lost on the new primary: {lost:?} ({} reported success, {} rows \
             there)",
            committed.len(),
            on_new.len()
        )
    });
    v.finish();
}

// ---------------------------------------------------------------------------------------------
// 4. A read on a replica that just died

#[tokio::test(flavor = "multi_thread")]
async fn a_read_on_a_failing_replica_is_retried_unseen() {
    let c = on_cluster(|| private_cluster(2));
    // Round robin: the session's reads reach both replicas, whichever dies.
    let proxy = on_cluster(|| start_proxy(round_robin(config_for(&c))));
    let victim = c.replicas()[0].clone();
    // The session reads on both replicas first, so the pool holds idle connections to each.
    let session = connect_within(&proxy, STATEMENT).await.expect("connect");
    let mut seen = BTreeSet::new();
    let warm = Instant::now() + STATEMENT;
    while seen.len() < 2 {
        assert!(
            Instant::now() < warm,
            "reads reached only {seen:?} within {STATEMENT:?}"
        );
        let port = read_port(&session, STATEMENT).await.expect("a read");
        if c.replicas().iter().any(|r| i32::from(r.port) == port) {
            seen.insert(port);
        }
    }

    on_cluster(|| c.kill(&victim)).expect("SIGKILL replica1");
    let mut errors = Vec::new();
    let mut wrong = Vec::new();
    for i in 0..20 {
        // The session's reads alternate between the simple and the extended protocol.
        let in_session = if i % 2 == 0 {
            read_port(&session, STATEMENT).await
        } else {
            read_port_extended(&session, STATEMENT).await
        };
        for (kind, result) in [
            ("the idle session", in_session),
            ("a fresh session", fresh_read_port(&proxy, STATEMENT).await),
        ] {
            match result {
                Ok(p) if p == i32::from(victim.port) => wrong.push(format!("read {i} in {kind}")),
                Ok(_) => {}
                Err(e) => errors.push(format!("read {i} in {kind}: {e}")),
            }
        }
    }
    assert!(
        errors.is_empty(),
        "right after replica1 was killed, reads must not fail ({} of 40 did): {errors:#?}",
        errors.len()
    );
    assert!(wrong.is_empty(), "a dead replica answered? {wrong:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. A primary connection lost with a pipeline on it

#[tokio::test(flavor = "multi_thread")]
async fn every_unit_pipelined_on_a_lost_connection_gets_its_answer() {
    let c = on_cluster(|| private_cluster(1));
    let proxy = on_cluster(|| start_proxy(config_for(&c)));
    let mut session = wire::logged_in(proxy.addr).await;
    // Two units in one write, both for the primary: the second waits behind the first on the
    // same server connection, which is then ended under them.
    let mut pipeline =
        wire::query("/* pgsplit: route=primary */ SELECT pg_sleep(30), 'pipelined_loss'");
    pipeline.extend(wire::query("/* pgsplit: route=primary */ SELECT 2"));
    wire::send(&mut session, &pipeline).await;
    bounded("the slow unit ends", STATEMENT, async {
        loop {
            let ended = on_cluster(|| {
                c.psql(
                    c.primary(),
                    "postgres",
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE query LIKE '%pipelined_loss%' AND pid <> pg_backend_pid()",
                )
            })
            .expect("psql on the primary");
            if ended.trim() != "0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let mut answers = Vec::new();
    for unit in ["the slow unit", "the unit behind it"] {
        let answer =
            tokio::time::timeout(Duration::from_secs(5), wire::read_until_ready(&mut session))
                .await
                .unwrap_or_else(|_| {
                    panic!("{unit}: no ReadyForQuery within 5 s; answers so far: {answers:?}")
                });
        let tags = wire::tags(&answer);
        assert!(
            tags.contains('E') && tags.ends_with('Z'),
            "{unit}: an error, then ReadyForQuery; got {tags:?}"
        );
        answers.push(tags);
    }
    // The session goes on.
    let answer = wire::round_trip(&mut session, &wire::query("SELECT 3")).await;
    assert_eq!(wire::first_columns(&answer), ["3"], "{answer:?}");
}

/// `failover.promote_command`: a shell command that promotes the replica pgsplit names in
/// `PGSPLIT_PORT`, run with this cluster's own pg_ctl (as `postgres` when the tests run as root).
fn promote_command(c: &LocalCluster) -> String {
    let run_as = if unsafe { libc::geteuid() } == 0 {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let cases: Vec<String> = c
        .replicas()
        .iter()
        .map(|r| format!("{}) d='{}';;", r.port, r.datadir.display()))
        .collect();
    format!(
        "case \"$PGSPLIT_PORT\" in {} *) exit 1;; esac; {run_as}'{}' promote -D \"$d\"",
        cases.join(" "),
        c.binaries().tool("pg_ctl").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pgsplit_promotes_the_most_advanced_replica_when_configured() {
    let c = block_in_place(|| private_cluster(2));
    let mut config = config_for(&c);
    config.failover.promote_command = Some(promote_command(&c));
    config.failover.after = Duration::from_secs(1);
    let proxy = start_proxy(config);
    let setup = common::connect(&proxy.connstr("postgres", "postgres"))
        .await
        .expect("connect");
    setup
        .batch_execute("CREATE TABLE failover_t (id bigint PRIMARY KEY, src text)")
        .await
        .expect("table");
    block_in_place(|| wait_replicas_caught_up(&c));
    block_in_place(|| c.stop(c.primary())).expect("stop the primary");
    let replica_ports: Vec<i32> = c.replicas().iter().map(|r| i32::from(r.port)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut id = 1;
    loop {
        match insert_returning_port(&proxy, id, "after", Duration::from_secs(5)).await {
            Ok(port) => {
                assert!(
                    replica_ports.contains(&port),
                    "the write went to port {port}, not a promoted replica"
                );
                break;
            }
            Err((_, e)) => assert!(
                Instant::now() < deadline,
                "no replica was promoted within 20 s; last error: {e}"
            ),
        }
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
