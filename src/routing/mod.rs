//! Endpoints and their traffic policy: which arm (an alias of the endpoint's
//! model) answers a request, and whether a shadow copy is sent.
//!
//! Order of precedence: a version or alias named in the request (URL or
//! `model_version`) ▸ the `x-podium-arm` override (header or gRPC metadata)
//! ▸ the sticky key's bucket ▸ a weighted random pick.

pub mod split;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::inference_table::LogPolicy;
use crate::registry::{VersionSpec, DEFAULT_ALIAS};

/// The header (and gRPC metadata key) that picks an arm explicitly.
pub const ARM_OVERRIDE: &str = "x-podium-arm";

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
    /// Shadow calls in flight; shared by the versions of this endpoint's policy.
    #[serde(skip)]
    shadow_in_flight: Arc<AtomicUsize>,
}

fn default_shadow_in_flight() -> usize {
    16
}

/// Request data routing may look at, whatever the protocol.
pub trait RequestMeta: Sync {
    /// A header (HTTP) or metadata value (gRPC), by lower-case name.
    fn header(&self, name: &str) -> Option<&str>;
    /// A request-level `parameters` value, as text.
    fn parameter(&self, name: &str) -> Option<String>;
}

/// For callers without headers or parameters.
pub struct NoMeta;

impl RequestMeta for NoMeta {
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
    fn parameter(&self, _: &str) -> Option<String> {
        None
    }
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub endpoint: String,
    pub model: String,
    /// The arm's alias, or the version/alias the request named.
    pub arm: String,
    pub spec: VersionSpec,
    /// The alias to send a shadow copy to, when this request was sampled.
    pub shadow: Option<String>,
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
        Ok(e)
    }

    /// Picks the arm for one request (see the module doc for the order).
    pub fn route(&self, version: Option<&str>, meta: &dyn RequestMeta) -> Route {
        let (arm, spec) = match (version.filter(|v| !v.is_empty()), meta.header(ARM_OVERRIDE)) {
            (Some(v), _) => (v.to_string(), VersionSpec::parse(Some(v))),
            (None, Some(alias)) if !alias.is_empty() => {
                (alias.to_string(), VersionSpec::Alias(alias.to_string()))
            }
            _ => {
                let i = if self.arms.len() == 1 {
                    0
                } else {
                    let bucket = match self.unit_id(meta) {
                        Some(key) => split::bucket(&self.experiment, &key),
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
            .map(|s| s.alias.clone());
        Route {
            endpoint: self.name.clone(),
            model: self.model.clone(),
            arm,
            spec,
            shadow,
        }
    }

    fn unit_id(&self, meta: &dyn RequestMeta) -> Option<String> {
        match self.sticky_key.as_ref()? {
            StickyKey::Header(h) => meta.header(h).map(str::to_string),
            StickyKey::Parameter(p) => meta.parameter(p),
            StickyKey::Cookie(name) => meta.header("cookie").and_then(|cookies| {
                cookies.split(';').find_map(|c| {
                    let (k, v) = c.trim().split_once('=')?;
                    (k == name).then(|| v.to_string())
                })
            }),
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
    pub fn route(
        &self,
        name: &str,
        version: Option<&str>,
        meta: &dyn RequestMeta,
    ) -> (Route, Option<Arc<Endpoint>>) {
        match self.endpoints.get(name) {
            Some(e) => (e.route(version, meta), Some(Arc::clone(e))),
            None => {
                let version = version.filter(|v| !v.is_empty());
                let arm = version.unwrap_or(DEFAULT_ALIAS).to_string();
                let spec = VersionSpec::parse(version);
                (
                    Route {
                        endpoint: name.to_string(),
                        model: name.to_string(),
                        arm,
                        spec,
                        shadow: None,
                    },
                    None,
                )
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

    struct Meta(Vec<(&'static str, &'static str)>);
    impl RequestMeta for Meta {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        }
        fn parameter(&self, name: &str) -> Option<String> {
            self.header(&format!("param:{name}")).map(str::to_string)
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
        let meta = Meta(vec![("x-podium-arm", "challenger"), ("x-user-id", "u1")]);
        let r = e.route(Some("3"), &meta);
        assert_eq!(
            (r.arm.as_str(), r.spec.clone()),
            ("3", VersionSpec::Number(3))
        );
        let r = e.route(None, &meta);
        assert_eq!(
            (r.arm.as_str(), r.model.as_str(), r.endpoint.as_str()),
            ("challenger", "fraud", "e")
        );
        let by_key = e.route(None, &Meta(vec![("x-user-id", "u1")])).arm;
        for _ in 0..50 {
            assert_eq!(e.route(None, &Meta(vec![("x-user-id", "u1")])).arm, by_key);
        }
    }

    #[test]
    fn cookies_and_parameters_are_sticky_keys() {
        let cookie = endpoint(Some(StickyKey::Cookie("uid".into())));
        let param = endpoint(Some(StickyKey::Parameter("user".into())));
        for user in ["a", "b", "c", "d", "e", "f"] {
            let c = Box::leak(format!("theme=dark; uid={user}; x=1").into_boxed_str());
            let via_cookie = cookie.route(None, &Meta(vec![("cookie", c)])).arm;
            let p = Box::leak(user.to_string().into_boxed_str());
            let via_param = param.route(None, &Meta(vec![("param:user", p)])).arm;
            // Same experiment, same key: the same arm whichever way it came.
            assert_eq!(via_cookie, via_param, "{user}");
        }
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
        assert_eq!(e.route(None, &NoMeta).shadow.as_deref(), Some("challenger"));
    }

    #[test]
    fn names_without_configuration_are_models_with_a_champion() {
        let table = RouteTable::new(vec![endpoint(None)]);
        let (r, e) = table.route("mlp", None, &NoMeta);
        assert!(e.is_none());
        assert_eq!((r.model.as_str(), r.arm.as_str()), ("mlp", "champion"));
        assert_eq!(
            table.route("mlp", Some("2"), &NoMeta).0.spec,
            VersionSpec::Number(2)
        );
        assert_eq!(table.model_of("e"), "fraud");
        assert_eq!(table.model_of("mlp"), "mlp");
    }
}
