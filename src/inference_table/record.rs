//! One row of the inference table, as the request path hands it over, and
//! its columns.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;

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
    pub sampling_fraction: f64,
    pub request: Payload,
    pub response: Payload,
    pub shadow: Option<ShadowRecord>,
    pub requester: Option<String>,
    pub logging_error_codes: Vec<&'static str>,
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
/// milliseconds, because Podium's are often below one.
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
    ]))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Microseconds since the epoch of `t` (negative before 1970).
pub fn micros(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for microseconds since the epoch.
pub fn format_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A random version-4 UUID, the `request_id` Podium gives every request.
pub fn new_request_id() -> String {
    let hi = crate::routing::split::random_u64();
    let lo = crate::routing::split::random_u64();
    let hi = (hi & !0xF000) | 0x4000; // version 4
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(20_419), (2025, 11, 27));
        for days in [-800_000, -1, 0, 59, 365, 11_016, 20_419, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micros(1_764_201_600_123_456),
            "2025-11-27T00:00:00.123456Z"
        );
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }
}
