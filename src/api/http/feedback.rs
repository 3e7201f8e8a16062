//! `POST /v2/feedback`: ground truth for earlier calls, joined to the
//! experiment readouts.
//!
//! ```json
//! {"request_id": "…", "label": 1}
//! {"client_request_id": "order-17", "label": "fraud"}
//! {"feedback": [{"request_id": "…", "label": true}, …]}   (at most 10,000 items)
//! ```
//!
//! The answer counts what the items joined:
//! `{"accepted": N, "matched": M, "duplicates": D, "unmatched": U}`. A
//! malformed item refuses the whole request (400 naming the item), so
//! nothing is applied twice when the client fixes it and sends it again.
//!
//! With `--api-keys`, a key limited to some endpoints may label only calls
//! to those: an item naming a call the server knows was to another endpoint
//! refuses the whole request with 403 naming the key and the endpoint.
//! (Calls the server no longer knows cannot be checked; they are accepted
//! and counted as unmatched.)
//!
//! With `--table-dir`, every accepted item is written to the feedback table
//! and the answer comes only once it is journaled; when it cannot be (queue
//! full, write failure) the answer is 503 with `Retry-After`, and a retry
//! is safe (labels already counted count as duplicates).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::body::{off_runtime, read_body};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::auth::presented;
use crate::error::Error;
use crate::experiments::{FeedbackItem, FeedbackOutcome, Key, Label};
use crate::inference_table::feedback::NotWritten;
use crate::inference_table::FeedbackRow;

/// Items one request may carry.
pub const MAX_FEEDBACK_ITEMS: usize = 10_000;

const SHAPE: &str = "send {\"request_id\": \"<x-request-id of the call>\", \"label\": <number | string | bool>} (or \"client_request_id\" instead of \"request_id\"), or {\"feedback\": [item, ...]}";

/// One decoded feedback item, with what the feedback table keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
    pub label: Label,
    /// The label as JSON text, as sent.
    pub label_json: String,
}

impl Decoded {
    fn item(&self) -> FeedbackItem {
        let key = match (&self.request_id, &self.client_request_id) {
            (Some(id), _) => Key::request_id(id),
            (None, Some(client)) => Key::ClientRequestId(client.clone()),
            (None, None) => Key::Unknown,
        };
        FeedbackItem {
            key,
            label: self.label.clone(),
        }
    }
}

pub async fn feedback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (body, permit) =
        read_body(&headers, body, state.max_request_bytes, &state.body_budget).await?;
    let decoded = off_runtime(body.len(), move || decode(&body)).await??;
    drop(permit);
    let items: Vec<FeedbackItem> = decoded.iter().map(Decoded::item).collect();
    if let (Some(keys), Some(experiments)) = (&state.api_keys, &state.experiments) {
        let key = presented(|name| headers.get(name)?.to_str().ok());
        for (index, item) in items.iter().enumerate() {
            if let Some(endpoint) = experiments.endpoint_of_call(&item.key) {
                keys.permits_feedback(key, endpoint).map_err(|e| match e {
                    Error::Forbidden(why) => {
                        Error::Forbidden(format!("feedback item {index}: {why}"))
                    }
                    other => other,
                })?;
            }
        }
    }
    let outcome = match &state.experiments {
        Some(experiments) => experiments
            .apply(&items)
            .map_err(|e| Error::InvalidInput(format!("feedback item {}: {}", e.index, e.why)))?,
        None => FeedbackOutcome {
            unmatched: items.len(),
            request_ids: vec![None; items.len()],
            ..FeedbackOutcome::default()
        },
    };
    for (result, n) in [
        ("matched", outcome.matched),
        ("duplicate", outcome.duplicates),
        ("unmatched", outcome.unmatched),
    ] {
        if n > 0 {
            metrics::counter!("podium_feedback_items_total", "result" => result)
                .increment(n as u64);
        }
    }
    if let Some(table) = &state.feedback_table {
        let received = SystemTime::now();
        let rows = decoded
            .into_iter()
            .zip(&outcome.request_ids)
            .map(|(d, known)| FeedbackRow {
                request_id: known
                    .map(|id| uuid::Uuid::from_u128(id).to_string())
                    .or(d.request_id),
                client_request_id: d.client_request_id,
                label: d.label_json,
                received,
            })
            .collect();
        table.write(rows).await.map_err(|e| match e {
            NotWritten::Closed => Error::Unavailable(e.to_string()),
            NotWritten::QueueFull | NotWritten::WriteFailed => Error::Overloaded(e.to_string()),
        })?;
    }
    Ok(Json(json!({
        "accepted": items.len(),
        "matched": outcome.matched,
        "duplicates": outcome.duplicates,
        "unmatched": outcome.unmatched,
    }))
    .into_response())
}

/// Decodes a feedback body: one item, or a batch of 1 to 10,000.
pub fn decode(body: &[u8]) -> Result<Vec<Decoded>, Error> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidInput(format!("the body is not JSON ({e}); {SHAPE}")))?;
    let Value::Object(object) = value else {
        return Err(Error::InvalidInput(format!(
            "the body is a JSON {}; {SHAPE}",
            kind(&value)
        )));
    };
    if !object.contains_key("feedback") {
        return item(&object)
            .map(|d| vec![d])
            .map_err(|why| Error::InvalidInput(format!("feedback: {why}")));
    }
    if let Some(other) = object.keys().find(|k| *k != "feedback") {
        return Err(Error::InvalidInput(format!(
            "a batch has only the key \"feedback\", not \"{other}\"; put each item's fields inside the list"
        )));
    }
    let Some(Value::Array(list)) = object.get("feedback") else {
        return Err(Error::InvalidInput(format!(
            "\"feedback\" must be a list of items; {SHAPE}"
        )));
    };
    if list.is_empty() {
        return Err(Error::InvalidInput(
            "\"feedback\" is an empty list; send at least one item".into(),
        ));
    }
    if list.len() > MAX_FEEDBACK_ITEMS {
        return Err(Error::PayloadTooLarge(format!(
            "{} feedback items in one request; the limit is {MAX_FEEDBACK_ITEMS}: split the batch",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            match v {
                Value::Object(o) => item(o),
                other => Err(format!("is a JSON {}, not an object", kind(other))),
            }
            .map_err(|why| Error::InvalidInput(format!("feedback item {i}: {why}")))
        })
        .collect()
}

/// One item's fields, or what is wrong with them.
fn item(object: &Map<String, Value>) -> Result<Decoded, String> {
    if let Some(other) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "request_id" | "client_request_id" | "label"))
    {
        return Err(format!(
            "unknown field \"{other}\"; an item has \"request_id\" or \"client_request_id\", and \"label\""
        ));
    }
    let id = |key: &str| -> Result<Option<String>, String> {
        match object.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(format!("\"{key}\" is empty")),
            Some(other) => Err(format!("\"{key}\" is a JSON {}, not a string", kind(other))),
        }
    };
    let request_id = id("request_id")?;
    let client_request_id = id("client_request_id")?;
    if request_id.is_none() && client_request_id.is_none() {
        return Err("names no call; add \"request_id\" (the x-request-id Podium answered) or \"client_request_id\"".into());
    }
    let raw = object
        .get("label")
        .ok_or("has no \"label\"; add the ground truth as a number, string or bool")?;
    let label = match raw {
        Value::Bool(b) => Label::Bool(*b),
        Value::String(s) => Label::Text(s.clone()),
        Value::Number(n) => Label::Number(
            n.as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("label {n} is not a finite number"))?,
        ),
        other => {
            return Err(format!(
                "label is a JSON {}; send a number, string or bool",
                kind(other)
            ))
        }
    };
    Ok(Decoded {
        request_id,
        client_request_id,
        label,
        label_json: raw.to_string(),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        decode(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn one_item_or_a_batch() {
        let one = decode(br#"{"request_id": "abc", "label": 1}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].label, Label::Number(1.0));
        assert_eq!(one[0].label_json, "1");
        let batch = decode(
            br#"{"feedback": [{"client_request_id": "o-1", "label": "cat"}, {"request_id": "x", "client_request_id": "o-2", "label": false}]}"#,
        )
        .unwrap();
        assert_eq!(batch[0].client_request_id.as_deref(), Some("o-1"));
        assert_eq!(batch[0].label_json, "\"cat\"");
        assert_eq!(batch[1].label, Label::Bool(false));
        assert_eq!(batch[1].item().key, Key::Unknown); // "x" is no UUID
    }

    #[test]
    fn malformed_items_are_named() {
        let cases = [
            ("[1]", "the body is a JSON list"),
            ("{not json", "the body is not JSON"),
            (r#"{"label": 1}"#, "feedback: names no call"),
            (r#"{"request_id": "a"}"#, "feedback: has no \"label\""),
            (
                r#"{"request_id": "a", "label": null}"#,
                "label is a JSON null",
            ),
            (
                r#"{"request_id": "a", "label": [1]}"#,
                "label is a JSON list",
            ),
            (
                r#"{"request_id": "", "label": 1}"#,
                "\"request_id\" is empty",
            ),
            (
                r#"{"request_id": 5, "label": 1}"#,
                "\"request_id\" is a JSON number",
            ),
            (
                r#"{"request_id": "a", "lable": 1}"#,
                "unknown field \"lable\"",
            ),
            (r#"{"feedback": []}"#, "empty list"),
            (r#"{"feedback": {}}"#, "must be a list"),
            (r#"{"feedback": [], "label": 1}"#, "not \"label\""),
            (
                r#"{"feedback": [{"request_id": "a", "label": 1}, 7]}"#,
                "feedback item 1: is a JSON number",
            ),
            (
                r#"{"feedback": [{"request_id": "a", "label": 1}, {"request_id": "b"}]}"#,
                "feedback item 1: has no \"label\"",
            ),
        ];
        for (body, want) in cases {
            let got = err(body);
            assert!(got.contains(want), "{body}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn a_batch_has_at_most_10000_items() {
        let items = vec![json!({"request_id": "a", "label": 1}); MAX_FEEDBACK_ITEMS + 1];
        let body = serde_json::to_vec(&json!({ "feedback": items })).unwrap();
        let e = decode(&body).unwrap_err();
        assert!(matches!(e, Error::PayloadTooLarge(_)), "{e:?}");
        assert!(e.to_string().contains("the limit is 10000"), "{e}");
    }
}
