//! `/`: the live dashboard. One self-contained page (HTML, CSS and JS in
//! `dashboard/dashboard.html`, compiled in) that polls `/api/status` every second and keeps the
//! lag history and rates in the browser, so the admin server stays stateless.

use axum::http::header;
use axum::response::{Html, IntoResponse};

/// The page, embedded so that the binary needs no files next to it.
const PAGE: &str = include_str!("dashboard/dashboard.html");

/// What the page may do: its own inline script and style, and requests to this server only.
/// The page loads nothing from elsewhere; the policy makes that a guarantee, not a habit.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            // Always the page of the running version, never a stale one after an upgrade.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(PAGE),
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn page_is_small_and_self_contained() {
        assert!(PAGE.len() < 25 * 1024, "{} bytes", PAGE.len());
        // No resource from the network: no external scripts, styles, fonts or images.
        for banned in ["https://", "src=", "href=", "@import", "url("] {
            assert!(!PAGE.contains(banned), "the page contains {banned:?}");
        }
    }

    #[test]
    fn page_polls_the_status_api_relatively() {
        // Relative, so the page keeps working behind a reverse proxy that mounts it elsewhere.
        assert!(PAGE.contains("fetch(\"api/status\""));
        assert!(PAGE.contains("data-lag-node") && PAGE.contains("data-health-node"));
    }
}
