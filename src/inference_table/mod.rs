//! The inference table: one row per request (successes and failures, every
//! protocol, primary and shadow) in Parquet files that DuckDB, Spark and
//! pandas read directly.
//!
//! The request path never waits for it: [`InferenceTable::submit`] hands a
//! [`Record`] to a bounded queue with `try_send`, and a full queue drops the
//! row (counted). A writer thread renders rows, batches them into Arrow
//! record batches and rolls files by rows, bytes and age (see [`writer`]);
//! helper writers join in while the queue backs up (see [`crew`]).
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
mod closer;
mod compression;
mod crew;
mod entry;
mod failures;
pub mod feedback;
mod file;
pub mod journal;
mod kind;
mod message;
mod partition;
mod properties;
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

use crossbeam_channel::{Sender, TrySendError};

pub use compression::TableCompression;
pub use feedback::{FeedbackRow, FeedbackTable, FEEDBACK_DIR};
pub use record::{Payload, Protocol, Record, ShadowRecord};
pub use remote::Remote;

use batch::Requests;
use entry::limit_response;
pub use entry::Entry;
use message::Message;
use table::Table;

use crate::replica::ReplicaId;
use crate::request::{InferRequest, InferResponse, ShadowOutcome, ShadowReceiver};

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
    /// The codec of the files' pages.
    pub compression: TableCompression,
    /// Writer threads: the main one and helpers that join in while the
    /// queue backs up (see [`crew`]).
    pub writers: usize,
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
            compression: TableCompression::Snappy,
            writers: default_writers(),
            queue_rows: 10_000,
            queue_bytes: 64 * 1024 * 1024,
            max_payload_bytes: 1024 * 1024,
            replica: ReplicaId::detect(),
        }
    }
}

/// Writer threads when none are asked for: one per 4 cores (at least 1, at
/// most 8). A server answers roughly 10,000 to 25,000 requests a second per
/// core and one writer handles on the order of 100,000 rows a second, so
/// this leaves room at every size.
pub fn default_writers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).clamp(1, 8))
}

/// The handle the request path writes through; cheap to share.
pub struct InferenceTable {
    table: Table<Requests>,
    /// The sending side of the writer's queue, with its bounds. Made once,
    /// so a row goes through it without cloning a handle (each clone and
    /// drop is an atomic write shared by every request thread).
    queue: Arc<Enqueue>,
    /// Rows waiting for their shadow's outcome before they are queued.
    waiting: Arc<AtomicUsize>,
}

impl InferenceTable {
    /// Creates the directory, recovers what a crash left, and starts the
    /// writer threads.
    pub fn start(
        options: TableOptions,
        render: Arc<dyn RenderPayload>,
    ) -> anyhow::Result<InferenceTable> {
        let table = Table::start(
            options.clone(),
            Requests {
                render,
                replica: options.replica.to_string(),
            },
            "podium-table",
        )?;
        Ok(InferenceTable {
            queue: Arc::new(Enqueue {
                closing: Arc::clone(&table.closing),
                spool_full: Arc::clone(&table.spool_full),
                tx: table.tx.clone(),
                queued_bytes: Arc::clone(&table.queued_bytes),
                queue_bytes: table.options.queue_bytes,
                max_payload: table.options.max_payload_bytes,
            }),
            table,
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
        Entry::new(
            Record {
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
            payloads,
            self.table.options.max_payload_bytes,
        )
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
            None => self.queue.enqueue(record),
            Some((arm, outcome)) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    self.queue.enqueue(record);
                    return;
                };
                let waiting = Waiting::new(Arc::clone(&self.waiting));
                let table = Arc::clone(&self.queue);
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

    /// Waits (up to `timeout`) for rows still waiting on a shadow, then has
    /// the writers flush and close every file, and waits for them to finish.
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
