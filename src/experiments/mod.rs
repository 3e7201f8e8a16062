//! Online experiments: the live readout of an endpoint's arms.
//!
//! ```text
//! api::call ──Tracker::record (every call to an endpoint with a readout)──▶ arm counters,
//!                                                                           latency, ledger
//! POST /v2/feedback ──Experiments::apply──▶ ledger join ▸ arm outcomes ▸ mSPRT evaluation
//! GET /admin/experiments/{endpoint} ──Experiments::view──▶ readout (stats.rs numbers)
//! ```
//!
//! A sink beside the inference table, protocol-free: the call pipeline sees
//! only [`Experiments::tracker`] and [`Tracker`] (what to keep of a call,
//! and where to hand it over). Everything lives in memory since the
//! server started; the feedback table keeps the history.

mod arm;
mod control;
pub mod experiment_loop;
pub mod guardrail;
pub mod label;
pub mod ledger;
mod replay;
pub mod rollout;
pub mod stats;
mod view;
mod webhook;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;

pub use arm::ArmState;
pub use control::Control;
pub use experiment_loop::{Controls, ExperimentLoop, LoopCommand, LoopConfig, PromoteError};
pub use guardrail::{GuardrailConfig, Rule};
pub use label::{Label, Metric, Prediction};
pub use ledger::{Joined, Key};
pub use rollout::{PromoteIf, RolloutConfig};
pub use view::{ArmPolicy, ComparisonView, Decision, ReadoutView};

use ledger::{Entry, Ledger};

/// The readout settings of one endpoint (`[endpoint.readout]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadoutConfig {
    pub endpoint: String,
    pub metric: Metric,
    /// The output whose row 0 is the predicted class (accuracy only).
    pub prediction_output: Option<String>,
    /// The arm every other arm is compared with.
    pub baseline: String,
    /// Labelled calls per arm before any decision.
    pub min_samples: u64,
    /// The tests' significance level; intervals are at 1 − alpha.
    pub alpha: f64,
}

/// The readout defaults: the baseline arm, labelled calls per arm before a
/// decision, and the significance level.
pub const DEFAULT_BASELINE: &str = "champion";
pub const DEFAULT_MIN_SAMPLES: u64 = 200;
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Calls the ledger keeps for feedback to join, across endpoints
/// (`--readout-ledger-size`).
pub const DEFAULT_LEDGER_SIZE: usize = 1_000_000;

/// One endpoint's readout state.
pub struct EndpointReadout {
    pub config: ReadoutConfig,
    /// Arms in order of first call; append-only, so a ledger entry's arm
    /// index stays valid.
    arms: ArcSwap<Vec<Arc<ArmState>>>,
    adding: Mutex<()>,
    evicted: metrics::Counter,
    started: SystemTime,
    control: Control,
    split: Mutex<Split>,
}

/// The traffic split over time, for the SRM check: the calls each arm was
/// expected to get under earlier weights, and the arms' call counts when
/// the weights in force now took effect.
#[derive(Default)]
struct Split {
    expected: HashMap<String, f64>,
    counts_then: HashMap<String, u64>,
    changed: bool,
}

impl EndpointReadout {
    fn new(config: ReadoutConfig) -> EndpointReadout {
        let evicted = metrics::counter!(
            "podium_readout_ledger_evicted_total",
            "endpoint" => config.endpoint.clone()
        );
        evicted.increment(0);
        EndpointReadout {
            config,
            arms: ArcSwap::from_pointee(Vec::new()),
            adding: Mutex::new(()),
            evicted,
            started: SystemTime::now(),
            control: Control::default(),
            split: Mutex::new(Split::default()),
        }
    }

    /// The experiment loop's shared state (stopped arms, the rollout).
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Tells the readout the weights changed; `old` are the weights in
    /// force until now, so the SRM check expects each period's split.
    pub fn traffic_changed(&self, old: &[(String, f64)]) {
        let arms = self.arms();
        let mut split = self.split.lock().unwrap_or_else(|p| p.into_inner());
        let now: HashMap<String, u64> = arms
            .iter()
            .map(|a| (a.alias.clone(), a.requests()))
            .collect();
        let calls: u64 = now
            .iter()
            .map(|(alias, n)| n - split.counts_then.get(alias).copied().unwrap_or(0).min(*n))
            .sum();
        let total: f64 = old.iter().map(|(_, w)| w.max(0.0)).sum();
        if total > 0.0 {
            for (alias, w) in old {
                *split.expected.entry(alias.clone()).or_default() +=
                    calls as f64 * w.max(0.0) / total;
            }
        }
        split.counts_then = now;
        split.changed = true;
    }

    /// The weights the SRM check compares `arms`' call counts with: their
    /// weights as configured, or, once traffic changed, the calls expected
    /// under each period's weights.
    pub(crate) fn srm_weights(&self, arms: &[(String, f64)]) -> Vec<f64> {
        let split = self.split.lock().unwrap_or_else(|p| p.into_inner());
        if !split.changed {
            return arms.iter().map(|(_, w)| *w).collect();
        }
        let tracked = self.arms();
        let calls: u64 = tracked
            .iter()
            .map(|a| {
                let n = a.requests();
                n - split.counts_then.get(&a.alias).copied().unwrap_or(0).min(n)
            })
            .sum();
        let total: f64 = arms.iter().map(|(_, w)| w.max(0.0)).sum();
        arms.iter()
            .map(|(alias, w)| {
                let now = if total > 0.0 {
                    calls as f64 * w.max(0.0) / total
                } else {
                    0.0
                };
                split.expected.get(alias).copied().unwrap_or(0.0) + now
            })
            .collect()
    }

    /// Runs `f` on the arm of `alias` (created on its first call) and its index.
    fn with_arm<T>(&self, alias: &str, f: impl FnOnce(u32, &ArmState) -> T) -> T {
        let arms = self.arms.load();
        if let Some(i) = arms.iter().position(|a| a.alias == alias) {
            return f(i as u32, &arms[i]);
        }
        drop(arms);
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.arms.load_full();
        let i = match current.iter().position(|a| a.alias == alias) {
            Some(i) => i,
            None => {
                let mut arms = (*current).clone();
                arms.push(Arc::new(ArmState::new(alias)));
                self.arms.store(Arc::new(arms));
                current.len()
            }
        };
        f(i as u32, &self.arms.load()[i])
    }

    fn arm_at(&self, index: u32) -> Option<Arc<ArmState>> {
        self.arms.load().get(index as usize).cloned()
    }

    /// The arms that had calls, in order of first call.
    pub fn arms(&self) -> Arc<Vec<Arc<ArmState>>> {
        self.arms.load_full()
    }

    /// Lowers each arm's always-valid p-value with the data so far (one
    /// mSPRT evaluation); arms below `min_samples` labels are not evaluated.
    fn evaluate(&self) {
        let arms = self.arms.load();
        let Some(baseline) = arms.iter().find(|a| a.alias == self.config.baseline) else {
            return;
        };
        let base = baseline.outcomes();
        let min = self.config.min_samples;
        for arm in arms.iter().filter(|a| a.alias != self.config.baseline) {
            let outcomes = arm.outcomes();
            if outcomes.count() < min || base.count() < min {
                continue;
            }
            let Some(diff) = view::difference(&self.config, &outcomes, &base) else {
                continue;
            };
            let ratio = stats::msprt_likelihood_ratio(&diff, min);
            arm.lower_always_valid_p(stats::always_valid_p(arm.always_valid_p(), ratio));
        }
    }
}

/// The experiments of every endpoint with a readout, and the ledger their
/// calls share.
pub struct Experiments {
    endpoints: Vec<EndpointReadout>,
    by_name: HashMap<String, u32>,
    ledger: Ledger,
    ledger_size: usize,
}

/// What the call pipeline keeps of a call to an endpoint with a readout,
/// and hands over when the call ends. It holds the call's place in the
/// ledger, which [`Tracker::request_id`] names.
pub struct Tracker<'a> {
    experiments: &'a Experiments,
    endpoint: u32,
    sequence: u64,
}

/// One finished call, as the readout sees it.
#[derive(Debug)]
pub struct CallRecord<'a> {
    pub client_request_id: Option<&'a str>,
    /// The arm's alias.
    pub arm: &'a str,
    /// The version that answered (None: the call failed before a model ran).
    pub version: Option<u64>,
    pub ok: bool,
    pub latency: Duration,
    /// Row 0 of the prediction output, for accuracy.
    pub prediction: Option<Prediction>,
}

/// One feedback item, as the API decoded it.
#[derive(Debug, Clone)]
pub struct FeedbackItem {
    pub key: Key,
    pub label: Label,
}

/// What a feedback batch joined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedbackOutcome {
    /// Items that were the first label of a call in the ledger: counted.
    pub matched: usize,
    /// Items naming a call that already had a label: not counted again.
    pub duplicates: usize,
    /// Items naming no call in the ledger.
    pub unmatched: usize,
    /// Per item, the request id of the call it named, when the ledger knew it.
    #[serde(skip)]
    pub request_ids: Vec<Option<u128>>,
}

/// Why a feedback batch was refused (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackError {
    pub index: usize,
    pub why: String,
}

impl Experiments {
    /// The experiments of `readouts`; None when there are none. The ledger
    /// keeps at most `ledger_size` calls across endpoints.
    pub fn new(readouts: Vec<ReadoutConfig>, ledger_size: usize) -> Option<Experiments> {
        if readouts.is_empty() {
            return None;
        }
        let by_name = readouts
            .iter()
            .enumerate()
            .map(|(i, r)| (r.endpoint.clone(), i as u32))
            .collect();
        Some(Experiments {
            endpoints: readouts.into_iter().map(EndpointReadout::new).collect(),
            by_name,
            ledger: Ledger::new(ledger_size),
            ledger_size: ledger_size.max(1),
        })
    }

    /// The endpoints with a readout, sorted.
    pub fn names(&self) -> Vec<&str> {
        let names: BTreeSet<&str> = self.by_name.keys().map(String::as_str).collect();
        names.into_iter().collect()
    }

    pub fn endpoint(&self, name: &str) -> Option<&EndpointReadout> {
        self.by_name.get(name).map(|&i| &self.endpoints[i as usize])
    }

    /// The tracker of a new call to `endpoint`, when it has a readout.
    pub fn tracker(&self, endpoint: &str) -> Option<Tracker<'_>> {
        self.by_name.get(endpoint).map(|&endpoint| Tracker {
            experiments: self,
            endpoint,
            sequence: self.ledger.next_sequence(),
        })
    }

    /// Joins a feedback batch: checks every item first (a label the named
    /// call's metric cannot count refuses the whole batch), then labels the
    /// calls. The first label of a call counts; later ones are duplicates.
    pub fn apply(&self, items: &[FeedbackItem]) -> Result<FeedbackOutcome, FeedbackError> {
        for (index, item) in items.iter().enumerate() {
            let Some(endpoint) = self.ledger.endpoint_of(&item.key) else {
                continue;
            };
            let config = &self.endpoints[endpoint as usize].config;
            config
                .metric
                .check(&item.label)
                .map_err(|why| FeedbackError {
                    index,
                    why: format!(
                        "{why} (the call was to endpoint \"{}\", whose readout measures {})",
                        config.endpoint,
                        config.metric.name()
                    ),
                })?;
        }
        let mut outcome = FeedbackOutcome {
            request_ids: Vec::with_capacity(items.len()),
            ..FeedbackOutcome::default()
        };
        let mut touched = BTreeSet::new();
        for item in items {
            let joined = self.ledger.label(&item.key, |entry: &Entry| {
                let config = &self.endpoints[entry.endpoint as usize].config;
                let value = config
                    .metric
                    .outcome(&item.label, entry.prediction.as_ref())?;
                Some((entry.endpoint, entry.arm, value))
            });
            let request_id = match joined {
                Joined::Unmatched => {
                    outcome.unmatched += 1;
                    None
                }
                Joined::Duplicate { request_id } => {
                    outcome.duplicates += 1;
                    Some(request_id)
                }
                Joined::First {
                    request_id,
                    value: (endpoint, arm, value),
                } => {
                    let readout = &self.endpoints[endpoint as usize];
                    if let Some(arm) = readout.arm_at(arm) {
                        arm.record_outcome(value);
                    }
                    touched.insert(endpoint);
                    outcome.matched += 1;
                    Some(request_id)
                }
            };
            outcome.request_ids.push(request_id);
        }
        for endpoint in touched {
            self.endpoints[endpoint as usize].evaluate();
        }
        Ok(outcome)
    }

    /// The endpoint of the call `key` names, while the ledger holds it.
    pub fn endpoint_of_call(&self, key: &Key) -> Option<&str> {
        let endpoint = self.ledger.endpoint_of(key)?;
        Some(self.endpoints[endpoint as usize].config.endpoint.as_str())
    }

    /// Calls the ledger holds now, and its bound.
    pub fn ledger_usage(&self) -> (usize, usize) {
        (self.ledger.len(), self.ledger_size)
    }
}

impl Tracker<'_> {
    fn readout(&self) -> &EndpointReadout {
        &self.experiments.endpoints[self.endpoint as usize]
    }

    /// The call's request id: the one feedback names it by.
    pub fn request_id(&self) -> String {
        self.experiments.ledger.request_id(self.sequence)
    }

    /// The output whose row 0 the call should keep as its prediction.
    pub fn prediction_output(&self) -> Option<&str> {
        match self.readout().config.metric {
            Metric::Accuracy => self.readout().config.prediction_output.as_deref(),
            _ => None,
        }
    }

    /// Counts the call for its arm and, when it was answered (with a
    /// prediction, for accuracy), keeps it in the ledger for feedback under
    /// [`Tracker::request_id`].
    pub fn record(self, call: CallRecord<'_>) {
        let readout = self.readout();
        let arm = readout.with_arm(call.arm, |index, arm| {
            arm.record_call(call.ok, call.version, call.latency);
            index
        });
        let needs_prediction = readout.config.metric == Metric::Accuracy;
        if !call.ok || (needs_prediction && call.prediction.is_none()) {
            return;
        }
        let entry = Entry {
            endpoint: self.endpoint,
            arm,
            prediction: call.prediction,
            labelled: false,
            client_request_id: call.client_request_id.map(Into::into),
        };
        if let Some(endpoint) = self.experiments.ledger.insert(self.sequence, entry) {
            self.experiments.endpoints[endpoint as usize]
                .evicted
                .increment(1);
        }
    }
}

impl Key {
    /// The key of feedback naming Podium's `request_id`.
    pub fn request_id(id: &str) -> Key {
        uuid::Uuid::parse_str(id).map_or(Key::Unknown, |u| Key::RequestId(u.as_u128()))
    }
}

#[cfg(test)]
mod tests;
