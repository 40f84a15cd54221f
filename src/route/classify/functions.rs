//! Which function calls a replica may run. Default deny: a function is read-only only when it is
//! on the built-in list below or the operator declared it so; anything else may write (a user
//! function can do anything), so it sends the statement to the primary.

use std::collections::HashSet;
use std::sync::LazyLock;

use super::PinCause;

/// What a call to a function means for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A replica may run it.
    Read,
    /// The primary must run it.
    Write,
    /// The primary must run it, and the session must stay on that connection afterwards.
    WriteAndPin(PinCause),
    /// `currval()` / `lastval()`: they answer from what `nextval()` left on the connection
    /// that ran it, so the primary must run them, on that connection.
    SequenceState,
    /// `set_config(name, value, is_local)`: read-only when `is_local` is literally true (the
    /// setting dies with the transaction); otherwise it changes session state we cannot replay.
    SetConfig,
}

/// The read-only function list: the built-in one plus the operator's `read_only_functions`.
#[derive(Debug, Clone, Default)]
pub struct FunctionPolicy {
    /// Declared names, lower-cased, last identifier only (`shop.price_of` -> `price_of`).
    extra: HashSet<String>,
}

impl FunctionPolicy {
    /// `extra`: user functions declared read-only, as `name` or `schema.name`, any case.
    pub fn new(extra: &[String]) -> Self {
        let extra = extra
            .iter()
            .filter_map(|name| last_identifier(name))
            .collect();
        Self { extra }
    }

    /// Judges a call to `name`, given as its identifiers (`["pg_catalog", "lower"]`).
    pub(super) fn verdict(&self, name: &[&str]) -> Verdict {
        let Some(last) = name.last() else {
            return Verdict::Write;
        };
        let last = last.to_ascii_lowercase();
        // Known side effects come first, so that no declaration can send them to a replica.
        if let Some(verdict) = known_side_effect(&last) {
            return verdict;
        }
        if self.extra.contains(&last) || (is_builtin_schema(name) && is_builtin_read_only(&last)) {
            return Verdict::Read;
        }
        Verdict::Write
    }
}

/// `schema.name` -> `name`, lower-cased and unquoted; None for an empty entry.
fn last_identifier(declared: &str) -> Option<String> {
    let last = declared.rsplit('.').next()?.trim().trim_matches('"');
    (!last.is_empty()).then(|| last.to_ascii_lowercase())
}

/// Built-in names count only where PostgreSQL's own functions live: a `public.lower` is a
/// user function that happens to share the name.
fn is_builtin_schema(name: &[&str]) -> bool {
    match name {
        [_] => true,
        [schema, _] => schema.eq_ignore_ascii_case("pg_catalog"),
        _ => false,
    }
}

/// Functions with effects beyond their result: writes, WAL, locks, signals, session state.
fn known_side_effect(name: &str) -> Option<Verdict> {
    const SESSION_LOCKS: [&str; 4] = [
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
    ];
    const WRITES: [&str; 11] = [
        "nextval",
        "setval",
        "txid_current",
        "pg_current_xact_id",
        "pg_current_wal_lsn",
        "pg_current_wal_insert_lsn",
        "pg_notify",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_switch_wal",
    ];
    // Families: every advisory lock and unlock (`_xact_` ones release at commit, so they write
    // but do not pin), large objects, replication slots and restore points, remote queries.
    const WRITE_PREFIXES: [&str; 6] = [
        "pg_advisory_",
        "pg_try_advisory_",
        "lo_",
        "pg_create_",
        "pg_drop_",
        "dblink",
    ];
    if name == "set_config" {
        Some(Verdict::SetConfig)
    } else if name == "currval" || name == "lastval" {
        Some(Verdict::SequenceState)
    } else if SESSION_LOCKS.contains(&name) {
        Some(Verdict::WriteAndPin(PinCause::AdvisoryLock))
    } else if WRITES.contains(&name) || WRITE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        Some(Verdict::Write)
    } else {
        None
    }
}

fn is_builtin_read_only(name: &str) -> bool {
    BUILTIN_READ_ONLY.contains(name)
        || READ_ONLY_FAMILIES
            .iter()
            .any(|(prefix, suffix)| name.starts_with(prefix) && name.ends_with(suffix))
}

/// Families of built-ins that are all pure: (prefix, suffix).
const READ_ONLY_FAMILIES: [(&str, &str); 7] = [
    ("json_", ""),
    ("jsonb_", ""),
    ("regexp_", ""),
    ("array_", ""),
    ("has_", "_privilege"),
    ("pg_get_", "def"),
    ("pg_stat_get_", ""),
];

static BUILTIN_READ_ONLY: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| BUILTIN_READ_ONLY_NAMES.iter().copied().collect());

/// Built-in functions that only compute a result. Parser keywords that look like calls
/// (EXTRACT, SUBSTRING ... FROM, TRIM, POSITION, CEIL, FLOOR, OVERLAY) are expressions of their
/// own in sqlparser; their plain-call spellings are listed too.
#[rustfmt::skip]
const BUILTIN_READ_ONLY_NAMES: &[&str] = &[
    // aggregates
    "count", "sum", "avg", "min", "max", "string_agg", "array_agg", "json_agg", "jsonb_agg",
    "json_object_agg", "jsonb_object_agg", "bool_and", "bool_or", "every", "bit_and", "bit_or",
    "bit_xor", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr",
    "covar_pop", "covar_samp", "regr_slope", "regr_intercept", "regr_count", "regr_r2", "regr_avgx",
    "regr_avgy", "mode", "percentile_cont", "percentile_disc", "xmlagg", "range_agg",
    "range_intersect_agg", "any_value",
    // window
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
    // math
    "abs", "round", "floor", "ceil", "ceiling", "trunc", "power", "pow", "sqrt", "cbrt", "exp",
    "ln", "log", "log10", "mod", "div", "sign", "pi", "random", "greatest", "least", "degrees",
    "radians", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh",
    "width_bucket", "scale", "min_scale", "trim_scale", "gcd", "lcm", "factorial", "numeric",
    "int2", "int4", "int8", "float4", "float8", "text", "bool", "date", "time", "timestamp",
    "timestamptz", "interval", "varchar", "bpchar",
    // strings
    "lower", "upper", "length", "char_length", "character_length", "octet_length", "bit_length",
    "substr", "substring", "concat", "concat_ws", "replace", "trim", "btrim", "ltrim", "rtrim",
    "split_part", "format", "left", "right", "position", "strpos", "md5", "sha224", "sha256",
    "sha384", "sha512", "encode", "decode", "to_char", "to_number", "initcap", "lpad", "rpad",
    "repeat", "reverse", "quote_ident", "quote_literal", "quote_nullable", "ascii", "chr",
    "translate", "overlay", "starts_with", "string_to_array", "string_to_table", "to_hex",
    "to_ascii", "convert", "convert_from", "convert_to", "unistr", "normalize", "is_normalized",
    "parse_ident", "similar_to_escape", "crc32", "crc32c",
    // date and time
    "now", "current_timestamp", "current_date", "current_time", "localtime", "localtimestamp",
    "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday", "date_trunc",
    "date_part", "date_bin", "extract", "age", "make_date", "make_time", "make_timestamp",
    "make_timestamptz", "make_interval", "to_timestamp", "to_date", "isfinite", "justify_days",
    "justify_hours", "justify_interval", "timezone", "overlaps",
    // json constructors and conversions (the json_/jsonb_ families are allowed above)
    "to_json", "to_jsonb", "row_to_json", "array_to_json", "jsonb_set",
    // arrays and sets
    "unnest", "cardinality", "generate_series", "generate_subscripts", "coalesce", "nullif",
    "num_nulls", "num_nonnulls",
    // text search
    "to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery",
    "setweight", "strip", "numnode", "querytree", "ts_rank", "ts_rank_cd", "ts_headline",
    "ts_lexize",
    // system information
    "version", "current_database", "current_catalog", "current_schema", "current_schemas",
    "current_user", "current_role", "session_user", "user", "system_user", "current_setting",
    "current_query", "pg_backend_pid", "inet_server_port", "inet_server_addr", "inet_client_addr",
    "inet_client_port", "pg_is_in_recovery", "pg_is_wal_replay_paused", "pg_last_wal_replay_lsn",
    "pg_last_wal_receive_lsn", "pg_last_xact_replay_timestamp", "pg_wal_lsn_diff", "pg_sleep",
    "pg_postmaster_start_time", "pg_conf_load_time", "txid_current_if_assigned",
    "txid_current_snapshot", "pg_current_snapshot", "pg_snapshot_xmin", "pg_snapshot_xmax",
    "pg_snapshot_xip", "txid_snapshot_xmin", "txid_snapshot_xmax", "pg_xact_status", "txid_status",
    "pg_has_role", "pg_typeof", "format_type", "pg_get_expr", "pg_get_userbyid",
    "pg_get_serial_sequence", "pg_get_function_arguments", "pg_get_function_result",
    "pg_get_function_identity_arguments", "pg_get_keywords", "pg_table_size", "pg_relation_size",
    "pg_total_relation_size", "pg_indexes_size", "pg_database_size", "pg_tablespace_size",
    "pg_column_size", "pg_size_pretty", "pg_size_bytes", "obj_description", "col_description",
    "shobj_description", "pg_encoding_to_char", "pg_char_to_encoding", "pg_client_encoding",
    "pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible", "pg_relation_filenode",
    "pg_relation_filepath", "pg_tablespace_location", "pg_my_temp_schema",
    "pg_is_other_temp_schema", "pg_jit_available", "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids", "pg_trigger_depth", "pg_listening_channels",
    "pg_notification_queue_usage", "pg_postmaster_pid", "pg_column_compression",
    "pg_stat_get_activity", "pg_options_to_table", "pg_tablespace_databases", "to_regclass",
    "to_regtype", "to_regproc", "to_regprocedure", "to_regrole", "to_regnamespace", "to_regoper",
    "to_regoperator", "to_regcollation", "pg_input_is_valid", "row_security_active", "mxid_age",
    // uuid, random bytes, network, geometry basics
    "gen_random_uuid", "uuid_generate_v4", "gen_random_bytes", "host", "hostmask", "masklen",
    "netmask", "network", "family", "abbrev", "broadcast", "inet_same_family", "inet_merge",
    "point", "box", "circle", "area", "center", "diameter", "radius", "height", "width",
    // ranges
    "lower_inc", "upper_inc", "lower_inf", "upper_inf", "isempty", "range_merge", "int4range",
    "int8range", "numrange", "tsrange", "tstzrange", "daterange",
];
