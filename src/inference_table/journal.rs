//! The journal of a Parquet file still being written: the same record
//! batches, appended to an Arrow IPC stream as they are handed to the
//! Parquet writer, so a process that dies before the file is closed loses
//! at most the rows the writer had not taken yet.
//!
//! ```text
//! <table>/_journal/endpoint=<e>/request_date=<d>/part-<stamp>-<uuid>.arrows
//! ```
//!
//! One journal per open file, named after it and deleted once the file is
//! closed and renamed into place (kept, for the next start, if that fails). Each append reaches the operating system
//! at once (a `kill -9` loses nothing written); [`SYNC_INTERVAL`] bounds
//! what a power cut can take. The writer does not wait for the disk: it
//! hands each due `sync_data` ([`JournalSync`]) to the thread that
//! completes files ([`super::closer`]), because syncing a journal that grew
//! by tens of MB in a second took 0.2–0.25 s here, long enough for the
//! request queue to overflow at 80,000 rows a second.
//!
//! The writer holds an exclusive lock on the journal (and on the
//! `.inprogress` file) while it is open, so start-up recovery
//! ([`super::recovery`]) never touches a file another live Podium is
//! writing. Readers of the table skip `_journal` (a leading `_` hides a
//! directory from Spark, Hive and DuckDB's Hive partitioning).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::Schema;

/// The folder of the table that holds the journals of open files.
pub(super) const JOURNAL_DIR: &str = "_journal";

/// A journal's extension (an Arrow IPC stream).
pub(super) const EXTENSION: &str = "arrows";

/// How often an open file's journal is forced to disk (`sync_data`) while
/// rows arrive: a crash of the machine loses at most about this much (plus
/// the time the sync waits for a file being completed); a crash of the
/// process only the rows the writer had not written yet (the writer's
/// `FLUSH` plus a tick, ~0.12 s).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes gathered before a write to the journal: the IPC writer hands over
/// a batch buffer by buffer, and with `BufWriter`'s 8 KiB a batch of 1,024
/// rows took ~35 `write` calls. Each open journal (one per partition with
/// an open file) holds this much memory.
const JOURNAL_BUFFER: usize = 64 * 1024;

/// The journal of one open Parquet file.
pub(super) struct Journal {
    writer: StreamWriter<BufWriter<File>>,
    path: PathBuf,
    /// Appended to since the last `sync_data` was handed out.
    unsynced: bool,
    last_sync: Instant,
    sync: Arc<SyncState>,
}

/// A journal's file as seen by the thread that syncs it.
struct SyncState {
    /// The journal's file (another descriptor of it).
    file: File,
    path: PathBuf,
    /// A sync was handed out and has not finished.
    in_flight: AtomicBool,
    /// A sync failed: what was appended may not be on disk.
    failed: AtomicBool,
}

/// One `sync_data` of a journal, to run on any thread.
pub(super) struct JournalSync(Arc<SyncState>);

impl JournalSync {
    /// Forces what was appended before it was handed out to disk.
    pub fn run(self) -> anyhow::Result<()> {
        let result = self.0.file.sync_data();
        if result.is_err() {
            self.0.failed.store(true, Ordering::Release);
        }
        result.map_err(|e| anyhow::anyhow!("cannot sync {}: {e}", self.0.path.display()))
    }
}

impl Drop for JournalSync {
    /// Run or not (a closer thread gone), the journal may hand out the next.
    fn drop(&mut self) {
        self.0.in_flight.store(false, Ordering::Release);
    }
}

/// Where the journal of the table file `partition/name` is kept
/// (`partition` is `endpoint=<e>/request_date=<d>`, `name` ends `.parquet`).
pub(super) fn path_of(table: &Path, partition: &Path, name: &str) -> PathBuf {
    let stem = name.strip_suffix(".parquet").unwrap_or(name);
    table
        .join(JOURNAL_DIR)
        .join(partition)
        .join(format!("{stem}.{EXTENSION}"))
}

impl Journal {
    /// Starts the journal of the table file `partition/name`, locked
    /// against start-up recovery of other Podium processes.
    pub fn create(
        table: &Path,
        partition: &Path,
        name: &str,
        schema: &Schema,
    ) -> anyhow::Result<Journal> {
        let path = path_of(table, partition, name);
        let fail = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!("cannot start the journal {}: {e}", path.display())
        };
        // The closer thread deletes a partition's journal folder once its
        // last journal is gone, possibly between the two steps: try again.
        let mut tries = 0;
        let file = loop {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| fail(&e))?;
            }
            match File::create_new(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => tries += 1,
                file => break file.map_err(|e| fail(&e))?,
            }
        };
        lock(&file);
        let sync = Arc::new(SyncState {
            file: file.try_clone().map_err(|e| fail(&e))?,
            path: path.clone(),
            in_flight: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        let writer = StreamWriter::try_new(BufWriter::with_capacity(JOURNAL_BUFFER, file), schema)
            .map_err(|e| fail(&e))?;
        Ok(Journal {
            writer,
            path,
            unsynced: true,
            last_sync: Instant::now(),
            sync,
        })
    }

    /// Appends `batch` and hands it to the operating system.
    pub fn append(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        self.writer
            .write(batch)
            .and_then(|()| Ok(self.writer.get_mut().flush()?))
            .map_err(|e| anyhow::anyhow!("cannot append to {}: {e}", self.path.display()))?;
        self.unsynced = true;
        Ok(())
    }

    /// The sync that forces what was appended to disk, once
    /// [`SYNC_INTERVAL`] has passed since the last one was handed out and
    /// that one has finished.
    pub fn sync_due(&mut self) -> Option<JournalSync> {
        if !self.unsynced
            || self.last_sync.elapsed() < SYNC_INTERVAL
            || self.sync.in_flight.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        self.last_sync = Instant::now();
        self.unsynced = false;
        Some(JournalSync(Arc::clone(&self.sync)))
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a sync failed: the journal may then lack rows it was given.
    pub fn sync_failed(&self) -> bool {
        self.sync.failed.load(Ordering::Acquire)
    }

    /// Deletes the journal: its rows are in a closed file, or were dropped.
    pub fn remove(self) {
        let Journal { writer, path, .. } = self;
        drop(writer);
        remove(&path);
    }
}

/// Deletes the journal at `path` and the partition folders it leaves
/// empty under [`JOURNAL_DIR`].
pub(super) fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(
                "inference table: cannot delete the journal {}: {e}",
                path.display()
            );
            return;
        }
    }
    // Fails (and stops) at the first folder still in use.
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| d.file_name().is_some_and(|n| n != JOURNAL_DIR)) {
        if fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Takes the exclusive lock that tells start-up recovery a live writer owns
/// `file`. Best effort: a filesystem without locks only loses that guard.
pub(super) fn lock(file: &File) {
    if let Err(e) = file.try_lock() {
        tracing::debug!("inference table: cannot lock an open file: {e}");
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field};

    use super::*;

    #[test]
    fn a_journal_hands_out_one_sync_at_a_time_and_only_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let mut journal = Journal::create(
            dir.path(),
            Path::new("endpoint=a"),
            "part-1.parquet",
            &schema,
        )
        .unwrap();
        let a_second_ago = || {
            Instant::now()
                .checked_sub(SYNC_INTERVAL)
                .expect("the clock has run for a second")
        };
        journal.append(&batch).unwrap();
        assert!(journal.sync_due().is_none(), "not within SYNC_INTERVAL");

        journal.last_sync = a_second_ago();
        let first = journal.sync_due().expect("due after SYNC_INTERVAL");
        journal.append(&batch).unwrap();
        journal.last_sync = a_second_ago();
        assert!(
            journal.sync_due().is_none(),
            "not while the last one has not run"
        );

        first.run().unwrap();
        let second = journal.sync_due().expect("rows came after the last sync");
        second.run().unwrap();
        journal.last_sync = a_second_ago();
        assert!(journal.sync_due().is_none(), "nothing new to sync");

        // A sync dropped without running (its thread gone) frees the next.
        journal.append(&batch).unwrap();
        drop(journal.sync_due().expect("rows came after the last sync"));
        journal.append(&batch).unwrap();
        journal.last_sync = a_second_ago();
        assert!(journal.sync_due().is_some());
        assert!(!journal.sync_failed());
    }
}
