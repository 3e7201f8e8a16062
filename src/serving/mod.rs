//! The serving core: which model version answers a request, and running it.
//! Protocol-free: the call pipeline routes with [`Core::route`], resolves the
//! arm's loaded model with [`Core::resolve`] and runs a decoded request with
//! [`Core::infer`].

mod alias_state;
mod budget;
mod commands;
mod drift;
pub mod history;
mod loader;
mod on_demand;
mod readiness;
mod reconcile;
mod reconciler;
mod registry_health;
mod reload;
mod shared_traffic;
mod slots;
mod status;
mod store;
#[cfg(test)]
pub(crate) mod test_registry;
mod traffic;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

pub use crate::registry::ModelInfo;
pub use alias_state::AliasState;
pub use commands::AliasChange;
pub use history::{ComparisonRecord, Event, History};
pub use readiness::HealthSummary;
pub use reconciler::Reconciler;
pub use registry_health::RegistryStatus;
pub use reload::{lookup, ConfigFile, EndpointChange, ReloadOutcome, BY_SIGNAL};
pub use shared_traffic::StoredPolicy;
pub use status::{ResidentStatus, SlotStatus, StoreStatus, SwapOutcome, SwapTimings};
pub use store::{ModelStore, StoreOptions, DEFAULT_LOAD_WAIT};
pub use traffic::TrafficChange;

use crate::error::Error;
use crate::registry::VersionSpec;
use crate::request::{InferRequest, InferResponse, ShadowOutcome, ShadowReceiver};
use crate::routing::{Endpoint, Route, RouteKeys, RouteTable, ShadowDecision};
use crate::runtime::batch::BatchModel;
use crate::runtime::pool::{Executor, InferencePool};
use crate::runtime::{InFlight, LoadedModel};

/// Everything a request needs: the endpoints' traffic policy, the loaded
/// models and the inference threads.
pub struct Core {
    models: Arc<ModelStore>,
    pool: Arc<InferencePool>,
    /// Shadow copies run here, on their own threads and sessions, so a slow
    /// shadow model never holds up a request that answers a client.
    shadow_pool: Option<Arc<InferencePool>>,
    /// Replaced whole by a traffic change, so no request sees half a policy.
    routes: ArcSwap<RouteTable>,
    /// The configured policies, and what following the stored ones reported.
    shared: shared_traffic::SharedTraffic,
}

/// The answer of one call, and the shadow copy it sent, if any.
pub struct Inferred {
    pub result: Result<InferResponse, Error>,
    /// The shadow arm, and what became of the copy once it is done.
    pub shadow: Option<(String, ShadowReceiver)>,
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
            shared: shared_traffic::SharedTraffic::new(&routes),
            routes: ArcSwap::from_pointee(routes),
        }
    }

    /// The loaded models and the reconciler's view of the registry.
    pub fn models(&self) -> &Arc<ModelStore> {
        &self.models
    }

    /// Calls waiting for an inference thread: requests, and shadow copies
    /// when there are shadow threads.
    pub fn queued(&self) -> (usize, Option<usize>) {
        (
            self.pool.queued(),
            self.shadow_pool.as_ref().map(|p| p.queued()),
        )
    }

    /// Request runs so far: on the thread that received them, and on an
    /// inference thread ([`InferencePool::with_caller_runs`]).
    pub fn runs(&self) -> (u64, u64) {
        self.pool.runs()
    }

    /// The traffic policy in force now.
    pub fn routes(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.routes.load()
    }

    /// Replaces one endpoint's policy in one atomic store; a concurrent
    /// change to another endpoint is kept, not lost.
    pub fn replace_endpoint(&self, updated: Arc<Endpoint>) {
        self.routes.rcu(|current| {
            let mut endpoints = current.endpoints.clone();
            endpoints.insert(updated.name.clone(), Arc::clone(&updated));
            RouteTable { endpoints }
        });
    }

    /// Whether `name` is a configured endpoint or a served model.
    pub fn knows(&self, name: &str) -> bool {
        self.routes.load().endpoints.contains_key(name) || self.models.knows(name)
    }

    /// Where one request to `name` (an endpoint, or a model) goes — to
    /// `version` when the request names one — and whether it sends a shadow copy.
    pub fn route(&self, name: &str, version: Option<&str>, keys: RouteKeys) -> Route {
        self.routes.load().route(name, version, keys)
    }

    /// The loaded model version that answers `route` now.
    pub async fn resolve(&self, route: &Route) -> Result<Arc<LoadedModel>, Error> {
        self.models
            .get(&route.model, &route.spec)
            .await
            .map_err(|e| self.with_endpoints(&route.model, e))
    }

    /// An unknown name's error, with the configured endpoints named too
    /// (they are as callable as the models).
    fn with_endpoints(&self, name: &str, e: Error) -> Error {
        let routes = self.routes.load();
        match e {
            Error::NotFound(why) if !routes.endpoints.is_empty() && !self.models.knows(name) => {
                let mut endpoints: Vec<&str> =
                    routes.endpoints.keys().map(String::as_str).collect();
                endpoints.sort_unstable();
                Error::NotFound(format!("{why}; endpoints: {}", endpoints.join(", ")))
            }
            e => e,
        }
    }

    /// Runs `request` on `model` (resolved from `route`) and sends the
    /// route's shadow copy, if it has one. The shadow starts after the
    /// primary has its answer and never changes or delays it.
    pub async fn infer(
        &self,
        route: &mut Route,
        model: Arc<LoadedModel>,
        request: InferRequest,
        deadline: Option<Instant>,
    ) -> Inferred {
        let shadow = match (route.shadow.take(), &self.shadow_pool) {
            (Some(ShadowDecision::Send { alias, permit }), Some(pool)) => {
                Some((alias, permit, request.clone(), Arc::clone(pool)))
            }
            (
                Some(ShadowDecision::OverBudget {
                    alias,
                    max_in_flight,
                }),
                Some(_),
            ) => {
                metrics::counter!("podium_shadow_total", "endpoint" => route.endpoint.clone(), "result" => "skipped")
                    .increment(1);
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(ShadowOutcome::Failed(format!(
                    "skipped: {max_in_flight} shadow calls of this endpoint were already running (its max_in_flight)"
                )));
                return Inferred {
                    result: run(&self.pool, model, request, deadline, true).await,
                    shadow: Some((alias, rx)),
                };
            }
            _ => None,
        };
        let result = run(&self.pool, model, request, deadline, true).await;
        let shadow = shadow.map(|(alias, permit, copy, pool)| {
            let (tx, rx) = oneshot::channel();
            let models = Arc::clone(&self.models);
            let (endpoint, model) = (route.endpoint.clone(), route.model.clone());
            let spec = VersionSpec::Alias(alias.clone());
            let label = format!("{model}@{alias}");
            tokio::spawn(async move {
                let _permit = permit;
                let started = Instant::now();
                let result = match models.get(&model, &spec).await {
                    // Shadow copies run alone, on their own threads, and
                    // never take room in a batch of requests.
                    Ok(loaded) => run(&pool, loaded, copy, None, false).await,
                    Err(e) => Err(e),
                };
                let outcome = match &result {
                    Ok(_) => "ok",
                    // The shadow threads' queue is full: skipped, like over budget.
                    Err(Error::Overloaded(_)) => "skipped",
                    Err(e) => {
                        tracing::debug!("shadow call of {endpoint} to {label} failed: {e}");
                        "error"
                    }
                };
                metrics::counter!("podium_shadow_total", "endpoint" => endpoint.clone(), "result" => outcome)
                    .increment(1);
                metrics::histogram!("podium_shadow_seconds", "endpoint" => endpoint)
                    .record(started.elapsed().as_secs_f64());
                let _ = tx.send(match result {
                    Ok(r) => ShadowOutcome::Answered(r),
                    Err(e) if outcome == "skipped" => ShadowOutcome::Failed(format!("skipped: {e}")),
                    Err(e) => ShadowOutcome::Failed(e.to_string()),
                });
            });
            (alias, rx)
        });
        Inferred { result, shadow }
    }
}

/// Checks the request against `loaded`'s signature and runs it on the
/// inference pool (in a batch, when the model batches and `batch` allows),
/// unless `deadline` passes first.
async fn run(
    pool: &Arc<InferencePool>,
    loaded: Arc<LoadedModel>,
    mut request: InferRequest,
    deadline: Option<Instant>,
    batch: bool,
) -> Result<InferResponse, Error> {
    let started = Instant::now();
    let _in_flight = InFlight::new(Arc::clone(&loaded));
    let outputs = loaded.signature.check(&loaded.label(), &mut request)?;
    let inputs = std::mem::take(&mut request.inputs);
    let (outputs, mut timing) = match loaded.batcher().filter(|_| batch) {
        Some(batcher) => {
            let executor: Arc<dyn Executor> = Arc::clone(pool) as _;
            let model: Arc<dyn BatchModel> = Arc::clone(&loaded) as _;
            batcher
                .run(model, executor, inputs, outputs, deadline)
                .await?
        }
        None => {
            pool.run(Arc::clone(&loaded), inputs, outputs, deadline)
                .await?
        }
    };
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
    })
}
