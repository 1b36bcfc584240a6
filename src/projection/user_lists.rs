//! Each user's messages and outcomes, as lists sorted by time: the index that the per-user
//! queries read, and that attribution searches for an outcome's candidates.

use crate::event::{MessageId, UserId};
use crate::message::Message;
use crate::projection::time_index::partition_point_near;
use crate::projection::{Facts, Projection};

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
            .get(&user.0)
            .map_or(&[], |entries| &entries.messages)
    }

    /// The user's outcomes at or after `from_ms`, as (time, index), by time.
    pub(crate) fn user_outcomes_from(&self, user: UserId, from_ms: i64) -> &[(i64, u32)] {
        let Some(entries) = self.users.get(&user.0) else {
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
    /// of rare stages that a clicked, failed or acted-on message has lies elsewhere again: a
    /// word of it is read too, into `black_box`, which nothing checks.
    pub(crate) fn prefetch_states<'a>(
        &self,
        user: UserId,
        mut entries: impl Iterator<Item = &'a (i64, u32)>,
    ) {
        let names = self.names.len();
        let mut rare_words = 0;
        assert!(
            entries.all(|&(_, index)| {
                let state = &self.messages[index as usize];
                rare_words ^= state.rare_word();
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
        let Some(entries) = self.users.get(&user.0) else {
            return Vec::new();
        };
        let newest = entries.messages.iter().rev().take(limit);
        self.prefetch_states(user, newest.clone());
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
    use super::within;

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
}
