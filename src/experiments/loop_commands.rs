//! What an operator asks of a running experiment loop (stop or resume its
//! rollout; a promotion made from outside), and the loop's answer.

use tokio::sync::oneshot;

use super::{Controls, ExperimentLoop, Phase};

/// What an operator asks of a running loop.
#[derive(Debug, Clone, PartialEq)]
pub enum LoopCommand {
    /// Stop the rollout where it is (its weights stay).
    StopRollout { by: String },
    /// Resume a stopped rollout at the step it stopped on.
    ResumeRollout { by: String },
    /// The challenger was promoted from outside the loop.
    Promoted,
}

/// A command on its way to the loop, with where its answer goes (None:
/// nobody waits for it).
pub struct Envelope {
    pub command: LoopCommand,
    pub reply: Option<oneshot::Sender<Result<(), String>>>,
}

impl<C: Controls> ExperimentLoop<C> {
    /// Carries out `command`; the error says, for the operator, why the
    /// rollout's state does not allow it and what to do instead.
    pub async fn command(&mut self, command: LoopCommand) -> Result<(), String> {
        let answer = match (command, self.phase.clone()) {
            (LoopCommand::StopRollout { by }, Phase::Stepping { index, .. }) => {
                self.stop(index, format!("stopped by {by}"));
                Ok(())
            }
            (LoopCommand::StopRollout { by }, Phase::Resuming { index }) => {
                self.stop(Some(index), format!("stopped by {by}"));
                Ok(())
            }
            (LoopCommand::StopRollout { by }, Phase::AwaitingDecision { .. }) => {
                let last = self.config.rollout.as_ref().map(|r| r.steps.len() - 1);
                self.stop(last, format!("stopped by {by}"));
                Ok(())
            }
            (LoopCommand::ResumeRollout { by }, Phase::Stopped { index, .. }) => {
                tracing::info!("endpoint {}: rollout resumed by {by}", self.config.endpoint);
                // Judge the resumed split on its own calls.
                self.window.reset(self.snapshot());
                // Stopped before its first step: resuming takes the first.
                let index = index.unwrap_or(0);
                self.phase = Phase::Resuming { index };
                self.blocked = None;
                if let (Some(rollout), Some(arm)) =
                    (self.config.rollout.clone(), self.rollout_arm())
                {
                    // On failure the loop stays on this step and tries again
                    // each tick (`waiting_for` says why).
                    self.apply_step(&rollout, &arm, index).await;
                }
                Ok(())
            }
            (
                LoopCommand::Promoted,
                Phase::Stepping { .. }
                | Phase::Resuming { .. }
                | Phase::AwaitingDecision { .. }
                | Phase::Stopped { .. },
            ) => {
                self.phase = Phase::Promoted;
                Ok(())
            }
            (LoopCommand::Promoted, _) => Ok(()),
            (command, phase) => Err(self.refusal(&command, &phase)),
        };
        self.publish();
        answer
    }

    /// Why `command` cannot be carried out in `phase`.
    fn refusal(&self, command: &LoopCommand, phase: &Phase) -> String {
        let endpoint = &self.config.endpoint;
        let rollout = format!("the rollout of endpoint \"{endpoint}\"");
        let path = format!("POST /admin/experiments/{endpoint}/rollout");
        match (command, phase) {
            (_, Phase::Guarding) => format!("endpoint \"{endpoint}\" has no rollout"),
            (_, Phase::Completed) => format!(
                "{rollout} is already finished (completed: the last step is in force); there is nothing to {}",
                verb(command)
            ),
            (_, Phase::Promoted) => format!(
                "{rollout} is already finished (promoted: the challenger is the baseline now); there is nothing to {}",
                verb(command)
            ),
            (LoopCommand::StopRollout { .. }, Phase::Stopped { reason, .. }) => format!(
                "{rollout} is already stopped ({reason}); resume it with {path}/resume"
            ),
            _ => format!(
                "{rollout} is running, not stopped; only a stopped rollout can be resumed (stop it with {path}/stop)"
            ),
        }
    }
}

fn verb(command: &LoopCommand) -> &'static str {
    match command {
        LoopCommand::StopRollout { .. } => "stop",
        LoopCommand::ResumeRollout { .. } => "resume",
        LoopCommand::Promoted => "promote",
    }
}
