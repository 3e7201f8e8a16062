//! OIP gRPC (`inference.GRPCInferenceService`, Triton's numbering) and the
//! standard `grpc.health.v1.Health`, on their own listener. Same core, same
//! checks and same error texts as REST; only the status codes differ.

mod codec;

/// Code generated from proto/grpc_service.proto.
pub mod proto {
    tonic::include_proto!("inference");
}

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{Stream, StreamExt};
use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::*;

use crate::api::error::http_status;
use crate::api::{AppState, CLIENT_REQUEST_ID, REQUEST_ID};
use crate::error::Error;
use crate::inference_table::{new_request_id, Entry, Protocol};
use crate::serving::HealthSummary;
use tokio::sync::watch;

/// Requests of one `ModelStreamInfer` stream that may run at once (answers stay in order).
const STREAM_CONCURRENCY: usize = 16;

/// The gRPC face of the core.
pub struct GrpcApi {
    state: Arc<AppState>,
}

/// The one mapping from core errors to gRPC status codes.
pub fn status(e: Error) -> Status {
    let code = code(&e);
    Status::new(code, e.to_string())
}

/// The gRPC code of a core error.
pub fn code(e: &Error) -> tonic::Code {
    use tonic::Code;
    match e {
        Error::InvalidInput(_) | Error::Unsupported(_) => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::PayloadTooLarge(_) | Error::Overloaded(_) => Code::ResourceExhausted,
        Error::Unavailable(_) | Error::Registry(_) => Code::Unavailable,
        Error::Refused(_) => Code::FailedPrecondition,
        Error::Internal(_) => Code::Internal,
    }
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
        let ready = self.state.core.models.readiness().is_ok();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        req: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        // As Triton does: an unknown model or version is simply not ready,
        // so `tritonclient.grpc.is_model_ready` answers False, not an error.
        let req = req.into_inner();
        let (model, spec) = self
            .state
            .core
            .routes
            .load()
            .describe(&req.name, Some(&req.version));
        let ready = self
            .state
            .core
            .models
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
            extensions: vec!["binary_tensor_data".into()],
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let req = req.into_inner();
        let models = &self.state.core.models;
        let (model, spec) = self
            .state
            .core
            .routes
            .load()
            .describe(&req.name, Some(&req.version));
        let loaded = models.get(&model, &spec).await.map_err(status)?;
        let info = models.info(&model).map_err(status)?;
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
        let started = Instant::now();
        let request_id = new_request_id();
        let (metadata, _, msg) = req.into_parts();
        let (response, timing, endpoint, arm) = logged(&self.state, &request_id, &metadata, msg)
            .await
            .map_err(|e| {
                let mut s = status(e);
                if let Ok(v) = request_id.parse() {
                    s.metadata_mut().insert(REQUEST_ID, v);
                }
                s
            })?;
        let version = response.model_version.clone();
        let mut out = Response::new(response);
        let md = out.metadata_mut();
        for (key, value) in [
            (REQUEST_ID, request_id),
            ("x-podium-endpoint", endpoint),
            ("x-podium-arm", arm),
            ("x-podium-model-version", version),
            ("x-podium-queue-us", timing.queue.as_micros().to_string()),
            (
                "x-podium-inference-us",
                timing.inference.as_micros().to_string(),
            ),
            (
                "x-podium-total-us",
                started.elapsed().as_micros().to_string(),
            ),
        ] {
            if let Ok(v) = value.parse::<MetadataValue<_>>() {
                md.insert(key, v);
            }
        }
        Ok(out)
    }

    type ModelStreamInferStream = ResponseStream;

    async fn model_stream_infer(
        &self,
        req: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let state = Arc::clone(&self.state);
        // The stream's metadata (arm override, sticky header) applies to each request on it.
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
                    Ok(
                        match logged(&state, &new_request_id(), &metadata, msg).await {
                            Ok((response, ..)) => ModelStreamInferResponse {
                                error_message: String::new(),
                                infer_response: Some(response),
                            },
                            Err(e) => ModelStreamInferResponse {
                                error_message: e.to_string(),
                                infer_response: Some(failed),
                            },
                        },
                    )
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(answers)))
    }
}

type Answer = (ModelInferResponse, crate::request::Timing, String, String);

/// Runs one request and records its row in the inference table.
async fn logged(
    state: &AppState,
    request_id: &str,
    metadata: &tonic::metadata::MetadataMap,
    msg: ModelInferRequest,
) -> Result<Answer, Error> {
    let mut entry = state.table_entry(request_id, &msg.model_name, Protocol::Grpc);
    if let Some(e) = entry.as_mut() {
        e.client_request_id(
            metadata
                .get(CLIENT_REQUEST_ID)
                .and_then(|v| v.to_str().ok()),
        );
    }
    let result = infer(state, metadata, msg, entry.as_mut()).await;
    if let Some(mut e) = entry {
        let (grpc, http, error) = match &result {
            Ok(_) => (tonic::Code::Ok, 200, None),
            Err(err) => (code(err), http_status(err).as_u16(), Some(err.to_string())),
        };
        e.grpc_status(grpc as i32);
        state.submit(Some(e), http, error);
    }
    result
}

async fn infer(
    state: &AppState,
    metadata: &tonic::metadata::MetadataMap,
    msg: ModelInferRequest,
    mut entry: Option<&mut Entry>,
) -> Result<Answer, Error> {
    let decoded = codec::decode(msg)?;
    if let Some(e) = entry.as_deref_mut() {
        e.client_request_id(decoded.request.id.as_deref());
        e.request_tensors(&decoded.request);
    }
    let meta = GrpcMeta {
        metadata,
        parameters: &decoded.parameters,
    };
    let response = state
        .core
        .infer(
            &decoded.model,
            Some(&decoded.version),
            &meta,
            decoded.request,
            entry.as_deref_mut().map(Entry::served),
        )
        .await?;
    let (timing, endpoint, arm) = (
        response.timing,
        response.endpoint.clone(),
        response.arm.clone(),
    );
    if let Some(e) = entry {
        e.response_tensors_copy(&response);
    }
    Ok((codec::encode(response), timing, endpoint, arm))
}

/// Metadata and request parameters, for routing (sticky key, arm override).
struct GrpcMeta<'a> {
    metadata: &'a tonic::metadata::MetadataMap,
    parameters: &'a std::collections::HashMap<String, InferParameter>,
}

impl crate::routing::RequestMeta for GrpcMeta<'_> {
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
            .map(|m| {
                m.replace("%20", " ")
                    .replace("%3A", ":")
                    .replace("%2C", ",")
            })
            .unwrap_or_default();
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        if let Ok(v) = http::HeaderValue::from_str(&oversize_text(&tonic_message)) {
            headers.insert("grpc-message", v);
        }
    }
    response
}

/// Keeps `grpc.health.v1` in step with the reconciler's health summary:
/// the server ("") is SERVING when ready, and each model when its default
/// alias has a version serving. Statuses are set when the summary changes.
pub async fn follow_health(reporter: HealthReporter, mut health: watch::Receiver<HealthSummary>) {
    loop {
        let summary = health.borrow_and_update().clone();
        update_health(&reporter, &summary).await;
        if health.changed().await.is_err() {
            return; // the store is gone
        }
    }
}

/// Sets every health status once from `summary`: the server's, and each
/// model's.
pub async fn update_health(reporter: &HealthReporter, summary: &HealthSummary) {
    let serving = |ok: bool| {
        if ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    reporter
        .set_service_status("", serving(summary.ready))
        .await;
    reporter
        .set_service_status("inference.GRPCInferenceService", serving(summary.ready))
        .await;
    for (model, &loaded) in &summary.models {
        reporter.set_service_status(model, serving(loaded)).await;
    }
}
