//! The handle of one table's writer thread, whatever its kind of row: the
//! bounded queue rows go through, start-up (directory, recovery, thread,
//! and the uploader of a table on object storage) and a close that waits
//! for every file to be complete (and uploaded).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::kind::RowKind;
use super::upload::Uploader;
use super::writer::Writer;
use super::TableOptions;

/// Answered by the writer once the rows of a [`Message::Acked`] are in the
/// open file and its journal (`true`), or were dropped by a failed write.
pub(super) type Ack = tokio::sync::oneshot::Sender<bool>;

pub(super) enum Message<R> {
    /// One row; the sender does not wait for it.
    Row(Box<R>),
    /// Rows whose sender waits until they are written.
    Acked(Vec<R>, Ack),
    /// Flush and close every file, then stop.
    Close,
}

/// See the module doc.
pub(super) struct Table<K: RowKind> {
    pub tx: Sender<Message<K::Row>>,
    /// Bytes of rows queued and not yet taken by the writer.
    pub queued_bytes: Arc<AtomicUsize>,
    pub options: TableOptions,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
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
    /// the writer thread (named `thread`); for a table on object storage
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
        let writer = Writer::new(options.clone(), Arc::clone(&queued_bytes), kind);
        // Before the first row: what a crash left is put right first.
        let recovered = writer.recover();
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
        let handle = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || writer.run(rx))?;
        tracing::info!("{}: {}", K::NAME, options.dir.display());
        Ok(Table {
            tx,
            queued_bytes,
            options,
            writer: Mutex::new(Some(handle)),
            closing: Arc::new(AtomicBool::new(false)),
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
            writer: Mutex::new(None),
            closing: Arc::new(AtomicBool::new(false)),
            uploader: None,
            spool_full: Arc::new(AtomicBool::new(false)),
        };
        (table, rx)
    }

    /// Has the writer flush and close every file, and waits (up to
    /// `timeout`, at least 5 s) for it to finish; a table on object storage
    /// then uploads its files in what is left of that time (the rest stays
    /// in the spool for the next start). Rows sent afterwards are refused.
    pub async fn close(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout.max(Duration::from_secs(5));
        self.closing.store(true, Ordering::Release);
        let tx = self.tx.clone();
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        let closed = tokio::task::spawn_blocking(move || {
            // Blocks only while the queue is full; the writer is draining it.
            let _ = tx.send(Message::Close);
            if let Some(h) = handle {
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
