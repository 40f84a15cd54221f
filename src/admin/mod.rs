//! The HTTP admin server: health and readiness for load balancers and orchestrators, the
//! status API, reloads.

pub mod dashboard;
pub mod metrics;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::frontend::Shared;

/// Serves the admin endpoints on `listener` until shutdown completes.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    status::started();
    axum::serve(listener, router(shared)).await
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/reload", post(reload))
        .route("/api/status", get(status::api_status))
        .route("/metrics", get(metrics::render))
        .route("/", get(dashboard::page))
        .with_state(shared)
}

/// The process is alive and answering.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to take new sessions: not draining. Load balancers stop sending clients once this
/// turns 503.
async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Reloads the configuration file: 200 with what is now in force, or 400 with the error (and
/// the running configuration unchanged).
async fn reload(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match crate::reload::reload(&shared) {
        Ok(summary) => (StatusCode::OK, format!("reloaded: {summary}\n")),
        Err(e) => (StatusCode::BAD_REQUEST, format!("reload refused: {e}\n")),
    }
}

/// Binds the admin address, naming it in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on admin address {addr}: {e}"),
        )
    })
}
