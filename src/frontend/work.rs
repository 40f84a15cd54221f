//! What a unit of client messages will do, from the classification of the SQL it runs: the
//! input of the routing decision and of session-state tracking.

use std::ops::Deref;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::cache::{WriteScope, write_scope};
use crate::config::LogSettings;
use crate::hint::{HintWarning, Hints, may_hold_hints, parse_hints};
use crate::protocol::{Frame, messages, tag};
use crate::route::classify::{
    Access, Classification, Classifier, PinCause, SessionEffect, TxControl,
};

use super::state::SessionState;

/// The merged classification of everything a unit executes.
#[derive(Debug, Default)]
pub struct Work {
    pub access: Option<Access>,
    pub parsed: bool,
    pub write_reason: Option<Arc<str>>,
    /// Inline: a unit holds one or two (BEGIN, COMMIT) and most units hold none.
    pub tx: SmallVec<[TxControl; 2]>,
    /// What its statements do to the session; they go in flight with the unit.
    pub effects: UnitEffects,
    /// `EXPLAIN ROUTE <text>` sent as a simple query: pgsplit answers it.
    pub explain_route: Option<String>,
    /// The unit runs something (a Query, an Execute, a function call), rather than only
    /// preparing or describing statements.
    pub executes: bool,
    /// Hints in the comments before the statements it runs (the first statement's win).
    pub hints: Hints,
    /// Hints that were not understood, each to be reported as a WARNING.
    pub warnings: Vec<HintWarning>,
    /// What the unit's writes must drop from the result cache once they commit.
    pub writes: Option<WriteScope>,
    /// It runs a COPY FROM: copy data may follow it on the connection.
    pub copy_in: bool,
    /// Whether `writes` is worked out (only the result cache and sharding need it).
    tracks_writes: bool,
}

/// Both scopes of invalidation together.
pub fn merge_scopes(a: Option<WriteScope>, b: Option<WriteScope>) -> Option<WriteScope> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(WriteScope::All), _) | (_, Some(WriteScope::All)) => Some(WriteScope::All),
        (Some(WriteScope::Nothing), x) | (x, Some(WriteScope::Nothing)) => x,
        (Some(WriteScope::Tables(mut a)), Some(WriteScope::Tables(b))) => {
            a.extend(b);
            Some(WriteScope::Tables(a))
        }
    }
}

/// What a unit's statements do to the session, and where each statement's effects end: when
/// one of them fails, the session keeps the effects of those the server completed before the
/// error, as PostgreSQL does (a SQL PREPARE, or what a COMMIT inside the text committed).
#[derive(Debug, Default, PartialEq)]
pub struct UnitEffects {
    list: Vec<SessionEffect>,
    /// For the statements that have effects: (statements up to and including it, effects up
    /// to and including its own), counted over the whole unit.
    ends: Vec<(usize, usize)>,
    /// How many statements the unit runs.
    pub statements: usize,
}

impl Deref for UnitEffects {
    type Target = [SessionEffect];

    fn deref(&self) -> &[SessionEffect] {
        &self.list
    }
}

impl UnitEffects {
    /// Adds a classified text's statements.
    pub fn add(&mut self, c: &Classification) {
        self.append(c.statements, &c.effect_ends, c.effects.iter().cloned());
    }

    /// Adds the statements of more messages of the unit (a unit cut at Flush gathers until
    /// its Sync).
    pub fn extend(&mut self, more: UnitEffects) {
        self.append(more.statements, &more.ends, more.list);
    }

    /// Appends statements whose effect ends are counted from the start of their own text.
    fn append(
        &mut self,
        statements: usize,
        ends: &[(usize, usize)],
        effects: impl IntoIterator<Item = SessionEffect>,
    ) {
        let (statements_before, effects_before) = (self.statements, self.list.len());
        self.ends.extend(
            ends.iter()
                .map(|&(s, e)| (statements_before + s, effects_before + e)),
        );
        self.statements += statements;
        self.list.extend(effects);
    }

    /// The effects of the statements that ran: all of them, or when the unit failed after
    /// the server completed `completed_before_error` statements, those of these statements.
    pub fn that_ran(mut self, completed_before_error: Option<usize>) -> Vec<SessionEffect> {
        if let Some(completed) = completed_before_error {
            let ran = self
                .ends
                .iter()
                .take_while(|&&(statements, _)| statements <= completed)
                .last()
                .map_or(0, |&(_, effects)| effects);
            self.list.truncate(ran);
        }
        self.list
    }
}

impl Work {
    fn new(tracks_writes: bool) -> Work {
        Work {
            parsed: true,
            tracks_writes,
            ..Default::default()
        }
    }

    pub fn access(&self) -> Access {
        self.access.unwrap_or(Access::Read)
    }

    /// The first pin the unit takes: the session holds it from the unit on, so the unit goes
    /// where pinned sessions go (a cursor WITH HOLD reads, but must not keep it on a replica).
    pub fn pin(&self) -> Option<PinCause> {
        self.effects.iter().find_map(|effect| match effect {
            SessionEffect::Pin(cause) => Some(*cause),
            _ => None,
        })
    }

    /// A simple query's text: its hints and what it does.
    fn add_query(&mut self, sql: &str, state: &SessionState, classifier: &Classifier) {
        self.add_hints(sql);
        let c = classify_with_prepared(sql, state, classifier);
        if let Some(inner) = &c.explain_route {
            self.explain_route = Some(inner.clone());
        }
        self.add(&c);
    }

    /// Reads the hint comments of a statement the unit runs.
    fn add_hints(&mut self, sql: &str) {
        if !may_hold_hints(sql) {
            return;
        }
        let (hints, warnings) = parse_hints(sql);
        self.hints = self.hints.or(&hints);
        self.warnings.extend(warnings);
    }

    fn add(&mut self, c: &Classification) {
        self.executes = true;
        if c.access == Access::Write && self.tracks_writes {
            self.writes = merge_scopes(self.writes.take(), Some(write_scope(c)));
        }
        self.add_access(c);
        self.copy_in |= c.copy_in;
        self.tx.extend(c.tx.iter().cloned());
        self.effects.add(c);
    }

    /// A statement prepared but not (yet) run: it decides where the unit goes, since its
    /// Execute usually follows on the same connection, but has no effects yet.
    fn add_access(&mut self, c: &Classification) {
        if c.access == Access::Write && self.access != Some(Access::Write) {
            self.write_reason = c.write_reason.clone();
        }
        self.access = Some(match (self.access, c.access) {
            (Some(Access::Write), _) | (_, Access::Write) => Access::Write,
            _ => Access::Read,
        });
        self.parsed &= c.parsed;
    }

    /// Something ran that pgsplit cannot see into (a function call, an unknown statement).
    fn add_unknown(&mut self, what: &str) {
        self.executes = true;
        self.writes = Some(WriteScope::All);
        self.access = Some(Access::Write);
        self.write_reason.get_or_insert_with(|| what.into());
    }
}

/// Classifies the SQL that `frames` will execute: Query texts, and for Execute the text of the
/// statement its portal was bound from (in this unit or earlier in the session). What the
/// writes make stale (`writes`) is worked out only when `tracks_writes`.
pub fn describe(
    frames: &[Frame],
    state: &SessionState,
    classifier: &Classifier,
    tracks_writes: bool,
) -> Work {
    let mut work = Work::new(tracks_writes);
    // Statements parsed and portals bound within this unit, ahead of the session's record.
    let mut statements: UnitNames<UnitStatement> = UnitNames::new();
    let mut portals: UnitNames<&str> = UnitNames::new();
    for frame in frames {
        let body = frame.body();
        match frame.tag {
            tag::QUERY => match messages::query_text(body) {
                Some(sql) => work.add_query(sql, state, classifier),
                None => work.add_unknown("malformed query message"),
            },
            tag::PARSE => {
                if let Some((name, sql)) = messages::parse_message(body) {
                    let class = classifier.classify(sql);
                    work.add_access(&class);
                    // Kept for this unit's Execute, which then needs no second lookup.
                    statements.push((name, (sql, Some(class))));
                }
            }
            tag::BIND => {
                if let Some((portal, statement)) = messages::bind_names(body) {
                    portals.push((portal, statement));
                }
            }
            tag::EXECUTE => {
                let found = messages::execute_portal(body).and_then(|portal| {
                    let statement = latest(&portals, portal)
                        .or_else(|| state.portals.get(portal).map(String::as_str))?;
                    latest(&statements, statement)
                        .or_else(|| Some((saved_statement_text(state, statement)?, None)))
                });
                match found {
                    Some((sql, class)) => {
                        work.add_hints(sql);
                        let class = class.unwrap_or_else(|| classifier.classify(sql));
                        work.add(&judge_with_prepared(class, sql, state, classifier));
                    }
                    None => work.add_unknown("execute of an unknown portal"),
                }
            }
            tag::FUNCTION_CALL => work.add_unknown("function call message"),
            _ => {}
        }
    }
    work
}

/// Names defined within one unit (statement -> text, portal -> statement), in the order the
/// client sent them. A unit defines a handful at most, so a scan of an inline array beats a
/// hash map, and allocates nothing.
type UnitNames<'a, V> = SmallVec<[(&'a str, V); 4]>;

/// A statement parsed in this unit: its text and classification.
type UnitStatement<'a> = (&'a str, Option<Arc<Classification>>);

/// What `name` was last defined as in this unit: a later Parse or Bind replaces an earlier one.
fn latest<V: Clone>(names: &[(&str, V)], name: &str) -> Option<V> {
    names
        .iter()
        .rev()
        .find_map(|(defined, value)| (*defined == name).then(|| value.clone()))
}

/// Classifies `sql`; an `EXECUTE` of a statement the session prepared earlier (which the text
/// alone cannot judge) is judged by that statement, by classifying it together with its
/// PREPARE. Session effects stay those of `sql` itself.
fn classify_with_prepared(
    sql: &str,
    state: &SessionState,
    classifier: &Classifier,
) -> Arc<Classification> {
    judge_with_prepared(classifier.classify(sql), sql, state, classifier)
}

/// [`classify_with_prepared`] for a text already classified as `c`.
fn judge_with_prepared(
    c: Arc<Classification>,
    sql: &str,
    state: &SessionState,
    classifier: &Classifier,
) -> Arc<Classification> {
    if c.access == Access::Read {
        return c;
    }
    let prepares: Vec<&str> = c
        .effects
        .iter()
        .filter_map(|e| match e {
            SessionEffect::Execute { name } => state.sql_prepared.get(name).map(String::as_str),
            _ => None,
        })
        .collect();
    if prepares.is_empty() {
        return c;
    }
    let combined = classifier.classify(&format!("{}; {sql}", prepares.join("; ")));
    let mut judged = (*c).clone();
    judged.access = combined.access;
    judged.write_reason.clone_from(&combined.write_reason);
    Arc::new(judged)
}

fn saved_statement_text<'a>(state: &'a SessionState, name: &str) -> Option<&'a str> {
    let parse = state.statements.get(name)?;
    messages::parse_message(parse.get(5..)?).map(|(_, sql)| sql)
}

/// What a simple query runs, from its text (already read out of its message): the unit that
/// [`describe`] would make of that one Query.
pub fn describe_query(
    sql: &str,
    state: &SessionState,
    classifier: &Classifier,
    tracks_writes: bool,
) -> Work {
    let mut work = Work::new(tracks_writes);
    work.add_query(sql, state, classifier);
    work
}

/// The classification of a single text, for `EXPLAIN ROUTE`.
pub fn describe_text(sql: &str, classifier: &Classifier) -> Work {
    let mut work = Work::new(true);
    work.add_hints(sql);
    work.add(&classifier.classify(sql));
    work
}

/// The first statement text of a unit (200 characters at most), when slow queries are logged.
pub fn slow_query_text(log: &LogSettings, frames: &[Frame]) -> Option<String> {
    if log.slow_query.is_zero() {
        return None;
    }
    let text = frames.iter().find_map(statement_text)?;
    Some(text.chars().take(200).collect())
}

/// The SQL a Query or a Parse carries (None for other messages, or text that is not UTF-8).
pub fn statement_text(frame: &Frame) -> Option<&str> {
    match frame.tag {
        tag::QUERY => messages::query_text(frame.body()),
        tag::PARSE => messages::parse_message(frame.body()).map(|(_, sql)| sql),
        _ => None,
    }
}

/// The unit so far has opened a transaction block that it has not closed.
pub fn opens_transaction(tx: &[TxControl]) -> bool {
    tx.iter().fold(false, |open, t| match t {
        TxControl::Begin { .. } => true,
        TxControl::Commit | TxControl::Rollback => false,
        _ => open,
    })
}
