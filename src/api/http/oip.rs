//! OIP REST handlers. Each decodes, calls the core, encodes; no logic of its own.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::codec::{self, HEADER_LENGTH};
use crate::api::error::ApiError;
use crate::api::{AppState, CLIENT_REQUEST_ID, REQUEST_ID};
use crate::error::Error;
use crate::inference_table::{new_request_id, Entry, Protocol};
use crate::routing::RequestMeta;

type S = State<Arc<AppState>>;

pub async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": "podium",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

/// Ready when every aliased model version is loaded (a readinessProbe).
pub async fn ready(State(state): S) -> Response {
    match state.core.models.readiness() {
        Ok(()) => Json(json!({ "ready": true })).into_response(),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": format!("not ready: {}", reasons.join("; ")) })),
        )
            .into_response(),
    }
}

pub async fn model_metadata(state: S, Path(model): Path<String>) -> Result<Response, ApiError> {
    metadata(state, model, None).await
}

pub async fn model_metadata_version(
    state: S,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    metadata(state, model, Some(version)).await
}

async fn metadata(
    State(state): S,
    name: String,
    version: Option<String>,
) -> Result<Response, ApiError> {
    let (model, spec) = state.core.routes.load().describe(&name, version.as_deref());
    let loaded = state.core.models.get(&model, &spec).await?;
    let info = state.core.models.info(&model)?;
    let tensors = |specs: &[crate::runtime::TensorSpec]| -> Vec<serde_json::Value> {
        specs
            .iter()
            .map(|s| json!({ "name": s.name, "datatype": s.datatype.name(), "shape": s.shape }))
            .collect()
    };
    Ok(Json(json!({
        "name": name,
        "versions": info.versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": "onnx_onnxv1",
        "inputs": tensors(&loaded.signature.inputs),
        "outputs": tensors(&loaded.signature.outputs),
        // Podium's additions: which version this answer describes, and the aliases.
        "version": loaded.version.to_string(),
        "aliases": info.aliases,
    }))
    .into_response())
}

pub async fn model_ready(state: S, Path(model): Path<String>) -> Result<Response, ApiError> {
    readiness(state, model, None)
}

pub async fn model_ready_version(
    state: S,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    readiness(state, model, Some(version))
}

fn readiness(
    State(state): S,
    model: String,
    version: Option<String>,
) -> Result<Response, ApiError> {
    let (target, spec) = state
        .core
        .routes
        .load()
        .describe(&model, version.as_deref());
    let (v, ready) = state.core.models.ready(&target, &spec)?;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        Json(json!({ "name": model, "version": v.to_string(), "ready": ready })),
    )
        .into_response())
}

pub async fn infer(
    state: S,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(state, model, None, headers, body).await
}

pub async fn infer_version(
    state: S,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(state, model, Some(version), headers, body).await
}

/// One inference call: answered, and recorded in the inference table
/// (successes and failures alike) when the table is on.
async fn run_infer(
    State(state): S,
    model: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = new_request_id();
    let protocol = if headers.contains_key(HEADER_LENGTH) {
        Protocol::RestBinary
    } else {
        Protocol::Rest
    };
    let mut entry = state.table_entry(&request_id, &model, protocol);
    if let Some(e) = entry.as_mut() {
        e.client_request_id(header_text(&headers, CLIENT_REQUEST_ID));
    }
    let result = answer(
        &state,
        &model,
        version.as_deref(),
        &headers,
        body,
        entry.as_mut(),
    )
    .await;
    let mut response = match result {
        Ok(response) => {
            state.submit(entry, StatusCode::OK.as_u16(), None);
            response
        }
        Err(e) => {
            state.submit(entry, e.status().as_u16(), Some(e.0.to_string()));
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

async fn answer(
    state: &AppState,
    model: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    mut entry: Option<&mut Entry>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let body = read_body(headers, body, state.max_request_bytes).await?;
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            Error::InvalidInput("Inference-Header-Content-Length is not ASCII digits".into())
        })?),
    };
    // A JSON body is recorded as sent; a binary one once decoded.
    let binary = header_length.is_some();
    if let (Some(e), false) = (entry.as_deref_mut(), binary) {
        e.request_text(&body);
    }
    let header_length = header_length.map(str::to_string);
    let decoded = off_runtime(body.len(), move || {
        codec::decode(&body, header_length.as_deref())
    })
    .await??;
    if let Some(e) = entry.as_deref_mut() {
        e.client_request_id(decoded.request.id.as_deref());
        if binary {
            e.request_tensors(&decoded.request);
        }
    }
    let meta = RestMeta {
        headers,
        parameters: decoded.parameters.as_ref(),
    };
    let response = state
        .core
        .infer(
            model,
            version,
            &meta,
            decoded.request,
            entry.as_deref_mut().map(Entry::served),
        )
        .await?;
    let size: usize = response.outputs.iter().map(|t| t.data.raw_len()).sum();
    let encoding = decoded.encoding;
    let (encoded, response) = off_runtime(size, move || {
        (codec::encode(&response, &encoding), response)
    })
    .await?;

    let body = bytes::Bytes::from(encoded.body);
    let mut out = Response::new(Body::from(body.clone()));
    let h = out.headers_mut();
    match encoded.header_length {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    for (key, value) in [
        ("x-podium-endpoint", &response.endpoint),
        ("x-podium-arm", &response.arm),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(key, v);
        }
    }
    h.insert(
        "x-podium-model-version",
        HeaderValue::from(response.model_version),
    );
    h.insert(
        "x-podium-queue-us",
        HeaderValue::from(response.timing.queue.as_micros() as u64),
    );
    h.insert(
        "x-podium-inference-us",
        HeaderValue::from(response.timing.inference.as_micros() as u64),
    );
    h.insert(
        "x-podium-total-us",
        HeaderValue::from(started.elapsed().as_micros() as u64),
    );
    if let Some(e) = entry {
        match encoded.header_length {
            None => e.response_text(&body),
            Some(_) => e.response_tensors(response),
        }
    }
    Ok(out)
}

/// A header's value as text, when it is.
pub(super) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// Bodies from this size on are decoded (and answers encoded) on the
/// blocking pool, so a big JSON tensor never stalls the async workers that
/// answer everyone else.
const BLOCKING_BYTES: usize = 256 * 1024;

/// Runs `work` here when `size` is small, else on the blocking pool, at most
/// one per core at a time: JSON trees take tens of times the body's size in
/// memory, so a burst of huge bodies must not all expand at once.
pub(super) async fn off_runtime<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if size < BLOCKING_BYTES {
        return Ok(work());
    }
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
    });
    let _permit = permits
        .acquire()
        .await
        .map_err(|_| ApiError(Error::Internal("decode permits closed".into())))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError(Error::Internal(format!("decoding task failed: {e}"))))
}

/// Headers and request parameters, for routing (sticky key, arm override).
struct RestMeta<'a> {
    headers: &'a HeaderMap,
    parameters: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl RequestMeta for RestMeta<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    fn parameter(&self, name: &str) -> Option<String> {
        match self.parameters?.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// Reads the whole body, refusing more than `limit` bytes (413) before
/// buffering them, and compressed bodies (415) with the fix.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        if encoding.as_bytes() != b"identity" {
            return Err(ApiError(Error::Unsupported(format!(
                "Content-Encoding {:?} is not supported; send the body uncompressed",
                String::from_utf8_lossy(encoding.as_bytes())
            ))));
        }
    }
    let too_large = |size: Option<u64>| {
        let size = size
            .map(|s| format!("{s} bytes"))
            .unwrap_or_else(|| "larger".into());
        ApiError(Error::PayloadTooLarge(format!(
            "request body is {size}; the limit is {limit} bytes (raise it with --max-request-bytes / PODIUM_MAX_REQUEST_BYTES)"
        )))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(declared));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(None)),
        Err(e) => Err(ApiError(Error::InvalidInput(format!(
            "could not read the request body: {e}"
        )))),
    }
}
