//! Loading on demand under `--memory-limit`: a request for a version that
//! is registered but not loaded loads it (validate, warm) while requests for
//! it wait, at most `--load-wait-secs`; requests for the same version share
//! one load. Room is made by evicting the least recently used versions that
//! nothing holds: never one with requests in flight, in an alias's slot, or
//! of a `--preload` model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use super::alias_state::AliasState;
use super::budget::{plan, Candidate, NoRoom};
use super::history::{action, outcome, Event};
use super::loader::{lock, mb, read, write, Key, Loader};
use super::slots::AliasSlot;
use super::ModelStore;
use crate::error::Error;
use crate::runtime::LoadedModel;

/// Whether a load may evict versions to fit under the memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    /// Evict the least recently used versions that nothing holds.
    Evict,
    /// Load only into free room (filling memory at start, or after an
    /// alias moves): evicting one on-demand version for another gains nothing.
    FreeOnly,
}

/// What a load on demand came to; None while it runs.
type Outcome = Option<Result<Arc<LoadedModel>, Error>>;

/// Loads on demand under way, one per version; requests for a version that
/// is being loaded wait for that load instead of starting another.
#[derive(Default)]
pub(super) struct ColdLoads {
    loads: Mutex<HashMap<Key, watch::Receiver<Outcome>>>,
}

/// Takes a finished (or failed) load out of [`ColdLoads`], even if the
/// loading thread panicked, so the next request starts a fresh one.
struct Finished<'a> {
    loads: &'a ColdLoads,
    key: Key,
}

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        lock(&self.loads.loads).remove(&self.key);
    }
}

impl Loader {
    /// `model` `version` for a request to an alias served on demand: the
    /// loaded copy if there is one (its use recorded), else one load shared
    /// by every request that asks meanwhile, waited for at most
    /// `--load-wait-secs`. A load that takes longer goes on in the
    /// background; the request gets 503 with `Retry-After`.
    pub async fn on_demand(
        self: &Arc<Self>,
        model: &str,
        version: u64,
    ) -> Result<Arc<LoadedModel>, Error> {
        let key = (model.to_string(), version);
        if let Some(found) = read(&self.loaded).get(&key).cloned() {
            self.budget.touch(&key);
            return Ok(found);
        }
        if let Some(why) = read(&self.failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        if let Some(why) = read(&self.fetch_failed).get(&key) {
            return Err(Error::Unavailable(why.clone()));
        }
        let mut outcome = self.start_load(key);
        let waited = tokio::time::timeout(self.load_wait, outcome.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(done)) => match done.as_ref() {
                Some(result) => result.clone(),
                None => Err(Error::Internal(format!(
                    "the load of {model} v{version} ended without an answer; see the server log"
                ))),
            },
            Ok(Err(_)) => Err(Error::Internal(format!(
                "the load of {model} v{version} stopped; see the server log"
            ))),
            Err(_) => Err(Error::Loading {
                message: format!(
                    "model \"{model}\" version {version} is not loaded: it is loaded on demand (--memory-limit) and the load did not finish within --load-wait-secs {}; it goes on in the background, retry shortly",
                    self.load_wait.as_secs()
                ),
                retry_after_secs: 1,
            }),
        }
    }

    /// The load of `key` under way, or a new one started on a blocking thread.
    fn start_load(self: &Arc<Self>, key: Key) -> watch::Receiver<Outcome> {
        let mut loads = lock(&self.cold.loads);
        if let Some(running) = loads.get(&key) {
            return running.clone();
        }
        let (done, outcome) = watch::channel(None);
        loads.insert(key.clone(), outcome.clone());
        let loader = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let finished = Finished {
                loads: &loader.cold,
                key: key.clone(),
            };
            let result = loader.load_on_demand(&key.0, key.1);
            drop(finished);
            let _ = done.send(Some(result));
        });
        outcome
    }

    /// Loads and warms `model` `version` for requests, evicting what must
    /// go to fit it. Blocking.
    fn load_on_demand(&self, model: &str, version: u64) -> Result<Arc<LoadedModel>, Error> {
        let started = Instant::now();
        let already = self.is_loaded(model, version);
        let loaded = self.load_for_request(model, version)?;
        self.warm(&loaded)?;
        if !already {
            let took = started.elapsed();
            metrics::histogram!("podium_cold_load_seconds", "model" => model.to_string())
                .record(took.as_secs_f64());
            tracing::info!(
                "{} loaded on demand in {:.1} ms",
                loaded.label(),
                took.as_secs_f64() * 1000.0
            );
        }
        Ok(loaded)
    }

    /// Loads and warms `model` `version` if it fits in free room (at start,
    /// or when an alias served on demand moves); Ok(false) when it does not
    /// fit now, so the first request loads it. Blocking.
    pub(super) fn prefill(&self, model: &str, version: u64) -> Result<bool, Error> {
        match self.load_inner(model, version, false, Room::FreeOnly) {
            Ok(loaded) => self.warm(&loaded).map(|()| true),
            Err(Error::Loading { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Why `model` `version` cannot load (it failed before, or the registry
    /// could not hand it over), if it cannot.
    pub(super) fn load_failure(&self, model: &str, version: u64) -> Option<String> {
        let key = (model.to_string(), version);
        read(&self.failed).get(&key).cloned()
    }

    /// Makes `needed` bytes of room for `model` `version` under the memory
    /// limit, evicting as [`Room`] allows, plus (as far as the limit allows)
    /// `working` bytes the load itself takes for a moment (the file read
    /// and parsed), so resident memory stays under the limit while it
    /// loads. A version bigger than the limit by itself is refused; one that
    /// finds the memory held by versions that may not go answers 503 with
    /// `Retry-After`. Called with the loading lock held, so nothing loads
    /// meanwhile.
    pub(super) fn make_room(
        &self,
        model: &str,
        version: u64,
        needed: u64,
        working: u64,
        room: Room,
    ) -> Result<(), Error> {
        let Some(limit) = self.budget.limit() else {
            return Ok(());
        };
        if needed > limit {
            return Err(Error::Refused(format!(
                "loading {model} v{version} needs about {}, over --memory-limit {} by itself; raise the limit",
                mb(needed),
                mb(limit)
            )));
        }
        let mut loaded = write(&self.loaded);
        let candidates: Vec<Candidate> = loaded
            .iter()
            .map(|(key, m)| Candidate {
                key: key.clone(),
                bytes: m.memory_bytes(),
                // The map's own reference only: no slot, no request holds it.
                evictable: room == Room::Evict
                    && Arc::strong_count(m) == 1
                    && !self.budget.preloaded(&key.0),
                last_used: self.budget.last_used_ms(key),
            })
            .collect();
        let resident: u64 = candidates.iter().map(|c| c.bytes).sum();
        let reserve = needed.saturating_add(working).min(limit);
        let victims = match plan(limit, reserve, &candidates) {
            Ok(victims) => victims,
            Err(NoRoom { held }) => {
                let message = match room {
                    Room::FreeOnly => format!(
                        "{model} v{version} needs about {} next to the {} loaded, over --memory-limit {}",
                        mb(needed),
                        mb(resident),
                        mb(limit)
                    ),
                    Room::Evict => format!(
                        "cannot load {model} v{version} now: it needs about {} and {} of --memory-limit {} is held by versions with requests in flight, serving an alias's slot or of --preload models; retry shortly, or raise --memory-limit",
                        mb(needed),
                        mb(held),
                        mb(limit)
                    ),
                };
                return Err(Error::Loading {
                    message,
                    retry_after_secs: 1,
                });
            }
        };
        let mut pinned = lock(&self.pinned);
        for key in victims {
            let Some(evicted) = loaded.remove(&key) else {
                continue;
            };
            let last_used = self.budget.last_used(&key);
            self.budget.forget(&key);
            pinned.remove(&key);
            metrics::counter!("podium_model_evictions_total", "model" => key.0.clone())
                .increment(1);
            tracing::info!(
                "evicted {} ({}, least recently used{}) to make room for {model} v{version} under --memory-limit {}",
                evicted.label(),
                mb(evicted.memory_bytes()),
                last_used
                    .and_then(|t| t.elapsed().ok())
                    .map(|idle| format!(", idle {:.1} s", idle.as_secs_f64()))
                    .unwrap_or_default(),
                mb(limit)
            );
        }
        Ok(())
    }
}

/// Follows an alias served on demand (`--memory-limit`, not
/// `--preload`): its slot holds nothing; the target is loaded now if it
/// fits in free room (checked and warmed), else by the first request.
/// A version that does not load, or is over the limit by itself, is
/// refused as in a swap.
pub(super) fn follow_on_demand(
    store: &ModelStore,
    model: &str,
    alias: &str,
    by: &str,
    target: u64,
    was: Option<&AliasState>,
    approved: bool,
) -> AliasSlot {
    let slot = |state| AliasSlot {
        serving: None,
        state,
        previous: Default::default(),
    };
    if let Some(why) = store.loader.load_failure(model, target) {
        let why = format!("version {target} was refused: {why}");
        return slot(AliasState::Refused {
            version: target,
            reason: why,
        });
    }
    // Followed already: requests load it when they need it. A refusal
    // stands until the alias moves, or an admin change approves it.
    if let Some(state) = was.filter(|s| {
        s.version() == target
            && match s {
                AliasState::OnDemand { .. } => true,
                AliasState::Refused { .. } => !approved,
                _ => false,
            }
    }) {
        return slot(state.clone());
    }
    let mut event = Event::new(model, alias, action::SWAP, by);
    event.from_version = was.map(AliasState::version);
    event.to_version = Some(target);
    match store.loader.prefill(model, target) {
        Ok(loaded) => {
            store.history.record(&event);
            tracing::info!(
                "{model}@{alias}: v{target} served on demand ({})",
                if loaded {
                    "loaded now"
                } else {
                    "not loaded: no free room under --memory-limit, so the first request loads it"
                }
            );
            slot(AliasState::OnDemand { version: target })
        }
        Err(e @ Error::Registry(_)) => {
            let why = format!("version {target} could not be fetched: {e}");
            if was.and_then(AliasState::reason) != Some(why.as_str()) {
                tracing::warn!("{model}@{alias}: {why}; retrying at the next poll");
            }
            slot(AliasState::RegistryUnreachable {
                version: target,
                reason: why,
            })
        }
        Err(e) => {
            metrics::counter!("podium_swaps_total", "model" => model.to_string(), "alias" => alias.to_string(), "result" => "refused").increment(1);
            let why = format!("version {target} was refused: {e}");
            tracing::error!("{model}@{alias}: {why}");
            event.result = outcome::REFUSED.into();
            event.error = Some(e.to_string());
            store.history.record(&event);
            slot(AliasState::Refused {
                version: target,
                reason: why,
            })
        }
    }
}
