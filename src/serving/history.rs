//! The alias history: every alias change and every swap attempt, appended as
//! one JSON line each to a file, so ops can answer "what served when, and
//! who moved it" after the fact (`GET /admin/history`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::json_lines::{Durability, JsonLines};

/// One entry of the history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub model: String,
    pub alias: String,
    /// `alias_set`, `alias_deleted`, `swap`, `swap_refused`, `unserved`,
    /// `drift` (a served or kept version's files changed on disk:
    /// `failed` with the change as `error`; `ok` once they are back).
    /// For `drift`, `to_version` is the version whose files changed.
    /// `compare` (`podium compare --promote-if-better`; the numbers in `comparison`).
    /// `traffic_set` (an endpoint's weights changed; `alias` names the arms
    /// whose weight changed) and `promote` (an experiment's challenger became
    /// the baseline; the readout's numbers in `comparison` and `why`).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<u64>,
    /// Who asked: `registry` (a change found by polling), `admin` (the admin
    /// API), `compare` (`podium compare`), `guardrail`, `rollout`,
    /// `experiment` (the experiment loop).
    pub by: String,
    /// `ok` or `failed`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_ms: Option<f64>,
    /// For `compare`: the held-out comparison of `to_version` (the
    /// challenger) against `from_version` (what `alias` pointed at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonRecord>,
    /// For `traffic_set` (an endpoint's weights changed) and `promote` (an
    /// experiment moved the baseline alias): the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// For `traffic_set`: the weights after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arms: Option<Vec<crate::routing::Arm>>,
    /// Why, in words with the numbers (a guardrail trip, a rollout step, a
    /// promotion's readout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The numbers of one `podium compare` run, as the history keeps them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRecord {
    /// The alias the challenger version was read from.
    pub challenger_alias: String,
    pub metric: String,
    pub rows: u64,
    pub champion_value: f64,
    pub challenger_value: f64,
    /// challenger − champion, and its 95% paired-bootstrap interval.
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// `better`, `worse` or `no_difference`.
    pub decision: String,
    /// Whether the alias moved to the challenger's version.
    pub promoted: bool,
}

impl Event {
    pub fn new(model: &str, alias: &str, action: &str, by: &str) -> Event {
        Event {
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            model: model.into(),
            alias: alias.into(),
            action: action.into(),
            by: by.into(),
            result: "ok".into(),
            ..Default::default()
        }
    }
}

/// The alias history file: appended and synced line by line.
pub struct History {
    log: JsonLines,
}

impl History {
    pub fn new(path: impl Into<PathBuf>) -> History {
        History {
            log: JsonLines::new(path, "alias history", Durability::Synced),
        }
    }

    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// Appends `event` and flushes it to disk. A log that cannot be written
    /// is reported in the server log but never stops serving or swapping.
    pub fn record(&self, event: &Event) {
        self.log.append(event);
    }

    /// The last `limit` events, oldest first, optionally of one model.
    pub fn tail(&self, limit: usize, model: Option<&str>) -> std::io::Result<Vec<Event>> {
        let mut events: Vec<Event> = self.log.read_all()?;
        events.retain(|e| model.is_none_or(|m| e.model == m));
        let skip = events.len().saturating_sub(limit);
        events.drain(..skip);
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_back_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::new(dir.path().join("h.jsonl"));
        assert!(history.tail(10, None).unwrap().is_empty());
        for (i, model) in ["a", "b", "a"].iter().enumerate() {
            let mut e = Event::new(model, "champion", "swap", "registry");
            e.to_version = Some(i as u64 + 1);
            history.record(&e);
        }
        let all = history.tail(10, None).unwrap();
        assert_eq!(
            all.iter()
                .map(|e| e.to_version.unwrap())
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(history.tail(1, None).unwrap()[0].to_version, Some(3));
        assert_eq!(history.tail(10, Some("a")).unwrap().len(), 2);
        // A second writer (a restart) appends to the same file.
        History::new(dir.path().join("h.jsonl")).record(&Event::new(
            "c",
            "x",
            "alias_set",
            "admin",
        ));
        assert_eq!(history.tail(10, None).unwrap().len(), 4);
    }
}
