//! MLflow's scoring protocol on the REST port, so `mlflow models serve`
//! clients and Databricks-style callers move to Podium unchanged:
//! `POST /invocations` (the default endpoint), `POST
//! /serving-endpoints/{name}/invocations`, `GET /ping`, `/health`, `/version`.
//!
//! A body is a data frame (`dataframe_split`, `dataframe_records`, records
//! in `instances`, or CSV with a header row) or tensors (`inputs`, rows in
//! `instances`). Frame columns map to the model's inputs by name; when they
//! do not, and the model has one 2-D input, the columns are stacked in order
//! into it. Each error says which rule applied.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::codec::{from_json, JsonData};
use super::oip::{header_text, off_runtime, read_body};
use crate::api::{AppState, CLIENT_REQUEST_ID, REQUEST_ID};
use crate::error::Error;
use crate::inference_table::{new_request_id, Entry, Protocol};
use crate::request::InferRequest;
use crate::routing::RequestMeta;
use crate::runtime::{Signature, TensorSpec};
use crate::tensor::{Tensor, TensorData};

type S = State<Arc<AppState>>;

/// An error in MLflow's shape: `{"error_code": ..., "message": ...}`.
pub struct MlflowError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl MlflowError {
    fn bad_request(message: String) -> MlflowError {
        MlflowError {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message,
        }
    }
}

impl From<Error> for MlflowError {
    fn from(e: Error) -> MlflowError {
        let (status, code) = match &e {
            Error::InvalidInput(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_LIMIT_EXCEEDED"),
            Error::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "BAD_REQUEST"),
            Error::Refused(_) => (StatusCode::CONFLICT, "INVALID_STATE"),
            Error::Overloaded(_) | Error::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE")
            }
            Error::Registry(_) => (StatusCode::BAD_GATEWAY, "TEMPORARILY_UNAVAILABLE"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        };
        let overloaded = matches!(e, Error::Overloaded(_));
        let mut err = MlflowError {
            status,
            code,
            message: e.to_string(),
        };
        if overloaded {
            err.code = "TEMPORARILY_UNAVAILABLE";
        }
        err
    }
}

impl MlflowError {
    /// The JSON body MLflow clients parse.
    fn body(&self) -> Value {
        json!({ "error_code": self.code, "message": self.message })
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = (self.status, Json(self.body())).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub async fn ping() -> &'static str {
    "\n"
}

pub async fn version() -> String {
    format!("podium {}", env!("CARGO_PKG_VERSION"))
}

/// `POST /invocations`: the endpoint named by `--default-endpoint`, else the
/// only endpoint configured, else the only model served.
pub async fn invocations(state: S, headers: HeaderMap, body: Body) -> Response {
    match default_endpoint(&state.0) {
        Ok(name) => invoke(state, name, headers, body).await,
        Err(e) => {
            // Still one row, under the `_unknown` endpoint.
            let request_id = new_request_id();
            let mut entry = state.table_entry(&request_id, "", Protocol::Invocations);
            if let Some(entry) = entry.as_mut() {
                entry.client_request_id(header_text(&headers, CLIENT_REQUEST_ID));
                entry.error_body(e.body().to_string());
            }
            state.submit(entry, e.status.as_u16(), Some(e.message.clone()));
            let mut response = e.into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID, v);
            }
            response
        }
    }
}

/// `POST /serving-endpoints/{name}/invocations` (Databricks style).
pub async fn endpoint_invocations(
    state: S,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(state, name, headers, body).await
}

fn default_endpoint(state: &AppState) -> Result<String, MlflowError> {
    if let Some(name) = &state.default_endpoint {
        return Ok(name.clone());
    }
    let routes = state.core.routes.load();
    let mut names: Vec<String> = routes.endpoints.keys().cloned().collect();
    if names.is_empty() {
        names = state.core.models.model_names();
    }
    names.sort();
    match names.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(MlflowError::bad_request(format!(
            "/invocations needs a default endpoint: this server has {}; call /serving-endpoints/NAME/invocations or start it with --default-endpoint NAME",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        ))),
    }
}

/// One call: answered, and recorded in the inference table when it is on.
async fn invoke(State(state): S, name: String, headers: HeaderMap, body: Body) -> Response {
    let request_id = new_request_id();
    let mut entry = state.table_entry(&request_id, &name, Protocol::Invocations);
    if let Some(e) = entry.as_mut() {
        e.client_request_id(header_text(&headers, CLIENT_REQUEST_ID));
    }
    let mut response = match answer(&state, &name, &headers, body, entry.as_mut()).await {
        Ok(response) => {
            state.submit(entry, StatusCode::OK.as_u16(), None);
            response
        }
        Err(e) => {
            if let Some(entry) = entry.as_mut() {
                entry.error_body(e.body().to_string());
            }
            state.submit(entry, e.status.as_u16(), Some(e.message.clone()));
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

async fn answer(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    mut entry: Option<&mut Entry>,
) -> Result<Response, MlflowError> {
    let started = Instant::now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = Format::parse(content_type)?;
    let body = read_body(headers, body, state.max_request_bytes)
        .await
        .map_err(|e| MlflowError::from(e.0))?;
    if let Some(e) = entry.as_deref_mut() {
        e.request_text(&body);
    }

    // The signature decides how columns become inputs.
    let (model, spec) = state.core.routes.load().describe(name, None);
    let loaded = state.core.models.get(&model, &spec).await?;
    let (inputs, client_request_id, params) = off_runtime(body.len(), move || match format {
        Format::Json => decode_json(&body, &loaded.signature),
        Format::Csv => decode_csv(&body, &loaded.signature).map(|inputs| (inputs, None, None)),
    })
    .await
    .map_err(|e| MlflowError::from(e.0))??;
    if let Some(e) = entry.as_deref_mut() {
        e.client_request_id(client_request_id.as_deref());
    }
    let request = InferRequest {
        id: client_request_id,
        inputs,
        outputs: Vec::new(),
    };
    let meta = MlflowMeta {
        headers,
        params: params.as_ref(),
    };
    let response = state
        .core
        .infer(
            name,
            None,
            &meta,
            request,
            entry.as_deref_mut().map(Entry::served),
        )
        .await?;

    // One output: its rows (records orientation); several: by name.
    let predictions = if response.outputs.len() == 1 {
        nested(&response.outputs[0])
    } else {
        Value::Object(
            response
                .outputs
                .iter()
                .map(|t| (t.name.clone(), nested(t)))
                .collect(),
        )
    };
    let body = bytes::Bytes::from(
        serde_json::to_vec(&json!({ "predictions": predictions }))
            .map_err(|e| MlflowError::from(Error::Internal(format!("encoding the answer: {e}"))))?,
    );
    if let Some(e) = entry {
        e.response_text(&body);
    }
    let mut out = Response::new(Body::from(body));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let h = out.headers_mut();
    for (key, value) in [
        ("x-podium-endpoint", response.endpoint.clone()),
        ("x-podium-arm", response.arm.clone()),
        ("x-podium-model-version", response.model_version.to_string()),
        (
            "x-podium-queue-us",
            response.timing.queue.as_micros().to_string(),
        ),
        (
            "x-podium-inference-us",
            response.timing.inference.as_micros().to_string(),
        ),
        (
            "x-podium-total-us",
            started.elapsed().as_micros().to_string(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(key, v);
        }
    }
    Ok(out)
}

enum Format {
    Json,
    Csv,
}

impl Format {
    /// `application/json` or `text/csv`, UTF-8 only (as MLflow's server).
    fn parse(content_type: &str) -> Result<Format, MlflowError> {
        let mut parts = content_type.split(';').map(str::trim);
        let format = match parts.next().unwrap_or("").to_ascii_lowercase().as_str() {
            "application/json" => Format::Json,
            "text/csv" => Format::Csv,
            other => {
                return Err(MlflowError {
                    status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    code: "BAD_REQUEST",
                    message: format!(
                        "content type {:?} is not supported; send application/json or text/csv",
                        if other.is_empty() { "(none)" } else { other }
                    ),
                })
            }
        };
        for param in parts.filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            if !key.trim().eq_ignore_ascii_case("charset")
                || !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            {
                return Err(MlflowError {
                    status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    code: "BAD_REQUEST",
                    message: format!(
                        "content type parameter {param:?} is not supported; only charset=utf-8"
                    ),
                });
            }
        }
        Ok(format)
    }
}

const JSON_KEYS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// (inputs, client_request_id, params) of a JSON body.
type JsonBody = (Vec<Tensor>, Option<String>, Option<Map<String, Value>>);

fn decode_json(body: &[u8], signature: &Signature) -> Result<JsonBody, MlflowError> {
    let body = quote_non_finite(body);
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| MlflowError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(MlflowError::bad_request(format!(
            "the input must be a JSON dictionary with exactly one of the input fields {JSON_KEYS:?}"
        )));
    };
    let client_request_id = match object.remove("client_request_id") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    let params = match object.remove("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => {
            return Err(MlflowError::bad_request(
                "\"params\" must be a JSON object".into(),
            ))
        }
    };
    let present: Vec<&str> = JSON_KEYS
        .iter()
        .copied()
        .filter(|k| object.contains_key(*k))
        .collect();
    if present.len() != 1 || object.len() != 1 {
        let extra: Vec<&String> = object
            .keys()
            .filter(|k| !JSON_KEYS.contains(&k.as_str()))
            .collect();
        return Err(MlflowError::bad_request(format!(
            "the input must be a JSON dictionary with exactly one of the input fields {JSON_KEYS:?}; got {}{}",
            if present.is_empty() { "none".to_string() } else { present.join(", ") },
            if extra.is_empty() { String::new() } else { format!(" and unknown keys {extra:?}") }
        )));
    }
    let key = present[0];
    let value = object.remove(key).unwrap_or(Value::Null);
    let inputs = match key {
        "dataframe_split" => {
            let Value::Object(split) = value else {
                return Err(MlflowError::bad_request(
                    "dataframe_split must be {\"columns\": [...], \"data\": [[...], ...]}".into(),
                ));
            };
            let columns = match split.get("columns") {
                Some(Value::Array(c)) => c
                    .iter()
                    .map(|c| {
                        c.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| c.to_string())
                    })
                    .collect(),
                None => Vec::new(),
                Some(_) => {
                    return Err(MlflowError::bad_request(
                        "dataframe_split.columns must be a list of names".into(),
                    ))
                }
            };
            let rows = match split.get("data") {
                Some(Value::Array(rows)) => rows
                    .iter()
                    .map(|r| r.as_array().cloned().unwrap_or_else(|| vec![r.clone()]))
                    .collect(),
                _ => {
                    return Err(MlflowError::bad_request(
                        "dataframe_split.data must be a list of rows".into(),
                    ))
                }
            };
            frame_to_inputs(columns, rows, signature)?
        }
        "dataframe_records" => records_to_inputs(value, signature, "dataframe_records")?,
        "instances" => match &value {
            Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                records_to_inputs(value, signature, "instances")?
            }
            _ => tensors_to_inputs(value, signature, "instances")?,
        },
        _ => tensors_to_inputs(value, signature, "inputs")?,
    };
    Ok((inputs, client_request_id, params))
}

/// Python's `json.dumps` (so MLflow's client) writes NaN and infinities as
/// bare `NaN`, `Infinity`, `-Infinity`, which are not JSON; MLflow's server
/// reads them. They become the strings the float conversion understands.
fn quote_non_finite(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    if !TOKENS
        .iter()
        .any(|t| body.windows(t.len()).any(|w| w == *t))
    {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
        } else if let Some(t) = TOKENS.iter().find(|t| body[i..].starts_with(t)) {
            out.push(b'"');
            out.extend_from_slice(t);
            out.push(b'"');
            i += t.len();
            continue;
        }
        out.push(b);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Records (`[{"col": v, ...}, ...]`) as a frame; columns in first-seen order.
fn records_to_inputs(
    value: Value,
    signature: &Signature,
    field: &str,
) -> Result<Vec<Tensor>, MlflowError> {
    let Value::Array(records) = value else {
        return Err(MlflowError::bad_request(format!(
            "{field} must be a list of records like [{{\"column\": value}}]"
        )));
    };
    let mut columns: Vec<String> = Vec::new();
    for record in &records {
        let Value::Object(r) = record else {
            return Err(MlflowError::bad_request(format!(
                "{field} must be a list of records like [{{\"column\": value}}]"
            )));
        };
        for k in r.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let rows = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            columns
                .iter()
                .map(|c| {
                    r.get(c).cloned().ok_or_else(|| {
                        MlflowError::bad_request(format!("{field} record {i} has no column \"{c}\"; every record needs every column"))
                    })
                })
                .collect()
        })
        .collect::<Result<Vec<Vec<Value>>, _>>()?;
    frame_to_inputs(columns, rows, signature)
}

/// Tensors: `{"input_name": nested list, ...}`, or one nested list for a
/// one-input model.
fn tensors_to_inputs(
    value: Value,
    signature: &Signature,
    field: &str,
) -> Result<Vec<Tensor>, MlflowError> {
    match value {
        Value::Object(named) => named
            .into_iter()
            .map(|(name, v)| {
                let spec = signature.inputs.iter().find(|s| s.name == name).ok_or_else(|| {
                    MlflowError::bad_request(format!(
                        "{field} names \"{name}\", which is not an input of the model; its inputs are: {}",
                        input_names(signature)
                    ))
                })?;
                tensor(spec, &v)
            })
            .collect(),
        list @ Value::Array(_) => match signature.inputs.as_slice() {
            [only] => Ok(vec![tensor(only, &list)?]),
            _ => Err(MlflowError::bad_request(format!(
                "{field} is a single list but the model has {} inputs ({}); send {{\"{field}\": {{\"input_name\": [...], ...}}}}",
                signature.inputs.len(),
                input_names(signature)
            ))),
        },
        _ => Err(MlflowError::bad_request(format!("{field} must be a list or an object of named lists"))),
    }
}

/// A tensor from a nested JSON list, its shape read from the nesting.
fn tensor(spec: &TensorSpec, value: &Value) -> Result<Tensor, MlflowError> {
    let mut shape = Vec::new();
    let mut v = value;
    while let Value::Array(items) = v {
        shape.push(items.len() as i64);
        match items.first() {
            Some(first) => v = first,
            None => break,
        }
    }
    let data = from_json(&spec.name, spec.datatype, value)?;
    Ok(Tensor::new(spec.name.clone(), shape, data)?)
}

/// Columns become inputs by name, or are stacked into a one-input model.
fn frame_to_inputs(
    columns: Vec<String>,
    mut rows: Vec<Vec<Value>>,
    signature: &Signature,
) -> Result<Vec<Tensor>, MlflowError> {
    let n = rows.len();
    if columns.is_empty() && rows.iter().all(Vec::is_empty) {
        return Err(MlflowError::bad_request(
            "the data frame is empty; send at least one row of values".into(),
        ));
    }
    // A missing value (null, an empty CSV cell) in a float model is NaN, as
    // pandas reads it.
    if signature.inputs.iter().all(|s| s.datatype.is_float()) {
        for cell in rows.iter_mut().flatten() {
            if cell.is_null() {
                *cell = Value::String("NaN".into());
            }
        }
    }
    for (i, row) in rows.iter().enumerate() {
        if !columns.is_empty() && row.len() != columns.len() {
            return Err(MlflowError::bad_request(format!(
                "row {i} has {} values for {} columns",
                row.len(),
                columns.len()
            )));
        }
    }
    if let Some(dup) = columns
        .iter()
        .enumerate()
        .find(|(i, c)| columns[..*i].contains(c))
        .map(|(_, c)| c)
    {
        return Err(MlflowError::bad_request(format!(
            "column \"{dup}\" appears twice; give each column its own name"
        )));
    }
    let by_name = !columns.is_empty() && signature.inputs.iter().all(|s| columns.contains(&s.name));
    if by_name {
        // Rule 1: a column per input (extra columns are refused, not dropped).
        if let Some(extra) = columns
            .iter()
            .find(|c| !signature.inputs.iter().any(|s| &s.name == *c))
        {
            return Err(MlflowError::bad_request(format!(
                "column \"{extra}\" is not an input of the model (columns are matched to inputs by name; its inputs are: {})",
                input_names(signature)
            )));
        }
        return signature
            .inputs
            .iter()
            .map(|spec| {
                let j = columns.iter().position(|c| c == &spec.name).unwrap_or(0);
                let cells: Vec<Value> = rows.iter().map(|r| r[j].clone()).collect();
                let inner = cells.first().and_then(Value::as_array).map(|a| a.len() as i64);
                let shape = match (spec.shape.len(), inner) {
                    (1, None) => vec![n as i64],
                    (2, None) => vec![n as i64, 1],
                    (2, Some(k)) => vec![n as i64, k],
                    _ => {
                        return Err(MlflowError::bad_request(format!(
                            "input \"{}\" has rank {}; a data frame column can fill rank-1 or rank-2 inputs only, send it with \"inputs\" instead",
                            spec.name,
                            spec.shape.len()
                        )))
                    }
                };
                let data = from_json(&spec.name, spec.datatype, &Value::Array(cells))?;
                Ok(Tensor::new(spec.name.clone(), shape, data)?)
            })
            .collect();
    }
    match signature.inputs.as_slice() {
        // Rule 2: one 2-D input takes all columns, stacked in order.
        [only] if only.shape.len() == 2 => {
            let width = rows.first().map_or(columns.len(), Vec::len);
            if only.shape[1] >= 0 && only.shape[1] != width as i64 {
                return Err(MlflowError::bad_request(format!(
                    "the columns do not name the model's input \"{}\", so they were stacked in order into it: that gives {width} columns but it takes {} ({} {}); send {} columns in the model's feature order",
                    only.name,
                    only.shape[1],
                    only.datatype,
                    crate::tensor::fmt_shape(&only.shape),
                    only.shape[1]
                )));
            }
            let cells: Vec<Value> = rows.into_iter().flatten().collect();
            let data = from_json(&only.name, only.datatype, &Value::Array(cells))?;
            Ok(vec![Tensor::new(only.name.clone(), vec![n as i64, width as i64], data)?])
        }
        _ => Err(MlflowError::bad_request(format!(
            "the columns ({}) do not name every input of the model ({}), and it does not take a single 2-D input to stack them into; name one column after each input",
            columns.join(", "),
            input_names(signature)
        ))),
    }
}

/// CSV with a header row (comma-separated, double quotes for text with commas).
fn decode_csv(body: &[u8], signature: &Signature) -> Result<Vec<Tensor>, MlflowError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| MlflowError::bad_request("the CSV body is not UTF-8".into()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or_else(|| {
        MlflowError::bad_request("the CSV body is empty; send a header row and data rows".into())
    })?;
    let columns: Vec<String> = split_csv(header)
        .into_iter()
        .map(|c| c.trim().to_string())
        .collect();
    let rows = lines
        .map(|line| {
            split_csv(line)
                .into_iter()
                .map(|cell| {
                    let cell = cell.trim();
                    match cell.parse::<i64>() {
                        Ok(i) => Value::from(i),
                        Err(_) if cell.is_empty() => Value::Null,
                        Err(_) => match cell.parse::<f64>() {
                            Ok(f) if f.is_nan() => Value::String("NaN".into()),
                            Ok(f) if f.is_infinite() => {
                                Value::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
                            }
                            Ok(f) => serde_json::Number::from_f64(f)
                                .map(Value::Number)
                                .unwrap_or(Value::Null),
                            Err(_) => match cell {
                                "true" | "True" | "TRUE" => Value::Bool(true),
                                "false" | "False" | "FALSE" => Value::Bool(false),
                                _ => Value::String(cell.to_string()),
                            },
                        },
                    }
                })
                .collect()
        })
        .collect();
    frame_to_inputs(columns, rows, signature)
}

fn split_csv(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}

fn input_names(signature: &Signature) -> String {
    signature
        .inputs
        .iter()
        .map(|s| {
            format!(
                "\"{}\" {} {}",
                s.name,
                s.datatype,
                crate::tensor::fmt_shape(&s.shape)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A tensor as nested JSON lists following its shape.
fn nested(t: &Tensor) -> Value {
    // 16/32-bit floats in their shortest decimal form, as the OIP routes
    // print them (not widened to f64 digits).
    let short = |x: f32| {
        format!("{x}")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    };
    let flat = match &t.data {
        TensorData::Fp32(v) => v.iter().map(|&x| short(x)).collect(),
        TensorData::Fp16(v) => v.iter().map(|x| short(x.to_f32())).collect(),
        TensorData::Bf16(v) => v.iter().map(|x| short(x.to_f32())).collect(),
        data => match serde_json::to_value(JsonData(data)) {
            Ok(Value::Array(v)) => v,
            _ => Vec::new(),
        },
    };
    let dims: Vec<usize> = t.shape.iter().map(|&d| d.max(0) as usize).collect();
    fn build(flat: &[Value], dims: &[usize]) -> Value {
        match dims {
            [] => flat.first().cloned().unwrap_or(Value::Null),
            [_] => Value::Array(flat.to_vec()),
            [n, rest @ ..] => {
                let step = rest.iter().product::<usize>().max(1);
                Value::Array(
                    (0..*n)
                        .map(|i| {
                            build(
                                &flat[(i * step).min(flat.len())..((i + 1) * step).min(flat.len())],
                                rest,
                            )
                        })
                        .collect(),
                )
            }
        }
    }
    build(&flat, &dims)
}

/// Headers and the body's `params`, for routing (sticky key, arm override).
struct MlflowMeta<'a> {
    headers: &'a HeaderMap,
    params: Option<&'a Map<String, Value>>,
}

impl RequestMeta for MlflowMeta<'_> {
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

#[cfg(test)]
mod tests {
    use super::quote_non_finite;

    #[test]
    fn bare_non_finite_tokens_are_quoted_outside_strings_only() {
        let body = br#"{"a": [NaN, -Infinity, Infinity, 1.5], "s": "NaN \" Infinity"}"#;
        let fixed = quote_non_finite(body);
        assert_eq!(
            std::str::from_utf8(&fixed).unwrap(),
            r#"{"a": ["NaN", "-Infinity", "Infinity", 1.5], "s": "NaN \" Infinity"}"#
        );
        let plain = br#"{"a": [1, 2]}"#;
        assert!(matches!(
            quote_non_finite(plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
