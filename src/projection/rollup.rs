//! The message rollup: message counts per channel × message type by sent time, for the views
//! over all users (stats, channel effectiveness, cost), summed over a range by the time index
//! (`time_index.rs`). A slice of more than [`DENSE_SLICE`] messages also counts them per
//! minute, so that a range cutting it reads only one cut minute item by item.
//!
//! Built on the first query that needs it (one pass), not during replay, so opening a store
//! costs no more; from then on every fold keeps it current.

use std::ops::{Range, RangeInclusive};

use crate::event::Channel;
use crate::limits::MONEY_MICROS_MAX;
use crate::message::Status;
use crate::projection::id_map::IdMap;
use crate::projection::message_table::MessageTable;
use crate::projection::names::NameId;
use crate::projection::selection::TypeFilter;
use crate::projection::status::ActionLevel::{Action, NoAction, Upgrade};
use crate::projection::status::{ActionLevel, MessageState, STAGE_PATTERNS, status_and_action_of};
use crate::projection::time_index::{
    ItemsSource, MINUTES, Piece, SLICE_MS, TimeBuckets, cut, minute_of, minute_span_ms, minutes_in,
    split_minutes, sum_cut,
};

/// Messages by kind, and their cost: the sums of one slot (one channel × message type), 64
/// bytes. Counts fit in `u32` because a store holds fewer than 2^32 messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bincode::Encode)]
pub(crate) struct SlotCounts {
    by_kind: [u32; KINDS.len()],
    cost_micros: i128,
}

/// The kinds a message can be in: its status and its furthest action. Every count of the views
/// is a sum over kinds. An action implies delivery and a click is an action, so a sent or
/// failed message has none and a clicked one has one: 10 of the 15 pairs.
const KINDS: [(Status, ActionLevel); 10] = [
    (Status::Sent, NoAction),
    (Status::Failed, NoAction),
    (Status::Delivered, NoAction),
    (Status::Delivered, Action),
    (Status::Delivered, Upgrade),
    (Status::Opened, NoAction),
    (Status::Opened, Action),
    (Status::Opened, Upgrade),
    (Status::Clicked, Action),
    (Status::Clicked, Upgrade),
];

/// The kind of a message in its current state: its index in [`KINDS`]. The fold never makes
/// the other five pairs; a record a snapshot held could hold one where the open cannot tell
/// (its messages decoded on demand): each is counted as the kind its action implies (an action
/// implies delivery, a click an action), so that it never stops a query.
pub(crate) fn kind_of(state: &MessageState) -> usize {
    kind_of_stages(state.stage_bits())
}

/// [`kind_of`] a message whose `MessageState::stage_bits` are `bits`: one read in a table made
/// at compile time, since a range's cut minutes look up the kind of each message they read.
pub(crate) fn kind_of_stages(bits: usize) -> usize {
    usize::from(KINDS_OF_STAGES[bits])
}

/// [`kind_of_status`] of every value of `MessageState::stage_bits`.
const KINDS_OF_STAGES: [u8; STAGE_PATTERNS] = {
    let mut kinds = [0; STAGE_PATTERNS];
    let mut bits = 0;
    while bits < STAGE_PATTERNS {
        kinds[bits] = kind_of_status(status_and_action_of(bits)) as u8;
        bits += 1;
    }
    kinds
};

/// The kind of a message in a status and with an action: its index in [`KINDS`].
const fn kind_of_status(status_and_action: (Status, ActionLevel)) -> usize {
    match status_and_action {
        (Status::Sent, NoAction) => 0,
        (Status::Failed, NoAction) => 1,
        (Status::Delivered, NoAction) => 2,
        (Status::Delivered | Status::Sent | Status::Failed, Action) => 3,
        (Status::Delivered | Status::Sent | Status::Failed, Upgrade) => 4,
        (Status::Opened, NoAction) => 5,
        (Status::Opened, Action) => 6,
        (Status::Opened, Upgrade) => 7,
        (Status::Clicked, Action | NoAction) => 8,
        (Status::Clicked, Upgrade) => 9,
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
    pub(crate) fn is_empty(&self) -> bool {
        self.by_kind.iter().all(|&count| count == 0)
    }

    /// Counts `count` more messages of `kind`, without their cost ([`SlotCounts::add_cost`]).
    pub(crate) fn add_kind(&mut self, kind: usize, count: u32) {
        self.by_kind[kind] = self.by_kind[kind].wrapping_add(count);
    }

    /// Adds messages' cost, counted by [`SlotCounts::add_kind`].
    pub(crate) fn add_cost(&mut self, cost_micros: i128) {
        self.cost_micros = self.cost_micros.wrapping_add(cost_micros);
    }

    /// Moves a message from `old_kind` to `new_kind` (a fold changed its state).
    pub(crate) fn change_kind(&mut self, old_kind: usize, new_kind: usize) {
        self.by_kind[old_kind] = self.by_kind[old_kind].wrapping_sub(1);
        self.by_kind[new_kind] = self.by_kind[new_kind].wrapping_add(1);
    }

    // The counts wrap rather than overflow: sums the fold keeps never do (a store holds fewer
    // than 2^32 messages, each cost within `MONEY_MICROS_MAX`), but a bucket a snapshot held
    // may count other messages than those it files where the open cannot tell (only a fold
    // can: `commlog audit --deep`), and taking away what it does not count must not panic.

    /// Counts one more message, in its current state.
    pub(crate) fn add_message(&mut self, state: &MessageState) {
        let count = &mut self.by_kind[kind_of(state)];
        *count = count.wrapping_add(1);
        self.cost_micros = self.cost_micros.wrapping_add(i128::from(state.cost_micros));
    }

    /// Counts one message fewer, in its current state.
    fn subtract_message(&mut self, state: &MessageState) {
        let count = &mut self.by_kind[kind_of(state)];
        *count = count.wrapping_sub(1);
        self.cost_micros = self.cost_micros.wrapping_sub(i128::from(state.cost_micros));
    }

    pub(crate) fn add(&mut self, other: &SlotCounts) {
        for (mine, theirs) in self.by_kind.iter_mut().zip(other.by_kind) {
            *mine = mine.wrapping_add(theirs);
        }
        self.cost_micros = self.cost_micros.wrapping_add(other.cost_micros);
    }

    /// Takes away `other`, which these counts include.
    fn subtract(&mut self, other: &SlotCounts) {
        for (mine, theirs) in self.by_kind.iter_mut().zip(other.by_kind) {
            *mine = mine.wrapping_sub(theirs);
        }
        self.cost_micros = self.cost_micros.wrapping_sub(other.cost_micros);
    }

    /// How many messages these count (wider than a count: a sum over slots).
    fn messages(&self) -> u64 {
        self.by_kind.iter().map(|&count| u64::from(count)).sum()
    }

    /// The counts of one message, in its current state.
    pub(crate) fn of(state: &MessageState) -> SlotCounts {
        let mut counts = SlotCounts::default();
        counts.add_message(state);
        counts
    }

    /// How many messages these are, and their cost in micro-dollars.
    pub(crate) fn spend(&self) -> (u64, i128) {
        (self.messages(), self.cost_micros)
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
            if action != NoAction {
                counts.responded += count;
            }
            if action == Upgrade {
                counts.converted += count;
            }
        }
        counts
    }
}

/// Counts per slot; slot = type ordinal × 4 + channel. Each slot is one cache line, so a query
/// reads one line per slot it takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode)]
pub(crate) struct Bucket {
    slots: Vec<Line>,
}

/// A slot's counts, aligned to a cache line (buckets are allocated once, so the aligned
/// allocation costs nothing at query time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bincode::Encode)]
#[repr(align(64))]
struct Line(SlotCounts);

/// Bytes of a slot's counts in a snapshot: ten u32 and an i128.
const SLOT_BYTES: usize = KINDS.len() * 4 + 16;

/// Parsed in one go where the reader holds the bytes, else field by field.
impl<Context> bincode::Decode<Context> for Line {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Line, bincode::error::DecodeError> {
        let Some(bytes) = crate::codec::peek_snapshot_bytes::<SLOT_BYTES, D>(decoder) else {
            return Ok(Line(SlotCounts {
                by_kind: <[u32; KINDS.len()]>::decode(decoder)?,
                cost_micros: i128::decode(decoder)?,
            }));
        };
        let mut fields = crate::codec::FixedFields(&bytes);
        let by_kind = std::array::from_fn(|_| fields.u32());
        let cost_micros = fields.i128();
        crate::codec::consume_snapshot_bytes(decoder, SLOT_BYTES)?;
        Ok(Line(SlotCounts {
            by_kind,
            cost_micros,
        }))
    }
}

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

    /// Adds the counts of `other`, slot by slot.
    fn add(&mut self, other: &Bucket) {
        for (slot, line) in other.slots.iter().enumerate() {
            if !line.0.is_empty() {
                self.slot_mut(slot).add(&line.0);
            }
        }
    }
}

/// A bucket's list of slots: its length, then the slots.
impl crate::projection::time_index::EncodedBucket for Bucket {
    const ENCODED_BYTES_MIN: usize = 8;
}

impl Bucket {
    /// How many messages the bucket counts.
    fn messages(&self) -> u64 {
        self.slots.iter().map(|line| line.0.messages()).sum()
    }

    /// Checks a bucket a snapshot held, filing `items` messages, against the `slots` of its
    /// types: no slot past them, as many messages counted as filed, and each slot's cost within
    /// what its messages can cost (never negative, at most `MONEY_MICROS_MAX` each), so that
    /// no sum of buckets a query reads can overflow.
    fn check_fits(&self, slots: usize, items: u64) -> Result<(), String> {
        if self.slots.len() > slots {
            return Err(format!(
                "a bucket has {} slots, the types {slots}",
                self.slots.len()
            ));
        }
        let counted = self.messages();
        if counted != items {
            return Err(format!("a bucket of {items} messages counts {counted}"));
        }
        let costs_fit = self.slots.iter().all(|line| {
            let most = i128::from(line.0.messages()) * i128::from(MONEY_MICROS_MAX);
            (0..=most).contains(&line.0.cost_micros)
        });
        match costs_fit {
            true => Ok(()),
            false => Err("a bucket's cost is not one its messages can have".to_string()),
        }
    }
}

impl<Context> bincode::Decode<Context> for Bucket {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Bucket, bincode::error::DecodeError> {
        Ok(Bucket {
            slots: crate::codec::decode_bounded_list(decoder, SLOT_BYTES)?,
        })
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

    /// Sets every sum back to zero.
    fn clear(&mut self) {
        self.sums.fill(SlotCounts::default());
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

    /// The sums of `slot`, if taken (none for a message without a slot).
    fn sum_mut(&mut self, slot: Option<usize>) -> Option<&mut SlotCounts> {
        let place = self.places.get(slot?).copied().flatten()?;
        Some(&mut self.sums[place as usize])
    }
}

/// Which slots a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotFilter {
    pub channel: Option<Channel>,
    pub message_type: TypeFilter,
}

impl SlotFilter {
    pub(crate) fn takes(self, channel: Channel, message_type: NameId) -> bool {
        self.channel.is_none_or(|wanted| wanted == channel) && self.message_type.takes(message_type)
    }
}

/// Messages in a slice past which each of its minutes gets a bucket of its own, so that a range
/// cutting a busy slice reads whole minutes and the messages of one cut minute. Quiet slices
/// (the reference workload has about 230 messages in one at 1 M) pay nothing for it.
const DENSE_SLICE: usize = 1024;

/// The runs of a dense slice's items: one per minute and channel, in that order.
const RUNS: usize = MINUTES * Channel::ALL.len();

/// The run of a dense slice that a message belongs to: its minute, then its channel.
fn run_of(state: &MessageState) -> usize {
    minute_of(state.sent_ms) * Channel::ALL.len() + state.channel.index()
}

/// The minutes of a dense slice: a bucket each, and the slice's items in runs by minute and
/// channel, each sorted by (time, index), so that a cut minute is found without a search and a
/// query on one channel reads only that channel's messages of it.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode)]
struct DenseSlice {
    buckets: Vec<Bucket>,
    /// Where each run starts in the slice's items: run `r` is `starts[r]..starts[r + 1]`.
    starts: [u32; RUNS + 1],
}

impl DenseSlice {
    /// Minute buckets and runs of `items` (a slice's, sorted by (time, index)), which it puts
    /// in run order.
    fn of(
        items: &mut [u32],
        messages: &MessageTable,
        slot_of: impl Fn(&MessageState) -> usize,
    ) -> DenseSlice {
        let mut dense = DenseSlice {
            buckets: vec![Bucket::default(); MINUTES],
            starts: [0; RUNS + 1],
        };
        for &item in items.iter() {
            let state = &messages[item as usize];
            dense.buckets[minute_of(state.sent_ms)]
                .slot_mut(slot_of(state))
                .add_message(state);
            dense.starts[run_of(state) + 1] += 1;
        }
        for run in 0..RUNS {
            dense.starts[run + 1] += dense.starts[run];
        }
        // A stable placement by run keeps each run in (time, index) order.
        let mut next = dense.starts;
        let by_time = items.to_vec();
        for item in by_time {
            let run = run_of(&messages[item as usize]);
            items[next[run] as usize] = item;
            next[run] += 1;
        }
        dense
    }

    /// A message of `run` was filed: later runs start one item later.
    fn insert(&mut self, run: usize, slot: usize, state: &MessageState) {
        self.buckets[run / Channel::ALL.len()]
            .slot_mut(slot)
            .add_message(state);
        for start in &mut self.starts[run + 1..] {
            *start += 1;
        }
    }

    /// The runs of `minute`, each with where its messages sent in `window` lie; those of the
    /// channels other than `channel` (when a query reads one) are left empty: the query's sums
    /// take none of their slots, so [`sum_cut`] need not read them.
    fn cut_runs<'a>(
        &self,
        items: &'a [u32],
        (slice, minute): (i64, usize),
        channel: Option<Channel>,
        window: (i64, i64),
        time_of: impl Fn(u32) -> i64,
    ) -> [(&'a [u32], Range<usize>); Channel::ALL.len()] {
        let mut runs: [(&[u32], Range<usize>); Channel::ALL.len()] = Default::default();
        for (run_channel, cut_run) in Channel::ALL.into_iter().zip(&mut runs) {
            if channel.is_none_or(|wanted| wanted == run_channel) {
                let run = minute * Channel::ALL.len() + run_channel.index();
                let run = &items[self.starts[run] as usize..self.starts[run + 1] as usize];
                *cut_run = (
                    run,
                    cut(run, minute_span_ms(slice, minute), window, &time_of),
                );
            }
        }
        runs
    }
}

/// Messages filed together by [`MessageRollup::build`]: consecutive indexes, sent in order
/// within one slice, and their counts.
struct Run {
    slice: i64,
    items: Range<u32>,
    /// The sent time of the last message.
    last_ms: i64,
    bucket: Bucket,
}

impl Run {
    fn file(self, buckets: &mut TimeBuckets<Bucket>) {
        buckets.insert_run(self.slice * SLICE_MS, self.items, |counts| {
            counts.add(&self.bucket)
        });
    }
}

/// The slot of a message whose type has an ordinal in `type_ordinals` (by name id): every
/// message's type has one once the rollup counts it. A rollup a snapshot held may lack a type
/// where the open cannot tell (its messages decoded on demand): `None` for a message of such a
/// type, which a query then finds in no slot, and which the fold gives an ordinal before
/// counting it (`MessageRollup::slot`).
fn slot_of(type_ordinals: &[u32], state: &MessageState) -> Option<usize> {
    let ordinal = *type_ordinals.get(state.message_type as usize)?;
    (ordinal != u32::MAX).then(|| ordinal as usize * Channel::ALL.len() + state.channel.index())
}

/// Message counts per channel × message type, by sent time.
#[derive(Debug, PartialEq, Eq)]
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

    /// The messages by sent time.
    pub(crate) fn time_buckets(&self) -> &TimeBuckets<Bucket> {
        &self.buckets
    }

    /// Builds the rollup of `messages` (message id `n` at index `n - 1`).
    pub(crate) fn build(messages: &MessageTable) -> MessageRollup {
        MessageRollup::build_with(messages, DENSE_SLICE)
    }

    /// Builds the rollup as [`add`](Self::add) for each message would, in one pass that files
    /// each run of messages sent in order within one slice at once (messages mostly come in
    /// sent order): their counts are summed in one bucket, then added to the buckets of every
    /// level, rather than each message looking up and adding to five. A message that would not
    /// go last in its slice is filed alone. The minute buckets of the slices that hold more
    /// than `dense_slice` messages are counted at the end.
    fn build_with(messages: &MessageTable, dense_slice: usize) -> MessageRollup {
        let mut rollup = MessageRollup::with_dense_slice(dense_slice);
        let time_of = |index: u32| messages[index as usize].sent_ms;
        let mut run: Option<Run> = None;
        for (index, state) in messages.iter().enumerate() {
            let index = u32::try_from(index).expect("fewer than 2^32 messages");
            let slot = rollup.slot(state);
            let slice = state.sent_ms.div_euclid(SLICE_MS);
            if let Some(open) =
                run.take_if(|open| open.slice != slice || state.sent_ms < open.last_ms)
            {
                open.file(&mut rollup.buckets);
            }
            let run = match &mut run {
                Some(open) => open,
                // Index order makes (time, index) greater than the slice's last item's
                // exactly when the time is not earlier.
                None => match rollup.buckets.slice_items(slice).last() {
                    Some(&last) if time_of(last) > state.sent_ms => {
                        // No slice is dense yet: each is sorted by (time, index).
                        let order = |other: u32| (time_of(other), other);
                        rollup
                            .buckets
                            .insert(index, state.sent_ms, order, |bucket| {
                                bucket.slot_mut(slot).add_message(state)
                            });
                        continue;
                    }
                    _ => run.insert(Run {
                        slice,
                        items: index..index,
                        last_ms: state.sent_ms,
                        bucket: Bucket::default(),
                    }),
                },
            };
            run.items.end = index + 1;
            run.last_ms = state.sent_ms;
            run.bucket.slot_mut(slot).add_message(state);
        }
        if let Some(open) = run {
            open.file(&mut rollup.buckets);
        }
        let dense: Vec<i64> = rollup
            .buckets
            .slices()
            .filter(|(_, items)| items.len() > dense_slice)
            .map(|(slice, _)| slice)
            .collect();
        for slice in dense {
            rollup.make_dense(messages, slice);
        }
        rollup
    }

    /// Counts the minutes of `slice` (its messages, each of a type with an ordinal, in
    /// (time, index) order) and puts its messages in runs.
    fn make_dense(&mut self, messages: &MessageTable, slice: i64) {
        let type_ordinals = &self.type_ordinals;
        let items = self.buckets.slice_items_mut(slice);
        let dense = DenseSlice::of(items, messages, |other| {
            slot_of(type_ordinals, other).expect("every message counted has a slot")
        });
        self.minutes.insert(slice, dense);
    }

    /// The slot of a message, its type given an ordinal if it has none yet.
    fn slot(&mut self, state: &MessageState) -> usize {
        let name = state.message_type as usize;
        if name >= self.type_ordinals.len() {
            self.type_ordinals.resize(name + 1, u32::MAX);
        }
        if self.type_ordinals[name] == u32::MAX {
            self.type_ordinals[name] = self.types.len() as u32;
            self.types.push(state.message_type);
        }
        slot_of(&self.type_ordinals, state).expect("the type has an ordinal")
    }

    /// Counts the new message at `index` of `messages`, in its current state.
    pub(crate) fn add(&mut self, messages: &MessageTable, index: u32) {
        let state = &messages[index as usize];
        let slot = self.slot(state);
        let slice = state.sent_ms.div_euclid(SLICE_MS);
        let dense = self.minutes.get_mut(&slice);
        let in_runs = dense.is_some();
        // A dense slice's items are in runs (minute, channel), a quiet one's by time.
        let order = |other: u32| {
            let other_state = &messages[other as usize];
            let run = if in_runs { run_of(other_state) } else { 0 };
            (run, other_state.sent_ms, other)
        };
        self.buckets.insert(index, state.sent_ms, order, |bucket| {
            bucket.slot_mut(slot).add_message(state)
        });
        if let Some(dense) = dense {
            dense.insert(run_of(state), slot, state);
        } else if self.buckets.slice_items(slice).len() > self.dense_slice {
            // The slice just became dense: count its messages (this one too) per minute, and
            // put them in runs. Each has a slot (a rollup a snapshot held may lack a type the
            // open could not see: it gets an ordinal now).
            for index in 0..self.buckets.slice_items(slice).len() {
                let item = self.buckets.slice_items(slice)[index];
                self.slot(&messages[item as usize]);
            }
            self.make_dense(messages, slice);
        }
    }

    /// Moves a message from `old_kind` to its current kind (a fold changed its state).
    pub(crate) fn change_kind(&mut self, state: &MessageState, old_kind: usize) {
        let new_kind = kind_of(state);
        if new_kind == old_kind {
            return;
        }
        let slot = self.slot(state);
        let change = |bucket: &mut Bucket| bucket.slot_mut(slot).change_kind(old_kind, new_kind);
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
        messages: &MessageTable,
        filter: SlotFilter,
        start_ms: i64,
        end_ms: i64,
        mut visit: impl FnMut(Channel, NameId, &SlotCounts),
    ) {
        self.visit_ranges(
            messages,
            filter,
            [(start_ms, end_ms)],
            |_, channel, message_type, counts| visit(channel, message_type, counts),
        );
    }

    /// [`MessageRollup::visit`] over each of `ranges` (each `[start_ms, end_ms]`) in turn:
    /// `visit` gets the range's place in `ranges` first. One set of sums serves every range.
    pub(crate) fn visit_ranges(
        &self,
        messages: &MessageTable,
        filter: SlotFilter,
        ranges: impl IntoIterator<Item = (i64, i64)>,
        mut visit: impl FnMut(usize, Channel, NameId, &SlotCounts),
    ) {
        self.sum_ranges(messages, filter, ranges, |range, slot, counts| {
            visit(range, self.channel_of(slot), self.type_of(slot), counts)
        });
    }

    /// Over each of `ranges` in turn, `spend` gets the messages and their cost by channel
    /// (the range's place in `ranges`, the channel, the sums of its slots; channels without a
    /// message left out); then `totals` gets the counts of each slot over every range, once
    /// per slot: what [`MessageRollup::visit_ranges`] gives, summed by channel for each range
    /// and over the ranges for each slot, without a call per slot and range.
    pub(crate) fn spend_by_range(
        &self,
        messages: &MessageTable,
        filter: SlotFilter,
        ranges: impl IntoIterator<Item = (i64, i64)>,
        mut spend: impl FnMut(usize, Channel, (u64, i128)),
        mut totals: impl FnMut(Channel, NameId, &SlotCounts),
    ) {
        let mut summed: Vec<Option<SlotCounts>> = vec![None; self.types.len() * Channel::ALL.len()];
        let mut by_channel = [(0u64, 0i128); Channel::ALL.len()];
        let mut hand_over = |range: usize, by_channel: &mut [(u64, i128); Channel::ALL.len()]| {
            for (channel, sums) in Channel::ALL.into_iter().zip(by_channel.iter_mut()) {
                if sums.0 > 0 {
                    spend(range, channel, *sums);
                }
                *sums = (0, 0);
            }
        };
        let mut last_range = None;
        self.sum_ranges(messages, filter, ranges, |range, slot, counts| {
            if let Some(last) = last_range.filter(|&last| last != range) {
                hand_over(last, &mut by_channel);
            }
            last_range = Some(range);
            let (count, cost_micros) = counts.spend();
            let channel = &mut by_channel[self.channel_of(slot).index()];
            channel.0 += count;
            channel.1 += cost_micros;
            summed[slot].get_or_insert_default().add(counts);
        });
        if let Some(range) = last_range {
            hand_over(range, &mut by_channel);
        }
        for (slot, counts) in summed.iter().enumerate() {
            if let Some(counts) = counts {
                totals(self.channel_of(slot), self.type_of(slot), counts);
            }
        }
    }

    /// A slot's channel.
    fn channel_of(&self, slot: usize) -> Channel {
        Channel::ALL[slot % Channel::ALL.len()]
    }

    /// A slot's message type.
    fn type_of(&self, slot: usize) -> NameId {
        self.types[slot / Channel::ALL.len()]
    }

    /// Sums the slots `filter` takes over each of `ranges` in turn, and hands `done` each
    /// slot's sums with a message (the range's place in `ranges`, the slot, its counts), in
    /// slot order. One set of sums serves every range.
    fn sum_ranges(
        &self,
        messages: &MessageTable,
        filter: SlotFilter,
        ranges: impl IntoIterator<Item = (i64, i64)>,
        mut done: impl FnMut(usize, usize, &SlotCounts),
    ) {
        let time_of = |index: u32| messages[index as usize].sent_ms;
        let channel_count = Channel::ALL.len();
        // Sums per taken slot over every piece of a range, then one call per slot.
        let mut sums = TakenSums::new(self.types.len() * channel_count, |slot| {
            filter.takes(self.channel_of(slot), self.type_of(slot))
        });
        for (range, (start_ms, end_ms)) in ranges.into_iter().enumerate() {
            if range > 0 {
                sums.clear();
            }
            self.buckets.visit(start_ms, end_ms, |piece| match piece {
                Piece::Whole(bucket) => sums.add_bucket(bucket),
                Piece::Edge(edge) => match self.minutes.get(&edge.slice) {
                    None => self.add_cut(
                        &mut sums,
                        messages,
                        edge.bucket,
                        &[(edge.items, edge.inside(time_of))],
                    ),
                    // A dense slice: whole minutes from their buckets, the cut ones like a cut
                    // slice, read in the runs of the channels the query takes.
                    Some(dense) => {
                        let (inside, cuts) = split_minutes(edge.slice, start_ms, end_ms);
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
                            let runs = dense.cut_runs(
                                edge.items,
                                (edge.slice, minute),
                                filter.channel,
                                (start_ms, end_ms),
                                time_of,
                            );
                            let bucket = &dense.buckets[minute];
                            self.add_cut(&mut sums, messages, bucket, &runs);
                        }
                    }
                },
            });
            for (&slot, counts) in sums.slots.iter().zip(&sums.sums) {
                if !counts.is_empty() {
                    // A cut read as its bucket less the messages outside the range never
                    // costs less than nothing, but for a bucket a snapshot held that does not
                    // count the messages it files (which the open cannot tell): its cost is
                    // then taken as none, as the views expect of any cost.
                    let counts = SlotCounts {
                        cost_micros: counts.cost_micros.max(0),
                        ..*counts
                    };
                    done(range, slot, &counts);
                }
            }
        }
    }

    /// Adds to `sums` the messages inside the range of `runs` (the runs of a cut slice or
    /// minute, each with where those inside lie; all counted in `bucket`), read by
    /// [`sum_cut`]. Messages in slots the query does not take are skipped unread beyond their
    /// channel and type.
    fn add_cut(
        &self,
        sums: &mut TakenSums,
        messages: &MessageTable,
        bucket: &Bucket,
        runs: &[(&[u32], Range<usize>)],
    ) {
        sum_cut(
            sums,
            bucket,
            runs,
            TakenSums::add_bucket,
            |sums, index| {
                let state = &messages[index as usize];
                if let Some(sum) = sums.sum_mut(self.slot_of(state)) {
                    sum.add_message(state);
                }
            },
            |sums, index| {
                let state = &messages[index as usize];
                if let Some(sum) = sums.sum_mut(self.slot_of(state)) {
                    sum.subtract_message(state);
                }
            },
        );
    }

    /// The slot of a message already counted (`None`: see [`slot_of`]).
    fn slot_of(&self, state: &MessageState) -> Option<usize> {
        slot_of(&self.type_ordinals, state)
    }
}

/// A snapshot holds the rollup as its message types (in order), its time index and its dense
/// slices, sorted by slice (docs/FORMAT.md, "Indexes"); each type's ordinal follows from the
/// order.
impl bincode::Encode for MessageRollup {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.types.encode(encoder)?;
        self.buckets.encode(encoder)?;
        crate::codec::encode_sorted_map(&self.minutes, encoder)
    }
}

/// Bytes of a dense slice's entry in a snapshot at the least: its key, its list of minute
/// buckets' length, its runs' starts.
const DENSE_ENTRY_BYTES_MIN: usize = 8 + 8 + (RUNS + 1) * 4;

impl<Context: ItemsSource> bincode::Decode<Context> for MessageRollup {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<MessageRollup, bincode::error::DecodeError> {
        let types: Vec<NameId> = crate::codec::decode_bounded_list(decoder, 4)?;
        let buckets = TimeBuckets::decode(decoder)?;
        let minutes = crate::codec::decode_sorted_map(decoder, DENSE_ENTRY_BYTES_MIN, |decoder| {
            let buckets = crate::codec::decode_bounded_list(decoder, 8)?;
            // The runs' starts: RUNS + 1 u32.
            let starts = <[u32; RUNS + 1]>::decode(decoder)?;
            Ok(DenseSlice { buckets, starts })
        })?;
        // Each type's ordinal is set by `fit`, once the types are checked.
        Ok(MessageRollup {
            types,
            type_ordinals: Vec::new(),
            buckets,
            minutes,
            dense_slice: DENSE_SLICE,
        })
    }
}

impl MessageRollup {
    /// Reads past a rollup a snapshot holds (docs/FORMAT.md, "Indexes") without keeping it:
    /// every length is refused as [`MessageRollup::decode`] refuses it, nothing else is
    /// checked. `reached` is told where the reading is after each bucket.
    pub(crate) fn skip(
        reader: &mut crate::codec::SnapshotReader<'_>,
        reached: &mut impl FnMut(usize),
    ) -> Result<(), String> {
        let mut skip_bucket = |reader: &mut crate::codec::SnapshotReader<'_>| {
            let slots = reader.decode_list_len(SLOT_BYTES)?;
            reader.skip(slots * SLOT_BYTES);
            reached(reader.position());
            Ok::<_, String>(())
        };
        let types = reader.decode_list_len(4)?;
        reader.skip(types * 4);
        TimeBuckets::<Bucket>::skip(reader, &mut skip_bucket)?;
        for _ in 0..reader.decode_list_len(DENSE_ENTRY_BYTES_MIN)? {
            reader.decode::<i64>()?;
            for _ in 0..reader.decode_list_len(8)? {
                skip_bucket(reader)?;
            }
            reader.decode::<[u32; RUNS + 1]>()?;
        }
        Ok(())
    }
}

impl MessageRollup {
    /// The rollup a snapshot held, checked to fit the facts' `messages` and `names` names,
    /// whose times lie in `slices`: every message filed once, in a slice of those, the first
    /// and the last slice holding messages of their times and listed types, its types distinct
    /// names, no bucket with slots beyond them, every bucket counting as many
    /// messages as it files (the total every message), each slot's cost one its messages can
    /// have, and the dense slices exactly those of more than [`DENSE_SLICE`] messages, with
    /// runs covering their items and minute buckets counting them. Whether each message lies
    /// in its slice and slot, and the counts are right, only the messages can tell, and the
    /// rollup is taken without reading them (they may be decoded on demand): a misfit there
    /// costs wrong counts, never a panic (`slot_of`, `TimeBuckets::update`), and `commlog audit
    /// --deep` finds it.
    pub(crate) fn fit(
        mut self,
        messages: &MessageTable,
        names: usize,
        slices: RangeInclusive<i64>,
    ) -> Result<MessageRollup, String> {
        self.type_ordinals = vec![u32::MAX; names];
        for (ordinal, &name) in self.types.iter().enumerate() {
            match self.type_ordinals.get_mut(name as usize) {
                None => return Err(format!("message type {name} is not a name")),
                Some(slot) if *slot != u32::MAX => {
                    return Err(format!("message type {name} is listed twice"));
                }
                Some(slot) => *slot = ordinal as u32,
            }
        }
        // As long as the fold makes it: up to the largest type's id.
        let used = self.types.iter().max().map_or(0, |&name| name as usize + 1);
        self.type_ordinals.truncate(used);
        let slots = self.types.len() * Channel::ALL.len();
        self.buckets.check_fits(
            messages.len(),
            slices,
            |_, _| Ok(()),
            |bucket, items| bucket.check_fits(slots, items),
        )?;
        // The first and last slice hold messages of their times, each of a listed type: the
        // rollup spans no more than the messages' times (a query over all of them, or a view
        // by day, reads no more buckets than over the facts). Two slices' messages: a few
        // chunks of records decoded, on demand.
        let ends = self
            .buckets
            .slice_range()
            .map_or(Vec::new(), |(first, last)| {
                if first == last {
                    vec![first]
                } else {
                    vec![first, last]
                }
            });
        for slice in ends {
            let fits = self.buckets.items_of(slice).is_none_or(|items| {
                let fits = |item: u32| {
                    let state = &messages[item as usize];
                    state.sent_ms.div_euclid(SLICE_MS) == slice && self.slot_of(state).is_some()
                };
                items
                    .try_for_each(|item| fits(item).then_some(()).ok_or(()))
                    .is_ok()
            });
            if !fits {
                return Err(format!(
                    "slice {slice}, at an end of the index, files messages of other times or \
                     types"
                ));
            }
        }
        for (slice, items) in self.buckets.slices() {
            let dense = self.minutes.get(&slice);
            if dense.is_some() != (items.len() > self.dense_slice) {
                return Err(format!(
                    "slice {slice} of {} messages is {}dense",
                    items.len(),
                    if dense.is_some() { "" } else { "not " }
                ));
            }
            if let Some(dense) = dense {
                let ordered = dense.starts.windows(2).all(|pair| pair[0] <= pair[1]);
                if dense.starts[0] != 0 || !ordered || dense.starts[RUNS] as usize != items.len() {
                    return Err(format!("the runs of dense slice {slice} do not cover it"));
                }
                if dense.buckets.len() != MINUTES {
                    return Err(format!(
                        "dense slice {slice} has {} minutes",
                        dense.buckets.len()
                    ));
                }
                let runs = Channel::ALL.len();
                for (minute, bucket) in dense.buckets.iter().enumerate() {
                    let filed = dense.starts[(minute + 1) * runs] - dense.starts[minute * runs];
                    bucket
                        .check_fits(slots, u64::from(filed))
                        .map_err(|reason| {
                            format!("minute {minute} of dense slice {slice}: {reason}")
                        })?;
                }
            }
        }
        if self.minutes.len() > self.buckets.slices().count() {
            return Err("a dense slice holds no message".to_string());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot's counts fill one cache line: the buckets are most of the indexes' memory.
    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<SlotCounts>(), 64);
        assert_eq!(std::mem::size_of::<Line>(), 64);
        assert_eq!(std::mem::align_of::<Line>(), 64);
    }

    /// Numbers below a bound, from the workload's generator seeded with `seed`.
    fn below(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut random = crate::workload::SplitMix64::new(seed);
        move |bound| random.int(0, bound - 1)
    }

    /// A filter of any channel or one, any of three types or one.
    fn random_filter(next: &mut impl FnMut(u64) -> u64) -> SlotFilter {
        SlotFilter {
            channel: (next(2) == 0).then(|| Channel::ALL[next(4) as usize]),
            message_type: if next(2) == 0 {
                TypeFilter::Only(next(3) as NameId)
            } else {
                TypeFilter::Any
            },
        }
    }

    /// The counts per (channel, type) the rollup gives for a range.
    fn counted(
        rollup: &MessageRollup,
        messages: &MessageTable,
        filter: SlotFilter,
        start_ms: i64,
        end_ms: i64,
    ) -> std::collections::BTreeMap<(Channel, NameId), Counts> {
        let mut counted = std::collections::BTreeMap::new();
        rollup.visit(
            messages,
            filter,
            start_ms,
            end_ms,
            |channel, name, counts| {
                counted
                    .entry((channel, name))
                    .or_insert_with(Counts::default)
                    .add(&counts.counts())
            },
        );
        counted
    }

    /// Built in one pass over messages sent mostly in order (runs within a slice, messages
    /// sent earlier than the one before, slices visited again later), the rollup holds the
    /// same items in the same order and answers as one made by adding the messages one by one.
    #[test]
    fn a_rollup_built_in_runs_equals_one_added_message_by_message() {
        use crate::event::UserId;
        use crate::money::Money;

        let mut next = below(7);
        let base_ms = 1_735_689_600_000_i64;
        let mut at_ms = base_ms;
        let mut messages = MessageTable::default();
        for _ in 0..3000 {
            at_ms = match next(10) {
                // Back by up to two slices.
                0 => (at_ms - next(2 * SLICE_MS as u64) as i64).max(base_ms),
                // The same time as the one before.
                1 => at_ms,
                _ => at_ms + next(40_000) as i64,
            };
            messages.push(MessageState::new(
                UserId(1),
                Channel::ALL[next(4) as usize],
                next(3) as NameId,
                Money::from_micros(i128::from(next(1000))),
                at_ms,
            ));
        }
        let span_ms = at_ms - base_ms;
        for dense_slice in [16, usize::MAX] {
            let built = MessageRollup::build_with(&messages, dense_slice);
            let mut added = MessageRollup::with_dense_slice(dense_slice);
            for index in 0..messages.len() {
                added.add(&messages, index as u32);
            }
            let slices = |rollup: &MessageRollup| {
                let mut slices: Vec<(i64, Vec<u32>)> = rollup
                    .buckets
                    .slices()
                    .map(|(slice, items)| (slice, items.get().to_vec()))
                    .collect();
                slices.sort();
                slices
            };
            assert_eq!(slices(&built), slices(&added));
            let mut dense: Vec<_> = built.minutes.keys().copied().collect();
            dense.sort();
            let mut dense_added: Vec<_> = added.minutes.keys().copied().collect();
            dense_added.sort();
            assert_eq!(dense, dense_added);
            assert_eq!(dense.is_empty(), dense_slice == usize::MAX);
            for slice in dense {
                assert_eq!(built.minutes[&slice].starts, added.minutes[&slice].starts);
            }
            for _ in 0..500 {
                let mut start_ms = base_ms - 1000 + next(span_ms as u64 + 2000) as i64;
                let mut end_ms = base_ms - 1000 + next(span_ms as u64 + 2000) as i64;
                if start_ms > end_ms {
                    std::mem::swap(&mut start_ms, &mut end_ms);
                }
                let filter = random_filter(&mut next);
                assert_eq!(
                    counted(&built, &messages, filter, start_ms, end_ms),
                    counted(&added, &messages, filter, start_ms, end_ms),
                    "{start_ms}..={end_ms}, {filter:?}"
                );
            }
            let all = SlotFilter {
                channel: None,
                message_type: TypeFilter::Any,
            };
            let totals =
                [&built, &added].map(|rollup| counted(rollup, &messages, all, i64::MIN, i64::MAX));
            assert_eq!(totals[0], totals[1]);
        }
    }

    /// Counts per (channel, type) from the rollup equal a count over every message, for
    /// windows cutting slices and minutes anywhere, with dense slices (minute buckets) and
    /// without, and with messages added and changed after the build.
    #[test]
    fn dense_and_quiet_slices_count_like_every_message() {
        use crate::event::UserId;
        use crate::money::Money;
        use crate::projection::names::ActionKind;
        use std::collections::BTreeMap;

        let mut next = below(5);
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
                2 => state.fold_action(7, ActionKind::Click, at_ms),
                3 => state.fold_action(8, ActionKind::Upgrade, at_ms),
                _ => state.fold_failed(9, at_ms),
            }
        };
        for dense_slice in [16, usize::MAX] {
            let mut messages = MessageTable::default();
            for _ in 0..300 {
                messages.push(new_message(&mut next));
            }
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
                let filter = random_filter(&mut next);
                let counted = counted(&rollup, &messages, filter, start_ms, end_ms);
                let mut expected: BTreeMap<(Channel, NameId), Counts> = BTreeMap::new();
                for state in messages.iter() {
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
            // Spend by range and channel, and totals by slot, are the sums of the slots'
            // counts of each range, over ranges that cut slices and minutes anywhere.
            for _ in 0..100 {
                let mut bounds: Vec<i64> = (0..1 + next(5))
                    .map(|_| base_ms - 1000 + next(span_ms + 2000) as i64)
                    .collect();
                bounds.sort_unstable();
                let ranges: Vec<(i64, i64)> = bounds
                    .windows(2)
                    .map(|pair| (pair[0], pair[1] - 1))
                    .chain([(bounds[0], bounds[bounds.len() - 1])])
                    .filter(|(start_ms, end_ms)| start_ms <= end_ms)
                    .collect();
                let filter = random_filter(&mut next);
                let mut expected_spend = BTreeMap::new();
                let mut expected_totals: BTreeMap<(Channel, NameId), SlotCounts> = BTreeMap::new();
                rollup.visit_ranges(
                    &messages,
                    filter,
                    ranges.iter().copied(),
                    |range, channel, message_type, counts| {
                        let (count, cost) = counts.spend();
                        let sums: &mut (u64, i128) =
                            expected_spend.entry((range, channel)).or_default();
                        sums.0 += count;
                        sums.1 += cost;
                        expected_totals
                            .entry((channel, message_type))
                            .or_default()
                            .add(counts);
                    },
                );
                let mut spend = BTreeMap::new();
                let mut totals = BTreeMap::new();
                rollup.spend_by_range(
                    &messages,
                    filter,
                    ranges.iter().copied(),
                    |range, channel, sums| {
                        assert_eq!(
                            spend.insert((range, channel), sums),
                            None,
                            "once a range and channel"
                        );
                    },
                    |channel, message_type, counts| {
                        assert_eq!(
                            totals.insert((channel, message_type), *counts),
                            None,
                            "once a slot"
                        );
                    },
                );
                assert_eq!(spend, expected_spend, "{ranges:?}, {filter:?}");
                assert_eq!(totals, expected_totals, "{ranges:?}, {filter:?}");
            }
        }
    }

    /// A rollup lacking a message's type (as one a snapshot held may, where the open cannot
    /// tell): a query finds the message in no slot, and the fold gives the type an ordinal
    /// when the message changes, or when its slice becomes dense; nothing panics or reserves
    /// memory for a slot beyond the types.
    #[test]
    fn a_message_of_a_type_the_rollup_lacks_is_read_and_changed_without_a_panic() {
        use crate::event::UserId;
        use crate::money::Money;
        use crate::projection::names::ActionKind;

        let base_ms = 1_735_689_600_000_i64;
        let mut messages = MessageTable::default();
        for index in 0..40 {
            messages.push(MessageState::new(
                UserId(1),
                Channel::ALL[index % 4],
                (index % 2) as NameId,
                Money::from_micros(1_000),
                base_ms + index as i64 * 1_000,
            ));
        }
        let mut rollup = MessageRollup::build_with(&messages, 48);
        assert_eq!(rollup.types, [0, 1]);
        let drop_type_1 = |rollup: &mut MessageRollup| {
            rollup.types.pop();
            rollup.type_ordinals[1] = u32::MAX;
        };
        drop_type_1(&mut rollup);
        let all = SlotFilter {
            channel: None,
            message_type: TypeFilter::Any,
        };
        let counted = counted(&rollup, &messages, all, base_ms + 1_500, base_ms + 30_000);
        assert!(counted.keys().all(|(_, name)| *name == 0), "{counted:?}");
        let old_kind = kind_of(&messages[1]);
        messages[1].fold_action(7, ActionKind::Upgrade, base_ms + 5_000);
        rollup.change_kind(&messages[1], old_kind);
        assert_eq!(rollup.types, [0, 1], "the type has an ordinal again");
        drop_type_1(&mut rollup);
        for index in 40..60 {
            messages.push(MessageState::new(
                UserId(2),
                Channel::Sms,
                0,
                Money::from_micros(0),
                base_ms + index * 1_000,
            ));
            rollup.add(&messages, index as u32);
        }
        assert!(!rollup.minutes.is_empty(), "the slice became dense");
        assert_eq!(rollup.types, [0, 1], "the type has an ordinal again");
        assert!(
            rollup.buckets.total().slots.len() <= rollup.types.len() * Channel::ALL.len(),
            "no slot beyond the types"
        );
    }
}
