//! Triton's model repository and model configuration extensions over REST:
//! `POST /v2/repository/index`, `POST /v2/repository/models/{model}/load`
//! and `/unload` (refused: the registry manages what is loaded), and
//! `GET /v2/models/{model}[/versions/{version}]/config`. The answers come
//! from [`crate::api::triton`], shared with gRPC.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::api::triton;
use crate::api::AppState;
use crate::error::Error;

type S = State<Arc<AppState>>;

/// `POST /v2/repository/index`, body optional `{"ready": bool}`: Triton's
/// `[{"name", "version", "state", "reason"}]`.
pub async fn repository_index(State(state): S, body: Bytes) -> Result<Json<Value>, ApiError> {
    let ready = ready_only(&body)?;
    let index: Vec<Value> = triton::repository_index(&state, ready)
        .into_iter()
        .map(|e| json!({ "name": e.name, "version": e.version, "state": e.state, "reason": e.reason }))
        .collect();
    Ok(Json(Value::Array(index)))
}

/// The index request's `ready`: false for an empty body.
fn ready_only(body: &[u8]) -> Result<bool, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let invalid = |why: String| {
        Error::InvalidInput(format!(
            "the repository index request {why}; send {{\"ready\": true}}, {{}} or no body"
        ))
    };
    let request: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("is not JSON ({e})")))?;
    let Value::Object(fields) = request else {
        return Err(invalid("is not a JSON object".into()));
    };
    match fields.get("ready") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(ready)) => Ok(*ready),
        Some(other) => Err(invalid(format!(
            "has \"ready\": {other}, not true or false"
        ))),
    }
}

/// `POST /v2/repository/models/{model}/load`: refused with 400 and the
/// command that moves an alias.
pub async fn load(State(state): S, Path(model): Path<String>) -> ApiError {
    ApiError(Error::InvalidInput(triton::model_control_refused(
        &state, &model, "load",
    )))
}

/// `POST /v2/repository/models/{model}/unload`: refused as `load` is.
pub async fn unload(State(state): S, Path(model): Path<String>) -> ApiError {
    ApiError(Error::InvalidInput(triton::model_control_refused(
        &state, &model, "unload",
    )))
}

/// `GET /v2/models/{model}/config`: the default route's version.
pub async fn model_config(state: S, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    config(state, model, None).await
}

/// `GET /v2/models/{model}/versions/{version}/config`.
pub async fn model_config_version(
    state: S,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    config(state, model, Some(version)).await
}

/// Triton's JSON rendering of a `ModelConfig` (field names as in its
/// protobuf, enums by name, dims as numbers).
async fn config(
    State(state): S,
    name: String,
    version: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let config = triton::model_config(&state, &name, version.as_deref()).await?;
    let input: Vec<Value> = config
        .inputs
        .iter()
        .map(|t| json!({ "name": t.name, "data_type": t.data_type, "format": "FORMAT_NONE", "dims": t.dims }))
        .collect();
    let output: Vec<Value> = config
        .outputs
        .iter()
        .map(|t| json!({ "name": t.name, "data_type": t.data_type, "dims": t.dims }))
        .collect();
    let mut body = json!({
        "name": config.name,
        "platform": triton::ModelConfig::PLATFORM,
        "backend": triton::ModelConfig::BACKEND,
        // Every registered version answers by number (loaded on first use).
        "version_policy": { "all": {} },
        "max_batch_size": config.max_batch_size,
        "input": input,
        "output": output,
    });
    if let Some(b) = &config.dynamic_batching {
        body["dynamic_batching"] = json!({
            "preferred_batch_size": b.preferred_batch_sizes,
            "max_queue_delay_microseconds": b.max_queue_delay_microseconds,
        });
    }
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_request_bodies() {
        for (body, ready) in [
            ("", false),
            ("  \n", false),
            ("{}", false),
            ("{\"ready\": null}", false),
            ("{\"ready\": false}", false),
            ("{\"ready\": true}", true),
            ("{\"ready\": true, \"repository_name\": \"\"}", true),
        ] {
            assert_eq!(ready_only(body.as_bytes()).unwrap(), ready, "{body:?}");
        }
        for (body, says) in [
            ("{", "is not JSON"),
            ("[true]", "is not a JSON object"),
            (
                "{\"ready\": \"yes\"}",
                "has \"ready\": \"yes\", not true or false",
            ),
        ] {
            let e = ready_only(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "{body:?}: {e}");
            assert!(e.contains("send {\"ready\": true}"), "{e}");
        }
    }
}
