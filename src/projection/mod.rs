//! Views folded from the events, and the queries they answer. Views never read the clock:
//! everything here is a function of the events folded so far, in log order.

pub(crate) mod attribution;
pub(crate) mod channel;
pub(crate) mod cost;
pub(crate) mod engagement;
pub(crate) mod impact;
pub(crate) mod names;
pub(crate) mod rollup;
pub(crate) mod status;
pub(crate) mod time_index;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};

use crate::event::{BudgetScope, Channel, Event, LoggedEvent, MessageId, Month, UserId};
use crate::message::{FinancialOutcome, Message, Status};
use crate::money::Money;
use crate::stats::{CommunicationStats, StatsFilter, divide_rounded, percent};
use attribution::{Credits, Touches};
use impact::OutcomeState;
use names::{NameId, Names};
use rollup::{Counts, MessageRollup, SlotFilter};
use status::MessageState;

/// Per user: (sent time, index) of each message and (time, index) of each outcome, both
/// sorted. The sent time sits beside the index, and the last key beside the list, so that
/// keeping the list sorted reads no other memory in the usual case (messages arriving in time
/// order).
#[derive(Debug)]
struct UserEntries {
    messages: Vec<(i64, u32)>,
    last_message: Option<(i64, u32)>,
    outcomes: Vec<(i64, u32)>,
    /// The latest outcome time, beside the list so that "none at or after t" (the usual
    /// answer while tracking) reads no other memory; `i64::MIN` without outcomes.
    latest_outcome_ms: i64,
}

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

/// Which messages a query takes: all parts optional but the sent-time range, in ms, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selection<'a> {
    pub user: Option<UserId>,
    pub message_type: Option<&'a str>,
    pub channel: Option<Channel>,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A filter's `[start, end]` in ms, inclusive; an open end is `i64::MIN` or `i64::MAX`.
pub(crate) fn range_ms(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> (i64, i64) {
    (
        start.map_or(i64::MIN, |start| start.timestamp_millis()),
        end.map_or(i64::MAX, |end| end.timestamp_millis()),
    )
}

impl<'a> Selection<'a> {
    /// The messages a stats filter selects.
    fn of(filter: &'a StatsFilter) -> Selection<'a> {
        let (start_ms, end_ms) = range_ms(filter.start, filter.end);
        Selection {
            user: filter.user,
            message_type: filter.message_type.as_deref(),
            channel: filter.channel,
            start_ms,
            end_ms,
        }
    }
}

/// A budget as the last `BudgetSet` for its scope and month set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BudgetState {
    pub amount_micros: i64,
    pub alert_percent: u8,
}

impl Default for UserEntries {
    fn default() -> UserEntries {
        UserEntries {
            messages: Vec::new(),
            last_message: None,
            outcomes: Vec::new(),
            latest_outcome_ms: i64::MIN,
        }
    }
}

impl UserEntries {
    /// Files a message in the user's list, kept sorted by (sent time, index); messages mostly
    /// arrive in time order, which `last_message` tells without reading the list.
    fn add_message(&mut self, sent_ms: i64, index: u32) {
        let key = (sent_ms, index);
        let in_order = self.last_message.is_none_or(|last| last < key);
        insert_sorted(&mut self.messages, key, in_order);
        if in_order {
            self.last_message = Some(key);
        }
    }

    /// Files an outcome in the user's list, kept sorted by (time, index).
    fn add_outcome(&mut self, at_ms: i64, index: u32) {
        self.latest_outcome_ms = self.latest_outcome_ms.max(at_ms);
        let key = (at_ms, index);
        let in_order = self.outcomes.last().is_none_or(|last| *last < key);
        insert_sorted(&mut self.outcomes, key, in_order);
    }
}

/// The entries of a sorted (time, index) list with a time in `[start_ms, end_ms]`; an
/// unbounded side (`i64::MIN` / `i64::MAX`) is not searched, which spares a whole-list query
/// the list's cache misses.
pub(crate) fn within(list: &[(i64, u32)], start_ms: i64, end_ms: i64) -> &[(i64, u32)] {
    let first = match start_ms {
        i64::MIN => 0,
        _ => list.partition_point(|(at_ms, _)| *at_ms < start_ms),
    };
    let last = match end_ms {
        i64::MAX => list.len(),
        _ => list.partition_point(|(at_ms, _)| *at_ms <= end_ms),
    };
    &list[first..last.max(first)]
}

/// Inserts `key` into the sorted `list`: at the end when `in_order` (it is after every key),
/// else where it belongs.
fn insert_sorted(list: &mut Vec<(i64, u32)>, key: (i64, u32), in_order: bool) {
    if in_order {
        list.push(key);
    } else {
        let position = list.partition_point(|other| *other < key);
        list.insert(position, key);
    }
}

/// The views: the facts folded from the events, and the indexes built over them on first use.
/// Readers see the facts through `Deref`; the fold writes them and keeps the built indexes
/// current.
#[derive(Debug)]
pub(crate) struct Projection {
    facts: Facts,
    /// Time-bucketed message counts for the views over all users; built on first use, then
    /// kept current.
    rollup: OnceLock<MessageRollup>,
    /// Each outcome's credit, and time-bucketed outcome sums; built on first use, then kept
    /// current.
    credits: OnceLock<Credits>,
}

/// Every message's and outcome's state, per-user indexes, names and budgets: what the events
/// say, with nothing derived for speed.
#[derive(Debug)]
pub(crate) struct Facts {
    /// Message id `n` lives at index `n - 1`.
    messages: Vec<MessageState>,
    outcomes: Vec<OutcomeState>,
    users: IdMap<u64, UserEntries>,
    names: Names,
    /// The latest own time of any tracking event (budgets excluded): the views' "now".
    latest_event_ms: Option<i64>,
    budgets: BTreeMap<(BudgetScope, Month), BudgetState>,
    /// How far back from an outcome a message may be credited with it.
    attribution_window_ms: i64,
    /// The message each external id names. Hashed with std's keyed SipHash, not `IdHasher`:
    /// external ids come from providers and callers, who could choose colliding keys.
    external_ids: HashMap<Arc<str>, MessageId>,
    /// The external id of each message sent with one, by message id: a side map, so that the
    /// messages without one (most) spend no memory on it.
    external_id_of: IdMap<u64, Arc<str>>,
}

impl std::ops::Deref for Projection {
    type Target = Facts;

    fn deref(&self) -> &Facts {
        &self.facts
    }
}

impl Projection {
    /// No events yet; outcomes are credited with `attribution_window_ms`.
    pub(crate) fn new(attribution_window_ms: i64) -> Projection {
        Projection {
            facts: Facts {
                messages: Vec::new(),
                outcomes: Vec::new(),
                users: IdMap::default(),
                names: Names::default(),
                latest_event_ms: None,
                budgets: BTreeMap::new(),
                attribution_window_ms,
                external_ids: HashMap::new(),
                external_id_of: IdMap::default(),
            },
            rollup: OnceLock::new(),
            credits: OnceLock::new(),
        }
    }

    /// Folds one event, in log order.
    pub(crate) fn fold(&mut self, logged: &LoggedEvent<'_>) {
        if !matches!(logged.event, Event::BudgetSet { .. }) {
            let at_ms = logged.event.at_ms();
            self.facts.latest_event_ms = Some(
                self.facts
                    .latest_event_ms
                    .map_or(at_ms, |latest| latest.max(at_ms)),
            );
        }
        match logged.event {
            Event::MessageSent {
                message_id,
                user_id,
                channel,
                message_type,
                cost,
                at_ms,
                external_id,
            } => {
                assert_eq!(
                    message_id.0,
                    self.facts.messages.len() as u64 + 1,
                    "message ids are dense"
                );
                if let Some(external_id) = external_id {
                    self.facts.add_external_id(external_id, message_id);
                }
                let index =
                    u32::try_from(self.facts.messages.len()).expect("fewer than 2^32 messages");
                let message_type = self.facts.names.intern(message_type);
                self.facts.messages.push(MessageState::new(
                    user_id,
                    channel,
                    message_type,
                    cost,
                    at_ms,
                ));
                self.facts
                    .users
                    .entry(user_id.0)
                    .or_default()
                    .add_message(at_ms, index);
                if let Some(rollup) = self.rollup.get_mut() {
                    rollup.add(&self.facts.messages, index);
                }
                if let Some(credits) = self.credits.get_mut() {
                    self.facts.credit_new_message(credits, user_id, at_ms);
                }
            }
            Event::MessageDelivered { message_id, at_ms } => {
                self.fold_message(message_id, |state| state.fold_delivered(at_ms))
            }
            Event::MessageOpened { message_id, at_ms } => {
                self.fold_message(message_id, |state| state.fold_opened(at_ms))
            }
            Event::UserAction {
                message_id,
                action,
                at_ms,
            } => {
                let action = self.facts.names.intern(action);
                let is_click = self.facts.names.is_click(action);
                let is_upgrade = self.facts.names.is_upgrade(action);
                self.fold_message(message_id, |state| {
                    state.fold_action(action, is_click, is_upgrade, at_ms)
                });
            }
            Event::MessageFailed {
                message_id,
                reason,
                at_ms,
            } => {
                let reason = self.facts.names.intern(reason);
                self.fold_message(message_id, |state| state.fold_failed(reason, at_ms));
            }
            Event::FinancialOutcome {
                user_id,
                outcome,
                amount,
                at_ms,
            } => {
                let index =
                    u32::try_from(self.facts.outcomes.len()).expect("fewer than 2^32 outcomes");
                let outcome = self.facts.names.intern(outcome);
                self.facts.outcomes.push(OutcomeState {
                    user_id: user_id.0,
                    at_ms,
                    amount_micros: amount.event_micros(),
                    outcome,
                });
                self.facts
                    .users
                    .entry(user_id.0)
                    .or_default()
                    .add_outcome(at_ms, index);
                if let Some(credits) = self.credits.get_mut() {
                    self.facts.credit_new_outcome(credits);
                }
            }
            Event::BudgetSet {
                scope,
                month,
                amount,
                alert_percent,
                ..
            } => {
                // A later budget for the same scope and month replaces the earlier one.
                let budget = BudgetState {
                    amount_micros: amount.event_micros(),
                    alert_percent,
                };
                self.facts.budgets.insert((scope, month), budget);
            }
        }
    }

    /// The interned names (message types, actions, outcomes).
    pub(crate) fn names(&self) -> &Names {
        &self.names
    }

    /// Every budget, by scope and month.
    pub(crate) fn budgets(&self) -> &BTreeMap<(BudgetScope, Month), BudgetState> {
        &self.budgets
    }

    /// The views' "now": the latest own time of any tracking event, or `end` if that is
    /// earlier; `None` before the first tracking event. Never the wall clock.
    pub(crate) fn now_ms(&self, end_ms: Option<i64>) -> Option<i64> {
        let latest = self.latest_event_ms?;
        Some(end_ms.map_or(latest, |end| end.min(latest)))
    }

    /// Applies `change` to a message's state, keeping the rollup and the credits (once built)
    /// current.
    fn fold_message(&mut self, id: MessageId, change: impl FnOnce(&mut MessageState)) {
        let index = id.0.checked_sub(1).expect("message ids start at 1") as usize;
        let state = &mut self.facts.messages[index];
        let old_touches = self.credits.get().map(|_| Touches::of(state));
        match self.rollup.get_mut() {
            Some(rollup) => {
                let old_kind = rollup::kind_of(state);
                change(state);
                rollup.change_kind(state, old_kind);
            }
            None => change(state),
        }
        if let Some(old_touches) = old_touches
            && let Some(credits) = self.credits.get_mut()
        {
            self.facts
                .credit_changed_message(credits, index as u32, old_touches);
        }
    }

    /// The first and last millisecond of the slices ([`SLICE_MS`](time_index::SLICE_MS)) holding the messages —
    /// only `user`'s with a user — if any.
    pub(crate) fn message_span(&self, user: Option<UserId>) -> Option<(i64, i64)> {
        match user {
            Some(user) => {
                let messages = self.user_messages(user);
                Some((messages.first()?.0, messages.last()?.0))
            }
            None => self.rollup().span_ms(),
        }
    }

    /// The message rollup, built on first use.
    fn rollup(&self) -> &MessageRollup {
        self.rollup
            .get_or_init(|| MessageRollup::build(&self.messages))
    }

    /// The outcome credits, built on first use.
    pub(crate) fn credits(&self) -> &Credits {
        self.credits.get_or_init(|| self.build_credits())
    }

    /// The message with this id, if tracked.
    pub(crate) fn message(&self, id: MessageId) -> Option<Message> {
        let index = usize::try_from(id.0.checked_sub(1)?).ok()?;
        Some(self.messages.get(index)?.to_message(id, &self.names))
    }

    /// The message an external id names, if any.
    pub(crate) fn message_id_of_external(&self, external_id: &str) -> Option<MessageId> {
        self.external_ids.get(external_id).copied()
    }

    /// The outcome at this index (in log order).
    pub(crate) fn outcome(&self, index: usize) -> Option<FinancialOutcome> {
        Some(self.outcomes.get(index)?.to_outcome(&self.names))
    }

    pub(crate) fn outcome_count(&self) -> usize {
        self.outcomes.len()
    }

    /// The user's messages, newest sent first (ties: higher id first), at most `limit`.
    pub(crate) fn history(&self, user: UserId, limit: usize) -> Vec<Message> {
        let Some(entries) = self.users.get(&user.0) else {
            return Vec::new();
        };
        let newest = entries.messages.iter().rev().take(limit);
        self.load_states(user, newest.clone());
        newest
            .map(|&(_, index)| {
                self.messages[index as usize]
                    .to_message(MessageId(u64::from(index) + 1), &self.names)
            })
            .collect()
    }

    /// Reads the states of `entries` (from `user`'s list) in one pass of independent loads,
    /// checking that each is the user's and names an interned type. The states lie far apart
    /// in a large store: this way their cache misses overlap, and the caller's pass, with more
    /// work between the reads, finds them in cache. A 56-byte record often spans two cache
    /// lines; the two checks read fields at its two ends, so both lines are fetched.
    fn load_states<'a>(&self, user: UserId, mut entries: impl Iterator<Item = &'a (i64, u32)>) {
        let names = self.names.len();
        assert!(
            entries.all(|&(_, index)| {
                let state = &self.messages[index as usize];
                state.user_id == user.0 && (state.message_type as usize) < names
            }),
            "a user's list holds only the user's messages, each of an interned type"
        );
    }

    /// Calls `visit` with the id and state of every message `filter` selects, in the order of
    /// the user's (sent time, id) index with a user filter, else in id order.
    fn for_each_selected(&self, filter: &StatsFilter, visit: impl FnMut(MessageId, &MessageState)) {
        self.for_each_in_selection(&Selection::of(filter), visit);
    }

    /// Calls `visit` with the id and state of every message `selection` takes, in the order of
    /// the user's (sent time, id) index with a user, else in id order.
    pub(crate) fn for_each_in_selection(
        &self,
        selection: &Selection<'_>,
        mut visit: impl FnMut(MessageId, &MessageState),
    ) {
        let Selection {
            user,
            message_type,
            channel,
            start_ms,
            end_ms,
        } = *selection;
        // A type never tracked selects no message.
        let type_filter = match message_type.map(|name| self.names.get(name)) {
            Some(None) => return,
            Some(Some(id)) => Some(id),
            None => None,
        };
        let mut visit_if_selected = |index: u32, state: &MessageState| {
            let selected = type_filter.is_none_or(|id| id == state.message_type)
                && channel.is_none_or(|channel| channel == state.channel)
                && start_ms <= state.sent_ms
                && state.sent_ms <= end_ms;
            if selected {
                visit(MessageId(u64::from(index) + 1), state);
            }
        };
        match user {
            Some(user) => {
                let Some(entries) = self.users.get(&user.0) else {
                    return;
                };
                // The user's list is sorted by sent time: only the window is visited.
                let window = within(&entries.messages, start_ms, end_ms);
                self.load_states(user, window.iter());
                for &(_, index) in window {
                    visit_if_selected(index, &self.messages[index as usize]);
                }
            }
            None => {
                for (index, state) in self.messages.iter().enumerate() {
                    visit_if_selected(index as u32, state);
                }
            }
        }
    }

    /// The messages `filter` selects, in id order.
    pub(crate) fn messages(&self, filter: &StatsFilter) -> Vec<Message> {
        let mut ids = Vec::new();
        self.for_each_selected(filter, |id, _| ids.push(id));
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| self.messages[id.0 as usize - 1].to_message(id, &self.names))
            .collect()
    }

    /// Hands `visit` the counts of the messages `selection` takes, by (channel, message
    /// type), a pair possibly more than once: with a user, message by message from the user's
    /// sorted list; else from the rollup's buckets.
    pub(crate) fn count_selection(
        &self,
        selection: &Selection<'_>,
        mut visit: impl FnMut(Channel, NameId, &Counts),
    ) {
        if selection.user.is_some() {
            self.for_each_in_selection(selection, |_, state| {
                visit(state.channel, state.message_type, &Counts::of(state))
            });
            return;
        }
        let message_type = match selection.message_type.map(|name| self.names.get(name)) {
            Some(None) => return, // a type never tracked selects no message
            Some(Some(id)) => Some(id),
            None => None,
        };
        let filter = SlotFilter {
            channel: selection.channel,
            message_type,
        };
        self.rollup().visit(
            &self.messages,
            filter,
            selection.start_ms,
            selection.end_ms,
            |channel, message_type, counts| visit(channel, message_type, &counts.counts()),
        );
    }

    /// Counts, rates and sums over the messages and outcomes `filter` selects
    /// (docs/SEMANTICS.md, "Stats").
    pub(crate) fn stats(&self, filter: &StatsFilter) -> CommunicationStats {
        let selection = Selection::of(filter);
        let (start_ms, end_ms) = (selection.start_ms, selection.end_ms);
        let mut tally = Tally::new(self.names.len());
        self.count_selection(&selection, |channel, message_type, counts| {
            tally.add(channel, message_type, counts)
        });
        let (outcome_count, impact_micros) = match filter.user {
            // A user's outcomes are few and sorted by time: visit them.
            Some(user) => self
                .user_outcomes_from(user, start_ms)
                .iter()
                .take_while(|(at_ms, _)| *at_ms <= end_ms)
                .fold((0, 0), |(count, micros), &(_, index)| {
                    let amount = self.outcomes[index as usize].amount_micros;
                    (count + 1, micros + i128::from(amount))
                }),
            None => {
                let totals = self.credits().totals(&self.outcomes, start_ms, end_ms);
                (totals.count, totals.amount_micros)
            }
        };
        tally.finish(&self.names, outcome_count, impact_micros)
    }
}

impl Facts {
    /// Files a send's external id. The tracking calls never write one twice; a log that holds
    /// it twice anyway (written by other code) keeps the first, as a repeat of the send would.
    fn add_external_id(&mut self, external_id: &str, message_id: MessageId) {
        if self.external_ids.contains_key(external_id) {
            return;
        }
        let external_id: Arc<str> = external_id.into();
        self.external_ids
            .insert(Arc::clone(&external_id), message_id);
        self.external_id_of.insert(message_id.0, external_id);
    }

    /// The external id the message was sent with, if any.
    pub(crate) fn external_id_of(&self, id: MessageId) -> Option<&str> {
        self.external_id_of
            .get(&id.0)
            .map(|external_id| &**external_id)
    }

    /// The sent time of the message with this id, if tracked.
    pub(crate) fn sent_ms(&self, id: MessageId) -> Option<i64> {
        let index = usize::try_from(id.0.checked_sub(1)?).ok()?;
        Some(self.messages.get(index)?.sent_ms)
    }

    /// Every message's state; message id `n` is at index `n - 1`.
    pub(crate) fn message_states(&self) -> &[MessageState] {
        &self.messages
    }

    /// The user's messages as (sent time, index), sorted by sent time then id.
    pub(crate) fn user_messages(&self, user: UserId) -> &[(i64, u32)] {
        self.users
            .get(&user.0)
            .map_or(&[], |entries| &entries.messages)
    }

    /// Every outcome, in log order.
    pub(crate) fn outcome_states(&self) -> &[OutcomeState] {
        &self.outcomes
    }
}

/// Running counts of the stats query.
struct Tally {
    counts: Counts,
    by_channel: [u64; Channel::ALL.len()],
    by_type: Vec<u64>,
}

impl Tally {
    fn new(name_count: usize) -> Tally {
        Tally {
            counts: Counts::default(),
            by_channel: [0; Channel::ALL.len()],
            by_type: vec![0; name_count],
        }
    }

    fn add(&mut self, channel: Channel, message_type: NameId, counts: &Counts) {
        self.counts.add(counts);
        self.by_channel[channel.index()] += counts.sent;
        self.by_type[message_type as usize] += counts.sent;
    }

    fn finish(self, names: &Names, outcome_count: u64, impact_micros: i128) -> CommunicationStats {
        // Names are allocated for the non-zero entries only.
        fn non_zero<'a>(pairs: impl Iterator<Item = (&'a str, u64)>) -> BTreeMap<String, u64> {
            pairs
                .filter(|(_, count)| *count > 0)
                .map(|(name, count)| (name.to_string(), count))
                .collect()
        }
        CommunicationStats {
            total_messages: self.counts.sent,
            delivered_count: self.counts.delivered,
            opened_count: self.counts.opened,
            clicked_count: self.counts.clicked,
            action_count: self.counts.responded,
            failed_count: self.counts.failed,
            delivery_rate: percent(self.counts.delivered, self.counts.sent),
            open_rate: percent(self.counts.opened, self.counts.delivered),
            click_rate: percent(self.counts.clicked, self.counts.opened),
            action_rate: percent(self.counts.responded, self.counts.delivered),
            total_cost: Money::from_micros(self.counts.cost_micros),
            avg_cost_per_message: Money::from_micros(divide_rounded(
                self.counts.cost_micros,
                self.counts.sent,
            )),
            status_breakdown: non_zero(
                Status::ALL
                    .iter()
                    .map(|s| (s.as_str(), self.counts.by_status[*s as usize])),
            ),
            channel_breakdown: non_zero(
                Channel::ALL
                    .iter()
                    .map(|c| (c.as_str(), self.by_channel[c.index()])),
            ),
            message_type_breakdown: non_zero(
                self.by_type
                    .iter()
                    .enumerate()
                    .map(|(id, count)| (names.name(id as u32), *count)),
            ),
            outcome_count,
            total_impact: Money::from_micros(impact_micros),
        }
    }
}
