//! Which messages a query takes ([`Selection`]), and the two ways of visiting them: one by one
//! (from the user's sorted list, with a user) and as counts per channel × message type (from
//! the message rollup, without one).

use chrono::{DateTime, Utc};

use crate::event::{Channel, MessageId, UserId};
use crate::message::Message;
use crate::projection::Projection;
use crate::projection::names::{NameId, Names};
use crate::projection::rollup::{Counts, SlotCounts, SlotFilter};
use crate::projection::status::MessageState;
use crate::projection::user_lists::within;
use crate::stats::StatsFilter;

/// Which messages a query takes: all parts optional but the sent-time range, in ms, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selection<'a> {
    pub user: Option<UserId>,
    pub message_type: Option<&'a str>,
    pub channel: Option<Channel>,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A filter's `[start, end]` in ms, inclusive; an open end is `i64::MIN` or `i64::MAX`.
pub(crate) fn range_ms(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> (i64, i64) {
    (
        start.map_or(i64::MIN, |start| start.timestamp_millis()),
        end.map_or(i64::MAX, |end| end.timestamp_millis()),
    )
}

/// Which message types a query takes. A type never tracked is the type of no message, so a
/// filter naming one takes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeFilter {
    Any,
    Only(NameId),
    Nothing,
}

impl TypeFilter {
    /// The types a filter's `message_type` names.
    pub(crate) fn of(message_type: Option<&str>, names: &Names) -> TypeFilter {
        match message_type {
            None => TypeFilter::Any,
            Some(name) => names
                .get(name)
                .map_or(TypeFilter::Nothing, TypeFilter::Only),
        }
    }

    /// Whether a message of this type is taken.
    pub(crate) fn takes(self, message_type: NameId) -> bool {
        match self {
            TypeFilter::Any => true,
            TypeFilter::Only(id) => id == message_type,
            TypeFilter::Nothing => false,
        }
    }
}

impl<'a> Selection<'a> {
    /// The messages a stats filter selects.
    pub(crate) fn of(filter: &'a StatsFilter) -> Selection<'a> {
        let (start_ms, end_ms) = range_ms(filter.start, filter.end);
        Selection {
            user: filter.user,
            message_type: filter.message_type.as_deref(),
            channel: filter.channel,
            start_ms,
            end_ms,
        }
    }
}

impl Projection {
    /// Calls `visit` with the id and state of every message `filter` selects, in the order of
    /// the user's (sent time, id) index with a user filter, else in id order.
    fn for_each_selected(&self, filter: &StatsFilter, visit: impl FnMut(MessageId, &MessageState)) {
        self.for_each_in_selection(&Selection::of(filter), visit);
    }

    /// Calls `visit` with the id and state of every message `selection` takes, in the order of
    /// the user's (sent time, id) index with a user, else in id order.
    pub(crate) fn for_each_in_selection(
        &self,
        selection: &Selection<'_>,
        mut visit: impl FnMut(MessageId, &MessageState),
    ) {
        let Selection {
            user,
            message_type,
            channel,
            start_ms,
            end_ms,
        } = *selection;
        let type_filter = TypeFilter::of(message_type, &self.names);
        if type_filter == TypeFilter::Nothing {
            return;
        }
        let mut visit_if_selected = |index: u32, state: &MessageState| {
            let selected = type_filter.takes(state.message_type)
                && channel.is_none_or(|channel| channel == state.channel)
                && start_ms <= state.sent_ms
                && state.sent_ms <= end_ms;
            if selected {
                visit(MessageId(u64::from(index) + 1), state);
            }
        };
        match user {
            Some(user) => {
                let Some(entries) = self.users.get(user.0) else {
                    return;
                };
                // The user's list is sorted by sent time: only the window is visited.
                let window = within(&entries.messages, start_ms, end_ms);
                // Each visit counts the record by its status: the rare stages' boxes are not read.
                self.prefetch_states(user, window.iter(), false);
                for &(_, index) in window {
                    visit_if_selected(index, &self.messages[index as usize]);
                }
            }
            None => {
                for (index, state) in self.messages.iter().enumerate() {
                    visit_if_selected(index as u32, state);
                }
            }
        }
    }

    /// The messages `filter` selects, in id order.
    pub(crate) fn messages(&self, filter: &StatsFilter) -> Vec<Message> {
        let mut ids = Vec::new();
        self.for_each_selected(filter, |id, _| ids.push(id));
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| self.messages[id.0 as usize - 1].to_message(id, &self.names))
            .collect()
    }

    /// Hands `visit` the counts of the messages `selection` takes, by (channel, message
    /// type), a pair possibly more than once: with a user, message by message from the user's
    /// sorted list; else over all time from the totals over all time where they answer
    /// ([`Projection::all_time_totals`]), or from the rollup's buckets.
    pub(crate) fn count_selection(
        &self,
        selection: &Selection<'_>,
        mut visit: impl FnMut(Channel, NameId, &Counts),
    ) {
        if selection.user.is_some() {
            self.for_each_in_selection(selection, |_, state| {
                visit(state.channel, state.message_type, &Counts::of(state))
            });
            return;
        }
        let Some(filter) = self.slot_filter(selection) else {
            return;
        };
        if (selection.start_ms, selection.end_ms) == (i64::MIN, i64::MAX)
            && let Some(totals) = self.all_time_totals()
        {
            totals
                .messages()
                .visit(filter, |channel, message_type, counts| {
                    visit(channel, message_type, &counts.counts())
                });
            return;
        }
        self.rollup().visit(
            &self.messages,
            filter,
            selection.start_ms,
            selection.end_ms,
            |channel, message_type, counts| visit(channel, message_type, &counts.counts()),
        );
    }

    /// Hands `visit` the counts by kind of the messages `selection` takes in each of `ranges`
    /// (each `[start_ms, end_ms]`, in place of the selection's range), by (the range's place in
    /// `ranges`, channel, message type), a triple possibly more than once: like
    /// [`Projection::count_selection`], range by range, with one set of sums for every range.
    pub(crate) fn count_in_ranges(
        &self,
        selection: &Selection<'_>,
        ranges: &[(i64, i64)],
        mut visit: impl FnMut(usize, Channel, NameId, &SlotCounts),
    ) {
        if selection.user.is_some() {
            for (place, &(start_ms, end_ms)) in ranges.iter().enumerate() {
                let range = Selection {
                    start_ms,
                    end_ms,
                    ..*selection
                };
                self.for_each_in_selection(&range, |_, state| {
                    visit(
                        place,
                        state.channel,
                        state.message_type,
                        &SlotCounts::of(state),
                    )
                });
            }
            return;
        }
        let Some(filter) = self.slot_filter(selection) else {
            return;
        };
        self.rollup()
            .visit_ranges(&self.messages, filter, ranges.iter().copied(), visit);
    }

    /// [`Projection::count_in_ranges`] summed two ways: `spend` gets the messages and their
    /// cost in each range by channel (the range's place in `ranges`, the channel, (messages,
    /// cost in micro-dollars)), `totals` the counts by kind over every range by (channel,
    /// message type); either possibly more than once for the same place or pair. Over every
    /// user, one call per range and channel and one per slot, rather than one per slot and
    /// range.
    pub(crate) fn spend_in_ranges(
        &self,
        selection: &Selection<'_>,
        ranges: &[(i64, i64)],
        mut spend: impl FnMut(usize, Channel, (u64, i128)),
        mut totals: impl FnMut(Channel, NameId, &SlotCounts),
    ) {
        if selection.user.is_some() {
            self.count_in_ranges(selection, ranges, |place, channel, message_type, counts| {
                spend(place, channel, counts.spend());
                totals(channel, message_type, counts);
            });
            return;
        }
        let Some(filter) = self.slot_filter(selection) else {
            return;
        };
        self.rollup().spend_by_range(
            &self.messages,
            filter,
            ranges.iter().copied(),
            spend,
            totals,
        );
    }

    /// The rollup's slots `selection` takes (its channel and type), or `None` when it names a
    /// type never tracked.
    pub(crate) fn slot_filter(&self, selection: &Selection<'_>) -> Option<SlotFilter> {
        let message_type = TypeFilter::of(selection.message_type, &self.names);
        (message_type != TypeFilter::Nothing).then_some(SlotFilter {
            channel: selection.channel,
            message_type,
        })
    }
}

impl Projection {
    /// The first and last millisecond of the slices ([`SLICE_MS`](crate::projection::time_index::SLICE_MS)) holding the messages —
    /// only `user`'s with a user — if any.
    pub(crate) fn message_span(&self, user: Option<UserId>) -> Option<(i64, i64)> {
        match user {
            Some(user) => {
                let messages = self.user_messages(user);
                Some((messages.first()?.0, messages.last()?.0))
            }
            None => self.rollup().span_ms(),
        }
    }
}
