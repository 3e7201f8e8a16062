//! What experiments change in serving, shared by the admin API and the
//! experiment loop: traffic changes (which also tell the readout, so its
//! SRM check expects each period's split) and promotion (the readout's
//! decision checked, the baseline alias moved through the zero-downtime
//! alias path, the decision recorded in the alias history and, with MLflow,
//! as model-version tags).

use std::sync::Arc;

use serde::Serialize;

use super::AppState;
use crate::error::Error;
use crate::experiments::rollout::decision_name;
use crate::experiments::{
    ArmPolicy, Controls, Decision, ExperimentLoop, LoopCommand, LoopConfig, PromoteError,
    PromoteIf, ReadoutView,
};
use crate::registry::VersionSpec;
use crate::routing::{Arm, Endpoint};
use crate::serving::{AliasChange, ComparisonRecord, Event, SwapOutcome, TrafficChange};

/// Who the history names for a promotion made by the experiment loop.
pub const BY_EXPERIMENT: &str = "experiment";

/// Applies `change` (blocking work off the runtime) and tells the
/// endpoint's readout; answers the endpoint's new policy.
pub async fn change_traffic(
    state: &Arc<AppState>,
    change: TrafficChange,
) -> Result<Arc<Endpoint>, Error> {
    let st = Arc::clone(state);
    let (before, after) = tokio::task::spawn_blocking(move || st.core.set_traffic(change))
        .await
        .map_err(|e| Error::Internal(format!("traffic change task failed: {e}")))??;
    tell_readout(state, &before, &after);
    Ok(after)
}

/// Tells `after`'s readout, if it has one, that its weights changed from
/// `before`'s, so its SRM check expects each period's split.
pub fn tell_readout(state: &AppState, before: &Endpoint, after: &Endpoint) {
    if let Some(readout) = state
        .experiments
        .as_deref()
        .and_then(|e| e.endpoint(&after.name))
    {
        let old: Vec<(String, f64)> = before
            .arms
            .iter()
            .map(|a| (a.alias.clone(), a.weight))
            .collect();
        readout.traffic_changed(&old);
        for arm in after.arms.iter().filter(|a| a.weight > 0.0) {
            readout.control().restarted(&arm.alias);
        }
    }
}

/// The readout of `endpoint` now, with what serves each arm.
pub async fn readout_view(state: &AppState, name: &str) -> Result<ReadoutView, Error> {
    let readout = state
        .experiments
        .as_deref()
        .and_then(|e| e.endpoint(name))
        .ok_or_else(|| {
            let names = state
                .experiments
                .as_deref()
                .map(|e| e.names().join(", "))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "none".into());
            Error::NotFound(format!(
                "endpoint \"{name}\" has no experiment readout (endpoints with one: {names}); add an [endpoint.readout] table to its entry in the --config file"
            ))
        })?;
    let endpoint = state
        .core
        .routes()
        .endpoints
        .get(name)
        .cloned()
        .ok_or_else(|| {
            Error::Internal(format!(
                "endpoint \"{name}\" has a readout but no traffic policy"
            ))
        })?;
    let mut policy = Vec::with_capacity(endpoint.arms.len());
    for arm in &endpoint.arms {
        let spec = VersionSpec::Alias(arm.alias.clone());
        let serving = state.core.models().get(&endpoint.model, &spec).await.ok();
        policy.push(ArmPolicy {
            alias: arm.alias.clone(),
            weight: arm.weight,
            version: serving.as_ref().map(|m| m.version),
            outputs: serving.map(|m| m.signature.outputs.iter().map(|o| o.name.clone()).collect()),
        });
    }
    Ok(readout.view(&endpoint.experiment, &endpoint.model, &policy))
}

/// Why a promotion did not happen.
#[derive(Debug)]
pub enum NotPromoted {
    /// The readout does not allow it: its decision, and the reason.
    Condition {
        decision: Decision,
        reason: String,
    },
    Failed(Error),
}

impl From<Error> for NotPromoted {
    fn from(e: Error) -> Self {
        NotPromoted::Failed(e)
    }
}

/// What a promotion did.
#[derive(Debug, Clone, Serialize)]
pub struct Promotion {
    pub endpoint: String,
    pub arm: String,
    pub baseline: String,
    pub condition: PromoteIf,
    pub decision: &'static str,
    pub diff: Option<f64>,
    pub p_value: Option<f64>,
    pub always_valid_p_value: f64,
    pub swap: SwapOutcome,
    /// What could not be recorded (MLflow tags), if anything.
    pub warnings: Vec<String>,
}

/// Promotes `arm` (default: the endpoint's one arm besides the baseline)
/// of `endpoint` when `condition` holds: the baseline alias moves to the
/// arm's version, the decision goes to the history (and MLflow tags), and
/// all traffic goes to the baseline.
pub async fn promote(
    state: &Arc<AppState>,
    endpoint: &str,
    arm: Option<&str>,
    condition: PromoteIf,
    by: &str,
) -> Result<Promotion, NotPromoted> {
    let view = readout_view(state, endpoint).await?;
    let baseline = view.baseline.clone();
    let comparison = match arm {
        Some(arm) => view.comparisons.iter().find(|c| c.arm == arm),
        None if view.comparisons.len() == 1 => view.comparisons.first(),
        None => {
            let arms: Vec<&str> = view.comparisons.iter().map(|c| c.arm.as_str()).collect();
            return Err(Error::InvalidInput(format!(
                "endpoint \"{endpoint}\" has several arms besides the baseline ({}); name the one to promote with \"arm\"",
                arms.join(", ")
            ))
            .into());
        }
    }
    .ok_or_else(|| {
        Error::NotFound(format!(
            "endpoint \"{endpoint}\" has no arm \"{}\" besides its baseline \"{baseline}\"",
            arm.unwrap_or("?")
        ))
    })?
    .clone();
    condition
        .check(&comparison, view.alpha)
        .map_err(|reason| NotPromoted::Condition {
            decision: comparison.decision,
            reason,
        })?;
    let arm_view = view.arms.iter().find(|a| a.arm == comparison.arm);
    let (Some(version), Some(arm_view)) = (arm_view.and_then(|a| a.version), arm_view) else {
        return Err(Error::Unavailable(format!(
            "arm \"{}\" of endpoint \"{endpoint}\" serves no version now; see /admin/status",
            comparison.arm
        ))
        .into());
    };
    let base_view = view.arms.iter().find(|a| a.arm == baseline);
    let swap = state
        .core
        .models()
        .set_alias(AliasChange {
            model: view.model.clone(),
            alias: baseline.clone(),
            version,
            allow_signature_change: false,
            by: by.to_string(),
            rollback: false,
        })
        .await?;
    let why = format!(
        "experiment \"{}\" on endpoint \"{endpoint}\": arm \"{}\" (version {version}) is {} against \"{baseline}\" on {} (diff {}, p-value {}, always-valid p-value {:.4}, {} and {} labels); promoted with condition {}",
        view.experiment,
        comparison.arm,
        decision_name(comparison.decision),
        view.metric,
        opt(comparison.diff),
        opt(comparison.p_value),
        comparison.always_valid_p_value,
        arm_view.feedback,
        base_view.map_or(0, |b| b.feedback),
        condition.name()
    );
    tracing::info!("{why}");
    let mut event = Event::new(
        &view.model,
        &baseline,
        crate::serving::history::action::PROMOTE,
        by,
    );
    event.from_version = swap.from_version;
    event.to_version = Some(version);
    event.endpoint = Some(endpoint.to_string());
    event.why = Some(why);
    event.comparison = Some(ComparisonRecord {
        challenger_alias: comparison.arm.clone(),
        metric: view.metric.to_string(),
        rows: arm_view.feedback + base_view.map_or(0, |b| b.feedback),
        champion_value: base_view.and_then(|b| b.metric.value).unwrap_or(f64::NAN),
        challenger_value: arm_view.metric.value.unwrap_or(f64::NAN),
        diff: comparison.diff.unwrap_or(f64::NAN),
        ci_low: comparison.ci_low.unwrap_or(f64::NAN),
        ci_high: comparison.ci_high.unwrap_or(f64::NAN),
        decision: decision_name(comparison.decision).to_string(),
        promoted: true,
    });
    let mut warnings = Vec::new();
    let models = Arc::clone(state.core.models());
    let tags = vec![
        ("podium.experiment".to_string(), view.experiment.clone()),
        (
            "podium.decision".to_string(),
            decision_name(comparison.decision).to_string(),
        ),
        ("podium.metric".to_string(), view.metric.to_string()),
        ("podium.diff".to_string(), opt(comparison.diff)),
        ("podium.p_value".to_string(), opt(comparison.p_value)),
    ];
    let model = view.model.clone();
    let tagged = tokio::task::spawn_blocking(move || {
        models.history().record(&event);
        let registry = models.registry();
        if registry.has_version_tags() {
            registry.set_version_tags(&model, version, &tags)
        } else {
            Ok(())
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("history task failed: {e}")))?;
    if let Err(e) = tagged {
        tracing::warn!("promotion recorded, but the version tags were not set: {e}");
        warnings.push(format!("the model-version tags were not set: {e}"));
    }
    let arms: Vec<Arm> = state
        .core
        .routes()
        .endpoints
        .get(endpoint)
        .map(|e| e.arms.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|a| Arm {
            weight: if a.alias == baseline { 100.0 } else { 0.0 },
            alias: a.alias,
        })
        .collect();
    let change = TrafficChange {
        endpoint: endpoint.to_string(),
        arms,
        shadow: None,
        by: by.to_string(),
        why: Some(format!(
            "arm \"{}\" promoted: \"{baseline}\" now serves its version {version}",
            comparison.arm
        )),
    };
    if let Err(e) = change_traffic(state, change).await {
        warnings.push(format!("the traffic was not moved to \"{baseline}\": {e}"));
    }
    if let Some(readout) = state
        .experiments
        .as_deref()
        .and_then(|e| e.endpoint(endpoint))
    {
        readout.control().send(LoopCommand::Promoted);
    }
    Ok(Promotion {
        endpoint: endpoint.to_string(),
        arm: comparison.arm.clone(),
        baseline,
        condition,
        decision: decision_name(comparison.decision),
        diff: comparison.diff,
        p_value: comparison.p_value,
        always_valid_p_value: comparison.always_valid_p_value,
        swap,
        warnings,
    })
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "none".into(), |v| format!("{v}"))
}

/// [`Controls`] of one endpoint over the admin paths.
pub struct EndpointControls {
    state: Arc<AppState>,
    endpoint: String,
}

impl Controls for EndpointControls {
    fn arms(&self) -> Option<Vec<Arm>> {
        self.state
            .core
            .routes()
            .endpoints
            .get(&self.endpoint)
            .map(|e| e.arms.clone())
    }

    async fn set_traffic(
        &self,
        arms: Vec<Arm>,
        by: &'static str,
        why: String,
    ) -> Result<(), String> {
        let change = TrafficChange {
            endpoint: self.endpoint.clone(),
            arms,
            shadow: None,
            by: by.to_string(),
            why: Some(why),
        };
        change_traffic(&self.state, change)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn promote(&self, arm: &str, condition: PromoteIf) -> Result<(), PromoteError> {
        promote(
            &self.state,
            &self.endpoint,
            Some(arm),
            condition,
            BY_EXPERIMENT,
        )
        .await
        .map(drop)
        .map_err(|e| match e {
            NotPromoted::Condition { decision, reason } => {
                PromoteError::NotYet { decision, reason }
            }
            NotPromoted::Failed(e) => PromoteError::Failed(e.to_string()),
        })
    }
}

/// Starts the experiment loop of each of `loops`; abort the handles to stop them.
pub fn spawn_loops(
    state: &Arc<AppState>,
    loops: Vec<LoopConfig>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(experiments) = state.experiments.clone() else {
        return Vec::new();
    };
    loops
        .into_iter()
        .filter_map(|config| {
            let controls = EndpointControls {
                state: Arc::clone(state),
                endpoint: config.endpoint.clone(),
            };
            let name = config.endpoint.clone();
            let task = ExperimentLoop::new(Arc::clone(&experiments), config, controls)?;
            tracing::info!("endpoint {name}: experiment loop every {:?}", task.tick());
            Some(tokio::spawn(task.run()))
        })
        .collect()
}
