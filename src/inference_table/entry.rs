//! The row of one request while it is being served: what the call
//! pipeline learns about the request (bodies, client id, route, version,
//! timings) is written into it, and [`super::InferenceTable::submit`]
//! queues it.

use std::time::Instant;

use bytes::Bytes;

use super::record::{Payload, Record};
use crate::request::{InferRequest, InferResponse, Timing};

/// Request bodies at least this large are shared rather than copied when
/// nothing else holds their memory (see [`Entry::request_text`]); copying a
/// smaller one costs far less than decoding it did.
const SHARE_FROM: usize = 64 * 1024;

/// The logging error codes of payloads over `--table-max-payload-bytes`.
const REQUEST_TOO_LARGE: &str = "MAX_REQUEST_SIZE_EXCEEDED";
const RESPONSE_TOO_LARGE: &str = "MAX_RESPONSE_SIZE_EXCEEDED";

pub(super) fn limit_response(
    response: InferResponse,
    max: usize,
    codes: &mut Vec<&'static str>,
) -> Payload {
    let payload = Payload::Response(response);
    if payload.size() > max {
        codes.push(RESPONSE_TOO_LARGE);
        return Payload::TooLarge;
    }
    payload
}

/// The row of one request while it is being served (see the module doc).
pub struct Entry {
    record: Record,
    started: Instant,
    payloads: bool,
    max_payload: usize,
}

impl Entry {
    /// The row `record` of a request starting now; `payloads` false keeps
    /// the bodies out, and bodies over `max_payload` bytes are stored as
    /// null with a logging error code.
    pub(super) fn new(record: Record, payloads: bool, max_payload: usize) -> Entry {
        Entry {
            record,
            started: Instant::now(),
            payloads,
            max_payload,
        }
    }

    /// The arm and model the request was routed to.
    pub fn routed(&mut self, arm: &str, model: &str) {
        self.record.arm = Some(arm.to_string());
        self.record.model_name = Some(model.to_string());
    }

    /// The version that answered, and where its time went.
    pub fn answered(&mut self, model: &str, version: u64, timing: Timing) {
        if self.record.model_name.as_deref() != Some(model) {
            self.record.model_name = Some(model.to_string());
        }
        self.record.model_version = Some(version);
        self.record.execution = Some(timing.inference);
        self.record.queue = Some(timing.queue);
        self.record.batch_size = timing.batch_size;
    }

    /// The W3C trace id of the request (the `trace_id` column).
    pub fn trace_id(&mut self, trace_id: &str) {
        self.record.trace_id = Some(trace_id.to_string());
    }

    /// The name of the API key the call was accepted with.
    pub fn requester(&mut self, name: &str) {
        self.record.requester = Some(name.to_string());
    }

    /// Sets `client_request_id` unless already set (the header wins over a body `id`).
    pub fn client_request_id(&mut self, id: Option<&str>) {
        if self.record.client_request_id.is_none() {
            self.record.client_request_id = id.filter(|s| !s.is_empty()).map(str::to_string);
        }
    }

    /// Records a request body that already is text (JSON, or CSV).
    ///
    /// The body is usually a slice of the connection's read buffer (several
    /// KiB for a body of a few hundred bytes). Kept until the writer's next
    /// tick, the slice would pin the whole buffer: the HTTP server would
    /// allocate a fresh one for the next request, and the queue would hold
    /// far more memory than its `queue_bytes` bound counts. So a body is
    /// copied unless it is large and the only user of its memory (a body
    /// collected from several chunks); a large slice pins a buffer at most
    /// a few times its size (hyper's grows to ~400 KiB).
    pub fn request_text(&mut self, body: &Bytes) {
        if let Some(p) = self.kept(body.len(), REQUEST_TOO_LARGE, || {
            Payload::Text(if body.len() >= SHARE_FROM && body.is_unique() {
                body.clone()
            } else {
                Bytes::copy_from_slice(body)
            })
        }) {
            self.record.request = p;
        }
    }

    /// Records a decoded request (binary or gRPC), copied when under the limit.
    pub fn request_tensors(&mut self, request: &InferRequest) {
        let size = request.inputs.iter().map(|t| t.data.raw_len()).sum();
        if let Some(p) = self.kept(size, REQUEST_TOO_LARGE, || {
            Payload::Request(request.clone())
        }) {
            self.record.request = p;
        }
    }

    /// Records a response body that is JSON text.
    pub fn response_text(&mut self, body: &Bytes) {
        if let Some(p) = self.kept(body.len(), RESPONSE_TOO_LARGE, || {
            Payload::Text(body.clone())
        }) {
            self.record.response = p;
        }
    }

    /// Records a copy of a response, copied only when under the limit.
    pub fn response_tensors_copy(&mut self, response: &InferResponse) {
        let size = response.outputs.iter().map(|t| t.data.raw_len()).sum();
        if let Some(p) = self.kept(size, RESPONSE_TOO_LARGE, || {
            Payload::Response(response.clone())
        }) {
            self.record.response = p;
        }
    }

    /// The payload to store: None when payloads are off, [`Payload::TooLarge`]
    /// (with `code` noted) over the size limit, else `copy()`.
    fn kept(
        &mut self,
        size: usize,
        code: &'static str,
        copy: impl FnOnce() -> Payload,
    ) -> Option<Payload> {
        if !self.payloads {
            return None;
        }
        if size > self.max_payload {
            self.record.logging_error_codes.push(code);
            return Some(Payload::TooLarge);
        }
        Some(copy())
    }

    /// Records a response to render in the OIP JSON form.
    pub fn response_tensors(&mut self, response: InferResponse) {
        if !self.payloads {
            return;
        }
        self.record.response = limit_response(
            response,
            self.max_payload,
            &mut self.record.logging_error_codes,
        );
    }

    /// The gRPC status code the client got (the `grpc_status` column).
    pub fn grpc_status(&mut self, code: i32) {
        self.record.grpc_status = Some(code);
    }

    /// The response text of an error, when the protocol's error body is
    /// not the OIP `{"error": ...}` (MLflow's `error_code`/`message`).
    pub fn error_body(&mut self, body: String) {
        if self.payloads {
            self.record.response = Payload::Text(Bytes::from(body));
        }
    }

    pub(super) fn finish(mut self, status_code: u16, error: Option<String>) -> Record {
        let r = &mut self.record;
        r.total = self.started.elapsed();
        r.status_code = status_code;
        if let (Some(e), true, Payload::Absent) = (&error, self.payloads, &r.response) {
            r.response = Payload::Text(Bytes::from(serde_json::json!({ "error": e }).to_string()));
        }
        r.error = error;
        self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference_table::test_rows::record;

    fn entry() -> Entry {
        let mut record = record(0);
        record.request = Payload::Absent;
        Entry::new(record, true, 1024 * 1024)
    }

    fn stored(entry: &Entry) -> &Bytes {
        match &entry.record.request {
            Payload::Text(b) => b,
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn a_body_sharing_a_larger_buffer_is_copied_so_the_buffer_is_not_pinned() {
        // How an HTTP server hands over a body: a slice of its read buffer,
        // whose rest it goes on using.
        let mut buffer = bytes::BytesMut::with_capacity(8192);
        buffer.extend_from_slice(b"{\"inputs\": []}POST /next HTTP/1.1");
        let body = buffer.split_to(14).freeze();
        let mut entry = entry();
        entry.request_text(&body);
        let kept = stored(&entry);
        assert_eq!(kept, &body);
        assert_ne!(
            kept.as_ptr(),
            body.as_ptr(),
            "the row must hold its own copy"
        );
        drop(body);
        // The server can reuse its buffer in place.
        assert!(buffer.try_reclaim(8000));
    }

    #[test]
    fn a_large_body_with_memory_of_its_own_is_kept_without_a_copy() {
        let body = Bytes::from(vec![b' '; SHARE_FROM]);
        let mut entry = entry();
        entry.request_text(&body);
        assert_eq!(stored(&entry).as_ptr(), body.as_ptr());
        // A small one is copied all the same: it may be a slice of a
        // buffer nothing else holds any more.
        let small = Bytes::from(b"{\"inputs\": []}".to_vec());
        entry.request_text(&small);
        assert_ne!(stored(&entry).as_ptr(), small.as_ptr());
    }
}
