//! What makes two reads the same read.

use std::hash::{DefaultHasher, Hash, Hasher};

/// Settings that change what a statement returns (or how its bytes look), so they are part of
/// the key. Names lower-case; every `lc_*` counts too (see [`is_result_setting`]). Settings
/// that change only plans or timing (enable_*, work_mem, statement_timeout) are left out: the
/// same query gives the same rows.
pub const RESULT_SETTINGS: &[&str] = &[
    "search_path",
    "timezone",
    "datestyle",
    "intervalstyle",
    "extra_float_digits",
    "bytea_output",
    "client_encoding",
    "standard_conforming_strings",
    "default_text_search_config",
    "role",
    "session_authorization",
    "row_security",
    "transform_null_equals",
    "array_nulls",
    "xmlbinary",
    "xmloption",
    "application_name",
];

/// Whether a setting (any case) is one the key must include.
pub fn is_result_setting(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("lc_") || RESULT_SETTINGS.contains(&name.as_str())
}

/// A 128-bit digest of everything that decides a read's answer, plus the text's length.
///
/// Two SipHash-1-3 runs (std's `DefaultHasher`, fixed keys, so stable within a build) over
/// the same fields with different leading seeds give 128 bits: a collision, which would serve
/// another statement's rows, is out of reach (~2^-64 at 2^32 entries). No new crate needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    hash: u128,
    sql_len: usize,
}

impl CacheKey {
    /// `settings`: the session's `(name, value)` pairs in any order and case of name; only the
    /// ones in [`RESULT_SETTINGS`] (and `lc_*`) count. `params`: the raw Bind bytes from the
    /// parameter format codes on (formats, values, result formats); empty for a simple Query.
    pub fn new<'a>(
        database: &str,
        user: &str,
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
        sql: &str,
        params: &[u8],
    ) -> CacheKey {
        let settings = result_settings(settings);
        let fields = Fields {
            database,
            user,
            settings: &settings,
            sql,
            params,
        };
        let high = fields.digest(0x9e37_79b9_7f4a_7c15);
        let low = fields.digest(0xc2b2_ae3d_27d4_eb4f);
        CacheKey {
            hash: (u128::from(high) << 64) | u128::from(low),
            sql_len: sql.len(),
        }
    }
}

/// The settings that count, names lower-cased, sorted so the order they were set in does not
/// matter; a setting given twice keeps its last value (as the server would).
fn result_settings<'a>(
    settings: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, &'a str)> {
    let mut kept = std::collections::BTreeMap::new();
    for (name, value) in settings {
        if is_result_setting(name) {
            kept.insert(name.to_ascii_lowercase(), value);
        }
    }
    kept.into_iter().collect()
}

/// The hashed fields. `Hash` for `str` ends each string with a marker and slices carry their
/// length, so ("ab", "c") and ("a", "bc") differ.
#[derive(Hash)]
struct Fields<'a> {
    database: &'a str,
    user: &'a str,
    settings: &'a [(String, &'a str)],
    sql: &'a str,
    params: &'a [u8],
}

impl Fields<'_> {
    fn digest(&self, seed: u64) -> u64 {
        let mut hasher = DefaultHasher::new();
        seed.hash(&mut hasher);
        self.hash(&mut hasher);
        hasher.finish()
    }
}
