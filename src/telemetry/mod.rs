//! Prometheus metrics at `/metrics`: a recorder installed once per process,
//! the catalogue of help texts and series that exist from start-up
//! ([`catalog`]), and gauges of the serving core refreshed at every scrape.

mod catalog;
mod series;

pub use catalog::{declare, Declared};
pub use series::{ArmSeries, ArmTrace, Point, BUCKET_SECS, WINDOW_BUCKETS};

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::serving::{AliasState, Core};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Bucket bounds (seconds) of every `*_seconds` histogram: from 50 µs (a
/// small tabular model answered on a warm connection) to 10 s (a slow load
/// or a deadline). Histograms, not summaries, so that a fleet's replicas
/// can be aggregated (`histogram_quantile(0.99, sum by (le) (rate(...)))`).
pub const SECONDS_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of `podium_batch_size`: powers of two up to the largest
/// `max_batch_size` accepted.
pub const BATCH_SIZE_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Installs the Prometheus recorder (once per process; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("podium_batch_size".into()),
                        &BATCH_SIZE_BUCKETS,
                    )
                })
                .map_err(|e| tracing::warn!("metrics histograms fall back to summaries: {e}"))
                .unwrap_or_else(|()| PrometheusBuilder::new())
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

/// How often histogram samples are folded into their buckets when
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
pub fn render(core: &Core) -> String {
    let Some(handle) = install() else {
        return "# metrics are disabled: the Prometheus recorder could not be installed\n".into();
    };
    let (requests, shadow) = core.queued();
    metrics::gauge!("podium_inference_queue_depth", "pool" => "requests").set(requests as f64);
    if let Some(shadow) = shadow {
        metrics::gauge!("podium_inference_queue_depth", "pool" => "shadow").set(shadow as f64);
    }
    // Where requests ran: on the thread that received them (run to
    // completion, --run-on-caller-max-us) or after a hand-off.
    let (on_caller, on_pool) = core.runs();
    metrics::counter!("podium_inference_runs_total", "thread" => "caller").absolute(on_caller);
    metrics::counter!("podium_inference_runs_total", "thread" => "inference").absolute(on_pool);
    let status = core.models().status();
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
    use crate::routing::RouteTable;
    use crate::runtime::pool::InferencePool;
    use crate::serving::test_registry::Fixture;
    use crate::serving::Reconciler;

    fn core(fx: &Fixture) -> Core {
        let pool = InferencePool::start(1, 4).unwrap();
        Core::new(Arc::clone(&fx.store), pool, None, RouteTable::default())
    }

    #[tokio::test]
    async fn each_alias_shows_its_state() {
        let fx = Fixture::fraud(0);
        let _reconciler = Reconciler::spawn(Arc::clone(&fx.store), Duration::from_secs(60));
        fx.store.refresh().await.unwrap();
        let text = render(&core(&fx));
        let line = |state: &str, value: u8| {
            format!(
                "podium_alias_state{{model=\"fraud\",alias=\"champion\",state=\"{state}\"}} {value}"
            )
        };
        assert!(text.contains(&line("serving", 1)), "{text}");
        assert!(text.contains(&line("refused", 0)), "{text}");
        assert!(
            text.contains("podium_inference_queue_depth{pool=\"requests\"} 0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn seconds_are_histograms_with_fixed_buckets() {
        let fx = Fixture::fraud(0);
        install();
        metrics::histogram!("podium_telemetry_test_seconds").record(0.003);
        let text = render(&core(&fx));
        assert!(
            text.contains("# TYPE podium_telemetry_test_seconds histogram"),
            "{text}"
        );
        // 3 ms lands in the 5 ms bucket and above, not in the 2.5 ms one.
        let bucket = |le: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "podium_telemetry_test_seconds_bucket{{le=\"{le}\"}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        assert_eq!(bucket("0.0025").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("0.005").as_deref(), Some("1"), "{text}");
        assert_eq!(bucket("+Inf").as_deref(), Some("1"), "{text}");
    }
}
