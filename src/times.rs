//! The rules for the times a caller passes to a tracking call (docs/SEMANTICS.md, "Times"):
//! bounds against the wall clock at the call, and against the message's sent time. Checked at
//! the call only; replay takes the log as it is.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

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

/// Which edge of its day a bare date stands for in [`parse_time_at`]: a range's start takes
/// its first millisecond, its end its last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayEdge {
    /// The day's first millisecond.
    Start,
    /// The day's last millisecond.
    End,
}

/// [`parse_time_ms`] as a time, a bare date being the first millisecond of its day, or with
/// `DayEdge::End` its last; `None` for text it does not read.
///
/// ```
/// use commlog::{DayEdge, parse_time_at};
/// let end = parse_time_at("2025-01-31", DayEdge::End).unwrap();
/// assert_eq!(end.to_rfc3339(), "2025-01-31T23:59:59.999+00:00");
/// let at = parse_time_at("2025-01-31 10:00:00", DayEdge::End).unwrap();
/// assert_eq!(at.to_rfc3339(), "2025-01-31T10:00:00+00:00");
/// ```
pub fn parse_time_at(text: &str, edge: DayEdge) -> Option<DateTime<Utc>> {
    let mut ms = parse_time_ms(text)?;
    if edge == DayEdge::End && text.len() == "YYYY-MM-DD".len() {
        ms += 24 * 3600 * 1000 - 1;
    }
    DateTime::from_timestamp_millis(ms)
}

/// A time as text, the one form every input of the command line and the server reads:
/// `YYYY-MM-DD[ T]HH:MM:SS[.f…][Z|±HH[:MM]|±HHMM]` (RFC 3339, and without an offset read as
/// UTC), or a bare date `YYYY-MM-DD` (its midnight, UTC). Milliseconds since the epoch, rounded
/// down to the millisecond (the store's resolution); `None` for any other text, such as a
/// one-digit month, a sign or a space around it, or a leap second.
///
/// ```
/// assert_eq!(commlog::parse_time_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
/// assert_eq!(commlog::parse_time_ms("1970-01-02"), Some(86_400_000));
/// assert_eq!(commlog::parse_time_ms("1970-1-2"), None);
/// ```
pub fn parse_time_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let punctuation =
        |index: usize, allowed: &[u8]| bytes.get(index).is_some_and(|b| allowed.contains(b));
    if !(punctuation(4, b"-") && punctuation(7, b"-")) {
        return None;
    }
    let year = i32::try_from(number(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    if bytes.len() == 10 {
        return Some(date.and_time(NaiveTime::MIN).and_utc().timestamp_millis());
    }
    if !(punctuation(10, b" Tt") && punctuation(13, b":") && punctuation(16, b":")) {
        return None;
    }
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut rest = &bytes[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let length = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if length == 0 {
            return None;
        }
        for position in 0..9 {
            let digit = fraction.get(position).filter(|_| position < length);
            nanos = nanos * 10 + digit.map_or(0, |digit| u32::from(digit - b'0'));
        }
        rest = &fraction[length..];
    }
    let offset_seconds = parse_offset(rest)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let local_ms = date.and_time(time).and_utc().timestamp_millis();
    Some(local_ms - offset_seconds * 1000)
}

/// `""`, `Z`, `±HH`, `±HHMM` or `±HH:MM`, in seconds east of UTC.
fn parse_offset(text: &[u8]) -> Option<i64> {
    let (sign, offset) = match text {
        [] | [b'Z' | b'z'] => return Some(0),
        [b'+', offset @ ..] => (1, offset),
        [b'-', offset @ ..] => (-1, offset),
        _ => return None,
    };
    let two = |high: u8, low: u8| -> Option<i64> {
        (high.is_ascii_digit() && low.is_ascii_digit())
            .then(|| i64::from((high - b'0') * 10 + (low - b'0')))
    };
    let (hours, minutes) = match *offset {
        [h1, h2] => (two(h1, h2)?, 0),
        [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (two(h1, h2)?, two(m1, m2)?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn times_in_every_accepted_form() {
        let base = ms("2025-01-02T03:04:05Z");
        assert_eq!(parse_time_ms("2025-01-02 03:04:05"), Some(base));
        assert_eq!(parse_time_ms("2025-01-02T03:04:05"), Some(base));
        assert_eq!(parse_time_ms("2025-01-02T03:04:05Z"), Some(base));
        assert_eq!(
            parse_time_ms("2025-01-02 03:04:05.123456"),
            Some(base + 123)
        );
        assert_eq!(
            parse_time_ms("2025-01-02 03:04:05.9999999"),
            Some(base + 999)
        );
        assert_eq!(parse_time_ms("2025-01-02 03:04:05.5z"), Some(base + 500));
        assert_eq!(parse_time_ms("2025-01-02 05:04:05+02"), Some(base));
        assert_eq!(parse_time_ms("2025-01-02 05:34:05+02:30"), Some(base));
        assert_eq!(parse_time_ms("2025-01-02 05:34:05+0230"), Some(base));
        assert_eq!(
            parse_time_ms("2025-01-01 22:04:05.25-05:00"),
            Some(base + 250)
        );
        assert_eq!(
            parse_time_ms("2025-01-02"),
            Some(ms("2025-01-02T00:00:00Z"))
        );
        for bad in [
            "",
            "2025-1-02 03:04:05",
            "2025-01-02 3:04:05",
            "2025-01-02X03:04:05",
            "2025-02-30 00:00:00",
            "2025-01-02 24:00:00",
            "2025-01-02 03:04:60",
            "2025-01-02 03:04:05.",
            "2025-01-02 03:04:05 ",
            "2025-01-02 03:04:05+2",
            "2025-01-02 03:04:05+24",
            "2025-01-02 03:04:05+02:60",
            "2025-01-02 03:04:05UTC",
            "2025-12-31T23:59:60Z",
            "+2025-01-03",
            " 2025-01-03",
            "2025-1-3",
            "yesterday",
            "2025-01-0é",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad:?}");
        }
    }

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
