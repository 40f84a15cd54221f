//! The client's socket: buffered reads split into frames, and an output buffer written out in
//! one go per batch.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::access::{Login, UserSlot};
use crate::config::{AccessRule, Timeouts};
use crate::protocol::{
    ErrorFields, Frame, ProtocolError, SqlState, StartupParams, Writer, try_frontend_frame,
};
use crate::tls::{ClientStream, ClientTls, MaybeTls};

use super::error::FrontendError;

pub struct ClientConn {
    pub stream: ClientStream,
    read_buf: BytesMut,
    pub out: BytesMut,
    max_message: usize,
    /// The client's address, for access rules (unspecified if the socket could not say).
    peer: IpAddr,
    /// The user's share of `limits.max_connections_per_user`, held while the session lasts.
    pub user_slot: Option<UserSlot>,
}

impl ClientConn {
    pub fn new(stream: TcpStream, max_message: usize) -> Self {
        let peer = stream
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        ClientConn {
            peer,
            user_slot: None,
            stream: MaybeTls::Plain(stream),
            read_buf: BytesMut::with_capacity(8 * 1024),
            out: BytesMut::with_capacity(8 * 1024),
            max_message,
        }
    }

    /// Encrypts when TLS is configured, else declines with 'N' and the client may go on in
    /// plain text (or give up, if it insists on TLS).
    pub async fn answer_ssl_request(&mut self, tls: &ClientTls) -> Result<(), FrontendError> {
        match tls.acceptor() {
            Some(acceptor) if !self.is_encrypted() => Ok(self.start_tls(acceptor).await?),
            _ => self.decline_encryption().await,
        }
    }

    /// Answers an SSLRequest or GSSENCRequest with 'N'.
    pub async fn decline_encryption(&mut self) -> Result<(), FrontendError> {
        self.stream
            .write_all(b"N")
            .await
            .map_err(|_| FrontendError::ClientGone)
    }

    /// With `tls.mode = "require"`, a client that starts up in plain text is refused.
    pub fn check_encryption(&self, tls: &ClientTls) -> Result<(), FrontendError> {
        if tls.required() && !self.is_encrypted() {
            return Err(FrontendError::refuse(
                SqlState::INVALID_AUTHORIZATION,
                "pgsplit accepts encrypted connections only: connect with TLS (sslmode=require)",
            ));
        }
        Ok(())
    }

    /// The access rules decide whether this login may go on to authentication (28000 if not).
    pub fn check_access(
        &self,
        rules: &[AccessRule],
        params: &StartupParams,
    ) -> Result<(), FrontendError> {
        let login = Login {
            user: params.user().unwrap_or_default(),
            database: params.database().unwrap_or_default(),
            address: self.peer,
        };
        crate::access::check(rules, &login)
            .map_err(|message| FrontendError::refuse(SqlState::INVALID_AUTHORIZATION, message))
    }

    /// Answers an SSLRequest with 'S' and runs the TLS handshake. Nothing the client sent
    /// before the handshake may be read as if it came through it (CVE-2021-23214), so bytes
    /// already buffered are a protocol violation.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> Result<(), ProtocolError> {
        if !self.read_buf.is_empty() {
            return Err(ProtocolError::BadStartupPacket(
                "data received before the TLS handshake".into(),
            ));
        }
        self.stream.write_all(b"S").await?;
        let tcp = self.stream.take_plain()?;
        let tls = acceptor.accept(tcp).await?;
        self.stream = MaybeTls::Tls(Box::new(tls));
        Ok(())
    }

    pub fn is_encrypted(&self) -> bool {
        self.stream.is_tls()
    }

    /// A whole message already in the buffer, if there is one.
    pub fn next_buffered_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        try_frontend_frame(&mut self.read_buf, self.max_message)
    }

    /// Reads more bytes. Ok(false) means the client closed its side. Cancel-safe.
    pub async fn fill(&mut self) -> Result<bool, ProtocolError> {
        let n = self.stream.read_buf(&mut self.read_buf).await?;
        if n == 0 && !self.read_buf.is_empty() {
            return Err(ProtocolError::UnexpectedEof);
        }
        Ok(n > 0)
    }

    /// The next message, waiting for it; None if the client closed between messages.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        loop {
            if let Some(frame) = self.next_buffered_frame()? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    pub fn writer(&mut self) -> Writer<'_> {
        Writer(&mut self.out)
    }

    /// Writes everything queued in the output buffer.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends an error and flushes; failures to write are ignored because the connection is
    /// about to close anyway.
    pub async fn send_error(&mut self, e: &ErrorFields) {
        self.writer().error_response(e);
        let _ = self.flush().await;
    }
}

/// How long pgsplit waits on a silent client: `idle_in_transaction` inside a transaction block,
/// `client_idle` outside one; nothing while the client waits on a server.
#[derive(Clone, Copy)]
pub struct IdleLimit {
    after: Option<Duration>,
    in_transaction: bool,
}

impl IdleLimit {
    /// No limit: the client waits on a server.
    pub const NONE: IdleLimit = IdleLimit {
        after: None,
        in_transaction: false,
    };

    /// The limit for a client that is to speak next, in a session whose transaction status
    /// is `transaction_status`.
    pub fn of(timeouts: &Timeouts, transaction_status: u8) -> Self {
        let in_transaction = transaction_status != b'I';
        let after = if in_transaction {
            timeouts.idle_in_transaction
        } else {
            timeouts.client_idle
        };
        IdleLimit {
            after: Some(after).filter(|d| !d.is_zero()),
            in_transaction,
        }
    }

    /// There is a limit to wait for.
    pub fn applies(&self) -> bool {
        self.after.is_some()
    }

    /// Resolves when the limit has passed; never when there is none.
    pub async fn elapsed(self) {
        match self.after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    }

    /// What the client is told, as PostgreSQL words it (FATAL, then the connection closes).
    pub fn error(self) -> FrontendError {
        if self.in_transaction {
            FrontendError::refuse(
                SqlState("25P03"),
                "terminating connection due to idle-in-transaction timeout",
            )
        } else {
            FrontendError::refuse(
                SqlState("57P05"),
                "terminating connection due to idle-session timeout",
            )
        }
    }
}
