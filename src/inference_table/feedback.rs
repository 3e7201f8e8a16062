//! The feedback table: every accepted `POST /v2/feedback` item, durable,
//! next to the inference table so offline analysis can join the two on
//! `request_id`.
//!
//! ```text
//! <table>/_feedback/request_date=<YYYY-MM-DD>/part-<stamp>-<replica>-<uuid>.parquet
//! ```
//!
//! Same writer, journal and start-up recovery as the inference table (a
//! second [`RowKind`]), with one stronger promise: [`FeedbackTable::write`]
//! returns only once the rows are in the open file's journal, so feedback a
//! client was told is accepted survives a `kill -9` (a power cut: all but
//! the last [`super::journal::SYNC_INTERVAL`]). A full queue or a failed
//! write is an error the API answers with 503 and `Retry-After`, never a
//! silent loss. The folder starts with `_`, so engines reading the inference
//! table with Hive partitioning skip it.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use crossbeam_channel::TrySendError;

use super::kind::RowKind;
use super::message::Message;
use super::record;
use super::table::Table;
use super::TableOptions;

/// The feedback table's folder inside the inference table's.
pub const FEEDBACK_DIR: &str = "_feedback";

/// How long a feedback request waits for its rows to be journaled before it
/// is answered "not written" (rows a sender waits for are written at the
/// writer's next 20 ms tick; this only ends waits on a writer that hangs on
/// its disk or has died).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One feedback item as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRow {
    /// Podium's id of the labelled call: as sent, or looked up from
    /// `client_request_id` when the server still knew the call; else null.
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
    /// The label as JSON text (`1`, `"fraud"`, `true`).
    pub label: String,
    /// When the server accepted the item (one time for a whole batch).
    pub received: SystemTime,
}

/// The feedback table's columns, in order; `request_date` is the
/// partition folder.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Utf8, true),
        Field::new("client_request_id", DataType::Utf8, true),
        Field::new("label", DataType::Utf8, false),
        Field::new(
            "received_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// The feedback table's kind of row.
#[derive(Clone)]
pub(super) struct Feedback;

impl RowKind for Feedback {
    type Row = FeedbackRow;
    const NAME: &'static str = "feedback table";
    const METRICS: &'static str = "podium_feedback_table";
    const PARTITION: &'static [&'static str] = &["request_date"];
    const UNIQUE_TEXT: &'static [&'static str] = &["request_id", "client_request_id"];

    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn partition(&self, row: &FeedbackRow) -> PathBuf {
        PathBuf::from(format!(
            "request_date={}",
            record::date(row.received).format("%Y-%m-%d")
        ))
    }

    fn same_partition(&self, a: &FeedbackRow, b: &FeedbackRow) -> bool {
        record::day(a.received) == record::day(b.received)
    }

    fn size(row: &FeedbackRow) -> usize {
        row.request_id.as_ref().map_or(0, String::len)
            + row.client_request_id.as_ref().map_or(0, String::len)
            + row.label.len()
    }

    fn batch(&self, schema: &SchemaRef, rows: Vec<FeedbackRow>) -> anyhow::Result<RecordBatch> {
        let n = rows.len();
        let mut request_id = StringBuilder::with_capacity(n, n * 36);
        let mut client_request_id = StringBuilder::new();
        let mut label = StringBuilder::new();
        let mut received = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for row in &rows {
            request_id.append_option(row.request_id.as_deref());
            client_request_id.append_option(row.client_request_id.as_deref());
            label.append_value(&row.label);
            received.append_value(record::micros(row.received));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(request_id.finish()),
            Arc::new(client_request_id.finish()),
            Arc::new(label.finish()),
            Arc::new(received.finish()),
        ];
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

/// Why feedback was not written; nothing of the batch may be assumed stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotWritten {
    #[error("the feedback table's queue is full (--table-queue-rows batches, --table-queue-bytes bytes); retry in a moment")]
    QueueFull,
    #[error("the feedback table could not write the batch or its journal (see the server log, podium_feedback_table_write_errors_total and podium_feedback_table_journal_errors_total); retry in a moment")]
    WriteFailed,
    #[error("the feedback table is closed: the server is shutting down; send the feedback to another replica or after the restart")]
    Closed,
}

/// The handle `POST /v2/feedback` writes through.
pub struct FeedbackTable {
    table: Table<Feedback>,
}

impl FeedbackTable {
    /// The feedback table of the inference table `options` describe (same
    /// roll and queue settings), in its [`FEEDBACK_DIR`]; recovers what a
    /// crash left there and starts its writer.
    pub fn start(options: &TableOptions) -> anyhow::Result<FeedbackTable> {
        let mut options = options.clone();
        // A few rows a second, each sender waiting: one writer.
        options.writers = 1;
        options.dir = options.dir.join(FEEDBACK_DIR);
        options.remote = options.remote.map(|r| r.join(FEEDBACK_DIR));
        Ok(FeedbackTable {
            table: Table::start(options, Feedback, "podium-feedback")?,
        })
    }

    /// Queues `rows` and waits until they are journaled. A full queue is
    /// refused at once; the caller answers the client with a retry.
    pub async fn write(&self, rows: Vec<FeedbackRow>) -> Result<(), NotWritten> {
        let n = rows.len() as u64;
        let refused = |why: NotWritten| {
            let reason = match why {
                NotWritten::QueueFull => "queue_full",
                NotWritten::WriteFailed => "write_error",
                NotWritten::Closed => "closed",
            };
            metrics::counter!("podium_feedback_table_rows_refused_total", "reason" => reason)
                .increment(n);
            why
        };
        let size: usize = rows.iter().map(Feedback::size).sum();
        let queued = &self.table.queued_bytes;
        let before = queued.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > self.table.options.queue_bytes {
            queued.fetch_sub(size, Ordering::AcqRel);
            return Err(refused(NotWritten::QueueFull));
        }
        let (ack, written) = tokio::sync::oneshot::channel();
        if let Err(e) = self.table.tx.try_send(Message::Acked(rows, ack)) {
            queued.fetch_sub(size, Ordering::AcqRel);
            return Err(refused(match e {
                TrySendError::Full(_) => NotWritten::QueueFull,
                TrySendError::Disconnected(_) => NotWritten::Closed,
            }));
        }
        match tokio::time::timeout(WRITE_TIMEOUT, written).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(refused(NotWritten::WriteFailed)),
            // The writer ended without answering: closed, or it died.
            Ok(Err(_)) => Err(refused(NotWritten::Closed)),
            // It may still write them: a retry may add a row twice, never lose one.
            Err(_) => Err(refused(NotWritten::WriteFailed)),
        }
    }

    /// Writes and closes every open file (see the inference table's close).
    pub async fn close(&self, timeout: Duration) {
        self.table.close(timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::inference_table::writer::Writer;

    fn row(id: &str) -> FeedbackRow {
        FeedbackRow {
            request_id: Some(id.into()),
            client_request_id: None,
            label: "1".into(),
            received: SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_201_600),
        }
    }

    fn parquet_files(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in walkdir(dir) {
            if entry.extension().is_some_and(|e| e == "parquet") {
                out.push(entry);
            }
        }
        out
    }

    fn walkdir(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                out.extend(walkdir(&entry.path()));
            } else {
                out.push(entry.path());
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once_and_a_gone_writer_is_never_taken_for_written() {
        let mut options = TableOptions::new("/nonexistent");
        options.queue_rows = 1;
        let (table, rx) = Table::<Feedback>::detached(options);
        let table = Arc::new(FeedbackTable { table });
        let first = tokio::spawn({
            let table = Arc::clone(&table);
            async move { table.write(vec![row("a")]).await }
        });
        // The first batch fills the queue (the writer is stuck).
        while rx.is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            table.write(vec![row("b")]).await,
            Err(NotWritten::QueueFull)
        );
        // The writer goes away without answering: not written (after the
        // wait's bound, as the queued batch is never taken).
        drop(rx);
        assert_eq!(first.await.unwrap(), Err(NotWritten::WriteFailed));
        assert_eq!(table.write(vec![row("c")]).await, Err(NotWritten::Closed));
    }

    #[test]
    fn rows_journaled_before_a_crash_are_recovered_into_their_day() {
        let dir = tempfile::tempdir().unwrap();
        let options = TableOptions::new(dir.path());
        let mut writer = Writer::new(options.clone(), Arc::new(AtomicUsize::new(0)), Feedback);
        writer.add(row("a"));
        writer.add(row("b"));
        writer.write_all_pending();
        drop(writer); // as under kill -9: nothing closed
        let recovered = Writer::new(options, Arc::new(AtomicUsize::new(0)), Feedback).recover();
        assert_eq!(recovered.rows, 2);
        let files = parquet_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0]
            .parent()
            .unwrap()
            .ends_with("request_date=2025-11-27"));
        let rows: usize =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum();
        assert_eq!(rows, 2);
    }
}
