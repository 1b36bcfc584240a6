//! The command line: every command run as the built binary on temporary directories,
//! `--json` parsed back with serde_json, every exit status, the lock message, corruption, a
//! closed pipe, and the demo on the 20,000-message reference workload. (Export and import have
//! their own tests.)

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use commlog::{
    Channel, CommunicationStats, FinancialOutcome, Message, Options, Status, Store, SyncPolicy,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use support::command::{cli, cli_in};
use support::files::{segments, snapshot, snapshot_without_lock};

/// No command of these tests may take longer; a hang fails the test instead of blocking it.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished command printed and returned.
#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Waits for `child`, killing it and failing the test after `TIMEOUT`.
fn wait(child: &mut Child, what: &str) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for commlog") {
            return status
                .code()
                .unwrap_or_else(|| panic!("{what}: killed by a signal ({status:?})"));
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `command` to its end, capturing its output. No output ever holds an ANSI escape.
fn finish(mut command: Command) -> Output {
    let what = format!("{command:?}");
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn commlog");
    let reader = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).expect("read a pipe");
            bytes
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let code = wait(&mut child, &what);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8(stdout.join().unwrap()).expect("stdout is UTF-8");
    let stderr = String::from_utf8(stderr.join().unwrap()).expect("stderr is UTF-8");
    assert!(
        !stdout.contains('\x1b'),
        "{what}: an ANSI escape on stdout: {stdout:?}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "{what}: an ANSI escape on stderr: {stderr:?}"
    );
    Output {
        code,
        stdout,
        stderr,
        elapsed,
    }
}

/// `commlog --dir DIR ARGS...`.
fn run(dir: &Path, args: &[&str]) -> Output {
    let mut command = cli_in(dir);
    command.args(args);
    finish(command)
}

/// Runs a command that must succeed quietly; returns its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let output = run(dir, args);
    assert_eq!(output.code, 0, "commlog {args:?} failed: {output:?}");
    assert!(
        output.stderr.is_empty(),
        "commlog {args:?} wrote to stderr: {output:?}"
    );
    output.stdout
}

/// Runs a command with `--json` that must succeed; its stdout is one JSON line.
fn json_value(dir: &Path, args: &[&str]) -> Value {
    let args: Vec<&str> = std::iter::once("--json")
        .chain(args.iter().copied())
        .collect();
    let stdout = ok(dir, &args);
    assert_eq!(
        stdout.lines().count(),
        1,
        "commlog {args:?}: one line of JSON: {stdout:?}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("commlog {args:?}: not JSON ({error}): {stdout:?}"))
}

/// Runs a command with `--json` that must succeed, parsed into `T`.
fn json<T: DeserializeOwned>(dir: &Path, args: &[&str]) -> T {
    let value = json_value(dir, args);
    serde_json::from_value(value.clone())
        .unwrap_or_else(|error| panic!("commlog {args:?}: {error}: {value}"))
}

/// Asserts an error printed as the spec says: exit `code`, nothing on stdout, one line on
/// stderr. Runs it again with `--json`: the line is then a JSON object with an "error" field.
/// Returns the plain line.
fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let output = run(dir, args);
    assert_eq!(
        output.code, code,
        "commlog {args:?}: exit status: {output:?}"
    );
    assert!(
        output.stdout.is_empty(),
        "commlog {args:?}: stdout must be empty on an error: {output:?}"
    );
    assert_eq!(
        output.stderr.lines().count(),
        1,
        "commlog {args:?}: one line on stderr: {output:?}"
    );
    assert!(output.stderr.trim().len() > 10, "{output:?}");

    let json_args: Vec<&str> = std::iter::once("--json")
        .chain(args.iter().copied())
        .collect();
    let output_json = run(dir, &json_args);
    assert_eq!(
        output_json.code, code,
        "commlog {json_args:?}: exit status: {output_json:?}"
    );
    assert!(
        output_json.stdout.is_empty(),
        "commlog {json_args:?}: stdout must be empty on an error: {output_json:?}"
    );
    assert_eq!(
        output_json.stderr.lines().count(),
        1,
        "commlog {json_args:?}: one line on stderr: {output_json:?}"
    );
    let value: Value = serde_json::from_str(output_json.stderr.trim()).unwrap_or_else(|error| {
        panic!("commlog {json_args:?}: stderr is not JSON ({error}): {output_json:?}")
    });
    let message = value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("commlog {json_args:?}: no \"error\" string in {value}"));
    assert!(!message.is_empty());
    output.stderr.trim_end().to_string()
}

/// Asserts a command-line parse error: exit 1 (not clap's 2), nothing on stdout, a message.
fn fails_to_parse(dir: &Path, args: &[&str]) -> String {
    let output = run(dir, args);
    assert_eq!(output.code, 1, "commlog {args:?}: exit status: {output:?}");
    assert!(
        output.stdout.is_empty(),
        "commlog {args:?}: stdout must be empty on an error: {output:?}"
    );
    assert!(!output.stderr.trim().is_empty(), "{output:?}");
    output.stderr
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text:?}: {error}"))
        .with_timezone(&Utc)
}

/// Checks the wire form of a message: money an integer of micros, times RFC 3339 UTC strings.
fn check_message_wire_form(value: &Value) {
    assert!(value["id"].is_u64(), "{value}");
    assert!(value["user_id"].is_u64(), "{value}");
    assert!(
        value["cost_micros"].is_i64(),
        "cost in integer micros: {value}"
    );
    for field in [
        "sent_at",
        "delivered_at",
        "opened_at",
        "clicked_at",
        "failed_at",
    ] {
        match &value[field] {
            Value::Null => assert_ne!(field, "sent_at", "{value}"),
            Value::String(text) => check_time_text(text),
            other => panic!("{field} is {other}, not an RFC 3339 string"),
        }
    }
}

fn check_time_text(text: &str) {
    assert!(text.ends_with('Z'), "UTC time {text:?} ends with Z");
    assert_eq!(
        text.len(),
        24,
        "{text:?} has exactly three fractional digits"
    );
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
}

/// Runs `track LINE` for each line (words split on spaces), each of which must succeed.
fn track_lines(dir: &Path, lines: &[&str]) {
    for line in lines {
        let args: Vec<&str> = std::iter::once("track")
            .chain(line.split_whitespace())
            .collect();
        ok(dir, &args);
    }
}

/// `track ... --json`, checking the wire form, into a Message.
fn track(dir: &Path, args: &[&str]) -> Message {
    let args: Vec<&str> = std::iter::once("track")
        .chain(args.iter().copied())
        .collect();
    let value = json_value(dir, &args);
    check_message_wire_form(&value);
    serde_json::from_value(value).unwrap()
}

/// A human two-column table (`stat value`) up to its first blank line, as a map.
fn two_column_table(text: &str) -> BTreeMap<String, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header.len(), 2, "{text}");
    lines
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap();
            (name.to_string(), value.trim().to_string())
        })
        .collect()
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// ---------------------------------------------------------------------------------------------
// track, history

#[test]
fn every_track_command_prints_the_record_as_json() {
    let temp = temp();
    let dir = &temp.path().join("store");

    // sent, RFC 3339 with an offset: stored in UTC.
    let m1 = track(
        dir,
        &[
            "sent",
            "--user",
            "7",
            "--channel",
            "sms",
            "--type",
            "low_balance",
            "--cost",
            "0.05",
            "--at",
            "2025-01-03T10:30:00+01:00",
        ],
    );
    assert_eq!(m1.id.0, 1);
    assert_eq!(m1.user_id.0, 7);
    assert_eq!(m1.channel, Channel::Sms);
    assert_eq!(&*m1.message_type, "low_balance");
    assert_eq!(m1.status, Status::Sent);
    assert_eq!(m1.cost.micros(), 50_000);
    assert_eq!(m1.sent_at, time("2025-01-03T09:30:00Z"));
    assert_eq!(
        (
            m1.delivered_at,
            m1.opened_at,
            m1.clicked_at,
            m1.failed_at,
            &m1.action_taken
        ),
        (None, None, None, None, &None)
    );
    // The wire form itself: micros and a UTC string.
    let raw = json_value(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "8",
            "--channel",
            "push",
            "--type",
            "savings_nudge",
            "--cost",
            "1.234567",
            "--at",
            "2025-01-01T00:00:00Z",
        ],
    );
    assert_eq!(raw["cost_micros"], Value::from(1_234_567));
    assert_eq!(raw["sent_at"], Value::from("2025-01-01T00:00:00.000Z"));
    assert_eq!(raw["channel"], Value::from("push"));
    assert_eq!(raw["status"], Value::from("sent"));
    assert_eq!(raw["id"], Value::from(2));

    // sent, a bare date: midnight UTC; cost defaults to 0; in_app.
    let m3 = track(
        dir,
        &[
            "sent",
            "--user",
            "7",
            "--channel",
            "in_app",
            "--type",
            "upgrade_offer",
            "--at",
            "2025-01-01",
        ],
    );
    assert_eq!(m3.id.0, 3);
    assert_eq!(m3.channel, Channel::InApp);
    assert_eq!(m3.cost.micros(), 0);
    assert_eq!(m3.sent_at, time("2025-01-01T00:00:00Z"));

    let m4 = track(
        dir,
        &[
            "sent",
            "--user",
            "7",
            "--channel",
            "email",
            "--type",
            "weekly_checkin",
            "--cost",
            "0.001",
            "--at",
            "2025-01-02T08:00:00.123Z",
        ],
    );
    assert_eq!(m4.id.0, 4);
    assert_eq!(m4.channel, Channel::Email);
    assert_eq!(m4.cost.micros(), 1_000);
    assert_eq!(m4.sent_at, time("2025-01-02T08:00:00.123Z"));

    // delivered, opened, action (a click), on message 1.
    let m1 = track(
        dir,
        &[
            "delivered",
            "--message",
            "1",
            "--at",
            "2025-01-03T09:30:01.500Z",
        ],
    );
    assert_eq!((m1.id.0, m1.status), (1, Status::Delivered));
    assert_eq!(m1.delivered_at, Some(time("2025-01-03T09:30:01.500Z")));
    let m1 = track(
        dir,
        &["opened", "--message", "1", "--at", "2025-01-03T09:31:00Z"],
    );
    assert_eq!(m1.status, Status::Opened);
    assert_eq!(m1.opened_at, Some(time("2025-01-03T09:31:00Z")));
    let m1 = track(
        dir,
        &[
            "action",
            "--message",
            "1",
            "--action",
            "clicked_link",
            "--at",
            "2025-01-03T09:32:00Z",
        ],
    );
    assert_eq!(m1.status, Status::Clicked);
    assert_eq!(m1.clicked_at, Some(time("2025-01-03T09:32:00Z")));
    assert_eq!(m1.action_taken.as_deref(), Some("clicked_link"));
    assert_eq!(m1.cost.micros(), 50_000);
    assert_eq!(m1.sent_at, time("2025-01-03T09:30:00Z"));

    // failed, a bare date.
    let m3 = track(
        dir,
        &[
            "failed",
            "--message",
            "3",
            "--reason",
            "undelivered",
            "--at",
            "2025-01-02",
        ],
    );
    assert_eq!(m3.status, Status::Failed);
    assert_eq!(m3.failed_at, Some(time("2025-01-02T00:00:00Z")));

    // Stored times have millisecond resolution.
    let m4 = track(
        dir,
        &[
            "delivered",
            "--message",
            "4",
            "--at",
            "2025-01-02T08:00:05.250999Z",
        ],
    );
    let delivered_at = m4.delivered_at.unwrap();
    assert_eq!(delivered_at.timestamp_subsec_nanos() % 1_000_000, 0);
    assert!(
        (delivered_at - time("2025-01-02T08:00:05.250999Z")).abs()
            < chrono::Duration::milliseconds(1),
        "{delivered_at}"
    );
    // An action that is not a click.
    let m4 = track(
        dir,
        &[
            "action",
            "--message",
            "4",
            "--action",
            "replied",
            "--at",
            "2025-01-02T09:00:00Z",
        ],
    );
    assert_eq!(m4.status, Status::Delivered);
    assert_eq!(m4.clicked_at, None);
    assert_eq!(m4.action_taken.as_deref(), Some("replied"));

    // outcome: bare date, RFC 3339, a negative amount (a loss); money in integer micros.
    let raw = json_value(
        dir,
        &[
            "track",
            "outcome",
            "--user",
            "7",
            "--outcome",
            "bill_paid_on_time",
            "--amount",
            "25.5",
            "--at",
            "2025-01-04",
        ],
    );
    assert_eq!(raw["amount_micros"], Value::from(25_500_000));
    assert_eq!(raw["at"], Value::from("2025-01-04T00:00:00.000Z"));
    let outcome: FinancialOutcome = serde_json::from_value(raw).unwrap();
    assert_eq!(outcome.user_id.0, 7);
    assert_eq!(outcome.outcome, "bill_paid_on_time");
    assert_eq!(outcome.amount.micros(), 25_500_000);
    assert_eq!(outcome.at, time("2025-01-04T00:00:00Z"));
    let loss: FinancialOutcome = json(
        dir,
        &[
            "track",
            "outcome",
            "--user",
            "7",
            "--outcome",
            "overdraft_fee",
            "--amount",
            "-2.5",
            "--at",
            "2025-01-04T12:00:00.250Z",
        ],
    );
    assert_eq!(loss.amount.micros(), -2_500_000);
    assert_eq!(loss.at, time("2025-01-04T12:00:00.250Z"));
    check_time_text("2025-01-04T12:00:00.250Z");

    // Without --at: now.
    let before = Utc::now() - chrono::Duration::milliseconds(1);
    let m5 = track(
        dir,
        &[
            "sent",
            "--user",
            "7",
            "--channel",
            "sms",
            "--type",
            "security_alert",
        ],
    );
    let after = Utc::now() + chrono::Duration::milliseconds(1);
    assert_eq!(m5.id.0, 5);
    assert!(
        before <= m5.sent_at && m5.sent_at <= after,
        "{before} {m5:?} {after}"
    );
    let m5 = track(dir, &["opened", "--message", "5"]);
    let opened_at = m5.opened_at.unwrap();
    assert!(m5.sent_at <= opened_at && opened_at <= Utc::now());
    assert_eq!(m5.status, Status::Opened);

    // history: newest sent first (not id order), the records as tracked.
    let history: Vec<Message> = json(dir, &["history", "--user", "7"]);
    let ids: Vec<u64> = history.iter().map(|message| message.id.0).collect();
    assert_eq!(ids, [5, 1, 4, 3]);
    assert_eq!(history, [m5.clone(), m1.clone(), m4.clone(), m3.clone()]);
    for value in json_value(dir, &["history", "--user", "7"])
        .as_array()
        .unwrap()
    {
        check_message_wire_form(value);
    }
    let history: Vec<Message> = json(dir, &["history", "--user", "7", "--limit", "2"]);
    assert_eq!(history, [m5, m1]);
    let history: Vec<Message> = json(dir, &["history", "--user", "8"]);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].cost.micros(), 1_234_567);
    let history: Vec<Message> = json(dir, &["history", "--user", "9"]);
    assert!(history.is_empty());

    // The human table: a header, then a row per message, newest first.
    let table = ok(dir, &["history", "--user", "7", "--limit", "3"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    for column in ["id", "user", "channel", "type", "status", "cost", "sent_at"] {
        assert!(header.contains(&column), "{column} in {table}");
    }
    let row_ids: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(row_ids, ["5", "1", "4"], "{table}");
    assert!(lines[2].contains("$0.05"), "{table}");
    assert!(lines[2].contains("clicked_link"), "{table}");
    assert!(lines[2].contains("2025-01-03T09:30:00.000Z"), "{table}");

    // Human output of track: the record as a table.
    let table = ok(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "9",
            "--channel",
            "email",
            "--type",
            "monthly_report",
            "--cost",
            "1234.5",
            "--at",
            "2025-01-05",
        ],
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].split_whitespace().eq([
        "id",
        "user",
        "channel",
        "type",
        "status",
        "cost",
        "sent_at",
        "delivered_at",
        "opened_at",
        "clicked_at",
        "action",
        "failure"
    ]));
    assert_eq!(lines[1].split_whitespace().next(), Some("6"), "{table}");
    assert!(lines[1].contains("$1,234.50"), "{table}");
    let table = ok(
        dir,
        &[
            "track",
            "outcome",
            "--user",
            "9",
            "--outcome",
            "bill_paid_on_time",
            "--amount",
            "12345.678",
            "--at",
            "2025-01-05",
        ],
    );
    assert!(table.lines().next().unwrap().contains("amount"), "{table}");
    assert!(table.contains("$12,345.678"), "{table}");
    assert!(table.contains("2025-01-05T00:00:00.000Z"), "{table}");
}

// ---------------------------------------------------------------------------------------------
// stats

/// A small store, tracked from the shell, with events either side of 2025-01-06T00:00:00Z.
fn stats_store(dir: &Path) {
    track_lines(
        dir,
        &[
            // m1: the last millisecond of 2025-01-05.
            "sent --user 1 --channel sms --type low_balance --cost 0.05 --at 2025-01-05T23:59:59.999Z",
            // m2: the first millisecond of 2025-01-06.
            "sent --user 1 --channel email --type weekly_checkin --cost 0.001 --at 2025-01-06T00:00:00.000Z",
            "sent --user 2 --channel sms --type low_balance --cost 0.05 --at 2025-01-05T12:00:00Z",
            "sent --user 2 --channel push --type bill_reminder --at 2025-01-04",
            "delivered --message 1 --at 2025-01-06T00:00:01Z",
            "opened --message 1 --at 2025-01-06T00:01:00Z",
            "action --message 1 --action clicked_link --at 2025-01-06T00:02:00Z",
            "delivered --message 3 --at 2025-01-05T12:00:05Z",
            "failed --message 4 --reason bounced --at 2025-01-04T00:00:10Z",
            "outcome --user 1 --outcome bill_paid_on_time --amount 1234.5 --at 2025-01-05T23:59:59.999Z",
            "outcome --user 2 --outcome overdraft_fee --amount -2.5 --at 2025-01-06T00:00:00Z",
        ],
    );
}

fn stats(dir: &Path, filters: &[&str]) -> CommunicationStats {
    let args: Vec<&str> = std::iter::once("stats")
        .chain(filters.iter().copied())
        .collect();
    let value = json_value(dir, &args);
    assert!(value["total_cost_micros"].is_i64(), "{value}");
    assert!(value["total_impact_micros"].is_i64(), "{value}");
    assert!(value["avg_cost_per_message_micros"].is_i64(), "{value}");
    serde_json::from_value(value).unwrap()
}

#[test]
fn stats_with_every_filter() {
    let temp = temp();
    let dir = temp.path();
    stats_store(dir);

    let all = stats(dir, &[]);
    assert_eq!(all.total_messages, 4);
    assert_eq!(
        (
            all.delivered_count,
            all.opened_count,
            all.clicked_count,
            all.action_count,
            all.failed_count
        ),
        (2, 1, 1, 1, 1)
    );
    assert_eq!(all.delivery_rate, 50.0);
    assert_eq!(all.total_cost.micros(), 101_000);
    assert_eq!(all.avg_cost_per_message.micros(), 25_250);
    assert_eq!(all.outcome_count, 2);
    assert_eq!(all.total_impact.micros(), 1_232_000_000);
    let breakdown = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), *value))
            .collect()
    };
    assert_eq!(
        all.status_breakdown,
        breakdown(&[("clicked", 1), ("delivered", 1), ("failed", 1), ("sent", 1)])
    );
    assert_eq!(
        all.channel_breakdown,
        breakdown(&[("email", 1), ("push", 1), ("sms", 2)])
    );
    assert_eq!(
        all.message_type_breakdown,
        breakdown(&[
            ("bill_reminder", 1),
            ("low_balance", 2),
            ("weekly_checkin", 1)
        ])
    );

    let user1 = stats(dir, &["--user", "1"]);
    assert_eq!(user1.total_messages, 2);
    assert_eq!(user1.total_cost.micros(), 51_000);
    assert_eq!(
        (user1.outcome_count, user1.total_impact.micros()),
        (1, 1_234_500_000)
    );
    let user2 = stats(dir, &["--user", "2"]);
    assert_eq!(
        (
            user2.total_messages,
            user2.failed_count,
            user2.delivered_count
        ),
        (2, 1, 1)
    );
    assert_eq!(
        (user2.outcome_count, user2.total_impact.micros()),
        (1, -2_500_000)
    );

    let low_balance = stats(dir, &["--type", "low_balance"]);
    assert_eq!(low_balance.total_messages, 2);
    assert_eq!(low_balance.total_cost.micros(), 100_000);
    assert_eq!(low_balance.avg_cost_per_message.micros(), 50_000);
    assert_eq!(stats(dir, &["--type", "never_tracked"]).total_messages, 0);

    let sms = stats(dir, &["--channel", "sms"]);
    assert_eq!((sms.total_messages, sms.delivered_count), (2, 2));
    let push = stats(dir, &["--channel", "push"]);
    assert_eq!((push.total_messages, push.failed_count), (1, 1));
    let in_app = stats(dir, &["--channel", "in_app"]);
    assert_eq!(in_app.total_messages, 0);
    assert_eq!(
        (in_app.delivery_rate, in_app.open_rate, in_app.click_rate),
        (0.0, 0.0, 0.0)
    );

    // A bare --start is the day's first millisecond.
    let from_6th = stats(dir, &["--start", "2025-01-06"]);
    assert_eq!(from_6th.total_messages, 1);
    assert_eq!(from_6th.channel_breakdown, breakdown(&[("email", 1)]));
    assert_eq!(
        (from_6th.outcome_count, from_6th.total_impact.micros()),
        (1, -2_500_000)
    );
    // A bare --end includes 23:59:59.999 of that day, not the next day's 00:00:00.000.
    let to_5th = stats(dir, &["--end", "2025-01-05"]);
    assert_eq!(to_5th.total_messages, 3);
    assert_eq!(
        to_5th.channel_breakdown,
        breakdown(&[("push", 1), ("sms", 2)])
    );
    assert_eq!(
        (to_5th.outcome_count, to_5th.total_impact.micros()),
        (1, 1_234_500_000)
    );
    // An RFC 3339 --end is that instant, inclusive.
    let to_998 = stats(dir, &["--end", "2025-01-05T23:59:59.998Z"]);
    assert_eq!((to_998.total_messages, to_998.outcome_count), (2, 0));
    let to_999 = stats(dir, &["--end", "2025-01-05T23:59:59.999Z"]);
    assert_eq!((to_999.total_messages, to_999.outcome_count), (3, 1));
    let the_5th = stats(dir, &["--start", "2025-01-05", "--end", "2025-01-05"]);
    assert_eq!(the_5th.total_messages, 2);
    assert_eq!(
        the_5th.message_type_breakdown,
        breakdown(&[("low_balance", 2)])
    );
    let around_midnight = stats(
        dir,
        &[
            "--start",
            "2025-01-05T23:59:59.999Z",
            "--end",
            "2025-01-06T00:00:00Z",
        ],
    );
    assert_eq!(
        (
            around_midnight.total_messages,
            around_midnight.outcome_count
        ),
        (2, 2)
    );
    // An offset is converted to UTC: 2025-01-06T01:00:00+01:00 is midnight UTC.
    let offset = stats(dir, &["--start", "2025-01-06T01:00:00+01:00"]);
    assert_eq!((offset.total_messages, offset.outcome_count), (1, 1));

    // Every filter at once.
    let one = stats(
        dir,
        &[
            "--user",
            "1",
            "--type",
            "low_balance",
            "--channel",
            "sms",
            "--start",
            "2025-01-05",
            "--end",
            "2025-01-05",
        ],
    );
    assert_eq!(one.total_messages, 1);
    assert_eq!((one.delivered_count, one.clicked_count), (1, 1));
    assert_eq!(one.total_cost.micros(), 50_000);
    assert_eq!(
        (one.outcome_count, one.total_impact.micros()),
        (1, 1_234_500_000)
    );
    let none = stats(dir, &["--user", "2", "--channel", "email"]);
    assert_eq!((none.total_messages, none.total_cost.micros()), (0, 0));

    // The human tables: money as dollars with at least two decimals and thousands separators.
    let text = ok(dir, &["stats", "--type", "low_balance"]);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["stat", "value"]),
        "{text}"
    );
    let table = two_column_table(&text);
    assert_eq!(table["total_messages"], "2");
    assert_eq!(table["total_cost"], "$0.10");
    assert_eq!(table["avg_cost_per_message"], "$0.05");
    let text = ok(dir, &["stats"]);
    let table = two_column_table(&text);
    assert_eq!(table["total_cost"], "$0.101");
    assert_eq!(table["avg_cost_per_message"], "$0.02525");
    assert_eq!(table["total_impact"], "$1,232.00");
    assert_eq!(table["delivery_rate"], "50.00%");
    assert_eq!(table["failed_count"], "1");
    for breakdown in ["status", "channel", "message_type"] {
        assert!(
            text.lines()
                .any(|line| line.split_whitespace().eq([breakdown, "messages"])),
            "a {breakdown} breakdown in {text}"
        );
    }
    let table = two_column_table(&ok(dir, &["stats", "--user", "2"]));
    assert_eq!(table["total_impact"], "-$2.50");
}

#[test]
fn sums_of_the_largest_costs_print_exactly_in_every_view() {
    let temp = temp();
    let dir = temp.path();
    for _ in 0..3 {
        ok(
            dir,
            &[
                "track",
                "sent",
                "--user",
                "1",
                "--channel",
                "sms",
                "--type",
                "x",
                "--cost",
                "9000000000000",
                "--at",
                "2025-03-01T00:00:00Z",
            ],
        );
        ok(
            dir,
            &[
                "track",
                "outcome",
                "--user",
                "1",
                "--outcome",
                "won",
                "--amount",
                "9000000000000",
                "--at",
                "2025-03-02T00:00:00Z",
            ],
        );
    }
    // 3 × 9e18 micros: beyond 64 bits, printed whole (JSON numbers are read back as text).
    let sum = "27000000000000000000";
    let views: [(&[&str], &[&str]); 5] = [
        (&["stats"], &["total_cost_micros", "total_impact_micros"]),
        (&["costs"], &["spent_micros"]),
        (&["channels"], &["total_cost_micros"]),
        (&["impact"], &["cost_micros", "amount_micros"]),
        (&["engagement", "--user", "1"], &["total_cost_micros"]),
    ];
    for (args, fields) in views {
        let text = ok(dir, &[&["--json"], args].concat());
        for field in fields {
            assert!(
                text.contains(&format!("\"{field}\":{sum}")),
                "{args:?}: {field} = {sum} in {text}"
            );
        }
        let table = ok(dir, args);
        assert!(
            table.contains("$27,000,000,000,000.00"),
            "{args:?}: the sum in dollars in {table}"
        );
    }
    let stats: CommunicationStats = serde_json::from_str(&ok(dir, &["--json", "stats"])).unwrap();
    assert_eq!(stats.total_cost.micros(), 27_000_000_000_000_000_000);
    assert_eq!(stats.total_impact.micros(), 27_000_000_000_000_000_000);
}

/// Money field names without their unit: in JSON, money is only ever under a `*_micros` name.
const MONEY_NAMES_WITHOUT_UNIT: [&str; 15] = [
    "cost",
    "amount",
    "total_cost",
    "avg_cost_per_message",
    "total_impact",
    "average_cost",
    "cost_per_message",
    "cost_per_delivered",
    "cost_per_response",
    "cost_per_conversion",
    "attributed_impact",
    "spent",
    "budget",
    "variance",
    "projected",
];

/// The object keys of a JSON output, and the keys whose string values are times.
#[derive(Debug, Default)]
struct JsonKeys {
    all: BTreeSet<String>,
    times: BTreeSet<String>,
}

/// Walks `value` checking units: no money name without `_micros`, every `*_micros` value an
/// integer or null, and every RFC 3339 string UTC with exactly three fractional digits.
fn check_units(what: &str, key: Option<&str>, value: &Value, keys: &mut JsonKeys) {
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                keys.all.insert(name.clone());
                assert!(
                    !MONEY_NAMES_WITHOUT_UNIT.contains(&name.as_str()),
                    "{what}: money field {name:?} does not name its unit: {value}"
                );
                if name.ends_with("_micros") {
                    assert!(
                        child.is_i64() || child.is_null(),
                        "{what}: {name} is not integer micros: {child}"
                    );
                }
                check_units(what, Some(name), child, keys);
            }
        }
        Value::Array(items) => {
            for item in items {
                check_units(what, key, item, keys);
            }
        }
        Value::String(text) if DateTime::parse_from_rfc3339(text).is_ok() => {
            let bytes = text.as_bytes();
            assert!(
                bytes.len() == 24
                    && text.ends_with('Z')
                    && bytes[19] == b'.'
                    && bytes[20..23].iter().all(u8::is_ascii_digit),
                "{what}: {key:?} = {text:?} is not RFC 3339 UTC with milliseconds"
            );
            keys.times.insert(key.unwrap_or_default().to_string());
        }
        _ => {}
    }
}

/// Runs `args` with `--json` (every line of output is one JSON value) and checks its units.
fn json_keys(dir: &Path, args: &[&str]) -> JsonKeys {
    let stdout = ok(dir, &[&["--json"], args].concat());
    let mut keys = JsonKeys::default();
    for line in stdout.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("{args:?}: not JSON ({error}): {line}"));
        check_units(&format!("{args:?}"), None, &value, &mut keys);
    }
    keys
}

#[test]
fn json_names_money_in_micros_and_writes_times_with_milliseconds() {
    let temp = temp();
    let dir = temp.path();
    // Whole seconds, so a time printed without its zero milliseconds shows.
    track_lines(
        dir,
        &[
            "sent --user 1 --channel sms --type low_balance --cost 0.05 --at 2025-03-01T00:00:00Z",
            "sent --user 1 --channel email --type low_balance --cost 0.01 --at 2025-03-01T01:00:00Z",
            "delivered --message 1 --at 2025-03-01T00:00:01Z",
            "opened --message 1 --at 2025-03-01T00:01:00Z",
            "action --message 1 --action clicked_upgrade --at 2025-03-01T00:02:00Z",
            "failed --message 2 --reason bounced --at 2025-03-01T01:00:01Z",
        ],
    );
    let outcome =
        "track outcome --user 1 --outcome bill_paid_on_time --amount 25 --at 2025-03-02T00:00:00Z";
    let budget = "budget set --scope all --month 2025-03 --amount 100";
    let outputs: [(&str, &[&str], &[&str]); 13] = [
        (outcome, &["amount_micros"], &["at"]),
        (
            "track opened --message 2 --at 2025-03-01T02:00:00Z",
            &["cost_micros"],
            &["sent_at", "delivered_at", "opened_at", "failed_at"],
        ),
        (budget, &["amount_micros"], &[]),
        (
            "history --user 1",
            &["cost_micros"],
            &["sent_at", "delivered_at", "opened_at", "clicked_at"],
        ),
        (
            "stats",
            &[
                "total_cost_micros",
                "avg_cost_per_message_micros",
                "total_impact_micros",
            ],
            &[],
        ),
        (
            "info",
            &[],
            &[
                "first_event_at",
                "last_event_at",
                "first_appended_at",
                "last_appended_at",
            ],
        ),
        (
            "engagement --user 1",
            &["total_cost_micros", "average_cost_micros"],
            &["now"],
        ),
        (
            "channels --period week",
            &[
                "total_cost_micros",
                "cost_per_message_micros",
                "cost_per_response_micros",
                "cost_per_conversion_micros",
                "attributed_impact_micros",
            ],
            &[],
        ),
        (
            "costs",
            &[
                "spent_micros",
                "cost_per_message_micros",
                "cost_per_delivered_micros",
                "cost_per_response_micros",
                "cost_per_conversion_micros",
                "budget_micros",
                "variance_micros",
                "projected_micros",
            ],
            &["now"],
        ),
        ("impact", &["amount_micros", "cost_micros"], &[]),
        (
            "export --format jsonl --out -",
            &["cost_micros", "amount_micros"],
            &["time", "appended_at"],
        ),
        (
            "export --format jsonl --out - --messages",
            &["cost_micros"],
            &[
                "sent_at",
                "delivered_at",
                "opened_at",
                "clicked_at",
                "failed_at",
            ],
        ),
        ("stats --user 2", &["total_cost_micros"], &[]),
    ];
    for (command, money_keys, time_keys) in outputs {
        let args: Vec<&str> = command.split_whitespace().collect();
        let keys = json_keys(dir, &args);
        for key in money_keys {
            assert!(keys.all.contains(*key), "{command}: no {key} in {keys:?}");
        }
        for key in time_keys {
            assert!(
                keys.times.contains(*key),
                "{command}: no time {key} in {keys:?}"
            );
        }
    }
}

/// The cells of the table row whose first cells are `leading`, from the table headed by
/// `header` (its first line starts with it).
fn table_row(text: &str, header: &[&str], leading: &[&str]) -> BTreeMap<String, String> {
    let mut lines = text.lines().skip_while(|line| {
        !line
            .split_whitespace()
            .take(header.len())
            .eq(header.iter().copied())
    });
    let names: Vec<String> = lines
        .next()
        .unwrap_or_else(|| panic!("no table headed {header:?} in {text}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let row = lines
        .take_while(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.starts_with(leading))
        .unwrap_or_else(|| panic!("no row {leading:?} under {header:?} in {text}"));
    assert_eq!(row.len(), names.len(), "{row:?} under {names:?}");
    names
        .into_iter()
        .zip(row.into_iter().map(str::to_string))
        .collect()
}

#[test]
fn roi_prints_one_way_in_channels_and_impact() {
    let temp = temp();
    let dir = temp.path();
    track_lines(
        dir,
        &[
            "sent --user 1 --channel sms --type low_balance --cost 2 --at 2025-03-01T00:00:00Z",
            "opened --message 1 --at 2025-03-01T00:01:00Z",
            "sent --user 2 --channel email --type low_balance --cost 4 --at 2025-03-01T00:00:00Z",
            "opened --message 2 --at 2025-03-01T00:01:00Z",
            "sent --user 3 --channel push --type low_balance --at 2025-03-01T00:00:00Z",
            "opened --message 3 --at 2025-03-01T00:01:00Z",
            "outcome --user 1 --outcome bill_paid_on_time --amount 7 --at 2025-03-01T01:00:00Z",
            "outcome --user 2 --outcome overdraft_fee --amount -1 --at 2025-03-01T01:00:00Z",
            "outcome --user 3 --outcome bill_paid_on_time --amount 5 --at 2025-03-01T01:00:00Z",
        ],
    );
    // sms: (7 − 2) / 2 = +250 %; email: (−1 − 4) / 4 = −125 %; push costs nothing.
    let channels = ok(dir, &["channels"]);
    let impact = ok(dir, &["impact"]);
    for (channel, expected) in [("sms", "+250.00%"), ("email", "-125.00%"), ("push", "-")] {
        let line = table_row(&channels, &["channel", "type"], &[channel, "all"]);
        let row = table_row(&impact, &["channel", "attributed"], &[channel]);
        assert_eq!(line["roi"], expected, "channels, {channel}: {channels}");
        assert_eq!(row["roi"], expected, "impact, {channel}: {impact}");
    }

    // In JSON both are the same ratio, or null.
    let channels = json_value(dir, &["channels"]);
    let impact = json_value(dir, &["impact"]);
    for (index, channel) in ["sms", "email", "push"].into_iter().enumerate() {
        let line = &channels["channels"][index];
        let row = &impact["by_channel"][index];
        assert_eq!(
            (&line["channel"], &row["channel"]),
            (&Value::from(channel), &Value::from(channel))
        );
        assert_eq!(line["roi"], row["roi"], "{channel}");
    }
    assert_eq!(channels["channels"][0]["roi"], Value::from(2.5));
    assert_eq!(impact["by_channel"][2]["roi"], Value::Null);
}

// ---------------------------------------------------------------------------------------------
// info

#[test]
fn info_reports_segments_events_bytes_and_times() {
    let temp = temp();
    let dir = temp.path();
    let started = Utc::now() - chrono::Duration::seconds(1);
    stats_store(dir);
    let finished = Utc::now() + chrono::Duration::seconds(1);

    let info = json_value(dir, &["info"]);
    assert!(info.is_object(), "{info}");
    assert_eq!(info["segments"], Value::from(1), "{info}");
    assert_eq!(info["events"], Value::from(11), "{info}");
    assert_eq!(info["messages"], Value::from(4), "{info}");
    assert_eq!(info["outcomes"], Value::from(2), "{info}");
    let bytes: u64 = segments(dir)
        .iter()
        .map(|path| fs::metadata(path).unwrap().len())
        .sum();
    assert!(bytes > 40 * 2);
    assert_eq!(info["bytes_on_disk"], Value::from(bytes), "{info}");
    assert_eq!(
        info["first_event_at"],
        Value::from("2025-01-04T00:00:00.000Z")
    );
    assert_eq!(
        info["last_event_at"],
        Value::from("2025-01-06T00:02:00.000Z")
    );
    for field in ["first_appended_at", "last_appended_at"] {
        let text = info[field].as_str().unwrap_or_else(|| panic!("{info}"));
        check_time_text(text);
        let at = time(text);
        assert!(started <= at && at <= finished, "{field} {at}");
    }
    assert!(
        time(info["first_appended_at"].as_str().unwrap())
            <= time(info["last_appended_at"].as_str().unwrap())
    );
    let report = &info["open_report"];
    assert!(report.is_object(), "{info}");
    assert_eq!(report["segments"], Value::from(1), "{info}");
    assert_eq!(report["events"], Value::from(11), "{info}");
    assert_eq!(report["truncated_bytes"], Value::from(0), "{info}");

    let text = ok(dir, &["info"]);
    let table = two_column_table(&text);
    assert_eq!(table["segments"], "1");
    assert_eq!(table["events"], "11");
    assert_eq!(table["messages"], "4");
    assert_eq!(table["bytes_on_disk"], bytes.to_string());
    assert_eq!(table["first_event_at"], "2025-01-04T00:00:00.000Z");

    // Reading changes nothing.
    let before = snapshot_without_lock(dir);
    ok(dir, &["info"]);
    ok(dir, &["stats"]);
    ok(dir, &["history", "--user", "1"]);
    assert_eq!(snapshot_without_lock(dir), before);
}

// ---------------------------------------------------------------------------------------------
// The store directory: --dir, $COMMLOG_DIR, commlog-demo

#[test]
fn commlog_dir_is_honored_when_dir_is_absent() {
    let temp = temp();
    let from_env = temp.path().join("from-env");
    let from_flag = temp.path().join("from-flag");
    let sent = [
        "--json",
        "track",
        "sent",
        "--user",
        "3",
        "--channel",
        "sms",
        "--type",
        "low_balance",
    ];

    let mut command = cli();
    command
        .env("COMMLOG_DIR", &from_env)
        .current_dir(temp.path())
        .args(sent);
    let output = finish(command);
    assert_eq!(output.code, 0, "{output:?}");
    let message: Message = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(message.id.0, 1);
    assert_eq!(
        segments(&from_env).len(),
        1,
        "the store went to $COMMLOG_DIR"
    );
    assert!(!temp.path().join("commlog-demo").exists());

    // Read commands find it there too.
    let mut command = cli();
    command
        .env("COMMLOG_DIR", &from_env)
        .current_dir(temp.path())
        .args(["--json", "stats"]);
    let output = finish(command);
    assert_eq!(output.code, 0, "{output:?}");
    let stats: CommunicationStats = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(stats.total_messages, 1);

    // --dir wins over $COMMLOG_DIR.
    let mut command = cli();
    command
        .env("COMMLOG_DIR", &from_env)
        .current_dir(temp.path())
        .arg("--dir")
        .arg(&from_flag)
        .args(sent);
    assert_eq!(finish(command).code, 0);
    assert_eq!(segments(&from_flag).len(), 1);
    assert_eq!(stats_of(&from_env).total_messages, 1);
    assert_eq!(stats_of(&from_flag).total_messages, 1);

    // Neither: a command that writes refuses to guess (it never writes into commlog-demo,
    // which the next demo may replace), and creates nothing.
    let mut command = cli();
    command
        .current_dir(temp.path())
        .env_remove("COMMLOG_DIR")
        .args(sent);
    let output = finish(command);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("--dir"), "{output:?}");
    assert!(!temp.path().join("commlog-demo").exists());
    assert_eq!(stats_of(&from_env).total_messages, 1);
}

fn stats_of(dir: &Path) -> CommunicationStats {
    json(dir, &["stats"])
}

// ---------------------------------------------------------------------------------------------
// Exit statuses and errors

#[test]
fn help_and_version_exit_0() {
    let temp = temp();
    let dir = &temp.path().join("never-created");
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let stdout = ok(dir, args);
        assert!(stdout.contains("Usage"), "{args:?}: {stdout}");
        for command in ["demo", "track", "history", "stats", "info"] {
            assert!(stdout.contains(command), "{command} in {stdout}");
        }
    }
    for args in [&["--version"][..], &["-V"]] {
        let stdout = ok(dir, args);
        assert!(
            stdout.contains(env!("CARGO_PKG_VERSION")),
            "{args:?}: {stdout}"
        );
    }
    let stdout = ok(dir, &["track", "--help"]);
    for command in ["sent", "delivered", "opened", "action", "failed", "outcome"] {
        assert!(stdout.contains(command), "{command} in {stdout}");
    }
    for command in [
        &["demo"][..],
        &["track", "sent"],
        &["track", "delivered"],
        &["track", "opened"],
        &["track", "action"],
        &["track", "failed"],
        &["track", "outcome"],
        &["history"],
        &["stats"],
        &["info"],
        &["completions"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let stdout = ok(dir, &args);
        assert!(stdout.contains("Usage"), "{args:?}: {stdout}");
        assert!(
            stdout.contains("Example"),
            "{args:?} has an example: {stdout}"
        );
        let example = &stdout[stdout.find("Example").unwrap()..];
        let name = command.last().unwrap();
        assert!(
            example.contains("commlog ") && example.contains(name),
            "{args:?}: the example runs the command: {stdout}"
        );
        // `help COMMAND` too.
        let mut args = vec!["help"];
        args.extend(command);
        assert!(ok(dir, &args).contains("Example"), "{args:?}");
    }
    assert!(!dir.exists(), "--help created the store directory");
}

#[test]
fn bad_arguments_exit_1() {
    let temp = temp();
    let dir = temp.path();
    ok(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "low_balance",
            "--cost",
            "0.05",
        ],
    );
    let before = snapshot_without_lock(dir);

    // Parse errors: clap's status 2 is overridden to 1.
    for args in [
        &["--bogus", "stats"][..],
        &["stats", "--bogus"],
        &["frobnicate"],
        &["track"],
        &["track", "sent", "--user", "1", "--channel", "sms"],
        &["track", "sent", "--channel", "sms", "--type", "x"],
        &["track", "delivered"],
        &["track", "action", "--message", "1"],
        &["track", "failed", "--message", "1"],
        &["track", "outcome", "--user", "1", "--outcome", "x"],
        &[
            "track",
            "sent",
            "--user",
            "abc",
            "--channel",
            "sms",
            "--type",
            "x",
        ],
        &[
            "track",
            "sent",
            "--user",
            "-1",
            "--channel",
            "sms",
            "--type",
            "x",
        ],
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "x",
            "--cost",
            "cheap",
        ],
        &["track", "delivered", "--message", "first"],
        &[
            "track",
            "outcome",
            "--user",
            "1",
            "--outcome",
            "x",
            "--amount",
            "lots",
        ],
        &["history"],
        &["history", "--user", "1", "--limit", "-3"],
        &["stats", "--user", "me"],
        &["demo", "--sync", "sometimes"],
        &["demo", "--messages", "many"],
    ] {
        fails_to_parse(dir, args);
        let mut json_args = vec!["--json"];
        json_args.extend(args);
        fails_to_parse(dir, &json_args);
    }
    let stderr = fails_to_parse(dir, &["stats", "--bogus"]);
    assert!(stderr.contains("--bogus"), "{stderr}");
    // What each parse error names: parse_errors_are_one_line_and_json_with_json.

    // Errors found after parsing: one line naming the problem.
    let sent = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec![
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "x",
        ];
        args.extend(extra);
        args
    };
    let line = fails(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "fax",
            "--type",
            "x",
        ],
        1,
    );
    assert!(line.contains("fax"), "{line}");
    assert!(fails(dir, &["stats", "--channel", "fax"], 1).contains("fax"));
    assert!(fails(dir, &sent(&["--at", "yesterday"]), 1).contains("yesterday"));
    assert!(fails(dir, &sent(&["--at", "2025-02-30"]), 1).contains("2025-02-30"));
    assert!(fails(dir, &sent(&["--at", "2025-01-01 09:00"]), 1).contains("--at"));
    assert!(fails(dir, &["stats", "--start", "2025-13-01"], 1).contains("--start"));
    assert!(fails(dir, &["stats", "--end", "tomorrow"], 1).contains("--end"));
    assert!(fails(dir, &sent(&["--cost=-0.05"]), 1).contains("cost"));
    let output = run(dir, &sent(&["--cost", "-0.05"]));
    assert_eq!(output.code, 1, "a negative cost: {output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(fails(dir, &sent(&["--cost", "NaN"]), 1).contains("cost"));
    let line = fails(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "0",
            "--channel",
            "sms",
            "--type",
            "x",
        ],
        1,
    );
    assert!(line.contains("user"), "{line}");
    let line = fails(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "Low Balance",
        ],
        1,
    );
    assert!(line.contains("Low Balance"), "{line}");
    assert!(
        fails(
            dir,
            &[
                "track",
                "outcome",
                "--user",
                "0",
                "--outcome",
                "x",
                "--amount",
                "1"
            ],
            1
        )
        .contains("user")
    );
    assert!(fails(dir, &["history", "--user", "0"], 1).contains("user"));
    assert!(fails(dir, &["stats", "--user", "0"], 1).contains("user"));
    for command in [
        &["track", "delivered", "--message", "99"][..],
        &["track", "opened", "--message", "99"],
        &["track", "action", "--message", "99", "--action", "clicked"],
        &["track", "failed", "--message", "99", "--reason", "bounced"],
    ] {
        let line = fails(dir, command, 1);
        assert!(line.contains("unknown message"), "{command:?}: {line}");
    }
    for command in [
        &["track", "delivered", "--message", "0"][..],
        &["track", "delivered", "--message", "-1"],
        &["history", "--user", "1", "--limit", "-1"],
        &["history", "--user", "1", "--limit", "0"],
        &["history", "--user", "-5"],
        &["stats", "--user", "-5"],
        &["engagement", "--user", "-5"],
        &["channels", "--user", "-5"],
        &["costs", "--user", "-5"],
        &["impact", "--user", "-5"],
        &[
            "track",
            "sent",
            "--user",
            "-5",
            "--channel",
            "sms",
            "--type",
            "x",
        ],
        &[
            "track",
            "outcome",
            "--user",
            "-5",
            "--outcome",
            "x",
            "--amount",
            "1",
        ],
    ] {
        let line = fails(dir, command, 1);
        assert!(line.contains("must be at least 1"), "{command:?}: {line}");
    }
    for command in [
        &["history", "--user", "9223372036854775808"][..],
        &["stats", "--user", "18446744073709551615"],
        &[
            "track",
            "sent",
            "--user",
            "18446744073709551615",
            "--channel",
            "sms",
            "--type",
            "x",
        ],
    ] {
        let line = fails(dir, command, 1);
        assert!(
            line.contains("must be at most 9223372036854775807"),
            "{command:?}: {line}"
        );
    }
    assert_eq!(
        snapshot_without_lock(dir),
        before,
        "a rejected call appended nothing"
    );
    assert_eq!(stats_of(dir).total_messages, 1);
}

#[test]
fn read_commands_on_a_missing_store_exit_1_and_create_nothing() {
    let temp = temp();
    let missing = temp.path().join("missing");
    let nested = temp.path().join("a").join("b");
    for dir in [&missing, &nested] {
        for args in [
            &["history", "--user", "1"][..],
            &["stats"],
            &["stats", "--channel", "sms"],
            &["info"],
        ] {
            let line = fails(dir, args, 1);
            assert!(line.contains(&*dir.to_string_lossy()), "{args:?}: {line}");
            assert!(!dir.exists(), "{args:?} created {}", dir.display());
        }
    }
    assert!(!temp.path().join("a").exists());
    assert!(fs::read_dir(temp.path()).unwrap().next().is_none());
}

/// commands.rs, `track`: "Parse everything before the store is opened: bad arguments touch
/// nothing." A track call refused for its arguments leaves a missing store missing.
#[test]
fn rejected_track_arguments_create_no_store() {
    let temp = temp();
    let dir = &temp.path().join("store");
    fails(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "fax",
            "--type",
            "x",
        ],
        1,
    );
    assert!(!dir.exists(), "a bad --channel created the store");
    fails_to_parse(dir, &["track", "sent", "--user", "1", "--channel", "sms"]);
    assert!(!dir.exists(), "a missing flag created the store");
    fails(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "x",
            "--at",
            "yesterday",
        ],
        1,
    );
    assert!(!dir.exists(), "a bad --at of track sent created the store");
    fails(
        dir,
        &["track", "delivered", "--message", "1", "--at", "soon"],
        1,
    );
    assert!(
        !dir.exists(),
        "a bad --at of track delivered created the store"
    );
    fails(
        dir,
        &[
            "track",
            "outcome",
            "--user",
            "1",
            "--outcome",
            "x",
            "--amount",
            "1",
            "--at",
            "2025-99-99",
        ],
        1,
    );
    assert!(
        !dir.exists(),
        "a bad --at of track outcome created the store"
    );
    // Values the library would refuse, checked before the store is opened.
    for args in [
        &[
            "track",
            "sent",
            "--user",
            "0",
            "--channel",
            "sms",
            "--type",
            "x",
        ][..],
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "Bad Type",
        ],
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "x",
            "--cost=-1",
        ],
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "x",
            "--cost",
            "inf",
        ],
        &[
            "track",
            "outcome",
            "--user",
            "0",
            "--outcome",
            "x",
            "--amount",
            "1",
        ],
        &[
            "track",
            "outcome",
            "--user",
            "1",
            "--outcome",
            "X Y",
            "--amount",
            "1",
        ],
        &[
            "track",
            "outcome",
            "--user",
            "1",
            "--outcome",
            "x",
            "--amount",
            "NaN",
        ],
        &[
            "track",
            "outcome",
            "--user",
            "1",
            "--outcome",
            "x",
            "--amount",
            "1e13",
        ],
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "x",
            "--at",
            "9999-12-31T23:59:59Z",
        ],
        &[
            "track",
            "outcome",
            "--user",
            "1",
            "--outcome",
            "x",
            "--amount",
            "1",
            "--at",
            "0001-01-01",
        ],
        // A follow-up needs a tracked message, so an existing store.
        &["track", "delivered", "--message", "1"],
        &["track", "opened", "--message", "1"],
        &["track", "action", "--message", "1", "--action", "clicked"],
        &["track", "failed", "--message", "1", "--reason", "bounced"],
    ] {
        fails(dir, args, 1);
        assert!(!dir.exists(), "{args:?} created the store");
    }
}

/// A follow-up's own input is checked before the store is opened: a bad one changes no byte of
/// a store (not even `LOCK`, which a writer's open rewrites), is named even while another
/// process writes to the store, and a follow-up on an empty directory creates no store.
#[test]
fn rejected_follow_ups_change_no_file_and_wait_for_no_lock() {
    let temp = temp();
    let empty = &temp.path().join("empty");
    fs::create_dir(empty).unwrap();
    let bad = [
        (
            &["track", "delivered", "--message", "1", "--at", "soon"][..],
            "--at",
        ),
        (
            &["track", "opened", "--message", "1", "--at", "9999-01-01"],
            "at",
        ),
        (
            &["track", "action", "--message", "1", "--action", ""],
            "action",
        ),
        (
            &[
                "track",
                "failed",
                "--message",
                "1",
                "--reason",
                "Not A Name",
            ],
            "reason",
        ),
    ];
    for (args, field) in bad {
        let error = fails(empty, args, 1);
        assert!(error.contains(field), "{args:?}: {error}");
    }
    let error = fails(empty, &["track", "delivered", "--message", "1"], 1);
    assert!(error.contains("unknown message id 1"), "{error}");
    assert!(snapshot(empty).is_empty(), "a follow-up created a store");

    let dir = &temp.path().join("store");
    track(
        dir,
        &["sent", "--user", "1", "--channel", "sms", "--type", "x"],
    );
    let before = snapshot(dir);
    for (args, field) in bad {
        let error = fails(dir, args, 1);
        assert!(error.contains(field), "{args:?}: {error}");
        assert_eq!(snapshot(dir), before, "{args:?} changed a file");
    }
    let holder = Store::open(dir).unwrap();
    for (args, field) in bad {
        let mut waiting = vec!["--wait", "0"];
        waiting.extend(args);
        let error = fails(dir, &waiting, 1);
        assert!(error.contains(field), "{args:?} while locked: {error}");
    }
    drop(holder);
}

#[test]
fn track_times_that_cannot_be_true_exit_1_naming_the_field_the_time_and_the_bound() {
    let temp = temp();
    let dir = temp.path();
    let sent = track(
        dir,
        &[
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "low_balance",
            "--at",
            "2025-01-01T09:00:00Z",
        ],
    );
    let before = snapshot_without_lock(dir);
    let message = sent.id.0.to_string();
    let delivered_at = |at: &'static str| -> Vec<String> {
        ["track", "delivered", "--message", &message, "--at", at]
            .map(str::to_string)
            .to_vec()
    };
    let cases: [(Vec<String>, [&str; 3]); 4] = [
        (
            delivered_at("2025-01-01T08:54:59.999Z"),
            [
                "invalid at",
                "2025-01-01T08:54:59.999Z",
                "must be at or after 2025-01-01T08:55:00.000Z, 5 minutes before the message's \
                 sent time 2025-01-01T09:00:00.000Z",
            ],
        ),
        (
            delivered_at("9999-12-31T23:59:59Z"),
            [
                "invalid at",
                "9999-12-31T23:59:59.000Z",
                "24 hours after the clock at the call",
            ],
        ),
        (
            [
                "track",
                "sent",
                "--user",
                "1",
                "--channel",
                "sms",
                "--type",
                "low_balance",
                "--at",
                "0001-01-01",
            ]
            .map(str::to_string)
            .to_vec(),
            [
                "invalid sent_at",
                "0001-01-01T00:00:00.000Z",
                "must be at or after 1970-01-01T00:00:00.000Z",
            ],
        ),
        (
            [
                "track",
                "outcome",
                "--user",
                "1",
                "--outcome",
                "bill_paid_on_time",
                "--amount",
                "1",
                "--at",
                "9999-12-31T23:59:59Z",
            ]
            .map(str::to_string)
            .to_vec(),
            [
                "invalid at",
                "9999-12-31T23:59:59.000Z",
                "24 hours after the clock at the call",
            ],
        ),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = fails(dir, &args, 1);
        for part in expected {
            assert!(line.contains(part), "{args:?}: {line:?} lacks {part:?}");
        }
        assert!(
            snapshot_without_lock(dir) == before,
            "{args:?} changed the store"
        );
    }
    // Within the clock skew: accepted, and the delivery counts at the send.
    let delivered = track(
        dir,
        &[
            "delivered",
            "--message",
            &message,
            "--at",
            "2025-01-01T08:55:00Z",
        ],
    );
    assert_eq!(delivered.delivered_at, Some(time("2025-01-01T09:00:00Z")));
}

/// "Errors: one line on stderr naming the problem (a JSON object with `--json`), nothing on
/// stdout" holds for errors found while parsing the command line too.
#[test]
fn parse_errors_are_one_line_and_json_with_json() {
    let temp = temp();
    let dir = temp.path();
    let mut problems = Vec::new();
    // Each with what its line must name.
    for (args, named) in [
        (&["stats", "--bogus"][..], "--bogus"),
        (&["history", "--user", "abc"], "abc"),
        (&["demo", "--sync", "sometimes"], "sometimes"),
        (&["frobnicate"], "frobnicate"),
        (
            &["track", "sent", "--user", "1", "--channel", "sms"],
            "--type",
        ),
        (&["history"], "--user"),
        (&["track"], "subcommand"),
    ] {
        let stderr = fails_to_parse(dir, args);
        if stderr.lines().count() != 1 {
            problems.push(format!(
                "commlog {args:?}: not one line on stderr: {stderr:?}"
            ));
        }
        if !stderr.contains(named) {
            problems.push(format!(
                "commlog {args:?}: the line does not name {named}: {stderr:?}"
            ));
        }
        let mut json_args = vec!["--json"];
        json_args.extend(args);
        let stderr = fails_to_parse(dir, &json_args);
        if stderr.lines().count() != 1 {
            problems.push(format!(
                "commlog {json_args:?}: not one line on stderr: {stderr:?}"
            ));
        }
        match serde_json::from_str::<Value>(stderr.trim()) {
            Ok(value)
                if value["error"]
                    .as_str()
                    .is_some_and(|error| error.contains(named)) => {}
            Ok(value) => problems.push(format!(
                "commlog {json_args:?}: no \"error\" naming {named}: {value}"
            )),
            Err(error) => problems.push(format!(
                "commlog {json_args:?}: stderr is not JSON ({error}): {stderr:?}"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_locked_store_exits_2_promptly_with_wait_0() {
    let temp = temp();
    let dir = temp.path();
    let sent = [
        "--wait",
        "0",
        "track",
        "sent",
        "--user",
        "1",
        "--channel",
        "sms",
        "--type",
        "low_balance",
    ];
    ok(dir, &sent);
    let before = snapshot_without_lock(dir);
    let holder = Store::open(dir).unwrap();

    let started = Instant::now();
    let output = run(dir, &sent);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(
        output.stderr.contains("locked by another process"),
        "{output:?}"
    );
    assert!(
        output
            .stderr
            .contains(&format!("pid {}", std::process::id())),
        "names the holder: {output:?}"
    );
    assert!(
        output.elapsed < Duration::from_secs(5),
        "took {:?}",
        output.elapsed
    );
    let line = fails(dir, &sent, 2);
    assert!(line.contains("locked by another process"), "{line}");
    fails(
        dir,
        &[
            "track",
            "outcome",
            "--user",
            "1",
            "--outcome",
            "x",
            "--amount",
            "1",
            "--wait",
            "0",
        ],
        2,
    );
    fails(
        dir,
        &["track", "delivered", "--message", "1", "--wait", "0"],
        2,
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Readers are not kept out by a writer.
    assert_eq!(stats_of(dir).total_messages, 1);
    let history: Vec<Message> = json(dir, &["history", "--user", "1"]);
    assert_eq!(history.len(), 1);
    assert_eq!(json_value(dir, &["info"])["events"], Value::from(1));

    holder.close().unwrap();
    let after_holder = snapshot_without_lock(dir);
    assert_eq!(
        after_holder.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let message = track(
        dir,
        &[
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "low_balance",
        ],
    );
    assert_eq!(message.id.0, 2);
    assert_eq!(stats_of(dir).total_messages, 2);
}

#[test]
fn a_corrupt_durable_frame_exits_2_naming_the_segment_and_offset() {
    let temp = temp();
    let dir = temp.path();
    track_lines(
        dir,
        &[
            "sent --user 1 --channel sms --type low_balance --cost 0.05 --at 2025-01-01T09:00:00Z",
            "sent --user 2 --channel email --type weekly_checkin --at 2025-01-01T09:00:01Z",
            "delivered --message 1 --at 2025-01-01T09:00:02Z",
            "opened --message 1 --at 2025-01-01T09:00:03Z",
            "outcome --user 1 --outcome bill_paid_on_time --amount 25 --at 2025-01-02",
        ],
    );
    assert_eq!(stats_of(dir).total_messages, 2);
    let segments = segments(dir);
    assert_eq!(segments.len(), 1);
    let segment = &segments[0];
    let mut bytes = fs::read(segment).unwrap();
    // The first frame starts after the 56-byte header: body_len (2), crc (4), then the body.
    // Every later call synced and closed cleanly, so this frame is provably durable.
    let position = 56 + 6 + 4;
    assert!(bytes.len() > position + 100);
    bytes[position] ^= 0x5a;
    fs::write(segment, &bytes).unwrap();
    let damaged = snapshot_without_lock(dir);

    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    for args in [
        &["stats"][..],
        &["history", "--user", "1"],
        &["info"],
        &["track", "delivered", "--message", "2"],
        &[
            "track",
            "sent",
            "--user",
            "3",
            "--channel",
            "sms",
            "--type",
            "x",
        ],
    ] {
        let line = fails(dir, args, 2);
        assert!(line.contains(&name), "{args:?} names the segment: {line}");
        assert!(line.contains("offset"), "{args:?} names the offset: {line}");
    }
    let output = run(dir, &["--json", "stats"]);
    let value: Value = serde_json::from_str(output.stderr.trim()).unwrap();
    let message = value["error"].as_str().unwrap();
    assert!(
        message.contains(&name) && message.contains("offset"),
        "{value}"
    );
    assert_eq!(
        snapshot_without_lock(dir),
        damaged,
        "nothing on disk changed"
    );
}

/// A store of `count` messages for user 5, written with the library.
fn big_store(dir: &Path, count: u32) {
    let store = Store::open_with(
        dir,
        Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        },
    )
    .unwrap();
    let start = time("2025-01-01T00:00:00Z");
    for index in 0..count {
        let at = start + chrono::Duration::seconds(i64::from(index));
        let message = store
            .track_message_sent_at(5, Channel::Email, "weekly_checkin", 0.001, at)
            .unwrap();
        if index % 2 == 0 {
            store.track_message_delivered(message.id, Some(at)).unwrap();
        }
    }
    store
        .track_financial_outcome_at(5, "bill_paid_on_time", 1_234_567.891, start)
        .unwrap();
    store.close().unwrap();
}

#[test]
fn a_closed_pipe_exits_0() {
    let temp = temp();
    let dir = temp.path();
    big_store(dir, 3_000);
    for json in [false, true] {
        let mut command = cli_in(dir);
        if json {
            command.arg("--json");
        }
        command
            .args(["history", "--user", "5", "--limit", "100000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        // Close the read end at once: the output (hundreds of kB) can never fit the pipe.
        drop(child.stdout.take());
        let mut stderr_pipe = child.stderr.take().unwrap();
        let reader = thread::spawn(move || {
            let mut text = String::new();
            stderr_pipe.read_to_string(&mut text).unwrap();
            text
        });
        let code = wait(&mut child, "history into a closed pipe");
        let stderr = reader.join().unwrap();
        assert_eq!(code, 0, "json {json}: {stderr}");
        assert!(
            stderr.is_empty(),
            "json {json}: a closed pipe is quiet: {stderr}"
        );
    }

    // The same store read whole: thousands separators in counts and money.
    let history: Vec<Message> = json(dir, &["history", "--user", "5", "--limit", "100000"]);
    assert_eq!(history.len(), 3_000);
    assert_eq!(history[0].id.0, 3_000);
    let table = two_column_table(&ok(dir, &["stats"]));
    assert_eq!(table["total_messages"], "3,000");
    assert_eq!(table["delivered_count"], "1,500");
    assert_eq!(table["total_cost"], "$3.00");
    assert_eq!(table["avg_cost_per_message"], "$0.001");
    assert_eq!(table["total_impact"], "$1,234,567.891");
    let table = two_column_table(&ok(dir, &["info"]));
    assert_eq!(table["events"], "4,501");
    assert_eq!(table["messages"], "3,000");
}

#[test]
fn no_color_changes_nothing() {
    let temp = temp();
    let dir = temp.path();
    stats_store(dir);
    for args in [
        &["stats"][..],
        &["--json", "stats"],
        &["history", "--user", "1"],
        &["info"],
        &["--help"],
        &["stats", "--help"],
        &["track", "sent", "--help"],
    ] {
        let plain = ok(dir, args);
        for (name, value) in [("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")] {
            let mut command = cli_in(dir);
            command.env("NO_COLOR", "1").env(name, value).args(args);
            let output = finish(command);
            assert_eq!(output.code, 0, "{output:?}");
            assert_eq!(output.stdout, plain, "{args:?} with NO_COLOR and {name}");
        }
    }
    // Errors neither.
    let mut command = cli_in(dir);
    command
        .env("NO_COLOR", "1")
        .env("CLICOLOR_FORCE", "1")
        .args(["stats", "--bogus"]);
    let output = finish(command);
    assert_eq!(output.code, 1);
    let mut command = cli_in(dir);
    command
        .env("NO_COLOR", "1")
        .args(["stats", "--channel", "fax"]);
    assert_eq!(finish(command).code, 1);
}

// ---------------------------------------------------------------------------------------------
// demo

fn demo(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["-q", "--json", "demo"];
    args.extend(extra);
    let output = run(dir, &args);
    assert_eq!(output.code, 0, "demo {extra:?}: {output:?}");
    assert!(output.stderr.is_empty(), "-q: {output:?}");
    assert_eq!(output.stdout.lines().count(), 1);
    serde_json::from_str(&output.stdout).unwrap()
}

/// The tally and Q1 of docs/WORKLOAD.md for seed 42, 10,000 users, 20,000 messages.
fn check_20000_reference(report: &Value) {
    assert_eq!(
        report["reference"],
        Value::from("matches the reference"),
        "{report}"
    );
    assert_eq!(report["mismatches"], Value::Array(Vec::new()), "{report}");
    let tally = &report["tally"];
    for (name, value) in [
        ("sent", 20_000),
        ("delivered", 19_028),
        ("opened", 4_907),
        ("action", 1_947),
        ("outcome", 367),
        ("events", 46_249),
    ] {
        assert_eq!(tally[name], Value::from(value), "tally {name}: {tally}");
    }
    assert_eq!(report["q1"]["total_cost_micros"], Value::from(357_713_000));
    assert_eq!(
        report["q1"]["total_impact_micros"],
        Value::from(92_613_680_000i64)
    );
    let q1: CommunicationStats = serde_json::from_value(report["q1"].clone()).unwrap();
    assert_eq!(q1.total_messages, 20_000);
    assert_eq!(q1.delivered_count, 19_028);
    assert_eq!(q1.opened_count, 5_235);
    assert_eq!(q1.clicked_count, 452);
    assert_eq!(q1.action_count, 1_947);
    assert_eq!(q1.total_cost.micros(), 357_713_000);
    assert_eq!(q1.outcome_count, 367);
    assert_eq!(q1.total_impact.micros(), 92_613_680_000);
}

#[test]
fn demo_20000_matches_the_reference_and_replaces_its_own_store() {
    let temp = temp();
    let dir = &temp.path().join("demo");
    let report = demo(dir, &["--messages", "20000"]);
    check_20000_reference(&report);
    let parameters = &report["parameters"];
    assert_eq!(parameters["seed"], Value::from(42));
    assert_eq!(parameters["users"], Value::from(10_000));
    assert_eq!(parameters["messages"], Value::from(20_000));
    assert_eq!(parameters["sync"], Value::from("interval"));
    let history: Vec<Message> =
        serde_json::from_value(report["sample"]["history"].clone()).unwrap();
    assert!(!history.is_empty());
    let _: CommunicationStats = serde_json::from_value(report["sample"]["stats"].clone()).unwrap();
    let measured = &report["measured"];
    assert!(measured["ingest_events_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(
        measured["queries"].as_array().unwrap().len(),
        5,
        "{measured}"
    );
    assert!(measured["bytes_on_disk"].as_u64().unwrap() > 0);
    // Warm: Q1–Q5 and the four views, each one's picks repeated to 10,000 calls.
    let warm: Vec<(&str, u64)> = (measured["warm"].as_array().unwrap().iter())
        .map(|timing| {
            let p50 = timing["p50_us"].as_f64().unwrap();
            assert!(
                0.0 < p50 && p50 <= timing["p99_us"].as_f64().unwrap(),
                "{timing}"
            );
            (
                timing["query"].as_str().unwrap(),
                timing["runs"].as_u64().unwrap(),
            )
        })
        .collect();
    let names = [
        "Q1",
        "Q2",
        "Q3",
        "Q4",
        "Q5",
        "engagement (one user)",
        "channel effectiveness",
        "cost report",
        "financial impact",
    ];
    assert_eq!(warm, names.map(|name| (name, 10_000)));
    // After reopening: the first Q1, then one pass of Q1–Q5 (Q1 once) and of the four views.
    assert!(measured["first_q1_after_reopen_seconds"].as_f64().unwrap() > 0.0);
    let after_reopen = measured["queries_after_reopen"].as_array().unwrap();
    let runs: Vec<u64> = after_reopen
        .iter()
        .map(|timing| timing["runs"].as_u64().unwrap())
        .collect();
    assert_eq!(runs, [1, 1000, 1000, 1000, 100, 1, 1, 1, 1], "{measured}");
    // The peak of each phase (this machine's kernel lets a process reset its high-water mark),
    // the overall peak the highest of them.
    let phases = measured["phase_peaks"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(names[3].starts_with("reopen"), "{names:?}");
    assert!(names[4].contains("full replay"), "{names:?}");
    assert!(names[5].contains("on demand"), "{names:?}");
    assert!(names[6].contains("on demand, Q1"), "{names:?}");
    for measure in [
        "first_history_on_demand_seconds",
        "first_q1_on_demand_seconds",
    ] {
        assert!(measured[measure].as_f64().unwrap() > 0.0, "{measure}");
    }
    let peaks: Vec<u64> = phases
        .iter()
        .map(|phase| phase["peak_rss_bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(
        measured["peak_rss_bytes"].as_u64(),
        peaks.iter().max().copied()
    );
    // Each phase's resident memory at its start (the kernel's counters are approximate, so it
    // is not compared with the peak).
    for phase in phases {
        assert!(phase["rss_at_start_bytes"].as_u64().unwrap() > 0, "{phase}");
    }
    assert!(
        measured["resident_bytes"].as_u64().unwrap() <= peaks[1],
        "{measured}"
    );
    // The part in huge pages is part of the resident memory (none unless asked for).
    assert!(
        measured["huge_page_bytes"].as_u64().unwrap()
            <= measured["resident_bytes"].as_u64().unwrap(),
        "{measured}"
    );

    // The marker holds the parameters.
    let marker: Value =
        serde_json::from_slice(&fs::read(dir.join("COMMLOG_DEMO")).unwrap()).unwrap();
    assert_eq!(marker["messages"], Value::from(20_000));
    assert_eq!(marker["seed"], Value::from(42));
    // And the events the demo wrote: the workload's calls and one budget.
    assert_eq!(marker["events_written"], Value::from(46_250));
    assert_eq!(marker["last_seq"], Value::from(46_250));

    // The store answers from the shell as the demo said.
    let q1 = stats_of(dir);
    let report_q1: CommunicationStats = serde_json::from_value(report["q1"].clone()).unwrap();
    assert_eq!(q1, report_q1);
    let info = json_value(dir, &["info"]);
    // The workload's calls and the month's budget the demo sets.
    assert_eq!(info["events"], Value::from(46_250));
    assert_eq!(info["messages"], Value::from(20_000));
    assert_eq!(info["outcomes"], Value::from(367));
    let user = report["sample"]["history_user"]
        .as_u64()
        .unwrap()
        .to_string();
    let shell_history: Vec<Message> = json(dir, &["history", "--user", &user, "--limit", "10"]);
    assert_eq!(shell_history[..], history[..shell_history.len()]);

    // A second run replaces it; the human report prints tables with dollars.
    let output = run(dir, &["-q", "demo", "--messages", "20000"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    for expected in [
        "matches the reference",
        "19,028",
        "5,235",
        "46,249",
        "$357.713",
        "$92,613.68",
    ] {
        assert!(
            output.stdout.contains(expected),
            "{expected} in {}",
            output.stdout
        );
    }
    assert_eq!(stats_of(dir), q1, "replaced, not appended to");
    assert_eq!(segments(dir).len(), 1);
}

#[test]
fn demo_on_4_threads_matches_the_reference() {
    let temp = temp();
    let report = demo(temp.path(), &["--threads", "4", "--messages", "20000"]);
    check_20000_reference(&report);
    assert_eq!(report["parameters"]["threads"], Value::from(4));
}

#[test]
fn demo_in_batches_matches_the_reference() {
    let temp = temp();
    let report = demo(temp.path(), &["--batch", "1000", "--messages", "20000"]);
    check_20000_reference(&report);
    assert_eq!(report["parameters"]["batch"], Value::from(1000));
    let output = run(
        temp.path(),
        &["demo", "--batch", "7", "--messages", "20000"],
    );
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output
            .stdout
            .contains("ingest (batches of 7 calls, final sync)"),
        "{}",
        output.stdout
    );
}

#[test]
fn demo_of_another_size_is_unchecked_and_sync_never_works() {
    // An existing empty directory is fine.
    let temp = temp();
    let dir = temp.path();
    let report = demo(dir, &["--messages", "5000", "--sync", "never"]);
    assert_eq!(report["reference"], Value::from("unchecked"), "{report}");
    assert_eq!(report["parameters"]["sync"], Value::from("never"));
    assert_eq!(report["tally"]["sent"], Value::from(5_000));
    assert_eq!(stats_of(dir).total_messages, 5_000);
    let output = run(dir, &["demo", "--messages", "5000", "--sync", "never"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stdout.contains("unchecked"), "{}", output.stdout);
    assert!(!output.stdout.contains("matches the reference"));
    // Another seed of a listed size is unchecked too.
    let report = demo(dir, &["--messages", "20000", "--seed", "7"]);
    assert_eq!(report["reference"], Value::from("unchecked"), "{report}");
}

#[test]
fn a_demo_with_snapshots_replaces_its_own_store_but_not_a_file_of_the_users() {
    // Enough events for a snapshot at close: the store's own cache, which a later demo removes.
    let temp = temp();
    let dir = &temp.path().join("demo");
    let args = ["--messages", "30000", "--sync", "never"];
    let report = demo(dir, &args);
    let events = report["tally"]["events"].as_u64().unwrap();
    assert!(events >= commlog::SNAPSHOT_AT_CLOSE_MIN, "{events}");
    let snapshots = dir.join(commlog::SNAPSHOT_DIRECTORY);
    let names = |snapshots: &Path| -> Vec<String> {
        let mut names: Vec<String> = (fs::read_dir(snapshots).unwrap())
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let written = names(&snapshots);
    assert!(!written.is_empty());
    assert!(
        written
            .iter()
            .all(|name| commlog::is_snapshot_file_name(name))
    );
    let q1 = stats_of(dir);
    // A snapshot being written when a run was cut off is the store's too.
    fs::write(snapshots.join(format!("{}.tmp", written[0])), b"half").unwrap();
    demo(dir, &args);
    assert_eq!(stats_of(dir), q1, "replaced, not appended to");
    assert_eq!(names(&snapshots), written);

    // A file of the user's among the snapshots: refused, nothing removed.
    fs::write(snapshots.join("notes.txt"), b"my notes").unwrap();
    let before = names(&snapshots);
    let segments_before = segments(dir);
    let line = fails(dir, &["-q", "demo", "--messages", "30000"], 1);
    assert!(line.contains("notes.txt"), "{line}");
    assert_eq!(names(&snapshots), before);
    assert_eq!(segments(dir), segments_before);
    assert_eq!(stats_of(dir), q1);
}

#[test]
fn demo_refuses_a_directory_it_did_not_make() {
    let temp = temp();

    // A directory with a file of the user's.
    let notes_dir = temp.path().join("notes");
    fs::create_dir(&notes_dir).unwrap();
    fs::write(notes_dir.join("notes.txt"), b"my notes").unwrap();
    let line = fails(&notes_dir, &["-q", "demo", "--messages", "1000"], 1);
    assert!(line.contains("COMMLOG_DEMO"), "{line}");
    assert_eq!(fs::read(notes_dir.join("notes.txt")).unwrap(), b"my notes");
    assert_eq!(fs::read_dir(&notes_dir).unwrap().count(), 1);

    // A user's store, made by track: never deleted.
    let store_dir = temp.path().join("store");
    track(
        &store_dir,
        &[
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "low_balance",
        ],
    );
    let before = snapshot_without_lock(&store_dir);
    fails(&store_dir, &["-q", "demo", "--messages", "1000"], 1);
    assert_eq!(snapshot_without_lock(&store_dir), before);
    assert_eq!(stats_of(&store_dir).total_messages, 1);

    // A demo store with an unknown file next to the marker.
    let demo_dir = temp.path().join("demo");
    demo(&demo_dir, &["--messages", "1000"]);
    fs::write(demo_dir.join("extra.txt"), b"keep me").unwrap();
    let before = snapshot_without_lock(&demo_dir);
    let line = fails(&demo_dir, &["-q", "demo", "--messages", "1000"], 1);
    assert!(line.contains("extra.txt"), "{line}");
    assert_eq!(snapshot_without_lock(&demo_dir), before);
    fs::remove_file(demo_dir.join("extra.txt")).unwrap();

    // A demo store that is open for writing.
    let holder = Store::open(&demo_dir).unwrap();
    let before = snapshot_without_lock(&demo_dir);
    let line = fails(&demo_dir, &["-q", "demo", "--messages", "1000"], 1);
    assert!(line.contains("locked"), "{line}");
    assert_eq!(snapshot_without_lock(&demo_dir), before);
    holder.close().unwrap();
    // Unlocked, it is replaced.
    demo(&demo_dir, &["--messages", "1000"]);
    assert_eq!(stats_of(&demo_dir).total_messages, 1_000);

    // A demo store someone tracked into: the demo names the other events and keeps them.
    track(
        &demo_dir,
        &["sent", "--user", "77", "--channel", "sms", "--type", "mine"],
    );
    let before = snapshot_without_lock(&demo_dir);
    let line = fails(&demo_dir, &["-q", "demo", "--messages", "1000"], 1);
    assert!(
        line.contains("1 other event") && line.contains(&demo_dir.display().to_string()),
        "{line}"
    );
    assert_eq!(snapshot_without_lock(&demo_dir), before);
    let history: Vec<Message> = json(&demo_dir, &["history", "--user", "77"]);
    assert_eq!(&*history[0].message_type, "mine");

    // A demo stopped part way (its marker counts no events) is not replaced either.
    let stopped_dir = temp.path().join("stopped");
    demo(&stopped_dir, &["--messages", "1000"]);
    let marker_path = stopped_dir.join("COMMLOG_DEMO");
    let mut marker: Value = serde_json::from_slice(&fs::read(&marker_path).unwrap()).unwrap();
    marker["events_written"] = Value::Null;
    marker["last_seq"] = Value::Null;
    fs::write(&marker_path, serde_json::to_vec(&marker).unwrap()).unwrap();
    let before = snapshot_without_lock(&stopped_dir);
    let line = fails(&stopped_dir, &["-q", "demo", "--messages", "1000"], 1);
    assert!(line.contains("did not finish"), "{line}");
    assert_eq!(snapshot_without_lock(&stopped_dir), before);

    // A file where the directory should be.
    let file = temp.path().join("a-file");
    fs::write(&file, b"data").unwrap();
    fails(&file, &["-q", "demo", "--messages", "1000"], 1);
    assert_eq!(fs::read(&file).unwrap(), b"data");

    // Zero of anything.
    let zero_dir = temp.path().join("zero");
    fails(&zero_dir, &["-q", "demo", "--messages", "0"], 1);
    fails(&zero_dir, &["-q", "demo", "--threads", "0"], 1);
    fails(&zero_dir, &["-q", "demo", "--batch", "0"], 1);
    // Batches are tracked on one thread.
    fails(
        &zero_dir,
        &["-q", "demo", "--batch", "64", "--threads", "2"],
        1,
    );
    assert!(!zero_dir.exists());
}

#[test]
fn commands_that_write_need_a_named_store() {
    let temp = temp();
    let source = temp.path().join("dump");
    fs::create_dir(&source).unwrap();
    for args in [
        &[
            "track",
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "x",
        ][..],
        &[
            "track",
            "outcome",
            "--user",
            "1",
            "--outcome",
            "x",
            "--amount",
            "1",
        ],
        &["track", "delivered", "--message", "1"],
        &[
            "budget", "set", "--scope", "all", "--month", "2025-01", "--amount", "10",
        ],
        &["import", "--from-sql-export", "dump"],
    ] {
        let mut command = cli();
        command.current_dir(temp.path()).args(args);
        let output = finish(command);
        assert_eq!(output.code, 1, "{args:?}: {output:?}");
        assert!(
            output.stderr.contains("--dir") && output.stderr.contains("COMMLOG_DIR"),
            "{args:?}: {output:?}"
        );
        assert!(!temp.path().join("commlog-demo").exists(), "{args:?}");
    }
    // Read commands keep the demo's directory as their default (and never create it).
    let mut command = cli();
    command.current_dir(temp.path()).args(["stats"]);
    let output = finish(command);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("commlog-demo"), "{output:?}");
    assert!(!temp.path().join("commlog-demo").exists());
}

#[test]
fn a_store_under_a_missing_parent_or_a_file_is_refused() {
    let temp = temp();
    let sent = [
        "track",
        "sent",
        "--user",
        "1",
        "--channel",
        "sms",
        "--type",
        "x",
    ];
    let nested = temp.path().join("missing").join("store");
    let line = fails(&nested, &sent, 1);
    assert!(
        line.contains("missing") && line.contains("does not exist"),
        "{line}"
    );
    assert!(!temp.path().join("missing").exists());

    let file = temp.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    for args in [
        &sent[..],
        &["stats"],
        &["history", "--user", "1"],
        &["info"],
    ] {
        let line = fails(&file, args, 1);
        assert!(line.contains("is not a directory"), "{args:?}: {line}");
    }
    // A path through the file: its parent is not a directory, a user error too.
    let line = fails(&file.join("store"), &sent, 1);
    assert!(line.contains("is not a directory"), "{line}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn an_empty_commlog_dir_names_no_store() {
    let temp = temp();
    let run_with_empty = |args: &[&str]| {
        let mut command = cli();
        command
            .env("COMMLOG_DIR", "")
            .current_dir(temp.path())
            .args(args);
        finish(command)
    };
    let output = run_with_empty(&[
        "track",
        "sent",
        "--user",
        "1",
        "--channel",
        "sms",
        "--type",
        "x",
    ]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("$COMMLOG_DIR"), "{output:?}");
    // A read command falls back to the demo's directory.
    let output = run_with_empty(&["stats"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("commlog-demo"), "{output:?}");
    assert!(!temp.path().join("commlog-demo").exists());
}

#[test]
fn long_unexpected_arguments_are_shown_by_their_start_and_length() {
    let temp = temp();
    let long = "x".repeat(200);
    for args in [vec![long.as_str()], vec!["stats", long.as_str()]] {
        let line = fails_to_parse(temp.path(), &args);
        assert!(line.contains("(200 characters)"), "{line}");
        assert!(!line.contains(&"x".repeat(65)), "{line}");
    }
    let line = fails_to_parse(temp.path(), &["stats", "--user", "99999999999999999999"]);
    assert!(line.contains("i64::MAX"), "{line}");
}

#[test]
fn four_processes_tracking_at_once_wait_their_turn() {
    let temp = temp();
    let dir = temp.path().join("store");
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let dir = dir.clone();
            thread::spawn(move || {
                let mut failures = Vec::new();
                for call in 0..100 {
                    let user = (writer * 100 + call + 1).to_string();
                    let output = run(
                        &dir,
                        &[
                            "track",
                            "sent",
                            "--user",
                            &user,
                            "--channel",
                            "sms",
                            "--type",
                            "x",
                        ],
                    );
                    if output.code != 0 {
                        failures.push(output);
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<Output> = writers
        .into_iter()
        .flat_map(|writer| writer.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        failures.first()
    );

    let store = Store::open_read_only(&dir).unwrap();
    let mut ids = Vec::new();
    let mut users = Vec::new();
    for user in 1..=400u64 {
        let history = store.get_user_communication_history(user, 10).unwrap();
        assert_eq!(history.len(), 1, "user {user}");
        ids.push(history[0].id.0);
        users.push(history[0].user_id.0);
    }
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=400).collect::<Vec<u64>>(),
        "ids 1..400, each once"
    );
    assert_eq!(store.open_report().events, 400);
}

#[test]
fn one_input_language_for_times_channels_and_ids() {
    let temp = temp();
    let dir = temp.path();
    // What Python's isoformat() and SQL print, read as UTC; a channel in any case.
    for (at, channel) in [
        ("2025-01-31T10:00:00", "SMS"),
        ("2025-01-31 10:00:00.250", "Email"),
        ("2025-01-31T10:00:00Z", "in_app"),
        ("2025-01-31", "PUSH"),
    ] {
        track(
            dir,
            &[
                "sent",
                "--user",
                "5",
                "--channel",
                channel,
                "--type",
                "x",
                "--at",
                at,
            ],
        );
    }
    let history: Vec<Message> = json(dir, &["history", "--user", "5"]);
    let mut sent: Vec<String> = history
        .iter()
        .map(|message| format!("{} {}", message.channel, millis(message.sent_at)))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            "email 2025-01-31T10:00:00.250Z",
            "in_app 2025-01-31T10:00:00.000Z",
            "push 2025-01-31T00:00:00.000Z",
            "sms 2025-01-31T10:00:00.000Z",
        ]
    );
    let stats: CommunicationStats = json(
        dir,
        &[
            "stats",
            "--channel",
            "Sms",
            "--start",
            "2025-01-31 10:00:00",
            "--end",
            "2025-01-31T10:00:00",
        ],
    );
    assert_eq!(stats.total_messages, 1);
    let stats: CommunicationStats = json(dir, &["stats", "--end", "2025-01-31"]);
    assert_eq!(
        stats.total_messages, 4,
        "a bare --end date is its whole day"
    );
    let line = fails(dir, &["stats", "--start", "31/01/2025"], 1);
    assert!(
        line.contains("2025-01-31 10:00:00"),
        "names the forms: {line}"
    );

    // A long value is shown by its head and its length.
    let long = "x".repeat(300);
    let line = fails(dir, &["stats", "--start", &long], 1);
    assert!(
        line.contains("(300 characters)") && !line.contains(&long),
        "{line}"
    );
    let line = fails(dir, &["stats", "--channel", &long], 1);
    assert!(
        line.contains("(300 characters)") && !line.contains(&long),
        "{line}"
    );
}

fn millis(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn help_marks_read_only_commands_and_completion_offers_values() {
    let temp = temp();
    let help = ok(temp.path(), &["--help"]);
    for command in [
        "history",
        "stats",
        "info",
        "export",
        "engagement",
        "channels",
        "costs",
        "impact",
    ] {
        let line = help
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{command} ")))
            .unwrap_or_else(|| panic!("{command} in {help}"));
        assert!(line.contains("Read-only"), "{line}");
    }
    for command in ["track", "budget", "import"] {
        let line = help
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{command} ")))
            .unwrap();
        assert!(
            !line.contains("Read-only") && line.contains("writes"),
            "{line}"
        );
    }
    let script = ok(temp.path(), &["completions", "bash"]);
    for values in [
        "sms email push in_app",
        "all sms email push in_app",
        "day week month",
        "jsonl csv parquet",
        "never interval always",
    ] {
        assert!(script.contains(values), "completion offers {values}");
    }
}

#[test]
fn commands_that_write_say_what_their_open_quarantined() {
    let temp = temp();
    let dir = temp.path();
    let segment = dir.join("00000000000000000001.log");
    let tear = || {
        let mut bytes = fs::read(&segment).unwrap();
        bytes.extend_from_slice(&[7, 0, 1, 2, 3]);
        fs::write(&segment, bytes).unwrap();
        fs::metadata(&segment).unwrap().len() - 5
    };
    track(
        dir,
        &["sent", "--user", "1", "--channel", "sms", "--type", "x"],
    );

    // Plain: one line naming the file, the bytes and why.
    let offset = tear();
    let output = run(
        dir,
        &[
            "track",
            "sent",
            "--user",
            "2",
            "--channel",
            "sms",
            "--type",
            "x",
        ],
    );
    assert_eq!(output.code, 0, "{output:?}");
    let quarantined = dir
        .join("quarantine")
        .join(format!("00000000000000000001.log.{offset}.tail"));
    assert_eq!(fs::read(&quarantined).unwrap(), [7, 0, 1, 2, 3]);
    assert_eq!(output.stderr.lines().count(), 1, "{output:?}");
    assert!(
        output.stderr.contains(&quarantined.display().to_string())
            && output.stderr.contains("5 bytes")
            && output.stderr.contains("torn tail"),
        "{output:?}"
    );

    // JSON, for budget set and import's kind of open too: a JSON object on stderr.
    let offset = tear();
    let output = run(
        dir,
        &[
            "--json", "budget", "set", "--scope", "all", "--month", "2025-01", "--amount", "10",
        ],
    );
    assert_eq!(output.code, 0, "{output:?}");
    let line: Value = serde_json::from_str(output.stderr.trim()).unwrap();
    assert_eq!(line["warning"], "quarantined");
    assert_eq!(line["bytes"], 5);
    let file = dir
        .join("quarantine")
        .join(format!("00000000000000000001.log.{offset}.tail"));
    assert_eq!(line["file"], file.display().to_string());
    assert_eq!(stats_of(dir).total_messages, 2);
}

/// The `track sent` arguments of the file-size limit tests.
const SENT_UNDER_LIMIT: [&str; 9] = [
    "sent",
    "--user",
    "9",
    "--channel",
    "sms",
    "--type",
    "abc",
    "--at",
    "2025-01-01",
];

/// Copies the files of the store in `dir` into the new directory `copy`.
fn copy_store_files(dir: &Path, copy: &Path) {
    fs::create_dir(copy).unwrap();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// Runs `track` with `args` on the store in `dir` under a file-size limit (`ulimit -f`) of
/// `blocks` 512-byte blocks, from a shell that leaves SIGXFSZ at its default action (killing
/// the process), as a normal shell does.
fn track_under_file_size_limit(dir: &Path, blocks: u64, args: &[&str]) -> Output {
    let script = format!(
        "ulimit -f {blocks}; exec \"$0\" --dir \"$1\" track {}",
        args.join(" ")
    );
    let mut command = Command::new("sh");
    command
        .args(["-c", &script, env!("CARGO_BIN_EXE_commlog")])
        .arg(dir)
        .env_remove("COMMLOG_DIR")
        .stdin(Stdio::null());
    // `finish` fails the test if the process was killed by a signal.
    finish(command)
}

#[test]
fn a_write_past_the_file_size_limit_is_an_io_error_not_a_kill_by_sigxfsz() {
    let temp = temp();
    let dir = temp.path().join("store");
    let segment_name = "00000000000000000001.log";
    let (mut durable_count, mut refused_count) = (0, 0);
    for events in 1..60u64 {
        track(&dir, &SENT_UNDER_LIMIT);
        // Under a limit at the next 512-byte block, the next call's frame fits or it does not.
        let blocks = fs::metadata(dir.join(segment_name)).unwrap().len() / 512 + 1;
        let copy = temp.path().join(format!("copy-{events}"));
        copy_store_files(&dir, &copy);
        let output = track_under_file_size_limit(&copy, blocks, &SENT_UNDER_LIMIT);
        assert_ne!(output.code, 128 + 25, "SIGXFSZ: {output:?}");
        let total_messages = stats_of(&copy).total_messages;
        if total_messages == events + 1 {
            assert_eq!(output.code, 0, "{events} events before: {output:?}");
            durable_count += 1;
        } else {
            // Refused, and the reopened store holds nothing beyond what was acknowledged.
            assert_eq!(total_messages, events, "{output:?}");
            assert_eq!(output.code, 2, "{events} events before: {output:?}");
            assert!(output.stderr.contains("File too large"), "{output:?}");
            assert!(output.stderr.contains(segment_name), "{output:?}");
            refused_count += 1;
        }
        fs::remove_dir_all(&copy).unwrap();
    }
    assert!(durable_count > 0, "no call fit under the limit");
    assert!(refused_count > 0, "no call ran into the limit");
}

#[test]
fn a_durable_event_exits_0_even_when_closing_fails_after_it() {
    let temp = temp();
    let dir = temp.path().join("store");
    let segment = dir.join("00000000000000000001.log");
    let mut close_failed = false;
    for events in 1..200u64 {
        track(&dir, &SENT_UNDER_LIMIT);
        // Under a file-size limit at the next 512-byte block, the next call's frame fits or it
        // does not; for some store size it fits and the close marker after it does not.
        let size = fs::metadata(&segment).unwrap().len();
        let blocks = size / 512 + 1;
        let copy = temp.path().join(format!("copy-{events}"));
        copy_store_files(&dir, &copy);
        let output = track_under_file_size_limit(&copy, blocks, &SENT_UNDER_LIMIT);
        let durable = stats_of(&copy).total_messages == events + 1;
        if durable {
            // The event is in the log for good: the command succeeded.
            assert_eq!(output.code, 0, "{events} events before: {output:?}");
            if output.stderr.contains("closing the store failed") {
                close_failed = true;
                break;
            }
        } else {
            assert_ne!(output.code, 0, "{output:?}");
        }
        fs::remove_dir_all(&copy).unwrap();
    }
    assert!(close_failed, "no store size made the close marker fail");
}

#[test]
fn track_sent_with_an_external_id_is_idempotent_and_a_conflict_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let track = |user: &str| {
        Command::new(env!("CARGO_BIN_EXE_commlog"))
            .args(["--json", "--dir", store.to_str().unwrap(), "track", "sent"])
            .args(["--user", user, "--channel", "sms", "--type", "low_balance"])
            .args(["--at", "2025-01-01T09:00:00Z", "--external-id", "SM0001"])
            .output()
            .unwrap()
    };
    let first = track("7");
    let again = track("7");
    assert_eq!(
        (first.status.code(), again.status.code()),
        (Some(0), Some(0))
    );
    assert_eq!(first.stdout, again.stdout, "the same message, unchanged");
    let conflict = track("8");
    assert_eq!(conflict.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    assert!(stderr.contains("SM0001"), "{stderr}");

    let store = Store::open_read_only(&store).unwrap();
    assert_eq!(store.open_report().events, 1);
    assert_eq!(
        store
            .message_by_external_id("SM0001")
            .unwrap()
            .unwrap()
            .id
            .0,
        1
    );
}

#[test]
fn an_argument_that_is_not_utf8_is_a_usage_error_not_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let dir = temp();
    let store = dir.path().join("store");
    track(
        &store,
        &["sent", "--user", "1", "--channel", "sms", "--type", "x"],
    );
    let bad = std::ffi::OsStr::from_bytes(b"\xff");
    for args in [vec!["stats", "--type"], vec!["bogus"]] {
        for json in [false, true] {
            let mut command = cli_in(&store);
            if json {
                command.arg("--json");
            }
            command.args(&args).arg(bad);
            let output = finish(command);
            assert_eq!(output.code, 1, "{args:?}: {output:?}");
            assert_eq!(output.stderr.lines().count(), 1, "{args:?}: {output:?}");
            assert!(!output.stderr.contains("panicked"), "{output:?}");
        }
    }
}

#[test]
fn quiet_leaves_out_warnings_and_a_long_path_is_shown_shortened() {
    let dir = temp();
    let store = dir.path().join("store");
    {
        let opened = commlog::Store::open_with(
            &store,
            commlog::Options {
                snapshot_every: 1,
                ..commlog::Options::default()
            },
        )
        .unwrap();
        opened
            .track_message_sent(1, commlog::Channel::Sms, "low_balance", 0.05)
            .unwrap();
        opened.close().unwrap();
    }
    let snapshot = fs::read_dir(store.join("snapshots"))
        .unwrap()
        .next()
        .expect("a snapshot written at close")
        .unwrap()
        .path();
    let mut bytes = fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&snapshot, bytes).unwrap();
    let warned = run(&store, &["stats"]);
    assert_eq!(warned.code, 0, "{warned:?}");
    assert!(warned.stderr.contains("warning: snapshot"), "{warned:?}");
    let quiet = run(&store, &["-q", "stats"]);
    assert_eq!(
        (quiet.code, quiet.stdout.as_str()),
        (0, warned.stdout.as_str())
    );
    assert_eq!(quiet.stderr, "", "{quiet:?}");

    // A budget's scope in any case, as its help says.
    json_value(
        &store,
        &[
            "-q", "budget", "set", "--scope", "ALL", "--month", "2025-01", "--amount", "5",
        ],
    );

    // A path of more than 64 characters is echoed shortened, with its length.
    let long = dir.path().join("y".repeat(90));
    fs::write(&long, b"a file").unwrap();
    let line = fails(&long, &["stats"], 1);
    assert!(line.contains("characters)"), "{line}");
    let line = fails(&dir.path().join("z".repeat(90)), &["stats"], 1);
    assert!(line.contains("characters)"), "{line}");
}

#[test]
fn demo_names_each_bad_count_before_it_makes_a_store() {
    let temp = temp();
    let dir = &temp.path().join("demo");
    for (flag, value, said) in [
        ("--messages", "-5", "must be at least 1"),
        ("--messages", "0", "must be at least 1"),
        ("--users", "-1", "must be at least 1"),
        ("--users", "18446744073709551615", "i64::MAX"),
        ("--threads", "0", "must be at least 1"),
        ("--batch", "-2", "must be at least 1"),
        ("--interval-ms", "0", "must be at least 1"),
    ] {
        let line = fails(dir, &["-q", "demo", flag, value], 1);
        assert!(
            line.contains(flag) && line.contains(value) && line.contains(said),
            "{flag} {value}: {line}"
        );
        assert!(!dir.exists(), "{flag} {value}: a store was made");
    }
}

#[test]
fn demo_on_more_threads_than_the_system_gives_is_an_os_error_not_a_panic() {
    let temp = temp();
    let dir = temp.path().join("demo");
    // Each thread reserves its stack: under a 1 GB address space, 2,000 cannot all start.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -v 1000000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_commlog"))
        .args(["-q", "--dir"])
        .arg(&dir)
        .args(["demo", "--messages", "5", "--threads", "2000"]);
    let output = finish(command);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(
        output.stderr.contains("tracking thread") && !output.stderr.contains("panicked"),
        "{output:?}"
    );
    // What it left is a demo's own directory, which the next demo replaces.
    let output = run(&dir, &["-q", "demo", "--messages", "5"]);
    assert_eq!(output.code, 0, "{output:?}");
}

#[test]
fn audit_and_repair_take_the_global_dir_after_the_subcommand_too() {
    let temp = temp();
    let dir = temp.path().join("store");
    track(
        &dir,
        &[
            "sent",
            "--user",
            "1",
            "--channel",
            "sms",
            "--type",
            "low_balance",
        ],
    );
    let store = dir.to_str().unwrap();
    for args in [
        &["audit", "--dir", store][..],
        &["--json", "audit", "--dir", store],
        &["repair", "--dir", store, "--dry-run"],
    ] {
        let mut command = support::command::cli();
        command.args(args);
        let output = finish(command);
        assert_eq!(output.code, 0, "{args:?}: {output:?}");
    }
}
