//! The facts: identifiers, channels, and the events the log records.
//!
//! Events only grow: new variants go at the end and no variant is ever reordered or removed,
//! because the codec tags variants by position.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::NAME_BYTES_MAX;
use crate::money::Money;

/// A user of the finance app. Id 0 is invalid.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UserId(pub u64);

/// A tracked message. Ids are dense, assigned in append order from 1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl From<u64> for UserId {
    fn from(id: u64) -> UserId {
        UserId(id)
    }
}

impl From<u64> for MessageId {
    fn from(id: u64) -> MessageId {
        MessageId(id)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a message reached the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Text message: "sms".
    Sms,
    /// E-mail: "email".
    Email,
    /// Mobile push notification: "push".
    Push,
    /// Message inside the app: "in_app".
    InApp,
}

impl Channel {
    /// Every channel, in the order used for tie-breaks.
    pub const ALL: [Channel; 4] = [Channel::Sms, Channel::Email, Channel::Push, Channel::InApp];

    /// The lowercase name: "sms", "email", "push", "in_app".
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::InApp => "in_app",
        }
    }

    /// The channel's position in [`Channel::ALL`], also its byte in the log.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = Error;

    fn from_str(text: &str) -> Result<Channel> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.as_str() == text)
            .ok_or_else(|| Error::invalid("channel", text, "must be sms, email, push or in_app"))
    }
}

/// One fact in the log. Times are milliseconds since the Unix epoch, UTC, as reported by the
/// caller (or the clock at the call when the caller gave none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message was sent; it gets the next message id.
    MessageSent {
        /// The id assigned to the message.
        message_id: MessageId,
        /// Its recipient.
        user_id: UserId,
        /// How it was sent.
        channel: Channel,
        /// What kind of message, e.g. "low_balance".
        message_type: &'a str,
        /// What sending it cost (never negative).
        cost: Money,
        /// When it was sent.
        at_ms: i64,
    },
    /// The provider reported the message delivered.
    MessageDelivered {
        /// The message.
        message_id: MessageId,
        /// When it was delivered.
        at_ms: i64,
    },
    /// The user opened the message.
    MessageOpened {
        /// The message.
        message_id: MessageId,
        /// When it was opened.
        at_ms: i64,
    },
    /// The user acted on the message; an action whose name contains "click" is a click.
    UserAction {
        /// The message.
        message_id: MessageId,
        /// What the user did, e.g. "viewed_forecast".
        action: &'a str,
        /// When.
        at_ms: i64,
    },
    /// The provider reported a failure or bounce.
    MessageFailed {
        /// The message.
        message_id: MessageId,
        /// Why, e.g. "undelivered".
        reason: &'a str,
        /// When.
        at_ms: i64,
    },
    /// A financial outcome for a user; negative amounts are losses.
    FinancialOutcome {
        /// The user.
        user_id: UserId,
        /// What happened, e.g. "bill_paid_on_time".
        outcome: &'a str,
        /// Its value.
        amount: Money,
        /// When.
        at_ms: i64,
    },
}

impl Event<'_> {
    /// The event's own time: what views use.
    pub fn at_ms(&self) -> i64 {
        match *self {
            Event::MessageSent { at_ms, .. }
            | Event::MessageDelivered { at_ms, .. }
            | Event::MessageOpened { at_ms, .. }
            | Event::UserAction { at_ms, .. }
            | Event::MessageFailed { at_ms, .. }
            | Event::FinancialOutcome { at_ms, .. } => at_ms,
        }
    }

    /// The message the event is about, if any.
    pub fn message_id(&self) -> Option<MessageId> {
        match *self {
            Event::MessageSent { message_id, .. }
            | Event::MessageDelivered { message_id, .. }
            | Event::MessageOpened { message_id, .. }
            | Event::UserAction { message_id, .. }
            | Event::MessageFailed { message_id, .. } => Some(message_id),
            Event::FinancialOutcome { .. } => None,
        }
    }

    /// The event's kind as a lowercase name: "sent", "delivered", "opened", "action",
    /// "failed", "outcome".
    pub fn kind(&self) -> &'static str {
        match self {
            Event::MessageSent { .. } => "sent",
            Event::MessageDelivered { .. } => "delivered",
            Event::MessageOpened { .. } => "opened",
            Event::UserAction { .. } => "action",
            Event::MessageFailed { .. } => "failed",
            Event::FinancialOutcome { .. } => "outcome",
        }
    }
}

/// An event as the log holds it: with its sequence number, the wall-clock time it was
/// appended, and the durability it knew of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedEvent<'a> {
    /// Position in the log, dense from 1.
    pub seq: u64,
    /// Wall-clock time of the append, ms since the Unix epoch (for audits; views ignore it).
    pub appended_ms: i64,
    /// The highest sequence number known to be durable when this event was written.
    pub durable_seq: u64,
    /// The fact.
    pub event: Event<'a>,
}

/// Checks a message type, action, reason or outcome name: 1 to 64 bytes of `[a-z0-9_.-]`;
/// the error names `field`. The tracking calls check this themselves; it is public for callers
/// that want to check input before they open a store.
///
/// ```
/// assert!(commlog::validate_name("message_type", "low_balance").is_ok());
/// assert!(commlog::validate_name("message_type", "Low Balance").is_err());
/// ```
pub fn validate_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(Error::invalid(field, name, "must be 1 to 64 bytes"));
    }
    if !name.bytes().all(is_name_byte) {
        return Err(Error::invalid(
            field,
            name,
            "must use only a-z, 0-9, '_', '.' and '-'",
        ));
    }
    Ok(())
}

/// True when `name` is a valid name (for the codec's read-side check).
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_BYTES_MAX && name.bytes().all(is_name_byte)
}

fn is_name_byte(byte: u8) -> bool {
    matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-')
}

/// An action whose name contains "click" is a click (as the original service decided).
pub(crate) fn is_click(action: &str) -> bool {
    action.contains("click")
}
