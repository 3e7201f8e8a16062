//! The bounded record of recent tracked calls that late feedback joins.
//!
//! A ring of `capacity` places, filled in order. Every call to an endpoint
//! with a readout takes the next sequence number of the ledger's own
//! [`IdSpace`] as its request id, and its record goes to place
//! `sequence % capacity`, replacing the call `capacity` numbers older (which
//! falls out and is counted). Feedback by request id reads that one place
//! and checks the sequence number kept there, so neither side hashes or
//! allocates. Feedback by the client's request id goes through a map that
//! holds only calls whose client sent an id, and never more calls than the
//! ring.
//!
//! Places are allocated in chunks on first use, so a ledger costs memory
//! for the calls it has seen, up to its bound.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::label::Prediction;
use crate::request_id::IdSpace;

/// Places allocated together, on the first call that lands in them.
const CHUNK: usize = 4096;
/// Shards of the client-id map (each its own mutex).
const CLIENT_SHARDS: usize = 16;

/// One tracked call, as feedback needs it.
#[derive(Debug, Clone, Default)]
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
    /// No such call in the ledger (never tracked, or fallen out), or one
    /// the label cannot count for.
    Unmatched,
    /// The call already had a label; this one is not counted.
    Duplicate { request_id: u128 },
    /// The call's first label, counted as `value`.
    First { request_id: u128, value: T },
}

/// One place of the ring: the call with `sequence` (0: none yet).
#[derive(Default)]
struct Place {
    sequence: u64,
    entry: Entry,
}

/// Client request id → the sequence number of the latest call that carried it.
type ClientShard = Mutex<HashMap<Box<str>, u64>>;

/// [`CHUNK`] places (fewer in the last chunk), allocated on first use.
type Chunk = OnceLock<Box<[Mutex<Place>]>>;

/// See the module doc.
pub struct Ledger {
    ids: IdSpace,
    capacity: usize,
    chunks: Box<[Chunk]>,
    /// Places that hold a call.
    held: AtomicUsize,
    clients: Box<[ClientShard]>,
    client_hasher: RandomState,
}

impl Ledger {
    /// A ledger of at most `capacity` calls (at least one).
    pub fn new(capacity: usize) -> Ledger {
        let capacity = capacity.max(1);
        Ledger {
            ids: IdSpace::new(),
            capacity,
            chunks: (0..capacity.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
            held: AtomicUsize::new(0),
            clients: (0..CLIENT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            client_hasher: RandomState::new(),
        }
    }

    /// A new call's place in the ledger: its sequence number.
    pub fn next_sequence(&self) -> u64 {
        self.ids.next_sequence()
    }

    /// The request id of the call with `sequence`, as UUID text.
    pub fn request_id(&self, sequence: u64) -> String {
        self.ids.render(sequence)
    }

    /// The place of `sequence`, when its chunk exists (or `allocate`).
    fn place(&self, sequence: u64, allocate: bool) -> Option<&Mutex<Place>> {
        let index = (sequence % self.capacity as u64) as usize;
        let (chunk, offset) = (index / CHUNK, index % CHUNK);
        let cell = &self.chunks[chunk];
        let places = if allocate {
            cell.get_or_init(|| {
                let len = CHUNK.min(self.capacity - chunk * CHUNK);
                (0..len).map(|_| Mutex::default()).collect()
            })
        } else {
            cell.get()?
        };
        places.get(offset)
    }

    fn clients_of(&self, client_request_id: &str) -> &ClientShard {
        let hash = self.client_hasher.hash_one(client_request_id);
        &self.clients[(hash % self.clients.len() as u64) as usize]
    }

    /// Records the call with `sequence`; answers the endpoint index of the
    /// call that fell out for it: the one `capacity` numbers older, or this
    /// one when a newer call already took the place (it finished first).
    pub fn insert(&self, sequence: u64, entry: Entry) -> Option<u32> {
        let place = self.place(sequence, true)?;
        let mut place = lock(place);
        if place.sequence > sequence {
            return Some(entry.endpoint);
        }
        let old_sequence = std::mem::replace(&mut place.sequence, sequence);
        let old = std::mem::replace(&mut place.entry, entry);
        // Lock order: a place, then a client shard (never the reverse).
        if let Some(old_client) = &old.client_request_id {
            let mut clients = lock(self.clients_of(old_client));
            if clients.get(old_client) == Some(&old_sequence) {
                clients.remove(old_client);
            }
        }
        if let Some(client) = &place.entry.client_request_id {
            lock(self.clients_of(client)).insert(client.clone(), sequence);
        }
        if old_sequence == 0 {
            self.held.fetch_add(1, Ordering::Relaxed);
            None
        } else {
            Some(old.endpoint)
        }
    }

    fn sequence(&self, key: &Key) -> Option<u64> {
        match key {
            Key::RequestId(id) => self.ids.sequence_of(*id),
            Key::ClientRequestId(client) => {
                lock(self.clients_of(client)).get(client.as_str()).copied()
            }
            Key::Unknown => None,
        }
    }

    /// Runs `f` on the entry of the call `key` names, while the ledger holds it.
    fn with_entry<T>(&self, key: &Key, f: impl FnOnce(u64, &mut Entry) -> T) -> Option<T> {
        let sequence = self.sequence(key).filter(|&s| s != 0)?;
        let mut place = lock(self.place(sequence, false)?);
        (place.sequence == sequence).then(|| f(sequence, &mut place.entry))
    }

    /// The endpoint of the call `key` names, without labelling it.
    pub fn endpoint_of(&self, key: &Key) -> Option<u32> {
        self.with_entry(key, |_, entry| entry.endpoint)
    }

    /// Labels the call `key` names: the first label of a call joins as what
    /// `count` makes of its entry (None: not countable, the call stays
    /// unlabelled), later ones are duplicates.
    pub fn label<T>(&self, key: &Key, count: impl FnOnce(&Entry) -> Option<T>) -> Joined<T> {
        self.with_entry(key, |sequence, entry| {
            let request_id = self.ids.id(sequence);
            if entry.labelled {
                return Joined::Duplicate { request_id };
            }
            match count(entry) {
                None => Joined::Unmatched,
                Some(value) => {
                    entry.labelled = true;
                    Joined::First { request_id, value }
                }
            }
        })
        .unwrap_or(Joined::Unmatched)
    }

    /// Calls held now.
    pub fn len(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A poisoned ledger lock still guards consistent data (every update is
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
            client_request_id: client.map(Into::into),
            ..Entry::default()
        }
    }

    /// A new call's sequence number and the key of its request id.
    fn call(ledger: &Ledger) -> (u64, Key) {
        let sequence = ledger.next_sequence();
        (sequence, Key::request_id(&ledger.request_id(sequence)))
    }

    #[test]
    fn a_full_ledger_replaces_the_oldest_call() {
        let ledger = Ledger::new(3);
        let calls: Vec<_> = (0..4).map(|_| call(&ledger)).collect();
        for (i, (sequence, _)) in calls.iter().take(3).enumerate() {
            assert_eq!(ledger.insert(*sequence, entry(i as u32, None)), None);
        }
        assert_eq!(ledger.insert(calls[3].0, entry(3, None)), Some(0));
        assert_eq!(ledger.len(), 3);
        assert_eq!(ledger.label(&calls[0].1, arm), Joined::Unmatched);
        let Key::RequestId(id) = calls[1].1 else {
            panic!("a request id")
        };
        assert_eq!(
            ledger.label(&calls[1].1, arm),
            Joined::First {
                request_id: id,
                value: 0
            }
        );
    }

    #[test]
    fn a_call_that_finishes_after_a_newer_one_took_its_place_falls_out() {
        let ledger = Ledger::new(2);
        let (slow, slow_key) = call(&ledger);
        let _ = call(&ledger);
        let (fast, fast_key) = call(&ledger); // the same place as `slow`
        assert_eq!(ledger.insert(fast, entry(1, None)), None);
        assert_eq!(ledger.insert(slow, entry(0, Some("c"))), Some(0));
        assert_eq!(ledger.endpoint_of(&fast_key), Some(1));
        assert_eq!(ledger.endpoint_of(&slow_key), None);
        let client = Key::ClientRequestId("c".into());
        assert_eq!(ledger.endpoint_of(&client), None);
    }

    #[test]
    fn the_first_label_joins_and_later_ones_are_duplicates() {
        let ledger = Ledger::new(10);
        let (sequence, by_id) = call(&ledger);
        ledger.insert(sequence, entry(0, Some("order-7")));
        let key = Key::ClientRequestId("order-7".into());
        assert_eq!(ledger.endpoint_of(&key), Some(0));
        let refuse = |_: &Entry| None::<u32>;
        assert_eq!(ledger.label(&key, refuse), Joined::Unmatched);
        assert!(matches!(ledger.label(&key, arm), Joined::First { .. }));
        assert!(matches!(
            ledger.label(&by_id, arm),
            Joined::Duplicate { .. }
        ));
        assert_eq!(ledger.label(&Key::Unknown, arm), Joined::Unmatched);
        let stranger = Key::RequestId(fastrand::u128(..));
        assert_eq!(ledger.label(&stranger, arm), Joined::Unmatched);
        let (never_inserted, key) = call(&ledger);
        assert_ne!(never_inserted, sequence);
        assert_eq!(ledger.label(&key, arm), Joined::Unmatched);
    }

    #[test]
    fn a_client_id_names_its_latest_call_until_that_falls_out() {
        let ledger = Ledger::new(2);
        let (first, _) = call(&ledger);
        ledger.insert(first, entry(0, Some("c")));
        let (second, _) = call(&ledger);
        ledger.insert(second, entry(1, Some("c")));
        let key = Key::ClientRequestId("c".into());
        let (third, _) = call(&ledger);
        ledger.insert(third, entry(2, None)); // replaces `first`: "c" still names `second`
        assert_eq!(ledger.endpoint_of(&key), Some(1));
        let (fourth, _) = call(&ledger);
        ledger.insert(fourth, entry(3, None)); // replaces `second`
        assert_eq!(ledger.label(&key, arm), Joined::Unmatched);
        assert!(ledger.clients.iter().all(|c| lock(c).is_empty()));
    }

    #[test]
    fn places_are_allocated_as_calls_reach_them() {
        let ledger = Ledger::new(CHUNK * 2 + 5);
        assert_eq!(ledger.chunks.len(), 3);
        assert!(ledger.chunks.iter().all(|c| c.get().is_none()));
        for _ in 0..CHUNK + 1 {
            let (sequence, _) = call(&ledger);
            ledger.insert(sequence, entry(0, None));
        }
        let allocated: Vec<_> = ledger
            .chunks
            .iter()
            .map(|c| c.get().map(|p| p.len()))
            .collect();
        assert_eq!(allocated, vec![Some(CHUNK), Some(CHUNK), None]);
        assert_eq!(ledger.len(), CHUNK + 1);
    }
}
