//! Finding volatile and time-dependent functions in a statement's text.
//!
//! Why lexical: the classification says whether a statement may run on a replica, not which
//! functions it calls, and several of these are read-only (a replica may run `now()`), so
//! routing lets them through. Some are not even calls (`current_timestamp`, `localtime`), and
//! some hide in literals (`'now'::timestamptz`, `'today'::date`). Scanning every word of the
//! text, comments and literals included, for the names below is conservative: a column called
//! `now` or a string containing "random" costs a cache miss, never a wrong answer.

/// Words that make a result change between two runs with the same data and settings.
const VOLATILE_WORDS: &[&str] = &[
    // randomness
    "random",
    "random_normal",
    "setseed",
    "gen_random_uuid",
    "gen_random_bytes",
    "uuidv4",
    "uuidv7",
    // the clock, as functions, keywords and input literals
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "today",
    "tomorrow",
    "yesterday",
    // sequences
    "nextval",
    "currval",
    "lastval",
    "setval",
    // the server, the backend, the session, the WAL
    "pg_backend_pid",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_is_in_recovery",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_trigger_depth",
    "pg_listening_channels",
    "pg_notification_queue_usage",
    "pg_xact_status",
    "pg_my_temp_schema",
    "current_query",
];

/// Words volatile only as calls: `age(ts)` counts from today, but `age` is also a common
/// column name, which should not cost every query of a `people` table its caching.
const VOLATILE_CALLS: &[&str] = &["age"];

/// Families, by prefix: `txid_current`, `pg_current_wal_lsn`, `pg_last_wal_replay_lsn`,
/// `pg_sleep_for`, `inet_server_addr`, `pg_stat_get_*` and the statistics views, snapshots.
const VOLATILE_PREFIXES: &[&str] = &[
    "txid_",
    "pg_current_",
    "pg_last_",
    "pg_sleep",
    "inet_server_",
    "inet_client_",
    "pg_stat_",
    "pg_statio_",
    "pg_snapshot_",
    "uuid_generate_",
    "pg_advisory",
    "pg_try_advisory",
    "pg_wal_",
    "dblink",
];

/// The first volatile word in `sql`, lower-cased, if any.
pub fn find_volatile(sql: &str) -> Option<String> {
    words(sql).find_map(|(word, rest)| {
        let word = word.to_ascii_lowercase();
        is_volatile(&word, rest).then_some(word)
    })
}

/// `rest`: the text after the word, to tell a call from a column.
fn is_volatile(word: &str, rest: &str) -> bool {
    VOLATILE_WORDS.contains(&word)
        || VOLATILE_PREFIXES.iter().any(|p| word.starts_with(p))
        || (VOLATILE_CALLS.contains(&word) && rest.trim_start().starts_with('('))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Runs of identifier characters (letters, digits, `_`, `$`), as PostgreSQL's lexer reads a
/// word, each with the text that follows it.
fn words(sql: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = sql;
    std::iter::from_fn(move || {
        let start = rest.find(is_word_char)?;
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_word_char(c)).unwrap_or(tail.len());
        let (word, after) = tail.split_at(end);
        rest = after;
        Some((word, after))
    })
}
