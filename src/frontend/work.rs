//! What a unit of client messages will do, from the classification of the SQL it runs: the
//! input of the routing decision and of session-state tracking.

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::{Frame, messages, tag};
use crate::route::classify::{Access, Classification, Classifier, SessionEffect, TxControl};

use super::state::SessionState;

/// The merged classification of everything a unit executes.
#[derive(Debug, Default)]
pub struct Work {
    pub access: Option<Access>,
    pub parsed: bool,
    pub write_reason: Option<String>,
    pub tx: Vec<TxControl>,
    pub effects: Vec<SessionEffect>,
    /// `EXPLAIN ROUTE <text>` sent as a simple query: pgsplit answers it.
    pub explain_route: Option<String>,
    /// The unit runs something (a Query, an Execute, a function call), rather than only
    /// preparing or describing statements.
    pub executes: bool,
}

impl Work {
    pub fn access(&self) -> Access {
        self.access.unwrap_or(Access::Read)
    }

    fn add(&mut self, c: &Classification) {
        self.executes = true;
        self.add_access(c);
        self.tx.extend(c.tx.iter().cloned());
        self.effects.extend(c.effects.iter().cloned());
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
        self.access = Some(Access::Write);
        self.write_reason.get_or_insert_with(|| what.to_string());
    }
}

/// Classifies the SQL that `frames` will execute: Query texts, and for Execute the text of the
/// statement its portal was bound from (in this unit or earlier in the session).
pub fn describe(frames: &[Frame], state: &SessionState, classifier: &Classifier) -> Work {
    let mut work = Work {
        parsed: true,
        ..Default::default()
    };
    // Statements parsed and portals bound within this unit, ahead of the session's record.
    let mut statements: HashMap<&str, &str> = HashMap::new();
    let mut portals: HashMap<&str, &str> = HashMap::new();
    for frame in frames {
        let body = frame.body();
        match frame.tag {
            tag::QUERY => match messages::query_text(body) {
                Some(sql) => {
                    let c = classifier.classify(sql);
                    if let Some(inner) = &c.explain_route {
                        work.explain_route = Some(inner.clone());
                    }
                    work.add(&c);
                }
                None => work.add_unknown("malformed query message"),
            },
            tag::PARSE => {
                if let Some((name, sql)) = messages::parse_message(body) {
                    statements.insert(name, sql);
                    work.add_access(&classifier.classify(sql));
                }
            }
            tag::BIND => {
                if let Some((portal, statement)) = messages::bind_names(body) {
                    portals.insert(portal, statement);
                }
            }
            tag::EXECUTE => {
                let sql = messages::execute_portal(body).and_then(|portal| {
                    let statement = portals
                        .get(portal)
                        .copied()
                        .or_else(|| state.portals.get(portal).map(String::as_str))?;
                    statements
                        .get(statement)
                        .copied()
                        .or_else(|| saved_statement_text(state, statement))
                });
                match sql {
                    Some(sql) => work.add(&classifier.classify(sql)),
                    None => work.add_unknown("execute of an unknown portal"),
                }
            }
            tag::FUNCTION_CALL => work.add_unknown("function call message"),
            _ => {}
        }
    }
    work
}

fn saved_statement_text<'a>(state: &'a SessionState, name: &str) -> Option<&'a str> {
    let parse = state.statements.get(name)?;
    messages::parse_message(parse.get(5..)?).map(|(_, sql)| sql)
}

/// The classification of a single text, for `EXPLAIN ROUTE`.
pub fn describe_text(sql: &str, classifier: &Classifier) -> Work {
    let mut work = Work {
        parsed: true,
        ..Default::default()
    };
    let c: Arc<Classification> = classifier.classify(sql);
    work.add(&c);
    work
}
