//! `grpc.health.v1` kept in step with the server: the server (`""` and the
//! inference service) is SERVING when ready, each model when its default
//! alias serves, and each endpoint when every one of its arms has a version
//! serving (see [`triton::health_statuses`]). An endpoint removed from the
//! configuration is removed from health too (NOT_FOUND, as for any unknown
//! name).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::api::triton;
use crate::api::AppState;
use crate::serving::HealthSummary;

/// How often the statuses are also recomputed between health summaries:
/// an endpoint's arms and traffic change without a new summary (a traffic
/// change, a configuration reload, a non-default alias swapping).
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Follows the reconciler's health summary and the route table until the
/// store is gone or the task is aborted (at shutdown); only statuses that
/// change are set.
pub async fn follow_health(
    mut reporter: HealthReporter,
    mut health: watch::Receiver<HealthSummary>,
    state: Arc<AppState>,
) {
    let mut reported = BTreeMap::new();
    let mut recheck = tokio::time::interval(RECHECK_INTERVAL);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let summary = health.borrow_and_update().clone();
        report(&mut reporter, &summary, &state, &mut reported).await;
        tokio::select! {
            changed = health.changed() => {
                if changed.is_err() {
                    return; // the store is gone
                }
            }
            _ = recheck.tick() => {}
        }
    }
}

/// Sets every health status once from `summary` and the current routes.
pub async fn update_health(reporter: &HealthReporter, summary: &HealthSummary, state: &AppState) {
    let mut reporter = reporter.clone();
    report(&mut reporter, summary, state, &mut BTreeMap::new()).await;
}

/// Sets the statuses that differ from `reported`, clears the names no
/// longer reported, and records what was set.
async fn report(
    reporter: &mut HealthReporter,
    summary: &HealthSummary,
    state: &AppState,
    reported: &mut BTreeMap<String, ServingStatus>,
) {
    let now: BTreeMap<String, ServingStatus> =
        triton::health_statuses(state, summary.ready, &summary.models)
            .into_iter()
            .map(|(name, serving)| {
                let status = if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                (name, status)
            })
            .collect();
    for gone in reported.keys().filter(|name| !now.contains_key(*name)) {
        reporter.clear_service_status(gone).await;
    }
    for (name, &status) in &now {
        if reported.get(name) != Some(&status) {
            reporter.set_service_status(name, status).await;
        }
    }
    *reported = now;
}
