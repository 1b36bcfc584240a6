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

/// Places (indexes into a table's rows, filed in order: 0, 1, 2, ...) by id: read straight from
/// a list for ids below its length, else from a map. User ids are most often a database's keys,
/// small and dense: a look-up is then one read in a list of 4 bytes an id (4 MB for a million
/// users, most of it in the processor's cache) rather than a probe of a map of 16 bytes an
/// entry. The list grows to hold an id filed below [`Places::dense_bound`], so that it never
/// holds more than a few slots per id filed.
#[derive(Debug, Default)]
struct Places {
    /// Each id's place + 1 (0 for none), for ids below its length.
    dense: Vec<u32>,
    /// The places of ids past `dense`.
    sparse: IdMap<u64, u32>,
}

impl Places {
    /// Places for about `count` ids, those below about twice as many read from the list.
    fn for_ids(count: usize) -> Places {
        let mut places = Places::default();
        places.reserve(count);
        places
    }

    /// Makes the list hold the ids below about twice `count` places, as [`Places::for_ids`].
    fn reserve(&mut self, count: usize) {
        let len = Self::dense_bound(count.saturating_sub(1));
        if len > self.dense.len() {
            self.grow(len - 1);
        }
    }

    fn get(&self, id: u64) -> Option<usize> {
        match usize::try_from(id).ok().and_then(|at| self.dense.get(at)) {
            Some(&place) => place.checked_sub(1).map(|place| place as usize),
            None => self.sparse.get(&id).map(|&place| place as usize),
        }
    }

    /// Ids below which the list holds the place filed at `place`: twice the places filed
    /// with it, and 1,024 more.
    fn dense_bound(place: usize) -> usize {
        place
            .saturating_add(1)
            .saturating_mul(2)
            .saturating_add(1024)
    }

    /// Files `id` at `place`, unless it has a place already: false then.
    fn insert(&mut self, id: u64, place: usize) -> bool {
        let at = usize::try_from(id).ok();
        if let Some(at) = at
            && at >= self.dense.len()
            && at < Self::dense_bound(place)
        {
            self.grow(at);
        }
        let place = u32::try_from(place).expect("fewer than 2^32 places");
        match at.and_then(|at| self.dense.get_mut(at)) {
            Some(filed) => {
                let new = *filed == 0;
                if new {
                    *filed = place.checked_add(1).expect("fewer than 2^32 places");
                }
                new
            }
            None => match self.sparse.entry(id) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(vacant) => {
                    vacant.insert(place);
                    true
                }
            },
        }
    }

    /// Lengthens the list to hold id `at`, at least doubling it, and moves into it the ids of
    /// the map it now covers, so that an id below the list's length is in the list alone.
    #[cold]
    fn grow(&mut self, at: usize) {
        let len = (at + 1).max(self.dense.len() * 2);
        // A new list, taken zeroed from the OS: only the pages of ids met are ever touched.
        let mut dense = vec![0; len];
        dense[..self.dense.len()].copy_from_slice(&self.dense);
        self.dense = dense;
        let dense = &mut self.dense;
        self.sparse.retain(|&id, &mut place| {
            match usize::try_from(id).ok().filter(|&id| id < len) {
                Some(id) => {
                    dense[id] = place.checked_add(1).expect("fewer than 2^32 places");
                    false
                }
                None => true,
            }
        });
    }
}

/// Rows in the order their ids were filed, each found by id through [`Places`].
#[derive(Debug)]
pub(crate) struct RowsById<T> {
    places: Places,
    rows: Vec<T>,
}

impl<T> Default for RowsById<T> {
    fn default() -> RowsById<T> {
        RowsById {
            places: Places::default(),
            rows: Vec::new(),
        }
    }
}

impl<T> RowsById<T> {
    /// Room for about `count` rows ([`Places::for_ids`]).
    pub(crate) fn with_capacity(count: usize) -> RowsById<T> {
        RowsById {
            places: Places::for_ids(count),
            rows: Vec::with_capacity(count),
        }
    }

    /// Room for `additional` more rows.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.rows.reserve(additional);
        self.places.reserve(self.rows.len() + additional);
    }

    pub(crate) fn get(&self, id: u64) -> Option<&T> {
        Some(&self.rows[self.places.get(id)?])
    }

    /// Files `row` under `id`, unless `id` has a row already: false then (`row` is dropped).
    pub(crate) fn insert(&mut self, id: u64, row: T) -> bool {
        let new = self.places.insert(id, self.rows.len());
        if new {
            self.rows.push(row);
        }
        new
    }

    /// The row of `id` to change, filed from `make` if `id` has none, and whether it is new.
    pub(crate) fn get_or_insert_with(
        &mut self,
        id: u64,
        make: impl FnOnce() -> T,
    ) -> (&mut T, bool) {
        match self.places.get(id) {
            Some(place) => (&mut self.rows[place], false),
            None => {
                self.places.insert(id, self.rows.len());
                self.rows.push(make());
                (self.rows.last_mut().expect("pushed above"), true)
            }
        }
    }

    /// Every row, in the order filed.
    pub(crate) fn rows(&self) -> &[T] {
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_found_for_ids_in_the_list_and_past_it_and_filed_once() {
        let mut places = Places::for_ids(10);
        let ids = [0, 1, 7, 1043, 1044, 5_000, u64::MAX];
        for (place, &id) in ids.iter().enumerate() {
            assert_eq!(places.get(id), None);
            assert!(places.insert(id, place));
        }
        for (place, &id) in ids.iter().enumerate() {
            assert_eq!(places.get(id), Some(place));
            assert!(!places.insert(id, place + 1), "id {id} is filed once");
            assert_eq!(places.get(id), Some(place));
        }
        assert_eq!(places.get(2), None);
        assert_eq!(places.get(1045), None);
        assert_eq!(
            places.sparse.len(),
            3,
            "ids past the list's 1,044 are in the map"
        );
    }

    #[test]
    fn places_filed_from_none_grow_the_list_and_move_the_ids_it_comes_to_cover() {
        let mut places = Places::default();
        // 3,000 is past the bound at first (in the map), then below the list's length.
        let ids = [3_000, 5, 0, u64::MAX, 1_030, 2_047, 4_100];
        let mut filed = Vec::new();
        for (place, &id) in ids.iter().enumerate() {
            assert!(places.insert(id, place));
            filed.push((id, place));
            for &(id, place) in &filed {
                assert_eq!(places.get(id), Some(place), "id {id} after {filed:?}");
            }
        }
        // Dense ids from 1 up: the list doubles as they pass its end.
        for id in 1..2_100u64 {
            let place = ids.len() + id as usize;
            assert_eq!(places.insert(id, place), !ids.contains(&id), "id {id}");
        }
        assert_eq!(places.get(3_000), Some(0));
        assert_eq!(places.get(5), Some(1));
        assert_eq!(places.get(2_047), Some(5));
        assert_eq!(places.get(4_100), Some(6));
        assert_eq!(places.get(2_099), Some(ids.len() + 2_099));
        assert_eq!(places.get(3_001), None);
        assert!(
            places.dense.len() > 4_100,
            "the list grew to {}",
            places.dense.len()
        );
        let sparse: Vec<u64> = places.sparse.keys().copied().collect();
        assert_eq!(
            sparse,
            [u64::MAX],
            "ids below the list's length are in it alone"
        );
    }

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
