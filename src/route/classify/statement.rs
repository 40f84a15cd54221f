//! One statement at a time, folded into one [`Classification`] for the whole text. The
//! statements that wrap another (EXPLAIN, PREPARE, EXECUTE) are decided here, because whether
//! the wrapped statement runs decides what it means; everything else goes to the AST walker.

use std::sync::Arc;

use sqlparser::ast::{Statement, UtilityOption};

use super::functions::FunctionPolicy;
use super::parse::Unit;
use super::{Access, Classification, PinCause, SessionEffect, TxControl, names, session, walker};

/// What one statement was found to do.
#[derive(Debug, Default, Clone)]
pub(super) struct Findings {
    /// The first reason found for the primary; None for a read.
    pub write_reason: Option<String>,
    pub tables_read: Vec<String>,
    pub tables_written: Vec<String>,
    pub tx: Vec<TxControl>,
    pub effects: Vec<SessionEffect>,
    pub copy_in: bool,
    /// A call to `currval()` or `lastval()`, as a reason for the primary.
    pub reads_sequence: Option<String>,
}

impl Findings {
    /// Notes a reason for the primary; the first one found is the one reported.
    pub fn write(&mut self, reason: &str) {
        if self.write_reason.is_none() {
            self.write_reason = Some(reason.to_owned());
        }
    }

    /// Notes a pin once per statement.
    pub fn pin(&mut self, cause: PinCause) {
        self.effect(SessionEffect::Pin(cause));
    }

    /// Notes an effect once per statement.
    fn effect(&mut self, effect: SessionEffect) {
        if !self.effects.contains(&effect) {
            self.effects.push(effect);
        }
    }

    fn access(&self) -> Access {
        match self.write_reason {
            Some(_) => Access::Write,
            None => Access::Read,
        }
    }
}

/// Prepared statements met earlier in the same text, so that `PREPARE p AS ...; EXECUTE p`
/// is judged by what `p` does.
struct Context<'p> {
    policy: &'p FunctionPolicy,
    prepared: Vec<(String, Findings)>,
}

pub(super) fn classify_units(units: &[Unit], policy: &FunctionPolicy) -> Classification {
    let mut context = Context {
        policy,
        prepared: Vec::new(),
    };
    let mut out = Classification::empty();
    for (done, unit) in units.iter().enumerate() {
        let found = match unit {
            Unit::Statement(stmt) => classify_statement(stmt, &mut context),
            Unit::TwoPhase => two_phase(),
        };
        let before = out.effects.len();
        absorb(&mut out, found);
        if out.effects.len() > before {
            out.effect_ends.push((done + 1, out.effects.len()));
        }
    }
    out.statements = units.len();
    out
}

fn classify_statement(stmt: &Statement, context: &mut Context<'_>) -> Findings {
    match stmt {
        Statement::Explain {
            analyze,
            options,
            statement,
            ..
        } => {
            let inner = classify_statement(statement, context);
            if *analyze || has_analyze_option(options.as_deref()) {
                inner
            } else {
                plan_only(inner)
            }
        }
        Statement::Prepare {
            name, statement, ..
        } => prepare(stmt, &names::identifier(name), statement, context),
        Statement::Execute {
            name: Some(name), ..
        } => {
            let mut found = walker::walk(stmt, context.policy);
            execute(&names::object_ident(name), &mut found, context);
            found
        }
        _ => walker::walk(stmt, context.policy),
    }
}

/// EXPLAIN without ANALYZE plans the statement and runs nothing: a read of what it names.
fn plan_only(inner: Findings) -> Findings {
    let mut tables_read = inner.tables_read;
    tables_read.extend(inner.tables_written);
    Findings {
        tables_read,
        ..Findings::default()
    }
}

/// `EXPLAIN (ANALYZE)`, `(ANALYZE true)`, `(ANALYZE on)`, ... but not `(ANALYZE false)`.
fn has_analyze_option(options: Option<&[UtilityOption]>) -> bool {
    options.unwrap_or_default().iter().any(|option| {
        option.name.value.eq_ignore_ascii_case("analyze")
            && option
                .arg
                .as_ref()
                .is_none_or(|value| session::boolean_value(value) != Some(false))
    })
}

/// PREPARE only plans: a read wherever it runs. It is remembered, with what executing it
/// would do, for an EXECUTE later in the same text.
fn prepare(stmt: &Statement, name: &str, body: &Statement, context: &mut Context<'_>) -> Findings {
    let body = classify_statement(body, context);
    context.prepared.push((name.to_owned(), body));
    Findings {
        effects: vec![SessionEffect::Prepare {
            name: name.to_owned(),
            sql: stmt.to_string(),
        }],
        ..Findings::default()
    }
}

/// EXECUTE runs a prepared statement. Prepared in this text: it does what that statement does.
/// Prepared earlier: not known here (the session knows it), so the primary.
fn execute(name: &str, found: &mut Findings, context: &Context<'_>) {
    let prepared = context.prepared.iter().rev().find(|(n, _)| n == name);
    match prepared {
        Some((_, body)) => {
            if let Some(reason) = &body.write_reason {
                found.write(reason);
            }
            found.tables_read.extend_from_slice(&body.tables_read);
            found.tables_written.extend_from_slice(&body.tables_written);
            found.effects.extend_from_slice(&body.effects);
            if found.reads_sequence.is_none() {
                found.reads_sequence.clone_from(&body.reads_sequence);
            }
        }
        None => found.write("EXECUTE of a statement prepared before this text"),
    }
    found.effects.push(SessionEffect::Execute {
        name: name.to_owned(),
    });
}

/// PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED: only the primary has them.
fn two_phase() -> Findings {
    Findings {
        write_reason: Some("two-phase commit".to_owned()),
        tx: vec![TxControl::TwoPhase],
        ..Findings::default()
    }
}

/// Adds one statement's findings to the text's classification.
fn absorb(out: &mut Classification, mut found: Findings) {
    if let Some(reason) = found.reads_sequence.take() {
        // currval() and lastval() read what an earlier unit's nextval() left, unless something
        // before them in this text (the statement itself included) may have called it.
        if found.write_reason.is_none() && out.access == Access::Read {
            found.effect(SessionEffect::SequenceState);
        }
        found.write(&reason);
    }
    if out.write_reason.is_none() {
        out.write_reason = found.write_reason.as_deref().map(Arc::from);
    }
    if found.access() == Access::Write {
        out.access = Access::Write;
    }
    add_new(&mut out.tables_read, found.tables_read);
    add_new(&mut out.tables_written, found.tables_written);
    out.tx.extend(found.tx);
    out.effects.extend(found.effects);
    out.copy_in |= found.copy_in;
}

/// Appends the names not there yet, in order.
fn add_new(names: &mut Vec<String>, new: Vec<String>) {
    for name in new {
        if !names.contains(&name) {
            names.push(name);
        }
    }
}
