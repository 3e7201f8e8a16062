//! Readiness and the health summary: computed from a view when the
//! reconciler publishes it, so `/v2/health/ready`, gRPC health and the
//! admin status all say the same thing until the next publish.

use std::collections::BTreeMap;

use super::alias_state::AliasState;
use super::slots::View;
use crate::registry::DEFAULT_ALIAS;

/// What gRPC health follows: published by the reconciler after each
/// reconcile or command, changed only when one of these changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthSummary {
    /// The first registry read is over (it may have failed); the server
    /// says it listens after this.
    pub started: bool,
    /// [`ModelStore::readiness`](super::ModelStore::readiness) is Ok.
    pub ready: bool,
    /// Each model of the registry: whether its default alias has a
    /// version serving.
    pub models: BTreeMap<String, bool>,
}

impl HealthSummary {
    pub(super) fn of(view: &View, started: bool) -> HealthSummary {
        HealthSummary {
            started,
            ready: view.readiness.is_ok(),
            models: view
                .models
                .iter()
                .map(|(model, mv)| {
                    // An alias served on demand answers too (after a load).
                    let serving = mv.aliases.get(DEFAULT_ALIAS).is_some_and(|a| {
                        a.serving.is_some() || matches!(a.state, AliasState::OnDemand { .. })
                    });
                    (model.clone(), serving)
                })
                .collect(),
        }
    }
}

/// Ready when the registry has been read and every alias has a version
/// serving or is served on demand; otherwise the reasons it is not. `was_ready`: an earlier view
/// was ready, so an alias held up only by the registry (it is retried every
/// poll) no longer counts. `registry_error`: why the last registry read
/// failed, said while it has never been read.
pub(super) fn readiness(
    view: &View,
    was_ready: bool,
    registry_error: Option<&str>,
) -> Result<(), Vec<String>> {
    if !view.registry_read {
        let why = match registry_error {
            Some(e) => format!("the registry has not been read yet: {e}"),
            None => "the registry has not been read yet".into(),
        };
        return Err(vec![why]);
    }
    let mut reasons = Vec::new();
    for (model, mv) in &view.models {
        let serving_any = mv
            .aliases
            .values()
            .any(|a| a.serving.is_some() || matches!(a.state, AliasState::OnDemand { .. }));
        if let (Some(unreadable), false) = (&mv.unreadable, serving_any) {
            if !(was_ready && unreadable.registry_unreachable) {
                reasons.push(format!("{model}: {}", unreadable.reason));
            }
        }
        for (alias, version) in &mv.info.aliases {
            let entry = mv.aliases.get(alias);
            if entry.is_some_and(|a| {
                a.serving.is_some() || matches!(a.state, AliasState::OnDemand { .. })
            }) {
                continue;
            }
            let state = entry.map(|a| &a.state);
            if was_ready && state.is_some_and(|s| s.waits_on_registry()) {
                continue;
            }
            let why = state.and_then(|s| s.reason()).unwrap_or("not loaded yet");
            reasons.push(format!("{model}@{alias} (v{version}): {why}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}
