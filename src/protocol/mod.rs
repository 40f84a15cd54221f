//! The PostgreSQL wire protocol as pgsplit needs it: framing with a size cap per phase, the
//! startup packet, and writers for the few messages pgsplit sends on its own behalf.
//!
//! Everything else travels as raw frames: pgsplit reads a message's tag and length, and passes
//! the bytes on untouched.

mod error;
mod framing;
pub mod messages;
mod startup;
mod writers;

pub use error::{ProtocolError, SqlState};
pub use framing::{Frame, MAX_BACKEND_MESSAGE, try_backend_frame, try_frontend_frame};
pub use startup::{
    CancelKey, MAX_STARTUP_PACKET, StartupPacket, StartupParams, read_startup_packet,
};
pub use writers::{ErrorFields, Writer, error_code, error_field, with_severity};

/// Frontend message tags pgsplit accepts once a session is established.
pub mod tag {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const TERMINATE: u8 = b'X';
    pub const PASSWORD: u8 = b'p';

    // Backend tags pgsplit looks at while relaying.
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const DATA_ROW: u8 = b'D';
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
}

/// Reads a NUL-terminated string from the front of `buf`, returning it and the rest.
pub fn read_cstr(buf: &[u8]) -> Option<(&str, &[u8])> {
    // The standard library's search for the NUL reads a word at a time, not a byte: every
    // statement's text goes through here twice.
    let bytes = std::ffi::CStr::from_bytes_until_nul(buf).ok()?.to_bytes();
    let text = std::str::from_utf8(bytes).ok()?;
    Some((text, &buf[bytes.len() + 1..]))
}

#[cfg(test)]
mod tests {
    use super::read_cstr;

    #[test]
    fn cstr_needs_terminator_and_utf8() {
        assert_eq!(read_cstr(b"ab\0cd"), Some(("ab", &b"cd"[..])));
        assert_eq!(read_cstr(b"ab"), None);
        assert_eq!(read_cstr(b"\xff\0"), None);
    }
}
