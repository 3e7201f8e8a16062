//! Podium's request ids: a random per-process prefix and a sequence number,
//! written as a version-4 UUID (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
//!
//! The UUID's first half is the [`IdSpace`]'s prefix: 60 random bits drawn
//! when the space is made, with the version nibble set to 4. Its second half
//! is the RFC 4122 variant and a 62-bit sequence number passed through a
//! keyed permutation (a Feistel network whose key is drawn with the prefix).
//! Ids are unique across restarts and replicas as long as two spaces never
//! draw the same 60-bit prefix, and the experiment ledger recovers a call's
//! sequence number, so its place, from the id with no table lookup
//! (`experiments::ledger`).
//!
//! The permutation keeps ids unguessable: one id tells nothing about the
//! next, so a client allowed to post feedback cannot label other clients'
//! calls by counting from its own.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

/// The UUID version nibble's place in the first half, and version 4 in it.
const VERSION_MASK: u64 = 0xF000;
const VERSION_4: u64 = 0x4000;
/// The variant's two bits at the top of the second half (RFC 4122: `10`).
const VARIANT_MASK: u64 = 0b11 << 62;
const VARIANT_RFC4122: u64 = 0b10 << 62;
/// The sequence number's bits in the second half.
pub const SEQUENCE_MASK: u64 = !VARIANT_MASK;

/// Half of a 62-bit sequence number, the unit the permutation works on.
const HALF_BITS: u32 = 31;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
/// Feistel rounds: four make a keyed permutation whose outputs look random.
const ROUNDS: u64 = 4;

/// A set of request ids that share one random prefix and one permutation
/// key, numbered from 1.
pub struct IdSpace {
    prefix: u64,
    next: AtomicU64,
    /// Keyed SipHash (random keys from the OS): the round function.
    key: RandomState,
}

impl IdSpace {
    /// A space with a fresh random prefix and key.
    pub fn new() -> IdSpace {
        IdSpace {
            prefix: (fastrand::u64(..) & !VERSION_MASK) | VERSION_4,
            next: AtomicU64::new(1),
            key: RandomState::new(),
        }
    }

    fn round(&self, round: u64, half: u64) -> u64 {
        self.key.hash_one((round, half)) & HALF_MASK
    }

    /// The 62-bit sequence number, permuted.
    fn permute(&self, sequence: u64) -> u64 {
        let (mut left, mut right) = ((sequence >> HALF_BITS) & HALF_MASK, sequence & HALF_MASK);
        for round in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(round, right));
        }
        (left << HALF_BITS) | right
    }

    /// The inverse of [`IdSpace::permute`].
    fn unpermute(&self, permuted: u64) -> u64 {
        let (mut left, mut right) = ((permuted >> HALF_BITS) & HALF_MASK, permuted & HALF_MASK);
        for round in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(round, left), left);
        }
        (left << HALF_BITS) | right
    }

    /// The next sequence number (never 0).
    pub fn next_sequence(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) & SEQUENCE_MASK
    }

    /// The id of `sequence` in this space, as a UUID's 128 bits.
    pub fn id(&self, sequence: u64) -> u128 {
        let lower = VARIANT_RFC4122 | self.permute(sequence & SEQUENCE_MASK);
        (u128::from(self.prefix) << 64) | u128::from(lower)
    }

    /// The id of `sequence` in this space, as UUID text.
    pub fn render(&self, sequence: u64) -> String {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::from_u128(self.id(sequence))
            .hyphenated()
            .encode_lower(&mut text)
            .to_string()
    }

    /// The sequence number of `id` (a UUID as a number) when it is an id of
    /// this space; None for any other UUID.
    pub fn sequence_of(&self, id: u128) -> Option<u64> {
        let (prefix, lower) = ((id >> 64) as u64, id as u64);
        (prefix == self.prefix && lower & VARIANT_MASK == VARIANT_RFC4122)
            .then(|| self.unpermute(lower & SEQUENCE_MASK))
    }
}

impl Default for IdSpace {
    fn default() -> IdSpace {
        IdSpace::new()
    }
}

/// A new id from the process's own space, for calls that no experiment
/// ledger numbers.
pub fn new_request_id() -> String {
    static PROCESS: LazyLock<IdSpace> = LazyLock::new(IdSpace::new);
    PROCESS.render(PROCESS.next_sequence())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_4_uuids_that_name_their_sequence_number() {
        let space = IdSpace::new();
        let first = space.next_sequence();
        assert_eq!(first, 1);
        let text = space.render(first);
        let id = uuid::Uuid::parse_str(&text).expect("a UUID");
        assert_eq!(text.len(), 36);
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(space.sequence_of(id.as_u128()), Some(1));
        assert_eq!(space.sequence_of(fastrand::u128(..)), None);
        let other = IdSpace::new();
        assert_eq!(other.sequence_of(id.as_u128()), None);
        assert_ne!(space.render(space.next_sequence()), text);
    }

    #[test]
    fn consecutive_ids_do_not_tell_each_other() {
        let space = IdSpace::new();
        let mut seen = std::collections::HashSet::new();
        let mut previous: Option<u64> = None;
        for _ in 0..10_000 {
            let sequence = space.next_sequence();
            let lower: u64 = space.id(sequence) as u64 & SEQUENCE_MASK;
            assert!(seen.insert(lower), "a permutation never repeats");
            assert_eq!(space.sequence_of(space.id(sequence)), Some(sequence));
            if let Some(previous) = previous {
                // Neighbouring sequence numbers land far apart.
                let changed = (lower ^ previous).count_ones();
                assert!(changed > 4, "{lower:x} after {previous:x}");
            }
            previous = Some(lower);
        }
        // Another space with the same numbers gives other ids.
        let other = IdSpace::new();
        assert_ne!(other.id(1) as u64, space.id(1) as u64);
    }

    #[test]
    fn process_ids_are_distinct() {
        let a = new_request_id();
        assert_ne!(a, new_request_id());
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
    }
}
