//! `POST /admin/models`: a new version, uploaded as the body (the normal
//! way) or, when `--admin-register-dir` allows it, read from a file of the
//! server inside that directory. Either way the model is refused unless it is
//! within `--max-model-bytes` (413), parses as ONNX (400) and has the
//! signature of the version the model's champion points at (409, unless
//! `allow_signature_change`), before anything is written to the registry.
//! A JSON body is read as JSON with or without a `Content-Type`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::admin::blocking;
use super::body::{read_body, read_body_within};
use super::budget::BodyPermit;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::auth::AdminCaller;
use crate::error::Error;
use crate::registry::{
    check_against_champion, validate_model_name, ModelFile, RegisterDir, DEFAULT_MAX_MODEL_BYTES,
    MODEL_CAP_FLAG,
};
use crate::serving::history::Change;

/// How the admin API takes new versions.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The directory whose files may be registered by path
    /// (`--admin-register-dir`); None: uploads only, a path is refused (403).
    pub dir: Option<RegisterDir>,
    /// The largest model accepted, uploaded or by path (`--max-model-bytes`).
    pub max_model_bytes: u64,
}

impl Default for Registration {
    /// Uploads only, up to [`DEFAULT_MAX_MODEL_BYTES`].
    fn default() -> Registration {
        Registration {
            dir: None,
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RegisterQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    allow_signature_change: bool,
}

#[derive(Deserialize)]
struct RegisterPath {
    name: String,
    path: PathBuf,
    #[serde(default)]
    allow_signature_change: bool,
}

/// How an API caller registers a version whose signature differs.
const ALLOW_HINT: &str =
    "?allow_signature_change=true (\"allow_signature_change\": true in a JSON body)";

/// Registers a new version: the ONNX file as the body
/// (`POST /admin/models?name=fraud`, `application/octet-stream`), or a file
/// on the server inside `--admin-register-dir`
/// (`{"name": "fraud", "path": "fraud.onnx"}`, relative to that directory).
pub(super) async fn register(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<AdminCaller>,
    Query(q): Query<RegisterQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // A registry that never takes versions from Podium (MLflow) says so,
    // and how to register instead, before any file is read.
    let named = q.name.as_deref().unwrap_or("the model");
    state.core.models().registry().takes_registrations(named)?;
    // JSON names a file by path. Without a Content-Type, a body is JSON
    // unless the query names the model (an upload needs ?name=).
    let is_json = match headers.get(header::CONTENT_TYPE) {
        Some(v) => v.to_str().is_ok_and(|v| v.starts_with("application/json")),
        None => q.name.is_none(),
    };
    let allow_in_query = q.allow_signature_change;
    let (name, model, allow, _permit) = if is_json {
        by_path(&state, &headers, body).await?
    } else {
        by_upload(&state, q, &headers, body).await?
    };
    let allow = allow || allow_in_query;
    let models = Arc::clone(state.core.models());
    let n = name.clone();
    let (version, model) = blocking(move || {
        let registry = models.registry().as_ref();
        if !allow {
            check_against_champion(registry, &n, &model, "the new file", ALLOW_HINT)?;
        }
        let version = registry.register_model(&n, &model)?;
        Ok((version, model))
    })
    .await?;
    let summary = model.summary();
    tracing::info!(
        "registered {name} v{version} through the admin API ({} bytes; inputs: {}; outputs: {})",
        model.bytes().len(),
        summary.inputs.join(", "),
        summary.outputs.join(", ")
    );
    state
        .core
        .models()
        .history()
        .record_change(&name, Change::Registered(version), &caller.by());
    Ok((
        StatusCode::CREATED,
        Json(json!({ "model": name, "version": version })),
    )
        .into_response())
}

/// `{"name": ..., "path": ...}`: the file, read and checked, when paths are
/// allowed at all and it lies inside the allowed directory.
async fn by_path(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, ModelFile, bool, Option<BodyPermit>), ApiError> {
    let (body, _permit) =
        read_body(headers, body, state.max_request_bytes, &state.body_budget).await?;
    if body.is_empty() {
        return Err(ApiError(Error::InvalidInput(
            "name the model: POST /admin/models?name=MODEL with the ONNX file as the body (or a JSON body {\"name\": MODEL, \"path\": FILE} when --admin-register-dir allows it)".into(),
        )));
    }
    let req: RegisterPath = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::InvalidInput(format!(
            "expected {{\"name\": MODEL, \"path\": \"/path/on/the/server.onnx\"}} (or the ONNX file as the body of POST /admin/models?name=MODEL): {e}"
        )))
    })?;
    validate_model_name(&req.name)?;
    let Some(dir) = state.registration.dir.clone() else {
        return Err(ApiError(Error::Forbidden(
            "registering a file of the server by path is off; upload the ONNX file as the body (POST /admin/models?name=MODEL), or start the server with --admin-register-dir DIR (PODIUM_ADMIN_REGISTER_DIR) to allow the files inside DIR".into(),
        )));
    };
    let max = state.registration.max_model_bytes;
    let path = req.path;
    let model = blocking(move || dir.read(&path, max)).await?;
    Ok((req.name, model, req.allow_signature_change, None))
}

/// The body as the model, read up to the size cap and checked.
async fn by_upload(
    state: &AppState,
    q: RegisterQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, ModelFile, bool, Option<BodyPermit>), ApiError> {
    let Some(name) = q.name else {
        return Err(ApiError(Error::InvalidInput(
            "name the model: POST /admin/models?name=MODEL with the ONNX file as the body".into(),
        )));
    };
    validate_model_name(&name)?;
    let max = state.registration.max_model_bytes;
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    // The body is held (and counted in the body budget) until it is written.
    let (body, permit) =
        read_body_within(headers, body, limit, MODEL_CAP_FLAG, &state.body_budget).await?;
    if body.is_empty() {
        return Err(ApiError(Error::InvalidInput(
            "the body is empty; send the ONNX file".into(),
        )));
    }
    let model = blocking(move || ModelFile::from_bytes(body, "the uploaded file", max)).await?;
    Ok((name, model, false, Some(permit)))
}
