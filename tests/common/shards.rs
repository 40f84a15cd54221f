//! Shard clusters for sharding tests: several private clusters (a primary with replicas each)
//! started side by side, and the `[[clusters]]` config text that names them.

use pgsplit::localcluster::LocalCluster;
use tokio_postgres::{Client, SimpleQueryMessage};

/// One private cluster per name, each with `replicas` replicas and `conf` lines, started in
/// parallel (a cluster takes seconds to start).
pub fn start_shards(names: &[&str], replicas: usize, conf: &[&str]) -> Vec<LocalCluster> {
    std::thread::scope(|s| {
        let started: Vec<_> = names
            .iter()
            .map(|_| s.spawn(|| super::private_cluster_with(replicas, conf)))
            .collect();
        started
            .into_iter()
            .map(|h| h.join().expect("a shard starts"))
            .collect()
    })
}

/// `[[clusters]]` entries for the shards: nodes `<name>_p` and `<name>_r<i>`.
pub fn clusters_toml(names: &[&str], shards: &[LocalCluster]) -> String {
    let mut text = String::new();
    for (name, cluster) in names.iter().zip(shards) {
        let replicas: Vec<String> = cluster
            .replicas()
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{{ name = \"{name}_r{i}\", addr = \"{}\" }}", r.addr()))
            .collect();
        text += &format!(
            "[[clusters]]\nname = \"{name}\"\nprimary = {{ name = \"{name}_p\", addr = \"{}\" }}\nreplicas = [{}]\n",
            cluster.primary().addr(),
            replicas.join(", ")
        );
    }
    text
}

/// Rows of a simple query's answer, every value as text (None for NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// The rows `sql` returns (simple query protocol), for comparing answers across shards.
pub async fn rows(client: &Client, sql: &str) -> Result<Rows, tokio_postgres::Error> {
    Ok(rows_of(&client.simple_query(sql).await?))
}

/// The rows among a simple query's messages.
pub fn rows_of(messages: &[SimpleQueryMessage]) -> Rows {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// How many rows of `table` on `shard` (a direct connection to shard number `remainder` of
/// `modulus`) PostgreSQL's own hash partitioning on `key` (of `key_type`) would put elsewhere.
/// Uses a temporary hash-partitioned twin, so run it once per connection.
pub async fn misplaced_rows(
    shard: &Client,
    table: &str,
    key: &str,
    key_type: &str,
    modulus: usize,
    remainder: usize,
) -> i64 {
    let sql = format!(
        "CREATE TEMP TABLE placed ({key} {key_type}) PARTITION BY HASH ({key});
         CREATE TEMP TABLE placed_mine PARTITION OF placed FOR VALUES WITH (MODULUS {modulus}, REMAINDER {remainder});
         SELECT count(*) FROM {table} WHERE NOT satisfies_hash_partition('placed'::regclass, {modulus}, {remainder}, {key})"
    );
    let answer = rows(shard, &sql).await.expect("check placement");
    answer[0][0]
        .as_deref()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}
