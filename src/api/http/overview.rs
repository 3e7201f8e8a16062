//! `GET /admin/overview`: what the console at `/ui` shows, in one call and
//! under the admin API's access rules — the status of every alias and
//! loaded version, every endpoint's traffic policy, the readout of every
//! endpoint with an experiment, and each arm's traffic over the last
//! minutes (calls, errors and latency in buckets of
//! [`crate::telemetry::BUCKET_SECS`] seconds).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::json;

use crate::api::experiment_controls::readout_view;
use crate::api::AppState;
use crate::telemetry::{BUCKET_SECS, WINDOW_BUCKETS};

pub async fn overview(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let routes = state.core.routes();
    let mut endpoints: Vec<&crate::routing::Endpoint> =
        routes.endpoints.values().map(|e| e.as_ref()).collect();
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    let names = state
        .experiments
        .as_deref()
        .map(|e| e.names())
        .unwrap_or_default();
    let mut experiments = serde_json::Map::new();
    for name in names {
        let view = match readout_view(&state, name).await {
            Ok(view) => serde_json::to_value(view).unwrap_or_default(),
            Err(e) => json!({ "error": e.to_string() }),
        };
        experiments.insert(name.to_string(), view);
    }
    Json(json!({
        "status": state.core.models().status(),
        "endpoints": endpoints,
        "experiments": experiments,
        "traffic": {
            "bucket_seconds": BUCKET_SECS,
            "window_seconds": BUCKET_SECS * WINDOW_BUCKETS as u64,
            "arms": state.series.snapshot(),
        },
    }))
}
