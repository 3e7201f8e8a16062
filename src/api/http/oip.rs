//! OIP REST handlers: metadata and health, and inference as a thin codec
//! around the call pipeline ([`Call`]).

use std::sync::Arc;
use tracing::Instrument;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::body::{header_text, off_runtime, read_body};
use super::codec::{self, HEADER_LENGTH};
use super::respond::{oip_error, respond};
use crate::api::call::Call;
use crate::api::error::ApiError;
use crate::api::keys::RequestKeys;
use crate::api::trace_context::{TRACEPARENT, TRACESTATE};
use crate::api::{AppState, CLIENT_REQUEST_ID};
use crate::auth::Requester;
use crate::error::Error;
use crate::inference_table::Protocol;

type S = State<Arc<AppState>>;

pub async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": "podium",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": crate::api::triton::EXTENSIONS,
    }))
}

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

/// Ready when every aliased model version is loaded (a readinessProbe).
pub async fn ready(State(state): S) -> Response {
    match state.core.models().readiness() {
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
    let (model, spec) = state.core.routes().describe(&name, version.as_deref());
    let loaded = state.core.models().get(&model, &spec).await?;
    let info = state.core.models().info(&model)?;
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
    let (target, spec) = state.core.routes().describe(&model, version.as_deref());
    let (v, ready) = state.core.models().ready(&target, &spec)?;
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
    requester: Option<Extension<Requester>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let requester = requester.map(|Extension(r)| r);
    run_infer(state, model, None, requester, headers, body).await
}

pub async fn infer_version(
    state: S,
    Path((model, version)): Path<(String, String)>,
    requester: Option<Extension<Requester>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let requester = requester.map(|Extension(r)| r);
    run_infer(state, model, Some(version), requester, headers, body).await
}

/// One inference call through the pipeline: answered, and recorded in the
/// inference table (successes and failures alike) when the table is on.
async fn run_infer(
    State(state): S,
    model: String,
    version: Option<String>,
    requester: Option<Requester>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let binary = headers.contains_key(HEADER_LENGTH);
    let protocol = if binary {
        Protocol::RestBinary
    } else {
        Protocol::Rest
    };
    let mut call = Call::start(
        &state,
        protocol,
        &model,
        header_text(&headers, CLIENT_REQUEST_ID),
        requester.as_ref(),
    );
    call.trace(
        header_text(&headers, TRACEPARENT),
        header_text(&headers, TRACESTATE),
    );
    let span = call.span();
    let result = answer(
        &mut call,
        &state,
        version.as_deref(),
        &headers,
        body,
        binary,
    )
    .instrument(span)
    .await;
    respond(call, result, oip_error)
}

async fn answer(
    call: &mut Call<'_>,
    state: &AppState,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    binary: bool,
) -> Result<Response, Error> {
    let (body, permit) =
        read_body(headers, body, state.max_request_bytes, &state.body_budget).await?;
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    Error::InvalidInput(
                        "Inference-Header-Content-Length is not ASCII digits".into(),
                    )
                })?
                .to_string(),
        ),
    };
    // A JSON body is recorded as sent; a binary one once decoded.
    if !binary {
        call.request_text(&body);
    }
    let decoded = off_runtime(body.len(), move || {
        codec::decode(&body, header_length.as_deref())
    })
    .await??;
    drop(permit);
    call.client_request_id(decoded.request.id.as_deref());
    if binary {
        call.request_tensors(&decoded.request);
    }
    call.route(
        version,
        &RestKeys {
            headers,
            parameters: decoded.parameters.as_ref(),
        },
    )?;
    let model = call.resolve().await?;
    let response = call.infer(model, decoded.request).await?;
    let size: usize = response.outputs.iter().map(|t| t.data.raw_len()).sum();
    let encoding = decoded.encoding;
    let (encoded, response) = off_runtime(size, move || {
        (codec::encode(&response, &encoding), response)
    })
    .await?;

    let body = bytes::Bytes::from(encoded.body);
    let content_type = match encoded.header_length {
        Some(_) => "application/octet-stream",
        None => "application/json",
    };
    let mut out = Response::new(Body::from(body.clone()));
    let h = out.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    match encoded.header_length {
        Some(n) => {
            h.insert(HEADER_LENGTH, HeaderValue::from(n));
            call.response_tensors(response);
        }
        None => call.response_text(&body),
    }
    Ok(out)
}

/// Headers and request parameters, where routing's keys may come from.
struct RestKeys<'a> {
    headers: &'a HeaderMap,
    parameters: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl RequestKeys for RestKeys<'_> {
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
