//! Replica lag as the monitor measures it, against real servers: a primary and two streaming
//! replicas of a private cluster, watched by `topology::monitor` directly (no proxy), while the
//! test writes on the primary, pauses or delays replay on one replica, or freezes a node.
//!
//! "Near zero" is [`NEAR_ZERO`]: a healthy replica is milliseconds behind, and the monitor polls
//! every 100 ms, so anything close to a poll interval or beyond is a real delay.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pgsplit::config::Config;
use pgsplit::localcluster::{LocalCluster, PgNode};
use pgsplit::topology::{Node, Topology, monitor};
use tokio::task::block_in_place;
use tokio_postgres::Client;

const NEAR_ZERO: Duration = Duration::from_millis(300);
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// Bound for anything on the servers that should take well under a second.
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A private cluster with the monitor watching it, and a connection to its primary.
struct Fixture {
    cluster: LocalCluster,
    /// The monitor's view of the nodes, replicas in the cluster's order.
    primary_node: Arc<Node>,
    replicas: Vec<Arc<Node>>,
    primary: Client,
}

/// Starts a cluster of a primary and two replicas with a table to write to, replicated
/// everywhere, and the monitor running and measuring every replica.
async fn start() -> Fixture {
    let cluster = block_in_place(|| common::private_cluster(2));
    let replica_addrs: Vec<String> = cluster.replicas().iter().map(PgNode::addr).collect();
    let config = Config::quick_start(&cluster.primary().addr(), &replica_addrs)
        .unwrap_or_else(|e| panic!("{e}"));
    let topology = Arc::new(ArcSwap::from_pointee(Topology::from_config(&config)));
    monitor::spawn(
        Arc::clone(&topology),
        &config.monitor,
        &config.health,
        Duration::from_secs(5),
    );
    let topology = topology.load_full();
    let primary = common::connect(&cluster.primary().connstr("postgres", "postgres"))
        .await
        .expect("connect to the primary");
    bounded(
        "creating the table",
        primary.batch_execute("CREATE TABLE writes (id serial PRIMARY KEY, at timestamptz)"),
    )
    .await
    .expect("create the table");
    block_in_place(|| {
        let lsn = cluster.current_lsn().expect("primary position");
        for replica in cluster.replicas() {
            cluster
                .wait_replayed(replica, &lsn, SERVER_TIMEOUT)
                .expect("replicas replay the table");
        }
    });
    let replicas = topology.clusters[0].replicas.clone();
    let primary_node = Arc::clone(&topology.clusters[0].primary);
    eventually("the monitor measures every node", SERVER_TIMEOUT, || {
        primary_node.stats.lag() == Some((0, Duration::ZERO))
            && replicas.iter().all(|r| r.stats.lag().is_some())
    })
    .await;
    Fixture {
        cluster,
        primary_node,
        replicas,
        primary,
    }
}

/// `work`, which must end within [`SERVER_TIMEOUT`].
async fn bounded<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(SERVER_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {SERVER_TIMEOUT:?}"))
}

/// Waits until `check` holds, checking every [`SAMPLE_EVERY`] for at most `limit`.
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// One reading of a replica's published lag.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    bytes: u64,
    time: Duration,
}

/// Reads every replica's lag each [`SAMPLE_EVERY`] for `span`: one series per replica. The lag
/// must stay known throughout (the monitor polls a healthy node without failing).
async fn sample(replicas: &[Arc<Node>], span: Duration) -> Vec<Vec<Sample>> {
    let mut series = vec![Vec::new(); replicas.len()];
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    let end = Instant::now() + span;
    while Instant::now() < end {
        ticks.tick().await;
        for (node, series) in replicas.iter().zip(&mut series) {
            let (bytes, time) = node
                .stats
                .lag()
                .unwrap_or_else(|| panic!("{}: lag unknown", node.name));
            series.push(Sample {
                at: Instant::now(),
                bytes,
                time,
            });
        }
    }
    series
}

/// Inserts a row every [`WRITE_EVERY`] for `span`, each its own commit.
async fn write_steadily(primary: &Client, span: Duration) {
    let mut ticks = tokio::time::interval(WRITE_EVERY);
    let end = Instant::now() + span;
    while Instant::now() < end {
        ticks.tick().await;
        bounded(
            "an insert",
            primary.execute("INSERT INTO writes (at) VALUES (now())", &[]),
        )
        .await
        .expect("insert on the primary");
    }
}

fn max_time(series: &[Sample]) -> Duration {
    series.iter().map(|s| s.time).max().unwrap_or_default()
}

/// The longest stretch of consecutive samples with WAL bytes not yet replayed.
fn longest_behind_in_bytes(series: &[Sample]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since = None;
    for sample in series {
        match (sample.bytes > 0, since) {
            (true, None) => since = Some(sample.at),
            (true, Some(start)) => longest = longest.max(sample.at - start),
            (false, _) => since = None,
        }
    }
    longest
}

fn assert_near_zero(node: &Node, series: &[Sample]) {
    let max = max_time(series);
    assert!(
        max < NEAR_ZERO,
        "{}: lag reached {max:?}; samples: {series:?}",
        node.name
    );
}

/// Waits (at most `limit`) until `node` has replayed everything the primary was seen to write:
/// no bytes behind, hence no time behind either.
async fn caught_up_within(node: &Node, limit: Duration) {
    eventually(&format!("{} catches up", node.name), limit, || {
        node.stats.lag() == Some((0, Duration::ZERO))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_primary_leaves_every_replica_at_zero() {
    let fx = start().await;
    let samples = sample(&fx.replicas, Duration::from_secs(5)).await;
    for (node, series) in fx.replicas.iter().zip(&samples) {
        assert_near_zero(node, series);
        // The primary may still write a little WAL by itself (a standby snapshot, a checkpoint):
        // the replica is then bytes behind for as long as it takes to stream and replay it.
        let behind = longest_behind_in_bytes(series);
        assert!(
            behind < NEAR_ZERO,
            "{}: bytes behind for {behind:?} on an idle primary; samples: {series:?}",
            node.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_replica_grows_late_and_catches_up_once_resumed() {
    let fx = start().await;
    let (paused, healthy) = (&fx.replicas[0], &fx.replicas[1]);
    let paused_server = &fx.cluster.replicas()[0];
    block_in_place(|| fx.cluster.pause_replay(paused_server)).expect("pause replay");

    let writes = Duration::from_secs(2);
    let ((), samples) = tokio::join!(
        write_steadily(&fx.primary, writes),
        sample(&fx.replicas, writes + Duration::from_millis(200)),
    );
    let last = samples[0].last().copied();
    assert!(
        last.is_some_and(|s| s.time > Duration::from_secs(1) && s.bytes > 0),
        "{}: not more than 1 s late at the end of the writes; samples: {:?}",
        paused.name,
        samples[0]
    );
    // Once the pause has surely taken hold (replay may finish the record it was on), the lag
    // only grows, with wall time.
    let times: Vec<Duration> = samples[0]
        .iter()
        .map(|s| s.time)
        .skip_while(|&time| time < Duration::from_millis(500))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "{}: lag shrank while paused: {times:?}",
        paused.name
    );
    assert_near_zero(healthy, &samples[1]);

    block_in_place(|| fx.cluster.resume_replay(paused_server)).expect("resume replay");
    caught_up_within(paused, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_apply_delay_shows_as_steady_lag_under_writes_and_vanishes_after() {
    let fx = start().await;
    let delay = Duration::from_millis(300);
    let (delayed, other) = (&fx.replicas[0], &fx.replicas[1]);
    block_in_place(|| fx.cluster.set_apply_delay(&fx.cluster.replicas()[0], delay))
        .expect("set the apply delay");

    let writes = Duration::from_secs(3);
    let ((), samples) = tokio::join!(
        write_steadily(&fx.primary, writes),
        sample(&fx.replicas, writes),
    );
    // From the second second on the delay is established: the lag sits near it, neither at 0
    // nor growing like a stopped replica's.
    let settled: Vec<Sample> = samples[0]
        .iter()
        .filter(|s| s.at >= samples[0][0].at + Duration::from_secs(1))
        .copied()
        .collect();
    let (low, high) = (Duration::from_millis(150), Duration::from_millis(1500));
    assert!(
        settled.iter().any(|s| (low..=high).contains(&s.time)),
        "{}: lag never between {low:?} and {high:?}; samples: {settled:?}",
        delayed.name
    );
    let max = max_time(&settled);
    assert!(max <= high, "{}: lag grew to {max:?}", delayed.name);
    assert_near_zero(other, &samples[1]);

    // Once the writes stop, the last commit is applied `delay` after it was made.
    caught_up_within(delayed, delay + Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_node_makes_lag_unknown_until_it_answers_again() {
    let fx = start().await;
    // Past a poll's 2 s deadline, plus the primary's history going stale a little later.
    let noticed = Duration::from_secs(6);
    // A new connection (5 s connect timeout) after the reconnect pause, then a poll.
    let recovered = Duration::from_secs(15);
    let (hung, other) = (&fx.replicas[0], &fx.replicas[1]);
    let hung_server = &fx.cluster.replicas()[0];

    block_in_place(|| fx.cluster.pause(hung_server)).expect("freeze a replica");
    eventually("a frozen replica's lag turns unknown", noticed, || {
        hung.stats.lag().is_none() && hung.stats.replay_lsn.load(Ordering::Relaxed) == 0
    })
    .await;
    assert!(other.stats.lag().is_some(), "{}: lag unknown", other.name);
    block_in_place(|| fx.cluster.resume(hung_server)).expect("unfreeze the replica");
    eventually("the replica's lag is known again", recovered, || {
        hung.stats.lag().is_some()
    })
    .await;

    // Without the primary's position, no replica's lag can be told.
    let all_unknown = || {
        fx.primary_node.stats.lag().is_none() && fx.replicas.iter().all(|r| r.stats.lag().is_none())
    };
    block_in_place(|| fx.cluster.pause(fx.cluster.primary())).expect("freeze the primary");
    eventually(
        "a frozen primary makes every lag unknown",
        noticed,
        all_unknown,
    )
    .await;
    block_in_place(|| fx.cluster.resume(fx.cluster.primary())).expect("unfreeze the primary");
    eventually("every lag is known again", recovered, || {
        fx.replicas.iter().all(|r| r.stats.lag().is_some())
    })
    .await;
}
