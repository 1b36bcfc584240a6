//! Times in the serde form of the public types: RFC 3339, UTC, always with exactly three
//! fractional digits (`2025-03-01T00:00:00.000Z`), the store's resolution; read back from any
//! RFC 3339 time.
//!
//! Use it as `#[serde(with = "commlog::serde_time")]` on a `DateTime<Utc>` and
//! `#[serde(default, with = "commlog::serde_time::optional")]` on an `Option<DateTime<Utc>>`.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! let time = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
//! assert_eq!(commlog::serde_time::to_text(time), "2025-03-01T00:00:00.000Z");
//! ```

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// `time` as RFC 3339 UTC with milliseconds, e.g. `2025-03-01T09:30:00.250Z` (finer digits are
/// dropped: stored times have millisecond resolution).
pub fn to_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Writes `time` as [`to_text`] does.
pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&to_text(*time))
}

/// Reads an RFC 3339 time with any offset and precision, as UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| serde::de::Error::custom(format!("{text:?} is not RFC 3339: {error}")))
}

/// The same for `Option<DateTime<Utc>>`: `None` is `null`.
pub mod optional {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some(time)` as [`super::to_text`] does, `None` as null.
    pub fn serialize<S: Serializer>(
        time: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::serialize(time, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads null as `None`, an RFC 3339 time as `Some`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        /// One RFC 3339 time, read by the outer module.
        #[derive(Deserialize)]
        struct Time(#[serde(with = "super")] DateTime<Utc>);
        Ok(Option::<Time>::deserialize(deserializer)?.map(|Time(time)| time))
    }
}
