//! The bounded record of recent tracked calls that late feedback joins:
//! keyed by Podium's request id, and findable by the client's request id.
//!
//! The bound is split evenly over shards (each its own mutex, picked by the
//! request id's random bits), so concurrent requests rarely meet on one
//! lock; each shard evicts its oldest entry first. Request ids are random
//! UUIDs, so the shards fill evenly and eviction is oldest-first overall
//! up to the shards' interleaving.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;

use super::label::Prediction;

/// Entries per shard below which a ledger has fewer shards (so a small
/// bound, e.g. in tests, is exact and strictly oldest-first).
const ENTRIES_PER_SHARD: usize = 4096;
const MAX_SHARDS: usize = 64;

/// One tracked call, as feedback needs it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The endpoint's and the arm's index in the readout.
    pub endpoint: u32,
    pub arm: u32,
    /// For accuracy: the predicted class.
    pub prediction: Option<Prediction>,
    /// Set by the first label; later labels for the call are duplicates.
    pub labelled: bool,
    pub client_request_id: Option<Box<str>>,
}

/// How feedback names a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    RequestId(u128),
    ClientRequestId(String),
    /// A request id that is not a UUID: Podium never gave it out.
    Unknown,
}

/// What a label found in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined<T> {
    /// No such call in the ledger (never tracked, or evicted), or one the
    /// label cannot count for.
    Unmatched,
    /// The call already had a label; this one is not counted.
    Duplicate { request_id: u128 },
    /// The call's first label, counted as `value`.
    First { request_id: u128, value: T },
}

/// Client request id → the latest call that carried it.
type ClientShard = Mutex<HashMap<Box<str>, u128>>;

struct Shard {
    entries: HashMap<u128, Entry>,
    /// Request ids, oldest first.
    order: VecDeque<u128>,
    capacity: usize,
}

/// See the module doc.
pub struct Ledger {
    shards: Box<[Mutex<Shard>]>,
    clients: Box<[ClientShard]>,
    client_hasher: RandomState,
}

impl Ledger {
    /// A ledger of at most `capacity` calls (at least one).
    pub fn new(capacity: usize) -> Ledger {
        let capacity = capacity.max(1);
        let shards = (capacity / ENTRIES_PER_SHARD).clamp(1, MAX_SHARDS);
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        let shard = |i: usize| {
            Mutex::new(Shard {
                entries: HashMap::new(),
                order: VecDeque::new(),
                capacity: capacity / shards + usize::from(i < capacity % shards),
            })
        };
        Ledger {
            shards: (0..shards).map(shard).collect(),
            clients: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            client_hasher: RandomState::new(),
        }
    }

    fn shard(&self, request_id: u128) -> &Mutex<Shard> {
        let bits = (request_id as u64) ^ ((request_id >> 64) as u64);
        &self.shards[(bits % self.shards.len() as u64) as usize]
    }

    fn clients_of(&self, client_request_id: &str) -> &ClientShard {
        let hash = self.client_hasher.hash_one(client_request_id);
        &self.clients[(hash % self.clients.len() as u64) as usize]
    }

    /// Records a call; answers the endpoint index of the entry it evicted,
    /// if the ledger was full.
    pub fn insert(&self, request_id: u128, entry: Entry) -> Option<u32> {
        let client = entry.client_request_id.clone();
        let evicted = {
            let mut shard = lock(self.shard(request_id));
            let evicted = if shard.entries.len() >= shard.capacity {
                let oldest = shard.order.pop_front();
                oldest.and_then(|id| shard.entries.remove(&id).map(|e| (id, e)))
            } else {
                None
            };
            if shard.entries.insert(request_id, entry).is_none() {
                shard.order.push_back(request_id);
            }
            // Lock order: an entry shard, then a client shard (never the reverse).
            if let Some((id, old)) = &evicted {
                if let Some(old_client) = &old.client_request_id {
                    let mut clients = lock(self.clients_of(old_client));
                    if clients.get(old_client) == Some(id) {
                        clients.remove(old_client);
                    }
                }
            }
            if let Some(client) = client {
                lock(self.clients_of(&client)).insert(client, request_id);
            }
            evicted
        };
        evicted.map(|(_, e)| e.endpoint)
    }

    fn request_id(&self, key: &Key) -> Option<u128> {
        match key {
            Key::RequestId(id) => Some(*id),
            Key::ClientRequestId(client) => {
                lock(self.clients_of(client)).get(client.as_str()).copied()
            }
            Key::Unknown => None,
        }
    }

    /// The endpoint of the call `key` names, without labelling it.
    pub fn endpoint_of(&self, key: &Key) -> Option<u32> {
        let id = self.request_id(key)?;
        lock(self.shard(id)).entries.get(&id).map(|e| e.endpoint)
    }

    /// Labels the call `key` names: the first label of a call joins as what
    /// `count` makes of its entry (None: not countable, the call stays
    /// unlabelled), later ones are duplicates.
    pub fn label<T>(&self, key: &Key, count: impl FnOnce(&Entry) -> Option<T>) -> Joined<T> {
        let Some(id) = self.request_id(key) else {
            return Joined::Unmatched;
        };
        let mut shard = lock(self.shard(id));
        match shard.entries.get_mut(&id) {
            None => Joined::Unmatched,
            Some(entry) if entry.labelled => Joined::Duplicate { request_id: id },
            Some(entry) => match count(entry) {
                None => Joined::Unmatched,
                Some(value) => {
                    entry.labelled = true;
                    Joined::First {
                        request_id: id,
                        value,
                    }
                }
            },
        }
    }

    /// Calls held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A poisoned ledger lock still guards consistent maps (every update is
/// completed before anything can panic), so its data is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(e: &Entry) -> Option<u32> {
        Some(e.arm)
    }

    fn entry(endpoint: u32, client: Option<&str>) -> Entry {
        Entry {
            endpoint,
            arm: 0,
            prediction: None,
            labelled: false,
            client_request_id: client.map(Into::into),
        }
    }

    #[test]
    fn a_full_ledger_evicts_the_oldest_call() {
        let ledger = Ledger::new(3);
        for id in 1..=3 {
            assert_eq!(ledger.insert(id, entry(id as u32, None)), None);
        }
        assert_eq!(ledger.insert(4, entry(4, None)), Some(1));
        assert_eq!(ledger.len(), 3);
        assert_eq!(ledger.label(&Key::RequestId(1), arm), Joined::Unmatched);
        assert_eq!(
            ledger.label(&Key::RequestId(2), arm),
            Joined::First {
                request_id: 2,
                value: 0
            }
        );
    }

    #[test]
    fn the_first_label_joins_and_later_ones_are_duplicates() {
        let ledger = Ledger::new(10);
        ledger.insert(7, entry(0, Some("order-7")));
        let key = Key::ClientRequestId("order-7".into());
        assert_eq!(ledger.endpoint_of(&key), Some(0));
        let refuse = |_: &Entry| None::<u32>;
        assert_eq!(ledger.label(&key, refuse), Joined::Unmatched);
        assert!(matches!(
            ledger.label(&key, arm),
            Joined::First { request_id: 7, .. }
        ));
        assert_eq!(
            ledger.label(&Key::RequestId(7), arm),
            Joined::Duplicate { request_id: 7 }
        );
        assert_eq!(ledger.label(&Key::Unknown, arm), Joined::Unmatched);
    }

    #[test]
    fn a_client_id_names_its_latest_call_until_that_is_evicted() {
        let ledger = Ledger::new(2);
        ledger.insert(1, entry(0, Some("c")));
        ledger.insert(2, entry(0, Some("c")));
        let key = Key::ClientRequestId("c".into());
        ledger.insert(3, entry(0, None)); // evicts 1: "c" still names 2
        assert!(matches!(
            ledger.label(&key, arm),
            Joined::First { request_id: 2, .. }
        ));
        ledger.insert(4, entry(0, None)); // evicts 2
        assert_eq!(ledger.label(&key, arm), Joined::Unmatched);
    }

    #[test]
    fn big_ledgers_are_sharded_with_the_exact_bound() {
        let ledger = Ledger::new(100_000);
        assert_eq!(ledger.shards.len(), 16);
        let total: usize = ledger.shards.iter().map(|s| lock(s).capacity).sum();
        assert_eq!(total, 100_000);
    }
}
