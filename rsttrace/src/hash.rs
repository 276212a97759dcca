//! Hashers for the event path's maps: one for keys that are one word
//! rsttrace makes itself, one for keys a peer can choose (addresses and
//! ports).

use std::hash::{BuildHasherDefault, Hasher};

/// For keys built from enums, bounded label ids, namespaces and ports:
/// MurmurHash3's finalizer over the words, so that the low bits a table
/// indexes by depend on all of them.  Unseeded, unlike SipHash: use it
/// only where nobody outside can choose many keys that collide (the
/// finalizer is a bijection on a word, so distinct one-word keys never
/// hash alike, and a key space of label ids or 65536 ports per namespace
/// leaves no room to pile keys on one bucket).
#[derive(Default)]
pub(crate) struct WordHasher(u64);

pub(crate) type BuildWordHasher = BuildHasherDefault<WordHasher>;

/// For keys a peer chooses (connections: addresses and ports): seeded at
/// random per map, so nobody outside can compute keys that collide, like
/// the standard SipHash, at a fraction of its cost.  Under a storm every
/// record goes through several of these maps; with SipHash, hashing and
/// probing took a fifth of the tracer's CPU.
pub(crate) type BuildSeededHasher = foldhash::quality::RandomState;

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = self.0.rotate_left(29) ^ word;
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn low_bits_depend_on_every_part_of_the_word() {
        let hash = |w: u64| BuildWordHasher::default().hash_one(w) & 0xffff;
        // Keys that differ only in their high bits (a namespace, a
        // direction) still spread over the table.
        let buckets: std::collections::HashSet<u64> = (0..1000u64).map(|i| hash(i << 32)).collect();
        assert!(buckets.len() > 900, "{}", buckets.len());
    }
}
