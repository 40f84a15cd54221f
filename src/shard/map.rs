//! One shard map of any kind behind one call, and the sharding layout the proxy consults:
//! which tables are sharded (by which key and map), replicated, or on the default shard.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::directory::Directory;
use super::hash::hash_shard;
use super::list::ListMap;
use super::range::RangeMap;
use super::ring::Ring;
use super::{KeyType, KeyValue, ShardError};

/// How a map places keys; the shard it returns is an index into its [`NamedMap::shards`].
#[derive(Clone)]
pub enum ShardMap {
    /// PostgreSQL's `PARTITION BY HASH` with the modulus = the number of shards.
    Hash {
        shards: usize,
    },
    Range(RangeMap),
    List(ListMap),
    ConsistentHash(Ring),
    /// A lookup table on a cluster, read through a cache.
    Directory(Arc<Directory>),
}

impl ShardMap {
    /// The key's shard. Only a directory map may wait (for its table, on a cache miss).
    pub async fn shard_for(&self, key: &KeyValue) -> Result<usize, ShardError> {
        match self {
            ShardMap::Hash { shards } => Ok(hash_shard(key, *shards)),
            ShardMap::Range(map) => map.shard_for(key),
            ShardMap::List(map) => map.shard_for(key),
            ShardMap::ConsistentHash(ring) => Ok(ring.shard_for(key)),
            ShardMap::Directory(directory) => directory.shard_for(key).await,
        }
    }
}

/// A configured map: its name, key type and the clusters that are its shards, in order.
#[derive(Clone)]
pub struct NamedMap {
    pub name: String,
    pub key_type: KeyType,
    /// Cluster names; shard `i` is `shards[i]`.
    pub shards: Vec<String>,
    pub map: ShardMap,
}

/// A sharded table: the column holding its key and the map placing its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedTable {
    pub key_column: String,
    pub key_type: KeyType,
    /// Index into [`Sharding::maps`].
    pub map: usize,
}

/// Where a table lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement<'a> {
    /// Rows spread over shards by the table's key.
    Sharded(&'a ShardedTable),
    /// A full copy on every shard: reads anywhere, writes everywhere.
    Replicated,
    /// Only on this cluster (the `default` shard).
    Default(&'a str),
    /// Not named by the sharding configuration and no default shard.
    Unknown,
}

/// The checked `[sharding]` section.
#[derive(Clone)]
pub struct Sharding {
    pub tables: HashMap<String, ShardedTable>,
    pub maps: Vec<NamedMap>,
    pub replicated: HashSet<String>,
    pub default: Option<String>,
    /// Multi-shard transactions commit through two-phase commit (else they are refused).
    pub two_phase_commit: bool,
}

impl Sharding {
    /// Where `table` (as named in the configuration) lives.
    pub fn placement(&self, table: &str) -> Placement<'_> {
        if let Some(sharded) = self.tables.get(table) {
            Placement::Sharded(sharded)
        } else if self.replicated.contains(table) {
            Placement::Replicated
        } else if let Some(default) = &self.default {
            Placement::Default(default)
        } else {
            Placement::Unknown
        }
    }

    /// The cluster holding the row of `table` whose key has this text (an SQL literal's value
    /// or a text-format parameter); `None` when the table is not sharded.
    pub async fn cluster_for(
        &self,
        table: &str,
        key_text: &str,
    ) -> Option<Result<&str, ShardError>> {
        let sharded = self.tables.get(table)?;
        let named = &self.maps[sharded.map];
        let placed = match sharded.key_type.parse(key_text) {
            Ok(key) => named.map.shard_for(&key).await,
            Err(e) => Err(e),
        };
        Some(placed.map(|shard| named.shards[shard].as_str()))
    }

    /// A write to `tables` committed: directory maps reading one of them forget what they
    /// cached, so a key moved to another shard is looked up again.
    pub fn tables_written(&self, tables: &[String]) {
        let relation = |name: &str| name.rsplit('.').next().unwrap_or(name).to_lowercase();
        for named in &self.maps {
            if let ShardMap::Directory(directory) = &named.map
                && tables
                    .iter()
                    .any(|t| relation(t) == relation(directory.table()))
            {
                directory.invalidate_all();
            }
        }
    }
}
