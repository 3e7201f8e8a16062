//! Whether the registry could be read: degraded while it cannot, never a
//! reason to stop serving what is loaded.

use std::time::SystemTime;

use serde::Serialize;

use crate::error::Error;

/// Whether the registry could be read at the last reconcile. Podium keeps
/// serving what it has while the registry is degraded.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryStatus {
    /// `local` or `mlflow`.
    pub kind: &'static str,
    /// The directory or URL.
    pub location: String,
    /// `ok`, `degraded` (could not be read; serving what it had), or
    /// `unknown` (not read yet).
    pub state: &'static str,
    /// Why it is degraded.
    pub error: Option<String>,
    pub degraded_since_unix_ms: Option<u64>,
    pub last_ok_unix_ms: Option<u64>,
    /// Reads that failed in a row.
    pub consecutive_failures: u64,
}

/// The outcome of the registry reads so far; written by the reconciler only.
#[derive(Default)]
pub(super) struct RegistryHealth {
    error: Option<String>,
    degraded_since: Option<SystemTime>,
    last_ok: Option<SystemTime>,
    consecutive_failures: u64,
}

impl RegistryHealth {
    /// Why the last read failed, if it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Records one read of the registry `kind` at `location`: a failure
    /// makes it degraded (logged once when it starts, and when it ends).
    pub fn record(&mut self, kind: &'static str, location: &str, failure: Option<&Error>) {
        match failure {
            None => {
                if let Some(since) = self.degraded_since.take() {
                    let secs = since.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
                    tracing::warn!(
                        "registry {kind} {location} is readable again after {secs:.1} s degraded"
                    );
                }
                self.error = None;
                self.consecutive_failures = 0;
                self.last_ok = Some(SystemTime::now());
            }
            Some(e) => {
                metrics::counter!("podium_registry_errors_total", "kind" => kind).increment(1);
                if self.degraded_since.is_none() {
                    self.degraded_since = Some(SystemTime::now());
                    tracing::error!(
                        "registry {kind} {location} degraded: {e}; still serving what is loaded, retrying every poll"
                    );
                } else if self.error.as_deref() != Some(&e.to_string()) {
                    tracing::error!("registry {kind} {location} still degraded: {e}");
                }
                self.error = Some(e.to_string());
                self.consecutive_failures += 1;
            }
        }
    }

    /// The registry part of `GET /admin/status`.
    pub fn status(&self, kind: &'static str, location: String) -> RegistryStatus {
        let state = if self.error.is_some() {
            "degraded"
        } else if self.last_ok.is_some() {
            "ok"
        } else {
            "unknown"
        };
        RegistryStatus {
            kind,
            location,
            state,
            error: self.error.clone(),
            degraded_since_unix_ms: self.degraded_since.map(super::status::unix_ms),
            last_ok_unix_ms: self.last_ok.map(super::status::unix_ms),
            consecutive_failures: self.consecutive_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_while_reads_fail_and_ok_after_the_next_good_one() {
        let mut health = RegistryHealth::default();
        assert_eq!(health.status("local", "x".into()).state, "unknown");
        let down = Error::Registry("cannot connect".into());
        health.record("local", "x", Some(&down));
        health.record("local", "x", Some(&down));
        let status = health.status("local", "x".into());
        assert_eq!(status.state, "degraded");
        assert_eq!(status.consecutive_failures, 2);
        assert!(status.degraded_since_unix_ms.is_some());
        assert_eq!(health.error(), Some(down.to_string().as_str()));
        health.record("local", "x", None);
        let status = health.status("local", "x".into());
        assert_eq!((status.state, status.consecutive_failures), ("ok", 0));
        assert!(status.error.is_none() && status.degraded_since_unix_ms.is_none());
    }
}
