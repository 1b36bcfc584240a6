//! Each user's messages and outcomes, as lists sorted by time: the index that the per-user
//! queries read, and that attribution searches for an outcome's candidates.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use crate::codec::{PAIR_BYTES, SnapshotReader};
use crate::event::{MessageId, UserId};
use crate::message::Message;
use crate::projection::id_map::RowsById;
use crate::projection::time_index::partition_point_near;
use crate::projection::{Facts, Projection};
use crate::snapshot::{CrcSpan, MappedSnapshot, PAGE_BYTES};

/// Per user: (sent time, index) of each message and (time, index) of each outcome, both
/// sorted. The sent time sits beside the index, and the last key beside the list, so that
/// keeping the list sorted reads no other memory in the usual case (messages arriving in time
/// order).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode)]
pub(crate) struct UserEntries {
    pub messages: Vec<(i64, u32)>,
    last_message: Option<(i64, u32)>,
    pub outcomes: Vec<(i64, u32)>,
    /// The latest outcome time, beside the list so that "none at or after t" (the usual
    /// answer while tracking) reads no other memory; `i64::MIN` without outcomes.
    pub latest_outcome_ms: i64,
}

/// Reads the fields in declaration order, as a snapshot holds them (`codec::SNAPSHOT_CONFIG`),
/// the lists in runs.
impl<Context> bincode::Decode<Context> for UserEntries {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<UserEntries, bincode::error::DecodeError> {
        Ok(UserEntries {
            messages: crate::codec::decode_snapshot_pairs(decoder)?,
            last_message: bincode::Decode::decode(decoder)?,
            outcomes: crate::codec::decode_snapshot_pairs(decoder)?,
            latest_outcome_ms: bincode::Decode::decode(decoder)?,
        })
    }
}

bincode::impl_borrow_decode!(UserEntries);

impl UserEntries {
    /// The fewest bytes a snapshot's record of a user's lists takes: two empty lists' lengths,
    /// no last message, the latest outcome time.
    pub(crate) const SNAPSHOT_BYTES_MIN: usize = 8 + 1 + 8 + 8;

    /// The bytes the snapshot record of a user's lists takes at the start of `bytes` (the
    /// messages, the last message, the outcomes, the latest outcome time), each list's length
    /// refused if the bytes left cannot hold it, before the lists are decoded.
    pub(crate) fn record_bytes(bytes: &[u8]) -> Result<usize, String> {
        let mut record = SnapshotReader::new(bytes);
        let messages = record.decode_list_len(PAIR_BYTES)?;
        record.skip(messages * PAIR_BYTES);
        let _last_message: Option<(i64, u32)> = record.decode()?;
        let outcomes = record.decode_list_len(PAIR_BYTES)?;
        record.skip(outcomes * PAIR_BYTES);
        let _latest_outcome_ms: i64 = record.decode()?;
        Ok(record.position())
    }

    /// The snapshot record of a user's lists at the start of `bytes`, read where it lies:
    /// `Some` where it decodes and passes [`check_lists`] against `message_count` and
    /// `outcome_count`, without building the lists. `None` otherwise: decoding it and checking
    /// it names what is wrong.
    pub(crate) fn check_record(
        bytes: &[u8],
        message_count: usize,
        outcome_count: usize,
    ) -> Option<ListsInPlace<'_>> {
        let mut at = 0;
        let messages = check_pairs(bytes, &mut at, message_count)?;
        let last_message = match *bytes.get(at)? {
            0 => None,
            1 => Some(pair(bytes.get(at + 1..at + 1 + PAIR_BYTES)?)),
            _ => return None,
        };
        at += 1 + last_message.map_or(0, |_| PAIR_BYTES);
        let outcomes = check_pairs(bytes, &mut at, outcome_count)?;
        let latest_outcome_ms = i64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
        Some(ListsInPlace {
            len: at + 8,
            messages,
            last_message,
            outcomes,
            latest_outcome_ms,
        })
    }
}

/// One user's lists as a snapshot lays them out, read where they lie
/// ([`UserEntries::check_record`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ListsInPlace<'a> {
    /// Bytes the record takes.
    pub(crate) len: usize,
    messages: &'a [u8],
    pub(crate) last_message: Option<(i64, u32)>,
    outcomes: &'a [u8],
    pub(crate) latest_outcome_ms: i64,
}

impl<'a> ListsInPlace<'a> {
    /// The (sent time, index) of each message, in the list's order.
    pub(crate) fn messages(&self) -> impl Iterator<Item = (i64, u32)> + 'a {
        self.messages.chunks_exact(PAIR_BYTES).map(pair)
    }

    /// The (time, index) of each outcome, in the list's order.
    pub(crate) fn outcomes(&self) -> impl Iterator<Item = (i64, u32)> + 'a {
        self.outcomes.chunks_exact(PAIR_BYTES).map(pair)
    }

    /// How many messages and outcomes the lists hold.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (
            self.messages.len() / PAIR_BYTES,
            self.outcomes.len() / PAIR_BYTES,
        )
    }
}

/// The (time, index) pair a snapshot lays out in these [`PAIR_BYTES`] bytes.
fn pair(bytes: &[u8]) -> (i64, u32) {
    let mut fields = crate::codec::FixedFields(bytes);
    (fields.i64(), fields.u32())
}

/// Checks the list of pairs at `bytes[*at..]` (its length, u64, then each pair) as
/// [`check_lists`] does, and moves `at` past it; returns the pairs' bytes, or `None` if the
/// list is cut short, unsorted or holds an index not below `index_bound`.
fn check_pairs<'a>(bytes: &'a [u8], at: &mut usize, index_bound: usize) -> Option<&'a [u8]> {
    let len = u64::from_le_bytes(bytes.get(*at..*at + 8)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let start = *at + 8;
    let pairs = bytes.get(start..start.checked_add(len.checked_mul(PAIR_BYTES)?)?)?;
    let mut previous = (i64::MIN, 0);
    for key in pairs.chunks_exact(PAIR_BYTES).map(pair) {
        if key < previous || key.1 as usize >= index_bound {
            return None;
        }
        previous = key;
    }
    *at = start + pairs.len();
    Some(pairs)
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
    /// Entries with these lists (as a snapshot gives them).
    pub(crate) fn from_image(
        messages: Vec<(i64, u32)>,
        last_message: Option<(i64, u32)>,
        outcomes: Vec<(i64, u32)>,
        latest_outcome_ms: i64,
    ) -> UserEntries {
        UserEntries {
            messages,
            last_message,
            outcomes,
            latest_outcome_ms,
        }
    }

    /// The latest message filed in time order (the last of the list unless one filed later
    /// went before it).
    pub(crate) fn last_message(&self) -> Option<(i64, u32)> {
        self.last_message
    }

    /// Whether filing this message appends it to the list.
    pub(crate) fn appends_message(&self, sent_ms: i64, index: u32) -> bool {
        self.messages
            .last()
            .is_none_or(|last| *last < (sent_ms, index))
    }

    /// Whether filing this outcome appends it to the list.
    pub(crate) fn appends_outcome(&self, at_ms: i64, index: u32) -> bool {
        self.outcomes
            .last()
            .is_none_or(|last| *last < (at_ms, index))
    }

    /// Files a message in the user's list, kept sorted by (sent time, index); messages mostly
    /// arrive in time order, which `last_message` tells without reading the list.
    pub(crate) fn add_message(&mut self, sent_ms: i64, index: u32) {
        let key = (sent_ms, index);
        let in_order = self.last_message.is_none_or(|last| last < key);
        insert_sorted(&mut self.messages, key, in_order);
        if in_order {
            self.last_message = Some(key);
        }
    }

    /// Files an outcome in the user's list, kept sorted by (time, index).
    pub(crate) fn add_outcome(&mut self, at_ms: i64, index: u32) {
        self.latest_outcome_ms = self.latest_outcome_ms.max(at_ms);
        let key = (at_ms, index);
        let in_order = self.outcomes.last().is_none_or(|last| *last < key);
        insert_sorted(&mut self.outcomes, key, in_order);
    }
}

/// Every user's lists, by user id: decoded, or, loaded from a snapshot to be decoded on demand,
/// each decoded from the mapped snapshot the first time it is read or changed, as the message
/// table does its records (`message_table.rs`), after checking that its bytes hash as they did
/// at load. A page of the file is given back once every user with bytes in it is decoded.
#[derive(Debug, Default)]
pub(crate) struct UserTable {
    /// Decoded users' lists, in the order the users were added, found by id through their
    /// places, so that a dense id's look-up is two reads (its place, its lists) and not a hash
    /// map's probe.
    flat: RowsById<UserEntries>,
    lazy: Option<Box<LazyUsers>>,
}

#[derive(Debug)]
struct LazyUsers {
    /// The users' slots, in the order they were listed, then added.
    slots: RowsById<UserSlot>,
    mapped: MappedUsers,
}

#[derive(Debug)]
struct UserSlot {
    entries: OnceLock<UserEntries>,
    /// Where the lists lie in the mapped snapshot, and how they hashed at load (unused once
    /// decoded).
    at: usize,
    len: usize,
    crc: CrcSpan,
}

#[derive(Debug)]
struct MappedUsers {
    snapshot: Arc<MappedSnapshot>,
    /// The page holding the first user's lists, and for each page from it, how many users not
    /// yet decoded have bytes in it.
    first_page: usize,
    pending: Vec<AtomicU32>,
}

/// Checks one user's lists against `message_count` messages and `outcome_count` outcomes:
/// sorted, and each index in range, which is what the views rely on not to panic. (Whose entry
/// each is, and at which time, `snapshot::facts_agree` checks, by hashes summed over the
/// records and over the lists rather than a look-up of every record.)
pub(crate) fn check_lists(
    user: u64,
    entries: &UserEntries,
    message_count: usize,
    outcome_count: usize,
) -> Result<(), String> {
    let fits = |list: &[(i64, u32)], len: usize| {
        list.is_sorted() && list.iter().all(|&(_, index)| (index as usize) < len)
    };
    if !fits(&entries.messages, message_count) || !fits(&entries.outcomes, outcome_count) {
        return Err(format!("user {user}'s lists are unsorted or out of range"));
    }
    Ok(())
}

/// What a snapshot's list of users holds, read without keeping their lists (see
/// [`UserTable::read_mapped`]).
#[derive(Debug)]
pub(crate) struct ReadUsers {
    pub(crate) table: UserTable,
    /// The users in the order of their first event.
    pub(crate) order: Vec<u64>,
    /// Entries in all of their lists: messages, then outcomes.
    pub(crate) listed: (usize, usize),
    /// The first user, in the list's order, whose lists are unsorted or out of range
    /// ([`check_lists`]) or who is listed twice: named where `Facts::from_image` names it for
    /// lists decoded whole, after the facts' other checks.
    pub(crate) failure: Option<String>,
    /// Whether every user's lists are sorted and in range.
    pub(crate) lists_fit: bool,
}

impl UserTable {
    /// Reads the list of users at `body`'s position in `snapshot` (whose body starts at byte
    /// `body_at`), checking each user's lists ([`check_lists`]) and passing them to `agree`
    /// where they lie, with the user's id, but keeping only where they lie; `every` and `passed`
    /// as in [`SnapshotReader::decode_list`], and `crc_at` gives the reading's crc32 at a point
    /// of the body, taken on to there (as `ChunkScan::read` uses it). Lists that do not fit,
    /// and a user listed twice, are noted ([`ReadUsers::failure`]) and read past; `agree` sees
    /// no lists after the first that do not fit, as a whole decode checks none after them
    /// (`snapshot::lists_agree`).
    pub(crate) fn read_mapped(
        body: &mut SnapshotReader,
        every: usize,
        (mut passed, crc_at): (impl FnMut(usize), &dyn Fn(usize) -> u32),
        (message_count, outcome_count): (usize, usize),
        (snapshot, body_at): (Arc<MappedSnapshot>, usize),
        mut agree: impl FnMut(u64, &ListsInPlace<'_>),
    ) -> Result<ReadUsers, String> {
        // A user's lists follow the user's id, 8 bytes.
        let count = body.decode_list_len(8 + UserEntries::SNAPSHOT_BYTES_MIN)?;
        let bytes = body.body();
        let mut slots = RowsById::with_capacity(count);
        let mut order = Vec::with_capacity(count);
        let mut listed = (0, 0);
        let (mut failure, mut lists_fit) = (None, true);
        let first = body.position();
        let mut next_call = first + every;
        for _ in 0..count {
            let user: u64 = body.decode()?;
            let start = body.position();
            // Records that decode and fit are checked where they lie; the others are decoded,
            // for what is wrong.
            match UserEntries::check_record(&bytes[start..], message_count, outcome_count) {
                Some(lists) => {
                    if lists_fit {
                        agree(user, &lists);
                    }
                    body.skip(lists.len);
                    let (messages, outcomes) = lists.counts();
                    listed.0 += messages;
                    listed.1 += outcomes;
                }
                None => {
                    let len = UserEntries::record_bytes(&bytes[start..])?;
                    let entries: UserEntries =
                        SnapshotReader::new(&bytes[start..][..len]).decode()?;
                    let Err(unfit) = check_lists(user, &entries, message_count, outcome_count)
                    else {
                        return Err(format!("user {user}'s lists do not decode where they lie"));
                    };
                    failure.get_or_insert(unfit);
                    lists_fit = false;
                    body.skip(len);
                    continue;
                }
            }
            let end = body.position();
            let slot = UserSlot {
                entries: OnceLock::new(),
                at: body_at + start,
                len: end - start,
                crc: CrcSpan {
                    before: crc_at(start),
                    after: crc_at(end),
                },
            };
            if !slots.insert(user, slot) {
                failure.get_or_insert_with(|| format!("user {user} is listed twice"));
                continue;
            }
            order.push(user);
            if end >= next_call {
                passed(end);
                next_call = end + every;
            }
        }
        let first_page = (body_at + first) / PAGE_BYTES;
        let last_page = (body_at + body.position()).div_ceil(PAGE_BYTES);
        let pending: Vec<AtomicU32> = (first_page..last_page.max(first_page))
            .map(|_| AtomicU32::new(0))
            .collect();
        for slot in slots.rows() {
            for page in pages(slot.at, slot.len) {
                pending[page - first_page].fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(ReadUsers {
            table: UserTable {
                flat: RowsById::default(),
                lazy: Some(Box::new(LazyUsers {
                    slots,
                    mapped: MappedUsers {
                        snapshot,
                        first_page,
                        pending,
                    },
                })),
            },
            order,
            listed,
            failure,
            lists_fit,
        })
    }

    /// Adds a user with these lists; false if the user is there already.
    pub(crate) fn insert(&mut self, user: u64, entries: UserEntries) -> bool {
        match &mut self.lazy {
            Some(lazy) => lazy.slots.insert(user, UserSlot::decoded(entries)),
            None => self.flat.insert(user, entries),
        }
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.flat.reserve(additional);
    }

    /// The user's lists (decoded now, if on demand and not yet).
    #[inline]
    pub(crate) fn get(&self, user: u64) -> Option<&UserEntries> {
        match &self.lazy {
            Some(lazy) => {
                let slot = lazy.slots.get(user)?;
                Some(match slot.entries.get() {
                    Some(entries) => entries,
                    None => lazy.decoded(slot),
                })
            }
            None => self.flat.get(user),
        }
    }

    /// The user's lists to change, and whether the user is new (then with empty lists).
    pub(crate) fn get_or_insert_mut(&mut self, user: u64) -> (&mut UserEntries, bool) {
        let Some(lazy) = &mut self.lazy else {
            return self.flat.get_or_insert_with(user, UserEntries::default);
        };
        let (slot, new) =
            (lazy.slots).get_or_insert_with(user, || UserSlot::decoded(UserEntries::default()));
        if slot.entries.get().is_none() {
            let entries = decode_slot(&lazy.mapped, slot);
            let _ = slot.entries.set(entries);
        }
        (slot.entries.get_mut().expect("decoded above"), new)
    }

    /// How many users' places a table decoded on demand holds, in the order listed, then
    /// added (0 for a table decoded whole).
    pub(crate) fn on_demand_places(&self) -> usize {
        self.lazy.as_ref().map_or(0, |lazy| lazy.slots.rows().len())
    }

    /// The lists of the user at `place` ([`on_demand_places`]), if they still lie in the
    /// mapped snapshot, to be decoded apart from the table.
    ///
    /// [`on_demand_places`]: Self::on_demand_places
    pub(crate) fn mapped_lists(&self, place: usize) -> Option<MappedLists> {
        let lazy = self.lazy.as_ref()?;
        let slot = &lazy.slots.rows()[place];
        slot.entries.get().is_none().then(|| MappedLists {
            place,
            snapshot: Arc::clone(&lazy.mapped.snapshot),
            at: slot.at,
            len: slot.len,
            crc: slot.crc,
        })
    }

    /// Puts the lists decoded from `mapped` in their place, unless they were decoded meanwhile
    /// (then they are dropped: the same lists), and gives back the pages no user left to
    /// decode has bytes in (again, if decoded meanwhile: reading them to decode `entries`
    /// mapped them in anew).
    pub(crate) fn install(&self, mapped: &MappedLists, entries: UserEntries) {
        let Some(lazy) = &self.lazy else {
            return;
        };
        match lazy.slots.rows()[mapped.place].entries.set(entries) {
            Ok(()) => give_back(&lazy.mapped, mapped.at, mapped.len),
            Err(_) => give_back_again(&lazy.mapped, mapped.at, mapped.len),
        }
    }
}

impl UserSlot {
    /// A slot holding decoded lists.
    fn decoded(entries: UserEntries) -> UserSlot {
        UserSlot {
            entries: OnceLock::from(entries),
            at: 0,
            len: 0,
            crc: CrcSpan::default(),
        }
    }
}

impl LazyUsers {
    #[cold]
    #[inline(never)]
    fn decoded<'a>(&self, slot: &'a UserSlot) -> &'a UserEntries {
        slot.entries.get_or_init(|| decode_slot(&self.mapped, slot))
    }
}

/// Decodes a user's lists from the mapped snapshot, then gives back the pages no user left to
/// decode has bytes in.
fn decode_slot(mapped: &MappedUsers, slot: &UserSlot) -> UserEntries {
    let entries = decode_lists(&mapped.snapshot, slot.at, slot.len, slot.crc);
    give_back(mapped, slot.at, slot.len);
    entries
}

/// The lists whose `len` bytes lie at `at` in the mapped snapshot, after checking that they
/// hash as they did at load.
fn decode_lists(snapshot: &MappedSnapshot, at: usize, len: usize, crc: CrcSpan) -> UserEntries {
    let range = at..at + len;
    let what = "a user's lists";
    let bytes = snapshot.checked(range.clone(), crc, what);
    SnapshotReader::new(bytes)
        .decode::<UserEntries>()
        .unwrap_or_else(|error| {
            snapshot.changed(&range, what, &format!("no longer decode ({error})"))
        })
}

/// Counts a user's lists, `len` bytes at `at`, decoded, and gives back the pages no user left
/// to decode has bytes in (once a user's lists, each).
fn give_back(mapped: &MappedUsers, at: usize, len: usize) {
    for page in pages(at, len) {
        if mapped.pending[page - mapped.first_page].fetch_sub(1, Ordering::AcqRel) == 1 {
            release_page(mapped, page);
        }
    }
}

/// Gives back again the pages of a user's lists, `len` bytes at `at`, counted down already,
/// that no user left to decode has bytes in: a reading of those lists after they were counted
/// (to decode them a second time) mapped them in anew.
fn give_back_again(mapped: &MappedUsers, at: usize, len: usize) {
    for page in pages(at, len) {
        if mapped.pending[page - mapped.first_page].load(Ordering::Acquire) == 0 {
            release_page(mapped, page);
        }
    }
}

/// Gives back page `page` of the mapped snapshot.
fn release_page(mapped: &MappedUsers, page: usize) {
    let start = page * PAGE_BYTES;
    let end = (start + PAGE_BYTES).min(mapped.snapshot.len());
    mapped.snapshot.release(start..end);
}

/// A user's lists still in the mapped snapshot, to be decoded apart from their table (by a
/// thread that holds no lock on it: `UserTable::mapped_lists`), then put in their place
/// (`UserTable::install`).
#[derive(Debug)]
pub(crate) struct MappedLists {
    place: usize,
    snapshot: Arc<MappedSnapshot>,
    at: usize,
    len: usize,
    crc: CrcSpan,
}

impl MappedLists {
    /// The user's lists, after checking that their bytes hash as they did at load.
    pub(crate) fn decode(&self) -> UserEntries {
        decode_lists(&self.snapshot, self.at, self.len, self.crc)
    }
}

/// The pages `len` bytes from byte `at` have bytes in.
fn pages(at: usize, len: usize) -> std::ops::Range<usize> {
    at / PAGE_BYTES..(at + len).div_ceil(PAGE_BYTES)
}

/// Reads the end of a list, where the next entry is filed, for `Projection::pre_read`.
pub(crate) fn end_of(list: &[(i64, u32)]) -> u64 {
    list.last()
        .map_or(0, |&(at_ms, index)| at_ms as u64 ^ u64::from(index))
}

/// The entries of a sorted (time, index) list with a time in `[start_ms, end_ms]`. A whole-list
/// range reads nothing of the list, and a bound outside the list's times is not searched, which
/// spares a query the list's cache misses; a bound inside is searched from where it would fall
/// were the times spread evenly between the first and the last (`partition_point_near`): a few
/// probes on neighbouring entries, not a bisection's chain of misses across the list.
pub(crate) fn within(list: &[(i64, u32)], start_ms: i64, end_ms: i64) -> &[(i64, u32)] {
    if (start_ms, end_ms) == (i64::MIN, i64::MAX) {
        return list;
    }
    let (Some(&(first_ms, _)), Some(&(last_ms, _))) = (list.first(), list.last()) else {
        return list;
    };
    let guess = |at_ms: i64| {
        let offset = i128::from(at_ms) - i128::from(first_ms);
        let span = i128::from(last_ms) - i128::from(first_ms) + 1;
        (offset * list.len() as i128 / span) as usize
    };
    let first = if start_ms <= first_ms {
        0
    } else if start_ms > last_ms {
        list.len()
    } else {
        partition_point_near(list, guess(start_ms), |(at_ms, _)| at_ms < start_ms)
    };
    let last = if end_ms >= last_ms {
        list.len()
    } else if end_ms < first_ms {
        0
    } else {
        partition_point_near(list, guess(end_ms), |(at_ms, _)| at_ms <= end_ms)
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

impl Facts {
    /// The user's messages as (sent time, index), sorted by sent time then id.
    pub(crate) fn user_messages(&self, user: UserId) -> &[(i64, u32)] {
        self.users
            .get(user.0)
            .map_or(&[], |entries| &entries.messages)
    }

    /// The user's outcomes at or after `from_ms`, as (time, index), by time.
    pub(crate) fn user_outcomes_from(&self, user: UserId, from_ms: i64) -> &[(i64, u32)] {
        let Some(entries) = self.users.get(user.0) else {
            return &[];
        };
        if entries.latest_outcome_ms < from_ms {
            return &[];
        }
        within(&entries.outcomes, from_ms, i64::MAX)
    }

    /// Prefetches the states of `entries` (from `user`'s list): reads them in one pass of
    /// independent loads, checking that each is the user's and names an interned type. An
    /// `assert!` because the check is what makes the reads happen. The states lie far apart
    /// in a large store: this way their cache misses overlap, and the caller's pass, with more
    /// work between the reads, finds them in cache. A 56-byte record often spans two cache
    /// lines; the two checks read fields at its two ends, so both lines are fetched. The box
    /// of rare stages that a clicked, failed or acted-on message has lies elsewhere again: with
    /// `rare` (for a caller that reads the click, failure or action times or names), a word of
    /// it is read too, into `black_box`, which nothing checks. A caller that counts by status
    /// reads only the record, and a read of the box would be a miss of its own for nothing.
    pub(crate) fn prefetch_states<'a>(
        &self,
        user: UserId,
        mut entries: impl Iterator<Item = &'a (i64, u32)>,
        rare: bool,
    ) {
        let names = self.names.len();
        let mut rare_words = 0;
        assert!(
            entries.all(|&(_, index)| {
                let state = &self.messages[index as usize];
                if rare {
                    rare_words ^= state.rare_word();
                }
                state.user_id == user.0 && (state.message_type as usize) < names
            }),
            "a user's list holds only the user's messages, each of an interned type"
        );
        std::hint::black_box(rare_words);
    }
}

impl Projection {
    /// The user's messages, newest sent first (ties: higher id first), at most `limit`.
    pub(crate) fn history(&self, user: UserId, limit: usize) -> Vec<Message> {
        let Some(entries) = self.users.get(user.0) else {
            return Vec::new();
        };
        let newest = entries.messages.iter().rev().take(limit);
        self.prefetch_states(user, newest.clone(), true);
        newest
            .map(|&(_, index)| {
                self.messages[index as usize]
                    .to_message(MessageId(u64::from(index) + 1), &self.names)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{assert_changed_on_disk, write_in_place};

    /// `within` gives what two bisections of the whole list give, for lists with ties, gaps and
    /// uneven spreads, and bounds before, inside, between and after their times.
    #[test]
    fn within_finds_what_a_bisection_finds() {
        let mut random = crate::workload::SplitMix64::new(3);
        let mut next = move |bound: u64| random.int(0, bound - 1);
        for _ in 0..2000 {
            let mut at_ms = next(100) as i64;
            let list: Vec<(i64, u32)> = (0..next(40) as u32)
                .map(|index| {
                    at_ms += match next(4) {
                        0 => 0,
                        1 => next(1000) as i64,
                        _ => next(10) as i64,
                    };
                    (at_ms, index)
                })
                .collect();
            let mut bound = || match next(8) {
                0 => i64::MIN,
                1 => i64::MAX,
                _ => next(at_ms as u64 + 200) as i64 - 100,
            };
            let (start_ms, end_ms) = (bound(), bound());
            let first = list.partition_point(|(at_ms, _)| *at_ms < start_ms);
            let last = list.partition_point(|(at_ms, _)| *at_ms <= end_ms);
            assert_eq!(
                within(&list, start_ms, end_ms),
                &list[first..last.max(first)],
                "{list:?} {start_ms}..={end_ms}"
            );
        }
    }

    /// Users with lists of many lengths (some longer than a page), as a snapshot lists them.
    fn users(count: u64, seed: u64) -> Vec<(u64, UserEntries)> {
        let mut random = crate::workload::SplitMix64::new(seed);
        let mut next = move |bound: u64| random.int(0, bound - 1);
        let mut index = 0u32;
        (0..count)
            .map(|user| {
                let mut entries = UserEntries::default();
                for _ in 0..next(if user % 7 == 0 { 900 } else { 60 }) {
                    entries.add_message(1_000 + next(5_000) as i64, index);
                    index += 1;
                }
                for outcome in 0..next(4) as u32 {
                    entries.add_outcome(next(9_000) as i64, user as u32 * 4 + outcome);
                }
                (user * 3 + 1, entries)
            })
            .collect()
    }

    /// A file holding a prefix, then `users` as a snapshot lists them, then a few bytes more,
    /// read as a mapped snapshot's users are.
    fn read_mapped(
        dir: &tempfile::TempDir,
        users: &[(u64, UserEntries)],
        counts: (usize, usize),
    ) -> Result<(ReadUsers, std::path::PathBuf), String> {
        let prefix = 1_000;
        let path = dir.path().join("snapshot");
        let (snapshot, list_len) = MappedSnapshot::of_part(&path, prefix, &users.to_vec());
        let mut reader = SnapshotReader::new(&snapshot.bytes()[prefix..]);
        let mut in_place = Vec::new();
        let crc_at = crate::snapshot::running_crc(reader.body());
        let read = UserTable::read_mapped(
            &mut reader,
            10_000,
            (|_| (), &crc_at),
            counts,
            (Arc::clone(&snapshot), prefix),
            |user, lists| in_place.push((user, entries_of(lists))),
        )?;
        assert_eq!(reader.position(), list_len);
        // Every user's lists up to the first that do not fit.
        let passed = match read.lists_fit {
            true => users,
            false => &users[..in_place.len()],
        };
        assert_eq!(in_place, passed, "the lists read where they lie");
        Ok((read, path))
    }

    /// The entries of lists read where they lie.
    fn entries_of(lists: &ListsInPlace<'_>) -> UserEntries {
        UserEntries::from_image(
            lists.messages().collect(),
            lists.last_message,
            lists.outcomes().collect(),
            lists.latest_outcome_ms,
        )
    }

    /// Messages and outcomes listed in `users`.
    fn counts(users: &[(u64, UserEntries)]) -> (usize, usize) {
        users
            .iter()
            .fold((0, 0), |(messages, outcomes), (_, entries)| {
                (
                    messages + entries.messages.len(),
                    outcomes.max(
                        entries
                            .outcomes
                            .iter()
                            .map(|&(_, i)| i as usize + 1)
                            .max()
                            .unwrap_or(0),
                    ),
                )
            })
    }

    #[test]
    fn a_mapped_user_table_reads_and_changes_lists_as_a_map_would() {
        let dir = tempfile::TempDir::new().unwrap();
        for count in [0, 1, 40, 300] {
            let mut expected = users(count, count + 1);
            let (read, _) = read_mapped(&dir, &expected, counts(&expected)).unwrap();
            assert_eq!(
                read.order,
                expected.iter().map(|(user, _)| *user).collect::<Vec<_>>()
            );
            let listed: usize = expected
                .iter()
                .map(|(_, entries)| entries.outcomes.len())
                .sum();
            assert_eq!(read.listed, (counts(&expected).0, listed));
            let mut table = read.table;
            let mut random = crate::workload::SplitMix64::new(9);
            for _ in 0..count * 3 {
                let place = random.int(0, count.max(1) - 1) as usize;
                let Some((user, entries)) = expected.get_mut(place) else {
                    break;
                };
                if random.int(0, 2) == 0 {
                    let (changed, new) = table.get_or_insert_mut(*user);
                    assert!(!new);
                    changed.add_message(3_000, 1_000_000 + place as u32);
                    entries.add_message(3_000, 1_000_000 + place as u32);
                }
                assert_eq!(table.get(*user), Some(&*entries), "user {user}");
            }
            assert_eq!(table.get(2), None, "no user 2");
            let (added, new) = table.get_or_insert_mut(2);
            assert!(new && *added == UserEntries::default());
            for (user, entries) in &expected {
                assert_eq!(table.get(*user), Some(entries), "user {user}");
            }
            // Every page of the lists was given back once every user in it was decoded.
            assert_no_user_pending(&table);
        }
    }

    /// Asserts that every page of a mapped table's lists has no user left to decode.
    fn assert_no_user_pending(table: &UserTable) {
        let mapped = &table.lazy.as_ref().unwrap().mapped;
        assert!(
            mapped
                .pending
                .iter()
                .all(|left| left.load(Ordering::Relaxed) == 0)
        );
    }

    /// Lists decoded apart from the table and put in place answer as lists decoded on first
    /// read; lists decoded apart and then read (or changed) before they are put in place keep
    /// what was read or changed; either way each page is given back once every user in it is
    /// decoded, and counted down once a user.
    #[test]
    fn lists_put_in_place_answer_as_lists_decoded_on_first_read() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut expected = users(300, 5);
        let (read, _) = read_mapped(&dir, &expected, counts(&expected)).unwrap();
        let mut table = read.table;
        let places = table.on_demand_places();
        assert_eq!(places, expected.len());
        let mapped: Vec<MappedLists> = (0..places)
            .map(|place| table.mapped_lists(place).unwrap())
            .collect();
        let decoded: Vec<UserEntries> = mapped.iter().map(MappedLists::decode).collect();
        // Every third user read before its lists are put in place, every fifth changed.
        for (place, (user, entries)) in expected.iter_mut().enumerate() {
            if place % 3 == 0 {
                assert_eq!(table.get(*user), Some(&*entries));
            }
            if place % 5 == 0 {
                table
                    .get_or_insert_mut(*user)
                    .0
                    .add_message(9_000, 1_000_000);
                entries.add_message(9_000, 1_000_000);
            }
        }
        for (lists, entries) in mapped.iter().zip(decoded) {
            table.install(lists, entries);
        }
        assert!((0..places).all(|place| table.mapped_lists(place).is_none()));
        for (user, entries) in &expected {
            assert_eq!(table.get(*user), Some(entries), "user {user}");
        }
        assert_no_user_pending(&table);
    }

    /// A user's record checked where it lies is taken exactly when decoding it and checking
    /// its lists would take it, with the same length: records sorted or not, with indexes in
    /// range or not, with a valid or an invalid tag for the last message, whole or cut short.
    #[test]
    fn a_record_checked_in_place_is_taken_as_decoding_and_checking_it_would() {
        let mut random = crate::workload::SplitMix64::new(11);
        let mut next = move |bound: u64| random.int(0, bound - 1);
        let mut taken = 0;
        for round in 0..20_000 {
            let list = |next: &mut dyn FnMut(u64) -> u64| -> Vec<(i64, u32)> {
                let mut at_ms = next(3) as i64 - 1;
                let mut list: Vec<(i64, u32)> = (0..next(6))
                    .map(|_| {
                        at_ms += next(3) as i64;
                        (at_ms, next(12) as u32)
                    })
                    .collect();
                if next(3) == 0 {
                    list.sort_unstable();
                }
                list
            };
            let entries = UserEntries {
                messages: list(&mut next),
                last_message: (next(2) == 0).then(|| (next(100) as i64, next(9) as u32)),
                outcomes: list(&mut next),
                latest_outcome_ms: next(100) as i64 - 50,
            };
            let mut bytes = Vec::new();
            crate::codec::encode_snapshot_part(&entries, &mut bytes).unwrap();
            let whole = bytes.len();
            let tag_at = 8 + entries.messages.len() * PAIR_BYTES;
            match next(6) {
                0 => bytes.truncate(next(whole as u64) as usize),
                1 => bytes[tag_at] = 2 + next(254) as u8,
                2 => bytes.extend([7, 7, 7]),
                _ => {}
            }
            let (message_count, outcome_count) = (next(14) as usize, next(14) as usize);
            let in_place = UserEntries::check_record(&bytes, message_count, outcome_count)
                .map(|lists| (lists.len, entries_of(&lists)));
            let mut reader = SnapshotReader::new(&bytes);
            let decoded = reader.decode::<UserEntries>().and_then(|entries| {
                check_lists(1, &entries, message_count, outcome_count)?;
                Ok((reader.position(), entries))
            });
            assert_eq!(
                in_place,
                decoded.ok(),
                "round {round}: {entries:?}, {bytes:?}"
            );
            taken += usize::from(in_place.is_some());
        }
        assert!(taken > 1_000 && taken < 19_000, "{taken} of 20,000 taken");
        let huge = [u64::MAX.to_le_bytes().as_slice(), &[0; 40]].concat();
        assert_eq!(UserEntries::check_record(&huge, 10, 10), None);
    }

    /// Lists that do not fit the facts (an index out of range, unsorted) and a user listed twice
    /// are read past and noted, the first in the list's order, for the open to name where a
    /// whole decode names them; lists after the first that do not fit are not passed on.
    #[test]
    fn lists_that_do_not_fit_the_facts_are_noted_when_read() {
        let dir = tempfile::TempDir::new().unwrap();
        let users = users(30, 4);
        let (messages, outcomes) = counts(&users);
        let noted = |users: &[(u64, UserEntries)], counts: (usize, usize)| {
            let (read, _) = read_mapped(&dir, users, counts).unwrap();
            (read.failure.expect("a failure noted"), read.lists_fit)
        };
        for counts in [(messages - 1, outcomes), (messages, outcomes - 1)] {
            let (out_of_range, fit) = noted(&users, counts);
            assert!(
                out_of_range.contains("lists are unsorted or out of range") && !fit,
                "{out_of_range}"
            );
        }
        let mut twice = users.clone();
        twice[9].0 = twice[3].0;
        let (listed_twice, fit) = noted(&twice, (messages, outcomes));
        assert!(
            listed_twice.contains(&format!("user {} is listed twice", twice[3].0)) && fit,
            "{listed_twice}"
        );
        let mut unsorted = users.clone();
        let (first_unsorted, entries) = unsorted
            .iter_mut()
            .find(|(_, e)| e.messages.len() > 2)
            .unwrap();
        entries.messages.swap(0, 1);
        let first_unsorted = *first_unsorted;
        let (unsorted, fit) = noted(&unsorted, (messages, outcomes));
        assert_eq!(
            (unsorted, fit),
            (
                format!("user {first_unsorted}'s lists are unsorted or out of range"),
                false
            )
        );
        let (read, _) = read_mapped(&dir, &users, (messages, outcomes)).unwrap();
        assert_eq!((read.failure, read.lists_fit), (None, true));
    }

    #[test]
    fn a_users_lists_whose_bytes_changed_on_disk_after_the_load_are_never_decoded() {
        let dir = tempfile::TempDir::new().unwrap();
        let users = users(20, 8);
        let (read, path) = read_mapped(&dir, &users, counts(&users)).unwrap();
        let table = read.table;
        assert_eq!(table.get(users[0].0), Some(&users[0].1));
        // The first message's time in user 6's lists changes: the same length, another value.
        let lazy = table.lazy.as_ref().unwrap();
        let at = lazy.slots.get(users[6].0).unwrap().at + 8;
        write_in_place(&path, at, 0x55);
        assert_changed_on_disk(&path, &["a user's lists", "crc32"], || {
            table.get(users[6].0).cloned()
        });
        assert_eq!(table.get(users[0].0), Some(&users[0].1));
    }
}
