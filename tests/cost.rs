//! Cost and budgets: `Store::get_cost_report` against a brute-force model of the
//! documented rules on random call sequences (out of order, repeated, failed, with outcomes and
//! budgets set and replaced, across month boundaries), before and after reopening; then one test
//! per edge rule. The `costs` and `budget set` commands: cli/tests/costs.rs.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use commlog::{
    BudgetScope, BudgetStatus, Channel, CostFilter, CostReport, CostSummary, DailySpend, Error,
    Money, Month, MonthlySpend, Store, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::calls::{ACTIONS, Call, track};
use support::model::{CLOCK_SKEW_MS, is_conversion};
use support::reports::budget_of;
use support::store::{open, time_of_ms};

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

fn month(text: &str) -> Month {
    text.parse().expect("a month")
}

/// `micros / 1e6` dollars, which the store rounds back to exactly `micros`.
fn dollars(micros: i64) -> f64 {
    micros as f64 / 1e6
}

// ---------------------------------------------------------------------------------------------
// The model.

/// Times are an anchor plus 0..=OFFSET_MS_MAX ms: anchors sit on and next to day and month
/// boundaries, so that sends cross them and equal times are common.
const ANCHORS: [&str; 7] = [
    "2024-12-31T23:59:59.995Z",
    "2025-01-01T00:00:00.000Z",
    "2025-01-15T12:00:00.000Z",
    "2025-01-31T23:59:59.995Z",
    "2025-02-14T08:00:00.000Z",
    "2025-02-28T23:59:59.995Z",
    "2025-03-31T23:59:59.995Z",
];
const OFFSET_MS_MAX: i64 = 10;
// Reports at an earlier anchor are refused as more than the clock skew early; reports a few
// ms early are accepted.
const MONTHS: [&str; 5] = ["2024-12", "2025-01", "2025-02", "2025-03", "2025-04"];
const MESSAGE_TYPES: [&str; 3] = ["low_balance", "weekly_checkin", "bill_due"];

/// A call as applied: message picks resolved to ids (1-based, in send order).
#[derive(Debug, Clone)]
enum Applied {
    Sent {
        user: u64,
        channel: Channel,
        message_type: &'static str,
        cost_micros: i64,
        at_ms: i64,
    },
    Delivered {
        id: usize,
        at_ms: i64,
    },
    Opened {
        id: usize,
        at_ms: i64,
    },
    Action {
        id: usize,
        action: &'static str,
        at_ms: i64,
    },
    Failed {
        at_ms: i64,
    },
    Outcome {
        at_ms: i64,
    },
    Budget {
        scope: BudgetScope,
        month: &'static str,
        amount_micros: i64,
        alert_percent: u8,
    },
}

fn time_ms() -> impl Strategy<Value = i64> {
    (0..ANCHORS.len(), 0..=OFFSET_MS_MAX)
        .prop_map(|(anchor, offset)| time(ANCHORS[anchor]).timestamp_millis() + offset)
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

fn scope() -> impl Strategy<Value = BudgetScope> {
    prop_oneof![
        Just(BudgetScope::All),
        channel().prop_map(BudgetScope::Channel)
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => (1..=3u64, channel(), prop::sample::select(MESSAGE_TYPES.to_vec()),
              prop_oneof![Just(0i64), 1..=60_000i64], time_ms())
            .prop_map(|(user, channel, message_type, cost_micros, at_ms)| Call::Sent {
                user, channel, message_type, cost_micros, at_ms,
            }),
        2 => (any::<Index>(), time_ms()).prop_map(|(message, at_ms)| Call::Delivered { message, at_ms }),
        1 => (any::<Index>(), time_ms()).prop_map(|(message, at_ms)| Call::Opened { message, at_ms }),
        2 => (any::<Index>(), prop::sample::select(ACTIONS.to_vec()), time_ms())
            .prop_map(|(message, action, at_ms)| Call::Action { message, action, at_ms }),
        1 => (any::<Index>(), time_ms()).prop_map(|(message, at_ms)| Call::Failed { message, at_ms }),
        1 => (1..=3u64, -50_000_000i64..=50_000_000, time_ms())
            .prop_map(|(user, amount_micros, at_ms)| Call::Outcome { user, amount_micros, at_ms }),
        2 => (scope(), prop::sample::select(MONTHS.to_vec()), 1..=200_000i64,
              prop::option::of(1..=100u8))
            .prop_map(|(scope, month, amount_micros, alert_percent)| Call::Budget {
                scope, month, amount_micros, alert_percent,
            }),
    ]
}

fn optional_time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop::option::of(time_ms().prop_map(time_of_ms))
}

fn filter() -> impl Strategy<Value = CostFilter> {
    (
        prop::option::of(1..=4u64),
        prop::option::of(prop::sample::select(vec![
            "low_balance",
            "weekly_checkin",
            "bill_due",
            "never_sent",
        ])),
        prop::option::of(channel()),
        optional_time(),
        optional_time(),
        prop::option::of(prop::sample::select(vec![
            "2024-12", "2025-01", "2025-02", "2025-03", "2025-06",
        ])),
    )
        .prop_map(
            |(user, message_type, channel, start, end, month)| CostFilter {
                user: user.map(UserId),
                message_type: message_type.map(str::to_string),
                channel,
                start,
                end,
                month: month.map(|text| text.parse().expect("a month")),
            },
        )
}

/// Applies `call` to `store` and, as applied, to `applied`, the calls applied so far (an event
/// on a message only once one exists; else nothing).
fn apply(store: &Store, call: &Call, applied: &mut Vec<Applied>) {
    let sent_times_ms: Vec<i64> = applied
        .iter()
        .filter_map(|call| match call {
            Applied::Sent { at_ms, .. } => Some(*at_ms),
            _ => None,
        })
        .collect();
    let mut sent = sent_times_ms.len();
    let pick = |message: &Index, sent: usize| (sent > 0).then(|| message.index(sent) + 1);
    // Whether a report on message `id` at `at_ms` was refused, as one more than the clock skew
    // before the message's sent time must be; else it was accepted.
    let refused = |id: usize, at_ms: i64, result: commlog::Result<Option<commlog::Message>>| {
        if at_ms < sent_times_ms[id - 1] - CLOCK_SKEW_MS {
            assert!(
                matches!(result, Err(Error::InvalidInput { field: "at", .. })),
                "{call:?}: {result:?}"
            );
            return true;
        }
        result.unwrap();
        false
    };
    match call {
        Call::Sent {
            user,
            channel,
            message_type,
            cost_micros,
            at_ms,
        } => {
            let message = track(store, call, sent).unwrap().unwrap();
            sent += 1;
            assert_eq!(message.id.0, sent as u64);
            assert_eq!(message.cost.micros(), i128::from(*cost_micros));
            applied.push(Applied::Sent {
                user: *user,
                channel: *channel,
                message_type,
                cost_micros: *cost_micros,
                at_ms: *at_ms,
            });
        }
        Call::Delivered { message, at_ms } => {
            if let Some(id) = pick(message, sent)
                && !refused(id, *at_ms, track(store, call, sent))
            {
                applied.push(Applied::Delivered { id, at_ms: *at_ms });
            }
        }
        Call::Opened { message, at_ms } => {
            if let Some(id) = pick(message, sent)
                && !refused(id, *at_ms, track(store, call, sent))
            {
                applied.push(Applied::Opened { id, at_ms: *at_ms });
            }
        }
        Call::Action {
            message,
            action,
            at_ms,
        } => {
            if let Some(id) = pick(message, sent)
                && !refused(id, *at_ms, track(store, call, sent))
            {
                applied.push(Applied::Action {
                    id,
                    action,
                    at_ms: *at_ms,
                });
            }
        }
        Call::Failed { message, at_ms } => {
            if let Some(id) = pick(message, sent)
                && !refused(id, *at_ms, track(store, call, sent))
            {
                applied.push(Applied::Failed { at_ms: *at_ms });
            }
        }
        Call::Outcome { at_ms, .. } => {
            track(store, call, sent).unwrap();
            applied.push(Applied::Outcome { at_ms: *at_ms });
        }
        Call::Budget {
            scope,
            month,
            amount_micros,
            alert_percent,
        } => {
            track(store, call, sent).unwrap();
            applied.push(Applied::Budget {
                scope: *scope,
                month,
                amount_micros: *amount_micros,
                alert_percent: alert_percent.unwrap_or(90),
            });
        }
    }
}

/// One message as the model sees it.
#[derive(Debug, Clone)]
struct ModelMessage {
    user: u64,
    channel: Channel,
    message_type: &'static str,
    cost_micros: i64,
    sent_ms: i64,
    delivered: bool,
    responded: bool,
    converted: bool,
}

fn model_messages(applied: &[Applied]) -> Vec<ModelMessage> {
    let mut messages = Vec::new();
    for call in applied {
        match *call {
            Applied::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                at_ms,
            } => messages.push(ModelMessage {
                user,
                channel,
                message_type,
                cost_micros,
                sent_ms: at_ms,
                delivered: false,
                responded: false,
                converted: false,
            }),
            // An open implies delivery, and so does any action.
            Applied::Delivered { id, .. } | Applied::Opened { id, .. } => {
                messages[id - 1].delivered = true
            }
            Applied::Action { id, action, .. } => {
                let message = &mut messages[id - 1];
                message.delivered = true;
                message.responded = true;
                message.converted |= is_conversion(action);
            }
            Applied::Failed { .. } | Applied::Outcome { .. } | Applied::Budget { .. } => {}
        }
    }
    messages
}

/// The first millisecond of `month` and of the month after, by the calendar.
fn model_month_range(month: &str) -> (i64, i64) {
    let (year, number) = month.split_once('-').unwrap();
    let (year, number): (i32, u32) = (year.parse().unwrap(), number.parse().unwrap());
    let first = NaiveDate::from_ymd_opt(year, number, 1).unwrap();
    let next = if number == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap()
    } else {
        NaiveDate::from_ymd_opt(year, number + 1, 1).unwrap()
    };
    let ms = |date: NaiveDate| {
        date.and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    };
    (ms(first), ms(next))
}

/// `total / count` to the nearest integer, halves up (totals are never negative here).
fn model_rounded(total: i128, count: i128) -> i128 {
    assert!(total >= 0 && count > 0);
    (2 * total + count) / (2 * count)
}

fn model_summary(messages: &[&ModelMessage]) -> CostSummary {
    let count = |predicate: fn(&ModelMessage) -> bool| {
        messages.iter().filter(|message| predicate(message)).count() as u64
    };
    let spent: i128 = messages
        .iter()
        .map(|message| i128::from(message.cost_micros))
        .sum();
    let per = |count: u64| {
        (count > 0).then(|| Money::from_micros(model_rounded(spent, i128::from(count))))
    };
    let delivered = count(|message| message.delivered);
    let responded = count(|message| message.responded);
    let converted = count(|message| message.converted);
    CostSummary {
        messages: messages.len() as u64,
        delivered,
        responded,
        converted,
        spent: Money::from_micros(spent),
        cost_per_message: per(messages.len() as u64),
        cost_per_delivered: per(delivered),
        cost_per_response: per(responded),
        cost_per_conversion: per(converted),
    }
}

/// The report by the documented rules, from the calls as applied; `None` when the filter is
/// invalid.
fn model_report(applied: &[Applied], filter: &CostFilter) -> Option<CostReport> {
    if let (Some(start), Some(end)) = (filter.start, filter.end)
        && start > end
    {
        return None;
    }
    let messages = model_messages(applied);
    let latest_ms = applied
        .iter()
        .filter_map(|call| match *call {
            Applied::Sent { at_ms, .. }
            | Applied::Delivered { at_ms, .. }
            | Applied::Opened { at_ms, .. }
            | Applied::Action { at_ms, .. }
            | Applied::Failed { at_ms }
            | Applied::Outcome { at_ms } => Some(at_ms),
            Applied::Budget { .. } => None,
        })
        .max();
    let now_ms = latest_ms.map(|latest| {
        filter
            .end
            .map_or(latest, |end| end.timestamp_millis().min(latest))
    });

    let month_range = filter
        .month
        .map(|month| model_month_range(&month.to_string()));
    let in_range = |ms: i64| {
        filter
            .start
            .is_none_or(|start| start.timestamp_millis() <= ms)
            && filter.end.is_none_or(|end| ms <= end.timestamp_millis())
            && month_range.is_none_or(|(first, next)| first <= ms && ms < next)
    };
    let selected: Vec<&ModelMessage> = messages
        .iter()
        .filter(|message| {
            filter.user.is_none_or(|user| user.0 == message.user)
                && filter
                    .message_type
                    .as_deref()
                    .is_none_or(|name| name == message.message_type)
                && filter
                    .channel
                    .is_none_or(|channel| channel == message.channel)
                && in_range(message.sent_ms)
        })
        .collect();

    let mut by_channel = BTreeMap::new();
    for channel in Channel::ALL {
        let group: Vec<_> = selected
            .iter()
            .copied()
            .filter(|message| message.channel == channel)
            .collect();
        if !group.is_empty() {
            by_channel.insert(channel, model_summary(&group));
        }
    }
    let mut by_message_type = BTreeMap::new();
    let types: BTreeSet<&str> = selected
        .iter()
        .map(|message| message.message_type)
        .collect();
    for message_type in types {
        let group: Vec<_> = selected
            .iter()
            .copied()
            .filter(|message| message.message_type == message_type)
            .collect();
        by_message_type.insert(message_type.to_string(), model_summary(&group));
    }
    let date = |ms: i64| time_of_ms(ms).date_naive();
    // Per (period start, channel), by brute force: every period and channel that has a message,
    // with the count and cost of the messages that fall in it.
    let spend_by = |period_of: &dyn Fn(i64) -> NaiveDate| {
        let periods: BTreeSet<(NaiveDate, Channel)> = selected
            .iter()
            .map(|message| (period_of(message.sent_ms), message.channel))
            .collect();
        let spends = periods.into_iter().map(|(start, channel)| {
            let group: Vec<&&ModelMessage> = selected
                .iter()
                .filter(|message| period_of(message.sent_ms) == start && message.channel == channel)
                .collect();
            let spent: i128 = group
                .iter()
                .map(|message| i128::from(message.cost_micros))
                .sum();
            (
                start,
                channel,
                group.len() as u64,
                Money::from_micros(spent),
            )
        });
        spends.collect::<Vec<_>>()
    };
    let daily = spend_by(&date)
        .into_iter()
        .map(|(day, channel, messages, spent)| DailySpend {
            day,
            channel,
            messages,
            spent,
        })
        .collect();
    let month_of = |ms: i64| date(ms).with_day(1).unwrap();
    let monthly = spend_by(&month_of)
        .into_iter()
        .map(|(month_start, channel, messages, spent)| MonthlySpend {
            month_start,
            channel,
            messages,
            spent,
        })
        .collect();

    // The last budget per (scope, month) wins.
    let mut budgets: BTreeMap<(&str, BudgetScope), (i64, u8)> = BTreeMap::new();
    for call in applied {
        if let Applied::Budget {
            scope,
            month,
            amount_micros,
            alert_percent,
        } = *call
        {
            budgets.insert((month, scope), (amount_micros, alert_percent));
        }
    }
    let budgets = budgets
        .into_iter()
        .filter(|((month, scope), _)| {
            let (first, next) = model_month_range(month);
            let covers = match (scope, filter.channel) {
                (BudgetScope::Channel(own), Some(channel)) => *own == channel,
                _ => true,
            };
            covers && overlaps_range(filter, month_range, first, next)
        })
        .map(|((month, scope), (budget, alert_percent))| {
            let (first, next) = model_month_range(month);
            let spent: i128 = messages
                .iter()
                .filter(|message| {
                    let in_scope = match scope {
                        BudgetScope::All => true,
                        BudgetScope::Channel(channel) => channel == message.channel,
                    };
                    in_scope
                        && first <= message.sent_ms
                        && message.sent_ms < next
                        && now_ms.is_some_and(|now| message.sent_ms <= now)
                })
                .map(|message| i128::from(message.cost_micros))
                .sum();
            let month_ms = i128::from(next - first);
            let elapsed = now_ms.map_or(0, |now| {
                (i128::from(now) + 1 - i128::from(first)).clamp(0, month_ms)
            });
            let projected = if elapsed == 0 {
                spent
            } else {
                model_rounded(spent * month_ms, elapsed)
            };
            let budget_micros = i128::from(budget);
            BudgetStatus {
                scope,
                month: month.parse().unwrap(),
                budget: Money::from_micros(budget_micros),
                alert_percent,
                spent: Money::from_micros(spent),
                utilization: spent as u64 as f64 * 100.0 / budget as u64 as f64,
                variance: Money::from_micros(budget_micros - spent),
                projected: Money::from_micros(projected),
                alert: spent * 100 >= i128::from(alert_percent) * budget_micros,
                exceeded: spent > budget_micros,
            }
        })
        .collect();

    Some(CostReport {
        now: now_ms.map(time_of_ms),
        total: model_summary(&selected),
        by_channel,
        by_message_type,
        daily,
        monthly,
        budgets,
    })
}

/// Whether the month [first, next) shares a millisecond with the filter's time range (start,
/// end and month, inclusive).
fn overlaps_range(
    filter: &CostFilter,
    month_range: Option<(i64, i64)>,
    first: i64,
    next: i64,
) -> bool {
    let mut start = filter
        .start
        .map_or(i64::MIN, |start| start.timestamp_millis());
    let mut end = filter.end.map_or(i64::MAX, |end| end.timestamp_millis());
    if let Some((month_first, month_next)) = month_range {
        start = start.max(month_first);
        end = end.min(month_next - 1);
    }
    start <= end && first <= end && start < next
}

/// The store's report equals the model's over the calls applied so far, for each filter and
/// for none; a filter with its start after its end is refused.
fn check_reports(
    store: &Store,
    applied: &[Applied],
    filters: &[CostFilter],
    when: &str,
) -> Result<(), TestCaseError> {
    for filter in filters.iter().chain([&CostFilter::new()]) {
        match model_report(applied, filter) {
            Some(expected) => prop_assert_eq!(
                store.get_cost_report(filter).unwrap(),
                expected,
                "{}: {:?}",
                when,
                filter
            ),
            None => {
                let refused = matches!(
                    store.get_cost_report(filter),
                    Err(Error::InvalidInput { field: "end", .. })
                );
                prop_assert!(
                    refused,
                    "{}: start after end must be refused: {:?}",
                    when,
                    filter
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cost_report_agrees_with_the_model_before_and_after_reopening(
        calls in prop::collection::vec(call(), 0..100),
        filters in prop::collection::vec(filter(), 1..6),
        check_at in prop::collection::vec(any::<Index>(), 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut applied = Vec::new();
        // Part-way checks too: the first query builds the indexes, and every later call must
        // keep them current.
        let check_indexes: Vec<usize> =
            check_at.iter().map(|index| index.index(calls.len() + 1)).collect();
        for (index, call) in calls.iter().enumerate() {
            if check_indexes.contains(&index) {
                check_reports(&store, &applied, &filters, &format!("before call {index}"))?;
            }
            apply(&store, call, &mut applied);
        }
        check_reports(&store, &applied, &filters, "after the calls")?;
        store.close().unwrap();
        check_reports(&open(dir.path()), &applied, &filters, "after reopen")?;
        check_reports(&Store::open_read_only(dir.path()).unwrap(), &applied, &filters, "read-only")?;
    }
}

// ---------------------------------------------------------------------------------------------
// The edge rules, one test each.

fn send(store: &Store, user: u64, channel: Channel, cost_micros: i64, at: &str) -> u64 {
    store
        .track_message_sent_at(user, channel, "low_balance", dollars(cost_micros), time(at))
        .unwrap()
        .id
        .0
}

fn report(store: &Store, filter: &CostFilter) -> CostReport {
    store.get_cost_report(filter).unwrap()
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

#[test]
fn spend_counts_on_the_utc_day_and_month_of_sent_at_failed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let late = send(&store, 1, Channel::Sms, 10_000, "2025-01-31T23:59:59.999Z");
    send(&store, 1, Channel::Sms, 20_000, "2025-02-01T00:00:00.000Z");
    // Failed, and reported in the next month: still January's spend.
    store
        .track_message_failed(late, "undelivered", Some(time("2025-02-02T00:00:00Z")))
        .unwrap();
    let report = report(&store, &CostFilter::new());
    assert_eq!(
        report.daily,
        vec![
            DailySpend {
                day: date("2025-01-31"),
                channel: Channel::Sms,
                messages: 1,
                spent: Money::from_micros(10_000),
            },
            DailySpend {
                day: date("2025-02-01"),
                channel: Channel::Sms,
                messages: 1,
                spent: Money::from_micros(20_000),
            },
        ]
    );
    assert_eq!(
        report
            .monthly
            .iter()
            .map(|line| (line.month_start, line.spent.micros()))
            .collect::<Vec<_>>(),
        vec![(date("2025-01-01"), 10_000), (date("2025-02-01"), 20_000)]
    );
    assert_eq!(report.total.spent.micros(), 30_000);
    assert_eq!(report.total.delivered, 0);
}

#[test]
fn daily_and_monthly_lines_are_ordered_by_period_then_channel() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::InApp, 0, "2025-01-02T00:00:00Z");
    send(&store, 1, Channel::Email, 1, "2025-01-02T00:00:00Z");
    send(&store, 1, Channel::Sms, 2, "2025-01-03T00:00:00Z");
    send(&store, 1, Channel::Push, 3, "2025-01-02T00:00:00Z");
    let report = report(&store, &CostFilter::new());
    let lines: Vec<_> = report
        .daily
        .iter()
        .map(|line| (line.day, line.channel))
        .collect();
    assert_eq!(
        lines,
        vec![
            (date("2025-01-02"), Channel::Email),
            (date("2025-01-02"), Channel::Push),
            (date("2025-01-02"), Channel::InApp),
            (date("2025-01-03"), Channel::Sms),
        ]
    );
    let channels: Vec<_> = report.monthly.iter().map(|line| line.channel).collect();
    assert_eq!(channels, Channel::ALL.to_vec());
    // A free message is a message: it appears with zero spend.
    assert_eq!(report.by_channel[&Channel::InApp].spent, Money::ZERO);
}

#[test]
fn cost_per_result_is_none_without_results_and_rounds_halves_away_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = send(&store, 1, Channel::Sms, 2, "2025-01-01T00:00:00Z");
    let second = send(&store, 1, Channel::Sms, 1, "2025-01-01T00:00:01Z");
    let none = report(&store, &CostFilter::new()).total;
    assert_eq!(
        (
            none.cost_per_delivered,
            none.cost_per_response,
            none.cost_per_conversion
        ),
        (None, None, None)
    );
    // 3 micros over 2 messages is 1.5: rounded away from zero to 2.
    assert_eq!(none.cost_per_message, Some(Money::from_micros(2)));

    store
        .track_message_delivered(first, Some(time("2025-01-01T00:01:00Z")))
        .unwrap();
    store
        .track_user_action(
            second,
            "viewed_forecast",
            Some(time("2025-01-01T00:02:00Z")),
        )
        .unwrap();
    let total = report(&store, &CostFilter::new()).total;
    // Both delivered (the action implies it), one response, no conversion.
    assert_eq!(
        (total.delivered, total.responded, total.converted),
        (2, 1, 0)
    );
    assert_eq!(total.cost_per_delivered, Some(Money::from_micros(2)));
    assert_eq!(total.cost_per_response, Some(Money::from_micros(3)));
    assert_eq!(total.cost_per_conversion, None);
}

#[test]
fn a_conversion_is_an_action_whose_name_contains_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = send(&store, 1, Channel::Email, 300_000, "2025-01-01T00:00:00Z");
    let second = send(&store, 1, Channel::Email, 100_000, "2025-01-01T00:00:00Z");
    store
        .track_user_action(
            first,
            "clicked_upgrade_banner",
            Some(time("2025-01-01T01:00:00Z")),
        )
        .unwrap();
    // A later action does not undo the conversion.
    store
        .track_user_action(first, "dismissed", Some(time("2025-01-01T02:00:00Z")))
        .unwrap();
    store
        .track_user_action(second, "upgraded", Some(time("2025-01-01T01:00:00Z")))
        .unwrap();
    let email = &report(&store, &CostFilter::new()).by_channel[&Channel::Email];
    // "upgraded" contains "upgrade" too: both messages converted.
    assert_eq!(email.converted, 2);
    assert_eq!(email.cost_per_conversion, Some(Money::from_micros(200_000)));
}

#[test]
fn the_last_budget_for_a_scope_and_month_wins_and_all_is_reported_beside_channels() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, 500_000, "2025-01-10T00:00:00Z");
    send(&store, 1, Channel::Email, 250_000, "2025-01-10T00:00:00Z");
    store
        .set_budget(
            BudgetScope::Channel(Channel::Sms),
            "2025-01",
            100.0,
            Some(50),
        )
        .unwrap();
    store
        .set_budget(BudgetScope::All, "2025-01", 10.0, None)
        .unwrap();
    store
        .set_budget(BudgetScope::Channel(Channel::Sms), "2025-01", 2.0, None)
        .unwrap();
    let report = report(&store, &CostFilter::new());
    assert_eq!(report.budgets.len(), 2);
    // Ordered by month, then scope: all first.
    assert_eq!(report.budgets[0].scope, BudgetScope::All);
    let sms = budget_of(&report, BudgetScope::Channel(Channel::Sms), "2025-01");
    assert_eq!(
        (sms.budget.micros(), sms.alert_percent, sms.spent.micros()),
        (2_000_000, 90, 500_000)
    );
    assert_eq!(sms.variance.micros(), 1_500_000);
    assert_eq!(sms.utilization, 25.0);
    let all = budget_of(&report, BudgetScope::All, "2025-01");
    assert_eq!(
        (all.budget.micros(), all.spent.micros()),
        (10_000_000, 750_000)
    );
}

#[test]
fn a_budget_covers_its_whole_month_whatever_the_user_and_type_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, 100_000, "2025-01-10T00:00:00Z");
    store
        .track_message_sent_at(
            2,
            Channel::Sms,
            "bill_due",
            0.2,
            time("2025-01-11T00:00:00Z"),
        )
        .unwrap();
    store
        .set_budget(BudgetScope::All, "2025-01", 1.0, None)
        .unwrap();
    let filter = CostFilter::new().user(1).message_type("bill_due");
    let report = report(&store, &filter);
    assert_eq!(report.total.messages, 0);
    assert_eq!(
        budget_of(&report, BudgetScope::All, "2025-01")
            .spent
            .micros(),
        300_000
    );
    // A type never tracked selects no message, and the budget still shows.
    let report = self::report(&store, &CostFilter::new().message_type("never_sent"));
    assert_eq!(report.total, CostSummary::default());
    assert_eq!(
        budget_of(&report, BudgetScope::All, "2025-01")
            .spent
            .micros(),
        300_000
    );
}

#[test]
fn a_budget_counts_messages_sent_up_to_now_and_now_is_capped_by_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, 100_000, "2025-01-10T00:00:00Z");
    send(&store, 1, Channel::Sms, 200_000, "2025-01-20T00:00:00Z");
    store
        .set_budget(BudgetScope::All, "2025-01", 1.0, None)
        .unwrap();
    let before = report(
        &store,
        &CostFilter::new().end(time("2025-01-19T23:59:59.999Z")),
    );
    assert_eq!(before.now, Some(time("2025-01-19T23:59:59.999Z")));
    assert_eq!(
        budget_of(&before, BudgetScope::All, "2025-01")
            .spent
            .micros(),
        100_000
    );
    let at = report(&store, &CostFilter::new().end(time("2025-01-20T00:00:00Z")));
    assert_eq!(
        budget_of(&at, BudgetScope::All, "2025-01").spent.micros(),
        300_000
    );
    // Without an end, now is the latest event time; a budget set later does not move it.
    assert_eq!(
        report(&store, &CostFilter::new()).now,
        Some(time("2025-01-20T00:00:00Z"))
    );
}

#[test]
fn now_comes_from_tracking_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .set_budget(BudgetScope::All, "2025-01", 1.0, None)
        .unwrap();
    let report = report(&store, &CostFilter::new());
    assert_eq!(report.now, None);
    let budget = budget_of(&report, BudgetScope::All, "2025-01");
    assert_eq!((budget.spent, budget.projected), (Money::ZERO, Money::ZERO));
    // An outcome is a tracking event: it moves now.
    store
        .track_financial_outcome_at(1, "overdraft", -35.0, time("2025-01-05T00:00:00Z"))
        .unwrap();
    assert_eq!(
        self::report(&store, &CostFilter::new()).now,
        Some(time("2025-01-05T00:00:00Z"))
    );
}

#[test]
fn projected_spend_divides_by_the_elapsed_part_of_the_month() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, 1_000_000, "2025-01-01T00:00:00Z");
    send(&store, 1, Channel::Email, 10_000, "2025-02-01T00:00:00Z");
    for month in ["2025-01", "2025-02", "2025-03"] {
        store
            .set_budget(BudgetScope::All, month, 1.0, None)
            .unwrap();
    }
    let projected = |end: &str, month: &str| {
        let report = report(&store, &CostFilter::new().end(time(end)));
        budget_of(&report, BudgetScope::All, month)
            .projected
            .micros()
    };
    let january_ms = 31 * 86_400_000i128;
    let february_ms = 28 * 86_400_000i128;
    // Now at the month's first millisecond: 1 ms elapsed.
    assert_eq!(
        projected("2025-01-01T00:00:00Z", "2025-01"),
        1_000_000 * january_ms
    );
    // 10 whole days elapsed of 31.
    assert_eq!(projected("2025-01-10T23:59:59.999Z", "2025-01"), 3_100_000);
    // The month is over: the spend itself.
    assert_eq!(projected("2025-02-01T00:00:00Z", "2025-01"), 1_000_000);
    assert_eq!(
        projected("2025-02-01T00:00:00Z", "2025-02"),
        10_000 * february_ms
    );
    // A month not begun (now is the latest event, February 1st): nothing elapsed, so
    // projected = spent = 0. (With an end before March, the March budget is not named.)
    let report = report(&store, &CostFilter::new());
    let march = budget_of(&report, BudgetScope::All, "2025-03");
    assert_eq!((march.spent, march.projected), (Money::ZERO, Money::ZERO));
    assert!(
        self::report(
            &store,
            &CostFilter::new().end(time("2025-02-28T23:59:59.999Z"))
        )
        .budgets
        .iter()
        .all(|budget| budget.month != month("2025-03"))
    );
}

#[test]
fn projected_spend_rounds_halves_away_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 3 micros; now = 2 ms before the end of February (28 d): elapsed = month − 1 ms.
    send(&store, 1, Channel::Sms, 3, "2025-02-01T00:00:00Z");
    send(&store, 1, Channel::Push, 0, "2025-02-28T23:59:59.998Z");
    store
        .set_budget(BudgetScope::All, "2025-02", 1.0, None)
        .unwrap();
    let report = report(&store, &CostFilter::new());
    let month_ms: i128 = 28 * 86_400_000;
    let exact = 3 * month_ms;
    let elapsed = month_ms - 1;
    // 3 × month ÷ (month − 1) = 3.000000001…: rounds to 3.
    assert_eq!(exact / elapsed, 3);
    assert_eq!(
        budget_of(&report, BudgetScope::All, "2025-02")
            .projected
            .micros(),
        3
    );
}

#[test]
fn alert_starts_at_exactly_the_alert_percent_and_exceeded_only_above_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Budget $0.29 (not exact in binary) at 100 %: alert and exceeded differ by one micro.
    store
        .set_budget(
            BudgetScope::Channel(Channel::Sms),
            "2025-01",
            0.29,
            Some(100),
        )
        .unwrap();
    // Budget $1 at 90 %.
    store
        .set_budget(BudgetScope::Channel(Channel::Email), "2025-01", 1.0, None)
        .unwrap();
    send(&store, 1, Channel::Sms, 289_999, "2025-01-05T00:00:00Z");
    send(&store, 1, Channel::Email, 899_999, "2025-01-05T00:00:00Z");
    let states = |store: &Store| {
        let report = report(store, &CostFilter::new());
        [Channel::Sms, Channel::Email].map(|channel| {
            let budget = budget_of(&report, BudgetScope::Channel(channel), "2025-01");
            (budget.alert, budget.exceeded)
        })
    };
    assert_eq!(states(&store), [(false, false), (false, false)]);
    send(&store, 1, Channel::Sms, 1, "2025-01-06T00:00:00Z");
    send(&store, 1, Channel::Email, 1, "2025-01-06T00:00:00Z");
    // Exactly at the threshold: alert; exactly at the budget: not exceeded.
    assert_eq!(states(&store), [(true, false), (true, false)]);
    send(&store, 1, Channel::Sms, 1, "2025-01-07T00:00:00Z");
    assert_eq!(states(&store)[0], (true, true));
    let report = report(&store, &CostFilter::new());
    let sms = budget_of(&report, BudgetScope::Channel(Channel::Sms), "2025-01");
    assert_eq!(sms.variance.micros(), -1);
}

#[test]
fn the_month_filter_limits_spend_and_budgets_to_that_month() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, 1, "2025-01-31T23:59:59.999Z");
    send(&store, 1, Channel::Sms, 2, "2025-02-01T00:00:00Z");
    send(&store, 1, Channel::Sms, 4, "2025-02-28T23:59:59.999Z");
    send(&store, 1, Channel::Sms, 8, "2025-03-01T00:00:00Z");
    for month in ["2025-01", "2025-02", "2025-03"] {
        store
            .set_budget(BudgetScope::All, month, 1.0, None)
            .unwrap();
    }
    let report = report(&store, &CostFilter::new().month(month("2025-02")));
    assert_eq!(report.total.spent.micros(), 6);
    let months: Vec<Month> = report.budgets.iter().map(|budget| budget.month).collect();
    assert_eq!(months, vec![month("2025-02")]);
    // With start and end, the month filter intersects them.
    let report = self::report(
        &store,
        &CostFilter::new()
            .month(month("2025-02"))
            .start(time("2025-02-15T00:00:00Z")),
    );
    assert_eq!(report.total.spent.micros(), 4);
    // A range that misses the month selects nothing and names no budget.
    let report = self::report(
        &store,
        &CostFilter::new()
            .month(month("2025-02"))
            .end(time("2025-01-31T23:59:59.999Z")),
    );
    assert_eq!((report.total.messages, report.budgets.len()), (0, 0));
    // Without a month, budgets whose month overlaps [start, end] are reported.
    let report = self::report(
        &store,
        &CostFilter::new()
            .start(time("2025-01-31T23:59:59.999Z"))
            .end(time("2025-02-01T00:00:00Z")),
    );
    let months: Vec<Month> = report.budgets.iter().map(|budget| budget.month).collect();
    assert_eq!(months, vec![month("2025-01"), month("2025-02")]);
}

#[test]
fn a_channel_filter_reports_the_all_budget_and_that_channels_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, 10, "2025-01-05T00:00:00Z");
    send(&store, 1, Channel::Email, 20, "2025-01-05T00:00:00Z");
    store
        .set_budget(BudgetScope::All, "2025-01", 1.0, None)
        .unwrap();
    for channel in [Channel::Sms, Channel::Email] {
        store
            .set_budget(BudgetScope::Channel(channel), "2025-01", 1.0, None)
            .unwrap();
    }
    let report = report(&store, &CostFilter::new().channel(Channel::Email));
    let scopes: Vec<_> = report.budgets.iter().map(|budget| budget.scope).collect();
    assert_eq!(
        scopes,
        vec![BudgetScope::All, BudgetScope::Channel(Channel::Email)]
    );
    // The all budget still counts every channel's spend.
    assert_eq!(report.budgets[0].spent.micros(), 30);
    assert_eq!(report.total.spent.micros(), 20);
}

#[test]
fn a_bad_filter_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let refused_field = |filter: CostFilter| match store.get_cost_report(&filter) {
        Err(Error::InvalidInput { field, .. }) => field,
        other => panic!("{filter:?} gave {other:?}"),
    };
    assert_eq!(refused_field(CostFilter::new().user(0)), "user_id");
    assert_eq!(
        refused_field(CostFilter::new().message_type("Low Balance")),
        "message_type"
    );
    assert_eq!(
        refused_field(
            CostFilter::new()
                .start(time("2025-01-02T00:00:00Z"))
                .end(time("2025-01-01T00:00:00Z"))
        ),
        "end"
    );
}

#[test]
fn a_spend_beyond_64_bit_micros_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for _ in 0..2 {
        store
            .track_message_sent_at(
                1,
                Channel::Sms,
                "low_balance",
                9e12,
                time("2025-01-01T00:00:00Z"),
            )
            .unwrap();
    }
    let all = report(&store, &CostFilter::new());
    let twice = Money::from_micros(18_000_000_000_000_000_000);
    assert_eq!(all.total.spent, twice);
    assert_eq!(all.by_channel[&Channel::Sms].spent, twice);
    assert_eq!(all.daily[0].spent, twice);
    assert_eq!(all.monthly[0].spent, twice);
    // A range that selects neither sums nothing.
    let report = report(&store, &CostFilter::new().end(time("2024-12-31T00:00:00Z")));
    assert_eq!(report.total.messages, 0);
}

#[test]
fn a_user_filter_reads_only_that_users_messages_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 2, Channel::Sms, 1, "2025-01-05T00:00:00Z");
    send(&store, 1, Channel::Sms, 2, "2025-01-04T00:00:00Z");
    send(&store, 1, Channel::Sms, 4, "2025-01-05T00:00:00.000Z");
    send(&store, 1, Channel::Sms, 8, "2025-01-05T00:00:00.001Z");
    // Sent out of order: the user's sorted list still finds it.
    send(&store, 1, Channel::Sms, 16, "2025-01-04T23:59:59.999Z");
    let filter = CostFilter::new()
        .user(1)
        .start(time("2025-01-04T23:59:59.999Z"))
        .end(time("2025-01-05T00:00:00.000Z"));
    assert_eq!(report(&store, &filter).total.spent.micros(), 20);
    assert_eq!(
        report(&store, &CostFilter::new().user(3)).total,
        CostSummary::default()
    );
}

#[test]
fn the_report_round_trips_through_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = send(&store, 1, Channel::InApp, 0, "2025-01-05T00:00:00Z");
    send(&store, 1, Channel::Sms, 50_000, "2025-01-05T00:00:00Z");
    store
        .track_user_action(id, "upgrade_plan", Some(time("2025-01-05T00:00:01Z")))
        .unwrap();
    store
        .set_budget(BudgetScope::Channel(Channel::Sms), "2025-01", 1.0, None)
        .unwrap();
    let report = report(&store, &CostFilter::new());
    let text = serde_json::to_string(&report).unwrap();
    assert!(text.contains(r#""month":"2025-01""#), "{text}");
    assert!(text.contains(r#""day":"2025-01-05""#), "{text}");
    assert!(text.contains(r#""in_app":{"#), "{text}");
    assert_eq!(serde_json::from_str::<CostReport>(&text).unwrap(), report);
    let filter = CostFilter::new()
        .channel(Channel::Sms)
        .month(month("2025-01"));
    let text = serde_json::to_string(&filter).unwrap();
    assert_eq!(serde_json::from_str::<CostFilter>(&text).unwrap(), filter);
}
