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
        let selection = Selection::of(filter);
        let mut tally = Tally::default();
        // Over every user and all time: the totals, which need no index over time.
        let all_time = filter.user.is_none() && filter.start.is_none() && filter.end.is_none();
        let totals = all_time.then(|| self.all_time_totals()).flatten();
        if filter.user.is_none() && totals.is_none() {
            self.build_indexes();
        }
        let (start_ms, end_ms) = (selection.start_ms, selection.end_ms);
        self.count_selection(&selection, |channel, message_type, counts| {
            tally.add(channel, message_type, counts)
        });
        let (outcome_count, impact_micros) = match (filter.user, totals) {
            (None, Some(totals)) => totals.outcomes(),
            // A user's outcomes are few and sorted by time: visit them.
            (Some(user), _) => self
                .user_outcomes_from(user, start_ms)
                .iter()
                .take_while(|(at_ms, _)| *at_ms <= end_ms)
                .fold((0, 0), |(count, micros), &(_, index)| {
                    let amount = self.outcomes[index as usize].amount_micros;
                    (count + 1, micros + i128::from(amount))
                }),
            (None, None) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::projection::capture::tests::{events, fold_all};
    use crate::{CostFilter, EffectivenessFilter, ImpactFilter};

    /// Every stats filter without a user or a time range: none, each channel, each type.
    fn all_time_filters(projection: &Projection) -> Vec<StatsFilter> {
        let mut filters = vec![StatsFilter::new()];
        filters.extend(Channel::ALL.map(|channel| StatsFilter::new().channel(channel)));
        for (id, name) in ["x", "y", "upgrade", "never_tracked"]
            .into_iter()
            .enumerate()
        {
            let filter = StatsFilter::new().message_type(name);
            filters.push(
                filter
                    .clone()
                    .channel(Channel::ALL[id % Channel::ALL.len()]),
            );
            filters.push(filter);
        }
        assert!(projection.names.get("x").is_some());
        filters
    }

    /// The stats of `filter` counted message by message and outcome by outcome.
    fn counted(projection: &Projection, filter: &StatsFilter) -> CommunicationStats {
        let mut tally = Tally::default();
        projection.for_each_in_selection(&Selection::of(filter), |_, state| {
            tally.add(state.channel, state.message_type, &Counts::of(state))
        });
        let amounts = projection
            .outcomes
            .iter()
            .map(|outcome| i128::from(outcome.amount_micros));
        tally.finish(
            &projection.names,
            projection.outcomes.len() as u64,
            amounts.sum(),
        )
    }

    /// Stats over all time equal a count over every message and outcome: from the totals
    /// counted on the first such query and kept by the fold after it, and from the rollup when
    /// it was built first (the totals are then never counted).
    #[test]
    fn stats_over_all_time_count_every_message_from_the_totals_or_the_rollup() {
        let log = events(11, 6_000);
        let (first, rest) = log.split_at(2_000);
        for rollup_first in [false, true] {
            let mut projection = Projection::new(1_000);
            fold_all(&mut projection, first);
            if rollup_first {
                projection.rollup();
            }
            let filters = all_time_filters(&projection);
            for filter in &filters {
                assert_eq!(
                    projection.stats(filter),
                    counted(&projection, filter),
                    "{filter:?}"
                );
            }
            assert_eq!(projection.totals.get().is_some(), !rollup_first);
            // Reports on earlier messages and new sends, folded after the first query.
            fold_all(&mut projection, rest);
            for filter in &filters {
                assert_eq!(
                    projection.stats(filter),
                    counted(&projection, filter),
                    "{filter:?}"
                );
            }
        }
    }

    /// `log` with its times stretched from minutes to days: from 2025-01-10 over about 69
    /// days, across month ends and the months its budgets name.
    fn stretched(
        log: &[(Event<'static>, Option<String>)],
    ) -> Vec<(Event<'static>, Option<String>)> {
        const JANUARY_10_2025_MS: i64 = 1_736_467_200_000;
        log.iter()
            .map(|(event, external_id)| {
                let mut event = *event;
                let (Event::MessageSent { at_ms, .. }
                | Event::MessageDelivered { at_ms, .. }
                | Event::MessageOpened { at_ms, .. }
                | Event::UserAction { at_ms, .. }
                | Event::MessageFailed { at_ms, .. }
                | Event::FinancialOutcome { at_ms, .. }
                | Event::BudgetSet { at_ms, .. }) = &mut event;
                *at_ms = JANUARY_10_2025_MS + (*at_ms - 1_700_000_000_000) * 6_000;
                (event, external_id.clone())
            })
            .collect()
    }

    /// The cost, channel and impact views over every user and all time answer from the totals
    /// over all time (counted on the first such query, then kept by the fold) as they answer
    /// from the rollup built first, for every channel and type filter they take, before and
    /// after more events.
    #[test]
    fn views_over_all_time_answer_from_the_totals_as_from_the_rollup() {
        let log = stretched(&events(12, 8_000));
        let (first, rest) = log.split_at(3_000);
        let mut from_totals = Projection::new(3_600_000);
        let mut from_rollup = Projection::new(3_600_000);
        for (part, events) in [first, rest].into_iter().enumerate() {
            fold_all(&mut from_totals, events);
            fold_all(&mut from_rollup, events);
            if part == 0 {
                from_rollup.rollup();
            }
            let mut costs = vec![CostFilter::new()];
            costs.extend(Channel::ALL.map(|channel| CostFilter::new().channel(channel)));
            for filter in &costs {
                let report = from_totals.cost_report(filter);
                assert_eq!(report, from_rollup.cost_report(filter), "{filter:?}");
                assert!(report.daily.len() > 30 && !report.budgets.is_empty());
            }
            let mut channels = vec![EffectivenessFilter::new()];
            let mut impacts = vec![ImpactFilter::new()];
            impacts.extend(Channel::ALL.map(|channel| ImpactFilter::new().channel(channel)));
            for name in ["x", "upgrade", "never_tracked"] {
                channels.push(EffectivenessFilter::new().message_type(name));
                impacts.push(ImpactFilter::new().message_type(name));
            }
            for filter in &channels {
                let report = from_totals.channel_effectiveness(filter);
                assert_eq!(
                    report,
                    from_rollup.channel_effectiveness(filter),
                    "{filter:?}"
                );
            }
            for filter in &impacts {
                let report = from_totals.impact(filter);
                assert_eq!(report, from_rollup.impact(filter), "{filter:?}");
            }
            assert!(from_totals.rollup.get().is_none() && from_totals.totals.get().is_some());
            assert!(from_rollup.totals.get().is_none());
        }
    }
}
