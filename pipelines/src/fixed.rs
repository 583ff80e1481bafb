//! A map from u32 keys built once from configuration and only read afterwards (a relay's peers and next
//! hops): open addressing at most a quarter full, linear probing, a multiplicative hash of the key mixed
//! with a random per-map seed. Nothing is inserted at run time, so packet-chosen keys can only walk the
//! probe runs the configuration made, and the seed keeps those from being known in advance. One or two
//! cache lines per lookup, no hashing library on the path.

/// An immutable map from u32 to `V`.
#[derive(Debug, Clone)]
pub struct FixedMap<V: Copy> {
    cells: Vec<Option<(u32, V)>>,
    mask: usize,
    seed: u64,
}

impl<V: Copy> FixedMap<V> {
    /// The map of `entries`; a later entry with the same key replaces an earlier one.
    pub fn new(entries: impl IntoIterator<Item = (u32, V)>) -> FixedMap<V> {
        let entries: Vec<(u32, V)> = entries.into_iter().collect();
        let size = (entries.len() * 4).next_power_of_two().max(8);
        let seed = ahash::RandomState::new().hash_one(0x5eed_u64) | 1;
        let mut m = FixedMap {
            cells: vec![None; size],
            mask: size - 1,
            seed,
        };
        for (k, v) in entries {
            let mut i = m.home(k);
            loop {
                match &mut m.cells[i] {
                    Some((ck, cv)) if *ck == k => {
                        *cv = v;
                        break;
                    }
                    Some(_) => i = (i + 1) & m.mask,
                    c @ None => {
                        *c = Some((k, v));
                        break;
                    }
                }
            }
        }
        m
    }

    #[inline(always)]
    fn home(&self, k: u32) -> usize {
        let h = ((k as u64) ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize & self.mask
    }

    #[inline]
    pub fn get(&self, k: u32) -> Option<V> {
        let mut i = self.home(k);
        loop {
            match self.cells[i] {
                Some((ck, v)) if ck == k => return Some(v),
                Some(_) => i = (i + 1) & self.mask,
                None => return None,
            }
        }
    }

    #[inline]
    pub fn contains(&self, k: u32) -> bool {
        self.get(k).is_some()
    }

    pub fn len(&self) -> usize {
        self.cells.iter().filter(|c| c.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Same answers as a HashMap built from the same entries, for keys in it and keys not in it.
        #[test]
        fn answers_as_a_hashmap_does(entries in proptest::collection::vec((0u32..2000, any::<u16>()), 0..300),
                                     probes in proptest::collection::vec(0u32..4000, 0..300)) {
            let m = FixedMap::new(entries.iter().copied());
            let h: HashMap<u32, u16> = entries.iter().copied().collect();
            prop_assert_eq!(m.len(), h.len());
            for k in probes.iter().chain(h.keys()) {
                prop_assert_eq!(m.get(*k), h.get(k).copied());
            }
        }
    }

    #[test]
    fn empty_map_finds_nothing() {
        let m: FixedMap<()> = FixedMap::new([]);
        assert!(m.is_empty() && !m.contains(0) && !m.contains(u32::MAX));
    }
}
