//! The engagement view: how one user answers the messages sent to them — received, engaged and
//! ignored per channel and per message type, when they engage, how fast, where their
//! engagement is heading, and the channel that reaches them best.
//!
//! Computed at query time from the status view (the user's sorted message list and each
//! message's final state), so it is exact to the millisecond and needs no state of its own.

use std::cmp::Ordering;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::{Channel, UserId};
use crate::message::time_from_ms;
use crate::money::Money;
use crate::projection::Projection;
use crate::projection::names::NameTable;
use crate::projection::selection::{TypeFilter, range_ms};
use crate::projection::status::MessageState;
use crate::projection::user_lists::within;
use crate::stats::filter_setters;
use crate::stats::{divide_rounded, percent, validate_selection};

const MINUTE_MS: i64 = 60 * 1000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Lower bounds of the response-time buckets after the first (each inclusive): 5 min, 15 min,
/// 1 h, 24 h.
const RESPONSE_BUCKET_STARTS_MS: [i64; 4] = [5 * MINUTE_MS, 15 * MINUTE_MS, HOUR_MS, DAY_MS];

/// Length of each side of the trend: the 30 days up to "now" and the 30 days before them.
const TREND_WINDOW_MS: i64 = 30 * DAY_MS;

/// A trend needs at least this many received messages on each side.
const TREND_RECEIVED_MIN: u64 = 5;

/// Engagement-score points a trend must move to be increasing or decreasing.
const TREND_POINTS: i128 = 10;

/// A channel needs at least this many received messages to be preferred.
const PREFERRED_CHANNEL_RECEIVED_MIN: u64 = 5;

/// Which of a user's messages `Store::get_user_engagement` covers. Every part is optional; an
/// empty filter covers all of the user's messages.
///
/// ```
/// use commlog::{Channel, EngagementFilter};
/// let filter = EngagementFilter::new().channel(Channel::Email).message_type("low_balance");
/// assert_eq!(filter.channel, Some(Channel::Email));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EngagementFilter {
    /// Only messages of this type (the trend too).
    pub message_type: Option<String>,
    /// Only messages sent on this channel (the trend too).
    pub channel: Option<Channel>,
    /// Only messages sent at or after this time (the trend ignores it).
    #[serde(default, with = "crate::serde_time::optional")]
    pub start: Option<DateTime<Utc>>,
    /// Only messages sent at or before this time; also caps "now".
    #[serde(default, with = "crate::serde_time::optional")]
    pub end: Option<DateTime<Utc>>,
}

impl EngagementFilter {
    /// The empty filter: all of the user's messages.
    pub fn new() -> EngagementFilter {
        EngagementFilter::default()
    }

    /// Refuses a malformed message type and a window that ends before it starts.
    pub(crate) fn validate(&self) -> Result<()> {
        validate_selection(None, self.message_type.as_deref(), self.start, self.end)
    }
}

filter_setters! {
    EngagementFilter {
        /// Only this message type.
        message_type,
        /// Only this channel.
        channel,
        /// Only messages sent at or after `start` (inclusive).
        start,
        /// Only messages sent at or before `end` (inclusive).
        end,
    }
}

/// One user's engagement over the messages an [`EngagementFilter`] selects. Rates are percent,
/// 0.0 when their denominator is 0. See docs/SEMANTICS.md, "Engagement".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEngagement {
    /// The user.
    pub user_id: UserId,
    /// The view's "now": the filter's end or the latest tracking event, whichever is earlier.
    #[serde(default, with = "crate::serde_time::optional")]
    pub now: Option<DateTime<Utc>>,
    /// Messages selected.
    pub sent: u64,
    /// Of them, delivered or further (implied stages included).
    pub received: u64,
    /// Of them, opened (a click implies it) or with any action.
    pub engaged: u64,
    /// received − engaged.
    pub ignored: u64,
    /// engaged / received, percent.
    pub engagement_score: f64,
    /// Per channel with at least one message selected, in channel order.
    pub by_channel: Vec<ChannelEngagement>,
    /// Per message type with at least one message selected, by name.
    pub by_message_type: Vec<MessageTypeEngagement>,
    /// Engaged messages by the UTC hour (0 to 23) of their first engagement.
    pub engagement_by_hour: [u64; 24],
    /// Engaged messages by the UTC weekday of their first engagement, Monday first.
    pub engagement_by_weekday: [u64; 7],
    /// Engaged messages by the UTC month of their first engagement, January first.
    pub engagement_by_month: [u64; 12],
    /// First engagement − delivery, over the engaged messages.
    pub response_times: ResponseTimes,
    /// The score of the 30 days up to "now" against the 30 days before.
    pub trend: Trend,
    /// The user's messages sent in (now − 30 d, now], matching the type and channel filter.
    pub trend_recent: TrendWindow,
    /// The user's messages sent in (now − 60 d, now − 30 d], matching the type and channel filter.
    pub trend_previous: TrendWindow,
    /// The channel with the highest engagement rate among those with at least 5 received.
    pub preferred_channel: Option<Channel>,
}

/// Engagement on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelEngagement {
    /// The channel.
    pub channel: Channel,
    /// Messages selected on it.
    pub sent: u64,
    /// Delivered or further.
    pub received: u64,
    /// Opened or with any action.
    pub engaged: u64,
    /// received − engaged.
    pub ignored: u64,
    /// engaged / received, percent.
    pub engagement_rate: f64,
    /// Exact sum of the messages' costs.
    #[serde(rename = "total_cost_micros")]
    pub total_cost: Money,
    /// total_cost / sent, rounded to the micro, halves away from zero; None when nothing sent.
    #[serde(rename = "average_cost_micros")]
    pub average_cost: Option<Money>,
}

/// Engagement with one message type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageTypeEngagement {
    /// The message type.
    pub message_type: String,
    /// Messages selected of this type.
    pub sent: u64,
    /// Delivered or further.
    pub received: u64,
    /// Opened or with any action.
    pub engaged: u64,
    /// received − engaged.
    pub ignored: u64,
    /// engaged / received, percent.
    pub engagement_rate: f64,
}

/// Response times (first engagement − delivery) of the engaged messages: bucket counts, each
/// bucket including its lower bound, and mean and median in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseTimes {
    /// Engaged messages measured (all of them: an engagement implies delivery).
    pub count: u64,
    /// In [0, 5 min).
    pub under_5_minutes: u64,
    /// In [5 min, 15 min).
    pub from_5_to_15_minutes: u64,
    /// In [15 min, 60 min).
    pub from_15_to_60_minutes: u64,
    /// In [1 h, 24 h).
    pub from_1_to_24_hours: u64,
    /// 24 h or more.
    pub at_least_24_hours: u64,
    /// Sum / count in milliseconds; None when count is 0.
    pub mean_ms: Option<f64>,
    /// The middle value in milliseconds (even count: the mean of the two middle ones); None
    /// when count is 0.
    pub median_ms: Option<f64>,
}

/// Where a user's engagement score is heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// The recent score is at least 10 points above the previous one.
    Increasing,
    /// The recent score is at least 10 points below the previous one.
    Decreasing,
    /// Within 10 points either way.
    Stable,
    /// Either side has fewer than 5 received messages.
    InsufficientData,
}

/// One side of the trend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrendWindow {
    /// Messages sent in the window that were delivered or further.
    pub received: u64,
    /// Of them, engaged.
    pub engaged: u64,
    /// engaged / received, percent.
    pub engagement_score: f64,
}

/// Running counts over some messages.
#[derive(Debug, Default, Clone, Copy)]
struct EngagementCounts {
    sent: u64,
    received: u64,
    engaged: u64,
    cost_micros: i128,
}

impl EngagementCounts {
    fn add(&mut self, state: &MessageState) {
        self.sent += 1;
        self.received += u64::from(state.delivered.is_some());
        self.engaged += u64::from(state.first_engagement_ms().is_some());
        self.cost_micros += i128::from(state.cost_micros);
    }

    fn ignored(self) -> u64 {
        self.received - self.engaged
    }

    fn rate(self) -> f64 {
        percent(self.engaged, self.received)
    }
}

/// What the selected messages add up to.
#[derive(Debug)]
struct EngagementTally {
    total: EngagementCounts,
    by_channel: [EngagementCounts; Channel::ALL.len()],
    by_type: NameTable<EngagementCounts>,
    timing: Timing,
}

impl EngagementTally {
    fn new() -> EngagementTally {
        EngagementTally {
            total: EngagementCounts::default(),
            by_channel: [EngagementCounts::default(); Channel::ALL.len()],
            by_type: NameTable::default(),
            timing: Timing::new(),
        }
    }

    fn add(&mut self, state: &MessageState) {
        self.total.add(state);
        self.by_channel[state.channel.index()].add(state);
        self.by_type.entry(state.message_type).add(state);
        self.timing.add(state);
    }
}

/// What the engaged messages say about when and how fast the user engages.
#[derive(Debug)]
struct Timing {
    by_hour: [u64; 24],
    by_weekday: [u64; 7],
    by_month: [u64; 12],
    response_ms: Vec<i64>,
}

impl Timing {
    fn new() -> Timing {
        Timing {
            by_hour: [0; 24],
            by_weekday: [0; 7],
            by_month: [0; 12],
            response_ms: Vec::new(),
        }
    }

    fn add(&mut self, state: &MessageState) {
        let Some(engaged_ms) = state.first_engagement_ms() else {
            return;
        };
        // An open or an action implies delivery no later than itself.
        let delivered_ms = state
            .delivered
            .get()
            .expect("an engagement implies delivery");
        assert!(
            delivered_ms <= engaged_ms,
            "delivery implied by the engagement"
        );
        // UTC: the naive time needs no offset applied for each of the three fields.
        let engaged_at = time_from_ms(engaged_ms).naive_utc();
        self.by_hour[engaged_at.hour() as usize] += 1;
        self.by_weekday[engaged_at.weekday().num_days_from_monday() as usize] += 1;
        self.by_month[engaged_at.month0() as usize] += 1;
        self.response_ms.push(engaged_ms - delivered_ms);
    }
}

impl Projection {
    /// The user's engagement over the messages `filter` selects (docs/SEMANTICS.md,
    /// "Engagement"); the filter must be valid. "now" is `now_ms(filter.end)`, never the clock.
    ///
    /// Cost: O(log k + m log m) for a user with k messages, m of them selected or sent in the
    /// trend's 60 days (a binary search of the user's sorted list, then those messages only).
    pub(crate) fn engagement(&self, user: UserId, filter: &EngagementFilter) -> UserEngagement {
        let (start_ms, end_ms) = range_ms(filter.start, filter.end);
        let now_ms = self.now_ms(filter.end.map(|end| end.timestamp_millis()));
        let type_filter = TypeFilter::of(filter.message_type.as_deref(), self.names());
        let matches = |state: &MessageState| {
            type_filter.takes(state.message_type)
                && filter
                    .channel
                    .is_none_or(|channel| channel == state.channel)
        };
        let states = self.message_states();
        let messages = self.user_messages(user);

        let mut tally = EngagementTally::new();
        // The user's list is sorted by sent time: only the window is visited.
        let window = within(messages, start_ms, end_ms);
        self.prefetch_states(user, window.iter(), true);
        for &(_, index) in window {
            let state = &states[index as usize];
            if matches(state) {
                tally.add(state);
            }
        }

        let (recent, previous) = match now_ms {
            Some(now_ms) => self.trend_counts(user, now_ms, &matches),
            None => (EngagementCounts::default(), EngagementCounts::default()),
        };
        let EngagementTally {
            total,
            by_channel,
            by_type,
            timing,
        } = tally;
        UserEngagement {
            user_id: user,
            now: now_ms.map(time_from_ms),
            sent: total.sent,
            received: total.received,
            engaged: total.engaged,
            ignored: total.ignored(),
            engagement_score: total.rate(),
            by_channel: channel_engagements(&by_channel),
            preferred_channel: preferred_channel(&by_channel),
            by_message_type: self
                .by_name(by_type)
                .into_iter()
                .map(|(name, counts)| MessageTypeEngagement {
                    message_type: name.to_string(),
                    sent: counts.sent,
                    received: counts.received,
                    engaged: counts.engaged,
                    ignored: counts.ignored(),
                    engagement_rate: counts.rate(),
                })
                .collect(),
            engagement_by_hour: timing.by_hour,
            engagement_by_weekday: timing.by_weekday,
            engagement_by_month: timing.by_month,
            response_times: response_times(timing.response_ms),
            trend: trend(recent, previous),
            trend_recent: trend_window(recent),
            trend_previous: trend_window(previous),
        }
    }

    /// The message types met, in name order, with their counts.
    fn by_name(&self, by_type: NameTable<EngagementCounts>) -> Vec<(&str, EngagementCounts)> {
        let mut by_name: Vec<(&str, EngagementCounts)> = by_type
            .entries()
            .map(|(id, counts)| (self.names().name(id), counts))
            .collect();
        by_name.sort_unstable_by_key(|&(name, _)| name);
        by_name
    }

    /// EngagementCounts of the user's matching messages sent in (now − 30 d, now] and in
    /// (now − 60 d, now − 30 d], whatever the filter's start.
    fn trend_counts(
        &self,
        user: UserId,
        now_ms: i64,
        matches: &impl Fn(&MessageState) -> bool,
    ) -> (EngagementCounts, EngagementCounts) {
        let states = self.message_states();
        let messages = self.user_messages(user);
        let split_ms = now_ms.saturating_sub(TREND_WINDOW_MS);
        let oldest_excluded_ms = split_ms.saturating_sub(TREND_WINDOW_MS);
        let mut recent = EngagementCounts::default();
        let mut previous = EngagementCounts::default();
        let window = within(messages, oldest_excluded_ms.saturating_add(1), now_ms);
        for &(sent_ms, index) in window {
            let state = &states[index as usize];
            if !matches(state) {
                continue;
            }
            if sent_ms > split_ms {
                recent.add(state);
            } else {
                previous.add(state);
            }
        }
        (recent, previous)
    }
}

/// One entry per channel with a message selected, in channel order.
fn channel_engagements(
    by_channel: &[EngagementCounts; Channel::ALL.len()],
) -> Vec<ChannelEngagement> {
    let mut channels = Vec::new();
    for channel in Channel::ALL {
        let counts = by_channel[channel.index()];
        if counts.sent == 0 {
            continue;
        }
        let average_cost = Money::from_micros(divide_rounded(counts.cost_micros, counts.sent));
        channels.push(ChannelEngagement {
            channel,
            sent: counts.sent,
            received: counts.received,
            engaged: counts.engaged,
            ignored: counts.ignored(),
            engagement_rate: counts.rate(),
            total_cost: Money::from_micros(counts.cost_micros),
            average_cost: Some(average_cost),
        });
    }
    channels
}

/// Bucket counts, mean and median of the response times.
fn response_times(mut response_ms: Vec<i64>) -> ResponseTimes {
    let mut times = ResponseTimes::default();
    for &ms in &response_ms {
        debug_assert!(ms >= 0, "delivery is implied no later than an engagement");
        let bucket = RESPONSE_BUCKET_STARTS_MS
            .iter()
            .take_while(|start_ms| ms >= **start_ms)
            .count();
        let slot = match bucket {
            0 => &mut times.under_5_minutes,
            1 => &mut times.from_5_to_15_minutes,
            2 => &mut times.from_15_to_60_minutes,
            3 => &mut times.from_1_to_24_hours,
            _ => &mut times.at_least_24_hours,
        };
        *slot += 1;
    }
    let count = response_ms.len();
    times.count = count as u64;
    if count == 0 {
        return times;
    }
    let sum_ms: i128 = response_ms.iter().map(|ms| i128::from(*ms)).sum();
    times.mean_ms = Some(sum_ms as f64 / count as f64);
    response_ms.sort_unstable();
    let middle = count / 2;
    times.median_ms = Some(if count % 2 == 1 {
        response_ms[middle] as f64
    } else {
        (i128::from(response_ms[middle - 1]) + i128::from(response_ms[middle])) as f64 / 2.0
    });
    times
}

fn trend_window(counts: EngagementCounts) -> TrendWindow {
    TrendWindow {
        received: counts.received,
        engaged: counts.engaged,
        engagement_score: counts.rate(),
    }
}

/// Compares the two scores as exact fractions: recent − previous ≥ 10 points is
/// 100·(e_r·r_p − e_p·r_r) ≥ 10·r_r·r_p, all in integers.
fn trend(recent: EngagementCounts, previous: EngagementCounts) -> Trend {
    if recent.received < TREND_RECEIVED_MIN || previous.received < TREND_RECEIVED_MIN {
        return Trend::InsufficientData;
    }
    let (recent_engaged, recent_received) =
        (i128::from(recent.engaged), i128::from(recent.received));
    let (previous_engaged, previous_received) =
        (i128::from(previous.engaged), i128::from(previous.received));
    let difference =
        100 * (recent_engaged * previous_received - previous_engaged * recent_received);
    let threshold = TREND_POINTS * recent_received * previous_received;
    if difference >= threshold {
        Trend::Increasing
    } else if difference <= -threshold {
        Trend::Decreasing
    } else {
        Trend::Stable
    }
}

/// Highest engagement rate among channels with enough received messages; ties go to the lower
/// average cost per message sent, then to the earlier channel in [`Channel::ALL`]. Exact
/// fractions throughout.
fn preferred_channel(by_channel: &[EngagementCounts; Channel::ALL.len()]) -> Option<Channel> {
    // Less is better.
    let rank = |a: Channel, b: Channel| -> Ordering {
        let (a_counts, b_counts) = (by_channel[a.index()], by_channel[b.index()]);
        // Higher engaged / received first.
        let a_rate = u128::from(a_counts.engaged) * u128::from(b_counts.received);
        let b_rate = u128::from(b_counts.engaged) * u128::from(a_counts.received);
        // Then lower cost / sent. A cost sum is below 2^95 (2^32 messages of at most 9e18
        // micros) and a count below 2^32, so the products fit in i128.
        let a_cost = a_counts.cost_micros * i128::from(b_counts.sent);
        let b_cost = b_counts.cost_micros * i128::from(a_counts.sent);
        b_rate
            .cmp(&a_rate)
            .then(a_cost.cmp(&b_cost))
            .then(a.index().cmp(&b.index()))
    };
    Channel::ALL
        .into_iter()
        .filter(|channel| by_channel[channel.index()].received >= PREFERRED_CHANNEL_RECEIVED_MIN)
        .min_by(|a, b| rank(*a, *b))
}
