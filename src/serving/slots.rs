//! The slots: the immutable view every request reads, and the hot-path
//! questions answered from it (which version serves `model@alias`, is the
//! server ready, what does the registry say about a model).
//!
//! Requests read one [`View`] through an `ArcSwap`: a slot is the view's
//! `Arc<LoadedModel>` for one alias, and a request clones that `Arc` once
//! and keeps it to the end, so it never mixes versions. Only the reconciler
//! publishes views.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::alias_state::AliasState;
use super::ModelStore;
use crate::error::Error;
use crate::registry::{self, ModelInfo, VersionSpec, LATEST};
use crate::runtime::LoadedModel;

/// What requests see; replaced whole, never mutated.
#[derive(Clone)]
pub(super) struct View {
    pub models: BTreeMap<String, ModelView>,
    /// The registry has been read at least once.
    pub registry_read: bool,
    /// Reported ready once: from then on an unreachable registry alone
    /// never makes it unready.
    pub ever_ready: bool,
    /// Ready, or the reasons it is not, as of this view.
    pub readiness: Result<(), Vec<String>>,
}

impl Default for View {
    fn default() -> View {
        View {
            models: BTreeMap::new(),
            registry_read: false,
            ever_ready: false,
            readiness: Err(vec!["the registry has not been read yet".into()]),
        }
    }
}

/// One model as the registry described it at the last reconcile, with its
/// aliases' slots.
#[derive(Default, Clone)]
pub(super) struct ModelView {
    pub info: ModelInfo,
    pub aliases: BTreeMap<String, AliasSlot>,
    /// Why the model's registry entry could not be read at the last
    /// reconcile; it keeps serving what it served before.
    pub unreadable: Option<Unreadable>,
}

/// Why a model's registry entry could not be read.
#[derive(Clone)]
pub(super) struct Unreadable {
    pub reason: String,
    /// The registry could not be reached (rather than refusing the model).
    pub registry_unreachable: bool,
}

/// One alias of a model: the slot requests read, why it is (not) on the
/// registry's version, and the versions kept for rollback.
#[derive(Clone)]
pub(super) struct AliasSlot {
    /// The version answering requests for the alias, if any.
    pub serving: Option<Arc<LoadedModel>>,
    pub state: AliasState,
    /// Versions this alias served before, most recent first.
    pub previous: VecDeque<u64>,
}

impl ModelStore {
    /// The model version `spec` names: the alias's slot, the alias's
    /// version loaded on demand (waiting for its load, bounded), or a
    /// version by number (loaded on first use and kept).
    pub async fn get(
        self: &Arc<Self>,
        model: &str,
        spec: &VersionSpec,
    ) -> Result<Arc<LoadedModel>, Error> {
        let (version, on_demand) = {
            let view = self.view.load();
            let mv = view
                .models
                .get(model)
                .ok_or_else(|| unknown_model(model, &view))?;
            match spec {
                VersionSpec::Alias(alias) if !alias.eq_ignore_ascii_case(LATEST) => {
                    let entry = mv.aliases.get(alias);
                    if let Some(slot) = entry.and_then(|e| e.serving.as_ref()) {
                        return Ok(Arc::clone(slot));
                    }
                    if let Some(&AliasState::OnDemand { version }) = entry.map(|e| &e.state) {
                        (version, true)
                    } else {
                        registry::resolve(model, spec, &mv.info.versions, &mv.info.aliases)?;
                        let why = entry
                            .and_then(|e| e.state.reason())
                            .unwrap_or("it is still loading");
                        return Err(Error::Unavailable(format!(
                            "model \"{model}\" alias \"{alias}\" has no version serving: {why}"
                        )));
                    }
                }
                VersionSpec::Number(n) => {
                    // A version an alias serves answers by number too, even
                    // when its files vanished from the registry (drift).
                    let served = mv.aliases.values().filter_map(|a| a.serving.as_ref());
                    if let Some(slot) = served.into_iter().find(|m| m.version == *n) {
                        return Ok(Arc::clone(slot));
                    }
                    let version =
                        registry::resolve(model, spec, &mv.info.versions, &mv.info.aliases)?;
                    (version, serves_on_demand(mv, version))
                }
                _ => {
                    let version =
                        registry::resolve(model, spec, &mv.info.versions, &mv.info.aliases)?;
                    (version, serves_on_demand(mv, version))
                }
            }
        };
        if on_demand {
            return self.loader.on_demand(model, version).await;
        }
        self.loader.for_request(model, version).await
    }

    /// Which version `spec` names for `model` and whether it is serving
    /// (an alias: its slot; a number: loaded). Never loads.
    pub fn ready(&self, model: &str, spec: &VersionSpec) -> Result<(u64, bool), Error> {
        let view = self.view.load();
        let mv = view
            .models
            .get(model)
            .ok_or_else(|| unknown_model(model, &view))?;
        match spec {
            VersionSpec::Alias(alias) => {
                let entry = mv.aliases.get(alias);
                if let Some(slot) = entry.and_then(|e| e.serving.as_ref()) {
                    return Ok((slot.version, true));
                }
                // Served on demand: a request loads it, so it is ready.
                if let Some(&AliasState::OnDemand { version }) = entry.map(|e| &e.state) {
                    return Ok((version, true));
                }
            }
            // As in `get`: a version an alias serves is ready by number too.
            VersionSpec::Number(n) => {
                if mv
                    .aliases
                    .values()
                    .any(|a| a.serving.as_ref().is_some_and(|m| m.version == *n))
                {
                    return Ok((*n, true));
                }
            }
        }
        let version = registry::resolve(model, spec, &mv.info.versions, &mv.info.aliases)?;
        let is_alias = matches!(spec, VersionSpec::Alias(a) if !a.eq_ignore_ascii_case(LATEST));
        Ok((version, !is_alias && self.loader.is_loaded(model, version)))
    }

    /// What the registry says about `model`.
    pub fn info(&self, model: &str) -> Result<ModelInfo, Error> {
        let view = self.view.load();
        view.models
            .get(model)
            .map(|mv| mv.info.clone())
            .ok_or_else(|| unknown_model(model, &view))
    }

    /// Whether the registry has a model of this name.
    pub fn knows(&self, model: &str) -> bool {
        self.view.load().models.contains_key(model)
    }

    /// Names of the registry's models, as of the last reconcile.
    pub fn model_names(&self) -> Vec<String> {
        self.view.load().models.keys().cloned().collect()
    }

    /// Ready when the registry has been read and every alias has a version
    /// serving; otherwise the reasons it is not. A failed swap keeps the old
    /// version serving, so it never makes a ready server unready; nor does a
    /// registry that cannot be reached (what is loaded keeps serving).
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        self.view.load().readiness.clone()
    }
}

/// Whether an alias of `mv` serves `version` on demand (a request for it
/// by number then shares that alias's loads and waits as long).
fn serves_on_demand(mv: &ModelView, version: u64) -> bool {
    mv.aliases
        .values()
        .any(|a| a.state == AliasState::OnDemand { version })
}

/// No such model; or, before the registry was first read (it is read in
/// the background while the server already answers), not yet known.
fn unknown_model(model: &str, view: &View) -> Error {
    if !view.registry_read {
        return Error::Unavailable(format!(
            "model \"{model}\": the registry has not been read yet; try again shortly"
        ));
    }
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
