//! The experiment loop's states on tokio's paused clock, against fake
//! serving controls.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::experiments::rollout::{ControlView, RolloutState};
use crate::experiments::{Metric, ReadoutConfig, Rule};

/// Serving as the loop sees it: the weights, every change, and the
/// promotion answer to give.
struct Fake {
    arms: Mutex<Vec<Arm>>,
    changes: Mutex<Vec<(&'static str, String)>>,
    promote: Mutex<Result<(), PromoteError>>,
    /// Some: every traffic change fails with this error.
    fail: Mutex<Option<String>>,
}

impl Controls for Arc<Fake> {
    fn arms(&self) -> Option<Vec<Arm>> {
        Some(self.arms.lock().unwrap().clone())
    }

    async fn set_traffic(
        &self,
        arms: Vec<Arm>,
        by: &'static str,
        why: String,
    ) -> Result<(), String> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        *self.arms.lock().unwrap() = arms;
        self.changes.lock().unwrap().push((by, why));
        Ok(())
    }

    async fn promote(&self, _arm: &str, _condition: PromoteIf) -> Result<(), PromoteError> {
        self.promote.lock().unwrap().clone()
    }
}

impl Fake {
    fn weight(&self, alias: &str) -> f64 {
        self.arms
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.alias == alias)
            .unwrap()
            .weight
    }
    fn changes(&self) -> Vec<(&'static str, String)> {
        self.changes.lock().unwrap().clone()
    }
}

fn setup(
    guardrail: Option<GuardrailConfig>,
    rollout: Option<RolloutConfig>,
) -> (Arc<Experiments>, Arc<Fake>, ExperimentLoop<Arc<Fake>>) {
    let readout = ReadoutConfig {
        endpoint: "e".into(),
        metric: Metric::Mean,
        prediction_output: None,
        baseline: "champion".into(),
        min_samples: 2,
        alpha: 0.05,
    };
    let experiments = Arc::new(Experiments::new(vec![readout], 100).unwrap());
    let fake = Arc::new(Fake {
        arms: Mutex::new(vec![
            Arm {
                alias: "champion".into(),
                weight: 50.0,
            },
            Arm {
                alias: "challenger".into(),
                weight: 50.0,
            },
        ]),
        changes: Mutex::new(Vec::new()),
        promote: Mutex::new(Ok(())),
        fail: Mutex::new(None),
    });
    let config = LoopConfig {
        endpoint: "e".into(),
        guardrail,
        rollout,
    };
    let task = ExperimentLoop::new(Arc::clone(&experiments), config, Arc::clone(&fake)).unwrap();
    (experiments, fake, task)
}

fn guardrail() -> GuardrailConfig {
    GuardrailConfig {
        max_error_rate: Some(0.1),
        max_p99_ratio: Some(3.0),
        min_requests: 10,
        window: Duration::from_secs(60),
        webhook: None,
    }
}

fn rollout() -> RolloutConfig {
    RolloutConfig {
        steps: vec![10.0, 50.0],
        step: Duration::from_secs(60),
        promote: true,
        promote_if: PromoteIf::Better,
    }
}

fn calls(e: &Experiments, alias: &str, n: usize, ok: bool, ms: u64) {
    let readout = e.endpoint("e").unwrap();
    for _ in 0..n {
        readout.with_arm(alias, |_, arm| {
            arm.record_call(ok, Some(1), Duration::from_millis(ms))
        });
    }
}

fn labels(e: &Experiments, alias: &str, n: usize) {
    let readout = e.endpoint("e").unwrap();
    for _ in 0..n {
        readout.with_arm(alias, |_, arm| arm.record_outcome(1.0));
    }
}

fn view(e: &Experiments) -> ControlView {
    e.endpoint("e").unwrap().control().view()
}

#[tokio::test(start_paused = true)]
async fn a_failing_arm_is_stopped_once_and_shown_with_the_numbers() {
    let (e, fake, mut task) = setup(Some(guardrail()), None);
    assert_eq!(task.tick(), Duration::from_secs(1));
    calls(&e, "champion", 20, true, 2);
    calls(&e, "challenger", 9, false, 2);
    task.step().await;
    assert_eq!(
        fake.weight("challenger"),
        50.0,
        "9 calls: below min_requests"
    );
    calls(&e, "challenger", 11, true, 2);
    task.step().await;
    assert_eq!(
        (fake.weight("challenger"), fake.weight("champion")),
        (0.0, 50.0)
    );
    let changes = fake.changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, "guardrail");
    assert!(
        changes[0].1.contains("failed 9 of 20 calls (45.00%)"),
        "{}",
        changes[0].1
    );
    let stopped = &view(&e).stopped_arms;
    assert_eq!(
        (stopped[0].arm.as_str(), stopped[0].rule),
        ("challenger", Rule::ErrorRate)
    );
    // Stopped arms are not judged again.
    tokio::time::advance(Duration::from_secs(30)).await;
    task.step().await;
    assert_eq!(fake.changes().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_arm_is_stopped_by_the_p99_ratio() {
    let (e, fake, mut task) = setup(Some(guardrail()), None);
    calls(&e, "champion", 10, true, 2);
    calls(&e, "challenger", 10, true, 500);
    task.step().await;
    assert_eq!(fake.weight("challenger"), 0.0);
    assert_eq!(view(&e).stopped_arms[0].rule, Rule::P99Ratio);
}

#[tokio::test(start_paused = true)]
async fn a_rollout_walks_its_steps_then_promotes() {
    let (e, fake, mut task) = setup(Some(guardrail()), Some(rollout()));
    task.step().await;
    assert_eq!(
        (fake.weight("challenger"), fake.weight("champion")),
        (10.0, 90.0)
    );
    let r = view(&e).rollout.unwrap();
    assert_eq!(
        (r.state, r.step, r.weight),
        (RolloutState::Stepping, Some(0), Some(10.0))
    );
    assert!(r.next_step_at.is_some());

    // Not before step_secs, and not before min_samples labels on both arms.
    tokio::time::advance(Duration::from_secs(59)).await;
    task.step().await;
    assert_eq!(fake.weight("challenger"), 10.0);
    tokio::time::advance(Duration::from_secs(2)).await;
    task.step().await;
    assert_eq!(fake.weight("challenger"), 10.0);
    let waiting = view(&e).rollout.unwrap().waiting_for.unwrap();
    assert!(
        waiting.contains("\"challenger\" has 0 of 2 labels"),
        "{waiting}"
    );
    labels(&e, "challenger", 2);
    labels(&e, "champion", 2);
    task.step().await;
    assert_eq!(
        (fake.weight("challenger"), fake.weight("champion")),
        (50.0, 50.0)
    );
    assert!(
        fake.changes()[1].1.starts_with("rollout step 2 of 2"),
        "{:?}",
        fake.changes()
    );

    // After the last step: waits for the decision, then promotes.
    *fake.promote.lock().unwrap() = Err(PromoteError::NotYet {
        decision: Decision::NoDifferenceYet,
        reason: "no difference yet".into(),
    });
    tokio::time::advance(Duration::from_secs(61)).await;
    task.step().await;
    task.step().await;
    let r = view(&e).rollout.unwrap();
    assert_eq!(r.state, RolloutState::AwaitingDecision);
    assert_eq!(r.waiting_for.as_deref(), Some("no difference yet"));
    *fake.promote.lock().unwrap() = Ok(());
    task.step().await;
    assert_eq!(view(&e).rollout.unwrap().state, RolloutState::Promoted);
}

#[tokio::test(start_paused = true)]
async fn a_breach_stops_the_rollout_until_an_operator_resumes_it() {
    let (e, fake, mut task) = setup(Some(guardrail()), Some(rollout()));
    task.step().await;
    calls(&e, "champion", 20, true, 2);
    calls(&e, "challenger", 20, false, 2);
    task.step().await;
    assert_eq!(fake.weight("challenger"), 0.0);
    let r = view(&e).rollout.unwrap();
    assert_eq!(r.state, RolloutState::Stopped);
    assert!(r
        .stopped_reason
        .unwrap()
        .starts_with("guardrail: arm \"challenger\" failed 20 of 20"));
    labels(&e, "challenger", 2);
    labels(&e, "champion", 2);
    tokio::time::advance(Duration::from_secs(600)).await;
    task.step().await;
    assert_eq!(
        fake.weight("challenger"),
        0.0,
        "a stopped rollout takes no step"
    );

    task.command(LoopCommand::ResumeRollout { by: "admin".into() })
        .await
        .unwrap();
    assert_eq!(
        fake.weight("challenger"),
        10.0,
        "resumed on the step it stopped on"
    );
    task.step().await;
    assert_eq!(
        fake.weight("challenger"),
        10.0,
        "the old failures are out of the window"
    );
    assert_eq!(view(&e).rollout.unwrap().state, RolloutState::Stepping);
}

#[tokio::test(start_paused = true)]
async fn a_worse_challenger_is_retired_after_the_last_step() {
    let rollout = RolloutConfig {
        steps: vec![25.0],
        ..rollout()
    };
    let (e, fake, mut task) = setup(None, Some(rollout));
    assert_eq!(task.tick(), Duration::from_secs(1));
    task.step().await;
    labels(&e, "challenger", 2);
    labels(&e, "champion", 2);
    *fake.promote.lock().unwrap() = Err(PromoteError::NotYet {
        decision: Decision::Worse,
        reason: "the challenger is worse".into(),
    });
    tokio::time::advance(Duration::from_secs(60)).await;
    task.step().await;
    task.step().await;
    assert_eq!(fake.weight("challenger"), 0.0);
    let r = view(&e).rollout.unwrap();
    assert_eq!(
        (r.state, r.stopped_reason.as_deref()),
        (RolloutState::Stopped, Some("the challenger is worse"))
    );
    assert_eq!(fake.changes().last().unwrap().0, "rollout");
}

#[tokio::test(start_paused = true)]
async fn a_resume_whose_traffic_change_fails_retries_the_step_it_stopped_on() {
    let (e, fake, mut task) = setup(Some(guardrail()), Some(rollout()));
    task.step().await;
    labels(&e, "challenger", 2);
    labels(&e, "champion", 2);
    tokio::time::advance(Duration::from_secs(61)).await;
    task.step().await;
    assert_eq!(fake.weight("challenger"), 50.0, "on step 2 of 2");
    task.command(LoopCommand::StopRollout { by: "admin".into() })
        .await
        .unwrap();
    // The operator takes the challenger out while the rollout is stopped.
    *fake.arms.lock().unwrap() = vec![
        Arm {
            alias: "champion".into(),
            weight: 100.0,
        },
        Arm {
            alias: "challenger".into(),
            weight: 0.0,
        },
    ];

    *fake.fail.lock().unwrap() = Some("the registry is not read yet".into());
    task.command(LoopCommand::ResumeRollout { by: "admin".into() })
        .await
        .unwrap();
    assert_eq!(fake.weight("challenger"), 0.0);
    let r = view(&e).rollout.unwrap();
    assert_eq!((r.state, r.step), (RolloutState::Stepping, Some(1)));
    assert_eq!(
        r.waiting_for.as_deref(),
        Some("the traffic change of step 2 failed: the registry is not read yet")
    );
    // Still failing: the loop keeps trying the same step, never step 1.
    tokio::time::advance(Duration::from_secs(1)).await;
    task.step().await;
    assert_eq!(fake.weight("challenger"), 0.0);
    let r = view(&e).rollout.unwrap();
    assert_eq!((r.state, r.step), (RolloutState::Stepping, Some(1)));
    assert_eq!(fake.changes().len(), 2, "only steps 1 and 2 so far");

    *fake.fail.lock().unwrap() = None;
    tokio::time::advance(Duration::from_secs(1)).await;
    task.step().await;
    assert_eq!(
        (fake.weight("challenger"), fake.weight("champion")),
        (50.0, 50.0),
        "resumed on step 2, where it stopped"
    );
    let last = fake.changes().last().unwrap().clone();
    assert_eq!(last.0, "rollout");
    assert!(last.1.starts_with("rollout step 2 of 2"), "{}", last.1);
    let r = view(&e).rollout.unwrap();
    assert_eq!(
        (r.state, r.step, r.waiting_for),
        (RolloutState::Stepping, Some(1), None)
    );
}

#[tokio::test(start_paused = true)]
async fn commands_the_rollout_state_does_not_allow_are_refused_with_the_fix() {
    let (_e, _fake, mut task) = setup(None, Some(rollout()));
    task.step().await;
    let resume = task
        .command(LoopCommand::ResumeRollout { by: "admin".into() })
        .await
        .unwrap_err();
    assert_eq!(
        resume,
        "the rollout of endpoint \"e\" is running, not stopped; only a stopped rollout can be resumed (stop it with POST /admin/experiments/e/rollout/stop)"
    );
    task.command(LoopCommand::StopRollout { by: "admin".into() })
        .await
        .unwrap();
    let stop = task
        .command(LoopCommand::StopRollout { by: "admin".into() })
        .await
        .unwrap_err();
    assert_eq!(
        stop,
        "the rollout of endpoint \"e\" is already stopped (stopped by admin); resume it with POST /admin/experiments/e/rollout/resume"
    );
    task.command(LoopCommand::Promoted).await.unwrap();
    let finished = task
        .command(LoopCommand::ResumeRollout { by: "admin".into() })
        .await
        .unwrap_err();
    assert!(
        finished.contains("is already finished (promoted"),
        "{finished}"
    );
}
