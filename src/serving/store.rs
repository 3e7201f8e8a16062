//! The model store: the slots requests read, the loaded versions, and the
//! door to the reconciler task that keeps them in step with the registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

use super::commands::{AliasChange, Command};
use super::history::History;
use super::loader::{lock, Loader};
use super::readiness::HealthSummary;
use super::registry_health::RegistryHealth;
use super::slots::View;
use super::status::SwapOutcome;
use crate::error::Error;
use crate::registry::Registry;
use crate::runtime::batch::BatchingPolicy;
use crate::runtime::options::OrtSettings;
use crate::runtime::Backends;

/// How the store loads and keeps versions.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Inference workers: one ONNX Runtime session per worker per version
    /// (a version on tract has one plan they share).
    pub workers: usize,
    /// Replaced versions kept loaded per alias, for instant rollback.
    pub keep_previous: usize,
    /// The memory loaded versions may take (bytes, as
    /// [`LoadedModel::memory_bytes`](crate::runtime::LoadedModel::memory_bytes)
    /// counts it). With a limit, aliases of models not in `preload` are
    /// served on demand: loaded while they fit, loaded by a request when
    /// they are not, evicted least recently used first to make room.
    pub memory_limit: Option<u64>,
    /// Models whose aliases always keep their versions loaded, in their
    /// slots (`--preload`); only meaningful with a memory limit.
    pub preload: Vec<String>,
    /// How long a request waits for a version loaded on demand before it
    /// gets 503 with `Retry-After` (`--load-wait-secs`).
    pub load_wait: std::time::Duration,
    /// Serve only these models; None: every model of the registry.
    pub watch: Option<Vec<String>>,
    /// Dynamic batching per model name (`[model.<name>.batching]`); a
    /// version of a model named here that cannot batch is refused.
    pub batching: HashMap<String, BatchingPolicy>,
    /// ONNX Runtime options per model (`[model.<name>.onnxruntime]` over
    /// the `--ort-*` defaults), checked, providers included.
    pub ort: OrtSettings,
    /// The backend of each model (`[model.<name>] backend` over `--backend`).
    pub backends: Backends,
}

/// How long a request waits for a version loaded on demand, unless
/// `--load-wait-secs` says otherwise.
pub const DEFAULT_LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Admin commands waiting for the reconciler; more wait for room.
const COMMAND_QUEUE: usize = 64;

/// The slots, the loaded versions, and the way to the reconciler that keeps
/// them in step with the registry. Requests only read it; every change goes
/// through the reconciler task ([`Reconciler`](super::Reconciler)), one at
/// a time.
pub struct ModelStore {
    pub(super) registry: Arc<dyn Registry>,
    pub(super) options: StoreOptions,
    pub(super) history: History,
    /// Published by the reconciler only.
    pub(super) view: ArcSwap<View>,
    pub(super) loader: Arc<Loader>,
    /// Written by the reconciler only.
    pub(super) registry_health: Mutex<RegistryHealth>,
    /// Published by the reconciler after each reconcile or command.
    pub(super) health: watch::Sender<HealthSummary>,
    commands: mpsc::Sender<Command>,
    /// Taken by the reconciler task when it starts.
    pub(super) inbox: Mutex<Option<mpsc::Receiver<Command>>>,
}

impl ModelStore {
    /// An empty store; start a [`Reconciler`](super::Reconciler) to fill it.
    pub fn new(registry: Arc<dyn Registry>, options: StoreOptions, history: History) -> ModelStore {
        let (commands, inbox) = mpsc::channel(COMMAND_QUEUE);
        ModelStore {
            loader: Arc::new(Loader::new(Arc::clone(&registry), &options)),
            registry,
            options,
            history,
            view: ArcSwap::from_pointee(View::default()),
            registry_health: Mutex::new(RegistryHealth::default()),
            health: watch::Sender::new(HealthSummary::default()),
            commands,
            inbox: Mutex::new(Some(inbox)),
        }
    }

    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// The health summary, updated after each reconcile or command.
    pub fn watch_health(&self) -> watch::Receiver<HealthSummary> {
        self.health.subscribe()
    }

    /// Re-reads the registry now and makes the slots follow it.
    pub async fn refresh(&self) -> Result<(), Error> {
        self.ask(|reply| Command::Reconcile { reply }).await
    }

    /// Points an alias at a version for an operator: the version is loaded,
    /// checked against what the alias serves now and warmed up *before* the
    /// registry is written, so a bad version is refused without ever being
    /// published; then this server swaps at once.
    pub async fn set_alias(&self, change: AliasChange) -> Result<SwapOutcome, Error> {
        self.ask(|reply| Command::SetAlias { change, reply }).await
    }

    /// Points `alias` back at the version it pointed at before its last move
    /// that was not rolled back already (the alias history is a stack, see
    /// [`super::history::rollback_target`]), as [`ModelStore::set_alias`]
    /// would; a version kept loaded for this is swapped in at once.
    pub async fn rollback(&self, model: &str, alias: &str, by: &str) -> Result<SwapOutcome, Error> {
        let (model, alias, by) = (model.to_string(), alias.to_string(), by.to_string());
        self.ask(|reply| Command::Rollback {
            model,
            alias,
            by,
            reply,
        })
        .await
    }

    /// Removes `alias` from the registry and stops serving it.
    pub async fn delete_alias(&self, model: &str, alias: &str, by: &str) -> Result<(), Error> {
        let (model, alias, by) = (model.to_string(), alias.to_string(), by.to_string());
        self.ask(|reply| Command::DeleteAlias {
            model,
            alias,
            by,
            reply,
        })
        .await
    }

    /// Sends a command to the reconciler and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let not_running =
            || Error::Internal("the reconciler is not running; see the server log".to_string());
        if lock(&self.inbox).is_some() {
            return Err(not_running());
        }
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| not_running())?;
        answer.await.map_err(|_| {
            Error::Internal("the reconciler stopped before answering; see the server log".into())
        })?
    }
}
