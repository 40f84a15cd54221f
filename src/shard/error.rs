//! The one error type of the shard module. Each variant knows its SQLSTATE, and its Display is
//! the sentence a client may read (it names keys and shards, never internals).

use crate::protocol::SqlState;

/// Why a key could not be placed on a shard, or a shard map could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// A key's text is not a value of the declared key type (PostgreSQL's own wording).
    #[error("invalid input syntax for type {type_name}: \"{value}\"")]
    InvalidKey {
        type_name: &'static str,
        value: String,
    },
    /// A key parses but does not fit the declared integer type.
    #[error("value \"{value}\" is out of range for type {type_name}")]
    KeyOutOfRange {
        type_name: &'static str,
        value: String,
    },
    /// No shard of a range or list map (and no default) accepts the key.
    #[error("no shard of map \"{map}\" accepts the key {key}")]
    NoShardForKey { map: String, key: String },
    /// The directory table has no row for the key.
    #[error("the shard directory {table} has no entry for the key {key}")]
    UnknownKey { table: String, key: String },
    /// The directory names a shard the map does not have.
    #[error("the shard directory {table} maps the key {key} to unknown shard \"{shard}\"")]
    UnknownShard {
        table: String,
        key: String,
        shard: String,
    },
    /// The directory table could not be read.
    #[error("the shard directory {table} could not be read: {reason}")]
    DirectoryUnavailable { table: String, reason: String },
    /// A shard map's definition is inconsistent (overlapping ranges, duplicate list values...).
    #[error("{0}")]
    InvalidMap(String),
}

impl ShardError {
    pub fn sqlstate(&self) -> SqlState {
        match self {
            ShardError::InvalidKey { .. } => SqlState("22P02"),
            ShardError::KeyOutOfRange { .. } => SqlState("22003"),
            // PostgreSQL raises check_violation for a row no partition accepts.
            ShardError::NoShardForKey { .. }
            | ShardError::UnknownKey { .. }
            | ShardError::UnknownShard { .. } => SqlState("23514"),
            ShardError::DirectoryUnavailable { .. } => SqlState::CONNECTION_FAILURE,
            ShardError::InvalidMap(_) => SqlState::INVALID_PARAMETER_VALUE,
        }
    }
}
