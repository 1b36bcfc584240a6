//! Stats over all users come from time buckets (whole 10-minute slices and days) plus a scan of
//! the edge slices; so do their outcome fields. Over times spread across days, with windows on
//! and off slice, hour and day boundaries, and with events arriving after the buckets were built, they must
//! equal a count over every message and outcome.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use commlog::{Channel, Error, Message, Options, StatsFilter, Status, Store, SyncPolicy};
use proptest::prelude::*;
use support::model::CLOCK_SKEW_MS;

const HOUR_MS: i64 = 3_600_000;
/// The rollup's finest bucket: ten minutes.
const SLICE_MS: i64 = 600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const TYPES: [&str; 3] = ["low_balance", "weekly_checkin", "bill_reminder"];

fn t0_ms() -> i64 {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

#[derive(Debug, Clone)]
enum Call {
    Sent {
        user: u64,
        channel: usize,
        message_type: usize,
        cost_micros: i64,
        at_ms: i64,
    },
    Delivered {
        message: usize,
        at_ms: i64,
    },
    Opened {
        message: usize,
        at_ms: i64,
    },
    Action {
        message: usize,
        click: bool,
        at_ms: i64,
    },
    Failed {
        message: usize,
        at_ms: i64,
    },
    Outcome {
        user: u64,
        amount_micros: i64,
        at_ms: i64,
    },
}

impl Call {
    fn at_ms(&self) -> i64 {
        match *self {
            Call::Sent { at_ms, .. }
            | Call::Delivered { at_ms, .. }
            | Call::Opened { at_ms, .. }
            | Call::Action { at_ms, .. }
            | Call::Failed { at_ms, .. }
            | Call::Outcome { at_ms, .. } => at_ms,
        }
    }
}

fn call() -> impl Strategy<Value = Call> {
    // Times over 10 days; often on (or 1 ms before) a slice boundary of the first two days, where
    // the filters' edges fall too.
    let at_ms = prop_oneof![
        (0i64..10 * DAY_MS).prop_map(|offset| t0_ms() + offset),
        (0i64..300).prop_map(|slice| t0_ms() + slice * SLICE_MS),
        (0i64..300).prop_map(|slice| t0_ms() + slice * SLICE_MS - 1),
    ];
    prop_oneof![
        3 => (1u64..5, 0usize..4, 0usize..3, 0i64..100_000, at_ms.clone()).prop_map(
            |(user, channel, message_type, cost_micros, at_ms)| Call::Sent { user, channel, message_type, cost_micros, at_ms }
        ),
        2 => (0usize..1000, at_ms.clone()).prop_map(|(message, at_ms)| Call::Delivered { message, at_ms }),
        1 => (0usize..1000, at_ms.clone()).prop_map(|(message, at_ms)| Call::Opened { message, at_ms }),
        1 => (0usize..1000, any::<bool>(), at_ms.clone()).prop_map(|(message, click, at_ms)| Call::Action { message, click, at_ms }),
        1 => (0usize..1000, at_ms.clone()).prop_map(|(message, at_ms)| Call::Failed { message, at_ms }),
        1 => (1u64..5, -50_000_000i64..50_000_000, at_ms).prop_map(|(user, amount_micros, at_ms)| Call::Outcome { user, amount_micros, at_ms }),
    ]
}

fn filter() -> impl Strategy<Value = StatsFilter> {
    let edge = prop_oneof![
        (0i64..11 * DAY_MS).prop_map(|offset| t0_ms() - DAY_MS / 2 + offset),
        // Next to a slice (and so also hour and day) boundary: one or two milliseconds either
        // side, or on it.
        (0i64..320, -2i64..=1)
            .prop_map(|(slice, nudge_ms)| t0_ms() - 10 * SLICE_MS + slice * SLICE_MS + nudge_ms),
    ];
    (
        proptest::option::of(0usize..4),
        proptest::option::of(0usize..3),
        proptest::option::of(edge.clone()),
        proptest::option::of(edge),
    )
        .prop_map(|(channel, message_type, start, end)| {
            let mut filter = StatsFilter::new();
            if let Some(channel) = channel {
                filter = filter.channel(Channel::ALL[channel]);
            }
            if let Some(message_type) = message_type {
                filter = filter.message_type(TYPES[message_type]);
            }
            // Keep start ≤ end so that the filter is valid.
            let (start, end) = match (start, end) {
                (Some(start), Some(end)) if start > end => (Some(end), Some(start)),
                bounds => bounds,
            };
            if let Some(start) = start {
                filter = filter.start(time(start));
            }
            if let Some(end) = end {
                filter = filter.end(time(end));
            }
            filter
        })
}

/// Applies the calls; returns the outcomes tracked, as (time, amount) in micros.
fn apply(store: &Store, calls: &[Call]) -> Vec<(i64, i64)> {
    let mut outcomes = Vec::new();
    for call in calls {
        let count = store.get_messages(&StatsFilter::new()).unwrap().len();
        let id = |message: usize| (message % count.max(1)) as u64 + 1;
        let result = match *call {
            Call::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                at_ms,
            } => store
                .track_message_sent_at(
                    user,
                    Channel::ALL[channel],
                    TYPES[message_type],
                    cost_micros as f64 / 1e6,
                    time(at_ms),
                )
                .map(drop),
            Call::Outcome {
                user,
                amount_micros,
                at_ms,
            } => {
                outcomes.push((at_ms, amount_micros));
                store
                    .track_financial_outcome_at(
                        user,
                        "bill_paid_on_time",
                        amount_micros as f64 / 1e6,
                        time(at_ms),
                    )
                    .map(drop)
            }
            _ if count == 0 => continue,
            Call::Delivered { message, at_ms } => store
                .track_message_delivered(id(message), Some(time(at_ms)))
                .map(drop),
            Call::Opened { message, at_ms } => store
                .track_message_opened(id(message), Some(time(at_ms)))
                .map(drop),
            Call::Action {
                message,
                click,
                at_ms,
            } => {
                let action = if click {
                    "clicked_link"
                } else {
                    "viewed_forecast"
                };
                store
                    .track_user_action(id(message), action, Some(time(at_ms)))
                    .map(drop)
            }
            Call::Failed { message, at_ms } => store
                .track_message_failed(id(message), "bounced", Some(time(at_ms)))
                .map(drop),
        };
        // A report more than the clock skew before its message's sent time is refused.
        let too_early = match *call {
            Call::Delivered { message, at_ms }
            | Call::Opened { message, at_ms }
            | Call::Action { message, at_ms, .. }
            | Call::Failed { message, at_ms } => {
                let sent_at = store.get_message(id(message)).unwrap().sent_at;
                at_ms < sent_at.timestamp_millis() - CLOCK_SKEW_MS
            }
            Call::Sent { .. } | Call::Outcome { .. } => false,
        };
        match result {
            Err(Error::InvalidInput { field: "at", .. }) if too_early => {}
            result => {
                assert!(!too_early, "{call:?} was accepted");
                result.unwrap();
            }
        }
    }
    outcomes
}

/// Counters, cost, the three breakdowns, and the outcome count and sum.
type Counted = (
    Vec<u64>,
    i128,
    BTreeMap<String, u64>,
    BTreeMap<String, u64>,
    BTreeMap<String, u64>,
    (u64, i128),
);

/// The stats (all users), counted over every message and outcome.
fn expected(messages: &[Message], outcomes: &[(i64, i64)], filter: &StatsFilter) -> Counted {
    let selected: Vec<&Message> = messages
        .iter()
        .filter(|message| {
            filter
                .channel
                .is_none_or(|channel| channel == message.channel)
                && filter
                    .message_type
                    .as_ref()
                    .is_none_or(|message_type| **message_type == *message.message_type)
                && filter.start.is_none_or(|start| start <= message.sent_at)
                && filter.end.is_none_or(|end| message.sent_at <= end)
        })
        .collect();
    let count = |test: &dyn Fn(&Message) -> bool| {
        selected.iter().filter(|message| test(message)).count() as u64
    };
    let counts = vec![
        selected.len() as u64,
        count(&|message| message.delivered_at.is_some()),
        count(&|message| message.opened_at.is_some()),
        count(&|message| message.clicked_at.is_some()),
        count(&|message| message.action_taken.is_some()),
        count(&|message| message.status == Status::Failed),
    ];
    let cost = selected.iter().map(|message| message.cost.micros()).sum();
    let mut by_status = BTreeMap::new();
    let mut by_channel = BTreeMap::new();
    let mut by_type = BTreeMap::new();
    for message in &selected {
        *by_status.entry(message.status.to_string()).or_insert(0) += 1;
        *by_channel.entry(message.channel.to_string()).or_insert(0) += 1;
        *by_type.entry(message.message_type.to_string()).or_insert(0) += 1;
    }
    let in_range = |at_ms: i64| {
        filter
            .start
            .is_none_or(|start| start.timestamp_millis() <= at_ms)
            && filter.end.is_none_or(|end| at_ms <= end.timestamp_millis())
    };
    let selected_outcomes: Vec<&(i64, i64)> = outcomes
        .iter()
        .filter(|(at_ms, _)| in_range(*at_ms))
        .collect();
    let outcome_fields = (
        selected_outcomes.len() as u64,
        selected_outcomes
            .iter()
            .map(|(_, amount)| i128::from(*amount))
            .sum(),
    );
    (counts, cost, by_status, by_channel, by_type, outcome_fields)
}

/// Checks `filters` on a store after `before` (which builds the buckets), after `after` too
/// (which the buckets follow), and reopened (the buckets rebuilt from the replayed states).
fn check_built_kept_and_rebuilt(
    before: &[Call],
    after: &[Call],
    filters: &[StatsFilter],
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        sync: SyncPolicy::Never,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    let mut outcomes = apply(&store, before);
    check(&store, &outcomes, filters)?;
    outcomes.extend(apply(&store, after));
    check(&store, &outcomes, filters)?;
    store.close().unwrap();
    let reopened = Store::open_with(dir.path(), options).unwrap();
    check(&reopened, &outcomes, filters)
}

fn check(
    store: &Store,
    outcomes: &[(i64, i64)],
    filters: &[StatsFilter],
) -> Result<(), TestCaseError> {
    let messages = store.get_messages(&StatsFilter::new()).unwrap();
    for filter in filters.iter().chain([&StatsFilter::new()]) {
        let stats = store.get_communication_stats(filter).unwrap();
        let got = (
            vec![
                stats.total_messages,
                stats.delivered_count,
                stats.opened_count,
                stats.clicked_count,
                stats.action_count,
                stats.failed_count,
            ],
            stats.total_cost.micros(),
            stats.status_breakdown.clone(),
            stats.channel_breakdown.clone(),
            stats.message_type_breakdown.clone(),
            (stats.outcome_count, stats.total_impact.micros()),
        );
        prop_assert_eq!(
            got,
            expected(&messages, outcomes, filter),
            "filter {:?}",
            filter
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stats_from_buckets_equal_a_count_over_every_message(
        before in proptest::collection::vec(call(), 0..120),
        after in proptest::collection::vec(call(), 0..80),
        mut filters in proptest::collection::vec(filter(), 1..12),
        edges_at_calls in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..6),
    ) {
        // Windows whose edges are exactly the times of calls: the edge scans' inclusive bounds.
        let times: Vec<i64> = before.iter().chain(&after).map(Call::at_ms).collect();
        if !times.is_empty() {
            for (first, second) in edges_at_calls {
                let (start, end) = (times[first.index(times.len())], times[second.index(times.len())]);
                filters.push(StatsFilter::new().start(time(start.min(end))).end(time(start.max(end))));
            }
        }
        check_built_kept_and_rebuilt(&before, &after, &filters)?;
    }
}

/// Calls packed into two slices, with more outcomes in each than a slice holds before its
/// minutes get totals of their own (128), and windows cutting them anywhere, minutes and their
/// edges included: the outcome count and sum read from minute totals, then the cut minutes'
/// outcomes one by one, must equal a count over every outcome; sends among the outcomes move
/// their credits.
fn busy_call() -> impl Strategy<Value = Call> {
    let at_ms = (0i64..2 * SLICE_MS).prop_map(|offset| t0_ms() + offset);
    prop_oneof![
        1 => (1u64..5, 0usize..4, 0usize..3, at_ms.clone()).prop_map(
            |(user, channel, message_type, at_ms)| Call::Sent { user, channel, message_type, cost_micros: 1_000, at_ms }
        ),
        5 => (1u64..5, -50_000_000i64..50_000_000, at_ms).prop_map(|(user, amount_micros, at_ms)| Call::Outcome { user, amount_micros, at_ms }),
    ]
}

fn busy_window() -> impl Strategy<Value = StatsFilter> {
    const MINUTE_MS: i64 = 60_000;
    let edge = prop_oneof![
        (-MINUTE_MS..2 * SLICE_MS + MINUTE_MS).prop_map(|offset| t0_ms() + offset),
        (-1i64..=21, -1i64..=1)
            .prop_map(|(minute, nudge_ms)| t0_ms() + minute * MINUTE_MS + nudge_ms),
    ];
    (edge.clone(), edge).prop_map(|(first, second)| {
        StatsFilter::new()
            .start(time(first.min(second)))
            .end(time(first.max(second)))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn outcome_totals_of_busy_slices_equal_a_count_over_every_outcome(
        before in proptest::collection::vec(busy_call(), 330..400),
        after in proptest::collection::vec(busy_call(), 0..60),
        filters in proptest::collection::vec(busy_window(), 1..16),
    ) {
        check_built_kept_and_rebuilt(&before, &after, &filters)?;
    }
}
