//! The admin API's experiments: `GET /admin/experiments` (the endpoints
//! with a readout), `GET /admin/experiments/{endpoint}` (its readout, live
//! since the server started, with the guardrail's stopped arms and the
//! rollout), `POST /admin/experiments/{endpoint}/promote` and
//! `POST /admin/experiments/{endpoint}/rollout/{stop|resume}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use crate::api::error::ApiError;
use crate::api::experiment_controls::{self, NotPromoted};
use crate::api::rollout_controls::{self, RolloutAction};
use crate::api::AppState;
use crate::auth::AdminCaller;
use crate::error::Error;
use crate::experiments::PromoteIf;

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
    let view = experiment_controls::readout_view(&state, &name).await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteRequest {
    condition: PromoteIf,
    /// The arm to promote [default: the one arm besides the baseline].
    #[serde(default)]
    arm: Option<String>,
}

/// Promotes the endpoint's challenger when the readout's decision meets
/// `condition`; 409 with the readout's reason when it does not.
pub async fn promote(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: PromoteRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::InvalidInput(format!(
            "expected a JSON body like {{\"condition\": \"better\"}} (or \"not_worse\"; optionally \"arm\": \"challenger\"): {e}"
        )))
    })?;
    let by = caller.by();
    match experiment_controls::promote(&state, &name, req.arm.as_deref(), req.condition, &by).await
    {
        Ok(promotion) => Ok(Json(promotion).into_response()),
        Err(NotPromoted::Condition { reason, .. }) => Err(ApiError(Error::Refused(reason))),
        Err(NotPromoted::Failed(e)) => Err(ApiError(e)),
    }
}

/// Stops or resumes the endpoint's rollout; answers the rollout as it is
/// then (404 without one, 409 when its state does not allow the action).
pub async fn rollout(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let action = RolloutAction::parse(&name, &action)?;
    let rollout = rollout_controls::rollout_command(&state, &name, action, &caller.by()).await?;
    Ok(Json(json!({ "endpoint": name, "rollout": rollout })).into_response())
}
