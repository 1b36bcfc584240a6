//! The serde form of times: RFC 3339 UTC with exactly three fractional digits, read back from
//! any RFC 3339 time.

use chrono::{DateTime, Duration, TimeZone, Utc};
use commlog::{Channel, Message, Options, Store, SyncPolicy};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Times {
    #[serde(with = "commlog::serde_time")]
    at: DateTime<Utc>,
    #[serde(default, with = "commlog::serde_time::optional")]
    maybe: Option<DateTime<Utc>>,
}

fn march_first() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()
}

#[test]
fn times_always_have_three_fractional_digits_and_read_back() {
    let at = march_first();
    let times = Times {
        at,
        maybe: Some(at + Duration::milliseconds(250)),
    };
    let text = serde_json::to_string(&times).unwrap();
    assert_eq!(
        text,
        r#"{"at":"2025-03-01T00:00:00.000Z","maybe":"2025-03-01T00:00:00.250Z"}"#
    );
    assert_eq!(serde_json::from_str::<Times>(&text).unwrap(), times);
    let none = Times { at, maybe: None };
    let text = serde_json::to_string(&none).unwrap();
    assert_eq!(text, r#"{"at":"2025-03-01T00:00:00.000Z","maybe":null}"#);
    assert_eq!(serde_json::from_str::<Times>(&text).unwrap(), none);
}

#[test]
fn any_rfc_3339_time_reads_back_as_utc_and_a_missing_option_is_none() {
    let read: Times = serde_json::from_str(r#"{"at":"2025-03-01T01:00:00+01:00"}"#).unwrap();
    assert_eq!(read.at, march_first());
    assert_eq!(read.maybe, None);
    assert!(serde_json::from_str::<Times>(r#"{"at":"2025-03-01"}"#).is_err());
    assert!(serde_json::from_str::<Times>(r#"{"at":17}"#).is_err());
}

#[test]
fn a_message_serializes_with_micros_and_milliseconds_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        },
    )
    .unwrap();
    let sent = store
        .track_message_sent_at(7, Channel::Sms, "low_balance", 0.05, march_first())
        .unwrap();
    let message = store
        .track_message_delivered(sent.id, Some(march_first() + Duration::seconds(2)))
        .unwrap();
    let value = serde_json::to_value(&message).unwrap();
    assert_eq!(value["cost_micros"], 50_000);
    assert_eq!(value["sent_at"], "2025-03-01T00:00:00.000Z");
    assert_eq!(value["delivered_at"], "2025-03-01T00:00:02.000Z");
    assert_eq!(value["opened_at"], serde_json::Value::Null);
    assert_eq!(serde_json::from_value::<Message>(value).unwrap(), message);
}
