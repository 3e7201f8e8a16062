//! One row of the inference table, as the request path hands it over, and
//! its columns.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};

use crate::request::{InferRequest, InferResponse};

/// How a request reached Podium; the `protocol` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OIP REST with a JSON body.
    Rest,
    /// OIP REST with Triton binary tensors in the body.
    RestBinary,
    /// OIP gRPC, unary or one message of a stream.
    Grpc,
    /// MLflow's `/invocations` (and the Databricks-style route).
    Invocations,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::RestBinary => "rest-binary",
            Protocol::Grpc => "grpc",
            Protocol::Invocations => "invocations",
        }
    }
}

/// A request or response body, kept in the cheapest form the request path
/// has; the writer thread renders it to JSON text.
#[derive(Debug, Default)]
pub enum Payload {
    /// Not recorded: payloads are off for the endpoint, or there was none.
    #[default]
    Absent,
    /// Over the logging limit: stored as null with a logging error code.
    TooLarge,
    /// A body that already is JSON (or, for `/invocations`, CSV) text.
    Text(Bytes),
    /// A decoded request, rendered in the OIP JSON form (binary tensors as `data`).
    Request(InferRequest),
    /// A response, rendered in the OIP JSON form.
    Response(InferResponse),
}

impl Payload {
    /// Bytes this payload holds, for the queue's memory bound.
    pub fn size(&self) -> usize {
        match self {
            Payload::Absent | Payload::TooLarge => 0,
            Payload::Text(b) => b.len(),
            Payload::Request(r) => r.inputs.iter().map(|t| t.data.raw_len()).sum(),
            Payload::Response(r) => r.outputs.iter().map(|t| t.data.raw_len()).sum(),
        }
    }
}

/// What became of the shadow copy of a request.
#[derive(Debug)]
pub struct ShadowRecord {
    pub arm: String,
    pub model_version: Option<u64>,
    pub response: Payload,
    pub error: Option<String>,
}

/// One request, complete: everything a row holds before rendering.
#[derive(Debug)]
pub struct Record {
    pub request_id: String,
    pub client_request_id: Option<String>,
    pub received: SystemTime,
    /// The endpoint called, or [`super::UNKNOWN_ENDPOINT`]; its partition.
    pub endpoint: String,
    pub arm: Option<String>,
    pub model_name: Option<String>,
    pub model_version: Option<u64>,
    pub protocol: Protocol,
    pub status_code: u16,
    pub grpc_status: Option<i32>,
    pub error: Option<String>,
    pub execution: Option<Duration>,
    pub total: Duration,
    pub queue: Option<Duration>,
    /// The rows of the run the request was part of (dynamic batching).
    pub batch_size: Option<usize>,
    pub sampling_fraction: f64,
    pub request: Payload,
    pub response: Payload,
    pub shadow: Option<ShadowRecord>,
    pub requester: Option<String>,
    pub logging_error_codes: Vec<&'static str>,
    /// The W3C trace id of the request's `traceparent` (32 lowercase hex
    /// digits), when it came with a valid one.
    pub trace_id: Option<String>,
}

impl Record {
    /// Bytes of payload this record holds.
    pub fn size(&self) -> usize {
        self.request.size()
            + self.response.size()
            + self.shadow.as_ref().map_or(0, |s| s.response.size())
    }
}

/// The columns stored in each file, in order. The table's other two
/// columns, `endpoint` and `request_date` (a DATE), are the Hive partition
/// directories `endpoint=<e>/request_date=<YYYY-MM-DD>`, as Hive, Spark and
/// Delta lay tables out; DuckDB, Spark and pandas add them back from the path
/// (and refuse tables that have them in both places).
///
/// Names follow Databricks' inference tables where one exists
/// (`client_request_id`, `status_code`, `sampling_fraction`,
/// `execution_duration_ms`, `request`, `response`, `served_entity_id`,
/// `requester`, `logging_error_codes`); durations are fractional
/// milliseconds, because Podium's are often below one. `replica` names the
/// process that wrote the row and `trace_id` is the W3C trace of the
/// request; both came later, so readers accept files without them.
pub fn schema() -> Arc<Schema> {
    use DataType::*;
    let text = |name: &str, nullable: bool| Field::new(name, Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("request_id", false),
        text("client_request_id", true),
        Field::new(
            "request_time",
            Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text("arm", true),
        text("model_name", true),
        Field::new("model_version", Int64, true),
        text("served_entity_id", true),
        text("protocol", false),
        Field::new("status_code", Int32, false),
        Field::new("grpc_status", Int32, true),
        text("error", true),
        Field::new("execution_duration_ms", Float64, true),
        Field::new("total_duration_ms", Float64, false),
        Field::new("queue_duration_ms", Float64, true),
        Field::new("batch_size", Int64, true),
        Field::new("sampling_fraction", Float64, false),
        text("request", true),
        text("response", true),
        text("shadow_arm", true),
        Field::new("shadow_model_version", Int64, true),
        text("shadow_response", true),
        text("shadow_error", true),
        text("requester", true),
        Field::new(
            "logging_error_codes",
            List(Arc::new(Field::new("item", Utf8, true))),
            false,
        ),
        text("replica", false),
        text("trace_id", true),
    ]))
}

/// Microseconds since the epoch of `t` (negative before 1970).
pub fn micros(t: SystemTime) -> i64 {
    DateTime::<Utc>::from(t).timestamp_micros()
}

/// Days since 1970-01-01 (UTC) of `t`: equal for two times exactly when
/// their [`date`]s are.
pub fn day(t: SystemTime) -> i64 {
    const DAY: u64 = 86_400;
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => (since.as_secs() / DAY) as i64,
        Err(_) => micros(t).div_euclid(DAY as i64 * 1_000_000),
    }
}

/// The UTC date of `t`: the `request_date` partition of its row.
pub fn date(t: SystemTime) -> NaiveDate {
    DateTime::<Utc>::from(t).date_naive()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for microseconds since the epoch.
pub fn format_micros(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("{us} us since the epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_utc_with_microseconds() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micros(1_764_201_600_123_456),
            "2025-11-27T00:00:00.123456Z"
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_201_600_123_456);
        assert_eq!(micros(t), 1_764_201_600_123_456);
        assert_eq!(date(t).to_string(), "2025-11-27");
        let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert_eq!(micros(before), -1_000_000);
        assert_eq!(date(before).to_string(), "1969-12-31");
        assert_eq!((day(before), day(SystemTime::UNIX_EPOCH)), (-1, 0));
        assert_eq!(day(t), 20_419);
        let midnight = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(20_419 * 86_400);
        assert_eq!(day(midnight - std::time::Duration::from_micros(1)), 20_418);
        assert_eq!(day(midnight), 20_419);
    }
}
