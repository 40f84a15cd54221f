//! Consistency with real lag: read-your-writes by LSN, lag limits, causal tokens handed between
//! sessions, and hints. Each test breaks replicas of a private cluster of its own.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::load::{config_for, round_robin};
use common::private_cluster;
use common::proxy::{TestProxy, start_proxy};
use common::wire;
use futures_util::StreamExt;
use pgsplit::config::CausalTokenTiming;
use pgsplit::localcluster::LocalCluster;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

async fn connect(p: &TestProxy, extra: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("{} {extra}", p.connstr("postgres", "postgres")),
        NoTls,
    )
    .await
    .expect("connect through pgsplit");
    tokio::spawn(connection);
    client
}

fn ports(c: &LocalCluster) -> HashMap<i32, String> {
    c.nodes()
        .iter()
        .map(|n| (i32::from(n.port), n.name.clone()))
        .collect()
}

async fn node_of(client: &Client, names: &HashMap<i32, String>, sql: &str) -> String {
    let port: i32 = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0);
    names[&port].clone()
}

fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

async fn setup_table(c: &LocalCluster, table: &str) {
    common::run_on_primary_and_replay(
        c,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_stale_reads_under_real_lag_and_reads_return_to_replicas() {
    reads_see_their_writes_under_real_lag(CausalTokenTiming::AtCommit).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_stale_reads_when_the_monitor_gives_the_commit_positions() {
    reads_see_their_writes_under_real_lag(CausalTokenTiming::OnRead).await;
}

/// Sessions that write and at once read what they wrote never read it stale while the replicas
/// replay 300 ms late; a session whose last write is older than that reads from them again.
async fn reads_see_their_writes_under_real_lag(timing: CausalTokenTiming) {
    let c = private_cluster(2);
    setup_table(&c, "ryw").await;
    for r in c.replicas() {
        c.set_apply_delay(r, Duration::from_millis(300))
            .expect("apply delay");
    }
    let mut config = config_for(&c);
    config.clusters[0].consistency.causal_token = timing;
    let proxy = start_proxy(config);
    let workers = (0..4).map(|w| {
        let proxy_connstr = proxy.connstr("postgres", "postgres");
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&proxy_connstr, NoTls).await.expect("connect");
            tokio::spawn(connection);
            let mut stale = 0;
            for i in 0..250 {
                let id = w * 1000 + (i % 50);
                client
                    .execute("INSERT INTO ryw VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v", &[&id, &i])
                    .await
                    .expect("write");
                let seen: Option<i32> = client.query_opt("SELECT v FROM ryw WHERE id = $1", &[&id]).await.expect("read").map(|r| r.get(0));
                if seen != Some(i) {
                    stale += 1;
                }
            }
            stale
        })
    });
    let stale: i32 = futures_util::future::join_all(workers)
        .await
        .into_iter()
        .map(|r| r.expect("worker"))
        .sum();
    assert_eq!(stale, 0, "stale reads in read_your_writes");

    // A session whose last write is older than the lag reads from the replicas again.
    let names = ports(&c);
    let client = connect(&proxy, "").await;
    client
        .execute("UPDATE ryw SET v = v + 1 WHERE id = 0", &[])
        .await
        .expect("write");
    assert_eq!(
        node_of(&client, &names, "SELECT inet_server_port()").await,
        "primary"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let node = node_of(&client, &names, "SELECT inet_server_port()").await;
    assert!(
        node.starts_with("replica"),
        "after the lag, reads go to {node}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_replica_leaves_the_rotation_until_it_catches_up() {
    let c = private_cluster(2);
    setup_table(&c, "paused").await;
    let mut config = round_robin(config_for(&c));
    config.clusters[0].consistency.max_lag = Duration::from_millis(500);
    let proxy = start_proxy(config);
    let names = ports(&c);
    let paused = c.replicas()[0].clone();
    c.pause_replay(&paused).expect("pause replay");
    let writer = connect(&proxy, "").await;
    let reader = connect(&proxy, "").await;
    let started = Instant::now();
    let mut seen_after_lag = HashMap::new();
    while started.elapsed() < Duration::from_secs(3) {
        writer
            .execute(
                "INSERT INTO paused VALUES ((random() * 1e9)::int, 1) ON CONFLICT DO NOTHING",
                &[],
            )
            .await
            .expect("write");
        let node = node_of(&reader, &names, "SELECT inet_server_port()").await;
        if started.elapsed() > Duration::from_millis(1500) {
            *seen_after_lag.entry(node).or_insert(0) += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !seen_after_lag.contains_key(&paused.name),
        "the paused replica still got reads: {seen_after_lag:?}"
    );
    assert!(
        seen_after_lag.contains_key(&c.replicas()[1].name),
        "{seen_after_lag:?}"
    );
    c.resume_replay(&paused).expect("resume replay");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut back = false;
    while !back && Instant::now() < deadline {
        back = node_of(&reader, &names, "SELECT inet_server_port()").await == paused.name;
    }
    assert!(back, "the resumed replica gets reads again");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_primary_keeps_every_replica_in_rotation() {
    let c = private_cluster(2);
    let proxy = start_proxy(round_robin(config_for(&c)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let names = ports(&c);
    let client = connect(&proxy, "").await;
    let mut seen = HashMap::new();
    for _ in 0..20 {
        *seen
            .entry(node_of(&client, &names, "SELECT inet_server_port()").await)
            .or_insert(0) += 1;
    }
    for r in c.replicas() {
        assert!(
            seen.get(&r.name).copied().unwrap_or(0) >= 5,
            "{} after 5 s idle: {seen:?}",
            r.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_causal_token_carries_read_your_writes_to_another_session() {
    let c = private_cluster(2);
    setup_table(&c, "handoff").await;
    for r in c.replicas() {
        c.set_apply_delay(r, Duration::from_millis(500))
            .expect("apply delay");
    }
    let proxy = start_proxy(config_for(&c));
    let writer = connect(&proxy, "").await;
    for i in 0..5 {
        writer
            .execute("INSERT INTO handoff VALUES ($1, 1)", &[&i])
            .await
            .expect("write");
        let token = first_value(
            &writer
                .simple_query("SHOW pgsplit.causal_token")
                .await
                .expect("show token"),
        )
        .expect("a token");
        let reader = connect(&proxy, &format!("options='-c pgsplit.after={token}'")).await;
        let found = reader
            .query_opt("SELECT v FROM handoff WHERE id = $1", &[&i])
            .await
            .expect("read");
        assert!(
            found.is_some(),
            "a session given token {token} must see row {i}"
        );
        let hinted = connect(&proxy, "").await;
        let found = hinted
            .query_opt(
                &format!("/* pgsplit: after={token} */ SELECT v FROM handoff WHERE id = {i}"),
                &[],
            )
            .await
            .expect("read");
        assert!(found.is_some(), "the after= hint carries the token too");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hints_and_session_settings_change_the_route() {
    let c = private_cluster(2);
    let proxy = start_proxy(config_for(&c));
    let names = ports(&c);
    let (client, mut connection) =
        tokio_postgres::connect(&proxy.connstr("postgres", "postgres"), NoTls)
            .await
            .expect("connect");
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(n) = message {
                let _ = tx.send(n);
            }
        }
    });
    let sql = "SELECT inet_server_port()";
    assert!(node_of(&client, &names, sql).await.starts_with("replica"));
    assert_eq!(
        node_of(
            &client,
            &names,
            &format!("/* pgsplit: route=primary */ {sql}")
        )
        .await,
        "primary"
    );
    assert_eq!(
        node_of(
            &client,
            &names,
            &format!("/* pgsplit: consistency=strong */ {sql}")
        )
        .await,
        "primary"
    );
    assert_eq!(
        node_of(&client, &names, &format!("/*controller='users',action='show'*/ /* pgsplit: route=primary, max_lag=500ms */ {sql}")).await,
        "primary"
    );
    assert!(
        node_of(
            &client,
            &names,
            &format!("/* pgsplit: consistency=bounded:5s */ {sql}")
        )
        .await
        .starts_with("replica")
    );
    assert!(
        node_of(
            &client,
            &names,
            &format!("/* pgsplit: route=replica */ {sql}")
        )
        .await
        .starts_with("replica")
    );
    // A bad hint: a WARNING naming it, and the statement runs as if there were no hint.
    let node = node_of(
        &client,
        &names,
        &format!("/* pgsplit: rout=primary */ {sql}"),
    )
    .await;
    assert!(node.starts_with("replica"), "{node}");
    let warning = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a warning")
        .expect("notice");
    assert_eq!(warning.severity(), "WARNING");
    assert!(warning.message().contains("rout"), "{}", warning.message());

    // A hint never sends a write to a replica.
    client
        .batch_execute("CREATE TABLE hinted (i int)")
        .await
        .expect("create");
    client
        .batch_execute("/* pgsplit: route=replica */ INSERT INTO hinted VALUES (1)")
        .await
        .expect("a write stays on the primary");

    // Session settings, answered by pgsplit itself.
    client
        .batch_execute("SET pgsplit.consistency = 'strong'")
        .await
        .expect("set");
    let shown = first_value(
        &client
            .simple_query("SHOW pgsplit.consistency")
            .await
            .expect("show"),
    );
    assert_eq!(shown.as_deref(), Some("strong"));
    // Over the extended protocol too (prepared, described, bound, executed).
    let prepared = client
        .prepare("SHOW pgsplit.consistency")
        .await
        .expect("prepare");
    for _ in 0..2 {
        let row = client.query_one(&prepared, &[]).await.expect("show");
        assert_eq!(row.get::<_, String>(0), "strong");
    }
    assert_eq!(node_of(&client, &names, sql).await, "primary");
    client
        .batch_execute("RESET pgsplit.consistency")
        .await
        .expect("reset");
    // Back to read_your_writes: once a replica has replayed the INSERT above, reads go there.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut node = node_of(&client, &names, sql).await;
    while !node.starts_with("replica") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        node = node_of(&client, &names, sql).await;
    }
    assert!(node.starts_with("replica"), "{node}");
    let err = client
        .batch_execute("SET pgsplit.no_such_thing = 1")
        .await
        .expect_err("unknown setting");
    assert_eq!(err.code().map(|c| c.code()), Some("42704"));

    // Over the extended protocol (pgjdbc, psycopg 3) and among other statements in one text,
    // the server runs them (as placeholder settings) and pgsplit takes them on too.
    client
        .execute("SET pgsplit.consistency = 'strong'", &[])
        .await
        .expect("set over the extended protocol");
    assert_eq!(node_of(&client, &names, sql).await, "primary");
    let err = client
        .execute("SET pgsplit.consistency = 'sometimes'", &[])
        .await
        .expect_err("a bad value");
    assert_eq!(err.code().map(|c| c.code()), Some("22023"));
    assert_eq!(node_of(&client, &names, sql).await, "primary");
    client
        .batch_execute("SELECT 1; RESET pgsplit.consistency")
        .await
        .expect("reset among other statements");
    let node = node_of(&client, &names, sql).await;
    assert!(node.starts_with("replica"), "{node}");

    // SET LOCAL over the extended protocol: in force until the transaction ends.
    let show = || async {
        let row = client.query_one("SHOW pgsplit.consistency", &[]).await;
        row.expect("show").get::<_, String>(0)
    };
    let before = show().await;
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .execute("SET LOCAL pgsplit.consistency = 'strong'", &[])
        .await
        .expect("set local over the extended protocol");
    assert_eq!(show().await, "strong");
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(show().await, before);

    // As PostgreSQL's own: a ROLLBACK TO a savepoint undoes the SET LOCALs made since, sent
    // alone (pgsplit answers them) or over the extended protocol (the server runs them).
    let set_local = |value: &str| format!("SET LOCAL pgsplit.consistency = '{value}'");
    client.batch_execute("BEGIN").await.expect("begin");
    let eventual = set_local("eventual");
    client.batch_execute(&eventual).await.expect("alone");
    client
        .batch_execute("SAVEPOINT a")
        .await
        .expect("savepoint");
    let strong = set_local("strong");
    client.execute(&strong, &[]).await.expect("extended");
    assert_eq!(show().await, "strong");
    let back_to_a = "ROLLBACK TO SAVEPOINT a";
    client.batch_execute(back_to_a).await.expect("rollback to");
    assert_eq!(show().await, "eventual");
    client.batch_execute(&strong).await.expect("alone");
    assert_eq!(show().await, "strong");
    client.batch_execute(back_to_a).await.expect("rollback to");
    assert_eq!(show().await, "eventual");
    client.batch_execute("RELEASE a").await.expect("release");
    assert_eq!(show().await, "eventual");
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(show().await, before);
    a_set_local_ends_with_a_pipelined_commit(proxy.addr).await;
}

/// A `SET LOCAL pgsplit.*` ends at its transaction's COMMIT even when the next transaction's
/// BEGIN is pipelined behind it, sent before any answer was read.
async fn a_set_local_ends_with_a_pipelined_commit(addr: std::net::SocketAddr) {
    let mut s = wire::logged_in(addr).await;
    let show = wire::query("SHOW pgsplit.consistency");
    let before = wire::first_columns(&wire::round_trip(&mut s, &show).await);
    let mut pipeline = Vec::new();
    for sql in [
        "BEGIN",
        "SET LOCAL pgsplit.consistency = 'strong'",
        "COMMIT",
        "BEGIN",
    ] {
        pipeline.extend(wire::extended_unit(sql));
    }
    wire::send(&mut s, &pipeline).await;
    for _ in 0..4 {
        let answer = wire::read_until_ready(&mut s).await;
        assert_eq!(wire::tags(&answer), "12CZ", "{answer:?}");
    }
    let in_the_next = wire::first_columns(&wire::round_trip(&mut s, &show).await);
    assert_eq!(in_the_next, before, "the SET LOCAL ended with its COMMIT");
    let commit = wire::round_trip(&mut s, &wire::query("COMMIT")).await;
    assert_eq!(wire::tags(&commit), "CZ", "{commit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_committed_write_reports_its_causal_token_before_ready_for_query() {
    let c = private_cluster(1);
    let proxy = start_proxy(config_for(&c));
    let mut stream = wire::logged_in(proxy.addr).await;
    let sql = "CREATE TABLE token_t (i int); INSERT INTO token_t VALUES (1)";
    let messages = wire::round_trip(&mut stream, &wire::query(sql)).await;
    assert_eq!(
        wire::tags(&messages),
        "CCSZ",
        "both statements' answers, the token right before ReadyForQuery, nothing else"
    );
    let token = wire::parameter_status(&messages, "pgsplit.causal_token").expect("a token");
    assert!(
        pgsplit::topology::monitor::parse_lsn(&token).is_some(),
        "{token}"
    );
}

/// An insert that returns a WAL position inside its own transaction (before its commit).
fn insert_returning_position(id: i32) -> String {
    format!("INSERT INTO asked VALUES ({id}, 1) RETURNING pg_current_wal_insert_lsn()::text")
}

/// The causal token in `answer` is at or past every position in `rows`' first column.
fn assert_token_past(rows: &[(u8, Vec<u8>)], answer: &[(u8, Vec<u8>)]) {
    let parse = pgsplit::topology::monitor::parse_lsn;
    let token = wire::parameter_status(answer, "pgsplit.causal_token").expect("a token");
    let token_lsn = parse(&token).expect("a bare position");
    for written in wire::first_columns(rows) {
        let written_lsn = parse(&written).expect("a position");
        assert!(
            token_lsn > written_lsn,
            "token {token} must be past the write at {written}"
        );
    }
}

/// pgsplit asks for a commit's WAL position in the same write as the commit: the client never
/// sees that question's answer, and the token is past the write, also after a transaction
/// block, over the extended protocol and in a pipeline of writes; a failed transaction's COMMIT
/// leaves the session usable.
#[tokio::test(flavor = "multi_thread")]
async fn the_causal_token_is_past_each_commit_and_its_question_unseen() {
    let c = private_cluster(1);
    setup_table(&c, "asked").await;
    let proxy = start_proxy(config_for(&c));
    let mut s = wire::logged_in(proxy.addr).await;

    let extended =
        wire::round_trip(&mut s, &wire::extended_unit(&insert_returning_position(1))).await;
    assert_eq!(wire::tags(&extended), "12DCSZ", "{extended:?}");
    assert_token_past(&extended, &extended);

    let block = format!("BEGIN; {}", insert_returning_position(2));
    let opened = wire::round_trip(&mut s, &wire::query(&block)).await;
    assert_eq!(wire::tags(&opened), "CTDCZ", "no token before the commit");
    let committed = wire::round_trip(&mut s, &wire::query("COMMIT")).await;
    assert_eq!(wire::tags(&committed), "CSZ");
    assert_token_past(&opened, &committed);

    let mut pipeline = wire::query(&insert_returning_position(3));
    pipeline.extend(wire::query(&insert_returning_position(4)));
    wire::send(&mut s, &pipeline).await;
    let first = wire::read_until_ready(&mut s).await;
    let second = wire::read_until_ready(&mut s).await;
    assert_eq!(wire::tags(&first), "TDCZ");
    assert_eq!(wire::tags(&second), "TDCSZ");
    assert_token_past(&first, &second);
    assert_token_past(&second, &second);

    let failed = wire::query("BEGIN; INSERT INTO asked VALUES (1, 1)");
    assert_eq!(wire::tags(&wire::round_trip(&mut s, &failed).await), "CEZ");
    let rolled_back = wire::round_trip(&mut s, &wire::query("COMMIT")).await;
    assert!(wire::tags(&rolled_back).starts_with('C'), "{rolled_back:?}");
    let counted = wire::round_trip(&mut s, &wire::query("SELECT count(*) FROM asked")).await;
    assert_eq!(wire::first_columns(&counted), ["4"], "{counted:?}");
}

/// With `causal_token = "on_read"` no commit's position is asked: a committed write's
/// ReadyForQuery comes without a token, the session's reads go to the primary until the monitor has read the primary's
/// position after the commit, `SHOW pgsplit.causal_token` waits for that position (past the
/// write), and the client hears the token before the answers of a later unit. With the
/// replica's replay paused, every read in between sees the write.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_leaves_its_position_to_the_next_read() {
    let c = private_cluster(1);
    setup_table(&c, "unasked").await;
    let mut config = config_for(&c);
    config.clusters[0].consistency.causal_token = CausalTokenTiming::OnRead;
    let proxy = start_proxy(config);
    let mut s = wire::logged_in(proxy.addr).await;
    let insert = "INSERT INTO unasked VALUES (1, 1) RETURNING pg_current_wal_insert_lsn()::text";
    let written = wire::round_trip(&mut s, &wire::query(insert)).await;
    assert_eq!(
        wire::tags(&written),
        "TDCZ",
        "no token, no question: {written:?}"
    );
    let shown = wire::round_trip(&mut s, &wire::query("SHOW pgsplit.causal_token")).await;
    assert_eq!(
        wire::tags(&shown),
        "STDCZ",
        "the token, learned, then shown: {shown:?}"
    );
    assert_token_past(&written, &shown);

    c.pause_replay(&c.replicas()[0]).expect("pause replay");
    let count = "SELECT count(*) FROM unasked";
    let insert = "INSERT INTO unasked VALUES (2, 1) RETURNING pg_current_wal_insert_lsn()::text";
    let written = wire::round_trip(&mut s, &wire::query(insert)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let told = loop {
        let answer = wire::round_trip(&mut s, &wire::query(count)).await;
        assert_eq!(
            wire::first_columns(&answer),
            ["2"],
            "a read missed the write"
        );
        if wire::parameter_status(&answer, "pgsplit.causal_token").is_some() {
            break answer;
        }
        assert!(Instant::now() < deadline, "no token within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_token_past(&written, &told);
}

/// A read the client pipelines behind its write (sent before the write is answered) sees the
/// write: it is routed once the write has committed, not when it arrived. The replicas' replay
/// is paused, so a read routed with the session's old position would miss the row.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_pipelined_behind_a_write_sees_it() {
    let c = private_cluster(2);
    setup_table(&c, "piped").await;
    let proxy = start_proxy(config_for(&c));
    for replica in c.replicas() {
        c.pause_replay(replica).expect("pause replay");
    }
    let mut s = wire::logged_in(proxy.addr).await;
    for id in 1..=5 {
        let count = "SELECT count(*) FROM piped";
        let insert = format!("INSERT INTO piped VALUES ({id}, 1)");
        let (mut pipeline, expected_tags) = if id % 2 == 0 {
            (wire::extended_unit(&insert), "12CZ")
        } else {
            (wire::query(&insert), "CZ")
        };
        pipeline.extend(wire::query(count));
        wire::send(&mut s, &pipeline).await;
        let written = wire::read_until_ready(&mut s).await;
        // Leaving out the causal token's ParameterStatus (S), which comes when it rose.
        let tags = wire::tags(&written).replace('S', "");
        assert_eq!(tags, expected_tags, "{written:?}");
        let counted = wire::read_until_ready(&mut s).await;
        assert_eq!(
            wire::first_columns(&counted),
            [id.to_string()],
            "round {id}: {counted:?}"
        );
    }
    for replica in c.replicas() {
        c.resume_replay(replica).expect("resume replay");
    }
}
