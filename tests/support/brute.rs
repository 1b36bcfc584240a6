//! A brute-force model of what the calls of [`super::calls`] leave: every message recomputed
//! from its reports by the rules of docs/SEMANTICS.md ("Status"), the stats by scanning every
//! message, so that a store (a reopened one, one loaded from a snapshot, a reader refreshed
//! part-way) is checked against it. Budgets count as events only; the other views are
//! compared store against store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use commlog::{
    Channel, CommunicationStats, Message, MessageId, Money, StatsFilter, Status, Store, UserId,
};

use super::calls::{Call, MESSAGE_TYPES, USER_COUNT};
use super::model::{CLOCK_SKEW_MS, ReportKind, delivered_ms, failed_ms, is_click};

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

#[derive(Debug, Clone)]
struct Report {
    kind: ReportKind,
    name: &'static str,
    at_ms: i64,
}

impl Report {
    fn is_click(&self) -> bool {
        self.kind == ReportKind::Action && is_click(self.name)
    }
}

#[derive(Debug, Clone)]
struct BruteMessage {
    id: u64,
    user: u64,
    channel: Channel,
    message_type: &'static str,
    cost_micros: i64,
    sent_ms: i64,
    external_id: Option<&'static str>,
    /// In append order.
    reports: Vec<Report>,
}

impl BruteMessage {
    fn earliest(&self, counts: impl Fn(&Report) -> bool) -> Option<i64> {
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
        self.earliest(Report::is_click)
    }

    fn failed_ms(&self) -> Option<i64> {
        failed_ms(self.kinds())
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
    fn action_taken(&self) -> Option<&'static str> {
        let mut latest: Option<&Report> = None;
        for report in self.reports.iter().filter(|r| r.kind == ReportKind::Action) {
            if latest.is_none_or(|latest| report.at_ms >= latest.at_ms) {
                latest = Some(report);
            }
        }
        latest.map(|report| report.name)
    }

    /// The reason of the earliest failure; ties go to the one appended first.
    fn failure_reason(&self) -> Option<&'static str> {
        let mut earliest: Option<&Report> = None;
        for report in self.reports.iter().filter(|r| r.kind == ReportKind::Failed) {
            if earliest.is_none_or(|earliest| report.at_ms < earliest.at_ms) {
                earliest = Some(report);
            }
        }
        earliest.map(|report| report.name)
    }

    fn to_message(&self) -> Message {
        Message {
            id: MessageId(self.id),
            user_id: UserId(self.user),
            channel: self.channel,
            message_type: self.message_type.into(),
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

/// A stats filter the model answers: every part optional.
#[derive(Debug, Clone, Default)]
pub struct StatsSpec {
    pub user: Option<u64>,
    pub message_type: Option<&'static str>,
    pub channel: Option<Channel>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

impl StatsSpec {
    pub fn to_filter(&self) -> StatsFilter {
        let mut filter = StatsFilter::new();
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

/// The stats filters [`check`] asks: all, per user, per type, per channel, and each of
/// `windows_ms` (start, end), alone and per user.
pub fn stats_specs(windows_ms: &[(i64, i64)]) -> Vec<StatsSpec> {
    let mut specs = vec![StatsSpec::default()];
    specs.extend((1..=USER_COUNT).map(|user| StatsSpec {
        user: Some(user),
        ..StatsSpec::default()
    }));
    specs.extend(MESSAGE_TYPES.iter().map(|message_type| StatsSpec {
        message_type: Some(message_type),
        ..StatsSpec::default()
    }));
    specs.extend(Channel::ALL.iter().map(|channel| StatsSpec {
        channel: Some(*channel),
        ..StatsSpec::default()
    }));
    for (start_ms, end_ms) in windows_ms {
        for user in [None, Some(1)] {
            specs.push(StatsSpec {
                user,
                start_ms: Some(*start_ms),
                end_ms: Some(*end_ms),
                ..StatsSpec::default()
            });
        }
    }
    specs
}

#[derive(Debug, Clone)]
struct BruteOutcome {
    user: u64,
    amount_micros: i64,
    at_ms: i64,
}

/// The model: the messages and outcomes of the accepted calls, and how many events they
/// appended.
#[derive(Debug, Clone, Default)]
pub struct Brute {
    messages: Vec<BruteMessage>,
    outcomes: Vec<BruteOutcome>,
    /// Events appended (accepted calls that changed something).
    pub event_count: u64,
}

impl Brute {
    /// Messages sent so far.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Applies `call` as [`super::calls::track`] makes it after [`Brute::message_count`]
    /// sends (at least one for a report); returns whether the store accepts it (each accepted
    /// call appends one event).
    pub fn apply(&mut self, call: &Call) -> bool {
        let message_count = self.messages.len();
        let accepted = match call {
            Call::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                at_ms,
            } => {
                self.push_message(*user, *channel, message_type, *cost_micros, *at_ms, None);
                true
            }
            Call::Delivered { message, at_ms } => self.report(
                message.index(message_count),
                ReportKind::Delivered,
                "",
                *at_ms,
            ),
            Call::Opened { message, at_ms } => {
                self.report(message.index(message_count), ReportKind::Opened, "", *at_ms)
            }
            Call::Action {
                message,
                action,
                at_ms,
            } => self.report(
                message.index(message_count),
                ReportKind::Action,
                action,
                *at_ms,
            ),
            Call::Failed { message, at_ms } => self.report(
                message.index(message_count),
                ReportKind::Failed,
                "undelivered",
                *at_ms,
            ),
            Call::Outcome {
                user,
                amount_micros,
                at_ms,
            } => {
                self.outcomes.push(BruteOutcome {
                    user: *user,
                    amount_micros: *amount_micros,
                    at_ms: *at_ms,
                });
                true
            }
            Call::Budget { .. } => true,
        };
        if accepted {
            self.event_count += 1;
        }
        accepted
    }

    /// A send carrying `external_id`: a new message (true), the same send again (appends
    /// nothing: false, with the message), or another send under a used id (refused: false,
    /// without one). Returns whether it appended, and the message the store answers with.
    pub fn send_with_external_id(
        &mut self,
        user: u64,
        channel: Channel,
        message_type: &'static str,
        cost_micros: i64,
        at_ms: i64,
        external_id: &'static str,
    ) -> (bool, Option<Message>) {
        if let Some(existing) = self
            .messages
            .iter()
            .find(|message| message.external_id == Some(external_id))
        {
            let same = (
                existing.user,
                existing.channel,
                existing.message_type,
                existing.cost_micros,
                existing.sent_ms,
            ) == (user, channel, message_type, cost_micros, at_ms);
            return (false, same.then(|| existing.to_message()));
        }
        self.push_message(
            user,
            channel,
            message_type,
            cost_micros,
            at_ms,
            Some(external_id),
        );
        self.event_count += 1;
        (true, Some(self.messages.last().unwrap().to_message()))
    }

    fn push_message(
        &mut self,
        user: u64,
        channel: Channel,
        message_type: &'static str,
        cost_micros: i64,
        sent_ms: i64,
        external_id: Option<&'static str>,
    ) {
        self.messages.push(BruteMessage {
            id: self.messages.len() as u64 + 1,
            user,
            channel,
            message_type,
            cost_micros,
            sent_ms,
            external_id,
            reports: Vec::new(),
        });
    }

    /// A report on the message at `index`: refused if more than the clock skew before its
    /// send, else taken at no earlier than the send.
    fn report(&mut self, index: usize, kind: ReportKind, name: &'static str, at_ms: i64) -> bool {
        let message = &mut self.messages[index];
        if at_ms < message.sent_ms - CLOCK_SKEW_MS {
            return false;
        }
        message.reports.push(Report {
            kind,
            name,
            at_ms: at_ms.max(message.sent_ms),
        });
        true
    }

    /// The message with id `id`, if one was sent.
    pub fn message(&self, id: u64) -> Option<Message> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.messages.get(index).map(BruteMessage::to_message)
    }

    /// The message sent with `external_id`, if one was.
    pub fn message_by_external_id(&self, external_id: &str) -> Option<Message> {
        self.messages
            .iter()
            .find(|message| message.external_id == Some(external_id))
            .map(BruteMessage::to_message)
    }

    /// Every message of `user`, newest sent first (ties: higher id first).
    pub fn history(&self, user: u64) -> Vec<Message> {
        let mut mine: Vec<&BruteMessage> =
            self.messages.iter().filter(|m| m.user == user).collect();
        mine.sort_by_key(|m| std::cmp::Reverse((m.sent_ms, m.id)));
        mine.into_iter().map(BruteMessage::to_message).collect()
    }

    /// The stats `spec` selects (a valid filter).
    pub fn stats(&self, spec: &StatsSpec) -> CommunicationStats {
        let in_window = |at_ms: i64| {
            spec.start_ms.is_none_or(|start| start <= at_ms)
                && spec.end_ms.is_none_or(|end| at_ms <= end)
        };
        let selected: Vec<&BruteMessage> = self
            .messages
            .iter()
            .filter(|m| spec.user.is_none_or(|user| m.user == user))
            .filter(|m| spec.message_type.is_none_or(|name| m.message_type == name))
            .filter(|m| spec.channel.is_none_or(|channel| m.channel == channel))
            .filter(|m| in_window(m.sent_ms))
            .collect();
        let count = |keep: &dyn Fn(&BruteMessage) -> bool| {
            selected.iter().filter(|m| keep(m)).count() as u64
        };
        let total = selected.len() as u64;
        let delivered = count(&|m| m.delivered_ms().is_some());
        let opened = count(&|m| m.opened_ms().is_some());
        let clicked = count(&|m| m.clicked_ms().is_some());
        let actions = count(&|m| m.action_taken().is_some());
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
                .entry(m.message_type.to_string())
                .or_insert(0) += 1;
        }
        let outcomes: Vec<&BruteOutcome> = self
            .outcomes
            .iter()
            .filter(|o| spec.user.is_none_or(|user| o.user == user))
            .filter(|o| in_window(o.at_ms))
            .collect();
        let total_impact: i128 = outcomes.iter().map(|o| i128::from(o.amount_micros)).sum();
        CommunicationStats {
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
        }
    }
}

/// Checks that `store` answers as `model`: every message (and the ids beside them), every
/// user's history, each of `external_ids`, and the stats of [`stats_specs`] over `windows_ms`.
/// The error names the first query that differs.
pub fn check(
    store: &Store,
    model: &Brute,
    external_ids: &[&str],
    windows_ms: &[(i64, i64)],
) -> Result<(), String> {
    fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: T, expected: T) -> Result<(), String> {
        match got == expected {
            true => Ok(()),
            false => Err(format!("{what}: store {got:?}, model {expected:?}")),
        }
    }
    let message_count = model.messages.len() as u64;
    for id in 1..=message_count {
        same(
            &format!("message {id}"),
            store.get_message(id).ok(),
            model.message(id),
        )?;
    }
    same(
        "the message after the last",
        store.get_message(message_count + 1).ok(),
        None,
    )?;
    for external_id in external_ids {
        same(
            &format!("message by external id {external_id}"),
            store.message_by_external_id(external_id).unwrap(),
            model.message_by_external_id(external_id),
        )?;
    }
    for user in 1..=USER_COUNT + 1 {
        same(
            &format!("history of user {user}"),
            store
                .get_user_communication_history(user, usize::MAX)
                .unwrap(),
            model.history(user),
        )?;
    }
    for spec in stats_specs(windows_ms) {
        same(
            &format!("stats for {spec:?}"),
            store.get_communication_stats(&spec.to_filter()).unwrap(),
            model.stats(&spec),
        )?;
    }
    Ok(())
}
