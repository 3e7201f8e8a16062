//! The alias history: every registry change (registrations, version and
//! alias changes) and every swap attempt, appended as one JSON line each to
//! a file, so ops can answer "what served when, and who moved it" after the
//! fact (`GET /admin/history`). The CLI, the admin API, `podium compare` and
//! the reconciler all write through [`History::record_change`] and
//! [`Event`], with one vocabulary ([`action`], [`outcome`]); the history is
//! also the stack that `podium alias rollback` walks back ([`rollback_target`]).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::json_lines::{Durability, JsonLines};

/// The file name of the history beside the registry (or the MLflow cache),
/// where every command finds it by default.
pub const FILE_NAME: &str = ".podium-history.jsonl";

/// The default history file of a registry whose own folder is `state_dir`
/// ([`crate::registry::RegistryConfig::state_dir`]).
pub fn default_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// What an event records (its `action`).
pub mod action {
    /// A new version was registered (`to_version`; `alias` is empty).
    pub const VERSION_REGISTERED: &str = "version_registered";
    /// A version's files were deleted (`to_version`).
    pub const VERSION_DELETED: &str = "version_deleted";
    /// A version was archived: kept, but no longer listed (`to_version`).
    pub const VERSION_ARCHIVED: &str = "version_archived";
    /// An archived version was listed again (`to_version`).
    pub const VERSION_UNARCHIVED: &str = "version_unarchived";
    /// An alias was pointed at `to_version` (it pointed at `from_version`).
    pub const ALIAS_SET: &str = "alias_set";
    /// An alias was removed (it pointed at `from_version`).
    pub const ALIAS_DELETED: &str = "alias_deleted";
    /// A server tried to serve `to_version` under an alias in place of
    /// `from_version`: `ok`, or `refused` with the reason.
    pub const SWAP: &str = "swap";
    /// A server stopped serving an alias that was removed.
    pub const UNSERVED: &str = "unserved";
    /// A served or kept version's files changed on disk (`failed`), or are
    /// back as loaded (`ok`); `to_version` is that version.
    pub const DRIFT: &str = "drift";
    /// `podium compare` compared `to_version` with `from_version` (the
    /// numbers in `comparison`).
    pub const COMPARE: &str = "compare";
    /// An endpoint's weights changed (`endpoint`, the new `arms`; `alias`
    /// names the arms whose weight changed; `why` for a guardrail or rollout).
    pub const TRAFFIC_SET: &str = "traffic_set";
    /// A configuration reload added, changed or removed an endpoint
    /// (`endpoint`, its new `arms`; `why` says which and what changed).
    pub const ENDPOINT_RELOADED: &str = "endpoint_reloaded";
    /// An experiment's challenger became the baseline (the readout's numbers
    /// in `comparison` and `why`).
    pub const PROMOTE: &str = "promote";
    /// An operator stopped an endpoint's rollout (`endpoint`; `alias` is the
    /// rollout's arm; `why` names the step it stopped on).
    pub const ROLLOUT_STOP: &str = "rollout_stop";
    /// An operator resumed an endpoint's stopped rollout on the step it
    /// stopped on (`endpoint`, `alias`, `why`).
    pub const ROLLOUT_RESUME: &str = "rollout_resume";
}

/// How it ended (its `result`).
pub mod outcome {
    /// Done.
    pub const OK: &str = "ok";
    /// A version was checked and turned down (it does not load, its
    /// signature differs, it fails validation); nothing changed.
    pub const REFUSED: &str = "refused";
    /// Something broke on the way (a write, a file on disk).
    pub const FAILED: &str = "failed";
}

/// A change made to the registry, as every path that makes one records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    Registered(u64),
    VersionDeleted(u64),
    Archived(u64),
    Unarchived(u64),
    AliasSet {
        alias: &'a str,
        from: Option<u64>,
        to: u64,
        /// Made by `podium alias rollback`: it takes the move it undoes off the stack.
        rollback: bool,
    },
    AliasDeleted {
        alias: &'a str,
        from: Option<u64>,
    },
}

impl Change<'_> {
    /// The event of this change to `model`, made by `by`.
    pub fn event(self, model: &str, by: &str) -> Event {
        let version = |action: &str, alias: &str, v: u64| {
            let mut e = Event::new(model, alias, action, by);
            e.to_version = Some(v);
            e
        };
        match self {
            Change::Registered(v) => version(action::VERSION_REGISTERED, "", v),
            Change::VersionDeleted(v) => version(action::VERSION_DELETED, "", v),
            Change::Archived(v) => version(action::VERSION_ARCHIVED, "", v),
            Change::Unarchived(v) => version(action::VERSION_UNARCHIVED, "", v),
            Change::AliasSet {
                alias,
                from,
                to,
                rollback,
            } => {
                let mut e = version(action::ALIAS_SET, alias, to);
                e.from_version = from;
                e.rollback = rollback;
                e
            }
            Change::AliasDeleted { alias, from } => {
                let mut e = Event::new(model, alias, action::ALIAS_DELETED, by);
                e.from_version = from;
                e
            }
        }
    }
}

/// One entry of the history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub model: String,
    pub alias: String,
    /// One of [`action`]'s names.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<u64>,
    /// Who asked: `registry` (a change found by polling), `admin` or
    /// `admin:NAME` (the admin API, by token name), `cli` (a `podium`
    /// command without `--server`), `compare` (`podium compare`), `guardrail`,
    /// `rollout`, `experiment` (the experiment loop), `reload` (a configuration
    /// reload on SIGHUP); a rollback adds `:rollback`.
    pub by: String,
    /// One of [`outcome`]'s names.
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
    /// An `alias_set` made by `podium alias rollback`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// For `traffic_set` (an endpoint's weights changed), `endpoint_reloaded`
    /// and `promote` (an experiment moved the baseline alias): the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// For `traffic_set` and `endpoint_reloaded`: the weights after the change.
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
            result: outcome::OK.into(),
            ..Default::default()
        }
    }

    /// A swap of `model@alias` from `from` to `to` that was turned down.
    pub fn refused(
        model: &str,
        alias: &str,
        from: Option<u64>,
        to: u64,
        by: &str,
        why: &str,
    ) -> Event {
        let mut e = Event::new(model, alias, action::SWAP, by);
        e.from_version = from;
        e.to_version = Some(to);
        e.result = outcome::REFUSED.into();
        e.error = Some(why.into());
        e
    }
}

/// The version `podium alias rollback` points `model@alias` back at: the
/// alias's moves in `events` (oldest first) are a stack, each move pushes
/// the version it left and each rollback pops it, so rolling back twice
/// walks back two moves. A move is an `alias_set`, or a `swap` to a version
/// the history did not know the alias was at (a move made outside Podium,
/// found by polling); the `swap` that follows an `alias_set` is the same
/// move, not another. None: nothing further to roll back to.
pub fn rollback_target(events: &[Event], model: &str, alias: &str) -> Option<u64> {
    let mut stack: Vec<u64> = Vec::new();
    // Where the history says the alias points.
    let mut at: Option<u64> = None;
    let moves = events
        .iter()
        .filter(|e| e.model == model && e.alias == alias && e.result == outcome::OK);
    for e in moves {
        match e.action.as_str() {
            action::ALIAS_DELETED | action::UNSERVED => {
                stack.clear();
                at = None;
            }
            action::ALIAS_SET if e.rollback => {
                stack.pop();
                at = e.to_version;
            }
            action::ALIAS_SET | action::SWAP if e.to_version != at => {
                if let Some(from) = e.from_version.or(at).filter(|&f| Some(f) != e.to_version) {
                    stack.push(from);
                }
                at = e.to_version;
            }
            _ => {}
        }
    }
    stack.pop()
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

    /// Records `change` to `model`, made by `by`: the one writer of
    /// registry changes, whichever path (CLI, admin API) made them.
    pub fn record_change(&self, model: &str, change: Change<'_>, by: &str) {
        self.record(&change.event(model, by));
    }

    /// Where `podium alias rollback` points `model@alias` back at
    /// ([`rollback_target`]).
    pub fn rollback_target(&self, model: &str, alias: &str) -> std::io::Result<Option<u64>> {
        let events = self.tail(usize::MAX, Some(model))?;
        Ok(rollback_target(&events, model, alias))
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

    fn set(alias: &str, from: Option<u64>, to: u64, rollback: bool) -> Event {
        Change::AliasSet {
            alias,
            from,
            to,
            rollback,
        }
        .event("m", "cli")
    }

    #[test]
    fn rollback_walks_back_through_the_moves() {
        // 1 -> 2 -> 3, then rollback, rollback, rollback.
        let mut events = vec![set("champion", None, 1, false)];
        events.push(set("champion", Some(1), 2, false));
        events.push(set("champion", Some(2), 3, false));
        // Other aliases, models and refusals do not count.
        events.push(set("challenger", Some(3), 1, false));
        events.push(Event::refused("m", "champion", Some(3), 9, "admin", "no"));
        assert_eq!(rollback_target(&events, "m", "champion"), Some(2));
        events.push(set("champion", Some(3), 2, true));
        assert_eq!(rollback_target(&events, "m", "champion"), Some(1));
        events.push(set("champion", Some(2), 1, true));
        assert_eq!(rollback_target(&events, "m", "champion"), None);
        assert_eq!(rollback_target(&events, "other", "champion"), None);
        // A new move after rollbacks is undone first.
        events.push(set("champion", Some(1), 4, false));
        assert_eq!(rollback_target(&events, "m", "champion"), Some(1));
        // The swap that follows it is the same move; a swap to a version the
        // history did not know of (a move outside Podium) is another.
        let swap = |from, to| {
            let mut e = Event::new("m", "champion", action::SWAP, "registry");
            e.from_version = Some(from);
            e.to_version = Some(to);
            e
        };
        events.push(swap(1, 4));
        assert_eq!(rollback_target(&events, "m", "champion"), Some(1));
        events.push(swap(4, 5));
        assert_eq!(rollback_target(&events, "m", "champion"), Some(4));
        events.push(set("champion", Some(5), 4, true));
        events.push(swap(5, 4));
        assert_eq!(rollback_target(&events, "m", "champion"), Some(1));
        // Deleting the alias forgets its past.
        events.push(
            Change::AliasDeleted {
                alias: "champion",
                from: Some(4),
            }
            .event("m", "cli"),
        );
        assert_eq!(rollback_target(&events, "m", "champion"), None);
    }

    #[test]
    fn changes_are_recorded_in_one_vocabulary() {
        let e = Change::Registered(3).event("fraud", "cli");
        assert_eq!(
            (e.action.as_str(), e.alias.as_str(), e.to_version),
            ("version_registered", "", Some(3))
        );
        let e = set("champion", Some(1), 2, true);
        let line = serde_json::to_value(&e).unwrap();
        assert_eq!(line["rollback"], true);
        assert_eq!(line["result"], "ok");
        let line = serde_json::to_value(set("champion", Some(1), 2, false)).unwrap();
        assert!(line.get("rollback").is_none(), "{line}");
        let e = Event::refused("fraud", "champion", Some(1), 3, "registry", "signature");
        assert_eq!((e.action.as_str(), e.result.as_str()), ("swap", "refused"));
    }

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
