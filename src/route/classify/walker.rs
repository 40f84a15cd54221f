//! The AST walk: every statement, query, SELECT, FROM item and expression of a statement,
//! nested ones included (a data-modifying CTE is a statement inside a query inside a
//! statement), is looked at through sqlparser's [`Visitor`]. Anything it does not recognise as
//! harmless sends the statement to the primary.
//!
//! Tables are gathered from FROM items rather than with `visit_relations`, which also reports
//! table functions (`generate_series(...)` in FROM) as relations, and misses `COPY t`.

use std::convert::Infallible;
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, CopyTarget, Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, LockType, ObjectName, ObjectType, Query, Select, SetExpr, Statement, TableFactor,
    TableObject, Visit, Visitor,
};

use super::functions::{FunctionPolicy, Verdict};
use super::scope::CteScopes;
use super::statement::Findings;
use super::{PinCause, SessionEffect, names, session};

/// Walks `stmt` and everything in it.
pub(super) fn walk(stmt: &Statement, policy: &FunctionPolicy) -> Findings {
    let mut walker = Walker {
        policy,
        found: Findings::default(),
        from_items: Vec::new(),
        targets_in_from: Vec::new(),
        scopes: CteScopes::default(),
    };
    // The walker never breaks off, so the walk's result says nothing.
    let _ = stmt.visit(&mut walker);
    walker.finish()
}

struct Walker<'p> {
    policy: &'p FunctionPolicy,
    found: Findings,
    /// Every table named by a FROM item, one entry per mention.
    from_items: Vec<String>,
    /// UPDATE, DELETE and MERGE targets: also FROM items, but written, not read.
    targets_in_from: Vec<String>,
    scopes: CteScopes,
}

impl Walker<'_> {
    /// Tables read: the FROM items less one mention per target, so `UPDATE t ... FROM t AS u`
    /// still reads t.
    fn finish(mut self) -> Findings {
        for target in &self.targets_in_from {
            if let Some(i) = self.from_items.iter().position(|t| t == target) {
                self.from_items.remove(i);
            }
        }
        self.found.tables_read.append(&mut self.from_items);
        self.found
    }

    fn written(&mut self, name: &ObjectName) {
        self.found.tables_written.push(names::object(name));
    }

    /// The table an UPDATE, DELETE or MERGE changes, itself a FROM item.
    fn target_in_from(&mut self, target: &TableFactor) {
        if let TableFactor::Table { name, .. } = target {
            let name = names::object(name);
            self.found.tables_written.push(name.clone());
            self.targets_in_from.push(name);
        }
    }

    /// Judges a call to a function, wherever it is: SELECT list, WHERE, FROM, VALUES, ...
    fn call(&mut self, name: &ObjectName, args: &[FunctionArg]) {
        if names::is_constructor(name) {
            return;
        }
        let parts = names::parts(name);
        let verdict = self.policy.verdict(&parts);
        let reason = || format!("function {}", parts.last().unwrap_or(&"?").to_lowercase());
        match verdict {
            Verdict::Read => {}
            Verdict::Write => self.found.write(&reason()),
            Verdict::WriteAndPin(cause) => {
                self.found.write(&reason());
                self.found.pin(cause);
            }
            Verdict::SequenceState => {
                self.found.reads_sequence.get_or_insert_with(reason);
            }
            Verdict::SetConfig if is_local_call(args) => {}
            Verdict::SetConfig => {
                self.found.write("function set_config (session-wide)");
                self.found.pin(PinCause::SessionFunction);
            }
        }
    }

    /// Statements that change data or schema, or may; utility statements are left to
    /// [`session::absorb`]. Default deny: what is not listed is a write.
    fn statement(&mut self, stmt: &Statement) {
        match stmt {
            // Its parts are judged by the query, SELECT, FROM and expression hooks.
            Statement::Query(_) => {}
            // Decided by the caller, which knows the prepared statements of the text.
            Statement::Execute { name: Some(_), .. } => {}
            Statement::Insert(insert) => {
                self.found.write("INSERT");
                if let TableObject::TableName(name) = &insert.table {
                    self.written(name);
                }
            }
            Statement::Update(update) => {
                self.found.write("UPDATE");
                self.target_in_from(&update.table.relation);
            }
            Statement::Delete(delete) => {
                self.found.write("DELETE");
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                from.iter().for_each(|t| self.target_in_from(&t.relation));
            }
            Statement::Merge(merge) => {
                self.found.write("MERGE");
                self.target_in_from(&merge.table);
            }
            Statement::Truncate(truncate) => {
                self.found.write("TRUNCATE");
                truncate
                    .table_names
                    .iter()
                    .for_each(|t| self.written(&t.name));
            }
            Statement::Copy {
                source, to, target, ..
            } => self.copy(source, *to, target),
            Statement::Declare { stmts } => {
                for declare in stmts {
                    if declare.for_query.is_none() {
                        self.found.write("DECLARE without a query");
                    }
                    if declare.hold == Some(true) {
                        self.found.pin(PinCause::HoldCursor);
                        for name in &declare.names {
                            let name = names::identifier(name);
                            self.found.effects.push(SessionEffect::HoldCursor { name });
                        }
                    }
                }
            }
            Statement::LISTEN { channel } => {
                self.found.write("LISTEN");
                self.found.pin(PinCause::Listen);
                let channel = names::identifier(channel);
                self.found.effects.push(SessionEffect::Listen { channel });
            }
            other if session::absorb(other, &mut self.found) => {}
            other => self.ddl(other),
        }
    }

    /// COPY FROM writes its table; COPY TO reads, but to a server file or program it leaves
    /// something on the server's disk, which belongs on the primary.
    fn copy(&mut self, source: &CopySource, to: bool, target: &CopyTarget) {
        match (source, to) {
            (CopySource::Table { table_name, .. }, false) => {
                self.found.write("COPY FROM");
                self.found.copy_in = true;
                self.written(table_name);
            }
            (CopySource::Query(_), false) => {
                self.found.write("COPY FROM");
                self.found.copy_in = true;
            }
            (CopySource::Table { table_name, .. }, true) => {
                self.from_items.push(names::object(table_name));
            }
            // The query is walked as part of the statement.
            (CopySource::Query(_), true) => {}
        }
        if to && *target != CopyTarget::Stdout {
            self.found.write("COPY TO a server file or program");
        }
    }

    /// Schema changes and every other statement: writes. The relations they create, alter or
    /// drop are noted as written, for whoever caches what reads them.
    fn ddl(&mut self, stmt: &Statement) {
        self.found.write(&statement_kind(stmt));
        match stmt {
            Statement::CreateTable(create) => {
                self.written(&create.name);
                self.pin_if(create.temporary, PinCause::TempTable);
            }
            Statement::CreateView(create) => {
                self.written(&create.name);
                self.pin_if(create.temporary, PinCause::TempTable);
            }
            Statement::CreateSequence { temporary, .. } => {
                self.pin_if(*temporary, PinCause::TempTable)
            }
            Statement::AlterTable(alter) => self.written(&alter.name),
            Statement::Drop {
                object_type: ObjectType::Table | ObjectType::View | ObjectType::MaterializedView,
                names,
                ..
            } => names.iter().for_each(|name| self.written(name)),
            _ => {}
        }
    }

    fn pin_if(&mut self, condition: bool, cause: PinCause) {
        if condition {
            self.found.pin(cause);
        }
    }
}

impl Visitor for Walker<'_> {
    type Break = Infallible;

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<Infallible> {
        self.statement(stmt);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Infallible> {
        self.scopes.enter(query);
        for lock in &query.locks {
            self.found.write(match lock.lock_type {
                LockType::Update => "SELECT FOR UPDATE",
                LockType::Share => "SELECT FOR SHARE",
            });
        }
        table_commands(&query.body, &mut self.from_items);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Infallible> {
        self.scopes.leave();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Infallible> {
        if let Some(into) = &select.into {
            self.found.write("SELECT INTO");
            let targets = into.targets.iter().map(names::into_target);
            self.found.tables_written.extend(targets);
            self.pin_if(into.temporary, PinCause::TempTable);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, item: &TableFactor) -> ControlFlow<Infallible> {
        match item {
            // A reference to a CTE reads no table of its own.
            TableFactor::Table {
                name, args: None, ..
            } if self.scopes.is_cte(name) => {}
            TableFactor::Table {
                name, args: None, ..
            } => self.from_items.push(names::object(name)),
            // A function in FROM: `generate_series(1, 3)`, `nextval('s')`, `read_only_fn()`.
            TableFactor::Table {
                name,
                args: Some(args),
                ..
            } => self.call(name, &args.args),
            TableFactor::Function { name, args, .. } => self.call(name, args),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Infallible> {
        if let Expr::Function(function) = expr {
            let args = match &function.args {
                FunctionArguments::List(list) => list.args.as_slice(),
                FunctionArguments::None | FunctionArguments::Subquery(_) => &[],
            };
            self.call(&function.name, args);
        }
        ControlFlow::Continue(())
    }
}

/// `SELECT ... UNION TABLE name`: sqlparser keeps that `TABLE name` as a set expression, with
/// no FROM item of its own.
fn table_commands(body: &SetExpr, from_items: &mut Vec<String>) {
    match body {
        SetExpr::Table(table) => {
            let parts = [table.schema_name.as_deref(), table.table_name.as_deref()];
            let name: Vec<String> = parts
                .iter()
                .flatten()
                .map(|p| p.to_ascii_lowercase())
                .collect();
            if !name.is_empty() {
                from_items.push(name.join("."));
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            table_commands(left, from_items);
            table_commands(right, from_items);
        }
        _ => {}
    }
}

/// `set_config(name, value, is_local)` with `is_local` a literal true: the setting ends with
/// the transaction, so nothing outlives the statement.
fn is_local_call(args: &[FunctionArg]) -> bool {
    let named_is_local = |name: &Ident| name.value.eq_ignore_ascii_case("is_local");
    let is_local = args.iter().enumerate().find_map(|(i, arg)| match arg {
        FunctionArg::Unnamed(value) if i == 2 => Some(value),
        FunctionArg::Named { name, arg, .. } if named_is_local(name) => Some(arg),
        FunctionArg::ExprNamed {
            name: Expr::Identifier(name),
            arg,
            ..
        } if named_is_local(name) => Some(arg),
        _ => None,
    });
    matches!(is_local, Some(FunctionArgExpr::Expr(e)) if session::boolean_literal(e) == Some(true))
}

/// A short name for a statement, for logs: its leading keywords as sqlparser prints them
/// (upper case), up to the first name or clause (`CREATE UNLOGGED TABLE`, `GRANT SELECT`).
fn statement_kind(stmt: &Statement) -> String {
    const CLAUSES: [&str; 5] = ["IF", "ON", "AS", "TO", "FROM"];
    let text = stmt.to_string();
    let keywords: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .take_while(|w| !CLAUSES.contains(w))
        .take(4)
        .collect();
    if keywords.is_empty() {
        "statement".to_owned()
    } else {
        keywords.join(" ")
    }
}
