//! Merging the shards' answers into the one answer the client gets.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::combine::{self, decode, merge_groups};
use super::values::{Key, oid};
use super::wire::{self, Field, Value};
use super::{FanoutPlan, Merged, Mode, Refusal, ShardAnswer, SortKey};

/// Merges the answers of every shard to [`FanoutPlan::shard_sql`](super::FanoutPlan).
pub fn merge(plan: &FanoutPlan, answers: Vec<ShardAnswer>) -> Result<Merged, Refusal> {
    let spec = &plan.spec;
    let fields = common_fields(&answers)?;
    let visible = fields
        .len()
        .checked_sub(spec.hidden)
        .ok_or_else(|| Refusal::malformed("the shards sent fewer columns than planned"))?;
    let mut rows = Vec::new();
    for answer in &answers {
        for row in &answer.rows {
            rows.push(wire::parse_data_row(row, fields.len())?);
        }
    }
    let mut types: Vec<u32> = fields.iter().map(|f| f.type_oid).collect();
    let rows = match &spec.mode {
        Mode::Rows => rows,
        Mode::Distinct => distinct(rows, &types[..visible])?,
        Mode::Aggregate(how) => {
            if how.len() != fields.len() {
                return Err(Refusal::malformed(
                    "the shards sent another number of columns than planned",
                ));
            }
            let merged = merge_groups(how, &types, rows)?;
            for (c, &combine) in how.iter().enumerate() {
                types[c] = combine::output_type(combine, types[c])?;
            }
            merged
        }
    };
    let rows = sort(rows, &spec.order, &types)?;
    let offset = usize::try_from(spec.offset).unwrap_or(usize::MAX);
    let limit = spec
        .limit
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let rows: Vec<_> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|row| wire::encode_data_row(&row[..visible]))
        .collect();
    Ok(Merged {
        row_description: wire::encode_row_description(&client_fields(&fields[..visible], &types)),
        command_tag: format!("SELECT {}", rows.len()),
        rows,
    })
}

/// The shards' RowDescription, which must be the same on every shard and in text format.
fn common_fields(answers: &[ShardAnswer]) -> Result<Vec<Field>, Refusal> {
    let Some(first) = answers.first() else {
        return Err(Refusal::malformed("no shard answered"));
    };
    let fields = wire::parse_row_description(&first.row_description)?;
    if fields.iter().any(|f| f.format != 0) {
        return Err(Refusal::unsupported(
            "binary result formats cannot be merged across shards; ask for text",
        ));
    }
    for answer in &answers[1..] {
        let other = wire::parse_row_description(&answer.row_description)?;
        let same_types = other.len() == fields.len()
            && other
                .iter()
                .zip(&fields)
                .all(|(a, b)| a.type_oid == b.type_oid && a.format == b.format);
        if !same_types {
            return Err(Refusal::unsupported(
                "the shards answered with different column types; their tables must be defined alike",
            ));
        }
    }
    Ok(fields)
}

/// The client's columns: as the shards described them, except avg's, which become numeric or
/// double precision computed values.
fn client_fields(fields: &[Field], types: &[u32]) -> Vec<Field> {
    fields
        .iter()
        .zip(types)
        .map(|(field, &type_oid)| {
            if type_oid == field.type_oid {
                return field.clone();
            }
            Field {
                name: field.name.clone(),
                table_oid: 0,
                column: 0,
                type_oid,
                type_len: if type_oid == oid::FLOAT8 { 8 } else { -1 },
                type_modifier: -1,
                format: 0,
            }
        })
        .collect()
}

/// Keeps the first row of each set of equal rows (equal by value in the client's columns).
fn distinct(rows: Vec<Vec<Value>>, types: &[u32]) -> Result<Vec<Vec<Value>>, Refusal> {
    let mut seen: BTreeSet<Vec<Option<Key>>> = BTreeSet::new();
    let mut kept = Vec::new();
    for row in rows {
        let key = types
            .iter()
            .zip(&row)
            .map(|(&type_oid, value)| decode(type_oid, value))
            .collect::<Result<Vec<_>, _>>()?;
        if seen.insert(key) {
            kept.push(row);
        }
    }
    Ok(kept)
}

/// Sorts the rows by the ORDER BY keys (stable, so equal rows keep the shards' order).
fn sort(
    rows: Vec<Vec<Value>>,
    order: &[SortKey],
    types: &[u32],
) -> Result<Vec<Vec<Value>>, Refusal> {
    if order.is_empty() {
        return Ok(rows);
    }
    let columns = order
        .iter()
        .map(|key| key.column.resolve(types.len()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| Refusal::malformed("an ORDER BY column is missing from the shards' rows"))?;
    let mut keyed = Vec::with_capacity(rows.len());
    for row in rows {
        let keys = columns
            .iter()
            .map(|&c| decode(types[c], &row[c]))
            .collect::<Result<Vec<_>, _>>()?;
        keyed.push((keys, row));
    }
    keyed.sort_by(|(a, _), (b, _)| compare_keys(a, b, order));
    Ok(keyed.into_iter().map(|(_, row)| row).collect())
}

fn compare_keys(a: &[Option<Key>], b: &[Option<Key>], order: &[SortKey]) -> Ordering {
    for ((a, b), key) in a.iter().zip(b).zip(order) {
        let ordering = match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) if key.nulls_first => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) if key.nulls_first => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) if key.descending => b.cmp(a),
            (Some(a), Some(b)) => a.cmp(b),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::fanout::plan;

    use crate::fanout::wire::test_field as field;

    fn answer(fields: &[Field], rows: &[&[Option<&str>]]) -> ShardAnswer {
        ShardAnswer {
            row_description: wire::encode_row_description(fields),
            rows: rows
                .iter()
                .map(|row| {
                    let values: Vec<Value> = row
                        .iter()
                        .map(|v| v.map(|t| Bytes::from(t.to_string())))
                        .collect();
                    wire::encode_data_row(&values)
                })
                .collect(),
            command_tag: format!("SELECT {}", rows.len()),
        }
    }

    fn texts(merged: &Merged, columns: usize) -> Vec<Vec<Option<String>>> {
        merged
            .rows
            .iter()
            .map(|row| {
                wire::parse_data_row(row, columns)
                    .unwrap()
                    .into_iter()
                    .map(|v| v.map(|b| String::from_utf8(b.to_vec()).unwrap()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn sorts_with_nulls_then_applies_offset_and_limit_and_drops_hidden_columns() {
        let plan = plan("SELECT n FROM t ORDER BY n DESC LIMIT 2 OFFSET 1").unwrap();
        let fields = [
            field("n", oid::INT4, 0),
            field("pgsplit_sort_0", oid::INT4, 0),
        ];
        let answers = vec![
            answer(
                &fields,
                &[&[Some("9"), Some("9")], &[Some("10"), Some("10")]],
            ),
            answer(&fields, &[&[None, None], &[Some("2"), Some("2")]]),
        ];
        let merged = merge(&plan, answers).unwrap();
        // DESC puts NULLs first: NULL, 10, 9, 2 -> offset 1, limit 2.
        assert_eq!(
            texts(&merged, 1),
            vec![vec![Some("10".into())], vec![Some("9".into())]]
        );
        assert_eq!(merged.command_tag, "SELECT 2");
        let described = wire::parse_row_description(&merged.row_description).unwrap();
        assert_eq!(described, vec![fields[0].clone()]);
    }

    #[test]
    fn avg_is_described_as_numeric_and_binary_or_mismatched_answers_are_refused() {
        let plan = plan("SELECT avg(x) FROM t").unwrap();
        let fields = [
            field("avg", oid::INT8, 0),
            field("pgsplit_avg_count_0", oid::INT8, 0),
        ];
        let merged = merge(&plan, vec![answer(&fields, &[&[Some("3"), Some("2")]])]).unwrap();
        let described = wire::parse_row_description(&merged.row_description).unwrap();
        assert_eq!(
            (described[0].name.as_str(), described[0].type_oid),
            ("avg", oid::NUMERIC)
        );
        assert_eq!(
            texts(&merged, 1),
            vec![vec![Some("1.5000000000000000".into())]]
        );

        let binary = [field("avg", oid::INT8, 1), field("c", oid::INT8, 1)];
        assert!(merge(&plan, vec![answer(&binary, &[])]).is_err());
        let other = [field("avg", oid::NUMERIC, 0), field("c", oid::INT8, 0)];
        let refusal = merge(&plan, vec![answer(&fields, &[]), answer(&other, &[])]).unwrap_err();
        assert!(refusal.message.contains("different column types"));
        assert!(merge(&plan, vec![]).is_err());
    }
}
