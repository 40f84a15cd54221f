//! One connection to a PostgreSQL server: opening and authenticating it, and reading its
//! messages as raw frames for the relay.

mod error;
mod settings;

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::auth::ServerAuth;
use crate::config::address;
use crate::protocol::{CancelKey, Frame, read_cstr, tag, try_backend_frame};
use crate::tls::{MaybeTls, ServerStream, ServerTls};

pub use error::BackendError;
pub use settings::Settings;

/// Where to connect and as whom.
#[derive(Clone)]
pub struct ConnectSpec {
    /// Node name, for messages and metrics.
    pub node: String,
    /// "host:port".
    pub addr: String,
    /// StartupMessage parameters, `user` and `database` included.
    pub startup: Vec<(String, String)>,
    pub password: Option<String>,
    /// A client's SCRAM proof to log in with (SCRAM pass-through).
    pub scram_keys: Option<crate::auth::ScramKeys>,
    /// A role's stored md5 hash to answer an md5 challenge with (md5 pass-through).
    pub md5_hash: Option<String>,
    pub timeout: Duration,
    /// Whether and how to encrypt the connection.
    pub tls: ServerTls,
}

impl std::fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectSpec")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .field("startup", &self.startup)
            .field("tls", &self.tls.mode)
            .finish_non_exhaustive()
    }
}

/// An authenticated server connection, idle and ready for a query when handed out.
pub struct ServerConn {
    stream: ServerStream,
    read_buf: BytesMut,
    pub node: String,
    /// Shared with the session's cancel key, which points at it while the session runs here.
    pub addr: std::sync::Arc<str>,
    /// The server process and secret: what a CancelRequest for it must carry.
    pub key: CancelKey,
    /// Every ParameterStatus the server reported, kept current while relaying.
    pub params: HashMap<String, String>,
    /// Settings applied to this connection with SET (name -> the SQL that set it). Connections
    /// open with none, so RESET returns a setting to the server's default.
    pub settings: Settings,
    /// Protocol-level prepared statements on this connection: name -> hash of the definition.
    /// foldhash: every extended-protocol unit looks up or replaces its statement here.
    pub prepared: foldhash::HashMap<String, u64>,
    /// SQL-level prepared statements on this connection: name -> the PREPARE statement.
    pub sql_prepared: HashMap<String, String>,
    /// Transaction status from the last ReadyForQuery: b'I', b'T' or b'E'.
    pub tx_status: u8,
}

impl ServerConn {
    /// Connects, authenticates and waits for the first ReadyForQuery, all within `spec.timeout`.
    pub async fn connect(spec: &ConnectSpec) -> Result<ServerConn, BackendError> {
        match tokio::time::timeout(spec.timeout, Self::connect_unbounded(spec)).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::ConnectTimeout {
                node: spec.node.clone(),
                addr: spec.addr.clone(),
                after: spec.timeout,
            }),
        }
    }

    async fn connect_unbounded(spec: &ConnectSpec) -> Result<ServerConn, BackendError> {
        let stream = open_socket(&spec.addr)
            .await
            .map_err(|source| BackendError::Connect {
                node: spec.node.clone(),
                addr: spec.addr.clone(),
                source,
            })?;
        let mut conn = ServerConn {
            stream: negotiate_tls(stream, spec).await?,
            read_buf: BytesMut::with_capacity(16 * 1024),
            node: spec.node.clone(),
            addr: spec.addr.as_str().into(),
            key: CancelKey { pid: 0, secret: 0 },
            params: HashMap::new(),
            settings: Settings::default(),
            prepared: Default::default(),
            sql_prepared: HashMap::new(),
            tx_status: b'I',
        };
        conn.send_startup(spec).await?;
        conn.authenticate(spec).await?;
        conn.read_until_ready().await?;
        Ok(conn)
    }

    async fn send_startup(&mut self, spec: &ConnectSpec) -> Result<(), BackendError> {
        let mut buf = BytesMut::new();
        let params = spec.startup.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        postgres_protocol::message::frontend::startup_message(params, &mut buf)
            .map_err(|e| BackendError::lost(spec, e))?;
        self.write_all(&buf).await
    }

    /// Answers the server's authentication requests until AuthenticationOk.
    async fn authenticate(&mut self, spec: &ConnectSpec) -> Result<(), BackendError> {
        let user = spec
            .startup
            .iter()
            .find(|(k, _)| k == "user")
            .map_or("", |(_, v)| v.as_str());
        let mut auth = ServerAuth::new(user, spec.password.as_deref())
            .with_scram_keys(spec.scram_keys.clone())
            .with_md5_hash(spec.md5_hash.clone());
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                tag::AUTHENTICATION => {
                    let body = frame.body();
                    let Some(code) = body
                        .get(..4)
                        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    else {
                        return Err(BackendError::Malformed(
                            "authentication request too short".into(),
                        ));
                    };
                    // AuthenticationOk goes through `respond` too: it refuses a server that
                    // claims success before proving it knows the password (SCRAM).
                    if let Some((reply_tag, reply)) = auth.respond(code, &body[4..])? {
                        self.write_message(reply_tag, &reply).await?;
                    }
                    if code == crate::auth::code::OK {
                        return Ok(());
                    }
                }
                tag::ERROR_RESPONSE => return Err(BackendError::Server(frame.bytes)),
                tag::NEGOTIATE_PROTOCOL_VERSION => {}
                other => {
                    return Err(BackendError::Malformed(format!(
                        "unexpected message '{}' during authentication",
                        char::from(other)
                    )));
                }
            }
        }
    }

    /// Collects ParameterStatus and BackendKeyData up to the first ReadyForQuery.
    async fn read_until_ready(&mut self) -> Result<(), BackendError> {
        loop {
            let frame = self.read_frame().await?;
            match frame.tag {
                tag::READY_FOR_QUERY => {
                    self.observe(&frame);
                    return Ok(());
                }
                tag::BACKEND_KEY_DATA => {
                    let b = frame.body();
                    if b.len() < 8 {
                        return Err(BackendError::Malformed("BackendKeyData too short".into()));
                    }
                    self.key = CancelKey {
                        pid: i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        secret: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    };
                }
                tag::ERROR_RESPONSE => return Err(BackendError::Server(frame.bytes)),
                _ => self.observe(&frame),
            }
        }
    }

    /// Keeps the connection's own record current from a message passing through.
    pub fn observe(&mut self, frame: &Frame) {
        match frame.tag {
            tag::READY_FOR_QUERY => {
                if let Some(&status) = frame.body().first() {
                    self.tx_status = status;
                }
            }
            tag::PARAMETER_STATUS => {
                if let Some((name, rest)) = read_cstr(frame.body())
                    && let Some((value, _)) = read_cstr(rest)
                {
                    self.params.insert(name.to_string(), value.to_string());
                }
            }
            _ => {}
        }
    }

    /// The next whole message from the server, waiting for it to arrive.
    pub async fn read_frame(&mut self) -> Result<Frame, BackendError> {
        loop {
            if let Some(frame) = self.next_buffered_frame()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// A message already in the read buffer, if a whole one is there.
    pub fn next_buffered_frame(&mut self) -> Result<Option<Frame>, BackendError> {
        Ok(try_backend_frame(&mut self.read_buf)?)
    }

    /// Reads more bytes from the socket. Cancel-safe, so it can sit in a `select!`.
    pub async fn fill(&mut self) -> Result<(), BackendError> {
        let n = self
            .stream
            .read_buf(&mut self.read_buf)
            .await
            .map_err(|e| BackendError::Lost {
                node: self.node.clone(),
                addr: self.addr.to_string(),
                reason: e.to_string(),
            })?;
        if n == 0 {
            return Err(BackendError::Lost {
                node: self.node.clone(),
                addr: self.addr.to_string(),
                reason: "the server closed the connection".into(),
            });
        }
        Ok(())
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| BackendError::Lost {
                node: self.node.clone(),
                addr: self.addr.to_string(),
                reason: e.to_string(),
            })
    }

    async fn write_message(&mut self, tag: u8, body: &[u8]) -> Result<(), BackendError> {
        let mut buf = BytesMut::with_capacity(body.len() + 5);
        buf.extend_from_slice(&[tag]);
        buf.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        buf.extend_from_slice(body);
        self.write_all(&buf).await
    }

    /// Runs a simple query of pgsplit's own (resets, settings, the WAL position after a commit)
    /// and waits for ReadyForQuery. Returns the first column of the first row, if any;
    /// ParameterStatus changes are recorded; a server error is returned.
    pub async fn run_internal(&mut self, sql: &str) -> Result<Option<String>, BackendError> {
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut buf)
            .map_err(|e| BackendError::Malformed(e.to_string()))?;
        self.write_all(&buf).await?;
        let mut value = None;
        let mut error = None;
        loop {
            let frame = self.read_frame().await?;
            self.observe(&frame);
            match frame.tag {
                tag::READY_FOR_QUERY => break,
                tag::ERROR_RESPONSE => error = Some(frame.bytes),
                b'D' if value.is_none() => value = first_column(frame.body()).map(str::to_string),
                _ => {}
            }
        }
        match error {
            Some(bytes) => Err(BackendError::Server(bytes)),
            None => Ok(value),
        }
    }

    /// A WAL position at or after the last commit made on this connection, for read-your-writes
    /// (0 if the server's answer does not parse).
    pub async fn commit_position(&mut self) -> Result<u64, BackendError> {
        let position = self.run_internal(COMMIT_POSITION_QUERY).await?;
        Ok(position
            .as_deref()
            .and_then(crate::topology::monitor::parse_lsn)
            .unwrap_or(0))
    }

    /// Forgets all session state, after `DISCARD ALL` ran on the connection.
    pub fn forget_session_state(&mut self) {
        self.settings.clear();
        self.prepared.clear();
        self.sql_prepared.clear();
    }

    /// True if the idle connection was closed or sent something unasked (then it is unusable).
    pub fn is_stale(&self) -> bool {
        // Under TLS, bytes waiting on the socket (a close_notify alert, say) mean the same.
        let mut probe = [0u8; 1];
        let peeked = match &self.stream {
            MaybeTls::Plain(tcp) => tcp.try_read(&mut probe),
            MaybeTls::Tls(tls) => tls.get_ref().0.try_read(&mut probe),
            MaybeTls::Unix(unix) => unix.try_read(&mut probe),
            MaybeTls::Closed => return true,
        };
        !matches!(peeked, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Sends Terminate so the server ends the backend cleanly rather than logging an EOF.
    pub async fn terminate(mut self) {
        let _ = self.stream.write_all(&[tag::TERMINATE, 0, 0, 0, 4]).await;
    }
}

/// The plain socket to a node: TCP, or the server's Unix-domain socket when the address names
/// a socket directory ("/var/run/postgresql:5432", libpq's way).
async fn open_socket(addr: &str) -> std::io::Result<ServerStream> {
    let (host, port) = address::split_node_addr(addr);
    if address::is_socket_dir(host) {
        let unix = UnixStream::connect(address::unix_socket_path(host, port)).await?;
        return Ok(MaybeTls::Unix(unix));
    }
    let tcp = TcpStream::connect(addr).await?;
    // Every message of the relay is complete when written: waiting to coalesce only adds latency.
    tcp.set_nodelay(true)?;
    Ok(MaybeTls::Plain(tcp))
}

/// Asks the server for TLS when configured to (an SSLRequest, answered 'S' or 'N'), and runs
/// the handshake; a server declining is given up only when TLS is required. A Unix-domain
/// socket is left as it is: PostgreSQL offers no TLS there, and libpq does not ask.
async fn negotiate_tls(
    stream: ServerStream,
    spec: &ConnectSpec,
) -> Result<ServerStream, BackendError> {
    let Some(connector) = spec.tls.connector() else {
        return Ok(stream);
    };
    let MaybeTls::Plain(mut stream) = stream else {
        return Ok(stream);
    };
    let mut request = BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut request);
    stream
        .write_all(&request)
        .await
        .map_err(|e| BackendError::lost(spec, e))?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| BackendError::lost(spec, e))?;
    match answer[0] {
        b'S' => {}
        b'N' if !spec.tls.required() => return Ok(MaybeTls::Plain(stream)),
        b'N' => return Err(tls_refused(spec, "the server does not accept TLS")),
        other => {
            return Err(BackendError::Malformed(format!(
                "unexpected answer '{}' to SSLRequest",
                char::from(other)
            )));
        }
    }
    let name = server_name(&spec.addr).map_err(|e| tls_refused(spec, &e))?;
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| tls_refused(spec, &e.to_string()))?;
    Ok(MaybeTls::Tls(Box::new(tls)))
}

/// The host part of "host:port" (an IPv6 host without its brackets), as TLS names it.
fn server_name(addr: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    let (host, _) = address::split_node_addr(addr);
    rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("\"{host}\" is not a name TLS can check: {e}"))
}

fn tls_refused(spec: &ConnectSpec, reason: &str) -> BackendError {
    BackendError::Connect {
        node: spec.node.clone(),
        addr: spec.addr.clone(),
        source: std::io::Error::other(format!("TLS: {reason}")),
    }
}

/// Asks for a WAL position at or after the last commit made on the connection (one row, one
/// text column). Also sent in the same write as a committing unit: see `frontend::forward`.
pub const COMMIT_POSITION_QUERY: &str = "SELECT pg_current_wal_insert_lsn()::text";

/// The WAL position in the DataRow (body) answering [`COMMIT_POSITION_QUERY`].
pub fn commit_position_in(data_row: &[u8]) -> Option<u64> {
    first_column(data_row).and_then(crate::topology::monitor::parse_lsn)
}

/// The first column of a DataRow body as text (None for NULL or a malformed row).
fn first_column(body: &[u8]) -> Option<&str> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let bytes = body.get(6..6 + usize::try_from(len).ok()?)?;
    std::str::from_utf8(bytes).ok()
}

/// Asks the server process behind `key` to cancel its current query (a separate connection,
/// as the protocol wants).
pub async fn send_cancel(
    addr: &str,
    key: CancelKey,
    timeout: Duration,
) -> Result<(), std::io::Error> {
    let send = async {
        let mut stream = open_socket(addr).await?;
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(key.pid, key.secret, &mut buf);
        stream.write_all(&buf).await?;
        // The server closes the connection when done; waiting for that makes the cancel
        // happen before we report success.
        let mut sink = [0u8; 1];
        let _ = stream.read(&mut sink).await;
        Ok(())
    };
    tokio::time::timeout(timeout, send)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "cancel request timed out",
            ))
        })
}
