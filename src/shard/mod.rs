//! Sharding by key, the pure core: key types and values, the shard maps (PostgreSQL-compatible
//! hash, range, list, consistent hash, a directory table), the `[sharding]` configuration, and
//! finding a statement's key values in its syntax tree. The proxy's sessions call these; nothing
//! here keeps session state, and only the directory map talks to a server (its lookup table).

pub mod config;
pub mod copy_rows;
pub mod directory;
pub mod error;
pub mod extract;
pub mod hash;
pub mod key;
pub mod list;
pub mod map;
pub mod plan;
pub mod range;
pub mod ring;
pub mod twophase;

pub use error::ShardError;
pub use key::{KeyType, KeyValue};

/// A shard as error messages name it: its configured name, quoted, else its number.
pub(crate) fn shard_label(shard_names: &[String], shard: usize) -> String {
    shard_names
        .get(shard)
        .map_or_else(|| shard.to_string(), |name| format!("{name:?}"))
}
