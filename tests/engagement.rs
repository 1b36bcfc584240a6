//! The engagement view: a model-based test — random call sequences
//! (out of order, repeated, failures, opens without deliveries, outcomes before and after the
//! messages, months of messages) against a brute-force model of the documented rules, before
//! and after reopening — and one test per edge rule: response-time bucket boundaries, the
//! median, the histograms, the trend's thresholds and windows, the preferred channel's ties, a
//! window inside an hour, filter errors. The `engagement` command: cli/tests/engagement.rs.
//!
//! Every time is passed in explicitly; no test reads the clock or sleeps.

mod support;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use commlog::{
    Channel, ChannelEngagement, EngagementFilter, Error, MessageId, MessageTypeEngagement, Money,
    ResponseTimes, Store, Trend, TrendWindow, UserEngagement, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::model::{CLOCK_SKEW_MS, ReportKind, delivered_ms, engaged_ms};
use support::store::open;

const SECOND_MS: i64 = 1000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Every response-time bucket boundary (5 and 15 minutes, an hour, a day), each with the
/// millisecond before it, and zero.
const BUCKET_EDGES_MS: [i64; 9] = [
    0,
    5 * MINUTE_MS - 1,
    5 * MINUTE_MS,
    15 * MINUTE_MS - 1,
    15 * MINUTE_MS,
    HOUR_MS - 1,
    HOUR_MS,
    DAY_MS - 1,
    DAY_MS,
];

/// Monday 2025-01-06 00:00:00 UTC; every test time is this plus some milliseconds.
fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 0, 0, 0).unwrap()
}

fn base_ms() -> i64 {
    base().timestamp_millis()
}

/// The test time `offset_ms` milliseconds after [`base`].
fn at(offset_ms: i64) -> DateTime<Utc> {
    base() + Duration::milliseconds(offset_ms)
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The model-based test.

const USER_COUNT: u64 = 3;
const MESSAGE_TYPES: [&str; 3] = ["low_balance", "weekly_checkin", "bill_due"];
const ACTIONS: [&str; 5] = [
    "viewed_forecast",
    "clicked_link",
    "dismissed",
    "upgrade_plan",
    "click",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Delivered,
    Opened,
    Action(&'static str),
    Failed,
}

impl Report {
    fn kind(self) -> ReportKind {
        match self {
            Report::Delivered => ReportKind::Delivered,
            Report::Opened => ReportKind::Opened,
            Report::Action(_) => ReportKind::Action,
            Report::Failed => ReportKind::Failed,
        }
    }
}

#[derive(Debug, Clone)]
enum Call {
    Sent {
        user: u64,
        channel: Channel,
        message_type: &'static str,
        cost_micros: i64,
        offset_ms: i64,
    },
    /// A report about one of the messages sent so far (skipped while there is none), at its
    /// sent time plus `delay_ms` (negative: a provider clock behind ours; refused beyond the
    /// clock skew, else taken as the sent time).
    Report {
        message: Index,
        report: Report,
        delay_ms: i64,
    },
    Outcome {
        user: u64,
        offset_ms: i64,
        amount_micros: i64,
    },
}

/// Delays that sit on, and one millisecond beside, every response-time bucket boundary, and
/// anything up to three days.
fn delay_ms() -> impl Strategy<Value = i64> {
    let mut edges = BUCKET_EDGES_MS.to_vec();
    edges.insert(1, 1);
    edges.push(3 * DAY_MS);
    prop_oneof![
        4 => prop::sample::select(edges),
        4 => 0..=3 * DAY_MS,
        1 => -HOUR_MS..0,
        1 => prop::sample::select(vec![-CLOCK_SKEW_MS - 1, -CLOCK_SKEW_MS, -1]),
    ]
}

fn report() -> impl Strategy<Value = Report> {
    prop_oneof![
        4 => Just(Report::Delivered),
        3 => Just(Report::Opened),
        3 => prop::sample::select(ACTIONS.to_vec()).prop_map(Report::Action),
        2 => Just(Report::Failed),
    ]
}

/// User 1 gets most messages, so that the trend and the preferred channel often have enough.
fn user() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(1u64), 2 => 2..=USER_COUNT]
}

/// An offset from [`base`] in `first_day..=last_day`: any millisecond, or often a whole day, so
/// that a message falls exactly on a trend window's edge (30 days before an outcome or a query
/// end that sets "now") now and then.
fn offset_ms(first_day: i64, last_day: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => first_day * DAY_MS..=last_day * DAY_MS,
        1 => (first_day..=last_day).prop_map(|day| day * DAY_MS),
    ]
}

/// Calls over `span_days` days after [`base`]; outcomes also fall up to 10 days outside them.
fn call(span_days: i64) -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => (
            user(),
            prop::sample::select(Channel::ALL.to_vec()),
            prop::sample::select(MESSAGE_TYPES.to_vec()),
            prop_oneof![1 => Just(0i64), 3 => 0i64..=100_000],
            offset_ms(0, span_days),
        )
            .prop_map(|(user, channel, message_type, cost_micros, offset_ms)| Call::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                offset_ms,
            }),
        9 => (any::<Index>(), report(), delay_ms())
            .prop_map(|(message, report, delay_ms)| Call::Report { message, report, delay_ms }),
        1 => (user(), offset_ms(-10, span_days + 10), -1_000_000i64..=1_000_000)
            .prop_map(|(user, offset_ms, amount_micros)| Call::Outcome {
                user,
                offset_ms,
                amount_micros,
            }),
    ]
}

/// Over a few days (one month of the histograms, no trend), or one to five months: the calls,
/// and queries whose window edges fall within the same days.
fn scenario() -> impl Strategy<Value = (Vec<Call>, Vec<Query>)> {
    prop::sample::select(vec![3i64, 45, 45, 75, 75, 150]).prop_flat_map(|span_days| {
        (
            prop::collection::vec(call(span_days), 0..400),
            prop::collection::vec(query(span_days), 1..12),
        )
    })
}

/// A query, every part optional; now and then an invalid one.
#[derive(Debug, Clone)]
struct Query {
    user: u64,
    message_type: Option<&'static str>,
    channel: Option<Channel>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
}

impl Query {
    fn filter(&self) -> EngagementFilter {
        let mut filter = EngagementFilter::new();
        if let Some(message_type) = self.message_type {
            filter = filter.message_type(message_type);
        }
        if let Some(channel) = self.channel {
            filter = filter.channel(channel);
        }
        if let Some(start_ms) = self.start_ms {
            filter = filter.start(time(start_ms));
        }
        if let Some(end_ms) = self.end_ms {
            filter = filter.end(time(end_ms));
        }
        filter
    }
}

fn query(span_days: i64) -> impl Strategy<Value = Query> {
    let edge = move || {
        prop::option::weighted(
            0.4,
            offset_ms(-2, span_days + 2).prop_map(|offset| base_ms() + offset),
        )
    };
    let message_type = prop_oneof![
        8 => prop::sample::select(MESSAGE_TYPES.to_vec()),
        1 => Just("never_sent"),
        1 => Just("Bad Type"),
    ];
    (
        prop_oneof![20 => user(), 2 => Just(USER_COUNT + 1), 1 => Just(0u64)],
        prop::option::weighted(0.2, message_type),
        prop::option::weighted(0.2, prop::sample::select(Channel::ALL.to_vec())),
        edge(),
        edge(),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(user, message_type, channel, mut start_ms, mut end_ms, keep_reversed)| {
                // Mostly proper windows; now and then one that ends before it starts.
                if let (Some(start), Some(end)) = (start_ms, end_ms)
                    && start > end
                    && !keep_reversed
                {
                    (start_ms, end_ms) = (Some(end), Some(start));
                }
                Query {
                    user,
                    message_type,
                    channel,
                    start_ms,
                    end_ms,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct ModelMessage {
    user: u64,
    channel: Channel,
    message_type: &'static str,
    cost_micros: i64,
    sent_ms: i64,
    reports: Vec<(Report, i64)>,
}

impl ModelMessage {
    fn kinds(&self) -> impl Iterator<Item = (ReportKind, i64)> + '_ {
        self.reports
            .iter()
            .map(|(report, at_ms)| (report.kind(), *at_ms))
    }

    fn delivered_ms(&self) -> Option<i64> {
        delivered_ms(self.kinds())
    }

    fn engaged_ms(&self) -> Option<i64> {
        engaged_ms(self.kinds())
    }
}

/// The calls as made, and nothing the store computed.
#[derive(Debug, Default)]
struct Model {
    messages: Vec<ModelMessage>,
    /// Own times of every event appended.
    event_times_ms: Vec<i64>,
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The counts of some messages: (sent, received, engaged, cost).
fn counts(messages: &[&ModelMessage]) -> (u64, u64, u64, i64) {
    let received = messages
        .iter()
        .filter(|m| m.delivered_ms().is_some())
        .count();
    let engaged = messages.iter().filter(|m| m.engaged_ms().is_some()).count();
    let cost: i64 = messages.iter().map(|m| m.cost_micros).sum();
    (messages.len() as u64, received as u64, engaged as u64, cost)
}

impl Model {
    /// The view as the rules define it, by brute force over every message; `None` when the
    /// query is invalid.
    fn engagement(&self, query: &Query) -> Option<UserEngagement> {
        let valid_type = query.message_type.is_none_or(|name| name != "Bad Type");
        let valid_window = match (query.start_ms, query.end_ms) {
            (Some(start), Some(end)) => start <= end,
            _ => true,
        };
        if query.user == 0 || !valid_type || !valid_window {
            return None;
        }
        let latest_ms = self.event_times_ms.iter().max().copied();
        let now_ms = match (latest_ms, query.end_ms) {
            (Some(latest), Some(end)) => Some(latest.min(end)),
            (latest, _) => latest,
        };
        let matching: Vec<&ModelMessage> = self
            .messages
            .iter()
            .filter(|m| m.user == query.user)
            .filter(|m| query.message_type.is_none_or(|name| m.message_type == name))
            .filter(|m| query.channel.is_none_or(|channel| m.channel == channel))
            .collect();
        let selected: Vec<&ModelMessage> = matching
            .iter()
            .copied()
            .filter(|m| query.start_ms.is_none_or(|start| start <= m.sent_ms))
            .filter(|m| query.end_ms.is_none_or(|end| m.sent_ms <= end))
            .collect();
        let (sent, received, engaged, _) = counts(&selected);

        let by_channel: Vec<ChannelEngagement> = Channel::ALL
            .into_iter()
            .filter_map(|channel| {
                let mine: Vec<&ModelMessage> = selected
                    .iter()
                    .copied()
                    .filter(|m| m.channel == channel)
                    .collect();
                if mine.is_empty() {
                    return None;
                }
                let (sent, received, engaged, cost) = counts(&mine);
                // Costs are never negative: halves away from zero are halves up.
                let average = (2 * cost + sent as i64) / (2 * sent as i64);
                Some(ChannelEngagement {
                    channel,
                    sent,
                    received,
                    engaged,
                    ignored: received - engaged,
                    engagement_rate: rate(engaged, received),
                    total_cost: Money::from_micros(i128::from(cost)),
                    average_cost: Some(Money::from_micros(i128::from(average))),
                })
            })
            .collect();
        let mut type_names: Vec<&str> = selected.iter().map(|m| m.message_type).collect();
        type_names.sort_unstable();
        type_names.dedup();
        let by_message_type = type_names
            .into_iter()
            .map(|name| {
                let mine: Vec<&ModelMessage> = selected
                    .iter()
                    .copied()
                    .filter(|m| m.message_type == name)
                    .collect();
                let (sent, received, engaged, _) = counts(&mine);
                MessageTypeEngagement {
                    message_type: name.to_string(),
                    sent,
                    received,
                    engaged,
                    ignored: received - engaged,
                    engagement_rate: rate(engaged, received),
                }
            })
            .collect();

        let mut by_hour = [0u64; 24];
        let mut by_weekday = [0u64; 7];
        let mut by_month = [0u64; 12];
        let mut response_ms = Vec::new();
        for message in &selected {
            if let Some(engaged_ms) = message.engaged_ms() {
                by_hour[(engaged_ms.rem_euclid(DAY_MS) / HOUR_MS) as usize] += 1;
                // 1970-01-01 was a Thursday: day 3 counting from Monday.
                by_weekday[(engaged_ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as usize] += 1;
                by_month[time(engaged_ms).month0() as usize] += 1;
                response_ms.push(engaged_ms - message.delivered_ms().unwrap());
            }
        }

        let (recent, previous) = match now_ms {
            Some(now) => {
                let window = |newest: i64| {
                    let inside: Vec<&ModelMessage> = matching
                        .iter()
                        .copied()
                        .filter(|m| newest - 30 * DAY_MS < m.sent_ms && m.sent_ms <= newest)
                        .collect();
                    let (_, received, engaged, _) = counts(&inside);
                    (received, engaged)
                };
                (window(now), window(now - 30 * DAY_MS))
            }
            None => ((0, 0), (0, 0)),
        };

        Some(UserEngagement {
            user_id: UserId(query.user),
            now: now_ms.map(time),
            sent,
            received,
            engaged,
            ignored: received - engaged,
            engagement_score: rate(engaged, received),
            preferred_channel: model_preferred_channel(&by_channel),
            by_channel,
            by_message_type,
            engagement_by_hour: by_hour,
            engagement_by_weekday: by_weekday,
            engagement_by_month: by_month,
            response_times: model_response_times(response_ms),
            trend: model_trend(recent, previous),
            trend_recent: TrendWindow {
                received: recent.0,
                engaged: recent.1,
                engagement_score: rate(recent.1, recent.0),
            },
            trend_previous: TrendWindow {
                received: previous.0,
                engaged: previous.1,
                engagement_score: rate(previous.1, previous.0),
            },
        })
    }
}

fn model_response_times(mut response_ms: Vec<i64>) -> ResponseTimes {
    let in_range = |low: i64, high: i64| {
        response_ms
            .iter()
            .filter(|ms| low <= **ms && **ms < high)
            .count() as u64
    };
    let mut times = ResponseTimes {
        count: response_ms.len() as u64,
        under_5_minutes: in_range(0, 5 * MINUTE_MS),
        from_5_to_15_minutes: in_range(5 * MINUTE_MS, 15 * MINUTE_MS),
        from_15_to_60_minutes: in_range(15 * MINUTE_MS, 60 * MINUTE_MS),
        from_1_to_24_hours: in_range(HOUR_MS, DAY_MS),
        at_least_24_hours: in_range(DAY_MS, i64::MAX),
        mean_ms: None,
        median_ms: None,
    };
    if !response_ms.is_empty() {
        let count = response_ms.len();
        let sum: i128 = response_ms.iter().map(|ms| i128::from(*ms)).sum();
        times.mean_ms = Some(sum as f64 / count as f64);
        response_ms.sort();
        times.median_ms = Some(if count % 2 == 1 {
            response_ms[count / 2] as f64
        } else {
            (i128::from(response_ms[count / 2 - 1]) + i128::from(response_ms[count / 2])) as f64
                / 2.0
        });
    }
    times
}

/// (received, engaged) of each side; exact: 100·e/r in points, compared by cross-multiplying.
fn model_trend(recent: (u64, u64), previous: (u64, u64)) -> Trend {
    if recent.0 < 5 || previous.0 < 5 {
        return Trend::InsufficientData;
    }
    let (recent_received, recent_engaged) = (i128::from(recent.0), i128::from(recent.1));
    let (previous_received, previous_engaged) = (i128::from(previous.0), i128::from(previous.1));
    // Both scores over the common denominator recent_received · previous_received.
    let recent_points = 100 * recent_engaged * previous_received;
    let previous_points = 100 * previous_engaged * recent_received;
    let ten_points = 10 * recent_received * previous_received;
    if recent_points - previous_points >= ten_points {
        Trend::Increasing
    } else if previous_points - recent_points >= ten_points {
        Trend::Decreasing
    } else {
        Trend::Stable
    }
}

/// The best channel with 5 received or more: each candidate against every other.
fn model_preferred_channel(channels: &[ChannelEngagement]) -> Option<Channel> {
    let candidates: Vec<&ChannelEngagement> = channels
        .iter()
        .filter(|entry| entry.received >= 5)
        .collect();
    let beats = |a: &ChannelEngagement, b: &ChannelEngagement| {
        let a_rate = i128::from(a.engaged) * i128::from(b.received);
        let b_rate = i128::from(b.engaged) * i128::from(a.received);
        let a_cost = a.total_cost.micros() * i128::from(b.sent);
        let b_cost = b.total_cost.micros() * i128::from(a.sent);
        a_rate > b_rate
            || (a_rate == b_rate && a_cost < b_cost)
            || (a_rate == b_rate && a_cost == b_cost && a.channel.index() < b.channel.index())
    };
    candidates
        .iter()
        .find(|a| {
            candidates
                .iter()
                .all(|b| a.channel == b.channel || beats(a, b))
        })
        .map(|best| best.channel)
}

/// Makes every call on the store and in the model.
fn apply_all(store: &Store, calls: &[Call]) -> Model {
    let mut model = Model::default();
    for call in calls {
        match *call {
            Call::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                offset_ms,
            } => {
                let sent_ms = base_ms() + offset_ms;
                let cost = cost_micros as f64 / 1e6;
                let message = store
                    .track_message_sent_at(user, channel, message_type, cost, time(sent_ms))
                    .unwrap();
                assert_eq!(message.id.0, model.messages.len() as u64 + 1);
                model.messages.push(ModelMessage {
                    user,
                    channel,
                    message_type,
                    cost_micros,
                    sent_ms,
                    reports: Vec::new(),
                });
                model.event_times_ms.push(sent_ms);
            }
            Call::Report {
                message,
                report,
                delay_ms,
            } => {
                if model.messages.is_empty() {
                    continue;
                }
                let index = message.index(model.messages.len());
                let id = MessageId(index as u64 + 1);
                let sent_ms = model.messages[index].sent_ms;
                let at_ms = sent_ms + delay_ms;
                let when = Some(time(at_ms));
                let result = match report {
                    Report::Delivered => store.track_message_delivered(id, when),
                    Report::Opened => store.track_message_opened(id, when),
                    Report::Action(action) => store.track_user_action(id, action, when),
                    Report::Failed => store.track_message_failed(id, "undelivered", when),
                };
                if delay_ms < -CLOCK_SKEW_MS {
                    assert!(
                        matches!(result, Err(Error::InvalidInput { field: "at", .. })),
                        "{call:?}: {result:?}"
                    );
                    continue;
                }
                result.unwrap();
                // Within the skew, an earlier time counts as the sent time.
                model.messages[index]
                    .reports
                    .push((report, at_ms.max(sent_ms)));
                model.event_times_ms.push(at_ms);
            }
            Call::Outcome {
                user,
                offset_ms,
                amount_micros,
            } => {
                let at_ms = base_ms() + offset_ms;
                store
                    .track_financial_outcome_at(
                        user,
                        "bill_paid_on_time",
                        amount_micros as f64 / 1e6,
                        time(at_ms),
                    )
                    .unwrap();
                model.event_times_ms.push(at_ms);
            }
        }
    }
    model
}

fn check(store: &Store, model: &Model, queries: &[Query]) -> Result<(), TestCaseError> {
    for query in queries {
        let answer = store.get_user_engagement(query.user, &query.filter());
        match (answer, model.engagement(query)) {
            (Ok(answer), Some(expected)) => prop_assert_eq!(answer, expected, "{:?}", query),
            (Err(Error::InvalidInput { .. }), None) => {}
            (answer, expected) => {
                prop_assert!(false, "{query:?}: store {answer:?}, model {expected:?}")
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn engagement_agrees_with_the_model_before_and_after_reopen(
        (calls, queries) in scenario(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let model = apply_all(&store, &calls);
        check(&store, &model, &queries)?;
        store.close().unwrap();
        let store = open(dir.path());
        check(&store, &model, &queries)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Edge rules.

/// Sends a message at `sent_ms` costing `cost` dollars and returns its id.
fn send_costing(store: &Store, user: u64, channel: Channel, cost: f64, sent_ms: i64) -> MessageId {
    store
        .track_message_sent_at(user, channel, "low_balance", cost, at(sent_ms))
        .unwrap()
        .id
}

/// Sends an SMS at `sent_ms` costing one cent and returns its id.
fn send(store: &Store, user: u64, sent_ms: i64) -> MessageId {
    send_costing(store, user, Channel::Sms, 0.01, sent_ms)
}

fn delivered(store: &Store, id: MessageId, at_ms: i64) {
    store.track_message_delivered(id, Some(at(at_ms))).unwrap();
}

fn opened(store: &Store, id: MessageId, at_ms: i64) {
    store.track_message_opened(id, Some(at(at_ms))).unwrap();
}

/// Sends `received` messages to `user` on `channel` at `sent_ms`, delivered a second later,
/// and opens the first `engaged` of them two seconds later.
fn batch(
    store: &Store,
    user: u64,
    channel: Channel,
    cost: f64,
    sent_ms: i64,
    received: u64,
    engaged: u64,
) {
    for number in 0..received {
        let id = send_costing(store, user, channel, cost, sent_ms);
        delivered(store, id, sent_ms + SECOND_MS);
        if number < engaged {
            opened(store, id, sent_ms + 2 * SECOND_MS);
        }
    }
}

/// Pins "now": an outcome of another user at `now_ms` (the latest event of the tests using it).
fn set_now(store: &Store, now_ms: i64) {
    store
        .track_financial_outcome_at(99, "bill_paid_on_time", 1.0, at(now_ms))
        .unwrap();
}

fn engagement(store: &Store, user: u64) -> UserEngagement {
    store
        .get_user_engagement(user, &EngagementFilter::new())
        .unwrap()
}

#[test]
fn response_times_fall_in_buckets_that_include_their_lower_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for response_ms in BUCKET_EDGES_MS {
        let id = send(&store, 1, 0);
        delivered(&store, id, 1000);
        opened(&store, id, 1000 + response_ms);
    }
    let times = engagement(&store, 1).response_times;
    assert_eq!(times.count, 9);
    assert_eq!(times.under_5_minutes, 2, "0 and 5 min − 1 ms");
    assert_eq!(
        times.from_5_to_15_minutes, 2,
        "exactly 5 min and 15 min − 1 ms"
    );
    assert_eq!(
        times.from_15_to_60_minutes, 2,
        "exactly 15 min and 60 min − 1 ms"
    );
    assert_eq!(times.from_1_to_24_hours, 2, "exactly 1 h and 24 h − 1 ms");
    assert_eq!(times.at_least_24_hours, 1, "exactly 24 h");
    assert_eq!(
        times.median_ms,
        Some((15 * MINUTE_MS) as f64),
        "the fifth of nine"
    );
    let sum: i64 = BUCKET_EDGES_MS.iter().sum();
    assert_eq!(times.mean_ms, Some(sum as f64 / 9.0));
}

#[test]
fn the_median_of_an_even_count_is_the_mean_of_the_two_middle_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for response_ms in [10, 1, 4, 1000] {
        let id = send(&store, 1, 0);
        delivered(&store, id, 0);
        opened(&store, id, response_ms);
    }
    let times = engagement(&store, 1).response_times;
    assert_eq!(times.median_ms, Some(7.0), "(4 + 10) / 2");
    assert_eq!(times.mean_ms, Some(253.75));

    let id = send(&store, 2, 0);
    delivered(&store, id, 0);
    opened(&store, id, 3);
    let id = send(&store, 2, 0);
    delivered(&store, id, 0);
    opened(&store, id, 4);
    assert_eq!(
        engagement(&store, 2).response_times.median_ms,
        Some(3.5),
        "a half millisecond is kept"
    );
    let nobody = engagement(&store, 3).response_times;
    assert_eq!(
        (nobody.count, nobody.mean_ms, nobody.median_ms),
        (0, None, None)
    );
}

#[test]
fn first_engagement_is_the_earliest_open_or_action_and_response_starts_at_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // An action before the open: the action is the first engagement (35 min after delivery).
    let id = send(&store, 1, 0);
    delivered(&store, id, 5 * MINUTE_MS);
    opened(&store, id, 50 * MINUTE_MS);
    store
        .track_user_action(id, "viewed_forecast", Some(at(40 * MINUTE_MS)))
        .unwrap();
    // An open without a delivery report: received, and the open implies delivery at its time.
    let id = send(&store, 1, 0);
    opened(&store, id, 2 * HOUR_MS);
    // Delivered only: received, ignored. Failed only: neither.
    let id = send(&store, 1, 0);
    delivered(&store, id, MINUTE_MS);
    let id = send(&store, 1, 0);
    store
        .track_message_failed(id, "bounced", Some(at(MINUTE_MS)))
        .unwrap();
    // A failure later overruled by a delivery: received.
    let id = send(&store, 1, 0);
    store
        .track_message_failed(id, "bounced", Some(at(MINUTE_MS)))
        .unwrap();
    delivered(&store, id, 2 * MINUTE_MS);

    let report = engagement(&store, 1);
    assert_eq!(
        (report.sent, report.received, report.engaged, report.ignored),
        (5, 4, 2, 2)
    );
    assert_eq!(report.engagement_score, 50.0);
    assert_eq!(report.response_times.from_15_to_60_minutes, 1, "35 min");
    assert_eq!(
        report.response_times.under_5_minutes, 1,
        "the implied delivery: 0"
    );
    assert_eq!(report.engagement_by_hour[0], 1, "00:40, not 00:50");
    assert_eq!(report.engagement_by_hour[2], 1);
}

#[test]
fn histograms_count_the_first_engagement_in_utc_with_monday_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Sent Sunday 2025-01-05 23:59:59.999 UTC; opened Monday 00:00 UTC.
    let id = send(&store, 1, -1);
    opened(&store, id, 0);
    // Opened Sunday 2025-02-02 23:30 UTC (Monday 00:30 in Paris: still Sunday here).
    let sunday_ms = 27 * DAY_MS + 23 * HOUR_MS + 30 * MINUTE_MS;
    let id = send(&store, 1, sunday_ms - HOUR_MS);
    store
        .track_user_action(id, "clicked_link", Some(at(sunday_ms)))
        .unwrap();
    // Never engaged: in no histogram.
    let id = send(&store, 1, 0);
    delivered(&store, id, 0);

    let report = engagement(&store, 1);
    let mut hours = [0; 24];
    hours[0] = 1;
    hours[23] = 1;
    assert_eq!(report.engagement_by_hour, hours);
    assert_eq!(report.engagement_by_weekday, [1, 0, 0, 0, 0, 0, 1]);
    let mut months = [0; 12];
    months[0] = 1;
    months[1] = 1;
    assert_eq!(report.engagement_by_month, months);
}

/// A user with `recent` (received, engaged) in the 30 days up to now and `previous` in the 30
/// days before, now pinned 100 days after the base.
fn trend_of(recent: (u64, u64), previous: (u64, u64)) -> UserEngagement {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now_ms = 100 * DAY_MS;
    let (received, engaged) = recent;
    batch(
        &store,
        1,
        Channel::Email,
        0.0,
        now_ms - 10 * DAY_MS,
        received,
        engaged,
    );
    let (received, engaged) = previous;
    batch(
        &store,
        1,
        Channel::Email,
        0.0,
        now_ms - 40 * DAY_MS,
        received,
        engaged,
    );
    set_now(&store, now_ms);
    engagement(&store, 1)
}

#[test]
fn a_trend_of_exactly_ten_points_is_increasing_or_decreasing() {
    // 11/20 = 55 % against 9/20 = 45 %.
    assert_eq!(trend_of((20, 11), (20, 9)).trend, Trend::Increasing);
    assert_eq!(trend_of((20, 9), (20, 11)).trend, Trend::Decreasing);
    // 3/5 = 60 % against 5/10 = 50 %, with different denominators.
    assert_eq!(trend_of((5, 3), (10, 5)).trend, Trend::Increasing);
    assert_eq!(trend_of((10, 5), (5, 3)).trend, Trend::Decreasing);
}

#[test]
fn a_trend_under_ten_points_is_stable() {
    // 7/11 = 63.64 % against 6/11 = 54.55 %: 9.09 points.
    let report = trend_of((11, 7), (11, 6));
    assert_eq!(report.trend, Trend::Stable);
    assert_eq!(
        report.trend_recent,
        TrendWindow {
            received: 11,
            engaged: 7,
            engagement_score: 700.0 / 11.0
        }
    );
    assert_eq!(trend_of((11, 6), (11, 7)).trend, Trend::Stable);
    assert_eq!(trend_of((5, 5), (5, 5)).trend, Trend::Stable);
}

#[test]
fn a_trend_needs_five_received_messages_on_each_side() {
    assert_eq!(trend_of((5, 5), (4, 0)).trend, Trend::InsufficientData);
    assert_eq!(trend_of((4, 0), (5, 5)).trend, Trend::InsufficientData);
    assert_eq!(trend_of((5, 5), (5, 0)).trend, Trend::Increasing);

    // Sent but never delivered does not count as received.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now_ms = 100 * DAY_MS;
    batch(&store, 1, Channel::Sms, 0.0, now_ms - DAY_MS, 5, 5);
    batch(&store, 1, Channel::Sms, 0.0, now_ms - 40 * DAY_MS, 4, 0);
    send(&store, 1, now_ms - 40 * DAY_MS);
    set_now(&store, now_ms);
    let report = engagement(&store, 1);
    assert_eq!(report.trend_previous.received, 4);
    assert_eq!(report.trend, Trend::InsufficientData);
}

#[test]
fn trend_windows_are_open_at_their_start_and_closed_at_now() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now_ms = 100 * DAY_MS;
    let window_ms = 30 * DAY_MS;
    // Recent: (now − 30 d, now]; previous: (now − 60 d, now − 30 d].
    for (sent_ms, opens) in [
        (now_ms, true),
        (now_ms - window_ms + 1, true),
        (now_ms - window_ms, false),
        (now_ms - 2 * window_ms + 1, false),
        (now_ms - 2 * window_ms, true),
    ] {
        let id = send(&store, 1, sent_ms);
        delivered(&store, id, sent_ms.min(now_ms - 10));
        if opens {
            opened(&store, id, sent_ms.min(now_ms - 10));
        }
    }
    set_now(&store, now_ms);
    let report = engagement(&store, 1);
    assert_eq!(report.now, Some(at(now_ms)));
    assert_eq!(
        (report.trend_recent.received, report.trend_recent.engaged),
        (2, 2)
    );
    assert_eq!(
        (
            report.trend_previous.received,
            report.trend_previous.engaged
        ),
        (2, 0)
    );
}

#[test]
fn the_trend_ignores_the_filter_start_and_its_now_is_capped_by_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    batch(&store, 1, Channel::Sms, 0.0, 10 * DAY_MS, 5, 0);
    batch(&store, 1, Channel::Sms, 0.0, 40 * DAY_MS, 5, 5);
    // Later messages, and an event far later, that a window ending at day 50 leaves out.
    batch(&store, 1, Channel::Sms, 0.0, 60 * DAY_MS, 5, 0);
    set_now(&store, 200 * DAY_MS);

    let filter = EngagementFilter::new()
        .start(at(39 * DAY_MS))
        .end(at(50 * DAY_MS));
    let report = store.get_user_engagement(1, &filter).unwrap();
    assert_eq!(report.now, Some(at(50 * DAY_MS)));
    assert_eq!(
        (report.sent, report.engaged),
        (5, 5),
        "the window selects day 40 only"
    );
    assert_eq!(
        report.trend_previous.received, 5,
        "day 10: before the start"
    );
    assert_eq!(
        report.trend_recent.received, 5,
        "day 40; day 60 is after now"
    );
    assert_eq!(report.trend, Trend::Increasing);

    // A channel filter narrows the trend too.
    let email = store
        .get_user_engagement(1, &filter.clone().channel(Channel::Email))
        .unwrap();
    assert_eq!(email.trend_recent.received, 0);
    assert_eq!(email.trend, Trend::InsufficientData);

    // With no end, now is the latest event: the windows end at day 200 and are empty.
    assert_eq!(engagement(&store, 1).trend, Trend::InsufficientData);
}

#[test]
fn the_preferred_channel_has_the_highest_rate_among_channels_with_five_received() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    batch(&store, 1, Channel::Sms, 0.05, 0, 10, 6);
    batch(&store, 1, Channel::Email, 0.001, 0, 10, 5);
    // Perfect, but only 4 received.
    batch(&store, 1, Channel::Push, 0.0, 0, 4, 4);
    assert_eq!(engagement(&store, 1).preferred_channel, Some(Channel::Sms));

    // Nobody with five received: none.
    batch(&store, 2, Channel::Email, 0.0, 0, 4, 4);
    assert_eq!(engagement(&store, 2).preferred_channel, None);
    assert_eq!(engagement(&store, 3).preferred_channel, None);
}

#[test]
fn preferred_channel_ties_go_to_the_cheaper_average_cost_then_to_the_channel_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 3/6 = 50 % everywhere.
    batch(&store, 1, Channel::Sms, 0.05, 0, 6, 3);
    batch(&store, 1, Channel::Email, 0.001, 0, 10, 5);
    // Equal rate, but the average cost includes messages never delivered: 0.002 × 10 / 11.
    batch(&store, 1, Channel::Push, 0.002, 0, 10, 5);
    send_costing(&store, 1, Channel::Push, 0.0, 0);
    let report = engagement(&store, 1);
    let push = &report.by_channel[2];
    assert_eq!(push.average_cost, Some(Money::from_micros(1_818)));
    assert_eq!(
        report.preferred_channel,
        Some(Channel::Email),
        "0.001 < 0.00181818…"
    );

    // Equal rate and equal cost: the channel order (sms, email, push, in_app) decides.
    batch(&store, 2, Channel::InApp, 0.0, 0, 6, 3);
    batch(&store, 2, Channel::Push, 0.0, 0, 8, 4);
    assert_eq!(engagement(&store, 2).preferred_channel, Some(Channel::Push));
}

#[test]
fn channels_and_types_are_listed_when_a_message_is_selected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store
        .track_message_sent_at(1, Channel::InApp, "weekly_checkin", 0.0, at(0))
        .unwrap()
        .id;
    opened(&store, id, MINUTE_MS);
    send_costing(&store, 1, Channel::Sms, 0.05, 0);
    send_costing(&store, 1, Channel::Sms, 0.000_001, 0);
    let report = engagement(&store, 1);
    assert_eq!(
        report.by_channel,
        vec![
            ChannelEngagement {
                channel: Channel::Sms,
                sent: 2,
                received: 0,
                engaged: 0,
                ignored: 0,
                engagement_rate: 0.0,
                total_cost: Money::from_micros(50_001),
                // 25,000.5 rounds away from zero.
                average_cost: Some(Money::from_micros(25_001)),
            },
            ChannelEngagement {
                channel: Channel::InApp,
                sent: 1,
                received: 1,
                engaged: 1,
                ignored: 0,
                engagement_rate: 100.0,
                total_cost: Money::ZERO,
                average_cost: Some(Money::ZERO),
            },
        ]
    );
    let names: Vec<&str> = report
        .by_message_type
        .iter()
        .map(|entry| entry.message_type.as_str())
        .collect();
    assert_eq!(names, ["low_balance", "weekly_checkin"]);
}

#[test]
fn a_window_starting_and_ending_inside_an_hour_is_exact_to_the_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let hour_ms = 9 * HOUR_MS;
    let start_ms = hour_ms + 15 * MINUTE_MS;
    let end_ms = hour_ms + 30 * MINUTE_MS;
    for sent_ms in [
        hour_ms,
        start_ms - 1,
        start_ms,
        hour_ms + 20 * MINUTE_MS,
        end_ms,
        end_ms + 1,
        hour_ms + HOUR_MS - 1,
    ] {
        let id = send(&store, 1, sent_ms);
        opened(&store, id, sent_ms + SECOND_MS);
    }
    let filter = EngagementFilter::new().start(at(start_ms)).end(at(end_ms));
    let report = store.get_user_engagement(1, &filter).unwrap();
    assert_eq!((report.sent, report.engaged), (3, 3));
    assert_eq!(report.engagement_by_hour[9], 3);
    assert_eq!(report.now, Some(at(end_ms)));
}

#[test]
fn messages_selected_count_in_their_final_state_whatever_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = send(&store, 1, 0);
    // Opened two days after a window that ends an hour after the send.
    opened(&store, id, 2 * DAY_MS);
    let filter = EngagementFilter::new().end(at(HOUR_MS));
    let report = store.get_user_engagement(1, &filter).unwrap();
    assert_eq!((report.received, report.engaged), (1, 1));
    assert_eq!(report.response_times.under_5_minutes, 1, "implied delivery");
}

#[test]
fn invalid_filters_are_refused_and_unknown_names_select_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = send(&store, 1, 0);
    opened(&store, id, 0);
    let invalid = |user: u64, filter: EngagementFilter, field: &str| match store
        .get_user_engagement(user, &filter)
    {
        Err(Error::InvalidInput { field: got, .. }) => assert_eq!(got, field),
        other => panic!("{filter:?}: {other:?}"),
    };
    invalid(0, EngagementFilter::new(), "user_id");
    invalid(
        1,
        EngagementFilter::new().message_type("Low Balance"),
        "message_type",
    );
    invalid(1, EngagementFilter::new().message_type(""), "message_type");
    invalid(1, EngagementFilter::new().start(at(1)).end(at(0)), "end");

    let never = store
        .get_user_engagement(1, &EngagementFilter::new().message_type("never_sent"))
        .unwrap();
    assert_eq!((never.sent, never.by_message_type.len()), (0, 0));
    let stranger = engagement(&store, 42);
    assert_eq!(stranger.user_id, UserId(42));
    assert_eq!((stranger.sent, stranger.engagement_score), (0, 0.0));
    assert_eq!(
        stranger.now,
        Some(at(0)),
        "now is the store's, not the user's"
    );
    assert!(stranger.by_channel.is_empty());

    let empty = tempfile::tempdir().unwrap();
    let store = open(empty.path());
    let nothing = engagement(&store, 1);
    assert_eq!(
        (nothing.now, nothing.trend),
        (None, Trend::InsufficientData)
    );
}
