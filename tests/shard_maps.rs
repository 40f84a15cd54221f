//! Shard maps against a real PostgreSQL: hash placement agrees, key for key, with the server's
//! own hash partitioning (`satisfies_hash_partition`, and rows inserted into a real
//! hash-partitioned table), for every supported key type and 2, 3 and 4 shards.

mod common;

use std::time::Duration;

use pgsplit::shard::directory::{Directory, DirectorySpec};
use pgsplit::shard::hash::hash_shard;
use pgsplit::shard::{KeyType, KeyValue, ShardError};
use tokio_postgres::Client;

/// Every server round trip of these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(60);
/// Random keys per type, on top of the hand-picked edge cases.
const RANDOM_KEYS: usize = 3000;

#[tokio::test]
async fn int2_placement_agrees_with_postgres() {
    let mut keys = edge_integers(&["-32768", "32767"]);
    let mut rng = SplitMix(2);
    keys.extend((0..RANDOM_KEYS).map(|_| (rng.next() as i16).to_string()));
    assert_placement_agrees("int2", KeyType::Int2, &keys).await;
}

#[tokio::test]
async fn int4_placement_agrees_with_postgres() {
    let mut keys = edge_integers(&["-2147483648", "2147483647"]);
    let mut rng = SplitMix(4);
    keys.extend((0..RANDOM_KEYS).map(|i| match i % 2 {
        0 => (rng.next() as i32).to_string(),
        _ => ((rng.next() % 2001) as i32 - 1000).to_string(),
    }));
    assert_placement_agrees("int4", KeyType::Int4, &keys).await;
}

#[tokio::test]
async fn int8_placement_agrees_with_postgres() {
    let mut keys = edge_integers(&[
        "-9223372036854775808",
        "9223372036854775807",
        "4294967296",
        "-4294967296",
        "-4294967297",
    ]);
    let mut rng = SplitMix(8);
    keys.extend((0..RANDOM_KEYS).map(|i| match i % 3 {
        0 => (rng.next() as i64).to_string(),
        1 => (rng.next() as i32).to_string(),
        _ => ((rng.next() % 20_001) as i64 - 10_000).to_string(),
    }));
    assert_placement_agrees("int8", KeyType::Int8, &keys).await;
}

#[tokio::test]
async fn text_placement_agrees_with_postgres() {
    let alphabet: Vec<char> = "abcXYZ019 -_'\"\\%éüß€中文𝄞😀\u{301}\t".chars().collect();
    let mut keys: Vec<String> = ["", " ", "a", "user@example.com", "ünïcödé"]
        .map(String::from)
        .to_vec();
    let mut rng = SplitMix(25);
    for _ in 0..RANDOM_KEYS {
        let len = rng.next() % 41;
        let key = (0..len)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        keys.push(key);
    }
    assert_placement_agrees("text", KeyType::Text, &keys).await;
}

#[tokio::test]
async fn uuid_placement_agrees_with_postgres() {
    let mut keys: Vec<String> = [
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    ]
    .map(String::from)
    .to_vec();
    let mut rng = SplitMix(16);
    for _ in 0..RANDOM_KEYS {
        let bytes: [u8; 16] = std::array::from_fn(|_| rng.next() as u8);
        keys.push(KeyValue::Uuid(bytes).to_text());
    }
    assert_placement_agrees("uuid", KeyType::Uuid, &keys).await;
}

/// Integers every type accepts, in the spellings PostgreSQL's input function accepts, plus
/// the type's own limits.
fn edge_integers(limits: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = ["0", "-0", "1", "-1", "+7", " 42", "-42 ", "00017", "32767"]
        .map(String::from)
        .to_vec();
    keys.extend(limits.iter().map(|s| s.to_string()));
    keys
}

/// For 2, 3 and 4 shards, the shard of every key is the remainder PostgreSQL accepts for it; and
/// for 3 shards, rows inserted into a real table land in the partition of that remainder.
async fn assert_placement_agrees(sql_type: &str, key_type: KeyType, keys: &[String]) {
    let client = primary().await;
    let table = common::unique_name(&format!("hash_{sql_type}"));
    let setup = format!(
        "CREATE TABLE {table} (i int, k {sql_type}) PARTITION BY HASH (k); \
         CREATE TABLE {table}_0 PARTITION OF {table} FOR VALUES WITH (MODULUS 3, REMAINDER 0); \
         CREATE TABLE {table}_1 PARTITION OF {table} FOR VALUES WITH (MODULUS 3, REMAINDER 1); \
         CREATE TABLE {table}_2 PARTITION OF {table} FOR VALUES WITH (MODULUS 3, REMAINDER 2);"
    );
    bounded(client.batch_execute(&setup)).await.expect("setup");
    for shards in [2usize, 3, 4] {
        let accepted = accepted_remainders(&client, &table, sql_type, keys, shards).await;
        assert_agree(
            key_type,
            keys,
            shards,
            &accepted,
            "satisfies_hash_partition",
        );
    }
    let stored = stored_partitions(&client, &table, sql_type, keys).await;
    assert_agree(
        key_type,
        keys,
        3,
        &stored,
        "the partition a row was stored in",
    );
    bounded(client.batch_execute(&format!("DROP TABLE {table}")))
        .await
        .expect("drop");
}

fn assert_agree(key_type: KeyType, keys: &[String], shards: usize, theirs: &[usize], what: &str) {
    assert_eq!(theirs.len(), keys.len(), "one answer per key");
    for (key, &expected) in keys.iter().zip(theirs) {
        let value = key_type
            .parse(key)
            .unwrap_or_else(|e| panic!("{key:?} parses in PostgreSQL but not here: {e}"));
        assert_eq!(
            hash_shard(&value, shards),
            expected,
            "{key_type:?} key {key:?} with {shards} shards: pgsplit disagrees with {what}"
        );
    }
}

/// Per key, in order, the remainder `satisfies_hash_partition` accepts for `shards`.
async fn accepted_remainders(
    client: &Client,
    table: &str,
    sql_type: &str,
    keys: &[String],
    shards: usize,
) -> Vec<usize> {
    let shards = i32::try_from(shards).expect("a few shards");
    let sql = format!(
        "SELECT (SELECT r FROM generate_series(0, $2 - 1) r \
                 WHERE satisfies_hash_partition('{table}'::regclass, $2, r, k::{sql_type})) \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n"
    );
    let rows = bounded(client.query(&sql, &[&keys, &shards]))
        .await
        .expect("satisfies_hash_partition");
    rows.iter()
        .map(|row| usize::try_from(row.get::<_, i32>(0)).expect("a remainder"))
        .collect()
}

/// Per key, in order, the number of the partition its row was stored in.
async fn stored_partitions(
    client: &Client,
    table: &str,
    sql_type: &str,
    keys: &[String],
) -> Vec<usize> {
    let insert = format!(
        "INSERT INTO {table} SELECT n, k::{sql_type} FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n)"
    );
    bounded(client.execute(&insert, &[&keys]))
        .await
        .expect("insert");
    let select = format!("SELECT right(tableoid::regclass::text, 1)::int FROM {table} ORDER BY i");
    let rows = bounded(client.query(&select, &[])).await.expect("select");
    rows.iter()
        .map(|row| usize::try_from(row.get::<_, i32>(0)).expect("a partition"))
        .collect()
}

#[tokio::test]
async fn directory_reads_the_table_through_its_cache_until_invalidated() {
    let client = primary().await;
    let table = common::unique_name("shard_directory");
    let setup = format!(
        "CREATE TABLE {table} (tenant bigint PRIMARY KEY, shard text NOT NULL); \
         INSERT INTO {table} VALUES (1, 'east'), (2, 'west'), (3, 'north')"
    );
    bounded(client.batch_execute(&setup)).await.expect("setup");
    let directory = directory_on(&table);
    let keys: Vec<KeyValue> = (0..100).map(KeyValue::Int8).collect();
    let shard_of = |key: usize| directory.shard_for(&keys[key]);

    assert_eq!(bounded(shard_of(1)).await.expect("tenant 1"), 0);
    assert_eq!(bounded(shard_of(2)).await.expect("tenant 2"), 1);

    let moved = format!("UPDATE {table} SET shard = 'east' WHERE tenant = 2");
    bounded(client.batch_execute(&moved)).await.expect("update");
    assert_eq!(
        bounded(shard_of(2)).await.expect("cached"),
        1,
        "served from the cache"
    );
    bounded(directory.invalidate(&keys[2])).await;
    assert_eq!(
        bounded(shard_of(2)).await.expect("re-read"),
        0,
        "honoured after invalidation"
    );

    let all_moved = format!("UPDATE {table} SET shard = 'west'");
    bounded(client.batch_execute(&all_moved))
        .await
        .expect("update all");
    directory.invalidate_all();
    assert_eq!(bounded(shard_of(1)).await.expect("re-read"), 1);

    let unknown = bounded(shard_of(99)).await.expect_err("no row for 99");
    assert!(
        matches!(unknown, ShardError::UnknownKey { .. }),
        "{unknown}"
    );
    assert_eq!(
        unknown.to_string(),
        format!("the shard directory {table} has no entry for the key 99")
    );
    let added = format!("INSERT INTO {table} VALUES (99, 'east')");
    bounded(client.batch_execute(&added)).await.expect("insert");
    assert_eq!(
        bounded(shard_of(99))
            .await
            .expect("a missing key is not cached"),
        0
    );

    let bad_shard = format!("INSERT INTO {table} VALUES (5, 'south')");
    bounded(client.batch_execute(&bad_shard))
        .await
        .expect("insert");
    let err = bounded(shard_of(5))
        .await
        .expect_err("south is not a shard");
    assert_eq!(err.sqlstate().0, "23514");
    assert!(err.to_string().contains("unknown shard \"south\""), "{err}");
}

#[tokio::test]
async fn directory_reports_a_missing_table_clearly() {
    let directory = directory_on("no_such_directory");
    let err = bounded(directory.shard_for(&KeyValue::Int8(1)))
        .await
        .expect_err("no table");
    assert!(
        matches!(err, ShardError::DirectoryUnavailable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no_such_directory"), "{err}");
}

fn directory_on(table: &str) -> Directory {
    let spec = DirectorySpec {
        table: table.to_owned(),
        key_column: "tenant".into(),
        shard_column: "shard".into(),
        key_type: KeyType::Int8,
        capacity: 1000,
        ttl: None,
        timeout: Duration::from_secs(10),
    };
    let connstr = common::cluster().primary().connstr("postgres", "postgres");
    let config = connstr.parse().expect("a connection string");
    let shards = ["east", "west", "north"].map(String::from);
    Directory::new(spec, config, &shards)
}

async fn primary() -> Client {
    let connstr = common::cluster().primary().connstr("postgres", "postgres");
    bounded(common::connect(&connstr)).await.expect("connect")
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("the server answers within the bound")
}

/// A small deterministic generator (SplitMix64), so a failure replays with the same keys.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
