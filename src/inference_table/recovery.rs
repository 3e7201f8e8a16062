//! Start-up recovery of a table a crash left behind: each journal of a file
//! that was never closed is written into the Parquet file it was meant to
//! become (same partition, same name) and deleted; `.inprogress` files no
//! live writer holds are removed.
//!
//! Recovery is idempotent: a journal whose file already exists (a crash
//! between the rename and the journal's deletion) is only deleted, so every
//! row ends up in the table exactly once. A journal or `.inprogress` file
//! locked by another running Podium on the same directory is left alone.
//!
//! Recovery of one table never looks into folders whose name starts with
//! `_` (`_journal`, and the feedback table `_feedback` inside the inference
//! table's folder): each table recovers its own.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_ipc::reader::StreamReader;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::journal::{self, EXTENSION, JOURNAL_DIR};

/// What recovery did, for the start-up log and the metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Recovered {
    /// Files written from journals.
    pub files: usize,
    /// Rows in them.
    pub rows: usize,
    /// Stale `.inprogress` files removed.
    pub removed: usize,
}

/// Recovers the table in `table` (called `name` in the log, partitioned by
/// the Hive levels `partition`): stale `.inprogress` files first (they can
/// be half written and are never readable), then the journals.
pub(super) fn recover(
    table: &Path,
    name: &str,
    partition: &[&str],
    schema: &SchemaRef,
    properties: &WriterProperties,
) -> Recovered {
    let mut done = Recovered::default();
    let depth = partition.len();
    for path in files(table, depth, &|name| name.ends_with(".inprogress")) {
        let Some(_claimed) = claim(&path) else {
            continue;
        };
        let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {
                done.removed += 1;
                tracing::warn!(
                    "{name}: removed {} ({bytes} bytes), a file a crash left unfinished; its rows are recovered from its journal if it had one",
                    path.display()
                );
            }
            Err(e) => tracing::warn!(
                "{name}: cannot remove the unfinished file {}: {e}",
                path.display()
            ),
        }
    }
    let journals = table.join(JOURNAL_DIR);
    for path in files(&journals, depth, &|name| {
        name.ends_with(&format!(".{EXTENSION}"))
    }) {
        // Held until the journal is deleted: a Podium starting at the same
        // time on the same directory skips it.
        let Some(_claimed) = claim(&path) else {
            continue;
        };
        match replay(table, &journals, &path, partition, schema, properties) {
            Ok(Some(rows)) => {
                done.files += 1;
                done.rows += rows;
                journal::remove(&path);
            }
            Ok(None) => journal::remove(&path),
            // Kept for the next start (a full disk may have room then).
            Err(e) => tracing::error!(
                "{name}: cannot recover the journal {}: {e:#}; it is kept and tried again at the next start",
                path.display()
            ),
        }
    }
    if done.files > 0 {
        tracing::warn!(
            "{name}: recovered {} rows into {} files from the journals of files a crash left open",
            done.rows,
            done.files
        );
    }
    done
}

/// Writes the journal at `path` into its table file: the number of rows,
/// or None when there is nothing to write (the file exists already, or the
/// journal holds no whole batch).
fn replay(
    table: &Path,
    journals: &Path,
    path: &Path,
    levels: &[&str],
    schema: &SchemaRef,
    properties: &WriterProperties,
) -> anyhow::Result<Option<usize>> {
    let relative = path.strip_prefix(journals)?;
    let partition = relative
        .parent()
        .filter(|p| {
            let parts: Vec<_> = p.iter().map(|c| c.to_string_lossy()).collect();
            parts.len() == levels.len()
                && parts
                    .iter()
                    .zip(levels)
                    .all(|(part, level)| part.starts_with(&format!("{level}=")))
        })
        .ok_or_else(|| {
            let shape: Vec<String> = levels.iter().map(|l| format!("{l}=<{l}>")).collect();
            anyhow::anyhow!("it is not under {}/ of {JOURNAL_DIR}", shape.join("/"))
        })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| anyhow::anyhow!("its name is not text"))?;
    let dir = table.join(partition);
    let target = dir.join(format!("{stem}.parquet"));
    if target.exists() {
        // Closed before the crash; only the journal's deletion was missed.
        return Ok(None);
    }
    let reader = StreamReader::try_new(BufReader::new(File::open(path)?), None);
    let mut reader = match reader {
        Ok(reader) => reader,
        // Not even the schema reached the disk: no rows either.
        Err(_) => return Ok(None),
    };
    if reader.schema().fields() != schema.fields() {
        anyhow::bail!(
            "it was written with other table columns (a different Podium version); read it with any Arrow IPC stream reader"
        );
    }
    let mut batches = Vec::new();
    for batch in reader.by_ref() {
        match batch {
            Ok(batch) => batches.push(batch),
            // The crash cut the last batch short: it was never acknowledged
            // as written, and everything before it is whole.
            Err(e) => {
                tracing::debug!("journal {}: ends in a torn batch: {e}", path.display());
                break;
            }
        }
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows == 0 {
        return Ok(None);
    }
    let tmp = dir.join(format!(".{stem}.parquet.inprogress"));
    let written = (|| -> anyhow::Result<()> {
        let file = File::create(&tmp)?;
        journal::lock(&file);
        let mut writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(properties.clone()))?;
        for batch in &batches {
            let batch = batch.clone().with_schema(Arc::clone(schema))?;
            writer.write(&batch)?;
        }
        writer.finish()?;
        writer.inner().sync_data()?;
        fs::rename(&tmp, &target)?;
        let _ = File::open(&dir).and_then(|d| d.sync_all());
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(Some(rows))
}

/// `path` opened and locked for recovery; None when another process holds
/// it (a live writer, or another start-up recovering it) or it is gone.
/// Without file locks (some network filesystems) recovery goes ahead.
fn claim(path: &Path) -> Option<File> {
    let file = File::open(path).ok()?;
    match file.try_lock() {
        Err(fs::TryLockError::WouldBlock) => None,
        _ => Some(file),
    }
}

/// Files under `dir` exactly `depth` folders down whose names pass `keep`.
fn files(dir: &Path, depth: usize, keep: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `_journal` and other tables (`_feedback`) are not partitions.
        if depth > 0 && kind.is_dir() && !name.starts_with('_') {
            out.extend(files(&entry.path(), depth - 1, keep));
        } else if depth == 0 && kind.is_file() && keep(&name) {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::inference_table::test_rows::{named, parquet_rows, record, requests, walk};
    use crate::inference_table::writer::Writer;
    use crate::inference_table::TableOptions;

    /// A writer on `dir` that has taken `n` rows into its open file and
    /// journal and then dies without closing anything, as under `kill -9`.
    fn crash_after(dir: &Path, n: usize) {
        let options = TableOptions::new(dir);
        let mut writer = Writer::new(options, Arc::new(AtomicUsize::new(0)), requests());
        for _ in 0..n {
            writer.add(record(100));
        }
        writer.write_all_pending();
        // Nothing is finished or deleted; the file handles (and locks) close.
        drop(writer);
    }

    fn recover_in(dir: &Path) -> Recovered {
        let writer = Writer::new(
            TableOptions::new(dir),
            Arc::new(AtomicUsize::new(0)),
            requests(),
        );
        writer.recover()
    }

    #[test]
    fn a_crashed_writer_s_rows_are_recovered_once_and_its_leftovers_removed() {
        let dir = tempfile::tempdir().unwrap();
        crash_after(dir.path(), 7);
        assert_eq!(named(dir.path(), ".inprogress").len(), 1);
        assert_eq!(named(dir.path(), ".arrows").len(), 1);
        assert_eq!(parquet_rows(dir.path()), 0, "nothing was closed");

        let done = recover_in(dir.path());
        assert_eq!(
            done,
            Recovered {
                files: 1,
                rows: 7,
                removed: 1
            }
        );
        assert_eq!(parquet_rows(dir.path()), 7);
        let left: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| !p.to_string_lossy().ends_with(".parquet"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(!dir.path().join(JOURNAL_DIR).join("endpoint=fraud").exists());
        // A second start finds nothing more to do.
        assert_eq!(recover_in(dir.path()), Recovered::default());
        assert_eq!(parquet_rows(dir.path()), 7);
    }

    #[test]
    fn a_journal_whose_file_was_closed_is_only_deleted() {
        let dir = tempfile::tempdir().unwrap();
        crash_after(dir.path(), 3);
        let journal = named(dir.path(), ".arrows").remove(0);
        let kept = dir.path().join("kept.arrows");
        fs::copy(&journal, &kept).unwrap();
        recover_in(dir.path());
        // The crash came after the rename but before the journal was deleted.
        fs::create_dir_all(journal.parent().unwrap()).unwrap();
        fs::rename(&kept, &journal).unwrap();
        assert_eq!(recover_in(dir.path()).files, 0);
        assert_eq!(parquet_rows(dir.path()), 3, "no row twice");
        assert!(named(dir.path(), ".arrows").is_empty());
    }

    #[test]
    fn a_torn_last_batch_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let options = TableOptions::new(dir.path());
        let mut writer = Writer::new(options, Arc::new(AtomicUsize::new(0)), requests());
        for batch in [4, 5] {
            for _ in 0..batch {
                writer.add(record(100));
            }
            writer.write_all_pending();
        }
        drop(writer);
        let journal = named(dir.path(), ".arrows").remove(0);
        let len = fs::metadata(&journal).unwrap().len();
        File::options()
            .write(true)
            .open(&journal)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        assert_eq!(recover_in(dir.path()).rows, 4);
        assert_eq!(parquet_rows(dir.path()), 4);
    }

    #[test]
    fn files_a_live_writer_holds_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let options = TableOptions::new(dir.path());
        let mut live = Writer::new(options, Arc::new(AtomicUsize::new(0)), requests());
        live.add(record(100));
        live.write_all_pending();
        // Another Podium starting on the same directory.
        assert_eq!(recover_in(dir.path()), Recovered::default());
        assert_eq!(named(dir.path(), ".inprogress").len(), 1);
        assert_eq!(named(dir.path(), ".arrows").len(), 1);
        // An empty leftover nobody holds is removed.
        let stale = dir
            .path()
            .join("endpoint=fraud")
            .join("request_date=2026-01-01")
            .join(".part-x.parquet.inprogress");
        fs::create_dir_all(stale.parent().unwrap()).unwrap();
        File::create(&stale).unwrap();
        assert_eq!(recover_in(dir.path()).removed, 1);
        assert!(!stale.exists());
        drop(live);
    }
}
