//! From a SELECT to the statement every shard runs and the merge spec: what may be fanned out
//! is decided on the syntax tree, and anything not known to merge correctly is refused.

mod aggregate;
#[cfg(test)]
mod tests;

use std::ops::ControlFlow;

use sqlparser::ast::{
    Distinct, Expr, Ident, LimitClause, Offset, OrderByExpr, OrderByKind, OrderByOptions,
    OrderBySort, Query, Select, SelectFlavor, SelectItem, SetExpr, Statement, TableFactor, Value,
    visit_expressions,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::{ColumnAt, FanoutPlan, MergeSpec, Mode, Refusal, SortKey};

/// How the shard rows are laid out and combined (the merge spec without LIMIT/OFFSET).
struct Shape {
    mode: Mode,
    hidden: usize,
    order: Vec<SortKey>,
}

/// Plans the fan-out of one SELECT across shards.
pub fn plan(sql: &str) -> Result<FanoutPlan, Refusal> {
    plan_from(sql, Joins::Refused)
}

/// As [`plan`], for a statement whose joins the caller knows to be shard-local: every joined
/// table placed by the same map and equated on its key, or replicated to every shard. Each
/// shard's join then holds exactly its share of the whole join's rows.
pub fn plan_co_located(sql: &str) -> Result<FanoutPlan, Refusal> {
    plan_from(sql, Joins::ShardLocal)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Joins {
    Refused,
    ShardLocal,
}

fn plan_from(sql: &str, joins: Joins) -> Result<FanoutPlan, Refusal> {
    let mut query = single_query(sql)?;
    refuse_nested_queries_and_windows(&query)?;
    check_query_clauses(&query)?;
    let (offset, limit) = limit_and_offset(&query)?;
    let order = order_by(&query)?;
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(Refusal::unsupported(
            "UNION, INTERSECT, EXCEPT and VALUES cannot be merged across shards",
        ));
    };
    check_select_clauses(select, joins)?;
    let shape = if aggregate::is_aggregate(select, &order) {
        let shape = aggregate::plan(select, &order)?;
        // Partial groups are neither ordered nor limited on shards: only whole groups are.
        query.order_by = None;
        query.limit_clause = None;
        shape
    } else {
        let shape = plan_rows(select, &order)?;
        query.limit_clause = limit.map(|n| shard_limit(n.saturating_add(offset)));
        shape
    };
    Ok(FanoutPlan {
        shard_sql: query.to_string(),
        spec: MergeSpec {
            mode: shape.mode,
            hidden: shape.hidden,
            order: shape.order,
            offset,
            limit,
        },
    })
}

fn single_query(sql: &str) -> Result<Query, Refusal> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| {
        Refusal::unsupported(format!(
            "the statement cannot be fanned out across shards: {e}"
        ))
    })?;
    match <[Statement; 1]>::try_from(statements) {
        Ok([Statement::Query(query)]) => Ok(*query),
        _ => Err(Refusal::unsupported(
            "only a single SELECT can be fanned out across shards",
        )),
    }
}

/// A subquery would run on each shard against that shard's part only, and a window function
/// would see only its shard's rows.
fn refuse_nested_queries_and_windows(query: &Query) -> Result<(), Refusal> {
    let found = visit_expressions(query, |expr| match expr {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            ControlFlow::Break("subqueries cannot be fanned out across shards".to_string())
        }
        Expr::Function(f) if f.over.is_some() => ControlFlow::Break(format!(
            "window functions such as {f} cannot be merged across shards"
        )),
        _ => ControlFlow::Continue(()),
    });
    match found {
        ControlFlow::Break(message) => Err(Refusal::unsupported(message)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn check_query_clauses(query: &Query) -> Result<(), Refusal> {
    let refusal = if query.with.is_some() {
        Some("WITH queries cannot be fanned out across shards")
    } else if !query.locks.is_empty() {
        Some("SELECT ... FOR UPDATE/SHARE cannot be fanned out across shards: it locks rows")
    } else if query.fetch.is_some() {
        Some("FETCH FIRST cannot be fanned out across shards; use LIMIT")
    } else if query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        Some("this SELECT syntax cannot be fanned out across shards")
    } else {
        None
    };
    refusal.map_or(Ok(()), |message| Err(Refusal::unsupported(message)))
}

fn check_select_clauses(select: &Select, joins: Joins) -> Result<(), Refusal> {
    let refusal = if select.having.is_some() {
        Some(
            "HAVING cannot be merged across shards: it filters groups that are only complete after the merge",
        )
    } else if select.into.is_some() {
        Some("SELECT INTO cannot be fanned out across shards")
    } else if !select.named_window.is_empty() || select.qualify.is_some() {
        Some("window functions cannot be merged across shards")
    } else if select.top.is_some()
        || select.prewhere.is_some()
        || !select.lateral_views.is_empty()
        || !select.connect_by.is_empty()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.sort_by.is_empty()
        || select.value_table_mode.is_some()
        || select.flavor != SelectFlavor::Standard
    {
        Some("this SELECT syntax cannot be fanned out across shards")
    } else {
        None
    };
    if let Some(message) = refusal {
        return Err(Refusal::unsupported(message));
    }
    match joins {
        Joins::Refused => check_from(select),
        Joins::ShardLocal => check_joined_tables(select),
    }
}

/// Plain tables only, however joined (a table function would run once per shard).
fn check_joined_tables(select: &Select) -> Result<(), Refusal> {
    if select.from.is_empty() {
        return Err(Refusal::unsupported(
            "a SELECT without FROM has nothing to fan out across shards",
        ));
    }
    let relations = select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for relation in relations {
        check_plain_table(relation)?;
    }
    Ok(())
}

/// Exactly one plain table: a join's result depends on where the other table's rows live,
/// which only the shard map knows, and a table function would run once per shard.
fn check_from(select: &Select) -> Result<(), Refusal> {
    let [table] = select.from.as_slice() else {
        return Err(Refusal::unsupported(if select.from.is_empty() {
            "a SELECT without FROM has nothing to fan out across shards"
        } else {
            "joins cannot be fanned out across shards"
        }));
    };
    if !table.joins.is_empty() {
        return Err(Refusal::unsupported(
            "joins cannot be fanned out across shards",
        ));
    }
    check_plain_table(&table.relation)
}

fn check_plain_table(relation: &TableFactor) -> Result<(), Refusal> {
    match relation {
        TableFactor::Table {
            args: None,
            sample: None,
            ..
        } => Ok(()),
        TableFactor::Table { .. } => Err(Refusal::unsupported(
            "table functions and TABLESAMPLE cannot be fanned out across shards",
        )),
        _ => Err(Refusal::unsupported(
            "only a plain table in FROM can be fanned out across shards",
        )),
    }
}

/// (OFFSET, LIMIT) as integer constants; LIMIT ALL / NULL is no limit.
fn limit_and_offset(query: &Query) -> Result<(u64, Option<u64>), Refusal> {
    match &query.limit_clause {
        None => Ok((0, None)),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => {
            let offset = match offset {
                Some(Offset { value, .. }) => constant_count(value, "OFFSET")?.unwrap_or(0),
                None => 0,
            };
            let limit = match limit {
                Some(expr) => constant_count(expr, "LIMIT")?,
                None => None,
            };
            Ok((offset, limit))
        }
        Some(_) => Err(Refusal::unsupported(
            "this LIMIT syntax cannot be fanned out across shards",
        )),
    }
}

/// A non-negative integer constant (None for NULL).
fn constant_count(expr: &Expr, clause: &str) -> Result<Option<u64>, Refusal> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(text, _) => text.parse().map(Some).ok(),
            Value::Null => Some(None),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| {
        Refusal::unsupported(format!(
            "{clause} must be an integer constant to be fanned out across shards, not {expr}"
        ))
    })
}

fn shard_limit(limit: u64) -> LimitClause {
    LimitClause::LimitOffset {
        limit: Some(Expr::value(Value::Number(limit.to_string(), false))),
        offset: None,
        limit_by: vec![],
    }
}

fn order_by(query: &Query) -> Result<Vec<OrderByExpr>, Refusal> {
    match &query.order_by {
        None => Ok(vec![]),
        Some(order) if order.interpolate.is_none() => match &order.kind {
            OrderByKind::Expressions(exprs) => Ok(exprs.clone()),
            OrderByKind::All(_) => Err(Refusal::unsupported(
                "ORDER BY ALL cannot be fanned out across shards",
            )),
        },
        Some(_) => Err(Refusal::unsupported(
            "this ORDER BY syntax cannot be fanned out across shards",
        )),
    }
}

/// (descending, nulls first) with PostgreSQL's defaults: NULLS LAST ascending, FIRST descending.
fn direction(key: &OrderByExpr) -> Result<(bool, bool), Refusal> {
    let OrderByOptions { sort, nulls_first } = &key.options;
    if key.with_fill.is_some() {
        return Err(Refusal::unsupported(
            "ORDER BY ... WITH FILL cannot be fanned out across shards",
        ));
    }
    let descending = match sort {
        None | Some(OrderBySort::Asc) => false,
        Some(OrderBySort::Desc) => true,
        Some(_) => {
            return Err(Refusal::unsupported(
                "ORDER BY ... USING cannot be merged across shards; use ASC or DESC",
            ));
        }
    };
    Ok((descending, nulls_first.unwrap_or(descending)))
}

/// What an ORDER BY or GROUP BY entry points at.
enum Target<'a> {
    /// A select-list item, by position or by its alias.
    Item(usize),
    Expr(&'a Expr),
}

fn resolve<'a>(
    expr: &'a Expr,
    projection: &[SelectItem],
    clause: &str,
) -> Result<Target<'a>, Refusal> {
    if let Expr::Value(v) = expr
        && let Value::Number(text, _) = &v.value
    {
        let has_wildcard = projection.iter().any(|item| item_expr(item).is_none());
        let position = text
            .parse::<usize>()
            .ok()
            .filter(|&p| p >= 1 && p <= projection.len());
        return match position {
            Some(p) if !has_wildcard => Ok(Target::Item(p - 1)),
            _ => Err(Refusal::unsupported(format!(
                "{clause} position {text} cannot be fanned out across shards: name the column"
            ))),
        };
    }
    if let Expr::Identifier(ident) = expr
        && let Some(i) = projection.iter().position(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => folded(alias) == folded(ident),
            _ => false,
        })
    {
        return Ok(Target::Item(i));
    }
    Ok(Target::Expr(expr))
}

/// An identifier as PostgreSQL compares it: unquoted ones fold to lower case.
fn folded(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The expression of a select-list item (None for `*` and `t.*`).
fn item_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(expr)
        | SelectItem::ExprWithAlias { expr, .. }
        | SelectItem::ExprWithAliases { expr, .. } => Some(expr),
        SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(_) => None,
    }
}

/// The index of the item whose expression is written as `expr`.
fn item_matching(expr: &Expr, projection: &[SelectItem]) -> Option<usize> {
    let text = expr.to_string();
    projection
        .iter()
        .position(|item| item_expr(item).is_some_and(|e| e.to_string() == text))
}

/// Rows without aggregates: every ORDER BY key is sent as an extra column at the end of each
/// row, so the merge can sort by it whatever `*` expands to.
fn plan_rows(select: &mut Select, order: &[OrderByExpr]) -> Result<Shape, Refusal> {
    let mode = match &select.distinct {
        None | Some(Distinct::All) => Mode::Rows,
        Some(Distinct::Distinct) => Mode::Distinct,
        Some(Distinct::On(_)) => {
            return Err(Refusal::unsupported(
                "DISTINCT ON cannot be merged across shards",
            ));
        }
    };
    let mut keys = Vec::with_capacity(order.len());
    for (k, key) in order.iter().enumerate() {
        let expr = match resolve(&key.expr, &select.projection, "ORDER BY")? {
            Target::Item(i) => item_expr(&select.projection[i]).cloned(),
            Target::Expr(e) if mode == Mode::Distinct => {
                // PostgreSQL wants DISTINCT's ORDER BY keys in the select list.
                item_matching(e, &select.projection)
                    .and_then(|i| item_expr(&select.projection[i]).cloned())
            }
            Target::Expr(e) => Some(e.clone()),
        };
        let expr = expr.ok_or_else(|| {
            Refusal::unsupported(format!(
                "ORDER BY {} cannot be merged across shards: with DISTINCT, order by a selected column",
                key.expr
            ))
        })?;
        keys.push((expr, direction(key)?, k));
    }
    let hidden = keys.len();
    let mut sort_keys = Vec::with_capacity(hidden);
    for (expr, (descending, nulls_first), k) in keys {
        select.projection.push(SelectItem::ExprWithAlias {
            expr,
            alias: Ident::new(format!("pgsplit_sort_{k}")),
        });
        sort_keys.push(SortKey {
            column: ColumnAt::FromEnd(hidden - k),
            descending,
            nulls_first,
        });
    }
    Ok(Shape {
        mode,
        hidden,
        order: sort_keys,
    })
}
