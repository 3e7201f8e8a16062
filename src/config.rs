//! The endpoint configuration file (`podium serve --config podium.toml`).
//!
//! ```toml
//! [[endpoint]]
//! name = "fraud"                      # what clients call: /v2/models/fraud/infer
//! model = "fraud"                     # the registry model its arms are aliases of
//! experiment = "fraud-2026-11"        # salts sticky assignment [default: the name]
//! sticky_key = { header = "x-user-id" }  # or { cookie = "uid" } or { parameter = "user_id" }
//! arms = [
//!   { alias = "champion", weight = 90 },
//!   { alias = "challenger", weight = 10 },
//! ]
//! shadow = { alias = "candidate", fraction = 0.2, max_in_flight = 16 }
//! log_sample_fraction = 0.1           # share of requests in the inference table [default: 1]
//! log_payloads = false                # keep metadata only, no bodies [default: true]
//!
//! [endpoint.readout]                  # the live experiment readout (see `readout`)
//! metric = "accuracy"
//! prediction_output = "label"
//!
//! [endpoint.guardrail]                # limits of the challenger arms (see `experiment_loop`)
//! max_error_rate = 0.02
//!
//! [endpoint.rollout]                  # the challenger's weight steps and promotion
//! steps = [1, 5, 25, 50]
//!
//! [model.mlp]
//! backend = "tract"                   # ort | tract [default: --backend]; tract
//!                                     # needs a build with the tract feature
//!
//! [model.mlp.batching]               # dynamic batching of a model's requests
//! max_batch_size = 64                 # (see `batching`)
//! max_queue_delay_us = 200
//! preferred_batch_sizes = [8, 16, 32, 64]
//! max_concurrent_batches = 2          # at most 2 batches running at once
//!
//! [model.mlp.onnxruntime]            # ONNX Runtime options of the model's
//! intra_op_threads = 2                # sessions, over the --ort-* defaults
//! ```
//!
//! Without a file, every model is an endpoint of the same name with one arm,
//! `champion`. Errors name the file, the line and the fix.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::experiments::{LoopConfig, ReadoutConfig};
use crate::routing::{check_traffic, Arm, Endpoint, LogPolicy, Shadow, StickyKey};
use crate::runtime::batch::BatchingPolicy;
use crate::runtime::options::OrtOverrides;
use crate::runtime::Backend;

mod batching;
mod experiment_loop;
mod readout;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    endpoint: Vec<Spanned<EndpointConfig>>,
    /// Settings per model name.
    #[serde(default)]
    model: BTreeMap<String, Spanned<batching::ModelToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointConfig {
    name: String,
    model: String,
    #[serde(default)]
    experiment: Option<String>,
    arms: Vec<ArmConfig>,
    #[serde(default)]
    sticky_key: Option<StickyKeyConfig>,
    #[serde(default)]
    shadow: Option<ShadowConfig>,
    /// The share of requests the inference table records [default: 1].
    #[serde(default = "one")]
    log_sample_fraction: f64,
    /// Whether the table keeps request and response bodies [default: true].
    #[serde(default = "yes")]
    log_payloads: bool,
    /// The deadline of requests that set none themselves [default: none].
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// The experiment readout [default: none].
    #[serde(default)]
    readout: Option<readout::ReadoutToml>,
    /// The challenger arms' limits [default: none].
    #[serde(default)]
    guardrail: Option<experiment_loop::GuardrailToml>,
    /// The challenger's gradual rollout [default: none].
    #[serde(default)]
    rollout: Option<experiment_loop::RolloutToml>,
}

/// A checked configuration file: the endpoints, and the readouts of those
/// that have one.
#[derive(Debug, Default)]
pub struct Config {
    pub endpoints: Vec<Endpoint>,
    pub readouts: Vec<ReadoutConfig>,
    /// Dynamic batching per model name.
    pub batching: HashMap<String, BatchingPolicy>,
    /// ONNX Runtime options per model name, over the `--ort-*` defaults.
    pub onnxruntime: HashMap<String, OrtOverrides>,
    /// The engine per model name that names one, over `--backend`.
    pub backends: HashMap<String, Backend>,
    /// The experiment loops of endpoints with a guardrail or a rollout.
    pub loops: Vec<LoopConfig>,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmConfig {
    alias: String,
    weight: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum StickyKeyConfig {
    Header(String),
    Cookie(String),
    Parameter(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowConfig {
    alias: String,
    fraction: f64,
    #[serde(default = "default_shadow_in_flight")]
    max_in_flight: usize,
}

fn default_shadow_in_flight() -> usize {
    crate::routing::DEFAULT_SHADOW_IN_FLIGHT
}

/// What the registry says about a model a configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Registered, with these aliases.
    Aliases(Vec<String>),
    /// The registry answered: no such model.
    Unknown,
    /// The registry could not be asked (why): the model and its aliases are
    /// not checked, and the endpoint serves once the registry answers.
    Unreachable(String),
}

/// Reads and checks `path`; `known_aliases(model)` says what the registry
/// knows of a model.
pub fn load(path: &Path, known_aliases: &dyn Fn(&str) -> Lookup) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text, known_aliases).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses and checks a configuration text.
pub fn parse(text: &str, known_aliases: &dyn Fn(&str) -> Lookup) -> Result<Config, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let line =
        |span: std::ops::Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
    let mut names = HashSet::new();
    let mut endpoints = Vec::new();
    let mut readouts = Vec::new();
    let mut loops = Vec::new();
    for spanned in file.endpoint {
        let at = line(spanned.span());
        let c = spanned.into_inner();
        let err = |why: String| format!("line {at}: endpoint \"{}\": {why}", c.name);
        if !names.insert(c.name.clone()) {
            return Err(err(
                "the name is used twice; give each endpoint its own name".into(),
            ));
        }
        let aliases = match known_aliases(&c.model) {
            Lookup::Aliases(aliases) => Some(aliases),
            Lookup::Unknown => {
                return Err(err(format!(
                    "model \"{}\" is not in the registry; register it first or fix the name",
                    c.model
                )))
            }
            Lookup::Unreachable(why) => {
                tracing::warn!(
                    "line {at}: endpoint \"{}\": cannot check model \"{}\" and its aliases now ({why}); the endpoint answers once the registry does",
                    c.name,
                    c.model
                );
                None
            }
        };
        let arms: Vec<Arm> = c
            .arms
            .iter()
            .map(|a| Arm {
                alias: a.alias.clone(),
                weight: a.weight,
            })
            .collect();
        let shadow = c.shadow.map(|s| Shadow {
            alias: s.alias,
            fraction: s.fraction,
            max_in_flight: s.max_in_flight,
        });
        check_traffic(&c.model, aliases.as_deref(), &arms, shadow.as_ref()).map_err(err)?;
        let readout = c
            .readout
            .map(|r| r.check(&c.name, &arms))
            .transpose()
            .map_err(err)?;
        let guardrail = c
            .guardrail
            .map(|g| g.check(readout.as_ref()))
            .transpose()
            .map_err(err)?;
        let rollout = c
            .rollout
            .map(|r| r.check(readout.as_ref(), &arms))
            .transpose()
            .map_err(err)?;
        if guardrail.is_some() || rollout.is_some() {
            loops.push(LoopConfig {
                endpoint: c.name.clone(),
                guardrail,
                rollout,
            });
        }
        readouts.extend(readout);
        let sticky_key = c.sticky_key.map(|k| match k {
            StickyKeyConfig::Header(h) => StickyKey::Header(h.to_ascii_lowercase()),
            StickyKeyConfig::Cookie(c) => StickyKey::Cookie(c),
            StickyKeyConfig::Parameter(p) => StickyKey::Parameter(p),
        });
        if !(0.0..=1.0).contains(&c.log_sample_fraction) {
            return Err(err(format!(
                "log_sample_fraction {} is not between 0 and 1 (1 records every request)",
                c.log_sample_fraction
            )));
        }
        let experiment = c.experiment.clone().unwrap_or_else(|| c.name.clone());
        let mut endpoint = Endpoint::new(
            c.name.clone(),
            c.model.clone(),
            experiment,
            arms,
            sticky_key,
            shadow,
        )
        .map_err(err)?;
        endpoint.log = LogPolicy {
            sample_fraction: c.log_sample_fraction,
            payloads: c.log_payloads,
        };
        endpoint.timeout = match c.timeout_ms {
            Some(0) => {
                return Err(err(
                    "timeout_ms 0 would fail every request; leave it out for no deadline".into(),
                ))
            }
            ms => ms.map(std::time::Duration::from_millis),
        };
        endpoints.push(endpoint);
    }
    let mut batching = HashMap::new();
    let mut onnxruntime = HashMap::new();
    let mut backends = HashMap::new();
    for (model, spanned) in file.model {
        let at = line(spanned.span());
        let err = |why: String| format!("line {at}: {why}");
        if known_aliases(&model) == Lookup::Unknown {
            return Err(err(format!(
                "[model.{model}]: model \"{model}\" is not in the registry; register it first or fix the name"
            )));
        }
        let mut settings = spanned.into_inner();
        if let Some(backend) = settings.backend(&model).map_err(err)? {
            backends.insert(model.clone(), backend);
        }
        if let Some(options) = settings.onnxruntime(&model).map_err(err)? {
            onnxruntime.insert(model.clone(), options);
        }
        if let Some(policy) = settings.batching(&model).map_err(err)? {
            batching.insert(model, policy);
        }
    }
    Ok(Config {
        endpoints,
        readouts,
        batching,
        onnxruntime,
        backends,
        loops,
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;
