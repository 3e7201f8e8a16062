//! The four ways to call a model: OIP REST with a JSON body, OIP REST with
//! Triton's binary tensor extension, OIP gRPC `ModelInfer`, and MLflow's
//! `/invocations`. The request is encoded once per run ([`Prepared`]); each
//! worker has one connection ([`Conn`]; gRPC workers share a few) and reuses it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use serde::Serialize;
use serde_json::{json, Value};

use crate::grpc::{check_metadata_name, frame, GrpcConn};
use crate::http::{http_connect, http_exchange, timed_out};
pub use crate::http::{resolve, Address, HttpTarget, RestAnswer, RestRequest};
use crate::input::Tensor;
use crate::outcome::{Answer, ErrorClass, Outcome};
use crate::proto::model_infer_request::InferInputTensor;
use crate::proto::{ModelInferRequest, ModelInferResponse};

/// The OIP `ModelInfer` method's path.
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// How requests are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// OIP REST, JSON body in and out.
    RestJson,
    /// OIP REST with Triton's binary tensor extension both ways.
    RestBinary,
    /// OIP gRPC `ModelInfer`, raw input and output contents.
    Grpc,
    /// MLflow scoring: `POST /serving-endpoints/{model}/invocations` (or
    /// `/invocations` with `--model ''`), body `{"inputs": {...}}`.
    Mlflow,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::RestJson => "rest-json",
            Protocol::RestBinary => "rest-binary",
            Protocol::Grpc => "grpc",
            Protocol::Mlflow => "mlflow",
        }
    }
}

/// Where and how to send, as given on the command line.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http://host:port`: the REST listener, or the gRPC one for `grpc`.
    pub url: String,
    pub protocol: Protocol,
    /// The model or endpoint name (empty for MLflow's bare `/invocations`).
    pub model: String,
    /// Send to this version (`/versions/{v}`, gRPC `model_version`).
    pub version: Option<String>,
    /// Extra headers (gRPC metadata); `{n}` in a value becomes the request's number.
    pub headers: Vec<(String, String)>,
    /// Per request; past it the request counts as a timeout.
    pub timeout: Duration,
    /// Read each answer's body for its version and a hash of its outputs
    /// (the flip drill needs this; otherwise only headers are read).
    pub inspect_body: bool,
}

/// The request of a run, encoded once.
pub struct Prepared {
    pub protocol: Protocol,
    pub http: HttpTarget,
    pub grpc_url: String,
    /// The model or endpoint called.
    model: String,
    /// One request per distinct input: request `n` of a run sends number
    /// `n % len` (see [`Prepared::input_of`]).
    rest: Vec<RestRequest>,
    /// The `ModelInfer` requests, framed for the wire, in the same order.
    grpc_messages: Vec<Bytes>,
    grpc_uri: hyper::Uri,
    inspect_body: bool,
}

/// The OIP REST JSON request body.
pub fn json_body(inputs: &[Tensor]) -> Result<Vec<u8>> {
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|t| {
            Ok(json!({"name": t.name, "shape": t.shape, "datatype": t.datatype, "data": t.json_data()?}))
        })
        .collect::<Result<_>>()?;
    Ok(serde_json::to_vec(&json!({ "inputs": inputs }))?)
}

/// The binary-extension body and its JSON header's length: all inputs raw,
/// all outputs asked for raw.
pub fn binary_body(inputs: &[Tensor]) -> Result<(Vec<u8>, usize)> {
    let header: Vec<Value> = inputs
        .iter()
        .map(|t| {
            json!({"name": t.name, "shape": t.shape, "datatype": t.datatype,
                   "parameters": {"binary_data_size": t.raw.len()}})
        })
        .collect();
    let mut body =
        serde_json::to_vec(&json!({"inputs": header, "parameters": {"binary_data_output": true}}))?;
    let header_length = body.len();
    for t in inputs {
        body.extend_from_slice(&t.raw);
    }
    Ok((body, header_length))
}

/// The MLflow body: `{"inputs": {name: nested data}}`.
pub fn mlflow_body(inputs: &[Tensor]) -> Result<Vec<u8>> {
    let mut map = serde_json::Map::new();
    for t in inputs {
        map.insert(t.name.clone(), t.json_nested()?);
    }
    Ok(serde_json::to_vec(&json!({ "inputs": map }))?)
}

/// The `ModelInfer` request carrying `inputs`, raw contents.
fn model_infer_request(target: &Target, inputs: &[Tensor]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: target.model.clone(),
        model_version: target.version.clone().unwrap_or_default(),
        inputs: inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name.clone(),
                datatype: t.datatype.clone(),
                shape: t.shape.clone(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|t| t.raw.clone()).collect(),
        parameters: Default::default(),
        ..Default::default()
    }
}

impl Prepared {
    /// Prepares one request per element of `inputs` (each a request's input
    /// tensors), in the target's protocol.
    pub async fn new(target: &Target, inputs: &[Vec<Tensor>]) -> Result<Prepared> {
        if inputs.is_empty() {
            bail!("there is no input to send");
        }
        let address = resolve(&target.url).await?;
        let model = &target.model;
        if model.is_empty() && target.protocol != Protocol::Mlflow {
            bail!("--model is empty; name the model or endpoint to call");
        }
        let version_path = match &target.version {
            Some(v) => format!("/versions/{v}"),
            None => String::new(),
        };
        let infer_path = format!("{}/v2/models/{model}{version_path}/infer", address.prefix);
        let path = match target.protocol {
            Protocol::Mlflow => {
                if target.version.is_some() {
                    bail!("--model-version does not apply to MLflow's /invocations; leave it out");
                }
                if model.is_empty() {
                    format!("{}/invocations", address.prefix)
                } else {
                    format!("{}/serving-endpoints/{model}/invocations", address.prefix)
                }
            }
            Protocol::Grpc => String::new(),
            _ => infer_path,
        };
        if target.protocol == Protocol::Grpc {
            for (name, _) in &target.headers {
                check_metadata_name(&name.to_ascii_lowercase()).map_err(|e| anyhow!(e))?;
            }
        }
        let mut rest = Vec::with_capacity(inputs.len());
        let mut grpc_messages = Vec::with_capacity(inputs.len());
        for tensors in inputs {
            if target.protocol == Protocol::Grpc {
                grpc_messages.push(frame(&model_infer_request(target, tensors))?);
                continue;
            }
            let (body, content_type, header_length) = match target.protocol {
                Protocol::RestBinary => {
                    let (body, n) = binary_body(tensors)?;
                    (body, "application/octet-stream", Some(n))
                }
                Protocol::Mlflow => (mlflow_body(tensors)?, "application/json", None),
                _ => (json_body(tensors)?, "application/json", None),
            };
            rest.push(RestRequest {
                path: path.clone(),
                body: Bytes::from(body),
                content_type,
                header_length,
            });
        }
        if rest.is_empty() {
            // gRPC: no REST body, but the path still names the target.
            rest.push(RestRequest {
                path,
                body: Bytes::new(),
                content_type: "application/grpc",
                header_length: None,
            });
        }
        let http = HttpTarget::new(address, &target.headers, target.timeout)?;
        let grpc_url = format!("http://{}", http.address.authority);
        let grpc_uri = format!("{grpc_url}{MODEL_INFER}")
            .parse()
            .map_err(|e| anyhow!("{grpc_url}: {e}"))?;
        Ok(Prepared {
            protocol: target.protocol,
            grpc_url,
            model: model.clone(),
            grpc_messages,
            grpc_uri,
            http,
            rest,
            inspect_body: target.inspect_body,
        })
    }

    /// How many distinct requests a run cycles through.
    pub fn distinct(&self) -> usize {
        match self.protocol {
            Protocol::Grpc => self.grpc_messages.len(),
            _ => self.rest.len(),
        }
    }

    /// Which of the distinct requests request number `n` sends.
    pub fn input_of(&self, n: u64) -> usize {
        (n % self.distinct() as u64) as usize
    }

    /// The URL requests go to, for the summary.
    pub fn describe(&self) -> String {
        match self.protocol {
            Protocol::Grpc => format!("{} ModelInfer {}", self.grpc_url, self.model),
            _ => format!(
                "http://{}{}",
                self.http.address.authority, self.rest[0].path
            ),
        }
    }
}

/// One worker's connection (gRPC workers share theirs, see
/// [`crate::grpc::GrpcLink`]); reopened after it breaks.
pub enum Conn {
    Http(Option<SendRequest<Full<Bytes>>>),
    Grpc(GrpcConn),
}

impl Conn {
    /// A connection for a REST or MLflow worker, opened now so that a
    /// target that is not there fails the run at once.
    pub async fn http(target: &HttpTarget) -> Result<Conn> {
        let sender = http_connect(target.address.addr)
            .await
            .map_err(|(_, why)| anyhow!("cannot connect to {}: {why}", target.address.authority))?;
        Ok(Conn::Http(Some(sender)))
    }

    /// Sends request number `n` of the run and reads its answer.
    pub async fn call(&mut self, p: &Prepared, n: u64) -> Outcome {
        let call = async {
            match self {
                Conn::Http(sender) => http_call(sender, p, n).await,
                Conn::Grpc(conn) => grpc_call(conn, p, n).await,
            }
        };
        match tokio::time::timeout(p.http.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => {
                if let Conn::Http(sender) = self {
                    // The answer may still come on this connection: start afresh.
                    *sender = None;
                }
                Err(timed_out(p.http.timeout))
            }
        }
    }

    /// Sends `request` (number `n`, for `{n}` in headers) on this REST
    /// connection and reads the whole answer; a status other than 2xx is an
    /// error of class `http_<status>` with the start of the body.
    pub async fn send(
        &mut self,
        target: &HttpTarget,
        request: &RestRequest,
        n: u64,
    ) -> Result<RestAnswer, (ErrorClass, String)> {
        let Conn::Http(sender) = self else {
            return Err((
                ErrorClass::Protocol,
                "a gRPC connection cannot send a REST request".into(),
            ));
        };
        let exchange = http_exchange(sender, target, request, n);
        match tokio::time::timeout(target.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                *sender = None;
                Err(timed_out(target.timeout))
            }
        }
    }
}

async fn http_call(sender: &mut Option<SendRequest<Full<Bytes>>>, p: &Prepared, n: u64) -> Outcome {
    let reply = http_exchange(sender, &p.http, &p.rest[p.input_of(n)], n).await?;
    let mut answer = reply.answer();
    if p.inspect_body || (answer.header_version.is_none() && p.protocol != Protocol::Mlflow) {
        let json_part = reply.json_part()?;
        if p.protocol != Protocol::Mlflow {
            answer.body_version = body_version(json_part)?;
        }
        answer.fingerprint = Some(fingerprint(&[&reply.body[..]]));
    }
    Ok(answer)
}

/// The `model_version` of an OIP response's JSON (`None` when absent).
pub fn body_version(json: &[u8]) -> Result<Option<String>, (ErrorClass, String)> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        model_version: Option<String>,
    }
    serde_json::from_slice::<Head>(json)
        .map(|h| h.model_version)
        .map_err(|e| {
            (
                ErrorClass::Protocol,
                format!(
                    "the answer is not an OIP response ({e}): {}",
                    String::from_utf8_lossy(&json[..json.len().min(200)])
                ),
            )
        })
}

/// A hash of an answer's outputs.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

async fn grpc_call(conn: &mut GrpcConn, p: &Prepared, n: u64) -> Outcome {
    let reply = conn
        .call(
            &p.grpc_uri,
            &p.http.headers,
            &p.grpc_messages[p.input_of(n)],
            n,
        )
        .await?;
    let message = <ModelInferResponse as prost::Message>::decode(reply.message).map_err(|e| {
        (
            ErrorClass::Protocol,
            format!("the answer is not a ModelInferResponse: {e}"),
        )
    })?;
    let meta = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut answer = Answer {
        endpoint: meta("x-podium-endpoint"),
        arm: meta("x-podium-arm"),
        header_version: meta("x-podium-model-version"),
        body_version: None,
        fingerprint: None,
    };
    if !message.model_version.is_empty() {
        answer.body_version = Some(message.model_version);
    }
    if p.inspect_body {
        let mut parts: Vec<&[u8]> = message.outputs.iter().map(|o| o.name.as_bytes()).collect();
        parts.extend(message.raw_output_contents.iter().map(|c| &c[..]));
        answer.fingerprint = Some(fingerprint(&parts));
    }
    Ok(answer)
}

/// An error and its causes, "a: b: c".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    for _ in 0..16 {
        let Some(s) = source else { break };
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
