//! Unit tests of the cache: one file per part.

mod key;
mod names;
mod notify;
mod policy;
mod store;

use crate::route::classify::{Classification, FunctionPolicy, classify};

/// The classification the session would have for `sql`.
fn classified(sql: &str) -> Classification {
    classify(sql, &FunctionPolicy::default())
}
