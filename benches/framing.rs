//! Message framing: splitting what a client or a server sent into whole tagged messages, as
//! the relay does for every batch it reads.
//!
//! `cargo bench --bench framing`.

mod common;

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pgsplit::protocol::{ProtocolError, try_backend_frame, try_frontend_frame};

/// pgsplit's default `limits.max_message_size` (256 MiB).
const MAX_MESSAGE: usize = 256 << 20;

/// One message: tag, length (counting itself), body.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = i32::try_from(body.len() + 4).expect("benchmark messages are small");
    let mut out = vec![tag];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Parse, Bind, Describe, Execute, Sync of pgbench's point read (`-M extended`).
fn extended_point_read() -> Vec<u8> {
    let mut bind = b"\0\0\0\0\0\x01".to_vec(); // portal "", statement "", no formats, 1 param
    bind.extend_from_slice(&5i32.to_be_bytes());
    bind.extend_from_slice(b"12345\0\0");
    [
        message(
            b'P',
            b"\0SELECT abalance FROM pgbench_accounts WHERE aid = $1;\0\0\0",
        ),
        message(b'B', &bind),
        message(b'D', b"P\0"),
        message(b'E', b"\0\0\0\0\0"),
        message(b'S', b""),
    ]
    .concat()
}

/// A simple Query of the same read (`-M simple`).
fn simple_point_read() -> Vec<u8> {
    message(
        b'Q',
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;\0",
    )
}

fn row_description() -> Vec<u8> {
    let mut body = 1i16.to_be_bytes().to_vec();
    body.extend_from_slice(b"abalance\0");
    body.extend_from_slice(&[
        0, 0, 0x40, 0x02, 0, 3, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff,
    ]);
    body.extend_from_slice(&[0, 0]);
    message(b'T', &body)
}

fn data_row(value: &[u8]) -> Vec<u8> {
    let mut body = 1i16.to_be_bytes().to_vec();
    let len = i32::try_from(value.len()).expect("small value");
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(value);
    message(b'D', &body)
}

/// The server's answer to the extended point read with `rows` rows.
fn answer(rows: usize) -> Vec<u8> {
    let mut out = [message(b'1', b""), message(b'2', b""), row_description()].concat();
    for _ in 0..rows {
        out.extend(data_row(b"-4711"));
    }
    out.extend(message(b'C', format!("SELECT {rows}\0").as_bytes()));
    out.extend(message(b'Z', b"I"));
    out
}

/// Splits a whole buffer into frames and returns how many there were.
fn split_all(
    mut buf: BytesMut,
    mut next: impl FnMut(&mut BytesMut) -> Result<Option<pgsplit::protocol::Frame>, ProtocolError>,
) -> usize {
    let mut frames = 0;
    while let Ok(Some(frame)) = next(&mut buf) {
        black_box(&frame);
        frames += 1;
    }
    frames
}

fn frontend(c: &mut Criterion) {
    let mut group = c.benchmark_group("frontend_framing");
    for (name, bytes) in [
        ("extended_point_read", extended_point_read()),
        ("simple_point_read", simple_point_read()),
    ] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&bytes[..]),
                |buf| split_all(buf, |buf| try_frontend_frame(buf, MAX_MESSAGE)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn backend(c: &mut Criterion) {
    let mut group = c.benchmark_group("backend_framing");
    for rows in [1, 100] {
        let bytes = answer(rows);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("answer_{rows}_rows"), |b| {
            b.iter_batched(
                || BytesMut::from(&bytes[..]),
                |buf| split_all(buf, try_backend_frame),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::short_runs();
    targets = frontend, backend
}
criterion_main!(benches);
