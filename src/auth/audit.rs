//! The admin audit log: one JSON line per admin API call — accepted or
//! refused — saying when, which token (by name), from where, what, and the
//! status answered. `GET /admin/audit` reads the newest entries back.
//!
//! Each line is written (not fsynced) as the call is answered: a crash of
//! Podium loses nothing, a power loss may lose the last seconds. The file
//! only grows; rotate it with a `copytruncate` rotation (it is opened for
//! appending).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One admin call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The token's name (`admin` for `--admin-token`), `loopback` when no
    /// token is configured, null when the call presented no valid token.
    pub token: Option<String>,
    /// The client's address and port.
    pub remote: Option<String>,
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

impl AuditEntry {
    /// An entry stamped now.
    pub fn now(
        token: Option<&str>,
        remote: Option<String>,
        method: &str,
        path: &str,
        query: Option<&str>,
        status: u16,
    ) -> AuditEntry {
        let time = chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        AuditEntry {
            time,
            token: token.map(str::to_string),
            remote,
            method: method.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            status,
        }
    }
}

/// An append-only JSON-lines file of [`AuditEntry`]s.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl AuditLog {
    pub fn new(path: impl Into<PathBuf>) -> AuditLog {
        AuditLog {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (creates) the file now, so a path that cannot be written stops start-up.
    pub fn open(&self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
        Ok(())
    }

    /// Appends `entry`. A log that cannot be written is reported in the
    /// server log (the call itself was already answered). Blocking.
    pub fn record(&self, entry: &AuditEntry) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    tracing::error!("cannot open the audit log {}: {e}", self.path.display());
                    return;
                }
            }
        }
        let Some(f) = file.as_mut() else { return };
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        if let Err(e) = f.write_all(&line) {
            tracing::error!("cannot write the audit log {}: {e}", self.path.display());
            *file = None;
        }
    }

    /// The newest `limit` entries, oldest first; reads only the end of the file.
    pub fn tail(&self, limit: usize) -> std::io::Result<Vec<AuditEntry>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let text = last_lines(&mut file, limit)?;
        let mut entries: Vec<AuditEntry> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let skip = entries.len().saturating_sub(limit);
        entries.drain(..skip);
        Ok(entries)
    }
}

/// The text of the last `n` lines of `file` (or a few more), read backwards
/// in chunks so a long log costs no more than its end.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_back_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        assert!(log.tail(10).unwrap().is_empty());
        // Enough entries to span several chunks.
        for i in 0..3000u16 {
            let path = format!("/admin/models/m{i}/aliases/champion");
            log.record(&AuditEntry::now(
                Some("ops"),
                Some("127.0.0.1:5".into()),
                "PUT",
                &path,
                None,
                200 + i % 2,
            ));
        }
        let tail = log.tail(3).unwrap();
        assert_eq!(
            tail.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            [
                "/admin/models/m2997/aliases/champion",
                "/admin/models/m2998/aliases/champion",
                "/admin/models/m2999/aliases/champion"
            ]
        );
        assert_eq!(tail[2].token.as_deref(), Some("ops"));
        assert_eq!(log.tail(5000).unwrap().len(), 3000);
        assert!(log.tail(0).unwrap().is_empty());
        // A restart appends to the same file.
        AuditLog::new(log.path()).record(&AuditEntry::now(
            None,
            None,
            "GET",
            "/admin/status",
            None,
            401,
        ));
        let last = log.tail(1).unwrap().remove(0);
        assert_eq!((last.token, last.status), (None, 401));
        assert!(
            last.time.ends_with('Z') && last.time.len() == 24,
            "{}",
            last.time
        );
    }
}
