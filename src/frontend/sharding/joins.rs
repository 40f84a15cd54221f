//! Joins of sharded tables: when all their rows come from one shard, and which key says so.

use std::collections::HashMap;

use sqlparser::ast::{BinaryOperator, Expr, SetExpr, Statement, TableFactor};

use crate::shard::extract::{KeyRef, literal_or_param};
use crate::shard::map::{Placement, Sharding};

use super::target::table_names;

/// Whether every row a join of sharded tables can produce comes from one shard: all tables
/// placed by the same map, each one equated on its key to another's key (`a.user_id = u.id`).
pub(super) fn co_located(sharding: &Sharding, statement: &Statement, tables: &[String]) -> bool {
    let sharded: Vec<_> = tables
        .iter()
        .filter_map(|t| sharding.tables.get(t))
        .collect();
    if sharded.windows(2).any(|pair| pair[0].map != pair[1].map) {
        return false;
    }
    let mut equated: Vec<(String, String)> = Vec::new();
    let _ = sqlparser::ast::visit_expressions(statement, |expr| {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = expr
            && let (Some(l), Some(r)) = (column_name(left), column_name(right))
        {
            equated.push((l, r));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let keys: Vec<&str> = sharded.iter().map(|t| t.key_column.as_str()).collect();
    // Every mention but one must be tied by key equality to another mention's key.
    let ties = equated
        .iter()
        .filter(|(l, r)| keys.contains(&l.as_str()) && keys.contains(&r.as_str()))
        .count();
    ties + 1 >= tables.len()
}

/// Tables the statement names that are neither sharded nor replicated: they live on one
/// shard, so a read that spans shards cannot join them.
pub(super) fn single_shard_tables(sharding: &Sharding, statement: &Statement) -> Vec<String> {
    table_names(statement)
        .into_iter()
        .filter(|table| {
            matches!(
                sharding.placement(table),
                Placement::Default(_) | Placement::Unknown
            )
        })
        .collect()
}

/// In a shard-local join, a condition `alias.key = <value>` ANDed into the WHERE clause puts
/// every row on that value's shard. The alias must name a sharded table whose key it is.
pub(super) fn joined_key(sharding: &Sharding, statement: &Statement) -> Option<(String, KeyRef)> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let mut aliases: HashMap<String, String> = HashMap::new();
    let relations = select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for relation in relations {
        if let TableFactor::Table { name, alias, .. } = relation
            && let Some(table) = name.0.last().and_then(|p| p.as_ident())
        {
            let table = table.value.to_lowercase();
            let called = alias
                .as_ref()
                .map_or(table.clone(), |a| a.name.value.to_lowercase());
            aliases.insert(called, table);
        }
    }
    let mut conditions = vec![select.selection.as_ref()?];
    while let Some(condition) = conditions.pop() {
        match condition {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                conditions.push(left);
                conditions.push(right);
            }
            Expr::Nested(inner) => conditions.push(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let found = qualified_key(sharding, &aliases, left, right)
                    .or_else(|| qualified_key(sharding, &aliases, right, left));
                if found.is_some() {
                    return found;
                }
            }
            _ => {}
        }
    }
    None
}

/// `alias.column = value` where the column is the key of the table the alias names.
fn qualified_key(
    sharding: &Sharding,
    aliases: &HashMap<String, String>,
    column: &Expr,
    value: &Expr,
) -> Option<(String, KeyRef)> {
    let Expr::CompoundIdentifier(parts) = column else {
        return None;
    };
    let [qualifier, name] = parts.as_slice() else {
        return None;
    };
    let table = aliases.get(&qualifier.value.to_lowercase())?;
    let sharded = sharding.tables.get(table)?;
    if name.value.to_lowercase() != sharded.key_column {
        return None;
    }
    let key = literal_or_param(value)?;
    if let KeyRef::Literal(text) = &key {
        sharded.key_type.parse(text).ok()?;
    }
    Some((table.clone(), key))
}

fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.to_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_lowercase()),
        _ => None,
    }
}
