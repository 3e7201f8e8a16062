//! Prometheus metrics at `/metrics`: a recorder installed once per process,
//! and gauges of the model store refreshed at every scrape.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::serving::ModelStore;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                // Gauges of versions that were unloaded stop being refreshed;
                // drop them from the output after a while.
                .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(120)))
                .install_recorder()
                .map_err(|e| tracing::warn!("metrics disabled: {e}"))
                .ok()
        })
        .as_ref()
}

/// The Prometheus text for a scrape.
pub fn render(store: &ModelStore) -> String {
    let Some(handle) = install() else {
        return "# metrics are disabled: the Prometheus recorder could not be installed\n".into();
    };
    let status = store.status();
    for slot in &status.slots {
        let labels = [("model", slot.model.clone()), ("alias", slot.alias.clone())];
        metrics::gauge!("podium_serving_version", &labels)
            .set(slot.serving_version.map(|v| v as f64).unwrap_or(0.0));
        metrics::gauge!("podium_registry_version", &labels).set(slot.registry_version as f64);
    }
    for (state, versions) in [
        ("resident", &status.resident),
        ("draining", &status.draining),
    ] {
        metrics::gauge!("podium_versions", "state" => state).set(versions.len() as f64);
        for v in versions.iter() {
            let labels = [
                ("model", v.model.clone()),
                ("version", v.version.to_string()),
            ];
            metrics::gauge!("podium_in_flight_requests", &labels).set(v.in_flight as f64);
        }
    }
    metrics::gauge!("podium_model_memory_estimate_bytes").set(status.memory_estimate_bytes as f64);
    // 1 while the last read of the registry worked; 0 while degraded (what is
    // loaded keeps serving) or not read yet.
    let registry = &status.registry;
    metrics::gauge!("podium_registry_up", "kind" => registry.kind).set(if registry.state == "ok" {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("podium_registry_consecutive_failures", "kind" => registry.kind)
        .set(registry.consecutive_failures as f64);
    handle.run_upkeep();
    handle.render()
}
