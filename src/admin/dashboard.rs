//! `/`: the live dashboard, one page with everything embedded (stub: filled in by the dashboard
//! work).

use axum::response::Html;

pub async fn page() -> Html<&'static str> {
    Html("<!doctype html><title>pgsplit</title><p>pgsplit</p>")
}
