//! Authentication logic, both directions, with no I/O.
//!
//! * Server side (a client authenticating to pgsplit): a configured user's password is held as a
//!   [`StoredSecret`]; [`md5_verify`], [`verify_cleartext`] and the [`ScramServer`] state machine
//!   check what the client sends.
//! * Client side (pgsplit authenticating to a PostgreSQL server): [`ServerAuth`] turns each
//!   AuthenticationRequest the server sends into the message to answer with.
//!
//! The I/O code moves the bytes; everything here works on message bodies, so it can be tested
//! without sockets. Errors are [`AuthError`]s, which know their SQLSTATE.

mod client;
mod crypto;
mod md5;
mod passthrough;
mod scram;
mod secret;
mod wire;

use thiserror::Error;

use crate::protocol::SqlState;

pub use client::ServerAuth;
pub use crypto::constant_time_eq;
pub use md5::{md5_expected_response, md5_verify, verify_cleartext};
pub use passthrough::ScramKeys;
pub use postgres_protocol::authentication::sasl::{SCRAM_SHA_256, SCRAM_SHA_256_PLUS};
pub use scram::ScramServer;
pub use secret::{ScramVerifier, StoredSecret};
pub use wire::{parse_password_message, parse_sasl_initial_response};

/// The AuthenticationRequest codes (the i32 after an 'R' message's length).
pub mod code {
    pub const OK: i32 = 0;
    pub const KERBEROS_V5: i32 = 2;
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    pub const MD5_PASSWORD: i32 = 5;
    pub const SCM_CREDENTIAL: i32 = 6;
    pub const GSS: i32 = 7;
    pub const GSS_CONTINUE: i32 = 8;
    pub const SSPI: i32 = 9;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

/// Why an authentication exchange failed. The Display text never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The peer proved it does not know the password.
    #[error("password authentication failed")]
    WrongPassword,
    /// A password was asked for and there is none to give (or the one given was empty).
    #[error("no password supplied")]
    PasswordRequired,
    /// A message that does not follow the protocol.
    #[error("malformed authentication message: {0}")]
    Malformed(String),
    /// A well-formed request for something pgsplit does not implement.
    #[error("{0}")]
    Unsupported(String),
}

impl AuthError {
    /// The SQLSTATE to report this error with, as PostgreSQL would.
    pub fn sqlstate(&self) -> &'static str {
        let state = match self {
            AuthError::WrongPassword | AuthError::PasswordRequired => SqlState::INVALID_PASSWORD,
            AuthError::Malformed(_) => SqlState::PROTOCOL_VIOLATION,
            // PostgreSQL reports unsupported SCRAM features (authzid, extensions) as 0A000;
            // 28000 is for "no such user / not allowed", which the I/O code decides, not us.
            AuthError::Unsupported(_) => SqlState::FEATURE_NOT_SUPPORTED,
        };
        state.0
    }
}

/// Shorthand for the most common error.
fn malformed(message: impl Into<String>) -> AuthError {
    AuthError::Malformed(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        assert_eq!(AuthError::WrongPassword.sqlstate(), "28P01");
        assert_eq!(AuthError::PasswordRequired.sqlstate(), "28P01");
        assert_eq!(malformed("x").sqlstate(), "08P01");
        assert_eq!(AuthError::Unsupported("x".into()).sqlstate(), "0A000");
    }
}
