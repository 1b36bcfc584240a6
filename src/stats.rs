//! The stats query: its filter and its answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{Channel, UserId, validate_name};
use crate::limits::USER_ID_MAX;
use crate::money::Money;

/// Which messages (and outcomes) `Store::get_communication_stats` covers. Every part is
/// optional; an empty filter covers everything.
///
/// ```
/// use commlog::{Channel, StatsFilter};
/// let filter = StatsFilter::new().user(123).message_type("low_balance").channel(Channel::Sms);
/// assert_eq!(filter.channel, Some(Channel::Sms));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatsFilter {
    /// Only this user's messages and outcomes.
    pub user: Option<UserId>,
    /// Only messages of this type.
    pub message_type: Option<String>,
    /// Only messages sent on this channel.
    pub channel: Option<Channel>,
    /// Only messages sent (outcomes happened) at or after this time.
    #[serde(default, with = "crate::serde_time::optional")]
    pub start: Option<DateTime<Utc>>,
    /// Only messages sent (outcomes happened) at or before this time.
    #[serde(default, with = "crate::serde_time::optional")]
    pub end: Option<DateTime<Utc>>,
}

impl StatsFilter {
    /// The empty filter: everything.
    pub fn new() -> StatsFilter {
        StatsFilter::default()
    }
}

filter_setters! {
    StatsFilter {
        /// Only this user.
        user,
        /// Only this message type.
        message_type,
        /// Only this channel.
        channel,
        /// Only at or after `start` (inclusive).
        start,
        /// Only at or before `end` (inclusive).
        end,
    }
}

/// Counts, rates and money over the messages a [`StatsFilter`] selects. Rates are percent,
/// 0.0 when their denominator is 0. See docs/SEMANTICS.md.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommunicationStats {
    /// Messages selected.
    pub total_messages: u64,
    /// Of them, delivered or further.
    pub delivered_count: u64,
    /// Opened or further.
    pub opened_count: u64,
    /// Clicked.
    pub clicked_count: u64,
    /// With any user action.
    pub action_count: u64,
    /// Failed (never delivered).
    pub failed_count: u64,
    /// delivered / total, percent.
    pub delivery_rate: f64,
    /// opened / delivered, percent.
    pub open_rate: f64,
    /// clicked / opened, percent.
    pub click_rate: f64,
    /// actions / delivered, percent.
    pub action_rate: f64,
    /// Exact sum of costs.
    #[serde(rename = "total_cost_micros")]
    pub total_cost: Money,
    /// total_cost / total_messages, rounded to the micro, halves away from zero.
    #[serde(rename = "avg_cost_per_message_micros")]
    pub avg_cost_per_message: Money,
    /// Messages per status name, non-zero entries only.
    pub status_breakdown: BTreeMap<String, u64>,
    /// Messages per channel name, non-zero entries only.
    pub channel_breakdown: BTreeMap<String, u64>,
    /// Messages per message type, non-zero entries only.
    pub message_type_breakdown: BTreeMap<String, u64>,
    /// Financial outcomes matching the user filter and the time range.
    pub outcome_count: u64,
    /// Exact sum of their amounts.
    #[serde(rename = "total_impact_micros")]
    pub total_impact: Money,
}

/// The first and last millisecond RFC 3339 writes: 0000-01-01T00:00:00.000Z and
/// 9999-12-31T23:59:59.999Z.
const RFC_3339_MS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

/// The checks every query filter shares: a user id of at least 1, a valid message type name, a
/// start and an end within the years RFC 3339 writes (an answer holds them, and its JSON must
/// read back), a start no later than the end.
pub(crate) fn validate_selection(
    user: Option<UserId>,
    message_type: Option<&str>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Result<()> {
    if let Some(user) = user {
        validate_user(user)?;
    }
    if let Some(message_type) = message_type {
        validate_name("message_type", message_type)?;
    }
    for (field, time) in [("start", start), ("end", end)] {
        if let Some(time) = time
            && !RFC_3339_MS.contains(&time.timestamp_millis())
        {
            return Err(Error::invalid(
                field,
                crate::serde_time::to_text(time),
                "must be within the years 0000 to 9999, which RFC 3339 writes",
            ));
        }
    }
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        return Err(Error::invalid(
            "end",
            crate::serde_time::to_text(end),
            "must not be before start",
        ));
    }
    Ok(())
}

/// A user id a caller passes: 1 to `USER_ID_MAX` (i64::MAX), at every entry point.
pub(crate) fn validate_user(user: UserId) -> Result<UserId> {
    if user.0 == 0 {
        return Err(Error::invalid("user_id", user.0, "must be at least 1"));
    }
    if user.0 > USER_ID_MAX {
        return Err(Error::invalid(
            "user_id",
            user.0,
            "must be at most 9223372036854775807 (i64::MAX)",
        ));
    }
    Ok(user)
}

/// `part / whole` in percent; 0.0 when `whole` is 0.
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `total / count` rounded to the nearest integer, halves away from zero; 0 when `count` is 0.
pub(crate) fn divide_rounded(total: i128, count: u64) -> i128 {
    // The usual sums fit in 64 bits, where the division is one instruction rather than a call.
    match (i64::try_from(total), i64::try_from(count)) {
        (_, Ok(0)) => 0,
        (Ok(total), Ok(count)) => {
            let (quotient, remainder) = (total / count, total % count);
            let away = remainder.unsigned_abs() * 2 >= count.unsigned_abs();
            i128::from(quotient + if away { total.signum() } else { 0 })
        }
        _ => divide_rounded_wide(total, count),
    }
}

/// [`divide_rounded`] in 128 bits, for any total and a count above 0.
fn divide_rounded_wide(total: i128, count: u64) -> i128 {
    let count = i128::from(count);
    let quotient = total / count;
    let remainder = total % count;
    if remainder.abs() * 2 >= count {
        quotient + total.signum()
    } else {
        quotient
    }
}

/// The builder setters the public filters share: `user`, `message_type`, `channel`, `start`
/// and `end`, each setting its field; every filter names its own and documents each.
macro_rules! filter_setters {
    ($filter:ident { $($(#[$doc:meta])* $setter:ident),* $(,)? }) => {
        impl $filter {
            $(crate::stats::filter_setter!($filter, $setter, $(#[$doc])*);)*
        }
    };
}
pub(crate) use filter_setters;

/// One setter of [`filter_setters`].
macro_rules! filter_setter {
    ($filter:ident, user, $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn user(mut self, user: impl Into<crate::event::UserId>) -> $filter {
            self.user = Some(user.into());
            self
        }
    };
    ($filter:ident, message_type, $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn message_type(mut self, message_type: impl Into<String>) -> $filter {
            self.message_type = Some(message_type.into());
            self
        }
    };
    ($filter:ident, channel, $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn channel(mut self, channel: crate::event::Channel) -> $filter {
            self.channel = Some(channel);
            self
        }
    };
    ($filter:ident, start, $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn start(mut self, start: chrono::DateTime<chrono::Utc>) -> $filter {
            self.start = Some(start);
            self
        }
    };
    ($filter:ident, end, $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn end(mut self, end: chrono::DateTime<chrono::Utc>) -> $filter {
            self.end = Some(end);
            self
        }
    };
}
pub(crate) use filter_setter;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_division_in_64_bits_rounds_as_in_128(
            total in prop_oneof![any::<i64>().prop_map(i128::from), -1_000i128..1_000],
            count in prop_oneof![1u64..10, 1..u64::MAX],
        ) {
            prop_assert_eq!(divide_rounded(total, count), divide_rounded_wide(total, count));
        }
    }
}
