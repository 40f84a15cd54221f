//! Combining the shards' partial groups: one row per group, with count, sum, min, max and avg
//! computed from the partial values as PostgreSQL would have computed them from the rows.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::numeric::Numeric;
use super::values::{self, Key, oid};
use super::wire::Value;
use super::{Combine, Refusal, float};

/// The type the client sees for a column that shards send as `shard_type`.
pub fn output_type(combine: Combine, shard_type: u32) -> Result<u32, Refusal> {
    match (combine, shard_type) {
        (Combine::Avg { .. }, oid::INT8 | oid::NUMERIC) => Ok(oid::NUMERIC),
        (Combine::Avg { .. }, oid::FLOAT8) => Ok(oid::FLOAT8),
        (Combine::Avg { .. }, oid::FLOAT4) => Err(Refusal::unsupported(
            "avg of a real column cannot be merged exactly across shards; use avg(x::float8)",
        )),
        (Combine::Avg { .. }, other) => Err(Refusal::unsupported(format!(
            "avg of type oid {other} cannot be merged across shards"
        ))),
        (_, shard_type) => Ok(shard_type),
    }
}

/// Groups the partial rows by their key columns and combines each group into one row. Without
/// key columns (aggregates without GROUP BY) there is exactly one row, even for no input.
pub fn merge_groups(
    combine: &[Combine],
    types: &[u32],
    rows: Vec<Vec<Value>>,
) -> Result<Vec<Vec<Value>>, Refusal> {
    let key_columns: Vec<usize> = (0..combine.len())
        .filter(|&c| combine[c] == Combine::Key)
        .collect();
    let mut index: BTreeMap<Vec<Option<Key>>, usize> = BTreeMap::new();
    let mut groups: Vec<Vec<Vec<Value>>> = vec![];
    for row in rows {
        let key = key_columns
            .iter()
            .map(|&c| decode(types[c], &row[c]))
            .collect::<Result<Vec<_>, _>>()?;
        let group = *index.entry(key).or_insert_with(|| {
            groups.push(vec![]);
            groups.len() - 1
        });
        groups[group].push(row);
    }
    if key_columns.is_empty() && groups.is_empty() {
        groups.push(vec![]);
    }
    groups
        .iter()
        .map(|partials| combine_group(combine, types, partials))
        .collect()
}

/// A value decoded for comparison (None for NULL).
pub fn decode(type_oid: u32, value: &Value) -> Result<Option<Key>, Refusal> {
    value
        .as_ref()
        .map(|text| values::decode(type_oid, text))
        .transpose()
}

fn combine_group(
    combine: &[Combine],
    types: &[u32],
    partials: &[Vec<Value>],
) -> Result<Vec<Value>, Refusal> {
    let column = |c: usize| partials.iter().filter_map(move |row| row[c].as_ref());
    let mut out = Vec::with_capacity(combine.len());
    for (c, &how) in combine.iter().enumerate() {
        let text = match how {
            Combine::Key => partials.first().and_then(|row| row[c].clone()),
            Combine::Count => Some(Bytes::from(total_count(column(c))?.to_string())),
            Combine::Sum => total(types[c], column(c))?.map(|t| Bytes::from(t.to_text())),
            Combine::Min => extreme(types[c], column(c), std::cmp::Ordering::Less)?,
            Combine::Max => extreme(types[c], column(c), std::cmp::Ordering::Greater)?,
            Combine::Avg { count_column } => {
                let count = total_count(column(count_column))?;
                average(types[c], total(types[c], column(c))?, count)?.map(Bytes::from)
            }
        };
        out.push(text);
    }
    Ok(out)
}

fn text(value: &Bytes) -> Result<&str, Refusal> {
    std::str::from_utf8(value).map_err(|_| Refusal::malformed("a partial aggregate is not text"))
}

fn total_count<'a>(counts: impl Iterator<Item = &'a Bytes>) -> Result<i64, Refusal> {
    let mut total = 0i64;
    for count in counts {
        let count: i64 = text(count)?
            .parse()
            .map_err(|_| Refusal::malformed("a partial count is not an integer"))?;
        total = total
            .checked_add(count)
            .ok_or_else(|| Refusal::out_of_range("bigint out of range"))?;
    }
    Ok(total)
}

/// A sum of partial sums, in the type of the sum.
enum Total {
    Int(i128),
    Numeric(Numeric),
    Float8(f64),
    Float4(f32),
}

impl Total {
    fn to_text(&self) -> String {
        match self {
            Total::Int(n) => n.to_string(),
            Total::Numeric(n) => n.to_text(),
            Total::Float8(f) => float::format_f64(*f),
            Total::Float4(f) => float::format_f32(*f),
        }
    }
}

/// Adds partial sums of type `type_oid` (None when every partial sum is NULL: no rows).
fn total<'a>(
    type_oid: u32,
    partials: impl Iterator<Item = &'a Bytes>,
) -> Result<Option<Total>, Refusal> {
    let unreadable = |value: &Bytes| Refusal::unreadable(type_oid, value);
    let mut sum: Option<Total> = None;
    for value in partials {
        let part = match type_oid {
            oid::INT8 => text(value)?.parse().ok().map(Total::Int),
            oid::NUMERIC => Numeric::parse(text(value)?).map(Total::Numeric),
            oid::FLOAT8 => float::parse(text(value)?).map(Total::Float8),
            oid::FLOAT4 => float::parse(text(value)?).map(Total::Float4),
            other => {
                return Err(Refusal::unsupported(format!(
                    "sum of type oid {other} cannot be merged across shards"
                )));
            }
        }
        .ok_or_else(|| unreadable(value))?;
        sum = Some(match sum {
            None => part,
            Some(acc) => add(acc, part)?,
        });
    }
    if let Some(Total::Int(n)) = sum
        && i64::try_from(n).is_err()
    {
        return Err(Refusal::out_of_range("bigint out of range"));
    }
    Ok(sum)
}

/// Adds like PostgreSQL's `+` for the type, overflow errors included.
fn add(a: Total, b: Total) -> Result<Total, Refusal> {
    let overflow = || Refusal::out_of_range("value out of range: overflow");
    Ok(match (a, b) {
        (Total::Int(a), Total::Int(b)) => Total::Int(a + b),
        (Total::Numeric(a), Total::Numeric(b)) => Total::Numeric(a.add(&b)),
        (Total::Float8(a), Total::Float8(b)) => {
            let sum = a + b;
            if sum.is_infinite() && a.is_finite() && b.is_finite() {
                return Err(overflow());
            }
            Total::Float8(sum)
        }
        (Total::Float4(a), Total::Float4(b)) => {
            let sum = a + b;
            if sum.is_infinite() && a.is_finite() && b.is_finite() {
                return Err(overflow());
            }
            Total::Float4(sum)
        }
        _ => {
            return Err(Refusal::malformed(
                "partial sums of one column differ in type",
            ));
        }
    })
}

/// avg from the total and the count: numeric division for integer and numeric input, float8
/// division for double precision input; NULL when no row was counted.
fn average(sum_type: u32, sum: Option<Total>, count: i64) -> Result<Option<String>, Refusal> {
    output_type(Combine::Avg { count_column: 0 }, sum_type)?;
    let (Some(sum), Ok(count @ 1..)) = (sum, u64::try_from(count)) else {
        return Ok(None);
    };
    Ok(Some(match sum {
        Total::Int(n) => Numeric::parse(&n.to_string())
            .map(|n| n.div_count(count).to_text())
            .unwrap_or_default(),
        Total::Numeric(n) => n.div_count(count).to_text(),
        Total::Float8(f) => float::format_f64(f / count as f64),
        Total::Float4(_) => return Err(Refusal::malformed("avg over real")),
    }))
}

/// The least (`want` Less) or greatest (Greater) value, as the shard sent it.
fn extreme<'a>(
    type_oid: u32,
    values: impl Iterator<Item = &'a Bytes>,
    want: std::cmp::Ordering,
) -> Result<Value, Refusal> {
    let mut best: Option<(Key, &Bytes)> = None;
    for value in values {
        let key = values::decode(type_oid, value)?;
        if best.as_ref().is_none_or(|(b, _)| key.cmp(b) == want) {
            best = Some((key, value));
        }
    }
    Ok(best.map(|(_, value)| value.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(texts: &[Option<&str>]) -> Vec<Value> {
        texts
            .iter()
            .map(|t| t.map(|t| Bytes::from(t.to_string())))
            .collect()
    }

    fn shown(row: &[Value]) -> Vec<Option<String>> {
        row.iter()
            .map(|v| v.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap()))
            .collect()
    }

    const AVG: Combine = Combine::Avg { count_column: 4 };

    #[test]
    fn combines_partial_aggregates_without_group_by() {
        let combine = [
            Combine::Count,
            Combine::Sum,
            Combine::Min,
            AVG,
            Combine::Count,
        ];
        let types = [oid::INT8, oid::NUMERIC, oid::INT4, oid::INT8, oid::INT8];
        let rows = vec![
            values(&[Some("2"), Some("1.5"), Some("10"), Some("3"), Some("2")]),
            values(&[Some("0"), None, None, None, Some("0")]),
            values(&[Some("1"), Some("2.25"), Some("9"), Some("7"), Some("1")]),
        ];
        let merged = merge_groups(&combine, &types, rows).unwrap();
        assert_eq!(
            shown(&merged[0]),
            vec![
                Some("3".into()),
                Some("3.75".into()),
                Some("9".into()),
                Some("3.3333333333333333".into()),
                Some("3".into())
            ]
        );
    }

    #[test]
    fn no_rows_anywhere_gives_count_zero_and_null_sums() {
        let combine = [
            Combine::Count,
            Combine::Sum,
            Combine::Max,
            AVG,
            Combine::Count,
        ];
        let types = [oid::INT8, oid::INT8, oid::TEXT, oid::NUMERIC, oid::INT8];
        let row = values(&[Some("0"), None, None, None, Some("0")]);
        let merged = merge_groups(&combine, &types, vec![row.clone(), row]).unwrap();
        assert_eq!(
            shown(&merged[0]),
            vec![Some("0".into()), None, None, None, Some("0".into())]
        );
        assert_eq!(merge_groups(&combine, &types, vec![]).unwrap().len(), 1);
    }

    #[test]
    fn groups_combine_by_key_value() {
        let combine = [Combine::Key, Combine::Sum];
        let types = [oid::NUMERIC, oid::FLOAT8];
        let rows = vec![
            values(&[Some("1.0"), Some("0.5")]),
            values(&[Some("2"), Some("1")]),
            values(&[Some("1.00"), Some("0.25")]),
            values(&[None, Some("4")]),
            values(&[None, Some("Infinity")]),
        ];
        let merged: Vec<_> = merge_groups(&combine, &types, rows)
            .unwrap()
            .iter()
            .map(|r| shown(r))
            .collect();
        assert_eq!(
            merged,
            vec![
                vec![Some("1.0".into()), Some("0.75".into())],
                vec![Some("2".into()), Some("1".into())],
                vec![None, Some("Infinity".into())],
            ]
        );
    }

    #[test]
    fn overflow_and_unmergeable_types_are_errors() {
        let big = values(&[Some("9223372036854775807")]);
        let err = merge_groups(&[Combine::Sum], &[oid::INT8], vec![big.clone(), big]).unwrap_err();
        assert_eq!(err.code.0, "22003");
        let interval = values(&[Some("1 day")]);
        assert!(merge_groups(&[Combine::Sum], &[1186], vec![interval.clone()]).is_err());
        assert!(merge_groups(&[Combine::Min], &[1186], vec![interval]).is_err());
        assert!(output_type(AVG, oid::FLOAT4).is_err());
        assert_eq!(output_type(AVG, oid::INT8).unwrap(), oid::NUMERIC);
    }
}
