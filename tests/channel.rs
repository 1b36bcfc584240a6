//! Channel effectiveness: a model test — random call sequences applied to a store and
//! to a brute-force model of docs/SEMANTICS.md ("Channel effectiveness"), random filters, the
//! same report from both, also after close and reopen — and unit tests pinning the edge rules.
//! The `channels` command: cli/tests/channels.rs.

mod support;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use commlog::{
    Channel, ChannelLine, ChannelPeriod, ChannelReport, ChannelWinner, EffectivenessFilter, Error,
    Money, Options, Period, Store, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::calls::{ACTIONS, Call, track};
use support::model::{CLOCK_SKEW_MS, is_click, is_conversion};
use support::store::options;

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn ms(text: &str) -> i64 {
    at(text).timestamp_millis()
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn options_with_window(window: Duration) -> Options {
    Options {
        attribution_window: window,
        ..options()
    }
}

// ---------------------------------------------------------------------------------------------
// Calls and their strategies.

/// Times sit a few milliseconds before a boundary: Friday 28 February → Saturday 1 March (day
/// and month), Sunday 2 March → Monday 3 March (ISO week), Monday 31 March → Tuesday 1 April
/// (month, not week).
const ANCHORS: [&str; 3] = [
    "2025-02-28T23:59:59.980Z",
    "2025-03-02T23:59:59.980Z",
    "2025-03-31T23:59:59.980Z",
];

/// Offsets after an anchor: the boundary falls at +20 ms.
const OFFSET_MAX_MS: i64 = 40;

/// Times only outcomes take: a day (Wednesday 5 March), an ISO week (from 10 March) and a month
/// (May) without messages, so that periods hold outcomes credited to messages of earlier ones.
const OUTCOME_ONLY: [&str; 3] = [
    "2025-03-05T12:00:00Z",
    "2025-03-12T12:00:00Z",
    "2025-05-02T12:00:00Z",
];

const MESSAGE_TYPES: [&str; 3] = ["low_balance", "bill_due", "upgrade_offer"];

// Reports at an earlier anchor are refused as more than the clock skew early; reports a few
// ms early count as sent.

/// Few distinct costs, so that costs per response tie.
const COSTS_MICROS: [i64; 4] = [0, 10_000, 20_000, 50_000];

/// Attribution windows: inside the anchors' spread, one day, the default week, beyond a month.
const WINDOWS_MS: [u64; 4] = [20, 86_400_000, 7 * 86_400_000, 40 * 86_400_000];

fn at_ms() -> impl Strategy<Value = i64> {
    (0..ANCHORS.len(), 0..=OFFSET_MAX_MS).prop_map(|(anchor, offset)| ms(ANCHORS[anchor]) + offset)
}

fn outcome_at_ms() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => at_ms(),
        2 => (prop::sample::select(OUTCOME_ONLY.to_vec()), 0..=OFFSET_MAX_MS)
            .prop_map(|(text, offset)| ms(text) + offset),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    let user = || 1u64..=4;
    prop_oneof![
        5 => (
            user(),
            prop::sample::select(Channel::ALL.to_vec()),
            prop::sample::select(MESSAGE_TYPES.to_vec()),
            prop::sample::select(COSTS_MICROS.to_vec()),
            at_ms(),
        )
            .prop_map(|(user, channel, message_type, cost_micros, at_ms)| Call::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                at_ms,
            }),
        3 => (any::<Index>(), at_ms()).prop_map(|(message, at_ms)| Call::Delivered { message, at_ms }),
        2 => (any::<Index>(), at_ms()).prop_map(|(message, at_ms)| Call::Opened { message, at_ms }),
        3 => (any::<Index>(), prop::sample::select(ACTIONS.to_vec()), at_ms())
            .prop_map(|(message, action, at_ms)| Call::Action { message, action, at_ms }),
        1 => (any::<Index>(), at_ms()).prop_map(|(message, at_ms)| Call::Failed { message, at_ms }),
        3 => (user(), -5_000_000i64..=50_000_000, outcome_at_ms())
            .prop_map(|(user, amount_micros, at_ms)| Call::Outcome { user, amount_micros, at_ms }),
    ]
}

/// A valid filter; its window edges fall on, or just beside, event times.
fn filter() -> impl Strategy<Value = EffectivenessFilter> {
    let edge = || {
        prop::option::of(
            (0..ANCHORS.len(), -1..=OFFSET_MAX_MS + 1)
                .prop_map(|(anchor, offset)| ms(ANCHORS[anchor]) + offset),
        )
    };
    let message_type = prop_oneof![
        6 => prop::sample::select(MESSAGE_TYPES.to_vec()).prop_map(str::to_string),
        1 => Just("never_sent".to_string()),
        // Interned as an action, never as a message type.
        1 => Just("clicked_link".to_string()),
    ];
    let period = prop::sample::select(vec![Period::Day, Period::Week, Period::Month]);
    (
        prop::option::of(1u64..=5),
        prop::option::of(message_type),
        edge(),
        edge(),
        prop::option::of(period),
    )
        .prop_map(|(user, message_type, start_ms, end_ms, period)| {
            let (start_ms, end_ms) = match (start_ms, end_ms) {
                (Some(start), Some(end)) if start > end => (Some(end), Some(start)),
                pair => pair,
            };
            EffectivenessFilter {
                user: user.map(UserId),
                message_type,
                start: start_ms.map(time),
                end: end_ms.map(time),
                period,
            }
        })
}

// ---------------------------------------------------------------------------------------------
// The model: every message recomputed from its raw reports, every outcome attributed by
// scanning all messages, every number by the rules as written.

#[derive(Debug, Clone)]
enum Report {
    Delivered(i64),
    Opened(i64),
    Action(&'static str, i64),
    Failed,
}

#[derive(Debug, Clone)]
struct ModelMessage {
    id: u64,
    user: u64,
    channel: Channel,
    message_type: &'static str,
    cost_micros: i64,
    sent_ms: i64,
    reports: Vec<Report>,
}

impl ModelMessage {
    fn earliest(&self, pick: impl Fn(&Report) -> Option<i64>) -> Option<i64> {
        self.reports.iter().filter_map(pick).min()
    }

    /// Reported, or implied by an open or any action.
    fn delivered_ms(&self) -> Option<i64> {
        self.earliest(|report| match report {
            Report::Delivered(at) | Report::Opened(at) | Report::Action(_, at) => Some(*at),
            Report::Failed => None,
        })
    }

    /// Reported, or implied by a click.
    fn opened_ms(&self) -> Option<i64> {
        self.earliest(|report| match report {
            Report::Opened(at) => Some(*at),
            Report::Action(name, at) if is_click(name) => Some(*at),
            _ => None,
        })
    }

    fn clicked(&self) -> bool {
        self.reports
            .iter()
            .any(|report| matches!(report, Report::Action(name, _) if is_click(name)))
    }

    fn first_action_ms(&self) -> Option<i64> {
        self.earliest(|report| match report {
            Report::Action(_, at) => Some(*at),
            _ => None,
        })
    }

    fn converted(&self) -> bool {
        self.reports
            .iter()
            .any(|report| matches!(report, Report::Action(name, _) if is_conversion(name)))
    }

    fn first_engagement_ms(&self) -> Option<i64> {
        [self.opened_ms(), self.first_action_ms()]
            .into_iter()
            .flatten()
            .min()
    }
}

#[derive(Debug, Clone)]
struct ModelOutcome {
    user: u64,
    amount_micros: i64,
    at_ms: i64,
}

#[derive(Debug, Default)]
struct Model {
    messages: Vec<ModelMessage>,
    outcomes: Vec<ModelOutcome>,
}

/// Counts and sums of one line, straight from the messages and outcomes.
#[derive(Debug, Default, Clone)]
struct ModelLine {
    sent: u64,
    delivered: u64,
    opened: u64,
    clicked: u64,
    responded: u64,
    converted: u64,
    cost_micros: i64,
    attributed_outcomes: u64,
    attributed_micros: i64,
}

impl ModelLine {
    fn add_message(&mut self, message: &ModelMessage) {
        self.sent += 1;
        self.delivered += u64::from(message.delivered_ms().is_some());
        self.opened += u64::from(message.opened_ms().is_some());
        self.clicked += u64::from(message.clicked());
        self.responded += u64::from(message.first_action_ms().is_some());
        self.converted += u64::from(message.converted());
        self.cost_micros += message.cost_micros;
    }

    fn add_outcome(&mut self, outcome: &ModelOutcome) {
        self.attributed_outcomes += 1;
        self.attributed_micros += outcome.amount_micros;
    }

    fn to_line(&self, channel: Channel, message_type: Option<&str>) -> ChannelLine {
        let rate = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 * 100.0 / whole as f64
            }
        };
        // Costs are never negative: halves away from zero are halves up.
        let quotient = |count: u64| {
            (count > 0).then(|| {
                let count = count as i64;
                Money::from_micros(i128::from((2 * self.cost_micros + count) / (2 * count)))
            })
        };
        let delivery_rate = rate(self.delivered, self.sent);
        let open_rate = rate(self.opened, self.delivered);
        let response_rate = rate(self.responded, self.delivered);
        let conversion_rate = rate(self.converted, self.delivered);
        ChannelLine {
            channel,
            message_type: message_type.map(str::to_string),
            sent: self.sent,
            delivered: self.delivered,
            opened: self.opened,
            clicked: self.clicked,
            responded: self.responded,
            converted: self.converted,
            delivery_rate,
            open_rate,
            click_rate: rate(self.clicked, self.opened),
            response_rate,
            conversion_rate,
            total_cost: Money::from_micros(i128::from(self.cost_micros)),
            cost_per_message: quotient(self.sent),
            cost_per_response: quotient(self.responded),
            cost_per_conversion: quotient(self.converted),
            attributed_outcomes: self.attributed_outcomes,
            attributed_impact: Money::from_micros(i128::from(self.attributed_micros)),
            roi: (self.cost_micros != 0).then(|| {
                (self.attributed_micros - self.cost_micros) as f64 / self.cost_micros as f64
            }),
            performance_score: 0.2 * delivery_rate
                + 0.2 * open_rate
                + 0.3 * response_rate
                + 0.3 * conversion_rate,
        }
    }

    /// The score in percent as an exact fraction: 20·d/s + (20·o + 30·r + 30·c)/d.
    fn score(&self) -> (u128, u128) {
        if self.delivered == 0 {
            return (0, 1);
        }
        let (s, d) = (u128::from(self.sent), u128::from(self.delivered));
        let rest = 20 * u128::from(self.opened)
            + 30 * u128::from(self.responded)
            + 30 * u128::from(self.converted);
        (20 * d * d + rest * s, s * d)
    }
}

fn cross_compare(a: (u128, u128), b: (u128, u128)) -> Ordering {
    (a.0 * b.1).cmp(&(b.0 * a.1))
}

/// Whether `a` beats `b` for a type: a higher exact score, else a lower exact cost per
/// response (none is worst); a full tie keeps `b`.
fn beats(a: &ModelLine, b: &ModelLine) -> bool {
    let cost = |line: &ModelLine| {
        (line.responded > 0).then(|| (line.cost_micros as u128, u128::from(line.responded)))
    };
    match cross_compare(a.score(), b.score()) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => match (cost(a), cost(b)) {
            (Some(a), Some(b)) => cross_compare(a, b) == Ordering::Less,
            (Some(_), None) => true,
            (None, _) => false,
        },
    }
}

/// The period label, computed another way than the store does: by calendar fields.
fn model_period_start(period: Period, at_ms: i64) -> NaiveDate {
    let day = time(at_ms).date_naive();
    match period {
        Period::Day => day,
        Period::Week => {
            let week = day.iso_week();
            NaiveDate::from_isoywd_opt(week.year(), week.week(), chrono::Weekday::Mon).unwrap()
        }
        Period::Month => NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap(),
    }
}

/// Lines, channel totals and winners of one range.
#[derive(Debug, Default)]
struct ModelRange {
    lines: BTreeMap<(Channel, &'static str), ModelLine>,
    channels: BTreeMap<Channel, ModelLine>,
}

impl ModelRange {
    fn add_message(&mut self, message: &ModelMessage) {
        let key = (message.channel, message.message_type);
        self.lines.entry(key).or_default().add_message(message);
        self.channels
            .entry(message.channel)
            .or_default()
            .add_message(message);
    }

    fn add_outcome(&mut self, message: &ModelMessage, outcome: &ModelOutcome) {
        let key = (message.channel, message.message_type);
        self.lines.entry(key).or_default().add_outcome(outcome);
        self.channels
            .entry(message.channel)
            .or_default()
            .add_outcome(outcome);
    }

    fn finish(&self) -> (Vec<ChannelLine>, Vec<ChannelLine>, Vec<ChannelWinner>) {
        let lines = self
            .lines
            .iter()
            .map(|((channel, message_type), line)| line.to_line(*channel, Some(message_type)))
            .collect();
        let channels = self
            .channels
            .iter()
            .map(|(channel, line)| line.to_line(*channel, None))
            .collect();
        let mut winners = Vec::new();
        let message_types: BTreeSet<&'static str> =
            self.lines.keys().map(|(_, name)| *name).collect();
        for message_type in message_types {
            let mut best: Option<(Channel, &ModelLine)> = None;
            for channel in Channel::ALL {
                let Some(line) = self.lines.get(&(channel, message_type)) else {
                    continue;
                };
                if line.sent > 0 && best.is_none_or(|(_, champion)| beats(line, champion)) {
                    best = Some((channel, line));
                }
            }
            if let Some((channel, line)) = best {
                let shown = line.to_line(channel, Some(message_type));
                winners.push(ChannelWinner {
                    message_type: message_type.to_string(),
                    channel,
                    performance_score: shown.performance_score,
                    cost_per_response: shown.cost_per_response,
                });
            }
        }
        (lines, channels, winners)
    }
}

/// What becomes of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Accepted,
    /// Refused by the store: a report more than the clock skew before its message's send.
    Refused,
    /// Not made: a report before the first message.
    Skipped,
}

impl Model {
    /// Applies a call as the store would; calls on messages before the first are skipped.
    fn apply(&mut self, call: &Call) -> Fate {
        let message_count = self.messages.len();
        let report =
            |index: &Index, at_ms: i64, report: &dyn Fn(i64) -> Report, model: &mut Model| {
                if message_count == 0 {
                    return Fate::Skipped;
                }
                let message = &mut model.messages[index.index(message_count)];
                if at_ms < message.sent_ms - CLOCK_SKEW_MS {
                    return Fate::Refused;
                }
                // Within the skew, an earlier time counts as the sent time.
                message.reports.push(report(at_ms.max(message.sent_ms)));
                Fate::Accepted
            };
        match call {
            Call::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                at_ms,
            } => {
                self.messages.push(ModelMessage {
                    id: message_count as u64 + 1,
                    user: *user,
                    channel: *channel,
                    message_type,
                    cost_micros: *cost_micros,
                    sent_ms: *at_ms,
                    reports: Vec::new(),
                });
                Fate::Accepted
            }
            Call::Delivered { message, at_ms } => report(message, *at_ms, &Report::Delivered, self),
            Call::Opened { message, at_ms } => report(message, *at_ms, &Report::Opened, self),
            Call::Action {
                message,
                action,
                at_ms,
            } => report(message, *at_ms, &|at| Report::Action(action, at), self),
            Call::Failed { message, at_ms } => report(message, *at_ms, &|_| Report::Failed, self),
            Call::Outcome {
                user,
                amount_micros,
                at_ms,
            } => {
                self.outcomes.push(ModelOutcome {
                    user: *user,
                    amount_micros: *amount_micros,
                    at_ms: *at_ms,
                });
                Fate::Accepted
            }
            Call::Budget { .. } => unreachable!("the channel test draws no budgets"),
        }
    }

    /// Last touch: the latest first engagement in [outcome − window, outcome], else the latest
    /// delivery in it; ties to the higher id; any of the user's messages.
    fn attribute(&self, outcome: &ModelOutcome, window_ms: i64) -> Option<&ModelMessage> {
        let in_window = |at: i64| outcome.at_ms - window_ms <= at && at <= outcome.at_ms;
        let mine = || self.messages.iter().filter(|m| m.user == outcome.user);
        let latest = |stage: &dyn Fn(&ModelMessage) -> Option<i64>| {
            mine()
                .filter_map(|m| stage(m).filter(|at| in_window(*at)).map(|at| (at, m.id)))
                .max()
        };
        let (_, id) = latest(&ModelMessage::first_engagement_ms)
            .or_else(|| latest(&ModelMessage::delivered_ms))?;
        Some(&self.messages[id as usize - 1])
    }

    fn report(&self, filter: &EffectivenessFilter, window_ms: i64) -> ChannelReport {
        let start = filter.start.map(|t| t.timestamp_millis());
        let end = filter.end.map(|t| t.timestamp_millis());
        let in_range =
            |at: i64| start.is_none_or(|start| start <= at) && end.is_none_or(|end| at <= end);
        let user_matches = |user: u64| filter.user.is_none_or(|wanted| wanted.0 == user);
        let type_matches = |message_type: &str| {
            filter
                .message_type
                .as_deref()
                .is_none_or(|wanted| wanted == message_type)
        };
        let mut overall = ModelRange::default();
        let mut periods: BTreeMap<NaiveDate, ModelRange> = BTreeMap::new();
        for message in &self.messages {
            if user_matches(message.user)
                && type_matches(message.message_type)
                && in_range(message.sent_ms)
            {
                overall.add_message(message);
                if let Some(period) = filter.period {
                    let start = model_period_start(period, message.sent_ms);
                    periods.entry(start).or_default().add_message(message);
                }
            }
        }
        for outcome in &self.outcomes {
            if !user_matches(outcome.user) || !in_range(outcome.at_ms) {
                continue;
            }
            let Some(message) = self.attribute(outcome, window_ms) else {
                continue;
            };
            if type_matches(message.message_type) {
                overall.add_outcome(message, outcome);
                if let Some(period) = filter.period {
                    let start = model_period_start(period, outcome.at_ms);
                    periods
                        .entry(start)
                        .or_default()
                        .add_outcome(message, outcome);
                }
            }
        }
        let (lines, channels, winners) = overall.finish();
        ChannelReport {
            period: filter.period,
            lines,
            channels,
            winners,
            // Every period with a selected message or a counted outcome.
            periods: periods
                .into_iter()
                .map(|(start, range)| {
                    let (lines, channels, winners) = range.finish();
                    ChannelPeriod {
                        start,
                        lines,
                        channels,
                        winners,
                    }
                })
                .collect(),
        }
    }
}

/// Every count and sum of `lines`, added up per (channel, type) line and per channel line.
fn line_sums<'a>(
    lines: impl Iterator<Item = &'a ChannelLine>,
) -> BTreeMap<(Channel, Option<String>), [i128; 9]> {
    let mut sums: BTreeMap<(Channel, Option<String>), [i128; 9]> = BTreeMap::new();
    for line in lines {
        let values = [
            line.sent,
            line.delivered,
            line.opened,
            line.clicked,
            line.responded,
            line.converted,
            line.attributed_outcomes,
        ]
        .map(i128::from);
        let money = [line.total_cost, line.attributed_impact].map(|m| m.micros());
        let sum = sums
            .entry((line.channel, line.message_type.clone()))
            .or_default();
        for (total, value) in sum.iter_mut().zip(values.into_iter().chain(money)) {
            *total += value;
        }
    }
    sums
}

/// The store's report equals the model's for each filter and for everything by week; for each
/// filter by day, week and month, the periods' lines add up exactly to the totals' lines.
fn check_reports(
    store: &Store,
    model: &Model,
    filters: &[EffectivenessFilter],
    window_ms: i64,
    when: &str,
) -> Result<(), TestCaseError> {
    let everything = EffectivenessFilter::new().period(Period::Week);
    for filter in filters.iter().chain([&everything]) {
        let expected = model.report(filter, window_ms);
        prop_assert_eq!(
            store.get_channel_effectiveness(filter).unwrap(),
            expected,
            "{}: {:?}",
            when,
            filter
        );
        for period in [Period::Day, Period::Week, Period::Month] {
            let filter = filter.clone().period(period);
            let report = store.get_channel_effectiveness(&filter).unwrap();
            let totals = line_sums(report.lines.iter().chain(&report.channels));
            let periods = line_sums(
                report
                    .periods
                    .iter()
                    .flat_map(|period| period.lines.iter().chain(&period.channels)),
            );
            prop_assert_eq!(periods, totals, "{}: {:?}", when, filter);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn channel_report_agrees_with_the_model_before_and_after_reopen(
        calls in prop::collection::vec(call(), 0..160),
        filters in prop::collection::vec(filter(), 1..8),
        window_ms in prop::sample::select(WINDOWS_MS.to_vec()),
        check_at in prop::collection::vec(any::<Index>(), 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = options_with_window(Duration::from_millis(window_ms));
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        let window_ms = window_ms as i64;
        let mut model = Model::default();
        // Part-way checks too: the first query builds the indexes, and every later call must
        // keep them current (a later event may move an outcome's credit).
        let check_indexes: Vec<usize> =
            check_at.iter().map(|index| index.index(calls.len() + 1)).collect();
        for (index, call) in calls.iter().enumerate() {
            if check_indexes.contains(&index) {
                check_reports(&store, &model, &filters, window_ms, &format!("before call {index}"))?;
            }
            let message_count = model.messages.len();
            match model.apply(call) {
                Fate::Accepted => {
                    track(&store, call, message_count).unwrap();
                }
                Fate::Refused => {
                    let refused = track(&store, call, message_count);
                    prop_assert!(
                        matches!(refused, Err(Error::InvalidInput { field: "at", .. })),
                        "{:?}: {:?}",
                        call,
                        refused
                    );
                }
                Fate::Skipped => {}
            }
        }
        check_reports(&store, &model, &filters, window_ms, "after the calls")?;
        store.close().unwrap();
        let store = Store::open_with(dir.path(), options).unwrap();
        check_reports(&store, &model, &filters, window_ms, "after reopen")?;
    }
}

// ---------------------------------------------------------------------------------------------
// Edge rules.

/// An open store in a temporary directory (kept alive beside it).
fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    (dir, store)
}

/// Sends one message of user 1 per entry of `reports`, then tracks that entry's reports
/// ("delivered", "opened", or an action name) a minute after `sent_at`.
fn send(
    store: &Store,
    channel: Channel,
    message_type: &str,
    cost: f64,
    sent_at: &str,
    reports: &[&[&str]],
) {
    for actions in reports {
        let message = store
            .track_message_sent_at(1, channel, message_type, cost, at(sent_at))
            .unwrap();
        for action in *actions {
            let later = Some(at(sent_at) + chrono::Duration::minutes(1));
            match *action {
                "delivered" => store.track_message_delivered(message.id, later).map(drop),
                "opened" => store.track_message_opened(message.id, later).map(drop),
                name => store.track_user_action(message.id, name, later).map(drop),
            }
            .unwrap();
        }
    }
}

fn winner_of(report: &ChannelReport, message_type: &str) -> Channel {
    report
        .winners
        .iter()
        .find(|winner| winner.message_type == message_type)
        .unwrap()
        .channel
}

fn line<'a>(report: &'a ChannelReport, channel: Channel, message_type: &str) -> &'a ChannelLine {
    report
        .lines
        .iter()
        .find(|line| line.channel == channel && line.message_type.as_deref() == Some(message_type))
        .unwrap()
}

const SENT: &str = "2025-01-06T09:00:00Z";

#[test]
fn scores_equal_as_fractions_tie_even_where_floats_differ_and_the_cheaper_response_wins() {
    let (_dir, store) = store();
    // sms: 1 sent, delivered, responded: 0.2·100 + 0.3·100 = 50 exactly.
    send(
        &store,
        Channel::Sms,
        "low_balance",
        0.10,
        SENT,
        &[&["viewed_forecast"]],
    );
    // email: 7 sent and delivered, 4 responded, 3 of them converted: 20 + 0.3·400/7 + 0.3·300/7
    // = 50 exactly, which the float sum makes 49.99999999999999.
    let mut email: Vec<&[&str]> = vec![&["upgrade_plan"]; 3];
    email.push(&["viewed_forecast"]);
    email.extend([&["delivered"][..]; 3]);
    send(&store, Channel::Email, "low_balance", 0.01, SENT, &email);

    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    let sms = line(&report, Channel::Sms, "low_balance");
    let email = line(&report, Channel::Email, "low_balance");
    assert_eq!(sms.performance_score, 50.0);
    assert!(
        email.performance_score < sms.performance_score,
        "floats would rank sms first"
    );
    // Equal exact scores: the lower cost per response ($0.0175 against $0.10) wins.
    assert_eq!(email.cost_per_response, Some(Money::from_micros(17_500)));
    assert_eq!(winner_of(&report, "low_balance"), Channel::Email);
}

#[test]
fn a_full_tie_goes_to_the_channel_order() {
    let (_dir, store) = store();
    // The same counts and costs on every channel, sent in reverse channel order.
    for channel in Channel::ALL.into_iter().rev() {
        send(
            &store,
            channel,
            "bill_due",
            0.0,
            SENT,
            &[&["clicked_link"], &[]],
        );
    }
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    assert_eq!(winner_of(&report, "bill_due"), Channel::Sms);
    // Without sms and email, push comes before in_app.
    let (_dir, store) = self::store();
    for channel in [Channel::InApp, Channel::Push] {
        send(&store, channel, "bill_due", 0.0, SENT, &[&["clicked_link"]]);
    }
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    assert_eq!(winner_of(&report, "bill_due"), Channel::Push);
}

#[test]
fn on_equal_scores_a_channel_with_responses_beats_one_without() {
    let (_dir, store) = store();
    // sms: delivered and opened, no action: 20 + 20 = 40, no cost per response.
    send(
        &store,
        Channel::Sms,
        "low_balance",
        0.0,
        SENT,
        &[&["opened"]],
    );
    // email: 3 delivered, 2 responded: 20 + 0.3·200/3 = 40, at a cost.
    send(
        &store,
        Channel::Email,
        "low_balance",
        1.0,
        SENT,
        &[&["viewed_forecast"], &["viewed_forecast"], &["delivered"]],
    );
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    assert_eq!(
        line(&report, Channel::Sms, "low_balance").cost_per_response,
        None
    );
    assert_eq!(winner_of(&report, "low_balance"), Channel::Email);
}

#[test]
fn a_higher_score_wins_whatever_it_costs() {
    let (_dir, store) = store();
    send(
        &store,
        Channel::Push,
        "low_balance",
        0.0,
        SENT,
        &[&["delivered"]],
    );
    send(
        &store,
        Channel::Sms,
        "low_balance",
        5.0,
        SENT,
        &[&["viewed_forecast"]],
    );
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    assert_eq!(winner_of(&report, "low_balance"), Channel::Sms);
    assert_eq!(report.winners.len(), 1);
}

#[test]
fn periods_split_at_midnight_monday_and_the_first_and_are_labelled_by_their_first_date() {
    let (_dir, store) = store();
    // Sunday's last millisecond, Monday's first; Monday 31 March's last, Tuesday 1 April's first.
    for sent_at in [
        "2025-03-02T23:59:59.999Z",
        "2025-03-03T00:00:00Z",
        "2025-03-31T23:59:59.999Z",
        "2025-04-01T00:00:00Z",
    ] {
        send(&store, Channel::Sms, "low_balance", 0.05, sent_at, &[&[]]);
    }
    let starts = |period: Period| -> Vec<(NaiveDate, u64)> {
        let filter = EffectivenessFilter::new().period(period);
        let report = store.get_channel_effectiveness(&filter).unwrap();
        assert_eq!(report.period, Some(period));
        report
            .periods
            .iter()
            .map(|p| (p.start, p.channels.iter().map(|c| c.sent).sum()))
            .collect()
    };
    let day = [
        (date("2025-03-02"), 1),
        (date("2025-03-03"), 1),
        (date("2025-03-31"), 1),
        (date("2025-04-01"), 1),
    ];
    assert_eq!(starts(Period::Day), day);
    // Only weeks with a message appear: none for 10, 17 and 24 March.
    let week = [
        (date("2025-02-24"), 1),
        (date("2025-03-03"), 1),
        (date("2025-03-31"), 2),
    ];
    assert_eq!(starts(Period::Week), week);
    assert_eq!(
        starts(Period::Month),
        [(date("2025-03-01"), 3), (date("2025-04-01"), 1)]
    );
    let plain = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    assert!(plain.periods.is_empty());
    assert_eq!(plain.period, None);
}

#[test]
fn a_query_window_inside_an_hour_selects_to_the_millisecond() {
    let (_dir, store) = store();
    for sent_at in [
        "2025-01-06T10:19:59.999Z",
        "2025-01-06T10:20:00Z",
        "2025-01-06T10:35:00Z",
        "2025-01-06T10:50:00Z",
        "2025-01-06T10:50:00.001Z",
    ] {
        send(
            &store,
            Channel::Email,
            "low_balance",
            0.001,
            sent_at,
            &[&[]],
        );
    }
    let filter = EffectivenessFilter::new()
        .start(at("2025-01-06T10:20:00Z"))
        .end(at("2025-01-06T10:50:00Z"));
    let report = store.get_channel_effectiveness(&filter).unwrap();
    assert_eq!(line(&report, Channel::Email, "low_balance").sent, 3);
    assert_eq!(report.channels[0].total_cost, Money::from_micros(3_000));
}

#[test]
fn zero_denominators_give_zero_rates_no_quotients_and_no_roi_at_zero_cost() {
    let (_dir, store) = store();
    send(&store, Channel::Push, "low_balance", 0.0, SENT, &[&[]]);
    send(&store, Channel::Sms, "low_balance", 0.05, SENT, &[&[]]);
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    let push = line(&report, Channel::Push, "low_balance");
    assert_eq!(
        (
            push.delivery_rate,
            push.open_rate,
            push.click_rate,
            push.response_rate,
            push.conversion_rate
        ),
        (0.0, 0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(push.performance_score, 0.0);
    assert_eq!(push.cost_per_message, Some(Money::ZERO));
    assert_eq!(
        (push.cost_per_response, push.cost_per_conversion),
        (None, None)
    );
    assert_eq!(push.roi, None);
    // Spent and nothing credited: ROI −100 %.
    let sms = line(&report, Channel::Sms, "low_balance");
    assert_eq!(sms.roi, Some(-1.0));
    assert_eq!(sms.cost_per_message, Some(Money::from_micros(50_000)));
}

#[test]
fn an_action_containing_upgrade_is_a_conversion_and_a_response() {
    let (_dir, store) = store();
    send(
        &store,
        Channel::Email,
        "upgrade_offer",
        0.001,
        SENT,
        &[
            &["upgrade_plan"],
            &["clicked_upgrade_banner"],
            &["viewed_forecast", "viewed_forecast"],
            &["opened"],
        ],
    );
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    let email = line(&report, Channel::Email, "upgrade_offer");
    assert_eq!(
        (
            email.sent,
            email.delivered,
            email.opened,
            email.clicked,
            email.responded,
            email.converted
        ),
        (4, 4, 2, 1, 3, 2)
    );
    assert_eq!(email.conversion_rate, 50.0);
    assert_eq!(email.click_rate, 50.0);
    assert_eq!(email.response_rate, 75.0);
    // 4,000 micros ÷ 3 rounds to 1,333; ÷ 2 is 2,000.
    assert_eq!(email.cost_per_response, Some(Money::from_micros(1_333)));
    assert_eq!(email.cost_per_conversion, Some(Money::from_micros(2_000)));
    assert_eq!(
        email.performance_score,
        0.2 * 100.0 + 0.2 * 50.0 + 0.3 * 75.0 + 0.3 * 50.0
    );
}

#[test]
fn outcomes_count_by_their_time_and_go_to_the_line_of_the_message_they_are_attributed_to() {
    let (_dir, store) = store();
    // Engaged with on 6 January at 09:01; the default window is 7 days, inclusive.
    send(
        &store,
        Channel::Sms,
        "low_balance",
        0.5,
        SENT,
        &[&["viewed_forecast"]],
    );
    // A later delivered-only email: the engaged sms still takes the credit.
    send(
        &store,
        Channel::Email,
        "bill_due",
        0.001,
        "2025-01-07T09:00:00Z",
        &[&["delivered"]],
    );
    let outcome = |amount: f64, text: &str| {
        store
            .track_financial_outcome_at(1, "bill_paid_on_time", amount, at(text))
            .unwrap();
    };
    outcome(10.0, "2025-01-13T09:01:00Z"); // exactly 7 days after the engagement: to sms
    outcome(20.0, "2025-01-14T09:00:00Z"); // only the email's delivery is within 7 days
    outcome(40.0, "2025-01-14T09:01:00.001Z"); // 7 days and 1 ms after it: unattributed

    let all = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    let sms = line(&all, Channel::Sms, "low_balance");
    assert_eq!(
        (sms.attributed_outcomes, sms.attributed_impact),
        (1, Money::from_micros(10_000_000))
    );
    assert_eq!(sms.roi, Some(19.0));
    let email = line(&all, Channel::Email, "bill_due");
    assert_eq!(
        (email.attributed_outcomes, email.attributed_impact),
        (1, Money::from_micros(20_000_000))
    );

    // From 8 January: no message is sent in range, yet the outcomes of 13 and 14 January are
    // credited to the messages sent before; their lines appear with nothing sent and win nothing.
    let later = EffectivenessFilter::new().start(at("2025-01-08T00:00:00Z"));
    let report = store.get_channel_effectiveness(&later).unwrap();
    let email = line(&report, Channel::Email, "bill_due");
    assert_eq!((email.sent, email.attributed_outcomes), (0, 1));
    assert_eq!(email.roi, None);
    assert!(report.winners.is_empty());
    // With a period, an outcome counts in its own period, which appears without a message: the
    // week of 13 January holds both credited outcomes, so the periods add up to the totals.
    let weekly = store
        .get_channel_effectiveness(&later.clone().period(Period::Week))
        .unwrap();
    assert_eq!(weekly.periods.len(), 1);
    let week = &weekly.periods[0];
    assert_eq!(week.start, date("2025-01-13"));
    assert_eq!(
        (week.lines.clone(), week.channels.clone()),
        (report.lines.clone(), report.channels.clone())
    );
    assert!(week.winners.is_empty());

    // A type filter keeps the outcomes credited to a message of that type; it never moves the
    // credit to another message.
    let bill_due = EffectivenessFilter::new().message_type("bill_due");
    let report = store.get_channel_effectiveness(&bill_due).unwrap();
    assert_eq!(report.lines.len(), 1);
    assert_eq!(
        report.lines[0].attributed_impact,
        Money::from_micros(20_000_000)
    );
    // An end before an outcome leaves it out.
    let early = EffectivenessFilter::new().end(at("2025-01-13T09:00:59.999Z"));
    let report = store.get_channel_effectiveness(&early).unwrap();
    assert!(
        report
            .lines
            .iter()
            .all(|line| line.attributed_outcomes == 0)
    );
}

#[test]
fn a_late_event_moves_the_credit() {
    let (_dir, store) = store();
    send(
        &store,
        Channel::Sms,
        "low_balance",
        0.05,
        SENT,
        &[&["delivered"]],
    );
    send(
        &store,
        Channel::Email,
        "low_balance",
        0.001,
        SENT,
        &[&["delivered"]],
    );
    store
        .track_financial_outcome_at(1, "bill_paid_on_time", 5.0, at("2025-01-07T09:00:00Z"))
        .unwrap();
    let credited = |store: &Store| -> Vec<(Channel, u64)> {
        let report = store
            .get_channel_effectiveness(&EffectivenessFilter::new())
            .unwrap();
        report
            .channels
            .iter()
            .map(|c| (c.channel, c.attributed_outcomes))
            .collect()
    };
    // Equal delivery times: the higher id, the email.
    assert_eq!(credited(&store), [(Channel::Sms, 0), (Channel::Email, 1)]);
    // An open reported later makes the sms the engaged message.
    store
        .track_message_opened(1, Some(at("2025-01-06T12:00:00Z")))
        .unwrap();
    assert_eq!(credited(&store), [(Channel::Sms, 1), (Channel::Email, 0)]);
}

#[test]
fn a_per_user_report_sees_only_that_users_messages_and_outcomes() {
    let (_dir, store) = store();
    for user in [1u64, 2] {
        let message = store
            .track_message_sent_at(user, Channel::Sms, "low_balance", 0.05, at(SENT))
            .unwrap();
        store
            .track_message_delivered(message.id, Some(at(SENT)))
            .unwrap();
        store
            .track_financial_outcome_at(user, "bill_paid_on_time", user as f64, at(SENT))
            .unwrap();
    }
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new().user(2))
        .unwrap();
    let sms = line(&report, Channel::Sms, "low_balance");
    assert_eq!(
        (sms.sent, sms.attributed_impact),
        (1, Money::from_micros(2_000_000))
    );
    let nobody = store
        .get_channel_effectiveness(&EffectivenessFilter::new().user(9))
        .unwrap();
    assert_eq!(nobody, ChannelReport::default());
}

#[test]
fn a_type_never_tracked_gives_an_empty_report() {
    let (_dir, store) = store();
    send(
        &store,
        Channel::Sms,
        "low_balance",
        0.05,
        SENT,
        &[&["clicked_link"]],
    );
    for name in ["never_sent", "clicked_link"] {
        let filter = EffectivenessFilter::new()
            .message_type(name)
            .period(Period::Day);
        let report = store.get_channel_effectiveness(&filter).unwrap();
        assert_eq!(
            report,
            ChannelReport {
                period: Some(Period::Day),
                ..ChannelReport::default()
            }
        );
    }
}

#[test]
fn bad_filters_are_refused_with_the_field_named() {
    let (_dir, store) = store();
    let refused = |filter: EffectivenessFilter| match store.get_channel_effectiveness(&filter) {
        Err(Error::InvalidInput { field, .. }) => field,
        other => panic!("{filter:?} gave {other:?}"),
    };
    assert_eq!(refused(EffectivenessFilter::new().user(0)), "user_id");
    assert_eq!(
        refused(EffectivenessFilter::new().message_type("Low Balance")),
        "message_type"
    );
    let reversed = EffectivenessFilter::new()
        .start(at("2025-01-02T00:00:00Z"))
        .end(at("2025-01-01T00:00:00Z"));
    assert_eq!(refused(reversed), "end");
}

#[test]
fn an_attributed_impact_beyond_64_bit_micros_is_exact() {
    let (_dir, store) = store();
    send(
        &store,
        Channel::Sms,
        "low_balance",
        0.05,
        SENT,
        &[&["viewed_forecast"]],
    );
    for _ in 0..2 {
        store
            .track_financial_outcome_at(1, "bill_paid_on_time", 9e12, at("2025-01-06T10:00:00Z"))
            .unwrap();
    }
    let report = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    let twice = Money::from_micros(18_000_000_000_000_000_000);
    assert_eq!(report.lines[0].attributed_impact, twice);
    assert_eq!(report.channels[0].attributed_impact, twice);
    assert_eq!(report.lines[0].roi, Some((18e18 - 50_000.0) / 50_000.0));
}

#[test]
fn each_channels_credited_impact_cost_and_roi_equal_the_impact_views() {
    use commlog::ImpactFilter;
    use commlog::workload::{Generator, Spec};
    let (_dir, store) = store();
    let spec = Spec {
        seed: 7,
        users: 50,
        messages: 3_000,
    };
    for call in Generator::calls(spec) {
        commlog::workload::apply(&store, &call).unwrap();
    }
    let all = store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .unwrap();
    let middle = all.lines.len() / 2;
    // Two days up to one of user 7's messages: credited messages sent before the range count.
    let end = store.get_user_communication_history(7, 1).unwrap()[0].sent_at;
    let start = end - chrono::Duration::days(2);
    let filters = [
        (EffectivenessFilter::new(), ImpactFilter::new()),
        (
            EffectivenessFilter::new().user(7),
            ImpactFilter::new().user(7),
        ),
        (
            EffectivenessFilter::new()
                .message_type(all.lines[middle].message_type.clone().unwrap()),
            ImpactFilter::new().message_type(all.lines[middle].message_type.clone().unwrap()),
        ),
        (
            EffectivenessFilter::new().start(start).end(end),
            ImpactFilter::new().start(start).end(end),
        ),
    ];
    for (filter, impact_filter) in filters {
        let report = store.get_channel_effectiveness(&filter).unwrap();
        let impact = store.get_financial_impact(&impact_filter).unwrap();
        assert!(!report.channels.is_empty());
        for channel in &report.channels {
            let other = impact
                .by_channel
                .iter()
                .find(|row| row.channel == channel.channel)
                .unwrap();
            assert_eq!(
                channel.attributed_outcomes, other.attributed.count,
                "{filter:?}"
            );
            assert_eq!(
                channel.attributed_impact, other.attributed.amount,
                "{filter:?}"
            );
            assert_eq!(channel.total_cost, other.cost, "{filter:?}");
            assert_eq!(channel.roi, other.roi, "{filter:?}");
        }
    }
}
