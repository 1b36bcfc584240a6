//! Attribution: the rule that credits an outcome to a message ([`Facts::attribute`], last
//! touch), and the index that keeps each outcome's credit current as events arrive — the
//! message it is attributed to and the time since the user's last message before it — with
//! the outcome sums by time that the impact, channel and stats views read instead of visiting
//! every outcome. A slice of more than [`DENSE_SLICE`] outcomes also sums them per minute, so
//! that every sum over a range cutting it reads one cut minute outcome by outcome.
//!
//! Built on the first query that needs it (every outcome attributed once), not during replay;
//! from then on each fold updates it: a new outcome is attributed over its user's messages; a
//! message sent moves the gap of the user's later outcomes; a message whose delivery or first
//! engagement moves earlier (times only ever move earlier) is offered, as a candidate, to the
//! user's outcomes whose window holds its new time, and the outcomes it was credited with at
//! that level are attributed again from scratch.

use std::ops::{Range, RangeInclusive};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use bincode::Encode;

use crate::codec;
use crate::event::{Channel, UserId};
use crate::limits::MONEY_MICROS_MAX;
use crate::projection::id_map::IdMap;
use crate::projection::message_table::CHUNK_MESSAGES;
use crate::projection::names::{NameId, NameTable};
use crate::projection::outcome::OutcomeState;
use crate::projection::status::{MessageState, channel_of_byte};
use crate::projection::time_index::{
    ItemsSource, LEVEL_RATIOS, MINUTES, Piece, SLICE_MS, TimeBuckets, cut_minutes, minute_of,
    minutes_in, split_minutes, sum_cut,
};
use crate::projection::user_lists::within;
use crate::projection::{Facts, Projection};

/// How an outcome was credited to a message (docs/SEMANTICS.md, "Attribution").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionLevel {
    /// To the user's message most recently engaged with (first engagement) in the window.
    Engaged,
    /// No engagement in the window: to the message most recently delivered in it.
    Delivered,
}

/// The message an outcome is credited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attribution {
    /// Index of the message (its id minus one).
    pub message_index: u32,
    pub level: AttributionLevel,
}

impl Facts {
    /// Credits `outcome`, last touch, to the user's message whose first engagement is the
    /// latest within `[outcome − window_ms, outcome]` (inclusive); failing that, to the message
    /// whose delivery is the latest in that window; ties go to the higher id. Candidates are all
    /// of the user's messages, whatever a query's filter. Depends only on the final state of
    /// the log, so a late event may re-attribute an outcome.
    ///
    /// `lags` bounds (touch time − sent time) over every message, so only the user's messages
    /// sent where a touch in the window is possible are read (found by binary search).
    pub(crate) fn attribute(
        &self,
        outcome: &OutcomeState,
        window_ms: i64,
        lags: Lags,
    ) -> Option<Attribution> {
        let window_start_ms = outcome.at_ms.saturating_sub(window_ms);
        let in_window = |at_ms: i64| window_start_ms <= at_ms && at_ms <= outcome.at_ms;
        let mut engaged: Option<(i64, u32)> = None;
        let mut delivered: Option<(i64, u32)> = None;
        let states = self.message_states();
        // No touch anywhere: nothing to credit.
        let (first_sent_ms, last_sent_ms) = lags.sent_range(window_start_ms, outcome.at_ms)?;
        let user = UserId(outcome.user_id);
        let candidates = within(self.user_messages(user), first_sent_ms, last_sent_ms);
        self.prefetch_states(user, candidates.iter(), true);
        for &(_, index) in candidates {
            let state = &states[index as usize];
            if let Some(at_ms) = state
                .first_engagement_ms()
                .filter(|at_ms| in_window(*at_ms))
            {
                engaged = engaged.max(Some((at_ms, index)));
            }
            if let Some(at_ms) = state.delivered.get().filter(|at_ms| in_window(*at_ms)) {
                delivered = delivered.max(Some((at_ms, index)));
            }
        }
        match (engaged, delivered) {
            (Some((_, message_index)), _) => Some(Attribution {
                message_index,
                level: AttributionLevel::Engaged,
            }),
            (None, Some((_, message_index))) => Some(Attribution {
                message_index,
                level: AttributionLevel::Delivered,
            }),
            (None, None) => None,
        }
    }
}

/// The least and the greatest (touch time − sent time) of any message's delivery or first
/// engagement, where any message has one: a message can only have a touch in a window if its
/// sent time is within these lags of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub(crate) struct Lags {
    least_ms: i64,
    greatest_ms: i64,
}

impl Lags {
    /// No touch yet.
    pub(crate) const NONE: Lags = Lags {
        least_ms: i64::MAX,
        greatest_ms: i64::MIN,
    };

    /// Takes in the touches of a message sent at `sent_ms`.
    fn widen(&mut self, sent_ms: i64, touches: Touches) {
        for touch_ms in [touches.delivered, touches.engaged].into_iter().flatten() {
            let lag = touch_ms.saturating_sub(sent_ms);
            self.least_ms = self.least_ms.min(lag);
            self.greatest_ms = self.greatest_ms.max(lag);
        }
    }

    /// Whether these bounds hold every lag `other` holds (a wider bound only reads more).
    fn covers(self, other: Lags) -> bool {
        self.least_ms <= other.least_ms && self.greatest_ms >= other.greatest_ms
    }

    /// Widens these lags to take in `other`'s.
    fn take_in(&mut self, other: Lags) {
        self.least_ms = self.least_ms.min(other.least_ms);
        self.greatest_ms = self.greatest_ms.max(other.greatest_ms);
    }

    /// The sent times a message with a touch in `[start_ms, end_ms]` can have; `None` when
    /// no message has a touch.
    fn sent_range(self, start_ms: i64, end_ms: i64) -> Option<(i64, i64)> {
        (self.least_ms <= self.greatest_ms).then(|| {
            (
                start_ms.saturating_sub(self.greatest_ms),
                end_ms.saturating_sub(self.least_ms),
            )
        })
    }
}

/// What a report groups an outcome by: its name, and the channel, message type and level of
/// the message it is credited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OutcomeKey {
    pub outcome: NameId,
    pub credit: Option<(Channel, NameId, AttributionLevel)>,
}

/// The two ways the views over all users group outcomes, each outcome once in each: by its
/// name, and by the message it is credited to. Channel effectiveness needs the credit alone,
/// and impact without a channel or type filter needs the two apart, never together: they read
/// these groups, which a bucket holds far fewer of than keys (at 100 M about 5 names and 65
/// credits against 300 keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutcomeGroup {
    Name(NameId),
    Credit(Option<(Channel, NameId, AttributionLevel)>),
}

/// Where an outcome is filed in a bucket: its key's ordinal, its credit's ordinal and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Filed {
    key: u32,
    credit: u32,
    name: NameId,
}

/// Sums over outcomes: how many, their amounts, and the gaps since the last message of those
/// that have one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bincode::Encode)]
pub(crate) struct OutcomeSums {
    pub count: u64,
    pub amount_micros: i128,
    pub gap_count: u64,
    pub gap_ms: i128,
}

impl OutcomeSums {
    fn of(outcome: &OutcomeState, last_sent_ms: Option<i64>) -> OutcomeSums {
        OutcomeSums {
            count: 1,
            amount_micros: i128::from(outcome.amount_micros),
            gap_count: u64::from(last_sent_ms.is_some()),
            gap_ms: last_sent_ms
                .map_or(0, |sent_ms| i128::from(outcome.at_ms) - i128::from(sent_ms)),
        }
    }

    // The sums wrap rather than overflow: those the fold keeps never do (fewer than 2^32
    // outcomes, each amount within `MONEY_MICROS_MAX` and each gap within the times a frame
    // holds), but a bucket a snapshot held may sum other amounts than its outcomes' where the
    // open cannot tell (only a fold can: `commlog audit --deep`), and taking away what it does
    // not hold must not panic.

    pub(crate) fn add(&mut self, other: &OutcomeSums) {
        self.count = self.count.wrapping_add(other.count);
        self.amount_micros = self.amount_micros.wrapping_add(other.amount_micros);
        self.gap_count = self.gap_count.wrapping_add(other.gap_count);
        self.gap_ms = self.gap_ms.wrapping_add(other.gap_ms);
    }

    fn subtract(&mut self, other: &OutcomeSums) {
        self.count = self.count.wrapping_sub(other.count);
        self.amount_micros = self.amount_micros.wrapping_sub(other.amount_micros);
        self.gap_count = self.gap_count.wrapping_sub(other.gap_count);
        self.gap_ms = self.gap_ms.wrapping_sub(other.gap_ms);
    }

    /// Checks sums a snapshot held for `count` outcomes: that count, no more of them with a
    /// send before them, and amounts and gaps within what as many outcomes can sum to, so that
    /// no sum of buckets a query reads can overflow.
    fn check_fits(&self, count: u64) -> Result<(), String> {
        let most = |bound: i64| i128::from(count) * i128::from(bound);
        let fits = self.count == count
            && self.gap_count <= count
            && self.amount_micros.unsigned_abs() <= most(MONEY_MICROS_MAX).unsigned_abs()
            && (0..=most(TIME_SPAN_MS_MAX)).contains(&self.gap_ms);
        match fits {
            true => Ok(()),
            false => Err(format!(
                "it sums {} outcomes as no {count} outcomes can be summed",
                self.count
            )),
        }
    }
}

/// A bound on the gap between a send and an outcome: the span of the times a frame holds
/// (those of `DateTime<Utc>`, about 1.65 × 10^16 ms) is within it.
const TIME_SPAN_MS_MAX: i64 = 1 << 54;

/// One outcome's credit as things stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credit {
    pub attribution: Option<Attribution>,
    /// The latest sent time of the user's messages sent at or before the outcome.
    pub last_sent_ms: Option<i64>,
    pub key: OutcomeKey,
}

/// Sums per key, by the key's ordinal (see [`Credits`]), and, once the bucket holds more than
/// [`GROUPED_KEYS`] keys, per credit and per name (the groups of [`OutcomeGroup`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct OutcomeBucket {
    /// Over every key.
    total: OutcomeSums,
    entries: Vec<(u32, OutcomeSums)>,
    /// By the credit's ordinal; with `by_name`, empty until the bucket has many keys.
    by_credit: Vec<(u32, OutcomeSums)>,
    by_name: Vec<(NameId, OutcomeSums)>,
}

/// Keys past which a bucket also sums its outcomes by [`OutcomeGroup`]. A bucket with fewer is
/// read by group through its keys at about the same cost, and most buckets of a small store
/// (its slices and hours) hold fewer: they spend no memory on groups.
const GROUPED_KEYS: usize = 32;

impl OutcomeBucket {
    /// Files `sums` under `filed`; `filed_of` gives each key's place (`Credits::filed`), to
    /// group the bucket's sums when its keys pass [`GROUPED_KEYS`].
    fn add(&mut self, filed: Filed, sums: &OutcomeSums, filed_of: impl Fn(u32) -> Filed) {
        self.total.add(sums);
        add_entry(&mut self.entries, filed.key, sums);
        if !self.by_credit.is_empty() {
            add_entry(&mut self.by_credit, filed.credit, sums);
            add_entry(&mut self.by_name, filed.name, sums);
        } else if self.entries.len() > GROUPED_KEYS {
            for (key, entry) in &self.entries {
                let filed = filed_of(*key);
                add_entry(&mut self.by_credit, filed.credit, entry);
                add_entry(&mut self.by_name, filed.name, entry);
            }
        }
    }

    /// Groups the bucket's sums if it has many keys, as [`add`](Self::add) does when they
    /// pass [`GROUPED_KEYS`]; `keys` are [`Credits`]'s keys with their credits' ordinals.
    fn group(&mut self, keys: &[(OutcomeKey, u32)]) {
        if self.entries.len() > GROUPED_KEYS {
            for (key, entry) in &self.entries {
                let filed = filed_in(keys, *key);
                add_entry(&mut self.by_credit, filed.credit, entry);
                add_entry(&mut self.by_name, filed.name, entry);
            }
        }
    }

    /// The bucket's sums, as a range reads them.
    fn sums(&self) -> BucketSums<'_> {
        BucketSums {
            total: &self.total,
            entries: &self.entries,
            by_credit: &self.by_credit,
            by_name: &self.by_name,
        }
    }

    /// Takes `sums` out of the entries they were filed under, dropping an entry when no
    /// outcome is left in it.
    fn subtract(&mut self, filed: Filed, sums: &OutcomeSums) {
        self.total.subtract(sums);
        subtract_entry(&mut self.entries, filed.key, sums);
        if !self.by_credit.is_empty() {
            subtract_entry(&mut self.by_credit, filed.credit, sums);
            subtract_entry(&mut self.by_name, filed.name, sums);
        }
    }
}

/// The sums of a bucket as a range reads them: those of an [`OutcomeBucket`], or of one
/// minute of a dense slice (which has no groups).
#[derive(Debug, Clone, Copy)]
struct BucketSums<'a> {
    total: &'a OutcomeSums,
    entries: &'a [(u32, OutcomeSums)],
    /// With `by_name`, empty when the bucket has no groups.
    by_credit: &'a [(u32, OutcomeSums)],
    by_name: &'a [(NameId, OutcomeSums)],
}

fn add_entry(entries: &mut Vec<(u32, OutcomeSums)>, id: u32, sums: &OutcomeSums) {
    match entries.iter_mut().find(|(own, _)| *own == id) {
        Some((_, entry)) => entry.add(sums),
        None => entries.push((id, *sums)),
    }
}

/// Takes `sums` out of the entry `id`, where the outcome was filed. The fold always finds it,
/// and so it does in credits a snapshot held, which are taken only once every bucket lists the
/// keys of its outcomes with their counts (`Credits::fit`); were one ever missing, nothing is
/// taken: wrong sums (which `commlog audit --deep` finds) rather than a panic.
fn subtract_entry(entries: &mut Vec<(u32, OutcomeSums)>, id: u32, sums: &OutcomeSums) {
    let Some(position) = entries.iter().position(|(own, _)| *own == id) else {
        return;
    };
    let entry = &mut entries[position].1;
    entry.subtract(sums);
    if entry.count == 0 {
        entries.swap_remove(position);
    }
}

/// Where an outcome credited under the key of `ordinal` is filed, `keys` being
/// [`Credits`]'s keys with their credits' ordinals.
fn filed_in(keys: &[(OutcomeKey, u32)], ordinal: u32) -> Filed {
    let (key, credit) = keys[ordinal as usize];
    Filed {
        key: ordinal,
        credit,
        name: key.outcome,
    }
}

/// Which groups of [`OutcomeGroup`] a caller reads: channel effectiveness reads the credits
/// alone, and its sums skip the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Groups {
    Credits,
    CreditsAndNames,
}

/// Running sums by [`OutcomeGroup`]: per credit by its ordinal, and per name met unless only
/// the credits are read.
struct GroupSums {
    by_credit: Vec<OutcomeSums>,
    by_name: Option<NameTable<OutcomeSums>>,
}

impl GroupSums {
    /// Adds a bucket's sums: by its groups, or through its keys (`filed_of` gives each key's
    /// place) if it has none.
    fn add_bucket(&mut self, bucket: BucketSums<'_>, filed_of: impl Fn(u32) -> Filed) {
        if bucket.by_credit.is_empty() {
            for (key, entry) in bucket.entries {
                self.add(filed_of(*key), entry);
            }
            return;
        }
        for (credit, entry) in bucket.by_credit {
            self.by_credit[*credit as usize].add(entry);
        }
        if let Some(by_name) = &mut self.by_name {
            for (name, entry) in bucket.by_name {
                by_name.entry(*name).add(entry);
            }
        }
    }

    fn add(&mut self, filed: Filed, sums: &OutcomeSums) {
        self.by_credit[filed.credit as usize].add(sums);
        if let Some(by_name) = &mut self.by_name {
            by_name.entry(filed.name).add(sums);
        }
    }

    fn subtract(&mut self, filed: Filed, sums: &OutcomeSums) {
        self.by_credit[filed.credit as usize].subtract(sums);
        if let Some(by_name) = &mut self.by_name {
            by_name.entry(filed.name).subtract(sums);
        }
    }
}

/// Outcomes in a slice past which each of its minutes gets sums of its own, so that the sums over
/// a range cutting a busy slice read whole minutes and the outcomes of one cut minute rather
/// than the outcomes of the whole slice. A minute holds its total and its sums per key, never
/// grouped (a minute holds few outcomes): an entry of 64 bytes per key, so at most about 140
/// bytes per outcome of a dense slice with the lists' spare room, and 1.7 bytes per message in
/// the reference workload at 100 M (460 outcomes in a slice, about 40 keys in a minute); quiet
/// slices (about 5 outcomes in one at 1 M, 46 at 10 M) pay nothing.
const DENSE_SLICE: usize = 128;

/// The sums of each minute of a dense slice (in total, and per key), and where each minute's
/// outcomes start in the slice's sorted items (`starts[m]..starts[m + 1]`), so a cut minute is
/// found without a search. The totals lie together: the stats read them alone.
#[derive(Debug, Clone)]
struct DenseMinutes {
    totals: [OutcomeSums; MINUTES],
    entries: [Vec<(u32, OutcomeSums)>; MINUTES],
    starts: [u32; MINUTES + 1],
}

impl DenseMinutes {
    /// The minute sums of `items` (a slice's, sorted by time); `of` gives an item's time,
    /// where it is filed and its sums.
    fn of(items: &[u32], of: impl Fn(u32) -> (i64, Filed, OutcomeSums)) -> DenseMinutes {
        let mut minutes = DenseMinutes {
            totals: [OutcomeSums::default(); MINUTES],
            entries: Default::default(),
            starts: [0; MINUTES + 1],
        };
        for &item in items {
            let (at_ms, filed, sums) = of(item);
            let minute = minute_of(at_ms);
            minutes.add(minute, filed, &sums);
            minutes.starts[minute + 1] += 1;
        }
        for minute in 0..MINUTES {
            minutes.starts[minute + 1] += minutes.starts[minute];
        }
        minutes
    }

    /// An outcome of `minute` was filed: later minutes start one item later.
    fn insert(&mut self, minute: usize, filed: Filed, sums: &OutcomeSums) {
        self.add(minute, filed, sums);
        for start in &mut self.starts[minute + 1..] {
            *start += 1;
        }
    }

    fn add(&mut self, minute: usize, filed: Filed, sums: &OutcomeSums) {
        self.totals[minute].add(sums);
        add_entry(&mut self.entries[minute], filed.key, sums);
    }

    fn subtract(&mut self, minute: usize, filed: Filed, sums: &OutcomeSums) {
        self.totals[minute].subtract(sums);
        subtract_entry(&mut self.entries[minute], filed.key, sums);
    }

    /// The sums of `minute`, as a range reads them.
    fn sums(&self, minute: usize) -> BucketSums<'_> {
        BucketSums {
            total: &self.totals[minute],
            entries: &self.entries[minute],
            by_credit: &[],
            by_name: &[],
        }
    }
}

/// Every outcome's credit, and the outcome sums by outcome time. Buckets name keys by
/// ordinal, so that a query adds sums into one array slot per key.
#[derive(Debug)]
pub(crate) struct Credits {
    /// Per outcome, in log order.
    credits: Vec<Credit>,
    /// Per outcome, the ordinal of its credit's key (in `keys`), so that a cut slice's
    /// outcomes are summed by key without a lookup each.
    key_ordinals: Vec<u32>,
    /// Bounds on (touch − sent) of every message, which narrow each attribution's scan.
    lags: Lags,
    /// Every key filed so far, by ordinal, with its credit's ordinal.
    keys: Vec<(OutcomeKey, u32)>,
    ordinals: IdMap<OutcomeKey, u32>,
    /// Every credit of a key filed so far, by ordinal.
    credit_keys: Vec<Option<(Channel, NameId, AttributionLevel)>>,
    credit_ordinals: IdMap<Option<(Channel, NameId, AttributionLevel)>, u32>,
    /// The outcome sums by time: kept by the fold, or, for credits a snapshot held whose sums
    /// by time were read past (`Options::load_sums_by_time`), filed from the credits the first
    /// time a query over a time range (or a snapshot's writing) needs them.
    by_time: OnceLock<ByTime>,
    /// Until then, the sums over every outcome, which the views over all time read: summed
    /// from the credits as the open checks them, and kept by the fold until the sums by time
    /// are filed (their total then holds the same; dropped at the next fold, so that, while
    /// kept, they are always current).
    all_time: Option<OutcomeBucket>,
    dense_slice: usize,
}

/// Outcome sums by outcome time.
#[derive(Debug, Default)]
struct ByTime {
    buckets: TimeBuckets<OutcomeBucket>,
    /// Per slice holding more than `dense_slice` outcomes, the sums of its minutes.
    minutes: IdMap<i64, DenseMinutes>,
}

impl ByTime {
    /// Files the outcome at `index` under `filed` with `sums`; a slice past `dense_slice`
    /// outcomes gets the sums of its minutes, each outcome's from `filed_sums`.
    fn file(
        &mut self,
        outcomes: &[OutcomeState],
        index: u32,
        (filed, sums): (Filed, &OutcomeSums),
        keys: &[(OutcomeKey, u32)],
        dense_slice: usize,
        filed_sums: impl Fn(u32) -> (Filed, OutcomeSums),
    ) {
        let at_ms = outcomes[index as usize].at_ms;
        self.buckets.insert(
            index,
            at_ms,
            |other| (outcomes[other as usize].at_ms, other),
            |bucket| bucket.add(filed, sums, |key| filed_in(keys, key)),
        );
        let slice = at_ms.div_euclid(SLICE_MS);
        if let Some(dense) = self.minutes.get_mut(&slice) {
            dense.insert(minute_of(at_ms), filed, sums);
        } else if self.buckets.slice_items(slice).len() > dense_slice {
            let dense = DenseMinutes::of(self.buckets.slice_items(slice), |other| {
                let (filed, sums) = filed_sums(other);
                (outcomes[other as usize].at_ms, filed, sums)
            });
            self.minutes.insert(slice, dense);
        }
    }
}

impl Default for Credits {
    fn default() -> Credits {
        Credits::with_dense_slice(DENSE_SLICE)
    }
}

impl Credits {
    fn with_dense_slice(dense_slice: usize) -> Credits {
        Credits {
            credits: Vec::new(),
            key_ordinals: Vec::new(),
            lags: Lags::NONE,
            keys: Vec::new(),
            ordinals: IdMap::default(),
            credit_keys: Vec::new(),
            credit_ordinals: IdMap::default(),
            by_time: OnceLock::from(ByTime::default()),
            all_time: None,
            dense_slice,
        }
    }

    /// The first and last millisecond of the slices holding `outcomes` (those credited), if
    /// any.
    pub(crate) fn span_ms(&self, outcomes: &[OutcomeState]) -> Option<(i64, i64)> {
        self.by_time(outcomes).buckets.span_ms()
    }

    /// The sums by time of `outcomes` (those credited), filed from the credits first if they
    /// were read past.
    fn by_time(&self, outcomes: &[OutcomeState]) -> &ByTime {
        self.by_time.get_or_init(|| self.file_by_time(outcomes))
    }

    /// Files the sums by time of `outcomes` (those credited) from the credits if they were
    /// read past, as writing the credits to a snapshot needs.
    pub(crate) fn file_sums_by_time(&self, outcomes: &[OutcomeState]) {
        self.by_time(outcomes);
    }

    /// The sums by time, filed from every outcome's credit as the fold files them one by one.
    fn file_by_time(&self, outcomes: &[OutcomeState]) -> ByTime {
        let mut by_time = ByTime::default();
        for index in 0..self.credits.len() as u32 {
            self.file_in(&mut by_time, outcomes, index);
        }
        by_time
    }

    /// Files the outcome at `index`, under its credit, in `by_time`.
    fn file_in(&self, by_time: &mut ByTime, outcomes: &[OutcomeState], index: u32) {
        let (filed, sums) = self.filed_sums(outcomes, index);
        by_time.file(
            outcomes,
            index,
            (filed, &sums),
            &self.keys,
            self.dense_slice,
            |other| self.filed_sums(outcomes, other),
        );
    }

    /// The credit of the outcome at `index` (in log order).
    pub(crate) fn credit(&self, index: u32) -> &Credit {
        &self.credits[index as usize]
    }

    /// Where an outcome credited under `key` is filed, the key (and its credit) given an
    /// ordinal if new.
    fn file(&mut self, key: OutcomeKey) -> Filed {
        let next = u32::try_from(self.keys.len()).expect("fewer than 2^32 keys");
        let ordinal = *self.ordinals.entry(key).or_insert(next);
        if ordinal == next {
            let next_credit =
                u32::try_from(self.credit_keys.len()).expect("fewer than 2^32 credits");
            let credit = *self
                .credit_ordinals
                .entry(key.credit)
                .or_insert(next_credit);
            if credit == next_credit {
                self.credit_keys.push(key.credit);
            }
            self.keys.push((key, credit));
        }
        self.filed(ordinal)
    }

    /// Where an outcome credited under the key of `ordinal` is filed.
    fn filed(&self, ordinal: u32) -> Filed {
        filed_in(&self.keys, ordinal)
    }

    /// Adds to `sums` the outcomes whose time is in `[start_ms, end_ms]`: `add_bucket` a whole
    /// bucket's, `add`/`subtract` one outcome's (by its index).
    fn sum_range<S>(
        &self,
        outcomes: &[OutcomeState],
        (start_ms, end_ms): (i64, i64),
        sums: &mut S,
        add_bucket: impl Fn(&mut S, BucketSums<'_>),
        add: impl Fn(&mut S, u32),
        subtract: impl Fn(&mut S, u32),
    ) {
        let time_of = |index: u32| outcomes[index as usize].at_ms;
        let add_cut =
            |sums: &mut S, bucket: BucketSums<'_>, items: &[u32], inside: Range<usize>| {
                sum_cut(
                    sums,
                    &bucket,
                    &[(items, inside)],
                    |sums, bucket| add_bucket(sums, *bucket),
                    &add,
                    &subtract,
                )
            };
        if let Some(all_time) = &self.all_time
            && (start_ms, end_ms) == (i64::MIN, i64::MAX)
        {
            add_bucket(sums, all_time.sums());
            return;
        }
        let by_time = self.by_time(outcomes);
        by_time
            .buckets
            .visit(start_ms, end_ms, |piece| match piece {
                Piece::Whole(bucket) => add_bucket(sums, bucket.sums()),
                Piece::Edge(edge) => match by_time.minutes.get(&edge.slice) {
                    None => add_cut(sums, edge.bucket.sums(), edge.items, edge.inside(time_of)),
                    // A dense slice: the minutes inside the range from their sums, the cut ones
                    // like a cut slice.
                    Some(dense) => {
                        let (inside, cuts) = split_minutes(edge.slice, start_ms, end_ms);
                        for minute in minutes_in(inside) {
                            add_bucket(sums, dense.sums(minute));
                        }
                        cut_minutes(
                            edge.slice,
                            edge.items,
                            &dense.starts,
                            cuts,
                            (start_ms, end_ms),
                            time_of,
                            |minute, items, inside| {
                                add_cut(sums, dense.sums(minute), items, inside)
                            },
                        );
                    }
                },
            });
    }

    /// Hands `visit` the sums of the outcomes whose time is in `[start_ms, end_ms]`, once
    /// per key that has any.
    pub(crate) fn visit(
        &self,
        outcomes: &[OutcomeState],
        start_ms: i64,
        end_ms: i64,
        mut visit: impl FnMut(&OutcomeKey, &OutcomeSums),
    ) {
        let mut sums = vec![OutcomeSums::default(); self.keys.len()];
        self.sum_range(
            outcomes,
            (start_ms, end_ms),
            &mut sums,
            |sums, bucket| {
                for (key, entry) in bucket.entries {
                    sums[*key as usize].add(entry);
                }
            },
            |sums, index| {
                let (filed, outcome) = self.filed_sums(outcomes, index);
                sums[filed.key as usize].add(&outcome);
            },
            |sums, index| {
                let (filed, outcome) = self.filed_sums(outcomes, index);
                sums[filed.key as usize].subtract(&outcome);
            },
        );
        for ((key, _), sums) in self.keys.iter().zip(&sums) {
            if sums.count > 0 {
                visit(key, sums);
            }
        }
    }

    /// Hands `visit` the sums of the outcomes whose time is in `[start_ms, end_ms]`, once per
    /// group of [`OutcomeGroup`] that has any: every credit, then every name (with
    /// [`Groups::CreditsAndNames`]).
    pub(crate) fn visit_groups(
        &self,
        outcomes: &[OutcomeState],
        groups: Groups,
        (start_ms, end_ms): (i64, i64),
        mut visit: impl FnMut(OutcomeGroup, &OutcomeSums),
    ) {
        let mut sums = GroupSums {
            by_credit: vec![OutcomeSums::default(); self.credit_keys.len()],
            by_name: (groups == Groups::CreditsAndNames).then(NameTable::default),
        };
        self.sum_range(
            outcomes,
            (start_ms, end_ms),
            &mut sums,
            |sums, bucket| sums.add_bucket(bucket, |key| self.filed(key)),
            |sums, index| {
                let (filed, outcome) = self.filed_sums(outcomes, index);
                sums.add(filed, &outcome);
            },
            |sums, index| {
                let (filed, outcome) = self.filed_sums(outcomes, index);
                sums.subtract(filed, &outcome);
            },
        );
        for (credit, sums) in self.credit_keys.iter().zip(&sums.by_credit) {
            if sums.count > 0 {
                visit(OutcomeGroup::Credit(*credit), sums);
            }
        }
        for (name, sums) in sums.by_name.into_iter().flat_map(NameTable::entries) {
            if sums.count > 0 {
                visit(OutcomeGroup::Name(name), &sums);
            }
        }
    }

    /// The sums over every outcome whose time is in `[start_ms, end_ms]`.
    pub(crate) fn totals(
        &self,
        outcomes: &[OutcomeState],
        start_ms: i64,
        end_ms: i64,
    ) -> OutcomeSums {
        let mut totals = OutcomeSums::default();
        self.sum_range(
            outcomes,
            (start_ms, end_ms),
            &mut totals,
            |totals, bucket| totals.add(bucket.total),
            |totals, index| totals.add(&self.sums_of(outcomes, index)),
            |totals, index| totals.subtract(&self.sums_of(outcomes, index)),
        );
        totals
    }

    /// The sums of the outcome at `index`, under its credit.
    fn sums_of(&self, outcomes: &[OutcomeState], index: u32) -> OutcomeSums {
        OutcomeSums::of(
            &outcomes[index as usize],
            self.credits[index as usize].last_sent_ms,
        )
    }

    /// Where the outcome at `index` is filed, and its sums.
    fn filed_sums(&self, outcomes: &[OutcomeState], index: u32) -> (Filed, OutcomeSums) {
        let filed = self.filed(self.key_ordinals[index as usize]);
        (filed, self.sums_of(outcomes, index))
    }

    /// Files a new outcome (the next index) with its credit.
    fn push(&mut self, outcomes: &[OutcomeState], credit: Credit) {
        let index = u32::try_from(self.credits.len()).expect("fewer than 2^32 outcomes");
        let sums = OutcomeSums::of(&outcomes[index as usize], credit.last_sent_ms);
        let filed = self.file(credit.key);
        self.credits.push(credit);
        self.key_ordinals.push(filed.key);
        match self.by_time.take() {
            Some(mut by_time) => {
                self.file_in(&mut by_time, outcomes, index);
                self.by_time = OnceLock::from(by_time);
                self.all_time = None;
            }
            // Not filed yet, the sums by time will take it from its credit when they are.
            None => {
                if let Some(all_time) = &mut self.all_time {
                    all_time.add(filed, &sums, |key| filed_in(&self.keys, key));
                }
            }
        }
    }

    /// Replaces the credit of the outcome at `index`, moving its sums between keys.
    fn refile(&mut self, outcomes: &[OutcomeState], index: u32, credit: Credit) {
        let old = self.credits[index as usize];
        if old == credit {
            return;
        }
        let outcome = &outcomes[index as usize];
        let old_sums = OutcomeSums::of(outcome, old.last_sent_ms);
        let new_sums = OutcomeSums::of(outcome, credit.last_sent_ms);
        let old_filed = self.filed(self.key_ordinals[index as usize]);
        let new_filed = self.file(credit.key);
        self.key_ordinals[index as usize] = new_filed.key;
        self.credits[index as usize] = credit;
        let keys = &self.keys;
        let refile = |bucket: &mut OutcomeBucket| {
            bucket.subtract(old_filed, &old_sums);
            bucket.add(new_filed, &new_sums, |key| filed_in(keys, key));
        };
        match self.by_time.get_mut() {
            Some(by_time) => {
                by_time.buckets.update(outcome.at_ms, refile);
                let slice = outcome.at_ms.div_euclid(SLICE_MS);
                if let Some(dense) = by_time.minutes.get_mut(&slice) {
                    let minute = minute_of(outcome.at_ms);
                    dense.subtract(minute, old_filed, &old_sums);
                    dense.add(minute, new_filed, &new_sums);
                }
                self.all_time = None;
            }
            // Not filed yet, the sums by time will take the new credit when they are.
            None => {
                if let Some(all_time) = &mut self.all_time {
                    refile(all_time);
                }
            }
        }
    }
}

/// The times of a message that attribution reads: delivery and first engagement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Touches {
    delivered: Option<i64>,
    engaged: Option<i64>,
}

impl Touches {
    pub(crate) fn of(state: &MessageState) -> Touches {
        Touches {
            delivered: state.delivered.get(),
            engaged: state.first_engagement_ms(),
        }
    }

    fn at(self, level: AttributionLevel) -> Option<i64> {
        match level {
            AttributionLevel::Engaged => self.engaged,
            AttributionLevel::Delivered => self.delivered,
        }
    }
}

/// How a candidate ranks: engaged before delivered, then the later time, then the higher id.
fn rank(level: AttributionLevel, at_ms: i64, message_index: u32) -> (bool, i64, u32) {
    (level == AttributionLevel::Engaged, at_ms, message_index)
}

impl Facts {
    /// The credit of `outcome` from scratch: its attribution over the user's messages and
    /// the last message sent at or before it.
    fn credit_of(&self, outcome: &OutcomeState, lags: Lags) -> Credit {
        let attribution = self.attribute(outcome, self.attribution_window_ms, lags);
        Credit {
            attribution,
            last_sent_ms: self.last_sent_ms(outcome),
            key: self.outcome_key(outcome, attribution),
        }
    }

    fn outcome_key(&self, outcome: &OutcomeState, attribution: Option<Attribution>) -> OutcomeKey {
        OutcomeKey {
            outcome: outcome.outcome,
            credit: attribution.map(|attribution| {
                let message = &self.message_states()[attribution.message_index as usize];
                (message.channel, message.message_type, attribution.level)
            }),
        }
    }

    /// Every outcome credited, and the sums by time. The lags and the credits are worked out
    /// on two threads, each over half of the messages and of the outcomes (an outcome's credit
    /// reads its user's messages: cache misses, independent of the other outcomes'), then the
    /// credits are filed in order.
    pub(crate) fn build_credits(&self) -> Credits {
        let mut credits = Credits::default();
        // By chunk of records: a chunk not decoded yet is decoded by the thread that reads it.
        let states = self.message_states();
        let chunks: Vec<usize> = (0..states.chunk_count()).collect();
        let halves = in_halves(
            &chunks,
            TWO_THREADS_MESSAGES_MIN.div_ceil(CHUNK_MESSAGES),
            |chunks| {
                let mut lags = Lags::NONE;
                for &chunk in chunks {
                    for state in states.chunk(chunk) {
                        lags.widen(state.sent_ms, Touches::of(state));
                    }
                }
                lags
            },
        );
        for half in halves {
            credits.lags.take_in(half);
        }
        let lags = credits.lags;
        let outcomes = self.outcome_states();
        let halves = in_halves(outcomes, TWO_THREADS_OUTCOMES_MIN, |outcomes| {
            outcomes
                .iter()
                .map(|outcome| self.credit_of(outcome, lags))
                .collect::<Vec<_>>()
        });
        credits.credits.reserve_exact(outcomes.len());
        credits.key_ordinals.reserve_exact(outcomes.len());
        for credit in halves.into_iter().flatten() {
            credits.push(outcomes, credit);
        }
        credits
    }

    /// A new outcome (the last one folded) is credited.
    pub(crate) fn credit_new_outcome(&self, credits: &mut Credits) {
        let outcome = self.outcome_states().last().expect("an outcome was folded");
        credits.push(self.outcome_states(), self.credit_of(outcome, credits.lags));
    }

    /// A message of `user` was sent at `sent_ms`: it is the last one before the user's
    /// outcomes at or after it that had none later.
    pub(crate) fn credit_new_message(&self, credits: &mut Credits, user: UserId, sent_ms: i64) {
        for &(_, index) in self.user_outcomes_from(user, sent_ms) {
            let credit = *credits.credit(index);
            if credit.last_sent_ms < Some(sent_ms) {
                let credit = Credit {
                    last_sent_ms: Some(sent_ms),
                    ..credit
                };
                credits.refile(self.outcome_states(), index, credit);
            }
        }
    }

    /// The message at `message_index` moved from `old` to its current touches.
    pub(crate) fn credit_changed_message(
        &self,
        credits: &mut Credits,
        message_index: u32,
        old: Touches,
    ) {
        let message = &self.message_states()[message_index as usize];
        let new = Touches::of(message);
        if new == old {
            return;
        }
        credits.lags.widen(message.sent_ms, new);
        let window_ms = self.attribution_window_ms;
        let outcomes = self.outcome_states();
        for level in [AttributionLevel::Engaged, AttributionLevel::Delivered] {
            let Some(new_ms) = new.at(level) else {
                continue;
            };
            let old_ms = old.at(level);
            if old_ms == Some(new_ms) {
                continue;
            }
            // Outcomes whose window [at − W, at] holds the old or the new time.
            let last_ms = old_ms
                .unwrap_or(new_ms)
                .max(new_ms)
                .saturating_add(window_ms);
            for &(at_ms, index) in self.user_outcomes_from(UserId(message.user_id), new_ms) {
                if at_ms > last_ms {
                    break;
                }
                let credit = *credits.credit(index);
                let outcome = &outcomes[index as usize];
                let was_this = credit.attribution
                    == Some(Attribution {
                        message_index,
                        level,
                    });
                let new_credit = if was_this {
                    // Its time moved earlier: it may have left the window or lost its rank.
                    Some(self.credit_of(outcome, credits.lags))
                } else if at_ms.saturating_sub(window_ms) <= new_ms && new_ms <= at_ms {
                    // A credit's message has the touch of its level, unless credits a snapshot
                    // held say otherwise where the open cannot tell (it does not read the
                    // messages): such a credit ranks below any candidate.
                    let current = credit.attribution.and_then(|attribution| {
                        let touches =
                            Touches::of(&self.message_states()[attribution.message_index as usize]);
                        let at = touches.at(attribution.level)?;
                        Some(rank(attribution.level, at, attribution.message_index))
                    });
                    (current < Some(rank(level, new_ms, message_index))).then(|| {
                        let attribution = Some(Attribution {
                            message_index,
                            level,
                        });
                        Credit {
                            attribution,
                            last_sent_ms: credit.last_sent_ms,
                            key: self.outcome_key(outcome, attribution),
                        }
                    })
                } else {
                    None
                };
                if let Some(new_credit) = new_credit {
                    credits.refile(outcomes, index, new_credit);
                }
            }
        }
    }
}

impl Projection {
    /// The first and last millisecond holding outcomes (of whole slices, without a user) —
    /// only `user`'s with a user — if any.
    pub(crate) fn outcome_span(&self, user: Option<UserId>) -> Option<(i64, i64)> {
        match user {
            Some(user) => {
                let outcomes = self.user_outcomes_from(user, i64::MIN);
                Some((outcomes.first()?.0, outcomes.last()?.0))
            }
            None => self.credits().span_ms(self.outcome_states()),
        }
    }

    /// Hands `visit` the sums of the outcomes whose time is in `[start_ms, end_ms]` — only
    /// `user`'s with a user — by key, a key possibly more than once: a user's outcomes one by
    /// one from their sorted list, else from the buckets.
    pub(crate) fn visit_outcomes(
        &self,
        user: Option<UserId>,
        start_ms: i64,
        end_ms: i64,
        mut visit: impl FnMut(&OutcomeKey, &OutcomeSums),
    ) {
        let credits = self.credits();
        let outcomes = self.outcome_states();
        let Some(user) = user else {
            credits.visit(outcomes, start_ms, end_ms, visit);
            return;
        };
        for &(at_ms, index) in self.user_outcomes_from(user, start_ms) {
            if at_ms > end_ms {
                break;
            }
            let credit = credits.credit(index);
            visit(
                &credit.key,
                &OutcomeSums::of(&outcomes[index as usize], credit.last_sent_ms),
            );
        }
    }
}

impl Projection {
    /// [`Projection::visit_outcomes`] by [`OutcomeGroup`]: with a user, each outcome once by
    /// its credit and once by its name (if `groups` has names); else each group once, from the
    /// buckets.
    pub(crate) fn visit_outcome_groups(
        &self,
        user: Option<UserId>,
        groups: Groups,
        start_ms: i64,
        end_ms: i64,
        mut visit: impl FnMut(OutcomeGroup, &OutcomeSums),
    ) {
        match user {
            None => self.credits().visit_groups(
                self.outcome_states(),
                groups,
                (start_ms, end_ms),
                visit,
            ),
            Some(_) => self.visit_outcomes(user, start_ms, end_ms, |key, sums| {
                visit(OutcomeGroup::Credit(key.credit), sums);
                if groups == Groups::CreditsAndNames {
                    visit(OutcomeGroup::Name(key.outcome), sums);
                }
            }),
        }
    }
}

impl Facts {
    /// The latest sent time of the outcome's user's messages sent at or before it.
    pub(crate) fn last_sent_ms(&self, outcome: &OutcomeState) -> Option<i64> {
        let messages = self.user_messages(UserId(outcome.user_id));
        // Sorted by sent time: the ones at or before the outcome come first.
        let count = messages.partition_point(|(sent_ms, _)| *sent_ms <= outcome.at_ms);
        count.checked_sub(1).map(|last| messages[last].0)
    }
}

/// Messages from which their lags are worked out on two threads, and outcomes from which their
/// credits are: below, the work is shorter than starting a thread.
pub(crate) const TWO_THREADS_MESSAGES_MIN: usize = 1 << 15;
const TWO_THREADS_OUTCOMES_MIN: usize = 1 << 10;

/// `work` over the first and the second half of `items`, on two threads when there are at
/// least `min` items (a panic in either resumes here), else over all of them at once.
fn in_halves<I: Sync, T: Send>(items: &[I], min: usize, work: impl Fn(&[I]) -> T + Sync) -> Vec<T> {
    if items.len() < min {
        return vec![work(items)];
    }
    let (first, second) = items.split_at(items.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| work(second));
        let mine = work(first);
        match other.join() {
            Ok(theirs) => vec![mine, theirs],
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

// A snapshot's indexes (docs/FORMAT.md, "Indexes"): the credits as every outcome's credit, the
// lags, the keys in ordinal order, the time index and the dense slices' minutes. A channel, and
// an attribution level (0 engaged, 1 delivered), is one byte; a bucket's or minute's entries are
// sorted by key ordinal. Each key's credit ordinal, each outcome's key ordinal and the buckets'
// groups follow from these, and are made again by `Credits::fit`.

fn level_byte(level: AttributionLevel) -> u8 {
    match level {
        AttributionLevel::Engaged => 0,
        AttributionLevel::Delivered => 1,
    }
}

fn level_of_byte(byte: u8) -> Result<AttributionLevel, bincode::error::DecodeError> {
    match byte {
        0 => Ok(AttributionLevel::Engaged),
        1 => Ok(AttributionLevel::Delivered),
        _ => Err(bincode::error::DecodeError::Other(
            "attribution level byte out of range",
        )),
    }
}

/// A key's credit: (channel byte, message type, level byte).
type CreditBytes = Option<(u8, NameId, u8)>;

fn credit_bytes(credit: Option<(Channel, NameId, AttributionLevel)>) -> CreditBytes {
    credit.map(|(channel, message_type, level)| {
        (channel.index() as u8, message_type, level_byte(level))
    })
}

impl bincode::Encode for OutcomeKey {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.outcome.encode(encoder)?;
        credit_bytes(self.credit).encode(encoder)
    }
}

impl<Context> bincode::Decode<Context> for OutcomeKey {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<OutcomeKey, bincode::error::DecodeError> {
        let outcome = NameId::decode(decoder)?;
        let credit = match CreditBytes::decode(decoder)? {
            None => None,
            Some((channel, message_type, level)) => Some((
                channel_of_byte(channel)?,
                message_type,
                level_of_byte(level)?,
            )),
        };
        Ok(OutcomeKey { outcome, credit })
    }
}

impl bincode::Encode for Credit {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        (self.attribution)
            .map(|attribution| (attribution.message_index, level_byte(attribution.level)))
            .encode(encoder)?;
        self.last_sent_ms.encode(encoder)?;
        self.key.encode(encoder)
    }
}

impl<Context> bincode::Decode<Context> for Credit {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Credit, bincode::error::DecodeError> {
        let attribution = match Option::<(u32, u8)>::decode(decoder)? {
            None => None,
            Some((message_index, level)) => Some(Attribution {
                message_index,
                level: level_of_byte(level)?,
            }),
        };
        Ok(Credit {
            attribution,
            last_sent_ms: Option::decode(decoder)?,
            key: OutcomeKey::decode(decoder)?,
        })
    }
}

/// Bytes of one `OutcomeSums`: two u64 and two i128.
const SUMS_BYTES: usize = 48;

/// Bytes of a bucket's (or a minute's) entry: its key's ordinal and its sums.
const ENTRY_BYTES: usize = 4 + SUMS_BYTES;

/// Parsed in one go where the reader holds the bytes, else field by field.
impl<Context> bincode::Decode<Context> for OutcomeSums {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<OutcomeSums, bincode::error::DecodeError> {
        let Some(bytes) = codec::peek_snapshot_bytes::<SUMS_BYTES, D>(decoder) else {
            return Ok(OutcomeSums {
                count: u64::decode(decoder)?,
                amount_micros: i128::decode(decoder)?,
                gap_count: u64::decode(decoder)?,
                gap_ms: i128::decode(decoder)?,
            });
        };
        let mut fields = codec::FixedFields(&bytes);
        let sums = OutcomeSums {
            count: fields.u64(),
            amount_micros: fields.i128(),
            gap_count: fields.u64(),
            gap_ms: fields.i128(),
        };
        codec::consume_snapshot_bytes(decoder, SUMS_BYTES)?;
        Ok(sums)
    }
}

fn encode_entries<E: bincode::enc::Encoder>(
    entries: &[(u32, OutcomeSums)],
    encoder: &mut E,
) -> Result<(), bincode::error::EncodeError> {
    let mut sorted = entries.to_vec();
    sorted.sort_unstable_by_key(|(key, _)| *key);
    sorted.encode(encoder)
}

fn decode_entries<D: bincode::de::Decoder>(
    decoder: &mut D,
) -> Result<Vec<(u32, OutcomeSums)>, bincode::error::DecodeError> {
    let entries: Vec<(u32, OutcomeSums)> = codec::decode_bounded_list(decoder, ENTRY_BYTES)?;
    match entries.windows(2).all(|pair| pair[0].0 < pair[1].0) {
        true => Ok(entries),
        false => Err(bincode::error::DecodeError::Other(
            "a bucket lists its keys out of order",
        )),
    }
}

impl bincode::Encode for OutcomeBucket {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.total.encode(encoder)?;
        encode_entries(&self.entries, encoder)
    }
}

/// An outcome bucket's total, then its list of entries' length.
impl crate::projection::time_index::EncodedBucket for OutcomeBucket {
    const ENCODED_BYTES_MIN: usize = SUMS_BYTES + 8;
}

/// Bytes of a dense slice's entry in a snapshot at the least: its key, each minute's total,
/// each minute's list of entries' length, the minutes' starts.
const DENSE_ENTRY_BYTES_MIN: usize = 8 + MINUTES * SUMS_BYTES + MINUTES * 8 + (MINUTES + 1) * 4;

impl<Context> bincode::Decode<Context> for OutcomeBucket {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<OutcomeBucket, bincode::error::DecodeError> {
        Ok(OutcomeBucket {
            total: OutcomeSums::decode(decoder)?,
            entries: decode_entries(decoder)?,
            by_credit: Vec::new(),
            by_name: Vec::new(),
        })
    }
}

impl bincode::Encode for DenseMinutes {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.totals.encode(encoder)?;
        for entries in &self.entries {
            encode_entries(entries, encoder)?;
        }
        self.starts.encode(encoder)
    }
}

impl<Context> bincode::Decode<Context> for DenseMinutes {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<DenseMinutes, bincode::error::DecodeError> {
        let totals = <[OutcomeSums; MINUTES]>::decode(decoder)?;
        let mut entries: [Vec<(u32, OutcomeSums)>; MINUTES] = Default::default();
        for minute in &mut entries {
            *minute = decode_entries(decoder)?;
        }
        Ok(DenseMinutes {
            totals,
            entries,
            starts: <[u32; MINUTES + 1]>::decode(decoder)?,
        })
    }
}

impl bincode::Encode for Credits {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.credits.encode(encoder)?;
        self.lags.encode(encoder)?;
        (self.keys.len() as u64).encode(encoder)?;
        for (key, _) in &self.keys {
            key.encode(encoder)?;
        }
        let by_time = self
            .by_time
            .get()
            .ok_or(bincode::error::EncodeError::Other(
                "the outcome sums by time are not filed",
            ))?;
        by_time.buckets.encode(encoder)?;
        codec::encode_sorted_map(&by_time.minutes, encoder)
    }
}

impl<Context: ItemsSource> bincode::Decode<Context> for Credits {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Credits, bincode::error::DecodeError> {
        let credits = CreditLists::decode(decoder)?;
        let buckets = TimeBuckets::decode(decoder)?;
        let minutes = codec::decode_sorted_map(decoder, DENSE_ENTRY_BYTES_MIN, |decoder| {
            DenseMinutes::decode(decoder)
        })?;
        Ok(credits.with_sums_by_time(OnceLock::from(ByTime { buckets, minutes })))
    }
}

/// What credits a snapshot holds before their sums by time: every outcome's credit, the lags
/// and the keys.
struct CreditLists {
    credits: Vec<Credit>,
    lags: Lags,
    keys: Vec<OutcomeKey>,
}

impl<Context> bincode::Decode<Context> for CreditLists {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<CreditLists, bincode::error::DecodeError> {
        // An outcome's credit takes at least 7 bytes (three `None` tags and a name id), a key 5.
        Ok(CreditLists {
            credits: codec::decode_bounded_list(decoder, 7)?,
            lags: Lags::decode(decoder)?,
            keys: codec::decode_bounded_list(decoder, 5)?,
        })
    }
}

impl CreditLists {
    /// The credits, with `by_time` (unfiled for sums by time read past); each key's credit
    /// ordinal is set by [`Credits::fit`], once the keys are checked.
    fn with_sums_by_time(self, by_time: OnceLock<ByTime>) -> Credits {
        Credits {
            credits: self.credits,
            lags: self.lags,
            keys: (self.keys.into_iter()).map(|key| (key, u32::MAX)).collect(),
            by_time,
            ..Credits::default()
        }
    }
}

impl Credits {
    /// Reads credits a snapshot holds (docs/FORMAT.md, "Indexes") past their sums by time
    /// (`Options::load_sums_by_time`): every outcome's credit, the lags and the keys taken as
    /// [`decode`](bincode::Decode::decode) takes them, the time index and the dense slices'
    /// minutes read past, every length refused as `decode` refuses it, nothing else checked.
    /// `reached` is told where the reading is every `every` bytes of the lists, and after each
    /// bucket and dense slice read past. [`fit`](Self::fit) then sums the outcomes over all
    /// time from their credits.
    pub(crate) fn decode_past_sums_by_time(
        reader: &mut codec::SnapshotReader<'_>,
        every: usize,
        reached: &mut impl FnMut(usize),
    ) -> Result<Credits, String> {
        fn skip_entries(reader: &mut codec::SnapshotReader<'_>) -> Result<(), String> {
            let entries = reader.decode_list_len(ENTRY_BYTES)?;
            reader.skip(entries * ENTRY_BYTES);
            Ok(())
        }
        let credits: CreditLists = reader.decode_passing(every, &mut *reached)?;
        TimeBuckets::<OutcomeBucket>::skip(reader, |reader| {
            reader.decode::<OutcomeSums>()?;
            skip_entries(reader)?;
            reached(reader.position());
            Ok(())
        })?;
        for _ in 0..reader.decode_list_len(DENSE_ENTRY_BYTES_MIN)? {
            reader.decode::<i64>()?;
            reader.decode::<[OutcomeSums; MINUTES]>()?;
            for _ in 0..MINUTES {
                skip_entries(reader)?;
            }
            reader.decode::<[u32; MINUTES + 1]>()?;
            reached(reader.position());
        }
        Ok(credits.with_sums_by_time(OnceLock::new()))
    }
}

/// Counts by key ordinal, added up from sorted lists of (ordinal, count) and taken out as one.
struct KeyCounts {
    counts: Vec<u64>,
    touched: Vec<u32>,
}

impl KeyCounts {
    fn new(keys: usize) -> KeyCounts {
        KeyCounts {
            counts: vec![0; keys],
            touched: Vec::new(),
        }
    }

    fn add(&mut self, counts: &[(u32, u64)]) -> Result<(), String> {
        for &(ordinal, count) in counts {
            let slot = self
                .counts
                .get_mut(ordinal as usize)
                .ok_or_else(|| format!("key ordinal {ordinal} is past the keys"))?;
            if *slot == 0 {
                self.touched.push(ordinal);
            }
            *slot += count;
        }
        Ok(())
    }

    /// The counts added since the last take, by ordinal; the table is empty afterwards.
    fn take(&mut self) -> Vec<(u32, u64)> {
        self.touched.sort_unstable();
        let taken = self
            .touched
            .iter()
            .map(|&ordinal| (ordinal, std::mem::take(&mut self.counts[ordinal as usize])))
            .collect();
        self.touched.clear();
        taken
    }
}

/// The keys' ordinals of a run of outcomes (each one's `key_ordinals`), as the sorted entries
/// (ordinal, count) a bucket of exactly those outcomes lists.
fn key_counts(items: &[u32], key_ordinals: &[u32]) -> Vec<(u32, u64)> {
    let mut ordinals: Vec<u32> = items
        .iter()
        .map(|&item| key_ordinals[item as usize])
        .collect();
    ordinals.sort_unstable();
    let mut counts: Vec<(u32, u64)> = Vec::new();
    for ordinal in ordinals {
        match counts.last_mut() {
            Some((last, count)) if *last == ordinal => *count += 1,
            _ => counts.push((ordinal, 1)),
        }
    }
    counts
}

/// Checks a bucket's (or a minute's) `total` and `entries` against the outcomes it files, as
/// their keys' `counts` (from [`key_counts`]): one entry per key, each counting its outcomes,
/// and sums those outcomes can have.
fn check_entries(
    total: &OutcomeSums,
    entries: &[(u32, OutcomeSums)],
    counts: &[(u32, u64)],
) -> Result<(), String> {
    let filed: u64 = counts.iter().map(|(_, count)| count).sum();
    total.check_fits(filed)?;
    let keys_fit = entries.len() == counts.len()
        && (entries.iter().zip(counts)).all(|((key, _), (ordinal, _))| key == ordinal);
    if !keys_fit {
        return Err("its entries are not the keys of its outcomes".to_string());
    }
    entries
        .iter()
        .zip(counts)
        .try_for_each(|((_, sums), (_, count))| sums.check_fits(*count))
}

impl Credits {
    /// The credits a snapshot held, checked to fit the facts' `outcomes` (whose times lie in
    /// `slices`), `messages` messages and `names` names, with the ordinals and groups the fold
    /// keeps made again: every outcome has a credit that agrees with it (its name, its last
    /// send at or before it) and whose key is listed and agrees with its attribution (of the
    /// same level, to a message that exists), keys are distinct, names exist, every outcome is
    /// filed once, in the slice of its time, in (time, index) order, and in the dense slice's
    /// minute of its time; every bucket and minute lists one entry per key of the outcomes it
    /// files, counting them, with sums as many outcomes can have; the dense slices are exactly
    /// those of more than [`DENSE_SLICE`] outcomes. Whether the credits (the message each
    /// names) and the amounts are right only a fold can tell (`commlog audit --deep`): the open
    /// does not read the messages.
    pub(crate) fn fit(
        mut self,
        outcomes: &[OutcomeState],
        messages: usize,
        names: usize,
        slices: RangeInclusive<i64>,
    ) -> Result<Credits, String> {
        let name_fits = |name: NameId, what: &str| match (name as usize) < names {
            true => Ok(()),
            false => Err(format!("{what} {name} is not a name")),
        };
        for ordinal in 0..self.keys.len() {
            let key = self.keys[ordinal].0;
            name_fits(key.outcome, "an outcome name")?;
            if let Some((_, message_type, _)) = key.credit {
                name_fits(message_type, "a message type")?;
            }
            if self.ordinals.insert(key, ordinal as u32).is_some() {
                return Err(format!("key {ordinal} is listed twice"));
            }
            let next = self.credit_keys.len() as u32;
            let credit = *self.credit_ordinals.entry(key.credit).or_insert(next);
            if credit == next {
                self.credit_keys.push(key.credit);
            }
            self.keys[ordinal].1 = credit;
        }
        if self.credits.len() != outcomes.len() {
            return Err(format!(
                "{} credits for {} outcomes",
                self.credits.len(),
                outcomes.len()
            ));
        }
        self.key_ordinals = Vec::with_capacity(outcomes.len());
        for (index, (credit, outcome)) in self.credits.iter().zip(outcomes).enumerate() {
            if let Some(attribution) = credit.attribution
                && attribution.message_index as usize >= messages
            {
                return Err(format!(
                    "outcome {index} is credited to message index {} of {messages}",
                    attribution.message_index
                ));
            }
            let ordinal = self
                .ordinals
                .get(&credit.key)
                .ok_or_else(|| format!("the key of outcome {index}'s credit is not listed"))?;
            let level = credit.key.credit.map(|(_, _, level)| level);
            let agrees = credit.key.outcome == outcome.outcome
                && level == credit.attribution.map(|attribution| attribution.level)
                && credit
                    .last_sent_ms
                    .is_none_or(|sent_ms| sent_ms <= outcome.at_ms);
            if !agrees {
                return Err(format!("outcome {index}'s credit does not agree with it"));
            }
            self.key_ordinals.push(*ordinal);
        }
        let Some(by_time) = self.by_time.get_mut() else {
            self.all_time = Some(self.sum_all_time(outcomes));
            return Ok(self);
        };
        let keys = self.keys.len();
        let entries_fit = |entries: &[(u32, OutcomeSums)]| match entries
            .iter()
            .all(|(key, _)| (*key as usize) < keys)
        {
            true => Ok(()),
            false => Err(format!("a bucket names a key beyond the {keys} listed")),
        };
        // Each slice's outcomes in the slice of their time, in (time, index) order, and the
        // counts of their keys: the entries its bucket, and those of every bucket above it,
        // list.
        let mut slice_counts: Vec<(i64, Vec<(u32, u64)>)> = Vec::new();
        let time_of = |item: u32| outcomes[item as usize].at_ms;
        by_time.buckets.check_fits(
            outcomes.len(),
            slices,
            |slice, items| {
                let items = items.get();
                let in_order = items
                    .windows(2)
                    .all(|pair| (time_of(pair[0]), pair[0]) < (time_of(pair[1]), pair[1]));
                let in_slice = items
                    .iter()
                    .all(|&item| time_of(item).div_euclid(SLICE_MS) == slice);
                if !in_order || !in_slice {
                    return Err(format!(
                        "slice {slice} files outcomes of other times, or out of time order"
                    ));
                }
                slice_counts.push((slice, key_counts(items, &self.key_ordinals)));
                Ok(())
            },
            |bucket, _| entries_fit(&bucket.entries),
        )?;
        // Each bucket's entries against the counts of its slices' outcomes by key: the slices
        // in order, so that each level's buckets come one after another, their counts added up
        // in a table by key ordinal.
        slice_counts.sort_unstable_by_key(|&(slice, _)| slice);
        let mut table = KeyCounts::new(self.keys.len());
        for (_, counts) in &slice_counts {
            table.add(counts)?;
        }
        let total_bucket = by_time.buckets.total();
        check_entries(&total_bucket.total, &total_bucket.entries, &table.take())?;
        for (level, buckets) in by_time.buckets.levels().iter().enumerate() {
            let level_key = |slice: i64| {
                LEVEL_RATIOS[..level]
                    .iter()
                    .fold(slice, |key, &ratio| key.div_euclid(ratio))
            };
            let check = |key: i64, filed: Vec<(u32, u64)>| {
                let bucket = buckets
                    .get(&key)
                    .ok_or_else(|| format!("bucket {key} of level {level} is missing"))?;
                check_entries(&bucket.total, &bucket.entries, &filed)
                    .map_err(|reason| format!("bucket {key} of level {level}: {reason}"))
            };
            let mut current = None;
            for (slice, counts) in &slice_counts {
                let key = level_key(*slice);
                if let Some(done) = current.filter(|&done| done != key) {
                    check(done, table.take())?;
                }
                current = Some(key);
                table.add(counts)?;
            }
            if let Some(done) = current {
                check(done, table.take())?;
            }
        }
        for (slice, items) in by_time.buckets.slices() {
            let items = items.get();
            let dense = by_time.minutes.get(&slice);
            if dense.is_some() != (items.len() > self.dense_slice) {
                return Err(format!(
                    "slice {slice} of {} outcomes is {}dense",
                    items.len(),
                    if dense.is_some() { "" } else { "not " }
                ));
            }
            if let Some(dense) = dense {
                // Sorted by time, the slice's outcomes are in minute order: minute `m`'s start
                // where its first is.
                let minutes_fit = (0..=MINUTES).all(|minute| {
                    let start = items.partition_point(|&item| minute_of(time_of(item)) < minute);
                    dense.starts[minute] as usize == start
                });
                if !minutes_fit {
                    return Err(format!(
                        "the minutes of dense slice {slice} do not cover it"
                    ));
                }
                for minute in 0..MINUTES {
                    let run = dense.starts[minute] as usize..dense.starts[minute + 1] as usize;
                    let counts = key_counts(&items[run], &self.key_ordinals);
                    entries_fit(&dense.entries[minute])?;
                    check_entries(&dense.totals[minute], &dense.entries[minute], &counts).map_err(
                        |reason| format!("minute {minute} of dense slice {slice}: {reason}"),
                    )?;
                }
            }
        }
        if by_time.minutes.len() > by_time.buckets.slices().count() {
            return Err("a dense slice holds no outcome".to_string());
        }
        for bucket in by_time.buckets.buckets_mut() {
            bucket.group(&self.keys);
        }
        Ok(self)
    }

    /// The sums over every outcome, by key: the total bucket of the sums by time, summed from
    /// each outcome's credit.
    fn sum_all_time(&self, outcomes: &[OutcomeState]) -> OutcomeBucket {
        let mut by_key = vec![OutcomeSums::default(); self.keys.len()];
        for (index, ordinal) in self.key_ordinals.iter().enumerate() {
            by_key[*ordinal as usize].add(&self.sums_of(outcomes, index as u32));
        }
        let mut bucket = OutcomeBucket::default();
        for (ordinal, sums) in (0..).zip(&by_key) {
            if sums.count > 0 {
                bucket.total.add(sums);
                bucket.entries.push((ordinal, *sums));
            }
        }
        bucket.group(&self.keys);
        bucket
    }
}

impl Credits {
    /// What differs between these credits and `built` (made by a fold of the same facts), or
    /// `None`: each outcome's credit, the sums by key of every bucket and minute whatever
    /// ordinals the keys were given, each slice's outcomes, and whether these lags bound all of
    /// `built`'s (the fold widens them as touches come, so they may be wider).
    pub(crate) fn differs_from(
        &self,
        built: &Credits,
        outcomes: &[OutcomeState],
    ) -> Option<&'static str> {
        if self.credits != built.credits {
            return Some("the outcomes' credits");
        }
        if !self.lags.covers(built.lags) {
            return Some("the bounds on touch lags");
        }
        let by_key = |credits: &Credits, entries: &[(u32, OutcomeSums)]| {
            let mut keyed: Vec<(OutcomeKey, OutcomeSums)> = (entries.iter())
                .map(|(key, sums)| (credits.keys[*key as usize].0, *sums))
                .collect();
            keyed.sort_unstable_by_key(|(key, _)| *key);
            keyed
        };
        let same = |mine: &OutcomeBucket, theirs: &OutcomeBucket| {
            mine.total == theirs.total
                && by_key(self, &mine.entries) == by_key(built, &theirs.entries)
        };
        let (mine, theirs) = (self.by_time(outcomes), built.by_time(outcomes));
        let levels_same = (mine.buckets.levels().iter())
            .zip(theirs.buckets.levels())
            .all(|(mine, theirs)| {
                mine.len() == theirs.len()
                    && mine.iter().all(|(key, bucket)| {
                        theirs.get(key).is_some_and(|other| same(bucket, other))
                    })
            });
        if !same(mine.buckets.total(), theirs.buckets.total()) || !levels_same {
            return Some("the outcome sums");
        }
        if (self.all_time.as_ref()).is_some_and(|all_time| !same(all_time, theirs.buckets.total()))
        {
            return Some("the outcome sums over all time");
        }
        let slices_same = mine.buckets.slices().count() == theirs.buckets.slices().count()
            && (mine.buckets.slices())
                .all(|(slice, items)| theirs.buckets.slice_items(slice) == items.get());
        if !slices_same || mine.buckets.span_ms() != theirs.buckets.span_ms() {
            return Some("the outcomes filed by time");
        }
        let minutes_same = mine.minutes.len() == theirs.minutes.len()
            && mine.minutes.iter().all(|(slice, mine)| {
                theirs.minutes.get(slice).is_some_and(|theirs| {
                    mine.totals == theirs.totals
                        && mine.starts == theirs.starts
                        && (mine.entries.iter().zip(&theirs.entries))
                            .all(|(a, b)| by_key(self, a) == by_key(built, b))
                })
            });
        (!minutes_same).then_some("the outcome sums per minute")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages the random credits name.
    const MESSAGES: u64 = 10;

    /// A random credit for an outcome named `outcome` at `at_ms`, to one of [`MESSAGES`]
    /// messages and three message types.
    fn random_credit(next: &mut impl FnMut(u64) -> u64, outcome: NameId, at_ms: i64) -> Credit {
        let level = if next(2) == 0 {
            AttributionLevel::Engaged
        } else {
            AttributionLevel::Delivered
        };
        let credit =
            (next(5) > 0).then(|| (Channel::ALL[next(4) as usize], next(3) as NameId, level));
        Credit {
            attribution: credit.map(|_| Attribution {
                message_index: next(MESSAGES) as u32,
                level,
            }),
            last_sent_ms: (next(3) > 0).then(|| at_ms - next(SLICE_MS as u64) as i64),
            key: OutcomeKey { outcome, credit },
        }
    }

    /// Outcomes filed at random times, most of them in a few slices (dense past a threshold of
    /// 8), the rest spread thin, under random keys, some refiled later: the sums of every range,
    /// in total, per key and per group, equal those of the outcomes in it taken one by one.
    #[test]
    fn dense_and_quiet_slices_sum_like_every_outcome() {
        let mut random = crate::workload::SplitMix64::new(5);
        let mut next = move |bound: u64| random.int(0, bound - 1);
        let base_ms = 1_735_689_600_000_i64;
        let mut credits = Credits::with_dense_slice(8);
        let mut outcomes = Vec::new();
        let mut model: Vec<Credit> = Vec::new();
        for _ in 0..1500 {
            let span = if next(4) == 0 { 40 } else { 3 };
            let at_ms = base_ms + next(span * SLICE_MS as u64) as i64;
            let outcome = OutcomeState {
                user_id: 1,
                at_ms,
                amount_micros: next(1_000_000) as i64,
                outcome: next(3) as NameId,
            };
            let name = outcome.outcome;
            outcomes.push(outcome);
            let credit = random_credit(&mut next, name, at_ms);
            credits.push(&outcomes, credit);
            model.push(credit);
            if next(3) == 0 {
                let index = next(outcomes.len() as u64) as usize;
                let (name, at_ms) = (outcomes[index].outcome, outcomes[index].at_ms);
                let credit = random_credit(&mut next, name, at_ms);
                credits.refile(&outcomes, index as u32, credit);
                model[index] = credit;
            }
        }
        let by_time = credits.by_time(&outcomes);
        assert!(by_time.minutes.len() >= 3, "the busy slices are dense");
        assert!(
            (0..40).any(|slice| {
                let items = by_time
                    .buckets
                    .slice_items(base_ms / SLICE_MS + slice)
                    .len();
                items > 0 && items <= 8
            }),
            "some slices are quiet"
        );
        // Taken from a snapshot past their sums by time, the credits sum every outcome over
        // all time without filing those, and file them for the first range.
        let read_past = read_past_sums_by_time(&credits, &outcomes);
        assert_eq!(read_past.differs_from(&credits, &outcomes), None);
        let read_past = read_past_sums_by_time(&credits, &outcomes);
        check_sums(&read_past, &outcomes, &model, (i64::MIN, i64::MAX));
        assert!(
            read_past.by_time.get().is_none(),
            "the sums by time are not filed"
        );
        for _ in 0..400 {
            let start_ms = base_ms - SLICE_MS + next(6 * SLICE_MS as u64) as i64;
            let longest_ms = if next(2) == 0 { 60_000 } else { 4 * SLICE_MS };
            let end_ms = start_ms + next(longest_ms as u64) as i64;
            check_sums(&credits, &outcomes, &model, (start_ms, end_ms));
            check_sums(&read_past, &outcomes, &model, (start_ms, end_ms));
        }
        check_sums(&credits, &outcomes, &model, (i64::MIN, i64::MAX));

        // A fold into credits read past keeps their sums over all time without filing those by
        // time, which are then filed from the credits as they stand.
        let mut folded = read_past_sums_by_time(&credits, &outcomes);
        let at_ms = base_ms + SLICE_MS / 2;
        outcomes.push(OutcomeState {
            user_id: 1,
            at_ms,
            amount_micros: 7,
            outcome: 1,
        });
        model.push(random_credit(&mut next, 1, at_ms));
        let refiled = next(outcomes.len() as u64 - 1) as usize;
        let (name, refiled_ms) = (outcomes[refiled].outcome, outcomes[refiled].at_ms);
        model[refiled] = random_credit(&mut next, name, refiled_ms);
        for credits in [&mut credits, &mut folded] {
            credits.push(&outcomes, *model.last().expect("a credit"));
            credits.refile(&outcomes, refiled as u32, model[refiled]);
            check_sums(credits, &outcomes, &model, (i64::MIN, i64::MAX));
        }
        assert!(
            folded.by_time.get().is_none(),
            "the sums by time are not filed"
        );
        for credits in [&credits, &folded] {
            check_sums(credits, &outcomes, &model, (at_ms - SLICE_MS, at_ms));
            check_sums(credits, &outcomes, &model, (refiled_ms, refiled_ms + 1));
        }
        assert_eq!(folded.differs_from(&credits, &outcomes), None);
    }

    /// The credits as an open reading a snapshot of `credits` past their sums by time takes
    /// them, checked to fit `outcomes`.
    fn read_past_sums_by_time(credits: &Credits, outcomes: &[OutcomeState]) -> Credits {
        let mut bytes = Vec::new();
        codec::encode_snapshot_part(credits, &mut bytes).expect("a Vec takes every byte");
        let mut reader = codec::SnapshotReader::new(&bytes);
        let mut read = Credits::decode_past_sums_by_time(&mut reader, 4096, &mut |_| {})
            .expect("the credits decode");
        read.dense_slice = credits.dense_slice;
        assert_eq!(
            reader.bytes_left(),
            0,
            "the sums by time are read past to their end"
        );
        let slices = crate::projection::time_index::slices_of(i64::MIN / 2, i64::MAX / 2);
        read.fit(outcomes, MESSAGES as usize, 3, slices)
            .expect("the credits fit")
    }

    /// The sums of `credits` over `[start_ms, end_ms]`, in total, per key and per group, equal
    /// those of the outcomes in it under their credits in `model`, taken one by one.
    fn check_sums(
        credits: &Credits,
        outcomes: &[OutcomeState],
        model: &[Credit],
        (start_ms, end_ms): (i64, i64),
    ) {
        {
            let inside: Vec<(OutcomeKey, OutcomeSums)> = outcomes
                .iter()
                .zip(model)
                .filter(|(outcome, _)| start_ms <= outcome.at_ms && outcome.at_ms <= end_ms)
                .map(|(outcome, credit)| {
                    (credit.key, OutcomeSums::of(outcome, credit.last_sent_ms))
                })
                .collect();
            let range = format!("[{start_ms}, {end_ms}]");

            let mut expected = OutcomeSums::default();
            inside.iter().for_each(|(_, sums)| expected.add(sums));
            assert_eq!(
                credits.totals(outcomes, start_ms, end_ms),
                expected,
                "totals of {range}"
            );

            let mut visited = 0;
            credits.visit(outcomes, start_ms, end_ms, |key, sums| {
                let mut expected = OutcomeSums::default();
                for (_, one) in inside.iter().filter(|(own, _)| own == key) {
                    expected.add(one);
                }
                assert_eq!(*sums, expected, "sums of {key:?} over {range}");
                visited += sums.count;
            });
            assert_eq!(visited, inside.len() as u64, "outcomes by key over {range}");

            for groups in [Groups::Credits, Groups::CreditsAndNames] {
                let mut visited = 0;
                credits.visit_groups(outcomes, groups, (start_ms, end_ms), |group, sums| {
                    let mut expected = OutcomeSums::default();
                    for (key, one) in &inside {
                        let in_group = match group {
                            OutcomeGroup::Name(_) if groups == Groups::Credits => {
                                panic!("{group:?} visited where only the credits are read")
                            }
                            OutcomeGroup::Name(name) => key.outcome == name,
                            OutcomeGroup::Credit(credit) => key.credit == credit,
                        };
                        if in_group {
                            expected.add(one);
                        }
                    }
                    assert_eq!(*sums, expected, "sums of {group:?} over {range}");
                    visited += sums.count;
                });
                let times = if groups == Groups::Credits { 1 } else { 2 };
                assert_eq!(
                    visited,
                    times * inside.len() as u64,
                    "outcomes by {groups:?} over {range}"
                );
            }
        }
    }

    /// Taking sums out of an entry a bucket does not list (credits a snapshot held may file
    /// an outcome elsewhere where the open cannot tell) takes nothing, and does not panic.
    #[test]
    fn taking_sums_out_of_an_entry_not_listed_takes_nothing() {
        let sums = OutcomeSums {
            count: 1,
            amount_micros: 5,
            gap_count: 0,
            gap_ms: 0,
        };
        let mut entries = vec![(3, sums)];
        subtract_entry(&mut entries, 4, &sums);
        assert_eq!(entries, vec![(3, sums)]);
        subtract_entry(&mut entries, 3, &sums);
        assert_eq!(entries, vec![]);
    }
}
