use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use super::ConnectSpec;
use crate::auth::AuthError;
use crate::protocol::{ErrorFields, ProtocolError, SqlState};

/// What can go wrong with a server connection. `Server` carries the server's own
/// ErrorResponse, which the client receives unchanged.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error("could not connect to server {node} ({addr}): {source}")]
    Connect {
        node: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("server {node} ({addr}) did not accept the connection within {after:?}")]
    ConnectTimeout {
        node: String,
        addr: String,
        after: Duration,
    },
    #[error("lost the connection to server {node} ({addr}): {reason}")]
    Lost {
        node: String,
        addr: String,
        reason: String,
    },
    #[error("the server answered with an error")]
    Server(Bytes),
    #[error("authenticating to the server failed: {0}")]
    Auth(#[from] AuthError),
    #[error("the server sent a malformed message: {0}")]
    Malformed(String),
}

impl From<ProtocolError> for BackendError {
    fn from(e: ProtocolError) -> Self {
        BackendError::Malformed(e.to_string())
    }
}

impl BackendError {
    pub(super) fn lost(spec: &ConnectSpec, e: std::io::Error) -> Self {
        BackendError::Lost {
            node: spec.node.clone(),
            addr: spec.addr.clone(),
            reason: e.to_string(),
        }
    }

    /// The server could not be reached or dropped the connection (as opposed to answering
    /// with an error): another node may do better.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            BackendError::Connect { .. }
                | BackendError::ConnectTimeout { .. }
                | BackendError::Lost { .. }
        )
    }

    /// The server asked for a password that pgsplit does not have: ask the client for it.
    pub fn needs_password(&self) -> bool {
        matches!(self, BackendError::Auth(AuthError::PasswordRequired))
    }

    /// In a sentence: the server's own SQLSTATE and message for `Server`, else what happened.
    pub fn reason(&self) -> String {
        if let BackendError::Server(raw) = self {
            let body = raw.get(5..).unwrap_or_default();
            if let (Some(code), Some(message)) = (
                crate::protocol::error_code(body),
                crate::protocol::error_field(body, b'M'),
            ) {
                return format!("{code}: {message}");
            }
        }
        self.to_string()
    }

    /// The ErrorResponse the client should see, unless the server already wrote one (`Server`).
    pub fn to_client_error(&self) -> ErrorFields {
        let code = match self {
            BackendError::Auth(e) => SqlState(e.sqlstate()),
            _ => SqlState::CONNECTION_FAILURE,
        };
        ErrorFields::error(code, self.to_string())
    }
}
