//! What pgsplit answers itself over the extended protocol, as pgjdbc, psycopg 3 and asyncpg
//! send every statement: `SHOW pgsplit.*` and `EXPLAIN ROUTE`. pgsplit answers each message of
//! the unit as the server would (ParseComplete, BindComplete, the descriptions, the row,
//! CommandComplete) and records the statements and portals in the session, so that the
//! statement prepared once is answered at each later Bind too. A server knows neither (it
//! would say "unrecognized configuration parameter", or report a syntax error).

use crate::hint::{SessionCommand, Setting, session_command};
use crate::protocol::{Frame, messages, tag};
use crate::route::classify::explained_statement;

use super::client::ClientConn;
use super::error::FrontendError;
use super::scatter::{ExtendedRead, refusal, remember, statement_parse};
use super::session::Session;
use super::state::SessionState;

/// A statement pgsplit answers itself.
#[derive(Debug, PartialEq)]
enum OwnStatement {
    Show(Setting),
    /// `EXPLAIN ROUTE`, with the text of the statement it explains.
    ExplainRoute(String),
}

impl Session {
    /// Answers `frames` if it is an extended-protocol unit whose every statement is the same
    /// `SHOW pgsplit.*` or `EXPLAIN ROUTE`; true if so.
    pub(super) async fn answer_own_extended(
        &mut self,
        client: &mut ClientConn,
        frames: &[Frame],
    ) -> Result<bool, FrontendError> {
        let Some(statement) = own_statement_of(frames, &self.state) else {
            return Ok(false);
        };
        // Its answers come after the answers to what is already in flight.
        self.settle(client).await?;
        let answered = match statement {
            OwnStatement::Show(setting) => {
                if setting == Setting::CausalToken
                    && let Err(fields) = self.learn_every_unasked_position(client).await
                {
                    self.fail_unit(client, FrontendError::Refused(fields), frames)
                        .await?;
                    return Ok(true);
                }
                self.shown_setting(setting)
            }
            OwnStatement::ExplainRoute(inner) => self.route_explained(&inner),
        };
        let answer = match ExtendedRead::read(frames, &self.state)? {
            Some(unit) => unit.answer(&answered, None).map_err(refusal),
            None => return Ok(false),
        };
        if answer.is_ok() {
            remember(frames, &mut self.state);
        }
        self.answer_from_shards(client, answer, frames).await?;
        Ok(true)
    }
}

/// The statement every statement of the unit is, if each is the same `SHOW pgsplit.*` or
/// `EXPLAIN ROUTE` (parsed in the unit, or earlier in the session) and there is at least one;
/// None for anything else. Most units are decided at their first message.
fn own_statement_of(frames: &[Frame], state: &SessionState) -> Option<OwnStatement> {
    let mut own = None;
    for frame in frames {
        let body = frame.body();
        let text = match frame.tag {
            tag::PARSE => messages::parse_message(body).map(|(_, sql)| sql),
            tag::BIND => messages::bind_names(body)
                .and_then(|(_, statement)| statement_text(frames, state, statement)),
            tag::DESCRIBE => match messages::target(body) {
                Some((b'S', statement)) => statement_text(frames, state, statement),
                _ => continue,
            },
            tag::EXECUTE | tag::SYNC | tag::FLUSH | tag::CLOSE => continue,
            _ => return None,
        };
        let statement = own_statement(text?)?;
        if own.as_ref().is_some_and(|o| *o != statement) {
            return None;
        }
        own = Some(statement);
    }
    own
}

/// What `sql` is, if pgsplit answers it itself.
fn own_statement(sql: &str) -> Option<OwnStatement> {
    if let Some(inner) = explained_statement(sql) {
        return Some(OwnStatement::ExplainRoute(inner.to_string()));
    }
    match session_command(sql) {
        Some(Ok(SessionCommand::Show { setting })) => Some(OwnStatement::Show(setting)),
        _ => None,
    }
}

/// The text of statement `name`: its Parse in this unit, else the session's.
fn statement_text<'a>(frames: &'a [Frame], state: &'a SessionState, name: &str) -> Option<&'a str> {
    messages::parse_message(statement_parse(frames, state, name)?).map(|(_, sql)| sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, sql: &str) -> Frame {
        Frame::from_body(tag::PARSE, format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    fn bind(statement: &str) -> Frame {
        Frame::from_body(tag::BIND, format!("\0{statement}\0\0\0\0\0\0\0").as_bytes())
    }

    fn run(statement: &str) -> Vec<Frame> {
        vec![
            bind(statement),
            Frame::from_body(tag::EXECUTE, &[0, 0, 0, 0, 0]),
            Frame::from_body(tag::SYNC, &[]),
        ]
    }

    #[test]
    fn a_unit_of_one_statement_pgsplit_answers_is_answered_by_pgsplit() {
        let mut state = SessionState::default();
        let mut unit = vec![parse("s1", "SHOW pgsplit.consistency")];
        unit.extend(run("s1"));
        assert_eq!(
            own_statement_of(&unit, &state),
            Some(OwnStatement::Show(Setting::Consistency))
        );
        // Prepared earlier: the Bind names it.
        state.statements.insert("s1".into(), unit[0].bytes.clone());
        assert_eq!(
            own_statement_of(&run("s1"), &state),
            Some(OwnStatement::Show(Setting::Consistency))
        );
        let mut explain = vec![parse("", "/* hint */ explain route SELECT 1;")];
        explain.extend(run(""));
        assert_eq!(
            own_statement_of(&explain, &state),
            Some(OwnStatement::ExplainRoute("SELECT 1".into()))
        );
    }

    #[test]
    fn anything_else_goes_to_a_server() {
        let state = SessionState::default();
        for sql in [
            "SHOW work_mem",
            "SELECT 1",
            "SET pgsplit.consistency = strong",
        ] {
            let mut unit = vec![parse("", sql)];
            unit.extend(run(""));
            assert_eq!(own_statement_of(&unit, &state), None, "{sql}");
        }
        // A statement the session never prepared, and a unit with nothing to show.
        assert_eq!(own_statement_of(&run("unknown"), &state), None);
        assert_eq!(
            own_statement_of(&[Frame::from_body(tag::SYNC, &[])], &state),
            None
        );
        for other in ["SHOW pgsplit.max_lag", "EXPLAIN ROUTE SELECT 1"] {
            let two = [parse("a", "SHOW pgsplit.consistency"), parse("b", other)];
            assert_eq!(own_statement_of(&two, &state), None, "{other}");
        }
    }
}
