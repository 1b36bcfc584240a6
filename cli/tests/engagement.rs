//! The `engagement` command; the engagement view itself: tests/engagement.rs.

mod support;

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commlog::{Channel, EngagementFilter, Options, Store, SyncPolicy, UserEngagement};
use support::command::run_in;

const SECOND_MS: i64 = 1000;
const DAY_MS: i64 = 86_400_000;

/// The test time `offset_ms` milliseconds after Monday 2025-01-06 00:00:00 UTC.
fn at(offset_ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 0, 0, 0).unwrap() + Duration::milliseconds(offset_ms)
}

fn open(dir: &Path) -> Store {
    Store::open_with(
        dir,
        Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        },
    )
    .unwrap()
}

/// Sends `received` messages of type `low_balance` to `user` on `channel` at `sent_ms`,
/// delivered a second later, and opens the first `engaged` of them two seconds later.
fn batch(
    store: &Store,
    user: u64,
    channel: Channel,
    cost: f64,
    sent_ms: i64,
    received: u64,
    engaged: u64,
) {
    for number in 0..received {
        let id = store
            .track_message_sent_at(user, channel, "low_balance", cost, at(sent_ms))
            .unwrap()
            .id;
        store
            .track_message_delivered(id, Some(at(sent_ms + SECOND_MS)))
            .unwrap();
        if number < engaged {
            store
                .track_message_opened(id, Some(at(sent_ms + 2 * SECOND_MS)))
                .unwrap();
        }
    }
}

fn engagement(store: &Store, user: u64) -> UserEngagement {
    store
        .get_user_engagement(user, &EngagementFilter::new())
        .unwrap()
}

#[test]
fn the_engagement_command_prints_the_report_as_json_and_as_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    batch(&store, 7, Channel::Email, 0.001, 0, 6, 4);
    batch(&store, 7, Channel::Sms, 0.05, DAY_MS, 2, 1);
    let filter = EngagementFilter::new()
        .channel(Channel::Email)
        .start(at(0))
        .end(at(2 * DAY_MS));
    let expected = store.get_user_engagement(7, &filter).unwrap();
    let everything = engagement(&store, 7);
    store.close().unwrap();

    let start = at(0).to_rfc3339();
    let end = at(2 * DAY_MS).to_rfc3339();
    let output = run_in(
        dir.path(),
        &[
            "--json",
            "engagement",
            "--user",
            "7",
            "--channel",
            "email",
            "--start",
            &start,
            "--end",
            &end,
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let answer: UserEngagement = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer, expected);
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["preferred_channel"], "email");
    assert_eq!(value["trend"], "insufficient_data");

    let output = run_in(dir.path(), &["engagement", "--user", "7"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(everything.sent, 8);
    for expected in [
        "engagement_score",
        "preferred_channel",
        "average_cost",
        "$0.001",
        "response_time",
        "weekday_utc",
        "monday",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }

    let output = run_in(dir.path(), &["engagement", "--user", "0"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let output = run_in(dir.path(), &["engagement"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "--user is required: {output:?}"
    );
    let output = run_in(
        dir.path(),
        &[
            "engagement",
            "--user",
            "7",
            "--start",
            "2025-02-01",
            "--end",
            "2025-01-01",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}
