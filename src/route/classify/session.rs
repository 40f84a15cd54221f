//! Utility statements that read nothing and write nothing, but change the session or its
//! transaction: SET, RESET, DISCARD, DEALLOCATE, UNLISTEN, transaction control, SHOW and cursor
//! reads. They may run anywhere; what they change is recorded so the session can replay it.

use sqlparser::ast::{
    CloseCursor, ContextModifier, DiscardObject, Expr, Ident, Reset, Set, Statement,
    TransactionAccessMode, TransactionIsolationLevel, TransactionMode, Value,
};

use super::statement::Findings;
use super::{SessionEffect, TxControl, names};

/// Records what `stmt` does to the session. False when `stmt` is not such a statement.
pub(super) fn absorb(stmt: &Statement, found: &mut Findings) -> bool {
    match stmt {
        Statement::Set(set) => absorb_set(set, stmt, found),
        Statement::Reset(reset) => found.effects.push(match &reset.reset {
            Reset::ALL => SessionEffect::ResetAll,
            Reset::SessionAuthorization => reset_of("session_authorization"),
            Reset::ConfigurationParameter(name) => reset_of(&names::object(name)),
        }),
        Statement::Discard { object_type } => match object_type {
            DiscardObject::ALL => found.effects.push(SessionEffect::DiscardAll),
            DiscardObject::TEMP => found.effects.push(SessionEffect::DiscardTemp),
            // Cached plans and sequence state are the server's own business.
            DiscardObject::PLANS | DiscardObject::SEQUENCES => {}
        },
        Statement::Deallocate { name, .. } => {
            let name = (!is_bare(name, "all")).then(|| names::identifier(name));
            found.effects.push(SessionEffect::Deallocate { name });
        }
        Statement::UNLISTEN { channel } => {
            let channel = (!is_bare(channel, "*")).then(|| names::identifier(channel));
            found.effects.push(SessionEffect::Unlisten { channel });
        }
        Statement::StartTransaction {
            modes,
            modifier,
            statements,
            exception,
            has_end_keyword,
            ..
        } => found.tx.push(TxControl::Begin {
            read_only: read_only_mode(modes) == Some(true),
            plain: modifier.is_none()
                && statements.is_empty()
                && exception.is_none()
                && !has_end_keyword
                && modes.iter().all(|m| {
                    !matches!(
                        m,
                        TransactionMode::IsolationLevel(TransactionIsolationLevel::Snapshot)
                    )
                }),
        }),
        Statement::Commit { chain, .. } => {
            end_transaction(TxControl::Commit, *chain, found);
            found.effects.push(SessionEffect::Commit);
        }
        // Savepoints are effects too, in order with the SETs around them: rolling back to one
        // undoes what the session set since.
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => {
            found.tx.push(TxControl::RollbackToSavepoint);
            found.effects.push(SessionEffect::RollbackToSavepoint {
                name: names::identifier(name),
            });
        }
        Statement::Rollback { chain, .. } => {
            end_transaction(TxControl::Rollback, *chain, found);
            found.effects.push(SessionEffect::Rollback);
        }
        Statement::Savepoint { name } => {
            found.tx.push(TxControl::Savepoint);
            found.effects.push(SessionEffect::Savepoint {
                name: names::identifier(name),
            });
        }
        Statement::ReleaseSavepoint { name } => {
            found.tx.push(TxControl::ReleaseSavepoint);
            found.effects.push(SessionEffect::ReleaseSavepoint {
                name: names::identifier(name),
            });
        }
        Statement::Close { cursor } => found.effects.push(SessionEffect::CloseCursor {
            name: match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(names::identifier(name)),
            },
        }),
        Statement::ShowVariable { .. } | Statement::Fetch { .. } => {}
        _ => return false,
    }
    true
}

fn reset_of(name: &str) -> SessionEffect {
    SessionEffect::Reset {
        name: name.to_owned(),
    }
}

/// `AND CHAIN` opens the next transaction at once; its access mode is not known here, so it is
/// taken as read-write.
fn end_transaction(end: TxControl, chain: bool, found: &mut Findings) {
    found.tx.push(end);
    if chain {
        found.tx.push(TxControl::Begin {
            read_only: false,
            plain: false,
        });
    }
}

fn absorb_set(set: &Set, stmt: &Statement, found: &mut Findings) {
    let replay = |found: &mut Findings, name: &str| {
        found.effects.push(SessionEffect::Set {
            name: name.to_owned(),
            sql: stmt.to_string(),
        })
    };
    match set {
        Set::SingleAssignment {
            scope: None | Some(ContextModifier::Session),
            variable,
            values,
            ..
        } => {
            let name = names::object(variable);
            match (name.as_str(), boolean_setting(values)) {
                ("transaction_read_only", Some(read_only)) => {
                    found.tx.push(TxControl::SetReadOnly {
                        read_only,
                        session: false,
                    })
                }
                _ => replay(found, &name),
            }
        }
        Set::SetTimeZone { local: false, .. } => replay(found, "timezone"),
        Set::SetRole {
            context_modifier: None | Some(ContextModifier::Session),
            ..
        } => replay(found, "role"),
        Set::SetSessionAuthorization(param) if param.scope != ContextModifier::Local => {
            replay(found, "session_authorization")
        }
        Set::SetNames { .. } => replay(found, "client_encoding"),
        Set::SetTransaction { modes, session, .. } => {
            absorb_transaction_modes(modes, *session, found)
        }
        Set::SingleAssignment {
            scope: Some(ContextModifier::Local),
            variable,
            ..
        } if names::object(variable).starts_with("pgsplit.") => {
            found.effects.push(SessionEffect::SetLocal {
                name: names::object(variable),
                sql: stmt.to_string(),
            })
        }
        // SET LOCAL dies with its transaction: nothing to carry over.
        Set::SingleAssignment { .. }
        | Set::SetTimeZone { .. }
        | Set::SetRole { .. }
        | Set::SetSessionAuthorization(_) => {}
        // MySQL, MS SQL and Snowflake forms: PostgreSQL has none of them and will say so.
        Set::ParenthesizedAssignments { .. }
        | Set::MultipleAssignments { .. }
        | Set::SetSessionParam(_)
        | Set::SetNamesDefault {} => found.write("SET form PostgreSQL lacks"),
    }
}

/// SET TRANSACTION changes the current transaction only. SET SESSION CHARACTERISTICS AS
/// TRANSACTION sets the session's defaults: replayed as one SET per setting, named after the
/// setting it changes, so a later one of the same name replaces it.
fn absorb_transaction_modes(modes: &[TransactionMode], session: bool, found: &mut Findings) {
    if let Some(read_only) = read_only_mode(modes) {
        found.tx.push(TxControl::SetReadOnly { read_only, session });
    }
    if !session {
        return;
    }
    for mode in modes {
        let name = match mode {
            TransactionMode::AccessMode(_) => "default_transaction_read_only",
            TransactionMode::IsolationLevel(_) => "default_transaction_isolation",
        };
        let alone = Set::SetTransaction {
            modes: vec![*mode],
            snapshot: None,
            session: true,
        };
        found.effects.push(SessionEffect::Set {
            name: name.to_owned(),
            sql: Statement::Set(alone).to_string(),
        });
    }
}

/// The last READ ONLY / READ WRITE among `modes` (PostgreSQL lets the last one win).
fn read_only_mode(modes: &[TransactionMode]) -> Option<bool> {
    modes.iter().rev().find_map(|mode| match mode {
        TransactionMode::AccessMode(access) => Some(*access == TransactionAccessMode::ReadOnly),
        TransactionMode::IsolationLevel(_) => None,
    })
}

/// A boolean setting's value as SET reads it: `on`, `true`, `'yes'`, `1`, ...
fn boolean_setting(values: &[Expr]) -> Option<bool> {
    match values {
        [value] => boolean_value(value),
        _ => None,
    }
}

/// A boolean as utility statements read it: also bare words (`on`) and numbers (`0`).
pub(super) fn boolean_value(expr: &Expr) -> Option<bool> {
    match expr {
        Expr::Identifier(ident) => boolean_word(&ident.value),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => boolean_word(n),
            _ => boolean_literal(expr),
        },
        _ => None,
    }
}

/// A boolean constant in an expression: `true`, or a string PostgreSQL reads as a boolean.
pub(super) fn boolean_literal(expr: &Expr) -> Option<bool> {
    let Expr::Value(v) = expr else { return None };
    match &v.value {
        Value::Boolean(b) => Some(*b),
        Value::SingleQuotedString(s) => boolean_word(s),
        _ => None,
    }
}

fn boolean_word(word: &str) -> Option<bool> {
    match word.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// `ident` is the unquoted word `word` (`ALL`, `*`), not a name that happens to be spelled so.
fn is_bare(ident: &Ident, word: &str) -> bool {
    ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case(word)
}
