//! The readout of one endpoint as `GET /admin/experiments/{endpoint}`
//! answers it: per arm, the SRM check, and each arm against the baseline.

use serde::Serialize;

use super::rollout::{ControlView, StoppedArm};
use super::stats::{self, Difference, Moments, Proportion};
use super::{EndpointReadout, Metric, ReadoutConfig};

/// An SRM p-value below this fails the check.
pub const SRM_THRESHOLD: f64 = 0.001;

/// What the serving side says about one arm of the endpoint's policy now.
#[derive(Debug, Clone)]
pub struct ArmPolicy {
    pub alias: String,
    pub weight: f64,
    /// The version its alias serves now.
    pub version: Option<u64>,
    /// That version's output names (None: no version serves now).
    pub outputs: Option<Vec<String>>,
}

/// The readout of one endpoint (see the module doc).
#[derive(Debug, Clone, Serialize)]
pub struct ReadoutView {
    pub endpoint: String,
    pub experiment: String,
    pub model: String,
    pub metric: &'static str,
    pub baseline: String,
    pub alpha: f64,
    /// The level of every interval: 1 − alpha.
    pub confidence: f64,
    pub min_samples: u64,
    /// When the readout started counting (the server's start), RFC 3339.
    pub since: String,
    pub arms: Vec<ArmView>,
    pub srm: SrmView,
    pub comparisons: Vec<ComparisonView>,
    /// What makes the numbers less trustworthy, with the fix.
    pub warnings: Vec<String>,
    /// The arms the guardrail stopped, and the rollout (when configured).
    #[serde(flatten)]
    pub control: ControlView,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmView {
    pub arm: String,
    pub alias: String,
    pub version: Option<u64>,
    /// Every version that answered this arm's calls since start.
    pub versions_seen: Vec<u64>,
    pub weight: f64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub latency_ms: LatencyView,
    /// Labels joined to this arm's calls.
    pub feedback: u64,
    pub metric: MetricView,
    /// Set when the guardrail stopped this arm: why and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<StoppedArm>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencyView {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricView {
    pub name: &'static str,
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SrmView {
    pub p_value: f64,
    pub ok: bool,
    /// Pearson's chi-square statistic (null: infinite, calls on a 0-weight arm).
    pub chi_square: Option<f64>,
    pub threshold: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComparisonView {
    pub arm: String,
    pub baseline: String,
    /// arm − baseline.
    pub diff: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The fixed-horizon test's two-sided p-value.
    pub p_value: Option<f64>,
    pub test: &'static str,
    /// The mSPRT's always-valid p-value, on which `decision` rests.
    pub always_valid_p_value: f64,
    pub decision: Decision,
}

/// What the data say about an arm against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Fewer than `min_samples` labels on either side.
    InsufficientData,
    /// The split does not match the weights: no comparison is trustworthy.
    SrmFailed,
    /// Always-valid p < alpha and the arm's metric is higher.
    Better,
    /// Always-valid p < alpha and the arm's metric is lower.
    Worse,
    NoDifferenceYet,
}

/// The difference of `arm` against `baseline` by `config`'s metric.
pub(super) fn difference(
    config: &ReadoutConfig,
    arm: &Moments,
    baseline: &Moments,
) -> Option<Difference> {
    if config.metric.is_proportion() {
        stats::two_proportions(proportion(arm), proportion(baseline), config.alpha)
    } else {
        stats::welch(arm, baseline, config.alpha)
    }
}

fn proportion(m: &Moments) -> Proportion {
    Proportion {
        successes: m.sum().round() as u64,
        n: m.count(),
    }
}

impl EndpointReadout {
    /// The readout now, for the endpoint's `policy` (its arms in order with
    /// their weights and what serves them).
    pub fn view(&self, experiment: &str, model: &str, policy: &[ArmPolicy]) -> ReadoutView {
        let config = &self.config;
        let tracked = self.arms();
        // The policy's arms first, then any other alias that had calls
        // (forced with x-podium-arm, or removed by a traffic change).
        let mut listed: Vec<(String, f64, Option<u64>)> = policy
            .iter()
            .map(|p| (p.alias.clone(), p.weight, p.version))
            .collect();
        for arm in tracked.iter() {
            if !listed.iter().any(|(alias, ..)| *alias == arm.alias) {
                listed.push((arm.alias.clone(), 0.0, None));
            }
        }
        let find = |alias: &str| tracked.iter().find(|a| a.alias == alias);
        let control = self.control().view();
        let arms: Vec<ArmView> = listed
            .iter()
            .map(|(alias, weight, version)| {
                let mut view = arm_view(config, find(alias), alias, *weight, *version);
                view.stopped = control
                    .stopped_arms
                    .iter()
                    .find(|s| s.arm == *alias)
                    .cloned();
                view
            })
            .collect();

        let observed: Vec<u64> = arms.iter().map(|a| a.requests).collect();
        let weighted: Vec<(String, f64)> = arms.iter().map(|a| (a.arm.clone(), a.weight)).collect();
        let weights = self.srm_weights(&weighted);
        let (chi_square, p_value) = stats::chi_square_fit(&observed, &weights);
        let srm = SrmView {
            p_value,
            ok: p_value >= SRM_THRESHOLD,
            chi_square: chi_square.is_finite().then_some(chi_square),
            threshold: SRM_THRESHOLD,
        };

        let empty = Moments::default();
        let base_outcomes = find(&config.baseline).map(|a| a.outcomes());
        let base = base_outcomes.as_ref().unwrap_or(&empty);
        let comparisons = listed
            .iter()
            .filter(|(alias, ..)| *alias != config.baseline)
            .map(|(alias, ..)| {
                let arm = find(alias);
                let outcomes = arm.map(|a| a.outcomes()).unwrap_or_default();
                let avp = arm.map_or(1.0, |a| a.always_valid_p());
                comparison(config, alias, &outcomes, base, avp, srm.ok)
            })
            .collect();

        ReadoutView {
            endpoint: config.endpoint.clone(),
            experiment: experiment.to_string(),
            model: model.to_string(),
            metric: config.metric.name(),
            baseline: config.baseline.clone(),
            alpha: config.alpha,
            confidence: 1.0 - config.alpha,
            min_samples: config.min_samples,
            since: chrono::DateTime::<chrono::Utc>::from(self.started)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            warnings: warnings(config, policy, &arms),
            arms,
            srm,
            comparisons,
            control,
        }
    }
}

fn arm_view(
    config: &ReadoutConfig,
    state: Option<&std::sync::Arc<super::ArmState>>,
    alias: &str,
    weight: f64,
    version: Option<u64>,
) -> ArmView {
    let outcomes = state.map(|a| a.outcomes()).unwrap_or_default();
    let (requests, errors) = state.map_or((0, 0), |a| (a.requests(), a.errors()));
    let latency = state.and_then(|a| a.latency());
    let interval = if config.metric.is_proportion() {
        stats::wilson(
            proportion(&outcomes).successes,
            outcomes.count(),
            config.alpha,
        )
    } else {
        stats::t_interval(&outcomes, config.alpha)
    };
    ArmView {
        arm: alias.to_string(),
        alias: alias.to_string(),
        version,
        versions_seen: state.map(|a| a.versions()).unwrap_or_default(),
        weight,
        requests,
        errors,
        error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
        latency_ms: LatencyView {
            p50: latency.map(|l| l.p50),
            p95: latency.map(|l| l.p95),
            p99: latency.map(|l| l.p99),
        },
        feedback: outcomes.count(),
        metric: MetricView {
            name: config.metric.name(),
            value: outcomes.mean(),
            ci_low: interval.map(|i| i.low),
            ci_high: interval.map(|i| i.high),
        },
        stopped: None,
    }
}

fn comparison(
    config: &ReadoutConfig,
    alias: &str,
    arm: &Moments,
    base: &Moments,
    always_valid_p_value: f64,
    srm_ok: bool,
) -> ComparisonView {
    let d = difference(config, arm, base);
    let min = config.min_samples;
    let decision = if arm.count() < min || base.count() < min {
        Decision::InsufficientData
    } else if !srm_ok {
        Decision::SrmFailed
    } else if always_valid_p_value < config.alpha {
        match d.map(|d| d.diff) {
            Some(diff) if diff > 0.0 => Decision::Better,
            Some(diff) if diff < 0.0 => Decision::Worse,
            _ => Decision::NoDifferenceYet,
        }
    } else {
        Decision::NoDifferenceYet
    };
    ComparisonView {
        arm: alias.to_string(),
        baseline: config.baseline.clone(),
        diff: d.map(|d| d.diff),
        ci_low: d.and_then(|d| d.interval).map(|i| i.low),
        ci_high: d.and_then(|d| d.interval).map(|i| i.high),
        p_value: d.and_then(|d| d.p_value),
        test: match config.metric {
            Metric::Mean => "welch_t",
            _ => "pooled_two_proportion_z",
        },
        always_valid_p_value,
        decision,
    }
}

fn warnings(config: &ReadoutConfig, policy: &[ArmPolicy], arms: &[ArmView]) -> Vec<String> {
    let mut out = Vec::new();
    if !policy.iter().any(|p| p.alias == config.baseline) {
        out.push(format!(
            "the baseline \"{}\" is no longer an arm of endpoint \"{}\"; comparisons use its calls so far (restore it with PUT /admin/endpoints/{}/traffic)",
            config.baseline, config.endpoint, config.endpoint
        ));
    }
    if let Some(output) = config
        .prediction_output
        .as_deref()
        .filter(|_| config.metric == Metric::Accuracy)
    {
        for p in policy {
            let Some(outputs) = &p.outputs else { continue };
            if !outputs.iter().any(|o| o == output) {
                out.push(format!(
                    "arm \"{}\" (version {}) has no output \"{output}\" (its outputs: {}), so its calls cannot be scored; set prediction_output in [endpoint.readout] of \"{}\" to the output holding the predicted class",
                    p.alias,
                    p.version.map_or("?".into(), |v| v.to_string()),
                    outputs.join(", "),
                    config.endpoint
                ));
            }
        }
    }
    for arm in arms.iter().filter(|a| a.versions_seen.len() > 1) {
        let versions: Vec<String> = arm.versions_seen.iter().map(u64::to_string).collect();
        out.push(format!(
            "arm \"{}\" was answered by versions {} since the readout started: its numbers mix versions (restart the server to start a clean readout)",
            arm.arm,
            versions.join(", ")
        ));
    }
    out
}
