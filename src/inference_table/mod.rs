//! The inference table: one row per request (successes and failures, every
//! protocol, primary and shadow) in Parquet files that DuckDB, Spark and
//! pandas read directly.
//!
//! The request path never waits for it: [`InferenceTable::submit`] hands a
//! [`Record`] to a bounded queue with `try_send`, and a full queue drops the
//! row (counted). One writer thread renders rows, batches them into Arrow
//! record batches and rolls files by rows, bytes and age (see [`writer`]).
//! The rows of files still open are also in a [`journal`], replayed into
//! Parquet at the next start after a crash ([`recovery`]).
//!
//! Rows are protocol-free: how a decoded request or response becomes the
//! text of the `request`/`response` columns is a [`RenderPayload`] handed in
//! at start-up by the API layer, so this module imports no protocol code.
//!
//! A table on object storage (`--table-dir s3://bucket/prefix`) is written
//! the same way into a local spool, whose complete files are uploaded and
//! then deleted ([`upload`], [`remote`]).
//!
//! The [`feedback`] table (`<table>/_feedback/`) is the second kind of row
//! ([`kind::RowKind`]) through the same writer, journal and recovery; its
//! sender waits until its rows are journaled.

mod batch;
mod failures;
pub mod feedback;
pub mod journal;
mod kind;
pub mod reader;
pub mod record;
mod recovery;
pub mod remote;
pub mod summary;
mod table;
#[cfg(test)]
mod test_rows;
mod upload;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};

pub use feedback::{FeedbackRow, FeedbackTable, FEEDBACK_DIR};
pub use record::{Payload, Protocol, Record, ShadowRecord};
pub use remote::Remote;

use batch::Requests;
use table::{Message, Table};

use crate::replica::ReplicaId;
use crate::request::{InferRequest, InferResponse, ShadowOutcome, ShadowReceiver, Timing};

/// Renders decoded requests and responses to the JSON text the `request`
/// and `response` columns hold; runs on the writer thread, off the request
/// path.
pub trait RenderPayload: Send + Sync + 'static {
    fn request(&self, request: &InferRequest) -> Vec<u8>;
    fn response(&self, response: &InferResponse) -> Vec<u8>;
}

/// Where and how the table is written (`podium serve --table-dir ...`).
#[derive(Debug, Clone)]
pub struct TableOptions {
    /// Where files are written: the table's directory, or the spool of a
    /// table on object storage.
    pub dir: PathBuf,
    /// The object storage the files of `dir` are uploaded to; None: `dir`
    /// is the table.
    pub remote: Option<Remote>,
    /// A file is closed (and becomes visible) after this long...
    pub roll_interval: Duration,
    /// ...or this many rows...
    pub roll_rows: usize,
    /// ...or about this many bytes, whichever comes first.
    pub roll_bytes: usize,
    /// Rows waiting for the writer; beyond it rows are dropped and counted.
    pub queue_rows: usize,
    /// Payload bytes waiting for the writer; beyond it rows are dropped.
    pub queue_bytes: usize,
    /// A request or response body over this is stored as null, with
    /// `MAX_REQUEST_SIZE_EXCEEDED` / `MAX_RESPONSE_SIZE_EXCEEDED`.
    pub max_payload_bytes: usize,
    /// This replica: part of every file name (replicas writing one table
    /// directory never collide) and the `replica` column.
    pub replica: ReplicaId,
}

impl TableOptions {
    /// The defaults of `podium serve` for a table in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> TableOptions {
        TableOptions {
            dir: dir.into(),
            remote: None,
            roll_interval: Duration::from_secs(60),
            roll_rows: 100_000,
            roll_bytes: 64 * 1024 * 1024,
            queue_rows: 10_000,
            queue_bytes: 64 * 1024 * 1024,
            max_payload_bytes: 1024 * 1024,
            replica: ReplicaId::detect(),
        }
    }
}

/// The handle the request path writes through; cheap to share.
pub struct InferenceTable {
    table: Table<Requests>,
    /// Rows waiting for their shadow's outcome before they are queued.
    waiting: Arc<AtomicUsize>,
}

impl InferenceTable {
    /// Creates the directory, recovers what a crash left, and starts the
    /// writer thread.
    pub fn start(
        options: TableOptions,
        render: Arc<dyn RenderPayload>,
    ) -> anyhow::Result<InferenceTable> {
        Ok(InferenceTable {
            table: Table::start(
                options.clone(),
                Requests {
                    render,
                    replica: options.replica.to_string(),
                },
                "podium-table",
            )?,
            waiting: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn options(&self) -> &TableOptions {
        &self.table.options
    }

    /// Starts the row of one request to `endpoint` (None: a name that is
    /// neither an endpoint nor a model, whose rows share the partition
    /// [`UNKNOWN_ENDPOINT`]). The caller has already sampled the request in;
    /// `sample_fraction` is recorded, and `payloads` false keeps the bodies out.
    pub fn entry(
        &self,
        request_id: String,
        endpoint: Option<&str>,
        protocol: Protocol,
        sample_fraction: f64,
        payloads: bool,
    ) -> Entry {
        Entry {
            started: Instant::now(),
            payloads,
            max_payload: self.table.options.max_payload_bytes,
            record: Record {
                request_id,
                client_request_id: None,
                received: SystemTime::now(),
                endpoint: endpoint.unwrap_or(UNKNOWN_ENDPOINT).to_string(),
                arm: None,
                model_name: None,
                model_version: None,
                protocol,
                status_code: 0,
                grpc_status: None,
                error: None,
                execution: None,
                total: Duration::ZERO,
                queue: None,
                batch_size: None,
                sampling_fraction: sample_fraction,
                request: Payload::Absent,
                response: Payload::Absent,
                shadow: None,
                requester: None,
                trace_id: None,
                logging_error_codes: Vec::new(),
            },
        }
    }

    /// Completes `entry` with the answer the client got and queues it; when
    /// the request sent a shadow copy (`shadow`: its arm and outcome), it is
    /// queued once the shadow is done. Never blocks: a full queue drops the
    /// row and counts it.
    pub fn submit(
        &self,
        entry: Entry,
        status_code: u16,
        error: Option<String>,
        shadow: Option<(String, ShadowReceiver)>,
    ) {
        let mut record = entry.finish(status_code, error);
        match shadow {
            None => self.enqueue(record),
            Some((arm, outcome)) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    self.enqueue(record);
                    return;
                };
                let waiting = Waiting::new(Arc::clone(&self.waiting));
                let table = self.sender();
                runtime.spawn(async move {
                    let _waiting = waiting;
                    let outcome = outcome.await.unwrap_or_else(|_| {
                        ShadowOutcome::Failed("the shadow call was cancelled".into())
                    });
                    record.shadow = Some(table.shadow_record(arm, outcome));
                    table.enqueue(record);
                });
            }
        }
    }

    fn sender(&self) -> Enqueue {
        Enqueue {
            closing: Arc::clone(&self.table.closing),
            spool_full: Arc::clone(&self.table.spool_full),
            tx: self.table.tx.clone(),
            queued_bytes: Arc::clone(&self.table.queued_bytes),
            queue_bytes: self.table.options.queue_bytes,
            max_payload: self.table.options.max_payload_bytes,
        }
    }

    fn enqueue(&self, record: Record) {
        self.sender().enqueue(record)
    }

    /// Waits (up to `timeout`) for rows still waiting on a shadow, then has
    /// the writer flush and close every file, and waits for it to finish.
    /// Rows submitted afterwards are dropped and counted as `closed`.
    pub async fn close(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.waiting.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.table.close(timeout).await;
    }
}

/// A row waiting for its shadow, counted until dropped (also on a panic),
/// so `close` knows when all have been queued.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: Arc<AtomicUsize>) -> Waiting {
        count.fetch_add(1, Ordering::AcqRel);
        Waiting(count)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a row needs to be queued from any thread.
struct Enqueue {
    closing: Arc<AtomicBool>,
    /// Raised while the spool of a table on object storage is full.
    spool_full: Arc<AtomicBool>,
    tx: Sender<Message<Record>>,
    queued_bytes: Arc<AtomicUsize>,
    queue_bytes: usize,
    max_payload: usize,
}

impl Enqueue {
    fn enqueue(&self, record: Record) {
        if self.spool_full.load(Ordering::Relaxed) {
            dropped("spool_full");
            return;
        }
        let size = record.size();
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before + size > self.queue_bytes && size > 0 {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            dropped("queue_full");
            return;
        }
        match self.tx.try_send(Message::Row(Box::new(record))) {
            Ok(()) => {}
            Err(e) => {
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                dropped(match e {
                    TrySendError::Full(_) => "queue_full",
                    TrySendError::Disconnected(_) if self.closing.load(Ordering::Acquire) => {
                        "closed"
                    }
                    TrySendError::Disconnected(_) => {
                        writer_gone();
                        "writer_failed"
                    }
                });
            }
        }
    }

    fn shadow_record(&self, arm: String, outcome: ShadowOutcome) -> ShadowRecord {
        match outcome {
            ShadowOutcome::Answered(response) => ShadowRecord {
                arm,
                model_version: Some(response.model_version),
                response: limit_response(response, self.max_payload, &mut Vec::new()),
                error: None,
            },
            ShadowOutcome::Failed(error) => ShadowRecord {
                arm,
                model_version: None,
                response: Payload::Absent,
                error: Some(error),
            },
        }
    }
}

/// The logging error codes of payloads over `--table-max-payload-bytes`.
const REQUEST_TOO_LARGE: &str = "MAX_REQUEST_SIZE_EXCEEDED";
const RESPONSE_TOO_LARGE: &str = "MAX_RESPONSE_SIZE_EXCEEDED";

fn limit_response(response: InferResponse, max: usize, codes: &mut Vec<&'static str>) -> Payload {
    let payload = Payload::Response(response);
    if payload.size() > max {
        codes.push(RESPONSE_TOO_LARGE);
        return Payload::TooLarge;
    }
    payload
}

/// The `endpoint` of rows whose name is neither an endpoint nor a model
/// (their 404 error names what was called): made-up names in URLs must not
/// create partitions without bound.
pub const UNKNOWN_ENDPOINT: &str = "_unknown";

/// The writer thread ended while serving: said once in the log (rows are
/// counted as `writer_failed`).
fn writer_gone() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::error!(
            "the inference table writer stopped; rows are dropped (podium_table_rows_dropped_total{{reason=\"writer_failed\"}}) until Podium restarts"
        )
    });
}

pub(crate) fn dropped(reason: &'static str) {
    metrics::counter!("podium_table_rows_dropped_total", "reason" => reason).increment(1);
}

/// The row of one request while it is being served. The call pipeline
/// fills in what it learns (bodies, client id, route, version, timings) and
/// [`InferenceTable::submit`] completes it.
pub struct Entry {
    record: Record,
    started: Instant,
    payloads: bool,
    max_payload: usize,
}

impl Entry {
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

    /// The name of the API key the call was accepted with.
    /// The W3C trace id of the request (the `trace_id` column).
    pub fn trace_id(&mut self, trace_id: &str) {
        self.record.trace_id = Some(trace_id.to_string());
    }

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
    pub fn request_text(&mut self, body: &Bytes) {
        if let Some(p) = self.kept(body.len(), REQUEST_TOO_LARGE, || {
            Payload::Text(body.clone())
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

    fn finish(mut self, status_code: u16, error: Option<String>) -> Record {
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
