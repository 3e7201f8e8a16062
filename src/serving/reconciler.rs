//! The reconciler task: reads the registry at start, then every poll
//! interval, and runs the admin commands sent through the store in
//! between. It owns the work, so one reconcile or one command runs at a
//! time; the work itself (registry calls, loads) runs on blocking threads.
//! After each it publishes the view (slots and alias states) and the
//! health summary gRPC health follows.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use super::commands::{self, Command};
use super::loader::lock;
use super::reconcile::reconcile;
use super::ModelStore;
use crate::error::Error;
use crate::registry::Registry;

/// Who a poll's changes are recorded as in the alias history.
const BY_POLL: &str = "registry";

/// The running reconciler of one store; stopped when dropped (a pass under
/// way finishes on its blocking thread).
pub struct Reconciler {
    task: JoinHandle<()>,
}

impl Reconciler {
    /// Starts the reconciler of `store` on the current tokio runtime: it
    /// reads the registry at once (the store's health summary says
    /// `started` after that, even if it failed), then every `interval`.
    /// A store has one reconciler.
    pub fn spawn(store: Arc<ModelStore>, interval: Duration) -> Result<Reconciler, Error> {
        let inbox = lock(&store.inbox).take().ok_or_else(|| {
            Error::Internal("this model store already has a reconciler".to_string())
        })?;
        let task = Task {
            store,
            inbox,
            interval: interval.max(Duration::from_millis(1)),
        };
        Ok(Reconciler {
            task: tokio::spawn(task.run()),
        })
    }

    /// Stops the task; commands sent after this answer an error.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Task {
    store: Arc<ModelStore>,
    inbox: mpsc::Receiver<Command>,
    interval: Duration,
}

impl Task {
    async fn run(mut self) {
        // The registry may be across the network: read it on blocking threads.
        let _ = self
            .blocking(|store| warn_if_empty(store.registry.as_ref()))
            .await;
        // A registry that cannot be read yet (MLflow starting or down) is
        // not fatal: the server stays unready and the poll keeps trying.
        match self.blocking(|store| reconcile(store, BY_POLL, None)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!("cannot read the registry: {e}; not ready until it can be read")
            }
            Err(e) => tracing::error!("registry refresh task failed: {e}"),
        }
        if let Err(reasons) = self.store.readiness() {
            tracing::warn!("not ready: {}", reasons.join("; "));
        }
        self.store.health.send_modify(|h| h.started = true);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.poll().await,
                Some(command) = self.inbox.recv() => self.command(command).await,
            }
        }
    }

    async fn poll(&self) {
        match self.blocking(|store| reconcile(store, BY_POLL, None)).await {
            Ok(Ok(())) => {}
            // Logged (once per outage) and reported by the store.
            Ok(Err(e)) => tracing::debug!("registry refresh failed: {e}"),
            Err(e) => tracing::error!("registry refresh task failed: {e}"),
        }
    }

    async fn command(&self, command: Command) {
        match command {
            Command::Reconcile { reply } => {
                let done = self.blocking(|s| reconcile(s, BY_POLL, None)).await;
                let _ = reply.send(answer(done));
            }
            Command::SetAlias { change, reply } => {
                let done = self
                    .blocking(move |s| commands::set_alias(s, &change))
                    .await;
                let _ = reply.send(answer(done));
            }
            Command::Rollback {
                model,
                alias,
                by,
                reply,
            } => {
                let done = self
                    .blocking(move |s| commands::rollback(s, &model, &alias, &by))
                    .await;
                let _ = reply.send(answer(done));
            }
            Command::DeleteAlias {
                model,
                alias,
                by,
                reply,
            } => {
                let done = self
                    .blocking(move |s| commands::delete_alias(s, &model, &alias, &by))
                    .await;
                let _ = reply.send(answer(done));
            }
        }
    }

    /// Runs `work` on a blocking thread; the task waits for it, so the
    /// next poll or command starts after it.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&ModelStore) -> T + Send + 'static,
    ) -> Result<T, JoinError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || work(&store)).await
    }
}

fn answer<T>(done: Result<Result<T, Error>, JoinError>) -> Result<T, Error> {
    done.map_err(|e| Error::Internal(format!("admin task failed: {e}")))?
}

/// Says so when the registry has no models, with how to register one.
fn warn_if_empty(registry: &dyn Registry) {
    match registry.models() {
        Ok(models) if models.is_empty() => tracing::warn!(
            "registry {} has no models; {}",
            registry.location(),
            if registry.kind() == "mlflow" {
                "register one with mlflow.onnx.log_model(..., registered_model_name=NAME)"
            } else {
                "register one with `podium models register NAME FILE.onnx`"
            }
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the registry yet: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::VersionSpec;
    use crate::serving::loader::PIN_IDLE;
    use crate::serving::test_registry::{model_file, Fixture};
    use tokio::time::sleep;

    const POLL: Duration = Duration::from_secs(5);
    const TICK: Duration = Duration::from_millis(1);

    /// Starts the reconciler and waits for its first registry read.
    async fn start(fx: &Fixture, interval: Duration) -> Reconciler {
        let reconciler = Reconciler::spawn(Arc::clone(&fx.store), interval).unwrap();
        let mut health = fx.store.watch_health();
        health.wait_for(|h| h.started).await.unwrap();
        reconciler
    }

    fn swaps(fx: &Fixture, to: u64, result: &str) -> usize {
        let (to, result) = (
            format!("\"to_version\":{to}"),
            format!("\"result\":\"{result}\""),
        );
        fx.history()
            .lines()
            .filter(|l| l.contains("\"action\":\"swap\"") && l.contains(&to) && l.contains(&result))
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn the_poll_interval_triggers_a_reconcile_that_follows_an_alias_move() {
        let fx = Fixture::fraud(0);
        let _reconciler = start(&fx, POLL).await;
        let mut health = fx.store.watch_health();
        let champion = fx.slot("champion");
        assert_eq!(
            (champion.serving_version, champion.state),
            (Some(1), "serving")
        );
        assert!(health.borrow_and_update().ready);

        fx.registry.inner.set_alias("fraud", "champion", 2).unwrap();
        sleep(POLL - TICK).await;
        assert_eq!(
            fx.slot("champion").serving_version,
            Some(1),
            "not before the poll"
        );
        sleep(2 * TICK).await;
        let champion = fx.slot("champion");
        assert_eq!(
            (champion.serving_version, champion.state),
            (Some(2), "serving")
        );
        assert_eq!(champion.previous_versions, vec![1]);
        assert_eq!(swaps(&fx, 2, "ok"), 1);
        let served = fx.store.get("fraud", &VersionSpec::parse(None)).await;
        assert_eq!(served.unwrap().version, 2);
        // Ready and serving before and after: gRPC health had nothing to change.
        assert!(!health.has_changed().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_version_keeps_the_old_one_serving_until_the_alias_moves_again() {
        let fx = Fixture::fraud(0);
        let broken = fx.tmp.path().join("broken.onnx");
        // Passes registration's ONNX check (IR 8, a graph with output "y"),
        // but ONNX Runtime refuses it (no opset).
        std::fs::write(
            &broken,
            [0x08, 0x08, 0x3a, 0x05, 0x62, 0x03, 0x0a, 0x01, b'y'],
        )
        .unwrap();
        assert_eq!(fx.registry.inner.register("fraud", &broken).unwrap(), 3);
        let _reconciler = start(&fx, POLL).await;

        fx.registry.inner.set_alias("fraud", "champion", 3).unwrap();
        sleep(POLL + TICK).await;
        let champion = fx.slot("champion");
        assert_eq!(
            (champion.serving_version, champion.state),
            (Some(1), "refused")
        );
        let why = champion.last_error.unwrap_or_default();
        assert!(
            why.contains("version 3 was refused") && why.contains("still serving version 1"),
            "{why}"
        );
        fx.store.readiness().unwrap();
        // Not tried again at the next polls…
        sleep(3 * POLL).await;
        assert_eq!(swaps(&fx, 3, "refused"), 1);
        assert_eq!(fx.slot("champion").state, "refused");
        // …until the alias moves away and back.
        fx.registry.inner.set_alias("fraud", "champion", 1).unwrap();
        sleep(POLL).await;
        let champion = fx.slot("champion");
        assert_eq!((champion.state, champion.last_error), ("serving", None));
        fx.registry.inner.set_alias("fraud", "champion", 3).unwrap();
        sleep(POLL).await;
        assert_eq!(swaps(&fx, 3, "refused"), 2);
        assert_eq!(fx.slot("champion").serving_version, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_registry_keeps_the_old_version_serving() {
        let fx = Fixture::fraud(0);
        let _reconciler = start(&fx, POLL).await;
        let reg = &fx.registry;

        // The alias moves while the artifacts cannot be fetched.
        reg.set(&reg.down, true);
        reg.inner.set_alias("fraud", "champion", 2).unwrap();
        sleep(POLL + TICK).await;
        let champion = fx.slot("champion");
        assert_eq!(champion.serving_version, Some(1));
        assert_eq!(champion.state, "registry_unreachable");
        let why = champion.last_error.unwrap_or_default();
        assert!(why.contains("could not be fetched: "), "{why}");
        fx.store.readiness().unwrap();
        // Tried again at every poll, unlike a refusal.
        let calls = reg.artifact_calls();
        sleep(2 * POLL).await;
        assert_eq!(reg.artifact_calls(), calls + 2);

        // Nothing can be read at all: degraded, still serving.
        reg.set(&reg.listing_down, true);
        sleep(POLL).await;
        assert_eq!(fx.store.registry_status().state, "degraded");
        let served = fx.store.get("fraud", &VersionSpec::parse(None)).await;
        assert_eq!(served.unwrap().version, 1);
        fx.store.readiness().unwrap();

        // Back: the next poll follows the alias.
        reg.set(&reg.listing_down, false);
        reg.set(&reg.down, false);
        sleep(POLL).await;
        let champion = fx.slot("champion");
        assert_eq!(
            (champion.serving_version, champion.state),
            (Some(2), "serving")
        );
        assert_eq!(fx.store.registry_status().state, "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn a_version_pinned_by_number_is_unloaded_after_pin_idle_without_use() {
        let fx = Fixture::fraud(0);
        let poll = Duration::from_secs(60);
        let _reconciler = start(&fx, poll).await;
        let resident = |fx: &Fixture| -> Vec<u64> {
            fx.store
                .status()
                .resident
                .iter()
                .map(|r| r.version)
                .collect()
        };
        let v2 = VersionSpec::Number(2);
        drop(fx.store.get("fraud", &v2).await.unwrap());
        assert_eq!(resident(&fx), vec![1, 2]);
        // A use within PIN_IDLE keeps it…
        sleep(PIN_IDLE - Duration::from_secs(10)).await;
        drop(fx.store.get("fraud", &v2).await.unwrap());
        sleep(Duration::from_secs(11)).await;
        assert_eq!(resident(&fx), vec![1, 2]);
        // …PIN_IDLE without one unloads it at the next poll.
        sleep(PIN_IDLE).await;
        assert_eq!(resident(&fx), vec![1]);
        assert!(fx.store.status().draining.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn admin_changes_are_commands_that_carry_their_own_permission() {
        let fx = Fixture::fraud(0);
        assert_eq!(
            fx.registry
                .inner
                .register("fraud", &model_file("mlp/v1.onnx"))
                .unwrap(),
            3
        );
        let _reconciler = start(&fx, POLL).await;
        let change = |allow| commands::AliasChange {
            model: "fraud".into(),
            alias: "champion".into(),
            version: 3,
            allow_signature_change: allow,
            by: "admin".into(),
            rollback: false,
        };
        let refused = fx.store.set_alias(change(false)).await.unwrap_err();
        assert!(matches!(refused, Error::Refused(_)), "{refused:?}");
        assert!(refused.to_string().contains("incompatible"), "{refused}");
        let done = fx.store.set_alias(change(true)).await.unwrap();
        assert_eq!(
            (done.from_version, done.version, done.swapped),
            (Some(1), 3, true)
        );
        assert_eq!(fx.slot("champion").serving_version, Some(3));
        // The permission was for that change only: the next poll keeps v3
        // and a rollback (no permission) is refused for the signature.
        sleep(POLL).await;
        assert_eq!(fx.slot("champion").state, "serving");
        let back = fx
            .store
            .rollback("fraud", "champion", "admin:rollback")
            .await;
        assert!(matches!(back, Err(Error::Refused(_))), "{back:?}");
        fx.store
            .delete_alias("fraud", "champion", "admin")
            .await
            .unwrap();
        assert!(fx.store.status().slots.is_empty());
    }
}
