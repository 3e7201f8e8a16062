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
mod tests {
    use super::*;

    fn aliases(model: &str) -> Lookup {
        match model {
            "fraud" => Lookup::Aliases(vec!["champion".into(), "challenger".into()]),
            "offline" => Lookup::Unreachable("MLflow is down".into()),
            _ => Lookup::Unknown,
        }
    }

    #[test]
    fn a_full_endpoint_parses() {
        let text = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
experiment = "exp-1"
sticky_key = { header = "X-User-Id" }
arms = [{ alias = "champion", weight = 90 }, { alias = "challenger", weight = 10 }]
shadow = { alias = "latest", fraction = 0.25 }
"#;
        let eps = parse(text, &aliases).unwrap().endpoints;
        assert_eq!(eps.len(), 1);
        let e = &eps[0];
        assert_eq!(
            (e.name.as_str(), e.model.as_str(), e.experiment.as_str()),
            ("fraud-ab", "fraud", "exp-1")
        );
        assert_eq!(e.sticky_key, Some(StickyKey::Header("x-user-id".into())));
        assert_eq!(e.arms.len(), 2);
        assert_eq!(e.shadow.as_ref().unwrap().max_in_flight, 16);
        assert_eq!(e.log, LogPolicy::default());
    }

    #[test]
    fn an_unreachable_registry_skips_the_alias_check_but_not_the_rest() {
        let text = "[[endpoint]]\nname = \"e\"\nmodel = \"offline\"\narms = [{ alias = \"champion\", weight = 1 }, { alias = \"canary\", weight = 1 }]\n";
        let eps = parse(text, &aliases).unwrap().endpoints;
        assert_eq!(eps[0].model, "offline");
        assert_eq!(eps[0].arms.len(), 2);
        let bad = text.replace("weight = 1 }]", "weight = -1 }]");
        assert!(parse(&bad, &aliases)
            .unwrap_err()
            .contains("weights must be 0 or more"));
    }

    #[test]
    fn a_readout_parses_with_its_defaults_and_strict_errors() {
        let ab = "[[endpoint]]\nname = \"e\"\nmodel = \"fraud\"\narms = [{ alias = \"champion\", weight = 1 }, { alias = \"challenger\", weight = 1 }]\n[endpoint.readout]\n";
        let config = parse(
            &format!("{ab}metric = \"accuracy\"\nprediction_output = \"label\"\n"),
            &aliases,
        )
        .unwrap();
        assert_eq!(
            config.readouts,
            vec![ReadoutConfig {
                endpoint: "e".into(),
                metric: crate::experiments::Metric::Accuracy,
                prediction_output: Some("label".into()),
                baseline: "champion".into(),
                min_samples: 200,
                alpha: 0.05,
            }]
        );
        let cases = [
            (
                "metric = \"accuracy\"",
                "line 1: endpoint \"e\": readout: metric \"accuracy\" needs prediction_output",
            ),
            (
                "metric = \"mean\"\nprediction_output = \"label\"",
                "prediction_output is only used by metric \"accuracy\"",
            ),
            (
                "metric = \"mean\"\nbaseline = \"prod\"",
                "baseline \"prod\" is not one of the endpoint's arms (champion, challenger)",
            ),
            (
                "metric = \"mean\"\nmin_samples = 1",
                "min_samples 1 is too small",
            ),
            (
                "metric = \"mean\"\nalpha = 0.5",
                "alpha 0.5 is not between 0 and 0.5",
            ),
            (
                "metric = \"ctr\"",
                "unknown variant `ctr`, expected one of `accuracy`, `conversion`, `mean`",
            ),
            (
                "metric = \"mean\"\nmin_sample = 5",
                "unknown field `min_sample`",
            ),
        ];
        for (body, want) in cases {
            let err = parse(&format!("{ab}{body}\n"), &aliases).unwrap_err();
            assert!(err.contains(want), "{err:?} does not contain {want:?}");
        }
    }

    #[test]
    fn a_model_batching_section_parses_strictly() {
        let text = "[model.fraud.batching]\nmax_batch_size = 64\nmax_queue_delay_us = 200\npreferred_batch_sizes = [32, 8, 16, 64]\n";
        let config = parse(text, &aliases).unwrap();
        let p = &config.batching["fraud"];
        assert_eq!(p.max_batch_size, 64);
        assert_eq!(p.max_queue_delay, std::time::Duration::from_micros(200));
        assert_eq!(p.preferred_batch_sizes, vec![8, 16, 32, 64]);
        let defaults = parse("[model.fraud.batching]\nmax_batch_size = 8\n", &aliases).unwrap();
        assert_eq!(
            defaults.batching["fraud"].max_queue_delay,
            std::time::Duration::ZERO
        );
        assert!(defaults.batching["fraud"].preferred_batch_sizes.is_empty());
        let cases = [
            ("\n[model.nope.batching]\nmax_batch_size = 8\n", "line 2: [model.nope]: model \"nope\" is not in the registry"),
            ("[model.fraud.batching]\nmax_batch_size = 1\n", "line 1: [model.fraud.batching]: max_batch_size 1 is not between 2 and 4096"),
            ("[model.fraud.batching]\nmax_batch_size = 8\npreferred_batch_sizes = [16]\n", "preferred batch size 16 is not between 1 and max_batch_size 8"),
            ("[model.fraud.batching]\nmax_batch_size = 8\nmax_delay_us = 5\n", "unknown field `max_delay_us`, expected one of `max_batch_size`, `max_queue_delay_us`, `preferred_batch_sizes`"),
            ("[model.fraud.batching]\nmax_queue_delay_us = 5\n", "missing field `max_batch_size`"),
            ("[model.fraud]\nbatch = true\n", "unknown field `batch`"),
            ("[model.fraud.batching]\nmax_batch_size = -4\n", "max_batch_size"),
        ];
        for (text, want) in cases {
            let err = parse(text, &aliases).unwrap_err();
            assert!(err.contains(want), "{err:?} does not contain {want:?}");
        }
        // An unreachable registry: checked once it answers (at load).
        let offline = parse("[model.offline.batching]\nmax_batch_size = 8\n", &aliases).unwrap();
        assert!(offline.batching.contains_key("offline"));
    }

    #[test]
    fn a_model_onnxruntime_section_parses_strictly() {
        use crate::runtime::options::{ExecutionProvider, GraphOptimization};
        let text = "[model.fraud.onnxruntime]\nintra_op_threads = 4\ngraph_optimization = \"extended\"\nexecution_providers = [\"cuda\", \"cpu\"]\n";
        let o = &parse(text, &aliases).unwrap().onnxruntime["fraud"];
        assert_eq!(o.intra_op_threads, Some(4));
        assert_eq!(o.graph_optimization, Some(GraphOptimization::Extended));
        assert_eq!(
            o.execution_providers,
            Some(vec![ExecutionProvider::Cuda, ExecutionProvider::Cpu])
        );
        assert_eq!(
            (o.inter_op_threads, o.spinning, o.memory_arena),
            (None, None, None)
        );
        let cases = [
            ("[model.fraud.onnxruntime]\nspin = true\n", "unknown field `spin`"),
            ("[model.fraud.onnxruntime]\nspinning = 1\n", "invalid type: integer `1`, expected a boolean"),
            ("[model.fraud.onnxruntime]\ninter_op_threads = 5000\n", "line 1: [model.fraud.onnxruntime]: inter_op_threads 5000 is not between 1 and 1024"),
            ("[model.nope.onnxruntime]\nspinning = true\n", "model \"nope\" is not in the registry"),
        ];
        for (text, want) in cases {
            let err = parse(text, &aliases).unwrap_err();
            assert!(err.contains(want), "{err:?} does not contain {want:?}");
        }
    }

    #[test]
    fn a_model_backend_parses_and_tract_needs_its_feature() {
        let ort = parse("[model.fraud]\nbackend = \"ort\"\n", &aliases).unwrap();
        assert_eq!(ort.backends["fraud"], Backend::Ort);
        let err = parse("[model.fraud]\nbackend = \"onnx\"\n", &aliases).unwrap_err();
        assert!(
            err.contains("unknown variant `onnx`, expected `ort` or `tract`"),
            "{err}"
        );
        let tract = parse("\n[model.fraud]\nbackend = \"tract\"\n", &aliases);
        if cfg!(feature = "tract") {
            assert_eq!(tract.unwrap().backends["fraud"], Backend::Tract);
        } else {
            let err = tract.unwrap_err();
            assert!(
                err.contains("line 2: [model.fraud] backend: backend \"tract\" needs a Podium built with the tract feature (cargo build --features tract)"),
                "{err}"
            );
        }
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let base =
            |body: &str| format!("\n[[endpoint]]\nname = \"e\"\nmodel = \"fraud\"\n{body}\n");
        let cases = [
            (base("arms = [{ alias = \"champion\", weight = 0 }]"), "line 2: endpoint \"e\": all arm weights are 0"),
            (base("arms = [{ alias = \"champion\", weight = -1 }]"), "weights must be 0 or more"),
            (base("arms = [{ alias = \"prod\", weight = 1 }]"), "model \"fraud\" has no alias \"prod\" (its aliases: champion, challenger); set it with `podium alias set fraud prod N`"),
            (base("arms = []"), "has no arms"),
            (base("arms = [{ alias = \"champion\", weight = 1 }]\nshadow = { alias = \"challenger\", fraction = 2 }"), "shadow fraction 2 is not between 0 and 1"),
            (base("arms = [{ alias = \"champion\", weight = 1 }]\nshadow = { alias = \"challenger\", fraction = 0.5, max_in_flight = 0 }"), "line 2: endpoint \"e\": shadow max_in_flight is 0, so no copy to \"challenger\" could ever be sent; allow at least 1 (the default is 16), or remove the shadow"),
            (base("arms = [{ alias = \"champion\", weight = 1 }, { alias = \"champion\", weight = 1 }]"), "listed twice"),
            ("[[endpoint]]\nname = \"e\"\nmodel = \"nope\"\narms = [{ alias = \"champion\", weight = 1 }]".into(), "model \"nope\" is not in the registry"),
            (base("arms = [{ alias = \"champion\", weight = 1 }]\ncolour = \"red\""), "unknown field `colour`"),
            (base("arms = [{ alias = \"champion\", weight = 1 }]\nlog_sample_fraction = 1.5"), "log_sample_fraction 1.5 is not between 0 and 1"),
            (format!("{}{}", base("arms = [{ alias = \"champion\", weight = 1 }]"), base("arms = [{ alias = \"champion\", weight = 1 }]")), "line 7: endpoint \"e\": the name is used twice"),
        ];
        for (text, want) in cases {
            let err = parse(&text, &aliases).unwrap_err();
            assert!(
                err.contains(want),
                "{err:?} does not contain {want:?}\n{text}"
            );
        }
    }
}
