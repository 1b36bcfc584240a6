//! Money sums at the extremes: a store of 10,000 messages at the largest cost accepted and
//! outcomes at the largest and smallest amounts answers every query, and every sum it reports
//! equals a brute-force 128-bit sum, before and after reopening.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use commlog::{
    BudgetScope, Channel, CostFilter, EffectivenessFilter, EngagementFilter, ImpactFilter, Money,
    Month, Period, StatsFilter, Store,
};
use support::store::open;

/// The largest cost or amount accepted, in dollars and in micro-dollars.
const MONEY_DOLLARS_MAX: f64 = 9e12;
const MONEY_MICROS_MAX: i128 = 9_000_000_000_000_000_000;

const MESSAGE_COUNT: usize = 10_000;
const OUTCOME_COUNT: usize = 2_000;
const USERS: [u64; 4] = [1, 2, 3, 4];

fn optional_micros(money: Option<Money>) -> Option<i128> {
    money.map(Money::micros)
}

/// Users 1 and 3 get SMS, 2 and 4 email; 1 and 2 "low_balance", 3 and 4 "weekly_checkin".
fn channel_of(user: u64) -> Channel {
    if user % 2 == 1 {
        Channel::Sms
    } else {
        Channel::Email
    }
}

fn type_of(user: u64) -> &'static str {
    if user <= 2 {
        "low_balance"
    } else {
        "weekly_checkin"
    }
}

/// User 4's outcomes are losses at the smallest amount, the others' gains at the largest.
fn amount_of(user: u64) -> i128 {
    if user == 4 {
        -MONEY_MICROS_MAX
    } else {
        MONEY_MICROS_MAX
    }
}

fn outcome_name_of(user: u64) -> &'static str {
    if user == 4 { "lost" } else { "won" }
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// A sent message as the model keeps it.
struct Sent {
    user: u64,
    at: DateTime<Utc>,
}

/// An outcome as the model keeps it.
struct Outcome {
    user: u64,
    at: DateTime<Utc>,
}

/// Message `i` goes to user `1 + i % 4` at minute `i`, delivered a second later and opened two.
/// Outcome `j` is user `1 + j % 4`'s at minute `5j + 4` and 30 seconds: the user has a message
/// opened in the 7 days before it, so every outcome is credited (to a message of the user, so
/// to the user's channel and type).
fn build(store: &Store) -> (Vec<Sent>, Vec<Outcome>) {
    let mut sent = Vec::with_capacity(MESSAGE_COUNT);
    for index in 0..MESSAGE_COUNT {
        let user = USERS[index % USERS.len()];
        let at = base() + Duration::minutes(index as i64);
        let message = store
            .track_message_sent_at(user, channel_of(user), type_of(user), MONEY_DOLLARS_MAX, at)
            .unwrap();
        assert_eq!(message.cost.micros(), MONEY_MICROS_MAX);
        store
            .track_message_delivered(message.id, Some(at + Duration::seconds(1)))
            .unwrap();
        store
            .track_message_opened(message.id, Some(at + Duration::seconds(2)))
            .unwrap();
        sent.push(Sent { user, at });
    }
    let mut outcomes = Vec::with_capacity(OUTCOME_COUNT);
    for index in 0..OUTCOME_COUNT {
        let user = USERS[index % USERS.len()];
        let at = base() + Duration::minutes(5 * index as i64 + 4) + Duration::seconds(30);
        let dollars = if amount_of(user) < 0 {
            -MONEY_DOLLARS_MAX
        } else {
            MONEY_DOLLARS_MAX
        };
        let outcome = store
            .track_financial_outcome_at(user, outcome_name_of(user), dollars, at)
            .unwrap();
        assert_eq!(outcome.amount.micros(), amount_of(user));
        outcomes.push(Outcome { user, at });
    }
    store
        .set_budget(BudgetScope::All, "2025-01", MONEY_DOLLARS_MAX, None)
        .unwrap();
    (sent, outcomes)
}

/// `total / count` rounded to the nearest integer, halves away from zero.
fn divide_rounded(total: i128, count: i128) -> i128 {
    let quotient = total / count;
    if (total % count).abs() * 2 >= count {
        quotient + total.signum()
    } else {
        quotient
    }
}

fn roi(impact: i128, cost: i128) -> Option<f64> {
    (cost != 0).then(|| (impact - cost) as f64 / cost as f64)
}

#[test]
fn sums_beyond_64_bits_are_reported_exactly_by_every_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (sent, outcomes) = build(&store);
    check_every_query(&store, &sent, &outcomes);
    store.close().unwrap();
    check_every_query(&open(dir.path()), &sent, &outcomes);
}

fn check_every_query(store: &Store, sent: &[Sent], outcomes: &[Outcome]) {
    let cost_of = |users: &[u64]| {
        sent.iter().filter(|m| users.contains(&m.user)).count() as i128 * MONEY_MICROS_MAX
    };
    let impact_of = |users: &[u64]| -> i128 {
        outcomes
            .iter()
            .filter(|o| users.contains(&o.user))
            .map(|o| amount_of(o.user))
            .sum()
    };
    let total_cost = cost_of(&USERS);
    let total_impact = impact_of(&USERS);
    assert!(total_cost > i128::from(i64::MAX) && impact_of(&[4]) < i128::from(i64::MIN));

    check_stats(store, sent, outcomes, &cost_of, &impact_of);
    check_engagement(store, &cost_of);
    check_channels(store, sent, outcomes, &cost_of, &impact_of);
    check_costs(store, sent, outcomes, total_cost);

    let impact = store.get_financial_impact(&ImpactFilter::new()).unwrap();
    assert_eq!(impact.outcomes.count, OUTCOME_COUNT as u64);
    assert_eq!(impact.outcomes.amount.micros(), total_impact);
    assert_eq!(impact.attributed.amount.micros(), total_impact);
    assert_eq!(impact.attributed.engaged.amount.micros(), total_impact);
    assert_eq!(impact.attributed.delivered.amount.micros(), 0);
    assert_eq!(
        (
            impact.unattributed.count,
            impact.unattributed.amount.micros()
        ),
        (0, 0)
    );
    assert_eq!(
        impact.by_outcome["won"].amount.micros(),
        impact_of(&[1, 2, 3])
    );
    assert_eq!(impact.by_outcome["lost"].amount.micros(), impact_of(&[4]));
    for row in &impact.by_channel {
        let users: Vec<u64> = USERS
            .into_iter()
            .filter(|user| channel_of(*user) == row.channel)
            .collect();
        assert_eq!(row.cost.micros(), cost_of(&users), "{:?}", row.channel);
        assert_eq!(row.attributed.amount.micros(), impact_of(&users));
        assert_eq!(row.roi, roi(impact_of(&users), cost_of(&users)));
    }
    for (name, attributed) in &impact.by_message_type {
        let users: Vec<u64> = USERS
            .into_iter()
            .filter(|user| type_of(*user) == name)
            .collect();
        assert_eq!(attributed.amount.micros(), impact_of(&users), "{name}");
    }
    assert_eq!(impact.by_message_type.len(), 2);
}

fn check_stats(
    store: &Store,
    sent: &[Sent],
    outcomes: &[Outcome],
    cost_of: &dyn Fn(&[u64]) -> i128,
    impact_of: &dyn Fn(&[u64]) -> i128,
) {
    let stats = store.get_communication_stats(&StatsFilter::new()).unwrap();
    assert_eq!(stats.total_messages, sent.len() as u64);
    assert_eq!(stats.total_cost.micros(), cost_of(&USERS));
    assert_eq!(stats.avg_cost_per_message.micros(), MONEY_MICROS_MAX);
    assert_eq!(stats.outcome_count, outcomes.len() as u64);
    assert_eq!(stats.total_impact.micros(), impact_of(&USERS));
    for user in USERS {
        let stats = store
            .get_communication_stats(&StatsFilter::new().user(user))
            .unwrap();
        assert_eq!(stats.total_cost.micros(), cost_of(&[user]), "user {user}");
        assert_eq!(stats.avg_cost_per_message.micros(), MONEY_MICROS_MAX);
        assert_eq!(
            stats.total_impact.micros(),
            impact_of(&[user]),
            "user {user}"
        );
    }
    let sms = store
        .get_communication_stats(&StatsFilter::new().channel(Channel::Sms))
        .unwrap();
    assert_eq!(sms.total_cost.micros(), cost_of(&[1, 3]));
}

fn check_engagement(store: &Store, cost_of: &dyn Fn(&[u64]) -> i128) {
    for user in USERS {
        let engagement = store
            .get_user_engagement(user, &EngagementFilter::new())
            .unwrap();
        assert_eq!(engagement.by_channel.len(), 1, "user {user}");
        let channel = &engagement.by_channel[0];
        assert_eq!(channel.channel, channel_of(user));
        assert_eq!(channel.total_cost.micros(), cost_of(&[user]), "user {user}");
        assert_eq!(
            optional_micros(channel.average_cost),
            Some(MONEY_MICROS_MAX)
        );
    }
}

fn check_channels(
    store: &Store,
    sent: &[Sent],
    outcomes: &[Outcome],
    cost_of: &dyn Fn(&[u64]) -> i128,
    impact_of: &dyn Fn(&[u64]) -> i128,
) {
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    assert_eq!(report.lines.len(), USERS.len());
    for line in &report.lines {
        // Each line is one user's: its channel and type name the user.
        let user = USERS
            .into_iter()
            .find(|user| {
                channel_of(*user) == line.channel
                    && Some(type_of(*user)) == line.message_type.as_deref()
            })
            .expect("a line of a user");
        assert_eq!(line.total_cost.micros(), cost_of(&[user]), "user {user}");
        assert_eq!(line.attributed_impact.micros(), impact_of(&[user]));
        assert_eq!(
            optional_micros(line.cost_per_message),
            Some(MONEY_MICROS_MAX)
        );
        assert_eq!(line.roi, roi(impact_of(&[user]), cost_of(&[user])));
    }
    for line in &report.channels {
        let users: Vec<u64> = USERS
            .into_iter()
            .filter(|user| channel_of(*user) == line.channel)
            .collect();
        assert_eq!(line.total_cost.micros(), cost_of(&users));
        assert_eq!(line.attributed_impact.micros(), impact_of(&users));
        assert_eq!(line.roi, roi(impact_of(&users), cost_of(&users)));
    }
    for winner in &report.winners {
        assert_eq!(winner.cost_per_response, None);
    }

    // By ISO week: messages by the week of their sent time, outcomes by the week of their own.
    let week_of = |at: DateTime<Utc>| {
        let date = at.date_naive();
        date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
    };
    let mut expected: BTreeMap<(NaiveDate, u64), (i128, i128)> = BTreeMap::new();
    for message in sent {
        expected
            .entry((week_of(message.at), message.user))
            .or_default()
            .0 += MONEY_MICROS_MAX;
    }
    for outcome in outcomes {
        expected
            .entry((week_of(outcome.at), outcome.user))
            .or_default()
            .1 += amount_of(outcome.user);
    }
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new().period(Period::Week))
        .unwrap();
    let mut actual: BTreeMap<(NaiveDate, u64), (i128, i128)> = BTreeMap::new();
    for period in &report.periods {
        for line in &period.lines {
            let user = USERS
                .into_iter()
                .find(|user| {
                    channel_of(*user) == line.channel
                        && Some(type_of(*user)) == line.message_type.as_deref()
                })
                .expect("a line of a user");
            actual.insert(
                (period.start, user),
                (line.total_cost.micros(), line.attributed_impact.micros()),
            );
        }
    }
    assert_eq!(report.periods.len(), 2);
    assert_eq!(actual, expected);
}

fn check_costs(store: &Store, sent: &[Sent], outcomes: &[Outcome], total_cost: i128) {
    let report = store.get_cost_report(&CostFilter::new()).unwrap();
    assert_eq!(report.total.spent.micros(), total_cost);
    assert_eq!(
        optional_micros(report.total.cost_per_message),
        Some(MONEY_MICROS_MAX)
    );
    assert_eq!(
        optional_micros(report.total.cost_per_delivered),
        Some(MONEY_MICROS_MAX)
    );
    for (channel, summary) in &report.by_channel {
        let count = sent
            .iter()
            .filter(|m| channel_of(m.user) == *channel)
            .count();
        assert_eq!(summary.spent.micros(), count as i128 * MONEY_MICROS_MAX);
    }
    for (name, summary) in &report.by_message_type {
        let count = sent.iter().filter(|m| type_of(m.user) == name).count();
        assert_eq!(summary.spent.micros(), count as i128 * MONEY_MICROS_MAX);
    }
    let mut daily: BTreeMap<(NaiveDate, Channel), i128> = BTreeMap::new();
    for message in sent {
        *daily
            .entry((message.at.date_naive(), channel_of(message.user)))
            .or_default() += MONEY_MICROS_MAX;
    }
    let actual: BTreeMap<(NaiveDate, Channel), i128> = report
        .daily
        .iter()
        .map(|day| ((day.day, day.channel), day.spent.micros()))
        .collect();
    assert_eq!(actual, daily);
    for month in &report.monthly {
        let count = sent
            .iter()
            .filter(|m| channel_of(m.user) == month.channel)
            .count();
        assert_eq!(month.spent.micros(), count as i128 * MONEY_MICROS_MAX);
    }

    // The January budget: every message is in January, and "now" is the last outcome.
    let now = outcomes.iter().map(|o| o.at).max().unwrap();
    assert_eq!(report.now, Some(now));
    let january = Month::new(2025, 1).unwrap();
    let budgets = store
        .get_cost_report(&CostFilter::new().month(january))
        .unwrap()
        .budgets;
    assert_eq!(budgets.len(), 1);
    let budget = &budgets[0];
    let (first_ms, next_ms) = january.range_ms();
    let elapsed_ms = i128::from(now.timestamp_millis() + 1 - first_ms);
    assert_eq!(budget.budget.micros(), MONEY_MICROS_MAX);
    assert_eq!(budget.spent.micros(), total_cost);
    assert_eq!(budget.variance.micros(), MONEY_MICROS_MAX - total_cost);
    assert_eq!(
        budget.projected.micros(),
        divide_rounded(total_cost * i128::from(next_ms - first_ms), elapsed_ms)
    );
    assert_eq!(
        budget.utilization,
        total_cost as f64 * 100.0 / MONEY_MICROS_MAX as f64
    );
    assert!(budget.alert && budget.exceeded);
}
