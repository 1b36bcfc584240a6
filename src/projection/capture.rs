//! The facts as they stood at one log position, written out while events go on being folded:
//! how a snapshot is taken without holding up tracking calls.
//!
//! [`Projection::begin_capture`] records how long each list is at the position. From then on
//! the fold keeps, for each message and user it changes, the state it had at the position (a
//! pre-image: the first change copies it). [`write_image`] writes the image of the facts at
//! the position in parts, each copied under a short read lock and encoded after it: a message
//! or user changed since is copied from its pre-image, anything added since is left out.
//! Outcomes, names and external ids are only ever added to, so their first entries are the
//! position's.
//!
//! The image's bytes are those of [`DecodedFacts`] (docs/FORMAT.md,
//! "Snapshots"): the same facts always give the same bytes, whether or not events were folded
//! while they were written.

use std::io::Write;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::codec;
use crate::projection::id_map::ShardedIdMap;
use crate::projection::outcome::OutcomeState;
use crate::projection::status::MessageState;
use crate::projection::user_lists::UserEntries;
use crate::projection::{BudgetState, DecodedFacts, Projection};
use crate::snapshot::{FactsDirectory, SPLIT_RECORDS};

/// Messages, outcomes, users or external ids copied under one read lock at the most, so that a
/// tracking call waits no longer for the lock than a few tens of microseconds.
const ENTRIES_PER_LOCK: usize = 4096;
/// Bytes copied under one read lock, past which the lock is released before the next entry:
/// users' lists are long (a hundred entries a user in the reference workload), so that 4,096
/// users would hold the lock for a millisecond. One entry is never split: a user with a very
/// long list holds it for as long as its list takes to copy.
const BYTES_PER_LOCK: usize = 64 << 10;

/// The facts at a log position, for the parts changed since.
#[derive(Debug)]
pub(crate) struct Capture {
    messages: usize,
    outcomes: usize,
    users: usize,
    names: usize,
    external_ids: usize,
    latest_event_ms: Option<i64>,
    budgets: Vec<(u8, i64, BudgetState)>,
    /// The state at the position of each message changed since, by index.
    message_before: ShardedIdMap<u32, MessageState>,
    /// The lists at the position of each user changed since.
    user_before: ShardedIdMap<u64, UserBefore>,
    /// Events folded since the position.
    pub(super) folded_since: u64,
}

/// A user's lists at the position: their lengths, while entries have only been appended since,
/// or a copy, once one went before the end.
#[derive(Debug)]
enum UserBefore {
    Prefix {
        messages: usize,
        last_message: Option<(i64, u32)>,
        outcomes: usize,
        latest_outcome_ms: i64,
    },
    Copy(UserEntries),
}

/// A user's lists as an image holds them; encodes as [`UserEntries`] does.
#[derive(bincode::Encode)]
struct UserImage<'a> {
    messages: &'a [(i64, u32)],
    last_message: Option<(i64, u32)>,
    outcomes: &'a [(i64, u32)],
    latest_outcome_ms: i64,
}

impl UserBefore {
    fn image<'a>(&'a self, now: &'a UserEntries) -> UserImage<'a> {
        match self {
            UserBefore::Prefix {
                messages,
                last_message,
                outcomes,
                latest_outcome_ms,
            } => UserImage {
                messages: &now.messages[..*messages],
                last_message: *last_message,
                outcomes: &now.outcomes[..*outcomes],
                latest_outcome_ms: *latest_outcome_ms,
            },
            UserBefore::Copy(before) => before.image(),
        }
    }
}

impl UserEntries {
    fn image(&self) -> UserImage<'_> {
        UserImage {
            messages: &self.messages,
            last_message: self.last_message(),
            outcomes: &self.outcomes,
            latest_outcome_ms: self.latest_outcome_ms,
        }
    }

    /// The lists as they stand, for a capture to keep before this user changes: their lengths
    /// if the change appends (`appends`), else a copy.
    fn before(&self, appends: bool) -> UserBefore {
        match appends {
            true => UserBefore::Prefix {
                messages: self.messages.len(),
                last_message: self.last_message(),
                outcomes: self.outcomes.len(),
                latest_outcome_ms: self.latest_outcome_ms,
            },
            false => UserBefore::Copy(self.clone()),
        }
    }
}

impl Capture {
    /// Reads where [`keep_user`](Self::keep_user) looks `user` up, for `Projection::pre_read`.
    pub(crate) fn kept(&self, user: u64) -> u64 {
        self.user_before
            .get(&user)
            .map_or(0, |before| matches!(before, UserBefore::Copy(_)) as u64)
    }

    /// Keeps message `index`'s state before its first change since the position.
    pub(crate) fn keep_message(&mut self, index: usize, state: &MessageState) {
        if index < self.messages {
            self.message_before
                .entry(index as u32)
                .or_insert_with(|| state.clone());
        }
    }

    /// Keeps `user`'s lists (`entries`) before a change since the position; `appends` tells
    /// whether the change only appends to them. Users added since are never written, so what
    /// is kept for them does not matter.
    pub(crate) fn keep_user(&mut self, user: u64, entries: &UserEntries, appends: bool) {
        match self.user_before.get_mut(&user) {
            None => {
                self.user_before.insert(user, entries.before(appends));
            }
            Some(before @ UserBefore::Prefix { .. }) if !appends => {
                let image = before.image(entries);
                *before = UserBefore::Copy(UserEntries::from_image(
                    image.messages.to_vec(),
                    image.last_message,
                    image.outcomes.to_vec(),
                    image.latest_outcome_ms,
                ));
            }
            Some(_) => {}
        }
    }
}

impl Projection {
    /// Starts a capture of the facts as they stand (the log's position now). Panics if one is
    /// under way: the caller takes one at a time.
    pub(crate) fn begin_capture(&mut self) {
        assert!(self.capture.is_none(), "one capture at a time");
        self.capture = Some(Capture {
            messages: self.facts.messages.len(),
            outcomes: self.facts.outcomes.len(),
            users: self.facts.user_order.len(),
            names: self.facts.names.len(),
            external_ids: self.facts.external_id_order.len(),
            latest_event_ms: self.facts.latest_event_ms,
            budgets: self.facts.budget_list(),
            message_before: ShardedIdMap::default(),
            user_before: ShardedIdMap::default(),
            folded_since: 0,
        });
    }

    /// Ends the capture; returns what it kept, for the caller to drop once it has released
    /// its lock (a large capture takes a while to free).
    pub(crate) fn end_capture(&mut self) -> Option<Capture> {
        self.capture.take()
    }
}

/// The image of `projection`'s facts, read back: what a snapshot of them holds, to compare.
pub(crate) fn image_of(projection: Projection) -> DecodedFacts {
    let mut projection = projection;
    projection.end_capture();
    projection.begin_capture();
    let projection = RwLock::new(projection);
    let mut bytes = Vec::new();
    write_image(&projection, &mut bytes, |bytes| bytes.len() as u64)
        .expect("a Vec takes every byte");
    codec::SnapshotReader::new(&bytes)
        .decode()
        .expect("an image decodes")
}

/// Writes a snapshot body's indexes part (docs/FORMAT.md, "Indexes") for the capture under way
/// in `projection`: with `indexes` and no event folded since the capture, the rollup and the
/// credits (with the attribution window) that are built, each an `Option`; else two `None`s.
pub(crate) fn write_indexes(
    projection: &Projection,
    indexes: bool,
    out: &mut impl Write,
) -> Result<(), bincode::error::EncodeError> {
    let capture = projection.capture.as_ref().expect("a capture is under way");
    let (rollup, credits) = match indexes && capture.folded_since == 0 {
        true => projection.built_indexes(),
        false => (None, None),
    };
    codec::encode_snapshot_part(&rollup, out)?;
    if let Some(credits) = credits {
        // Credits taken without their sums by time are written whole.
        credits.file_sums_by_time(projection.outcome_states());
    }
    let window_ms = projection.facts.attribution_window_ms;
    codec::encode_snapshot_part(&credits.map(|credits| (window_ms, credits)), out)
}

/// Writes the image of the captured facts of `projection` to `out`, in parts, each copied
/// under a short read lock and encoded once it is released; events may be folded meanwhile.
/// Returns where the record of the message halfway (the first of a run of [`SPLIT_RECORDS`]),
/// the outcomes' list and the users' list begin, as `at` tells the bytes written to `out`.
pub(crate) fn write_image<W: Write>(
    projection: &RwLock<Projection>,
    out: &mut W,
    at: impl Fn(&W) -> u64,
) -> Result<FactsDirectory<u64>, bincode::error::EncodeError> {
    let mut buffer = Vec::new();
    let (messages, outcomes, users, external_ids) = {
        let projection = projection.read();
        let capture = projection.capture.as_ref().expect("a capture is under way");
        (
            capture.messages,
            capture.outcomes,
            capture.users,
            capture.external_ids,
        )
    };
    let split_index = messages / 2 / SPLIT_RECORDS * SPLIT_RECORDS;
    let split_at = write_in_parts(
        projection,
        (out, &at),
        &mut buffer,
        (messages, split_index),
        &mut Copied::new(|projection, index| {
            let capture = projection.capture.as_ref().expect("a capture is under way");
            let state = capture
                .message_before
                .get(&(index as u32))
                .unwrap_or(&projection.facts.messages[index]);
            (state.clone(), std::mem::size_of::<MessageState>())
        }),
    )?;
    let outcomes_at = at(out);
    write_in_parts(
        projection,
        (out, &at),
        &mut buffer,
        (outcomes, usize::MAX),
        &mut Copied::new(|projection, index| {
            let outcome = projection.facts.outcomes[index].clone();
            (outcome, std::mem::size_of::<OutcomeState>())
        }),
    )?;
    let users_at = at(out);
    write_in_parts(
        projection,
        (out, &at),
        &mut buffer,
        (users, usize::MAX),
        &mut Lists::default(),
    )?;
    {
        let projection = projection.read();
        let capture = projection.capture.as_ref().expect("a capture is under way");
        let names = &projection.facts.names;
        let names: Vec<&str> = (0..capture.names as u32).map(|id| names.name(id)).collect();
        codec::encode_snapshot_part(&names, &mut buffer)?;
        codec::encode_snapshot_part(&capture.latest_event_ms, &mut buffer)?;
        codec::encode_snapshot_part(&capture.budgets, &mut buffer)?;
    }
    write_buffer(out, &mut buffer)?;
    write_in_parts(
        projection,
        (out, &at),
        &mut buffer,
        (external_ids, usize::MAX),
        &mut Copied::new(|projection, index| {
            let id = projection.facts.external_id_order[index];
            let external_id = projection
                .facts
                .external_id_of
                .get(&id)
                .expect("each listed message has an external id");
            ((id, Arc::clone(external_id)), 8 + external_id.len())
        }),
    )?;
    Ok(FactsDirectory {
        split: Some((split_index, split_at)),
        outcomes_at,
        users_at,
    })
}

/// Entries of one of the image's lists, copied as the capture's position had them under a
/// read lock, and encoded once it is released: a tracking call waits for the copy, not for
/// the encoding, which takes several times as long.
trait Part {
    /// Copies entry `index`; returns about how many bytes it takes.
    fn copy(&mut self, projection: &Projection, index: usize) -> usize;
    /// Encodes the entries copied, in order, to `buffer`, and forgets them.
    fn encode(&mut self, buffer: &mut Vec<u8>) -> Result<(), bincode::error::EncodeError>;
}

/// Entries copied whole, one by one (`copy` gives an entry and about how many bytes it
/// takes), each encoded as it is.
struct Copied<T, F> {
    copies: Vec<T>,
    copy: F,
}

impl<T, F: Fn(&Projection, usize) -> (T, usize)> Copied<T, F> {
    fn new(copy: F) -> Copied<T, F> {
        Copied {
            copies: Vec::new(),
            copy,
        }
    }
}

impl<T: bincode::Encode, F: Fn(&Projection, usize) -> (T, usize)> Part for Copied<T, F> {
    fn copy(&mut self, projection: &Projection, index: usize) -> usize {
        let (entry, bytes) = (self.copy)(projection, index);
        self.copies.push(entry);
        bytes
    }

    fn encode(&mut self, buffer: &mut Vec<u8>) -> Result<(), bincode::error::EncodeError> {
        for entry in self.copies.drain(..) {
            codec::encode_snapshot_part(&entry, buffer)?;
        }
        Ok(())
    }
}

/// The users' lists: every user's entries back to back in `pairs`, and per user its id, how
/// many of them are its messages' and its outcomes', and the rest of its image.
#[derive(Default)]
struct Lists {
    pairs: Vec<(i64, u32)>,
    users: Vec<ListedUser>,
}

struct ListedUser {
    user: u64,
    messages: usize,
    last_message: Option<(i64, u32)>,
    outcomes: usize,
    latest_outcome_ms: i64,
}

impl Part for Lists {
    fn copy(&mut self, projection: &Projection, index: usize) -> usize {
        let capture = projection.capture.as_ref().expect("a capture is under way");
        let user = projection.facts.user_order[index];
        let now = projection
            .facts
            .users
            .get(user)
            .expect("every user in the order is listed");
        let image = match capture.user_before.get(&user) {
            Some(before) => before.image(now),
            None => now.image(),
        };
        self.pairs.extend_from_slice(image.messages);
        self.pairs.extend_from_slice(image.outcomes);
        self.users.push(ListedUser {
            user,
            messages: image.messages.len(),
            last_message: image.last_message,
            outcomes: image.outcomes.len(),
            latest_outcome_ms: image.latest_outcome_ms,
        });
        (image.messages.len() + image.outcomes.len()) * std::mem::size_of::<(i64, u32)>()
    }

    fn encode(&mut self, buffer: &mut Vec<u8>) -> Result<(), bincode::error::EncodeError> {
        let mut pairs = &self.pairs[..];
        for listed in self.users.drain(..) {
            let (messages, rest) = pairs.split_at(listed.messages);
            let (outcomes, rest) = rest.split_at(listed.outcomes);
            pairs = rest;
            let image = UserImage {
                messages,
                last_message: listed.last_message,
                outcomes,
                latest_outcome_ms: listed.latest_outcome_ms,
            };
            codec::encode_snapshot_part(&(listed.user, image), buffer)?;
        }
        self.pairs.clear();
        Ok(())
    }
}

/// Writes a list of `count` entries as a `Vec` encodes (its length, then each entry), the
/// entries copied by `part` in parts of [`ENTRIES_PER_LOCK`] entries or about
/// [`BYTES_PER_LOCK`] bytes, whichever comes first, each under a read lock of `projection`,
/// then encoded and written to `out` after it is released. Returns where entry `mark` begins
/// (or the list ends, for `mark` = `count`), as `at` tells the bytes written to `out`; 0 for a
/// `mark` past `count`.
fn write_in_parts<W: Write>(
    projection: &RwLock<Projection>,
    (out, at): (&mut W, &impl Fn(&W) -> u64),
    buffer: &mut Vec<u8>,
    (count, mark): (usize, usize),
    part: &mut impl Part,
) -> Result<u64, bincode::error::EncodeError> {
    codec::encode_snapshot_part(&(count as u64), buffer)?;
    let mut marked = 0;
    let mut start = 0;
    loop {
        // A part ends at the mark, so that where it begins is what was written before it.
        let end = match start < mark {
            true => count.min(start + ENTRIES_PER_LOCK).min(mark),
            false => count.min(start + ENTRIES_PER_LOCK),
        };
        if start == mark {
            write_buffer(out, buffer)?;
            marked = at(out);
        }
        if start >= count {
            break;
        }
        {
            let projection = projection.read();
            let mut copied = 0;
            while start < end && copied < BYTES_PER_LOCK {
                copied += part.copy(&projection, start);
                start += 1;
            }
        }
        part.encode(buffer)?;
        write_buffer(out, buffer)?;
        // Written in the background, a snapshot shares the cores with the tracking calls: a
        // call ready to run where this thread runs would otherwise wait out its time slice
        // (milliseconds), where a part takes a fraction of one.
        std::thread::yield_now();
    }
    write_buffer(out, buffer)?;
    Ok(marked)
}

fn write_buffer(
    out: &mut impl Write,
    buffer: &mut Vec<u8>,
) -> Result<(), bincode::error::EncodeError> {
    out.write_all(buffer)
        .map_err(|inner| bincode::error::EncodeError::Io { inner, index: 0 })?;
    buffer.clear();
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{BudgetScope, Channel, Event, LoggedEvent, MessageId, Month, UserId};
    use crate::money::Money;
    use crate::snapshot;

    const NAMES: [&str; 6] = [
        "low_balance",
        "bill_due",
        "clicked_link",
        "upgrade",
        "x",
        "y",
    ];

    /// A varied log: sends to few users with times that go back now and then (so that lists
    /// get entries before their end), reports on earlier messages, outcomes out of order,
    /// budgets and external ids.
    pub(crate) fn events(seed: u64, count: usize) -> Vec<(Event<'static>, Option<String>)> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut events = Vec::new();
        let mut sent = 0u64;
        for _ in 0..count {
            let at_ms = 1_700_000_000_000 + next(1_000_000) as i64;
            let name = NAMES[next(NAMES.len() as u64) as usize];
            let message_id = MessageId(1 + next(sent.max(1)));
            let event = match next(8) {
                0..=2 => {
                    sent += 1;
                    let external_id = (next(3) == 0).then(|| format!("key-{sent}"));
                    events.push((
                        Event::MessageSent {
                            message_id: MessageId(sent),
                            user_id: UserId(1 + next(5)),
                            channel: Channel::ALL[next(4) as usize],
                            message_type: name,
                            cost: Money::from_micros(i128::from(next(1000) as u32)),
                            at_ms,
                            external_id: None,
                        },
                        external_id,
                    ));
                    continue;
                }
                _ if sent == 0 => continue,
                3 => Event::MessageDelivered { message_id, at_ms },
                4 => Event::MessageOpened { message_id, at_ms },
                5 => Event::UserAction {
                    message_id,
                    action: name,
                    at_ms,
                },
                6 => Event::FinancialOutcome {
                    user_id: UserId(1 + next(6)),
                    outcome: name,
                    amount: Money::from_micros(i128::from(next(5000) as u32) - 2500),
                    at_ms,
                },
                _ => match next(2) {
                    0 => Event::MessageFailed {
                        message_id,
                        reason: name,
                        at_ms,
                    },
                    _ => Event::BudgetSet {
                        scope: BudgetScope::Channel(Channel::ALL[next(4) as usize]),
                        month: Month::new(2025, 1 + next(12) as u32).unwrap(),
                        amount: Money::from_micros(1 + i128::from(next(1000) as u32)),
                        alert_percent: 1 + next(100) as u8,
                        at_ms,
                    },
                },
            };
            events.push((event, None));
        }
        events
    }

    pub(crate) fn fold_all(
        projection: &mut Projection,
        events: &[(Event<'static>, Option<String>)],
    ) {
        for (seq, (event, external_id)) in events.iter().enumerate() {
            let mut event = *event;
            if let Event::MessageSent {
                external_id: slot, ..
            } = &mut event
            {
                *slot = external_id.as_deref();
            }
            projection.fold(&LoggedEvent {
                seq: seq as u64 + 1,
                appended_ms: 0,
                durable_seq: 0,
                event,
            });
        }
    }

    fn image(projection: Projection) -> Vec<u8> {
        let projection = RwLock::new(projection);
        let mut bytes = Vec::new();
        write_image(&projection, &mut bytes, |bytes| bytes.len() as u64).unwrap();
        bytes
    }

    #[test]
    fn the_image_written_while_events_are_folded_is_the_image_at_the_capture() {
        for seed in 1..40 {
            let events = events(seed, 300);
            let len = events.len();
            for split in [0, 1, 7, len / 3, len / 2, len - 1, len] {
                let mut at_capture = Projection::new(1_000);
                fold_all(&mut at_capture, &events[..split]);
                let mut going_on = Projection::new(1_000);
                fold_all(&mut going_on, &events[..split]);
                going_on.begin_capture();
                fold_all(&mut going_on, &events[split..]);
                at_capture.begin_capture();
                let expected = image(at_capture);
                assert_eq!(image(going_on), expected, "seed {seed}, split {split}");
                let decoded: DecodedFactsForTest =
                    codec::SnapshotReader::new(&expected).decode().unwrap();
                let facts = crate::projection::Facts::from_image(decoded.0, 1_000).unwrap();
                let mut loaded = Projection::from_facts(facts);
                loaded.begin_capture();
                assert_eq!(
                    image(loaded),
                    expected,
                    "read back: seed {seed}, split {split}"
                );
            }
        }
    }

    #[test]
    fn records_parsed_in_runs_from_the_body_equal_those_decoded_field_by_field() {
        for (seed, count) in [(3, 300), (4, 3_000), (5, 20_000)] {
            let mut projection = Projection::new(1_000);
            fold_all(&mut projection, &events(seed, count));
            projection.begin_capture();
            let bytes = image(projection);
            let expected: DecodedFactsForTest = codec::decode_snapshot_field_by_field(&bytes);
            let decoded: DecodedFactsForTest = codec::SnapshotReader::new(&bytes).decode().unwrap();
            assert_eq!(decoded, expected, "seed {seed}");
            // A snapshot's load reads the long lists item by item, saying how far it has read.
            let every = 1000;
            let mut passed = vec![0];
            let loaded = snapshot::decode_facts(
                &mut codec::SnapshotReader::new(&bytes),
                every,
                |read| passed.push(read),
                snapshot::Decoding::Whole(&Default::default()),
                None,
            )
            .unwrap();
            assert_eq!(loaded.0, expected.0, "seed {seed}, read item by item");
            assert!(
                passed.len() > bytes.len() / every / 2,
                "seed {seed}: {}",
                passed.len()
            );
            assert!(
                passed.windows(2).all(|pair| pair[1] >= pair[0] + every),
                "seed {seed}"
            );
            // A body cut short ends inside a run of records or pairs, or between two: the
            // parts that run past the end are read field by field, and fail.
            for cut in (0..bytes.len()).step_by(bytes.len() / 97 + 1) {
                let cut_short = &bytes[..cut];
                let errors = [
                    codec::SnapshotReader::new(cut_short)
                        .decode::<DecodedFactsForTest>()
                        .unwrap_err(),
                    snapshot::decode_facts(
                        &mut codec::SnapshotReader::new(cut_short),
                        every,
                        |_| (),
                        snapshot::Decoding::Whole(&Default::default()),
                        None,
                    )
                    .unwrap_err(),
                ];
                for error in errors {
                    assert!(
                        error.contains("does not decode"),
                        "seed {seed}, cut {cut}: {error}"
                    );
                }
            }
        }
    }

    #[derive(Debug, PartialEq, bincode::Decode)]
    struct DecodedFactsForTest(crate::projection::DecodedFacts);
}
