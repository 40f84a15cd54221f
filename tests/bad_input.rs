//! Malformed input from the network: each gets an ErrorResponse where the protocol allows one
//! and a closed connection, and other sessions carry on.

mod common;

use std::time::Duration;

use common::proxy::proxy;
use common::wire::startup_packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

async fn raw() -> TcpStream {
    TcpStream::connect(proxy().addr)
        .await
        .expect("connect to pgsplit")
}

/// Reads until the server closes, returning everything it sent (bounded in time and size).
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
            assert!(all.len() < 1 << 20, "unbounded answer");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("pgsplit closes the connection");
    all
}

/// The SQLSTATE of the first ErrorResponse in a stream of backend messages.
fn first_error_code(bytes: &[u8]) -> Option<String> {
    let mut rest = bytes;
    while rest.len() >= 5 {
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let (msg, tail) = rest.split_at((len + 1).min(rest.len()));
        if msg[0] == b'E' {
            let mut fields = &msg[5..];
            while let Some((&code, after)) = fields.split_first() {
                let end = after.iter().position(|&b| b == 0)?;
                if code == b'C' {
                    return Some(String::from_utf8_lossy(&after[..end]).into_owned());
                }
                fields = &after[end + 1..];
            }
        }
        rest = tail;
    }
    None
}

/// A session that has completed startup through raw bytes, up to ReadyForQuery.
async fn logged_in() -> TcpStream {
    common::wire::logged_in(proxy().addr).await
}

async fn assert_others_still_work() {
    let (client, connection) =
        tokio_postgres::connect(&proxy().connstr("postgres", "postgres"), NoTls)
            .await
            .expect("a new session connects");
    tokio::spawn(connection);
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .expect("a new session answers")
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn message_with_a_wrong_length_is_refused() {
    let mut s = logged_in().await;
    s.write_all(&[b'Q', 0, 0, 0, 2]).await.unwrap();
    assert_eq!(
        first_error_code(&read_to_close(&mut s).await).as_deref(),
        Some("08P01")
    );
    assert_others_still_work().await;
}

#[tokio::test]
async fn message_announcing_a_huge_length_is_refused_without_waiting_for_it() {
    let mut s = logged_in().await;
    s.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff]).await.unwrap();
    assert_eq!(
        first_error_code(&read_to_close(&mut s).await).as_deref(),
        Some("08P01")
    );
    assert_others_still_work().await;
}

#[tokio::test]
async fn unknown_message_type_is_refused() {
    let mut s = logged_in().await;
    s.write_all(&[b'?', 0, 0, 0, 4]).await.unwrap();
    assert_eq!(
        first_error_code(&read_to_close(&mut s).await).as_deref(),
        Some("08P01")
    );
    assert_others_still_work().await;
}

#[tokio::test]
async fn truncated_startup_packet_is_refused() {
    let mut s = raw().await;
    // The parameter list lacks its terminating NUL.
    let mut packet = startup_packet(&[("user", "postgres")]);
    packet.pop();
    let len = (packet.len() as i32).to_be_bytes();
    packet[..4].copy_from_slice(&len);
    s.write_all(&packet).await.unwrap();
    assert_eq!(
        first_error_code(&read_to_close(&mut s).await).as_deref(),
        Some("08P01")
    );

    // A client that announces more than it sends and goes away gets nothing and costs nothing.
    let mut s = raw().await;
    s.write_all(&[0, 0, 0, 100, 0, 3, 0, 0]).await.unwrap();
    s.shutdown().await.unwrap();
    read_to_close(&mut s).await;
    assert_others_still_work().await;
}

#[tokio::test]
async fn startup_packet_over_ten_thousand_bytes_is_refused() {
    let mut s = raw().await;
    let big = "x".repeat(10_100);
    let packet = startup_packet(&[("user", "postgres"), ("application_name", &big)]);
    s.write_all(&packet[..8]).await.unwrap();
    assert_eq!(
        first_error_code(&read_to_close(&mut s).await).as_deref(),
        Some("08P01")
    );
    assert_others_still_work().await;
}

#[tokio::test]
async fn protocol_two_and_replication_are_refused_clearly() {
    let mut s = raw().await;
    let mut v2 = startup_packet(&[("user", "postgres")]);
    v2[4..8].copy_from_slice(&131_072i32.to_be_bytes());
    s.write_all(&v2).await.unwrap();
    assert_eq!(
        first_error_code(&read_to_close(&mut s).await).as_deref(),
        Some("0A000")
    );

    let mut s = raw().await;
    s.write_all(&startup_packet(&[
        ("user", "postgres"),
        ("replication", "database"),
    ]))
    .await
    .unwrap();
    assert_eq!(
        first_error_code(&read_to_close(&mut s).await).as_deref(),
        Some("0A000")
    );
}

#[tokio::test]
async fn ssl_request_is_declined_and_startup_continues() {
    let mut s = raw().await;
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"N");
    s.write_all(&startup_packet(&[("user", "postgres")]))
        .await
        .unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(
        &first, b"R",
        "authentication follows the declined SSL request"
    );
}

#[tokio::test]
async fn client_closing_mid_message_harms_nobody() {
    let mut s = logged_in().await;
    // Half a Query message, then gone.
    s.write_all(&[b'Q', 0, 0, 0, 50, b'S', b'E']).await.unwrap();
    drop(s);
    // And one that leaves in the middle of a long query.
    let mut s = logged_in().await;
    let query = b"SELECT pg_sleep(1)\0";
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((query.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(query);
    s.write_all(&msg).await.unwrap();
    drop(s);
    assert_others_still_work().await;
}

#[tokio::test]
async fn password_message_after_login_is_a_protocol_violation() {
    let mut s = logged_in().await;
    s.write_all(&[b'p', 0, 0, 0, 5, 0]).await.unwrap();
    assert_eq!(
        first_error_code(&read_to_close(&mut s).await).as_deref(),
        Some("08P01")
    );
}
