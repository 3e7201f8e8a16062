//! Endpoints and their traffic policy: which arm (an alias of the endpoint's
//! model) answers a request, and whether a shadow copy is sent.
//!
//! Order of precedence: a version or alias named in the request (URL or
//! `model_version`) ▸ the arm override (`x-podium-arm`) ▸ the sticky key's
//! bucket ▸ a weighted random pick.
//!
//! Routing sees plain values ([`RouteKeys`]): reading them from headers,
//! cookies, gRPC metadata or request parameters is the API layer's work.

mod check;
pub mod split;

pub use check::{check_traffic, DEFAULT_SHADOW_IN_FLIGHT};

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::registry::{VersionSpec, DEFAULT_ALIAS};

/// One alias an endpoint routes to, with its share of traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub alias: String,
    pub weight: f64,
}

/// Where the unit id for sticky assignment comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StickyKey {
    /// A request header (lower-case), e.g. `x-user-id`; gRPC metadata likewise.
    Header(String),
    /// A cookie of the `cookie` header.
    Cookie(String),
    /// A request-level OIP `parameters` key.
    Parameter(String),
}

/// A copy of a share of traffic to another alias, whose answer is recorded
/// but never returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub alias: String,
    pub fraction: f64,
    /// Shadow calls of this endpoint running at once; more are skipped.
    #[serde(default = "default_shadow_in_flight")]
    pub max_in_flight: usize,
}

/// What clients call: a name, a model and a traffic policy over its aliases.
#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub name: String,
    pub model: String,
    /// Salts sticky assignment, so two experiments split users independently.
    pub experiment: String,
    pub arms: Vec<Arm>,
    #[serde(skip)]
    bounds: Vec<u32>,
    pub sticky_key: Option<StickyKey>,
    pub shadow: Option<Shadow>,
    /// What the inference table records of this endpoint.
    pub log: LogPolicy,
    /// The deadline of a request that sets none itself.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "millis")]
    pub timeout: Option<Duration>,
    /// Shadow calls in flight; shared by the versions of this endpoint's policy.
    #[serde(skip)]
    shadow_in_flight: Arc<AtomicUsize>,
}

fn default_shadow_in_flight() -> usize {
    16
}

/// A timeout as whole milliseconds (`timeout_ms`) in the admin API's JSON.
fn millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

/// What a request says about its own routing, as plain values the API
/// layer read from headers, cookies, metadata or parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteKeys<'a> {
    /// An arm (alias) picked explicitly by the caller.
    pub arm_override: Option<&'a str>,
    /// The unit id for sticky assignment (the value of the endpoint's [`StickyKey`]).
    pub unit_id: Option<&'a str>,
}

/// What the inference table records of an endpoint's requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogPolicy {
    /// The fraction of requests that get a row, in [0, 1]; recorded in each row.
    pub sample_fraction: f64,
    /// false keeps the metadata columns only (no request/response bodies).
    pub payloads: bool,
}

impl Default for LogPolicy {
    fn default() -> LogPolicy {
        LogPolicy {
            sample_fraction: 1.0,
            payloads: true,
        }
    }
}

/// Where one request goes.
#[derive(Debug)]
pub struct Route {
    pub endpoint: String,
    pub model: String,
    /// The arm's alias, or the version/alias the request named.
    pub arm: String,
    pub spec: VersionSpec,
    /// The shadow copy this request was sampled for, if any.
    pub shadow: Option<ShadowDecision>,
}

/// A request sampled for a shadow copy.
#[derive(Debug)]
pub enum ShadowDecision {
    /// Send it to `alias`; the permit holds a place in the endpoint's budget.
    Send { alias: String, permit: ShadowPermit },
    /// The endpoint already runs `max_in_flight` shadow calls: skipped.
    OverBudget { alias: String, max_in_flight: usize },
}

impl ShadowDecision {
    /// The shadow arm's alias.
    pub fn alias(&self) -> &str {
        match self {
            ShadowDecision::Send { alias, .. } | ShadowDecision::OverBudget { alias, .. } => alias,
        }
    }
}

impl Endpoint {
    /// An endpoint; fails when every weight is zero.
    pub fn new(
        name: String,
        model: String,
        experiment: String,
        arms: Vec<Arm>,
        sticky_key: Option<StickyKey>,
        shadow: Option<Shadow>,
    ) -> Result<Endpoint, String> {
        let weights: Vec<f64> = arms.iter().map(|a| a.weight).collect();
        let bounds = split::bounds(&weights).ok_or_else(|| {
            "all arm weights are 0 (or their sum is not a finite number); give at least one arm a positive weight".to_string()
        })?;
        Ok(Endpoint {
            name,
            model,
            experiment,
            arms,
            bounds,
            sticky_key,
            shadow,
            log: LogPolicy::default(),
            timeout: None,
            shadow_in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The same endpoint with new weights and shadow (the admin API's traffic
    /// change); the shadow budget carries over.
    pub fn with_traffic(&self, arms: Vec<Arm>, shadow: Option<Shadow>) -> Result<Endpoint, String> {
        let mut e = Endpoint::new(
            self.name.clone(),
            self.model.clone(),
            self.experiment.clone(),
            arms,
            self.sticky_key.clone(),
            shadow,
        )?;
        e.shadow_in_flight = Arc::clone(&self.shadow_in_flight);
        e.log = self.log;
        e.timeout = self.timeout;
        Ok(e)
    }

    /// Shares `previous`'s count of shadow calls in flight, so a policy
    /// replaced by a configuration reload keeps the same shadow budget.
    pub fn keep_shadow_budget(&mut self, previous: &Endpoint) {
        self.shadow_in_flight = Arc::clone(&previous.shadow_in_flight);
    }

    /// Picks the arm for one request (see the module doc for the order).
    pub fn route(&self, version: Option<&str>, keys: RouteKeys) -> Route {
        let (arm, spec) = match (version.filter(|v| !v.is_empty()), keys.arm_override) {
            (Some(v), _) => (v.to_string(), VersionSpec::parse(Some(v))),
            (None, Some(alias)) if !alias.is_empty() => {
                (alias.to_string(), VersionSpec::Alias(alias.to_string()))
            }
            _ => {
                let i = if self.arms.len() == 1 {
                    0
                } else {
                    let bucket = match keys.unit_id {
                        Some(key) => split::bucket(&self.experiment, key),
                        None => split::random_bucket(),
                    };
                    split::pick(&self.bounds, bucket)
                };
                let alias = self.arms[i].alias.clone();
                (alias.clone(), VersionSpec::Alias(alias))
            }
        };
        let shadow = self
            .shadow
            .as_ref()
            .filter(|s| s.fraction > 0.0 && split::random_unit() < s.fraction)
            .map(|s| match self.shadow_permit() {
                Some(permit) => ShadowDecision::Send {
                    alias: s.alias.clone(),
                    permit,
                },
                None => ShadowDecision::OverBudget {
                    alias: s.alias.clone(),
                    max_in_flight: s.max_in_flight,
                },
            });
        Route {
            endpoint: self.name.clone(),
            model: self.model.clone(),
            arm,
            spec,
            shadow,
        }
    }

    /// Takes a place in the shadow budget; None when it is spent.
    pub fn shadow_permit(&self) -> Option<ShadowPermit> {
        let max = self.shadow.as_ref()?.max_in_flight;
        let counter = Arc::clone(&self.shadow_in_flight);
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ShadowPermit(counter)),
                Err(now) => current = now,
            }
        }
    }
}

/// One place in an endpoint's shadow budget, given back when dropped.
#[derive(Debug)]
pub struct ShadowPermit(Arc<AtomicUsize>);

impl Drop for ShadowPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The configured endpoints; a name that is not configured is the model of
/// that name with one arm, `champion`.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub endpoints: HashMap<String, Arc<Endpoint>>,
}

impl RouteTable {
    pub fn new(endpoints: Vec<Endpoint>) -> RouteTable {
        RouteTable {
            endpoints: endpoints
                .into_iter()
                .map(|e| (e.name.clone(), Arc::new(e)))
                .collect(),
        }
    }

    /// Routes a request to `name` (an endpoint, or else a model).
    pub fn route(&self, name: &str, version: Option<&str>, keys: RouteKeys) -> Route {
        match self.endpoints.get(name) {
            Some(e) => e.route(version, keys),
            None => {
                let version = version.filter(|v| !v.is_empty());
                Route {
                    endpoint: name.to_string(),
                    model: name.to_string(),
                    arm: version.unwrap_or(DEFAULT_ALIAS).to_string(),
                    spec: VersionSpec::parse(version),
                    shadow: None,
                }
            }
        }
    }

    /// The model and version a metadata or readiness call on `name` means:
    /// for an endpoint without a version, its first arm.
    pub fn describe(&self, name: &str, version: Option<&str>) -> (String, VersionSpec) {
        let version = version.filter(|v| !v.is_empty());
        match (self.endpoints.get(name), version) {
            (Some(e), Some(v)) => (e.model.clone(), VersionSpec::parse(Some(v))),
            (Some(e), None) => (e.model.clone(), VersionSpec::Alias(e.arms[0].alias.clone())),
            (None, v) => (name.to_string(), VersionSpec::parse(v)),
        }
    }

    /// Where the sticky unit id of requests to `name` comes from, if anywhere.
    pub fn sticky_key(&self, name: &str) -> Option<&StickyKey> {
        self.endpoints.get(name)?.sticky_key.as_ref()
    }

    /// The endpoints (sorted) whose arms or shadow route to `model@alias`.
    pub fn users_of(&self, model: &str, alias: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .endpoints
            .values()
            .filter(|e| e.model == model)
            .filter(|e| {
                e.arms.iter().any(|a| a.alias == alias)
                    || e.shadow.as_ref().is_some_and(|s| s.alias == alias)
            })
            .map(|e| e.name.clone())
            .collect();
        users.sort();
        users
    }

    /// The deadline of requests to `name` that set none themselves.
    pub fn default_timeout(&self, name: &str) -> Option<Duration> {
        self.endpoints.get(name)?.timeout
    }

    /// What the inference table records of requests to `name`.
    pub fn log_policy(&self, name: &str) -> LogPolicy {
        self.endpoints
            .get(name)
            .map_or_else(LogPolicy::default, |e| e.log)
    }

    /// The model behind `name`.
    pub fn model_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.endpoints
            .get(name)
            .map(|e| e.model.as_str())
            .unwrap_or(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(arm_override: Option<&'a str>, unit_id: Option<&'a str>) -> RouteKeys<'a> {
        RouteKeys {
            arm_override,
            unit_id,
        }
    }

    fn endpoint(sticky: Option<StickyKey>) -> Endpoint {
        let arms = vec![
            Arm {
                alias: "champion".into(),
                weight: 90.0,
            },
            Arm {
                alias: "challenger".into(),
                weight: 10.0,
            },
        ];
        Endpoint::new("e".into(), "fraud".into(), "exp".into(), arms, sticky, None).unwrap()
    }

    #[test]
    fn precedence_version_then_override_then_key() {
        let e = endpoint(Some(StickyKey::Header("x-user-id".into())));
        let both = keys(Some("challenger"), Some("u1"));
        let r = e.route(Some("3"), both);
        assert_eq!(
            (r.arm.as_str(), r.spec.clone()),
            ("3", VersionSpec::Number(3))
        );
        let r = e.route(None, both);
        assert_eq!(
            (r.arm.as_str(), r.model.as_str(), r.endpoint.as_str()),
            ("challenger", "fraud", "e")
        );
        let by_key = e.route(None, keys(None, Some("u1"))).arm;
        for _ in 0..50 {
            assert_eq!(e.route(None, keys(None, Some("u1"))).arm, by_key);
        }
    }

    #[test]
    fn sticky_units_split_by_weight() {
        let e = endpoint(Some(StickyKey::Header("x-user-id".into())));
        let challenger = (0..10_000)
            .filter(|i| {
                let unit = format!("user-{i}");
                e.route(None, keys(None, Some(&unit))).arm == "challenger"
            })
            .count();
        assert!((800..1200).contains(&challenger), "{challenger} of 10000");
    }

    #[test]
    fn the_shadow_budget_is_bounded_and_given_back() {
        let arms = vec![Arm {
            alias: "champion".into(),
            weight: 1.0,
        }];
        let shadow = Some(Shadow {
            alias: "challenger".into(),
            fraction: 1.0,
            max_in_flight: 2,
        });
        let e = Endpoint::new(
            "e".into(),
            "m".into(),
            "e".into(),
            arms.clone(),
            None,
            shadow.clone(),
        )
        .unwrap();
        let (a, b) = (e.shadow_permit().unwrap(), e.shadow_permit().unwrap());
        assert!(e.shadow_permit().is_none());
        drop(a);
        let changed = e.with_traffic(arms, shadow).unwrap();
        let c = changed.shadow_permit().unwrap();
        assert!(
            changed.shadow_permit().is_none(),
            "the budget carries over a traffic change"
        );
        drop((b, c));
        assert!(e.shadow_permit().is_some());
        let routed = e.route(None, RouteKeys::default());
        assert!(
            matches!(&routed.shadow, Some(ShadowDecision::Send { alias, .. }) if alias == "challenger"),
            "{routed:?}"
        );
        let _held = (e.shadow_permit().unwrap(), e.shadow_permit());
        let over = e.route(None, RouteKeys::default());
        assert!(
            matches!(
                over.shadow,
                Some(ShadowDecision::OverBudget {
                    max_in_flight: 2,
                    ..
                })
            ),
            "{over:?}"
        );
    }

    #[test]
    fn names_without_configuration_are_models_with_a_champion() {
        let table = RouteTable::new(vec![endpoint(None)]);
        let r = table.route("mlp", None, RouteKeys::default());
        assert_eq!((r.model.as_str(), r.arm.as_str()), ("mlp", "champion"));
        assert_eq!(
            table.route("mlp", Some("2"), RouteKeys::default()).spec,
            VersionSpec::Number(2)
        );
        assert_eq!(table.model_of("e"), "fraud");
        assert_eq!(table.model_of("mlp"), "mlp");
    }
}
