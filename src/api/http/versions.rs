//! Retiring versions through the admin API:
//! `DELETE /admin/models/{model}/versions/{version}`,
//! `POST /admin/models/{model}/versions/{version}/archive` and `/unarchive`,
//! as `podium models delete-version`, `archive` and `unarchive` do in the
//! registry; each is refused (409) while an alias points at the version and
//! written to the alias history.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::admin::blocking;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::auth::AdminCaller;
use crate::serving::history::Change;

type S = State<Arc<AppState>>;

/// `DELETE /admin/models/{model}/versions/{version}`.
pub(super) async fn delete(
    state: S,
    caller: Extension<AdminCaller>,
    Path((model, version)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    retire(
        state,
        caller,
        model,
        version,
        Change::VersionDeleted(version),
    )
    .await
}

/// `POST /admin/models/{model}/versions/{version}/archive`.
pub(super) async fn archive(
    state: S,
    caller: Extension<AdminCaller>,
    Path((model, version)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    retire(state, caller, model, version, Change::Archived(version)).await
}

/// `POST /admin/models/{model}/versions/{version}/unarchive`.
pub(super) async fn unarchive(
    state: S,
    caller: Extension<AdminCaller>,
    Path((model, version)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    retire(state, caller, model, version, Change::Unarchived(version)).await
}

/// Makes `change` in the registry, records it, and has this server read the
/// registry again (so `latest` follows at once).
async fn retire(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
    model: String,
    version: u64,
    change: Change<'static>,
) -> Result<Response, ApiError> {
    let models = Arc::clone(state.core.models());
    let m = model.clone();
    blocking(move || {
        let registry = models.registry();
        match change {
            Change::VersionDeleted(v) => registry.delete_version(&m, v),
            Change::Archived(v) => registry.set_archived(&m, v, true),
            _ => registry.set_archived(&m, version, false),
        }?;
        models.history().record_change(&m, change, &caller.by());
        Ok(())
    })
    .await?;
    state.core.models().refresh().await?;
    let done = match change {
        Change::VersionDeleted(_) => "deleted",
        Change::Archived(_) => "archived",
        _ => "unarchived",
    };
    Ok(Json(json!({ "model": model, "version": version, done: true })).into_response())
}
