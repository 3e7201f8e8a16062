//! Prometheus metrics at `/metrics`: a recorder installed once per process,
//! and gauges of the model store refreshed at every scrape.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::serving::{AliasState, ModelStore};

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
                .inspect(|handle| spawn_upkeep(handle.clone()))
        })
        .as_ref()
}

/// How often histogram samples are folded into their summaries when
/// nobody scrapes `/metrics`.
const UPKEEP: Duration = Duration::from_secs(5);

/// The exporter keeps every histogram sample until an upkeep (or a scrape)
/// folds it in: without this thread, a server that is never scraped grows
/// by ~40 bytes per request (found with podium-loadtest: +2 MiB per 50,000
/// requests, flat once upkeep runs).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("podium-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(
            "metrics upkeep thread not started ({e}); histograms grow until /metrics is scraped"
        );
    }
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
        // 1 while a version the alias serves or keeps for rollback differs
        // on disk from when it was loaded.
        metrics::gauge!("podium_registry_drift", &labels).set(if slot.drift.is_some() {
            1.0
        } else {
            0.0
        });
        // 1 for the alias's state (why it is or is not serving), 0 for the others.
        for state in AliasState::NAMES {
            let labels = [&labels[..], &[("state", state.to_string())]].concat();
            metrics::gauge!("podium_alias_state", &labels).set(if state == slot.state {
                1.0
            } else {
                0.0
            });
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::serving::test_registry::Fixture;
    use crate::serving::Reconciler;

    #[tokio::test]
    async fn each_alias_shows_its_state() {
        let fx = Fixture::fraud(0);
        let _reconciler = Reconciler::spawn(Arc::clone(&fx.store), Duration::from_secs(60));
        fx.store.refresh().await.unwrap();
        let text = render(&fx.store);
        let line = |state: &str, value: u8| {
            format!(
                "podium_alias_state{{model=\"fraud\",alias=\"champion\",state=\"{state}\"}} {value}"
            )
        };
        assert!(text.contains(&line("serving", 1)), "{text}");
        assert!(text.contains(&line("refused", 0)), "{text}");
    }
}
