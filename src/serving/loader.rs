//! Loaded versions: loading one (checked against the memory limit),
//! validating its signature against the version it replaces, warming it
//! up, keeping versions pinned by number, and unloading what nothing needs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

use super::alias_state::AliasState;
use super::budget::Budget;
use super::drift::{Fingerprint, ADVICE};
use super::on_demand::{ColdLoads, Room};
use super::status::{ResidentStatus, SwapTimings};
use super::StoreOptions;
use crate::error::Error;
use crate::registry::Registry;
use crate::runtime::batch::BatchingPolicy;
use crate::runtime::options::OrtSettings;
use crate::runtime::{Backend, Backends, LoadedModel};

/// A version of a model.
pub(super) type Key = (String, u64);

/// A version loaded because a request named it by number is unloaded after
/// this long without such a request (unless an alias points at it).
pub(super) const PIN_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// The loaded versions, shared by every slot that points at the same one.
/// A version is loaded once: loads are serialised, and one that failed is
/// not tried again (versions are immutable).
pub(super) struct Loader {
    registry: Arc<dyn Registry>,
    workers: usize,
    /// `--memory-limit` and `--preload`: what is loaded on demand, and
    /// what gives way when room is needed.
    pub(super) budget: Budget,
    /// How long a request waits for a load on demand (`--load-wait-secs`).
    pub(super) load_wait: std::time::Duration,
    /// Loads on demand under way: requests for one version share one.
    pub(super) cold: ColdLoads,
    /// Dynamic batching per model name.
    batching: HashMap<String, BatchingPolicy>,
    /// ONNX Runtime options per model.
    ort: OrtSettings,
    /// The backend per model.
    backends: Backends,
    pub(super) loaded: RwLock<HashMap<Key, Arc<LoadedModel>>>,
    /// Versions that failed to load, and why.
    pub(super) failed: RwLock<HashMap<Key, String>>,
    /// Versions the registry could not hand over (MLflow unreachable): a
    /// request naming one answers 503 at once instead of calling the
    /// registry again; forgotten at the next successful registry read (the
    /// reconciler itself retries every poll).
    pub(super) fetch_failed: RwLock<HashMap<Key, String>>,
    /// Versions a client named by number, with their last use; kept loaded
    /// though no alias points at them, until [`PIN_IDLE`] without use.
    pub(super) pinned: Mutex<HashMap<Key, tokio::time::Instant>>,
    /// Unloaded versions that in-flight requests still hold; gone once they finish.
    draining: Mutex<Vec<Weak<LoadedModel>>>,
    /// Serialises loads so one version is never loaded twice at once.
    loading: Mutex<()>,
    /// What each version's file was when it was first loaded (kept after
    /// it is unloaded, so it is never loaded again from changed files).
    /// Held while a changed file is hashed: status reads `drifted` instead.
    fingerprints: Mutex<HashMap<Key, Fingerprint>>,
    /// The drift of each version whose files differ, as last checked.
    drifted: RwLock<HashMap<Key, String>>,
}

/// A loaded version whose files drifted, or came back as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DriftChange {
    pub model: String,
    pub version: u64,
    /// The drift now; None: the files are back as loaded.
    pub drift: Option<String>,
}

impl Loader {
    pub fn new(registry: Arc<dyn Registry>, options: &StoreOptions) -> Loader {
        Loader {
            registry,
            workers: options.workers,
            budget: Budget::new(options.memory_limit, &options.preload),
            load_wait: options.load_wait,
            cold: ColdLoads::default(),
            batching: options.batching.clone(),
            ort: options.ort.clone(),
            backends: options.backends.clone(),
            loaded: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            fetch_failed: RwLock::new(HashMap::new()),
            pinned: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            loading: Mutex::new(()),
            fingerprints: Mutex::new(HashMap::new()),
            drifted: RwLock::new(HashMap::new()),
        }
    }

    /// How `model` `version`'s files differ from when it was loaded, as of
    /// the last [`Loader::check_drift`]; None when they do not (or it was
    /// never loaded).
    pub fn drift(&self, model: &str, version: u64) -> Option<String> {
        read(&self.drifted)
            .get(&(model.to_string(), version))
            .cloned()
    }

    /// Publishes what a check of `key`'s files found.
    fn publish_drift(&self, key: &Key, drift: Option<&str>) {
        let mut drifted = write(&self.drifted);
        match drift {
            Some(drift) => drifted.insert(key.clone(), drift.to_string()),
            None => drifted.remove(key),
        };
    }

    /// Looks at the files of every loaded version again (metadata; a hash
    /// only when that changed) and logs each change once. Blocking.
    pub fn check_drift(&self) -> Vec<DriftChange> {
        let loaded: Vec<Key> = read(&self.loaded).keys().cloned().collect();
        let mut fingerprints = lock(&self.fingerprints);
        let mut changes = Vec::new();
        for key in loaded {
            let Some(fingerprint) = fingerprints.get_mut(&key) else {
                continue;
            };
            let before = fingerprint.drift().map(String::from);
            let now = fingerprint.check().map(String::from);
            if before == now {
                continue;
            }
            self.publish_drift(&key, now.as_deref());
            let (model, version) = key;
            match &now {
                Some(drift) => tracing::warn!(
                    "{model} v{version}: {drift}; it keeps serving the copy loaded in memory and is not swapped back in while its files differ; {ADVICE}"
                ),
                None => tracing::info!(
                    "{model} v{version}: its files are back as they were loaded; no more drift"
                ),
            }
            changes.push(DriftChange {
                model,
                version,
                drift: now,
            });
        }
        changes
    }

    pub fn memory_limit(&self) -> Option<u64> {
        self.budget.limit()
    }

    /// `model` `version`'s loaded copy, if it is loaded. Never loads.
    pub fn loaded_copy(&self, model: &str, version: u64) -> Option<Arc<LoadedModel>> {
        read(&self.loaded)
            .get(&(model.to_string(), version))
            .cloned()
    }

    /// Whether `model` `version` is loaded. Never loads.
    pub fn is_loaded(&self, model: &str, version: u64) -> bool {
        read(&self.loaded).contains_key(&(model.to_string(), version))
    }

    /// `model` `version` for a request that named it by number: loaded on
    /// first use (off the async runtime) and pinned while it is used.
    pub async fn for_request(
        self: &Arc<Self>,
        model: &str,
        version: u64,
    ) -> Result<Arc<LoadedModel>, Error> {
        let key = (model.to_string(), version);
        if let Some(found) = read(&self.loaded).get(&key).cloned() {
            // A version named by number stays loaded while it is used.
            if let Some(last_use) = lock(&self.pinned).get_mut(&key) {
                *last_use = tokio::time::Instant::now();
            }
            self.budget.touch(&key);
            return Ok(found);
        }
        if let Some(why) = read(&self.failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        // Not a registry call per request while the registry is down.
        if let Some(why) = read(&self.fetch_failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        lock(&self.pinned).insert(key, tokio::time::Instant::now());
        let loader = Arc::clone(self);
        let model = model.to_string();
        tokio::task::spawn_blocking(move || loader.load_for_request(&model, version))
            .await
            .map_err(|e| Error::Internal(format!("model loading task failed: {e}")))?
    }

    /// Load (or reuse), validate against `current` (what the slot serves
    /// now) unless a signature change is allowed, warm up; `step` hears of
    /// each step as it starts. Blocking.
    pub fn prepare(
        &self,
        model: &str,
        alias: &str,
        version: u64,
        current: Option<&LoadedModel>,
        allow_signature_change: bool,
        step: &dyn Fn(AliasState),
    ) -> Result<(Arc<LoadedModel>, SwapTimings), Error> {
        let mut timings = SwapTimings::default();
        step(AliasState::Loading { version });
        let started = Instant::now();
        let loaded = self.load(model, version)?;
        if let Some(drift) = self.drift(model, version) {
            // Still in memory as loaded, but the registry's copy differs:
            // swapping it back in would serve what no replica can load.
            return Err(Error::Refused(format!("{drift}; {ADVICE}")));
        }
        timings.load_ms = ms(started);
        step(AliasState::Validating { version });
        let started = Instant::now();
        if let Some(current) = current.filter(|_| !allow_signature_change) {
            loaded.signature.compatible_with(&current.signature).map_err(|why| {
                Error::Refused(format!(
                    "its signature is incompatible with version {} that {model}@{alias} serves: {why} (allow the change explicitly through the admin API with \"allow_signature_change\": true)",
                    current.version
                ))
            })?;
        }
        timings.validate_ms = ms(started);
        if !loaded.is_warm() {
            step(AliasState::Warming { version });
            let started = Instant::now();
            self.warm(&loaded)?;
            timings.warm_ms = ms(started);
        }
        Ok((loaded, timings))
    }

    /// Warms `loaded` up; one whose warm-up fails is unloaded and never
    /// tried again. Blocking.
    pub(super) fn warm(&self, loaded: &LoadedModel) -> Result<(), Error> {
        if loaded.is_warm() {
            return Ok(());
        }
        loaded.warm_up().inspect_err(|e| {
            let key = (loaded.name.clone(), loaded.version);
            write(&self.loaded).remove(&key);
            self.budget.forget(&key);
            write(&self.failed).insert(key, e.to_string());
        })
    }

    /// The registry was read: versions it could not hand over may be
    /// fetched again.
    pub fn forget_fetch_failures(&self) {
        write(&self.fetch_failed).clear();
    }

    /// Drops loaded versions that are neither in `keep` nor pinned by a
    /// request used within [`PIN_IDLE`]. In-flight requests keep their
    /// `Arc`, so memory is freed when the last of them finishes.
    pub fn evict(&self, mut keep: HashSet<Key>) {
        {
            let mut pinned = lock(&self.pinned);
            pinned.retain(|_, last_use| last_use.elapsed() < PIN_IDLE);
            keep.extend(pinned.keys().cloned());
        }
        let mut draining = lock(&self.draining);
        write(&self.loaded).retain(|key, model| {
            let kept = keep.contains(key);
            if !kept {
                self.budget.forget(key);
                tracing::info!(
                    "unloading {} (nothing points at it; {} requests still finishing on it)",
                    model.label(),
                    model.in_flight()
                );
                draining.push(Arc::downgrade(model));
            }
            kept
        });
        draining.retain(|m| m.strong_count() > 0);
    }

    /// The loaded versions, by model and version.
    pub fn resident(&self) -> Vec<ResidentStatus> {
        let mut resident: Vec<ResidentStatus> = read(&self.loaded)
            .values()
            .map(|m| {
                let key = (m.name.clone(), m.version);
                ResidentStatus::of(m, self.drift(&m.name, m.version))
                    .used(self.budget.last_used(&key))
            })
            .collect();
        resident.sort_by(|a, b| (&a.model, a.version).cmp(&(&b.model, b.version)));
        resident
    }

    /// Unloaded versions still held by in-flight requests.
    pub fn draining(&self) -> Vec<ResidentStatus> {
        let mut draining = lock(&self.draining);
        draining.retain(|m| m.strong_count() > 0);
        draining
            .iter()
            .filter_map(Weak::upgrade)
            .map(|m| ResidentStatus::of(&m, None))
            .collect()
    }

    /// [`Loader::load`] for a request: a version the registry could not
    /// hand over since its last successful read is not asked for again (the
    /// requests that queued behind the failed fetch answer at once too), and
    /// the client gets 503, to retry. Blocking.
    pub(super) fn load_for_request(
        &self,
        model: &str,
        version: u64,
    ) -> Result<Arc<LoadedModel>, Error> {
        self.load_inner(model, version, true, Room::Evict)
            .map_err(|e| match e {
                Error::Registry(e) => Error::Unavailable(fetch_failure(model, version, &e)),
                other => other,
            })
    }

    /// Loads `model` `version` unless it is loaded already, making room
    /// under the memory limit first. Blocking.
    fn load(&self, model: &str, version: u64) -> Result<Arc<LoadedModel>, Error> {
        self.load_inner(model, version, false, Room::Evict)
    }

    /// Loads `model` `version` unless it is loaded already. `for_request`:
    /// a request waits for it (rather than the reconciler); `room`: whether
    /// versions may be evicted to fit it under the memory limit.
    pub(super) fn load_inner(
        &self,
        model: &str,
        version: u64,
        for_request: bool,
        room: Room,
    ) -> Result<Arc<LoadedModel>, Error> {
        let key = (model.to_string(), version);
        let _loading = lock(&self.loading);
        if let Some(found) = read(&self.loaded).get(&key) {
            return Ok(Arc::clone(found));
        }
        if let Some(why) = read(&self.failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        if for_request {
            if let Some(why) = read(&self.fetch_failed).get(&key) {
                return Err(Error::Unavailable(why.clone()));
            }
        }
        let path = match self.registry.artifact(model, version) {
            Ok(path) => path,
            Err(Error::Registry(e)) => {
                write(&self.fetch_failed).insert(key, fetch_failure(model, version, &e));
                return Err(Error::Registry(e));
            }
            Err(e) => return Err(e),
        };
        write(&self.fetch_failed).remove(&key);
        // Room first: a version that will not fit is not hashed for nothing.
        let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let backend = self.backends.for_model(model);
        let needed = LoadedModel::expected_memory(file, self.workers, backend);
        // Loading reads the file once more than it keeps (weights parsed,
        // then handed to ONNX Runtime): room for that too.
        self.make_room(model, version, needed, file, room)?;
        // Loaded before (and unloaded since): only from the same files.
        let known = match lock(&self.fingerprints).get_mut(&key) {
            Some(before) => {
                let drift = before.check();
                self.publish_drift(&key, drift);
                if let Some(drift) = drift {
                    return Err(Error::Refused(format!("{drift}; {ADVICE}")));
                }
                true
            }
            None => false,
        };
        let fingerprint = if known {
            None
        } else {
            Some(Fingerprint::take(version, &path).map_err(|e| {
                Error::Unavailable(format!(
                    "cannot load {model} v{version}: cannot read {}: {e}",
                    path.display()
                ))
            })?)
        };
        let started = Instant::now();
        let loaded = LoadedModel::load_on(
            model,
            version,
            &path,
            self.workers,
            backend,
            self.ort.for_model(model),
        )
        .and_then(|mut loaded| {
            if let Some(policy) = self.batching.get(model) {
                loaded.enable_batching(policy.clone())?;
            }
            Ok(loaded)
        });
        match loaded {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                match backend {
                    Backend::Ort => tracing::info!(
                        "loaded {} ({} sessions) in {:?}",
                        loaded.label(),
                        self.workers,
                        started.elapsed()
                    ),
                    Backend::Tract => tracing::info!(
                        "loaded {} on tract (one plan for {} threads) in {:?}",
                        loaded.label(),
                        self.workers,
                        started.elapsed()
                    ),
                }
                let trigger = if for_request { "request" } else { "registry" };
                metrics::counter!("podium_model_loads_total", "model" => model.to_string(), "trigger" => trigger).increment(1);
                self.budget.touch(&key);
                if let Some(fingerprint) = fingerprint {
                    lock(&self.fingerprints).insert(key.clone(), fingerprint);
                }
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
}

/// Why a request for a version the registry could not hand over answers 503.
pub(super) fn fetch_failure(model: &str, version: u64, e: &str) -> String {
    format!(
        "version {version} of model \"{model}\" could not be fetched from the registry: {e}; it is tried again after the next successful registry read"
    )
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

pub(super) fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

// Lock helpers: a poisoned lock means a panic elsewhere mid-update of plain
// maps, which are still consistent, so carry on rather than take the server down.
pub(super) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
pub(super) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
pub(super) fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}
