//! One Parquet file of a table while it is written: a hidden temporary file
//! (`.part-….inprogress`) with its [`Journal`], completed under its final
//! name only when whole, so readers never see a partial file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::failures::Failures;
use super::journal::Journal;
use crate::replica::ReplicaId;

pub(super) struct OpenFile {
    pub writer: ArrowWriter<File>,
    /// None when it could not be written (the file goes on without one).
    pub journal: Option<Journal>,
    tmp: PathBuf,
    pub path: PathBuf,
    pub rows: usize,
}

impl OpenFile {
    /// Starts a file of `partition` (relative to the table's root) and its
    /// journal; a journal that cannot be created is counted in `failures`
    /// and the file goes on without one.
    pub fn create(
        root: &Path,
        replica: &ReplicaId,
        partition: &Path,
        schema: &SchemaRef,
        properties: WriterProperties,
        failures: &mut Failures,
    ) -> anyhow::Result<OpenFile> {
        let dir = root.join(partition);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
        let name = format!(
            "part-{stamp}Z-{replica}-{}.parquet",
            uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid()
        );
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.inprogress"));
        let file = File::create(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
        super::journal::lock(&file);
        let writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(properties))?;
        let journal = Journal::create(root, partition, &name, schema)
            .inspect_err(|e| failures.journal_failed(e))
            .ok();
        Ok(OpenFile {
            writer,
            journal,
            tmp,
            path,
            rows: 0,
        })
    }

    /// Bytes written so far, and buffered for the row group in progress.
    pub fn size(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    /// Writes the footer, syncs the file and gives it its final name; then
    /// deletes the journal, whose rows are now in the file. Returns the
    /// file's size. On an error the file is removed and its journal kept:
    /// the next start's recovery writes its rows into the file (acknowledged
    /// feedback survives a full or failing disk as it survives a crash).
    pub fn complete(mut self) -> anyhow::Result<u64> {
        let result = (|| -> anyhow::Result<u64> {
            self.writer.finish()?;
            self.writer.inner().sync_data()?;
            let bytes = self.writer.bytes_written() as u64;
            std::fs::rename(&self.tmp, &self.path)?;
            // The rename itself survives a power cut only once the
            // directory is on disk too (best effort: not every filesystem
            // can sync a directory).
            if let Some(dir) = self.path.parent() {
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(bytes)
        })();
        match result {
            Ok(bytes) => {
                self.forget_journal();
                Ok(bytes)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.tmp);
                match self.journal.take() {
                    // Closed, not deleted (which also lifts its lock).
                    Some(journal) => Err(anyhow::anyhow!(
                        "{e:#}; its rows stay in {} for the next start to recover",
                        journal.path().display()
                    )),
                    None => Err(e),
                }
            }
        }
    }

    /// Gives up the file: its rows are dropped (the caller counts them).
    pub fn discard(mut self) {
        self.forget_journal();
        let _ = std::fs::remove_file(&self.tmp);
    }

    /// Stops journaling (the journal could not be written): a crash before
    /// the file completes now loses its rows.
    pub fn forget_journal(&mut self) {
        if let Some(journal) = self.journal.take() {
            journal.remove();
        }
    }
}
