//! The hash map keyed by ids that the views use.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hash for the user map: user ids are not attacker-chosen keys here, and
/// SipHash costs a third of replay.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.write_u64(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.write_u64(u64::from_le_bytes(last));
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Shards of a [`ShardedIdMap`].
const SHARDS: usize = 1 << SHARD_BITS;
const SHARD_BITS: u32 = 10;

/// An [`IdMap`] split by key into [`SHARDS`] maps, so that it grows one shard at a time: a
/// single map moves every entry when it grows, which for the millions of entries a capture can
/// keep while a large snapshot is written holds up the call that makes it grow for tens of
/// milliseconds; a shard holds a thousandth of them.
#[derive(Debug)]
pub(crate) struct ShardedIdMap<K, V> {
    shards: Box<[IdMap<K, V>]>,
}

impl<K, V> Default for ShardedIdMap<K, V> {
    fn default() -> ShardedIdMap<K, V> {
        ShardedIdMap {
            shards: (0..SHARDS).map(|_| IdMap::default()).collect(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash + Into<u64>, V> ShardedIdMap<K, V> {
    /// The shard of `key`: the top bits of a multiplicative hash other than the maps' own, so
    /// that the keys of one shard spread over its map's buckets.
    fn shard(key: K) -> usize {
        (key.into().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (u64::BITS - SHARD_BITS)) as usize
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.shards[Self::shard(*key)].get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.shards[Self::shard(*key)].get_mut(key)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.shards[Self::shard(key)].insert(key, value)
    }

    pub(crate) fn entry(&mut self, key: K) -> std::collections::hash_map::Entry<'_, K, V> {
        self.shards[Self::shard(key)].entry(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_map_finds_what_it_holds_and_spreads_keys_over_its_shards() {
        let mut map = ShardedIdMap::<u32, u32>::default();
        for key in 0..100_000u32 {
            assert_eq!(map.insert(key * 3, key), None);
        }
        *map.entry(6).or_insert(0) += 1;
        *map.get_mut(&9).expect("held") += 10;
        assert_eq!(map.get(&6), Some(&3));
        assert_eq!(map.get(&9), Some(&13));
        assert_eq!(map.get(&299_997), Some(&99_999));
        assert_eq!(map.get(&1), None);
        let largest = map.shards.iter().map(|shard| shard.len()).max().unwrap();
        assert!(largest < 2 * 100_000 / SHARDS, "largest shard {largest}");
    }
}
