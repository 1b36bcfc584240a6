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
