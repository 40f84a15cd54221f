//! Statement classification: SQL text in, [`Classification`] out. Pure (no I/O), and cached by
//! text so a repeated statement costs a hash lookup, not a parse.
//!
//! How: `explain_route` spots pgsplit's own command; `parse` cuts the text into statements and
//! parses them with sqlparser (PostgreSqlDialect); `statement` folds them into one answer and
//! decides the wrappers (EXPLAIN, PREPARE, EXECUTE); `walker` visits every node of a statement
//! (nested queries, CTEs, FROM items, function calls) with `scope` telling CTEs from tables,
//! `functions` judging calls (default deny) and `session` recording SET, transaction control
//! and the like; `cache` holds [`Classifier`]. Whatever is not understood goes to the primary.
//!
//! CONTRACT (types below are used by the session and the router; keep names and meanings).

use std::sync::Arc;

/// Whether a statement may run on a read-only replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Only reads, with only read-only functions: a replica may run it.
    Read,
    /// Writes, may write, or could not be understood: the primary.
    Write,
}

/// Transaction control found in the text, in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxControl {
    /// BEGIN / START TRANSACTION; `read_only` when READ ONLY was given. `plain` when written
    /// in PostgreSQL's own grammar (no modifier such as DEFERRED, no SNAPSHOT isolation, no
    /// statement block): a server outside a transaction cannot refuse it, so pgsplit may answer
    /// it and send it ahead of the transaction's first statement.
    Begin {
        read_only: bool,
        plain: bool,
    },
    Commit,
    Rollback,
    /// SET TRANSACTION (or SET SESSION CHARACTERISTICS AS TRANSACTION) READ ONLY / READ WRITE.
    SetReadOnly {
        read_only: bool,
        session: bool,
    },
    Savepoint,
    RollbackToSavepoint,
    ReleaseSavepoint,
    /// PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED.
    TwoPhase,
}

/// Why a session must stay on one primary connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinCause {
    TempTable,
    AdvisoryLock,
    Listen,
    HoldCursor,
    /// A function that changes session state the proxy cannot replay (e.g. set_config(.., false)).
    SessionFunction,
}

/// Effects on session state that must follow the client to whichever server runs its next
/// statement, or that pin it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEffect {
    /// `SET [SESSION] name ...` (never SET LOCAL): `name` lower-cased; `sql` re-runs it.
    Set {
        name: String,
        sql: String,
    },
    /// `SET LOCAL pgsplit.name ...`: pgsplit's own setting until the transaction ends (a SET
    /// LOCAL of the server's dies with its transaction, and pgsplit needs to know nothing).
    SetLocal {
        name: String,
        sql: String,
    },
    /// `RESET name`.
    Reset {
        name: String,
    },
    /// `RESET ALL`.
    ResetAll,
    /// SQL-level `PREPARE name AS ...`; `sql` re-runs it.
    Prepare {
        name: String,
        sql: String,
    },
    /// `DEALLOCATE [PREPARE] name`, or None for `DEALLOCATE ALL`.
    Deallocate {
        name: Option<String>,
    },
    /// SQL-level `EXECUTE name`: needs the prepared statement on the server that runs it.
    Execute {
        name: String,
    },
    /// `DISCARD ALL` (also unpins), `DISCARD TEMP`, `DISCARD PLANS`, `DISCARD SEQUENCES`.
    DiscardAll,
    DiscardTemp,
    /// `LISTEN channel`: it keeps the session on its connection (with `Pin(Listen)`) while the
    /// session listens on any channel.
    Listen {
        channel: String,
    },
    /// `UNLISTEN *` (None) or `UNLISTEN channel`.
    Unlisten {
        channel: Option<String>,
    },
    /// State that cannot move between connections.
    Pin(PinCause),
    /// `currval()` / `lastval()`: reads what the session's last `nextval()` left on the
    /// connection that ran it, so it must run there.
    SequenceState,
    /// `SAVEPOINT name` (lower-cased unless quoted, as the server folds it).
    Savepoint {
        name: String,
    },
    /// `ROLLBACK TO [SAVEPOINT] name`: undoes the effects since that savepoint.
    RollbackToSavepoint {
        name: String,
    },
    /// `RELEASE [SAVEPOINT] name`: keeps them.
    ReleaseSavepoint {
        name: String,
    },
    /// `DECLARE name CURSOR WITH HOLD`: the cursor outlives the transaction, and keeps the
    /// session on its connection (with `Pin(HoldCursor)`) until it is closed.
    HoldCursor {
        name: String,
    },
    /// `CLOSE name`, or None for `CLOSE ALL`.
    CloseCursor {
        name: Option<String>,
    },
    /// `COMMIT` / `END` (with or without `AND CHAIN`): the transaction's effects so far count.
    /// In order with the others, so that one text holding two blocks keeps each one's fate.
    Commit,
    /// `ROLLBACK` / `ABORT` (with or without `AND CHAIN`): they vanish.
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub access: Access,
    /// False when sqlparser could not parse the text (then `access` is Write).
    pub parsed: bool,
    /// Tables read and written, lower-cased, schema-qualified as written (`s.t` or `t`).
    pub tables_read: Vec<String>,
    pub tables_written: Vec<String>,
    pub tx: Vec<TxControl>,
    pub effects: Vec<SessionEffect>,
    /// For each statement with effects, in order: (statements up to and including it, effects
    /// up to and including its own). A text that fails part-way keeps the effects of the
    /// statements the server completed before the error.
    pub effect_ends: Vec<(usize, usize)>,
    /// `EXPLAIN ROUTE <statement>`: pgsplit answers it itself; holds the inner statement's text.
    pub explain_route: Option<String>,
    /// A short human reason when `access` is Write (e.g. "INSERT", "function nextval",
    /// "SELECT FOR UPDATE", "unparsable"), for logs and EXPLAIN ROUTE. Shared: every unit
    /// that runs a cached write takes it along.
    pub write_reason: Option<Arc<str>>,
    /// Number of statements in the text (a multi-statement string is one unit).
    pub statements: usize,
    /// A COPY FROM: the server may then take copy data from the client, and until its end
    /// nothing else may be sent on the connection.
    pub copy_in: bool,
}

mod cache;
mod explain_route;
mod functions;
mod names;
mod parse;
mod scope;
mod session;
mod shape;
mod statement;
mod walker;

#[cfg(test)]
mod tests;

pub use cache::Classifier;
pub use explain_route::detect as explained_statement;
pub use functions::FunctionPolicy;

/// Classifies one statement text (possibly several statements: they are one unit, a write if
/// any part writes). Never panics, whatever the text.
pub fn classify(sql: &str, read_only_functions: &FunctionPolicy) -> Classification {
    if let Some(inner) = explain_route::detect(sql) {
        return Classification::explain_route(inner);
    }
    match parse::parse(sql) {
        Ok(units) => statement::classify_units(&units, read_only_functions),
        Err(failure) => Classification::unparsable(&failure.message, failure.statements),
    }
}

impl Classification {
    /// An empty read: what a text with no statement in it is.
    fn empty() -> Self {
        Classification {
            access: Access::Read,
            parsed: true,
            tables_read: Vec::new(),
            tables_written: Vec::new(),
            tx: Vec::new(),
            effects: Vec::new(),
            effect_ends: Vec::new(),
            explain_route: None,
            write_reason: None,
            statements: 0,
            copy_in: false,
        }
    }

    /// pgsplit's own `EXPLAIN ROUTE <statement>`: answered by the proxy, so it runs nowhere.
    fn explain_route(inner: &str) -> Self {
        Classification {
            explain_route: Some(inner.to_owned()),
            statements: 1,
            ..Self::empty()
        }
    }

    /// Text sqlparser cannot read: the primary, which has the last word on what it means.
    fn unparsable(parser_error: &str, statements: usize) -> Self {
        let excerpt: String = parser_error.chars().take(60).collect();
        Classification {
            access: Access::Write,
            parsed: false,
            write_reason: Some(format!("unparsable: {excerpt}").into()),
            statements,
            ..Self::empty()
        }
    }
}
