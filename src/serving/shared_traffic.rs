//! Traffic shared by replicas: a traffic change is stored in the registry
//! (a file beside a local registry's model, a registered-model tag in
//! MLflow) and every replica follows it like an alias, so an experiment's
//! split is the same on every replica behind the load balancer.
//!
//! The `--config` file's policy is where each endpoint starts; a stored
//! policy wins until it is removed (`DELETE /admin/endpoints/{name}/traffic`,
//! `podium traffic reset`). The replica that makes a change audits it in
//! the alias history; the others follow it with a log line only, so the
//! history (shared, with a local registry) holds each change once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::Core;
use crate::error::Error;
use crate::routing::{Arm, Endpoint, RouteTable, Shadow};

/// An endpoint's traffic policy as stored in the registry (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub arms: Vec<Arm>,
    #[serde(default)]
    pub shadow: Option<Shadow>,
    /// Who changed it, as the history names them.
    #[serde(default)]
    pub by: String,
}

impl StoredPolicy {
    pub fn new(endpoint: &Endpoint, by: &str) -> StoredPolicy {
        StoredPolicy {
            arms: endpoint.arms.clone(),
            shadow: endpoint.shadow.clone(),
            by: by.to_string(),
        }
    }

    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self)
            .map_err(|e| Error::Internal(format!("encode a traffic policy: {e}")))
    }

    /// None when `text` is not a policy (written by hand, or by a newer Podium).
    pub fn parse(text: &str) -> Option<StoredPolicy> {
        serde_json::from_str(text).ok()
    }
}

/// Whether `endpoint` routes `arms` with `shadow` (weights compared exactly:
/// they travel as JSON numbers, which round-trip).
pub fn same_policy(arms: &[Arm], shadow: Option<&Shadow>, endpoint: &Endpoint) -> bool {
    arms == endpoint.arms.as_slice() && shadow == endpoint.shadow.as_ref()
}

/// What following needs to remember: the configured policies, and which
/// unreadable stored policies were already reported.
pub(super) struct SharedTraffic {
    /// Replaced by a configuration reload.
    configured: RwLock<HashMap<String, Arc<Endpoint>>>,
    reported: Mutex<HashMap<String, String>>,
}

impl SharedTraffic {
    pub fn new(routes: &RouteTable) -> SharedTraffic {
        SharedTraffic {
            configured: RwLock::new(routes.endpoints.clone()),
            reported: Mutex::default(),
        }
    }

    /// The `--config` file's policy of `endpoint`.
    pub fn configured(&self, endpoint: &str) -> Option<Arc<Endpoint>> {
        let configured = self.configured.read().unwrap_or_else(|p| p.into_inner());
        configured.get(endpoint).cloned()
    }

    /// The policies of a reloaded `--config` file: what `reset` and an
    /// endpoint with nothing stored go back to from now on.
    pub fn set_configured(&self, endpoints: &[Arc<Endpoint>]) {
        let endpoints = endpoints
            .iter()
            .map(|e| (e.name.clone(), Arc::clone(e)))
            .collect();
        *self.configured.write().unwrap_or_else(|p| p.into_inner()) = endpoints;
    }

    /// Logs `why` about `endpoint` once, until it changes.
    fn report(&self, endpoint: &str, why: String) {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if reported.get(endpoint) != Some(&why) {
            tracing::warn!("{why}");
            reported.insert(endpoint.to_string(), why);
        }
    }
}

impl Core {
    /// Makes every configured endpoint follow the policy stored in the
    /// registry (or the `--config` file's, when none is stored); answers
    /// each endpoint that changed, before and after. An endpoint whose
    /// model cannot be read keeps its policy. Blocking (asks the registry).
    pub fn follow_stored_traffic(&self) -> Vec<(Arc<Endpoint>, Arc<Endpoint>)> {
        let routes = self.routes();
        let mut by_model: BTreeMap<&str, Vec<&Arc<Endpoint>>> = BTreeMap::new();
        for endpoint in routes.endpoints.values() {
            by_model.entry(&endpoint.model).or_default().push(endpoint);
        }
        let mut changed = Vec::new();
        for (model, endpoints) in by_model {
            let stored = match self.models().registry().stored_traffic(model) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::debug!("cannot read the stored traffic of model \"{model}\": {e}");
                    continue;
                }
            };
            for current in endpoints {
                if let Some(updated) = self.follow(current, stored.get(&current.name)) {
                    changed.push((Arc::clone(current), updated));
                }
            }
        }
        drop(routes);
        for (_, updated) in &changed {
            self.replace_endpoint(Arc::clone(updated));
        }
        changed
    }

    /// The policy `current` should have now, when it differs.
    fn follow(&self, current: &Endpoint, stored: Option<&String>) -> Option<Arc<Endpoint>> {
        let name = &current.name;
        let (arms, shadow, whose) = match stored {
            Some(text) => {
                let Some(policy) = StoredPolicy::parse(text) else {
                    self.shared.report(name, format!(
                        "endpoint {name}: the traffic policy stored in the registry is not one Podium reads ({text}); keeping the current one; `podium traffic reset {name}` removes it"
                    ));
                    return None;
                };
                let whose = format!("stored in the registry by {}", policy.by);
                (policy.arms, policy.shadow, whose)
            }
            None => {
                let configured = self.shared.configured(name)?;
                let whose = "the --config file's (none stored)".to_string();
                (configured.arms.clone(), configured.shadow.clone(), whose)
            }
        };
        if same_policy(&arms, shadow.as_ref(), current) {
            return None;
        }
        let weights: Vec<String> = arms
            .iter()
            .map(|a| format!("{}={}", a.alias, a.weight))
            .collect();
        match current.with_traffic(arms, shadow) {
            Ok(updated) => {
                tracing::info!(
                    "endpoint {name}: following traffic {}, {whose}",
                    weights.join(", ")
                );
                Some(Arc::new(updated))
            }
            Err(why) => {
                self.shared.report(
                    name,
                    format!("endpoint {name}: not following the traffic {whose}: {why}"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry::Registry as _;
    use crate::runtime::pool::InferencePool;
    use crate::serving::test_registry::Fixture;
    use crate::serving::{Reconciler, TrafficChange};

    /// One replica's core: its own routes over the shared registry.
    fn replica(fx: &Fixture) -> Core {
        let arms = vec![arm("champion", 90.0), arm("challenger", 10.0)];
        let ab = Endpoint::new("ab".into(), "fraud".into(), "exp".into(), arms, None, None);
        let pool = InferencePool::start(1, 4).unwrap();
        Core::new(
            Arc::clone(&fx.store),
            pool,
            None,
            RouteTable::new(vec![ab.unwrap()]),
        )
    }

    fn arm(alias: &str, weight: f64) -> Arm {
        Arm {
            alias: alias.into(),
            weight,
        }
    }

    fn step(challenger: f64) -> TrafficChange {
        TrafficChange {
            endpoint: "ab".into(),
            arms: vec![
                arm("champion", 100.0 - challenger),
                arm("challenger", challenger),
            ],
            shadow: None,
            by: "rollout".into(),
            why: None,
            if_unchanged: true,
        }
    }

    fn challenger_weight(core: &Core) -> f64 {
        core.routes().endpoints["ab"].arms[1].weight
    }

    #[tokio::test]
    async fn only_the_loop_that_saw_the_stored_split_steps_and_the_others_follow() {
        let fx = Fixture::fraud(0);
        fx.registry
            .inner
            .set_alias("fraud", "challenger", 2)
            .unwrap();
        let _reconciler = Reconciler::spawn(Arc::clone(&fx.store), Duration::from_secs(60));
        fx.store.refresh().await.unwrap();
        let (a, b) = (replica(&fx), replica(&fx));

        // Both loops decide to step at once: A's write lands first…
        a.set_traffic(step(50.0)).unwrap();
        // …so B's, made against the split it still serves, is refused.
        let refused = b.set_traffic(step(50.0)).unwrap_err();
        assert!(matches!(refused, Error::Refused(_)), "{refused}");
        assert!(
            refused.to_string().contains("changed meanwhile"),
            "{refused}"
        );
        assert_eq!(challenger_weight(&b), 10.0);

        // B follows the stored split (A has nothing to follow)…
        assert!(a.follow_stored_traffic().is_empty());
        let followed = b.follow_stored_traffic();
        assert_eq!(followed.len(), 1);
        assert_eq!(challenger_weight(&b), 50.0);
        // Its loop taking that step again changes and audits nothing…
        b.set_traffic(step(50.0)).unwrap();
        // …and its next step goes through; A follows it.
        b.set_traffic(step(100.0)).unwrap();
        a.follow_stored_traffic();
        assert_eq!(challenger_weight(&a), 100.0);
        let history = fx.history();
        assert_eq!(history.matches("\"action\":\"traffic_set\"").count(), 2);

        // A reset removes the stored split: both are back on the config's.
        a.reset_traffic("ab", "admin").unwrap();
        assert!(fx
            .registry
            .inner
            .stored_traffic("fraud")
            .unwrap()
            .is_empty());
        b.follow_stored_traffic();
        assert_eq!((challenger_weight(&a), challenger_weight(&b)), (10.0, 10.0));
    }
}
