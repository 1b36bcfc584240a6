//! The channel-effectiveness view: per channel and message type, how the messages fared, what
//! they cost, the outcomes credited to them, and which channel wins each message type.
//!
//! Computed at query time from the message rollup (over all time without a period, the
//! totals over all time) and the outcome credits (or, with a user filter, the user's own
//! messages and outcomes); nothing else is kept between queries.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Channel, UserId};
use crate::money::Money;
use crate::projection::Projection;
use crate::projection::attribution::{Groups, OutcomeGroup, OutcomeSums};
use crate::projection::impact::return_on_cost;
use crate::projection::names::{NameId, NameTable, Names};
use crate::projection::rollup::Counts;
use crate::projection::selection::{Selection, TypeFilter, range_ms};
use crate::stats::filter_setters;
use crate::stats::{divide_rounded, percent};

/// The length of one step of a time series, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A calendar day from 00:00.
    Day,
    /// An ISO week, from Monday 00:00.
    Week,
    /// A calendar month, from the 1st at 00:00.
    Month,
}

impl Period {
    /// The first date of the period that holds the instant `at_ms` (its label).
    pub(crate) fn start_date(self, at_ms: i64) -> NaiveDate {
        let date = DateTime::from_timestamp_millis(at_ms)
            .expect("times come from DateTime<Utc>")
            .date_naive();
        match self {
            Period::Day => date,
            // Only the first days of chrono's range have no Monday before them.
            Period::Week => date
                .checked_sub_days(Days::new(u64::from(date.weekday().num_days_from_monday())))
                .unwrap_or(NaiveDate::MIN),
            Period::Month => date.with_day(1).expect("every month has a 1st"),
        }
    }
}

/// Which messages and outcomes `Store::get_channel_effectiveness` covers, and whether it adds
/// a time series. Every part is optional; an empty filter covers everything.
///
/// ```
/// use commlog::{EffectivenessFilter, Period};
/// let filter = EffectivenessFilter::new().message_type("low_balance").period(Period::Week);
/// assert_eq!(filter.period, Some(Period::Week));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EffectivenessFilter {
    /// Only this user's messages and outcomes.
    pub user: Option<UserId>,
    /// Only messages of this type (and outcomes credited to them).
    pub message_type: Option<String>,
    /// Only messages sent (outcomes happened) at or after this time.
    #[serde(default, with = "crate::serde_time::optional")]
    pub start: Option<DateTime<Utc>>,
    /// Only messages sent (outcomes happened) at or before this time.
    #[serde(default, with = "crate::serde_time::optional")]
    pub end: Option<DateTime<Utc>>,
    /// Also break the report down by this period.
    pub period: Option<Period>,
}

impl EffectivenessFilter {
    /// The empty filter: everything, no time series.
    pub fn new() -> EffectivenessFilter {
        EffectivenessFilter::default()
    }

    /// Add a time series by `period`.
    pub fn period(mut self, period: Period) -> EffectivenessFilter {
        self.period = Some(period);
        self
    }
}

filter_setters! {
    EffectivenessFilter {
        /// Only this user.
        user,
        /// Only this message type.
        message_type,
        /// Only at or after `start` (inclusive).
        start,
        /// Only at or before `end` (inclusive).
        end,
    }
}

/// How one channel (and message type) performed. Rates are percent, 0.0 when their
/// denominator is 0; money quotients are rounded to the micro, halves away from zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelLine {
    /// The channel.
    pub channel: Channel,
    /// The message type; `None` on a channel's overall line.
    pub message_type: Option<String>,
    /// Messages sent.
    pub sent: u64,
    /// Of them, delivered or further.
    pub delivered: u64,
    /// Opened or further.
    pub opened: u64,
    /// Clicked.
    pub clicked: u64,
    /// With any user action.
    pub responded: u64,
    /// With an action whose name contains "upgrade".
    pub converted: u64,
    /// delivered / sent, percent.
    pub delivery_rate: f64,
    /// opened / delivered, percent.
    pub open_rate: f64,
    /// clicked / opened, percent.
    pub click_rate: f64,
    /// responded / delivered, percent.
    pub response_rate: f64,
    /// converted / delivered, percent.
    pub conversion_rate: f64,
    /// Exact sum of the messages' costs.
    #[serde(rename = "total_cost_micros")]
    pub total_cost: Money,
    /// total_cost / sent; `None` when nothing was sent.
    #[serde(rename = "cost_per_message_micros")]
    pub cost_per_message: Option<Money>,
    /// total_cost / responded; `None` when nothing was responded to.
    #[serde(rename = "cost_per_response_micros")]
    pub cost_per_response: Option<Money>,
    /// total_cost / converted; `None` when nothing converted.
    #[serde(rename = "cost_per_conversion_micros")]
    pub cost_per_conversion: Option<Money>,
    /// Outcomes credited (last touch) to a message of this line.
    pub attributed_outcomes: u64,
    /// Exact sum of their amounts.
    #[serde(rename = "attributed_impact_micros")]
    pub attributed_impact: Money,
    /// (attributed_impact − total_cost) / total_cost, a ratio (1.0 = +100 %); `None` at cost 0.
    pub roi: Option<f64>,
    /// 0.2·delivery + 0.2·open + 0.3·response + 0.3·conversion rate.
    pub performance_score: f64,
}

/// The best channel for one message type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelWinner {
    /// The message type.
    pub message_type: String,
    /// The channel with the highest performance score for it.
    pub channel: Channel,
    /// That channel's score for the type.
    pub performance_score: f64,
    /// That channel's cost per response for the type (the first tie-break).
    #[serde(rename = "cost_per_response_micros")]
    pub cost_per_response: Option<Money>,
}

/// The report narrowed to one period of the time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelPeriod {
    /// The period's first date (UTC), its label.
    pub start: NaiveDate,
    /// Per channel and message type, in channel order then type name.
    pub lines: Vec<ChannelLine>,
    /// Per channel, all message types together, in channel order.
    pub channels: Vec<ChannelLine>,
    /// Per message type, the winning channel, by type name.
    pub winners: Vec<ChannelWinner>,
}

/// What `Store::get_channel_effectiveness` answers (docs/SEMANTICS.md, "Channel
/// effectiveness").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelReport {
    /// The filter's period, if any.
    pub period: Option<Period>,
    /// Per channel and message type, in channel order then type name.
    pub lines: Vec<ChannelLine>,
    /// Per channel, all message types together, in channel order.
    pub channels: Vec<ChannelLine>,
    /// Per message type, the winning channel, by type name.
    pub winners: Vec<ChannelWinner>,
    /// With a period: each period that holds a selected message or a counted outcome, oldest
    /// first.
    pub periods: Vec<ChannelPeriod>,
}

impl Period {
    /// The first date of the period after the one starting on `start` (a label).
    fn next_start(self, start: NaiveDate) -> Option<NaiveDate> {
        match self {
            Period::Day => start.checked_add_days(Days::new(1)),
            Period::Week => start.checked_add_days(Days::new(7)),
            Period::Month => start.checked_add_months(Months::new(1)),
        }
    }

    /// The periods meeting `[start_ms, end_ms]`, each as (label, first ms, last ms), oldest
    /// first.
    pub(crate) fn periods(self, start_ms: i64, end_ms: i64) -> Vec<(NaiveDate, i64, i64)> {
        let mut periods = Vec::new();
        let mut label = self.start_date(start_ms);
        loop {
            let next = self.next_start(label);
            let last_ms = next.map_or(i64::MAX, |next| date_ms(next) - 1);
            periods.push((label, date_ms(label), last_ms));
            match next {
                Some(next) if date_ms(next) <= end_ms => label = next,
                _ => return periods,
            }
        }
    }
}

/// Midnight UTC of `date`, in ms.
fn date_ms(date: NaiveDate) -> i64 {
    date.and_time(NaiveTime::MIN).and_utc().timestamp_millis()
}

impl Projection {
    /// The channel-effectiveness report for `filter` (docs/SEMANTICS.md, "Channel
    /// effectiveness").
    ///
    /// Cost: with a user filter, the user's messages and outcomes in the range; over every user
    /// and all time without a period, the totals over all time and the outcome sums over all time;
    /// else the rollup and outcome buckets of the range (`time_index.rs`), once per period
    /// with a time series. Then a sort of the lines. No wall clock.
    pub(crate) fn channel_effectiveness(&self, filter: &EffectivenessFilter) -> ChannelReport {
        // Over every user, the counts come from the rollup, unless over all time without a
        // period: from the totals over all time (`count_selection`), beside the credits.
        let all_time = filter.start.is_none() && filter.end.is_none() && filter.period.is_none();
        if filter.user.is_none() && !all_time {
            self.build_indexes();
        }
        let (start_ms, end_ms) = range_ms(filter.start, filter.end);
        let names = self.names();
        let type_filter = TypeFilter::of(filter.message_type.as_deref(), names);
        if type_filter == TypeFilter::Nothing {
            return ChannelReport {
                period: filter.period,
                ..ChannelReport::default()
            };
        }
        let selection = Selection {
            user: filter.user,
            message_type: filter.message_type.as_deref(),
            channel: None,
            start_ms,
            end_ms,
        };
        let (lines, channels, winners) = self.breakdown(&selection, type_filter).finish(names);

        let mut period_reports = Vec::new();
        // Outcomes count in the period of their own time, which may hold no message.
        let span = || match (
            self.message_span(filter.user),
            self.outcome_span(filter.user),
        ) {
            (Some(messages), Some(outcomes)) => {
                Some((messages.0.min(outcomes.0), messages.1.max(outcomes.1)))
            }
            (messages, outcomes) => messages.or(outcomes),
        };
        if let Some((period, (first_ms, last_ms))) =
            filter.period.and_then(|period| Some((period, span()?)))
        {
            // Periods outside the span of messages and outcomes hold neither: they are not
            // reported.
            let (start_ms, end_ms) = (start_ms.max(first_ms), end_ms.min(last_ms));
            if start_ms <= end_ms {
                for (start, first_ms, last_ms) in period.periods(start_ms, end_ms) {
                    let piece = Selection {
                        start_ms: first_ms.max(selection.start_ms),
                        end_ms: last_ms.min(selection.end_ms),
                        ..selection
                    };
                    let breakdown = self.breakdown(&piece, type_filter);
                    // Only periods with a line (a selected message or a counted outcome)
                    // appear, so the periods add up to the totals.
                    if breakdown.lines.is_empty() {
                        continue;
                    }
                    let (lines, channels, winners) = breakdown.finish(names);
                    period_reports.push(ChannelPeriod {
                        start,
                        lines,
                        channels,
                        winners,
                    });
                }
            }
        }
        ChannelReport {
            period: filter.period,
            lines,
            channels,
            winners,
            periods: period_reports,
        }
    }

    /// The messages `selection` takes, and the outcomes in its time range (of its user, with
    /// one) credited to a message of type `type_filter` (any, without one).
    fn breakdown(&self, selection: &Selection<'_>, type_filter: TypeFilter) -> Breakdown {
        let mut breakdown = Breakdown::default();
        self.count_selection(selection, |channel, message_type, counts| {
            breakdown.add_counts(channel, message_type, counts)
        });
        self.visit_outcome_groups(
            selection.user,
            Groups::Credits,
            selection.start_ms,
            selection.end_ms,
            |group, sums| {
                if let OutcomeGroup::Credit(Some((channel, message_type, _))) = group
                    && type_filter.takes(message_type)
                {
                    breakdown.add_credit(channel, message_type, sums);
                }
            },
        );
        breakdown
    }
}

/// Running counts of one line.
#[derive(Debug, Default)]
struct LineTally {
    counts: Counts,
    attributed_outcomes: u64,
    attributed_micros: i128,
}

impl LineTally {
    fn merge(&mut self, other: &LineTally) {
        self.counts.add(&other.counts);
        self.attributed_outcomes += other.attributed_outcomes;
        self.attributed_micros += other.attributed_micros;
    }

    /// The performance score as an exact fraction (numerator, denominator) of the score ÷ 10:
    /// 2·delivered/sent + (2·opened + 3·responded + 3·converted)/delivered.
    fn score_fraction(&self) -> (u128, u128) {
        if self.counts.sent == 0 || self.counts.delivered == 0 {
            return (0, 1);
        }
        let sent = u128::from(self.counts.sent);
        let delivered = u128::from(self.counts.delivered);
        let engaged = 2 * u128::from(self.counts.opened)
            + 3 * u128::from(self.counts.responded)
            + 3 * u128::from(self.counts.converted);
        (2 * delivered * delivered + engaged * sent, sent * delivered)
    }

    /// total cost / responded as an exact fraction; `None` without a response.
    fn cost_per_response_fraction(&self) -> Option<(u128, u128)> {
        let cost = u128::try_from(self.counts.cost_micros).expect("costs are never negative");
        (self.counts.responded > 0).then(|| (cost, u128::from(self.counts.responded)))
    }

    fn to_line(&self, channel: Channel, message_type: Option<&str>) -> ChannelLine {
        let quotient = |count: u64| {
            (count > 0).then(|| Money::from_micros(divide_rounded(self.counts.cost_micros, count)))
        };
        let delivery_rate = percent(self.counts.delivered, self.counts.sent);
        let open_rate = percent(self.counts.opened, self.counts.delivered);
        let click_rate = percent(self.counts.clicked, self.counts.opened);
        let response_rate = percent(self.counts.responded, self.counts.delivered);
        let conversion_rate = percent(self.counts.converted, self.counts.delivered);
        ChannelLine {
            channel,
            message_type: message_type.map(str::to_string),
            sent: self.counts.sent,
            delivered: self.counts.delivered,
            opened: self.counts.opened,
            clicked: self.counts.clicked,
            responded: self.counts.responded,
            converted: self.counts.converted,
            delivery_rate,
            open_rate,
            click_rate,
            response_rate,
            conversion_rate,
            total_cost: Money::from_micros(self.counts.cost_micros),
            cost_per_message: quotient(self.counts.sent),
            cost_per_response: quotient(self.counts.responded),
            cost_per_conversion: quotient(self.counts.converted),
            attributed_outcomes: self.attributed_outcomes,
            attributed_impact: Money::from_micros(self.attributed_micros),
            roi: return_on_cost(self.attributed_micros, self.counts.cost_micros),
            performance_score: 0.2 * delivery_rate
                + 0.2 * open_rate
                + 0.3 * response_rate
                + 0.3 * conversion_rate,
        }
    }
}

/// The tallies of one range (the whole filter, or one period), by (channel, message type).
#[derive(Debug, Default)]
struct Breakdown {
    /// A line for each pair with a selected message or a counted outcome, in the order met.
    lines: Vec<(Channel, NameId, LineTally)>,
    /// Each message type's lines: their places in `lines`, by channel.
    places: NameTable<LinePlaces>,
}

/// The places of one message type's lines, by channel; `u32::MAX` for none yet.
#[derive(Debug)]
struct LinePlaces([u32; Channel::ALL.len()]);

impl Default for LinePlaces {
    fn default() -> LinePlaces {
        LinePlaces([u32::MAX; Channel::ALL.len()])
    }
}

impl Breakdown {
    /// The line of (channel, message type), a new one if it has none yet.
    fn line(&mut self, channel: Channel, message_type: NameId) -> &mut LineTally {
        let place = &mut self.places.entry(message_type).0[channel.index()];
        if *place == u32::MAX {
            *place = u32::try_from(self.lines.len()).expect("fewer than 2^32 lines");
            self.lines
                .push((channel, message_type, LineTally::default()));
        }
        &mut self.lines[*place as usize].2
    }

    fn add_counts(&mut self, channel: Channel, message_type: NameId, counts: &Counts) {
        self.line(channel, message_type).counts.add(counts);
    }

    /// Credits outcomes to the line of (channel, message type).
    fn add_credit(&mut self, channel: Channel, message_type: NameId, sums: &OutcomeSums) {
        let line = self.line(channel, message_type);
        line.attributed_outcomes += sums.count;
        line.attributed_micros += sums.amount_micros;
    }

    /// The lines by channel and type name, the channel totals, and the winner of each type.
    fn finish(self, names: &Names) -> (Vec<ChannelLine>, Vec<ChannelLine>, Vec<ChannelWinner>) {
        // The lines' order, sorted as (channel, type name, place): pairs are unique, so the
        // place never decides, and the tallies stay where they are.
        let mut order: Vec<(Channel, &str, usize)> = self
            .lines
            .iter()
            .enumerate()
            .map(|(place, &(channel, type_id, _))| (channel, names.name(type_id), place))
            .collect();
        order.sort_unstable();
        let tallies: Vec<(Channel, &str, &LineTally)> = order
            .into_iter()
            .map(|(channel, name, place)| (channel, name, &self.lines[place].2))
            .collect();

        let mut totals: BTreeMap<Channel, LineTally> = BTreeMap::new();
        let mut lines = Vec::with_capacity(tallies.len());
        for &(channel, message_type, tally) in &tallies {
            totals.entry(channel).or_default().merge(tally);
            lines.push(tally.to_line(channel, Some(message_type)));
        }
        let channels = totals
            .iter()
            .map(|(channel, tally)| tally.to_line(*channel, None))
            .collect();

        // The best line of each type; only lines with a message sent compete.
        let mut best: BTreeMap<&str, (usize, &LineTally)> = BTreeMap::new();
        for (position, (_, message_type, tally)) in tallies.iter().enumerate() {
            if tally.counts.sent == 0 {
                continue;
            }
            let replace = best
                .get(message_type)
                .is_none_or(|(_, champion)| ranks_before(tally, champion));
            if replace {
                best.insert(message_type, (position, tally));
            }
        }
        let winners = best
            .into_iter()
            .map(|(message_type, (position, _))| {
                let line = &lines[position];
                ChannelWinner {
                    message_type: message_type.to_string(),
                    channel: line.channel,
                    performance_score: line.performance_score,
                    cost_per_response: line.cost_per_response,
                }
            })
            .collect();
        (lines, channels, winners)
    }
}

/// Whether `challenger` beats `champion` of the same type: a higher score, else a lower cost
/// per response (none ranks last). Lines come in channel order, so on a full tie the champion,
/// the earlier channel, stays.
fn ranks_before(challenger: &LineTally, champion: &LineTally) -> bool {
    let by_score = compare_fractions(challenger.score_fraction(), champion.score_fraction());
    let by_cost = match (
        challenger.cost_per_response_fraction(),
        champion.cost_per_response_fraction(),
    ) {
        (Some(challenger), Some(champion)) => compare_fractions(champion, challenger),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    };
    by_score.then(by_cost) == Ordering::Greater
}

/// Compares `a.0 / a.1` with `b.0 / b.1` (denominators ≥ 1) exactly: by cross products where
/// both fit in u128 (the usual case), else by expanding both as continued fractions: equal
/// integer parts move the comparison to the reciprocals of the remainders, reversed.
fn compare_fractions(a: (u128, u128), b: (u128, u128)) -> Ordering {
    assert!(a.1 > 0 && b.1 > 0, "denominators are at least 1");
    match (a.0.checked_mul(b.1), b.0.checked_mul(a.1)) {
        (Some(left), Some(right)) => left.cmp(&right),
        _ => compare_expanded(a, b),
    }
}

/// [`compare_fractions`] by continued fractions, for any numerators and denominators ≥ 1.
fn compare_expanded(mut a: (u128, u128), mut b: (u128, u128)) -> Ordering {
    let mut reversed = false;
    loop {
        let (a_whole, a_rest) = (a.0 / a.1, a.0 % a.1);
        let (b_whole, b_rest) = (b.0 / b.1, b.0 % b.1);
        let order = match (a_whole.cmp(&b_whole), a_rest, b_rest) {
            (Ordering::Equal, 0, 0) => Ordering::Equal,
            (Ordering::Equal, 0, _) => Ordering::Less,
            (Ordering::Equal, _, 0) => Ordering::Greater,
            (Ordering::Equal, _, _) => {
                a = (a.1, a_rest);
                b = (b.1, b_rest);
                reversed = !reversed;
                continue;
            }
            (order, _, _) => order,
        };
        return if reversed { order.reverse() } else { order };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_compare_exactly_even_where_cross_products_overflow() {
        let big = u128::MAX / 3;
        assert_eq!(compare_fractions((1, 3), (2, 6)), Ordering::Equal);
        assert_eq!(compare_fractions((1, 3), (1, 2)), Ordering::Less);
        assert_eq!(compare_fractions((7, 2), (10, 3)), Ordering::Greater);
        assert_eq!(compare_fractions((0, 5), (0, 1)), Ordering::Equal);
        assert_eq!(
            compare_fractions((big, big - 1), (big - 1, big - 2)),
            Ordering::Less
        );
        assert_eq!(
            compare_fractions((big, big), (u128::MAX, u128::MAX)),
            Ordering::Equal
        );
    }

    proptest::proptest! {
        #[test]
        fn cross_products_order_fractions_as_their_expansions_do(
            a in (0..u128::from(u64::MAX), 1..u128::from(u64::MAX)),
            b in (0..u128::from(u64::MAX), 1..u128::from(u64::MAX)),
            scale in 1..1_000u128,
        ) {
            // Equal fractions written differently, and fractions a little apart.
            let b_or_a_scaled = [b, (a.0 * scale, a.1 * scale), (a.0 * scale + 1, a.1 * scale)];
            for b in b_or_a_scaled {
                proptest::prop_assert_eq!(compare_fractions(a, b), compare_expanded(a, b));
            }
        }
    }

    #[test]
    fn periods_start_at_midnight_monday_and_the_first() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_millis()
        };
        let date = |text: &str| text.parse::<NaiveDate>().unwrap();
        // 2025-03-02 is a Sunday; 2025-03-03 a Monday.
        assert_eq!(
            Period::Day.start_date(at("2025-03-02T23:59:59.999Z")),
            date("2025-03-02")
        );
        assert_eq!(
            Period::Week.start_date(at("2025-03-02T23:59:59.999Z")),
            date("2025-02-24")
        );
        assert_eq!(
            Period::Week.start_date(at("2025-03-03T00:00:00Z")),
            date("2025-03-03")
        );
        assert_eq!(
            Period::Month.start_date(at("2025-03-31T23:59:59.999Z")),
            date("2025-03-01")
        );
        assert_eq!(
            Period::Month.start_date(at("1969-12-31T23:59:59.999Z")),
            date("1969-12-01")
        );
        assert_eq!(
            Period::Week.start_date(at("1970-01-01T00:00:00Z")),
            date("1969-12-29")
        );
    }
}
