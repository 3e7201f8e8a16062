//! The web console at `/ui`: a page for ops and experimenters that shows
//! live traffic, per-arm health, experiments, models and the alias history,
//! and flips, rolls back, reweights and promotes through the admin API.
//!
//! The console holds no data and has no privileged path: its files are
//! static, and the page reads `GET /admin/overview`, `/admin/history` and
//! `/metrics` like any client, sending the admin token the user typed (kept
//! in the browser's session storage) as `Authorization: Bearer`. What it
//! can see and do is therefore exactly what the admin API allows that
//! token; without one it is read-only. No cookies are set, so a cross-site
//! request cannot act with the user's rights. Every answer carries a strict
//! Content-Security-Policy (no inline script, nothing from other origins,
//! no framing).

mod assets;

use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::AppState;
use assets::Asset;

/// What the console's pages and files may load: scripts, styles and data
/// from this origin only; never framed; no forms, plugins or base rewrites.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes: the page at `/ui` (and `/ui/`), its two scripts
/// and its stylesheet.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| async { serve(&assets::PAGE) }))
        .route("/ui/", get(|| async { serve(&assets::PAGE) }))
        .route("/ui/console.js", get(|| async { serve(&assets::SCRIPT) }))
        .route("/ui/chart.js", get(|| async { serve(&assets::CHART) }))
        .route("/ui/console.css", get(|| async { serve(&assets::STYLE) }))
}

fn serve(asset: &'static Asset) -> Response {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // The files change with the binary; always revalidate.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, asset.body).into_response()
}
