//! The calls that the channel and cost model tests draw, and how each goes to a store.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use commlog::{BudgetScope, Channel, Message, MessageId, MessageRef, Store};
use proptest::prelude::*;
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

/// Times the generated calls take: these anchors, on and beside day and month boundaries, plus
/// 0..=`OFFSET_MS_MAX` ms; a report at an earlier anchor than its message is refused.
pub const ANCHORS: [&str; 6] = [
    "2024-12-31T23:59:59.995Z",
    "2025-01-01T00:00:00.000Z",
    "2025-01-15T12:00:00.000Z",
    "2025-01-31T23:59:59.995Z",
    "2025-02-28T23:59:59.995Z",
    "2025-03-31T23:59:59.995Z",
];
/// The spread of times around each anchor, in ms.
pub const OFFSET_MS_MAX: i64 = 10;
/// The months of the anchors, and the month after them.
pub const MONTHS: [&str; 5] = ["2024-12", "2025-01", "2025-02", "2025-03", "2025-04"];
pub const MESSAGE_TYPES: [&str; 3] = ["low_balance", "weekly_checkin", "bill_due"];
/// The users the generated calls name: 1 to `USER_COUNT`.
pub const USER_COUNT: u64 = 3;

/// The millisecond of `text` (RFC 3339).
pub fn anchor_ms(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

/// Windows (start, end) over [`ANCHORS`]: edges on, between and beside the times.
pub fn windows_ms() -> Vec<(i64, i64)> {
    let at = |anchor: usize, offset_ms: i64| anchor_ms(ANCHORS[anchor]) + offset_ms;
    vec![
        (at(0, 0), at(2, OFFSET_MS_MAX)),
        (at(1, 3), at(4, 4)),
        (at(3, OFFSET_MS_MAX + 1), at(5, OFFSET_MS_MAX)),
        (at(2, 5), at(2, 5)),
    ]
}

/// A time among [`ANCHORS`].
pub fn at_ms() -> impl Strategy<Value = i64> {
    (0..ANCHORS.len(), 0..=OFFSET_MS_MAX)
        .prop_map(|(anchor, offset)| anchor_ms(ANCHORS[anchor]) + offset)
}

pub fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

/// Any call: sends, reports (some refused as earlier than their message), outcomes and
/// budgets, over [`USER_COUNT`] users, [`MESSAGE_TYPES`] and [`ANCHORS`].
pub fn any_call() -> impl Strategy<Value = Call> {
    let user = || 1..=USER_COUNT;
    let scope = prop_oneof![
        Just(BudgetScope::All),
        channel().prop_map(BudgetScope::Channel)
    ];
    prop_oneof![
        5 => (user(), channel(), prop::sample::select(MESSAGE_TYPES.to_vec()),
              prop_oneof![Just(0i64), 1..=60_000i64], at_ms())
            .prop_map(|(user, channel, message_type, cost_micros, at_ms)| Call::Sent {
                user, channel, message_type, cost_micros, at_ms,
            }),
        3 => (any::<Index>(), at_ms()).prop_map(|(message, at_ms)| Call::Delivered { message, at_ms }),
        2 => (any::<Index>(), at_ms()).prop_map(|(message, at_ms)| Call::Opened { message, at_ms }),
        3 => (any::<Index>(), prop::sample::select(ACTIONS.to_vec()), at_ms())
            .prop_map(|(message, action, at_ms)| Call::Action { message, action, at_ms }),
        1 => (any::<Index>(), at_ms()).prop_map(|(message, at_ms)| Call::Failed { message, at_ms }),
        2 => (user(), -50_000_000i64..=50_000_000, at_ms())
            .prop_map(|(user, amount_micros, at_ms)| Call::Outcome { user, amount_micros, at_ms }),
        1 => (scope, prop::sample::select(MONTHS.to_vec()), 1..=200_000i64,
              prop::option::of(1..=100u8))
            .prop_map(|(scope, month, amount_micros, alert_percent)| Call::Budget {
                scope, month, amount_micros, alert_percent,
            }),
    ]
}

impl Call {
    /// Whether the call names a message (and so needs one sent before it).
    pub fn is_report(&self) -> bool {
        matches!(
            self,
            Call::Delivered { .. }
                | Call::Opened { .. }
                | Call::Action { .. }
                | Call::Failed { .. }
        )
    }
}

/// `call` as one call of a batch, after `message_count` sends (at least one for a report),
/// resolved as [`track`] resolves it.
pub fn batch_call(call: &Call, message_count: usize) -> commlog::Call<'static> {
    let id = |message: &Index| MessageRef::Id(MessageId(message.index(message_count) as u64 + 1));
    let time = |at_ms: &i64| Some(DateTime::<Utc>::from_timestamp_millis(*at_ms).unwrap());
    let dollars = |micros: &i64| *micros as f64 / 1e6;
    match call {
        Call::Sent {
            user,
            channel,
            message_type,
            cost_micros,
            at_ms,
        } => commlog::Call::Sent {
            user: (*user).into(),
            channel: *channel,
            message_type: Cow::Borrowed(message_type),
            cost: dollars(cost_micros),
            sent_at: time(at_ms),
            external_id: None,
        },
        Call::Delivered { message, at_ms } => commlog::Call::Delivered {
            message: id(message),
            at: time(at_ms),
        },
        Call::Opened { message, at_ms } => commlog::Call::Opened {
            message: id(message),
            at: time(at_ms),
        },
        Call::Action {
            message,
            action,
            at_ms,
        } => commlog::Call::Action {
            message: id(message),
            action: Cow::Borrowed(action),
            at: time(at_ms),
        },
        Call::Failed { message, at_ms } => commlog::Call::Failed {
            message: id(message),
            reason: Cow::Borrowed("undelivered"),
            at: time(at_ms),
        },
        Call::Outcome {
            user,
            amount_micros,
            at_ms,
        } => commlog::Call::Outcome {
            user: (*user).into(),
            outcome: Cow::Borrowed("bill_paid_on_time"),
            amount: dollars(amount_micros),
            at: time(at_ms),
        },
        Call::Budget {
            scope,
            month,
            amount_micros,
            alert_percent,
        } => commlog::Call::Budget {
            scope: *scope,
            month: Cow::Borrowed(month),
            amount: dollars(amount_micros),
            alert_percent: *alert_percent,
        },
    }
}
