//! The admin audit log: one JSON line per admin API call — accepted or
//! refused — saying when, which token (by name), from where, what, and the
//! status answered. `GET /admin/audit` reads the newest entries back.
//!
//! Each line is written (not fsynced) as the call is answered: a crash of
//! Podium loses nothing, a power loss may lose the last seconds. The file
//! only grows; rotate it with a `copytruncate` rotation (it is opened for
//! appending).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::json_lines::{Durability, JsonLines};

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

/// The audit log file: appended line by line (written, not synced).
pub struct AuditLog {
    log: JsonLines,
}

impl AuditLog {
    pub fn new(path: impl Into<PathBuf>) -> AuditLog {
        AuditLog {
            log: JsonLines::new(path, "audit log", Durability::Written),
        }
    }

    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// Opens (creates) the file now, so a path that cannot be written stops start-up.
    pub fn open(&self) -> std::io::Result<()> {
        self.log.open()
    }

    /// Appends `entry`. A log that cannot be written is reported in the
    /// server log (the call itself was already answered). Blocking.
    pub fn record(&self, entry: &AuditEntry) {
        self.log.append(entry);
    }

    /// The newest `limit` entries, oldest first; reads only the end of the file.
    pub fn tail(&self, limit: usize) -> std::io::Result<Vec<AuditEntry>> {
        self.log.tail(limit)
    }
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
