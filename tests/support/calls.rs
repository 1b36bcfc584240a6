//! The calls that the channel and cost model tests draw, and how each goes to a store.

use chrono::DateTime;
use commlog::{BudgetScope, Channel, Message, Store};
use proptest::sample::Index;

/// The actions the calls draw: a conversion needs an action containing "upgrade";
/// "clicked_upgrade" is also a click.
pub const ACTIONS: [&str; 5] = [
    "viewed_forecast",
    "clicked_link",
    "upgrade_plan",
    "clicked_upgrade",
    "dismissed",
];

/// One call on the store; a report names its message as a pick among those sent so far.
#[derive(Debug, Clone)]
pub enum Call {
    Sent {
        user: u64,
        channel: Channel,
        message_type: &'static str,
        cost_micros: i64,
        at_ms: i64,
    },
    Delivered {
        message: Index,
        at_ms: i64,
    },
    Opened {
        message: Index,
        at_ms: i64,
    },
    Action {
        message: Index,
        action: &'static str,
        at_ms: i64,
    },
    Failed {
        message: Index,
        at_ms: i64,
    },
    Outcome {
        user: u64,
        amount_micros: i64,
        at_ms: i64,
    },
    Budget {
        scope: BudgetScope,
        month: &'static str,
        amount_micros: i64,
        alert_percent: Option<u8>,
    },
}

/// Makes `call` on `store` after `message_count` sends (at least one for a report, whose pick
/// resolves to the id `pick + 1`): the message a send or a report returns, else `None`.
/// Amounts go in as dollars (`micros / 1e6`), which the store rounds back to the micros.
pub fn track(store: &Store, call: &Call, message_count: usize) -> commlog::Result<Option<Message>> {
    let id = |message: &Index| message.index(message_count) as u64 + 1;
    let time = |at_ms: &i64| DateTime::from_timestamp_millis(*at_ms).unwrap();
    let dollars = |micros: &i64| *micros as f64 / 1e6;
    match call {
        Call::Sent {
            user,
            channel,
            message_type,
            cost_micros,
            at_ms,
        } => store
            .track_message_sent_at(
                *user,
                *channel,
                message_type,
                dollars(cost_micros),
                time(at_ms),
            )
            .map(Some),
        Call::Delivered { message, at_ms } => store
            .track_message_delivered(id(message), Some(time(at_ms)))
            .map(Some),
        Call::Opened { message, at_ms } => store
            .track_message_opened(id(message), Some(time(at_ms)))
            .map(Some),
        Call::Action {
            message,
            action,
            at_ms,
        } => store
            .track_user_action(id(message), action, Some(time(at_ms)))
            .map(Some),
        Call::Failed { message, at_ms } => store
            .track_message_failed(id(message), "undelivered", Some(time(at_ms)))
            .map(Some),
        Call::Outcome {
            user,
            amount_micros,
            at_ms,
        } => store
            .track_financial_outcome_at(
                *user,
                "bill_paid_on_time",
                dollars(amount_micros),
                time(at_ms),
            )
            .map(|_| None),
        Call::Budget {
            scope,
            month,
            amount_micros,
            alert_percent,
        } => store
            .set_budget(*scope, month, dollars(amount_micros), *alert_percent)
            .map(|()| None),
    }
}
