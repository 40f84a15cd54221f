//! A read of every shard sent over the extended protocol (`[Parse] Bind [Describe] Execute
//! Sync`, as drivers send prepared statements): what each shard is sent, and the answer the
//! client's own messages ask for, built from the merged rows.
//!
//! Each shard gets the planned statement as the unnamed statement, with the client's parameter
//! types and its Bind's parameter formats and values, and is asked for text results (which the
//! merge reads); the client's binary result formats are applied to the merged values after.

use bytes::{BufMut, Bytes, BytesMut};

use crate::fanout::{Merged, Refusal, apply_formats};
use crate::protocol::{Frame, SqlState, messages, read_cstr, tag};

use super::super::error::FrontendError;
use super::super::state::SessionState;
use super::{nul_terminated, put_message};

const PARSE_COMPLETE: u8 = b'1';
const BIND_COMPLETE: u8 = b'2';
const CLOSE_COMPLETE: u8 = b'3';
const PARAMETER_DESCRIPTION: u8 = b't';
const ROW_DESCRIPTION: u8 = b'T';
const NO_DATA: u8 = b'n';
const DATA_ROW: u8 = b'D';
const COMMAND_COMPLETE: u8 = b'C';

/// The client's extended-protocol unit for a read of every shard (or another answer pgsplit
/// gives itself, see `extended_answers`).
pub(in crate::frontend) struct ExtendedRead<'a> {
    frames: &'a [Frame],
    /// The statement's parameter types as its Parse gave them (count, then oids).
    parameter_types: &'a [u8],
    /// The Bind's parameter formats and values, as the client sent them.
    parameters: &'a [u8],
    /// The Bind's result formats: none (all text), one for every column, or one per column.
    result_formats: Vec<i16>,
}

impl<'a> ExtendedRead<'a> {
    /// The unit's Bind and the statement it binds (parsed in the unit or earlier in the
    /// session); None for a simple Query. A unit with no Bind only parses or describes.
    pub(in crate::frontend) fn read(
        frames: &'a [Frame],
        state: &'a SessionState,
    ) -> Result<Option<ExtendedRead<'a>>, FrontendError> {
        if frames.iter().any(|f| f.tag == tag::QUERY) {
            return Ok(None);
        }
        let malformed = || {
            FrontendError::refuse(
                SqlState::PROTOCOL_VIOLATION,
                "malformed Bind or Parse message for a read of every shard",
            )
        };
        let Some(bind) = frames.iter().find(|f| f.tag == tag::BIND) else {
            return Ok(Some(ExtendedRead {
                frames,
                parameter_types: &[0, 0],
                parameters: &[0, 0, 0, 0],
                result_formats: Vec::new(),
            }));
        };
        let (_, statement) = messages::bind_names(bind.body()).ok_or_else(malformed)?;
        let parse = statement_parse(frames, state, statement).ok_or_else(malformed)?;
        let (_, parameter_types) =
            read_cstr(messages::parse_definition(parse)).ok_or_else(malformed)?;
        let arguments = messages::bind_arguments(bind.body()).ok_or_else(malformed)?;
        let (parameters, result_formats) = split_bind_arguments(arguments).ok_or_else(malformed)?;
        Ok(Some(ExtendedRead {
            frames,
            parameter_types,
            parameters,
            result_formats,
        }))
    }

    /// What a shard is sent: the planned statement as its unnamed statement, described (for
    /// the RowDescription the merge reads and the parameter types), bound with the client's
    /// parameters and text results, executed, synced.
    pub(super) fn shard_messages(&self, shard_sql: &str) -> BytesMut {
        let mut out = BytesMut::new();
        let mut parse = BytesMut::new();
        parse.put_u8(0);
        parse.put_slice(&nul_terminated(shard_sql));
        parse.put_slice(self.parameter_types);
        put_message(&mut out, tag::PARSE, &parse);
        put_message(&mut out, tag::DESCRIBE, b"S\0");
        let mut bind = BytesMut::from(&b"\0\0"[..]);
        bind.put_slice(self.parameters);
        bind.put_i16(0); // every result column in text
        put_message(&mut out, tag::BIND, &bind);
        put_message(&mut out, tag::EXECUTE, &[0, 0, 0, 0, 0]);
        put_message(&mut out, tag::SYNC, &[]);
        out
    }

    /// The answers to the client's messages, in order (without the ReadyForQuery): complete
    /// messages for Parse, Bind and Close, descriptions for Describe (`parameters` is a shard's
    /// ParameterDescription), the merged rows for Execute.
    pub(in crate::frontend) fn answer(
        &self,
        merged: &Merged,
        parameters: Option<&Bytes>,
    ) -> Result<BytesMut, Refusal> {
        let (portal_description, rows) = if merged.row_description.is_empty() {
            (Bytes::new(), Vec::new()) // a command: no rows, no formats to apply
        } else {
            apply_formats(merged, &self.result_formats)?
        };
        let mut out = BytesMut::new();
        for frame in self.frames {
            match frame.tag {
                tag::PARSE => put_message(&mut out, PARSE_COMPLETE, &[]),
                tag::BIND => put_message(&mut out, BIND_COMPLETE, &[]),
                tag::CLOSE => put_message(&mut out, CLOSE_COMPLETE, &[]),
                tag::DESCRIBE => match messages::target(frame.body()) {
                    Some((b'S', _)) => {
                        let none = Bytes::from_static(&[0, 0]);
                        put_message(&mut out, PARAMETER_DESCRIPTION, parameters.unwrap_or(&none));
                        put_description(&mut out, &merged.row_description);
                    }
                    _ => put_description(&mut out, &portal_description),
                },
                tag::EXECUTE => {
                    let limit = messages::execute_message(frame.body()).map_or(0, |(_, n)| n);
                    if limit > 0 && usize::try_from(limit).is_ok_and(|n| n < rows.len()) {
                        return Err(Refusal {
                            code: SqlState::FEATURE_NOT_SUPPORTED,
                            message: format!(
                                "a read of every shard returns all its {} rows at once; fetching \
                                 them {limit} at a time (Execute with a row limit) is not supported",
                                rows.len()
                            ),
                        });
                    }
                    for row in &rows {
                        put_message(&mut out, DATA_ROW, row);
                    }
                    put_message(
                        &mut out,
                        COMMAND_COMPLETE,
                        &nul_terminated(&merged.command_tag),
                    );
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A RowDescription, or NoData for a statement that returns no rows (an empty description).
fn put_description(out: &mut BytesMut, description: &[u8]) {
    if description.is_empty() {
        put_message(out, NO_DATA, &[]);
    } else {
        put_message(out, ROW_DESCRIPTION, description);
    }
}

/// The Parse body of statement `name`: its Parse in this unit, else the session's.
pub(in crate::frontend) fn statement_parse<'a>(
    frames: &'a [Frame],
    state: &'a SessionState,
    name: &str,
) -> Option<&'a [u8]> {
    parse_in_unit(frames, name).or_else(|| state.statements.get(name).and_then(|p| p.get(5..)))
}

/// The body of the unit's Parse of statement `name`, if the unit parses it.
pub(in crate::frontend) fn parse_in_unit<'a>(frames: &'a [Frame], name: &str) -> Option<&'a [u8]> {
    frames
        .iter()
        .filter(|f| f.tag == tag::PARSE)
        .map(|f| f.body())
        .find(|body| messages::parse_message(body).is_some_and(|(n, _)| n == name))
}

/// Records what the client's messages did to its session, as the server would have: the
/// statements it parsed, the portals it bound, what it closed.
pub(in crate::frontend) fn remember(frames: &[Frame], state: &mut SessionState) {
    for frame in frames {
        match frame.tag {
            tag::PARSE => {
                if let Some((name, _)) = messages::parse_message(frame.body()) {
                    state
                        .statements
                        .insert(name.to_string(), frame.bytes.clone());
                }
            }
            tag::BIND => {
                if let Some((portal, statement)) = messages::bind_names(frame.body()) {
                    state
                        .portals
                        .insert(portal.to_string(), statement.to_string());
                }
            }
            tag::CLOSE => match messages::target(frame.body()) {
                Some((b'S', name)) => {
                    state.statements.remove(name);
                }
                Some((_, portal)) => {
                    state.portals.remove(portal);
                }
                None => {}
            },
            _ => {}
        }
    }
}

/// A Bind's arguments (after its names) split into the parameter part (formats and values,
/// as sent) and the result formats. None if a length runs past the end.
fn split_bind_arguments(arguments: &[u8]) -> Option<(&[u8], Vec<i16>)> {
    let count = |at: usize| -> Option<usize> {
        let bytes = arguments.get(at..at + 2)?;
        usize::try_from(i16::from_be_bytes([bytes[0], bytes[1]])).ok()
    };
    let mut at = 2 + 2 * count(0)?;
    let values = count(at)?;
    at += 2;
    for _ in 0..values {
        let len = arguments.get(at..at + 4)?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4 + usize::try_from(len).unwrap_or(0); // -1: NULL, no bytes
    }
    let parameters = arguments.get(..at)?;
    let formats = count(at)?;
    let result_formats = (0..formats)
        .map(|i| {
            let bytes = arguments.get(at + 2 + 2 * i..at + 4 + 2 * i)?;
            Some(i16::from_be_bytes([bytes[0], bytes[1]]))
        })
        .collect::<Option<Vec<i16>>>()?;
    Some((parameters, result_formats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Frame {
        Frame::from_body(tag, body)
    }

    /// The tags and bodies of the messages in `out`.
    fn messages(out: &[u8]) -> Vec<(u8, &[u8])> {
        let mut found = Vec::new();
        let mut rest = out;
        while let [tag, a, b, c, d, ..] = *rest {
            let len = i32::from_be_bytes([a, b, c, d]) as usize;
            found.push((tag, &rest[5..1 + len]));
            rest = &rest[1 + len..];
        }
        found
    }

    fn tags(out: &[u8]) -> Vec<u8> {
        messages(out).iter().map(|(tag, _)| *tag).collect()
    }

    #[test]
    fn answers_each_client_message_in_order() {
        let mut parse = b"s1\0SELECT count(*) FROM t WHERE v > $1\0".to_vec();
        parse.extend_from_slice(&[0, 1, 0, 0, 0, 23]); // one int4 parameter
        // portal "", statement "s1", formats [0], values ["5"], result formats [1]
        let bind = b"\0s1\0\0\x01\0\0\0\x01\0\0\0\x015\0\x01\0\x01";
        let frames = [
            frame(tag::PARSE, &parse),
            frame(tag::DESCRIBE, b"Ss1\0"),
            frame(tag::BIND, bind),
            frame(tag::DESCRIBE, b"P\0"),
            frame(tag::EXECUTE, &[0, 0, 0, 0, 0]),
            frame(tag::SYNC, &[]),
        ];
        let mut state = SessionState::default();
        let unit = ExtendedRead::read(&frames, &state)
            .expect("well formed")
            .expect("an extended unit");
        assert_eq!(unit.result_formats, vec![1]);
        assert_eq!(tags(&unit.shard_messages("SELECT 1")), b"PDBES");
        let merged = Merged {
            // one column "count", int8, text format
            row_description: Bytes::from_static(
                b"\0\x01count\0\0\0\0\0\0\0\0\0\0\x14\0\x08\xff\xff\xff\xff\0\0",
            ),
            rows: vec![Bytes::from_static(b"\0\x01\0\0\0\x0242")],
            command_tag: "SELECT 1".into(),
        };
        let parameters = Bytes::from_static(&[0, 1, 0, 0, 0, 23]);
        let out = unit.answer(&merged, Some(&parameters)).expect("an answer");
        assert_eq!(tags(&out), b"1tT2TDC");
        let (_, row) = messages(&out)[5];
        assert_eq!(&row[6..], 42i64.to_be_bytes(), "int8 in binary");
        let (_, portal_description) = messages(&out)[4];
        assert_eq!(portal_description.last(), Some(&1), "described as binary");
        remember(&frames, &mut state);
        assert!(state.statements.contains_key("s1"));
        assert_eq!(state.portals.get("").map(String::as_str), Some("s1"));
    }

    #[test]
    fn a_command_is_described_by_no_data() {
        let frames = [
            frame(tag::PARSE, b"\0COMMIT\0\0\0"),
            frame(tag::DESCRIBE, b"S\0"),
            frame(tag::BIND, b"\0\0\0\0\0\0\0\x01\0\x01"),
            frame(tag::DESCRIBE, b"P\0"),
            frame(tag::EXECUTE, &[0, 0, 0, 0, 0]),
            frame(tag::SYNC, &[]),
        ];
        let state = SessionState::default();
        let unit = ExtendedRead::read(&frames, &state).expect("well formed");
        let out = unit
            .expect("an extended unit")
            .answer(&Merged::command("ROLLBACK"), None);
        let out = out.expect("an answer, binary results asked or not");
        assert_eq!(tags(&out), b"1tn2nC");
        assert_eq!(messages(&out)[5].1, b"ROLLBACK\0");
    }

    #[test]
    fn splits_bind_arguments_at_the_result_formats() {
        // formats [1], values [int4 42, NULL], result formats [1, 0]
        let arguments = [
            0, 1, 0, 1, 0, 2, 0, 0, 0, 4, 0, 0, 0, 42, 0xff, 0xff, 0xff, 0xff, 0, 2, 0, 1, 0, 0,
        ];
        let (parameters, formats) = split_bind_arguments(&arguments).expect("valid");
        assert_eq!(parameters, &arguments[..18]);
        assert_eq!(formats, vec![1, 0]);
        assert_eq!(
            split_bind_arguments(&[0, 0, 0, 0, 0, 0]),
            Some((&[0u8, 0, 0, 0][..], vec![]))
        );
        assert!(
            split_bind_arguments(&arguments[..20]).is_none(),
            "truncated"
        );
        assert!(
            split_bind_arguments(&[0, 0, 0, 1, 0, 0, 0, 9, 1]).is_none(),
            "value too long"
        );
    }
}
