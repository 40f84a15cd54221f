//! The `[sharding]` configuration section: serde types (strict: unknown keys are errors) and
//! [`ShardingConfig::build`], which checks everything serde cannot see and builds the maps.
//!
//! ```toml
//! [sharding]
//! default = "main"                  # cluster of tables neither sharded nor replicated
//! two_phase_commit = false          # true: transactions may span shards (PREPARE TRANSACTION)
//! replicated = ["countries"]        # a full copy on every shard
//!
//! [[sharding.tables]]
//! name = "users"
//! key = "id"
//! key_type = "int8"                 # int2, int4, int8, text, uuid
//! map = "by_id"
//!
//! [[sharding.maps]]
//! name = "by_id"
//! kind = "hash"                     # hash, range, list, directory, consistent_hash
//! shards = ["shard_a", "shard_b"]   # clusters from [[clusters]], in shard order
//! # range:           ranges = [{ shard = "shard_a", to = 1000 }, { shard = "shard_b", from = 1000 }]
//! # list:            lists = [{ shard = "shard_a", values = ["fr", "de"] }], default_shard = "shard_b"
//! # consistent_hash: virtual_nodes = 256
//! # directory:       directory = { cluster = "main", table = "tenants", key_column = "tenant",
//! #                                shard_column = "shard", cache_capacity = 100000, cache_ttl = "5m" }
//! ```
//!
//! Problems come back as a [`ConfigIssue`]: a key path below `sharding` and a message, which the
//! config module turns into its file:line:key error.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::directory::{Directory, DirectorySpec};
use super::list::{ListMap, ListSpec};
use super::map::{NamedMap, ShardMap, ShardedTable, Sharding};
use super::range::{RangeMap, RangeSpec};
use super::ring::{DEFAULT_VIRTUAL_NODES, Ring};
use super::{KeyType, KeyValue};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardingConfig {
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    #[serde(default)]
    pub maps: Vec<MapConfig>,
    #[serde(default)]
    pub replicated: Vec<String>,
    #[serde(default)]
    pub default: Option<String>,
    /// Transactions (and multi-row INSERTs) that touch several shards commit through
    /// PostgreSQL's two-phase commit; off, they are refused. Needs `max_prepared_transactions`
    /// above 0 on every shard.
    #[serde(default)]
    pub two_phase_commit: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    pub name: String,
    /// The key column.
    pub key: String,
    pub key_type: KeyType,
    /// The name of a map in `sharding.maps`.
    pub map: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapKind {
    Hash,
    Range,
    List,
    Directory,
    ConsistentHash,
}

/// One map. Which of the optional keys belong depends on `kind`; `build` refuses the others.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    pub name: String,
    pub kind: MapKind,
    pub shards: Vec<String>,
    pub ranges: Option<Vec<RangeConfig>>,
    pub lists: Option<Vec<ListConfig>>,
    pub default_shard: Option<String>,
    pub virtual_nodes: Option<usize>,
    pub directory: Option<DirectoryConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    pub shard: String,
    /// Inclusive; absent: no lower end.
    pub from: Option<ConfigKey>,
    /// Exclusive; absent: no upper end.
    pub to: Option<ConfigKey>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    pub shard: String,
    pub values: Vec<ConfigKey>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The cluster whose primary holds the table.
    pub cluster: String,
    pub table: String,
    pub key_column: String,
    #[serde(default = "default_shard_column")]
    pub shard_column: String,
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: u64,
    /// A duration such as "5m"; absent: entries live until invalidated or evicted.
    pub cache_ttl: Option<String>,
    /// Bound on connecting and on each lookup, e.g. "5s".
    pub timeout: Option<String>,
}

fn default_shard_column() -> String {
    "shard".into()
}

fn default_cache_capacity() -> u64 {
    100_000
}

const DEFAULT_DIRECTORY_TIMEOUT: Duration = Duration::from_secs(5);

/// A key value as TOML gives it: an integer, or a string for any type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConfigKey {
    Int(i64),
    Text(String),
}

/// A problem in the section: where (below `sharding`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// From the top of the file: `["sharding", "maps", 0, "ranges", 1, "to"]`.
    pub path: Vec<PathPart>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    Key(String),
    Index(usize),
}

/// `sharding.maps[0].ranges[1].to: message`
impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.path.iter().enumerate() {
            match part {
                PathPart::Index(index) => write!(f, "[{index}]")?,
                PathPart::Key(key) if i == 0 => f.write_str(key)?,
                PathPart::Key(key) => write!(f, ".{key}")?,
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Builds key paths: `at().key("maps").index(0)`.
#[derive(Debug, Clone)]
struct Path(Vec<PathPart>);

fn at() -> Path {
    Path(vec![PathPart::Key("sharding".into())])
}

impl Path {
    fn key(&self, key: &str) -> Path {
        self.child(PathPart::Key(key.to_owned()))
    }

    fn index(&self, index: usize) -> Path {
        self.child(PathPart::Index(index))
    }

    fn child(&self, part: PathPart) -> Path {
        let mut parts = self.0.clone();
        parts.push(part);
        Path(parts)
    }

    fn issue(&self, message: impl Into<String>) -> ConfigIssue {
        ConfigIssue {
            path: self.0.clone(),
            message: message.into(),
        }
    }
}

/// Where a directory map's table is reached: the connection settings for a cluster's primary.
pub type DirectoryConnection<'a> = &'a dyn Fn(&str) -> tokio_postgres::Config;

impl ShardingConfig {
    /// Checks the section against the configured clusters and builds the maps. A directory
    /// map connects on its first lookup, not here.
    pub fn build(
        &self,
        clusters: &[String],
        connection_for: DirectoryConnection<'_>,
    ) -> Result<Sharding, ConfigIssue> {
        let clusters: HashSet<&str> = clusters.iter().map(String::as_str).collect();
        if let Some(default) = &self.default {
            known_cluster(&clusters, default, &at().key("default"))?;
        }
        let key_types = self.map_key_types()?;
        let mut maps = Vec::with_capacity(self.maps.len());
        let mut map_index = HashMap::new();
        for (i, map) in self.maps.iter().enumerate() {
            let path = at().key("maps").index(i);
            if map_index.insert(map.name.as_str(), i).is_some() {
                return Err(path.key("name").issue(format!(
                    "a second map is named {:?}; map names must be unique",
                    map.name
                )));
            }
            let Some(&key_type) = key_types.get(map.name.as_str()) else {
                return Err(path.key("name").issue(format!(
                    "no table in sharding.tables uses map {:?}; name it in a table or remove it",
                    map.name
                )));
            };
            maps.push(map.build(key_type, &clusters, connection_for, &path)?);
        }
        let tables = self.tables(&map_index)?;
        let replicated = self.replicated(&tables)?;
        Ok(Sharding {
            tables,
            maps,
            replicated,
            default: self.default.clone(),
            two_phase_commit: self.two_phase_commit,
        })
    }

    /// The key type of each map, from the tables that use it (which must agree).
    fn map_key_types(&self) -> Result<HashMap<&str, KeyType>, ConfigIssue> {
        let mut types: HashMap<&str, (KeyType, &str)> = HashMap::new();
        for (i, table) in self.tables.iter().enumerate() {
            let (first_type, first_table) = *types
                .entry(table.map.as_str())
                .or_insert((table.key_type, table.name.as_str()));
            if first_type != table.key_type {
                return Err(at().key("tables").index(i).key("key_type").issue(format!(
                    "table {:?} has key type {}, but map {:?} also places table {:?} with key \
                     type {}; tables sharing a map need the same key type",
                    table.name,
                    table.key_type.sql_name(),
                    table.map,
                    first_table,
                    first_type.sql_name()
                )));
            }
        }
        Ok(types.into_iter().map(|(map, (ty, _))| (map, ty)).collect())
    }

    fn tables(
        &self,
        map_index: &HashMap<&str, usize>,
    ) -> Result<HashMap<String, ShardedTable>, ConfigIssue> {
        let mut tables = HashMap::new();
        for (i, table) in self.tables.iter().enumerate() {
            let path = at().key("tables").index(i);
            not_empty(&table.name, &path.key("name"))?;
            not_empty(&table.key, &path.key("key"))?;
            let Some(&map) = map_index.get(table.map.as_str()) else {
                return Err(path.key("map").issue(format!(
                    "no map is named {:?}; name one of sharding.maps",
                    table.map
                )));
            };
            let sharded = ShardedTable {
                key_column: table.key.clone(),
                key_type: table.key_type,
                map,
            };
            if tables.insert(table.name.clone(), sharded).is_some() {
                return Err(path.key("name").issue(format!(
                    "table {:?} is listed twice; a table has one key and one map",
                    table.name
                )));
            }
        }
        Ok(tables)
    }

    fn replicated(
        &self,
        tables: &HashMap<String, ShardedTable>,
    ) -> Result<HashSet<String>, ConfigIssue> {
        let mut replicated = HashSet::new();
        for (i, name) in self.replicated.iter().enumerate() {
            let path = at().key("replicated").index(i);
            not_empty(name, &path)?;
            if tables.contains_key(name) {
                return Err(path.issue(format!(
                    "table {name:?} is both sharded and replicated; choose one"
                )));
            }
            if !replicated.insert(name.clone()) {
                return Err(path.issue(format!("table {name:?} is listed twice")));
            }
        }
        Ok(replicated)
    }
}

impl MapConfig {
    fn build(
        &self,
        key_type: KeyType,
        clusters: &HashSet<&str>,
        connection_for: DirectoryConnection<'_>,
        path: &Path,
    ) -> Result<NamedMap, ConfigIssue> {
        self.check_fields(path)?;
        self.check_shards(clusters, &path.key("shards"))?;
        let invalid = |e: super::ShardError| path.issue(e.to_string());
        let map = match self.kind {
            MapKind::Hash => ShardMap::Hash {
                shards: self.shards.len(),
            },
            MapKind::Range => {
                let ranges = self.range_specs(key_type, &path.key("ranges"))?;
                ShardMap::Range(RangeMap::new(&self.name, &self.shards, ranges).map_err(invalid)?)
            }
            MapKind::List => {
                let lists = self.list_specs(key_type, &path.key("lists"))?;
                let default = self
                    .default_shard
                    .as_ref()
                    .map(|name| self.shard_index(name, &path.key("default_shard")))
                    .transpose()?;
                ShardMap::List(
                    ListMap::new(&self.name, &self.shards, lists, default).map_err(invalid)?,
                )
            }
            MapKind::ConsistentHash => {
                let nodes = self.virtual_nodes.unwrap_or(DEFAULT_VIRTUAL_NODES);
                if nodes == 0 {
                    return Err(path.key("virtual_nodes").issue("must be at least 1"));
                }
                ShardMap::ConsistentHash(Ring::new(&self.shards, nodes).map_err(invalid)?)
            }
            MapKind::Directory => {
                let spec = self.directory_spec(key_type, clusters, &path.key("directory"))?;
                let connection = connection_for(&spec.0);
                ShardMap::Directory(Arc::new(Directory::new(spec.1, connection, &self.shards)))
            }
        };
        Ok(NamedMap {
            name: self.name.clone(),
            key_type,
            shards: self.shards.clone(),
            map,
        })
    }

    /// Refuses keys that belong to another kind of map, and requires the kind's own.
    fn check_fields(&self, path: &Path) -> Result<(), ConfigIssue> {
        not_empty(&self.name, &path.key("name"))?;
        let present = [
            ("ranges", self.ranges.is_some(), MapKind::Range),
            ("lists", self.lists.is_some(), MapKind::List),
            ("default_shard", self.default_shard.is_some(), MapKind::List),
            (
                "virtual_nodes",
                self.virtual_nodes.is_some(),
                MapKind::ConsistentHash,
            ),
            ("directory", self.directory.is_some(), MapKind::Directory),
        ];
        for (key, is_present, owner) in present {
            if is_present && owner != self.kind {
                return Err(path.key(key).issue(format!(
                    "`{key}` belongs to maps of kind = \"{}\", and this map is of kind \"{}\"",
                    kind_name(owner),
                    kind_name(self.kind)
                )));
            }
        }
        let required = match self.kind {
            MapKind::Range => Some(("ranges", self.ranges.is_some())),
            MapKind::List => Some((
                "lists",
                self.lists.is_some() || self.default_shard.is_some(),
            )),
            MapKind::Directory => Some(("directory", self.directory.is_some())),
            MapKind::Hash | MapKind::ConsistentHash => None,
        };
        match required {
            Some((key, false)) => Err(path.key(key).issue(format!(
                "a map of kind = \"{}\" needs `{key}`",
                kind_name(self.kind)
            ))),
            _ => Ok(()),
        }
    }

    fn check_shards(&self, clusters: &HashSet<&str>, path: &Path) -> Result<(), ConfigIssue> {
        if self.shards.is_empty() {
            return Err(path.issue("list at least one shard (a cluster name from [[clusters]])"));
        }
        let mut seen = HashSet::new();
        for (i, shard) in self.shards.iter().enumerate() {
            known_cluster(clusters, shard, &path.index(i))?;
            if !seen.insert(shard) {
                return Err(path.index(i).issue(format!(
                    "cluster {shard:?} is listed twice; each shard is a different cluster"
                )));
            }
        }
        Ok(())
    }

    fn shard_index(&self, name: &str, path: &Path) -> Result<usize, ConfigIssue> {
        self.shards.iter().position(|s| s == name).ok_or_else(|| {
            path.issue(format!(
                "{name:?} is not one of this map's shards ({})",
                self.shards.join(", ")
            ))
        })
    }

    fn range_specs(&self, key_type: KeyType, path: &Path) -> Result<Vec<RangeSpec>, ConfigIssue> {
        let ranges = self.ranges.as_deref().unwrap_or_default();
        let mut specs = Vec::with_capacity(ranges.len());
        for (i, range) in ranges.iter().enumerate() {
            let path = path.index(i);
            let bound = |value: &Option<ConfigKey>, key: &str| {
                value
                    .as_ref()
                    .map(|v| parse_key(key_type, v, &path.key(key)))
                    .transpose()
            };
            specs.push(RangeSpec {
                shard: self.shard_index(&range.shard, &path.key("shard"))?,
                from: bound(&range.from, "from")?,
                to: bound(&range.to, "to")?,
            });
        }
        Ok(specs)
    }

    fn list_specs(&self, key_type: KeyType, path: &Path) -> Result<Vec<ListSpec>, ConfigIssue> {
        let lists = self.lists.as_deref().unwrap_or_default();
        let mut specs = Vec::with_capacity(lists.len());
        for (i, list) in lists.iter().enumerate() {
            let path = path.index(i);
            let values = list
                .values
                .iter()
                .enumerate()
                .map(|(j, v)| parse_key(key_type, v, &path.key("values").index(j)))
                .collect::<Result<_, _>>()?;
            specs.push(ListSpec {
                shard: self.shard_index(&list.shard, &path.key("shard"))?,
                values,
            });
        }
        Ok(specs)
    }

    /// The directory's cluster and its lookup settings.
    fn directory_spec(
        &self,
        key_type: KeyType,
        clusters: &HashSet<&str>,
        path: &Path,
    ) -> Result<(String, DirectorySpec), ConfigIssue> {
        let Some(directory) = &self.directory else {
            return Err(path.issue("a map of kind = \"directory\" needs `directory`"));
        };
        known_cluster(clusters, &directory.cluster, &path.key("cluster"))?;
        for (key, name) in [
            ("table", &directory.table),
            ("key_column", &directory.key_column),
            ("shard_column", &directory.shard_column),
        ] {
            not_empty(name, &path.key(key))?;
        }
        if directory.cache_capacity == 0 {
            return Err(path.key("cache_capacity").issue("must be at least 1"));
        }
        let ttl = directory
            .cache_ttl
            .as_deref()
            .map(|text| parse_duration(text, &path.key("cache_ttl")))
            .transpose()?;
        let timeout = directory
            .timeout
            .as_deref()
            .map(|text| parse_duration(text, &path.key("timeout")))
            .transpose()?
            .unwrap_or(DEFAULT_DIRECTORY_TIMEOUT);
        let spec = DirectorySpec {
            table: directory.table.clone(),
            key_column: directory.key_column.clone(),
            shard_column: directory.shard_column.clone(),
            key_type,
            capacity: directory.cache_capacity,
            ttl,
            timeout,
        };
        Ok((directory.cluster.clone(), spec))
    }
}

fn kind_name(kind: MapKind) -> &'static str {
    match kind {
        MapKind::Hash => "hash",
        MapKind::Range => "range",
        MapKind::List => "list",
        MapKind::Directory => "directory",
        MapKind::ConsistentHash => "consistent_hash",
    }
}

fn parse_key(key_type: KeyType, value: &ConfigKey, path: &Path) -> Result<KeyValue, ConfigIssue> {
    let text = match value {
        ConfigKey::Int(v) => v.to_string(),
        ConfigKey::Text(v) => v.clone(),
    };
    key_type.parse(&text).map_err(|e| {
        path.issue(format!(
            "{e} (the map's tables have key type {})",
            key_type.sql_name()
        ))
    })
}

fn parse_duration(text: &str, path: &Path) -> Result<Duration, ConfigIssue> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err(path.issue("must be longer than zero")),
        Err(e) => Err(path.issue(format!(
            "invalid duration {text:?}: {e}; write a number and a unit, such as \"500ms\" or \"5m\""
        ))),
    }
}

fn known_cluster(clusters: &HashSet<&str>, name: &str, path: &Path) -> Result<(), ConfigIssue> {
    if clusters.contains(name) {
        return Ok(());
    }
    let mut known: Vec<&str> = clusters.iter().copied().collect();
    known.sort_unstable();
    Err(path.issue(format!(
        "no cluster is named {name:?}; the [[clusters]] are: {}",
        known.join(", ")
    )))
}

fn not_empty(value: &str, path: &Path) -> Result<(), ConfigIssue> {
    if value.is_empty() {
        return Err(path.issue("must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
