//! OIP gRPC (`inference.GRPCInferenceService`, Triton's numbering, with
//! Triton's model configuration and repository rpcs, `grpc/triton.rs`) and the
//! standard `grpc.health.v1.Health` (`grpc/health.rs`), on their own listener.
//! Same core, same checks and same error texts as REST; only the status
//! codes differ.

mod codec;
mod health;
mod triton;

pub use health::{follow_health, update_health, RECHECK_INTERVAL};

/// Code generated from proto/grpc_service.proto.
pub mod proto {
    tonic::include_proto!("inference");
}

use std::pin::Pin;
use std::sync::Arc;
use tracing::Instrument;

use futures_util::{Stream, StreamExt};
use percent_encoding::percent_decode_str;
use tonic::codegen::http;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::*;

use crate::api::call::{Call, Outcome, CLIENT_REQUEST_ID, PER_CALL_METADATA};
use crate::api::error::grpc_status;
use crate::api::keys::RequestKeys;
use crate::api::trace_context::{TRACEPARENT, TRACESTATE};
use crate::api::AppState;
use crate::auth::{presented, Requester};
use crate::error::Error;
use crate::inference_table::Protocol;

/// Requests of one `ModelStreamInfer` stream that may run at once (answers stay in order).
const STREAM_CONCURRENCY: usize = 16;

/// The gRPC face of the core.
pub struct GrpcApi {
    state: Arc<AppState>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for GrpcApi {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.core.models().readiness().is_ok();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        req: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        api_key(&self.state, req.metadata(), Some(&req.get_ref().name))
            .map_err(|e| grpc_status(&e))?;
        // As Triton does: an unknown model or version is simply not ready,
        // so `tritonclient.grpc.is_model_ready` answers False, not an error.
        let req = req.into_inner();
        let (model, spec) = self
            .state
            .core
            .routes()
            .describe(&req.name, Some(&req.version));
        let ready = self
            .state
            .core
            .models()
            .ready(&model, &spec)
            .is_ok_and(|(_, ready)| ready);
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "podium".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::api::triton::EXTENSIONS
                .iter()
                .map(|e| e.to_string())
                .collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        api_key(&self.state, req.metadata(), Some(&req.get_ref().name))
            .map_err(|e| grpc_status(&e))?;
        let req = req.into_inner();
        let models = self.state.core.models();
        let (model, spec) = self
            .state
            .core
            .routes()
            .describe(&req.name, Some(&req.version));
        let loaded = models
            .get(&model, &spec)
            .await
            .map_err(|e| grpc_status(&e))?;
        let info = models.info(&model).map_err(|e| grpc_status(&e))?;
        let tensors = |specs: &[crate::runtime::TensorSpec]| {
            specs
                .iter()
                .map(|s| model_metadata_response::TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.datatype.name().into(),
                    shape: s.shape.clone(),
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: req.name,
            versions: info.versions.iter().map(u64::to_string).collect(),
            platform: "onnx_onnxv1".into(),
            inputs: tensors(&loaded.signature.inputs),
            outputs: tensors(&loaded.signature.outputs),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let (metadata, _, msg) = req.into_parts();
        let (result, call_metadata) = infer(&self.state, &metadata, msg).await;
        match result {
            Ok(answer) => {
                let mut out = Response::new(answer);
                write_metadata(out.metadata_mut(), call_metadata);
                Ok(out)
            }
            Err(e) => {
                let mut status = grpc_status(&e);
                write_metadata(status.metadata_mut(), call_metadata);
                Err(status)
            }
        }
    }

    type ModelStreamInferStream = ResponseStream;

    async fn model_stream_infer(
        &self,
        req: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        // A stream without a valid key is refused as a whole; each message
        // is checked again (endpoint, rate, a key revoked meanwhile).
        if let Some(keys) = &self.state.api_keys {
            keys.authenticate(presented(|name| req.metadata().get(name)?.to_str().ok()))
                .map_err(|e| grpc_status(&e))?;
        }
        let state = Arc::clone(&self.state);
        // The stream's metadata (arm override, sticky header, API key) applies to each request on it.
        let metadata = Arc::new(req.metadata().clone());
        let answers = req
            .into_inner()
            .map(move |msg| {
                let state = Arc::clone(&state);
                let metadata = Arc::clone(&metadata);
                async move {
                    let msg = msg.map_err(oversize_is_resource_exhausted)?;
                    // A failed request's answer still names it, so a client
                    // can tell which one failed (as Triton does).
                    let failed = ModelInferResponse {
                        model_name: msg.model_name.clone(),
                        model_version: msg.model_version.clone(),
                        id: msg.id.clone(),
                        ..Default::default()
                    };
                    Ok(match infer(&state, &metadata, msg).await.0 {
                        Ok(response) => ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(e) => ModelStreamInferResponse {
                            error_message: e.to_string(),
                            infer_response: Some(failed),
                        },
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn model_config(
        &self,
        req: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        triton::model_config(&self.state, req).await
    }

    async fn repository_index(
        &self,
        req: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        triton::repository_index(&self.state, req)
    }

    async fn repository_model_load(
        &self,
        req: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let model = req.get_ref().model_name.clone();
        Err(triton::model_control_refused(
            &self.state,
            &req,
            &model,
            "load",
        ))
    }

    async fn repository_model_unload(
        &self,
        req: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let model = req.get_ref().model_name.clone();
        Err(triton::model_control_refused(
            &self.state,
            &req,
            &model,
            "unload",
        ))
    }
}

/// One message through the call pipeline: the answer, and the call's
/// metadata (request id; endpoint, arm, version and timings once answered).
async fn infer(
    state: &AppState,
    metadata: &MetadataMap,
    mut msg: ModelInferRequest,
) -> (
    Result<ModelInferResponse, Error>,
    Vec<(&'static str, String)>,
) {
    let name = std::mem::take(&mut msg.model_name);
    // A refused call never reaches the pipeline: no row, no model touched.
    let requester = match api_key(
        state,
        metadata,
        Some(name.as_str()).filter(|n| !n.is_empty()),
    ) {
        Ok(requester) => requester,
        Err(refused) => return (Err(refused), Vec::new()),
    };
    let client_id = metadata
        .get(CLIENT_REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    let mut call = Call::start(state, Protocol::Grpc, &name, client_id, requester.as_ref());
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
    call.trace(text(TRACEPARENT), text(TRACESTATE));
    let result = if name.is_empty() {
        Err(Error::InvalidInput(
            "model_name is empty; name the model to run".into(),
        ))
    } else {
        let span = call.span();
        answer(&mut call, metadata, msg).instrument(span).await
    };
    let call_metadata = call.metadata();
    call.finish(match &result {
        Ok(_) => Outcome::Ok,
        Err(error) => Outcome::Failed { error, body: None },
    });
    (result, call_metadata)
}

async fn answer(
    call: &mut Call<'_>,
    metadata: &MetadataMap,
    msg: ModelInferRequest,
) -> Result<ModelInferResponse, Error> {
    let decoded = codec::decode(msg)?;
    call.client_request_id(decoded.request.id.as_deref());
    call.request_tensors(&decoded.request);
    call.route(
        Some(&decoded.version),
        &GrpcKeys {
            metadata,
            parameters: &decoded.parameters,
        },
    )?;
    let model = call.resolve().await?;
    let response = call.infer(model, decoded.request).await?;
    call.response_tensors_copy(&response);
    Ok(codec::encode(response))
}

/// The API-key check of one call to `endpoint` when `--api-keys` is on:
/// the key's name, or the refusal (UNAUTHENTICATED, PERMISSION_DENIED,
/// RESOURCE_EXHAUSTED). The key is read from the `authorization: Bearer`
/// or `x-api-key` metadata, as REST reads the headers.
fn api_key(
    state: &AppState,
    metadata: &MetadataMap,
    endpoint: Option<&str>,
) -> Result<Option<Requester>, Error> {
    let Some(keys) = &state.api_keys else {
        return Ok(None);
    };
    let key = presented(|name| metadata.get(name)?.to_str().ok());
    keys.check(key, endpoint).map(Some)
}

/// Copies a call's metadata into a gRPC response's or status's metadata.
fn write_metadata(md: &mut MetadataMap, call_metadata: Vec<(&'static str, String)>) {
    for (key, value) in call_metadata {
        if let Ok(mut v) = value.parse::<MetadataValue<_>>() {
            // Values new in every answer are sent without HPACK indexing:
            // indexed, each would be compared with its name's older values
            // and then push the repeating ones (endpoint, arm, version) out
            // of the connection's header table.
            v.set_sensitive(PER_CALL_METADATA.contains(&key));
            md.insert(key, v);
        }
    }
}

/// Metadata and request parameters, where routing's keys may come from.
struct GrpcKeys<'a> {
    metadata: &'a MetadataMap,
    parameters: &'a std::collections::HashMap<String, InferParameter>,
}

impl RequestKeys for GrpcKeys<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.metadata.get(name)?.to_str().ok()
    }

    fn parameter(&self, name: &str) -> Option<String> {
        use infer_parameter::ParameterChoice as P;
        Some(
            match self.parameters.get(name)?.parameter_choice.as_ref()? {
                P::StringParam(s) => s.clone(),
                P::Int64Param(i) => i.to_string(),
                P::Uint64Param(u) => u.to_string(),
                P::BoolParam(b) => b.to_string(),
                P::DoubleParam(d) => d.to_string(),
            },
        )
    }
}

/// The inference service with Podium's message-size limit.
pub fn service(state: Arc<AppState>) -> GrpcInferenceServiceServer<GrpcApi> {
    let limit = state.max_request_bytes;
    GrpcInferenceServiceServer::new(GrpcApi { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
}

const OVERSIZE: &str = "decoded message length too large";

fn oversize_text(tonic_message: &str) -> String {
    format!(
        "request message too large ({}); raise the limit with --max-request-bytes / PODIUM_MAX_REQUEST_BYTES",
        tonic_message.trim_start_matches("Error, ")
    )
}

fn oversize_is_resource_exhausted(s: Status) -> Status {
    if s.code() == tonic::Code::OutOfRange && s.message().contains(OVERSIZE) {
        Status::resource_exhausted(oversize_text(s.message()))
    } else {
        s
    }
}

/// tonic refuses an oversize message with OUT_OF_RANGE before any handler
/// runs; gRPC convention (and our REST 413) is RESOURCE_EXHAUSTED.
pub fn remap_oversize<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let oversize = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| {
                m.contains("decoded%20message%20length%20too%20large") || m.contains(OVERSIZE)
            });
    if oversize {
        let tonic_message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(|m| percent_decode_str(m).decode_utf8_lossy().into_owned())
            .unwrap_or_default();
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        if let Ok(v) = http::HeaderValue::from_str(&oversize_text(&tonic_message)) {
            headers.insert("grpc-message", v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::call::{REQUEST_ID, TOTAL_US};

    #[test]
    fn only_values_new_in_every_answer_skip_hpack_indexing() {
        let mut md = MetadataMap::new();
        write_metadata(
            &mut md,
            vec![
                (REQUEST_ID, "3f2a".into()),
                ("x-podium-endpoint", "fraud".into()),
                (TOTAL_US, "87".into()),
                ("x-podium-model-version", "2".into()),
            ],
        );
        let sensitive = |k: &str| md.get(k).map(|v| v.is_sensitive());
        assert_eq!(sensitive(REQUEST_ID), Some(true));
        assert_eq!(sensitive(TOTAL_US), Some(true));
        assert_eq!(sensitive("x-podium-endpoint"), Some(false));
        assert_eq!(sensitive("x-podium-model-version"), Some(false));
        assert_eq!(md.get(TOTAL_US).unwrap(), "87");
    }
}
