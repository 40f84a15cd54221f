//! The untagged packets a client may open a connection with: SSLRequest, GSSENCRequest,
//! CancelRequest and the StartupMessage.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::ProtocolError;
use super::read_cstr;

/// PostgreSQL itself refuses startup packets over 10 000 bytes (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_PACKET: usize = 10_000;

const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// The key a client presents to cancel a query: what BackendKeyData gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CancelKey {
    pub pid: i32,
    pub secret: i32,
}

/// The parameters of a StartupMessage, in the order the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupParams {
    pub pairs: Vec<(String, String)>,
}

impl StartupParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn user(&self) -> Option<&str> {
        self.get("user").filter(|u| !u.is_empty())
    }

    /// PostgreSQL's default: the database named like the user.
    pub fn database(&self) -> Option<&str> {
        self.get("database")
            .filter(|d| !d.is_empty())
            .or_else(|| self.user())
    }

    /// The parameters that shape the session (everything but who and where).
    pub fn session_settings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "replication"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A physical or logical replication connection was asked for.
    pub fn wants_replication(&self) -> bool {
        self.get("replication").is_some_and(|v| {
            !matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "off" | "no" | "0"
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel(CancelKey),
    Startup { minor: u16, params: StartupParams },
}

/// Reads one untagged packet, refusing a length outside 8..=10 000 before reading the body.
pub async fn read_startup_packet<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<StartupPacket, ProtocolError> {
    let mut len_bytes = [0u8; 4];
    read_exact_or_eof(r, &mut len_bytes).await?;
    let len = i32::from_be_bytes(len_bytes);
    if !(8..=MAX_STARTUP_PACKET as i32).contains(&len) {
        return Err(ProtocolError::InvalidLength {
            what: "startup packet",
            len: i64::from(len),
            min: 8,
            max: MAX_STARTUP_PACKET,
        });
    }
    let mut body = BytesMut::zeroed(len as usize - 4);
    read_exact_or_eof(r, &mut body).await?;
    parse_startup_body(&body)
}

async fn read_exact_or_eof<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> Result<(), ProtocolError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ProtocolError::UnexpectedEof)
        }
        Err(e) => Err(e.into()),
    }
}

/// Parses a startup packet body (after the length word).
pub fn parse_startup_body(body: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let rest = &body[4..];
    match code {
        SSL_REQUEST_CODE => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => parse_cancel(rest),
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            Ok(StartupPacket::Startup {
                minor,
                params: parse_params(rest)?,
            })
        }
    }
}

fn parse_cancel(rest: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let bytes: [u8; 8] = rest.try_into().map_err(|_| {
        ProtocolError::BadStartupPacket("a cancel request must be 16 bytes long".into())
    })?;
    Ok(StartupPacket::Cancel(CancelKey {
        pid: i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        secret: i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    }))
}

/// Name/value pairs as NUL-terminated strings, ended by one more NUL.
fn parse_params(mut rest: &[u8]) -> Result<StartupParams, ProtocolError> {
    let bad = |why: &str| ProtocolError::BadStartupPacket(why.to_string());
    let mut pairs = Vec::new();
    loop {
        match rest {
            [0] => return Ok(StartupParams { pairs }),
            [] => return Err(bad("missing the terminating NUL after the last parameter")),
            _ => {}
        }
        let (name, after_name) = read_cstr(rest)
            .ok_or_else(|| bad("a parameter name is not a NUL-terminated UTF-8 string"))?;
        let (value, after_value) = read_cstr(after_name).ok_or_else(|| {
            bad(&format!(
                "parameter \"{name}\" has no NUL-terminated UTF-8 value"
            ))
        })?;
        pairs.push((name.to_string(), value.to_string()));
        rest = after_value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as i32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    async fn read(bytes: &[u8]) -> Result<StartupPacket, ProtocolError> {
        read_startup_packet(&mut &bytes[..]).await
    }

    #[tokio::test]
    async fn parses_startup_parameters_in_order() {
        let p = read(&packet(
            196_608,
            b"user\0bob\0database\0db\0application_name\0x\0\0",
        ))
        .await
        .unwrap();
        let StartupPacket::Startup { minor: 0, params } = p else {
            panic!("not a startup packet: {p:?}");
        };
        assert_eq!(params.user(), Some("bob"));
        assert_eq!(params.database(), Some("db"));
        assert_eq!(
            params.session_settings().collect::<Vec<_>>(),
            vec![("application_name", "x")]
        );
    }

    #[tokio::test]
    async fn database_defaults_to_user() {
        let p = parse_params(b"user\0bob\0\0").unwrap();
        assert_eq!(p.database(), Some("bob"));
    }

    #[tokio::test]
    async fn recognises_ssl_gss_and_cancel() {
        assert_eq!(
            read(&packet(SSL_REQUEST_CODE, b"")).await.unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            read(&packet(GSSENC_REQUEST_CODE, b"")).await.unwrap(),
            StartupPacket::GssEncRequest
        );
        let cancel = read(&packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 0, 0, 0, 9]))
            .await
            .unwrap();
        assert_eq!(
            cancel,
            StartupPacket::Cancel(CancelKey { pid: 7, secret: 9 })
        );
    }

    #[tokio::test]
    async fn rejects_malformed_packets() {
        assert!(matches!(
            read(&packet(131_072, b"")).await,
            Err(ProtocolError::UnsupportedProtocol { major: 2, .. })
        ));
        assert!(matches!(
            read(&packet(196_608, b"user\0bob\0")).await,
            Err(ProtocolError::BadStartupPacket(_))
        ));
        assert!(matches!(
            read(&packet(196_608, b"user\0bob")).await,
            Err(ProtocolError::BadStartupPacket(_))
        ));
        assert!(matches!(
            read(&packet(CANCEL_REQUEST_CODE, &[0; 4])).await,
            Err(ProtocolError::BadStartupPacket(_))
        ));
        assert!(matches!(
            read(&[0, 0, 0, 4]).await,
            Err(ProtocolError::InvalidLength { len: 4, .. })
        ));
        assert!(matches!(
            read(&[0, 0, 0x27, 0x11]).await,
            Err(ProtocolError::InvalidLength { len: 10_001, .. })
        ));
        assert!(matches!(
            read(&packet(196_608, b"user\0bob\0\0")[..10]).await,
            Err(ProtocolError::UnexpectedEof)
        ));
    }
}
