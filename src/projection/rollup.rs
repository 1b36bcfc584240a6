//! Time-bucketed counts of the status view, so that stats over the whole store or over a time
//! range cost time independent of the number of messages. A range is read as whole days, whole
//! hours at the two ends of those, whole 10-minute slices at the two ends of those, and the
//! messages of the (at most two) slices the range cuts, checked one by one, which keeps the
//! edges exact to the millisecond.
//!
//! The rollup is built on the first query that needs it (one pass over the messages), not
//! during replay, so opening a store costs no more; from then on every fold keeps it current
//! in O(1).

use crate::event::Channel;
use crate::message::Status;
use crate::projection::IdMap;
use crate::projection::impact::OutcomeState;
use crate::projection::names::NameId;
use crate::projection::status::MessageState;

/// Milliseconds in a slice, the finest bucket: ten minutes, so that the two edge scans of a
/// window visit few messages.
const SLICE_MS: i64 = 600_000;
/// How many buckets of each level make one of the next: 6 slices an hour, 24 hours a day.
const LEVEL_RATIOS: [i64; 2] = [6, 24];
/// Bucket levels: slices, hours, days.
const LEVELS: usize = 3;
/// A message's kind: its status, and whether it has an action. Every stats counter is a sum
/// over kinds.
pub(crate) const KINDS: usize = Status::ALL.len() * 2;

/// The kind of a message in its current state.
pub(crate) fn kind_of(state: &MessageState) -> usize {
    state.status() as usize * 2 + usize::from(state.latest_action().is_some())
}

/// The bucket of each level that `at_ms` falls in: slice, hour, day.
fn bucket_keys(at_ms: i64) -> [i64; LEVELS] {
    let slice = at_ms.div_euclid(SLICE_MS);
    let hour = slice.div_euclid(LEVEL_RATIOS[0]);
    [slice, hour, hour.div_euclid(LEVEL_RATIOS[1])]
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
    /// Buckets by key, per level (slices, hours, days).
    levels: [IdMap<i64, Bucket>; LEVELS],
    /// Each slice's messages (indexes), for the scans at a range's edges.
    slice_messages: IdMap<i64, Vec<u32>>,
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
        let keys = bucket_keys(state.sent_ms);
        self.slice_range = Some(widen(self.slice_range, keys[0]));
        self.slice_messages.entry(keys[0]).or_default().push(index);
        let add = |bucket: &mut Bucket| {
            let counts = bucket.slot_mut(slot);
            counts.by_kind[kind] += 1;
            counts.cost_micros += i128::from(state.cost_micros);
        };
        add(&mut self.total);
        for (level, key) in keys.into_iter().enumerate() {
            add(self.levels[level].entry(key).or_default());
        }
    }

    /// Moves a message from `old_kind` to its current kind (a fold changed its state).
    pub(crate) fn change_kind(&mut self, state: &MessageState, old_kind: usize) {
        let new_kind = kind_of(state);
        if new_kind == old_kind {
            return;
        }
        let slot = self.slot(state);
        let change = |bucket: &mut Bucket| {
            let counts = bucket.slot_mut(slot);
            counts.by_kind[old_kind] -= 1;
            counts.by_kind[new_kind] += 1;
        };
        change(&mut self.total);
        for (level, key) in bucket_keys(state.sent_ms).into_iter().enumerate() {
            change(
                self.levels[level]
                    .get_mut(&key)
                    .expect("the message's buckets are counted"),
            );
        }
    }

    /// Hands `visitor` the counts of every message matching `filter` whose sent time is in
    /// `[start_ms, end_ms]`: whole buckets as counts, the messages of the edge slices one by
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
                        .slice_messages
                        .get(&slice)
                        .map_or(&[][..], Vec::as_slice)
                    {
                        visitor.message(index);
                    }
                }
                RangePart::Whole { level, first, last } => {
                    for key in first..=last {
                        if let Some(bucket) = self.levels[level].get(&key) {
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

fn widen(range: Option<(i64, i64)>, key: i64) -> (i64, i64) {
    range.map_or((key, key), |(first, last)| (first.min(key), last.max(key)))
}

/// A piece of a time range: a slice only partly inside (its items are checked one by one), or
/// whole buckets `first..=last` of one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangePart {
    EdgeSlice(i64),
    Whole { level: usize, first: i64, last: i64 },
}

/// Splits `[start_ms, end_ms]`, clamped to the slices holding items, into at most two edge
/// slices and runs of whole buckets, taking each run at the coarsest level that fits.
fn decompose(slice_range: Option<(i64, i64)>, start_ms: i64, end_ms: i64) -> Vec<RangePart> {
    let mut parts = Vec::with_capacity(2 * LEVELS + 1);
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
    if first_whole <= last_whole {
        split_whole(first_whole, last_whole, 0, &mut parts);
    }
    parts
}

/// Buckets `first..=last` of `level` (non-empty): the middle at the next level up where whole
/// ones fit, the ends at this one.
fn split_whole(first: i64, last: i64, level: usize, parts: &mut Vec<RangePart>) {
    let Some(&ratio) = LEVEL_RATIOS.get(level) else {
        parts.push(RangePart::Whole { level, first, last });
        return;
    };
    let first_up = (first + ratio - 1).div_euclid(ratio);
    let last_up = (last + 1).div_euclid(ratio) - 1;
    if first_up > last_up {
        parts.push(RangePart::Whole { level, first, last });
        return;
    }
    if first < first_up * ratio {
        parts.push(RangePart::Whole {
            level,
            first,
            last: first_up * ratio - 1,
        });
    }
    split_whole(first_up, last_up, level + 1, parts);
    if (last_up + 1) * ratio <= last {
        parts.push(RangePart::Whole {
            level,
            first: (last_up + 1) * ratio,
            last,
        });
    }
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

/// Outcomes counted per slice, hour and day, for the outcome fields of stats over all users.
#[derive(Debug, Default)]
pub(crate) struct OutcomeRollup {
    total: OutcomeCounts,
    levels: [IdMap<i64, OutcomeCounts>; LEVELS],
    slice_outcomes: IdMap<i64, Vec<u32>>,
    slice_range: Option<(i64, i64)>,
}

impl OutcomeRollup {
    pub(crate) fn build(outcomes: &[OutcomeState]) -> OutcomeRollup {
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
        let keys = bucket_keys(at_ms);
        self.slice_range = Some(widen(self.slice_range, keys[0]));
        self.slice_outcomes.entry(keys[0]).or_default().push(index);
        self.total.add(one);
        for (level, key) in keys.into_iter().enumerate() {
            self.levels[level].entry(key).or_default().add(one);
        }
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
                        .slice_outcomes
                        .get(&slice)
                        .map_or(&[][..], Vec::as_slice)
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
                RangePart::Whole { level, first, last } => {
                    for key in first..=last {
                        if let Some(counts) = self.levels[level].get(&key) {
                            sum.add(*counts);
                        }
                    }
                }
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts of a range tile it exactly: every slice in it is covered once.
    #[test]
    fn a_range_is_split_into_parts_that_cover_each_slice_once() {
        let slice_range = Some((0, 10 * 144));
        for (start_ms, end_ms) in [
            (0, 3 * 86_400_000 - 1),
            (1, 86_400_000),
            (7 * SLICE_MS + 5, 600 * SLICE_MS + 3),
            (5, 7),
        ] {
            let mut covered = vec![0u32; 10 * 144 + 1];
            for part in decompose(slice_range, start_ms, end_ms) {
                let (first, last) = match part {
                    RangePart::EdgeSlice(slice) => (slice, slice),
                    RangePart::Whole { level, first, last } => {
                        let slices_per_bucket: i64 = LEVEL_RATIOS[..level].iter().product();
                        (
                            first * slices_per_bucket,
                            (last + 1) * slices_per_bucket - 1,
                        )
                    }
                };
                for slice in first..=last {
                    covered[slice as usize] += 1;
                }
            }
            let in_range =
                |slice: i64| slice * SLICE_MS <= end_ms && (slice + 1) * SLICE_MS > start_ms;
            for (slice, count) in covered.iter().enumerate() {
                assert_eq!(
                    *count,
                    u32::from(in_range(slice as i64)),
                    "slice {slice} of {start_ms}..={end_ms}"
                );
            }
        }
    }
}
