//! The HTTP admin server: health and readiness for load balancers and orchestrators, the
//! status API, reloads.

pub mod dashboard;
pub mod metrics;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::frontend::Shared;

/// Serves the admin endpoints on `listener` until shutdown completes.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    status::started();
    axum::serve(listener, router(shared)).await
}

pub fn router(shared: Arc<Shared>) -> Router {
    // Load balancers probe health and readiness without credentials; the rest may need the
    // configured token.
    let guarded = Router::new()
        .route("/reload", post(reload))
        .route("/api/status", get(status::api_status))
        .route("/metrics", get(metrics::render))
        .route("/", get(dashboard::page))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(shared)
}

/// With `admin_token` set, a request must carry it as `Authorization: Bearer <token>` or as
/// `?token=<token>` (so a browser can open the dashboard); else 401.
async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = shared.live().config.admin_token.clone() else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
    let given = bearer.or(query).unwrap_or_default();
    if crate::auth::constant_time_eq(given.as_bytes(), token.0.as_bytes()) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "a valid admin token is required\n",
        )
            .into_response()
    }
}

/// The process is alive and answering.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to take new sessions: not draining, and some node can serve (a primary, or a replica
/// for reads). Load balancers stop sending clients once this turns 503.
async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    let topology = shared.topology.load();
    let can_serve = topology
        .clusters
        .iter()
        .all(|c| c.serving().any(|n| n.is_available()));
    if shared.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !can_serve {
        (StatusCode::SERVICE_UNAVAILABLE, "no server available\n")
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
