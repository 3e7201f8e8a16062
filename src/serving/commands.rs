//! Admin alias changes as commands to the reconciler: each carries its
//! options and is answered through a oneshot once the reconciler has made
//! the change (or refused it). The reconciler runs one command or one
//! reconcile at a time, so no change ever races another.

use tokio::sync::oneshot;

use super::alias_state::AliasState;
use super::history::{Change, Event};
use super::reconcile::{evict, reconcile};
use super::status::{SwapOutcome, SwapTimings};
use super::ModelStore;
use crate::error::Error;
use crate::registry::{self, VersionSpec};

/// An operator's request to point `model@alias` at `version`.
#[derive(Debug, Clone)]
pub struct AliasChange {
    pub model: String,
    pub alias: String,
    pub version: u64,
    /// Take the version even if its signature differs from what the alias
    /// serves now (for this change only).
    pub allow_signature_change: bool,
    /// Who asks, as the alias history records it (`admin`, `admin:rollback`).
    pub by: String,
    /// Made by a rollback: the history takes the move it undoes off its stack.
    pub rollback: bool,
}

/// Where the reconciler sends its answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What the reconciler task is asked to do between polls.
pub(super) enum Command {
    /// Re-read the registry now.
    Reconcile { reply: Reply<()> },
    SetAlias {
        change: AliasChange,
        reply: Reply<SwapOutcome>,
    },
    Rollback {
        model: String,
        alias: String,
        by: String,
        reply: Reply<SwapOutcome>,
    },
    DeleteAlias {
        model: String,
        alias: String,
        by: String,
        reply: Reply<()>,
    },
}

/// [`ModelStore::set_alias`], run by the reconciler. Blocking.
pub(super) fn set_alias(store: &ModelStore, change: &AliasChange) -> Result<SwapOutcome, Error> {
    let AliasChange {
        model,
        alias,
        version,
        allow_signature_change,
        by,
        rollback,
    } = change;
    let (model, alias, version) = (model.as_str(), alias.as_str(), *version);
    registry::validate_alias_name(alias)?;
    let versions = store.registry.versions(model)?;
    registry::resolve(
        model,
        &VersionSpec::Number(version),
        &versions,
        &Default::default(),
    )?;
    let current = store
        .view
        .load()
        .models
        .get(model)
        .and_then(|mv| mv.aliases.get(alias))
        .and_then(|a| a.serving.clone());
    let from_version = current.as_ref().map(|c| c.version);
    let outcome = |swapped, timings| SwapOutcome {
        model: model.into(),
        alias: alias.into(),
        from_version,
        version,
        swapped,
        timings,
    };
    if from_version == Some(version) {
        store.registry.set_alias(model, alias, version)?;
        return Ok(outcome(false, SwapTimings::default()));
    }
    let prepared = store.loader.prepare(
        model,
        alias,
        version,
        current.as_deref(),
        *allow_signature_change,
        &|_| {},
    );
    let timings = match prepared {
        Ok((_, timings)) => timings,
        // The registry could not hand over the artifact: nothing was
        // refused (the version was never checked), so no refusal is
        // recorded and the caller gets the registry's error (502).
        Err(e @ Error::Registry(_)) => return Err(e),
        Err(e) => {
            metrics::counter!("podium_swaps_total", "model" => model.to_string(), "alias" => alias.to_string(), "result" => "refused").increment(1);
            store.history.record(&Event::refused(
                model,
                alias,
                from_version,
                version,
                by,
                &e.to_string(),
            ));
            evict(store); // the refused version, if it loaded
            return Err(Error::Refused(format!(
                "refused to point {model}@{alias} at version {version}: {e}; the alias is unchanged{}",
                from_version.map(|v| format!(" (still version {v})")).unwrap_or_default()
            )));
        }
    };
    let registry_from = store.registry.aliases(model).and_then(|aliases| {
        store
            .registry
            .set_alias(model, alias, version)
            .map(|()| aliases.get(alias).copied())
    })?;
    store.history.record_change(
        model,
        Change::AliasSet {
            alias,
            from: registry_from,
            to: version,
            rollback: *rollback,
        },
        by,
    );
    // Checked just now: the pass takes it even if it refused it before.
    reconcile(store, by, Some(change))?;
    let serving = store
        .view
        .load()
        .models
        .get(model)
        .and_then(|mv| mv.aliases.get(alias))
        .and_then(|a| match (&a.serving, &a.state) {
            (Some(s), _) => Some(s.version),
            // Served on demand: checked and warmed above, loaded while it fits.
            (None, &AliasState::OnDemand { version }) => Some(version),
            (None, _) => None,
        });
    if serving != Some(version) {
        return Err(Error::Internal(format!(
            "{model}@{alias} was set to version {version} in the registry but this server serves {serving:?}; see /admin/status"
        )));
    }
    Ok(outcome(true, timings))
}

/// [`ModelStore::rollback`], run by the reconciler. Blocking.
pub(super) fn rollback(
    store: &ModelStore,
    model: &str,
    alias: &str,
    by: &str,
) -> Result<SwapOutcome, Error> {
    let target = store.history.rollback_target(model, alias).map_err(|e| {
        Error::Internal(format!(
            "cannot read the alias history {}: {e}",
            store.history.path().display()
        ))
    })?;
    let Some(version) = target else {
        return Err(Error::Refused(format!(
            "nothing further to roll back to: the alias history {} has no earlier move of {model}@{alias} that was not rolled back already; set a version explicitly with PUT /admin/models/{model}/aliases/{alias} (podium alias set {model} {alias} VERSION)",
            store.history.path().display()
        )));
    };
    let change = AliasChange {
        model: model.into(),
        alias: alias.into(),
        version,
        allow_signature_change: false,
        by: by.into(),
        rollback: true,
    };
    set_alias(store, &change)
}

/// [`ModelStore::delete_alias`], run by the reconciler. Blocking.
pub(super) fn delete_alias(
    store: &ModelStore,
    model: &str,
    alias: &str,
    by: &str,
) -> Result<(), Error> {
    let from = store.registry.aliases(model)?.get(alias).copied();
    store.registry.delete_alias(model, alias)?;
    store
        .history
        .record_change(model, Change::AliasDeleted { alias, from }, by);
    reconcile(store, by, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry as _;
    use crate::serving::test_registry::Fixture;

    #[test]
    fn an_admin_change_the_registry_cannot_fetch_is_not_a_refusal() {
        let fx = Fixture::fraud(0);
        let reg = &fx.registry;
        reconcile(&fx.store, "registry", None).unwrap();
        reg.set(&reg.down, true);
        let change = AliasChange {
            model: "fraud".into(),
            alias: "champion".into(),
            version: 2,
            allow_signature_change: false,
            by: "admin".into(),
            rollback: false,
        };
        let err = set_alias(&fx.store, &change).unwrap_err();
        assert!(matches!(err, Error::Registry(_)), "502, not 409: {err:?}");
        assert!(!fx.history().contains("\"refused\""), "{}", fx.history());
        assert_eq!(reg.inner.aliases("fraud").unwrap()["champion"], 1);
        // The same change goes through once the registry answers.
        reg.set(&reg.down, false);
        let done = set_alias(&fx.store, &change).unwrap();
        assert!(done.swapped);
    }
}
