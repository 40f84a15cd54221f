//! Planning SELECTs with aggregates or GROUP BY: each shard returns its partial groups, with
//! `avg(x)` split into `sum(x)` and `count(x)`, and the merge combines them by group key.

use std::ops::ControlFlow;

use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Ident, ObjectName, OrderByExpr, Select, SelectItem, visit_expressions,
};

use super::{Shape, Target, direction, folded, item_expr, item_matching, resolve};
use crate::fanout::{ColumnAt, Combine, Mode, Refusal, SortKey};

/// PostgreSQL's built-in aggregates whose partial results cannot be combined here.
const UNMERGEABLE_AGGREGATES: &[&str] = &[
    "any_value",
    "array_agg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "dense_rank",
    "every",
    "grouping",
    "json_agg",
    "json_agg_strict",
    "json_object_agg",
    "json_object_agg_strict",
    "json_object_agg_unique",
    "json_object_agg_unique_strict",
    "jsonb_agg",
    "jsonb_agg_strict",
    "jsonb_object_agg",
    "jsonb_object_agg_strict",
    "jsonb_object_agg_unique",
    "jsonb_object_agg_unique_strict",
    "mode",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "rank",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
];

/// Whether the SELECT aggregates (so shards return partial groups, not rows).
pub(super) fn is_aggregate(select: &Select, order: &[OrderByExpr]) -> bool {
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(exprs, modifiers) if exprs.is_empty() && modifiers.is_empty());
    grouped
        || select
            .projection
            .iter()
            .filter_map(item_expr)
            .any(contains_aggregate)
        || order.iter().any(|key| contains_aggregate(&key.expr))
}

fn contains_aggregate(expr: &Expr) -> bool {
    visit_expressions(expr, |e| match e {
        Expr::Function(f) if is_aggregate_name(&function_name(f)) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn is_aggregate_name(name: &str) -> bool {
    matches!(name, "count" | "sum" | "min" | "max" | "avg")
        || UNMERGEABLE_AGGREGATES.contains(&name)
}

fn function_name(f: &Function) -> String {
    f.name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .map(folded)
        .unwrap_or_default()
}

/// The shard columns being built: the client's items, then the extra ones.
struct Columns {
    items: usize,
    /// How each item combines, in select-list order.
    item_combine: Vec<Combine>,
    extra: Vec<SelectItem>,
    extra_combine: Vec<Combine>,
}

impl Columns {
    /// Appends an extra column and returns its index.
    fn push_extra(&mut self, expr: Expr, alias: String, combine: Combine) -> usize {
        self.extra.push(SelectItem::ExprWithAlias {
            expr,
            alias: Ident::new(alias),
        });
        self.extra_combine.push(combine);
        self.items + self.extra.len() - 1
    }

    /// Adds the partial columns of an aggregate call and returns how its shard column combines.
    /// `avg(x)` becomes `sum(x)` plus an extra `count(x)`.
    fn aggregate(&mut self, f: &Function, kind: Combine) -> (Expr, Combine) {
        if kind != (Combine::Avg { count_column: 0 }) {
            return (Expr::Function(f.clone()), kind);
        }
        let alias = format!("pgsplit_avg_count_{}", self.extra.len());
        let count_column = self.push_extra(renamed(f, "count"), alias, Combine::Count);
        (renamed(f, "sum"), Combine::Avg { count_column })
    }
}

fn renamed(f: &Function, name: &str) -> Expr {
    let mut f = f.clone();
    f.name = ObjectName::from(vec![Ident::new(name)]);
    Expr::Function(f)
}

pub(super) fn plan(select: &mut Select, order: &[OrderByExpr]) -> Result<Shape, Refusal> {
    let groups = group_exprs(select)?;
    // ORDER BY and GROUP BY refer to the items as written, before avg is rewritten.
    let original = select.projection.clone();
    let mut columns = Columns {
        items: select.projection.len(),
        item_combine: vec![],
        extra: vec![],
        extra_combine: vec![],
    };
    for item in select.projection.iter_mut() {
        plan_item(item, &mut columns)?;
    }
    let group_columns = group_columns(&groups, &original, &mut columns)?;
    check_keys_are_grouped(&original, &columns.item_combine, &group_columns)?;
    let mut sort_keys = Vec::with_capacity(order.len());
    for key in order {
        let column = order_column(&key.expr, &original, &groups, &group_columns, &mut columns)?;
        let (descending, nulls_first) = direction(key)?;
        sort_keys.push(SortKey {
            column: ColumnAt::Index(column),
            descending,
            nulls_first,
        });
    }
    let hidden = columns.extra.len();
    select.projection.append(&mut columns.extra);
    let mut combine = columns.item_combine;
    combine.append(&mut columns.extra_combine);
    Ok(Shape {
        mode: Mode::Aggregate(combine),
        hidden,
        order: sort_keys,
    })
}

fn group_exprs(select: &Select) -> Result<Vec<Expr>, Refusal> {
    match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
            if exprs.iter().any(|e| {
                matches!(
                    e,
                    Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) | Expr::Tuple(_)
                )
            }) {
                return Err(Refusal::unsupported(
                    "GROUPING SETS, CUBE and ROLLUP cannot be merged across shards",
                ));
            }
            Ok(exprs.clone())
        }
        _ => Err(Refusal::unsupported(
            "this GROUP BY syntax cannot be merged across shards",
        )),
    }
}

/// A select-list item of an aggregating SELECT: an aggregate call, or a GROUP BY key.
fn plan_item(item: &mut SelectItem, columns: &mut Columns) -> Result<(), Refusal> {
    let (expr, alias) = match item {
        SelectItem::UnnamedExpr(expr) => (expr.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => {
            return Err(Refusal::unsupported(
                "* cannot be selected with aggregates across shards",
            ));
        }
    };
    match mergeable_call(&expr)? {
        Some((f, kind)) => {
            let (shard_expr, combine) = columns.aggregate(f, kind);
            columns.item_combine.push(combine);
            if matches!(combine, Combine::Avg { .. }) {
                // The shard's sum column carries avg's name to the client.
                let alias = alias.unwrap_or_else(|| Ident::new(function_name(f)));
                *item = SelectItem::ExprWithAlias {
                    expr: shard_expr,
                    alias,
                };
            }
            Ok(())
        }
        None if contains_aggregate(&expr) => Err(Refusal::unsupported(format!(
            "{expr} cannot be merged across shards: only count, sum, min, max and avg themselves can \
             (compute expressions over them in the application)"
        ))),
        None => {
            columns.item_combine.push(Combine::Key);
            Ok(())
        }
    }
}

/// count/sum/min/max/avg called plainly (FILTER allowed); other aggregates and forms refused.
fn mergeable_call(expr: &Expr) -> Result<Option<(&Function, Combine)>, Refusal> {
    let Expr::Function(f) = expr else {
        return Ok(None);
    };
    let name = function_name(f);
    let kind = match name.as_str() {
        "count" => Combine::Count,
        "sum" => Combine::Sum,
        "min" => Combine::Min,
        "max" => Combine::Max,
        "avg" => Combine::Avg { count_column: 0 },
        _ if UNMERGEABLE_AGGREGATES.contains(&name.as_str()) => {
            return Err(Refusal::unsupported(format!(
                "the aggregate {name}() cannot be merged across shards"
            )));
        }
        _ => return Ok(None),
    };
    let FunctionArguments::List(list) = &f.args else {
        return Err(Refusal::unsupported(format!(
            "{f} cannot be merged across shards"
        )));
    };
    if list.duplicate_treatment == Some(DuplicateTreatment::Distinct) {
        return Err(Refusal::unsupported(format!(
            "DISTINCT aggregates such as {f} cannot be merged across shards"
        )));
    }
    let star = matches!(
        list.args.as_slice(),
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
    );
    let plain = list.args.len() == 1
        && list.clauses.is_empty()
        && f.within_group.is_empty()
        && f.null_treatment.is_none()
        && matches!(f.parameters, FunctionArguments::None)
        && (!star || kind == Combine::Count);
    if !plain {
        return Err(Refusal::unsupported(format!(
            "{f} cannot be merged across shards"
        )));
    }
    Ok(Some((f, kind)))
}

/// The shard column of each GROUP BY entry: a select-list item, or an extra key column.
fn group_columns(
    groups: &[Expr],
    projection: &[SelectItem],
    columns: &mut Columns,
) -> Result<Vec<usize>, Refusal> {
    let mut found = Vec::with_capacity(groups.len());
    for (k, group) in groups.iter().enumerate() {
        let item = match resolve(group, projection, "GROUP BY")? {
            Target::Item(i) => Some(i),
            Target::Expr(e) => item_matching(e, projection),
        };
        let column = match item {
            Some(i) if columns.item_combine[i] == Combine::Key => i,
            Some(_) => {
                return Err(Refusal::unsupported(format!(
                    "GROUP BY {group} names an aggregate"
                )));
            }
            None => columns.push_extra(group.clone(), format!("pgsplit_group_{k}"), Combine::Key),
        };
        found.push(column);
    }
    Ok(found)
}

/// Every non-aggregate item must be a GROUP BY key, or its partial rows could not be combined.
fn check_keys_are_grouped(
    projection: &[SelectItem],
    combine: &[Combine],
    group_columns: &[usize],
) -> Result<(), Refusal> {
    for (i, item) in projection.iter().enumerate() {
        if combine[i] == Combine::Key && !group_columns.contains(&i) {
            let shown = item_expr(item).map(ToString::to_string).unwrap_or_default();
            return Err(Refusal::unsupported(format!(
                "{shown} cannot be merged across shards: it is neither an aggregate nor a GROUP BY key"
            )));
        }
    }
    Ok(())
}

/// The shard column an ORDER BY key of an aggregating SELECT sorts by.
fn order_column(
    expr: &Expr,
    projection: &[SelectItem],
    groups: &[Expr],
    group_columns: &[usize],
    columns: &mut Columns,
) -> Result<usize, Refusal> {
    let expr = match resolve(expr, projection, "ORDER BY")? {
        Target::Item(i) => return Ok(i),
        Target::Expr(e) => e,
    };
    if let Some(i) = item_matching(expr, projection) {
        return Ok(i);
    }
    let text = expr.to_string();
    if let Some(k) = groups.iter().position(|g| g.to_string() == text) {
        return Ok(group_columns[k]);
    }
    match mergeable_call(expr)? {
        Some((f, kind)) => {
            let (shard_expr, combine) = columns.aggregate(f, kind);
            let alias = format!("pgsplit_sort_{}", columns.extra.len());
            Ok(columns.push_extra(shard_expr, alias, combine))
        }
        None => Err(Refusal::unsupported(format!(
            "ORDER BY {expr} cannot be merged across shards: order by a selected column, a GROUP BY key or an aggregate"
        ))),
    }
}
