//! The `channels` command; the channel-effectiveness view itself: tests/channel.rs.

mod support;

use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use commlog::{Channel, ChannelReport, EffectivenessFilter, Period, Store};
use support::command::spawning;
use support::store::options;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// Sends one message of user 1 per entry of `reports`, then tracks that entry's reports
/// ("delivered", "opened", or an action name) a minute after `sent_at`.
fn send(
    store: &Store,
    channel: Channel,
    message_type: &str,
    cost: f64,
    sent_at: &str,
    reports: &[&[&str]],
) {
    for actions in reports {
        let message = store
            .track_message_sent_at(1, channel, message_type, cost, at(sent_at))
            .unwrap();
        for action in *actions {
            let later = Some(at(sent_at) + chrono::Duration::minutes(1));
            match *action {
                "delivered" => store.track_message_delivered(message.id, later).map(drop),
                "opened" => store.track_message_opened(message.id, later).map(drop),
                name => store.track_user_action(message.id, name, later).map(drop),
            }
            .unwrap();
        }
    }
}

const SENT: &str = "2025-01-06T09:00:00Z";

#[test]
fn the_channels_command_prints_the_report_as_json_and_has_no_channel_filter() {
    let _spawning = spawning();
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        send(
            &store,
            Channel::Sms,
            "low_balance",
            0.05,
            SENT,
            &[&["viewed_forecast"]],
        );
        send(
            &store,
            Channel::Email,
            "low_balance",
            0.001,
            SENT,
            &[&["delivered"]],
        );
        store.close().unwrap();
    }
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_commlog"))
            .env_remove("COMMLOG_DIR")
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (code, stdout, _) = run(&[
        "--json",
        "channels",
        "--type",
        "low_balance",
        "--period",
        "week",
    ]);
    assert_eq!(code, Some(0));
    let printed: ChannelReport = serde_json::from_str(&stdout).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    let filter = EffectivenessFilter::new()
        .message_type("low_balance")
        .period(Period::Week);
    assert_eq!(printed, store.get_channel_effectiveness(&filter).unwrap());

    let (code, stdout, _) = run(&["channels"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("low_balance") && stdout.contains("winner"),
        "{stdout}"
    );

    // The report compares every channel: there is no channel filter.
    let (code, _, stderr) = run(&["channels", "--channel", "sms"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--channel"), "{stderr}");
    let (code, _, _) = run(&["channels", "--user", "0"]);
    assert_eq!(code, Some(1));
    let (code, _, _) = run(&["channels", "--period", "year"]);
    assert_eq!(code, Some(1));
}

#[test]
fn the_channels_command_prints_a_period_for_an_outcome_on_a_day_without_messages() {
    let _spawning = spawning();
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        send(
            &store,
            Channel::Sms,
            "low_balance",
            0.05,
            SENT,
            &[&["viewed_forecast"]],
        );
        // Two days after the send, credited to it: the only event of 8 January.
        store
            .track_financial_outcome_at(1, "bill_paid_on_time", 25.0, at("2025-01-08T12:00:00Z"))
            .unwrap();
        store.close().unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_commlog"))
        .env_remove("COMMLOG_DIR")
        .arg("--dir")
        .arg(dir.path())
        .args(["channels", "--period", "day"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    // The period table: a row per line and channel total of each day, the day first, then
    // the 20 columns of a line (the period winners table has 5).
    let rows = |day: &str| -> Vec<Vec<&str>> {
        stdout
            .lines()
            .filter(|row| row.starts_with(day))
            .map(|row| row.split_whitespace().collect::<Vec<_>>())
            .filter(|cells| cells.len() == 21)
            .collect()
    };
    // Day, channel, type, sent, … impact (column 18).
    let sent_day = rows("2025-01-06");
    let outcome_day = rows("2025-01-08");
    assert_eq!(sent_day.len(), 2, "{stdout}");
    assert_eq!(outcome_day.len(), 2, "{stdout}");
    for row in &sent_day {
        assert_eq!((row[1], row[3], row[18]), ("sms", "1", "$0.00"), "{stdout}");
    }
    for row in &outcome_day {
        assert_eq!(
            (row[1], row[3], row[18]),
            ("sms", "0", "$25.00"),
            "{stdout}"
        );
    }
}
