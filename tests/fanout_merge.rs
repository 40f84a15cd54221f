//! Fan-out planning and merging against real PostgreSQL: one table split by `id % 3` into three
//! databases (the shards) and the same rows in a fourth (unsplit). For every corpus query, the
//! shards run `plan(sql).shard_sql()` (simple protocol, raw messages read through pgsplit's own
//! server connection), `merge` combines their answers, and the result must equal the unsplit
//! database's answer: the same column names and types, the same rows (in the same order when
//! the query orders them fully), the same command tag. Statements that cannot be merged are
//! refused with a reason. The databases use the "C" collation, as fan-out merges of text need.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pgsplit::backend::{ConnectSpec, ServerConn};
use pgsplit::fanout::{Merged, ShardAnswer, merge, plan};

const SHARDS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "CREATE TABLE items (
    id int PRIMARY KEY, grp int, name text, qty int, big bigint, price numeric(12,2),
    ratio float8, f2 float8, small real, day date, at timestamptz, ts timestamp, flag bool,
    code uuid, label varchar(20), ch char(4))";

/// The data set; `{filter}` selects a shard's part (or everything).
const ROWS: &str = "INSERT INTO items SELECT g,
    CASE WHEN g % 11 = 0 THEN NULL ELSE g % 7 END,
    CASE WHEN g % 13 = 0 THEN NULL ELSE chr(65 + g % 26) || chr(97 + (g * 7) % 26) END,
    CASE WHEN g % 17 = 0 THEN NULL ELSE (g * 37) % 101 - 50 END,
    (g::bigint * 1000003) % 9999991 * 1000000000,
    CASE WHEN g % 19 = 0 THEN NULL ELSE round(((g * 7919) % 10007) / 100.0, 2) END,
    CASE WHEN g % 23 = 0 THEN NULL ELSE ((g * 13) % 41 - 20) / 4.0 END,
    CASE g WHEN 150 THEN 'NaN' WHEN 200 THEN 'Infinity' WHEN 250 THEN '-Infinity'
        ELSE g / 8.0 END,
    (g % 9) / 2.0,
    CASE WHEN g % 29 = 0 THEN NULL ELSE DATE '2020-01-01' + (g * 17) % 900 END,
    TIMESTAMPTZ '2024-03-01 00:00:00+00' + ((g * 7) % 5000) * interval '37 minutes',
    TIMESTAMP '2023-12-31 23:00:00' + ((g * 11) % 3000) * interval '1 minute 0.25 seconds',
    g % 3 = 0,
    md5(g::text)::uuid,
    'L' || (g % 17),
    left(chr(97 + g % 5) || '   ', 1 + g % 3)
  FROM generate_series(1, 300) g WHERE {filter}";

/// (fully ordered, query): row order is compared only for fully ordered queries.
const CORPUS: &[(bool, &str)] = &[
    (false, "SELECT * FROM items"),
    (false, "SELECT id, name FROM items WHERE qty > 10"),
    (
        false,
        "SELECT id, price FROM items WHERE name LIKE 'A%' OR price IS NULL",
    ),
    (true, "SELECT * FROM items ORDER BY id"),
    (
        true,
        "SELECT id, qty FROM items ORDER BY qty DESC, id LIMIT 10",
    ),
    (
        true,
        "SELECT id, qty FROM items ORDER BY qty NULLS FIRST, id LIMIT 7 OFFSET 3",
    ),
    (
        true,
        "SELECT id, qty FROM items ORDER BY qty DESC NULLS LAST, id DESC OFFSET 250",
    ),
    (true, "SELECT id FROM items ORDER BY id LIMIT 5 OFFSET 400"),
    (
        true,
        "SELECT name, id FROM items ORDER BY name, id LIMIT 20",
    ),
    (
        true,
        "SELECT name AS n, id FROM items ORDER BY n DESC, 2 LIMIT 15",
    ),
    (
        true,
        "SELECT id, price FROM items ORDER BY price DESC, id LIMIT 12 OFFSET 4",
    ),
    (true, "SELECT id, big FROM items ORDER BY big, id LIMIT 10"),
    (
        true,
        "SELECT id, ratio FROM items ORDER BY ratio, id LIMIT 30",
    ),
    (
        true,
        "SELECT id, f2 FROM items ORDER BY f2 DESC, id LIMIT 8",
    ),
    (true, "SELECT id, f2 FROM items ORDER BY f2, id LIMIT 5"),
    (
        true,
        "SELECT id, day FROM items ORDER BY day NULLS FIRST, id LIMIT 25",
    ),
    (
        true,
        "SELECT id, at FROM items ORDER BY at DESC, id LIMIT 10",
    ),
    (true, "SELECT id, ts FROM items ORDER BY ts, id LIMIT 10"),
    (
        true,
        "SELECT id, flag FROM items ORDER BY flag, id LIMIT 110",
    ),
    (true, "SELECT id, code FROM items ORDER BY code LIMIT 10"),
    (
        true,
        "SELECT id, ch FROM items ORDER BY ch DESC, id LIMIT 20",
    ),
    (
        true,
        "SELECT id FROM items ORDER BY label, small DESC, id LIMIT 20",
    ),
    (
        true,
        "SELECT id, upper(name) FROM items ORDER BY lower(name), id LIMIT 9",
    ),
    (false, "SELECT DISTINCT grp FROM items"),
    (true, "SELECT DISTINCT grp FROM items ORDER BY grp"),
    (
        true,
        "SELECT DISTINCT label, flag FROM items ORDER BY label, flag LIMIT 6 OFFSET 2",
    ),
    (false, "SELECT DISTINCT ch FROM items"),
    (true, "SELECT count(*) FROM items"),
    (true, "SELECT count(*) FROM items WHERE qty > 1000"),
    (
        true,
        "SELECT count(qty), sum(qty), min(qty), max(qty), avg(qty) FROM items",
    ),
    (
        true,
        "SELECT sum(big), avg(big), min(big), max(big) FROM items",
    ),
    (
        true,
        "SELECT sum(price), avg(price), min(price), max(price) FROM items",
    ),
    (
        true,
        "SELECT sum(ratio), avg(ratio), min(ratio), max(ratio) FROM items",
    ),
    (true, "SELECT sum(f2), avg(f2), max(f2) FROM items"),
    (true, "SELECT sum(small), min(small), max(small) FROM items"),
    (
        true,
        "SELECT min(name), max(name), min(day), max(at), min(ts), max(ch), max(label) FROM items",
    ),
    (
        true,
        "SELECT sum(qty), avg(price), count(*) FROM items WHERE qty > 1000",
    ),
    (
        true,
        "SELECT avg(qty) AS mean, count(qty) FILTER (WHERE qty > 0) AS positive FROM items",
    ),
    (
        false,
        "SELECT grp, count(*), sum(qty), avg(qty) FROM items GROUP BY grp",
    ),
    (
        true,
        "SELECT grp, count(*), avg(price) FROM items GROUP BY grp ORDER BY grp",
    ),
    (
        true,
        "SELECT grp, sum(big) AS s FROM items GROUP BY grp ORDER BY s DESC",
    ),
    (
        true,
        "SELECT label, avg(ratio), min(day) FROM items GROUP BY label ORDER BY avg(ratio), label",
    ),
    (
        true,
        "SELECT label, count(*) FROM items GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
    ),
    (
        true,
        "SELECT flag, grp, max(name) FROM items GROUP BY flag, grp ORDER BY flag, grp NULLS FIRST",
    ),
    (
        true,
        "SELECT grp, count(*) FROM items GROUP BY grp, flag ORDER BY grp, count(*), sum(qty)",
    ),
    (
        true,
        "SELECT ch, sum(qty) FROM items WHERE grp IS NOT NULL GROUP BY ch ORDER BY ch",
    ),
    (
        true,
        "SELECT day, count(*) FROM items GROUP BY day ORDER BY count(*) DESC, day LIMIT 5",
    ),
    (
        false,
        "SELECT grp, avg(big) FROM items WHERE qty > 1000 GROUP BY grp",
    ),
];

/// (query, part of the refusal) for statements that must not be fanned out.
const REFUSED: &[(&str, &str)] = &[
    (
        "SELECT count(DISTINCT grp) FROM items",
        "DISTINCT aggregates",
    ),
    (
        "SELECT grp, count(*) FROM items GROUP BY grp HAVING count(*) > 40",
        "HAVING",
    ),
    (
        "SELECT id, rank() OVER (ORDER BY qty) FROM items",
        "window functions",
    ),
    ("SELECT id FROM items UNION SELECT id FROM items", "UNION"),
    (
        "SELECT * FROM (SELECT grp, count(*) FROM items GROUP BY grp) s",
        "plain table",
    ),
    (
        "SELECT * FROM items WHERE qty > (SELECT avg(qty) FROM items)",
        "subqueries",
    ),
    ("SELECT * FROM items FOR UPDATE", "FOR UPDATE"),
    ("SELECT string_agg(name, ',') FROM items", "string_agg"),
    (
        "SELECT sum(qty) * 2 FROM items",
        "only count, sum, min, max and avg",
    ),
    (
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY qty) FROM items",
        "percentile_cont",
    ),
];

/// Refused only once the shards' answers show the types: the merge says why.
const REFUSED_AT_MERGE: &[(&str, &str)] = &[
    ("SELECT avg(small) FROM items", "avg(x::float8)"),
    (
        "SELECT id FROM items ORDER BY at - ts LIMIT 3",
        "type oid 1186",
    ),
];

#[tokio::test]
async fn fanned_out_reads_equal_the_unsplit_answers() {
    let db = setup();
    let mut all = connect(&format!("{db}_all")).await;
    let mut shards = Vec::new();
    for i in 0..SHARDS {
        shards.push(connect(&format!("{db}_s{i}")).await);
    }
    assert!(CORPUS.len() >= 40);
    let mut failures = Vec::new();
    for &(ordered, sql) in CORPUS {
        let expected = run(&mut all, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let plan = plan(sql).unwrap_or_else(|e| panic!("{sql}: refused: {e}"));
        let answers = run_on_shards(&mut shards, plan.shard_sql()).await;
        let merged = merge(&plan, answers).unwrap_or_else(|e| panic!("{sql}: merge: {e}"));
        if let Some(difference) = compare(&expected, &merged, ordered) {
            failures.push(format!(
                "{sql}\n  shards ran: {}\n  {difference}",
                plan.shard_sql()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn what_cannot_be_merged_is_refused_with_a_reason() {
    for &(sql, reason) in REFUSED {
        let refusal = plan(sql).expect_err(sql);
        assert!(
            refusal.message.contains(reason),
            "{sql}: {}",
            refusal.message
        );
        assert_eq!(refusal.code.0, "0A000");
    }
    let db = setup();
    let mut shards = Vec::new();
    for i in 0..SHARDS {
        shards.push(connect(&format!("{db}_s{i}")).await);
    }
    for &(sql, reason) in REFUSED_AT_MERGE {
        let plan = plan(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let answers = run_on_shards(&mut shards, plan.shard_sql()).await;
        let refusal = merge(&plan, answers).expect_err(sql);
        assert!(
            refusal.message.contains(reason),
            "{sql}: {}",
            refusal.message
        );
    }
}

/// Creates the unsplit database and the three shard databases once per test binary.
fn setup() -> String {
    static DB: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DB.get_or_init(|| {
        let c = common::cluster();
        let db = common::unique_name("fanout");
        let parts = (0..SHARDS)
            .map(|i| (format!("{db}_s{i}"), format!("g % {SHARDS} = {i}")))
            .chain([(format!("{db}_all"), "true".to_string())]);
        for (name, filter) in parts {
            c.psql(
                c.primary(),
                "postgres",
                &format!("CREATE DATABASE {name} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"),
            )
            .expect("create a database");
            let load = format!("{SCHEMA}; {}", ROWS.replace("{filter}", &filter));
            c.psql(c.primary(), &name, &load).expect("load the rows");
        }
        db
    })
    .clone()
}

async fn connect(database: &str) -> ServerConn {
    let spec = ConnectSpec {
        node: "primary".into(),
        addr: common::cluster().primary().addr(),
        startup: vec![
            ("user".into(), "postgres".into()),
            ("database".into(), database.into()),
        ],
        password: None,
        scram_keys: None,
        md5_hash: None,
        timeout: TIMEOUT,
        tls: Default::default(),
    };
    ServerConn::connect(&spec).await.expect("connect")
}

/// Runs `sql` over the simple protocol and collects the raw answer.
async fn run(conn: &mut ServerConn, sql: &str) -> Result<ShardAnswer, String> {
    let exchange = async {
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut buf).map_err(|e| e.to_string())?;
        conn.write_all(&buf).await.map_err(|e| e.to_string())?;
        let mut answer = ShardAnswer {
            row_description: Bytes::new(),
            rows: vec![],
            command_tag: String::new(),
        };
        let mut error = None;
        loop {
            let frame = conn.read_frame().await.map_err(|e| e.to_string())?;
            let body = Bytes::copy_from_slice(frame.body());
            match frame.tag {
                b'T' => answer.row_description = body,
                b'D' => answer.rows.push(body),
                b'C' => {
                    answer.command_tag =
                        String::from_utf8_lossy(&body).trim_end_matches('\0').into()
                }
                b'E' => error = Some(String::from_utf8_lossy(&body).into_owned()),
                b'Z' => break,
                _ => {}
            }
        }
        error.map_or(Ok(answer), Err)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
}

/// Runs the shard statement on every shard in parallel.
async fn run_on_shards(shards: &mut [ServerConn], sql: &str) -> Vec<ShardAnswer> {
    let runs = shards.iter_mut().map(|conn| run(conn, sql));
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|e| panic!("{sql} on a shard: {e}")))
        .collect()
}

/// The difference between the unsplit answer and the merged one, if any.
fn compare(expected: &ShardAnswer, merged: &Merged, ordered: bool) -> Option<String> {
    let (want_columns, got_columns) = (
        columns(&expected.row_description),
        columns(&merged.row_description),
    );
    if want_columns != got_columns {
        return Some(format!(
            "columns: want {want_columns:?}, got {got_columns:?}"
        ));
    }
    if expected.command_tag != merged.command_tag {
        return Some(format!(
            "tag: want {}, got {}",
            expected.command_tag, merged.command_tag
        ));
    }
    let (mut want, mut got) = (texts(&expected.rows), texts(&merged.rows));
    if !ordered {
        want.sort();
        got.sort();
    }
    (want != got).then(|| {
        let first = want.iter().zip(&got).position(|(a, b)| a != b).unwrap_or(0);
        format!(
            "rows differ from row {first}: want {:?}, got {:?}",
            want.get(first),
            got.get(first)
        )
    })
}

/// (name, type oid, type length, type modifier, format) per column: table OIDs differ between
/// databases, so they are left out.
fn columns(row_description: &[u8]) -> Vec<(String, u32, i16, i32, i16)> {
    let mut rest = &row_description[2..];
    let mut out = Vec::new();
    while let Some(end) = rest.iter().position(|&b| b == 0) {
        let name = String::from_utf8_lossy(&rest[..end]).into_owned();
        let f = &rest[end + 1..end + 19];
        out.push((
            name,
            u32::from_be_bytes([f[6], f[7], f[8], f[9]]),
            i16::from_be_bytes([f[10], f[11]]),
            i32::from_be_bytes([f[12], f[13], f[14], f[15]]),
            i16::from_be_bytes([f[16], f[17]]),
        ));
        rest = &rest[end + 19..];
    }
    out
}

/// DataRow bodies as readable text: values joined by `|`, NULL shown as `NULL`.
fn texts(rows: &[Bytes]) -> Vec<String> {
    rows.iter().map(|row| row_text(row)).collect()
}

fn row_text(row: &[u8]) -> String {
    let mut rest = &row[2..];
    let mut values = Vec::new();
    while rest.len() >= 4 {
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
        match usize::try_from(len) {
            Ok(len) => {
                values.push(String::from_utf8_lossy(&rest[..len]).into_owned());
                rest = &rest[len..];
            }
            Err(_) => values.push("NULL".into()),
        }
    }
    values.join("|")
}
