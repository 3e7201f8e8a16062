//! MLflow's scoring protocol on the REST port, so `mlflow models serve`
//! clients and Databricks-style callers move to Podium unchanged:
//! `POST /invocations` (the default endpoint), `POST
//! /serving-endpoints/{name}/invocations`, `GET /ping`, `/health`, `/version`.
//!
//! A body is a data frame (`dataframe_split`, `dataframe_records`, records
//! in `instances`, or CSV with a header row) or tensors (`inputs`, rows in
//! `instances`); see [`frame`] for how columns become inputs. A call is
//! routed first, then its body is decoded against the signature of the
//! version that answers it, so the arms of a split may differ in signature.

mod csv;
mod error;
mod frame;
#[cfg(test)]
mod fuzz;
mod json;
mod predictions;

use std::sync::Arc;
use tracing::Instrument;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Extension;
use serde_json::{Map, Value};

use super::body::{header_text, off_runtime, read_body};
use super::respond::respond;
use crate::api::call::{Call, CLIENT_REQUEST_ID};
use crate::api::keys::RequestKeys;
use crate::api::trace_context::{TRACEPARENT, TRACESTATE};
use crate::api::AppState;
use crate::auth::Requester;
use crate::error::Error;
use crate::inference_table::Protocol;
use crate::request::InferRequest;
use error::mlflow_error;

type S = State<Arc<AppState>>;

pub async fn ping() -> &'static str {
    "\n"
}

pub async fn version() -> String {
    format!("podium {}", env!("CARGO_PKG_VERSION"))
}

/// `POST /invocations`: the endpoint named by `--default-endpoint`, else the
/// one thing this server serves when there is only one (an endpoint, or a
/// model without one); with several it is refused, naming them.
pub async fn invocations(
    state: S,
    requester: Option<Extension<Requester>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let requester = requester.map(|Extension(r)| r);
    match default_endpoint(&state.0) {
        Ok(name) => invoke(state, name, requester, headers, body).await,
        // Still one row, under the `_unknown` endpoint.
        Err(e) => {
            let mut call = Call::start(
                &state,
                Protocol::Invocations,
                "",
                header_text(&headers, CLIENT_REQUEST_ID),
                requester.as_ref(),
            );
            call.trace(
                header_text(&headers, TRACEPARENT),
                header_text(&headers, TRACESTATE),
            );
            respond(call, Err(e), mlflow_error)
        }
    }
}

/// `POST /serving-endpoints/{name}/invocations` (Databricks style).
pub async fn endpoint_invocations(
    state: S,
    Path(name): Path<String>,
    requester: Option<Extension<Requester>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(state, name, requester.map(|Extension(r)| r), headers, body).await
}

/// What `POST /invocations` serves, or why it cannot tell.
pub(super) fn default_endpoint(state: &AppState) -> Result<String, Error> {
    if let Some(name) = &state.default_endpoint {
        return Ok(name.clone());
    }
    // The choices: every endpoint, and every model no endpoint of its own
    // name covers (an endpoint named after its model is one choice).
    let routes = state.core.routes();
    let mut names: Vec<String> = routes.endpoints.keys().cloned().collect();
    let models = state.core.models().model_names();
    let covered: std::collections::HashSet<&str> = routes
        .endpoints
        .values()
        .map(|e| e.model.as_str())
        .collect();
    let uncovered: Vec<String> = models
        .into_iter()
        .filter(|m| !covered.contains(m.as_str()) && !names.contains(m))
        .collect();
    names.extend(uncovered);
    names.sort();
    match names.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(Error::InvalidInput(format!(
            "/invocations needs a default endpoint: this server has {}; call /serving-endpoints/NAME/invocations or start it with --default-endpoint NAME",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        ))),
    }
}

/// One call through the pipeline: answered, and recorded in the inference
/// table when it is on.
async fn invoke(
    State(state): S,
    name: String,
    requester: Option<Requester>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut call = Call::start(
        &state,
        Protocol::Invocations,
        &name,
        header_text(&headers, CLIENT_REQUEST_ID),
        requester.as_ref(),
    );
    call.trace(
        header_text(&headers, TRACEPARENT),
        header_text(&headers, TRACESTATE),
    );
    let span = call.span();
    let result = answer(&mut call, &state, &headers, body)
        .instrument(span)
        .await;
    respond(call, result, mlflow_error)
}

async fn answer(
    call: &mut Call<'_>,
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = Format::parse(content_type)?;
    let (body, permit) =
        read_body(headers, body, state.max_request_bytes, &state.body_budget).await?;
    call.request_text(&body);
    let size = body.len();
    let parsed = off_runtime(size, move || match format {
        Format::Json => json::parse(&body),
        Format::Csv => csv::parse(&body).map(|parsed| json::JsonBody {
            parsed,
            client_request_id: None,
            params: None,
        }),
    })
    .await??;
    call.client_request_id(parsed.client_request_id.as_deref());
    call.route(
        None,
        &MlflowKeys {
            headers,
            params: parsed.params.as_ref(),
        },
    )?;
    // Decoded against the signature of the version that answers.
    let model = call.resolve().await?;
    let signature_of = Arc::clone(&model);
    let frame = parsed.parsed;
    let inputs = off_runtime(size, move || frame.into_inputs(&signature_of.signature)).await??;
    drop(permit);
    let request = InferRequest {
        id: parsed.client_request_id,
        inputs,
        outputs: Vec::new(),
    };
    let response = call.infer(model, request).await?;
    let body = predictions::encode(&response)?;
    call.response_text(&body);
    let mut out = Response::new(Body::from(body));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(out)
}

enum Format {
    Json,
    Csv,
}

impl Format {
    /// `application/json` or `text/csv`, UTF-8 only (as MLflow's server).
    fn parse(content_type: &str) -> Result<Format, Error> {
        let mut parts = content_type.split(';').map(str::trim);
        let format = match parts.next().unwrap_or("").to_ascii_lowercase().as_str() {
            "application/json" => Format::Json,
            "text/csv" => Format::Csv,
            other => {
                return Err(Error::Unsupported(format!(
                    "content type {:?} is not supported; send application/json or text/csv",
                    if other.is_empty() { "(none)" } else { other }
                )))
            }
        };
        for param in parts.filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            if !key.trim().eq_ignore_ascii_case("charset")
                || !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            {
                return Err(Error::Unsupported(format!(
                    "content type parameter {param:?} is not supported; only charset=utf-8"
                )));
            }
        }
        Ok(format)
    }
}

/// Headers and the body's `params`, where routing's keys may come from.
struct MlflowKeys<'a> {
    headers: &'a HeaderMap,
    params: Option<&'a Map<String, Value>>,
}

impl RequestKeys for MlflowKeys<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    fn parameter(&self, name: &str) -> Option<String> {
        match self.params?.get(name)? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}
