//! The cost view: spend per channel × day and × month, per channel and message type, cost per
//! delivered message, response and conversion, and every budget against its month's spend.
//!
//! Computed at query time from the status view (docs/SEMANTICS.md, "Cost and budgets").

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{BudgetScope, Channel, Month, UserId};
use crate::message::time_from_ms;
use crate::money::Money;
use crate::projection::names::NameId;
use crate::projection::status::MessageState;
use crate::projection::{Projection, Selection};
use crate::stats::{divide_rounded, percent, validate_selection};

const MILLISECONDS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

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
    pub start: Option<DateTime<Utc>>,
    /// Only messages sent at or before this time; also caps the report's "now".
    pub end: Option<DateTime<Utc>>,
    /// Only messages sent in this month (UTC), and only this month's budgets.
    pub month: Option<Month>,
}

impl CostFilter {
    /// The empty filter: everything.
    pub fn new() -> CostFilter {
        CostFilter::default()
    }

    /// Only this user.
    pub fn user(mut self, user: impl Into<UserId>) -> CostFilter {
        self.user = Some(user.into());
        self
    }

    /// Only this message type.
    pub fn message_type(mut self, message_type: impl Into<String>) -> CostFilter {
        self.message_type = Some(message_type.into());
        self
    }

    /// Only this channel.
    pub fn channel(mut self, channel: Channel) -> CostFilter {
        self.channel = Some(channel);
        self
    }

    /// Only at or after `start` (inclusive).
    pub fn start(mut self, start: DateTime<Utc>) -> CostFilter {
        self.start = Some(start);
        self
    }

    /// Only at or before `end` (inclusive).
    pub fn end(mut self, end: DateTime<Utc>) -> CostFilter {
        self.end = Some(end);
        self
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
        let mut start_ms = self
            .start
            .map_or(i64::MIN, |start| start.timestamp_millis());
        let mut end_ms = self.end.map_or(i64::MAX, |end| end.timestamp_millis());
        if let Some(month) = self.month {
            let (first_ms, next_ms) = month.range_ms();
            start_ms = start_ms.max(first_ms);
            end_ms = end_ms.min(next_ms - 1);
        }
        (start_ms <= end_ms).then_some((start_ms, end_ms))
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
    pub spent: Money,
    /// spent / messages.
    pub cost_per_message: Option<Money>,
    /// spent / delivered.
    pub cost_per_delivered: Option<Money>,
    /// spent / responded.
    pub cost_per_response: Option<Money>,
    /// spent / converted.
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
    pub budget: Money,
    /// Alert when spend reaches this percentage of the budget.
    pub alert_percent: u8,
    /// Exact cost of the scope's messages sent in the month up to "now", whatever the
    /// user and type filters.
    pub spent: Money,
    /// spent / budget, percent.
    pub utilization: f64,
    /// budget − spent (negative when over budget).
    pub variance: Money,
    /// Month-end spend at the pace so far: spent × month length ÷ elapsed part of it.
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

/// Running counts of one group of messages.
#[derive(Debug, Clone, Copy, Default)]
struct CostTally {
    messages: u64,
    delivered: u64,
    responded: u64,
    converted: u64,
    spent_micros: i128,
}

impl CostTally {
    fn add(&mut self, state: &MessageState) {
        self.messages += 1;
        self.delivered += u64::from(state.delivered.is_some());
        self.responded += u64::from(state.latest_action().is_some());
        self.converted += u64::from(state.converted());
        self.spent_micros += i128::from(state.cost_micros);
    }

    fn finish(self) -> Result<CostSummary> {
        let quotient = |field: &'static str, count: u64| -> Result<Option<Money>> {
            if count == 0 {
                return Ok(None);
            }
            money(field, divide_rounded(self.spent_micros, count)).map(Some)
        };
        Ok(CostSummary {
            messages: self.messages,
            delivered: self.delivered,
            responded: self.responded,
            converted: self.converted,
            spent: money("spent", self.spent_micros)?,
            cost_per_message: quotient("cost_per_message", self.messages)?,
            cost_per_delivered: quotient("cost_per_delivered", self.delivered)?,
            cost_per_response: quotient("cost_per_response", self.responded)?,
            cost_per_conversion: quotient("cost_per_conversion", self.converted)?,
        })
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

/// Exact micros to `Money`, or `Error::Overflow` naming `field`.
fn money(field: &'static str, micros: i128) -> Result<Money> {
    i64::try_from(micros)
        .map(Money::from_micros)
        .map_err(|_| Error::Overflow { field })
}

impl Projection {
    /// The cost report over the messages `filter` selects, and the budgets it names
    /// (docs/SEMANTICS.md, "Cost and budgets"); "now" is `now_ms(filter.end)`, never the clock.
    ///
    /// Cost: the messages in the selected range — with a user filter only that user's, found
    /// in their sorted list, else one pass over every message — plus, when a budget is
    /// reported, one pass over every message for the budgets' month spend (a later change
    /// buckets both).
    pub(crate) fn cost_report(&self, filter: &CostFilter) -> Result<CostReport> {
        let mut total = CostTally::default();
        let mut by_channel = [CostTally::default(); Channel::ALL.len()];
        let mut by_type: BTreeMap<NameId, CostTally> = BTreeMap::new();
        let mut by_day: BTreeMap<(i64, Channel), SpendTally> = BTreeMap::new();
        self.for_each_cost_selected(filter, |state| {
            total.add(state);
            by_channel[state.channel.index()].add(state);
            by_type.entry(state.message_type).or_default().add(state);
            let day = state.sent_ms.div_euclid(MILLISECONDS_PER_DAY);
            by_day
                .entry((day, state.channel))
                .or_default()
                .add(SpendTally {
                    messages: 1,
                    spent_micros: i128::from(state.cost_micros),
                });
        });

        let mut by_month: BTreeMap<(NaiveDate, Channel), SpendTally> = BTreeMap::new();
        let mut daily = Vec::with_capacity(by_day.len());
        for (&(day, channel), &tally) in &by_day {
            let date = time_from_ms(day * MILLISECONDS_PER_DAY).date_naive();
            let month_start = date.with_day(1).expect("every month has a first day");
            by_month
                .entry((month_start, channel))
                .or_default()
                .add(tally);
            daily.push(DailySpend {
                day: date,
                channel,
                messages: tally.messages,
                spent: money("spent", tally.spent_micros)?,
            });
        }
        let monthly = by_month
            .into_iter()
            .map(|((month_start, channel), tally)| {
                Ok(MonthlySpend {
                    month_start,
                    channel,
                    messages: tally.messages,
                    spent: money("spent", tally.spent_micros)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let mut by_channel_summary = BTreeMap::new();
        for channel in Channel::ALL {
            let tally = by_channel[channel.index()];
            if tally.messages > 0 {
                by_channel_summary.insert(channel, tally.finish()?);
            }
        }
        let mut by_message_type = BTreeMap::new();
        for (name, tally) in by_type {
            by_message_type.insert(self.names().name(name).to_string(), tally.finish()?);
        }
        let now_ms = self.now_ms(filter.end.map(|end| end.timestamp_millis()));
        Ok(CostReport {
            now: now_ms.map(time_from_ms),
            total: total.finish()?,
            by_channel: by_channel_summary,
            by_message_type,
            daily,
            monthly,
            budgets: self.budget_statuses(filter, now_ms)?,
        })
    }

    /// Calls `visit` with every message `filter` selects: type, channel, user, and sent time
    /// within [`CostFilter::range_ms`].
    fn for_each_cost_selected(&self, filter: &CostFilter, mut visit: impl FnMut(&MessageState)) {
        let Some((start_ms, end_ms)) = filter.range_ms() else {
            return;
        };
        let selection = Selection {
            user: filter.user,
            message_type: filter.message_type.as_deref(),
            channel: filter.channel,
            start_ms,
            end_ms,
        };
        self.for_each_in_selection(&selection, |_, state| visit(state));
    }

    /// The budgets `filter` names, each against its scope's spend in its month up to `now_ms`,
    /// over every user and type.
    fn budget_statuses(
        &self,
        filter: &CostFilter,
        now_ms: Option<i64>,
    ) -> Result<Vec<BudgetStatus>> {
        let Some((start_ms, end_ms)) = filter.range_ms() else {
            return Ok(Vec::new());
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
            return Ok(Vec::new());
        }

        // Spend per channel of each reported month, keyed by the month's first millisecond.
        let mut month_spend: BTreeMap<i64, (i64, [i128; Channel::ALL.len()])> = reported
            .iter()
            .map(|((_, month), _)| {
                let (first_ms, next_ms) = month.range_ms();
                (first_ms, (next_ms, [0; Channel::ALL.len()]))
            })
            .collect();
        if let Some(now_ms) = now_ms {
            for state in self.message_states() {
                if state.sent_ms > now_ms {
                    continue;
                }
                if let Some((_, (next_ms, spent))) =
                    month_spend.range_mut(..=state.sent_ms).next_back()
                    && state.sent_ms < *next_ms
                {
                    spent[state.channel.index()] += i128::from(state.cost_micros);
                }
            }
        }

        let mut statuses = Vec::with_capacity(reported.len());
        for (&(scope, month), budget) in reported {
            let (first_ms, next_ms) = month.range_ms();
            let channel_spend = &month_spend[&first_ms].1;
            let spent_micros: i128 = match scope {
                BudgetScope::All => channel_spend.iter().sum(),
                BudgetScope::Channel(channel) => channel_spend[channel.index()],
            };
            let budget_micros = i128::from(budget.amount_micros);
            let month_ms = next_ms - first_ms;
            let elapsed_ms = now_ms.map_or(0, |now_ms| {
                (i128::from(now_ms) + 1 - i128::from(first_ms)).clamp(0, i128::from(month_ms))
            });
            let projected_micros = if elapsed_ms == 0 {
                spent_micros
            } else {
                let elapsed_ms = u64::try_from(elapsed_ms).expect("clamped to the month");
                divide_rounded(spent_micros * i128::from(month_ms), elapsed_ms)
            };
            let spent = money("spent", spent_micros)?;
            let budget_amount = Money::from_micros(budget.amount_micros);
            statuses.push(BudgetStatus {
                scope,
                month,
                budget: budget_amount,
                alert_percent: budget.alert_percent,
                spent,
                utilization: percent(
                    spent.micros().unsigned_abs(),
                    budget.amount_micros.unsigned_abs(),
                ),
                variance: money("variance", budget_micros - spent_micros)?,
                projected: money("projected", projected_micros)?,
                alert: spent_micros * 100 >= i128::from(budget.alert_percent) * budget_micros,
                exceeded: spent_micros > budget_micros,
            });
        }
        statuses.sort_by_key(|status| (status.month, status.scope));
        Ok(statuses)
    }
}
