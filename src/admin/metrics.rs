//! `/metrics`: Prometheus text exposition (stub: filled in by the metrics work).

use std::sync::Arc;

use axum::extract::State;

use crate::frontend::Shared;

pub async fn render(State(_shared): State<Arc<Shared>>) -> String {
    String::new()
}
