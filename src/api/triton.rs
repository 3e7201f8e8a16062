//! What Triton's tools ask of a server beyond inference, answered once for
//! both protocols: the model repository index, the refusal of explicit
//! load/unload (the registry manages what is loaded), a model's
//! configuration in Triton's terms, and which names `grpc.health.v1`
//! reports. The REST and gRPC codecs only render these.

use std::collections::BTreeMap;

use crate::api::AppState;
use crate::error::Error;
use crate::registry::VersionSpec;
use crate::runtime::TensorSpec;
use crate::tensor::DataType;

/// What server metadata lists in `extensions` (REST and gRPC): Triton's
/// names of the extensions Podium implements.
pub const EXTENSIONS: [&str; 3] = [
    "binary_tensor_data",
    "model_repository",
    "model_configuration",
];

/// Triton's state of a model version that answers requests.
pub const READY: &str = "READY";
/// Triton's state of a model version that is known but does not answer.
pub const UNAVAILABLE: &str = "UNAVAILABLE";
/// Triton's state of a model version being loaded.
pub const LOADING: &str = "LOADING";

/// One entry of the repository index: a model version (or an endpoint)
/// and whether it answers requests now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    /// The version number; empty for a model with no version at all, or an
    /// endpoint whose first arm serves nothing.
    pub version: String,
    /// [`READY`], [`LOADING`] or [`UNAVAILABLE`].
    pub state: &'static str,
    /// Why it is not ready; empty when it is.
    pub reason: String,
}

/// Every model version the server knows, then every endpoint, sorted by
/// name and version: registered versions, loaded ones (by an alias, kept
/// for rollback, or pinned by number) and versions an alias points at. A
/// loaded version is READY; a version an alias points at but that does not
/// serve is LOADING or UNAVAILABLE with the alias's reason; any other
/// registered version is UNAVAILABLE until a request names it by number.
/// An endpoint is READY when each of its arms has a version serving; its
/// version is the one its first arm (the champion or baseline) serves. An
/// endpoint named as a registry model is listed once, as the model.
/// `ready_only`: only the READY entries (Triton's `ready: true`).
pub fn repository_index(state: &AppState, ready_only: bool) -> Vec<IndexEntry> {
    let models = state.core.models();
    let status = models.status();
    let mut per_model: BTreeMap<String, BTreeMap<u64, (&'static str, String)>> = BTreeMap::new();
    for name in models.model_names() {
        let versions = per_model.entry(name.clone()).or_default();
        for v in models.info(&name).map(|i| i.versions).unwrap_or_default() {
            let reason = format!(
                "registered, not loaded: no alias points at it; a request for version {v} loads it"
            );
            versions.insert(v, (UNAVAILABLE, reason));
        }
    }
    for slot in &status.slots {
        if slot.serving_version == Some(slot.registry_version) {
            continue;
        }
        let why = slot.last_error.as_deref().unwrap_or(slot.state);
        let state = if slot.state == "loading" {
            LOADING
        } else {
            UNAVAILABLE
        };
        let reason = format!(
            "alias \"{}\" points at it but it does not serve: {why}",
            slot.alias
        );
        per_model
            .entry(slot.model.clone())
            .or_default()
            .insert(slot.registry_version, (state, reason));
    }
    for resident in &status.resident {
        per_model
            .entry(resident.model.clone())
            .or_default()
            .insert(resident.version, (READY, String::new()));
    }

    let mut index = Vec::new();
    for (name, versions) in per_model {
        if versions.is_empty() {
            index.push(IndexEntry {
                name,
                version: String::new(),
                state: UNAVAILABLE,
                reason: "no versions registered".into(),
            });
            continue;
        }
        for (version, (state, reason)) in versions {
            index.push(IndexEntry {
                name: name.clone(),
                version: version.to_string(),
                state,
                reason,
            });
        }
    }
    let routes = state.core.routes();
    // An endpoint named as a model is that model's default route: the
    // model's versions above already describe it.
    let mut endpoints: Vec<_> = routes
        .endpoints
        .values()
        .filter(|e| !models.knows(&e.name))
        .collect();
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    for endpoint in endpoints {
        let arms: Vec<(&str, Option<u64>)> = endpoint
            .arms
            .iter()
            .map(|arm| {
                (
                    arm.alias.as_str(),
                    serving(state, &endpoint.model, &arm.alias),
                )
            })
            .collect();
        let idle: Vec<String> = arms
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(alias, _)| format!("{}@{alias}", endpoint.model))
            .collect();
        index.push(IndexEntry {
            name: endpoint.name.clone(),
            version: arms
                .first()
                .and_then(|(_, v)| *v)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            state: if idle.is_empty() { READY } else { UNAVAILABLE },
            reason: if idle.is_empty() {
                String::new()
            } else {
                format!("endpoint arms with no version serving: {}", idle.join(", "))
            },
        });
    }
    if ready_only {
        index.retain(|e| e.state == READY);
    }
    index
}

/// The version `model@alias` serves, if it serves one.
fn serving(state: &AppState, model: &str, alias: &str) -> Option<u64> {
    match state
        .core
        .models()
        .ready(model, &VersionSpec::Alias(alias.to_string()))
    {
        Ok((version, true)) => Some(version),
        _ => None,
    }
}

/// The answer to Triton's explicit load and unload (`POST
/// /v2/repository/models/{model}/load|unload`, gRPC `RepositoryModelLoad` /
/// `RepositoryModelUnload`): Podium loads what the registry's aliases name,
/// so the call is refused with the command that does what the caller wants.
pub fn model_control_refused(state: &AppState, name: &str, action: &str) -> String {
    let (model, _) = state.core.routes().describe(name, None);
    format!(
        "cannot {action} \"{name}\" on request: models are managed by the registry; move an alias instead \
         (podium alias set {model} champion VERSION, or PUT /admin/models/{model}/aliases/champion): \
         Podium loads the version an alias names and unloads what no alias needs"
    )
}

/// A model version's configuration in Triton's terms (`ModelConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// The name asked for: a model or an endpoint.
    pub name: String,
    /// The version described (of the endpoint's first arm for an endpoint).
    pub version: u64,
    /// 0 unless the model batches requests dynamically; then its
    /// `max_batch_size`, and the dims below leave out the batch dimension
    /// (Triton's convention).
    pub max_batch_size: u32,
    /// Present when the model batches requests dynamically.
    pub dynamic_batching: Option<DynamicBatching>,
    pub inputs: Vec<TensorConfig>,
    pub outputs: Vec<TensorConfig>,
}

impl ModelConfig {
    /// Triton's platform for an ONNX model.
    pub const PLATFORM: &'static str = "onnxruntime_onnx";
    /// Triton's backend for an ONNX model.
    pub const BACKEND: &'static str = "onnxruntime";
}

/// `[model.<name>.batching]` as Triton's `dynamic_batching`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicBatching {
    pub preferred_batch_sizes: Vec<u32>,
    pub max_queue_delay_microseconds: u64,
}

/// One input or output of a [`ModelConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorConfig {
    pub name: String,
    /// Triton's `DataType` name: `TYPE_FP32`, `TYPE_STRING`, …
    pub data_type: &'static str,
    /// -1 for a dimension of any size.
    pub dims: Vec<i64>,
}

/// The configuration of what `name` (a model or an endpoint) and `version`
/// (a number, an alias, or None for the default route) serve, read from the
/// loaded version itself: its signature and its batching. A version named
/// by number is loaded first, as for its metadata.
pub async fn model_config(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<ModelConfig, Error> {
    let (model, spec) = state.core.routes().describe(name, version);
    let loaded = state.core.models().get(&model, &spec).await?;
    let policy = loaded.batcher().map(|b| b.policy().clone());
    let batched = policy.is_some();
    let tensors = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|s| TensorConfig {
                name: s.name.clone(),
                data_type: triton_type(s.datatype),
                // Batching needs a dynamic first dimension on every tensor,
                // so it is always there to leave out.
                dims: if batched {
                    s.shape.iter().skip(1).copied().collect()
                } else {
                    s.shape.clone()
                },
            })
            .collect()
    };
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(ModelConfig {
        name: name.to_string(),
        version: loaded.version,
        max_batch_size: policy.as_ref().map_or(0, |p| to_u32(p.max_batch_size)),
        dynamic_batching: policy.map(|p| DynamicBatching {
            preferred_batch_sizes: p.preferred_batch_sizes.iter().map(|&n| to_u32(n)).collect(),
            max_queue_delay_microseconds: u64::try_from(p.max_queue_delay.as_micros())
                .unwrap_or(u64::MAX),
        }),
        inputs: tensors(&loaded.signature.inputs),
        outputs: tensors(&loaded.signature.outputs),
    })
}

/// Triton's `DataType` name of a tensor datatype (`BYTES` is `TYPE_STRING`).
pub fn triton_type(datatype: DataType) -> &'static str {
    match datatype {
        DataType::Bool => "TYPE_BOOL",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Uint16 => "TYPE_UINT16",
        DataType::Uint32 => "TYPE_UINT32",
        DataType::Uint64 => "TYPE_UINT64",
        DataType::Int8 => "TYPE_INT8",
        DataType::Int16 => "TYPE_INT16",
        DataType::Int32 => "TYPE_INT32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Fp16 => "TYPE_FP16",
        DataType::Bf16 => "TYPE_BF16",
        DataType::Fp32 => "TYPE_FP32",
        DataType::Fp64 => "TYPE_FP64",
        DataType::Bytes => "TYPE_STRING",
    }
}

/// The names `grpc.health.v1` reports and whether each serves: the server
/// (`""` and the inference service) when it is ready; each model when its
/// default alias serves (`models`, from the health summary); each endpoint
/// when every arm has a version serving (an endpoint shadows a model of the
/// same name, as routing does).
pub fn health_statuses(
    state: &AppState,
    ready: bool,
    models: &BTreeMap<String, bool>,
) -> BTreeMap<String, bool> {
    let mut statuses = models.clone();
    statuses.insert(String::new(), ready);
    statuses.insert("inference.GRPCInferenceService".into(), ready);
    for endpoint in state.core.routes().endpoints.values() {
        let serving = endpoint
            .arms
            .iter()
            .all(|arm| serving(state, &endpoint.model, &arm.alias).is_some());
        statuses.insert(endpoint.name.clone(), serving);
    }
    statuses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_has_a_triton_name() {
        for datatype in DataType::ALL {
            let name = triton_type(datatype);
            let expected = match datatype {
                DataType::Bytes => "TYPE_STRING".to_string(),
                other => format!("TYPE_{}", other.name()),
            };
            assert_eq!(name, expected);
        }
    }
}
