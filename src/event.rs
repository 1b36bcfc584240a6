//! The facts: identifiers, channels, and the events the log records.
//!
//! Events only grow: new variants go at the end and no variant is ever reordered or removed,
//! because the codec tags variants by position.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::{EXTERNAL_ID_BYTES_MAX, NAME_BYTES_MAX};
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

/// How a call names a message: by the id commlog assigned, or by the external id it was sent
/// with. `u64`, [`MessageId`], `&str` and `String` convert into it, so every call that takes a
/// message takes either.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageRef {
    /// The id commlog assigned.
    Id(MessageId),
    /// The external id given to `Store::track_message_sent_with`.
    External(String),
}

impl From<MessageId> for MessageRef {
    fn from(id: MessageId) -> MessageRef {
        MessageRef::Id(id)
    }
}

impl From<u64> for MessageRef {
    fn from(id: u64) -> MessageRef {
        MessageRef::Id(MessageId(id))
    }
}

impl From<&str> for MessageRef {
    fn from(external_id: &str) -> MessageRef {
        MessageRef::External(external_id.to_string())
    }
}

impl From<String> for MessageRef {
    fn from(external_id: String) -> MessageRef {
        MessageRef::External(external_id)
    }
}

impl From<&String> for MessageRef {
    fn from(external_id: &String) -> MessageRef {
        MessageRef::External(external_id.clone())
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
            .find(|channel| channel.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| Error::invalid("channel", text, "must be sms, email, push or in_app"))
    }
}

/// Which spend a budget covers: every channel together, or one channel. Written (also in
/// JSON) as "all" or the channel's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetScope {
    /// All channels together.
    All,
    /// One channel.
    Channel(Channel),
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetScope::All => f.write_str("all"),
            BudgetScope::Channel(channel) => channel.fmt(f),
        }
    }
}

impl FromStr for BudgetScope {
    type Err = Error;

    /// "all", or a channel name.
    fn from_str(text: &str) -> Result<BudgetScope> {
        if text == "all" {
            return Ok(BudgetScope::All);
        }
        text.parse::<Channel>()
            .map(BudgetScope::Channel)
            .map_err(|_| Error::invalid("scope", text, "must be all, sms, email, push or in_app"))
    }
}

impl Serialize for BudgetScope {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BudgetScope {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<BudgetScope, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A calendar month, UTC: `2025-01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// The month `year`-`month` (year 1..=9999, month 1..=12).
    pub fn new(year: i32, month: u32) -> Result<Month> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(Error::invalid(
                "month",
                format!("{year:04}-{month:02}"),
                "must be YYYY-MM, year 1 to 9999",
            ));
        }
        Ok(Month { year, month })
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month of the year, 1 to 12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// Months since January of year 0 (the log's encoding).
    pub(crate) fn index(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    pub(crate) fn from_index(index: i64) -> Option<Month> {
        let year = i32::try_from(index.div_euclid(12)).ok()?;
        let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
        Month::new(year, month).ok()
    }

    /// The month's first millisecond and the first millisecond after it, UTC.
    pub fn range_ms(self) -> (i64, i64) {
        let first = |year: i32, month: u32| {
            chrono::NaiveDate::from_ymd_opt(year, month, 1)
                .expect("a valid month")
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .timestamp_millis()
        };
        let (next_year, next_month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        (first(self.year, self.month), first(next_year, next_month))
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = Error;

    /// `YYYY-MM`.
    fn from_str(text: &str) -> Result<Month> {
        let bad = || Error::invalid("month", text, "must be YYYY-MM, year 1 to 9999");
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        if year.len() != 4
            || month.len() != 2
            || !(year.bytes().chain(month.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        Month::new(
            year.parse().map_err(|_| bad())?,
            month.parse().map_err(|_| bad())?,
        )
        .map_err(|_| bad())
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Month, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
        /// The provider's message id or the caller's idempotency key, unique in the store.
        external_id: Option<&'a str>,
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
    /// A monthly budget was set (a later one for the same scope and month replaces it). Its
    /// time is when it was set; views never take "now" from it.
    BudgetSet {
        /// What spend it covers.
        scope: BudgetScope,
        /// The month it covers.
        month: Month,
        /// The budget (more than zero).
        amount: Money,
        /// Alert when spend reaches this percentage of the budget (1 to 100).
        alert_percent: u8,
        /// When it was set.
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
            | Event::FinancialOutcome { at_ms, .. }
            | Event::BudgetSet { at_ms, .. } => at_ms,
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
            Event::FinancialOutcome { .. } | Event::BudgetSet { .. } => None,
        }
    }

    /// The event's kind as a lowercase name: "sent", "delivered", "opened", "action",
    /// "failed", "outcome", "budget".
    pub fn kind(&self) -> &'static str {
        match self {
            Event::MessageSent { .. } => "sent",
            Event::MessageDelivered { .. } => "delivered",
            Event::MessageOpened { .. } => "opened",
            Event::UserAction { .. } => "action",
            Event::MessageFailed { .. } => "failed",
            Event::FinancialOutcome { .. } => "outcome",
            Event::BudgetSet { .. } => "budget",
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

/// Checks an external id: 1 to 128 bytes of printable ASCII without space (`0x21..=0x7E`), as
/// provider message ids (Twilio's `SM…`, SendGrid's `X-Message-Id`, Resend's ids) and
/// idempotency keys are. The error names the field `external_id`.
///
/// ```
/// assert!(commlog::validate_external_id("SM0123456789abcdef0123456789abcdef").is_ok());
/// assert!(commlog::validate_external_id("has space").is_err());
/// assert!(commlog::validate_external_id("").is_err());
/// ```
pub fn validate_external_id(external_id: &str) -> Result<()> {
    if external_id.is_empty() || external_id.len() > EXTERNAL_ID_BYTES_MAX {
        return Err(Error::invalid(
            "external_id",
            external_id,
            format!("must be 1 to {EXTERNAL_ID_BYTES_MAX} bytes"),
        ));
    }
    if !external_id.bytes().all(is_external_id_byte) {
        return Err(Error::invalid(
            "external_id",
            external_id,
            "must use only printable ASCII without space (0x21 to 0x7E)",
        ));
    }
    Ok(())
}

/// True when `external_id` is a valid external id (for the codec's read-side check).
pub(crate) fn is_valid_external_id(external_id: &str) -> bool {
    !external_id.is_empty()
        && external_id.len() <= EXTERNAL_ID_BYTES_MAX
        && external_id.bytes().all(is_external_id_byte)
}

fn is_external_id_byte(byte: u8) -> bool {
    matches!(byte, 0x21..=0x7E)
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
