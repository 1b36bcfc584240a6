//! What queries return: a message's current record, and a recorded outcome.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{Channel, MessageId, UserId};
use crate::money::Money;

/// The furthest stage a message reached; `Failed` only when it never reached `Delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Sent, nothing further reported.
    Sent,
    /// Delivered (reported, or implied by an open or an action).
    Delivered,
    /// Opened (reported, or implied by a click).
    Opened,
    /// Clicked: an action whose name contains "click".
    Clicked,
    /// A failure was reported and the message never reached `Delivered`.
    Failed,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Sent,
        Status::Delivered,
        Status::Opened,
        Status::Clicked,
        Status::Failed,
    ];

    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Opened => "opened",
            Status::Clicked => "clicked",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;

    fn from_str(text: &str) -> Result<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| {
                Error::invalid(
                    "status",
                    text,
                    "must be sent, delivered, opened, clicked or failed",
                )
            })
    }
}

/// A message as the events so far describe it. Times are UTC with millisecond resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// Its recipient.
    pub user_id: UserId,
    /// How it was sent.
    pub channel: Channel,
    /// What kind of message. Shared with the store's table of names (as is `action_taken`), so
    /// a listing of messages allocates no strings.
    pub message_type: Arc<str>,
    /// The furthest stage reached.
    pub status: Status,
    /// What sending it cost.
    #[serde(rename = "cost_micros")]
    pub cost: Money,
    /// When it was sent.
    #[serde(with = "crate::serde_time")]
    pub sent_at: DateTime<Utc>,
    /// Earliest delivery reported or implied.
    #[serde(default, with = "crate::serde_time::optional")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Earliest open reported or implied.
    #[serde(default, with = "crate::serde_time::optional")]
    pub opened_at: Option<DateTime<Utc>>,
    /// Earliest click (an action whose name contains "click").
    #[serde(default, with = "crate::serde_time::optional")]
    pub clicked_at: Option<DateTime<Utc>>,
    /// Earliest failure reported, kept even when a delivery later wins over it.
    #[serde(default, with = "crate::serde_time::optional")]
    pub failed_at: Option<DateTime<Utc>>,
    /// The reason of the earliest failure reported, e.g. "undelivered".
    pub failure_reason: Option<Arc<str>>,
    /// The action with the latest time (ties: the one appended later).
    pub action_taken: Option<Arc<str>>,
}

/// A financial outcome as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FinancialOutcome {
    /// The user.
    pub user_id: UserId,
    /// What happened.
    pub outcome: String,
    /// Its value (negative: a loss).
    #[serde(rename = "amount_micros")]
    pub amount: Money,
    /// When.
    #[serde(with = "crate::serde_time")]
    pub at: DateTime<Utc>,
}

/// Milliseconds since the Unix epoch to a UTC time. Every `i64` of milliseconds that came from
/// a `DateTime<Utc>` converts back.
pub(crate) fn time_from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("stored times come from DateTime<Utc>")
}
