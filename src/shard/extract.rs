//! Finding a statement's shard keys in its syntax tree (sqlparser, PostgreSQL dialect).
//!
//! Recognised forms, on a statement that touches exactly one sharded table once:
//! - `SELECT ... FROM t WHERE key = <literal | $n> [AND ...]`, `key IN (...)`, and ORs of these
//!   (the union of their keys); ANDed restrictions keep the narrower one;
//! - `UPDATE t SET ... WHERE ...` and `DELETE FROM t WHERE ...` the same way (an UPDATE that sets
//!   the key itself would move rows between shards, so it has no single key);
//! - `INSERT INTO t (..., key, ...) VALUES (...), (...)`: one key per row, in row order, so a
//!   multi-row insert can be split per shard.
//!
//! The rule is never a wrong single shard: what is not understood exactly gives
//! [`Extraction::NoKey`] (a read then fans out; a write is refused by the caller). That covers
//! joins and subqueries that reach a sharded table, set operations, CTEs, casts of numbers,
//! `key = ANY($1)`, a literal that is not a value of the key's type, and a statement naming two
//! sharded tables (or one twice).

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, CopySource, Expr, FromTable, Ident, ObjectName, Query,
    SetExpr, Statement, TableFactor, TableObject, TableWithJoins, UnaryOperator, Value,
    visit_relations,
};

use super::map::ShardedTable;

/// A key value as the statement holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// The literal's text (already checked to parse as the key type).
    Literal(String),
    /// The 1-based number of a parameter (`$2` is 2), bound later.
    Param(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extraction {
    /// The rows the statement touches all have one of these keys. For an INSERT, exactly one
    /// per VALUES row, in order.
    Keys(Vec<KeyRef>),
    /// A sharded table is involved but no key could be found for certain.
    NoKey,
    /// No sharded table is involved.
    NotSharded,
}

/// The keys of `statement`; `tables` are the sharded tables (as in
/// [`super::map::Sharding::tables`]). Table and key column names are compared the way PostgreSQL
/// resolves them: as configured against quoted names, in lower case against unquoted ones (so a
/// configured `users` matches `users`, `USERS` and `"users"`, and `Shops` only `"Shops"`).
pub fn extract(statement: &Statement, tables: &HashMap<String, ShardedTable>) -> Extraction {
    let mentions = sharded_mentions(statement, tables);
    if mentions.is_empty() {
        return Extraction::NotSharded;
    }
    let [table] = mentions.as_slice() else {
        return Extraction::NoKey;
    };
    let found = match statement {
        Statement::Query(query) => select_keys(query, table),
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) if table.is(name) => insert_keys(
                &insert.columns,
                insert.source.as_deref(),
                insert.assignments.is_empty(),
                table,
            ),
            _ => None,
        },
        Statement::Update(update) if update.from.is_none() => {
            let sets_key = update.assignments.iter().any(|a| match &a.target {
                AssignmentTarget::ColumnName(column) => table.is_key_name(column),
                AssignmentTarget::Tuple(columns) => columns.iter().any(|c| table.is_key_name(c)),
            });
            let target = single_table(std::slice::from_ref(&update.table), table);
            (!sets_key)
                .then_some(target)
                .flatten()
                .and_then(|scope| where_keys(update.selection.as_ref(), &scope))
        }
        Statement::Delete(delete) if delete.using.is_none() => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            single_table(from, table)
                .and_then(|scope| where_keys(delete.selection.as_ref(), &scope))
        }
        _ => None,
    };
    found.map_or(Extraction::NoKey, Extraction::Keys)
}

/// The sharded tables `statement` names (unqualified, as PostgreSQL resolves them), in order of
/// mention, repeats included.
pub fn sharded_tables(
    statement: &Statement,
    tables: &HashMap<String, ShardedTable>,
) -> Vec<String> {
    sharded_mentions(statement, tables)
        .into_iter()
        .map(|mention| mention.name)
        .collect()
}

/// A sharded table the statement names, with what is needed to read its key.
struct Mention<'a> {
    /// Unqualified, as PostgreSQL stores it.
    name: String,
    table: &'a ShardedTable,
}

impl Mention<'_> {
    fn is(&self, name: &ObjectName) -> bool {
        table_name(name).is_some_and(|n| n == self.name)
    }

    fn is_key(&self, ident: &Ident) -> bool {
        folded(ident) == self.table.key_column
    }

    fn is_key_name(&self, column: &ObjectName) -> bool {
        match column.0.last().and_then(|part| part.as_ident()) {
            Some(ident) => self.is_key(ident),
            None => false,
        }
    }

    /// The key as a statement may hold it: a literal of the key's type, or a parameter.
    fn key_ref(&self, expr: &Expr) -> Option<KeyRef> {
        let key = literal_or_param(expr)?;
        match &key {
            KeyRef::Literal(text) => self.table.key_type.parse(text).ok().map(|_| key),
            KeyRef::Param(_) => Some(key),
        }
    }
}

/// Every reference to a sharded table anywhere in the statement (subqueries and CTEs too).
fn sharded_mentions<'a>(
    statement: &Statement,
    tables: &'a HashMap<String, ShardedTable>,
) -> Vec<Mention<'a>> {
    let mut mentions = Vec::new();
    let mut note = |name: &ObjectName| {
        if let Some(name) = table_name(name)
            && let Some(table) = tables.get(&name)
        {
            mentions.push(Mention { name, table });
        }
    };
    let _ = visit_relations(statement, |name| {
        note(name);
        ControlFlow::<()>::Continue(())
    });
    // The relation visitor does not see the table of COPY t FROM STDIN.
    if let Statement::Copy {
        source: CopySource::Table { table_name, .. },
        ..
    } = statement
    {
        note(table_name);
    }
    mentions
}

/// A table's unqualified name as PostgreSQL resolves it (unquoted names fold to lower case).
pub(crate) fn table_name(name: &ObjectName) -> Option<String> {
    name.0.last()?.as_ident().map(folded)
}

/// An identifier as PostgreSQL resolves it: quoted as written, unquoted in lower case.
pub(crate) fn folded(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// The names a column of the sharded table may be qualified with in a one-table scope.
struct Scope<'a> {
    mention: &'a Mention<'a>,
    qualifier: String,
}

/// The scope of a FROM list that is exactly the sharded table, without joins.
fn single_table<'a>(from: &[TableWithJoins], mention: &'a Mention<'a>) -> Option<Scope<'a>> {
    let [TableWithJoins { relation, joins }] = from else {
        return None;
    };
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = relation
    else {
        return None;
    };
    if !joins.is_empty() || !mention.is(name) {
        return None;
    }
    let qualifier = alias
        .as_ref()
        .map_or_else(|| mention.name.clone(), |alias| folded(&alias.name));
    Some(Scope { mention, qualifier })
}

fn select_keys(query: &Query, mention: &Mention<'_>) -> Option<Vec<KeyRef>> {
    if query.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.into.is_some() {
        return None;
    }
    let scope = single_table(&select.from, mention)?;
    where_keys(select.selection.as_ref(), &scope)
}

fn where_keys(selection: Option<&Expr>, scope: &Scope<'_>) -> Option<Vec<KeyRef>> {
    predicate_keys(selection?, scope)
}

/// The keys a predicate restricts the rows to, if it does.
fn predicate_keys(expr: &Expr, scope: &Scope<'_>) -> Option<Vec<KeyRef>> {
    match expr {
        Expr::Nested(inner) => predicate_keys(inner, scope),
        Expr::BinaryOp { left, op, right } => match op {
            // Rows satisfy both sides, so either side's keys cover them; keep the fewer.
            BinaryOperator::And => {
                match (predicate_keys(left, scope), predicate_keys(right, scope)) {
                    (Some(l), Some(r)) => Some(if r.len() < l.len() { r } else { l }),
                    (l, r) => l.or(r),
                }
            }
            BinaryOperator::Or => {
                let mut keys = predicate_keys(left, scope)?;
                keys.extend(predicate_keys(right, scope)?);
                Some(keys)
            }
            BinaryOperator::Eq => equality_key(left, right, scope)
                .or_else(|| equality_key(right, left, scope))
                .map(|key| vec![key]),
            _ => None,
        },
        Expr::InList {
            expr,
            list,
            negated: false,
        } if is_key_column(expr, scope) => list
            .iter()
            .map(|item| scope.mention.key_ref(item))
            .collect(),
        _ => None,
    }
}

fn equality_key(column: &Expr, value: &Expr, scope: &Scope<'_>) -> Option<KeyRef> {
    is_key_column(column, scope)
        .then(|| scope.mention.key_ref(value))
        .flatten()
}

/// `key`, `t.key` or `alias.key` (and `schema.t.key`).
fn is_key_column(expr: &Expr, scope: &Scope<'_>) -> bool {
    match expr {
        Expr::Nested(inner) => is_key_column(inner, scope),
        Expr::Identifier(ident) => scope.mention.is_key(ident),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [.., qualifier, column] => {
                folded(qualifier) == scope.qualifier && scope.mention.is_key(column)
            }
            _ => false,
        },
        _ => false,
    }
}

/// A literal number or string, a negative number, a parameter, or a string or parameter cast
/// to a type (`'…'::uuid`, `$1::int8`). A cast number is left out: `5.7::int` is 6.
pub fn literal_or_param(expr: &Expr) -> Option<KeyRef> {
    match expr {
        Expr::Nested(inner) => literal_or_param(inner),
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) => Some(KeyRef::Literal(text.clone())),
            Value::SingleQuotedString(text) => Some(KeyRef::Literal(text.clone())),
            Value::Placeholder(name) => param(name),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(text, _) => Some(KeyRef::Literal(format!("-{text}"))),
                _ => None,
            },
            _ => None,
        },
        Expr::Cast { expr, .. } => match literal_or_param(expr)? {
            KeyRef::Literal(_) if !is_string(expr) => None,
            key => Some(key),
        },
        _ => None,
    }
}

fn is_string(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)))
}

/// `$3` -> 3.
fn param(name: &str) -> Option<KeyRef> {
    let number: usize = name.strip_prefix('$')?.parse().ok()?;
    (number > 0).then_some(KeyRef::Param(number))
}

/// One key per VALUES row, from the key column's position in the column list.
fn insert_keys(
    columns: &[ObjectName],
    source: Option<&Query>,
    no_assignments: bool,
    mention: &Mention<'_>,
) -> Option<Vec<KeyRef>> {
    // Without a column list the key's position depends on the table's definition.
    let position = columns.iter().position(|c| mention.is_key_name(c))?;
    let query = source.filter(|_| no_assignments)?;
    if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() {
        return None;
    }
    let SetExpr::Values(values) = query.body.as_ref() else {
        return None;
    };
    values
        .rows
        .iter()
        .map(|row| mention.key_ref(row.content.get(position)?))
        .collect()
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
