//! The time index: sums of any kind over items filed by a time, read over a time range at a
//! cost independent of the number of items. Buckets have [`LEVELS`] levels: slices of
//! [`SLICE_MS`], and each level up [`LEVEL_RATIOS`] buckets of the one below (hours, quarter
//! days, days). A range is read as whole buckets of the coarsest level that fits, the buckets of
//! each finer level at the two ends of those, and the items of the (at most two) slices the
//! range cuts, which keeps the edges exact to the millisecond. Each slice keeps its items sorted
//! by time (or in runs each sorted by time: the rollup's dense slices, by minute and channel), so
//! a cut slice is read as its bucket less the items outside the range, or as the items inside it,
//! whichever are fewer ([`sum_cut`]).
//!
//! [`TimeBuckets`] serves the message rollup (`rollup.rs`) and the outcome sums
//! (`attribution.rs`).

use std::collections::HashMap;
use std::ops::{Range, RangeInclusive};
use std::sync::{Arc, OnceLock};

use crate::codec;
use crate::projection::id_map::IdMap;
use crate::snapshot::{CrcSpan, MappedSnapshot};

/// Milliseconds in a slice, the finest bucket: ten minutes, so that the edge scans of a window
/// visit few items.
pub(crate) const SLICE_MS: i64 = 600_000;
/// How many buckets of each level make one of the next: 6 slices an hour, 6 hours a quarter
/// day, 4 quarters a day. A range unaligned at both ends reads at most 5 + 5 buckets of each
/// level below the day, and its whole days.
pub(crate) const LEVEL_RATIOS: [i64; 3] = [6, 6, 4];
/// Bucket levels: slices, hours, quarter days, days.
pub(crate) const LEVELS: usize = LEVEL_RATIOS.len() + 1;

/// Milliseconds in a minute, the buckets inside a dense slice (one whose items are many).
const MINUTE_MS: i64 = 60_000;
/// Minutes in a slice.
pub(crate) const MINUTES: usize = (SLICE_MS / MINUTE_MS) as usize;

/// The minute of its slice that `at_ms` falls in.
pub(crate) fn minute_of(at_ms: i64) -> usize {
    (at_ms.rem_euclid(SLICE_MS) / MINUTE_MS) as usize
}

/// The first and last millisecond of `minute` of `slice`.
pub(crate) fn minute_span_ms(slice: i64, minute: usize) -> (i64, i64) {
    let first_ms = slice * SLICE_MS + minute as i64 * MINUTE_MS;
    (first_ms, first_ms + MINUTE_MS - 1)
}

/// The minutes of `slice` as two bit sets: those wholly inside `[start_ms, end_ms]`, and those
/// the range cuts.
pub(crate) fn split_minutes(slice: i64, start_ms: i64, end_ms: i64) -> (u16, u16) {
    let (mut inside, mut cuts) = (0u16, 0u16);
    for minute in 0..MINUTES {
        let (first_ms, last_ms) = minute_span_ms(slice, minute);
        if start_ms <= first_ms && last_ms <= end_ms {
            inside |= 1 << minute;
        } else if start_ms <= last_ms && first_ms <= end_ms {
            cuts |= 1 << minute;
        }
    }
    (inside, cuts)
}

/// The minutes in a bit set of [`split_minutes`], in order.
pub(crate) fn minutes_in(set: u16) -> impl Iterator<Item = usize> {
    (0..MINUTES).filter(move |minute| set & (1 << minute) != 0)
}

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
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TimeBuckets<B> {
    total: B,
    /// Buckets by key, per level (slices, hours, quarter days, days).
    levels: [IdMap<i64, B>; LEVELS],
    /// Each slice's items, in the order its filer keeps (see [`TimeBuckets::insert`]), for the
    /// scans at a range's edges.
    slice_items: IdMap<i64, SliceItems>,
    /// First and last slice holding an item.
    slice_range: Option<(i64, i64)>,
}

/// One slice's items: a list, or, as an index read from a mapped snapshot holds them until
/// they are used, a range of its bytes (a u32 LE each) decoded on first use. Only a range's
/// edges and the fold read a slice's items, so an open that reads an index need not decode
/// them all: at 100 M messages, most of the message rollup's bytes. As small as the list alone.
pub(crate) enum SliceItems {
    Decoded(Vec<u32>),
    Mapped(Box<MappedSlice>),
}

/// A slice's items in a mapped snapshot, and once decoded, the items.
pub(crate) struct MappedSlice {
    at: MappedItems,
    decoded: OnceLock<Vec<u32>>,
}

/// Where a slice's items lie in a mapped snapshot, and how the load's reading hashed them.
#[derive(Debug, Clone)]
pub(crate) struct MappedItems {
    snapshot: Arc<MappedSnapshot>,
    range: Range<usize>,
    crc: CrcSpan,
}

impl MappedItems {
    /// The items' bytes, after checking that they hash as they did when loaded.
    fn checked_bytes(&self) -> &[u8] {
        (self.snapshot).checked(self.range.clone(), self.crc, "a slice's items")
    }

    /// The items' bytes where they lie in the mapped file, unchecked.
    #[cfg(test)]
    pub(crate) fn file_bytes(&self) -> &[u8] {
        self.snapshot.bytes_at(self.range.clone())
    }

    /// How many items.
    pub(crate) fn len(&self) -> usize {
        self.range.len() / 4
    }

    /// The items, after checking their bytes; their pages of the file go back.
    pub(crate) fn decode(&self) -> Vec<u32> {
        let items = codec::u32_items(self.checked_bytes()).collect();
        self.snapshot.give_back(self.range.clone());
        items
    }
}

impl Default for SliceItems {
    fn default() -> SliceItems {
        SliceItems::Decoded(Vec::new())
    }
}

impl SliceItems {
    /// How many items the slice holds (none decoded for it).
    pub(crate) fn len(&self) -> usize {
        match self {
            SliceItems::Decoded(items) => items.len(),
            SliceItems::Mapped(mapped) => mapped.at.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items, decoded on first use.
    pub(crate) fn get(&self) -> &[u32] {
        match self {
            SliceItems::Decoded(items) => items,
            SliceItems::Mapped(mapped) => mapped.decoded.get_or_init(|| mapped.at.decode()),
        }
    }

    /// The items, to change: decoded first if still mapped.
    pub(crate) fn get_mut(&mut self) -> &mut Vec<u32> {
        if let SliceItems::Mapped(mapped) = self {
            let items = match mapped.decoded.take() {
                Some(items) => items,
                None => mapped.at.decode(),
            };
            *self = SliceItems::Decoded(items);
        }
        match self {
            SliceItems::Decoded(items) => items,
            SliceItems::Mapped(_) => unreachable!("decoded above"),
        }
    }

    /// Hands `each` every item in order until it fails, without decoding the slice for good:
    /// from the mapped bytes if not decoded yet, as they lie. For the checks of an index just
    /// read: its bytes are those the load's checksum took (judged before the checks), and if
    /// they changed since, a decoding of them finds it ([`MappedSnapshot::checked`]), so no
    /// bytes the checksum did not take are ever used for an answer.
    pub(crate) fn try_for_each<E>(&self, each: impl FnMut(u32) -> Result<(), E>) -> Result<(), E> {
        match self.mapped() {
            None => self.get().iter().copied().try_for_each(each),
            Some(at) => codec::u32_items(at.snapshot.bytes_at(at.range.clone())).try_for_each(each),
        }
    }

    /// Where the items lie, if still to decode from a mapped snapshot.
    fn mapped(&self) -> Option<&MappedItems> {
        match self {
            SliceItems::Mapped(mapped) if mapped.decoded.get().is_none() => Some(&mapped.at),
            _ => None,
        }
    }

    /// Puts in place the items decoded apart ([`MappedItems::decode`]), unless they were
    /// decoded meanwhile.
    fn install(&self, items: Vec<u32>) {
        if let SliceItems::Mapped(mapped) = self {
            let _ = mapped.decoded.set(items);
        }
    }
}

impl std::fmt::Debug for SliceItems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mapped() {
            None => self.get().fmt(f),
            Some(_) => write!(f, "{} items not decoded", self.len()),
        }
    }
}

/// Two slices' items are equal when they hold the same items, decoded or not.
impl PartialEq for SliceItems {
    fn eq(&self, other: &SliceItems) -> bool {
        self.get() == other.get()
    }
}

impl Eq for SliceItems {}

/// As a `Vec<u32>`: its length, then each item; items still mapped are copied as they lie,
/// after checking them.
impl bincode::Encode for SliceItems {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        use bincode::enc::write::Writer;
        match self.mapped() {
            Some(mapped) => {
                let bytes = mapped.checked_bytes();
                ((bytes.len() / 4) as u64).encode(encoder)?;
                encoder.writer().write(bytes)
            }
            None => self.get().encode(encoder),
        }
    }
}

/// Where a time index is decoded from: a reading of a mapped snapshot, whose slices' items
/// then stay there until used ([`SliceItems`]), or none (`()`: every item decoded).
pub(crate) trait ItemsSource {
    fn mapped(&self) -> Option<&MappedReading<'_>>;
}

impl ItemsSource for () {
    fn mapped(&self) -> Option<&MappedReading<'_>> {
        None
    }
}

/// A reading of a mapped snapshot: the file, and the crc32 the reading has taken of its bytes
/// up to an offset in the file (a [`CrcSpan`] of a range is those at its two ends), asked at
/// offsets that never go back.
pub(crate) struct MappedReading<'a> {
    pub snapshot: Arc<MappedSnapshot>,
    pub crc_at: &'a dyn Fn(usize) -> u32,
}

impl ItemsSource for Option<MappedReading<'_>> {
    fn mapped(&self) -> Option<&MappedReading<'_>> {
        self.as_ref()
    }
}

/// Reads a slice's items as [`codec::decode_u32_list`] does, but, from a reading of a mapped
/// snapshot (the decoder's context) whose reader holds the file's bytes, leaves them there, with
/// how the reading hashed them.
fn decode_slice_items<D: bincode::de::Decoder<Context: ItemsSource>>(
    decoder: &mut D,
) -> Result<SliceItems, bincode::error::DecodeError> {
    use bincode::de::read::Reader;
    let Some(snapshot) = (decoder.context().mapped()).map(|reading| Arc::clone(&reading.snapshot))
    else {
        return codec::decode_u32_list(decoder).map(SliceItems::Decoded);
    };
    let len = codec::decode_bounded_len(decoder, 4)?;
    let peeked = decoder
        .reader()
        .peek_read(len * 4)
        .map(|bytes| (snapshot.range_of(bytes)).ok_or_else(|| codec::u32_items(bytes).collect()));
    let items = match peeked {
        Some(Ok(range)) => {
            let crc_at = decoder.context().mapped().expect("a reading").crc_at;
            let crc = CrcSpan {
                before: crc_at(range.start),
                after: crc_at(range.end),
            };
            SliceItems::Mapped(Box::new(MappedSlice {
                at: MappedItems {
                    snapshot,
                    range,
                    crc,
                },
                decoded: OnceLock::new(),
            }))
        }
        Some(Err(items)) => SliceItems::Decoded(items),
        None => {
            let items = (0..len).map(|_| <u32 as bincode::Decode<_>>::decode(decoder));
            return items
                .collect::<Result<Vec<u32>, _>>()
                .map(SliceItems::Decoded);
        }
    };
    codec::consume_snapshot_bytes(decoder, len * 4)?;
    Ok(items)
}

/// A piece of a range: a bucket wholly inside it, or a slice it cuts.
pub(crate) enum Piece<'a, B> {
    Whole(&'a B),
    Edge(EdgeSlice<'a, B>),
}

/// One slice a range cuts: its bucket, its items, and where those inside the range lie.
pub(crate) struct EdgeSlice<'a, B> {
    pub slice: i64,
    /// Every item of the slice, in the order its filer keeps: when sorted by time, those
    /// before, inside and after the range lie in a row ([`EdgeSlice::inside`]).
    pub items: &'a [u32],
    pub bucket: &'a B,
    /// The range, `[start_ms, end_ms]`.
    pub range_ms: (i64, i64),
}

impl<B> EdgeSlice<'_, B> {
    /// Where the items inside the range lie in `items`, if sorted by time; `time_of` gives an
    /// item's time.
    pub(crate) fn inside(&self, time_of: impl Fn(u32) -> i64) -> Range<usize> {
        let span_ms = (self.slice * SLICE_MS, (self.slice + 1) * SLICE_MS - 1);
        cut(self.items, span_ms, self.range_ms, time_of)
    }
}

/// Adds to `sums` the items inside a range of a cut slice or minute, whose items are all
/// counted in `bucket`: `runs` are those items, each run sorted by time, with where those inside
/// the range lie in it. Item by item, or as `bucket` less the items outside the range, whichever
/// are fewer. The closures receive `sums` to add to. `runs` may leave out items that `sums` does
/// not take at all (which `add_bucket` then adds nothing of).
pub(crate) fn sum_cut<S, B>(
    sums: &mut S,
    bucket: &B,
    runs: &[(&[u32], Range<usize>)],
    add_bucket: impl Fn(&mut S, &B),
    add_item: impl Fn(&mut S, u32),
    subtract_item: impl Fn(&mut S, u32),
) {
    let inside: usize = runs.iter().map(|(_, inside)| inside.len()).sum();
    let all: usize = runs.iter().map(|(items, _)| items.len()).sum();
    if inside <= all - inside {
        for (items, inside) in runs {
            for &item in &items[inside.clone()] {
                add_item(sums, item);
            }
        }
    } else {
        add_bucket(sums, bucket);
        for (items, inside) in runs {
            for &item in items[..inside.start].iter().chain(&items[inside.end..]) {
                subtract_item(sums, item);
            }
        }
    }
}

/// Where the items with a time in `[start_ms, end_ms]` lie in `items`, which are sorted by
/// time and all fall in `span_ms`. Every probe reads an item's record, so a bound outside the
/// span is not searched, and a bound inside it is searched outward from where it would fall if
/// the items were spread evenly over the span: a few probes, on neighbouring records.
pub(crate) fn cut(
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

/// Hands `each` every minute of `slice` in `cuts` (a set of [`split_minutes`]): the minute, its
/// items (`items[starts[minute]..starts[minute + 1]]` of the slice's sorted `items`) and where
/// those with a time in `[start_ms, end_ms]` lie among them ([`cut`]).
pub(crate) fn cut_minutes(
    slice: i64,
    items: &[u32],
    starts: &[u32; MINUTES + 1],
    cuts: u16,
    window: (i64, i64),
    time_of: impl Fn(u32) -> i64,
    mut each: impl FnMut(usize, &[u32], Range<usize>),
) {
    for minute in minutes_in(cuts) {
        let items = &items[starts[minute] as usize..starts[minute + 1] as usize];
        let inside = cut(items, minute_span_ms(slice, minute), window, &time_of);
        each(minute, items, inside);
    }
}

/// `items.partition_point(before)`, found by galloping outward from `guess` and then
/// bisecting the bracket: O(log d) probes for an answer d items from the guess.
pub(crate) fn partition_point_near<T: Copy>(
    items: &[T],
    guess: usize,
    before: impl Fn(T) -> bool,
) -> usize {
    let guess = guess.min(items.len().saturating_sub(1));
    let bisect =
        |low: usize, high: usize| low + items[low..high].partition_point(|item| before(*item));
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
    /// Files item `index` at `at_ms` and applies `change` to every bucket it counts in. The
    /// slice's items are kept sorted by `order`, which gives an item's sort key (the new item's
    /// too); filers that read slices by time order by (time, index).
    pub(crate) fn insert<K: Ord>(
        &mut self,
        index: u32,
        at_ms: i64,
        order: impl Fn(u32) -> K,
        change: impl FnMut(&mut B),
    ) {
        let keys = bucket_keys(at_ms);
        let items = self.slice_items.entry(keys[0]).or_default().get_mut();
        // Items mostly arrive in order.
        let key = order(index);
        if items.last().is_none_or(|&last| order(last) < key) {
            items.push(index);
        } else {
            let position = items.partition_point(|&other| order(other) < key);
            items.insert(position, index);
        }
        self.count_in_buckets(keys, change);
    }

    /// Files the items `run`, all filed at times in the slice of `at_ms`, sorted by (time,
    /// index) and after the slice's items, and applies `change` to every bucket they count in
    /// once: what [`insert`](Self::insert) ordering by (time, index) does item by item, for a
    /// run summed by the caller.
    pub(crate) fn insert_run(&mut self, at_ms: i64, run: Range<u32>, change: impl FnMut(&mut B)) {
        let keys = bucket_keys(at_ms);
        (self.slice_items.entry(keys[0]).or_default().get_mut()).extend(run);
        self.count_in_buckets(keys, change);
    }

    fn count_in_buckets(&mut self, keys: [i64; LEVELS], mut change: impl FnMut(&mut B)) {
        self.slice_range = Some(match self.slice_range {
            None => (keys[0], keys[0]),
            Some((first, last)) => (first.min(keys[0]), last.max(keys[0])),
        });
        change(&mut self.total);
        for (level, key) in keys.into_iter().enumerate() {
            change(self.levels[level].entry(key).or_default());
        }
    }

    /// Applies `change` to every bucket an item filed at `at_ms` counts in. Each of them
    /// exists once the item is filed, but an index a snapshot held may file an item in another
    /// slice than its time's where the open cannot tell (`snapshot::DecodedIndexes::fit`
    /// checks what the facts it loaded show): a bucket missing then takes no change, so that
    /// the misfit costs wrong sums (which `commlog audit --deep` finds), never a panic.
    pub(crate) fn update(&mut self, at_ms: i64, mut change: impl FnMut(&mut B)) {
        change(&mut self.total);
        for (level, key) in bucket_keys(at_ms).into_iter().enumerate() {
            if let Some(bucket) = self.levels[level].get_mut(&key) {
                change(bucket);
            }
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
                        items: items.get(),
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

    /// The items of `slice`, in their order.
    pub(crate) fn slice_items(&self, slice: i64) -> &[u32] {
        self.slice_items.get(&slice).map_or(&[], SliceItems::get)
    }

    /// The items of `slice`, to be put in another order (which later inserts must keep).
    pub(crate) fn slice_items_mut(&mut self, slice: i64) -> &mut [u32] {
        self.slice_items
            .get_mut(&slice)
            .map_or(&mut [], |items| items.get_mut().as_mut_slice())
    }

    /// The items of `slice` (decoded or not), if it holds any.
    pub(crate) fn items_of(&self, slice: i64) -> Option<&SliceItems> {
        self.slice_items.get(&slice)
    }

    /// Every slice holding items, with its items (decoded or not), in no order.
    pub(crate) fn slices(&self) -> impl Iterator<Item = (i64, &SliceItems)> {
        self.slice_items
            .iter()
            .map(|(slice, items)| (*slice, items))
    }

    /// The slices whose items are still in a mapped snapshot, in no order.
    pub(crate) fn mapped_slices(&self) -> Vec<i64> {
        (self.slice_items.iter())
            .filter(|(_, items)| items.mapped().is_some())
            .map(|(slice, _)| *slice)
            .collect()
    }

    /// Where `slice`'s items lie, if still in a mapped snapshot.
    pub(crate) fn mapped_items(&self, slice: i64) -> Option<MappedItems> {
        self.slice_items.get(&slice)?.mapped().cloned()
    }

    /// Puts in place `slice`'s items decoded apart ([`MappedItems::decode`]), unless they were
    /// decoded meanwhile.
    pub(crate) fn install_items(&self, slice: i64, items: Vec<u32>) {
        if let Some(slice_items) = self.slice_items.get(&slice) {
            slice_items.install(items);
        }
    }

    /// The first and last slice holding items, if any.
    pub(crate) fn slice_range(&self) -> Option<(i64, i64)> {
        self.slice_range
    }

    /// The first and last millisecond of the slices holding items, if any.
    pub(crate) fn span_ms(&self) -> Option<(i64, i64)> {
        self.slice_range
            .map(|(first, last)| (first * SLICE_MS, (last + 1) * SLICE_MS - 1))
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

/// A snapshot holds a time index as its total, each level's buckets and each slice's items as
/// lists sorted by key, then its first and last slice (docs/FORMAT.md, "Indexes").
impl<B: bincode::Encode> bincode::Encode for TimeBuckets<B> {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.total.encode(encoder)?;
        for level in &self.levels {
            codec::encode_sorted_map(level, encoder)?;
        }
        codec::encode_sorted_map(&self.slice_items, encoder)?;
        self.slice_range.encode(encoder)
    }
}

/// A bucket as a snapshot holds it: the fewest bytes one takes, so that a count of buckets read
/// from a snapshot is bounded by the bytes left before anything is reserved for them.
pub(crate) trait EncodedBucket {
    const ENCODED_BYTES_MIN: usize;
}

/// Bytes of a slice's entry of `slice_items` at the least: its key, and its list's length.
const SLICE_ITEMS_ENTRY_BYTES_MIN: usize = 8 + 8;

impl<Context: ItemsSource, B: bincode::Decode<Context> + EncodedBucket> bincode::Decode<Context>
    for TimeBuckets<B>
{
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<TimeBuckets<B>, bincode::error::DecodeError> {
        let total = B::decode(decoder)?;
        let mut levels: [IdMap<i64, B>; LEVELS] = Default::default();
        for level in &mut levels {
            // An entry: the key, then the bucket.
            *level = codec::decode_sorted_map(decoder, 8 + B::ENCODED_BYTES_MIN, |decoder| {
                B::decode(decoder)
            })?;
        }
        let slice_items =
            codec::decode_sorted_map(decoder, SLICE_ITEMS_ENTRY_BYTES_MIN, decode_slice_items)?;
        Ok(TimeBuckets {
            total,
            levels,
            slice_items,
            slice_range: Option::decode(decoder)?,
        })
    }
}

impl<B: EncodedBucket> TimeBuckets<B> {
    /// Reads past a time index a snapshot holds without keeping it, each bucket by
    /// `skip_bucket`: every length is refused as [`TimeBuckets::decode`] refuses it (more
    /// entries than the bytes left can hold), nothing else is checked.
    pub(crate) fn skip(
        reader: &mut codec::SnapshotReader<'_>,
        mut skip_bucket: impl FnMut(&mut codec::SnapshotReader<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        skip_bucket(reader)?;
        for _ in 0..LEVELS {
            for _ in 0..reader.decode_list_len(8 + B::ENCODED_BYTES_MIN)? {
                reader.decode::<i64>()?;
                skip_bucket(reader)?;
            }
        }
        for _ in 0..reader.decode_list_len(SLICE_ITEMS_ENTRY_BYTES_MIN)? {
            reader.decode::<i64>()?;
            let items = reader.decode_list_len(4)?;
            reader.skip(items * 4);
        }
        reader.decode::<Option<(i64, i64)>>()?;
        Ok(())
    }
}

/// The slices of the times in `[first_ms, last_ms]` (a snapshot's facts' range): every slice
/// key an index over those facts can hold, and so every key whose buckets' keys and times are
/// computed without overflow.
pub(crate) fn slices_of(first_ms: i64, last_ms: i64) -> RangeInclusive<i64> {
    first_ms.div_euclid(SLICE_MS)..=last_ms.div_euclid(SLICE_MS)
}

impl<B> TimeBuckets<B> {
    /// Checks that an index a snapshot held fits the `len` items it files: every slice key
    /// within `slices` (the slices of the facts' times), each item filed once, every slice with
    /// items has its bucket at every level and no bucket lacks items, the first and last slice
    /// are those holding items, `items` accepts each slice's items (the filer checks them
    /// against the facts it can read: their times in the slice, their order), and `bucket`
    /// each bucket, given how many items the index files in it. Whether the sums are right only
    /// a fold can tell (`commlog audit --deep`).
    pub(crate) fn check_fits(
        &self,
        len: usize,
        slices: RangeInclusive<i64>,
        mut items: impl FnMut(i64, &SliceItems) -> Result<(), String>,
        mut bucket: impl FnMut(&B, u64) -> Result<(), String>,
    ) -> Result<(), String> {
        // One bit an item.
        let mut filed = vec![0u64; len.div_ceil(64)];
        // Per level, the items filed in each bucket.
        let mut parents: [HashMap<i64, u64>; LEVELS] = Default::default();
        for (&slice, slice_items) in &self.slice_items {
            if !slices.contains(&slice) {
                return Err(format!(
                    "slice {slice} lies outside the facts' slices {}..={}",
                    slices.start(),
                    slices.end()
                ));
            }
            if slice_items.is_empty() {
                return Err(format!("slice {slice} is listed without items"));
            }
            slice_items.try_for_each(|item| {
                if item as usize >= len {
                    return Err(format!("slice {slice} files item {item} of {len}"));
                }
                let (word, bit) = (item as usize / 64, 1u64 << (item % 64));
                if filed[word] & bit != 0 {
                    return Err(format!("item {item} is filed twice"));
                }
                filed[word] |= bit;
                Ok(())
            })?;
            items(slice, slice_items)?;
            for (level, key) in bucket_keys(slice * SLICE_MS).into_iter().enumerate() {
                *parents[level].entry(key).or_default() += slice_items.len() as u64;
            }
        }
        let filed_count: u64 = filed.iter().map(|word| u64::from(word.count_ones())).sum();
        if filed_count != len as u64 {
            return Err(format!("{filed_count} items of {len} are filed"));
        }
        for (level, keys) in parents.iter().enumerate() {
            let buckets = &self.levels[level];
            if buckets.len() != keys.len() || keys.keys().any(|key| !buckets.contains_key(key)) {
                return Err(format!(
                    "the buckets of level {level} are not those of the slices with items"
                ));
            }
        }
        let range = self.slice_items.keys().fold(None, |range, &slice| {
            Some(match range {
                None => (slice, slice),
                Some((first, last)) => (slice.min(first), slice.max(last)),
            })
        });
        if range != self.slice_range {
            return Err(format!(
                "the first and last slice are {:?}, the slices with items span {range:?}",
                self.slice_range
            ));
        }
        bucket(&self.total, len as u64)?;
        for (level, buckets) in self.levels.iter().enumerate() {
            for (key, level_bucket) in buckets {
                bucket(level_bucket, parents[level][key])?;
            }
        }
        Ok(())
    }

    /// Every bucket, mutably (the total, then each level's, in no order).
    pub(crate) fn buckets_mut(&mut self) -> impl Iterator<Item = &mut B> {
        std::iter::once(&mut self.total)
            .chain(self.levels.iter_mut().flat_map(|level| level.values_mut()))
    }

    /// The total over every item.
    pub(crate) fn total(&self) -> &B {
        &self.total
    }

    /// Each level's bucket by key, for comparing two indexes.
    pub(crate) fn levels(&self) -> &[IdMap<i64, B>; LEVELS] {
        &self.levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{assert_changed_on_disk, write_in_place};

    /// A bucket of the tests' indexes: how many items it counts.
    #[derive(Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
    struct Count(u64);

    impl EncodedBucket for Count {
        const ENCODED_BYTES_MIN: usize = 8;
    }

    /// A slice's items take no more memory than their list would: an index built by the
    /// fold costs nothing for the slices an index read from a snapshot leaves mapped.
    #[test]
    fn a_slice_of_items_is_as_small_as_its_list() {
        assert_eq!(size_of::<SliceItems>(), size_of::<Vec<u32>>());
    }

    /// A time index read from a mapped snapshot leaves each slice's items there: each is
    /// decoded on first use, by a change, or apart and put in place, and holds the items
    /// written; the index writes the same bytes whatever is decoded; bytes changed on disk
    /// since the read are never taken.
    #[test]
    fn slices_read_from_a_mapped_snapshot_are_decoded_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let time_of = |item: u32| i64::from(item) * 7_000;
        let mut written = TimeBuckets::<Count>::default();
        // 7 slices of about 86 items, filed out of order.
        for item in (0..600).rev() {
            let order = |other: u32| (time_of(other), other);
            written.insert(item, time_of(item), order, |bucket| bucket.0 += 1);
        }
        let path = dir.path().join("snapshot-600");
        let (snapshot, len) = MappedSnapshot::of_part(&path, 28, &written);
        // Read from `bytes` (the file's, or a copy), as part of a reading of the file if
        // `mapped`.
        let read_from = |bytes: &[u8], mapped: Option<Arc<MappedSnapshot>>| -> TimeBuckets<Count> {
            let crc_at = crate::snapshot::running_crc(snapshot.bytes());
            let reading = mapped.map(|snapshot| MappedReading {
                snapshot,
                crc_at: &crc_at,
            });
            let mut reader = codec::SnapshotReader::new(&bytes[28..28 + len]);
            reader.decode_passing_in(len, |_| {}, reading).unwrap()
        };
        let read = |mapped| read_from(snapshot.bytes(), mapped);
        let bytes_of = |index: &TimeBuckets<Count>| {
            let mut bytes = Vec::new();
            codec::encode_snapshot_part(index, &mut bytes).unwrap();
            bytes
        };
        let mut slices: Vec<i64> = written.slices().map(|(slice, _)| slice).collect();
        slices.sort_unstable();
        assert_eq!(slices.len(), 7);
        assert!(read(None).mapped_slices().is_empty());
        // Bytes held elsewhere than in the file are decoded as they are read.
        let copy = snapshot.bytes().to_vec();
        let elsewhere = read_from(&copy, Some(Arc::clone(&snapshot)));
        assert!(elsewhere.mapped_slices().is_empty());
        assert_eq!(elsewhere, written);

        let lazy = read(Some(Arc::clone(&snapshot)));
        let mut mapped = lazy.mapped_slices();
        mapped.sort_unstable();
        assert_eq!(mapped, slices);
        for (slice, items) in lazy.slices() {
            assert_eq!(items.len(), written.slice_items(slice).len());
        }
        assert_eq!(bytes_of(&lazy), bytes_of(&written));
        assert_eq!(
            lazy.mapped_slices().len(),
            7,
            "counted and written, none decoded"
        );
        assert_eq!(lazy.slice_items(slices[0]), written.slice_items(slices[0]));
        let apart = lazy.mapped_items(slices[1]).unwrap().decode();
        lazy.install_items(slices[1], apart);
        assert_eq!(lazy.slice_items(slices[1]), written.slice_items(slices[1]));
        assert_eq!(lazy.mapped_slices().len(), 5);
        assert_eq!(bytes_of(&lazy), bytes_of(&written));
        assert_eq!(lazy, written);
        assert!(
            lazy.mapped_slices().is_empty(),
            "compared, every slice is decoded"
        );

        // A change to a slice still mapped decodes it first.
        let (mut lazy, mut eager) = (read(Some(Arc::clone(&snapshot))), read(None));
        for index in [&mut lazy, &mut eager] {
            // Item 600 at item 3's time, after it.
            let order = |other: u32| (time_of(if other == 600 { 3 } else { other }), other);
            index.insert(600, time_of(3), order, |bucket| bucket.0 += 1);
        }
        assert_eq!(lazy.slice_items(slices[0])[..5], [0, 1, 2, 3, 600]);
        assert_eq!(lazy.mapped_slices().len(), 6);
        assert_eq!(lazy, eager);

        // A byte of a slice still mapped changes on disk: its items are never taken.
        let lazy = read(Some(Arc::clone(&snapshot)));
        let range = lazy.mapped_items(slices[3]).unwrap().range;
        write_in_place(&path, range.start + 1, 0x5A);
        assert_eq!(lazy.slice_items(slices[2]), written.slice_items(slices[2]));
        assert_changed_on_disk(&path, &["a slice's items"], || {
            lazy.slice_items(slices[3]).len()
        });
    }

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
            buckets.insert(
                index,
                time_of(index),
                |item| (time_of(item), item),
                |sum| *sum += 1,
            );
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

    /// An update at a time whose buckets an index lacks (an item a snapshot's index filed in
    /// another slice) changes the total and no bucket, and does not panic.
    #[test]
    fn an_update_where_no_bucket_is_changes_only_the_total() {
        let mut buckets: TimeBuckets<u64> = TimeBuckets::default();
        buckets.insert(0, 5 * SLICE_MS + 7, |item| item, |sum| *sum += 1);
        buckets.update(90 * 86_400_000, |sum| *sum += 10);
        assert_eq!(*buckets.total(), 11);
        assert!(
            buckets.levels().iter().all(|level| level.values().eq([&1])),
            "each level keeps the one bucket"
        );
    }
}
