//! `POST /admin/models`: a new version, uploaded as the body (the normal
//! way) or, when `--admin-register-dir` allows it, read from a file of the
//! server inside that directory. Either way the model is refused unless it is
//! within `--max-model-bytes` (413) and parses as ONNX (400), before anything
//! is written to the registry.

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
    validate_model_name, ModelFile, RegisterDir, DEFAULT_MAX_MODEL_BYTES, MODEL_CAP_FLAG,
};

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
}

#[derive(Deserialize)]
struct RegisterPath {
    name: String,
    path: PathBuf,
}

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
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (name, model, _permit) = if is_json {
        by_path(&state, &headers, body).await?
    } else {
        by_upload(&state, q, &headers, body).await?
    };
    let models = Arc::clone(state.core.models());
    let n = name.clone();
    let (version, model) = blocking(move || {
        let version = models.registry().register_model(&n, &model)?;
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
    let mut event = crate::serving::Event::new(&name, "", "version_registered", &caller.by());
    event.to_version = Some(version);
    state.core.models().history().record(&event);
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
) -> Result<(String, ModelFile, Option<BodyPermit>), ApiError> {
    let (body, _permit) =
        read_body(headers, body, state.max_request_bytes, &state.body_budget).await?;
    let req: RegisterPath = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::InvalidInput(format!(
            "expected {{\"name\": MODEL, \"path\": \"/path/on/the/server.onnx\"}}: {e}"
        )))
    })?;
    validate_model_name(&req.name)?;
    let Some(dir) = state.registration.dir.clone() else {
        return Err(ApiError(Error::Forbidden(
            "registering a file of the server by path is off; upload the ONNX file as the body (POST /admin/models?name=MODEL), or start the server with --admin-register-dir DIR (PODIUM_ADMIN_REGISTER_DIR) to allow the files inside DIR".into(),
        )));
    };
    let max = state.registration.max_model_bytes;
    let model = blocking(move || dir.read(&req.path, max)).await?;
    Ok((req.name, model, None))
}

/// The body as the model, read up to the size cap and checked.
async fn by_upload(
    state: &AppState,
    q: RegisterQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, ModelFile, Option<BodyPermit>), ApiError> {
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
    Ok((name, model, Some(permit)))
}
