//! Gradual rollout and promotion (`[endpoint.rollout]`): the challenger's
//! weight steps, when promotion is allowed, and what the experiments JSON
//! shows of the experiment loop.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::view::{ComparisonView, Decision};
use super::Rule;

/// The rollout of one endpoint's challenger arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutConfig {
    /// The challenger's weight in %, strictly increasing, each in 0..=100.
    pub steps: Vec<f64>,
    /// Least time on each step.
    #[serde(serialize_with = "seconds")]
    pub step: Duration,
    /// After the last step, promote when `promote_if` holds.
    pub promote: bool,
    pub promote_if: PromoteIf,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The default time on each step (`step_secs`).
pub const DEFAULT_STEP: Duration = Duration::from_secs(600);

/// When a challenger may replace the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromoteIf {
    /// The readout's decision is `better`.
    Better,
    /// The readout has enough data and its decision is not `worse` (nor
    /// untrustworthy: `srm_failed`).
    NotWorse,
}

impl PromoteIf {
    pub fn name(self) -> &'static str {
        match self {
            PromoteIf::Better => "better",
            PromoteIf::NotWorse => "not_worse",
        }
    }

    /// Whether `comparison` allows promotion; the error is the readout's
    /// reason, for the operator.
    pub fn check(self, comparison: &ComparisonView, alpha: f64) -> Result<(), String> {
        let holds = match self {
            PromoteIf::Better => comparison.decision == Decision::Better,
            PromoteIf::NotWorse => matches!(
                comparison.decision,
                Decision::Better | Decision::NoDifferenceYet
            ),
        };
        if holds {
            return Ok(());
        }
        let numbers = match comparison.diff {
            Some(diff) => format!(
                "diff {diff:+.4} (95% CI {} to {}), always-valid p {:.4} against alpha {alpha}",
                fmt(comparison.ci_low),
                fmt(comparison.ci_high),
                comparison.always_valid_p_value
            ),
            None => "no joined feedback yet".into(),
        };
        let what = match comparison.decision {
            Decision::InsufficientData => "there are not yet min_samples labels on both arms; post more feedback (POST /v2/feedback)".to_string(),
            Decision::SrmFailed => "the traffic split does not match the weights (SRM check failed), so the comparison is not trustworthy".to_string(),
            Decision::Worse => "the challenger is worse than the baseline".to_string(),
            Decision::NoDifferenceYet => "no difference is shown yet; wait for more feedback, or promote with --if-not-worse".to_string(),
            Decision::Better => "the challenger is better".to_string(),
        };
        Err(format!(
            "not promoting arm \"{}\": the readout's decision is {} ({numbers}), and promotion needs {}: {what}",
            comparison.arm,
            decision_name(comparison.decision),
            match self {
                PromoteIf::Better => "better",
                PromoteIf::NotWorse => "better or no_difference_yet",
            }
        ))
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:+.4}"))
}

pub fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::InsufficientData => "insufficient_data",
        Decision::SrmFailed => "srm_failed",
        Decision::Better => "better",
        Decision::Worse => "worse",
        Decision::NoDifferenceYet => "no_difference_yet",
    }
}

/// An arm the guardrail stopped (its weight set to 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoppedArm {
    pub arm: String,
    pub rule: Rule,
    pub reason: String,
    /// When, RFC 3339.
    pub at: String,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// On a step, waiting for its time, min_samples and guardrails to allow the next.
    Stepping,
    /// Past the last step, waiting for the readout's decision to allow promotion.
    AwaitingDecision,
    /// Past the last step, without promotion (`promote = false`).
    Completed,
    Promoted,
    /// Stopped by a guardrail, by the readout (worse), by an operator, or
    /// by a failed traffic change; `stopped_reason` says which.
    Stopped,
}

/// The rollout as `GET /admin/experiments/{endpoint}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    pub state: RolloutState,
    pub arm: String,
    pub steps: Vec<f64>,
    /// The index in `steps` of the weight in force (None: before the first).
    pub step: Option<usize>,
    pub weight: Option<f64>,
    pub step_secs: f64,
    /// The earliest time of the next step, RFC 3339 (while stepping).
    pub next_step_at: Option<String>,
    /// What the next step waits for besides time, if anything.
    pub waiting_for: Option<String>,
    pub stopped_reason: Option<String>,
    pub promote: bool,
    pub promote_if: PromoteIf,
}

/// The experiment loop's state, as the readout shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ControlView {
    pub stopped_arms: Vec<StoppedArm>,
    pub rollout: Option<RolloutView>,
}

/// Now as RFC 3339, for the views.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
