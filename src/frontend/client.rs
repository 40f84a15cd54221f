//! The client's socket: buffered reads split into frames, and an output buffer written out in
//! one go per batch.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::{ErrorFields, Frame, ProtocolError, Writer, try_frontend_frame};

pub struct ClientConn {
    pub stream: TcpStream,
    read_buf: BytesMut,
    pub out: BytesMut,
    max_message: usize,
}

impl ClientConn {
    pub fn new(stream: TcpStream, max_message: usize) -> Self {
        ClientConn {
            stream,
            read_buf: BytesMut::with_capacity(8 * 1024),
            out: BytesMut::with_capacity(8 * 1024),
            max_message,
        }
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
