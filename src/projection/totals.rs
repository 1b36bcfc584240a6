//! The totals over all time: every message's counts by message type and channel, its spend
//! by UTC day and channel, and every outcome's count and amount. A query without a user or a
//! time range reads these for its messages' counts (`selection.rs`: stats, channel
//! effectiveness without a period, impact; `cost.rs`: the cost report without a message
//! type), so that it needs no index over time for them (`rollup.rs`), whose load or build is
//! most of a first such query in a large store.
//!
//! Counted as a snapshot's records are checked when they are read on demand (`snapshot.rs`,
//! `Options::count_totals`), which reads every record anyway; otherwise by one pass over the
//! facts on the first such query, unless the rollup is built by then (its counts over all time
//! are the same, and it answers). From then on every fold keeps them current.

use std::collections::BTreeMap;

use crate::event::Channel;
use crate::projection::names::{NameId, NameTable};
use crate::projection::outcome::OutcomeState;
use crate::projection::rollup::{SlotCounts, SlotFilter, kind_of, kind_of_stages};
use crate::projection::status::{MessageState, STAGE_PATTERNS};

/// Milliseconds in a UTC day.
const DAY_MS: i64 = 86_400_000;

/// Messages and their cost in micro-dollars, by channel.
pub(crate) type Spend = [(u64, i128); Channel::ALL.len()];

/// No message on any channel.
const NO_SPEND: Spend = [(0, 0); Channel::ALL.len()];

/// The messages sent in each UTC day (key: ⌊sent ms / day⌋) and their cost, by channel.
#[derive(Debug, Default)]
pub(crate) struct DaySpend {
    days: BTreeMap<i64, Spend>,
}

impl DaySpend {
    #[inline]
    fn add(&mut self, state: &MessageState) {
        let spend = self
            .days
            .entry(state.sent_ms.div_euclid(DAY_MS))
            .or_insert(NO_SPEND);
        add_spend(&mut spend[state.channel.index()], 1, state.cost_micros);
    }

    /// Adds `spend` to `day`'s.
    fn add_day(&mut self, day: i64, spend: &Spend) {
        let mine = self.days.entry(day).or_insert(NO_SPEND);
        for (mine, theirs) in mine.iter_mut().zip(spend) {
            *mine = (mine.0 + theirs.0, mine.1 + theirs.1);
        }
    }

    fn join(&mut self, other: &DaySpend) {
        for (&day, spend) in &other.days {
            self.add_day(day, spend);
        }
    }

    /// Each day with messages, in order: its first millisecond and its spend.
    pub(crate) fn days(&self) -> impl Iterator<Item = (i64, &Spend)> {
        self.days.iter().map(|(&day, spend)| (day * DAY_MS, spend))
    }
}

#[inline]
fn add_spend(spend: &mut (u64, i128), messages: u64, cost_micros: i64) {
    spend.0 += messages;
    spend.1 += i128::from(cost_micros);
}

/// Every message's counts, by message type (name id) and channel, and its spend by day.
#[derive(Debug, Default)]
pub(crate) struct MessageTotals {
    by_type: NameTable<[SlotCounts; Channel::ALL.len()]>,
    by_day: DaySpend,
}

impl MessageTotals {
    /// Counts one more message, in its current state.
    #[inline]
    pub(crate) fn add_message(&mut self, state: &MessageState) {
        self.by_type.entry(state.message_type)[state.channel.index()].add_message(state);
        self.by_day.add(state);
    }

    /// The messages' spend by day.
    pub(crate) fn by_day(&self) -> &DaySpend {
        &self.by_day
    }

    /// Moves a message from `old_kind` to its current kind (a fold changed its state).
    pub(crate) fn change_kind(&mut self, state: &MessageState, old_kind: usize) {
        let new_kind = kind_of(state);
        if new_kind != old_kind {
            self.by_type.entry(state.message_type)[state.channel.index()]
                .change_kind(old_kind, new_kind);
        }
    }

    /// Hands `visit` the counts of each (channel, message type) that `filter` takes and that
    /// counts a message, once each.
    pub(crate) fn visit(
        &self,
        filter: SlotFilter,
        mut visit: impl FnMut(Channel, NameId, &SlotCounts),
    ) {
        for (message_type, channels) in self.by_type.iter() {
            for (channel, counts) in Channel::ALL.into_iter().zip(channels) {
                if filter.takes(channel, message_type) && !counts.is_empty() {
                    visit(channel, message_type, counts);
                }
            }
        }
    }
}

/// [`MessageTotals`] as a pass over many records counts them: by message type, channel and
/// stage bits (`MessageState::stage_bits`), which a record adds to without a branch on its
/// state; each count's kind is found once, at the end ([`ScannedTotals::totals`]).
#[derive(Debug)]
pub(crate) struct ScannedTotals {
    /// The types of the [`SCANNED_SMALL_IDS`] lowest ids (those interned first: most stores'
    /// message types), by id.
    small: Box<[[ByStages; Channel::ALL.len()]; SCANNED_SMALL_IDS]>,
    /// The other types.
    others: NameTable<[ByStages; Channel::ALL.len()]>,
    /// The spend of the days before `day` and after it, then of `day`, the day of the last
    /// message counted (its milliseconds, so that a message of the same day costs two
    /// comparisons): records come mostly in order of time, so most add to `day_spend`.
    by_day: DaySpend,
    day: std::ops::Range<i64>,
    day_spend: Spend,
}

/// Message types a [`ScannedTotals`] counts in place, by id.
const SCANNED_SMALL_IDS: usize = 16;

impl Default for ScannedTotals {
    fn default() -> ScannedTotals {
        ScannedTotals {
            small: Box::new([[ByStages::default(); Channel::ALL.len()]; SCANNED_SMALL_IDS]),
            others: NameTable::default(),
            by_day: DaySpend::default(),
            day: 0..0,
            day_spend: NO_SPEND,
        }
    }
}

/// The messages of one message type and channel, by stage bits, and their cost.
#[derive(Debug, Clone, Copy)]
struct ByStages {
    counts: [u32; STAGE_PATTERNS],
    cost_micros: i128,
}

impl Default for ByStages {
    fn default() -> ByStages {
        ByStages {
            counts: [0; STAGE_PATTERNS],
            cost_micros: 0,
        }
    }
}

impl ScannedTotals {
    /// Counts one more message, in its current state.
    #[inline]
    pub(crate) fn add_message(&mut self, state: &MessageState) {
        let by_stages = &mut self.line(state.message_type)[state.channel.index()];
        let count = &mut by_stages.counts[state.stage_bits()];
        *count = count.wrapping_add(1);
        by_stages.cost_micros = by_stages
            .cost_micros
            .wrapping_add(i128::from(state.cost_micros));
        if !self.day.contains(&state.sent_ms) {
            self.end_day();
            let first_ms = state.sent_ms.div_euclid(DAY_MS) * DAY_MS;
            self.day = first_ms..first_ms.saturating_add(DAY_MS);
        }
        add_spend(
            &mut self.day_spend[state.channel.index()],
            1,
            state.cost_micros,
        );
    }

    /// Files the current day's spend with the others'.
    fn end_day(&mut self) {
        if self.day_spend != NO_SPEND {
            let spend = std::mem::replace(&mut self.day_spend, NO_SPEND);
            self.by_day
                .add_day(self.day.start.div_euclid(DAY_MS), &spend);
        }
    }

    /// The counts of `message_type`, by channel.
    #[inline]
    fn line(&mut self, message_type: NameId) -> &mut [ByStages; Channel::ALL.len()] {
        match self.small.get_mut(message_type as usize) {
            Some(line) => line,
            None => self.others.entry(message_type),
        }
    }

    /// Every message type's counts by channel: the small ids', then the others'.
    fn lines(self) -> impl Iterator<Item = (NameId, [ByStages; Channel::ALL.len()])> {
        (0..).zip(*self.small).chain(self.others.entries())
    }

    /// Takes in the counts of other messages.
    pub(crate) fn join(&mut self, mut other: ScannedTotals) {
        other.end_day();
        self.by_day.join(&other.by_day);
        for (message_type, channels) in other.lines() {
            let mine = self.line(message_type);
            for (mine, theirs) in mine.iter_mut().zip(&channels) {
                for (count, their) in mine.counts.iter_mut().zip(theirs.counts) {
                    *count = count.wrapping_add(their);
                }
                mine.cost_micros = mine.cost_micros.wrapping_add(theirs.cost_micros);
            }
        }
    }

    /// The counts by kind.
    pub(crate) fn totals(mut self) -> MessageTotals {
        self.end_day();
        let mut totals = MessageTotals {
            by_day: std::mem::take(&mut self.by_day),
            ..MessageTotals::default()
        };
        for (message_type, channels) in self.lines() {
            if channels
                .iter()
                .all(|by_stages| by_stages.counts == [0; STAGE_PATTERNS])
            {
                continue;
            }
            let line = totals.by_type.entry(message_type);
            for (counts, by_stages) in line.iter_mut().zip(&channels) {
                for (bits, &count) in by_stages.counts.iter().enumerate() {
                    counts.add_kind(kind_of_stages(bits), count);
                }
                counts.add_cost(by_stages.cost_micros);
            }
        }
        totals
    }
}

/// The totals over all time.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    messages: MessageTotals,
    outcome_count: u64,
    outcome_micros: i128,
}

impl Totals {
    /// The totals of `messages` and `outcomes`, the messages counted as a scan counts them
    /// (by stage bits, the current day's spend aside).
    pub(crate) fn of<'a>(
        messages: impl IntoIterator<Item = &'a MessageState>,
        outcomes: &[OutcomeState],
    ) -> Totals {
        let mut scanned = ScannedTotals::default();
        for state in messages {
            scanned.add_message(state);
        }
        Totals::with_messages(scanned.totals(), outcomes)
    }

    /// The totals of messages already counted and of `outcomes`.
    pub(crate) fn with_messages(messages: MessageTotals, outcomes: &[OutcomeState]) -> Totals {
        let mut totals = Totals {
            messages,
            ..Totals::default()
        };
        for outcome in outcomes {
            totals.add_outcome(outcome);
        }
        totals
    }

    /// Every message's counts.
    pub(crate) fn messages(&self) -> &MessageTotals {
        &self.messages
    }

    /// Every message's counts, for the fold to keep current.
    pub(crate) fn messages_mut(&mut self) -> &mut MessageTotals {
        &mut self.messages
    }

    /// Counts one more outcome.
    pub(crate) fn add_outcome(&mut self, outcome: &OutcomeState) {
        self.outcome_count += 1;
        self.outcome_micros += i128::from(outcome.amount_micros);
    }

    /// How many outcomes there are, and their amounts' sum in micro-dollars.
    pub(crate) fn outcomes(&self) -> (u64, i128) {
        (self.outcome_count, self.outcome_micros)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::UserId;
    use crate::money::Money;
    use crate::projection::names::ActionKind;
    use crate::projection::selection::TypeFilter;

    /// Every (channel, type) with its counts.
    fn counted(totals: &MessageTotals) -> BTreeMap<(Channel, NameId), SlotCounts> {
        let mut counted = BTreeMap::new();
        let all = SlotFilter {
            channel: None,
            message_type: TypeFilter::Any,
        };
        totals.visit(all, |channel, message_type, counts| {
            assert!(counted.insert((channel, message_type), *counts).is_none());
        });
        counted
    }

    /// Records counted by stage bits in parts (types of low and high ids, every stage a fold
    /// makes), the parts joined, count as each record counted by its kind, and spend as much
    /// each day.
    #[test]
    fn totals_counted_by_stage_bits_in_parts_equal_those_counted_by_kind() {
        let mut random = crate::workload::SplitMix64::new(3);
        let mut next = |bound: u64| random.int(0, bound - 1);
        let states: Vec<MessageState> = (0..5_000)
            .map(|n| {
                let channel = Channel::ALL[next(4) as usize];
                let message_type = next(40) as NameId;
                let cost = Money::from_micros(i128::from(next(1_000)));
                // Hours apart, from before 1970 on: days before and after it, and parts
                // that share their first and last day.
                let sent_ms = (n - 1_000) * 3_600_000;
                let mut state = MessageState::new(UserId(1), channel, message_type, cost, sent_ms);
                for _ in 0..next(4) {
                    let at_ms = sent_ms + next(100) as i64;
                    match next(6) {
                        0 => state.fold_delivered(at_ms),
                        1 => state.fold_opened(at_ms),
                        2 => state.fold_action(7, ActionKind::Click, at_ms),
                        3 => state.fold_action(8, ActionKind::Upgrade, at_ms),
                        4 => state.fold_action(9, ActionKind::Other, at_ms),
                        _ => state.fold_failed(10, at_ms),
                    }
                }
                state
            })
            .collect();
        let mut by_kind = MessageTotals::default();
        for state in &states {
            by_kind.add_message(state);
        }
        let mut parts = states.chunks(1_700).map(|part| {
            let mut scanned = ScannedTotals::default();
            for state in part {
                scanned.add_message(state);
            }
            scanned
        });
        let mut joined = parts.next().unwrap();
        for part in parts {
            joined.join(part);
        }
        let expected = counted(&by_kind);
        assert!(expected.keys().any(|&(_, message_type)| message_type >= 16));
        let joined = joined.totals();
        assert_eq!(counted(&joined), expected);
        let days = |totals: &MessageTotals| -> Vec<(i64, Spend)> {
            totals
                .by_day()
                .days()
                .map(|(day, spend)| (day, *spend))
                .collect()
        };
        let expected_days = days(&by_kind);
        // Hour −1,000 lies in day −42 (1969-11-20), hour 3,999 in day 166.
        assert_eq!(expected_days.len(), 209);
        assert_eq!(expected_days[0].0, -42 * DAY_MS);
        assert_eq!(days(&joined), expected_days);
    }
}
