//! An append-only file of JSON lines, the shape of the alias history and
//! the admin audit log: a record is one line, appended whole; a restart
//! appends to the same file; a file that cannot be written is reported in
//! the server log and never fails the caller.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Whether an appended line is flushed to the disk before `append` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the OS: a crash of Podium loses nothing, a power loss
    /// may lose the last seconds.
    Written,
    /// `sync_data` after each line.
    Synced,
}

/// One JSON-lines file; `what` names it in log messages ("alias history").
pub struct JsonLines {
    path: PathBuf,
    what: &'static str,
    durability: Durability,
    file: Mutex<Option<File>>,
}

impl JsonLines {
    pub fn new(path: impl Into<PathBuf>, what: &'static str, durability: Durability) -> JsonLines {
        JsonLines {
            path: path.into(),
            what,
            durability,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (creates) the file now, so a path that cannot be written can
    /// stop start-up.
    pub fn open(&self) -> std::io::Result<()> {
        let file = self.open_append()?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
        Ok(())
    }

    fn open_append(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
    }

    /// Appends `record` as one line. Blocking.
    pub fn append<T: Serialize>(&self, record: &T) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            match self.open_append() {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    tracing::error!("cannot open the {} {}: {e}", self.what, self.path.display());
                    return;
                }
            }
        }
        let Some(f) = file.as_mut() else { return };
        let mut line = serde_json::to_vec(record).unwrap_or_default();
        line.push(b'\n');
        let written = f.write_all(&line).and_then(|()| match self.durability {
            Durability::Written => Ok(()),
            Durability::Synced => f.sync_data(),
        });
        if let Err(e) = written {
            tracing::error!(
                "cannot write the {} {}: {e}",
                self.what,
                self.path.display()
            );
            *file = None;
        }
    }

    /// Every record, oldest first (lines that do not parse are skipped);
    /// none when the file does not exist yet.
    pub fn read_all<T: DeserializeOwned>(&self) -> std::io::Result<Vec<T>> {
        let Some(file) = self.open_read()? else {
            return Ok(Vec::new());
        };
        Ok(BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect())
    }

    /// The newest `limit` records, oldest first; reads only the end of the file.
    pub fn tail<T: DeserializeOwned>(&self, limit: usize) -> std::io::Result<Vec<T>> {
        let Some(mut file) = self.open_read()? else {
            return Ok(Vec::new());
        };
        let text = last_lines(&mut file, limit)?;
        let mut records: Vec<T> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let skip = records.len().saturating_sub(limit);
        records.drain(..skip);
        Ok(records)
    }

    fn open_read(&self) -> std::io::Result<Option<File>> {
        match File::open(&self.path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The text of the last `n` lines of `file` (or a few more), read backwards
/// in chunks so a long file costs no more than its end.
fn last_lines(file: &mut File, n: usize) -> std::io::Result<String> {
    const CHUNK: u64 = 64 << 10;
    let end = file.seek(SeekFrom::End(0))?;
    let mut start = end;
    let mut newlines = 0;
    let mut buf = Vec::new();
    // One more newline than lines wanted: the one that ends the line before them.
    while start > 0 && newlines <= n {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        // The first line read is likely partial.
        let cut = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..cut);
    }
    Ok(text)
}
