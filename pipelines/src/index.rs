//! A fixed-capacity open-addressing map from a u32 key to a u32 slot, for per-stream state a worker looks
//! up once per packet: linear probing over a power-of-two table at most half full, keys hashed with a
//! randomly seeded ahash (crafted keys cannot aim at one bucket chain), deletion by backward shift (no
//! tombstones). Its point over a general map: the bucket of a key can be prefetched a pass ahead.
//!
//! Used two ways: with exact keys (dedupe: the key is the stream), and with a 32-bit tag of a longer key
//! (NAT: the tag is a hash of the 5-tuple, several entries may share it, and the caller checks the full
//! key stored at the slot through [`Index::find_at`]).

const EMPTY: u64 = u64::MAX;

pub struct Index {
    /// `key << 32 | slot`, or EMPTY (on huge pages when large).
    cells: crate::huge::HugeSlice<u64>,
    mask: usize,
    len: usize,
    cap: usize,
    /// None: keys are already random (hashes), used as they are.
    hasher: Option<ahash::RandomState>,
}

impl Index {
    /// Cells for `capacity` keys: a power of two, so that the table is never more than half full.
    fn cells(capacity: usize) -> usize {
        (capacity.max(1) * 2).next_power_of_two()
    }

    /// The bytes of the cells of an index with room for `capacity` keys.
    pub fn bytes(capacity: usize) -> u64 {
        Self::cells(capacity) as u64 * std::mem::size_of::<u64>() as u64
    }

    /// Room for `capacity` keys; the table is sized so it is never more than half full.
    pub fn with_capacity(capacity: usize) -> Index {
        let size = Self::cells(capacity);
        Index {
            cells: crate::huge::HugeSlice::filled(size, EMPTY),
            mask: size - 1,
            len: 0,
            cap: capacity.max(1),
            hasher: Some(ahash::RandomState::new()),
        }
    }

    /// Like [`Index::with_capacity`], for keys that are already outputs of a seeded hash (tags): the bucket
    /// is taken from the key's low bits without hashing it again.
    pub fn prehashed(capacity: usize) -> Index {
        Index {
            hasher: None,
            ..Index::with_capacity(capacity)
        }
    }

    /// The bytes of this index's cells ([`Index::bytes`] of its capacity).
    pub fn size_bytes(&self) -> u64 {
        self.cells.len() as u64 * std::mem::size_of::<u64>() as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first bucket to probe for `key`.
    #[inline(always)]
    pub fn bucket(&self, key: u32) -> usize {
        match &self.hasher {
            Some(h) => (h.hash_one(key) as usize) & self.mask,
            None => key as usize & self.mask,
        }
    }

    /// Hints the cache line of `bucket`.
    #[inline(always)]
    pub fn prefetch(&self, bucket: usize) {
        crate::prefetch::prefetch(self.cells.as_ptr().wrapping_add(bucket));
    }

    /// The slot of `key`, probing from `bucket` (which must be `self.bucket(key)`).
    #[inline]
    pub fn get_at(&self, key: u32, bucket: usize) -> Option<u32> {
        self.find_at(key, bucket, |_| true)
    }

    /// The first slot stored under `key` that `accept` takes, probing from `bucket` (`self.bucket(key)`).
    #[inline]
    pub fn find_at(&self, key: u32, bucket: usize, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = bucket;
        loop {
            let c = self.cells[i];
            if c == EMPTY {
                return None;
            }
            if (c >> 32) as u32 == key && accept(c as u32) {
                return Some(c as u32);
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub fn get(&self, key: u32) -> Option<u32> {
        self.get_at(key, self.bucket(key))
    }

    /// Adds `key` -> `slot` (the key must be absent). False when the index holds its capacity already.
    #[inline]
    pub fn insert_at(&mut self, key: u32, slot: u32, bucket: usize) -> bool {
        if self.len >= self.cap {
            return false;
        }
        let mut i = bucket;
        while self.cells[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.cells[i] = (key as u64) << 32 | slot as u64;
        self.len += 1;
        true
    }

    /// Removes `key`; later entries of its probe run move back so that lookups never stop early.
    pub fn remove(&mut self, key: u32) -> Option<u32> {
        self.remove_if(key, |_| true)
    }

    /// Removes the first entry under `key` whose slot `accept` takes (see [`Index::find_at`]).
    pub fn remove_if(&mut self, key: u32, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.bucket(key);
        loop {
            let c = self.cells[i];
            if c == EMPTY {
                return None;
            }
            if (c >> 32) as u32 == key && accept(c as u32) {
                break;
            }
            i = (i + 1) & self.mask;
        }
        let slot = self.cells[i] as u32;
        // Backward-shift deletion (Knuth, algorithm R): move each following entry whose home bucket is not
        // cyclically in (hole, its position] into the hole.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let c = self.cells[j];
            if c == EMPTY {
                break;
            }
            let home = self.bucket((c >> 32) as u32);
            let between = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !between {
                self.cells[hole] = c;
                hole = j;
            }
        }
        self.cells[hole] = EMPTY;
        self.len -= 1;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn bounded_and_basic() {
        let mut ix = Index::with_capacity(3);
        for k in 0..3 {
            assert!(ix.insert_at(k, k + 100, ix.bucket(k)));
        }
        assert!(!ix.insert_at(9, 9, ix.bucket(9)), "full at its capacity");
        assert_eq!(ix.get(1), Some(101));
        assert_eq!(ix.remove(1), Some(101));
        assert_eq!(ix.get(1), None);
        assert_eq!(ix.remove(1), None);
        assert!(ix.insert_at(9, 9, ix.bucket(9)));
        assert_eq!(
            (ix.get(0), ix.get(2), ix.get(9), ix.len()),
            (Some(100), Some(102), Some(9), 3)
        );
    }

    proptest! {
        /// Any sequence of inserts and removes behaves like a HashMap (small key space, so probe runs
        /// collide and wrap).
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..64), 0..400)) {
            let mut ix = Index::with_capacity(40);
            let mut m: HashMap<u32, u32> = HashMap::new();
            for (n, (insert, k)) in ops.into_iter().enumerate() {
                if insert {
                    if !m.contains_key(&k) && m.len() < 40 {
                        prop_assert!(ix.insert_at(k, n as u32, ix.bucket(k)));
                        m.insert(k, n as u32);
                    }
                } else {
                    prop_assert_eq!(ix.remove(k), m.remove(&k));
                }
                prop_assert_eq!(ix.len(), m.len());
            }
            for k in 0..64 {
                prop_assert_eq!(ix.get(k), m.get(&k).copied());
            }
        }
    }
}
