//! Bad input: every bad input gets a clear error naming the field and the value,
//! and the log on disk stays byte-for-byte unchanged.

mod support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use commlog::{Channel, Error, LOCK_FILE_NAME, MessageId, StatsFilter, Store};
use support::store::options;

/// 2025-01-01 09:00:00 UTC plus `offset_ms` milliseconds.
fn at(offset_ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap() + Duration::milliseconds(offset_ms)
}

/// A store holding two messages (ids 1 and 2), a delivery and an outcome.
fn store_with_two_messages(dir: &Path) -> Store {
    let store = Store::open_with(dir, options()).unwrap();
    store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, at(0))
        .unwrap();
    store
        .track_message_sent_at(2, Channel::Email, "weekly_checkin", 0.001, at(1))
        .unwrap();
    store.track_message_delivered(1, Some(at(2))).unwrap();
    store
        .track_financial_outcome_at(1, "bill_paid_on_time", 25.0, at(3))
        .unwrap();
    store
}

/// Every entry under `dir` but the lock file; never empty, so that no comparison is vacuous.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let files = support::files::snapshot_without_lock(dir);
    assert!(
        !files.is_empty(),
        "a store directory holds at least one segment"
    );
    files
}

/// Runs `call`, which must fail, and checks that it changed no file (buffered frames are
/// flushed before and after, so an append would show).
fn rejected<T: Debug>(store: &Store, call: impl FnOnce(&Store) -> commlog::Result<T>) -> Error {
    store.flush().unwrap();
    let before = snapshot(store.dir());
    let error = call(store).expect_err("bad input must be rejected");
    store.flush().unwrap();
    assert!(
        snapshot(store.dir()) == before,
        "the log changed after a rejected call ({error})"
    );
    error
}

/// `error` is `InvalidInput` for `field`, and its message names the field and the value.
fn assert_invalid(error: &Error, field: &str, value: &str) {
    match error {
        Error::InvalidInput { field: got, .. } => assert_eq!(*got, field, "{error}"),
        other => panic!("expected InvalidInput for {field}, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(field),
        "{text:?} does not name the field {field}"
    );
    if value.is_empty() {
        assert!(
            text.contains("\"\"") || text.contains("empty"),
            "{text:?} does not show the empty value"
        );
    } else if value.chars().count() > 64 {
        // A long value is shown by its first 64 characters and its length.
        let head: String = value.chars().take(64).collect();
        let length = format!("({} characters)", value.chars().count());
        assert!(
            text.contains(&head) && text.contains(&length) && !text.contains(value),
            "{text:?} does not show the long value {value:?} by its head and length"
        );
    } else {
        assert!(
            text.contains(value),
            "{text:?} does not name the value {value:?}"
        );
    }
}

fn assert_unknown_message(error: &Error, id: u64) {
    match error {
        Error::UnknownMessage { id: got } => assert_eq!(*got, MessageId(id)),
        other => panic!("expected UnknownMessage {{ id: {id} }}, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("message"), "{text:?} does not name the field");
    assert!(
        text.contains(&id.to_string()),
        "{text:?} does not name the id {id}"
    );
}

/// Bad names for every name field: empty, 65 bytes, uppercase, with a space, non-ASCII.
fn bad_names() -> Vec<String> {
    vec![
        String::new(),
        "a".repeat(65),
        "Low_balance".to_string(),
        "LOW".to_string(),
        "low balance".to_string(),
        "café".to_string(),
        "naïve_alert".to_string(),
        "low/balance".to_string(),
    ]
}

#[test]
fn reports_on_an_unknown_message_id_fail_with_unknown_message_and_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    for id in [0, 3, 1_000] {
        let error = rejected(&store, |s| s.track_message_delivered(id, Some(at(5))));
        assert_unknown_message(&error, id);
        let error = rejected(&store, |s| s.track_message_opened(id, Some(at(5))));
        assert_unknown_message(&error, id);
        let error = rejected(&store, |s| {
            s.track_user_action(id, "clicked_link", Some(at(5)))
        });
        assert_unknown_message(&error, id);
        let error = rejected(&store, |s| {
            s.track_message_failed(id, "bounced", Some(at(5)))
        });
        assert_unknown_message(&error, id);
        assert_unknown_message(&store.get_message(id).unwrap_err(), id);
    }
    // The rejected reports took no id: the next message is 3, and reports on it now work.
    let message = store
        .track_message_sent_at(3, Channel::Push, "bill_due", 0.0, at(6))
        .unwrap();
    assert_eq!(message.id, MessageId(3));
    store.track_message_opened(3, Some(at(7))).unwrap();
    assert_unknown_message(
        &rejected(&store, |s| s.track_message_delivered(4, Some(at(8)))),
        4,
    );
}

#[test]
fn user_id_zero_is_rejected_everywhere_a_user_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let error = rejected(&store, |s| {
        s.track_message_sent_at(0, Channel::Sms, "low_balance", 0.05, at(5))
    });
    assert_invalid(&error, "user_id", "0");
    let error = rejected(&store, |s| {
        s.track_financial_outcome_at(0, "bill_paid_on_time", 25.0, at(5))
    });
    assert_invalid(&error, "user_id", "0");
    let error = rejected(&store, |s| s.get_user_communication_history(0, 10));
    assert_invalid(&error, "user_id", "0");
    let error = rejected(&store, |s| {
        s.get_communication_stats(&StatsFilter::new().user(0))
    });
    assert_invalid(&error, "user_id", "0");
}

#[test]
fn a_negative_nan_infinite_or_huge_cost_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let bad_costs = [
        -0.01,
        -1.0,
        -0.000_000_1,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        9.000_000_001e12,
        1e13,
        f64::MAX,
    ];
    for cost in bad_costs {
        let error = rejected(&store, |s| {
            s.track_message_sent_at(1, Channel::Sms, "low_balance", cost, at(5))
        });
        assert_invalid(&error, "cost", &cost.to_string());
    }
    // The edges are fine: nothing, and exactly 9 × 10^12 dollars.
    assert_eq!(
        store
            .track_message_sent_at(1, Channel::Sms, "low_balance", 0.0, at(5))
            .unwrap()
            .cost
            .micros(),
        0
    );
    let huge = store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 9e12, at(5))
        .unwrap();
    assert_eq!(huge.cost.micros(), 9_000_000_000_000_000_000);
}

#[test]
fn a_nan_infinite_or_huge_outcome_amount_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    for amount in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        9.000_000_001e12,
        -1e13,
    ] {
        let error = rejected(&store, |s| {
            s.track_financial_outcome_at(1, "bill_paid_on_time", amount, at(5))
        });
        assert_invalid(&error, "amount", &amount.to_string());
    }
}

#[test]
fn a_negative_outcome_amount_is_accepted_as_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let loss = store
        .track_financial_outcome_at(1, "overdraft_fee", -250.5, at(5))
        .unwrap();
    assert_eq!(loss.amount.micros(), -250_500_000);
    assert_eq!(
        (loss.user_id.0, loss.outcome.as_str(), loss.at),
        (1, "overdraft_fee", at(5))
    );
    let stats = store
        .get_communication_stats(&StatsFilter::new().user(1))
        .unwrap();
    assert_eq!(
        (stats.outcome_count, stats.total_impact.micros()),
        (2, 25_000_000 - 250_500_000)
    );
    let edge = store
        .track_financial_outcome_at(2, "overdraft_fee", -9e12, at(5))
        .unwrap();
    assert_eq!(edge.amount.micros(), -9_000_000_000_000_000_000);
}

#[test]
fn a_bad_message_type_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    for name in bad_names() {
        let error = rejected(&store, |s| {
            s.track_message_sent_at(1, Channel::Sms, &name, 0.05, at(5))
        });
        assert_invalid(&error, "message_type", &name);
        let error = rejected(&store, |s| {
            s.get_communication_stats(&StatsFilter::new().message_type(name.as_str()))
        });
        assert_invalid(&error, "message_type", &name);
    }
}

#[test]
fn a_bad_action_name_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    for name in bad_names() {
        let error = rejected(&store, |s| s.track_user_action(1, &name, Some(at(5))));
        assert_invalid(&error, "action", &name);
    }
    assert_eq!(store.get_message(1).unwrap().action_taken, None);
}

#[test]
fn a_bad_failure_reason_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    for name in bad_names() {
        let error = rejected(&store, |s| s.track_message_failed(2, &name, Some(at(5))));
        assert_invalid(&error, "reason", &name);
    }
    assert_eq!(store.get_message(2).unwrap().failed_at, None);
}

#[test]
fn a_bad_outcome_name_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    for name in bad_names() {
        let error = rejected(&store, |s| {
            s.track_financial_outcome_at(1, &name, 5.0, at(5))
        });
        assert_invalid(&error, "outcome", &name);
    }
    assert_eq!(
        store
            .get_communication_stats(&StatsFilter::new())
            .unwrap()
            .outcome_count,
        1
    );
}

#[test]
fn names_of_64_bytes_using_every_allowed_character_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let longest = "z".repeat(64);
    let every_kind = "abcdefghijklmnopqrstuvwxyz0123456789_.-";
    for name in [longest.as_str(), every_kind, "a"] {
        let message = store
            .track_message_sent_at(1, Channel::Sms, name, 0.05, at(5))
            .unwrap();
        assert_eq!(&*message.message_type, name);
        store
            .track_user_action(message.id, name, Some(at(6)))
            .unwrap();
        store
            .track_message_failed(message.id, name, Some(at(6)))
            .unwrap();
        store
            .track_financial_outcome_at(1, name, 1.0, at(6))
            .unwrap();
        store
            .get_communication_stats(&StatsFilter::new().message_type(name))
            .unwrap();
    }
}

#[test]
fn channel_names_are_read_in_any_case() {
    for (text, channel) in [
        ("SMS", Channel::Sms),
        ("Email", Channel::Email),
        ("PUSH", Channel::Push),
        ("In_App", Channel::InApp),
    ] {
        assert_eq!(text.parse::<Channel>().unwrap(), channel);
    }
}

#[test]
fn an_unknown_channel_string_is_rejected() {
    for text in ["fax", "", "in-app", "inapp", "sms "] {
        let error = text.parse::<Channel>().unwrap_err();
        assert_invalid(&error, "channel", text);
    }
    for channel in Channel::ALL {
        assert_eq!(channel.to_string().parse::<Channel>().unwrap(), channel);
    }
    let names: Vec<String> = Channel::ALL.iter().map(Channel::to_string).collect();
    assert_eq!(names, ["sms", "email", "push", "in_app"]);
}

#[test]
fn a_stats_filter_whose_start_is_after_its_end_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let error = rejected(&store, |s| {
        s.get_communication_stats(&StatsFilter::new().start(at(10)).end(at(9)))
    });
    match &error {
        Error::InvalidInput { field, .. } => assert!(["start", "end"].contains(field), "{error}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("start") || text.contains("end"),
        "{text:?} does not name the field"
    );
    assert!(
        text.contains("2025-01-01T09:00:00.009Z"),
        "{text:?} does not name the value as every time is written"
    );
    // An empty window of one millisecond is fine.
    let one = store
        .get_communication_stats(&StatsFilter::new().start(at(1)).end(at(1)))
        .unwrap();
    assert_eq!(one.total_messages, 1);
}

#[test]
fn filter_times_beyond_the_years_rfc_3339_writes_are_rejected_and_answers_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let year_zero = Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap();
    let last =
        Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + Duration::milliseconds(999);
    let before = year_zero - Duration::milliseconds(1);
    let after = last + Duration::milliseconds(1);
    for (field, start, end) in [
        ("end", None, Some(before)),
        ("start", Some(before), None),
        ("start", Some(after), None),
        ("end", None, Some(after)),
    ] {
        let mut cost = commlog::CostFilter::new();
        let mut stats = StatsFilter::new();
        let mut engagement = commlog::EngagementFilter::new();
        if let Some(start) = start {
            (cost, stats, engagement) = (
                cost.start(start),
                stats.start(start),
                engagement.start(start),
            );
        }
        if let Some(end) = end {
            (cost, stats, engagement) = (cost.end(end), stats.end(end), engagement.end(end));
        }
        let error = rejected(&store, |s| s.get_cost_report(&cost));
        match &error {
            Error::InvalidInput { field: named, .. } => assert_eq!(*named, field, "{error}"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        rejected(&store, |s| s.get_communication_stats(&stats));
        rejected(&store, |s| s.get_user_engagement(1, &engagement));
    }
    // At the bounds, an answer holds the time and its JSON reads back.
    for (start, end) in [(year_zero, year_zero), (last, last)] {
        let report = store
            .get_cost_report(&commlog::CostFilter::new().start(start).end(end))
            .unwrap();
        let json = serde_json::to_string(&report).unwrap();
        let read: commlog::CostReport = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
    }
}

/// One tracking call, answer dropped.
type TrackingCall = fn(&Store) -> commlog::Result<()>;

#[test]
fn tracking_on_a_read_only_store_fails_with_read_only_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writer = store_with_two_messages(dir.path());
    writer.flush().unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        reader
            .get_communication_stats(&StatsFilter::new())
            .unwrap()
            .total_messages,
        2
    );

    let calls: [TrackingCall; 6] = [
        |s| {
            s.track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, at(5))
                .map(drop)
        },
        |s| s.track_message_delivered(2, Some(at(5))).map(drop),
        |s| s.track_message_opened(2, Some(at(5))).map(drop),
        |s| {
            s.track_user_action(2, "clicked_link", Some(at(5)))
                .map(drop)
        },
        |s| s.track_message_failed(2, "bounced", Some(at(5))).map(drop),
        |s| {
            s.track_financial_outcome_at(1, "bill_paid_on_time", 1.0, at(5))
                .map(drop)
        },
    ];
    for call in calls {
        let error = rejected(&reader, call);
        assert!(
            matches!(error, Error::ReadOnly { .. }),
            "expected ReadOnly, got {error:?}"
        );
        assert!(error.to_string().contains("read-only"), "{error}");
    }
    assert_eq!(
        reader
            .get_communication_stats(&StatsFilter::new())
            .unwrap()
            .total_messages,
        2
    );
    // Without a writer running, too.
    drop(reader);
    writer.close().unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    for call in calls {
        assert!(matches!(rejected(&reader, call), Error::ReadOnly { .. }));
    }
}

#[test]
fn a_second_writer_on_a_locked_directory_fails_with_locked_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = store_with_two_messages(dir.path());
    first.flush().unwrap();
    let before = snapshot(dir.path());
    for _ in 0..2 {
        let error = Store::open_with(dir.path(), options())
            .err()
            .expect("the directory is locked");
        match &error {
            Error::Locked { path, .. } => assert_eq!(path, &dir.path().join(LOCK_FILE_NAME)),
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(error.to_string().contains(LOCK_FILE_NAME), "{error}");
        assert!(Store::open(dir.path()).is_err());
    }
    assert!(
        snapshot(dir.path()) == before,
        "a refused open changed the log"
    );
    // The first writer is unharmed, and once it closes the directory opens again.
    first.track_message_opened(2, Some(at(9))).unwrap();
    first.close().unwrap();
    let second = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(second.open_report().events, 5);
    assert!(second.get_message(2).unwrap().opened_at.is_some());
}

#[test]
fn rejected_calls_leave_nothing_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let _ = store.track_message_sent_at(0, Channel::Sms, "low_balance", 0.05, at(5));
    let _ = store.track_message_sent_at(1, Channel::Sms, "", 0.05, at(5));
    let _ = store.track_message_sent_at(1, Channel::Sms, "low_balance", f64::NAN, at(5));
    let _ = store.track_message_delivered(9, Some(at(5)));
    let _ = store.track_user_action(1, "Clicked", Some(at(5)));
    let _ = store.track_message_failed(1, "", Some(at(5)));
    let _ = store.track_financial_outcome_at(1, "bill_paid_on_time", f64::INFINITY, at(5));
    let before = store.get_communication_stats(&StatsFilter::new()).unwrap();
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.open_report().events, 4);
    assert_eq!(
        store.get_communication_stats(&StatsFilter::new()).unwrap(),
        before
    );
    assert_eq!(
        store
            .track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, at(6))
            .unwrap()
            .id,
        MessageId(3)
    );
}

/// A time as the errors print it: RFC 3339 UTC with milliseconds.
fn millis(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The bound an `InvalidInput` on a time names: the first time in its rule.
fn bound_in(error: &Error) -> DateTime<Utc> {
    let Error::InvalidInput { rule, .. } = error else {
        panic!("expected InvalidInput, got {error:?}");
    };
    let start = rule
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or_else(|| panic!("{rule:?} names no bound"));
    let text = &rule[start..start + "2025-01-01T09:00:00.000Z".len()];
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{rule:?}: {text:?} is not a time: {error}"))
        .to_utc()
}

/// Every tracking call that takes a time, at `time`, on message 1 or user 1, each rejected: the
/// field each names, and its error.
fn reject_every_timed_call(store: &Store, time: DateTime<Utc>) -> Vec<(&'static str, Error)> {
    vec![
        (
            "sent_at",
            rejected(store, |s| {
                s.track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, time)
            }),
        ),
        (
            "at",
            rejected(store, |s| s.track_message_delivered(1, Some(time))),
        ),
        (
            "at",
            rejected(store, |s| s.track_message_opened(1, Some(time))),
        ),
        (
            "at",
            rejected(store, |s| {
                s.track_user_action(1, "clicked_link", Some(time))
            }),
        ),
        (
            "at",
            rejected(store, |s| s.track_message_failed(1, "bounced", Some(time))),
        ),
        (
            "at",
            rejected(store, |s| {
                s.track_financial_outcome_at(1, "bill_paid_on_time", 25.0, time)
            }),
        ),
    ]
}

#[test]
fn a_time_more_than_a_day_after_the_clock_is_refused_naming_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let day = Duration::hours(24);
    let far = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
    for time in [far, Utc::now() + day + Duration::minutes(1)] {
        let clock_before = Utc::now();
        let errors = reject_every_timed_call(&store, time);
        let clock_after = Utc::now();
        for (field, error) in errors {
            assert_invalid(&error, field, &millis(time));
            assert!(
                error.to_string().contains("24 hours after the clock"),
                "{error}"
            );
            // The bound is the clock at the call plus a day, rounded down to the millisecond.
            let bound = bound_in(&error);
            assert!(
                clock_before + day - Duration::milliseconds(1) <= bound
                    && bound <= clock_after + day,
                "{error}: the bound is not a day after the clock ({clock_before} to {clock_after})"
            );
        }
    }
    // A minute inside the bound is accepted (the unit tests pin the bound to the millisecond).
    let soon = Utc::now() + day - Duration::minutes(1);
    let message = store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, soon)
        .unwrap();
    store
        .track_message_delivered(message.id, Some(soon))
        .unwrap();
    store.track_message_opened(1, Some(soon)).unwrap();
    store
        .track_financial_outcome_at(1, "bill_paid_on_time", 25.0, soon)
        .unwrap();
}

#[test]
fn a_time_before_1970_is_refused_and_1970_itself_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    let epoch = DateTime::UNIX_EPOCH;
    for time in [
        Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
        epoch - Duration::milliseconds(1),
    ] {
        for (field, error) in reject_every_timed_call(&store, time) {
            assert_invalid(&error, field, &millis(time));
            assert_eq!(bound_in(&error), epoch, "{error}");
        }
    }
    let message = store
        .track_message_sent_at(3, Channel::Push, "bill_due", 0.0, epoch)
        .unwrap();
    store
        .track_message_delivered(message.id, Some(epoch))
        .unwrap();
    store
        .track_financial_outcome_at(3, "bill_paid_on_time", 1.0, epoch)
        .unwrap();
}

#[test]
fn a_report_more_than_five_minutes_before_its_message_was_sent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_two_messages(dir.path());
    // Message 1 was sent at at(0).
    let earliest = at(0) - Duration::minutes(5);
    let too_early = earliest - Duration::milliseconds(1);
    let errors = [
        rejected(&store, |s| s.track_message_delivered(1, Some(too_early))),
        rejected(&store, |s| s.track_message_opened(1, Some(too_early))),
        rejected(&store, |s| {
            s.track_user_action(1, "clicked_link", Some(too_early))
        }),
        rejected(&store, |s| {
            s.track_message_failed(1, "bounced", Some(too_early))
        }),
    ];
    for error in errors {
        assert_invalid(&error, "at", &millis(too_early));
        assert_eq!(bound_in(&error), earliest, "{error}");
        let text = error.to_string();
        assert!(text.contains("5 minutes before"), "{text}");
        assert!(text.contains(&millis(at(0))), "{text} names no sent time");
    }
    // Exactly five minutes early is within the skew.
    store.track_message_delivered(1, Some(earliest)).unwrap();
    store.track_message_opened(1, Some(earliest)).unwrap();
    store
        .track_user_action(1, "clicked_link", Some(earliest))
        .unwrap();
    store
        .track_message_failed(1, "bounced", Some(earliest))
        .unwrap();
}

#[test]
fn a_lock_or_segment_that_is_not_a_regular_file_is_never_followed() {
    use std::os::unix::fs::symlink;
    let temp = tempfile::tempdir().unwrap();
    let outside = temp.path().join("outside.txt");
    fs::write(&outside, b"precious").unwrap();

    // A LOCK that is a symlink: refused, its target untouched.
    let dir = temp.path().join("lock");
    fs::create_dir(&dir).unwrap();
    store_with_two_messages(&dir).close().unwrap();
    fs::remove_file(dir.join(LOCK_FILE_NAME)).unwrap();
    symlink(&outside, dir.join(LOCK_FILE_NAME)).unwrap();
    match Store::open(&dir).map(drop) {
        Err(error @ Error::Io { .. }) => {
            assert!(error.to_string().contains("not a regular file"), "{error}")
        }
        other => panic!("expected an I/O error naming LOCK, got {other:?}"),
    }
    assert_eq!(fs::read(&outside).unwrap(), b"precious");

    // A LOCK that is a FIFO: refused by an open and by an audit, at once (opening a FIFO to
    // read waits for a writer). The audit runs on a thread of its own so that a wait fails.
    let dir = temp.path().join("fifo-lock");
    fs::create_dir(&dir).unwrap();
    store_with_two_messages(&dir).close().unwrap();
    fs::remove_file(dir.join(LOCK_FILE_NAME)).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join(LOCK_FILE_NAME))
        .status()
        .unwrap();
    assert!(status.success());
    let (send, receive) = std::sync::mpsc::channel();
    let audited = dir.clone();
    std::thread::spawn(move || {
        let _ = send.send(commlog::audit::audit(&audited, false).map(drop));
    });
    let audit = receive.recv_timeout(std::time::Duration::from_secs(20));
    if audit.is_err() {
        // Let the waiting audit go before failing.
        let _ = fs::OpenOptions::new()
            .write(true)
            .open(dir.join(LOCK_FILE_NAME));
    }
    for result in [
        audit.expect("the audit waited on the FIFO"),
        Store::open(&dir).map(drop),
    ] {
        match result {
            Err(error @ Error::Io { .. }) => {
                assert!(error.to_string().contains("not a regular file"), "{error}")
            }
            other => panic!("expected an I/O error naming LOCK, got {other:?}"),
        }
    }

    // A segment that is a symlink, or a FIFO named like one: corruption naming it, at once.
    for kind in ["symlink", "fifo"] {
        let dir = temp.path().join(kind);
        fs::create_dir(&dir).unwrap();
        store_with_two_messages(&dir).close().unwrap();
        let second = dir.join("00000000000000000003.log");
        if kind == "symlink" {
            symlink(&outside, &second).unwrap();
        } else {
            let status = std::process::Command::new("mkfifo")
                .arg(&second)
                .status()
                .unwrap();
            assert!(status.success());
        }
        for result in [
            Store::open(&dir).map(drop),
            Store::open_read_only(&dir).map(drop),
        ] {
            match result {
                Err(Error::Corruption { segment, .. }) => assert_eq!(segment, second, "{kind}"),
                other => panic!("{kind}: expected Corruption, got {other:?}"),
            }
        }
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
    }
}

#[test]
fn a_store_whose_parent_is_missing_is_refused_naming_it_by_every_open() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("missing").join("store");
    for result in [
        Store::open(&dir).map(drop),
        Store::open_read_only(&dir).map(drop),
    ] {
        match result {
            Err(Error::InvalidInput {
                field: "parent of dir",
                ..
            }) => {}
            other => panic!("expected InvalidInput naming the parent, got {other:?}"),
        }
    }
    assert!(
        !temp.path().join("missing").exists(),
        "an open created a directory"
    );
}

#[test]
fn a_store_directory_others_can_write_is_refused_with_the_remedy() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    fs::create_dir(&dir).unwrap();
    store_with_two_messages(&dir).close().unwrap();
    let before = snapshot(&dir);
    for mode in [0o777, 0o770, 0o702] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
        match Store::open(&dir).map(drop) {
            Err(error @ Error::InvalidInput { field: "dir", .. }) => {
                assert!(error.to_string().contains("chmod go-w"), "{error}")
            }
            other => panic!("mode {mode:o}: expected InvalidInput, got {other:?}"),
        }
        assert_eq!(snapshot(&dir), before);
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    Store::open(&dir).unwrap().close().unwrap();

    // Owned by another user (only root can make one here).
    let process_uid = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap());
    if process_uid == 0 {
        std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
        match Store::open(&dir).map(drop) {
            Err(error @ Error::InvalidInput { field: "dir", .. }) => {
                assert!(error.to_string().contains("owned by user 4242"), "{error}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
    }
}
