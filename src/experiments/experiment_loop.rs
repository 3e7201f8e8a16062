//! The experiment loop: one task per endpoint with a guardrail or a
//! rollout, `readout ▸ guardrails ▸ rollout steps ▸ promotion`.
//!
//! ```text
//!            ┌────────── tick (a quarter window) ──────────┐
//!            ▼                                             │
//!   guardrails: window of each arm's calls ── breach ──▶ weight 0 (audited),
//!            │                                   trip counter, webhook,
//!            ▼                                   rollout Stopped
//!   Stepping ──step_secs + min_samples──▶ next step … ──last──▶ AwaitingDecision
//!            ▲                                                    │ readout decision
//!  Resuming ─┘ ◀─ resume ─ Stopped            Promoted ◀── holds ─┤
//!                                             Stopped  ◀── worse ─┘ (challenger → 0)
//! ```
//!
//! The loop reads the readout's counters (nothing is added to the request
//! path) and acts through [`Controls`], which the API layer implements with
//! the same traffic-change and alias paths its admin routes use, so every
//! action is audited in the alias history.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::loop_commands::Envelope;
use super::guardrail::{ArmCounts, Breach, GuardrailConfig, Snapshot, Window, TICKS_PER_WINDOW};
use super::rollout::{rfc3339, PromoteIf, RolloutConfig, RolloutState, RolloutView, StoppedArm};
use super::view::Decision;
use super::{webhook, EndpointReadout, Experiments};
use crate::routing::Arm;

/// What the loop of one endpoint runs (`[endpoint.guardrail]`,
/// `[endpoint.rollout]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoopConfig {
    pub endpoint: String,
    pub guardrail: Option<GuardrailConfig>,
    pub rollout: Option<RolloutConfig>,
}

/// Who the alias history names for the loop's actions.
pub const BY_GUARDRAIL: &str = "guardrail";
pub const BY_ROLLOUT: &str = "rollout";

/// Why a promotion did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum PromoteError {
    /// The readout does not allow it (yet): its decision and reason.
    NotYet { decision: Decision, reason: String },
    /// The alias move or the traffic change failed.
    Failed(String),
}

/// How the loop changes serving: implemented by the API layer over the
/// admin paths, and by a fake in the tests.
pub trait Controls: Send + Sync + 'static {
    /// The endpoint's arms and weights now (None: no such endpoint).
    fn arms(&self) -> Option<Vec<Arm>>;
    /// Replaces the endpoint's weights, audited as `by` with `why`.
    fn set_traffic(
        &self,
        arms: Vec<Arm>,
        by: &'static str,
        why: String,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Moves the baseline alias to `arm`'s version when `condition` holds.
    fn promote(
        &self,
        arm: &str,
        condition: PromoteIf,
    ) -> impl Future<Output = Result<(), PromoteError>> + Send;
}

/// The named states of the rollout.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// No rollout configured: guardrails only.
    Guarding,
    /// On `steps[index]` since `since` (index None: before the first step).
    Stepping {
        index: Option<usize>,
        since: Instant,
    },
    AwaitingDecision {
        reason: Option<String>,
    },
    /// An operator resumed a stopped rollout: `steps[index]` is applied
    /// again, every tick until the traffic change succeeds.
    Resuming {
        index: usize,
    },
    Completed,
    Promoted,
    Stopped {
        index: Option<usize>,
        reason: String,
    },
}

/// The loop of one endpoint (see the module doc).
pub struct ExperimentLoop<C> {
    experiments: Arc<Experiments>,
    config: LoopConfig,
    controls: C,
    window: Window,
    phase: Phase,
    /// Why the last step could not be taken, until one is.
    blocked: Option<String>,
    commands: mpsc::UnboundedReceiver<Envelope>,
}

impl<C: Controls> ExperimentLoop<C> {
    /// The loop of `config.endpoint`, whose readout must exist; registers
    /// its command channel with the readout.
    pub fn new(experiments: Arc<Experiments>, config: LoopConfig, controls: C) -> Option<Self> {
        let readout = experiments.endpoint(&config.endpoint)?;
        let (tx, commands) = mpsc::unbounded_channel();
        readout.control().set_commands(tx);
        let phase = match &config.rollout {
            Some(_) => Phase::Stepping {
                index: None,
                since: Instant::now(),
            },
            None => Phase::Guarding,
        };
        Some(ExperimentLoop {
            experiments,
            config,
            controls,
            window: Window::default(),
            phase,
            blocked: None,
            commands,
        })
    }

    /// How often the loop looks: a quarter of the guardrail window or of a
    /// rollout step, at most every second, at least every 10 ms.
    pub fn tick(&self) -> Duration {
        let mut tick = Duration::from_secs(1);
        if let Some(g) = &self.config.guardrail {
            tick = tick.min(g.window / TICKS_PER_WINDOW);
        }
        if let Some(r) = &self.config.rollout {
            tick = tick.min(r.step / TICKS_PER_WINDOW);
        }
        tick.max(Duration::from_millis(10))
    }

    /// Runs until the task is aborted.
    pub async fn run(mut self) {
        let mut ticks = tokio::time::interval(self.tick());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.step().await,
                Some(Envelope { command, reply }) = self.commands.recv() => {
                    let answer = self.command(command).await;
                    if let Some(reply) = reply {
                        // The asker may have given up waiting; nothing to tell then.
                        let _ = reply.send(answer);
                    }
                }
            }
        }
    }

    fn readout(&self) -> &EndpointReadout {
        self.experiments
            .endpoint(&self.config.endpoint)
            .expect("the loop is only built for endpoints with a readout")
    }

    fn baseline(&self) -> String {
        self.readout().config.baseline.clone()
    }

    /// One look: guardrails first, then the rollout; then the view.
    pub async fn step(&mut self) {
        if let Some(guardrail) = self.config.guardrail.clone() {
            let breaches = self.judge(&guardrail);
            for breach in breaches {
                self.trip(&guardrail, breach).await;
            }
        }
        self.advance().await;
        self.publish();
    }

    fn snapshot(&self) -> Snapshot {
        self.readout()
            .arms()
            .iter()
            .map(|a| (a.alias.clone(), ArmCounts::of(a)))
            .collect()
    }

    fn judge(&mut self, guardrail: &GuardrailConfig) -> Vec<Breach> {
        let window = self.window.slide(self.snapshot());
        let baseline = self.baseline();
        let judged: Vec<String> = self
            .controls
            .arms()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.weight > 0.0 && a.alias != baseline)
            .map(|a| a.alias)
            .collect();
        guardrail.judge(&window, &baseline, &judged)
    }

    /// Stops the breaching arm: its weight goes to 0, its traffic to the others.
    async fn trip(&mut self, guardrail: &GuardrailConfig, breach: Breach) {
        let endpoint = self.config.endpoint.clone();
        tracing::warn!("endpoint {endpoint}: guardrail tripped: {}", breach.why);
        let arms = with_weight(self.controls.arms().unwrap_or_default(), &breach.arm, 0.0);
        let applied = self
            .controls
            .set_traffic(arms, BY_GUARDRAIL, breach.why.clone())
            .await;
        if let Err(e) = &applied {
            // Judged again next tick, and stopped once serving takes the change.
            tracing::error!(
                "endpoint {endpoint}: the guardrail could not stop arm \"{}\": {e}; trying again",
                breach.arm
            );
            return;
        }
        metrics::counter!(
            "podium_guardrail_trips_total",
            "endpoint" => endpoint.clone(),
            "arm" => breach.arm.clone(),
            "rule" => breach.rule.name()
        )
        .increment(1);
        let at = SystemTime::now();
        self.readout().control().stopped(StoppedArm {
            arm: breach.arm.clone(),
            rule: breach.rule,
            reason: breach.why.clone(),
            at: rfc3339(at),
        });
        if let Some(url) = &guardrail.webhook {
            webhook::post(
                url.clone(),
                serde_json::json!({
                    "event": "guardrail_trip",
                    "endpoint": endpoint,
                    "at": rfc3339(at),
                    "action": "stop",
                    "breach": breach,
                }),
            );
        }
        let rollout_arm = self.rollout_arm();
        if rollout_arm.as_deref() == Some(breach.arm.as_str()) {
            if let Phase::Stepping { index, .. } = self.phase {
                self.stop(index, format!("guardrail: {}", breach.why));
            } else if let Phase::Resuming { index } = self.phase {
                self.stop(Some(index), format!("guardrail: {}", breach.why));
            } else if matches!(self.phase, Phase::AwaitingDecision { .. }) {
                let index = self.config.rollout.as_ref().map(|r| r.steps.len() - 1);
                self.stop(index, format!("guardrail: {}", breach.why));
            }
        }
    }

    fn stop(&mut self, index: Option<usize>, reason: String) {
        tracing::warn!(
            "endpoint {}: rollout stopped: {reason}",
            self.config.endpoint
        );
        self.phase = Phase::Stopped { index, reason };
    }

    /// The arm the rollout steps: the endpoint's one arm besides the baseline.
    fn rollout_arm(&self) -> Option<String> {
        self.config.rollout.as_ref()?;
        let baseline = self.baseline();
        self.controls
            .arms()?
            .into_iter()
            .find(|a| a.alias != baseline)
            .map(|a| a.alias)
    }

    /// Whether both the rollout arm and the baseline have min_samples labels.
    fn samples_wanting(&self, arm: &str) -> Option<String> {
        let readout = self.readout();
        let min = readout.config.min_samples;
        let arms = readout.arms();
        let count = |alias: &str| {
            arms.iter()
                .find(|a| a.alias == alias)
                .map_or(0, |a| a.outcomes().count())
        };
        let baseline = self.baseline();
        let short: Vec<String> = [arm, baseline.as_str()]
            .into_iter()
            .filter(|alias| count(alias) < min)
            .map(|alias| format!("\"{alias}\" has {} of {min} labels", count(alias)))
            .collect();
        (!short.is_empty()).then(|| format!("min_samples: {}", short.join(", ")))
    }

    async fn advance(&mut self) {
        let Some(rollout) = self.config.rollout.clone() else {
            return;
        };
        let Some(arm) = self.rollout_arm() else {
            return;
        };
        match self.phase.clone() {
            Phase::Stepping { index, since } => {
                let next = match index {
                    None => 0,
                    Some(i) => {
                        if since.elapsed() < rollout.step || self.samples_wanting(&arm).is_some() {
                            return;
                        }
                        i + 1
                    }
                };
                if next == rollout.steps.len() {
                    self.phase = if rollout.promote {
                        Phase::AwaitingDecision { reason: None }
                    } else {
                        Phase::Completed
                    };
                    return; // promotion is looked at from the next tick
                }
                self.apply_step(&rollout, &arm, next).await;
            }
            Phase::AwaitingDecision { .. } => {
                match self.controls.promote(&arm, rollout.promote_if).await {
                    Ok(()) => self.phase = Phase::Promoted,
                    Err(PromoteError::NotYet {
                        decision: Decision::Worse,
                        reason,
                    }) => {
                        let arms = with_weight(self.controls.arms().unwrap_or_default(), &arm, 0.0);
                        let why = format!("rollout retired the challenger: {reason}");
                        if let Err(e) = self.controls.set_traffic(arms, BY_ROLLOUT, why).await {
                            tracing::error!("endpoint {}: {e}", self.config.endpoint);
                        }
                        self.stop(Some(rollout.steps.len() - 1), reason);
                    }
                    Err(PromoteError::NotYet { reason, .. }) => {
                        self.phase = Phase::AwaitingDecision {
                            reason: Some(reason),
                        }
                    }
                    Err(PromoteError::Failed(e)) => self.stop(
                        Some(rollout.steps.len() - 1),
                        format!("promotion failed: {e}"),
                    ),
                }
            }
            Phase::Resuming { index } => self.apply_step(&rollout, &arm, index).await,
            Phase::Guarding | Phase::Completed | Phase::Promoted | Phase::Stopped { .. } => {}
        }
    }

    async fn apply_step(&mut self, rollout: &RolloutConfig, arm: &str, index: usize) {
        let weight = rollout.steps[index];
        let baseline = self.baseline();
        let arms: Vec<Arm> = self
            .controls
            .arms()
            .unwrap_or_default()
            .into_iter()
            .map(|a| Arm {
                weight: if a.alias == arm {
                    weight
                } else if a.alias == baseline {
                    100.0 - weight
                } else {
                    a.weight
                },
                alias: a.alias,
            })
            .collect();
        let why = format!(
            "rollout step {} of {}: arm \"{arm}\" {weight}%, \"{baseline}\" {}%",
            index + 1,
            rollout.steps.len(),
            100.0 - weight
        );
        tracing::info!("endpoint {}: {why}", self.config.endpoint);
        match self.controls.set_traffic(arms, BY_ROLLOUT, why).await {
            Ok(()) => {
                self.phase = Phase::Stepping {
                    index: Some(index),
                    since: Instant::now(),
                }
            }
            // Serving cannot take the change now (the registry not read
            // yet, an alias missing): the step is tried again next tick.
            Err(e) => {
                let why = format!("the traffic change of step {} failed: {e}", index + 1);
                tracing::warn!("endpoint {}: {why}; trying again", self.config.endpoint);
                self.blocked = Some(why);
                return;
            }
        }
        self.blocked = None;
    }

    /// Writes the rollout's state where the readout shows it.
    fn publish(&self) {
        let Some(rollout) = &self.config.rollout else {
            return;
        };
        let arms = self.controls.arms().unwrap_or_default();
        let arm = self.rollout_arm().unwrap_or_default();
        let weight = arms.iter().find(|a| a.alias == arm).map(|a| a.weight);
        let (state, step, next_step_at, waiting_for, stopped_reason) = match &self.phase {
            Phase::Guarding => return,
            Phase::Stepping { index, since } => {
                let due = (*since + rollout.step).saturating_duration_since(Instant::now());
                (
                    RolloutState::Stepping,
                    *index,
                    index.map(|_| rfc3339(SystemTime::now() + due)),
                    self.blocked
                        .clone()
                        .or_else(|| index.and_then(|_| self.samples_wanting(&arm))),
                    None,
                )
            }
            // Shown as stepping on the step being resumed; `waiting_for`
            // says why its traffic change has not been taken yet.
            Phase::Resuming { index } => (
                RolloutState::Stepping,
                Some(*index),
                None,
                self.blocked.clone(),
                None,
            ),
            Phase::AwaitingDecision { reason } => (
                RolloutState::AwaitingDecision,
                Some(rollout.steps.len() - 1),
                None,
                reason.clone(),
                None,
            ),
            Phase::Completed => (
                RolloutState::Completed,
                Some(rollout.steps.len() - 1),
                None,
                None,
                None,
            ),
            Phase::Promoted => (
                RolloutState::Promoted,
                Some(rollout.steps.len() - 1),
                None,
                None,
                None,
            ),
            Phase::Stopped { index, reason } => (
                RolloutState::Stopped,
                *index,
                None,
                None,
                Some(reason.clone()),
            ),
        };
        self.readout().control().set_rollout(RolloutView {
            state,
            arm,
            steps: rollout.steps.clone(),
            step,
            weight,
            step_secs: rollout.step.as_secs_f64(),
            next_step_at,
            waiting_for,
            stopped_reason,
            promote: rollout.promote,
            promote_if: rollout.promote_if,
        });
    }
}

/// `arms` with `alias`'s weight set to `weight`.
fn with_weight(arms: Vec<Arm>, alias: &str, weight: f64) -> Vec<Arm> {
    arms.into_iter()
        .map(|a| Arm {
            weight: if a.alias == alias { weight } else { a.weight },
            alias: a.alias,
        })
        .collect()
}

#[path = "loop_commands.rs"]
mod loop_commands;
pub(super) use loop_commands::Envelope as LoopEnvelope;
pub use loop_commands::LoopCommand;

#[cfg(test)]
#[path = "experiment_loop_tests.rs"]
mod tests;
