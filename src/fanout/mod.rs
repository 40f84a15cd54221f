//! Fan-out reads across shards: the pure part between routing and the sessions.
//!
//! [`plan`] takes a SELECT that names no shard key and returns the SQL every shard runs (the
//! statement rewritten so its partial answers can be combined) with a merge spec; [`merge`]
//! takes the shards' text-format answers and builds the one answer PostgreSQL would have given
//! for the unsplit table: the same column names and types, the same rows.
//!
//! - Plain rows are concatenated; DISTINCT rows deduplicated by value.
//! - ORDER BY keys travel as extra columns at the end of each shard row (dropped after the
//!   merge); rows are sorted by them with PostgreSQL's order per type ([`values`]).
//!   `LIMIT n OFFSET m` runs on shards as `LIMIT n+m`, and the offset and limit are applied
//!   after the merge.
//! - count, sum, min and max combine their partial values; `avg(x)` runs on shards as `sum(x)`
//!   and `count(x)` and is divided after the merge as PostgreSQL divides ([`numeric`],
//!   [`float`]). GROUP BY groups are combined by their key values.
//! - Everything else (subqueries, joins, window functions, set operations, HAVING, DISTINCT
//!   aggregates, other aggregates, FOR UPDATE, binary results, types without a known order) is
//!   refused with a [`Refusal`] that names what cannot be merged: never a wrong answer.
//! - Shards always answer in text; a client's binary result formats are applied to the merged
//!   values afterwards ([`binary`]).
//!
//! Requirements on the shards: text in "C" collation for ordered merges of text, `DateStyle`
//! ISO and the default `extra_float_digits` (as fresh connections have them). Float sums are
//! added in a different order than one server would add them, as PostgreSQL's own parallel
//! aggregation does, so their last digits may differ from an unsplit run.

mod binary;
mod combine;
mod float;
mod merge;
mod numeric;
mod plan;
mod values;
mod wire;

use bytes::Bytes;
use thiserror::Error;

use crate::protocol::{ErrorFields, SqlState};

pub use binary::apply_formats;
pub use merge::merge;
pub use plan::{plan, plan_co_located};

/// What every shard runs, and how their answers combine.
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    shard_sql: String,
    spec: MergeSpec,
}

impl FanoutPlan {
    /// The statement to send to every shard (simple query protocol, text results).
    pub fn shard_sql(&self) -> &str {
        &self.shard_sql
    }
}

/// One shard's successful answer to [`FanoutPlan::shard_sql`].
#[derive(Debug, Clone)]
pub struct ShardAnswer {
    /// The RowDescription ('T') body.
    pub row_description: Bytes,
    /// The DataRow ('D') bodies, in the order the shard sent them.
    pub rows: Vec<Bytes>,
    /// The CommandComplete tag, e.g. `SELECT 3`.
    pub command_tag: String,
}

/// The answer the client gets.
#[derive(Debug, Clone)]
pub struct Merged {
    pub row_description: Bytes,
    pub rows: Vec<Bytes>,
    /// `SELECT n`.
    pub command_tag: String,
}

impl Merged {
    /// The answer to a command that returns no rows (described by NoData), such as a COMMIT
    /// pgsplit answers itself.
    pub fn command(command_tag: &str) -> Merged {
        Merged {
            row_description: bytes::Bytes::new(),
            rows: Vec::new(),
            command_tag: command_tag.to_string(),
        }
    }

    /// One row of text columns, as a server answers `SHOW`: for answers pgsplit gives itself
    /// in the shape of a merged one.
    pub fn one_text_row(columns: &[&str], values: &[&str], command_tag: &str) -> Merged {
        const TEXT: u32 = 25;
        let fields: Vec<wire::Field> = columns
            .iter()
            .map(|column| wire::Field {
                name: column.to_string(),
                table_oid: 0,
                column: 0,
                type_oid: TEXT,
                type_len: -1,
                type_modifier: -1,
                format: 0,
            })
            .collect();
        let values: Vec<Option<bytes::Bytes>> = values
            .iter()
            .map(|value| Some(bytes::Bytes::copy_from_slice(value.as_bytes())))
            .collect();
        Merged {
            row_description: wire::encode_row_description(&fields),
            rows: vec![wire::encode_data_row(&values)],
            command_tag: command_tag.to_string(),
        }
    }
}

/// Why a statement cannot be fanned out, or why the shards' answers cannot be merged: a
/// SQLSTATE and a sentence for the client.
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: SqlState,
    pub message: String,
}

impl Refusal {
    fn unsupported(message: impl Into<String>) -> Refusal {
        Refusal {
            code: SqlState::FEATURE_NOT_SUPPORTED,
            message: message.into(),
        }
    }

    fn malformed(what: &str) -> Refusal {
        Refusal {
            code: SqlState::PROTOCOL_VIOLATION,
            message: format!("cannot merge the shards' answers: {what}"),
        }
    }

    fn out_of_range(message: impl Into<String>) -> Refusal {
        Refusal {
            code: SqlState("22003"),
            message: message.into(),
        }
    }

    fn uncomparable(type_oid: u32) -> Refusal {
        Refusal::unsupported(format!(
            "values of type oid {type_oid} cannot be ordered, grouped or deduplicated across shards \
             (known types: integers, oid, numeric, real, double precision, boolean, text, varchar, \
             char, name, date, timestamp, timestamptz, uuid)"
        ))
    }

    fn unreadable(type_oid: u32, text: &[u8]) -> Refusal {
        Refusal::unsupported(format!(
            "the value \"{}\" (type oid {type_oid}) cannot be compared across shards: numbers, \
             ISO dates (DateStyle ISO, AD years) and booleans are expected",
            String::from_utf8_lossy(text)
        ))
    }

    /// The ErrorResponse fields for the client.
    pub fn error_fields(&self) -> ErrorFields {
        ErrorFields::error(self.code, self.message.clone())
    }
}

/// How the shards' answers combine.
#[derive(Debug, Clone, PartialEq)]
struct MergeSpec {
    mode: Mode,
    /// Columns the shards send after the client's: avg counts, ORDER BY and GROUP BY keys.
    hidden: usize,
    order: Vec<SortKey>,
    offset: u64,
    limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// Rows concatenated.
    Rows,
    /// Rows deduplicated on the client's columns.
    Distinct,
    /// One shard row per group; per shard column (the client's, then hidden ones), how the
    /// partial values combine.
    Aggregate(Vec<Combine>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    /// A GROUP BY key: equal in every partial row of its group.
    Key,
    Count,
    Sum,
    Min,
    Max,
    /// The shard column holds `sum(x)`; the column at `count_column` holds `count(x)`.
    Avg {
        count_column: usize,
    },
}

/// An ORDER BY key over the merged rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SortKey {
    column: ColumnAt,
    descending: bool,
    nulls_first: bool,
}

/// A column of the shards' rows: by index, or counted back from the end (when the client's
/// columns come from `*` and their number is known only from the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnAt {
    Index(usize),
    FromEnd(usize),
}

impl ColumnAt {
    fn resolve(self, columns: usize) -> Option<usize> {
        match self {
            ColumnAt::Index(i) => (i < columns).then_some(i),
            ColumnAt::FromEnd(k) => columns.checked_sub(k),
        }
    }
}
