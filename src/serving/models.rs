//! The loaded versions of every model and the aliases that point at them.
//!
//! The store mirrors the registry: [`ModelStore::refresh`] reads it, loads
//! every aliased version that is not loaded yet, and only then publishes the
//! new aliases, so a moved alias is answered by an already-loaded version.
//! Versions named explicitly by number are loaded on first use and kept.
//! (Validation, warm-up, rollback and the audit log of alias moves belong to
//! the reconciler, which builds on this.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::Error;
use crate::registry::{self, Registry, VersionSpec};
use crate::runtime::LoadedModel;

type Key = (String, u64);

/// What the registry says about one model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelInfo {
    pub versions: Vec<u64>,
    pub aliases: BTreeMap<String, u64>,
}

/// The registry's view and the loaded model versions.
pub struct ModelStore {
    registry: Arc<dyn Registry>,
    workers: usize,
    catalog: RwLock<Arc<BTreeMap<String, ModelInfo>>>,
    loaded: RwLock<HashMap<Key, Arc<LoadedModel>>>,
    /// Versions are immutable, so a version that failed to load is not retried.
    failed: RwLock<HashMap<Key, String>>,
    /// Versions a client named by number; kept loaded though no alias points at them.
    pinned: Mutex<HashSet<Key>>,
    /// Serialises loads so one version is never loaded twice at once.
    loading: Mutex<()>,
    refreshed_once: AtomicBool,
}

impl ModelStore {
    /// An empty store; call [`ModelStore::refresh`] to fill it.
    pub fn new(registry: Arc<dyn Registry>, workers: usize) -> ModelStore {
        ModelStore {
            registry,
            workers,
            catalog: RwLock::new(Arc::new(BTreeMap::new())),
            loaded: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            pinned: Mutex::new(HashSet::new()),
            loading: Mutex::new(()),
            refreshed_once: AtomicBool::new(false),
        }
    }

    /// Re-reads the registry, loads aliased versions not yet loaded, then
    /// publishes the new view and unloads versions nothing refers to any more.
    /// Blocking (reads files, loads models): run it off the async runtime.
    pub fn refresh(&self) -> Result<(), Error> {
        let mut catalog = BTreeMap::new();
        for model in self.registry.models()? {
            let info = ModelInfo {
                versions: self.registry.versions(&model)?,
                aliases: self.registry.aliases(&model)?,
            };
            catalog.insert(model, info);
        }
        let wanted: HashSet<Key> = catalog
            .iter()
            .flat_map(|(m, info)| info.aliases.values().map(move |&v| (m.clone(), v)))
            .filter(|(m, v)| catalog[m].versions.contains(v))
            .collect();
        for (model, version) in &wanted {
            if let Err(e) = self.load(model, *version) {
                tracing::error!("{e}");
            }
        }
        *write(&self.catalog) = Arc::new(catalog.clone());
        let pinned = lock(&self.pinned).clone();
        write(&self.loaded).retain(|key, model| {
            let keep = wanted.contains(key) || pinned.contains(key);
            if !keep {
                tracing::info!(
                    "unloading {} (no alias points at it any more)",
                    model.label()
                );
            }
            keep
        });
        self.refreshed_once.store(true, Ordering::Release);
        Ok(())
    }

    /// Loads `model` `version` unless it is loaded already. Blocking.
    fn load(&self, model: &str, version: u64) -> Result<Arc<LoadedModel>, Error> {
        let key = (model.to_string(), version);
        let _loading = lock(&self.loading);
        if let Some(found) = read(&self.loaded).get(&key) {
            return Ok(Arc::clone(found));
        }
        if let Some(why) = read(&self.failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        let started = std::time::Instant::now();
        let result = self
            .registry
            .artifact(model, version)
            .and_then(|path| LoadedModel::load(model, version, &path, self.workers));
        match result {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                tracing::info!(
                    "loaded {} ({} sessions) in {:?}",
                    loaded.label(),
                    self.workers,
                    started.elapsed()
                );
                write(&self.loaded).insert(key, Arc::clone(&loaded));
                Ok(loaded)
            }
            Err(e) => {
                let why = e.to_string();
                write(&self.failed).insert(key, why.clone());
                Err(Error::Unavailable(why))
            }
        }
    }

    /// The model version `spec` names, loading it first if it was named by
    /// number and is not loaded yet.
    pub async fn get(
        self: &Arc<Self>,
        model: &str,
        spec: &VersionSpec,
    ) -> Result<Arc<LoadedModel>, Error> {
        let version = self.resolve(model, spec)?;
        let key = (model.to_string(), version);
        if let Some(found) = read(&self.loaded).get(&key) {
            return Ok(Arc::clone(found));
        }
        if let Some(why) = read(&self.failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        lock(&self.pinned).insert(key);
        let store = Arc::clone(self);
        let model = model.to_string();
        tokio::task::spawn_blocking(move || store.load(&model, version))
            .await
            .map_err(|e| Error::Internal(format!("model loading task failed: {e}")))?
    }

    /// The concrete version `spec` names for `model`.
    pub fn resolve(&self, model: &str, spec: &VersionSpec) -> Result<u64, Error> {
        let catalog = Arc::clone(&read(&self.catalog));
        let info = catalog
            .get(model)
            .ok_or_else(|| unknown_model(model, &catalog))?;
        registry::resolve(model, spec, &info.versions, &info.aliases)
    }

    /// What the registry says about `model`.
    pub fn info(&self, model: &str) -> Result<ModelInfo, Error> {
        let catalog = Arc::clone(&read(&self.catalog));
        catalog
            .get(model)
            .cloned()
            .ok_or_else(|| unknown_model(model, &catalog))
    }

    /// Names of the registry's models, as of the last refresh.
    pub fn model_names(&self) -> Vec<String> {
        read(&self.catalog).keys().cloned().collect()
    }

    /// The loaded copy of `model` `version`, if any (never loads).
    pub fn loaded(&self, model: &str, version: u64) -> Option<Arc<LoadedModel>> {
        read(&self.loaded)
            .get(&(model.to_string(), version))
            .cloned()
    }

    /// Ready when the registry has been read and every aliased version is
    /// loaded; otherwise the reasons it is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        if !self.refreshed_once.load(Ordering::Acquire) {
            return Err(vec!["the registry has not been read yet".into()]);
        }
        let catalog = Arc::clone(&read(&self.catalog));
        let loaded = read(&self.loaded);
        let failed = read(&self.failed);
        let mut reasons = Vec::new();
        for (model, info) in catalog.iter() {
            for (alias, &version) in &info.aliases {
                let key = (model.clone(), version);
                if !loaded.contains_key(&key) {
                    let why = failed
                        .get(&key)
                        .map(String::as_str)
                        .unwrap_or("not loaded yet");
                    reasons.push(format!("{model}@{alias} (v{version}): {why}"));
                }
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

fn unknown_model(model: &str, catalog: &BTreeMap<String, ModelInfo>) -> Error {
    let known: Vec<&str> = catalog.keys().map(String::as_str).collect();
    Error::NotFound(format!(
        "unknown model \"{model}\"; this server has: {}",
        if known.is_empty() {
            "no models".to_string()
        } else {
            known.join(", ")
        }
    ))
}

// Lock helpers: a poisoned lock means a panic elsewhere mid-update of plain
// maps, which are still consistent, so carry on rather than take the server down.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}
