//! The financial-impact report (docs/SEMANTICS.md, "Financial impact"): the outcomes a filter
//! selects, each with the credit `attribution.rs` keeps for it, summed by outcome, channel and
//! message type, with the cost of the messages and the return on it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Channel, UserId};
use crate::money::Money;
use crate::projection::Projection;
use crate::projection::attribution::{AttributionLevel, Groups, OutcomeGroup, OutcomeSums};
use crate::projection::names::{NameId, NameTable, Names};
use crate::projection::selection::{Selection, TypeFilter, range_ms};
use crate::stats::StatsFilter;
use crate::stats::filter_setters;

/// Milliseconds in a day, for "days since the last communication".
const DAY_MS: i64 = 86_400_000;

/// Which outcomes `Store::get_financial_impact` covers. Every part is optional; an empty filter
/// covers every outcome.
///
/// ```
/// use commlog::{Channel, ImpactFilter};
/// let filter = ImpactFilter::new().user(123).channel(Channel::Sms);
/// assert_eq!(filter.channel, Some(Channel::Sms));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImpactFilter {
    /// Only this user's outcomes (and messages, for costs).
    pub user: Option<UserId>,
    /// Only outcomes credited to a message of this type (and its messages, for costs).
    pub message_type: Option<String>,
    /// Only outcomes credited to a message on this channel (and its messages, for costs).
    pub channel: Option<Channel>,
    /// Only outcomes at or after this time (messages sent at or after it, for costs).
    #[serde(default, with = "crate::serde_time::optional")]
    pub start: Option<DateTime<Utc>>,
    /// Only outcomes at or before this time (messages sent at or before it, for costs).
    #[serde(default, with = "crate::serde_time::optional")]
    pub end: Option<DateTime<Utc>>,
}

impl ImpactFilter {
    /// The empty filter: every outcome.
    pub fn new() -> ImpactFilter {
        ImpactFilter::default()
    }

    /// The same parts as a stats filter: it selects the messages whose cost the ROI counts.
    pub(crate) fn message_filter(&self) -> StatsFilter {
        StatsFilter {
            user: self.user,
            message_type: self.message_type.clone(),
            channel: self.channel,
            start: self.start,
            end: self.end,
        }
    }
}

filter_setters! {
    ImpactFilter {
        /// Only this user.
        user,
        /// Only outcomes credited to a message of this type.
        message_type,
        /// Only outcomes credited to a message on this channel.
        channel,
        /// Only at or after `start` (inclusive).
        start,
        /// Only at or before `end` (inclusive).
        end,
    }
}

/// A number of outcomes and the exact sum of their amounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImpactTotal {
    /// Outcomes.
    pub count: u64,
    /// Exact sum of their amounts (negative amounts are losses).
    #[serde(rename = "amount_micros")]
    pub amount: Money,
}

/// Outcomes credited to messages, in all and by attribution level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttributedImpact {
    /// Outcomes credited (engaged + delivered).
    pub count: u64,
    /// Exact sum of their amounts.
    #[serde(rename = "amount_micros")]
    pub amount: Money,
    /// Those credited at level engaged.
    pub engaged: ImpactTotal,
    /// Those credited at level delivered.
    pub delivered: ImpactTotal,
}

/// One channel's credited outcomes, the cost of its messages, and the return on that cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelImpact {
    /// The channel.
    pub channel: Channel,
    /// Outcomes credited to its messages.
    pub attributed: AttributedImpact,
    /// Exact sum of the costs of its messages the filter selects (sent in [start, end]).
    #[serde(rename = "cost_micros")]
    pub cost: Money,
    /// (attributed.amount − cost) ÷ cost, a ratio (1.0 = +100 %); `None` when cost is 0.
    pub roi: Option<f64>,
}

/// The financial-impact report over the outcomes an [`ImpactFilter`] selects
/// (docs/SEMANTICS.md, "Financial impact").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImpactReport {
    /// Outcomes selected, and the exact sum of their amounts.
    pub outcomes: ImpactTotal,
    /// The selected outcomes per outcome name, non-zero counts only.
    pub by_outcome: BTreeMap<String, ImpactTotal>,
    /// Those credited to a message.
    pub attributed: AttributedImpact,
    /// Those credited to no message (always 0 with a channel or type filter).
    pub unattributed: ImpactTotal,
    /// Credited outcomes, cost and ROI per channel, in [`Channel::ALL`] order (only the
    /// filter's channel when it has one).
    pub by_channel: Vec<ChannelImpact>,
    /// Credited outcomes per message type of the credited message, non-zero counts only.
    pub by_message_type: BTreeMap<String, AttributedImpact>,
    /// Selected outcomes with a message of the user sent at or before them.
    pub outcomes_after_communication: u64,
    /// Mean over those of (outcome time − latest such sent_at), in days; `None` if none.
    pub mean_days_since_last_communication: Option<f64>,
}

/// Return on cost as a ratio, (impact − cost) ÷ cost; `None` when the cost is 0.
pub(crate) fn return_on_cost(impact_micros: i128, cost_micros: i128) -> Option<f64> {
    (cost_micros != 0).then(|| (impact_micros - cost_micros) as f64 / cost_micros as f64)
}

/// A running count and exact sum.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    count: u64,
    micros: i128,
}

impl Sum {
    fn add(&mut self, sums: &OutcomeSums) {
        self.count += sums.count;
        self.micros += sums.amount_micros;
    }

    fn finish(self) -> ImpactTotal {
        ImpactTotal {
            count: self.count,
            amount: Money::from_micros(self.micros),
        }
    }
}

/// Running sums of credited outcomes, by level.
#[derive(Debug, Clone, Copy, Default)]
struct AttributedSum {
    engaged: Sum,
    delivered: Sum,
}

impl AttributedSum {
    fn add(&mut self, level: AttributionLevel, sums: &OutcomeSums) {
        match level {
            AttributionLevel::Engaged => self.engaged.add(sums),
            AttributionLevel::Delivered => self.delivered.add(sums),
        }
    }

    fn micros(&self) -> i128 {
        self.engaged.micros + self.delivered.micros
    }

    fn finish(self) -> AttributedImpact {
        AttributedImpact {
            count: self.engaged.count + self.delivered.count,
            amount: Money::from_micros(self.micros()),
            engaged: self.engaged.finish(),
            delivered: self.delivered.finish(),
        }
    }
}

/// Running sums of the impact report.
#[derive(Debug, Default)]
struct ImpactTally {
    outcomes: Sum,
    by_outcome: NameTable<Sum>,
    attributed: AttributedSum,
    unattributed: Sum,
    by_channel: [AttributedSum; Channel::ALL.len()],
    by_message_type: NameTable<AttributedSum>,
    cost_micros: [i128; Channel::ALL.len()],
    gap_count: u64,
    gap_ms: i128,
}

impl ImpactTally {
    /// Adds outcomes grouped under `group`. Every outcome comes once by its credit, which
    /// counts it in the totals, and once by its name.
    fn add(&mut self, group: OutcomeGroup, sums: &OutcomeSums) {
        let credit = match group {
            OutcomeGroup::Name(name) => return self.by_outcome.entry(name).add(sums),
            OutcomeGroup::Credit(credit) => credit,
        };
        self.outcomes.add(sums);
        match credit {
            Some((channel, message_type, level)) => {
                self.attributed.add(level, sums);
                self.by_channel[channel.index()].add(level, sums);
                self.by_message_type.entry(message_type).add(level, sums);
            }
            None => self.unattributed.add(sums),
        }
        self.gap_count += sums.gap_count;
        self.gap_ms += sums.gap_ms;
    }

    fn finish(self, names: &Names, channel_filter: Option<Channel>) -> ImpactReport {
        let by_outcome = self
            .by_outcome
            .entries()
            .map(|(name, sum)| (names.name(name).to_string(), sum.finish()))
            .collect();
        let by_channel = Channel::ALL
            .into_iter()
            .filter(|channel| channel_filter.is_none_or(|only| only == *channel))
            .map(|channel| {
                let attributed = self.by_channel[channel.index()];
                let cost_micros = self.cost_micros[channel.index()];
                ChannelImpact {
                    channel,
                    attributed: attributed.finish(),
                    cost: Money::from_micros(cost_micros),
                    roi: return_on_cost(attributed.micros(), cost_micros),
                }
            })
            .collect();
        let by_message_type = self
            .by_message_type
            .entries()
            .map(|(name, sum)| (names.name(name).to_string(), sum.finish()))
            .collect();
        ImpactReport {
            outcomes: self.outcomes.finish(),
            by_outcome,
            attributed: self.attributed.finish(),
            unattributed: self.unattributed.finish(),
            by_channel,
            by_message_type,
            outcomes_after_communication: self.gap_count,
            mean_days_since_last_communication: (self.gap_count > 0)
                .then(|| self.gap_ms as f64 / self.gap_count as f64 / DAY_MS as f64),
        }
    }
}

impl Projection {
    /// The financial-impact report over the outcomes `filter` selects, each credited by
    /// [`Facts::attribute`](crate::projection::Facts::attribute) (docs/SEMANTICS.md, "Financial
    /// impact").
    ///
    /// Cost: with a user filter, the user's outcomes and messages in the range; over every user
    /// and all time, the outcome sums over all time and the totals over all time; else the outcome
    /// buckets and the message rollup of the range (`time_index.rs`). Credits are kept current
    /// as events arrive (`attribution.rs`), not computed here.
    pub(crate) fn impact(&self, filter: &ImpactFilter) -> ImpactReport {
        // Over every user, the costs come from the rollup, unless over all time: from the
        // totals over all time (`count_selection`), beside the credits.
        if filter.user.is_none() && (filter.start.is_some() || filter.end.is_some()) {
            self.build_indexes();
        }
        let (start_ms, end_ms) = range_ms(filter.start, filter.end);
        let type_filter = TypeFilter::of(filter.message_type.as_deref(), self.names());
        let credit_filtered = filter.message_type.is_some() || filter.channel.is_some();
        let matches = |channel: Channel, message_type: NameId| {
            type_filter.takes(message_type) && filter.channel.is_none_or(|only| only == channel)
        };
        let mut tally = ImpactTally::default();
        if credit_filtered {
            // A channel or type filter keeps the outcomes credited to a matching message: their
            // names are known by key only.
            self.visit_outcomes(filter.user, start_ms, end_ms, |key, sums| {
                if key
                    .credit
                    .is_some_and(|(channel, message_type, _)| matches(channel, message_type))
                {
                    tally.add(OutcomeGroup::Credit(key.credit), sums);
                    tally.add(OutcomeGroup::Name(key.outcome), sums);
                }
            });
        } else {
            self.visit_outcome_groups(
                filter.user,
                Groups::CreditsAndNames,
                start_ms,
                end_ms,
                |group, sums| tally.add(group, sums),
            );
        }
        let selection = Selection {
            user: filter.user,
            message_type: filter.message_type.as_deref(),
            channel: filter.channel,
            start_ms,
            end_ms,
        };
        self.count_selection(&selection, |channel, _, counts| {
            tally.cost_micros[channel.index()] += counts.cost_micros;
        });
        tally.finish(self.names(), filter.channel)
    }
}
