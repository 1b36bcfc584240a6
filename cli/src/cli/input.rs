//! The one input language of every command: times, ids, channels and budget scopes, read the
//! same way by `track`, the filters and `import`.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use crate::cli::{CliError, DayEdge};

/// The values `--channel` takes (any case), offered by shell completion.
pub(crate) const CHANNEL_VALUES: [&str; 4] = ["sms", "email", "push", "in_app"];

/// The values `budget set --scope` takes (any case), offered by shell completion.
pub(crate) const SCOPE_VALUES: [&str; 5] = ["all", "sms", "email", "push", "in_app"];

/// What every time flag accepts, for its error message.
const TIME_FORMS: &str = "expected RFC 3339 (2025-01-31T10:00:00Z), a date (2025-01-31), or \
                          2025-01-31T10:00:00 / 2025-01-31 10:00:00 read as UTC";

/// A time flag's value: see [`parse_time_ms`]; a bare date is the first millisecond of its day,
/// or with `DayEdge::End` its last.
pub(crate) fn parse_time(
    flag: &'static str,
    text: &str,
    edge: DayEdge,
) -> Result<DateTime<Utc>, CliError> {
    let invalid = || commlog::Error::InvalidInput {
        field: flag,
        value: text.to_string(),
        rule: TIME_FORMS.into(),
    };
    let mut ms = parse_time_ms(text).ok_or_else(invalid)?;
    if edge == DayEdge::End && text.len() == "YYYY-MM-DD".len() {
        ms += 24 * 3600 * 1000 - 1;
    }
    Ok(DateTime::from_timestamp_millis(ms).ok_or_else(invalid)?)
}

/// A user id for clap: an integer from 1 to i64::MAX.
pub(crate) fn user_id(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i128>() {
        Ok(value) if value < 1 => Err("must be at least 1".to_string()),
        Ok(value) => u64::try_from(value)
            .ok()
            .filter(|id| *id <= commlog::USER_ID_MAX)
            .ok_or_else(|| format!("must be at most {} (i64::MAX)", commlog::USER_ID_MAX)),
        Err(_) => Err("not an integer".to_string()),
    }
}

/// A count or id for clap: an integer of at least 1 (a minus sign says so, not "unexpected
/// argument").
pub(crate) fn at_least_one(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i128>() {
        Ok(value) if value < 1 => Err("must be at least 1".to_string()),
        Ok(value) => u64::try_from(value).map_err(|_| format!("must be at most {}", u64::MAX)),
        Err(_) => Err("not an integer".to_string()),
    }
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.f…][Z|±HH[:MM]|±HHMM]`, or a bare `YYYY-MM-DD` (midnight); no
/// offset means UTC. Returns ms since the epoch, rounded down to the millisecond (the store's
/// resolution).
pub(crate) fn parse_time_ms(text: &str) -> Option<i64> {
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
            "yesterday",
            "2025-01-0é",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_bare_end_date_is_its_last_millisecond() {
        let end = parse_time("--end", "2025-01-31", DayEdge::End).unwrap();
        assert_eq!(end.to_rfc3339(), "2025-01-31T23:59:59.999+00:00");
        let start = parse_time("--start", "2025-01-31", DayEdge::Start).unwrap();
        assert_eq!(start.to_rfc3339(), "2025-01-31T00:00:00+00:00");
        let naive = parse_time("--end", "2025-01-31 10:00:00", DayEdge::End).unwrap();
        assert_eq!(naive.to_rfc3339(), "2025-01-31T10:00:00+00:00");
    }

    #[test]
    fn ids_below_one_say_so() {
        assert_eq!(at_least_one("-5"), Err("must be at least 1".to_string()));
        assert_eq!(at_least_one("0"), Err("must be at least 1".to_string()));
        assert_eq!(at_least_one("7"), Ok(7));
        assert!(
            user_id("9223372036854775808")
                .unwrap_err()
                .contains("i64::MAX")
        );
        assert_eq!(user_id("9223372036854775807"), Ok(i64::MAX as u64));
        // Beyond u64 too, the bound named is a user id's.
        assert!(
            user_id("99999999999999999999")
                .unwrap_err()
                .contains("i64::MAX")
        );
    }
}
