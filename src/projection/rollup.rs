//! Time-bucketed counts of the status view, so that stats over the whole store or over a time
//! range cost time independent of the number of messages: whole days and 10-minute slices come from
//! buckets, and only the messages of the (at most two) partial slices at the range's edges are
//! visited, which keeps the edges exact to the millisecond.
//!
//! The rollup is built on the first query that needs it (one pass over the messages), not
//! during replay, so opening a store costs no more; from then on every fold keeps it current
//! in O(1).

use crate::event::Channel;
use crate::message::Status;
use crate::projection::IdMap;
use crate::projection::names::NameId;
use crate::projection::status::MessageState;

/// Milliseconds in a slice, the finest bucket: ten minutes, so that the two edge scans of a
/// window visit few messages.
pub(crate) const SLICE_MS: i64 = 600_000;
/// Slices in a day, the coarse bucket.
const SLICES_PER_DAY: i64 = 144;
/// A message's kind: its status, and whether it has an action. Every stats counter is a sum
/// over kinds.
pub(crate) const KINDS: usize = Status::ALL.len() * 2;

/// The kind of a message in its current state.
pub(crate) fn kind_of(state: &MessageState) -> usize {
    state.status() as usize * 2 + usize::from(state.latest_action.is_some())
}

/// Messages per kind, and their cost, in one slot (one channel × message type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlotCounts {
    pub by_kind: [u64; KINDS],
    pub cost_micros: i128,
}

/// Counts per slot; slot = type ordinal × 4 + channel.
#[derive(Debug, Clone, Default)]
struct Bucket {
    slots: Vec<SlotCounts>,
}

impl Bucket {
    fn slot_mut(&mut self, slot: usize) -> &mut SlotCounts {
        if slot >= self.slots.len() {
            self.slots.resize(slot + 1, SlotCounts::default());
        }
        &mut self.slots[slot]
    }
}

/// An slice's counts, and its messages (indexes) for exact scans at a range's edges.
#[derive(Debug, Clone, Default)]
struct SliceBucket {
    counts: Bucket,
    messages: Vec<u32>,
}

/// Which slots a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotFilter {
    pub channel: Option<Channel>,
    pub message_type: Option<NameId>,
}

/// What a range query hands back: counts per slot to add, and messages to check one by one.
pub(crate) trait RangeVisitor {
    fn counts(&mut self, channel: Channel, message_type: NameId, counts: &SlotCounts);
    fn message(&mut self, index: u32);
}

#[derive(Debug, Default)]
pub(crate) struct Rollup {
    /// Message types in the order first seen; a slot's type is `types[slot / 4]`.
    types: Vec<NameId>,
    type_ordinals: IdMap<NameId, u32>,
    total: Bucket,
    days: IdMap<i64, Bucket>,
    slices: IdMap<i64, SliceBucket>,
    /// First and last slice holding a message.
    slice_range: Option<(i64, i64)>,
}

impl Rollup {
    /// Builds the rollup of `messages` (message id `n` at index `n - 1`).
    pub(crate) fn build(messages: &[MessageState]) -> Rollup {
        let mut rollup = Rollup::default();
        for (index, state) in messages.iter().enumerate() {
            rollup.add(
                u32::try_from(index).expect("fewer than 2^32 messages"),
                state,
            );
        }
        rollup
    }

    fn slot(&mut self, state: &MessageState) -> usize {
        let next_ordinal = self.types.len() as u32;
        let ordinal = *self
            .type_ordinals
            .entry(state.message_type)
            .or_insert(next_ordinal);
        if ordinal == next_ordinal {
            self.types.push(state.message_type);
        }
        ordinal as usize * Channel::ALL.len() + state.channel.index()
    }

    /// Counts a new message, in its current state.
    pub(crate) fn add(&mut self, index: u32, state: &MessageState) {
        let slot = self.slot(state);
        let kind = kind_of(state);
        let slice = state.sent_ms.div_euclid(SLICE_MS);
        let day = slice.div_euclid(SLICES_PER_DAY);
        self.slice_range = Some(self.slice_range.map_or((slice, slice), |(first, last)| {
            (first.min(slice), last.max(slice))
        }));
        let slice_bucket = self.slices.entry(slice).or_default();
        slice_bucket.messages.push(index);
        for bucket in [
            &mut self.total,
            self.days.entry(day).or_default(),
            &mut slice_bucket.counts,
        ] {
            let counts = bucket.slot_mut(slot);
            counts.by_kind[kind] += 1;
            counts.cost_micros += i128::from(state.cost_micros);
        }
    }

    /// Moves a message from `old_kind` to its current kind (a fold changed its state).
    pub(crate) fn change_kind(&mut self, state: &MessageState, old_kind: usize) {
        let new_kind = kind_of(state);
        if new_kind == old_kind {
            return;
        }
        let slot = self.slot(state);
        let slice = state.sent_ms.div_euclid(SLICE_MS);
        let day = slice.div_euclid(SLICES_PER_DAY);
        let slice_bucket = &mut self
            .slices
            .get_mut(&slice)
            .expect("the message's slice is counted")
            .counts;
        let day_bucket = self
            .days
            .get_mut(&day)
            .expect("the message's day is counted");
        for bucket in [&mut self.total, day_bucket, slice_bucket] {
            let counts = bucket.slot_mut(slot);
            counts.by_kind[old_kind] -= 1;
            counts.by_kind[new_kind] += 1;
        }
    }

    /// Hands `visitor` the counts of every message matching `filter` whose sent time is in
    /// `[start_ms, end_ms]`: whole buckets as counts, the messages of partial edge slices one by
    /// one (the visitor checks those against the filter itself).
    pub(crate) fn visit_range(
        &self,
        filter: SlotFilter,
        start_ms: i64,
        end_ms: i64,
        visitor: &mut dyn RangeVisitor,
    ) {
        if start_ms == i64::MIN && end_ms == i64::MAX {
            self.visit_bucket(&self.total, filter, visitor);
            return;
        }
        for part in decompose(self.slice_range, start_ms, end_ms) {
            match part {
                RangePart::EdgeSlice(slice) => {
                    for &index in self
                        .slices
                        .get(&slice)
                        .map_or(&[][..], |bucket| &bucket.messages)
                    {
                        visitor.message(index);
                    }
                }
                RangePart::Slices(first, last) => {
                    for slice in first..=last {
                        if let Some(bucket) = self.slices.get(&slice) {
                            self.visit_bucket(&bucket.counts, filter, visitor);
                        }
                    }
                }
                RangePart::Days(first, last) => {
                    for day in first..=last {
                        if let Some(bucket) = self.days.get(&day) {
                            self.visit_bucket(bucket, filter, visitor);
                        }
                    }
                }
            }
        }
    }

    fn visit_bucket(&self, bucket: &Bucket, filter: SlotFilter, visitor: &mut dyn RangeVisitor) {
        let channel_count = Channel::ALL.len();
        for (slot, counts) in bucket.slots.iter().enumerate() {
            let channel = Channel::ALL[slot % channel_count];
            let message_type = self.types[slot / channel_count];
            let selected = filter.channel.is_none_or(|wanted| wanted == channel)
                && filter
                    .message_type
                    .is_none_or(|wanted| wanted == message_type);
            if selected {
                visitor.counts(channel, message_type, counts);
            }
        }
    }
}

/// A piece of a time range: an slice only partly inside (its items are checked one by one), or
/// whole slices or days (`first..=last`) read from buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangePart {
    EdgeSlice(i64),
    Slices(i64, i64),
    Days(i64, i64),
}

/// Splits `[start_ms, end_ms]`, clamped to the slices holding items, into at most two edge
/// slices, whole slices at the two ends of whole days, and the whole days between.
fn decompose(slice_range: Option<(i64, i64)>, start_ms: i64, end_ms: i64) -> Vec<RangePart> {
    let mut parts = Vec::with_capacity(5);
    let Some((first_slice, last_slice)) = slice_range else {
        return parts;
    };
    // The bounds may be i64::MIN / MAX: clamp them to the slices holding items.
    let start_ms = start_ms.max(first_slice * SLICE_MS);
    let end_ms = end_ms.min((last_slice + 1) * SLICE_MS - 1);
    if start_ms > end_ms {
        return parts;
    }
    let start_slice = start_ms.div_euclid(SLICE_MS);
    let end_slice = end_ms.div_euclid(SLICE_MS);
    let starts_whole = start_ms == start_slice * SLICE_MS;
    let ends_whole = end_ms == (end_slice + 1) * SLICE_MS - 1;
    if start_slice == end_slice && !(starts_whole && ends_whole) {
        parts.push(RangePart::EdgeSlice(start_slice));
        return parts;
    }
    let mut first_whole = start_slice;
    if !starts_whole {
        parts.push(RangePart::EdgeSlice(start_slice));
        first_whole += 1;
    }
    let mut last_whole = end_slice;
    if !ends_whole {
        parts.push(RangePart::EdgeSlice(end_slice));
        last_whole -= 1;
    }
    if first_whole > last_whole {
        return parts;
    }
    let first_day = (first_whole + SLICES_PER_DAY - 1).div_euclid(SLICES_PER_DAY);
    let last_day = (last_whole + 1).div_euclid(SLICES_PER_DAY) - 1;
    if first_day > last_day {
        parts.push(RangePart::Slices(first_whole, last_whole));
        return parts;
    }
    if first_whole < first_day * SLICES_PER_DAY {
        parts.push(RangePart::Slices(
            first_whole,
            first_day * SLICES_PER_DAY - 1,
        ));
    }
    parts.push(RangePart::Days(first_day, last_day));
    if (last_day + 1) * SLICES_PER_DAY <= last_whole {
        parts.push(RangePart::Slices(
            (last_day + 1) * SLICES_PER_DAY,
            last_whole,
        ));
    }
    parts
}

/// Outcomes counted per slice and day, for the outcome fields of stats over all users.
#[derive(Debug, Default)]
pub(crate) struct OutcomeRollup {
    total: OutcomeCounts,
    days: IdMap<i64, OutcomeCounts>,
    slices: IdMap<i64, (OutcomeCounts, Vec<u32>)>,
    slice_range: Option<(i64, i64)>,
}

/// How many outcomes, and their exact sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutcomeCounts {
    pub count: u64,
    pub amount_micros: i128,
}

impl OutcomeCounts {
    fn add(&mut self, other: OutcomeCounts) {
        self.count += other.count;
        self.amount_micros += other.amount_micros;
    }
}

impl OutcomeRollup {
    pub(crate) fn build(outcomes: &[crate::projection::impact::OutcomeState]) -> OutcomeRollup {
        let mut rollup = OutcomeRollup::default();
        for (index, outcome) in outcomes.iter().enumerate() {
            let index = u32::try_from(index).expect("fewer than 2^32 outcomes");
            rollup.add(index, outcome.at_ms, outcome.amount_micros);
        }
        rollup
    }

    pub(crate) fn add(&mut self, index: u32, at_ms: i64, amount_micros: i64) {
        let one = OutcomeCounts {
            count: 1,
            amount_micros: i128::from(amount_micros),
        };
        let slice = at_ms.div_euclid(SLICE_MS);
        let day = slice.div_euclid(SLICES_PER_DAY);
        self.slice_range = Some(self.slice_range.map_or((slice, slice), |(first, last)| {
            (first.min(slice), last.max(slice))
        }));
        self.total.add(one);
        self.days.entry(day).or_default().add(one);
        let (counts, indexes) = self.slices.entry(slice).or_default();
        counts.add(one);
        indexes.push(index);
    }

    /// The outcomes whose time is in `[start_ms, end_ms]`; `outcome_at` gives an outcome's
    /// time and amount by index, for the edge slices.
    pub(crate) fn range(
        &self,
        start_ms: i64,
        end_ms: i64,
        outcome_at: impl Fn(u32) -> (i64, i64),
    ) -> OutcomeCounts {
        if start_ms == i64::MIN && end_ms == i64::MAX {
            return self.total;
        }
        let mut sum = OutcomeCounts::default();
        for part in decompose(self.slice_range, start_ms, end_ms) {
            match part {
                RangePart::EdgeSlice(slice) => {
                    for &index in self
                        .slices
                        .get(&slice)
                        .map_or(&[][..], |(_, indexes)| indexes)
                    {
                        let (at_ms, amount_micros) = outcome_at(index);
                        if start_ms <= at_ms && at_ms <= end_ms {
                            sum.add(OutcomeCounts {
                                count: 1,
                                amount_micros: i128::from(amount_micros),
                            });
                        }
                    }
                }
                RangePart::Slices(first, last) => {
                    for slice in first..=last {
                        if let Some((counts, _)) = self.slices.get(&slice) {
                            sum.add(*counts);
                        }
                    }
                }
                RangePart::Days(first, last) => {
                    for day in first..=last {
                        if let Some(counts) = self.days.get(&day) {
                            sum.add(*counts);
                        }
                    }
                }
            }
        }
        sum
    }
}
