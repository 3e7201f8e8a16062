//! Traffic changes: an endpoint's weights (and shadow) replaced in one
//! atomic store, checked like the configuration file and written to the
//! alias history. The admin API's `PUT /admin/endpoints/{name}/traffic` and
//! the experiment loop (guardrail trips, rollout steps) both come here.

use std::sync::Arc;

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
            &by,
        );
        event.endpoint = Some(name);
        event.arms = Some(updated.arms.clone());
        event.why = why;
        self.models().history().record(&event);
        Ok((current, updated))
    }
}
