//! Triton's model repository and model configuration rpcs over gRPC: the
//! answers of [`crate::api::triton`] as Triton's messages.

use tonic::{Request, Response, Status};

use super::api_key;
use super::proto::{
    model_config, model_input, model_version_policy, repository_index_response, DataType,
    ModelConfigRequest, ModelConfigResponse, ModelDynamicBatching, ModelInput, ModelOutput,
    ModelVersionPolicy, RepositoryIndexRequest, RepositoryIndexResponse,
};
use crate::api::error::grpc_status;
use crate::api::triton;
use crate::api::AppState;

/// `RepositoryIndex`: every model version and endpoint, or only the ready
/// ones. Needs a valid API key when `--api-keys` is on (any endpoint).
pub(super) fn repository_index(
    state: &AppState,
    req: Request<RepositoryIndexRequest>,
) -> Result<Response<RepositoryIndexResponse>, Status> {
    api_key(state, req.metadata(), None).map_err(|e| grpc_status(&e))?;
    let models = triton::repository_index(state, req.get_ref().ready)
        .into_iter()
        .map(|e| repository_index_response::ModelIndex {
            name: e.name,
            version: e.version,
            state: e.state.into(),
            reason: e.reason,
        })
        .collect();
    Ok(Response::new(RepositoryIndexResponse { models }))
}

/// `RepositoryModelLoad` / `RepositoryModelUnload`: refused with
/// FAILED_PRECONDITION (retrying does not help; moving an alias does), after
/// the API-key check of a call to `model`.
pub(super) fn model_control_refused<T>(
    state: &AppState,
    req: &Request<T>,
    model: &str,
    action: &str,
) -> Status {
    match api_key(state, req.metadata(), Some(model).filter(|m| !m.is_empty())) {
        Err(e) => grpc_status(&e),
        Ok(_) => Status::failed_precondition(triton::model_control_refused(state, model, action)),
    }
}

/// `ModelConfig`: the configuration of the version the name and version
/// resolve to, as for `ModelMetadata`.
pub(super) async fn model_config(
    state: &AppState,
    req: Request<ModelConfigRequest>,
) -> Result<Response<ModelConfigResponse>, Status> {
    api_key(state, req.metadata(), Some(&req.get_ref().name)).map_err(|e| grpc_status(&e))?;
    let req = req.into_inner();
    let config = triton::model_config(state, &req.name, Some(&req.version))
        .await
        .map_err(|e| grpc_status(&e))?;
    Ok(Response::new(ModelConfigResponse {
        config: Some(encode(config)),
    }))
}

fn encode(config: triton::ModelConfig) -> super::proto::ModelConfig {
    let data_type =
        |name: &str| DataType::from_str_name(name).unwrap_or(DataType::TypeInvalid) as i32;
    super::proto::ModelConfig {
        name: config.name,
        platform: triton::ModelConfig::PLATFORM.into(),
        backend: triton::ModelConfig::BACKEND.into(),
        // Every registered version answers by number (loaded on first use).
        version_policy: Some(ModelVersionPolicy {
            policy_choice: Some(model_version_policy::PolicyChoice::All(
                model_version_policy::All {},
            )),
        }),
        max_batch_size: i32::try_from(config.max_batch_size).unwrap_or(i32::MAX),
        input: config
            .inputs
            .into_iter()
            .map(|t| ModelInput {
                name: t.name,
                data_type: data_type(t.data_type),
                format: model_input::Format::None as i32,
                dims: t.dims,
            })
            .collect(),
        output: config
            .outputs
            .into_iter()
            .map(|t| ModelOutput {
                name: t.name,
                data_type: data_type(t.data_type),
                dims: t.dims,
            })
            .collect(),
        scheduling_choice: config.dynamic_batching.map(|b| {
            model_config::SchedulingChoice::DynamicBatching(ModelDynamicBatching {
                preferred_batch_size: b
                    .preferred_batch_sizes
                    .into_iter()
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
                    .collect(),
                max_queue_delay_microseconds: b.max_queue_delay_microseconds,
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DataType as Tensor;

    #[test]
    fn every_triton_type_name_is_in_the_proto() {
        for datatype in Tensor::ALL {
            let name = triton::triton_type(datatype);
            assert!(DataType::from_str_name(name).is_some(), "{name}");
        }
    }
}
