//! Writers for the backend messages pgsplit sends on its own behalf. Server answers are never
//! rebuilt: they travel as the frames the server sent.

use std::fmt::{self, Write as _};

use bytes::{BufMut, BytesMut};

use super::{CancelKey, SqlState};

/// The fields of an ErrorResponse or NoticeResponse that pgsplit fills in.
#[derive(Debug, Clone)]
pub struct ErrorFields {
    /// ERROR, FATAL, WARNING, NOTICE...
    pub severity: &'static str,
    pub code: SqlState,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ErrorFields {
    pub fn error(code: SqlState, message: impl Into<String>) -> Self {
        Self::new("ERROR", code, message)
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self::new("WARNING", SqlState::WARNING, message)
    }

    pub fn fatal(code: SqlState, message: impl Into<String>) -> Self {
        Self::new("FATAL", code, message)
    }

    fn new(severity: &'static str, code: SqlState, message: impl Into<String>) -> Self {
        ErrorFields {
            severity,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Appends backend messages to a buffer that the caller writes out in one go.
pub struct Writer<'a>(pub &'a mut BytesMut);

impl Writer<'_> {
    /// Writes `tag`, a length placeholder, the body from `f`, then patches the length.
    fn message(&mut self, tag: u8, f: impl FnOnce(&mut BytesMut)) {
        let start = self.0.len();
        self.0.put_u8(tag);
        self.0.put_i32(0);
        f(self.0);
        let len = (self.0.len() - start - 1) as i32;
        self.0[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    }

    pub fn error_response(&mut self, e: &ErrorFields) {
        self.fields_message(b'E', e);
    }

    pub fn notice_response(&mut self, e: &ErrorFields) {
        self.fields_message(b'N', e);
    }

    fn fields_message(&mut self, tag: u8, e: &ErrorFields) {
        self.message(tag, |b| {
            put_field(b, b'S', e.severity);
            put_field(b, b'V', e.severity);
            put_field(b, b'C', e.code.0);
            put_field(b, b'M', &e.message);
            if let Some(detail) = &e.detail {
                put_field(b, b'D', detail);
            }
            if let Some(hint) = &e.hint {
                put_field(b, b'H', hint);
            }
            b.put_u8(0);
        });
    }

    /// AuthenticationOk (0), CleartextPassword (3), MD5Password (5 + salt), SASL (10), ...
    pub fn authentication(&mut self, code: i32, payload: &[u8]) {
        self.message(b'R', |b| {
            b.put_i32(code);
            b.put_slice(payload);
        });
    }

    /// AuthenticationSASL offering the mechanisms given.
    pub fn authentication_sasl(&mut self, mechanisms: &[&str]) {
        self.message(b'R', |b| {
            b.put_i32(10);
            for m in mechanisms {
                put_cstr(b, m);
            }
            b.put_u8(0);
        });
    }

    pub fn parameter_status(&mut self, name: &str, value: impl fmt::Display) {
        self.message(b'S', |b| {
            put_cstr(b, name);
            put_display_cstr(b, value);
        });
    }

    pub fn backend_key_data(&mut self, key: CancelKey) {
        self.message(b'K', |b| {
            b.put_i32(key.pid);
            b.put_i32(key.secret);
        });
    }

    /// A message with no body: ParseComplete ('1'), BindComplete ('2'), NoData ('n'), ...
    pub fn bodiless(&mut self, tag: u8) {
        self.message(tag, |_| {});
    }

    pub fn ready_for_query(&mut self, status: u8) {
        self.message(b'Z', |b| b.put_u8(status));
    }

    /// RowDescription for text columns of type `text` (what pgsplit's own answers use).
    pub fn row_description(&mut self, columns: &[&str]) {
        const TEXT_OID: i32 = 25;
        self.message(b'T', |b| {
            b.put_i16(columns.len() as i16);
            for name in columns {
                put_cstr(b, name);
                b.put_i32(0); // table oid
                b.put_i16(0); // column number
                b.put_i32(TEXT_OID);
                b.put_i16(-1); // variable length
                b.put_i32(-1); // type modifier
                b.put_i16(0); // text format
            }
        });
    }

    pub fn data_row(&mut self, values: &[&str]) {
        self.message(b'D', |b| {
            b.put_i16(values.len() as i16);
            for v in values {
                b.put_i32(v.len() as i32);
                b.put_slice(v.as_bytes());
            }
        });
    }

    pub fn command_complete(&mut self, tag: &str) {
        self.message(b'C', |b| put_cstr(b, tag));
    }

    /// Tells a client asking for protocol 3.x (x > 0) or `_pq_.` options what we speak.
    pub fn negotiate_protocol_version(&mut self, minor: i32, unknown_options: &[&str]) {
        self.message(b'v', |b| {
            b.put_i32(minor);
            b.put_i32(unknown_options.len() as i32);
            for o in unknown_options {
                put_cstr(b, o);
            }
        });
    }
}

fn put_field(b: &mut BytesMut, code: u8, value: &str) {
    b.put_u8(code);
    put_cstr(b, value);
}

/// `value` as a C string.
fn put_cstr(b: &mut BytesMut, value: &str) {
    put_cstr_with(b, |b| b.extend_from_slice(value.as_bytes()));
}

/// `value` as a C string, formatted straight into the buffer (a causal token goes out with
/// every committed write: no String in between).
fn put_display_cstr(b: &mut BytesMut, value: impl fmt::Display) {
    // Writing into a BytesMut cannot fail; a Display that fails leaves what it wrote.
    put_cstr_with(b, |b| {
        let _ = write!(b, "{value}");
    });
}

/// What `write` puts in the buffer, made a C string.
fn put_cstr_with(b: &mut BytesMut, write: impl FnOnce(&mut BytesMut)) {
    let start = b.len();
    write(b);
    // A NUL inside would end the string early and desynchronise the client's parser.
    if b[start..].contains(&0) {
        let kept: Vec<u8> = b[start..].iter().copied().filter(|&c| c != 0).collect();
        b.truncate(start);
        b.extend_from_slice(&kept);
    }
    b.put_u8(0);
}

/// A copy of an ErrorResponse or NoticeResponse (whole frame) with another severity, e.g. a
/// server's FATAL at connect time turned into an ERROR for a statement of a live session.
pub fn with_severity(frame: &[u8], severity: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(frame.len() + 8);
    let tag = frame.first().copied().unwrap_or(b'E');
    Writer(&mut out).message(tag, |b| {
        let mut body = frame.get(5..).unwrap_or_default();
        while let Some((&code, rest)) = body.split_first() {
            let Some((value, after)) = super::read_cstr(rest) else {
                break;
            };
            let value = if matches!(code, b'S' | b'V') {
                severity
            } else {
                value
            };
            put_field(b, code, value);
            body = after;
        }
        b.put_u8(0);
    });
    out
}

/// Reads the SQLSTATE (field 'C') of an ErrorResponse or NoticeResponse body.
pub fn error_code(body: &[u8]) -> Option<&str> {
    error_field(body, b'C')
}

/// Reads one field of an ErrorResponse or NoticeResponse body.
pub fn error_field(mut body: &[u8], code: u8) -> Option<&str> {
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            return None;
        }
        let (value, after) = super::read_cstr(rest)?;
        if field == code {
            return Some(value);
        }
        body = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::try_backend_frame;

    #[test]
    fn error_response_round_trips_through_the_framer() {
        let mut buf = BytesMut::new();
        Writer(&mut buf).error_response(&ErrorFields::error(
            SqlState::PROTOCOL_VIOLATION,
            "bad\0thing",
        ));
        let frame = try_backend_frame(&mut buf).unwrap().unwrap();
        assert_eq!(frame.tag, b'E');
        assert_eq!(error_code(frame.body()), Some("08P01"));
        assert_eq!(error_field(frame.body(), b'M'), Some("badthing"));
        assert!(buf.is_empty());
    }
}
