//! Reloading the configuration file while serving (SIGHUP, `POST
//! /admin/config/reload`, `podium traffic reload`): the file is read and
//! checked as at start-up (aliases against the registry included), then
//! every endpoint is replaced in one store ([`Core::replace_endpoints`]), so
//! no request sees half of the new set; each endpoint added, changed or
//! removed is written to the alias history. On any error nothing changes.
//!
//! A reload changes the endpoints (arms and weights, shadows, sticky keys,
//! logging, timeouts; endpoints added or removed). What is read once at
//! start-up — the `[model.*]` tables (backend, batching, ONNX Runtime options) and
//! the experiment sections (`readout`, `guardrail`, `rollout`) — must be
//! unchanged: a reload that changes them is refused, naming the section.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::history::action;
use super::{Core, Event};
use crate::config::{Config, Lookup};
use crate::error::Error;
use crate::experiments::{LoopConfig, ReadoutConfig};
use crate::registry::Registry;
use crate::routing::{Endpoint, RouteTable};
use crate::runtime::batch::BatchingPolicy;
use crate::runtime::options::OrtOverrides;
use crate::runtime::Backend;

/// Who the history names for a reload on SIGHUP.
pub const BY_SIGNAL: &str = "reload";

/// What the registry says of `model`, as the configuration check wants it:
/// a registry that cannot be reached is [`Lookup::Unreachable`].
pub fn lookup(registry: &dyn Registry, model: &str) -> Lookup {
    match registry.aliases(model) {
        Ok(aliases) => Lookup::Aliases(aliases.into_keys().collect()),
        Err(Error::Registry(why)) => Lookup::Unreachable(why),
        Err(_) => Lookup::Unknown,
    }
}

/// The configuration file a server was started with, and what of it a
/// reload cannot change. Reloads through it run one at a time.
pub struct ConfigFile {
    path: PathBuf,
    fixed: Mutex<Fixed>,
}

/// The parts of a configuration read once at start-up.
#[derive(Debug, PartialEq)]
struct Fixed {
    backends: HashMap<String, Backend>,
    batching: HashMap<String, BatchingPolicy>,
    onnxruntime: HashMap<String, OrtOverrides>,
    readouts: Vec<ReadoutConfig>,
    loops: Vec<LoopConfig>,
}

impl Fixed {
    fn of(config: &Config) -> Fixed {
        Fixed {
            backends: config.backends.clone(),
            batching: config.batching.clone(),
            onnxruntime: config.onnxruntime.clone(),
            readouts: config.readouts.clone(),
            loops: config.loops.clone(),
        }
    }

    /// The first section that differs from `self`, as the error names it.
    fn changed_in(&self, new: &Fixed) -> Option<String> {
        let models = |a: &Fixed, b: &Fixed| -> Option<String> {
            let names: BTreeSet<&String> = a
                .backends
                .keys()
                .chain(b.backends.keys())
                .chain(a.batching.keys())
                .chain(a.onnxruntime.keys())
                .chain(b.batching.keys())
                .chain(b.onnxruntime.keys())
                .collect();
            names.into_iter().find_map(|m| {
                if a.backends.get(m) != b.backends.get(m) {
                    Some(format!("[model.{m}] backend"))
                } else if a.batching.get(m) != b.batching.get(m) {
                    Some(format!("[model.{m}.batching]"))
                } else if a.onnxruntime.get(m) != b.onnxruntime.get(m) {
                    Some(format!("[model.{m}.onnxruntime]"))
                } else {
                    None
                }
            })
        };
        if let Some(section) = models(self, new) {
            return Some(section);
        }
        let endpoints: BTreeSet<&String> = self
            .readouts
            .iter()
            .chain(&new.readouts)
            .map(|r| &r.endpoint)
            .chain(self.loops.iter().chain(&new.loops).map(|l| &l.endpoint))
            .collect();
        endpoints.into_iter().find_map(|e| {
            let readout = |f: &Fixed| f.readouts.iter().find(|r| &r.endpoint == e).cloned();
            let lp = |f: &Fixed| f.loops.iter().find(|l| &l.endpoint == e).cloned();
            let (a, b) = (lp(self), lp(new));
            if readout(self) != readout(new) {
                Some(format!("[endpoint.readout] of endpoint \"{e}\""))
            } else if a.as_ref().map(|l| &l.guardrail) != b.as_ref().map(|l| &l.guardrail) {
                Some(format!("[endpoint.guardrail] of endpoint \"{e}\""))
            } else if a != b {
                Some(format!("[endpoint.rollout] of endpoint \"{e}\""))
            } else {
                None
            }
        })
    }
}

/// What one reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    /// The file that was read.
    pub file: String,
    /// The endpoints added, changed or removed (none: the file's endpoints
    /// were already in force).
    pub changed: Vec<EndpointChange>,
}

/// One endpoint a reload added, changed or removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointChange {
    pub endpoint: String,
    /// `added`, `changed` or `removed`.
    pub change: &'static str,
    /// For `changed`: what differs (`arms`, `shadow`, `sticky_key`, `log`,
    /// `timeout`, `model`, `experiment`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<&'static str>,
}

impl ConfigFile {
    /// The file `path`, as `config` (read from it at start-up) has it.
    pub fn new(path: &Path, config: &Config) -> ConfigFile {
        ConfigFile {
            path: path.to_path_buf(),
            fixed: Mutex::new(Fixed::of(config)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Core {
    /// Reads `file` again, checks it as start-up does, and replaces every
    /// endpoint at once; on any error nothing changes and the error names
    /// the file, the line or section, and the fix. Counted in
    /// `podium_config_reloads_total{result}`. Blocking (reads the file and
    /// asks the registry).
    pub fn reload_config(&self, file: &ConfigFile, by: &str) -> Result<ReloadOutcome, Error> {
        let fixed = super::loader::lock(&file.fixed);
        let result = self.try_reload(file, &fixed, by);
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("podium_config_reloads_total", "result" => label).increment(1);
        match &result {
            Ok(outcome) => tracing::info!(
                "configuration reloaded from {} by {by}: {} endpoint(s) changed",
                file.path.display(),
                outcome.changed.len()
            ),
            Err(e) => tracing::error!(
                "configuration reload by {by} refused, the previous configuration stays in force: {e}"
            ),
        }
        result
    }

    fn try_reload(
        &self,
        file: &ConfigFile,
        fixed: &Fixed,
        by: &str,
    ) -> Result<ReloadOutcome, Error> {
        let registry = Arc::clone(self.models().registry());
        let unreachable = Mutex::new(None);
        let known = |model: &str| {
            let found = lookup(registry.as_ref(), model);
            if let Lookup::Unreachable(why) = &found {
                *super::loader::lock(&unreachable) = Some(why.clone());
            }
            found
        };
        let config = crate::config::load(&file.path, &known).map_err(|e| {
            Error::InvalidInput(format!(
                "{e}; the previous configuration stays in force: fix the file and reload again"
            ))
        })?;
        if let Some(why) = super::loader::lock(&unreachable).take() {
            return Err(Error::Unavailable(format!(
                "{}: cannot check its models and aliases against the registry ({why}); the previous configuration stays in force: reload again once the registry answers",
                file.path.display()
            )));
        }
        if let Some(section) = fixed.changed_in(&Fixed::of(&config)) {
            return Err(Error::InvalidInput(format!(
                "{}: {section} differs from the one the server started with; it is read once at start-up, so a reload cannot change it. Restart `podium serve` to apply it, or put it back as it was to reload the endpoints; the previous configuration stays in force",
                file.path.display()
            )));
        }
        let why = format!("configuration reloaded from {}", file.path.display());
        let changed = self.replace_endpoints(config.endpoints, by, &why);
        // A split stored in the registry (by any replica's traffic change or
        // experiment loop) still wins over the file until it is reset:
        // follow it now rather than at the next poll.
        self.follow_stored_traffic();
        Ok(ReloadOutcome {
            file: file.path.display().to_string(),
            changed,
        })
    }

    /// Replaces the whole set of endpoints in one atomic store (endpoints
    /// not in `endpoints` are removed) and writes one `endpoint_reloaded`
    /// event per endpoint added, changed or removed, by `by` with `why`.
    /// An endpoint that stays keeps its shadow budget.
    pub fn replace_endpoints(
        &self,
        endpoints: Vec<Endpoint>,
        by: &str,
        why: &str,
    ) -> Vec<EndpointChange> {
        // Shadow budgets carry over from the policies in force now (a
        // concurrent traffic change shares the same budget).
        let endpoints: Vec<Arc<Endpoint>> = {
            let current = self.routes.load();
            endpoints
                .into_iter()
                .map(|mut e| {
                    if let Some(old) = current.endpoints.get(&e.name) {
                        e.keep_shadow_budget(old);
                    }
                    Arc::new(e)
                })
                .collect()
        };
        self.shared.set_configured(&endpoints);
        let mut changes = Vec::new();
        let mut events = Vec::new();
        self.routes.rcu(|current| {
            changes.clear();
            events.clear();
            let mut next = HashMap::new();
            for e in &endpoints {
                let what = match current.endpoints.get(&e.name) {
                    Some(old) => {
                        let what = differences(old, e);
                        if what.is_empty() {
                            next.insert(e.name.clone(), Arc::clone(old));
                            continue;
                        }
                        Some(what)
                    }
                    None => None,
                };
                let change = EndpointChange {
                    endpoint: e.name.clone(),
                    change: if what.is_some() { "changed" } else { "added" },
                    what: what.unwrap_or_default(),
                };
                events.push(event(&e.model, &change, Some(e.arms.clone()), by, why));
                changes.push(change);
                next.insert(e.name.clone(), Arc::clone(e));
            }
            let mut removed: Vec<&Arc<Endpoint>> = current
                .endpoints
                .values()
                .filter(|e| !next.contains_key(&e.name))
                .collect();
            removed.sort_by(|a, b| a.name.cmp(&b.name));
            for old in removed {
                let change = EndpointChange {
                    endpoint: old.name.clone(),
                    change: "removed",
                    what: Vec::new(),
                };
                events.push(event(&old.model, &change, None, by, why));
                changes.push(change);
            }
            RouteTable { endpoints: next }
        });
        for e in &events {
            self.models().history().record(e);
        }
        changes
    }
}

/// The history event of one endpoint change.
fn event(
    model: &str,
    change: &EndpointChange,
    arms: Option<Vec<crate::routing::Arm>>,
    by: &str,
    why: &str,
) -> Event {
    let mut event = Event::new(model, "", action::ENDPOINT_RELOADED, by);
    event.endpoint = Some(change.endpoint.clone());
    event.arms = arms;
    event.why = Some(match change.what.as_slice() {
        [] => format!("{}: {why}", change.change),
        what => format!("{} ({}): {why}", change.change, what.join(", ")),
    });
    event
}

/// What differs between two policies of one endpoint.
fn differences(old: &Endpoint, new: &Endpoint) -> Vec<&'static str> {
    [
        ("model", old.model != new.model),
        ("experiment", old.experiment != new.experiment),
        ("arms", old.arms != new.arms),
        ("shadow", old.shadow != new.shadow),
        ("sticky_key", old.sticky_key != new.sticky_key),
        ("log", old.log != new.log),
        ("timeout", old.timeout != new.timeout),
    ]
    .into_iter()
    .filter_map(|(what, differs)| differs.then_some(what))
    .collect()
}
