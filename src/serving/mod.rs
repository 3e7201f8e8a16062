//! The serving core: which model version answers a request, and running it.
//! Protocol-free: the APIs call [`Core::infer`] with a decoded request.

mod alias_state;
mod commands;
mod history;
mod loader;
mod readiness;
mod reconcile;
mod reconciler;
mod registry_health;
mod slots;
mod status;
mod store;
#[cfg(test)]
pub(crate) mod test_registry;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

pub use crate::registry::ModelInfo;
pub use alias_state::AliasState;
pub use commands::AliasChange;
pub use history::{Event, History};
pub use readiness::HealthSummary;
pub use reconciler::Reconciler;
pub use registry_health::RegistryStatus;
pub use status::{ResidentStatus, SlotStatus, StoreStatus, SwapOutcome, SwapTimings};
pub use store::{ModelStore, StoreOptions};

use crate::error::Error;
use crate::registry::VersionSpec;
use crate::request::{InferRequest, InferResponse, Timing};
use crate::routing::{RequestMeta, RouteTable};
use crate::runtime::pool::InferencePool;
use crate::runtime::InFlight;

/// Everything a request needs: the endpoints' traffic policy, the loaded
/// models and the inference threads.
pub struct Core {
    pub models: Arc<ModelStore>,
    pub pool: Arc<InferencePool>,
    /// Shadow copies run here, on their own threads and sessions, so a slow
    /// shadow model never holds up a request that answers a client.
    pub shadow_pool: Option<Arc<InferencePool>>,
    /// Replaced whole by a traffic change, so no request sees half a policy.
    pub routes: ArcSwap<RouteTable>,
}

impl Core {
    pub fn new(
        models: Arc<ModelStore>,
        pool: InferencePool,
        shadow_pool: Option<InferencePool>,
        routes: RouteTable,
    ) -> Core {
        Core {
            models,
            pool: Arc::new(pool),
            shadow_pool: shadow_pool.map(Arc::new),
            routes: ArcSwap::from_pointee(routes),
        }
    }

    /// Routes a request to `name` (an endpoint, or a model) — to `version`
    /// when the request names one — runs it, and sends a shadow copy when
    /// the endpoint samples this request. The shadow starts after the
    /// primary has its answer and never changes or delays it.
    pub async fn infer(
        &self,
        name: &str,
        version: Option<&str>,
        meta: &dyn RequestMeta,
        request: InferRequest,
        mut served: Option<&mut Served>,
    ) -> Result<InferResponse, Error> {
        let started = Instant::now();
        let (route, endpoint) = self.routes.load().route(name, version, meta);
        if let Some(s) = served.as_deref_mut() {
            s.arm = Some(route.arm.clone());
            s.model = Some(route.model.clone());
        }
        let shadow = match (route.shadow, endpoint, &self.shadow_pool) {
            (Some(alias), Some(endpoint), Some(pool)) => match endpoint.shadow_permit() {
                Some(permit) => Some((alias, permit, request.clone(), Arc::clone(pool))),
                None => {
                    // Over the endpoint's budget: skipped and counted.
                    metrics::counter!("podium_shadow_total", "endpoint" => route.endpoint.clone(), "result" => "skipped")
                        .increment(1);
                    if let Some(s) = served.as_deref_mut() {
                        let (tx, rx) = oneshot::channel();
                        let _ = tx.send(ShadowOutcome::Failed(format!(
                            "skipped: {} shadow calls of this endpoint were already running (its max_in_flight)",
                            endpoint.shadow.as_ref().map_or(0, |s| s.max_in_flight)
                        )));
                        s.shadow = Some((alias, rx));
                    }
                    None
                }
            },
            _ => None,
        };
        let in_flight = InFlightGauge::new(
            metrics::gauge!("podium_endpoint_in_flight", "endpoint" => route.endpoint.clone()),
        );
        let result = run(&self.models, &self.pool, &route.model, &route.spec, request).await;
        drop(in_flight);
        let labels = [
            ("endpoint", route.endpoint.clone()),
            ("arm", route.arm.clone()),
        ];
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(
            "podium_requests_total",
            &[&labels[..], &[("result", outcome.to_string())]].concat()
        )
        .increment(1);
        metrics::histogram!("podium_request_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        if let Ok(r) = &result {
            metrics::histogram!("podium_model_seconds", &labels)
                .record(r.timing.inference.as_secs_f64());
        }
        if let (Some(s), Ok(r)) = (served.as_deref_mut(), &result) {
            s.version = Some(r.model_version);
            s.model = Some(r.model_name.clone());
            s.timing = Some(r.timing);
        }
        if let Some((alias, permit, copy, pool)) = shadow {
            let models = Arc::clone(&self.models);
            let (endpoint, model) = (route.endpoint.clone(), route.model.clone());
            let report = served.map(|s| {
                let (tx, rx) = oneshot::channel();
                s.shadow = Some((alias.clone(), rx));
                tx
            });
            tokio::spawn(async move {
                let _permit = permit;
                let started = Instant::now();
                let spec = VersionSpec::Alias(alias.clone());
                let result = run(&models, &pool, &model, &spec, copy).await;
                let outcome = match &result {
                    Ok(_) => "ok",
                    // The shadow threads' queue is full: skipped, like over budget.
                    Err(Error::Overloaded(_)) => "skipped",
                    Err(e) => {
                        tracing::debug!("shadow call of {endpoint} to {model}@{alias} failed: {e}");
                        "error"
                    }
                };
                metrics::counter!("podium_shadow_total", "endpoint" => endpoint.clone(), "result" => outcome)
                    .increment(1);
                metrics::histogram!("podium_shadow_seconds", "endpoint" => endpoint)
                    .record(started.elapsed().as_secs_f64());
                if let Some(tx) = report {
                    let _ = tx.send(match result {
                        Ok(r) => ShadowOutcome::Answered(r),
                        Err(e) if outcome == "skipped" => {
                            ShadowOutcome::Failed(format!("skipped: {e}"))
                        }
                        Err(e) => ShadowOutcome::Failed(e.to_string()),
                    });
                }
            });
        }
        result.map(|mut r| {
            r.endpoint = route.endpoint;
            r.arm = route.arm;
            r
        })
    }
}

/// How a request was served, for its inference-table row; filled in by
/// [`Core::infer`] when the caller passes one.
#[derive(Debug, Default)]
pub struct Served {
    pub arm: Option<String>,
    pub model: Option<String>,
    /// The version that answered, when one did.
    pub version: Option<u64>,
    pub timing: Option<Timing>,
    /// The shadow arm and, later, what became of the copy sent there.
    pub shadow: Option<(String, ShadowReceiver)>,
}

/// Delivers a shadow's outcome once the shadow call is done.
pub type ShadowReceiver = oneshot::Receiver<ShadowOutcome>;

/// What became of a shadow copy.
#[derive(Debug)]
pub enum ShadowOutcome {
    Answered(InferResponse),
    /// Failed, or skipped (over budget, shadow queue full); the message says which.
    Failed(String),
}

/// One request counted in a gauge until dropped, also when the client goes
/// away mid-request.
struct InFlightGauge(metrics::Gauge);

impl InFlightGauge {
    fn new(gauge: metrics::Gauge) -> InFlightGauge {
        gauge.increment(1.0);
        InFlightGauge(gauge)
    }
}

impl Drop for InFlightGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Resolves `model`/`spec`, checks the request against the version's
/// signature and runs it on the inference pool.
async fn run(
    models: &Arc<ModelStore>,
    pool: &InferencePool,
    model: &str,
    spec: &VersionSpec,
    mut request: InferRequest,
) -> Result<InferResponse, Error> {
    let started = Instant::now();
    let loaded = models.get(model, spec).await?;
    let _in_flight = InFlight::new(Arc::clone(&loaded));
    let outputs = loaded.signature.check(&loaded.label(), &mut request)?;
    let inputs = std::mem::take(&mut request.inputs);
    let (outputs, mut timing) = pool.run(Arc::clone(&loaded), inputs, outputs).await?;
    // Inference time as the caller sees it also covers the hop back.
    timing.inference = started
        .elapsed()
        .saturating_sub(timing.queue)
        .max(timing.inference);
    Ok(InferResponse {
        model_name: loaded.name.clone(),
        model_version: loaded.version,
        id: request.id,
        outputs,
        timing,
        endpoint: String::new(),
        arm: String::new(),
    })
}
