//! How names found in the AST are spelled in a [`super::Classification`].

use sqlparser::ast::{Expr, Ident, ObjectName};

/// A table, schema or setting name: lower-cased parts joined by dots, as written (`s.t`).
pub(super) fn object(name: &ObjectName) -> String {
    let mut out = String::new();
    for (i, part) in name.0.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part.as_ident() {
            Some(ident) => out.push_str(&ident.value.to_ascii_lowercase()),
            None => out.push_str(&part.to_string().to_ascii_lowercase()),
        }
    }
    out
}

/// The parts of a function's name, as written (`["pg_catalog", "lower"]`).
pub(super) fn parts(name: &ObjectName) -> Vec<&str> {
    name.0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| ident.value.as_str())
        .collect()
}

/// A prepared statement, cursor or channel name: PostgreSQL folds it to lower case unless it
/// was quoted.
pub(super) fn identifier(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// `ARRAY(subquery)` and `ROW(a, b)` are constructors that sqlparser reads as calls. Both words
/// are reserved in PostgreSQL, so unquoted they never name a function.
pub(super) fn is_constructor(name: &ObjectName) -> bool {
    match name.0.as_slice() {
        [part] => part.as_ident().is_some_and(|i| {
            i.quote_style.is_none()
                && (i.value.eq_ignore_ascii_case("array") || i.value.eq_ignore_ascii_case("row"))
        }),
        _ => false,
    }
}

/// A prepared statement's name in EXECUTE, which sqlparser keeps as an object name.
pub(super) fn object_ident(name: &ObjectName) -> String {
    match name.0.as_slice() {
        [part] => part.as_ident().map_or_else(|| object(name), identifier),
        _ => object(name),
    }
}

/// The target of `SELECT ... INTO target`, which sqlparser keeps as an expression.
pub(super) fn into_target(target: &Expr) -> String {
    match target {
        Expr::Identifier(ident) => ident.value.to_ascii_lowercase(),
        Expr::CompoundIdentifier(idents) => idents
            .iter()
            .map(|i| i.value.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join("."),
        other => other.to_string().to_ascii_lowercase(),
    }
}
