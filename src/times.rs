//! The rules for the times a caller passes to a tracking call (docs/SEMANTICS.md, "Times"):
//! bounds against the wall clock at the call, and against the message's sent time. Checked at
//! the call only; replay takes the log as it is.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::limits::{CLOCK_SKEW_MS_MAX, TIME_AFTER_CLOCK_MS_MAX, TIME_MS_MIN};
use crate::serde_time;

/// Refuses a time no tracking call takes: before 1970, or more than 24 hours after the clock
/// now (docs/SEMANTICS.md, "Times"), with `Error::InvalidInput` naming `field`, the time and
/// the bound. The tracking calls check this themselves; a caller may check first, as
/// `commlog track` does before it opens a store.
///
/// ```
/// use chrono::{DateTime, Utc};
/// let far = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")?.to_utc();
/// assert!(commlog::validate_time("at", far).is_err());
/// assert!(commlog::validate_time("at", Utc::now()).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate_time(field: &'static str, at: DateTime<Utc>) -> Result<()> {
    check_time(field, at.timestamp_millis(), clock_now_ms())
}

/// The wall clock now, in milliseconds since 1970, floored as `DateTime::timestamp_millis`
/// floors: read without building a calendar date, since every tracking call reads it.
pub(crate) fn clock_now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => {
            -i64::try_from(before.duration().as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
        }
    }
}

/// Refuses a delivery, open, action or failure time no tracking call takes for a message sent
/// at `sent_at`: outside [`validate_time`]'s bounds, or more than 5 minutes before `sent_at`
/// (docs/SEMANTICS.md, "Times"). A caller may check first, as `commlog import` checks its rows.
///
/// ```
/// use chrono::{Duration, TimeZone, Utc};
/// let sent_at = Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap();
/// let early = |minutes| sent_at - Duration::minutes(minutes);
/// assert!(commlog::validate_report_time("delivered_at", early(5), sent_at).is_ok());
/// assert!(commlog::validate_report_time("delivered_at", early(6), sent_at).is_err());
/// ```
pub fn validate_report_time(
    field: &'static str,
    at: DateTime<Utc>,
    sent_at: DateTime<Utc>,
) -> Result<()> {
    validate_time(field, at)?;
    check_after_sent(field, at.timestamp_millis(), sent_at.timestamp_millis())
}

/// The time a caller passed (`None`: the clock at the call), in ms, if it can be true, and the
/// clock at the call in ms (one read serves both, and the event's appended time).
pub(crate) fn time_at_call(field: &'static str, at: Option<DateTime<Utc>>) -> Result<(i64, i64)> {
    let clock_ms = clock_now_ms();
    let at_ms = at.map_or(clock_ms, |at| at.timestamp_millis());
    check_time(field, at_ms, clock_ms)?;
    Ok((at_ms, clock_ms))
}

/// Refuses a time before 1970 or more than `TIME_AFTER_CLOCK_MS_MAX` after `clock_ms`, the
/// clock at the call.
fn check_time(field: &'static str, at_ms: i64, clock_ms: i64) -> Result<()> {
    if at_ms < TIME_MS_MIN {
        let rule = format!("must be at or after {}", format_ms(TIME_MS_MIN));
        return Err(Error::invalid(field, format_ms(at_ms), rule));
    }
    let latest_ms = clock_ms.saturating_add(TIME_AFTER_CLOCK_MS_MAX);
    if at_ms > latest_ms {
        let rule = format!(
            "must be at or before {}, {} hours after the clock at the call",
            format_ms(latest_ms),
            TIME_AFTER_CLOCK_MS_MAX / 3_600_000
        );
        return Err(Error::invalid(field, format_ms(at_ms), rule));
    }
    Ok(())
}

/// Refuses a delivery, open, action or failure time more than `CLOCK_SKEW_MS_MAX` before its
/// message's sent time (the fold takes a time within the skew as the sent time).
pub(crate) fn check_after_sent(field: &'static str, at_ms: i64, sent_ms: i64) -> Result<()> {
    let earliest_ms = sent_ms.saturating_sub(CLOCK_SKEW_MS_MAX);
    if at_ms < earliest_ms {
        let rule = format!(
            "must be at or after {}, {} minutes before the message's sent time {}",
            format_ms(earliest_ms),
            CLOCK_SKEW_MS_MAX / 60_000,
            format_ms(sent_ms)
        );
        return Err(Error::invalid(field, format_ms(at_ms), rule));
    }
    Ok(())
}

/// A time in ms as RFC 3339 UTC with milliseconds (as ms where chrono cannot represent it).
fn format_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(|| format!("{ms} ms"), serde_time::to_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_in_milliseconds_is_chronos() {
        for _ in 0..1000 {
            let before = Utc::now().timestamp_millis();
            let now = clock_now_ms();
            let after = Utc::now().timestamp_millis();
            assert!(before <= now && now <= after, "{before} {now} {after}");
        }
    }

    #[test]
    fn times_are_refused_one_millisecond_past_their_bounds() {
        let clock_ms = 1_800_000_000_000;
        assert!(check_time("at", TIME_MS_MIN, clock_ms).is_ok());
        assert!(check_time("at", TIME_MS_MIN - 1, clock_ms).is_err());
        let latest_ms = clock_ms + TIME_AFTER_CLOCK_MS_MAX;
        assert!(check_time("at", latest_ms, clock_ms).is_ok());
        assert!(check_time("at", latest_ms + 1, clock_ms).is_err());
        let sent_ms = clock_ms;
        let earliest_ms = sent_ms - CLOCK_SKEW_MS_MAX;
        assert!(check_after_sent("at", earliest_ms, sent_ms).is_ok());
        assert!(check_after_sent("at", earliest_ms - 1, sent_ms).is_err());
    }
}
