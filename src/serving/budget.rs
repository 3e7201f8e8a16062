//! The memory budget under `--memory-limit`: which models stay loaded
//! whatever happens (`--preload`), when each loaded version was last used,
//! and which versions give way, least recently used first, when a load
//! needs room.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use super::loader::Key;

/// What `--memory-limit` and `--preload` decide about loading and keeping
/// versions. Without a limit every alias keeps its version in its slot and
/// nothing is evicted to make room.
pub(super) struct Budget {
    limit: Option<u64>,
    /// Models whose aliases keep their versions in their slots (loaded at
    /// start and on every alias move, never evicted).
    preload: HashSet<String>,
    /// Last use of each loaded version, in milliseconds since `epoch`; apart
    /// from the loaded versions so a request takes a read lock and stores
    /// one atomic.
    last_used: RwLock<HashMap<Key, AtomicU64>>,
    epoch: Instant,
    epoch_wall: SystemTime,
}

/// One loaded version as eviction sees it.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub key: Key,
    pub bytes: u64,
    /// Nothing else holds it (no slot, no request in flight) and its model
    /// is not preloaded.
    pub evictable: bool,
    /// Milliseconds since the budget's epoch.
    pub last_used: u64,
}

/// Why no room can be made: the memory that cannot be freed now.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NoRoom {
    pub held: u64,
}

impl Budget {
    pub fn new(limit: Option<u64>, preload: &[String]) -> Budget {
        Budget {
            limit,
            preload: preload.iter().cloned().collect(),
            last_used: RwLock::new(HashMap::new()),
            epoch: Instant::now(),
            epoch_wall: SystemTime::now(),
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Whether `model`'s aliases are served on demand: loaded by the first
    /// request (or at start while they fit) and evicted when room is needed,
    /// rather than held in their slots. Only under a memory limit, and
    /// never for a `--preload` model.
    pub fn on_demand(&self, model: &str) -> bool {
        self.limit.is_some() && !self.preload.contains(model)
    }

    /// Whether `model` is named by `--preload`.
    pub fn preloaded(&self, model: &str) -> bool {
        self.preload.contains(model)
    }

    /// Records a use of `key` now.
    pub fn touch(&self, key: &Key) {
        let now = self.now_ms();
        if let Some(last) = read(&self.last_used).get(key) {
            last.store(now, Ordering::Relaxed);
            return;
        }
        write(&self.last_used).insert(key.clone(), AtomicU64::new(now));
    }

    /// Forgets `key`'s uses (it was unloaded).
    pub fn forget(&self, key: &Key) {
        write(&self.last_used).remove(key);
    }

    /// When `key` was last used (or loaded), if it is loaded.
    pub fn last_used(&self, key: &Key) -> Option<SystemTime> {
        let ms = read(&self.last_used).get(key)?.load(Ordering::Relaxed);
        Some(self.epoch_wall + Duration::from_millis(ms))
    }

    /// `key`'s last use for [`plan`]: 0 (first to go) if never recorded.
    pub fn last_used_ms(&self, key: &Key) -> u64 {
        read(&self.last_used)
            .get(key)
            .map_or(0, |l| l.load(Ordering::Relaxed))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// The versions to evict so that `needed` more bytes fit under `limit`
/// next to `loaded`: evictable ones only, least recently used first, no
/// more than needed. `NoRoom` when evicting every evictable one is not
/// enough.
pub(super) fn plan(limit: u64, needed: u64, loaded: &[Candidate]) -> Result<Vec<Key>, NoRoom> {
    let resident: u64 = loaded.iter().map(|c| c.bytes).sum();
    let mut over = resident.saturating_add(needed).saturating_sub(limit);
    if over == 0 {
        return Ok(Vec::new());
    }
    let mut evictable: Vec<&Candidate> = loaded.iter().filter(|c| c.evictable).collect();
    evictable.sort_by_key(|c| (c.last_used, c.key.clone()));
    let mut victims = Vec::new();
    for c in evictable {
        victims.push(c.key.clone());
        over = over.saturating_sub(c.bytes);
        if over == 0 {
            return Ok(victims);
        }
    }
    Err(NoRoom {
        held: loaded
            .iter()
            .filter(|c| !c.evictable)
            .map(|c| c.bytes)
            .sum(),
    })
}

// A poisoned lock means a panic elsewhere mid-update of a plain map, which is
// still consistent: carry on.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, bytes: u64, evictable: bool, last_used: u64) -> Candidate {
        Candidate {
            key: (name.to_string(), 1),
            bytes,
            evictable,
            last_used,
        }
    }

    fn names(victims: Vec<Key>) -> Vec<String> {
        victims.into_iter().map(|(m, _)| m).collect()
    }

    #[test]
    fn nothing_is_evicted_while_the_load_fits() {
        let loaded = [c("a", 40, true, 1), c("b", 40, true, 2)];
        assert_eq!(plan(100, 20, &loaded), Ok(vec![]));
    }

    #[test]
    fn the_least_recently_used_go_first_and_no_more_than_needed() {
        let loaded = [
            c("recent", 40, true, 30),
            c("oldest", 40, true, 10),
            c("older", 40, true, 20),
        ];
        // 120 loaded + 40 needed under 100: 60 must go, so two of them.
        let victims = plan(100, 40, &loaded).unwrap();
        assert_eq!(names(victims), ["oldest", "older"]);
    }

    #[test]
    fn pinned_and_busy_versions_are_never_evicted() {
        let loaded = [
            c("busy", 40, false, 1),
            c("idle", 40, true, 50),
            c("pinned", 40, false, 2),
        ];
        assert_eq!(names(plan(100, 20, &loaded).unwrap()), ["idle"]);
        // Even with the idle one gone, 80 held + 40 is over 100.
        assert_eq!(plan(100, 40, &loaded), Err(NoRoom { held: 80 }));
    }

    #[test]
    fn the_model_alone_over_the_limit_finds_no_room() {
        assert_eq!(plan(100, 150, &[]), Err(NoRoom { held: 0 }));
    }

    #[test]
    fn uses_are_recorded_and_forgotten() {
        let budget = Budget::new(Some(100), &["fraud".to_string()]);
        let key = ("m".to_string(), 1);
        assert!(budget.last_used(&key).is_none());
        budget.touch(&key);
        assert!(budget.last_used(&key).is_some());
        budget.forget(&key);
        assert_eq!(budget.last_used_ms(&key), 0);
        assert!(budget.on_demand("m") && !budget.on_demand("fraud"));
        assert!(!Budget::new(None, &[]).on_demand("m"));
    }
}
