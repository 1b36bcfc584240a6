//! Time-bucketed sums, so that the views over the whole store or over a time range cost time
//! independent of the number of messages. A range is read as whole days, whole quarter days
//! (6 hours) at the two ends of those, whole hours at the ends of those, whole 10-minute slices
//! at the ends of those, and the items of the (at most two) slices the range cuts, which keeps
//! the edges exact to the millisecond. Each slice keeps its items sorted by time, so a cut
//! slice is read as its bucket minus the items outside the range, or as the items inside it,
//! whichever are fewer; a slice of more than [`DENSE_SLICE`] messages also counts them per
//! minute, so that only one cut minute is read item by item.
//!
//! [`TimeBuckets`] is the machinery, for any kind of sum; [`MessageRollup`] keeps message
//! counts per channel × message type by sent time (stats, channel effectiveness, cost). The
//! outcome sums live in `attribution.rs`. Both are built on the first query that needs them
//! (one pass), not during replay, so opening a store costs no more; from then on every fold
//! keeps them current.

use std::ops::Range;

use crate::event::Channel;
use crate::message::Status;
use crate::projection::IdMap;
use crate::projection::names::NameId;
use crate::projection::status::MessageState;

/// Milliseconds in a slice, the finest bucket: ten minutes, so that the edge scans of a window
/// visit few items.
const SLICE_MS: i64 = 600_000;
/// How many buckets of each level make one of the next: 6 slices an hour, 6 hours a quarter
/// day, 4 quarters a day. A range unaligned at both ends reads at most 5 + 5 buckets of each
/// level below the day, and its whole days.
const LEVEL_RATIOS: [i64; 3] = [6, 6, 4];
/// Bucket levels: slices, hours, quarter days, days.
const LEVELS: usize = LEVEL_RATIOS.len() + 1;

/// The bucket of each level that `at_ms` falls in: slice, hour, quarter day, day.
fn bucket_keys(at_ms: i64) -> [i64; LEVELS] {
    let mut keys = [at_ms.div_euclid(SLICE_MS); LEVELS];
    for (level, ratio) in LEVEL_RATIOS.into_iter().enumerate() {
        keys[level + 1] = keys[level].div_euclid(ratio);
    }
    keys
}

/// Sums of type `B` over items (indexes) filed by a time: in total, and per slice, hour, quarter
/// day and day.
#[derive(Debug, Default)]
pub(crate) struct TimeBuckets<B> {
    total: B,
    /// Buckets by key, per level (slices, hours, quarter days, days).
    levels: [IdMap<i64, B>; LEVELS],
    /// Each slice's items, sorted by (time, index), for the scans at a range's edges.
    slice_items: IdMap<i64, Vec<u32>>,
    /// First and last slice holding an item.
    slice_range: Option<(i64, i64)>,
}

/// A piece of a range: a bucket wholly inside it, or a slice it cuts.
pub(crate) enum Piece<'a, B> {
    Whole(&'a B),
    Edge(EdgeSlice<'a, B>),
}

/// One slice a range cuts: its bucket, its items, and where those inside the range lie.
pub(crate) struct EdgeSlice<'a, B> {
    pub slice: i64,
    /// Every item of the slice, sorted by time: before, inside and after the range in a row.
    pub items: &'a [u32],
    pub bucket: &'a B,
    /// The range, `[start_ms, end_ms]`.
    pub range_ms: (i64, i64),
}

impl<B> EdgeSlice<'_, B> {
    /// Where the items inside the range lie in `items`; `time_of` gives an item's time.
    pub(crate) fn inside(&self, time_of: impl Fn(u32) -> i64) -> Range<usize> {
        let span_ms = (self.slice * SLICE_MS, (self.slice + 1) * SLICE_MS - 1);
        cut(self.items, span_ms, self.range_ms, time_of)
    }
}

/// How to read a cut slice or minute: the items inside the range, or its whole bucket less the
/// items before and after the range, whichever are fewer.
pub(crate) enum CutSide<'a> {
    Inside(&'a [u32]),
    WholeLess(&'a [u32], &'a [u32]),
}

impl CutSide<'_> {
    /// The smaller side of `items` (sorted) cut at `inside`.
    pub(crate) fn of(items: &[u32], inside: Range<usize>) -> CutSide<'_> {
        if inside.len() <= items.len() - inside.len() {
            CutSide::Inside(&items[inside])
        } else {
            CutSide::WholeLess(&items[..inside.start], &items[inside.end..])
        }
    }
}

/// Where the items with a time in `[start_ms, end_ms]` lie in `items`, which are sorted by
/// time and all fall in `span_ms`. Every probe reads an item's record, so a bound outside the
/// span is not searched, and a bound inside it is searched outward from where it would fall if
/// the items were spread evenly over the span: a few probes, on neighbouring records.
fn cut(
    items: &[u32],
    (span_first_ms, span_last_ms): (i64, i64),
    (start_ms, end_ms): (i64, i64),
    time_of: impl Fn(u32) -> i64,
) -> Range<usize> {
    let guess = |at_ms: i64| {
        let offset = i128::from(at_ms - span_first_ms);
        let span = i128::from(span_last_ms - span_first_ms) + 1;
        (offset * items.len() as i128 / span) as usize
    };
    let first = if start_ms <= span_first_ms {
        0
    } else {
        partition_point_near(items, guess(start_ms), |item| time_of(item) < start_ms)
    };
    let last = if end_ms >= span_last_ms {
        items.len()
    } else {
        partition_point_near(items, guess(end_ms), |item| time_of(item) <= end_ms)
    };
    first..last.max(first)
}

/// `items.partition_point(before)`, found by galloping outward from `guess` and then
/// bisecting the bracket: O(log d) probes for an answer d items from the guess.
fn partition_point_near(items: &[u32], guess: usize, before: impl Fn(u32) -> bool) -> usize {
    let guess = guess.min(items.len().saturating_sub(1));
    let bisect =
        |low: usize, high: usize| low + items[low..high].partition_point(|&item| before(item));
    if items.is_empty() {
        return 0;
    }
    let mut step = 1;
    if before(items[guess]) {
        // The answer is after `guess`: every item up to `low` is before.
        let mut low = guess + 1;
        loop {
            let probe = guess + step;
            if probe >= items.len() {
                return bisect(low, items.len());
            }
            if !before(items[probe]) {
                return bisect(low, probe);
            }
            low = probe + 1;
            step *= 2;
        }
    } else {
        // The answer is at or before `guess`: no item from `high` on is before.
        let mut high = guess;
        loop {
            let Some(probe) = guess.checked_sub(step) else {
                return bisect(0, high);
            };
            if before(items[probe]) {
                return bisect(probe + 1, high);
            }
            high = probe;
            step *= 2;
        }
    }
}

impl<B: Default> TimeBuckets<B> {
    /// Files item `index` at `at_ms` and applies `change` to every bucket it counts in;
    /// `time_of` gives the time of an item already filed (to keep the slice sorted).
    pub(crate) fn insert(
        &mut self,
        index: u32,
        at_ms: i64,
        time_of: impl Fn(u32) -> i64,
        mut change: impl FnMut(&mut B),
    ) {
        let keys = bucket_keys(at_ms);
        self.slice_range = Some(match self.slice_range {
            None => (keys[0], keys[0]),
            Some((first, last)) => (first.min(keys[0]), last.max(keys[0])),
        });
        let items = self.slice_items.entry(keys[0]).or_default();
        // Items mostly arrive in time order.
        let key = (at_ms, index);
        if items.last().is_none_or(|&last| (time_of(last), last) < key) {
            items.push(index);
        } else {
            let position = items.partition_point(|&other| (time_of(other), other) < key);
            items.insert(position, index);
        }
        change(&mut self.total);
        for (level, key) in keys.into_iter().enumerate() {
            change(self.levels[level].entry(key).or_default());
        }
    }

    /// Applies `change` to every bucket an item filed at `at_ms` counts in.
    pub(crate) fn update(&mut self, at_ms: i64, mut change: impl FnMut(&mut B)) {
        change(&mut self.total);
        for (level, key) in bucket_keys(at_ms).into_iter().enumerate() {
            change(
                self.levels[level]
                    .get_mut(&key)
                    .expect("the item's buckets exist"),
            );
        }
    }

    /// Hands `visit` every bucket lying wholly inside `[start_ms, end_ms]` and each slice the
    /// range cuts; together they cover every item filed in the range exactly once.
    pub(crate) fn visit(&self, start_ms: i64, end_ms: i64, mut visit: impl FnMut(Piece<'_, B>)) {
        if start_ms == i64::MIN && end_ms == i64::MAX {
            visit(Piece::Whole(&self.total));
            return;
        }
        for part in decompose(self.slice_range, start_ms, end_ms) {
            match part {
                RangePart::EdgeSlice(slice) => {
                    let (Some(items), Some(bucket)) =
                        (self.slice_items.get(&slice), self.levels[0].get(&slice))
                    else {
                        continue;
                    };
                    visit(Piece::Edge(EdgeSlice {
                        slice,
                        items,
                        bucket,
                        range_ms: (start_ms, end_ms),
                    }));
                }
                RangePart::Whole { level, first, last } => {
                    for key in first..=last {
                        if let Some(bucket) = self.levels[level].get(&key) {
                            visit(Piece::Whole(bucket));
                        }
                    }
                }
            }
        }
    }

    /// The items of `slice`, sorted by time.
    fn slice_items(&self, slice: i64) -> &[u32] {
        self.slice_items.get(&slice).map_or(&[], Vec::as_slice)
    }

    /// The first and last millisecond of the slices holding items, if any.
    pub(crate) fn span_ms(&self) -> Option<(i64, i64)> {
        self.slice_range
            .map(|(first, last)| (first * SLICE_MS, (last + 1) * SLICE_MS - 1))
    }
}

/// Messages by kind, and their cost: the sums of one slot (one channel × message type), 64
/// bytes. Counts fit in `u32` because a store holds fewer than 2^32 messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlotCounts {
    by_kind: [u32; KINDS.len()],
    cost_micros: i128,
}

/// The kinds a message can be in: its status, and whether it has no action (0), an action (1)
/// or an upgrade action (2). Every count of the views is a sum over kinds. An action implies
/// delivery and a click is an action, so a sent or failed message has none and a clicked one
/// has one: 10 of the 15 pairs.
const KINDS: [(Status, u8); 10] = [
    (Status::Sent, 0),
    (Status::Failed, 0),
    (Status::Delivered, 0),
    (Status::Delivered, 1),
    (Status::Delivered, 2),
    (Status::Opened, 0),
    (Status::Opened, 1),
    (Status::Opened, 2),
    (Status::Clicked, 1),
    (Status::Clicked, 2),
];

/// The kind of a message in its current state: its index in [`KINDS`].
pub(crate) fn kind_of(state: &MessageState) -> usize {
    match state.status_and_action() {
        (Status::Sent, 0) => 0,
        (Status::Failed, 0) => 1,
        (Status::Delivered, action) => 2 + usize::from(action),
        (Status::Opened, action) => 5 + usize::from(action),
        (Status::Clicked, action @ 1..) => 7 + usize::from(action),
        (status, action) => {
            unreachable!("a message with status {status} has action level {action}")
        }
    }
}

/// The counts the views read, summed over messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub sent: u64,
    /// Delivered or further.
    pub delivered: u64,
    /// Opened or clicked.
    pub opened: u64,
    pub clicked: u64,
    pub failed: u64,
    /// With any action.
    pub responded: u64,
    /// With an action whose name contains "upgrade".
    pub converted: u64,
    pub by_status: [u64; Status::ALL.len()],
    pub cost_micros: i128,
}

impl Counts {
    /// One message, in its current state: the rules of [`SlotCounts::counts`] for one kind,
    /// written out because a user's queries count message by message (the rollup's unit test
    /// checks the two against each other).
    pub(crate) fn of(state: &MessageState) -> Counts {
        let status = state.status();
        let mut by_status = [0; Status::ALL.len()];
        by_status[status as usize] = 1;
        Counts {
            sent: 1,
            delivered: u64::from(state.delivered.is_some()),
            opened: u64::from(state.opened.is_some()),
            clicked: u64::from(status == Status::Clicked),
            failed: u64::from(status == Status::Failed),
            responded: u64::from(state.has_action()),
            converted: u64::from(state.converted()),
            by_status,
            cost_micros: i128::from(state.cost_micros),
        }
    }

    pub(crate) fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.opened += other.opened;
        self.clicked += other.clicked;
        self.failed += other.failed;
        self.responded += other.responded;
        self.converted += other.converted;
        for (mine, theirs) in self.by_status.iter_mut().zip(other.by_status) {
            *mine += theirs;
        }
        self.cost_micros += other.cost_micros;
    }
}

impl SlotCounts {
    /// No message (a slot can be empty: slots are allocated in order, and a cut slice's
    /// counts can fall to zero).
    fn is_empty(&self) -> bool {
        self.by_kind.iter().all(|&count| count == 0)
    }

    /// Counts one more message, in its current state.
    pub(crate) fn add_message(&mut self, state: &MessageState) {
        self.by_kind[kind_of(state)] += 1;
        self.cost_micros += i128::from(state.cost_micros);
    }

    /// Counts one message fewer, in its current state.
    fn subtract_message(&mut self, state: &MessageState) {
        self.by_kind[kind_of(state)] -= 1;
        self.cost_micros -= i128::from(state.cost_micros);
    }

    fn add(&mut self, other: &SlotCounts) {
        for (mine, theirs) in self.by_kind.iter_mut().zip(other.by_kind) {
            *mine += theirs;
        }
        self.cost_micros += other.cost_micros;
    }

    /// Takes away `other`, which these counts include.
    fn subtract(&mut self, other: &SlotCounts) {
        for (mine, theirs) in self.by_kind.iter_mut().zip(other.by_kind) {
            *mine -= theirs;
        }
        self.cost_micros -= other.cost_micros;
    }

    /// The views' counts of these messages.
    pub(crate) fn counts(&self) -> Counts {
        let mut counts = Counts {
            cost_micros: self.cost_micros,
            ..Counts::default()
        };
        for (&(status, action), &count) in KINDS.iter().zip(&self.by_kind) {
            if count == 0 {
                continue;
            }
            let count = u64::from(count);
            counts.sent += count;
            counts.by_status[status as usize] += count;
            if matches!(status, Status::Delivered | Status::Opened | Status::Clicked) {
                counts.delivered += count;
            }
            if matches!(status, Status::Opened | Status::Clicked) {
                counts.opened += count;
            }
            if status == Status::Clicked {
                counts.clicked += count;
            }
            if status == Status::Failed {
                counts.failed += count;
            }
            if action >= 1 {
                counts.responded += count;
            }
            if action == 2 {
                counts.converted += count;
            }
        }
        counts
    }
}

/// Counts per slot; slot = type ordinal × 4 + channel. Each slot is one cache line, so a query
/// reads one line per slot it takes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bucket {
    slots: Vec<Line>,
}

/// A slot's counts, aligned to a cache line (buckets are allocated once, so the aligned
/// allocation costs nothing at query time).
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Line(SlotCounts);

impl Bucket {
    fn slot(&self, slot: usize) -> Option<&SlotCounts> {
        self.slots.get(slot).map(|line| &line.0)
    }

    fn slot_mut(&mut self, slot: usize) -> &mut SlotCounts {
        if slot >= self.slots.len() {
            self.slots.resize(slot + 1, Line::default());
        }
        &mut self.slots[slot].0
    }
}

/// A query's running sums over the slots its filter takes.
struct TakenSums {
    /// The slots taken, in order.
    slots: Vec<usize>,
    /// Each slot's place in `slots` and `sums`, or `None` when not taken.
    places: Vec<Option<u32>>,
    sums: Vec<SlotCounts>,
}

impl TakenSums {
    /// Zero sums over the slots `takes` (by slot number, of `slot_count`).
    fn new(slot_count: usize, takes: impl Fn(usize) -> bool) -> TakenSums {
        let slots: Vec<usize> = (0..slot_count).filter(|&slot| takes(slot)).collect();
        let mut places = vec![None; slot_count];
        for (place, &slot) in slots.iter().enumerate() {
            places[slot] = Some(place as u32);
        }
        TakenSums {
            sums: vec![SlotCounts::default(); slots.len()],
            slots,
            places,
        }
    }

    /// Adds the taken slots of `bucket`.
    fn add_bucket(&mut self, bucket: &Bucket) {
        for (sum, &slot) in self.sums.iter_mut().zip(&self.slots) {
            if let Some(counts) = bucket.slot(slot) {
                sum.add(counts);
            }
        }
    }

    /// Takes away the taken slots of `bucket`, which the sums include.
    fn subtract_bucket(&mut self, bucket: &Bucket) {
        for (sum, &slot) in self.sums.iter_mut().zip(&self.slots) {
            if let Some(counts) = bucket.slot(slot) {
                sum.subtract(counts);
            }
        }
    }

    /// The sums of `slot`, if taken.
    fn sum_mut(&mut self, slot: usize) -> Option<&mut SlotCounts> {
        let place = self.places.get(slot).copied().flatten()?;
        Some(&mut self.sums[place as usize])
    }
}

/// Which slots a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotFilter {
    pub channel: Option<Channel>,
    pub message_type: Option<NameId>,
}

impl SlotFilter {
    fn takes(self, channel: Channel, message_type: NameId) -> bool {
        self.channel.is_none_or(|wanted| wanted == channel)
            && self
                .message_type
                .is_none_or(|wanted| wanted == message_type)
    }
}

/// Messages in a slice past which each of its minutes gets a bucket of its own, so that a range
/// cutting a busy slice reads whole minutes and the messages of one cut minute. Quiet slices
/// (the reference workload has about 230 messages in one at 1 M) pay nothing for it.
const DENSE_SLICE: usize = 1024;
/// Milliseconds in a minute, the buckets inside a dense slice.
const MINUTE_MS: i64 = 60_000;
/// Minutes in a slice.
const MINUTES: usize = (SLICE_MS / MINUTE_MS) as usize;

/// The minute of its slice that `at_ms` falls in.
fn minute_of(at_ms: i64) -> usize {
    (at_ms.rem_euclid(SLICE_MS) / MINUTE_MS) as usize
}

/// The minutes of a dense slice: a bucket each, and where each minute's messages start in the
/// slice's sorted items (`starts[m]..starts[m + 1]`), so a cut minute is found without a search.
#[derive(Debug, Clone)]
struct DenseSlice {
    buckets: Vec<Bucket>,
    starts: [u32; MINUTES + 1],
}

impl DenseSlice {
    /// Minute buckets and starts of `items` (a slice's, sorted by time).
    fn of(
        items: &[u32],
        messages: &[MessageState],
        slot_of: impl Fn(&MessageState) -> usize,
    ) -> DenseSlice {
        let mut dense = DenseSlice {
            buckets: vec![Bucket::default(); MINUTES],
            starts: [0; MINUTES + 1],
        };
        for &item in items {
            let state = &messages[item as usize];
            let minute = minute_of(state.sent_ms);
            dense.buckets[minute]
                .slot_mut(slot_of(state))
                .add_message(state);
            dense.starts[minute + 1] += 1;
        }
        for minute in 0..MINUTES {
            dense.starts[minute + 1] += dense.starts[minute];
        }
        dense
    }

    /// A message of `minute` was filed: later minutes start one item later.
    fn insert(&mut self, minute: usize, slot: usize, state: &MessageState) {
        self.buckets[minute].slot_mut(slot).add_message(state);
        for start in &mut self.starts[minute + 1..] {
            *start += 1;
        }
    }
}

/// Message counts per channel × message type, by sent time.
#[derive(Debug)]
pub(crate) struct MessageRollup {
    /// Message types in the order first seen; a slot's type is `types[slot / 4]`.
    types: Vec<NameId>,
    /// Each type's ordinal, by name id (`u32::MAX` for names that are no message type).
    type_ordinals: Vec<u32>,
    buckets: TimeBuckets<Bucket>,
    /// Per slice holding more than `dense_slice` messages, a bucket per minute.
    minutes: IdMap<i64, DenseSlice>,
    dense_slice: usize,
}

impl MessageRollup {
    fn with_dense_slice(dense_slice: usize) -> MessageRollup {
        MessageRollup {
            types: Vec::new(),
            type_ordinals: Vec::new(),
            buckets: TimeBuckets::default(),
            minutes: IdMap::default(),
            dense_slice,
        }
    }

    /// Builds the rollup of `messages` (message id `n` at index `n - 1`).
    pub(crate) fn build(messages: &[MessageState]) -> MessageRollup {
        MessageRollup::build_with(messages, DENSE_SLICE)
    }

    fn build_with(messages: &[MessageState], dense_slice: usize) -> MessageRollup {
        let mut rollup = MessageRollup::with_dense_slice(dense_slice);
        for index in 0..messages.len() {
            rollup.add(
                messages,
                u32::try_from(index).expect("fewer than 2^32 messages"),
            );
        }
        rollup
    }

    fn slot(&mut self, state: &MessageState) -> usize {
        let name = state.message_type as usize;
        if name >= self.type_ordinals.len() {
            self.type_ordinals.resize(name + 1, u32::MAX);
        }
        if self.type_ordinals[name] == u32::MAX {
            self.type_ordinals[name] = self.types.len() as u32;
            self.types.push(state.message_type);
        }
        self.slot_of(state)
    }

    /// Counts the new message at `index` of `messages`, in its current state.
    pub(crate) fn add(&mut self, messages: &[MessageState], index: u32) {
        let state = &messages[index as usize];
        let slot = self.slot(state);
        let time_of = |other: u32| messages[other as usize].sent_ms;
        self.buckets
            .insert(index, state.sent_ms, time_of, |bucket| {
                bucket.slot_mut(slot).add_message(state)
            });
        let slice = state.sent_ms.div_euclid(SLICE_MS);
        if let Some(dense) = self.minutes.get_mut(&slice) {
            dense.insert(minute_of(state.sent_ms), slot, state);
        } else {
            let items = self.buckets.slice_items(slice);
            if items.len() > self.dense_slice {
                // The slice just became dense: count its messages (this one too) per minute.
                let dense = DenseSlice::of(items, messages, |other| self.slot_of(other));
                self.minutes.insert(slice, dense);
            }
        }
    }

    /// Moves a message from `old_kind` to its current kind (a fold changed its state).
    pub(crate) fn change_kind(&mut self, state: &MessageState, old_kind: usize) {
        let new_kind = kind_of(state);
        if new_kind == old_kind {
            return;
        }
        let slot = self.slot_of(state);
        let change = |bucket: &mut Bucket| {
            let counts = bucket.slot_mut(slot);
            counts.by_kind[old_kind] -= 1;
            counts.by_kind[new_kind] += 1;
        };
        self.buckets.update(state.sent_ms, change);
        if let Some(dense) = self.minutes.get_mut(&state.sent_ms.div_euclid(SLICE_MS)) {
            change(&mut dense.buckets[minute_of(state.sent_ms)]);
        }
    }

    /// The first and last millisecond of the slices holding messages, if any.
    pub(crate) fn span_ms(&self) -> Option<(i64, i64)> {
        self.buckets.span_ms()
    }

    /// Hands `visit` the counts of the messages `filter` takes with a sent time in
    /// `[start_ms, end_ms]`, slot by slot: (channel, message type, counts).
    pub(crate) fn visit(
        &self,
        messages: &[MessageState],
        filter: SlotFilter,
        start_ms: i64,
        end_ms: i64,
        mut visit: impl FnMut(Channel, NameId, &SlotCounts),
    ) {
        let time_of = |index: u32| messages[index as usize].sent_ms;
        let channel_count = Channel::ALL.len();
        // Sums per taken slot over every piece, then one call per slot.
        let mut sums = TakenSums::new(self.types.len() * channel_count, |slot| {
            filter.takes(
                Channel::ALL[slot % channel_count],
                self.types[slot / channel_count],
            )
        });
        self.buckets.visit(start_ms, end_ms, |piece| match piece {
            Piece::Whole(bucket) => sums.add_bucket(bucket),
            Piece::Edge(edge) => match self.minutes.get(&edge.slice) {
                None => self.add_cut(
                    &mut sums,
                    messages,
                    edge.bucket,
                    edge.items,
                    edge.inside(time_of),
                ),
                // A dense slice: whole minutes from their buckets, the cut ones like a cut
                // slice.
                Some(dense) => {
                    let span_ms = |minute: usize| {
                        let first_ms = edge.slice * SLICE_MS + minute as i64 * MINUTE_MS;
                        (first_ms, first_ms + MINUTE_MS - 1)
                    };
                    // Minutes as bit sets: wholly inside the range, and cut by it.
                    let (mut inside, mut cuts) = (0u16, 0u16);
                    for minute in 0..MINUTES {
                        let (first_ms, last_ms) = span_ms(minute);
                        if start_ms <= first_ms && last_ms <= end_ms {
                            inside |= 1 << minute;
                        } else if start_ms <= last_ms && first_ms <= end_ms {
                            cuts |= 1 << minute;
                        }
                    }
                    let minutes_in = |set: u16| (0..MINUTES).filter(move |m| set & (1 << m) != 0);
                    let others = !inside & ((1 << MINUTES) - 1);
                    // The whole minutes inside, or the slice less the others (the cut ones
                    // too: their inside part is added below), whichever reads fewer buckets.
                    if 1 + others.count_ones() < inside.count_ones() {
                        sums.add_bucket(edge.bucket);
                        for minute in minutes_in(others) {
                            sums.subtract_bucket(&dense.buckets[minute]);
                        }
                    } else {
                        for minute in minutes_in(inside) {
                            sums.add_bucket(&dense.buckets[minute]);
                        }
                    }
                    for minute in minutes_in(cuts) {
                        let items = &edge.items
                            [dense.starts[minute] as usize..dense.starts[minute + 1] as usize];
                        let inside = cut(items, span_ms(minute), (start_ms, end_ms), time_of);
                        let bucket = &dense.buckets[minute];
                        self.add_cut(&mut sums, messages, bucket, items, inside);
                    }
                }
            },
        });
        for (&slot, counts) in sums.slots.iter().zip(&sums.sums) {
            if !counts.is_empty() {
                visit(
                    Channel::ALL[slot % channel_count],
                    self.types[slot / channel_count],
                    counts,
                );
            }
        }
    }

    /// Adds to `sums` the messages of `items[inside]`, those of `items` (the sorted items of a
    /// cut slice or minute, counted in `bucket`) sent in the range: as those, or as `bucket`
    /// less the items outside the range, whichever are fewer. Messages in slots the query does
    /// not take are skipped unread beyond their channel and type.
    fn add_cut(
        &self,
        sums: &mut TakenSums,
        messages: &[MessageState],
        bucket: &Bucket,
        items: &[u32],
        inside: Range<usize>,
    ) {
        match CutSide::of(items, inside) {
            CutSide::Inside(inside) => {
                for &index in inside {
                    let state = &messages[index as usize];
                    if let Some(sum) = sums.sum_mut(self.slot_of(state)) {
                        sum.add_message(state);
                    }
                }
            }
            CutSide::WholeLess(before, after) => {
                sums.add_bucket(bucket);
                for &index in before.iter().chain(after) {
                    let state = &messages[index as usize];
                    if let Some(sum) = sums.sum_mut(self.slot_of(state)) {
                        sum.subtract_message(state);
                    }
                }
            }
        }
    }

    /// The slot of a message already counted.
    fn slot_of(&self, state: &MessageState) -> usize {
        self.type_ordinals[state.message_type as usize] as usize * Channel::ALL.len()
            + state.channel.index()
    }
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

    /// A slot's counts fill one cache line: the buckets are most of the indexes' memory.
    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<SlotCounts>(), 64);
        assert_eq!(std::mem::size_of::<Line>(), 64);
        assert_eq!(std::mem::align_of::<Line>(), 64);
    }

    /// The search from a guess finds what a bisection finds, from any guess, with ties.
    #[test]
    fn a_search_from_any_guess_finds_the_partition_point() {
        for len in 0..40u32 {
            // Times with runs of equal values: item i at time 3 * (i / 2).
            let items: Vec<u32> = (0..len).collect();
            let time_of = |item: u32| i64::from(item / 2) * 3;
            for threshold in -2..(i64::from(len) * 2 + 2) {
                let expected = items.partition_point(|&item| time_of(item) < threshold);
                for guess in 0..(len as usize + 3) {
                    let found =
                        partition_point_near(&items, guess, |item| time_of(item) < threshold);
                    assert_eq!(
                        found, expected,
                        "len {len}, threshold {threshold}, guess {guess}"
                    );
                }
            }
        }
    }

    /// A cut slice read as bucket minus outside equals the items inside, on both sides.
    #[test]
    fn a_cut_slice_counts_the_same_read_from_either_side() {
        let mut buckets: TimeBuckets<u64> = TimeBuckets::default();
        // Items 0..10 at times 10 * i within one slice, filed out of order.
        let time_of = |index: u32| i64::from(index) * 10;
        for index in [3u32, 1, 0, 2, 9, 4, 8, 5, 7, 6] {
            buckets.insert(index, time_of(index), time_of, |sum| *sum += 1);
        }
        for (start_ms, end_ms) in [(0, 95), (15, 42), (0, 5), (31, 31), (85, 1_000)] {
            let mut seen = Vec::new();
            buckets.visit(start_ms, end_ms, |piece| match piece {
                Piece::Whole(_) => panic!("no whole bucket in one slice"),
                Piece::Edge(edge) => {
                    assert_eq!(*edge.bucket as usize, edge.items.len());
                    seen.extend_from_slice(&edge.items[edge.inside(time_of)]);
                }
            });
            let expected: Vec<u32> = (0..10)
                .filter(|&index| (start_ms..=end_ms).contains(&time_of(index)))
                .collect();
            assert_eq!(seen, expected, "{start_ms}..={end_ms}");
        }
    }

    /// Counts per (channel, type) from the rollup equal a count over every message, for
    /// windows cutting slices and minutes anywhere, with dense slices (minute buckets) and
    /// without, and with messages added and changed after the build.
    #[test]
    fn dense_and_quiet_slices_count_like_every_message() {
        use crate::event::UserId;
        use crate::money::Money;
        use std::collections::BTreeMap;

        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let base_ms = 1_735_689_600_000_i64;
        // 3 slices' worth of sent times, with ties.
        let span_ms = 3 * SLICE_MS as u64;
        let new_message = |next: &mut dyn FnMut(u64) -> u64| {
            MessageState::new(
                UserId(1),
                Channel::ALL[next(4) as usize],
                next(3) as NameId,
                Money::from_micros(i128::from(next(1000))),
                base_ms + (next(span_ms / 997) * 997) as i64,
            )
        };
        let change = |state: &mut MessageState, next: &mut dyn FnMut(u64) -> u64| {
            let at_ms = base_ms + next(span_ms) as i64;
            match next(5) {
                0 => state.fold_delivered(at_ms),
                1 => state.fold_opened(at_ms),
                2 => state.fold_action(7, true, false, at_ms),
                3 => state.fold_action(8, false, true, at_ms),
                _ => state.fold_failed(9, at_ms),
            }
        };
        for dense_slice in [16, usize::MAX] {
            let mut messages: Vec<MessageState> =
                (0..300).map(|_| new_message(&mut next)).collect();
            for _ in 0..200 {
                let index = next(300) as usize;
                change(&mut messages[index], &mut next);
            }
            let mut rollup = MessageRollup::build_with(&messages, dense_slice);
            for _ in 0..300 {
                messages.push(new_message(&mut next));
                rollup.add(&messages, messages.len() as u32 - 1);
                let index = next(messages.len() as u64) as usize;
                let old_kind = kind_of(&messages[index]);
                change(&mut messages[index], &mut next);
                rollup.change_kind(&messages[index], old_kind);
            }
            assert_eq!(
                !rollup.minutes.is_empty(),
                dense_slice == 16,
                "dense slices have minute buckets"
            );
            for _ in 0..300 {
                let mut start_ms = base_ms - 1000 + next(span_ms + 2000) as i64;
                let mut end_ms = base_ms - 1000 + next(span_ms + 2000) as i64;
                if start_ms > end_ms {
                    std::mem::swap(&mut start_ms, &mut end_ms);
                }
                let filter = SlotFilter {
                    channel: (next(2) == 0).then(|| Channel::ALL[next(4) as usize]),
                    message_type: (next(2) == 0).then(|| next(3) as NameId),
                };
                let mut counted: BTreeMap<(Channel, NameId), Counts> = BTreeMap::new();
                rollup.visit(
                    &messages,
                    filter,
                    start_ms,
                    end_ms,
                    |channel, name, counts| {
                        counted
                            .entry((channel, name))
                            .or_default()
                            .add(&counts.counts())
                    },
                );
                let mut expected: BTreeMap<(Channel, NameId), Counts> = BTreeMap::new();
                for state in &messages {
                    if (start_ms..=end_ms).contains(&state.sent_ms)
                        && filter.takes(state.channel, state.message_type)
                    {
                        expected
                            .entry((state.channel, state.message_type))
                            .or_default()
                            .add(&Counts::of(state));
                    }
                }
                assert_eq!(counted, expected, "{start_ms}..={end_ms}, {filter:?}");
            }
        }
    }
}
