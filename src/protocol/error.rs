use thiserror::Error;

/// SQLSTATE codes pgsplit raises itself (PostgreSQL's own codes, appendix A of its manual).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlState(pub &'static str);

impl SqlState {
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    pub const CONNECTION_FAILURE: SqlState = SqlState("08006");
    pub const CANNOT_CONNECT_NOW: SqlState = SqlState("57P03");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    pub const INVALID_AUTHORIZATION: SqlState = SqlState("28000");
    pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
    pub const ADMIN_SHUTDOWN: SqlState = SqlState("57P01");
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState("54000");
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState("55000");
    pub const IN_FAILED_SQL_TRANSACTION: SqlState = SqlState("25P02");
    pub const CANT_CHANGE_RUNTIME_PARAM: SqlState = SqlState("55P02");
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
    pub const UNDEFINED_OBJECT: SqlState = SqlState("42704");
    pub const WARNING: SqlState = SqlState("01000");
}

/// A malformed or unacceptable message from a peer. Each variant knows its SQLSTATE, and its
/// Display is the sentence the client reads.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("invalid length {len} in {what}: must be between {min} and {max} bytes")]
    InvalidLength {
        what: &'static str,
        len: i64,
        min: usize,
        max: usize,
    },
    #[error("invalid frontend message type {code} {shown}", code = .0, shown = printable(*.0))]
    UnknownMessageType(u8),
    #[error("invalid startup packet: {0}")]
    BadStartupPacket(String),
    #[error("unsupported frontend protocol {major}.{minor}: pgsplit supports 3.0")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("connection closed by the peer in the middle of a message")]
    UnexpectedEof,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    pub fn sqlstate(&self) -> SqlState {
        match self {
            ProtocolError::UnsupportedProtocol { .. } => SqlState::FEATURE_NOT_SUPPORTED,
            ProtocolError::Io(_) | ProtocolError::UnexpectedEof => SqlState::CONNECTION_FAILURE,
            ProtocolError::InvalidLength { .. }
            | ProtocolError::UnknownMessageType(_)
            | ProtocolError::BadStartupPacket(_) => SqlState::PROTOCOL_VIOLATION,
        }
    }

    /// Whether it is worth telling the peer: after a read error there is nobody to tell.
    pub fn peer_can_hear(&self) -> bool {
        !matches!(self, ProtocolError::Io(_) | ProtocolError::UnexpectedEof)
    }
}

/// A tag byte as a reader would want to see it: the character if printable, else its code.
fn printable(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", char::from(tag))
    } else {
        format!("0x{tag:02x}")
    }
}
