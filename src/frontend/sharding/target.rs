//! Where one statement runs: by its keys, its hint, or the tables it names.

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::hint::ShardHint;
use crate::protocol::SqlState;
use crate::shard::KeyType;
use crate::shard::extract::{Extraction, KeyRef, extract, sharded_tables};
use crate::shard::map::{Placement, Sharding};

use super::super::error::FrontendError;
use super::ShardTarget;
use super::bind::BindParams;
use super::joins::{co_located, joined_key, single_shard_tables};
use super::refusal::write_without_key;

/// `shard=<n or name>` or `shard_key=<value>`: the shard the operator named, under the map of
/// the statement's first sharded table (else the first map).
pub(super) async fn hinted_target(
    sharding: &Sharding,
    hint: &ShardHint,
    text: &str,
) -> Result<ShardTarget, FrontendError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, text).unwrap_or_default();
    shard_named(sharding, hint, &statements).await
}

/// The shard `hint` names (a statement's hint, or the session's `pgsplit.shard[_key]`), under
/// the map of the first sharded table `statements` name (else the first table's map).
pub(super) async fn shard_named(
    sharding: &Sharding,
    hint: &ShardHint,
    statements: &[Statement],
) -> Result<ShardTarget, FrontendError> {
    let table = statements
        .iter()
        .flat_map(|statement| sharded_tables(statement, &sharding.tables))
        .next()
        .or_else(|| sharding.tables.keys().min().cloned());
    let map_index = table
        .as_ref()
        .and_then(|t| sharding.tables.get(t))
        .map_or(0, |t| t.map);
    let shards = sharding
        .maps
        .get(map_index)
        .map(|m| m.shards.as_slice())
        .unwrap_or_default();
    let unknown = |what: String| FrontendError::refuse(SqlState::UNDEFINED_OBJECT, what);
    match hint {
        ShardHint::Shard(shard) => {
            let by_number = shard.parse::<usize>().ok().and_then(|n| shards.get(n));
            let by_name = shards.iter().find(|name| *name == shard);
            by_number
                .or(by_name)
                .map(|cluster| ShardTarget::Cluster(cluster.clone()))
                .ok_or_else(|| {
                    unknown(format!(
                        "no shard {shard:?}: the shards are {} (by number from 0, or by name)",
                        shards.join(", ")
                    ))
                })
        }
        ShardHint::Key(key) => {
            let table =
                table.ok_or_else(|| unknown("a shard_key hint needs a sharded table".into()))?;
            match sharding.cluster_for(&table, key).await {
                Some(Ok(cluster)) => Ok(ShardTarget::Cluster(cluster.to_string())),
                Some(Err(e)) => Err(FrontendError::refuse(e.sqlstate(), e.to_string())),
                None => Err(unknown(format!("table {table:?} is not sharded"))),
            }
        }
    }
}

/// Where one statement must run; one on a sharded table that names no key goes to the shard of
/// `choice` (the session's `pgsplit.shard[_key]`) when there is one.
pub(super) async fn statement_target(
    sharding: &Sharding,
    statement: &Statement,
    params: Option<&BindParams<'_>>,
    default_cluster: String,
    choice: Option<&ShardHint>,
) -> Result<ShardTarget, FrontendError> {
    match extract(statement, &sharding.tables) {
        Extraction::NotSharded => Ok(unsharded_target(sharding, statement, default_cluster)),
        Extraction::Keys(keys) => {
            let table = sharded_tables(statement, &sharding.tables).remove(0);
            keys_target(sharding, &table, &keys, params, statement).await
        }
        Extraction::NoKey => match choice {
            Some(choice) => shard_named(sharding, choice, std::slice::from_ref(statement)).await,
            None => no_key_target(sharding, statement, params).await,
        },
    }
}

/// A statement on no sharded table: on the default cluster if it names a table placed there,
/// else anywhere (replicated tables, no table at all).
fn unsharded_target(
    sharding: &Sharding,
    statement: &Statement,
    default_cluster: String,
) -> ShardTarget {
    let names_default = table_names(statement)
        .iter()
        .any(|table| matches!(sharding.placement(table), Placement::Default(_)));
    if names_default {
        return ShardTarget::Cluster(default_cluster);
    }
    let writes = !matches!(statement, Statement::Query(_));
    if writes && names_replicated(sharding, statement) {
        return ShardTarget::Everywhere {
            clusters: all_shards(sharding),
            sql: statement.to_string(),
        };
    }
    ShardTarget::Anywhere
}

fn names_replicated(sharding: &Sharding, statement: &Statement) -> bool {
    table_names(statement)
        .iter()
        .any(|table| sharding.replicated.contains(table))
}

/// Every table the statement names (subqueries included), unqualified and lower-cased, without
/// repeats.
pub(super) fn table_names(statement: &Statement) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let _ = sqlparser::ast::visit_relations(statement, |name| {
        if let Some(table) = name.0.last().and_then(|p| p.as_ident()) {
            let table = table.value.to_lowercase();
            if !names.contains(&table) {
                names.push(table);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    names
}

/// Every cluster any map places rows on, in map order.
pub(super) fn all_shards(sharding: &Sharding) -> Vec<String> {
    let mut clusters: Vec<String> = Vec::new();
    for cluster in sharding.maps.iter().flat_map(|m| &m.shards) {
        if !clusters.contains(cluster) {
            clusters.push(cluster.clone());
        }
    }
    clusters
}

async fn keys_target(
    sharding: &Sharding,
    table: &str,
    keys: &[KeyRef],
    params: Option<&BindParams<'_>>,
    statement: &Statement,
) -> Result<ShardTarget, FrontendError> {
    let key_type = sharding
        .tables
        .get(table)
        .map_or(KeyType::Text, |t| t.key_type);
    let mut clusters: Vec<String> = Vec::new();
    for key in keys {
        let text = match key {
            KeyRef::Literal(text) => text.clone(),
            KeyRef::Param(n) => match params.and_then(|p| p.key_text(*n, key_type)) {
                Some(text) => text,
                // A parameter not bound here (a Parse/Describe unit): any shard can prepare it.
                None => return Ok(ShardTarget::Anywhere),
            },
        };
        let placed = sharding.cluster_for(table, &text).await;
        let cluster = match placed {
            Some(Ok(cluster)) => cluster.to_string(),
            Some(Err(e)) => return Err(FrontendError::refuse(e.sqlstate(), e.to_string())),
            None => continue,
        };
        if !clusters.contains(&cluster) {
            clusters.push(cluster);
        }
    }
    match clusters.as_slice() {
        [] => Ok(ShardTarget::Anywhere),
        [one] => Ok(ShardTarget::Cluster(one.clone())),
        _ if matches!(statement, Statement::Query(_)) => Ok(ShardTarget::FanOut {
            sql: statement.to_string(),
            clusters,
        }),
        _ => super::split::split_write(sharding, table, statement, keys).await,
    }
}

async fn no_key_target(
    sharding: &Sharding,
    statement: &Statement,
    params: Option<&BindParams<'_>>,
) -> Result<ShardTarget, FrontendError> {
    let tables = sharded_tables(statement, &sharding.tables);
    let table = tables.first().cloned().unwrap_or_default();
    if !matches!(statement, Statement::Query(_)) {
        return Err(write_without_key(sharding, &table, statement));
    }
    if let Some(alone) = single_shard_tables(sharding, statement).first() {
        return Err(FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "table \"{alone}\" is on one shard only and cannot be joined with sharded table \"{table}\" across shards: make it replicated, or read it separately"
            ),
        ));
    }
    if tables.len() > 1 && !co_located(sharding, statement, &tables) {
        return Err(FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "this read joins sharded tables ({}) other than on their sharding keys, or over different maps: each shard holds only its own rows, so it cannot be answered correctly; join on the keys or name a key value",
                tables.join(", ")
            ),
        ));
    }
    if let Some((keyed, key)) = joined_key(sharding, statement) {
        return keys_target(sharding, &keyed, &[key], params, statement).await;
    }
    let clusters = sharding
        .tables
        .get(&table)
        .map(|sharded| sharding.maps[sharded.map].shards.clone())
        .unwrap_or_default();
    Ok(ShardTarget::FanOut {
        clusters,
        sql: statement.to_string(),
    })
}

/// Two statements' targets as one: the same cluster, or a refusal.
pub(super) fn combine(a: ShardTarget, b: ShardTarget) -> Result<ShardTarget, FrontendError> {
    match (a, b) {
        (ShardTarget::Anywhere, x) | (x, ShardTarget::Anywhere) => Ok(x),
        (ShardTarget::Cluster(x), ShardTarget::Cluster(y)) if x == y => Ok(ShardTarget::Cluster(x)),
        (ShardTarget::Cluster(x), ShardTarget::Cluster(y)) => Err(FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "these statements belong to two shards (\"{x}\" and \"{y}\"); send them separately, outside one transaction"
            ),
        )),
        (
            many @ (ShardTarget::FanOut { .. }
            | ShardTarget::Everywhere { .. }
            | ShardTarget::CopyIn(_)
            | ShardTarget::SplitWrite { .. }),
            _,
        )
        | (
            _,
            many @ (ShardTarget::FanOut { .. }
            | ShardTarget::Everywhere { .. }
            | ShardTarget::CopyIn(_)
            | ShardTarget::SplitWrite { .. }),
        ) => Ok(many),
    }
}
