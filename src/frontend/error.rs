use thiserror::Error;

use crate::backend::BackendError;
use crate::pool::PoolError;
use crate::protocol::{ErrorFields, ProtocolError, SqlState};

use super::client::ClientConn;

/// Why a session ends early, and what (if anything) the client is told.
#[derive(Debug, Error)]
pub enum FrontendError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// pgsplit refuses the client with this error (FATAL: the connection closes).
    #[error("{}", .0.message)]
    Refused(ErrorFields),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the client closed the connection")]
    ClientGone,
}

impl FrontendError {
    pub fn refuse(code: SqlState, message: impl Into<String>) -> Self {
        FrontendError::Refused(ErrorFields::fatal(code, message))
    }

    /// Tells the client why its connection ends, where anybody is listening.
    pub async fn report(&self, client: &mut ClientConn) {
        match self {
            FrontendError::Protocol(e) if e.peer_can_hear() => {
                client
                    .send_error(&ErrorFields::fatal(e.sqlstate(), e.to_string()))
                    .await;
            }
            FrontendError::Refused(fields) => client.send_error(fields).await,
            FrontendError::Backend(BackendError::Server(raw)) => {
                // The server's own words (wrong password, unknown database...) reach the client
                // exactly as the server sent them.
                client.out.extend_from_slice(raw);
                let _ = client.flush().await;
            }
            FrontendError::Backend(e) => client.send_error(&fatal(e.to_client_error())).await,
            FrontendError::Protocol(_) | FrontendError::ClientGone => {}
        }
    }
}

impl From<PoolError> for FrontendError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Connect(e) => FrontendError::Backend(e),
            e @ PoolError::Exhausted { .. } => {
                FrontendError::refuse(SqlState::TOO_MANY_CONNECTIONS, e.to_string())
            }
        }
    }
}

fn fatal(mut fields: ErrorFields) -> ErrorFields {
    fields.severity = "FATAL";
    fields
}
