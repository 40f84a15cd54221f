//! `pgsplit shard plan --config FILE --add SHARD`: before a shard is added to a hash or
//! consistent-hash map, how many keys would move. Keys come from a sample (the integers
//! 1..=N, or texts and uuids derived from them), or with `--from-data` from the key columns of
//! the sharded tables on every shard's primary (rows that would move, per table).

use std::fmt::Write as _;

use super::config::{MapConfig, MapKind, ShardingConfig};
use super::hash::hash_shard;
use super::ring::{DEFAULT_VIRTUAL_NODES, Ring};
use super::{KeyType, KeyValue};
use crate::config::Config;

/// Where a map places keys, before and after the change, by shard name.
enum Placer {
    Hash(Vec<String>),
    Ring(Ring),
}

impl Placer {
    fn new(kind: MapKind, shards: Vec<String>, virtual_nodes: usize) -> Result<Placer, String> {
        match kind {
            MapKind::Hash => Ok(Placer::Hash(shards)),
            MapKind::ConsistentHash => Ring::new(&shards, virtual_nodes)
                .map(Placer::Ring)
                .map_err(|e| e.to_string()),
            _ => Err("only hash and consistent_hash maps grow by adding a shard".into()),
        }
    }

    fn shard_of(&self, key: &KeyValue) -> &str {
        match self {
            Placer::Hash(shards) => &shards[hash_shard(key, shards.len())],
            Placer::Ring(ring) => ring.shard_name_for(key),
        }
    }
}

/// One map's old and new placement.
struct Change<'a> {
    map: &'a MapConfig,
    old: Placer,
    new: Placer,
    key_type: KeyType,
}

/// The changes adding `shard` makes to every hash and consistent-hash map of `config`.
fn changes<'a>(sharding: &'a ShardingConfig, shard: &str) -> Result<Vec<Change<'a>>, String> {
    let mut out = Vec::new();
    for map in &sharding.maps {
        if !matches!(map.kind, MapKind::Hash | MapKind::ConsistentHash) {
            continue;
        }
        if map.shards.iter().any(|s| s == shard) {
            return Err(format!("map {:?} already has shard {shard:?}", map.name));
        }
        let key_type = sharding
            .tables
            .iter()
            .find(|t| t.map == map.name)
            .map_or(KeyType::Int8, |t| t.key_type);
        let vnodes = map.virtual_nodes.unwrap_or(DEFAULT_VIRTUAL_NODES);
        let mut grown = map.shards.clone();
        grown.push(shard.to_string());
        out.push(Change {
            map,
            old: Placer::new(map.kind, map.shards.clone(), vnodes)?,
            new: Placer::new(map.kind, grown, vnodes)?,
            key_type,
        });
    }
    if out.is_empty() {
        return Err("the config has no hash or consistent_hash map to add a shard to".into());
    }
    Ok(out)
}

/// The report over `sample` synthetic keys per map.
pub fn sample_report(config: &Config, shard: &str, sample: u64) -> Result<String, String> {
    let sharding = config
        .sharding
        .as_ref()
        .ok_or("the config has no [sharding] section")?;
    let mut report = String::new();
    for change in changes(sharding, shard)? {
        let moved = (1..=sample)
            .map(|i| sample_key(change.key_type, i))
            .filter(|key| change.old.shard_of(key) != change.new.shard_of(key))
            .count();
        let _ = writeln!(
            report,
            "map {:?} ({}, {} -> {} shards): {moved} of {sample} sampled keys would move ({:.1}%)",
            change.map.name,
            kind_name(change.map.kind),
            change.map.shards.len(),
            change.map.shards.len() + 1,
            percent(moved as u64, sample)
        );
    }
    Ok(report)
}

/// The report over the rows the shards hold now, read from every shard's primary.
pub async fn data_report(config: &Config, shard: &str) -> Result<String, String> {
    let sharding = config
        .sharding
        .as_ref()
        .ok_or("the config has no [sharding] section")?;
    crate::tls::use_for_internal_connections(&crate::tls::ServerTls::load(&config.tls)?);
    let mut report = String::new();
    for change in changes(sharding, shard)? {
        for table in sharding.tables.iter().filter(|t| t.map == change.map.name) {
            let mut total = 0u64;
            let mut moved = 0u64;
            for cluster in &change.map.shards {
                for text in read_keys(config, cluster, &table.name, &table.key).await? {
                    let key = table.key_type.parse(&text).map_err(|e| e.to_string())?;
                    total += 1;
                    moved += u64::from(change.old.shard_of(&key) != change.new.shard_of(&key));
                }
            }
            let _ = writeln!(
                report,
                "table {:?} (map {:?}): {moved} of {total} rows would move ({:.1}%)",
                table.name,
                change.map.name,
                percent(moved, total)
            );
        }
    }
    Ok(report)
}

/// The key column of `table` on `cluster`'s primary, as text (as the monitor connects).
async fn read_keys(
    config: &Config,
    cluster: &str,
    table: &str,
    key: &str,
) -> Result<Vec<String>, String> {
    let mut pg = config
        .primary_connection(cluster, "pgsplit shard plan")
        .ok_or_else(|| format!("no cluster {cluster:?}"))?;
    let (client, connection) = crate::tls::connect_internal(&mut pg)
        .await
        .map_err(|e| format!("{cluster}: {e}"))?;
    let driver = tokio::spawn(connection);
    let sql = format!("SELECT {}::text FROM {}", quote(key), quote(table));
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| format!("{cluster}: {e}"));
    driver.abort();
    Ok(rows?.iter().map(|row| row.get(0)).collect())
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sample_key(key_type: KeyType, i: u64) -> KeyValue {
    match key_type {
        KeyType::Int2 => KeyValue::Int2((i % 32_768) as i16),
        KeyType::Int4 => KeyValue::Int4(i as i32),
        KeyType::Int8 => KeyValue::Int8(i as i64),
        KeyType::Text => KeyValue::Text(format!("key-{i}")),
        KeyType::Uuid => {
            let mut bytes = [0u8; 16];
            bytes[8..].copy_from_slice(&i.to_be_bytes());
            KeyValue::Uuid(bytes)
        }
    }
}

fn kind_name(kind: MapKind) -> &'static str {
    match kind {
        MapKind::Hash => "hash",
        MapKind::ConsistentHash => "consistent_hash",
        MapKind::Range => "range",
        MapKind::List => "list",
        MapKind::Directory => "directory",
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::sample_report;
    use crate::config::Config;

    fn config(kind: &str) -> Config {
        let text = format!(
            r#"
[[clusters]]
name = "a"
primary = {{ addr = "127.0.0.1:5432" }}
[[clusters]]
name = "b"
databases = ["x"]
primary = {{ addr = "127.0.0.1:5433" }}
[sharding]
[[sharding.tables]]
name = "t"
key = "id"
key_type = "int8"
map = "m"
[[sharding.maps]]
name = "m"
kind = "{kind}"
shards = ["a", "b"]
"#
        );
        Config::from_toml(&text, "test").expect("config")
    }

    #[test]
    fn adding_a_shard_moves_a_third_of_a_ring_and_most_of_a_hash() {
        let ring = sample_report(&config("consistent_hash"), "c", 30_000).expect("report");
        // "... would move (33.2%)"
        let percent = |report: &str| -> f64 {
            let last = report.trim().rsplit('(').next().unwrap_or_default();
            last.trim_end_matches("%)").parse().unwrap_or(-1.0)
        };
        let moved = percent(&ring);
        assert!((25.0..=42.0).contains(&moved), "{ring}");
        let hash = sample_report(&config("hash"), "c", 30_000).expect("report");
        assert!(percent(&hash) > 50.0, "{hash}");
        assert!(
            sample_report(&config("hash"), "a", 10).is_err(),
            "an existing shard"
        );
    }
}
