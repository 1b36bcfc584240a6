//! Interned names (message types, actions, outcomes): each stored once, referred to by index.

use std::sync::Arc;

use crate::event::is_click;
use crate::projection::id_map::IdMap;

/// Index of an interned name.
pub(crate) type NameId = u32;

#[derive(Debug, Default)]
pub(crate) struct Names {
    ids: IdMap<Box<str>, NameId>,
    /// Shared with the messages handed out, so listing messages allocates no names.
    names: Vec<Arc<str>>,
    clicks: Vec<bool>,
    upgrades: Vec<bool>,
}

impl Names {
    pub(crate) fn intern(&mut self, name: &str) -> NameId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = NameId::try_from(self.names.len()).expect("fewer than 2^32 distinct names");
        self.ids.insert(name.into(), id);
        self.names.push(name.into());
        self.clicks.push(is_click(name));
        self.upgrades.push(name.contains("upgrade"));
        id
    }

    pub(crate) fn get(&self, name: &str) -> Option<NameId> {
        self.ids.get(name).copied()
    }

    pub(crate) fn name(&self, id: NameId) -> &str {
        &self.names[id as usize]
    }

    /// The name, shared.
    pub(crate) fn shared(&self, id: NameId) -> Arc<str> {
        Arc::clone(&self.names[id as usize])
    }

    /// What an action of this name counts as: a click (contains "click"), a conversion
    /// (contains "upgrade"), both, or neither.
    pub(crate) fn action_kind(&self, id: NameId) -> ActionKind {
        match (self.clicks[id as usize], self.upgrades[id as usize]) {
            (false, false) => ActionKind::Other,
            (true, false) => ActionKind::Click,
            (false, true) => ActionKind::Upgrade,
            (true, true) => ActionKind::ClickAndUpgrade,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// Ids below this a [`NameTable`] finds by direct index (names interned early: the message
/// types and outcome names of most stores).
const SMALL_IDS: usize = 64;
/// Other ids a [`NameTable`] finds by a linear search while there are at most this many; past
/// them, by a hash map.
const LINEAR_NAMES_MAX: usize = 16;

/// Values by name id for the names one query meets, in the order met. A view breaks its answer
/// down by a handful of message types or outcome names: a small id is found by direct index,
/// another by a linear search while they are few and by a hash map past that. The table grows
/// with the names met, not with every name of the store (which holds each action, failure reason
/// and outcome name too, without limit).
#[derive(Debug)]
pub(crate) struct NameTable<T> {
    ids: Vec<NameId>,
    values: Vec<T>,
    /// Per id below [`SMALL_IDS`], its place plus one (0: not met).
    small: [u32; SMALL_IDS],
    /// The other ids met, with their places.
    others: Vec<(NameId, u32)>,
    /// The places of `others`, once there are more than [`LINEAR_NAMES_MAX`].
    places: IdMap<NameId, u32>,
}

impl<T> Default for NameTable<T> {
    fn default() -> NameTable<T> {
        NameTable {
            ids: Vec::new(),
            values: Vec::new(),
            small: [0; SMALL_IDS],
            others: Vec::new(),
            places: IdMap::default(),
        }
    }
}

impl<T: Default> NameTable<T> {
    /// The value of `id`, a default one if `id` is met for the first time.
    pub(crate) fn entry(&mut self, id: NameId) -> &mut T {
        let found = if (id as usize) < SMALL_IDS {
            self.small[id as usize].checked_sub(1)
        } else if self.places.is_empty() {
            self.others
                .iter()
                .find(|(own, _)| *own == id)
                .map(|&(_, place)| place)
        } else {
            self.places.get(&id).copied()
        };
        let place = match found {
            Some(place) => place as usize,
            None => self.insert(id),
        };
        &mut self.values[place]
    }

    /// Files `id`, met for the first time, with a default value; returns its place.
    fn insert(&mut self, id: NameId) -> usize {
        let place = self.ids.len();
        let stored = u32::try_from(place).expect("fewer than 2^32 names met");
        self.ids.push(id);
        self.values.push(T::default());
        if (id as usize) < SMALL_IDS {
            self.small[id as usize] = stored + 1;
        } else {
            self.others.push((id, stored));
            if !self.places.is_empty() {
                self.places.insert(id, stored);
            } else if self.others.len() > LINEAR_NAMES_MAX {
                self.places = self.others.iter().copied().collect();
            }
        }
        place
    }
}

impl<T> NameTable<T> {
    /// Every id met, with its value, in the order met.
    pub(crate) fn entries(self) -> impl Iterator<Item = (NameId, T)> {
        self.ids.into_iter().zip(self.values)
    }

    /// [`NameTable::entries`], borrowed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (NameId, &T)> {
        self.ids.iter().copied().zip(&self.values)
    }
}

/// What an action counts as, by its name: a click implies an open, an upgrade is a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActionKind {
    Other,
    Click,
    Upgrade,
    /// A name holding both "click" and "upgrade".
    ClickAndUpgrade,
}

impl ActionKind {
    pub(crate) fn is_click(self) -> bool {
        matches!(self, ActionKind::Click | ActionKind::ClickAndUpgrade)
    }

    pub(crate) fn is_upgrade(self) -> bool {
        matches!(self, ActionKind::Upgrade | ActionKind::ClickAndUpgrade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table keeps each id's value apart, in the order met, small ids and others, before and
    /// after it has met more ids than a linear search serves, and holds only the ids met however
    /// large they are.
    #[test]
    fn a_name_table_sums_by_id_in_the_order_met_across_its_switch_to_a_map() {
        let mut table: NameTable<u64> = NameTable::default();
        // Ids met out of order and again: small ones, and more others than a linear search
        // serves, far beyond them.
        let ids: Vec<NameId> = [3, 0, 63]
            .into_iter()
            .chain((1..40u32).map(|n| (n * 7919) % 1000 + n * 100_000))
            .chain([64, 1])
            .collect();
        for round in 1..=3u64 {
            for &id in &ids {
                *table.entry(id) += round;
            }
            if round == 1 {
                assert!(!table.places.is_empty(), "past the linear search");
            }
        }
        assert_eq!(table.values.len(), ids.len());
        let entries: Vec<(NameId, u64)> = table.entries().collect();
        assert_eq!(entries, ids.iter().map(|&id| (id, 6)).collect::<Vec<_>>());
    }
}
