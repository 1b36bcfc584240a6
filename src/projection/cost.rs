//! The cost view: spend per channel × day and × month, per channel and message type, cost per
//! delivered message, response and conversion, and every budget against its month's spend.
//!
//! Computed at query time from the message rollup (or, with a user filter, the user's own
//! messages) day by day, and for each budget its month; over every user, all time and every
//! message type, from the totals over all time and their spend by day (docs/SEMANTICS.md,
//! "Cost and budgets").

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::{BudgetScope, Channel, Month, UserId};
use crate::message::time_from_ms;
use crate::money::Money;
use crate::projection::channel::Period;
use crate::projection::names::{NameId, NameTable};
use crate::projection::rollup::{Counts, SlotCounts};
use crate::projection::selection::{Selection, range_ms};
use crate::projection::{BudgetState, Projection};
use crate::stats::filter_setters;
use crate::stats::{divide_rounded, validate_selection};

/// Which messages `Store::get_cost_report` covers, and which budgets it reports. Every part is
/// optional; an empty filter covers everything.
///
/// ```
/// use commlog::{Channel, CostFilter, Month};
/// let filter = CostFilter::new().channel(Channel::Sms).month(Month::new(2025, 1)?);
/// assert_eq!(filter.month, Some(Month::new(2025, 1)?));
/// # Ok::<(), commlog::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CostFilter {
    /// Only this user's messages (budgets still cover every user).
    pub user: Option<UserId>,
    /// Only messages of this type (budgets still cover every type).
    pub message_type: Option<String>,
    /// Only messages sent on this channel, and only the budgets covering it (`All` and its own).
    pub channel: Option<Channel>,
    /// Only messages sent at or after this time.
    #[serde(default, with = "crate::serde_time::optional")]
    pub start: Option<DateTime<Utc>>,
    /// Only messages sent at or before this time; also caps the report's "now".
    #[serde(default, with = "crate::serde_time::optional")]
    pub end: Option<DateTime<Utc>>,
    /// Only messages sent in this month (UTC), and only this month's budgets.
    pub month: Option<Month>,
}

impl CostFilter {
    /// The empty filter: everything.
    pub fn new() -> CostFilter {
        CostFilter::default()
    }

    /// Only this month.
    pub fn month(mut self, month: Month) -> CostFilter {
        self.month = Some(month);
        self
    }

    /// Refuses user 0, a malformed message type, and a start after the end, as the stats
    /// query does.
    pub(crate) fn validate(&self) -> Result<()> {
        validate_selection(
            self.user,
            self.message_type.as_deref(),
            self.start,
            self.end,
        )
    }

    /// The sent-time range selected, inclusive, in ms (start, end and month intersected);
    /// `None` when it is empty.
    fn range_ms(&self) -> Option<(i64, i64)> {
        let (mut start_ms, mut end_ms) = range_ms(self.start, self.end);
        if let Some(month) = self.month {
            let (first_ms, next_ms) = month.range_ms();
            start_ms = start_ms.max(first_ms);
            end_ms = end_ms.min(next_ms - 1);
        }
        (start_ms <= end_ms).then_some((start_ms, end_ms))
    }
}

filter_setters! {
    CostFilter {
        /// Only this user.
        user,
        /// Only this message type.
        message_type,
        /// Only this channel.
        channel,
        /// Only at or after `start` (inclusive).
        start,
        /// Only at or before `end` (inclusive).
        end,
    }
}

/// Counts and spend of a group of messages, with the cost of each result. Money quotients
/// are rounded to the micro-dollar, halves away from zero, and `None` when nothing divides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CostSummary {
    /// Messages in the group.
    pub messages: u64,
    /// Of them, delivered or further.
    pub delivered: u64,
    /// With any user action.
    pub responded: u64,
    /// With an action whose name contains "upgrade".
    pub converted: u64,
    /// Exact sum of their costs, failed messages included.
    #[serde(rename = "spent_micros")]
    pub spent: Money,
    /// spent / messages.
    #[serde(rename = "cost_per_message_micros")]
    pub cost_per_message: Option<Money>,
    /// spent / delivered.
    #[serde(rename = "cost_per_delivered_micros")]
    pub cost_per_delivered: Option<Money>,
    /// spent / responded.
    #[serde(rename = "cost_per_response_micros")]
    pub cost_per_response: Option<Money>,
    /// spent / converted.
    #[serde(rename = "cost_per_conversion_micros")]
    pub cost_per_conversion: Option<Money>,
}

/// Spend of one channel on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DailySpend {
    /// The UTC day of the messages' sent_at.
    pub day: NaiveDate,
    /// The channel.
    pub channel: Channel,
    /// Messages sent that day on that channel.
    pub messages: u64,
    /// Exact sum of their costs.
    #[serde(rename = "spent_micros")]
    pub spent: Money,
}

/// Spend of one channel in one UTC month.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MonthlySpend {
    /// The month of the messages' sent_at, labelled by its first day.
    pub month_start: NaiveDate,
    /// The channel.
    pub channel: Channel,
    /// Messages sent that month on that channel.
    pub messages: u64,
    /// Exact sum of their costs.
    #[serde(rename = "spent_micros")]
    pub spent: Money,
}

/// A budget (the last one set for its scope and month) against its month's spend so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// What spend it covers: all channels, or one.
    pub scope: BudgetScope,
    /// The month it covers.
    pub month: Month,
    /// The amount budgeted.
    #[serde(rename = "budget_micros")]
    pub budget: Money,
    /// Alert when spend reaches this percentage of the budget.
    pub alert_percent: u8,
    /// Exact cost of the scope's messages sent in the month up to "now", whatever the
    /// user and type filters.
    #[serde(rename = "spent_micros")]
    pub spent: Money,
    /// spent / budget, percent.
    pub utilization: f64,
    /// budget − spent (negative when over budget).
    #[serde(rename = "variance_micros")]
    pub variance: Money,
    /// Month-end spend at the pace so far: spent × month length ÷ elapsed part of it.
    #[serde(rename = "projected_micros")]
    pub projected: Money,
    /// spent × 100 ≥ alert_percent × budget.
    pub alert: bool,
    /// spent > budget.
    pub exceeded: bool,
}

/// What `Store::get_cost_report` answers (docs/SEMANTICS.md, "Cost and budgets").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// The report's "now": the filter's end or the latest tracked event time, the earlier;
    /// `None` before the first tracking event.
    #[serde(default, with = "crate::serde_time::optional")]
    pub now: Option<DateTime<Utc>>,
    /// Every message selected.
    pub total: CostSummary,
    /// Per channel with a message selected.
    pub by_channel: BTreeMap<Channel, CostSummary>,
    /// Per message type with a message selected.
    pub by_message_type: BTreeMap<String, CostSummary>,
    /// Per (day, channel) with a message selected, by day then channel.
    pub daily: Vec<DailySpend>,
    /// Per (month, channel) with a message selected, by month then channel.
    pub monthly: Vec<MonthlySpend>,
    /// Each budget whose month overlaps the selected time range and whose scope covers the
    /// channel filter, by month then scope (all first, then the channels in order).
    pub budgets: Vec<BudgetStatus>,
}

/// The summary of a group of messages from their counts.
fn summary(counts: &Counts) -> CostSummary {
    let quotient = |count: u64| {
        (count > 0).then(|| Money::from_micros(divide_rounded(counts.cost_micros, count)))
    };
    CostSummary {
        messages: counts.sent,
        delivered: counts.delivered,
        responded: counts.responded,
        converted: counts.converted,
        spent: Money::from_micros(counts.cost_micros),
        cost_per_message: quotient(counts.sent),
        cost_per_delivered: quotient(counts.delivered),
        cost_per_response: quotient(counts.responded),
        cost_per_conversion: quotient(counts.converted),
    }
}

/// Messages and spend of one (period, channel) cell.
#[derive(Debug, Clone, Copy, Default)]
struct SpendTally {
    messages: u64,
    spent_micros: i128,
}

impl SpendTally {
    fn add(&mut self, other: SpendTally) {
        self.messages += other.messages;
        self.spent_micros += other.spent_micros;
    }
}

impl Projection {
    /// The cost report over the messages `filter` selects, and the budgets it names
    /// (docs/SEMANTICS.md, "Cost and budgets"); "now" is `now_ms(filter.end)`, never the clock.
    ///
    /// Cost: with a user filter, the user's messages in the range; over every user, all time
    /// and every type, the totals over all time and their spend by day; else the rollup's
    /// buckets of the range day by day (one set of sums for every day, the totals summed from
    /// the days). Per budget reported: without an end, its month's days of the totals' spend
    /// by day; with one, one more range of buckets.
    pub(crate) fn cost_report(&self, filter: &CostFilter) -> CostReport {
        let mut total = Counts::default();
        let mut by_channel = [Counts::default(); Channel::ALL.len()];
        let mut by_type: BTreeMap<NameId, Counts> = BTreeMap::new();
        let mut daily = Vec::new();
        let mut by_month: BTreeMap<(NaiveDate, Channel), SpendTally> = BTreeMap::new();
        if let Some((start_ms, end_ms)) = filter.range_ms() {
            let selection = Selection {
                user: filter.user,
                message_type: filter.message_type.as_deref(),
                channel: filter.channel,
                start_ms,
                end_ms,
            };
            let mut add_counts = |channel: Channel, message_type: NameId, counts: &SlotCounts| {
                let (messages, _) = counts.spend();
                if messages == 0 {
                    return;
                }
                let counts = counts.counts();
                total.add(&counts);
                by_channel[channel.index()].add(&counts);
                by_type.entry(message_type).or_default().add(&counts);
            };
            // Over every user and all time, of every type: the totals over all time, which
            // hold the spend by day. Otherwise day by day (days outside the messages' span
            // hold none); the totals are the sums of the days, so each bucket is read once.
            let all_time = filter.user.is_none()
                && filter.message_type.is_none()
                && (start_ms, end_ms) == (i64::MIN, i64::MAX);
            let mut days: Vec<(NaiveDate, [SpendTally; Channel::ALL.len()])> = Vec::new();
            if let Some(totals) = all_time.then(|| self.all_time_totals()).flatten() {
                let channels = |channel: Channel| filter.channel.is_none_or(|only| only == channel);
                for (first_ms, spend) in totals.messages().by_day().days() {
                    let mut tallies = [SpendTally::default(); Channel::ALL.len()];
                    for channel in Channel::ALL
                        .into_iter()
                        .filter(|&channel| channels(channel))
                    {
                        let (messages, spent_micros) = spend[channel.index()];
                        tallies[channel.index()] = SpendTally {
                            messages,
                            spent_micros,
                        };
                    }
                    days.push((Period::Day.start_date(first_ms), tallies));
                }
                if let Some(filter) = self.slot_filter(&selection) {
                    totals.messages().visit(filter, &mut add_counts);
                }
            } else if let Some((first_ms, last_ms)) = self.message_span(filter.user)
                && start_ms.max(first_ms) <= end_ms.min(last_ms)
            {
                let periods = Period::Day.periods(start_ms.max(first_ms), end_ms.min(last_ms));
                let ranges: Vec<(i64, i64)> = periods
                    .iter()
                    .map(|&(_, first_ms, last_ms)| (first_ms.max(start_ms), last_ms.min(end_ms)))
                    .collect();
                days = periods
                    .iter()
                    .map(|&(day, _, _)| (day, [SpendTally::default(); Channel::ALL.len()]))
                    .collect();
                // By message type, then channel, summed over the days.
                let mut slots: NameTable<[SlotCounts; Channel::ALL.len()]> = NameTable::default();
                self.spend_in_ranges(
                    &selection,
                    &ranges,
                    |day, channel, (messages, spent_micros)| {
                        days[day].1[channel.index()].add(SpendTally {
                            messages,
                            spent_micros,
                        })
                    },
                    |channel, message_type, counts| {
                        slots.entry(message_type)[channel.index()].add(counts)
                    },
                );
                for (message_type, of_type) in slots.entries() {
                    for (channel, counts) in Channel::ALL.into_iter().zip(&of_type) {
                        add_counts(channel, message_type, counts);
                    }
                }
            }
            for (day, spend) in days {
                let month_start = day.with_day(1).expect("every month has a first day");
                for channel in Channel::ALL {
                    let tally = spend[channel.index()];
                    if tally.messages == 0 {
                        continue;
                    }
                    by_month
                        .entry((month_start, channel))
                        .or_default()
                        .add(tally);
                    daily.push(DailySpend {
                        day,
                        channel,
                        messages: tally.messages,
                        spent: Money::from_micros(tally.spent_micros),
                    });
                }
            }
        }
        let monthly = by_month
            .into_iter()
            .map(|((month_start, channel), tally)| MonthlySpend {
                month_start,
                channel,
                messages: tally.messages,
                spent: Money::from_micros(tally.spent_micros),
            })
            .collect();

        let mut by_channel_summary = BTreeMap::new();
        for channel in Channel::ALL {
            let counts = &by_channel[channel.index()];
            if counts.sent > 0 {
                by_channel_summary.insert(channel, summary(counts));
            }
        }
        let mut by_message_type = BTreeMap::new();
        for (name, counts) in by_type {
            by_message_type.insert(self.names().name(name).to_string(), summary(&counts));
        }
        let now_ms = self.now_ms(filter.end.map(|end| end.timestamp_millis()));
        CostReport {
            now: now_ms.map(time_from_ms),
            total: summary(&total),
            by_channel: by_channel_summary,
            by_message_type,
            daily,
            monthly,
            budgets: self.budget_statuses(filter, now_ms),
        }
    }

    /// The budgets `filter` names, each against its scope's spend in its month up to `now_ms`,
    /// over every user and type.
    fn budget_statuses(&self, filter: &CostFilter, now_ms: Option<i64>) -> Vec<BudgetStatus> {
        let Some((start_ms, end_ms)) = filter.range_ms() else {
            return Vec::new();
        };
        let reported: Vec<_> = self
            .budgets()
            .iter()
            .filter(|((scope, month), _)| {
                let (first_ms, next_ms) = month.range_ms();
                let covers_channel = match (scope, filter.channel) {
                    (_, None) | (BudgetScope::All, Some(_)) => true,
                    (BudgetScope::Channel(own), Some(channel)) => *own == channel,
                };
                covers_channel && first_ms <= end_ms && start_ms < next_ms
            })
            .collect();
        if reported.is_empty() {
            return Vec::new();
        }

        // Spend per channel of each reported month up to now, keyed by its first millisecond.
        // Without an end, now is the latest event's time, and every message is sent by then:
        // the totals' spend by day, where they answer, sums each month.
        let totals = filter
            .end
            .is_none()
            .then(|| self.all_time_totals())
            .flatten();
        let mut month_spend: BTreeMap<i64, [i128; Channel::ALL.len()]> = BTreeMap::new();
        for ((_, month), _) in &reported {
            let (first_ms, next_ms) = month.range_ms();
            let mut spent = [0; Channel::ALL.len()];
            if let Some(totals) = totals {
                let days = totals.messages().by_day().days();
                for (_, spend) in days.filter(|(day_ms, _)| (first_ms..next_ms).contains(day_ms)) {
                    for (spent, (_, micros)) in spent.iter_mut().zip(spend) {
                        *spent += micros;
                    }
                }
            } else if let Some(now_ms) = now_ms
                && first_ms <= now_ms
            {
                let every_message = Selection {
                    user: None,
                    message_type: None,
                    channel: None,
                    start_ms: first_ms,
                    end_ms: (next_ms - 1).min(now_ms),
                };
                let month = [(every_message.start_ms, every_message.end_ms)];
                self.count_in_ranges(&every_message, &month, |_, channel, _, counts| {
                    spent[channel.index()] += counts.spend().1;
                });
            }
            month_spend.insert(first_ms, spent);
        }

        let mut statuses = Vec::with_capacity(reported.len());
        for (&(scope, month), budget) in reported {
            let (first_ms, next_ms) = month.range_ms();
            let channel_spend = &month_spend[&first_ms];
            let spent_micros: i128 = match scope {
                BudgetScope::All => channel_spend.iter().sum(),
                BudgetScope::Channel(channel) => channel_spend[channel.index()],
            };
            let budget_micros = i128::from(budget.amount_micros);
            let month_ms = next_ms - first_ms;
            let elapsed_ms = now_ms.map_or(0, |now_ms| {
                (i128::from(now_ms) + 1 - i128::from(first_ms)).clamp(0, i128::from(month_ms))
            });
            // spent is below 2^95 (fewer than 2^32 messages of at most 9e18 micros) and a month
            // below 2^32 ms, so the product fits in i128.
            let projected_micros = if elapsed_ms == 0 {
                spent_micros
            } else {
                let elapsed_ms = u64::try_from(elapsed_ms).expect("clamped to the month");
                divide_rounded(spent_micros * i128::from(month_ms), elapsed_ms)
            };
            statuses.push(BudgetStatus {
                scope,
                month,
                budget: Money::from_micros(budget_micros),
                alert_percent: budget.alert_percent,
                spent: Money::from_micros(spent_micros),
                // A budget is at least one micro-dollar: the denominator is never 0.
                utilization: spent_micros as f64 * 100.0 / budget_micros as f64,
                variance: Money::from_micros(budget_micros - spent_micros),
                projected: Money::from_micros(projected_micros),
                alert: spent_micros * 100 >= i128::from(budget.alert_percent) * budget_micros,
                exceeded: spent_micros > budget_micros,
            });
        }
        statuses.sort_by_key(|status| (status.month, status.scope));
        statuses
    }
}

impl Projection {
    /// Every budget, by scope and month.
    pub(crate) fn budgets(&self) -> &BTreeMap<(BudgetScope, Month), BudgetState> {
        &self.budgets
    }
}
