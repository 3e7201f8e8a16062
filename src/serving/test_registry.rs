//! A registry for the serving tests: a local directory registry with fraud
//! v1 (`champion`) and v2, whose artifacts or listing can be made
//! unreachable, as when MLflow is down in the middle of a poll.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::{History, ModelStore, StoreOptions};
use crate::error::Error;
use crate::registry::local::LocalRegistry;
use crate::registry::{Registry, TrafficUpdate};

/// A directory registry that can fail the way a remote one does.
pub struct Flaky {
    pub inner: LocalRegistry,
    /// Artifacts cannot be fetched.
    pub down: AtomicBool,
    /// Nothing can be read: the model list fails.
    pub listing_down: AtomicBool,
    pub artifact_calls: AtomicUsize,
    /// A version whose registration has not finished (not listed; 0: none).
    pub pending: AtomicU64,
}

impl Flaky {
    pub fn set(&self, flag: &AtomicBool, on: bool) {
        flag.store(on, Ordering::SeqCst);
    }

    pub fn artifact_calls(&self) -> usize {
        self.artifact_calls.load(Ordering::SeqCst)
    }
}

fn unreachable() -> Error {
    Error::Registry("cannot connect to MLflow".into())
}

impl Registry for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    fn models(&self) -> Result<Vec<String>, Error> {
        if self.listing_down.load(Ordering::SeqCst) {
            return Err(unreachable());
        }
        self.inner.models()
    }
    fn versions(&self, model: &str) -> Result<Vec<u64>, Error> {
        let pending = self.pending.load(Ordering::SeqCst);
        let mut versions = self.inner.versions(model)?;
        versions.retain(|&v| v != pending);
        Ok(versions)
    }
    fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>, Error> {
        self.inner.aliases(model)
    }
    fn artifact(&self, model: &str, version: u64) -> Result<PathBuf, Error> {
        self.artifact_calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(unreachable());
        }
        self.inner.artifact(model, version)
    }
    fn unlisted_version(&self, _model: &str, version: u64) -> String {
        // In MLflow's words: a version not listed is still registering.
        format!("waiting for version {version} to be READY in the registry")
    }
    fn register(&self, model: &str, file: &Path) -> Result<u64, Error> {
        self.inner.register(model, file)
    }
    fn set_alias(&self, model: &str, alias: &str, version: u64) -> Result<(), Error> {
        self.inner.set_alias(model, alias, version)
    }
    fn stored_traffic(&self, model: &str) -> Result<BTreeMap<String, String>, Error> {
        self.inner.stored_traffic(model)
    }
    fn update_traffic(
        &self,
        model: &str,
        endpoint: &str,
        update: &mut TrafficUpdate,
    ) -> Result<(), Error> {
        self.inner.update_traffic(model, endpoint, update)
    }
    fn delete_alias(&self, model: &str, alias: &str) -> Result<(), Error> {
        self.inner.delete_alias(model, alias)
    }
}

/// An ONNX file of the repository's `models/`, e.g. `fraud/v1.onnx`.
pub fn model_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// A store over a [`Flaky`] registry in a temp dir, with the history beside it.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub registry: Arc<Flaky>,
    pub store: Arc<ModelStore>,
}

impl Fixture {
    /// fraud v1 (`champion`) and v2, with `pending` a version still
    /// registering (0: none); one worker, one previous version kept.
    pub fn fraud(pending: u64) -> Fixture {
        crate::runtime::ort::init(None).expect("run scripts/setup-ort.sh");
        let tmp = tempfile::tempdir().expect("temp dir");
        let local = LocalRegistry::new(tmp.path().join("reg"));
        for file in ["fraud/v1.onnx", "fraud/v2.onnx"] {
            local
                .register("fraud", &model_file(file))
                .expect("register");
        }
        local.set_alias("fraud", "champion", 1).expect("alias");
        let registry = Arc::new(Flaky {
            inner: local,
            down: AtomicBool::new(false),
            listing_down: AtomicBool::new(false),
            artifact_calls: AtomicUsize::new(0),
            pending: pending.into(),
        });
        let options = StoreOptions {
            workers: 1,
            keep_previous: 1,
            memory_limit: None,
            preload: Vec::new(),
            load_wait: crate::serving::DEFAULT_LOAD_WAIT,
            watch: None,
            batching: Default::default(),
            ort: Default::default(),
            backends: Default::default(),
        };
        let history = History::new(tmp.path().join("history.jsonl"));
        let store = Arc::new(ModelStore::new(registry.clone(), options, history));
        Fixture {
            tmp,
            registry,
            store,
        }
    }

    /// The alias history as recorded so far.
    pub fn history(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("history.jsonl")).unwrap_or_default()
    }

    /// `fraud@alias` in `GET /admin/status`.
    pub fn slot(&self, alias: &str) -> super::SlotStatus {
        self.store
            .status()
            .slots
            .into_iter()
            .find(|s| s.model == "fraud" && s.alias == alias)
            .unwrap_or_else(|| panic!("no slot fraud@{alias}"))
    }
}
