//! Model-based test: random call sequences — out of order, repeated, on
//! unknown ids, with bad input — go to the store and to a brute-force model of the documented
//! rules; every query then answers the same, also after close and reopen.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use commlog::{
    Channel, CommunicationStats, Error, FinancialOutcome, Message, MessageId, MessageRef, Money,
    StatsFilter, Status, Store, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::model::{CLOCK_SKEW_MS, ReportKind, delivered_ms, failed_ms, is_click};
use support::store::options;

/// Event times are this plus 0..=TIME_SPAN_MS milliseconds: a small range, so that equal
/// times and out-of-order reports are common.
fn base_ms() -> i64 {
    Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0)
        .unwrap()
        .timestamp_millis()
}

const TIME_SPAN_MS: i64 = 30;

/// How far after the clock at the call a time may be.
const AFTER_CLOCK_MS: i64 = 24 * 3600 * 1000;

/// 9999-12-31T23:59:59Z: always more than a day after the clock.
const FAR_FUTURE_MS: i64 = 253_402_300_799_000;

/// Whether a time can be true: not before 1970, at most a day after the clock.
fn possible(at_ms: i64) -> bool {
    (0..=Utc::now().timestamp_millis() + AFTER_CLOCK_MS).contains(&at_ms)
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

const MESSAGE_TYPES: [&str; 3] = ["low_balance", "weekly_checkin", "bill_due"];
const ACTIONS: [&str; 5] = [
    "viewed_forecast",
    "clicked_link",
    "button_click",
    "dismissed",
    "click",
];
const REASONS: [&str; 2] = ["undelivered", "bounced"];
const OUTCOMES: [&str; 3] = ["bill_paid_on_time", "overdraft", "savings_goal_achieved"];

/// How a call names a message: resolved against the messages sent so far when applied.
#[derive(Debug, Clone)]
enum IdPick {
    /// One of the messages sent so far (id 1 if there is none yet, which is unknown then).
    Existing(Index),
    Zero,
    /// `offset` past the last message.
    PastEnd(u64),
    /// An external id, sent with a message or not.
    External(String),
}

/// External ids the sends draw from, and one no send carries.
const EXTERNAL_IDS: [&str; 3] = ["SM-a", "SM-b", "re_0123"];
const EXTERNAL_ID_UNKNOWN: &str = "SM-never-sent";

/// An amount of dollars as the caller passes it.
#[derive(Debug, Clone, Copy)]
enum Dollars {
    /// A whole number of micro-dollars, passed as `micros / 1e6`.
    Micros(i64),
    /// Any other value (NaN, infinities, negative costs).
    Raw(f64),
}

impl Dollars {
    fn to_f64(self) -> f64 {
        match self {
            Dollars::Micros(micros) => micros as f64 / 1e6,
            Dollars::Raw(value) => value,
        }
    }
}

#[derive(Debug, Clone)]
enum Call {
    Sent {
        user: u64,
        channel: Channel,
        message_type: String,
        cost: Dollars,
        at_ms: i64,
        external_id: Option<String>,
    },
    Delivered {
        id: IdPick,
        at_ms: i64,
    },
    Opened {
        id: IdPick,
        at_ms: i64,
    },
    Action {
        id: IdPick,
        action: String,
        at_ms: i64,
    },
    Failed {
        id: IdPick,
        reason: String,
        at_ms: i64,
    },
    Outcome {
        user: u64,
        outcome: String,
        amount: Dollars,
        at_ms: i64,
    },
}

/// What a store call answered, in a shape the model can produce too.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Message(Message),
    Outcome(FinancialOutcome),
}

/// The kinds of error the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InvalidInput,
    UnknownMessage,
    UnknownExternalId,
    Conflict,
}

fn kind_of(error: &Error) -> Option<Kind> {
    match error {
        Error::InvalidInput { .. } => Some(Kind::InvalidInput),
        Error::UnknownMessage { .. } => Some(Kind::UnknownMessage),
        Error::UnknownExternalId { .. } => Some(Kind::UnknownExternalId),
        Error::Conflict { .. } => Some(Kind::Conflict),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn name(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(valid).prop_map(str::to_string),
        1 => prop::sample::select(vec!["", "Bad", "has space", "café"]).prop_map(str::to_string),
        1 => Just("a".repeat(65)),
    ]
}

fn user() -> impl Strategy<Value = u64> {
    prop_oneof![15 => 1u64..=5, 1 => Just(0u64)]
}

fn at_ms() -> impl Strategy<Value = i64> {
    prop_oneof![
        40 => (0..=TIME_SPAN_MS).prop_map(|offset| base_ms() + offset),
        // More than the clock skew before the times above: reports of messages sent at those
        // are refused; reports of messages sent here are not.
        3 => (0..=TIME_SPAN_MS).prop_map(|offset| base_ms() - CLOCK_SKEW_MS - 1 - offset),
        1 => prop::sample::select(vec![-1, i64::from(i32::MIN), FAR_FUTURE_MS]),
    ]
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

fn id_pick() -> impl Strategy<Value = IdPick> {
    prop_oneof![
        12 => any::<Index>().prop_map(IdPick::Existing),
        1 => Just(IdPick::Zero),
        2 => (0u64..3).prop_map(IdPick::PastEnd),
        4 => external_id_pick().prop_map(IdPick::External),
    ]
}

fn external_id_pick() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(EXTERNAL_IDS.to_vec()).prop_map(str::to_string),
        1 => Just(EXTERNAL_ID_UNKNOWN.to_string()),
        1 => prop::sample::select(vec!["", "has space", "caf\u{e9}"]).prop_map(str::to_string),
    ]
}

/// A send's external id: mostly none, else one of a few, so that repeats and conflicts occur.
fn external_id() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        4 => external_id_pick().prop_map(Some),
    ]
}

fn cost() -> impl Strategy<Value = Dollars> {
    prop_oneof![
        12 => (0i64..=200_000).prop_map(Dollars::Micros),
        3 => Just(Dollars::Micros(0)),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -0.01, -1e-7]).prop_map(Dollars::Raw),
    ]
}

fn amount() -> impl Strategy<Value = Dollars> {
    prop_oneof![
        12 => (-50_000_000i64..=50_000_000).prop_map(Dollars::Micros),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]).prop_map(Dollars::Raw),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        6 => (user(), channel(), name(&MESSAGE_TYPES), cost(), at_ms(), external_id()).prop_map(
            |(user, channel, message_type, cost, at_ms, external_id)| Call::Sent { user, channel, message_type, cost, at_ms, external_id }
        ),
        3 => (id_pick(), at_ms()).prop_map(|(id, at_ms)| Call::Delivered { id, at_ms }),
        3 => (id_pick(), at_ms()).prop_map(|(id, at_ms)| Call::Opened { id, at_ms }),
        3 => (id_pick(), name(&ACTIONS), at_ms()).prop_map(|(id, action, at_ms)| Call::Action { id, action, at_ms }),
        2 => (id_pick(), name(&REASONS), at_ms()).prop_map(|(id, reason, at_ms)| Call::Failed { id, reason, at_ms }),
        2 => (user(), name(&OUTCOMES), amount(), at_ms()).prop_map(
            |(user, outcome, amount, at_ms)| Call::Outcome { user, outcome, amount, at_ms }
        ),
    ]
}

/// A stats filter, every part optional; window edges fall on (or just beside) event times.
#[derive(Debug, Clone)]
struct FilterSpec {
    user: Option<u64>,
    message_type: Option<String>,
    channel: Option<Channel>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
}

impl FilterSpec {
    fn to_filter(&self) -> StatsFilter {
        let mut filter = StatsFilter::new();
        if let Some(user) = self.user {
            filter = filter.user(user);
        }
        if let Some(message_type) = &self.message_type {
            filter = filter.message_type(message_type.as_str());
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
    let edge = || prop::option::of((-1..=TIME_SPAN_MS + 1).prop_map(|offset| base_ms() + offset));
    let message_type = prop_oneof![
        8 => prop::sample::select(MESSAGE_TYPES.to_vec()).prop_map(str::to_string),
        1 => Just("never_sent".to_string()),
        1 => Just("clicked_link".to_string()),
        1 => Just("Bad Type".to_string()),
    ];
    (
        prop::option::of(prop_oneof![10 => 1u64..=6, 1 => Just(0u64)]),
        prop::option::of(message_type),
        prop::option::of(channel()),
        edge(),
        edge(),
        prop::bool::weighted(0.1),
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
                FilterSpec {
                    user,
                    message_type,
                    channel,
                    start_ms,
                    end_ms,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The model: every record recomputed from all its reports, by the rules as written.

#[derive(Debug, Clone)]
struct ModelReport {
    kind: ReportKind,
    name: String,
    at_ms: i64,
}

impl ModelReport {
    fn is_click(&self) -> bool {
        self.kind == ReportKind::Action && is_click(&self.name)
    }
}

#[derive(Debug, Clone)]
struct ModelMessage {
    id: u64,
    user: u64,
    channel: Channel,
    message_type: String,
    cost_micros: i64,
    sent_ms: i64,
    external_id: Option<String>,
    /// In append order.
    reports: Vec<ModelReport>,
}

impl ModelMessage {
    fn earliest(&self, counts: impl Fn(&ModelReport) -> bool) -> Option<i64> {
        self.reports
            .iter()
            .filter(|report| counts(report))
            .map(|report| report.at_ms)
            .min()
    }

    fn kinds(&self) -> impl Iterator<Item = (ReportKind, i64)> + '_ {
        self.reports
            .iter()
            .map(|report| (report.kind, report.at_ms))
    }

    fn delivered_ms(&self) -> Option<i64> {
        delivered_ms(self.kinds())
    }

    /// Opened: reported, or implied by a click.
    fn opened_ms(&self) -> Option<i64> {
        self.earliest(|report| report.kind == ReportKind::Opened || report.is_click())
    }

    fn clicked_ms(&self) -> Option<i64> {
        self.earliest(ModelReport::is_click)
    }

    fn failed_ms(&self) -> Option<i64> {
        failed_ms(self.kinds())
    }

    fn has_action(&self) -> bool {
        self.reports
            .iter()
            .any(|report| report.kind == ReportKind::Action)
    }

    fn status(&self) -> Status {
        if self.clicked_ms().is_some() {
            Status::Clicked
        } else if self.opened_ms().is_some() {
            Status::Opened
        } else if self.delivered_ms().is_some() {
            Status::Delivered
        } else if self.failed_ms().is_some() {
            Status::Failed
        } else {
            Status::Sent
        }
    }

    /// The action with the latest time; ties go to the one appended later.
    fn action_taken(&self) -> Option<String> {
        let mut latest: Option<&ModelReport> = None;
        for report in self
            .reports
            .iter()
            .filter(|report| report.kind == ReportKind::Action)
        {
            if latest.is_none_or(|latest| report.at_ms >= latest.at_ms) {
                latest = Some(report);
            }
        }
        latest.map(|report| report.name.clone())
    }

    /// The reason of the earliest failure; ties go to the one appended first.
    fn failure_reason(&self) -> Option<String> {
        let mut earliest: Option<&ModelReport> = None;
        for report in self
            .reports
            .iter()
            .filter(|report| report.kind == ReportKind::Failed)
        {
            if earliest.is_none_or(|earliest| report.at_ms < earliest.at_ms) {
                earliest = Some(report);
            }
        }
        earliest.map(|report| report.name.clone())
    }

    fn to_message(&self) -> Message {
        Message {
            id: MessageId(self.id),
            user_id: UserId(self.user),
            channel: self.channel,
            message_type: self.message_type.as_str().into(),
            status: self.status(),
            cost: Money::from_micros(i128::from(self.cost_micros)),
            sent_at: time(self.sent_ms),
            delivered_at: self.delivered_ms().map(time),
            opened_at: self.opened_ms().map(time),
            clicked_at: self.clicked_ms().map(time),
            failed_at: self.failed_ms().map(time),
            failure_reason: self.failure_reason().map(Into::into),
            action_taken: self.action_taken().map(Into::into),
        }
    }
}

#[derive(Debug, Clone)]
struct ModelOutcome {
    user: u64,
    outcome: String,
    amount_micros: i64,
    at_ms: i64,
}

#[derive(Debug, Default)]
struct Model {
    messages: Vec<ModelMessage>,
    outcomes: Vec<ModelOutcome>,
    /// Events appended (accepted calls).
    event_count: u64,
}

fn valid_external_id(external_id: &str) -> bool {
    (1..=128).contains(&external_id.len())
        && external_id.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

fn valid_name(name: &str) -> bool {
    let allowed = "abcdefghijklmnopqrstuvwxyz0123456789_.-";
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| allowed.contains(c))
}

/// Micro-dollars of a cost or amount, or `None` if it is not acceptable.
fn model_micros(dollars: Dollars, negative_allowed: bool) -> Option<i64> {
    match dollars {
        Dollars::Micros(micros) => (negative_allowed || micros >= 0).then_some(micros),
        // The strategies draw only raw values that no rule accepts: NaN, infinities, and
        // negative costs.
        Dollars::Raw(value) => {
            assert!(
                !value.is_finite() || (value < 0.0 && !negative_allowed),
                "{value} is not a bad value"
            );
            None
        }
    }
}

/// How the store is told the message `pick` names.
fn message_ref(pick: &IdPick, message_count: u64) -> MessageRef {
    match pick {
        IdPick::External(external_id) => MessageRef::External(external_id.clone()),
        pick => MessageRef::Id(MessageId(resolve(pick, message_count))),
    }
}

fn resolve(pick: &IdPick, message_count: u64) -> u64 {
    match pick {
        IdPick::External(_) => unreachable!("resolved by the model"),
        IdPick::Existing(index) if message_count > 0 => {
            index.index(message_count as usize) as u64 + 1
        }
        IdPick::Existing(_) => 1,
        IdPick::Zero => 0,
        IdPick::PastEnd(offset) => message_count + 1 + offset,
    }
}

/// Rejects with every rule the call breaks; the store must report one of them.
fn reject(broken: Vec<Kind>) -> Result<Answer, Vec<Kind>> {
    assert!(!broken.is_empty());
    Err(broken)
}

impl Model {
    fn apply(&mut self, call: &Call) -> Result<Answer, Vec<Kind>> {
        let message_count = self.messages.len() as u64;
        let mut broken = Vec::new();
        let answer = match call {
            Call::Sent {
                user,
                channel,
                message_type,
                cost,
                at_ms,
                external_id,
            } => {
                if *user == 0 {
                    broken.push(Kind::InvalidInput);
                }
                if external_id
                    .as_deref()
                    .is_some_and(|id| !valid_external_id(id))
                {
                    broken.push(Kind::InvalidInput);
                }
                if !valid_name(message_type) {
                    broken.push(Kind::InvalidInput);
                }
                let cost_micros = model_micros(*cost, false);
                if cost_micros.is_none() {
                    broken.push(Kind::InvalidInput);
                }
                if !possible(*at_ms) {
                    broken.push(Kind::InvalidInput);
                }
                if !broken.is_empty() {
                    return reject(broken);
                }
                let cost_micros = cost_micros.unwrap();
                let existing = self.messages.iter().find(|message| {
                    message.external_id.is_some() && message.external_id == *external_id
                });
                if let Some(existing) = existing {
                    let same = (
                        existing.user,
                        existing.channel,
                        &existing.message_type,
                        existing.cost_micros,
                        existing.sent_ms,
                    ) == (*user, *channel, message_type, cost_micros, *at_ms);
                    if !same {
                        return reject(vec![Kind::Conflict]);
                    }
                    return Ok(Answer::Message(existing.to_message()));
                }
                self.messages.push(ModelMessage {
                    id: message_count + 1,
                    user: *user,
                    channel: *channel,
                    message_type: message_type.clone(),
                    cost_micros,
                    sent_ms: *at_ms,
                    external_id: external_id.clone(),
                    reports: Vec::new(),
                });
                Answer::Message(self.messages.last().unwrap().to_message())
            }
            Call::Delivered { id, at_ms } => {
                return self.report(
                    self.pick(id, message_count),
                    ReportKind::Delivered,
                    "",
                    *at_ms,
                );
            }
            Call::Opened { id, at_ms } => {
                return self.report(self.pick(id, message_count), ReportKind::Opened, "", *at_ms);
            }
            Call::Action { id, action, at_ms } => {
                return self.report(
                    self.pick(id, message_count),
                    ReportKind::Action,
                    action,
                    *at_ms,
                );
            }
            Call::Failed { id, reason, at_ms } => {
                return self.report(
                    self.pick(id, message_count),
                    ReportKind::Failed,
                    reason,
                    *at_ms,
                );
            }
            Call::Outcome {
                user,
                outcome,
                amount,
                at_ms,
            } => {
                if *user == 0 {
                    broken.push(Kind::InvalidInput);
                }
                if !valid_name(outcome) {
                    broken.push(Kind::InvalidInput);
                }
                let amount_micros = model_micros(*amount, true);
                if amount_micros.is_none() {
                    broken.push(Kind::InvalidInput);
                }
                if !possible(*at_ms) {
                    broken.push(Kind::InvalidInput);
                }
                if !broken.is_empty() {
                    return reject(broken);
                }
                let recorded = ModelOutcome {
                    user: *user,
                    outcome: outcome.clone(),
                    amount_micros: amount_micros.unwrap(),
                    at_ms: *at_ms,
                };
                self.outcomes.push(recorded.clone());
                Answer::Outcome(FinancialOutcome {
                    user_id: UserId(recorded.user),
                    outcome: recorded.outcome,
                    amount: Money::from_micros(i128::from(recorded.amount_micros)),
                    at: time(recorded.at_ms),
                })
            }
        };
        self.event_count += 1;
        Ok(answer)
    }

    /// The id of the message `pick` names, or why it names none.
    fn pick(&self, pick: &IdPick, message_count: u64) -> Result<u64, Kind> {
        match pick {
            IdPick::External(external_id) if !valid_external_id(external_id) => {
                Err(Kind::InvalidInput)
            }
            IdPick::External(external_id) => self
                .message_by_external_id(external_id)
                .map(|message| message.id)
                .ok_or(Kind::UnknownExternalId),
            pick => Ok(resolve(pick, message_count)),
        }
    }

    fn message_by_external_id(&self, external_id: &str) -> Option<&ModelMessage> {
        self.messages
            .iter()
            .find(|message| message.external_id.as_deref() == Some(external_id))
    }

    fn report(
        &mut self,
        id: Result<u64, Kind>,
        kind: ReportKind,
        name: &str,
        at_ms: i64,
    ) -> Result<Answer, Vec<Kind>> {
        let mut broken = Vec::new();
        if matches!(kind, ReportKind::Action | ReportKind::Failed) && !valid_name(name) {
            broken.push(Kind::InvalidInput);
        }
        if !possible(at_ms) {
            broken.push(Kind::InvalidInput);
        }
        match id {
            Err(kind) => broken.push(kind),
            Ok(id) if id == 0 || id > self.messages.len() as u64 => {
                broken.push(Kind::UnknownMessage)
            }
            Ok(id) if at_ms < self.messages[id as usize - 1].sent_ms - CLOCK_SKEW_MS => {
                broken.push(Kind::InvalidInput)
            }
            Ok(_) => {}
        }
        let Ok(id) = id else {
            return reject(broken);
        };
        if !broken.is_empty() {
            return reject(broken);
        }
        let message = &mut self.messages[id as usize - 1];
        // Within the skew, an earlier time counts as the sent time.
        let at_ms = at_ms.max(message.sent_ms);
        message.reports.push(ModelReport {
            kind,
            name: name.to_string(),
            at_ms,
        });
        self.event_count += 1;
        Ok(Answer::Message(message.to_message()))
    }

    fn message(&self, id: u64) -> Result<Message, Vec<Kind>> {
        match id
            .checked_sub(1)
            .and_then(|index| self.messages.get(index as usize))
        {
            Some(message) => Ok(message.to_message()),
            None => Err(vec![Kind::UnknownMessage]),
        }
    }

    fn history(&self, user: u64, limit: usize) -> Result<Vec<Message>, Vec<Kind>> {
        if user == 0 {
            return Err(vec![Kind::InvalidInput]);
        }
        let mut mine: Vec<&ModelMessage> =
            self.messages.iter().filter(|m| m.user == user).collect();
        mine.sort_by_key(|m| std::cmp::Reverse((m.sent_ms, m.id)));
        Ok(mine
            .into_iter()
            .take(limit)
            .map(ModelMessage::to_message)
            .collect())
    }

    fn stats(&self, spec: &FilterSpec) -> Result<CommunicationStats, Vec<Kind>> {
        let mut broken = Vec::new();
        if spec.user == Some(0) {
            broken.push(Kind::InvalidInput);
        }
        if spec
            .message_type
            .as_deref()
            .is_some_and(|name| !valid_name(name))
        {
            broken.push(Kind::InvalidInput);
        }
        if let (Some(start), Some(end)) = (spec.start_ms, spec.end_ms)
            && start > end
        {
            broken.push(Kind::InvalidInput);
        }
        if !broken.is_empty() {
            return Err(broken);
        }
        let in_window = |at_ms: i64| {
            spec.start_ms.is_none_or(|start| start <= at_ms)
                && spec.end_ms.is_none_or(|end| at_ms <= end)
        };
        let selected: Vec<&ModelMessage> = self
            .messages
            .iter()
            .filter(|m| spec.user.is_none_or(|user| m.user == user))
            .filter(|m| {
                spec.message_type
                    .as_ref()
                    .is_none_or(|name| &m.message_type == name)
            })
            .filter(|m| spec.channel.is_none_or(|channel| m.channel == channel))
            .filter(|m| in_window(m.sent_ms))
            .collect();

        let count = |keep: &dyn Fn(&ModelMessage) -> bool| {
            selected.iter().filter(|m| keep(m)).count() as u64
        };
        let total = selected.len() as u64;
        let delivered = count(&|m| m.delivered_ms().is_some());
        let opened = count(&|m| m.opened_ms().is_some());
        let clicked = count(&|m| m.clicked_ms().is_some());
        let actions = count(&|m| m.has_action());
        let failed = count(&|m| m.status() == Status::Failed);
        let rate = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 * 100.0 / whole as f64
            }
        };
        let total_cost: i128 = selected.iter().map(|m| i128::from(m.cost_micros)).sum();
        // Costs are never negative, so halves away from zero are halves up.
        let average = if total == 0 {
            0
        } else {
            (2 * total_cost + i128::from(total)) / (2 * i128::from(total))
        };

        let mut status_breakdown = BTreeMap::new();
        let mut channel_breakdown = BTreeMap::new();
        let mut message_type_breakdown = BTreeMap::new();
        for m in &selected {
            *status_breakdown.entry(m.status().to_string()).or_insert(0) += 1;
            *channel_breakdown.entry(m.channel.to_string()).or_insert(0) += 1;
            *message_type_breakdown
                .entry(m.message_type.clone())
                .or_insert(0) += 1;
        }

        let outcomes: Vec<&ModelOutcome> = self
            .outcomes
            .iter()
            .filter(|o| spec.user.is_none_or(|user| o.user == user))
            .filter(|o| in_window(o.at_ms))
            .collect();
        let total_impact: i128 = outcomes.iter().map(|o| i128::from(o.amount_micros)).sum();

        Ok(CommunicationStats {
            total_messages: total,
            delivered_count: delivered,
            opened_count: opened,
            clicked_count: clicked,
            action_count: actions,
            failed_count: failed,
            delivery_rate: rate(delivered, total),
            open_rate: rate(opened, delivered),
            click_rate: rate(clicked, opened),
            action_rate: rate(actions, delivered),
            total_cost: Money::from_micros(total_cost),
            avg_cost_per_message: Money::from_micros(average),
            status_breakdown,
            channel_breakdown,
            message_type_breakdown,
            outcome_count: outcomes.len() as u64,
            total_impact: Money::from_micros(total_impact),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the store and comparing.

fn apply_to_store(store: &Store, call: &Call, message_count: u64) -> commlog::Result<Answer> {
    let id = |pick: &IdPick| message_ref(pick, message_count);
    match call {
        Call::Sent {
            user,
            channel,
            message_type,
            cost,
            at_ms,
            external_id,
        } => store
            .track_message_sent_with(
                *user,
                *channel,
                message_type,
                cost.to_f64(),
                Some(time(*at_ms)),
                external_id.as_deref(),
            )
            .map(Answer::Message),
        Call::Delivered { id: pick, at_ms } => store
            .track_message_delivered(id(pick), Some(time(*at_ms)))
            .map(Answer::Message),
        Call::Opened { id: pick, at_ms } => store
            .track_message_opened(id(pick), Some(time(*at_ms)))
            .map(Answer::Message),
        Call::Action {
            id: pick,
            action,
            at_ms,
        } => store
            .track_user_action(id(pick), action, Some(time(*at_ms)))
            .map(Answer::Message),
        Call::Failed {
            id: pick,
            reason,
            at_ms,
        } => store
            .track_message_failed(id(pick), reason, Some(time(*at_ms)))
            .map(Answer::Message),
        Call::Outcome {
            user,
            outcome,
            amount,
            at_ms,
        } => store
            .track_financial_outcome_at(*user, outcome, amount.to_f64(), time(*at_ms))
            .map(Answer::Outcome),
    }
}

/// The store's answer equals the model's, or the store's error is one the model predicts.
fn agree<T: PartialEq + std::fmt::Debug>(
    what: &str,
    store: commlog::Result<T>,
    model: Result<T, Vec<Kind>>,
) -> Result<(), TestCaseError> {
    match (store, model) {
        (Ok(got), Ok(expected)) => prop_assert_eq!(got, expected, "{}", what),
        (Err(error), Err(kinds)) => {
            let kind = kind_of(&error);
            prop_assert!(
                kind.is_some_and(|kind| kinds.contains(&kind)),
                "{}: store failed with {:?}, model expected one of {:?}",
                what,
                error,
                kinds
            );
        }
        (Ok(got), Err(kinds)) => {
            return Err(TestCaseError::fail(format!(
                "{what}: store accepted ({got:?}), model expected {kinds:?}"
            )));
        }
        (Err(error), Ok(expected)) => {
            return Err(TestCaseError::fail(format!(
                "{what}: store failed with {error:?}, model answered {expected:?}"
            )));
        }
    }
    Ok(())
}

/// Every query the test asks: every message, every user's history, every filter's stats.
fn check_queries(
    store: &Store,
    model: &Model,
    filters: &[FilterSpec],
    limits: &[usize],
) -> Result<(), TestCaseError> {
    let message_count = model.messages.len() as u64;
    for id in 0..=message_count + 1 {
        agree(
            &format!("message {id}"),
            store.get_message(id),
            model.message(id),
        )?;
    }
    for external_id in EXTERNAL_IDS.iter().chain([&EXTERNAL_ID_UNKNOWN]) {
        agree(
            &format!("message by external id {external_id}"),
            store.message_by_external_id(external_id),
            Ok(model
                .message_by_external_id(external_id)
                .map(ModelMessage::to_message)),
        )?;
    }
    for (user, limit) in (0..=6u64).zip(limits) {
        for limit in [*limit, usize::MAX] {
            agree(
                &format!("history of user {user}, limit {limit}"),
                store.get_user_communication_history(user, limit),
                model.history(user, limit),
            )?;
        }
    }
    for spec in filters.iter().chain([&FilterSpec {
        user: None,
        message_type: None,
        channel: None,
        start_ms: None,
        end_ms: None,
    }]) {
        agree(
            &format!("stats for {spec:?}"),
            store.get_communication_stats(&spec.to_filter()),
            model.stats(spec),
        )?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_answers_like_a_brute_force_model_also_after_reopen(
        calls in prop::collection::vec(call(), 0..200),
        reopen_at in any::<Index>(),
        filters in prop::collection::vec(filter_spec(), 1..10),
        limits in prop::collection::vec(0usize..12, 7),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_with(dir.path(), options()).unwrap();
        let mut model = Model::default();
        // One reopen part-way through, so that appends continue on a replayed log.
        let reopen_index = reopen_at.index(calls.len() + 1);
        for (index, call) in calls.iter().enumerate() {
            if index == reopen_index {
                store.close().unwrap();
                store = Store::open_with(dir.path(), options()).unwrap();
                prop_assert_eq!(store.open_report().events, model.event_count);
            }
            let message_count = model.messages.len() as u64;
            let got = apply_to_store(&store, call, message_count);
            let expected = model.apply(call);
            agree(&format!("call {index}: {call:?}"), got, expected)?;
        }
        check_queries(&store, &model, &filters, &limits)?;

        store.close().unwrap();
        let store = Store::open_with(dir.path(), options()).unwrap();
        prop_assert_eq!(store.open_report().events, model.event_count);
        check_queries(&store, &model, &filters, &limits)?;
        store.close().unwrap();
        let read_only = Store::open_read_only(dir.path()).unwrap();
        check_queries(&read_only, &model, &filters, &limits)?;
    }
}
