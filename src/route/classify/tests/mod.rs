//! Tests of statement classification: the shared corpus (also executed for real by the
//! integration tests), a table of detailed cases, odd inputs, and the cache.

mod cache;
mod cases;
mod corpus;
mod robustness;

use super::{Classification, FunctionPolicy, classify};

/// The policy the corpus is run with: `read_only_fn` declared read-only, as in its config.
fn policy() -> FunctionPolicy {
    FunctionPolicy::new(&["read_only_fn".to_owned()])
}

fn classified(sql: &str) -> Classification {
    classify(sql, &policy())
}
