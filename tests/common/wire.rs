//! A client speaking the PostgreSQL protocol in raw bytes, for tests that must send exactly
//! what they mean (several messages in one write, malformed ones) and see every message back.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PROTOCOL_3: i32 = 196_608;

/// A StartupMessage for protocol 3.0 with `params`.
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = PROTOCOL_3.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    message(None, &body)
}

/// A message: its tag (none for startup-phase packets), length, body.
pub fn message(tag: Option<u8>, body: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = tag.into_iter().collect();
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A simple Query.
pub fn query(sql: &str) -> Vec<u8> {
    message(Some(b'Q'), &cstr(sql))
}

/// Parse, Bind, Execute of an unnamed statement without parameters, then Sync: one
/// extended-protocol unit.
pub fn extended_unit(sql: &str) -> Vec<u8> {
    let mut parse = cstr("");
    parse.extend_from_slice(&cstr(sql));
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut bind = cstr("");
    bind.extend_from_slice(&cstr(""));
    bind.extend_from_slice(&[0; 6]); // no parameter formats, parameters, result formats
    let mut execute = cstr("");
    execute.extend_from_slice(&0i32.to_be_bytes());
    let mut unit = message(Some(b'P'), &parse);
    unit.extend_from_slice(&message(Some(b'B'), &bind));
    unit.extend_from_slice(&message(Some(b'E'), &execute));
    unit.extend_from_slice(&message(Some(b'S'), &[]));
    unit
}

/// Parse of statement `name` and Describe of it, then Flush rather than Sync: the answers come
/// back, but the extended-protocol sequence stays open on the server (asyncpg prepares so).
pub fn describe_then_flush(name: &str, sql: &str) -> Vec<u8> {
    let mut parse = cstr(name);
    parse.extend_from_slice(&cstr(sql));
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut describe = vec![b'S'];
    describe.extend_from_slice(&cstr(name));
    let mut unit = message(Some(b'P'), &parse);
    unit.extend_from_slice(&message(Some(b'D'), &describe));
    unit.extend_from_slice(&message(Some(b'H'), &[]));
    unit
}

/// Bind of statement `name` to the unnamed portal and Execute of at most `rows` rows (0: all),
/// then Flush: the portal stays open on the server.
pub fn execute_then_flush(name: &str, rows: i32) -> Vec<u8> {
    let mut bind = cstr("");
    bind.extend_from_slice(&cstr(name));
    bind.extend_from_slice(&[0; 6]); // no parameter formats, parameters, result formats
    let mut execute = cstr("");
    execute.extend_from_slice(&rows.to_be_bytes());
    let mut unit = message(Some(b'B'), &bind);
    unit.extend_from_slice(&message(Some(b'E'), &execute));
    unit.extend_from_slice(&message(Some(b'H'), &[]));
    unit
}

fn cstr(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    out.push(0);
    out
}

/// A session through `addr` as postgres, greeted up to its first ReadyForQuery.
pub async fn logged_in(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect to pgsplit");
    stream
        .write_all(&startup_packet(&[
            ("user", "postgres"),
            ("database", "postgres"),
        ]))
        .await
        .expect("send the startup packet");
    read_until_ready(&mut stream).await;
    stream
}

pub async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("send to pgsplit");
}

/// Sends `bytes` (one unit) and returns the answer up to its ReadyForQuery.
pub async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    send(stream, bytes).await;
    read_until_ready(stream).await
}

/// Backend messages (tag, body) up to and including the next ReadyForQuery.
pub async fn read_until_ready(stream: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    read_until(stream, b'Z').await
}

/// Backend messages (tag, body) up to and including the next one tagged `last`.
pub async fn read_until(stream: &mut TcpStream, last: u8) -> Vec<(u8, Vec<u8>)> {
    let mut messages = Vec::new();
    let read = async {
        loop {
            let mut header = [0u8; 5];
            stream
                .read_exact(&mut header)
                .await
                .expect("message header");
            let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut body = vec![0u8; len - 4];
            stream.read_exact(&mut body).await.expect("message body");
            messages.push((header[0], body));
            if header[0] == last {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("a message tagged {} within 10 s", char::from(last)));
    messages
}

/// The tags of `messages`, as text ("12DCSZ").
pub fn tags(messages: &[(u8, Vec<u8>)]) -> String {
    messages.iter().map(|(tag, _)| char::from(*tag)).collect()
}

/// The value of ParameterStatus `name` in `messages`, if one came.
pub fn parameter_status(messages: &[(u8, Vec<u8>)], name: &str) -> Option<String> {
    let prefix = cstr(name);
    messages.iter().find_map(|(tag, body)| {
        let value = body
            .strip_prefix(prefix.as_slice())
            .filter(|_| *tag == b'S')?;
        Some(
            String::from_utf8_lossy(value)
                .trim_end_matches('\0')
                .to_string(),
        )
    })
}

/// The first column of every DataRow in `messages`, as text (NULL as "").
pub fn first_columns(messages: &[(u8, Vec<u8>)]) -> Vec<String> {
    messages
        .iter()
        .filter(|(tag, body)| *tag == b'D' && body.len() >= 6)
        .map(|(_, body)| {
            let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
            let len = usize::try_from(len).unwrap_or(0);
            String::from_utf8_lossy(&body[6..6 + len]).into_owned()
        })
        .collect()
}
