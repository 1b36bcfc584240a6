//! The stats query (`Store::get_communication_stats`): counts, rates and sums over the
//! messages and outcomes a [`StatsFilter`] selects.

use std::collections::BTreeMap;

use crate::event::Channel;
use crate::message::Status;
use crate::money::Money;
use crate::projection::Projection;
use crate::projection::names::{NameId, NameTable, Names};
use crate::projection::rollup::Counts;
use crate::projection::selection::Selection;
use crate::stats::{CommunicationStats, StatsFilter, divide_rounded, percent};

impl Projection {
    /// Counts, rates and sums over the messages and outcomes `filter` selects
    /// (docs/SEMANTICS.md, "Stats").
    pub(crate) fn stats(&self, filter: &StatsFilter) -> CommunicationStats {
        if filter.user.is_none() {
            self.build_indexes();
        }
        let selection = Selection::of(filter);
        let (start_ms, end_ms) = (selection.start_ms, selection.end_ms);
        let mut tally = Tally::default();
        self.count_selection(&selection, |channel, message_type, counts| {
            tally.add(channel, message_type, counts)
        });
        let (outcome_count, impact_micros) = match filter.user {
            // A user's outcomes are few and sorted by time: visit them.
            Some(user) => self
                .user_outcomes_from(user, start_ms)
                .iter()
                .take_while(|(at_ms, _)| *at_ms <= end_ms)
                .fold((0, 0), |(count, micros), &(_, index)| {
                    let amount = self.outcomes[index as usize].amount_micros;
                    (count + 1, micros + i128::from(amount))
                }),
            None => {
                let totals = self.credits().totals(&self.outcomes, start_ms, end_ms);
                (totals.count, totals.amount_micros)
            }
        };
        tally.finish(&self.names, outcome_count, impact_micros)
    }
}

/// Running counts of the stats query.
#[derive(Default)]
struct Tally {
    counts: Counts,
    by_channel: [u64; Channel::ALL.len()],
    by_type: NameTable<u64>,
}

impl Tally {
    fn add(&mut self, channel: Channel, message_type: NameId, counts: &Counts) {
        self.counts.add(counts);
        self.by_channel[channel.index()] += counts.sent;
        *self.by_type.entry(message_type) += counts.sent;
    }

    fn finish(self, names: &Names, outcome_count: u64, impact_micros: i128) -> CommunicationStats {
        // Names are allocated for the non-zero entries only.
        fn non_zero<'a>(pairs: impl Iterator<Item = (&'a str, u64)>) -> BTreeMap<String, u64> {
            pairs
                .filter(|(_, count)| *count > 0)
                .map(|(name, count)| (name.to_string(), count))
                .collect()
        }
        CommunicationStats {
            total_messages: self.counts.sent,
            delivered_count: self.counts.delivered,
            opened_count: self.counts.opened,
            clicked_count: self.counts.clicked,
            action_count: self.counts.responded,
            failed_count: self.counts.failed,
            delivery_rate: percent(self.counts.delivered, self.counts.sent),
            open_rate: percent(self.counts.opened, self.counts.delivered),
            click_rate: percent(self.counts.clicked, self.counts.opened),
            action_rate: percent(self.counts.responded, self.counts.delivered),
            total_cost: Money::from_micros(self.counts.cost_micros),
            avg_cost_per_message: Money::from_micros(divide_rounded(
                self.counts.cost_micros,
                self.counts.sent,
            )),
            status_breakdown: non_zero(
                Status::ALL
                    .iter()
                    .map(|s| (s.as_str(), self.counts.by_status[*s as usize])),
            ),
            channel_breakdown: non_zero(
                Channel::ALL
                    .iter()
                    .map(|c| (c.as_str(), self.by_channel[c.index()])),
            ),
            message_type_breakdown: non_zero(
                self.by_type
                    .entries()
                    .map(|(id, count)| (names.name(id), count)),
            ),
            outcome_count,
            total_impact: Money::from_micros(impact_micros),
        }
    }
}
