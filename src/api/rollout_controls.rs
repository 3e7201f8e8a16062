//! An operator's hands on an endpoint's rollout: stopping and resuming it
//! through its experiment loop (audited in the alias history), and the rule
//! that a manual weight change waits until the rollout is stopped, since a
//! running rollout owns the weights and its next step would undo the change.

use std::sync::Arc;

use super::AppState;
use crate::error::Error;
use crate::experiments::rollout::RolloutView;
use crate::experiments::LoopCommand;
use crate::routing::Arm;
use crate::serving::history::action;
use crate::serving::Event;

/// What an operator can do to an endpoint's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Stop,
    Resume,
}

impl RolloutAction {
    /// `stop` or `resume`, as the admin route names it.
    pub fn parse(endpoint: &str, action: &str) -> Result<Self, Error> {
        match action {
            "stop" => Ok(RolloutAction::Stop),
            "resume" => Ok(RolloutAction::Resume),
            other => Err(Error::NotFound(format!(
                "no rollout action \"{other}\"; use POST /admin/experiments/{endpoint}/rollout/stop or .../resume"
            ))),
        }
    }
}

/// Stops or resumes `endpoint`'s rollout for `by` (404 without a rollout,
/// 409 when its state does not allow it), records it in the alias history,
/// and answers the rollout as it is then.
pub async fn rollout_command(
    state: &Arc<AppState>,
    endpoint: &str,
    action: RolloutAction,
    by: &str,
) -> Result<RolloutView, Error> {
    let readout = state
        .experiments
        .as_deref()
        .and_then(|e| e.endpoint(endpoint))
        .filter(|r| r.control().has_rollout())
        .ok_or_else(|| {
            Error::NotFound(format!(
                "endpoint \"{endpoint}\" has no rollout; add an [endpoint.rollout] table to its entry in the --config file"
            ))
        })?;
    let (command, history_action) = match action {
        RolloutAction::Stop => (
            LoopCommand::StopRollout { by: by.to_string() },
            action::ROLLOUT_STOP,
        ),
        RolloutAction::Resume => (
            LoopCommand::ResumeRollout { by: by.to_string() },
            action::ROLLOUT_RESUME,
        ),
    };
    readout
        .control()
        .ask(command)
        .await
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "the experiment loop of endpoint \"{endpoint}\" is not running"
            ))
        })?
        .map_err(Error::Refused)?;
    let rollout =
        readout.control().view().rollout.ok_or_else(|| {
            Error::Internal(format!("endpoint \"{endpoint}\" lost its rollout view"))
        })?;
    let model = state
        .core
        .routes()
        .endpoints
        .get(endpoint)
        .map(|e| e.model.clone())
        .unwrap_or_default();
    let step = rollout
        .step
        .map_or("before its first step".to_string(), |i| {
            format!(
                "step {} of {} ({}%)",
                i + 1,
                rollout.steps.len(),
                rollout.steps[i]
            )
        });
    let mut event = Event::new(&model, &rollout.arm, history_action, by);
    event.endpoint = Some(endpoint.to_string());
    event.arms = state
        .core
        .routes()
        .endpoints
        .get(endpoint)
        .map(|e| e.arms.clone());
    event.why = Some(match action {
        RolloutAction::Stop => format!(
            "rollout of arm \"{}\" stopped by {by} on {step}; its weights stay until it is resumed",
            rollout.arm
        ),
        RolloutAction::Resume => format!(
            "rollout of arm \"{}\" resumed by {by} on {step}",
            rollout.arm
        ),
    });
    let models = Arc::clone(state.core.models());
    tokio::task::spawn_blocking(move || models.history().record(&event))
        .await
        .map_err(|e| Error::Internal(format!("history task failed: {e}")))?;
    Ok(rollout)
}

/// Refuses a manual weight change of an endpoint whose rollout is running
/// (409): the rollout owns the weights and its next step would silently
/// overwrite the change. A change that keeps every weight (the shadow
/// only) passes.
pub fn check_manual_traffic(state: &AppState, endpoint: &str, arms: &[Arm]) -> Result<(), Error> {
    let Some(rollout) = state
        .experiments
        .as_deref()
        .and_then(|e| e.endpoint(endpoint))
        .and_then(|r| r.control().running_rollout())
    else {
        return Ok(());
    };
    let current = state
        .core
        .routes()
        .endpoints
        .get(endpoint)
        .map(|e| e.arms.clone())
        .unwrap_or_default();
    let same = arms.len() == current.len()
        && arms.iter().all(|a| {
            current
                .iter()
                .any(|c| c.alias == a.alias && c.weight == a.weight)
        });
    if same {
        return Ok(());
    }
    let at = match rollout.step {
        Some(i) => format!(
            "on step {} of {}, arm \"{}\" at {}%",
            i + 1,
            rollout.steps.len(),
            rollout.arm,
            rollout.steps[i]
        ),
        None => "before its first step".to_string(),
    };
    Err(Error::Refused(format!(
        "endpoint \"{endpoint}\" has a rollout in progress ({at}) that sets its weights; its next step would overwrite this change. Stop the rollout first: POST /admin/experiments/{endpoint}/rollout/stop (its weights stay; then change them; POST /admin/experiments/{endpoint}/rollout/resume hands them back to the rollout)"
    )))
}
