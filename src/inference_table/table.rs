//! The handle of one table's writer threads, whatever its kind of row: the
//! bounded queue rows go through, start-up (directory, recovery, threads,
//! and the uploader of a table on object storage) and a close that waits
//! for every file to be complete (and uploaded).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::crew::Crew;
use super::kind::RowKind;
use super::message::Message;
use super::upload::Uploader;
use super::writer::Writer;
use super::TableOptions;

/// See the module doc.
pub(super) struct Table<K: RowKind> {
    pub tx: Sender<Message<K::Row>>,
    /// Bytes of rows queued and not yet taken by the writer.
    pub queued_bytes: Arc<AtomicUsize>,
    pub options: TableOptions,
    /// The writer threads, the main one first.
    writers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Set by `close`: from then on a gone writer is expected.
    pub closing: Arc<AtomicBool>,
    /// A table on object storage: uploads the files the writer completes
    /// in its spool (`options.dir`).
    uploader: Option<Uploader>,
    /// Raised by the uploader while the spool is over its bound: new rows
    /// are dropped (`spool_full`) instead of filling the disk.
    pub spool_full: Arc<AtomicBool>,
}

impl<K: RowKind> Table<K> {
    /// Creates the directory, recovers what a crash left in it, and starts
    /// the writer threads (`options.writers`: the main one named `thread`,
    /// its helpers `thread-1`, `thread-2` …); for a table on object storage
    /// also the uploader, which first uploads what an earlier run left in
    /// the spool.
    pub fn start(options: TableOptions, kind: K, thread: &str) -> anyhow::Result<Table<K>> {
        std::fs::create_dir_all(&options.dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the {} directory {}: {e}; pick another with {}",
                K::NAME,
                options.dir.display(),
                if options.remote.is_some() {
                    "--table-spool-dir"
                } else {
                    "--table-dir"
                }
            )
        })?;
        let (tx, rx) = crossbeam_channel::bounded(options.queue_rows.max(1));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let crew = Crew::new(
            options.writers,
            Arc::clone(&closing),
            options.queue_rows,
            options.queue_bytes,
        );
        let writers: Vec<Writer<K>> = (0..options.writers.max(1))
            .map(|i| {
                Writer::new(options.clone(), Arc::clone(&queued_bytes), kind.clone())
                    .in_crew(i, crew.clone())
            })
            .collect();
        // Before the first row: what a crash left is put right first.
        let recovered = writers[0].recover();
        if recovered.rows > 0 {
            metrics::counter!(format!("{}_rows_recovered_total", K::METRICS))
                .increment(recovered.rows as u64);
        }
        let spool_full = Arc::new(AtomicBool::new(false));
        let uploader = options
            .remote
            .as_ref()
            .map(|remote| {
                Uploader::start(
                    &options.dir,
                    remote,
                    K::NAME,
                    K::METRICS,
                    Arc::clone(&spool_full),
                )
            })
            .transpose()?;
        let mut handles = Vec::with_capacity(writers.len());
        for (i, writer) in writers.into_iter().enumerate() {
            let name = match i {
                0 => thread.to_string(),
                i => format!("{thread}-{i}"),
            };
            let rx = rx.clone();
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || writer.run(rx))
            {
                Ok(handle) => handles.push(handle),
                // Without its main writer the table cannot start; a helper
                // less only lowers its ceiling.
                Err(e) if i == 0 => return Err(e.into()),
                Err(e) => tracing::warn!("{}: cannot start writer {i} ({e})", K::NAME),
            }
        }
        tracing::info!(
            "{}: {} ({} writer{})",
            K::NAME,
            options.dir.display(),
            handles.len(),
            if handles.len() == 1 { "" } else { "s" }
        );
        Ok(Table {
            tx,
            queued_bytes,
            options,
            writers: Mutex::new(handles),
            closing,
            uploader,
            spool_full,
        })
    }

    /// A table with no writer: the test holds the other end of its queue.
    #[cfg(test)]
    pub fn detached(
        options: TableOptions,
    ) -> (Table<K>, crossbeam_channel::Receiver<Message<K::Row>>) {
        let (tx, rx) = crossbeam_channel::bounded(options.queue_rows.max(1));
        let table = Table {
            tx,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            options,
            writers: Mutex::new(Vec::new()),
            closing: Arc::new(AtomicBool::new(false)),
            uploader: None,
            spool_full: Arc::new(AtomicBool::new(false)),
        };
        (table, rx)
    }

    /// Has the writers flush and close every file, and waits (up to
    /// `timeout`, at least 5 s) for them to finish; a table on object storage
    /// then uploads its files in what is left of that time (the rest stays
    /// in the spool for the next start). Rows sent afterwards are refused.
    pub async fn close(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout.max(Duration::from_secs(5));
        self.closing.store(true, Ordering::Release);
        let tx = self.tx.clone();
        let handles = self
            .writers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        let closed = tokio::task::spawn_blocking(move || {
            // Blocks only while the queue is full; the writers are draining
            // it. (The helpers see `closing` at their next tick.)
            let _ = tx.send(Message::Close);
            for h in handles {
                if h.join().is_err() {
                    tracing::error!("the {} writer panicked", K::NAME);
                }
            }
        });
        // A disk that never answers (a dead network mount) must not keep
        // the process from exiting.
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), closed).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("closing the {} failed: {e}", K::NAME),
            Err(_) => tracing::error!(
                "the {} writer did not finish closing its files; exiting without it (files not closed stay hidden as .inprogress)",
                K::NAME
            ),
        }
        if let Some(uploader) = &self.uploader {
            uploader.finish(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::inference_table::test_rows::{named, record, requests};

    /// The request ids of every row in the Parquet files under `dir`.
    fn ids(dir: &std::path::Path) -> Vec<String> {
        use arrow_array::cast::AsArray;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let mut out = Vec::new();
        for path in named(dir, ".parquet") {
            let file = std::fs::File::open(path).unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                let column = batch.column_by_name("request_id").unwrap();
                out.extend(
                    column
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap().to_string()),
                );
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_helper_shares_a_backed_up_queue_and_every_row_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = TableOptions::new(dir.path());
        options.writers = 2;
        // Helpers join in from 5,000 queued rows; no file rolls during the
        // test, so only a second writer can open a second file.
        options.queue_rows = 20_000;
        options.roll_rows = usize::MAX;
        options.roll_bytes = usize::MAX;
        options.roll_interval = Duration::from_secs(3600);
        let table = Table::start(options, requests(), "table-test").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut sent = HashSet::new();
        while named(dir.path(), ".arrows").len() < 2 {
            assert!(
                Instant::now() < deadline,
                "no helper joined in after {} rows",
                sent.len()
            );
            // Far more than the main writer takes in a tick.
            for _ in 0..10_000 {
                let mut row = record(100);
                // One day, so one partition, even across midnight.
                row.received = std::time::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
                sent.insert(row.request_id.clone());
                // Counted as the request path counts it.
                table.queued_bytes.fetch_add(row.size(), Ordering::AcqRel);
                table.tx.send(Message::Row(Box::new(row))).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        table.close(Duration::from_secs(60)).await;
        let written = ids(dir.path());
        assert_eq!(written.len(), sent.len(), "every row, once");
        assert_eq!(written.into_iter().collect::<HashSet<_>>(), sent);
        assert_eq!(
            named(dir.path(), ".parquet").len(),
            2,
            "one file per writer"
        );
        assert!(named(dir.path(), ".arrows").is_empty());
    }
}
