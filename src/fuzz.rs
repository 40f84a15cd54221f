//! Fuzz entry points: one function per parser that reads what a client sends, taking arbitrary
//! bytes and feeding them through that parser the way the proxy does. Each must return for any
//! input, never panic.
//!
//! The same functions are called by the libFuzzer targets in `fuzz/fuzz_targets/` (cargo-fuzz,
//! nightly: `cargo +nightly fuzz run <target>`) and, on stable, by `tests/fuzz_targets.rs`, which
//! replays the kept corpus in `fuzz/corpus/<target>/` plus a fixed number of deterministic
//! mutations of it. They are plain public functions, behind no feature flag, so both always
//! build against the code the proxy runs.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::BytesMut;
use futures_util::FutureExt;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::fanout::{plan, plan_co_located};
use crate::hint::{
    Setting, parse_hints, parse_setting_value, parse_shard_choice, session_command,
    setting_from_name, shard_hint,
};
use crate::protocol::{Frame, messages, read_startup_packet, tag, try_frontend_frame};
use crate::route::classify::{FunctionPolicy, classify};
use crate::shard::KeyType;
use crate::shard::copy_rows::{CopyFormat, CopyOptions, RowSplitter};
use crate::shard::extract::{extract, sharded_tables};
use crate::shard::map::ShardedTable;

/// A fuzz target: arbitrary bytes in, nothing out, never a panic.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their libFuzzer binary and corpus directory.
pub const TARGETS: [(&str, Target); 6] = [
    ("frontend_messages", frontend_messages),
    ("startup_packet", startup_packet),
    ("hints", hints),
    ("classify", classify_sql),
    ("shard_plan", shard_plan),
    ("copy_rows", copy_rows),
];

/// The smallest `limits.max_message_size` the config allows: small enough that mutated length
/// fields cross it often.
const FUZZ_MAX_MESSAGE: usize = 1024;

/// Client bytes after startup: split into frames as the session does (whole frames only, length
/// checked before anything is reserved), each decoded by the readers of its type.
pub fn frontend_messages(data: &[u8]) {
    // Half at once, then the rest: a frame cut by a read boundary must wait, not break.
    let (first, second) = data.split_at(data.len() / 2);
    let mut buf = BytesMut::from(first);
    for more in [second, &[][..]] {
        while let Ok(Some(frame)) = try_frontend_frame(&mut buf, FUZZ_MAX_MESSAGE) {
            decode_frame(&frame);
        }
        buf.extend_from_slice(more);
    }
}

fn decode_frame(frame: &Frame) {
    let body = frame.body();
    match frame.tag {
        tag::QUERY => {
            let _ = messages::query_text(body);
        }
        tag::PARSE => {
            let _ = messages::parse_message(body);
            let _ = messages::parse_definition(body);
        }
        tag::BIND => {
            let _ = messages::bind_names(body);
            let _ = messages::bind_arguments(body);
        }
        tag::EXECUTE => {
            let _ = messages::execute_message(body);
            let _ = messages::execute_portal(body);
        }
        tag::DESCRIBE | tag::CLOSE => {
            let _ = messages::target(body);
        }
        _ => {}
    }
}

/// The first packet of a connection: SSLRequest, GSSENCRequest, CancelRequest or a
/// StartupMessage, length word included.
pub fn startup_packet(data: &[u8]) {
    // Reading from a slice never waits, so the future is ready at its first poll.
    let _ = read_startup_packet(&mut &data[..]).now_or_never();
}

/// Hint comments and the `SET`/`RESET`/`SHOW pgsplit.*` commands pgsplit answers itself.
pub fn hints(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_hints(&text);
    let _ = shard_hint(&text);
    let _ = session_command(&text);
    let _ = setting_from_name(&text);
    for setting in Setting::ALL {
        let _ = parse_setting_value(setting, &text);
        let _ = parse_shard_choice(setting, &text);
    }
}

/// Statement classification (read or write, tables, transaction control, session effects).
pub fn classify_sql(data: &[u8]) {
    static POLICY: OnceLock<FunctionPolicy> = OnceLock::new();
    let policy = POLICY.get_or_init(|| FunctionPolicy::new(&["read_only_fn".to_string()]));
    let _ = classify(&String::from_utf8_lossy(data), policy);
}

/// Shard key extraction from each statement, then the fan-out plan of the text, as a sharded
/// session does.
pub fn shard_plan(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let tables = fuzz_sharded_tables();
    if let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, &text) {
        for statement in &statements {
            let _ = extract(statement, tables);
            let _ = sharded_tables(statement, tables);
        }
    }
    let _ = plan(&text);
    let _ = plan_co_located(&text);
}

/// COPY data from a client, cut into rows over two CopyData chunks as a sharded COPY does, and
/// the first fields of each row read. The first byte picks the format: even text, odd CSV
/// (with a header when its second bit is set, and a backslash escape when its third is).
pub fn copy_rows(data: &[u8]) {
    let Some((&choice, data)) = data.split_first() else {
        return;
    };
    let text = CopyOptions::read(&[], &[]).expect("the default options");
    let options = match choice % 2 {
        0 => text,
        _ => CopyOptions {
            format: CopyFormat::Csv,
            delimiter: b',',
            null: Vec::new(),
            quote: b'"',
            escape: if choice & 4 != 0 { b'\\' } else { b'"' },
            header: choice & 2 != 0,
        },
    };
    let mut splitter = RowSplitter::new(options);
    let (first, second) = data.split_at(data.len() / 3);
    let mut rows = splitter.feed(first);
    rows.extend(splitter.feed(second));
    rows.extend(splitter.finish());
    for row in &rows {
        for field in 0..4 {
            let _ = splitter.field(&row.bytes, field);
        }
    }
}

/// One sharded table per key type, named as the corpus seeds name them.
fn fuzz_sharded_tables() -> &'static HashMap<String, ShardedTable> {
    static TABLES: OnceLock<HashMap<String, ShardedTable>> = OnceLock::new();
    TABLES.get_or_init(|| {
        [
            ("accounts", "id", KeyType::Int8),
            ("orders", "account_id", KeyType::Int4),
            ("events", "seq", KeyType::Int2),
            ("users", "name", KeyType::Text),
            ("sessions", "token", KeyType::Uuid),
        ]
        .into_iter()
        .map(|(table, key, key_type)| {
            let sharded = ShardedTable {
                key_column: key.to_string(),
                key_type,
                map: 0,
            };
            (table.to_string(), sharded)
        })
        .collect()
    })
}
