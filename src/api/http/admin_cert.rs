//! `--admin-client-ca`: the admin API answers only requests whose TLS
//! connection presented a client certificate signed by that CA (the
//! listener verifies it during the handshake and marks each request with a
//! [`ClientCert`]); others get 403.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::listener::ClientCert;

/// The middleware: 403 without a verified client certificate; with one,
/// the call is logged with the certificate's CN and passed on.
pub(super) async fn require_client_cert(req: Request, next: Next) -> Response {
    let Some(cert) = req.extensions().get::<ClientCert>() else {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "the admin API needs a client certificate signed by --admin-client-ca"
            })),
        )
            .into_response();
    };
    tracing::info!(
        "admin {} {} by client certificate CN={}",
        req.method(),
        req.uri().path(),
        cert.common_name.as_deref().unwrap_or("(none)")
    );
    next.run(req).await
}
