//! Whether a read may be cached, for how long, and what a write must invalidate.

use std::collections::HashMap;
use std::time::Duration;

use crate::route::classify::{Access, Classification};

use super::names::{normalize, normalize_all};
use super::volatile::find_volatile;

/// TTL of a statement hinted `cache` with no `ttl=` and no table rule to take one from.
pub const DEFAULT_HINT_TTL: Duration = Duration::from_secs(30);

/// The statement's cache hint, parsed by `crate::hint`: `/* pgsplit: cache, ttl=30s */` or
/// `/* pgsplit: cache=off */`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheHint {
    /// Cache it, whatever the table rules say; `ttl` None: the tables' TTL, else
    /// [`DEFAULT_HINT_TTL`].
    Cache { ttl: Option<Duration> },
    /// Bypass the cache (neither read nor fill it).
    Off,
}

/// The session state that decides caching, beyond the statement itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheContext {
    /// The session is pinned: it may have temporary tables, which can shadow any table name
    /// and which no other session sees, so no name can be trusted.
    pub pinned: bool,
    /// Inside a transaction block. Its reads must see its own uncommitted writes and, under
    /// REPEATABLE READ, one snapshot: a shared entry could give neither, so no read in a
    /// transaction is cached (a hit or a fill).
    pub in_transaction: bool,
}

/// The operator's opt-in list: tables whose reads may be cached, each with a TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRules {
    /// By [`normalize`]d name.
    ttls: HashMap<String, Duration>,
    default_ttl: Duration,
}

impl Default for TableRules {
    fn default() -> Self {
        Self::new(Vec::<(String, Duration)>::new())
    }
}

impl TableRules {
    /// `rules`: `(table, ttl)`, the table as the operator wrote it (`t`, `public.t`, `"T"`,
    /// `s.t`); a table given twice keeps its last TTL.
    pub fn new<S: AsRef<str>>(rules: impl IntoIterator<Item = (S, Duration)>) -> Self {
        let ttls = rules
            .into_iter()
            .map(|(table, ttl)| (normalize(table.as_ref()), ttl))
            .collect();
        TableRules {
            ttls,
            default_ttl: DEFAULT_HINT_TTL,
        }
    }

    /// The TTL of hinted statements whose tables have no rule.
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The TTL for a table as the classifier spells it; None when not opted in.
    pub fn ttl(&self, table: &str) -> Option<Duration> {
        self.ttls.get(&normalize(table)).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.ttls.is_empty()
    }
}

/// A cacheable read: how long its entry lives and which tables (normalized) it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePlan {
    pub ttl: Duration,
    pub tables: Vec<String>,
}

/// Why a statement is not cached. `reason()` is a short stable label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCacheable {
    #[error("cache=off hint")]
    Disabled,
    #[error("session pinned (temporary tables possible)")]
    Pinned,
    #[error("inside a transaction block")]
    InTransaction,
    #[error("EXPLAIN ROUTE")]
    ExplainRoute,
    #[error("unparsable")]
    Unparsable,
    #[error("not a read: {0}")]
    NotRead(String),
    #[error("{0} statements")]
    MultiStatement(usize),
    #[error("transaction control")]
    TransactionControl,
    #[error("session effects (SET, PREPARE, ...)")]
    SessionEffects,
    #[error("reads no table and has no cache hint")]
    NoTables,
    #[error("volatile or time-dependent: {0}")]
    Volatile(String),
    #[error("table {0} not opted in")]
    NotOptedIn(String),
    #[error("TTL of zero")]
    ZeroTtl,
}

impl NotCacheable {
    pub fn reason(&self) -> &'static str {
        match self {
            NotCacheable::Disabled => "disabled",
            NotCacheable::Pinned => "pinned",
            NotCacheable::InTransaction => "transaction",
            NotCacheable::ExplainRoute => "explain route",
            NotCacheable::Unparsable => "unparsable",
            NotCacheable::NotRead(_) => "write",
            NotCacheable::MultiStatement(_) => "multi-statement",
            NotCacheable::TransactionControl => "transaction control",
            NotCacheable::SessionEffects => "session effects",
            NotCacheable::NoTables => "no tables",
            NotCacheable::Volatile(_) => "volatile",
            NotCacheable::NotOptedIn(_) => "not opted in",
            NotCacheable::ZeroTtl => "zero ttl",
        }
    }
}

/// Whether the read `sql`, classified as `c`, may be answered from and stored in the cache.
/// Checks go cheapest first; the lexical scan runs only for statements that pass the rest.
pub fn cacheable(
    sql: &str,
    c: &Classification,
    hint: Option<CacheHint>,
    rules: &TableRules,
    context: CacheContext,
) -> Result<CachePlan, NotCacheable> {
    let hinted_ttl = match hint {
        Some(CacheHint::Off) => return Err(NotCacheable::Disabled),
        Some(CacheHint::Cache { ttl }) => Some(ttl),
        None => None,
    };
    check_session(context)?;
    check_statement(c)?;
    if c.tables_read.is_empty() && hinted_ttl.is_none() {
        return Err(NotCacheable::NoTables);
    }
    if let Some(word) = find_volatile(sql) {
        return Err(NotCacheable::Volatile(word));
    }
    let tables = normalize_all(&c.tables_read);
    let table_ttl = tables_ttl(&tables, rules, hinted_ttl.is_some())?;
    let ttl = hinted_ttl
        .flatten()
        .or(table_ttl)
        .unwrap_or(rules.default_ttl);
    if ttl.is_zero() {
        return Err(NotCacheable::ZeroTtl);
    }
    Ok(CachePlan { ttl, tables })
}

fn check_session(context: CacheContext) -> Result<(), NotCacheable> {
    if context.pinned {
        Err(NotCacheable::Pinned)
    } else if context.in_transaction {
        Err(NotCacheable::InTransaction)
    } else {
        Ok(())
    }
}

/// What the classification alone rules out: anything but one plain parsed read.
fn check_statement(c: &Classification) -> Result<(), NotCacheable> {
    if c.explain_route.is_some() {
        Err(NotCacheable::ExplainRoute)
    } else if !c.parsed {
        Err(NotCacheable::Unparsable)
    } else if c.access != Access::Read {
        let reason = c.write_reason.as_deref().unwrap_or("write").to_owned();
        Err(NotCacheable::NotRead(reason))
    } else if c.statements != 1 {
        Err(NotCacheable::MultiStatement(c.statements))
    } else if !c.tx.is_empty() {
        Err(NotCacheable::TransactionControl)
    } else if !c.effects.is_empty() {
        Err(NotCacheable::SessionEffects)
    } else {
        Ok(())
    }
}

/// The shortest TTL among the tables' rules (an entry must not outlive any table's bound).
/// Without a hint every table needs a rule.
fn tables_ttl(
    tables: &[String],
    rules: &TableRules,
    hinted: bool,
) -> Result<Option<Duration>, NotCacheable> {
    let mut shortest: Option<Duration> = None;
    for table in tables {
        match rules.ttl(table) {
            Some(ttl) => shortest = Some(shortest.map_or(ttl, |s| s.min(ttl))),
            None if hinted => {}
            None => return Err(NotCacheable::NotOptedIn(table.clone())),
        }
    }
    Ok(shortest)
}

/// What a committed write must drop from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteScope {
    /// Nothing: a read, or a write that changes no table data (LISTEN, NOTIFY, VACUUM, ...).
    Nothing,
    /// Entries that read these tables (normalized).
    Tables(Vec<String>),
    /// Everything: a write whose tables are unknown (a function, DO, CALL, unparsable text).
    All,
}

/// Writes known to change no table's rows, by the classifier's `write_reason`. Only whole
/// single statements, never functions: a text's reason is the first one found and could hide
/// another (`SELECT nextval('s'), my_writer()`, `LISTEN c; SELECT my_writer()`).
const DATALESS_WRITES: &[&str] = &["LISTEN", "NOTIFY", "VACUUM", "ANALYZE", "CHECKPOINT"];

/// The invalidation a committed write calls for. Views and partitions of the tables are added
/// by the store (see [`super::related`]); writes by triggers or by functions next to a named
/// table are not resolved here: the WAL follower or the TTL bounds them.
pub fn write_scope(c: &Classification) -> WriteScope {
    if c.parsed && c.access == Access::Read {
        return WriteScope::Nothing;
    }
    if c.parsed && !c.tables_written.is_empty() {
        return WriteScope::Tables(normalize_all(&c.tables_written));
    }
    let dataless = c.parsed
        && c.statements == 1
        && c.write_reason
            .as_deref()
            .is_some_and(|r| DATALESS_WRITES.iter().any(|w| r.starts_with(w)));
    if dataless {
        WriteScope::Nothing
    } else {
        WriteScope::All
    }
}
