//! The inference table's kind of row ([`Requests`]): its partition folder,
//! and one Arrow record batch of rows with each row's payloads rendered to
//! text and its fields laid out in [`record::schema`]'s column order.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::kind::RowKind;
use super::record::{self, Payload, Record};
use super::RenderPayload;

/// The inference table's rows: one per request, partitioned by endpoint
/// and day, payloads rendered by the API layer's [`RenderPayload`].
#[derive(Clone)]
pub(super) struct Requests {
    pub render: Arc<dyn RenderPayload>,
    /// The `replica` column of every row this process writes.
    pub replica: String,
}

impl RowKind for Requests {
    type Row = Record;
    const NAME: &'static str = "inference table";
    const METRICS: &'static str = "podium_table";
    const PARTITION: &'static [&'static str] = &["endpoint", "request_date"];
    const UNIQUE_TEXT: &'static [&'static str] = &[
        "request_id",
        "client_request_id",
        "request",
        "response",
        "shadow_response",
        "trace_id",
    ];
    const UNIQUE_NUMBERS: &'static [&'static str] = &[
        "request_time",
        "execution_duration_ms",
        "total_duration_ms",
        "queue_duration_ms",
    ];

    fn schema(&self) -> SchemaRef {
        record::schema()
    }

    fn partition(&self, row: &Record) -> PathBuf {
        Path::new(&partition_dir(&row.endpoint)).join(format!(
            "request_date={}",
            record::date(row.received).format("%Y-%m-%d")
        ))
    }

    fn same_partition(&self, a: &Record, b: &Record) -> bool {
        a.endpoint == b.endpoint && record::day(a.received) == record::day(b.received)
    }

    fn size(row: &Record) -> usize {
        row.size()
    }

    fn batch(&self, schema: &SchemaRef, rows: Vec<Record>) -> anyhow::Result<RecordBatch> {
        batch(schema, rows, self.render.as_ref(), &self.replica)
    }
}

/// `endpoint=<e>` with every byte outside `[A-Za-z0-9_.-]` percent-encoded,
/// as Hive does: with the prefix and `/` encoded, a name never leaves the table.
pub(super) fn partition_dir(endpoint: &str) -> String {
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');
    format!("endpoint={}", utf8_percent_encode(endpoint, KEEP))
}

/// Renders a payload to the text stored in the table (bodies that are
/// already UTF-8 text are not copied).
fn render<'a>(payload: &'a Payload, renderer: &dyn RenderPayload) -> Option<Cow<'a, str>> {
    let owned = |bytes: Vec<u8>| {
        Cow::Owned(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        )
    };
    match payload {
        Payload::Absent | Payload::TooLarge => None,
        // The strict check first: it is several times faster than the lossy
        // one, which only invalid bodies (a client's garbage) need.
        Payload::Text(b) => Some(match std::str::from_utf8(b) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(b),
        }),
        Payload::Request(r) => Some(owned(renderer.request(r))),
        Payload::Response(r) => Some(owned(renderer.response(r))),
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One Arrow record batch of `rows`, in [`record::schema`]'s column order.
fn batch(
    schema: &SchemaRef,
    rows: Vec<Record>,
    renderer: &dyn RenderPayload,
    replica: &str,
) -> anyhow::Result<RecordBatch> {
    let n = rows.len();
    // Payloads are rendered first, so the text columns' buffers are sized
    // once: grown by doubling, a batch's ~1 MB of bodies was copied again
    // about once, into fresh memory for each size. (Bodies rendered from
    // tensors are all held until the batch is built.)
    let rendered: Vec<[Option<Cow<str>>; 2]> = rows
        .iter()
        .map(|r| [render(&r.request, renderer), render(&r.response, renderer)])
        .collect();
    let text_bytes = |i: usize| -> usize {
        rendered
            .iter()
            .map(|p| p[i].as_ref().map_or(0, |t| t.len()))
            .sum()
    };
    let mut request = StringBuilder::with_capacity(n, text_bytes(0));
    let mut response = StringBuilder::with_capacity(n, text_bytes(1));
    let mut request_id = StringBuilder::with_capacity(n, n * 36);
    let mut client_request_id = StringBuilder::new();
    let mut request_time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut arm = StringBuilder::new();
    let mut model_name = StringBuilder::new();
    let mut model_version = Int64Builder::with_capacity(n);
    let mut served_entity_id = StringBuilder::new();
    let mut protocol = StringBuilder::new();
    let mut status_code = Int32Builder::with_capacity(n);
    let mut grpc_status = Int32Builder::with_capacity(n);
    let mut error = StringBuilder::new();
    let mut execution = Float64Builder::with_capacity(n);
    let mut total = Float64Builder::with_capacity(n);
    let mut queue = Float64Builder::with_capacity(n);
    let mut batch_size = Int64Builder::with_capacity(n);
    let mut sampling = Float64Builder::with_capacity(n);
    let mut shadow_arm = StringBuilder::new();
    let mut shadow_version = Int64Builder::with_capacity(n);
    let mut shadow_response = StringBuilder::new();
    let mut shadow_error = StringBuilder::new();
    let mut requester = StringBuilder::new();
    let mut codes = ListBuilder::new(StringBuilder::new());
    let mut trace_id = StringBuilder::new();
    let mut entity: Option<(String, u64, String)> = None;
    for (r, [request_text, response_text]) in rows.iter().zip(rendered) {
        let us = record::micros(r.received);
        request_id.append_value(&r.request_id);
        client_request_id.append_option(r.client_request_id.as_deref());
        request_time.append_value(us);
        arm.append_option(r.arm.as_deref());
        model_name.append_option(r.model_name.as_deref());
        model_version.append_option(r.model_version.map(|v| v as i64));
        match (&r.model_name, r.model_version) {
            (Some(m), Some(v)) => {
                // Rows in a row are mostly of one version: render its id once.
                if entity
                    .as_ref()
                    .is_none_or(|(em, ev, _)| em != m || *ev != v)
                {
                    entity = Some((m.clone(), v, format!("{m}/{v}")));
                }
                served_entity_id.append_option(entity.as_ref().map(|(_, _, id)| id));
            }
            _ => served_entity_id.append_null(),
        }
        protocol.append_value(r.protocol.as_str());
        status_code.append_value(i32::from(r.status_code));
        grpc_status.append_option(r.grpc_status);
        error.append_option(r.error.as_deref());
        execution.append_option(r.execution.map(ms));
        total.append_value(ms(r.total));
        queue.append_option(r.queue.map(ms));
        batch_size.append_option(r.batch_size.map(|n| n as i64));
        sampling.append_value(r.sampling_fraction);
        request.append_option(request_text);
        response.append_option(response_text);
        match &r.shadow {
            Some(s) => {
                shadow_arm.append_value(&s.arm);
                shadow_version.append_option(s.model_version.map(|v| v as i64));
                shadow_response.append_option(render(&s.response, renderer));
                shadow_error.append_option(s.error.as_deref());
            }
            None => {
                shadow_arm.append_null();
                shadow_version.append_null();
                shadow_response.append_null();
                shadow_error.append_null();
            }
        }
        requester.append_option(r.requester.as_deref());
        for code in &r.logging_error_codes {
            codes.values().append_value(code);
        }
        codes.append(true);
        trace_id.append_option(r.trace_id.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(request_id.finish()),
        Arc::new(client_request_id.finish()),
        Arc::new(request_time.finish()),
        Arc::new(arm.finish()),
        Arc::new(model_name.finish()),
        Arc::new(model_version.finish()),
        Arc::new(served_entity_id.finish()),
        Arc::new(protocol.finish()),
        Arc::new(status_code.finish()),
        Arc::new(grpc_status.finish()),
        Arc::new(error.finish()),
        Arc::new(execution.finish()),
        Arc::new(total.finish()),
        Arc::new(queue.finish()),
        Arc::new(batch_size.finish()),
        Arc::new(sampling.finish()),
        Arc::new(request.finish()),
        Arc::new(response.finish()),
        Arc::new(shadow_arm.finish()),
        Arc::new(shadow_version.finish()),
        Arc::new(shadow_response.finish()),
        Arc::new(shadow_error.finish()),
        Arc::new(requester.finish()),
        Arc::new(codes.finish()),
        Arc::new(StringArray::from(vec![replica; n])),
        Arc::new(trace_id.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_cannot_leave_the_table() {
        assert_eq!(partition_dir("fraud-ab_2.x"), "endpoint=fraud-ab_2.x");
        assert_eq!(partition_dir("../etc"), "endpoint=..%2Fetc");
        assert_eq!(partition_dir("a/b=c d"), "endpoint=a%2Fb%3Dc%20d");
        assert_eq!(partition_dir("é"), "endpoint=%C3%A9");
    }
}
