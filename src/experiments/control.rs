//! What an endpoint's experiment loop shares with the admin API: the arms
//! the guardrail stopped, the rollout's state, and the loop's command
//! channel.

use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use super::experiment_loop::{LoopCommand, LoopEnvelope};
use super::rollout::{ControlView, RolloutState, RolloutView, StoppedArm};

/// See the module doc. Written by the loop a few times per window; read by
/// `GET /admin/experiments/{endpoint}`. Never touched by a prediction call.
#[derive(Default)]
pub struct Control {
    view: Mutex<ControlView>,
    commands: Mutex<Option<mpsc::UnboundedSender<LoopEnvelope>>>,
}

impl Control {
    pub fn view(&self) -> ControlView {
        lock(&self.view).clone()
    }

    pub(super) fn set_commands(&self, tx: mpsc::UnboundedSender<LoopEnvelope>) {
        *lock(&self.commands) = Some(tx);
    }

    pub(super) fn stopped(&self, arm: StoppedArm) {
        let mut view = lock(&self.view);
        view.stopped_arms.retain(|a| a.arm != arm.arm);
        view.stopped_arms.push(arm);
    }

    pub(super) fn set_rollout(&self, rollout: RolloutView) {
        lock(&self.view).rollout = Some(rollout);
    }

    /// Clears the stopped mark of `arm` (an operator gave it weight again).
    pub fn restarted(&self, arm: &str) {
        lock(&self.view).stopped_arms.retain(|a| a.arm != arm);
    }

    /// Hands `command` to the endpoint's loop; false when it has none.
    pub fn send(&self, command: LoopCommand) -> bool {
        self.post(LoopEnvelope {
            command,
            reply: None,
        })
    }

    /// Hands `command` to the endpoint's loop and waits for its answer:
    /// None when it has no running loop; else Ok, or why the rollout's
    /// state does not allow the command.
    pub async fn ask(&self, command: LoopCommand) -> Option<Result<(), String>> {
        let (reply, answer) = oneshot::channel();
        if !self.post(LoopEnvelope {
            command,
            reply: Some(reply),
        }) {
            return None;
        }
        answer.await.ok()
    }

    fn post(&self, envelope: LoopEnvelope) -> bool {
        lock(&self.commands)
            .as_ref()
            .is_some_and(|tx| tx.send(envelope).is_ok())
    }

    /// Whether the endpoint has a rollout.
    pub fn has_rollout(&self) -> bool {
        lock(&self.view).rollout.is_some()
    }

    /// The rollout, while it sets the endpoint's weights (stepping or
    /// awaiting its decision).
    pub fn running_rollout(&self) -> Option<RolloutView> {
        lock(&self.view).rollout.clone().filter(|r| {
            matches!(
                r.state,
                RolloutState::Stepping | RolloutState::AwaitingDecision
            )
        })
    }
}

/// Updates under these locks cannot panic halfway; a poisoned lock's data
/// is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
