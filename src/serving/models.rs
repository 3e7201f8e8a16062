//! Slots and the reconciler: which loaded model version answers each
//! `model@alias`, and how that changes when the registry moves an alias.
//!
//! Requests read one immutable [`View`] through an `ArcSwap`: a slot is the
//! view's `Arc<LoadedModel>` for one alias, and a request clones that `Arc`
//! once and keeps it to the end, so it never mixes versions. The reconciler
//! builds the next view off the hot path — load the new version, check its
//! signature against the one it replaces, warm it up — and publishes it with
//! one atomic store. If any step fails the old version keeps serving, the
//! reason is recorded, and the same target is not retried until the alias
//! moves again. A replaced version stays loaded (warm) for instant rollback;
//! older ones are dropped once their last in-flight request finishes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

use super::history::{Event, History};
use crate::error::Error;
use crate::registry::{self, Registry, VersionSpec, LATEST};
use crate::runtime::LoadedModel;

type Key = (String, u64);

/// A version loaded because a request named it by number is unloaded after
/// this long without such a request (unless an alias points at it).
const PIN_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// How the store loads and keeps versions.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Inference workers: one ONNX Runtime session per worker per version.
    pub workers: usize,
    /// Replaced versions kept loaded per alias, for instant rollback.
    pub keep_previous: usize,
    /// Refuse to load a version whose estimated memory would exceed this,
    /// next to what is loaded (bytes).
    pub memory_limit: Option<u64>,
    /// Serve only these models; None: every model of the registry.
    pub watch: Option<Vec<String>>,
}

pub use crate::registry::ModelInfo;

/// Whether the registry could be read at the last reconcile. Podium keeps
/// serving what it has while the registry is degraded.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryStatus {
    /// `local` or `mlflow`.
    pub kind: &'static str,
    /// The directory or URL.
    pub location: String,
    /// `ok`, `degraded` (could not be read; serving what it had), or
    /// `unknown` (not read yet).
    pub state: &'static str,
    /// Why it is degraded.
    pub error: Option<String>,
    pub degraded_since_unix_ms: Option<u64>,
    pub last_ok_unix_ms: Option<u64>,
    /// Reads that failed in a row.
    pub consecutive_failures: u64,
}

#[derive(Default)]
struct RegistryHealth {
    error: Option<String>,
    degraded_since: Option<SystemTime>,
    last_ok: Option<SystemTime>,
    consecutive_failures: u64,
}

/// What requests see; replaced whole, never mutated.
#[derive(Default)]
struct View {
    models: BTreeMap<String, ModelView>,
}

#[derive(Default, Clone)]
struct ModelView {
    info: ModelInfo,
    /// The slots: alias → the version serving it.
    slots: BTreeMap<String, Arc<LoadedModel>>,
    /// Aliases with nothing serving, and why.
    errors: BTreeMap<String, String>,
    /// Aliases whose version the registry could not hand over (MLflow
    /// unreachable): retried each poll; not held against readiness once ready.
    fetch_pending: HashSet<String>,
    /// Why the registry entry of this model could not be read (it keeps
    /// serving what it served before).
    registry_error: Option<String>,
    /// The registry could not be reached for it (rather than refusing it).
    registry_unreachable: bool,
}

impl ModelView {
    fn new(info: ModelInfo) -> ModelView {
        ModelView {
            info,
            slots: BTreeMap::new(),
            errors: BTreeMap::new(),
            fetch_pending: HashSet::new(),
            registry_error: None,
            registry_unreachable: false,
        }
    }
}

/// Why a slot did not follow its alias: what it keeps serving (if
/// anything), why, and whether only an unreachable registry stood in the way.
type NotFollowed = (Option<Arc<LoadedModel>>, String, bool);

/// Control-plane memory of one slot.
#[derive(Default)]
struct SlotState {
    /// Versions this alias served before, most recent first.
    previous: VecDeque<u64>,
    /// A target that failed; not retried until the alias moves again.
    failed_target: Option<u64>,
    last_error: Option<String>,
}

/// Durations of the steps of one swap, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SwapTimings {
    pub load_ms: f64,
    pub validate_ms: f64,
    pub warm_ms: f64,
}

/// The answer to an admin alias change.
#[derive(Debug, Clone, Serialize)]
pub struct SwapOutcome {
    pub model: String,
    pub alias: String,
    pub from_version: Option<u64>,
    pub version: u64,
    /// False when the alias already served this version.
    pub swapped: bool,
    #[serde(flatten)]
    pub timings: SwapTimings,
}

/// One slot in `GET /admin/status`.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub model: String,
    pub alias: String,
    pub registry_version: u64,
    pub serving_version: Option<u64>,
    pub loaded_at_unix_ms: Option<u64>,
    pub in_flight: usize,
    pub memory_estimate_bytes: u64,
    pub previous_versions: Vec<u64>,
    pub last_error: Option<String>,
}

/// One loaded version in `GET /admin/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ResidentStatus {
    pub model: String,
    pub version: u64,
    pub in_flight: usize,
    pub memory_estimate_bytes: u64,
}

/// The whole of `GET /admin/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    pub slots: Vec<SlotStatus>,
    /// Loaded versions: serving, kept for rollback, or pinned by number.
    pub resident: Vec<ResidentStatus>,
    /// Unloaded versions still held by in-flight requests; freed when they finish.
    pub draining: Vec<ResidentStatus>,
    pub memory_estimate_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub registry: RegistryStatus,
}

/// The slots, the loaded versions, and the reconciler that keeps them in
/// step with the registry.
pub struct ModelStore {
    registry: Arc<dyn Registry>,
    options: StoreOptions,
    history: History,
    view: ArcSwap<View>,
    /// Loaded copies, shared by every slot that points at the same version.
    loaded: RwLock<HashMap<Key, Arc<LoadedModel>>>,
    /// Versions are immutable, so a version that failed to load is not retried.
    failed: RwLock<HashMap<Key, String>>,
    /// Versions the registry could not hand over (MLflow unreachable): a
    /// request naming one answers 503 at once instead of calling the
    /// registry again; forgotten at the next successful registry read (the
    /// reconciler itself retries every poll).
    fetch_failed: RwLock<HashMap<Key, String>>,
    /// Versions a client named by number; kept loaded though no alias points at them.
    pinned: Mutex<HashMap<Key, Instant>>,
    /// Unloaded versions that in-flight requests still hold; gone once they finish.
    draining: Mutex<Vec<Weak<LoadedModel>>>,
    slot_states: Mutex<HashMap<(String, String), SlotState>>,
    /// (model, alias, version) an operator allowed to change the signature.
    allowed_changes: Mutex<HashSet<(String, String, u64)>>,
    /// One reconcile (or admin change) at a time.
    reconciling: Mutex<()>,
    /// Serialises loads so one version is never loaded twice at once.
    loading: Mutex<()>,
    refreshed_once: AtomicBool,
    /// Reported ready once: from then on an unreachable registry alone
    /// never makes it unready.
    ever_ready: AtomicBool,
    registry_health: Mutex<RegistryHealth>,
}

impl ModelStore {
    /// An empty store; call [`ModelStore::refresh`] to fill it.
    pub fn new(registry: Arc<dyn Registry>, options: StoreOptions, history: History) -> ModelStore {
        ModelStore {
            registry,
            options,
            history,
            view: ArcSwap::from_pointee(View::default()),
            loaded: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            fetch_failed: RwLock::new(HashMap::new()),
            pinned: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            slot_states: Mutex::new(HashMap::new()),
            allowed_changes: Mutex::new(HashSet::new()),
            reconciling: Mutex::new(()),
            loading: Mutex::new(()),
            refreshed_once: AtomicBool::new(false),
            ever_ready: AtomicBool::new(false),
            registry_health: Mutex::new(RegistryHealth::default()),
        }
    }

    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    // ------------------------------------------------------------ hot path

    /// The model version `spec` names: the alias's slot, or a version by
    /// number (loaded on first use and kept).
    pub async fn get(
        self: &Arc<Self>,
        model: &str,
        spec: &VersionSpec,
    ) -> Result<Arc<LoadedModel>, Error> {
        let version = {
            let view = self.view.load();
            let mv = view
                .models
                .get(model)
                .ok_or_else(|| self.unknown_model(model, &view))?;
            match spec {
                VersionSpec::Alias(alias) if !alias.eq_ignore_ascii_case(LATEST) => {
                    if let Some(slot) = mv.slots.get(alias) {
                        return Ok(Arc::clone(slot));
                    }
                    registry::resolve(model, spec, &mv.info.versions, &mv.info.aliases)?;
                    let why = mv
                        .errors
                        .get(alias)
                        .map(String::as_str)
                        .unwrap_or("it is still loading");
                    return Err(Error::Unavailable(format!(
                        "model \"{model}\" alias \"{alias}\" has no version serving: {why}"
                    )));
                }
                _ => registry::resolve(model, spec, &mv.info.versions, &mv.info.aliases)?,
            }
        };
        let key = (model.to_string(), version);
        if let Some(found) = read(&self.loaded).get(&key).cloned() {
            // A version named by number stays loaded while it is used.
            if let Some(last_use) = lock(&self.pinned).get_mut(&key) {
                *last_use = Instant::now();
            }
            return Ok(found);
        }
        if let Some(why) = read(&self.failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        // Not a registry call per request while the registry is down.
        if let Some(why) = read(&self.fetch_failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        lock(&self.pinned).insert(key, Instant::now());
        let store = Arc::clone(self);
        let model = model.to_string();
        tokio::task::spawn_blocking(move || store.load_for_request(&model, version))
            .await
            .map_err(|e| Error::Internal(format!("model loading task failed: {e}")))?
    }

    /// Which version `spec` names for `model` and whether it is serving
    /// (an alias: its slot; a number: loaded). Never loads.
    pub fn ready(&self, model: &str, spec: &VersionSpec) -> Result<(u64, bool), Error> {
        let view = self.view.load();
        let mv = view
            .models
            .get(model)
            .ok_or_else(|| self.unknown_model(model, &view))?;
        if let VersionSpec::Alias(alias) = spec {
            if let Some(slot) = mv.slots.get(alias) {
                return Ok((slot.version, true));
            }
        }
        let version = registry::resolve(model, spec, &mv.info.versions, &mv.info.aliases)?;
        let is_alias = matches!(spec, VersionSpec::Alias(a) if !a.eq_ignore_ascii_case(LATEST));
        let loaded = !is_alias && read(&self.loaded).contains_key(&(model.to_string(), version));
        Ok((version, loaded))
    }

    /// No such model; or, before the registry was first read (it is read
    /// in the background while the server already answers), not yet known.
    fn unknown_model(&self, model: &str, view: &View) -> Error {
        if !self.refreshed_once.load(Ordering::Acquire) {
            return Error::Unavailable(format!(
                "model \"{model}\": the registry has not been read yet; try again shortly"
            ));
        }
        unknown_model(model, view)
    }

    /// What the registry says about `model`.
    pub fn info(&self, model: &str) -> Result<ModelInfo, Error> {
        let view = self.view.load();
        view.models
            .get(model)
            .map(|mv| mv.info.clone())
            .ok_or_else(|| self.unknown_model(model, &view))
    }

    /// Names of the registry's models, as of the last reconcile.
    /// Whether the registry has a model of this name.
    pub fn knows(&self, model: &str) -> bool {
        self.view.load().models.contains_key(model)
    }

    pub fn model_names(&self) -> Vec<String> {
        self.view.load().models.keys().cloned().collect()
    }

    /// Ready when the registry has been read and every alias has a version
    /// serving; otherwise the reasons it is not. A failed swap keeps the old
    /// version serving, so it never makes a ready server unready; nor does a
    /// registry that cannot be reached (what is loaded keeps serving).
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        if !self.refreshed_once.load(Ordering::Acquire) {
            let why = match &lock(&self.registry_health).error {
                Some(e) => format!("the registry has not been read yet: {e}"),
                None => "the registry has not been read yet".into(),
            };
            return Err(vec![why]);
        }
        let view = self.view.load();
        let was_ready = self.ever_ready.load(Ordering::Acquire);
        let mut reasons = Vec::new();
        for (model, mv) in &view.models {
            if let (Some(e), true) = (&mv.registry_error, mv.slots.is_empty()) {
                if !(was_ready && mv.registry_unreachable) {
                    reasons.push(format!("{model}: {e}"));
                }
            }
            for (alias, version) in &mv.info.aliases {
                let pending = was_ready && mv.fetch_pending.contains(alias);
                if !mv.slots.contains_key(alias) && !pending {
                    let why = mv
                        .errors
                        .get(alias)
                        .map(String::as_str)
                        .unwrap_or("not loaded yet");
                    reasons.push(format!("{model}@{alias} (v{version}): {why}"));
                }
            }
        }
        if reasons.is_empty() {
            self.ever_ready.store(true, Ordering::Release);
            Ok(())
        } else {
            Err(reasons)
        }
    }

    // --------------------------------------------------------- reconciler

    /// Re-reads the registry and makes the slots follow it. Blocking (reads
    /// files, loads models): run it off the async runtime.
    pub fn refresh(&self) -> Result<(), Error> {
        let _one_at_a_time = lock(&self.reconciling);
        self.reconcile("registry")
    }

    /// Records the outcome of one read of the registry: a failure makes it
    /// degraded (logged once when it starts, and when it ends), never unready.
    fn record_registry_read(&self, failure: Option<&Error>) {
        let mut health = lock(&self.registry_health);
        let (kind, location) = (self.registry.kind(), self.registry.location());
        match failure {
            None => {
                // Versions that could not be fetched may be fetched now.
                write(&self.fetch_failed).clear();
                if let Some(since) = health.degraded_since.take() {
                    let secs = since.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
                    tracing::warn!(
                        "registry {kind} {location} is readable again after {secs:.1} s degraded"
                    );
                }
                health.error = None;
                health.consecutive_failures = 0;
                health.last_ok = Some(SystemTime::now());
            }
            Some(e) => {
                metrics::counter!("podium_registry_errors_total", "kind" => kind).increment(1);
                if health.degraded_since.is_none() {
                    health.degraded_since = Some(SystemTime::now());
                    tracing::error!(
                        "registry {kind} {location} degraded: {e}; still serving what is loaded, retrying every poll"
                    );
                } else if health.error.as_deref() != Some(&e.to_string()) {
                    tracing::error!("registry {kind} {location} still degraded: {e}");
                }
                health.error = Some(e.to_string());
                health.consecutive_failures += 1;
            }
        }
    }

    /// Points `alias` at `version` for an operator: the version is loaded,
    /// checked against what the alias serves now and warmed up *before* the
    /// registry is written, so a bad version is refused without ever being
    /// published; then this server swaps at once. Blocking.
    pub fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: u64,
        allow_signature_change: bool,
        by: &str,
    ) -> Result<SwapOutcome, Error> {
        registry::validate_alias_name(alias)?;
        let _one_at_a_time = lock(&self.reconciling);
        let versions = self.registry.versions(model)?;
        registry::resolve(
            model,
            &VersionSpec::Number(version),
            &versions,
            &Default::default(),
        )?;
        let current = self
            .view
            .load()
            .models
            .get(model)
            .and_then(|mv| mv.slots.get(alias).cloned());
        let from_version = current.as_ref().map(|c| c.version);
        if from_version == Some(version) {
            self.registry.set_alias(model, alias, version)?;
            return Ok(SwapOutcome {
                model: model.into(),
                alias: alias.into(),
                from_version,
                version,
                swapped: false,
                timings: SwapTimings::default(),
            });
        }
        let key = (model.to_string(), alias.to_string(), version);
        if allow_signature_change {
            lock(&self.allowed_changes).insert(key.clone());
        }
        let timings = match self.prepare(
            model,
            alias,
            version,
            current.as_deref(),
            allow_signature_change,
        ) {
            Ok((_, timings)) => timings,
            Err(e @ Error::Registry(_)) => {
                // The registry could not hand over the artifact: nothing was
                // refused (the version was never checked), so no refusal is
                // recorded and the caller gets the registry's error (502).
                lock(&self.allowed_changes).remove(&key);
                return Err(e);
            }
            Err(e) => {
                metrics::counter!("podium_swaps_total", "model" => model.to_string(), "alias" => alias.to_string(), "result" => "refused").increment(1);
                lock(&self.allowed_changes).remove(&key);
                let mut event = Event::new(model, alias, "swap_refused", by);
                event.from_version = from_version;
                event.to_version = Some(version);
                event.result = "failed".into();
                event.error = Some(e.to_string());
                self.history.record(&event);
                self.evict(); // the refused version, if it loaded
                return Err(Error::Refused(format!(
                    "refused to point {model}@{alias} at version {version}: {e}; the alias is unchanged{}",
                    from_version.map(|v| format!(" (still version {v})")).unwrap_or_default()
                )));
            }
        };
        // Checked just now: an earlier refusal of this target no longer stands.
        if let Some(state) =
            lock(&self.slot_states).get_mut(&(model.to_string(), alias.to_string()))
        {
            state.failed_target = None;
            state.last_error = None;
        }
        let written = self.registry.aliases(model).and_then(|aliases| {
            self.registry
                .set_alias(model, alias, version)
                .map(|()| aliases.get(alias).copied())
        });
        let registry_from = match written {
            Ok(from) => from,
            Err(e) => {
                lock(&self.allowed_changes).remove(&key);
                return Err(e);
            }
        };
        let mut event = Event::new(model, alias, "alias_set", by);
        event.from_version = registry_from;
        event.to_version = Some(version);
        self.history.record(&event);
        let reconciled = self.reconcile(by);
        lock(&self.allowed_changes).remove(&key);
        reconciled?;
        let serving = self
            .view
            .load()
            .models
            .get(model)
            .and_then(|mv| mv.slots.get(alias).map(|s| s.version));
        if serving != Some(version) {
            return Err(Error::Internal(format!(
                "{model}@{alias} was set to version {version} in the registry but this server serves {serving:?}; see /admin/status"
            )));
        }
        Ok(SwapOutcome {
            model: model.into(),
            alias: alias.into(),
            from_version,
            version,
            swapped: true,
            timings,
        })
    }

    /// Removes `alias` from the registry and stops serving it. Blocking.
    pub fn delete_alias(&self, model: &str, alias: &str, by: &str) -> Result<(), Error> {
        let _one_at_a_time = lock(&self.reconciling);
        self.registry.delete_alias(model, alias)?;
        self.history
            .record(&Event::new(model, alias, "alias_deleted", by));
        self.reconcile(by)
    }

    /// The version `alias` served before its current one, if kept.
    pub fn previous_version(&self, model: &str, alias: &str) -> Option<u64> {
        lock(&self.slot_states)
            .get(&(model.to_string(), alias.to_string()))
            .and_then(|s| s.previous.front().copied())
    }

    /// One reconcile pass; the caller holds `reconciling`.
    fn reconcile(&self, by: &str) -> Result<(), Error> {
        let old = self.view.load_full();
        let snapshot = match self.registry.snapshot(self.options.watch.as_deref()) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                self.record_registry_read(Some(&e));
                return Err(e);
            }
        };
        // A registry that cannot be reached for one model is degraded; a
        // model it does not know is the model's problem, shown on its slots.
        let unreachable = snapshot.iter().find_map(|(_, info)| match info {
            Err(e @ Error::Registry(_)) => Some(e),
            _ => None,
        });
        self.record_registry_read(unreachable);
        let mut models = BTreeMap::new();
        for (model, read) in snapshot {
            let old_mv = old.models.get(&model);
            let info = match read {
                Ok(info) => info,
                Err(e) => {
                    // One unreadable model must not stop the others from
                    // following the registry; it keeps serving what it did.
                    let said = old_mv.and_then(|m| m.registry_error.as_deref());
                    let why = format!("cannot read the registry entry: {e}");
                    // An outage is logged once, as the registry's; a model's own problem once per change.
                    if !matches!(e, Error::Registry(_)) && said != Some(why.as_str()) {
                        tracing::error!(
                            "registry: cannot read model {model}: {e}; it keeps serving what it served"
                        );
                    }
                    let mut mv = old_mv
                        .cloned()
                        .unwrap_or_else(|| ModelView::new(ModelInfo::default()));
                    mv.registry_error = Some(why);
                    mv.registry_unreachable = matches!(e, Error::Registry(_));
                    models.insert(model, mv);
                    continue;
                }
            };
            let mut mv = ModelView::new(ModelInfo::default());
            for (alias, &target) in &info.aliases {
                let current = old_mv.and_then(|m| m.slots.get(alias)).cloned();
                let serves_target = current.as_ref().is_some_and(|c| c.version == target);
                if !serves_target && !info.versions.contains(&target) {
                    // The alias points at a version whose registration has not
                    // finished (MLflow: not READY): not a refusal, so nothing
                    // is remembered against it; the old version keeps serving
                    // and the alias is followed once the version is READY.
                    let why = format!(
                        "waiting for version {target} to be READY in the registry{}",
                        current
                            .as_ref()
                            .map(|c| format!("; still serving version {}", c.version))
                            .unwrap_or_default()
                    );
                    let mut states = lock(&self.slot_states);
                    let state = states.entry((model.clone(), alias.clone())).or_default();
                    if state.last_error.as_deref() != Some(why.as_str()) {
                        tracing::warn!("{model}@{alias}: {why}");
                    }
                    state.last_error = Some(why.clone());
                    match current {
                        Some(kept) => {
                            mv.slots.insert(alias.clone(), kept);
                        }
                        None => {
                            mv.fetch_pending.insert(alias.clone());
                            mv.errors.insert(alias.clone(), why);
                        }
                    }
                    continue;
                }
                match self.follow(&model, alias, target, current, by) {
                    Ok(serving) => {
                        mv.slots.insert(alias.clone(), serving);
                    }
                    Err((Some(kept), _, _)) => {
                        mv.slots.insert(alias.clone(), kept);
                    }
                    Err((None, why, unreachable)) => {
                        if unreachable {
                            mv.fetch_pending.insert(alias.clone());
                        }
                        mv.errors.insert(alias.clone(), why);
                    }
                }
            }
            if let Some(old_mv) = old_mv {
                for (alias, gone) in old_mv
                    .slots
                    .iter()
                    .filter(|(a, _)| !info.aliases.contains_key(*a))
                {
                    let mut event = Event::new(&model, alias, "unserved", by);
                    event.from_version = Some(gone.version);
                    self.history.record(&event);
                    lock(&self.slot_states).remove(&(model.clone(), alias.clone()));
                }
            }
            mv.info = info;
            models.insert(model, mv);
        }
        let view = View { models };
        self.view.store(Arc::new(view));
        self.evict();
        self.refreshed_once.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes one slot serve `target`: returns what it serves now, or what it
    /// keeps serving (if anything), why it could not follow, and whether only
    /// an unreachable registry stood in the way (tried again next poll).
    fn follow(
        &self,
        model: &str,
        alias: &str,
        target: u64,
        current: Option<Arc<LoadedModel>>,
        by: &str,
    ) -> Result<Arc<LoadedModel>, NotFollowed> {
        let slot_key = (model.to_string(), alias.to_string());
        if let Some(c) = current.as_ref().filter(|c| c.version == target) {
            // The alias is back on what it serves: a refusal of another
            // target is history, and that target is tried again next time.
            if let Some(state) = lock(&self.slot_states).get_mut(&slot_key) {
                state.failed_target = None;
                state.last_error = None;
            }
            return Ok(Arc::clone(c));
        }
        let allow =
            lock(&self.allowed_changes).contains(&(model.to_string(), alias.to_string(), target));
        if !allow {
            let states = lock(&self.slot_states);
            if let Some(state) = states
                .get(&slot_key)
                .filter(|s| s.failed_target == Some(target))
            {
                return Err((current, state.last_error.clone().unwrap_or_default(), false));
            }
        }
        let from_version = current.as_ref().map(|c| c.version);
        let mut event = Event::new(model, alias, "swap", by);
        event.from_version = from_version;
        event.to_version = Some(target);
        match self.prepare(model, alias, target, current.as_deref(), allow) {
            Ok((new, timings)) => {
                metrics::counter!("podium_swaps_total", "model" => model.to_string(), "alias" => alias.to_string(), "result" => "ok").increment(1);
                for (step, ms) in [
                    ("load", timings.load_ms),
                    ("validate", timings.validate_ms),
                    ("warm", timings.warm_ms),
                ] {
                    metrics::histogram!("podium_swap_step_seconds", "model" => model.to_string(), "step" => step).record(ms / 1000.0);
                }
                event.load_ms = Some(timings.load_ms);
                event.validate_ms = Some(timings.validate_ms);
                event.warm_ms = Some(timings.warm_ms);
                self.history.record(&event);
                let mut states = lock(&self.slot_states);
                let state = states.entry(slot_key).or_default();
                state.failed_target = None;
                state.last_error = None;
                state.previous.retain(|&v| v != target);
                if let Some(v) = from_version {
                    state.previous.push_front(v);
                    state.previous.truncate(self.options.keep_previous);
                }
                tracing::info!(
                    "{model}@{alias}: now serving v{target} (was {}) after load {:.1} ms, validate {:.1} ms, warm-up {:.1} ms",
                    from_version.map(|v| format!("v{v}")).unwrap_or_else(|| "nothing".into()),
                    timings.load_ms,
                    timings.validate_ms,
                    timings.warm_ms
                );
                lock(&self.allowed_changes).remove(&(model.to_string(), alias.to_string(), target));
                Ok(new)
            }
            Err(e) => {
                let still = from_version
                    .map(|v| format!("; still serving version {v}"))
                    .unwrap_or_default();
                let mut states = lock(&self.slot_states);
                let state = states.entry(slot_key).or_default();
                if let Error::Registry(_) = e {
                    // The registry could not hand over the artifact: not the
                    // version's fault, so it is tried again at the next poll.
                    let why = format!("version {target} could not be fetched: {e}{still}");
                    if state.last_error.as_deref() != Some(why.as_str()) {
                        tracing::warn!("{model}@{alias}: {why}; retrying at the next poll");
                    }
                    state.last_error = Some(why.clone());
                    return Err((current, why, true));
                }
                metrics::counter!("podium_swaps_total", "model" => model.to_string(), "alias" => alias.to_string(), "result" => "failed").increment(1);
                let why = format!("version {target} was refused: {e}{still}");
                tracing::error!("{model}@{alias}: {why}");
                event.result = "failed".into();
                event.error = Some(e.to_string());
                self.history.record(&event);
                state.failed_target = Some(target);
                state.last_error = Some(why.clone());
                Err((current, why, false))
            }
        }
    }

    /// Load (or reuse), validate against what the slot serves now, warm up.
    fn prepare(
        &self,
        model: &str,
        alias: &str,
        version: u64,
        current: Option<&LoadedModel>,
        allow_signature_change: bool,
    ) -> Result<(Arc<LoadedModel>, SwapTimings), Error> {
        let mut timings = SwapTimings::default();
        let started = Instant::now();
        let loaded = self.load(model, version)?;
        timings.load_ms = ms(started);
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
            let started = Instant::now();
            if let Err(e) = loaded.warm_up() {
                write(&self.loaded).remove(&(model.to_string(), version));
                write(&self.failed).insert((model.to_string(), version), e.to_string());
                return Err(e);
            }
            timings.warm_ms = ms(started);
        }
        Ok((loaded, timings))
    }

    /// [`ModelStore::load`] for a request: a version the registry could not
    /// hand over since its last successful read is not asked for again (the
    /// requests that queued behind the failed fetch answer at once too), and
    /// the client gets 503, to retry. Blocking.
    fn load_for_request(&self, model: &str, version: u64) -> Result<Arc<LoadedModel>, Error> {
        self.load_inner(model, version, true).map_err(|e| match e {
            Error::Registry(e) => Error::Unavailable(fetch_failure(model, version, &e)),
            other => other,
        })
    }

    /// Loads `model` `version` unless it is loaded already. Checks the
    /// memory limit first. Blocking.
    fn load(&self, model: &str, version: u64) -> Result<Arc<LoadedModel>, Error> {
        self.load_inner(model, version, false)
    }

    fn load_inner(
        &self,
        model: &str,
        version: u64,
        for_request: bool,
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
        if let Some(limit) = self.options.memory_limit {
            let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let needed = file.saturating_mul(self.options.workers as u64);
            let resident: u64 = read(&self.loaded)
                .values()
                .map(|m| m.memory_estimate())
                .sum();
            if resident.saturating_add(needed) > limit {
                return Err(Error::Refused(format!(
                    "loading {model} v{version} needs about {} next to the {} loaded, over --memory-limit {}; unload something or raise the limit",
                    mb(needed),
                    mb(resident),
                    mb(limit)
                )));
            }
        }
        let started = Instant::now();
        match LoadedModel::load(model, version, &path, self.options.workers) {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                tracing::info!(
                    "loaded {} ({} sessions) in {:?}",
                    loaded.label(),
                    self.options.workers,
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

    /// Drops loaded versions nothing needs: not in a slot, not kept for
    /// rollback, not pinned by a request. In-flight requests keep their `Arc`,
    /// so memory is freed when the last of them finishes.
    fn evict(&self) {
        let view = self.view.load();
        let mut keep: HashSet<Key> = {
            let mut pinned = lock(&self.pinned);
            pinned.retain(|_, last_use| last_use.elapsed() < PIN_IDLE);
            pinned.keys().cloned().collect()
        };
        for (model, mv) in &view.models {
            keep.extend(mv.slots.values().map(|m| (model.clone(), m.version)));
        }
        for ((model, _), state) in lock(&self.slot_states).iter() {
            keep.extend(state.previous.iter().map(|&v| (model.clone(), v)));
        }
        let mut draining = lock(&self.draining);
        write(&self.loaded).retain(|key, model| {
            let kept = keep.contains(key);
            if !kept {
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

    // ------------------------------------------------------------- status

    /// Every slot and every loaded version, for `GET /admin/status`.
    pub fn status(&self) -> StoreStatus {
        let view = self.view.load();
        let states = lock(&self.slot_states);
        let mut slots = Vec::new();
        for (model, mv) in &view.models {
            for (alias, &registry_version) in &mv.info.aliases {
                let serving = mv.slots.get(alias);
                let state = states.get(&(model.clone(), alias.clone()));
                slots.push(SlotStatus {
                    model: model.clone(),
                    alias: alias.clone(),
                    registry_version,
                    serving_version: serving.map(|m| m.version),
                    loaded_at_unix_ms: serving.map(|m| unix_ms(m.loaded_at)),
                    in_flight: serving.map(|m| m.in_flight()).unwrap_or(0),
                    memory_estimate_bytes: serving.map(|m| m.memory_estimate()).unwrap_or(0),
                    previous_versions: state
                        .map(|s| s.previous.iter().copied().collect())
                        .unwrap_or_default(),
                    last_error: mv
                        .registry_error
                        .clone()
                        .or_else(|| state.and_then(|s| s.last_error.clone()))
                        .or_else(|| mv.errors.get(alias).cloned()),
                });
            }
        }
        let mut resident: Vec<ResidentStatus> = read(&self.loaded)
            .values()
            .map(|m| ResidentStatus {
                model: m.name.clone(),
                version: m.version,
                in_flight: m.in_flight(),
                memory_estimate_bytes: m.memory_estimate(),
            })
            .collect();
        resident.sort_by(|a, b| (&a.model, a.version).cmp(&(&b.model, b.version)));
        let draining = {
            let mut draining = lock(&self.draining);
            draining.retain(|m| m.strong_count() > 0);
            draining
                .iter()
                .filter_map(Weak::upgrade)
                .map(|m| ResidentStatus {
                    model: m.name.clone(),
                    version: m.version,
                    in_flight: m.in_flight(),
                    memory_estimate_bytes: m.memory_estimate(),
                })
                .collect()
        };
        StoreStatus {
            draining,
            memory_estimate_bytes: resident.iter().map(|r| r.memory_estimate_bytes).sum(),
            slots,
            resident,
            memory_limit_bytes: self.options.memory_limit,
            registry: self.registry_status(),
        }
    }

    /// The registry part of `GET /admin/status`.
    pub fn registry_status(&self) -> RegistryStatus {
        let health = lock(&self.registry_health);
        let state = if health.error.is_some() {
            "degraded"
        } else if health.last_ok.is_some() {
            "ok"
        } else {
            "unknown"
        };
        RegistryStatus {
            kind: self.registry.kind(),
            location: self.registry.location(),
            state,
            error: health.error.clone(),
            degraded_since_unix_ms: health.degraded_since.map(unix_ms),
            last_ok_unix_ms: health.last_ok.map(unix_ms),
            consecutive_failures: health.consecutive_failures,
        }
    }
}

fn unknown_model(model: &str, view: &View) -> Error {
    let known: Vec<&str> = view.models.keys().map(String::as_str).collect();
    Error::NotFound(format!(
        "unknown model \"{model}\"; this server has: {}",
        if known.is_empty() {
            "no models".to_string()
        } else {
            known.join(", ")
        }
    ))
}

/// Why a request for a version the registry could not hand over answers 503.
fn fetch_failure(model: &str, version: u64, e: &str) -> String {
    format!(
        "version {version} of model \"{model}\" could not be fetched from the registry: {e}; it is tried again after the next successful registry read"
    )
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::local::LocalRegistry;
    use std::path::{Path, PathBuf};

    /// A directory registry whose artifacts can be made unreachable, as
    /// when MLflow is down in the middle of a poll.
    struct Flaky {
        inner: LocalRegistry,
        down: AtomicBool,
        artifact_calls: std::sync::atomic::AtomicUsize,
        /// A version whose registration has not finished (not listed).
        pending: std::sync::atomic::AtomicU64,
    }

    impl Registry for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn location(&self) -> String {
            self.inner.location()
        }
        fn models(&self) -> Result<Vec<String>, Error> {
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
                return Err(Error::Registry("cannot connect to MLflow".into()));
            }
            self.inner.artifact(model, version)
        }
        fn register(&self, model: &str, file: &Path) -> Result<u64, Error> {
            self.inner.register(model, file)
        }
        fn set_alias(&self, model: &str, alias: &str, version: u64) -> Result<(), Error> {
            self.inner.set_alias(model, alias, version)
        }
        fn delete_alias(&self, model: &str, alias: &str) -> Result<(), Error> {
            self.inner.delete_alias(model, alias)
        }
    }

    fn fraud(version: u64) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models/fraud/v{version}.onnx"))
    }

    /// fraud v1 (champion) and v2 in a [`Flaky`] registry, down or not, with
    /// `pending` a version still registering (0: none); one worker.
    fn flaky_fraud(down: bool, pending: u64) -> (tempfile::TempDir, Arc<Flaky>, StoreOptions) {
        crate::runtime::ort::init(None).expect("run scripts/setup-ort.sh");
        let tmp = tempfile::tempdir().unwrap();
        let local = LocalRegistry::new(tmp.path().join("reg"));
        local.register("fraud", &fraud(1)).unwrap();
        local.register("fraud", &fraud(2)).unwrap();
        local.set_alias("fraud", "champion", 1).unwrap();
        let registry = Arc::new(Flaky {
            inner: local,
            down: AtomicBool::new(down),
            artifact_calls: Default::default(),
            pending: pending.into(),
        });
        let options = StoreOptions {
            workers: 1,
            keep_previous: 1,
            memory_limit: None,
            watch: None,
        };
        (tmp, registry, options)
    }

    #[test]
    fn an_unreachable_registry_never_makes_a_ready_server_unready() {
        let (tmp, registry, options) = flaky_fraud(true, 0);
        let store = ModelStore::new(
            registry.clone(),
            options,
            History::new(tmp.path().join("history.jsonl")),
        );

        // Never ready yet: an artifact that cannot be fetched is a reason.
        store.refresh().unwrap();
        let reasons = store.readiness().unwrap_err().join("; ");
        assert!(
            reasons.contains("could not be fetched: cannot connect to MLflow"),
            "{reasons}"
        );
        // ...and it is tried again at the next poll, not refused for good.
        registry.down.store(false, Ordering::SeqCst);
        store.refresh().unwrap();
        store.readiness().unwrap();

        // Once ready, a new alias whose artifact cannot be fetched leaves it ready.
        registry.down.store(true, Ordering::SeqCst);
        registry.inner.set_alias("fraud", "canary", 2).unwrap();
        store.refresh().unwrap();
        store.readiness().unwrap();
        let status = store.status();
        let canary = status.slots.iter().find(|s| s.alias == "canary").unwrap();
        assert_eq!(canary.serving_version, None);
        assert!(
            canary
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("cannot connect to MLflow"),
            "{canary:?}"
        );
        registry.down.store(false, Ordering::SeqCst);
        store.refresh().unwrap();
        let status = store.status();
        let canary = status.slots.iter().find(|s| s.alias == "canary").unwrap();
        assert_eq!(canary.serving_version, Some(2));
        assert_eq!(canary.last_error, None);
    }

    #[test]
    fn requests_do_not_call_an_unreachable_registry_again() {
        let (tmp, registry, options) = flaky_fraud(false, 0);
        let store = Arc::new(ModelStore::new(
            registry.clone(),
            options,
            History::new(tmp.path().join("history.jsonl")),
        ));
        store.refresh().unwrap();
        registry.down.store(true, Ordering::SeqCst);
        let calls = || registry.artifact_calls.load(Ordering::SeqCst);
        let before = calls();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let v2 = VersionSpec::Number(2);
        for _ in 0..5 {
            let err = rt.block_on(store.get("fraud", &v2)).unwrap_err();
            assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
            assert!(
                err.to_string()
                    .contains("could not be fetched from the registry"),
                "{err}"
            );
        }
        assert_eq!(calls(), before + 1, "one registry call for five requests");
        // The next successful registry read lets a request try again.
        registry.down.store(false, Ordering::SeqCst);
        store.refresh().unwrap();
        let served = rt.block_on(store.get("fraud", &v2)).unwrap();
        assert_eq!(served.version, 2);
    }

    #[test]
    fn an_alias_on_a_version_not_ready_yet_waits_for_it() {
        let (tmp, registry, options) = flaky_fraud(false, 2);
        let store = ModelStore::new(
            registry.clone(),
            options,
            History::new(tmp.path().join("history.jsonl")),
        );
        store.refresh().unwrap();
        store.readiness().unwrap();
        let slot = |store: &ModelStore| {
            store
                .status()
                .slots
                .into_iter()
                .find(|s| s.alias == "champion")
                .unwrap()
        };
        // The alias moves to v2 before v2 finished registering.
        registry.inner.set_alias("fraud", "champion", 2).unwrap();
        for _ in 0..2 {
            store.refresh().unwrap();
            let champion = slot(&store);
            assert_eq!(champion.serving_version, Some(1));
            let err = champion.last_error.unwrap_or_default();
            assert!(err.contains("waiting for version 2 to be READY"), "{err}");
            store.readiness().unwrap();
        }
        // Once it is READY, the next poll follows it.
        registry.pending.store(0, Ordering::SeqCst);
        store.refresh().unwrap();
        let champion = slot(&store);
        assert_eq!(champion.serving_version, Some(2));
        assert_eq!(champion.last_error, None);
    }

    #[test]
    fn an_admin_change_the_registry_cannot_fetch_is_not_a_refusal() {
        let (tmp, registry, options) = flaky_fraud(false, 0);
        let history = tmp.path().join("history.jsonl");
        let store = ModelStore::new(registry.clone(), options, History::new(history.clone()));
        store.refresh().unwrap();
        registry.down.store(true, Ordering::SeqCst);
        let err = store
            .set_alias("fraud", "champion", 2, false, "admin")
            .unwrap_err();
        assert!(matches!(err, Error::Registry(_)), "502, not 409: {err:?}");
        let recorded = std::fs::read_to_string(&history).unwrap_or_default();
        assert!(!recorded.contains("swap_refused"), "{recorded}");
        assert_eq!(registry.inner.aliases("fraud").unwrap()["champion"], 1);
        // The same change goes through once the registry answers.
        registry.down.store(false, Ordering::SeqCst);
        let done = store
            .set_alias("fraud", "champion", 2, false, "admin")
            .unwrap();
        assert!(done.swapped);
    }
}
