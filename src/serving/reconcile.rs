//! One reconcile pass: read the registry, make every slot follow its alias
//! (load, validate, warm off the hot path, then swap), publish the next view
//! with each alias's state, and unload what nothing needs any more.
//!
//! If a step fails the old version keeps serving, the alias's state says
//! why, and a refused target is not tried again until the alias moves. A
//! replaced version stays loaded (warm) for instant rollback; older ones
//! are dropped once their last in-flight request finishes. Only the
//! reconciler task runs a pass, so passes never overlap.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::alias_state::AliasState;
use super::commands::AliasChange;
use super::history::{action, outcome, Event};
use super::loader::{lock, DriftChange, Key};
use super::on_demand::follow_on_demand;
use super::readiness::{readiness, HealthSummary};
use super::slots::{AliasSlot, ModelView, Unreadable, View};
use super::ModelStore;
use crate::error::Error;
use crate::registry::ModelInfo;
use crate::runtime::LoadedModel;

/// Re-reads the registry and makes the slots follow it, then publishes the
/// result. `approved`: an admin change checked just now, taken even if its
/// target was refused before, with its own signature permission. Blocking.
pub(super) fn reconcile(
    store: &ModelStore,
    by: &str,
    approved: Option<&AliasChange>,
) -> Result<(), Error> {
    let old = store.view.load_full();
    let snapshot = match store.registry.snapshot(store.options.watch.as_deref()) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            record_registry_read(store, Some(&e));
            publish(store, View::clone(&old));
            return Err(e);
        }
    };
    // A registry that cannot be reached for one model is degraded; a
    // model it does not know is the model's problem, shown on its slots.
    let unreachable = snapshot.iter().find_map(|(_, info)| match info {
        Err(e @ Error::Registry(_)) => Some(e),
        _ => None,
    });
    record_registry_read(store, unreachable);
    // Before following the aliases: a drifted version is not swapped in.
    let drifted = store.loader.check_drift();
    let mut models = BTreeMap::new();
    for (model, read) in snapshot {
        let old_mv = old.models.get(&model);
        let info = match read {
            Ok(info) => info,
            Err(e) => {
                models.insert(model.clone(), unreadable(&model, old_mv, &e));
                continue;
            }
        };
        let mut aliases = BTreeMap::new();
        for (alias, &target) in &info.aliases {
            let before = old_mv.and_then(|m| m.aliases.get(alias));
            let pass = Pass {
                store,
                model: &model,
                alias,
                by,
                approved,
            };
            aliases.insert(alias.clone(), pass.follow(target, before, &info));
        }
        record_drift(store, &model, &aliases, &drifted);
        if let Some(old_mv) = old_mv {
            for (alias, gone) in old_mv
                .aliases
                .iter()
                .filter(|(a, _)| !info.aliases.contains_key(*a))
            {
                if let Some(gone) = &gone.serving {
                    let mut event = Event::new(&model, alias, action::UNSERVED, by);
                    event.from_version = Some(gone.version);
                    store.history.record(&event);
                }
            }
        }
        let mv = ModelView {
            info,
            aliases,
            unreadable: None,
        };
        models.insert(model, mv);
    }
    publish(
        store,
        View {
            models,
            registry_read: true,
            ..View::clone(&old)
        },
    );
    evict(store);
    Ok(())
}

/// Records each drift change of a version an alias serves or keeps for
/// rollback in that alias's history: `result` `failed` with the drift as
/// `error`, or `ok` once the files are back as loaded.
fn record_drift(
    store: &ModelStore,
    model: &str,
    aliases: &BTreeMap<String, AliasSlot>,
    changes: &[DriftChange],
) {
    for change in changes.iter().filter(|c| c.model == model) {
        for (alias, slot) in aliases {
            let serves = slot.serving.as_ref().map(|m| m.version) == Some(change.version);
            if !serves && !slot.previous.contains(&change.version) {
                continue;
            }
            let mut event = Event::new(model, alias, action::DRIFT, "registry");
            event.to_version = Some(change.version);
            if let Some(drift) = &change.drift {
                event.result = outcome::FAILED.into();
                event.error = Some(drift.clone());
            }
            store.history.record(&event);
        }
    }
}

/// A model whose registry entry could not be read keeps serving what it
/// served; one unreadable model never stops the others from following.
fn unreadable(model: &str, old_mv: Option<&ModelView>, e: &Error) -> ModelView {
    let said = old_mv
        .and_then(|m| m.unreadable.as_ref())
        .map(|u| u.reason.as_str());
    let why = format!("cannot read the registry entry: {e}");
    // An outage is logged once, as the registry's; a model's own problem once per change.
    if !matches!(e, Error::Registry(_)) && said != Some(why.as_str()) {
        tracing::error!(
            "registry: cannot read model {model}: {e}; it keeps serving what it served"
        );
    }
    let mut mv = old_mv.cloned().unwrap_or_default();
    mv.unreadable = Some(Unreadable {
        reason: why,
        registry_unreachable: matches!(e, Error::Registry(_)),
    });
    mv
}

/// Records one read of the registry: a failure makes it degraded, never
/// unready; a success lets versions it could not hand over be fetched again.
fn record_registry_read(store: &ModelStore, failure: Option<&Error>) {
    if failure.is_none() {
        store.loader.forget_fetch_failures();
    }
    let location = store.registry.location();
    lock(&store.registry_health).record(store.registry.kind(), &location, failure);
}

/// Publishes `view` with its readiness, and the health summary after it.
fn publish(store: &ModelStore, mut view: View) {
    let was_ready = view.ever_ready;
    let registry_error = lock(&store.registry_health).error().map(String::from);
    view.readiness = readiness(&view, was_ready, registry_error.as_deref());
    view.ever_ready = was_ready || view.readiness.is_ok();
    let started = store.health.borrow().started;
    let summary = HealthSummary::of(&view, started);
    store.view.store(Arc::new(view));
    store.health.send_if_modified(|now| {
        let changed = *now != summary;
        *now = summary;
        changed
    });
}

/// Shows the step `model@alias` is at while the old version keeps serving
/// (only for an alias the published view has already: slots and readiness
/// stay as they are until the pass publishes).
fn publish_step(store: &ModelStore, model: &str, alias: &str, state: AliasState) {
    let view = store.view.load();
    if !view
        .models
        .get(model)
        .is_some_and(|m| m.aliases.contains_key(alias))
    {
        return;
    }
    let mut next = View::clone(&view);
    if let Some(entry) = next
        .models
        .get_mut(model)
        .and_then(|m| m.aliases.get_mut(alias))
    {
        entry.state = state;
    }
    store.view.store(Arc::new(next));
}

/// Drops loaded versions nothing needs: not in a slot, not kept for
/// rollback, not an alias's version served on demand, not pinned by a
/// request.
pub(super) fn evict(store: &ModelStore) {
    let view = store.view.load();
    let mut keep: HashSet<Key> = HashSet::new();
    for (model, mv) in &view.models {
        for slot in mv.aliases.values() {
            keep.extend(slot.serving.iter().map(|m| (model.clone(), m.version)));
            keep.extend(slot.previous.iter().map(|&v| (model.clone(), v)));
            if let AliasState::OnDemand { version } = slot.state {
                keep.insert((model.clone(), version));
            }
        }
    }
    store.loader.evict(keep);
}

/// One alias being followed in a pass.
struct Pass<'a> {
    store: &'a ModelStore,
    model: &'a str,
    alias: &'a str,
    by: &'a str,
    approved: Option<&'a AliasChange>,
}

impl Pass<'_> {
    /// Makes the alias's slot serve `target`, or says why it keeps serving
    /// what it did (if anything).
    fn follow(&self, target: u64, before: Option<&AliasSlot>, info: &ModelInfo) -> AliasSlot {
        let (model, alias) = (self.model, self.alias);
        let current = before.and_then(|b| b.serving.clone());
        let previous = before.map(|b| b.previous.clone()).unwrap_or_default();
        let stay = |state| AliasSlot {
            serving: current.clone(),
            state,
            previous: previous.clone(),
        };
        let said = before.and_then(|b| b.state.reason());
        if current.as_ref().is_some_and(|c| c.version == target) {
            // The alias is back on what it serves: a refusal of another
            // target is history, and that target is tried again next time.
            // Drifted files change nothing here: the loaded copy serves on.
            return stay(match self.store.loader.drift(model, target) {
                Some(_) => AliasState::Drifted { version: target },
                None => AliasState::Serving { version: target },
            });
        }
        if !info.versions.contains(&target) {
            // The alias points at a version the registry does not list
            // (MLflow: its registration has not finished; local: its model
            // file is missing): not a refusal, so nothing is held against
            // it; the old version keeps serving and the alias is followed
            // once the version is listed.
            let why = format!(
                "{}{}",
                self.store.registry.unlisted_version(model, target),
                still(&current)
            );
            if said != Some(why.as_str()) {
                tracing::warn!("{model}@{alias}: {why}");
            }
            return stay(AliasState::Waiting {
                version: target,
                reason: why,
            });
        }
        if self.store.loader.budget.on_demand(model) {
            let was = before.map(|b| &b.state);
            let approved = self
                .approved
                .is_some_and(|c| c.model == model && c.alias == alias && c.version == target);
            return follow_on_demand(self.store, model, alias, self.by, target, was, approved);
        }
        let approval = self
            .approved
            .filter(|c| c.model == model && c.alias == alias && c.version == target);
        if let Some(before) = before.filter(|b| approval.is_none() && b.state.refused(target)) {
            return stay(before.state.clone());
        }
        let allow = approval.is_some_and(|c| c.allow_signature_change);
        let from_version = current.as_ref().map(|c| c.version);
        let mut event = Event::new(model, alias, action::SWAP, self.by);
        event.from_version = from_version;
        event.to_version = Some(target);
        let step = |state| publish_step(self.store, model, alias, state);
        let prepared =
            self.store
                .loader
                .prepare(model, alias, target, current.as_deref(), allow, &step);
        match prepared {
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
                self.store.history.record(&event);
                let mut previous = previous.clone();
                previous.retain(|&v| v != target);
                if let Some(v) = from_version {
                    previous.push_front(v);
                    previous.truncate(self.store.options.keep_previous);
                }
                tracing::info!(
                    "{model}@{alias}: now serving v{target} (was {}) after load {:.1} ms, validate {:.1} ms, warm-up {:.1} ms",
                    from_version.map(|v| format!("v{v}")).unwrap_or_else(|| "nothing".into()),
                    timings.load_ms,
                    timings.validate_ms,
                    timings.warm_ms
                );
                AliasSlot {
                    serving: Some(new),
                    state: AliasState::Serving { version: target },
                    previous,
                }
            }
            Err(e @ Error::Registry(_)) => {
                // The registry could not hand over the artifact: not the
                // version's fault, so it is tried again at the next poll.
                let why = format!(
                    "version {target} could not be fetched: {e}{}",
                    still(&current)
                );
                if said != Some(why.as_str()) {
                    tracing::warn!("{model}@{alias}: {why}; retrying at the next poll");
                }
                stay(AliasState::RegistryUnreachable {
                    version: target,
                    reason: why,
                })
            }
            Err(e) => {
                metrics::counter!("podium_swaps_total", "model" => model.to_string(), "alias" => alias.to_string(), "result" => "refused").increment(1);
                let why = format!("version {target} was refused: {e}{}", still(&current));
                tracing::error!("{model}@{alias}: {why}");
                event.result = outcome::REFUSED.into();
                event.error = Some(e.to_string());
                self.store.history.record(&event);
                stay(AliasState::Refused {
                    version: target,
                    reason: why,
                })
            }
        }
    }
}

/// "; still serving version N" when something keeps serving.
fn still(current: &Option<Arc<LoadedModel>>) -> String {
    current
        .as_ref()
        .map(|c| format!("; still serving version {}", c.version))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry as _;
    use crate::registry::VersionSpec;
    use crate::serving::test_registry::Fixture;

    fn poll(fx: &Fixture) {
        reconcile(&fx.store, "registry", None).unwrap();
    }

    #[test]
    fn an_unreachable_registry_never_makes_a_ready_server_unready() {
        let fx = Fixture::fraud(0);
        let reg = &fx.registry;
        reg.set(&reg.down, true);

        // Never ready yet: an artifact that cannot be fetched is a reason.
        poll(&fx);
        let reasons = fx.store.readiness().unwrap_err().join("; ");
        assert!(
            reasons.contains("could not be fetched: cannot connect to MLflow"),
            "{reasons}"
        );
        // ...and it is tried again at the next poll, not refused for good.
        reg.set(&reg.down, false);
        poll(&fx);
        fx.store.readiness().unwrap();

        // Once ready, a new alias whose artifact cannot be fetched leaves it ready.
        reg.set(&reg.down, true);
        reg.inner.set_alias("fraud", "canary", 2).unwrap();
        poll(&fx);
        fx.store.readiness().unwrap();
        let canary = fx.slot("canary");
        assert_eq!(canary.serving_version, None);
        assert_eq!(canary.state, "registry_unreachable");
        assert!(
            canary
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("cannot connect to MLflow"),
            "{canary:?}"
        );
        reg.set(&reg.down, false);
        poll(&fx);
        let canary = fx.slot("canary");
        assert_eq!(canary.serving_version, Some(2));
        assert_eq!(canary.last_error, None);
    }

    #[test]
    fn requests_do_not_call_an_unreachable_registry_again() {
        let fx = Fixture::fraud(0);
        let reg = &fx.registry;
        poll(&fx);
        reg.set(&reg.down, true);
        let before = reg.artifact_calls();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let v2 = VersionSpec::Number(2);
        for _ in 0..5 {
            let err = rt.block_on(fx.store.get("fraud", &v2)).unwrap_err();
            assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
            assert!(
                err.to_string()
                    .contains("could not be fetched from the registry"),
                "{err}"
            );
        }
        assert_eq!(
            reg.artifact_calls(),
            before + 1,
            "one registry call for five requests"
        );
        // The next successful registry read lets a request try again.
        reg.set(&reg.down, false);
        poll(&fx);
        let served = rt.block_on(fx.store.get("fraud", &v2)).unwrap();
        assert_eq!(served.version, 2);
    }

    #[test]
    fn an_alias_on_a_version_not_ready_yet_waits_for_it() {
        let fx = Fixture::fraud(2);
        poll(&fx);
        fx.store.readiness().unwrap();
        // The alias moves to v2 before v2 finished registering.
        fx.registry.inner.set_alias("fraud", "champion", 2).unwrap();
        for _ in 0..2 {
            poll(&fx);
            let champion = fx.slot("champion");
            assert_eq!(champion.serving_version, Some(1));
            assert_eq!(champion.state, "waiting");
            let err = champion.last_error.unwrap_or_default();
            assert!(err.contains("waiting for version 2 to be READY"), "{err}");
            fx.store.readiness().unwrap();
        }
        // Once it is READY, the next poll follows it.
        fx.registry
            .pending
            .store(0, std::sync::atomic::Ordering::SeqCst);
        poll(&fx);
        let champion = fx.slot("champion");
        assert_eq!(champion.serving_version, Some(2));
        assert_eq!(champion.last_error, None);
    }

    #[test]
    fn the_steps_of_a_swap_show_in_the_alias_state_while_the_old_version_serves() {
        let fx = Fixture::fraud(0);
        let store = &fx.store;
        poll(&fx);
        publish_step(
            store,
            "fraud",
            "champion",
            AliasState::Loading { version: 2 },
        );
        let champion = fx.slot("champion");
        assert_eq!(champion.state, "loading");
        assert_eq!(champion.serving_version, Some(1), "the slot is untouched");
        store.readiness().unwrap();
        publish_step(store, "fraud", "canary", AliasState::Loading { version: 2 });
        assert!(
            store.status().slots.iter().all(|s| s.alias != "canary"),
            "an alias not published yet stays out"
        );
        poll(&fx);
        assert_eq!(fx.slot("champion").state, "serving");
    }
}
