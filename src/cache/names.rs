//! How table names are compared.
//!
//! The classifier spells tables lower-cased, as written (`t`, `public.t`, `s.t`; quotes gone).
//! Operators write config entries any way (`T`, `"t"`, `Public.T`). Two rules:
//! - [`normalize`]: lower-case, quotes and spaces gone, `public.` dropped, so `public.t`, `T`,
//!   `"t"` and `t` are all `t` (the default search_path resolves `t` to `public.t`).
//! - Invalidation goes by [`relation`], the last part only: a write to `s.t` also drops what
//!   read `t`, and a write to `t` what read `s.t`, because which schema an unqualified name
//!   means depends on the search_path of the session that wrote it. Over-invalidating two
//!   same-named tables in different schemas costs a miss; under-invalidating would serve stale
//!   rows.

/// The canonical spelling of a table name (see the module doc).
pub fn normalize(name: &str) -> String {
    let parts: Vec<String> = name
        .split('.')
        .map(|part| part.trim().trim_matches('"').to_lowercase())
        .collect();
    match parts.as_slice() {
        [schema, table] if schema == "public" => table.clone(),
        _ => parts.join("."),
    }
}

/// The relation name alone (`s.t` -> `t`), normalized: what invalidation is indexed by.
pub fn relation(name: &str) -> String {
    let normalized = normalize(name);
    match normalized.rsplit_once('.') {
        Some((_, table)) => table.to_owned(),
        None => normalized,
    }
}

/// [`normalize`]d names, without repeats, in order.
pub fn normalize_all<S: AsRef<str>>(tables: &[S]) -> Vec<String> {
    dedup(tables.iter().map(|t| normalize(t.as_ref())))
}

/// [`relation`] names, without repeats, in order.
pub fn relations<S: AsRef<str>>(tables: &[S]) -> Vec<String> {
    dedup(tables.iter().map(|t| relation(t.as_ref())))
}

fn dedup(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}
