//! The REST listener: the Open Inference Protocol (KServe V2) routes.

mod admin;
pub mod auth;
mod body;
pub mod budget;
pub mod codec;
mod experiments;
pub mod feedback;
mod mlflow;
mod oip;
mod overview;
mod registration;
mod respond;
mod triton;
mod versions;

pub use codec::{decode, encode, Decoded, Encoded, OutputEncoding, HEADER_LENGTH};
pub use registration::Registration;

use std::sync::Arc;

use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::Router;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::auth::{AdminTokens, AuditLog};
use crate::error::Error;

/// Who may use the admin API, and where its calls are audited.
#[derive(Clone)]
pub enum AdminAccess {
    /// Not mounted (no token, and the listener is reachable from other hosts).
    Disabled,
    /// Mounted without a token: on a loopback-only listener, or for clients
    /// with a certificate verified against `--admin-client-ca`.
    Open { audit: Arc<AuditLog> },
    /// Mounted; every route needs `Authorization: Bearer <token>`, one of `tokens`.
    Tokens {
        tokens: Arc<AdminTokens>,
        audit: Arc<AuditLog>,
    },
}

/// All REST routes: probes, metrics and server metadata open; the routes
/// that run or describe models behind the API-key check when `--api-keys`
/// is on; the admin routes as `admin` allows, and only for clients with a
/// certificate verified against `--admin-client-ca` when
/// `admin_client_cert` is set (403 otherwise, before the token check).
pub fn router(state: Arc<AppState>, admin: AdminAccess, admin_client_cert: bool) -> Router {
    // A route that runs or describes a model goes in one of these two groups.
    let models = Router::new()
        .route(
            "/serving-endpoints/{name}/invocations",
            post(mlflow::endpoint_invocations),
        )
        .route("/v2/models/{model}", get(oip::model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(oip::model_metadata_version),
        )
        .route("/v2/models/{model}/ready", get(oip::model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(oip::model_ready_version),
        )
        .route("/v2/models/{model}/config", get(triton::model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(triton::model_config_version),
        )
        // Triton's model repository extension: the index, and load/unload
        // refused (the registry's aliases decide what is loaded).
        .route("/v2/repository/index", post(triton::repository_index))
        .route("/v2/repository/models/{model}/load", post(triton::load))
        .route("/v2/repository/models/{model}/unload", post(triton::unload))
        .route("/v2/models/{model}/infer", post(oip::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(oip::infer_version),
        )
        // Ground truth for earlier calls: the same keys and rates as the
        // calls it labels (no endpoint in the path: any valid key).
        .route("/v2/feedback", post(feedback::feedback));
    let default_endpoint = Router::new().route("/invocations", post(mlflow::invocations));
    Router::new()
        .merge(admin::routes(admin, admin_client_cert))
        .merge(crate::api::console::routes())
        .merge(auth::guard(models, &state, auth::Endpoint::InPath))
        .merge(auth::guard(
            default_endpoint,
            &state,
            auth::Endpoint::Default,
        ))
        .route("/metrics", get(metrics))
        .route("/ping", get(mlflow::ping))
        .route("/health", get(mlflow::ping))
        .route("/version", get(mlflow::version))
        .route("/v2", get(oip::server_metadata))
        .route("/v2/health/live", get(oip::live))
        .route("/v2/health/ready", get(oip::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Prometheus text: swaps, serving versions, resident and draining versions,
/// in-flight requests per version.
async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::render(&state.core),
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError(Error::NotFound(format!(
        "no route {method} {}; the API is the Open Inference Protocol under /v2 (GET /v2, /v2/health/live, /v2/models/{{model}}, POST /v2/models/{{model}}[/versions/{{version}}]/infer)",
        uri.path()
    )))
}

async fn method_not_allowed(method: Method, uri: Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = ApiError(Error::InvalidInput(format!(
        "{} does not accept {method}; inference is POST, metadata and health are GET",
        uri.path()
    )))
    .into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}
