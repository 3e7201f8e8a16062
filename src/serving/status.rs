//! What `GET /admin/status` and the admin alias changes answer, built from
//! the published view, the loaded versions and the registry's health.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::alias_state::AliasState;
use super::drift::ADVICE;
use super::loader::lock;
use super::registry_health::RegistryStatus;
use super::ModelStore;
use crate::runtime::options::OrtOptions;
use crate::runtime::LoadedModel;

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
    /// The version answering the alias's requests: its slot's, or the one
    /// served on demand (loaded or not).
    pub serving_version: Option<u64>,
    /// The alias's [`AliasState`](super::AliasState) by name: `serving`,
    /// `loading`, `refused`, `registry_unreachable`, `waiting`,
    /// `on_demand`, …
    pub state: &'static str,
    /// Whether the serving version is in memory now (an alias served on
    /// demand may be registered but not loaded).
    pub loaded: bool,
    /// When a request last used the serving version (or it was loaded),
    /// while it is loaded outside a slot (served on demand, or by number).
    pub last_used_unix_ms: Option<u64>,
    pub loaded_at_unix_ms: Option<u64>,
    pub in_flight: usize,
    pub memory_estimate_bytes: u64,
    pub previous_versions: Vec<u64>,
    /// Why the alias does not serve its registry version (or why its
    /// model's registry entry could not be read).
    pub last_error: Option<String>,
    /// How the files of the version it serves (or of one kept for
    /// rollback) differ on disk from when they were loaded; None: they do
    /// not. The alias keeps serving its loaded copy.
    pub drift: Option<String>,
}

/// One loaded version in `GET /admin/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ResidentStatus {
    pub model: String,
    pub version: u64,
    pub in_flight: usize,
    pub memory_estimate_bytes: u64,
    /// The engine it runs on: `ort` or `tract`.
    pub backend: crate::runtime::Backend,
    /// The ONNX Runtime options its sessions were opened with.
    pub onnxruntime: OrtOptions,
    /// How its files differ on disk from when it was loaded, if they do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// When a request last used it (or it was loaded): under
    /// `--memory-limit` the least recently used give way first.
    pub last_used_unix_ms: Option<u64>,
}

impl ResidentStatus {
    pub(super) fn of(model: &LoadedModel, drift: Option<String>) -> ResidentStatus {
        ResidentStatus {
            model: model.name.clone(),
            version: model.version,
            in_flight: model.in_flight(),
            memory_estimate_bytes: model.memory_bytes(),
            backend: model.backend(),
            onnxruntime: model.options.clone(),
            drift,
            last_used_unix_ms: None,
        }
    }

    /// With its last use.
    pub(super) fn used(mut self, last_used: Option<SystemTime>) -> ResidentStatus {
        self.last_used_unix_ms = last_used.map(unix_ms);
        self
    }
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
    /// Versions aliases point at (each counted once): registered for serving.
    pub registered_versions: usize,
    /// Of those, the ones in memory now; the rest load on demand.
    pub loaded_versions: usize,
    pub registry: RegistryStatus,
}

impl ModelStore {
    /// Every slot and every loaded version, for `GET /admin/status`.
    pub fn status(&self) -> StoreStatus {
        let view = self.view.load();
        let mut slots = Vec::new();
        let mut registered = HashSet::new();
        for (model, mv) in &view.models {
            for (alias, &registry_version) in &mv.info.aliases {
                let entry = mv.aliases.get(alias);
                let on_demand = match entry.map(|e| &e.state) {
                    Some(&AliasState::OnDemand { version }) => Some(version),
                    _ => None,
                };
                let cold_copy = on_demand.and_then(|v| self.loader.loaded_copy(model, v));
                let serving = entry
                    .and_then(|e| e.serving.as_deref())
                    .or(cold_copy.as_deref());
                let serving_version = serving.map(|m| m.version).or(on_demand);
                if let Some(v) = serving_version {
                    registered.insert((model.clone(), v));
                }
                let last_used = serving
                    .filter(|_| on_demand.is_some())
                    .and_then(|m| self.loader.budget.last_used(&(model.clone(), m.version)));
                let previous: Vec<u64> = entry
                    .map(|e| e.previous.iter().copied().collect())
                    .unwrap_or_default();
                slots.push(SlotStatus {
                    model: model.clone(),
                    alias: alias.clone(),
                    registry_version,
                    serving_version,
                    state: entry.map_or("loading", |e| e.state.name()),
                    loaded: serving.is_some(),
                    last_used_unix_ms: last_used.map(unix_ms),
                    loaded_at_unix_ms: serving.map(|m| unix_ms(m.loaded_at)),
                    in_flight: serving.map(|m| m.in_flight()).unwrap_or(0),
                    memory_estimate_bytes: serving.map(|m| m.memory_bytes()).unwrap_or(0),
                    drift: self.alias_drift(model, serving.map(|m| m.version), &previous),
                    previous_versions: previous,
                    last_error: mv
                        .unreadable
                        .as_ref()
                        .map(|u| u.reason.clone())
                        .or_else(|| entry.and_then(|e| e.state.reason().map(String::from))),
                });
            }
        }
        let resident = self.loader.resident();
        let loaded_versions = registered
            .iter()
            .filter(|(m, v)| resident.iter().any(|r| &r.model == m && r.version == *v))
            .count();
        StoreStatus {
            registered_versions: registered.len(),
            loaded_versions,
            draining: self.loader.draining(),
            memory_estimate_bytes: resident.iter().map(|r| r.memory_estimate_bytes).sum(),
            slots,
            resident,
            memory_limit_bytes: self.loader.memory_limit(),
            registry: self.registry_status(),
        }
    }

    /// The drift of an alias's versions: the one it serves, and those kept
    /// for rollback (which are then not swapped back in).
    fn alias_drift(&self, model: &str, serving: Option<u64>, previous: &[u64]) -> Option<String> {
        let mut said = Vec::new();
        if let Some(drift) = serving.and_then(|v| self.loader.drift(model, v)) {
            said.push(format!("{drift}; still serving the loaded copy; {ADVICE}"));
        }
        for &v in previous {
            if let Some(drift) = self.loader.drift(model, v) {
                said.push(format!(
                    "{drift}; version {v} is kept for rollback but is not swapped back in while its files differ; {ADVICE}"
                ));
            }
        }
        (!said.is_empty()).then(|| said.join(". "))
    }

    /// The registry part of `GET /admin/status`.
    pub fn registry_status(&self) -> RegistryStatus {
        lock(&self.registry_health).status(self.registry.kind(), self.registry.location())
    }
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
