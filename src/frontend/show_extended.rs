//! `SHOW pgsplit.*` over the extended protocol, as pgjdbc and psycopg 3 send every statement:
//! pgsplit answers each message of the unit as the server would (ParseComplete, BindComplete,
//! the descriptions, the row, CommandComplete) and records the statements and portals in the
//! session, so that the SHOW prepared once is answered at each later Bind too. A server has no
//! such setting (it would say "unrecognized configuration parameter").

use crate::fanout::Merged;
use crate::hint::{SessionCommand, Setting, session_command};
use crate::protocol::{Frame, messages, tag};

use super::client::ClientConn;
use super::error::FrontendError;
use super::scatter::{ExtendedRead, refusal, remember, statement_parse};
use super::session::Session;
use super::state::SessionState;

impl Session {
    /// Answers `frames` if it is an extended-protocol unit whose every statement is the same
    /// `SHOW pgsplit.*`; true if so.
    pub(super) async fn answer_extended_show(
        &mut self,
        client: &mut ClientConn,
        frames: &[Frame],
    ) -> Result<bool, FrontendError> {
        let Some(setting) = shown_setting(frames, &self.state) else {
            return Ok(false);
        };
        // Its answers come after the answers to what is already in flight.
        self.settle(client).await?;
        if setting == Setting::CausalToken
            && let Err(fields) = self.learn_every_unasked_position(client).await
        {
            self.fail_unit(client, FrontendError::Refused(fields), frames)
                .await?;
            return Ok(true);
        }
        let column = format!("pgsplit.{}", setting.key());
        let shown = Merged::one_text_value(&column, &self.show_setting(setting), "SHOW");
        let answer = match ExtendedRead::read(frames, &self.state)? {
            Some(unit) => unit.answer(&shown, None).map_err(refusal),
            None => return Ok(false),
        };
        if answer.is_ok() {
            remember(frames, &mut self.state);
        }
        self.answer_from_shards(client, answer, frames).await?;
        Ok(true)
    }
}

/// The setting every statement of the unit shows, if each is a `SHOW pgsplit.*` (parsed in
/// the unit, or earlier in the session) and there is at least one; None for anything else.
/// Most units are decided at their first message.
fn shown_setting(frames: &[Frame], state: &SessionState) -> Option<Setting> {
    let mut shown = None;
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
        let setting = match text.and_then(session_command) {
            Some(Ok(SessionCommand::Show { setting })) => setting,
            _ => return None,
        };
        if shown.is_some_and(|s| s != setting) {
            return None;
        }
        shown = Some(setting);
    }
    shown
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
    fn a_unit_of_show_pgsplit_statements_is_answered_by_pgsplit() {
        let mut state = SessionState::default();
        let mut unit = vec![parse("s1", "SHOW pgsplit.consistency")];
        unit.extend(run("s1"));
        assert_eq!(shown_setting(&unit, &state), Some(Setting::Consistency));
        // Prepared earlier: the Bind names it.
        state.statements.insert("s1".into(), unit[0].bytes.clone());
        assert_eq!(
            shown_setting(&run("s1"), &state),
            Some(Setting::Consistency)
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
            assert_eq!(shown_setting(&unit, &state), None, "{sql}");
        }
        // A statement the session never prepared, and a unit with nothing to show.
        assert_eq!(shown_setting(&run("unknown"), &state), None);
        assert_eq!(
            shown_setting(&[Frame::from_body(tag::SYNC, &[])], &state),
            None
        );
        let two = [
            parse("a", "SHOW pgsplit.consistency"),
            parse("b", "SHOW pgsplit.max_lag"),
        ];
        assert_eq!(shown_setting(&two, &state), None);
    }
}
