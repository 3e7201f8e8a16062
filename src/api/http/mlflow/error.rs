//! Errors in MLflow's shape, `{"error_code": ..., "message": ...}`, with the
//! status and code from the one classification in [`crate::api::error`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::api::error::{auth_headers, classify};
use crate::error::Error;

/// A failed `/invocations` call's response, and its body for the table.
pub fn mlflow_error(error: &Error) -> (Response, Option<String>) {
    let classified = classify(error);
    let body = json!({ "error_code": classified.mlflow, "message": error.to_string() });
    let text = body.to_string();
    let mut response = (classified.http, Json(body)).into_response();
    if classified.http == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    auth_headers(error, response.headers_mut());
    (response, Some(text))
}
