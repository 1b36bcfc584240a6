//! The financial-impact view (docs/SEMANTICS.md, "Financial impact"): a model test —
//! random calls go to a store and to a brute-force model of the documented rules, computed from
//! the raw calls alone; the reports agree, also after close and reopen — then one test per edge
//! rule. The `impact` command: cli/tests/impact.rs.

mod support;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use commlog::{
    AttributedImpact, AttributionLevel, Channel, ChannelImpact, Error, ImpactFilter, ImpactReport,
    ImpactTotal, Message, Money, Options, Store, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::model::{CLOCK_SKEW_MS, ReportKind, delivered_ms, engaged_ms};

const DAY_MS: i64 = 86_400_000;
// Reports on an earlier day are refused as more than the clock skew early; reports a
// millisecond early count as sent.

/// 2025-01-01T00:00:00Z.
fn base_ms() -> i64 {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// `days` days and `ms` milliseconds after the base time.
fn at(days: i64, ms: i64) -> DateTime<Utc> {
    time(base_ms() + days * DAY_MS + ms)
}

fn options(window: Option<Duration>) -> Options {
    let mut options = support::store::options();
    if let Some(window) = window {
        options.attribution_window = window;
    }
    options
}

const MESSAGE_TYPES: [&str; 3] = ["low_balance", "weekly_checkin", "bill_due"];
const ACTIONS: [&str; 3] = ["viewed_forecast", "clicked_link", "upgrade_plan"];
const OUTCOMES: [&str; 3] = ["bill_paid_on_time", "overdraft", "savings_goal_achieved"];

// ---------------------------------------------------------------------------------------------
// Calls and their strategies.

#[derive(Debug, Clone)]
enum Call {
    Sent {
        user: u64,
        channel: Channel,
        message_type: &'static str,
        cost_micros: i64,
        at_ms: i64,
    },
    /// A report about one of the messages sent so far (skipped while there is none).
    Report {
        kind: ReportKind,
        message: Index,
        name: &'static str,
        at_ms: i64,
    },
    Outcome {
        user: u64,
        outcome: &'static str,
        amount_micros: i64,
        at_ms: i64,
    },
}

/// Whole days after the base time, often exactly on the day and now and then a millisecond
/// beside it: with 7-day (and 1- and 3-day) windows, many events fall exactly on a window's
/// edge, just inside or just outside it, and many share a time.
fn at_ms() -> impl Strategy<Value = i64> {
    (
        0i64..=14,
        prop_oneof![6 => Just(0i64), 1 => Just(-1i64), 1 => Just(1i64)],
    )
        .prop_map(|(days, offset)| base_ms() + days * DAY_MS + offset)
}

fn user() -> impl Strategy<Value = u64> {
    1u64..=3
}

fn call() -> impl Strategy<Value = Call> {
    let cost = prop_oneof![2 => Just(0i64), 3 => 1i64..=2_000_000];
    let report_kind = prop::sample::select(vec![
        ReportKind::Delivered,
        ReportKind::Opened,
        ReportKind::Action,
        ReportKind::Failed,
    ]);
    prop_oneof![
        5 => (user(), prop::sample::select(Channel::ALL.to_vec()), prop::sample::select(MESSAGE_TYPES.to_vec()), cost, at_ms())
            .prop_map(|(user, channel, message_type, cost_micros, at_ms)| Call::Sent {
                user, channel, message_type, cost_micros, at_ms,
            }),
        8 => (report_kind, any::<Index>(), prop::sample::select(ACTIONS.to_vec()), at_ms())
            .prop_map(|(kind, message, name, at_ms)| Call::Report { kind, message, name, at_ms }),
        4 => (user(), prop::sample::select(OUTCOMES.to_vec()), -50_000_000i64..=50_000_000, at_ms())
            .prop_map(|(user, outcome, amount_micros, at_ms)| Call::Outcome {
                user, outcome, amount_micros, at_ms,
            }),
    ]
}

/// The attribution window: the default (7 days), or another.
fn window() -> impl Strategy<Value = Option<Duration>> {
    prop::sample::select(vec![
        None,
        None,
        Some(Duration::ZERO),
        Some(Duration::from_secs(24 * 3600)),
        Some(Duration::from_secs(3 * 24 * 3600)),
        Some(Duration::from_secs(7 * 24 * 3600)),
    ])
}

#[derive(Debug, Clone)]
struct FilterSpec {
    user: Option<u64>,
    message_type: Option<&'static str>,
    channel: Option<Channel>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
}

/// A [`FilterSpec`]'s parts as the strategies draw them: user, type, channel, start, end.
type FilterParts = (
    Option<u64>,
    Option<&'static str>,
    Option<Channel>,
    Option<i64>,
    Option<i64>,
);

impl FilterSpec {
    const ALL: FilterSpec = FilterSpec {
        user: None,
        message_type: None,
        channel: None,
        start_ms: None,
        end_ms: None,
    };

    /// A filter of these parts, its two ends (if both) in order.
    fn with_ends_in_order(
        (user, message_type, channel, start_ms, end_ms): FilterParts,
    ) -> FilterSpec {
        let (start_ms, end_ms) = match (start_ms, end_ms) {
            (Some(start), Some(end)) if start > end => (Some(end), Some(start)),
            edges => edges,
        };
        FilterSpec {
            user,
            message_type,
            channel,
            start_ms,
            end_ms,
        }
    }

    fn to_filter(&self) -> ImpactFilter {
        let mut filter = ImpactFilter::new();
        if let Some(user) = self.user {
            filter = filter.user(user);
        }
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

fn filter_spec() -> impl Strategy<Value = FilterSpec> {
    let message_type = prop_oneof![
        6 => prop::sample::select(MESSAGE_TYPES.to_vec()),
        1 => Just("never_sent"),
    ];
    (
        prop::option::of(1u64..=4),
        prop::option::weighted(0.3, message_type),
        prop::option::weighted(0.3, prop::sample::select(Channel::ALL.to_vec())),
        prop::option::of(at_ms()),
        prop::option::of(at_ms()),
    )
        .prop_map(FilterSpec::with_ends_in_order)
}

// ---------------------------------------------------------------------------------------------
// The model: the raw calls, and the report recomputed from them by the rules as written.

#[derive(Debug, Clone)]
struct ModelMessage {
    id: u64,
    user: u64,
    channel: Channel,
    message_type: &'static str,
    cost_micros: i64,
    sent_ms: i64,
    reports: Vec<(ReportKind, i64)>,
}

impl ModelMessage {
    fn delivered_ms(&self) -> Option<i64> {
        delivered_ms(self.reports.iter().copied())
    }

    fn first_engagement_ms(&self) -> Option<i64> {
        engaged_ms(self.reports.iter().copied())
    }
}

#[derive(Debug, Clone)]
struct ModelOutcome {
    user: u64,
    outcome: &'static str,
    amount_micros: i64,
    at_ms: i64,
}

#[derive(Debug, Default)]
struct Model {
    messages: Vec<ModelMessage>,
    outcomes: Vec<ModelOutcome>,
}

/// A running count and sum.
#[derive(Debug, Clone, Copy, Default)]
struct Sum(u64, i128);

impl Sum {
    fn add(&mut self, micros: i64) {
        self.0 += 1;
        self.1 += i128::from(micros);
    }

    fn total(self) -> ImpactTotal {
        ImpactTotal {
            count: self.0,
            amount: Money::from_micros(self.1),
        }
    }
}

/// Engaged and delivered sums.
#[derive(Debug, Clone, Copy, Default)]
struct LevelSums(Sum, Sum);

impl LevelSums {
    fn add(&mut self, level: AttributionLevel, micros: i64) {
        match level {
            AttributionLevel::Engaged => self.0.add(micros),
            AttributionLevel::Delivered => self.1.add(micros),
        }
    }

    fn impact(self) -> AttributedImpact {
        let both = Sum(self.0.0 + self.1.0, self.0.1 + self.1.1);
        AttributedImpact {
            count: both.0,
            amount: both.total().amount,
            engaged: self.0.total(),
            delivered: self.1.total(),
        }
    }
}

impl Model {
    fn apply(&mut self, store: &Store, call: &Call) {
        match call {
            Call::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                at_ms,
            } => {
                let cost = *cost_micros as f64 / 1e6;
                let message = store
                    .track_message_sent_at(*user, *channel, message_type, cost, time(*at_ms))
                    .unwrap();
                let id = self.messages.len() as u64 + 1;
                assert_eq!(message.id.0, id, "ids are dense from 1");
                assert_eq!(message.cost.micros(), i128::from(*cost_micros));
                self.messages.push(ModelMessage {
                    id,
                    user: *user,
                    channel: *channel,
                    message_type,
                    cost_micros: *cost_micros,
                    sent_ms: *at_ms,
                    reports: Vec::new(),
                });
            }
            Call::Report {
                kind,
                message,
                name,
                at_ms,
            } => {
                if self.messages.is_empty() {
                    return;
                }
                let index = message.index(self.messages.len());
                let id = index as u64 + 1;
                let at = Some(time(*at_ms));
                let result = match kind {
                    ReportKind::Delivered => store.track_message_delivered(id, at),
                    ReportKind::Opened => store.track_message_opened(id, at),
                    ReportKind::Action => store.track_user_action(id, name, at),
                    ReportKind::Failed => store.track_message_failed(id, "bounced", at),
                };
                let sent_ms = self.messages[index].sent_ms;
                if *at_ms < sent_ms - CLOCK_SKEW_MS {
                    assert!(
                        matches!(result, Err(Error::InvalidInput { field: "at", .. })),
                        "{call:?}: {result:?}"
                    );
                    return;
                }
                result.unwrap();
                // Within the skew, an earlier time counts as the sent time.
                self.messages[index]
                    .reports
                    .push((*kind, (*at_ms).max(sent_ms)));
            }
            Call::Outcome {
                user,
                outcome,
                amount_micros,
                at_ms,
            } => {
                let amount = *amount_micros as f64 / 1e6;
                store
                    .track_financial_outcome_at(*user, outcome, amount, time(*at_ms))
                    .unwrap();
                self.outcomes.push(ModelOutcome {
                    user: *user,
                    outcome,
                    amount_micros: *amount_micros,
                    at_ms: *at_ms,
                });
            }
        }
    }

    /// Last touch: among all the user's messages, the latest first engagement in
    /// [outcome − window, outcome], else the latest delivery in it; ties to the higher id.
    fn attribute(
        &self,
        outcome: &ModelOutcome,
        window_ms: i64,
    ) -> Option<(AttributionLevel, &ModelMessage)> {
        let in_window = |at_ms: i64| outcome.at_ms - window_ms <= at_ms && at_ms <= outcome.at_ms;
        let latest = |time_of: fn(&ModelMessage) -> Option<i64>| {
            self.messages
                .iter()
                .filter(|message| message.user == outcome.user)
                .filter_map(|message| {
                    let at_ms = time_of(message).filter(|at_ms| in_window(*at_ms))?;
                    Some((at_ms, message.id))
                })
                .max()
                .map(|(_, id)| &self.messages[id as usize - 1])
        };
        match latest(ModelMessage::first_engagement_ms) {
            Some(message) => Some((AttributionLevel::Engaged, message)),
            None => latest(ModelMessage::delivered_ms)
                .map(|message| (AttributionLevel::Delivered, message)),
        }
    }

    fn report(&self, spec: &FilterSpec, window_ms: i64) -> ImpactReport {
        let start_ms = spec.start_ms.unwrap_or(i64::MIN);
        let end_ms = spec.end_ms.unwrap_or(i64::MAX);
        let matches = |message: &ModelMessage| {
            spec.message_type
                .is_none_or(|name| name == message.message_type)
                && spec
                    .channel
                    .is_none_or(|channel| channel == message.channel)
        };
        let mut all = Sum::default();
        let mut by_outcome = std::collections::BTreeMap::<String, Sum>::new();
        let mut attributed = LevelSums::default();
        let mut unattributed = Sum::default();
        let mut by_channel = std::collections::BTreeMap::<Channel, LevelSums>::new();
        let mut by_type = std::collections::BTreeMap::<String, LevelSums>::new();
        let (mut gap_count, mut gap_ms) = (0u64, 0i128);
        for outcome in &self.outcomes {
            if spec.user.is_some_and(|user| user != outcome.user)
                || outcome.at_ms < start_ms
                || outcome.at_ms > end_ms
            {
                continue;
            }
            let credited = self.attribute(outcome, window_ms);
            let filtered = spec.message_type.is_some() || spec.channel.is_some();
            if filtered && !credited.is_some_and(|(_, message)| matches(message)) {
                continue;
            }
            let micros = outcome.amount_micros;
            all.add(micros);
            by_outcome
                .entry(outcome.outcome.to_string())
                .or_default()
                .add(micros);
            match credited {
                Some((level, message)) => {
                    attributed.add(level, micros);
                    by_channel
                        .entry(message.channel)
                        .or_default()
                        .add(level, micros);
                    by_type
                        .entry(message.message_type.to_string())
                        .or_default()
                        .add(level, micros);
                }
                None => unattributed.add(micros),
            }
            let last_sent_ms = self
                .messages
                .iter()
                .filter(|message| message.user == outcome.user && message.sent_ms <= outcome.at_ms)
                .map(|message| message.sent_ms)
                .max();
            if let Some(sent_ms) = last_sent_ms {
                gap_count += 1;
                gap_ms += i128::from(outcome.at_ms - sent_ms);
            }
        }
        let channels = Channel::ALL
            .into_iter()
            .filter(|channel| spec.channel.is_none_or(|only| only == *channel))
            .map(|channel| {
                let cost_micros: i128 = self
                    .messages
                    .iter()
                    .filter(|message| {
                        message.channel == channel
                            && matches(message)
                            && spec.user.is_none_or(|user| user == message.user)
                            && start_ms <= message.sent_ms
                            && message.sent_ms <= end_ms
                    })
                    .map(|message| i128::from(message.cost_micros))
                    .sum();
                let credited = by_channel.get(&channel).copied().unwrap_or_default();
                let impact_micros = credited.0.1 + credited.1.1;
                ChannelImpact {
                    channel,
                    attributed: credited.impact(),
                    cost: Money::from_micros(cost_micros),
                    roi: (cost_micros > 0)
                        .then(|| (impact_micros - cost_micros) as f64 / cost_micros as f64),
                }
            })
            .collect();
        ImpactReport {
            outcomes: all.total(),
            by_outcome: by_outcome
                .into_iter()
                .map(|(name, sum)| (name, sum.total()))
                .collect(),
            attributed: attributed.impact(),
            unattributed: unattributed.total(),
            by_channel: channels,
            by_message_type: by_type
                .into_iter()
                .map(|(name, sums)| (name, sums.impact()))
                .collect(),
            outcomes_after_communication: gap_count,
            mean_days_since_last_communication: (gap_count > 0)
                .then(|| gap_ms as f64 / gap_count as f64 / DAY_MS as f64),
        }
    }
}

fn window_ms(window: Option<Duration>) -> i64 {
    window.map_or(7 * DAY_MS, |window| window.as_millis() as i64)
}

fn check_reports(
    store: &Store,
    model: &Model,
    filters: &[FilterSpec],
    window: Option<Duration>,
    when: &str,
) -> Result<(), TestCaseError> {
    for spec in filters.iter().chain([&FilterSpec::ALL]) {
        prop_assert_eq!(
            store.get_financial_impact(&spec.to_filter()).unwrap(),
            model.report(spec, window_ms(window)),
            "{}: {:?}",
            when,
            spec
        );
    }
    Ok(())
}

/// Makes `calls` on `store` and `model`, checking the reports before each call at
/// `check_indexes` and after the last.
fn apply_checking(
    store: &Store,
    model: &mut Model,
    calls: &[Call],
    check_indexes: &[usize],
    filters: &[FilterSpec],
    window: Option<Duration>,
) -> Result<(), TestCaseError> {
    for (index, call) in calls.iter().enumerate() {
        if check_indexes.contains(&index) {
            check_reports(
                store,
                model,
                filters,
                window,
                &format!("before call {index}"),
            )?;
        }
        model.apply(store, call);
    }
    check_reports(store, model, filters, window, "after the calls")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn impact_report_equals_a_brute_force_model_also_after_reopen(
        window in window(),
        calls in prop::collection::vec(call(), 0..150),
        filters in prop::collection::vec(filter_spec(), 1..8),
        check_at in prop::collection::vec(any::<Index>(), 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), options(window)).unwrap();
        let mut model = Model::default();
        // Part-way checks too: a later report may re-attribute an outcome checked before it.
        let check_indexes: Vec<usize> =
            check_at.iter().map(|index| index.index(calls.len() + 1)).collect();
        apply_checking(&store, &mut model, &calls, &check_indexes, &filters, window)?;
        store.close().unwrap();
        let store = Store::open_with(dir.path(), options(window)).unwrap();
        check_reports(&store, &model, &filters, window, "after reopen")?;
        drop(store);
        let store = Store::open_read_only_with(dir.path(), options(window)).unwrap();
        check_reports(&store, &model, &filters, window, "read-only")?;
    }
}

/// The first half hour of day 3: three slices of the time index.
const BUSY_SPAN_MS: i64 = 1_800_000;
/// The first ten minutes of day 3: one slice of the time index.
const DENSE_SPAN_MS: i64 = 600_000;

/// A time in the first `span_ms` of day 3, at any millisecond.
fn busy_at_ms(span_ms: i64) -> impl Strategy<Value = i64> {
    (0..span_ms).prop_map(|ms| base_ms() + 3 * DAY_MS + ms)
}

/// Calls packed into the first `span_ms` of day 3, with every outcome name, channel and type:
/// outcomes under more keys in one bucket than a bucket takes before it also sums them by
/// credit and by name.
fn busy_call(span_ms: i64) -> impl Strategy<Value = Call> {
    let busy_at_ms = move || busy_at_ms(span_ms);
    let report_kind = prop::sample::select(vec![
        ReportKind::Delivered,
        ReportKind::Opened,
        ReportKind::Action,
    ]);
    prop_oneof![
        5 => (user(), prop::sample::select(Channel::ALL.to_vec()), prop::sample::select(MESSAGE_TYPES.to_vec()), 0i64..=2_000_000, busy_at_ms())
            .prop_map(|(user, channel, message_type, cost_micros, at_ms)| Call::Sent {
                user, channel, message_type, cost_micros, at_ms,
            }),
        6 => (report_kind, any::<Index>(), prop::sample::select(ACTIONS.to_vec()), busy_at_ms())
            .prop_map(|(kind, message, name, at_ms)| Call::Report { kind, message, name, at_ms }),
        6 => (user(), prop::sample::select(OUTCOMES.to_vec()), 1i64..=50_000_000, busy_at_ms())
            .prop_map(|(user, outcome, amount_micros, at_ms)| Call::Outcome {
                user, outcome, amount_micros, at_ms,
            }),
    ]
}

/// Filters over the first `span_ms` of day 3: mostly without a user, type or channel (the
/// reports read by credit and by name), their ends anywhere in it.
fn busy_filter(span_ms: i64) -> impl Strategy<Value = FilterSpec> {
    (
        prop::option::weighted(0.1, user()),
        prop::option::weighted(0.2, prop::sample::select(MESSAGE_TYPES.to_vec())),
        prop::option::weighted(0.2, prop::sample::select(Channel::ALL.to_vec())),
        prop::option::weighted(0.9, busy_at_ms(span_ms)),
        prop::option::weighted(0.9, busy_at_ms(span_ms)),
    )
        .prop_map(FilterSpec::with_ends_in_order)
}

/// Makes `calls` on a new store and the model, checking the reports once part-way (at
/// `check_at`: from then on every call keeps the built credits current), after the calls, and
/// read-only after a reopen.
fn check_part_way_and_after_reopen(
    window: Option<Duration>,
    calls: &[Call],
    filters: &[FilterSpec],
    check_at: Index,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(window)).unwrap();
    let mut model = Model::default();
    let check_index = check_at.index(calls.len());
    apply_checking(&store, &mut model, calls, &[check_index], filters, window)?;
    store.close().unwrap();
    let store = Store::open_read_only_with(dir.path(), options(window)).unwrap();
    check_reports(&store, &model, filters, window, "read-only")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn busy_buckets_summed_by_credit_and_by_name_equal_the_model(
        window in window(),
        calls in prop::collection::vec(busy_call(BUSY_SPAN_MS), 300..450),
        filters in prop::collection::vec(busy_filter(BUSY_SPAN_MS), 4..12),
        check_at in any::<Index>(),
    ) {
        check_part_way_and_after_reopen(window, &calls, &filters, check_at)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// More than 128 outcomes in one slice: the credits sum each of its minutes apart, and a
    /// report whose ends cut the slice reads the minutes it covers and the outcomes of the
    /// minutes it cuts.
    #[test]
    fn a_slice_dense_with_outcomes_reports_as_the_model(
        window in window(),
        calls in prop::collection::vec(busy_call(DENSE_SPAN_MS), 500..650),
        filters in prop::collection::vec(busy_filter(DENSE_SPAN_MS), 4..12),
        check_at in any::<Index>(),
    ) {
        let outcomes = calls.iter().filter(|call| matches!(call, Call::Outcome { .. })).count();
        prop_assume!(outcomes > 128, "{} outcomes: the slice is not dense", outcomes);
        check_part_way_and_after_reopen(window, &calls, &filters, check_at)?;
    }
}

/// The credits a reopened store builds at once on its first report (on two threads, each over
/// half of the messages and half of the outcomes, in a store of this size) equal those a store
/// asked before its first event kept current event by event.
#[test]
fn credits_built_at_once_equal_credits_kept_current_event_by_event() {
    use commlog::workload::{Generator, Spec};
    let dir = tempfile::tempdir().unwrap();
    let never = Options {
        sync: commlog::SyncPolicy::Never,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), never.clone()).unwrap();
    let report = |store: &Store, filter: &ImpactFilter| store.get_financial_impact(filter).unwrap();
    // From here on every event keeps the credits current.
    assert_eq!(report(&store, &ImpactFilter::new()).outcomes.count, 0);
    let spec = Spec {
        seed: 11,
        users: 200,
        messages: 70_000,
    };
    for call in Generator::calls(spec) {
        commlog::workload::apply(&store, &call).unwrap();
    }
    // A message delivered 11 days after it was sent, far later than any of the workload's, and
    // among the last messages: the lag that lets the outcome after it find it comes from the
    // second half of the messages.
    let late_user = 1_000_000;
    let late = store
        .track_message_sent_at(late_user, Channel::Sms, "late", 0.05, at(1, 0))
        .unwrap();
    store
        .track_message_delivered(late.id, Some(at(12, 0)))
        .unwrap();
    store
        .track_financial_outcome_at(late_user, "paid", 10.0, at(12, 3_600_000))
        .unwrap();
    let week = (at(3, 0), at(10, 0));
    let filters = [
        ImpactFilter::new(),
        ImpactFilter::new().user(late_user),
        ImpactFilter::new().user(7),
        ImpactFilter::new().channel(Channel::Email),
        ImpactFilter::new().start(week.0).end(week.1),
    ];
    let kept: Vec<ImpactReport> = filters
        .iter()
        .map(|filter| report(&store, filter))
        .collect();
    assert!(kept[0].outcomes.count > 1_024, "{:?}", kept[0].outcomes);
    assert!(kept[0].attributed.count > 0 && kept[4].outcomes.count > 0);
    assert_eq!(kept[1].attributed.count, 1, "{:?}", kept[1]);
    store.close().unwrap();
    for store in [
        Store::open_read_only(dir.path()).unwrap(),
        Store::open_read_only_with(
            dir.path(),
            Options {
                load_snapshot: false,
                ..Options::default()
            },
        )
        .unwrap(),
    ] {
        for (filter, kept) in filters.iter().zip(&kept) {
            assert_eq!(&report(&store, filter), kept, "{filter:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Edge rules, one test each.

fn open(window: Option<Duration>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(window)).unwrap();
    (dir, store)
}

fn impact(store: &Store) -> ImpactReport {
    store.get_financial_impact(&ImpactFilter::new()).unwrap()
}

fn channel_row(report: &ImpactReport, channel: Channel) -> &ChannelImpact {
    report
        .by_channel
        .iter()
        .find(|row| row.channel == channel)
        .unwrap()
}

/// Sends a free message of user 1.
fn send(store: &Store, channel: Channel, message_type: &str, at: DateTime<Utc>) -> Message {
    store
        .track_message_sent_at(1, channel, message_type, 0.0, at)
        .unwrap()
}

/// Tracks an outcome of user 1 worth `dollars`.
fn outcome(store: &Store, name: &str, dollars: f64, at: DateTime<Utc>) {
    store
        .track_financial_outcome_at(1, name, dollars, at)
        .unwrap();
}

/// The channel credited with the report's only attributed outcome, and at which level.
fn credited(report: &ImpactReport) -> Option<(Channel, AttributionLevel)> {
    for row in &report.by_channel {
        if row.attributed.engaged.count > 0 {
            return Some((row.channel, AttributionLevel::Engaged));
        }
        if row.attributed.delivered.count > 0 {
            return Some((row.channel, AttributionLevel::Delivered));
        }
    }
    None
}

#[test]
fn engagement_exactly_one_window_before_the_outcome_is_credited_and_a_millisecond_earlier_is_not() {
    for (open_ms, expected) in [
        (0, Some((Channel::Sms, AttributionLevel::Engaged))),
        (-1, None),
    ] {
        let (_dir, store) = open(None);
        let message = store
            .track_message_sent_at(1, Channel::Sms, "low_balance", 0.0, at(0, -10))
            .unwrap();
        store
            .track_message_opened(message.id, Some(at(0, open_ms)))
            .unwrap();
        outcome(&store, "overdraft", -35.0, at(7, 0));
        let report = impact(&store);
        assert_eq!(credited(&report), expected, "open at {open_ms} ms");
        assert_eq!(report.unattributed.count, u64::from(expected.is_none()));
    }
}

#[test]
fn engagement_at_the_outcome_time_is_credited_and_a_millisecond_later_is_not() {
    for (open_ms, expected) in [
        (0, Some((Channel::Email, AttributionLevel::Engaged))),
        (1, None),
    ] {
        let (_dir, store) = open(None);
        let message = store
            .track_message_sent_at(1, Channel::Email, "low_balance", 0.0, at(2, -10))
            .unwrap();
        store
            .track_message_opened(message.id, Some(at(2, open_ms)))
            .unwrap();
        outcome(&store, "overdraft", 10.0, at(2, 0));
        assert_eq!(credited(&impact(&store)), expected, "open at {open_ms} ms");
    }
}

#[test]
fn an_engaged_message_wins_over_a_more_recent_delivery_only_message() {
    let (_dir, store) = open(None);
    let engaged = send(&store, Channel::Sms, "low_balance", at(1, 0));
    store
        .track_user_action(engaged.id, "viewed_forecast", Some(at(1, 5)))
        .unwrap();
    let delivered = send(&store, Channel::Email, "bill_due", at(3, 0));
    store
        .track_message_delivered(delivered.id, Some(at(3, 1)))
        .unwrap();
    outcome(&store, "bill_paid_on_time", 25.0, at(4, 0));
    let report = impact(&store);
    assert_eq!(
        credited(&report),
        Some((Channel::Sms, AttributionLevel::Engaged))
    );
    assert_eq!(
        report.by_message_type.keys().collect::<Vec<_>>(),
        ["low_balance"]
    );
}

#[test]
fn a_delivery_only_message_is_credited_at_level_delivered_and_a_failed_one_never() {
    let (_dir, store) = open(None);
    let failed = send(&store, Channel::Sms, "low_balance", at(3, 0));
    store
        .track_message_failed(failed.id, "bounced", Some(at(3, 1)))
        .unwrap();
    let delivered = send(&store, Channel::Push, "low_balance", at(1, 0));
    store
        .track_message_delivered(delivered.id, Some(at(1, 1)))
        .unwrap();
    outcome(&store, "bill_paid_on_time", 25.0, at(4, 0));
    let report = impact(&store);
    assert_eq!(
        credited(&report),
        Some((Channel::Push, AttributionLevel::Delivered))
    );
    assert_eq!(
        report.attributed.delivered.amount,
        Money::from_micros(25_000_000)
    );
    assert_eq!(report.attributed.engaged, ImpactTotal::default());
}

#[test]
fn equal_times_credit_the_higher_message_id() {
    let (_dir, store) = open(None);
    let first = send(&store, Channel::InApp, "low_balance", at(1, 0));
    let second = send(&store, Channel::Sms, "low_balance", at(1, 0));
    // The higher id is opened first in log order: the tie is broken by id, not by order.
    store
        .track_message_opened(second.id, Some(at(2, 0)))
        .unwrap();
    store
        .track_message_opened(first.id, Some(at(2, 0)))
        .unwrap();
    outcome(&store, "overdraft", -5.0, at(3, 0));
    assert_eq!(
        credited(&impact(&store)),
        Some((Channel::Sms, AttributionLevel::Engaged))
    );
}

#[test]
fn first_engagement_decides_so_a_later_click_does_not_bring_a_message_into_the_window() {
    let (_dir, store) = open(None);
    let old = send(&store, Channel::Sms, "low_balance", at(0, 0));
    store.track_message_opened(old.id, Some(at(0, 1))).unwrap();
    store
        .track_user_action(old.id, "clicked_link", Some(at(9, 0)))
        .unwrap();
    let other = send(&store, Channel::Email, "low_balance", at(8, 0));
    store
        .track_message_delivered(other.id, Some(at(8, 1)))
        .unwrap();
    outcome(&store, "overdraft", 1.0, at(10, 0));
    // The old message's first engagement (day 0) and delivery (day 0) are outside the window.
    assert_eq!(
        credited(&impact(&store)),
        Some((Channel::Email, AttributionLevel::Delivered))
    );
}

#[test]
fn a_late_open_re_attributes_an_outcome() {
    let (dir, store) = open(None);
    let sms = send(&store, Channel::Sms, "low_balance", at(1, 0));
    store.track_message_opened(sms.id, Some(at(1, 10))).unwrap();
    let email = send(&store, Channel::Email, "bill_due", at(2, 0));
    outcome(&store, "bill_paid_on_time", 25.0, at(3, 0));
    assert_eq!(
        credited(&impact(&store)),
        Some((Channel::Sms, AttributionLevel::Engaged))
    );
    // Reported after the outcome was tracked, but the open happened before it.
    store
        .track_message_opened(email.id, Some(at(2, 10)))
        .unwrap();
    assert_eq!(
        credited(&impact(&store)),
        Some((Channel::Email, AttributionLevel::Engaged))
    );
    store.close().unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        credited(&impact(&store)),
        Some((Channel::Email, AttributionLevel::Engaged))
    );
}

#[test]
fn the_attribution_window_option_sets_how_far_back_a_message_counts() {
    let dir = tempfile::tempdir().unwrap();
    let one_day = Some(Duration::from_secs(24 * 3600));
    let store = Store::open_with(dir.path(), options(one_day)).unwrap();
    let message = send(&store, Channel::Sms, "low_balance", at(0, 0));
    store
        .track_message_opened(message.id, Some(at(1, 0)))
        .unwrap();
    outcome(&store, "overdraft", 1.0, at(2, 0));
    outcome(&store, "overdraft", 2.0, at(2, 1));
    let report = impact(&store);
    assert_eq!((report.attributed.count, report.unattributed.count), (1, 1));
    store.close().unwrap();
    // The window is an option of the reader, not a fact of the log.
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(impact(&store).attributed.count, 2);
    let store = Store::open_read_only_with(dir.path(), options(one_day)).unwrap();
    assert_eq!(impact(&store).attributed.count, 1);
}

#[test]
fn a_channel_or_type_filter_keeps_only_outcomes_credited_to_a_matching_message() {
    let (_dir, store) = open(None);
    let sms = store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.10, at(1, 0))
        .unwrap();
    store.track_message_opened(sms.id, Some(at(1, 1))).unwrap();
    let email = store
        .track_message_sent_at(2, Channel::Email, "bill_due", 0.01, at(1, 0))
        .unwrap();
    store
        .track_message_delivered(email.id, Some(at(1, 1)))
        .unwrap();
    outcome(&store, "overdraft", 3.0, at(2, 0));
    store
        .track_financial_outcome_at(2, "bill_paid_on_time", 4.0, at(2, 0))
        .unwrap();
    store
        .track_financial_outcome_at(3, "bill_paid_on_time", 5.0, at(2, 0))
        .unwrap();

    let all = impact(&store);
    assert_eq!(all.outcomes.count, 3);
    assert_eq!(
        all.attributed.count + all.unattributed.count,
        all.outcomes.count
    );
    assert_eq!(all.unattributed.amount, Money::from_micros(5_000_000));

    let sms_only = store
        .get_financial_impact(&ImpactFilter::new().channel(Channel::Sms))
        .unwrap();
    assert_eq!(sms_only.outcomes.count, 1);
    assert_eq!(sms_only.unattributed, ImpactTotal::default());
    assert_eq!(sms_only.by_channel.len(), 1);
    assert_eq!(sms_only.by_channel[0].cost, Money::from_micros(100_000));

    let bill_due = store
        .get_financial_impact(&ImpactFilter::new().message_type("bill_due"))
        .unwrap();
    assert_eq!(bill_due.outcomes.amount, Money::from_micros(4_000_000));
    assert_eq!(
        bill_due.by_outcome.keys().collect::<Vec<_>>(),
        ["bill_paid_on_time"]
    );
    // Costs count the type's messages only.
    assert_eq!(channel_row(&bill_due, Channel::Sms).cost, Money::ZERO);
    assert_eq!(
        channel_row(&bill_due, Channel::Email).cost,
        Money::from_micros(10_000)
    );

    let never = store
        .get_financial_impact(&ImpactFilter::new().message_type("never_sent"))
        .unwrap();
    assert_eq!(never.outcomes, ImpactTotal::default());
}

#[test]
fn roi_is_a_ratio_of_the_channel_cost_and_none_when_it_cost_nothing() {
    let (_dir, store) = open(None);
    let sms = store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 2.0, at(1, 0))
        .unwrap();
    store.track_message_opened(sms.id, Some(at(1, 1))).unwrap();
    let push = store
        .track_message_sent_at(2, Channel::Push, "low_balance", 0.0, at(1, 0))
        .unwrap();
    store.track_message_opened(push.id, Some(at(1, 1))).unwrap();
    store
        .track_message_sent_at(3, Channel::Email, "low_balance", 1.0, at(1, 0))
        .unwrap();
    outcome(&store, "overdraft", 7.0, at(2, 0));
    store
        .track_financial_outcome_at(2, "overdraft", 7.0, at(2, 0))
        .unwrap();
    let report = impact(&store);
    assert_eq!(channel_row(&report, Channel::Sms).roi, Some(2.5));
    assert_eq!(channel_row(&report, Channel::Push).roi, None);
    assert_eq!(channel_row(&report, Channel::InApp).roi, None);
    // Cost without credited impact: everything lost.
    assert_eq!(channel_row(&report, Channel::Email).roi, Some(-1.0));
    assert_eq!(
        report
            .by_channel
            .iter()
            .map(|row| row.channel)
            .collect::<Vec<_>>(),
        Channel::ALL
    );
}

#[test]
fn the_time_range_selects_outcomes_by_their_time_and_costs_by_sent_time() {
    let (_dir, store) = open(None);
    // Sent before the range, credited with an outcome inside it.
    let early = store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 1.0, at(1, 0))
        .unwrap();
    store
        .track_message_opened(early.id, Some(at(1, 1)))
        .unwrap();
    store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.5, at(3, 0))
        .unwrap();
    outcome(&store, "overdraft", 1.0, at(2, 0));
    outcome(&store, "overdraft", 9.0, at(4, 1));
    let filter = ImpactFilter::new().start(at(2, 0)).end(at(4, 0));
    let report = store.get_financial_impact(&filter).unwrap();
    assert_eq!(report.outcomes.amount, Money::from_micros(1_000_000));
    assert_eq!(channel_row(&report, Channel::Sms).attributed.count, 1);
    assert_eq!(
        channel_row(&report, Channel::Sms).cost,
        Money::from_micros(500_000)
    );
    assert_eq!(channel_row(&report, Channel::Sms).roi, Some(1.0));
}

#[test]
fn days_since_last_communication_leave_out_outcomes_before_any_message() {
    let (_dir, store) = open(None);
    // Before user 1's first message: left out of the mean.
    outcome(&store, "overdraft", 1.0, at(0, 0));
    send(&store, Channel::Sms, "low_balance", at(1, 0));
    // Never delivered, on another channel: still the latest communication.
    send(&store, Channel::Email, "bill_due", at(2, 0));
    // Sent after the outcome below: not before it.
    send(&store, Channel::Push, "bill_due", at(9, 0));
    // 1.5 days after the email, and 0 days (sent at the outcome's own time).
    store
        .track_financial_outcome_at(1, "overdraft", 1.0, at(3, DAY_MS / 2))
        .unwrap();
    outcome(&store, "overdraft", 1.0, at(9, 0));
    let report = impact(&store);
    assert_eq!(report.outcomes.count, 3);
    assert_eq!(report.outcomes_after_communication, 2);
    assert_eq!(report.mean_days_since_last_communication, Some(0.75));
    let first_only = store
        .get_financial_impact(&ImpactFilter::new().end(at(0, 0)))
        .unwrap();
    assert_eq!(first_only.outcomes_after_communication, 0);
    assert_eq!(first_only.mean_days_since_last_communication, None);
}

#[test]
fn invalid_filters_are_refused() {
    let (_dir, store) = open(None);
    for (filter, field) in [
        (ImpactFilter::new().user(0), "user_id"),
        (ImpactFilter::new().message_type("Bad Type"), "message_type"),
        (ImpactFilter::new().start(at(2, 0)).end(at(1, 0)), "end"),
    ] {
        match store.get_financial_impact(&filter) {
            Err(Error::InvalidInput { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{filter:?}: {other:?}"),
        }
    }
    // An empty window (start = end) is fine.
    let instant = ImpactFilter::new().start(at(1, 0)).end(at(1, 0));
    assert_eq!(
        store.get_financial_impact(&instant).unwrap().outcomes.count,
        0
    );
}

#[test]
fn sums_beyond_64_bit_micros_are_exact() {
    let (_dir, store) = open(None);
    store
        .track_financial_outcome_at(1, "windfall", 9e12, at(1, 0))
        .unwrap();
    store
        .track_financial_outcome_at(1, "windfall", 9e12, at(1, 0))
        .unwrap();
    let twice = Money::from_micros(18_000_000_000_000_000_000);
    let report = store.get_financial_impact(&ImpactFilter::new()).unwrap();
    assert_eq!(report.outcomes.amount, twice);
    assert_eq!(report.by_outcome["windfall"].amount, twice);
    assert_eq!(report.unattributed.amount, twice);
    let one = ImpactFilter::new().user(UserId(1)).end(at(1, 0));
    assert_eq!(
        store.get_financial_impact(&one).unwrap().outcomes.amount,
        twice
    );
    store
        .track_financial_outcome_at(2, "windfall", 9e12, at(1, 0))
        .unwrap();
    assert_eq!(
        store
            .get_financial_impact(&ImpactFilter::new().user(2))
            .unwrap()
            .outcomes
            .amount,
        Money::from_micros(9_000_000_000_000_000_000)
    );
}

#[test]
fn the_report_serializes_and_reads_back() {
    let (_dir, store) = open(None);
    let message = store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, at(1, 0))
        .unwrap();
    store
        .track_message_delivered(message.id, Some(at(1, 1)))
        .unwrap();
    outcome(&store, "overdraft", -35.0, at(2, 0));
    let report = impact(&store);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["by_channel"][0]["channel"], "sms");
    assert_eq!(
        json["attributed"]["delivered"]["amount_micros"],
        -35_000_000
    );
    assert_eq!(
        serde_json::from_value::<ImpactReport>(json).unwrap(),
        report
    );
}
