//! Traffic changes: an endpoint's weights (and shadow) replaced in one
//! atomic store, checked like the configuration file, stored in the
//! registry for the other replicas to follow ([`super::shared_traffic`])
//! and written to the alias history. The admin API's
//! `PUT /admin/endpoints/{name}/traffic` (and its `DELETE`, back to the
//! configuration file's policy) and the experiment loop (guardrail trips,
//! rollout steps) all come here.

use std::sync::Arc;

use super::shared_traffic::{same_policy, StoredPolicy};
use super::{Core, Event};
use crate::error::Error;
use crate::routing::{Arm, Endpoint, Shadow};

/// One change of an endpoint's traffic policy.
#[derive(Debug, Clone)]
pub struct TrafficChange {
    pub endpoint: String,
    pub arms: Vec<Arm>,
    /// None: keep the shadow; Some(None): remove it.
    pub shadow: Option<Option<Shadow>>,
    /// Who asks, as the history records it (`admin`, `guardrail`, `rollout`).
    pub by: String,
    /// Why, with the numbers, when the change was not an operator's.
    pub why: Option<String>,
    /// Apply only if the registry holds the policy this replica serves now
    /// (another replica did not change it first); the experiment loop's
    /// changes are conditional, so two replicas' loops never both step.
    pub if_unchanged: bool,
}

impl Core {
    /// Checks `change` against the registry's aliases and applies it: the
    /// next request uses the new policy, and no request sees half of it.
    /// Answers the endpoint before and after. Blocking (asks the registry).
    pub fn set_traffic(
        &self,
        change: TrafficChange,
    ) -> Result<(Arc<Endpoint>, Arc<Endpoint>), Error> {
        let TrafficChange {
            endpoint: name,
            arms,
            shadow,
            by,
            why,
            if_unchanged,
        } = change;
        let routes = self.routes();
        let Some(current) = routes.endpoints.get(&name).cloned() else {
            let configured: Vec<&str> = routes.endpoints.keys().map(String::as_str).collect();
            return Err(Error::NotFound(format!(
                "no endpoint \"{name}\" is configured (configured: {}); endpoints are defined in the --config file",
                if configured.is_empty() { "none".into() } else { configured.join(", ") }
            )));
        };
        drop(routes);
        let shadow = shadow.unwrap_or_else(|| current.shadow.clone());
        let aliases: Vec<String> = self
            .models()
            .info(&current.model)?
            .aliases
            .into_keys()
            .collect();
        let updated =
            crate::routing::check_traffic(&current.model, Some(&aliases), &arms, shadow.as_ref())
                .and_then(|()| current.with_traffic(arms, shadow))
                .map_err(|why| Error::InvalidInput(format!("endpoint \"{name}\": {why}")))?;
        if if_unchanged && same_policy(&updated.arms, updated.shadow.as_ref(), &current) {
            // A loop repeating a step this replica already follows (another
            // replica's loop took it first): nothing to store or audit.
            return Ok((Arc::clone(&current), current));
        }
        let stored = StoredPolicy::new(&updated, &by).to_json()?;
        self.store_traffic(&current, Some(stored), if_unchanged)?;
        Ok(self.apply(current, updated, &by, why))
    }

    /// Puts `endpoint` back on the `--config` file's policy and removes the
    /// stored one, so every replica goes back to its file. Blocking.
    pub fn reset_traffic(
        &self,
        name: &str,
        by: &str,
    ) -> Result<(Arc<Endpoint>, Arc<Endpoint>), Error> {
        let current = self.routes().endpoints.get(name).cloned();
        let configured = self.shared.configured(name);
        let (Some(current), Some(configured)) = (current, configured) else {
            return Err(Error::NotFound(format!(
                "no endpoint \"{name}\" is configured; endpoints are defined in the --config file"
            )));
        };
        let updated = current
            .with_traffic(configured.arms.clone(), configured.shadow.clone())
            .map_err(|why| Error::Internal(format!("endpoint \"{name}\": {why}")))?;
        self.store_traffic(&current, None, false)?;
        Ok(self.apply(
            current,
            updated,
            by,
            Some("reset to the --config file's policy".into()),
        ))
    }

    /// Writes `stored` (None: removes it) as `current`'s policy in the
    /// registry; `if_unchanged` refuses when the registry holds another
    /// policy than `current`'s. A registry that keeps no traffic is no
    /// error: the change is then this replica's only.
    fn store_traffic(
        &self,
        current: &Endpoint,
        stored: Option<String>,
        if_unchanged: bool,
    ) -> Result<(), Error> {
        let name = current.name.as_str();
        let configured = self.shared.configured(name);
        let written = self.models().registry().update_traffic(
            &current.model,
            name,
            &mut |seen: Option<&str>| {
                if if_unchanged {
                    let held = match seen {
                        Some(text) => StoredPolicy::parse(text).map(|p| (p.arms, p.shadow)),
                        None => configured.as_ref().map(|c| (c.arms.clone(), c.shadow.clone())),
                    };
                    let unchanged = held.is_some_and(|(arms, shadow)| {
                        same_policy(&arms, shadow.as_ref(), current)
                    });
                    if !unchanged {
                        return Err(Error::Refused(format!(
                            "endpoint \"{name}\": its traffic was changed meanwhile (by another replica: the registry holds a policy this replica does not serve yet); the change is tried again once this replica follows it"
                        )));
                    }
                }
                Ok(stored.clone())
            },
        );
        match written {
            Ok(()) => Ok(()),
            Err(Error::Unsupported(why)) => {
                tracing::warn!("endpoint {name}: the change applies to this replica only: {why}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Serves `updated` from the next request on, logs and audits it.
    fn apply(
        &self,
        current: Arc<Endpoint>,
        updated: Endpoint,
        by: &str,
        why: Option<String>,
    ) -> (Arc<Endpoint>, Arc<Endpoint>) {
        let name = updated.name.clone();
        let updated = Arc::new(updated);
        self.replace_endpoint(Arc::clone(&updated));
        let changed: Vec<&str> = updated
            .arms
            .iter()
            .filter(|a| {
                !current
                    .arms
                    .iter()
                    .any(|b| b.alias == a.alias && b.weight == a.weight)
            })
            .map(|a| a.alias.as_str())
            .collect();
        let weights: Vec<String> = updated
            .arms
            .iter()
            .map(|a| format!("{}={}", a.alias, a.weight))
            .collect();
        tracing::info!(
            "endpoint {name}: traffic set to {} by {by}",
            weights.join(", ")
        );
        let mut event = Event::new(
            &updated.model,
            &changed.join(","),
            super::history::action::TRAFFIC_SET,
            by,
        );
        event.endpoint = Some(name);
        event.arms = Some(updated.arms.clone());
        event.why = why;
        self.models().history().record(&event);
        (current, updated)
    }
}
