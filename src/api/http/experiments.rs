//! The admin API's experiment readouts: `GET /admin/experiments` (the
//! endpoints with one) and `GET /admin/experiments/{endpoint}` (its
//! readout, live since the server started).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::error::Error;
use crate::experiments::ArmPolicy;
use crate::registry::VersionSpec;

type S = State<Arc<AppState>>;

pub async fn list(State(state): S) -> Json<serde_json::Value> {
    let names = state
        .experiments
        .as_deref()
        .map(|e| e.names())
        .unwrap_or_default();
    Json(json!({ "experiments": names }))
}

pub async fn show(State(state): S, Path(name): Path<String>) -> Result<Response, ApiError> {
    let readout = state
        .experiments
        .as_deref()
        .and_then(|e| e.endpoint(&name))
        .ok_or_else(|| {
            let names = state
                .experiments
                .as_deref()
                .map(|e| e.names().join(", "))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "none".into());
            ApiError(Error::NotFound(format!(
                "endpoint \"{name}\" has no experiment readout (endpoints with one: {names}); add an [endpoint.readout] table to its entry in the --config file"
            )))
        })?;
    let endpoint = state
        .core
        .routes()
        .endpoints
        .get(&name)
        .cloned()
        .ok_or_else(|| {
            ApiError(Error::Internal(format!(
                "endpoint \"{name}\" has a readout but no traffic policy"
            )))
        })?;
    let mut policy = Vec::with_capacity(endpoint.arms.len());
    for arm in &endpoint.arms {
        let spec = VersionSpec::Alias(arm.alias.clone());
        let serving = state.core.models().get(&endpoint.model, &spec).await.ok();
        policy.push(ArmPolicy {
            alias: arm.alias.clone(),
            weight: arm.weight,
            version: serving.as_ref().map(|m| m.version),
            outputs: serving.map(|m| m.signature.outputs.iter().map(|o| o.name.clone()).collect()),
        });
    }
    let view = readout.view(&endpoint.experiment, &endpoint.model, &policy);
    Ok(Json(view).into_response())
}
