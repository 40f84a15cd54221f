//! The errors that refuse what cannot run correctly on shards, each naming table and key.

use sqlparser::ast::Statement;

use crate::protocol::SqlState;
use crate::shard::map::Sharding;

use super::super::error::FrontendError;
use super::ShardTarget;

fn key_hint(sharding: &Sharding, table: &str) -> String {
    sharding.tables.get(table).map_or_else(String::new, |t| {
        format!(" (sharding key \"{}\")", t.key_column)
    })
}

pub(super) fn write_without_key(
    sharding: &Sharding,
    table: &str,
    statement: &Statement,
) -> FrontendError {
    if let Statement::Insert(insert) = statement
        && insert.columns.is_empty()
    {
        return FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "INSERT into sharded table \"{table}\" must list its columns, so that pgsplit finds the key{}: INSERT INTO {table} (...) VALUES (...)",
                key_hint(sharding, table)
            ),
        );
    }
    let verb = statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or("write")
        .to_uppercase();
    FrontendError::refuse(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "{verb} on sharded table \"{table}\" must name its key{}: add WHERE {} = <value> (or a /* pgsplit: shard_key=... */ hint)",
            key_hint(sharding, table),
            sharding
                .tables
                .get(table)
                .map_or("<key>", |t| t.key_column.as_str()),
        ),
    )
}

/// A write whose keys span shards, with two-phase commit off.
pub(super) fn cross_shard_write(sharding: &Sharding, table: &str) -> FrontendError {
    FrontendError::refuse(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "this write to sharded table \"{table}\" has keys on more than one shard{}: write each shard's rows separately (two-phase commit across shards is not enabled)",
            key_hint(sharding, table)
        ),
    )
}

pub(super) fn refuse_multi_shard(texts: &[&str], target: &ShardTarget) -> FrontendError {
    let what = match target {
        ShardTarget::Everywhere { .. } => "a write to a replicated table (run on every shard)",
        ShardTarget::SplitWrite { .. } => "an INSERT whose rows belong to several shards",
        _ => "a read of every shard",
    };
    let why = if texts.len() > 1 || texts.first().is_some_and(|t| t.contains(';')) {
        "must be a single statement"
    } else {
        "needs the simple query protocol (or name the sharding key)"
    };
    FrontendError::refuse(SqlState::FEATURE_NOT_SUPPORTED, format!("{what} {why}"))
}
