//! The one input language of every command: times, ids, channels and budget scopes, read the
//! same way by `track`, the filters and `import`.

use chrono::{DateTime, Utc};

use commlog::DayEdge;

use crate::cli::CliError;

/// The values `--channel` takes (any case), offered by shell completion.
pub(crate) const CHANNEL_VALUES: [&str; 4] = ["sms", "email", "push", "in_app"];

/// The values `budget set --scope` takes (any case), offered by shell completion.
pub(crate) const SCOPE_VALUES: [&str; 5] = ["all", "sms", "email", "push", "in_app"];

/// What every time flag accepts, for its error message.
const TIME_FORMS: &str = "expected RFC 3339 (2025-01-31T10:00:00Z), a date (2025-01-31), or \
                          2025-01-31T10:00:00 / 2025-01-31 10:00:00 read as UTC";

/// A time flag's value: see [`commlog::parse_time_at`].
pub(crate) fn parse_time(
    flag: &'static str,
    text: &str,
    edge: DayEdge,
) -> Result<DateTime<Utc>, CliError> {
    Ok(
        commlog::parse_time_at(text, edge).ok_or_else(|| commlog::Error::InvalidInput {
            field: flag,
            value: text.to_string(),
            rule: TIME_FORMS.into(),
        })?,
    )
}

/// A count for clap (threads, calls): [`at_least_one`], as a `usize`.
pub(crate) fn count(text: &str) -> Result<usize, String> {
    let count = at_least_one(text)?;
    usize::try_from(count).map_err(|_| format!("must be at most {}", usize::MAX))
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

#[cfg(test)]
mod tests {
    use super::*;

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
