//! `commlog import --from-sql-export DIR`, run as a binary on temporary directories: a fixture
//! with one row per rule of docs/IMPORT.md and its exact answers, bad rows, renumbered ids, and
//! the 20,000-message reference workload folded into original-style rows and imported back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use commlog::workload::{Call, Generator, Q4_LIMIT, QueryPicks, Spec};
use commlog::{
    Channel, CommunicationStats, Message, MessageId, Money, Options, StatsFilter, Status, Store,
    SyncPolicy, UserId,
};
use serde_json::{Value, json};

/// What a finished command printed and returned.
#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary on the store in `dir`, with none of the environment that changes it.
fn commlog(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_commlog"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("COMMLOG_DIR")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run commlog");
    Output {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

fn import(dir: &Path, from: &Path, extra: &[&str]) -> Output {
    let from = from.to_str().expect("UTF-8 path");
    let mut args = vec!["--json", "import", "--from-sql-export", from];
    args.extend_from_slice(extra);
    commlog(dir, &args)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

/// The header of the original service's `communication_metrics.csv`.
const MESSAGES_HEADER: &str = "id,user_id,message_type,channel,status,cost,sent_at,\
                               delivered_at,opened_at,clicked_at,action_taken";

/// A new directory `export/` in `temp` holding a `communication_metrics.csv` of `rows` (the
/// lines after the header).
fn messages_export(temp: &Path, rows: &str) -> PathBuf {
    let from = temp.join("export");
    std::fs::create_dir(&from).unwrap();
    std::fs::write(
        from.join("communication_metrics.csv"),
        format!("{MESSAGES_HEADER}\n{rows}"),
    )
    .unwrap();
    from
}

fn json_of(output: &Output) -> Value {
    assert_eq!(output.code, 0, "stderr: {}", output.stderr);
    serde_json::from_str(&output.stdout).expect("one JSON object on stdout")
}

fn stats(dir: &Path, filter: &[&str]) -> CommunicationStats {
    let mut args = vec!["--json", "stats"];
    args.extend_from_slice(filter);
    let output = commlog(dir, &args);
    assert_eq!(output.code, 0, "stderr: {}", output.stderr);
    serde_json::from_str(&output.stdout).expect("stats as JSON")
}

fn history(dir: &Path, user: u64) -> Vec<Message> {
    let user = user.to_string();
    let output = commlog(dir, &["--json", "history", "--user", &user]);
    assert_eq!(output.code, 0, "stderr: {}", output.stderr);
    serde_json::from_str(&output.stdout).expect("history as JSON")
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

fn breakdown(entries: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
    entries
        .iter()
        .map(|(key, value)| (key.to_string(), *value))
        .collect()
}

/// One expected message: id, user, channel, type, status, cost in micros, then sent,
/// delivered, opened, clicked and failed times (RFC 3339), and the action.
type Expected = (
    u64,
    u64,
    Channel,
    &'static str,
    Status,
    i64,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

fn message(expected: Expected) -> Message {
    let (
        id,
        user,
        channel,
        message_type,
        status,
        cost,
        sent,
        delivered,
        opened,
        clicked,
        failed,
        action,
    ) = expected;
    Message {
        id: MessageId(id),
        user_id: UserId(user),
        channel,
        message_type: message_type.into(),
        status,
        cost: Money::from_micros(i128::from(cost)),
        sent_at: time(sent),
        delivered_at: delivered.map(time),
        opened_at: opened.map(time),
        clicked_at: clicked.map(time),
        failed_at: failed.map(time),
        // The service's failures carry no reason; the import names them "failed".
        failure_reason: failed.map(|_| "failed".into()),
        action_taken: action.map(Into::into),
    }
}

/// tests/fixtures/import: one row per rule of docs/IMPORT.md (the `notes` column says which).
#[test]
fn fixture_with_one_row_per_rule_imports_exactly() {
    use Channel::{Email, InApp, Push, Sms};
    use Status::{Clicked, Delivered, Failed, Opened, Sent};
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let from = fixture("");
    let summary = json_of(&import(&dir, &from, &[]));
    assert_eq!(
        summary,
        json!({
            "dir": dir.display().to_string(),
            "from": from.display().to_string(),
            "communication_metrics": { "read": 18, "imported": 18, "skipped": 0, "status_changed": 3 },
            "financial_impact_metrics": { "read": 6, "imported": 6, "skipped": 0 },
            "messages": 18,
            "outcomes": 6,
            "events": 54,
            "ids_kept": true,
            "id_map": null,
        })
    );
    assert!(!dir.join("import-id-map.csv").exists());

    let expected: Vec<Message> = [
        // Status sent; SMS in capitals; a space between date and time.
        (
            1,
            1,
            Sms,
            "low_balance",
            Sent,
            50_000,
            "2025-01-01T09:00:00Z",
            None,
            None,
            None,
            None,
            None,
        ),
        // NULL cost; T and Z.
        (
            2,
            1,
            Email,
            "weekly_checkin",
            Delivered,
            0,
            "2025-01-01T10:00:00Z",
            Some("2025-01-01T10:00:05Z"),
            None,
            None,
            None,
            None,
        ),
        // Fractions (rounded down to the millisecond), \N.
        (
            3,
            1,
            Email,
            "bill_reminder",
            Opened,
            1_000,
            "2025-01-01T11:00:00.123Z",
            Some("2025-01-01T11:00:01.500Z"),
            Some("2025-01-01T12:00:00.999Z"),
            None,
            None,
            None,
        ),
        // A click action at clicked_at; offset +02:00.
        (
            4,
            2,
            Push,
            "savings_nudge",
            Clicked,
            0,
            "2025-01-02T07:00:00Z",
            Some("2025-01-02T07:00:30Z"),
            Some("2025-01-02T07:10:00Z"),
            Some("2025-01-02T07:20:00Z"),
            None,
            Some("clicked_link"),
        ),
        // clicked_at without an action: action `clicked` at clicked_at (implies the open); -05.
        (
            5,
            2,
            InApp,
            "upgrade_offer",
            Clicked,
            0,
            "2025-01-02T09:00:00Z",
            Some("2025-01-02T09:00:01Z"),
            Some("2025-01-02T09:30:00Z"),
            Some("2025-01-02T09:30:00Z"),
            None,
            Some("clicked"),
        ),
        // A non-click action at the row's latest time.
        (
            6,
            2,
            Sms,
            "bill_reminder",
            Delivered,
            50_000,
            "2025-01-02T10:00:00Z",
            Some("2025-01-02T10:01:00Z"),
            None,
            None,
            None,
            Some("paid_bill"),
        ),
        // Status FAILED: failed at sent_at.
        (
            7,
            3,
            Sms,
            "security_alert",
            Failed,
            50_000,
            "2025-01-03T08:00:00Z",
            None,
            None,
            None,
            Some("2025-01-03T08:00:00Z"),
            None,
        ),
        // Status delivered without delivered_at: delivered at sent_at.
        (
            8,
            3,
            Email,
            "monthly_report",
            Delivered,
            1_000,
            "2025-01-03T09:00:00Z",
            Some("2025-01-03T09:00:00Z"),
            None,
            None,
            None,
            None,
        ),
        // Status opened without opened_at: opened at sent_at.
        (
            9,
            3,
            Push,
            "budget_alert",
            Opened,
            0,
            "2025-01-03T10:00:00Z",
            Some("2025-01-03T10:00:00Z"),
            Some("2025-01-03T10:00:00Z"),
            None,
            None,
            None,
        ),
        // Status clicked without clicked_at or click action: action `clicked` at sent_at.
        (
            10,
            3,
            Email,
            "weekly_checkin",
            Clicked,
            1_000,
            "2025-01-03T11:00:00Z",
            Some("2025-01-03T11:00:00Z"),
            Some("2025-01-03T11:00:00Z"),
            Some("2025-01-03T11:00:00Z"),
            None,
            Some("clicked"),
        ),
        // A click action without clicked_at: at the row's latest time; names lowercased.
        (
            11,
            4,
            Email,
            "weekly_checkin",
            Clicked,
            1_000,
            "2025-01-04T09:00:00Z",
            Some("2025-01-04T09:00:02Z"),
            Some("2025-01-04T09:05:00Z"),
            Some("2025-01-04T09:05:00Z"),
            None,
            Some("clicked_button"),
        ),
        // A click action at clicked_at, no opened_at: the click implies the open.
        (
            12,
            4,
            Push,
            "savings_nudge",
            Clicked,
            0,
            "2025-01-04T10:00:00Z",
            Some("2025-01-04T10:00:03Z"),
            Some("2025-01-04T10:15:00Z"),
            Some("2025-01-04T10:15:00Z"),
            None,
            Some("clicked_link"),
        ),
        // clicked_at and a non-click action: `clicked`, then the action (the latest), both at
        // clicked_at.
        (
            13,
            4,
            Email,
            "upgrade_offer",
            Clicked,
            1_000,
            "2025-01-04T11:00:00Z",
            Some("2025-01-04T11:00:04Z"),
            Some("2025-01-04T11:10:00Z"),
            Some("2025-01-04T11:20:00Z"),
            None,
            Some("viewed_forecast"),
        ),
        // Status sent with delivered_at: delivered (status changed); cost 5e-2.
        (
            14,
            5,
            Sms,
            "low_balance",
            Delivered,
            50_000,
            "2025-01-05T09:00:00Z",
            Some("2025-01-05T09:00:09Z"),
            None,
            None,
            None,
            None,
        ),
        // Status failed with delivered_at: the delivery wins, failed_at stays (status changed).
        (
            15,
            5,
            Sms,
            "low_balance",
            Delivered,
            50_000,
            "2025-01-05T10:00:00Z",
            Some("2025-01-05T10:00:10Z"),
            None,
            None,
            Some("2025-01-05T10:00:00Z"),
            None,
        ),
        // IN_APP; +00:00, a lowercase t, +00.
        (
            16,
            5,
            InApp,
            "budget_alert",
            Opened,
            1_500_000,
            "2025-01-05T11:00:00.250Z",
            Some("2025-01-05T11:00:00.750Z"),
            Some("2025-01-05T12:00:00Z"),
            None,
            None,
            None,
        ),
        // Quoted fields, one with a comma and a line break.
        (
            17,
            5,
            Sms,
            "bill_reminder",
            Delivered,
            50_000,
            "2025-01-05T13:00:00Z",
            Some("2025-01-05T13:00:30Z"),
            None,
            None,
            None,
            None,
        ),
        // Status opened with clicked_at: the click reaches the open (status changed to clicked).
        (
            18,
            6,
            Push,
            "budget_alert",
            Clicked,
            0,
            "2025-01-06T09:00:00Z",
            Some("2025-01-06T09:30:00Z"),
            Some("2025-01-06T09:30:00Z"),
            Some("2025-01-06T09:30:00Z"),
            None,
            Some("clicked"),
        ),
    ]
    .into_iter()
    .map(message)
    .collect();
    let mut imported: Vec<Message> = (1..=6).flat_map(|user| history(&dir, user)).collect();
    imported.sort_by_key(|message| message.id);
    assert_eq!(imported.len(), expected.len());
    for (imported, expected) in imported.iter().zip(&expected) {
        assert_eq!(imported, expected, "message {}", expected.id);
    }
    // History order: newest sent first.
    let ids: Vec<u64> = history(&dir, 5)
        .iter()
        .map(|message| message.id.0)
        .collect();
    assert_eq!(ids, [17, 16, 15, 14]);

    let (total, delivered, opened, clicked, actions) = (18, 16, 10, 7, 8);
    assert_eq!(
        stats(&dir, &[]),
        CommunicationStats {
            total_messages: total,
            delivered_count: delivered,
            opened_count: opened,
            clicked_count: clicked,
            action_count: actions,
            failed_count: 1,
            delivery_rate: percent(delivered, total),
            open_rate: percent(opened, delivered),
            click_rate: percent(clicked, opened),
            action_rate: percent(actions, delivered),
            total_cost: Money::from_micros(1_805_000),
            avg_cost_per_message: Money::from_micros(100_278),
            status_breakdown: breakdown(&[
                ("clicked", 7),
                ("delivered", 6),
                ("failed", 1),
                ("opened", 3),
                ("sent", 1),
            ]),
            channel_breakdown: breakdown(&[("email", 6), ("in_app", 2), ("push", 4), ("sms", 6)]),
            message_type_breakdown: breakdown(&[
                ("bill_reminder", 3),
                ("budget_alert", 3),
                ("low_balance", 3),
                ("monthly_report", 1),
                ("savings_nudge", 2),
                ("security_alert", 1),
                ("upgrade_offer", 2),
                ("weekly_checkin", 3),
            ]),
            outcome_count: 6,
            // 25.00 + NULL (0) − 12.34 + 0.10 + 1,234,567.89 + empty (0).
            total_impact: Money::from_micros(1_234_580_650_000),
        }
    );
    // Outcomes: BILL_PAID_ON_TIME lowercased, a bare date, offsets.
    let user_1 = stats(&dir, &["--user", "1"]);
    assert_eq!(
        (user_1.outcome_count, user_1.total_impact.micros()),
        (2, 25_100_000)
    );
    // -12.34 at 2025-01-04T00:00:00+01 = 2025-01-03T23:00:00Z.
    let day = stats(
        &dir,
        &[
            "--start",
            "2025-01-03T23:00:00Z",
            "--end",
            "2025-01-03T23:00:00Z",
        ],
    );
    assert_eq!(
        (day.outcome_count, day.total_impact.micros()),
        (1, -12_340_000)
    );
    // The bare date 2025-01-05 is midnight UTC.
    let midnight = stats(
        &dir,
        &[
            "--start",
            "2025-01-05T00:00:00Z",
            "--end",
            "2025-01-05T00:00:00Z",
        ],
    );
    assert_eq!(
        (midnight.outcome_count, midnight.total_impact.micros()),
        (1, 100_000)
    );

    // The store is not empty any more: a second import is refused and changes nothing.
    let again = import(&dir, &from, &[]);
    assert_eq!(again.code, 1);
    assert!(again.stdout.is_empty());
    assert!(
        again.stderr.contains("already holds 54 events"),
        "{}",
        again.stderr
    );
    assert_eq!(
        Store::open_read_only(&dir).unwrap().open_report().events,
        54
    );
}

/// The problem lines of tests/fixtures/import/bad, in order.
fn bad_fixture_problems(from: &Path) -> Vec<String> {
    let messages = from.join("communication_metrics.csv").display().to_string();
    let outcomes = from
        .join("financial_impact_metrics.csv")
        .display()
        .to_string();
    let name_rule = "must be 1 to 64 characters of a-z, 0-9, '_', '.' and '-' (after lowercasing)";
    let time_rule = "not a time (YYYY-MM-DD[ T]HH:MM:SS[.ffffff][Z|±HH[:MM]])";
    let status_rule = "must be sent, delivered, opened, clicked or failed";
    [
        (&messages, 3, format!("status 'bounced': {status_rule}")),
        (
            &messages,
            4,
            "channel 'fax': must be sms, email, push or in_app".to_string(),
        ),
        (
            &messages,
            5,
            "id '1': duplicate id (first on line 2)".to_string(),
        ),
        (&messages, 6, "user_id '0': must be at least 1".to_string()),
        (&messages, 7, "user_id 'abc': not an integer".to_string()),
        (&messages, 8, "sent_at '\\N': must not be NULL".to_string()),
        (
            &messages,
            9,
            "cost '-0.01': must not be negative".to_string(),
        ),
        (&messages, 10, "cost 'cheap': not a number".to_string()),
        (
            &messages,
            11,
            format!("message_type 'low balance': {name_rule}"),
        ),
        (
            &messages,
            12,
            format!("delivered_at '2025-13-01 00:00:00': {time_rule}"),
        ),
        (
            &messages,
            13,
            format!("action_taken 'clicked\\nlink': {name_rule}"),
        ),
        (&messages, 16, "user_id 'x': not an integer".to_string()),
        (&messages, 16, format!("status 'Bounced': {status_rule}")),
        (&messages, 16, "cost '-1': must not be negative".to_string()),
        (&messages, 16, format!("sent_at 'yesterday': {time_rule}")),
        (
            &messages,
            17,
            "row '5 fields': the header has 11".to_string(),
        ),
        (&outcomes, 3, "user_id '-1': must be at least 1".to_string()),
        (
            &outcomes,
            4,
            format!("outcome_type 'bill paid': {name_rule}"),
        ),
        (
            &outcomes,
            5,
            "outcome_value '12,50': not a decimal number".to_string(),
        ),
        (
            &outcomes,
            6,
            "outcome_date '': must not be NULL".to_string(),
        ),
        (
            &outcomes,
            7,
            "id 'u1': duplicate id (first on line 2)".to_string(),
        ),
    ]
    .into_iter()
    .map(|(file, line, problem)| format!("{file}:{line}: {problem}"))
    .collect()
}

#[test]
fn bad_rows_are_reported_and_nothing_is_written() {
    let temp = tempfile::tempdir().unwrap();
    let from = fixture("bad");
    let problems = bad_fixture_problems(&from);
    let from_text = from.to_str().unwrap();

    // A new store: not created.
    let dir = temp.path().join("new");
    let output = commlog(&dir, &["import", "--from-sql-export", from_text]);
    assert_eq!(output.code, 1);
    assert!(output.stdout.is_empty());
    let mut expected = problems.clone();
    expected.push(
        "commlog: 18 bad rows (communication_metrics.csv: 13, financial_impact_metrics.csv: 5); \
         nothing imported: fix them, or pass --skip-bad-rows to import only the good rows"
            .to_string(),
    );
    assert_eq!(output.stderr.lines().collect::<Vec<_>>(), expected);
    assert!(!dir.exists(), "no store is created");

    // An existing empty directory stays empty.
    let empty = temp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = commlog(&empty, &["import", "--from-sql-export", from_text]);
    assert_eq!(output.code, 1);
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // With --json, each problem is a JSON object, and so is the error.
    let output = import(&dir, &from, &[]);
    assert_eq!(output.code, 1);
    let lines: Vec<Value> = output
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines on stderr"))
        .collect();
    assert_eq!(lines.len(), problems.len() + 1);
    assert_eq!(
        lines[0],
        json!({
            "file": from.join("communication_metrics.csv").display().to_string(),
            "line": 3,
            "column": "status",
            "value": "bounced",
            "reason": "must be sent, delivered, opened, clicked or failed",
        })
    );
    assert_eq!(lines[problems.len()]["exit"], 1);
    assert!(!dir.exists());

    // With --skip-bad-rows: the good rows, renumbered (old ids 1, 12, 15).
    let output = commlog(
        &dir,
        &["import", "--from-sql-export", from_text, "--skip-bad-rows"],
    );
    assert_eq!(output.code, 0, "stderr: {}", output.stderr);
    assert_eq!(output.stderr.lines().collect::<Vec<_>>(), problems);
    let map = dir.join("import-id-map.csv");
    assert_eq!(
        output.stdout,
        format!(
            "file                          read  imported  skipped\n\
             communication_metrics.csv       16         3       13\n\
             financial_impact_metrics.csv     7         2        5\n\
             \n\
             imported 3 messages, 2 outcomes (6 events) into {}\n\
             message ids: renumbered 1..N in order of the old ids; old_id,new_id map in {}\n",
            dir.display(),
            map.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&map).unwrap(),
        "old_id,new_id\n1,1\n12,2\n15,3\n"
    );
    let stats = stats(&dir, &[]);
    assert_eq!(stats.total_messages, 3);
    assert_eq!(
        stats.status_breakdown,
        breakdown(&[("clicked", 1), ("sent", 2)])
    );
    assert_eq!(stats.total_cost.micros(), 52_000);
    // 25.00 (BILL_PAID_ON_TIME) − 3.25 (a bare date).
    assert_eq!(
        (stats.outcome_count, stats.total_impact.micros()),
        (2, 21_750_000)
    );
    let store = Store::open_read_only(&dir).unwrap();
    let clicked = store.get_message(3).unwrap();
    assert_eq!(clicked.action_taken.as_deref(), Some("clicked_link"));
    assert_eq!(clicked.clicked_at, Some(time("2025-01-02T11:05:00Z")));
}

#[test]
fn ids_other_than_1_to_n_are_renumbered_with_a_map_file() {
    let temp = tempfile::tempdir().unwrap();
    let from = messages_export(
        temp.path(),
        "100,1,low_balance,sms,sent,0.05,2025-01-03 00:00:00,,,,\n\
         7,1,low_balance,sms,delivered,0.05,2025-01-01 00:00:00,2025-01-01 00:00:01,,,\n\
         42,2,weekly_checkin,email,opened,0.001,2025-01-02 00:00:00,,2025-01-02 01:00:00,,\n",
    );
    let dir = temp.path().join("store");
    let summary = json_of(&import(&dir, &from, &[]));
    let map = dir.join("import-id-map.csv");
    assert_eq!(summary["ids_kept"], false);
    assert_eq!(summary["id_map"], map.display().to_string());
    assert_eq!(summary["financial_impact_metrics"], Value::Null);
    assert_eq!(summary["outcomes"], 0);
    assert_eq!(
        std::fs::read_to_string(&map).unwrap(),
        "old_id,new_id\n7,1\n42,2\n100,3\n"
    );
    let store = Store::open_read_only(&dir).unwrap();
    let sent: Vec<(Status, DateTime<Utc>)> = (1..=3)
        .map(|id| store.get_message(id).unwrap())
        .map(|message| (message.status, message.sent_at))
        .collect();
    assert_eq!(
        sent,
        [
            (Status::Delivered, time("2025-01-01T00:00:00Z")),
            (Status::Opened, time("2025-01-02T00:00:00Z")),
            (Status::Sent, time("2025-01-03T00:00:00Z")),
        ]
    );
    // The original ids stay as the messages' external ids.
    for (old_id, new_id) in [("7", 1), ("42", 2), ("100", 3)] {
        let message = store.message_by_external_id(old_id).unwrap().unwrap();
        assert_eq!(message.id.0, new_id, "old id {old_id}");
    }

    // The human summary names the missing outcomes file.
    let second = temp.path().join("second");
    let output = commlog(
        &second,
        &["import", "--from-sql-export", from.to_str().unwrap()],
    );
    assert_eq!(output.code, 0, "stderr: {}", output.stderr);
    assert!(
        output
            .stdout
            .contains("financial_impact_metrics.csv: not in the export, no outcomes imported")
    );
}

/// The id map is written inside the store whatever lies there: a link left where its
/// temporary file goes is removed, not followed, and the file it points to stays as it was.
#[test]
fn the_id_map_never_writes_through_a_link() {
    let temp = tempfile::tempdir().unwrap();
    let from = messages_export(
        temp.path(),
        "5,1,low_balance,sms,sent,0.05,2025-01-01 09:00:00,,,,\n",
    );
    let outside = temp.path().join("outside.txt");
    std::fs::write(&outside, "not the store's\n").unwrap();
    let dir = temp.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("import-id-map.csv.tmp")).unwrap();

    let summary = json_of(&import(&dir, &from, &[]));
    assert_eq!(summary["ids_kept"], false);
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "not the store's\n"
    );
    let map = dir.join("import-id-map.csv");
    assert!(std::fs::symlink_metadata(&map).unwrap().is_file());
    assert_eq!(
        std::fs::read_to_string(&map).unwrap(),
        "old_id,new_id\n5,1\n"
    );
    assert!(!dir.join("import-id-map.csv.tmp").exists());
}

#[test]
fn only_a_new_or_empty_store_is_imported_into() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let store = Store::open(&dir).unwrap();
    store
        .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
        .unwrap();
    store.close().unwrap();
    let output = import(&dir, &fixture(""), &[]);
    assert_eq!(output.code, 1);
    assert!(output.stdout.is_empty());
    let error: Value = serde_json::from_str(output.stderr.trim()).unwrap();
    assert_eq!(
        error["error"],
        format!(
            "the store in {} already holds 1 event: import only into a new or empty store",
            dir.display()
        )
    );
    assert_eq!(Store::open_read_only(&dir).unwrap().open_report().events, 1);

    // A store that exists but holds no event is fine.
    let empty = temp.path().join("empty");
    Store::open(&empty).unwrap().close().unwrap();
    json_of(&import(&empty, &fixture(""), &[]));

    // A missing export is a usage error.
    let output = import(
        &temp.path().join("other"),
        &temp.path().join("nowhere"),
        &[],
    );
    assert_eq!(output.code, 1);
    assert!(!temp.path().join("other").exists());
}

/// Formats micros ≥ 0 as a decimal number of dollars.
fn dollars(micros: i128) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// A naive UTC time, as the original service's export writes it.
fn naive(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// The 20,000-message reference workload, ingested directly and through rows folded like the
/// original service's, answers Q1–Q5 the same.
#[test]
fn round_trip_of_the_reference_workload_answers_q1_to_q5_as_direct_ingest() {
    let spec = Spec {
        seed: 42,
        users: 10_000,
        messages: 20_000,
    };
    let temp = tempfile::tempdir().unwrap();
    let direct_dir = temp.path().join("direct");
    let store = Store::open_with(
        &direct_dir,
        Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        },
    )
    .unwrap();
    let mut outcomes = Vec::new();
    for call in Generator::calls(spec) {
        commlog::workload::apply(&store, &call).unwrap();
        if let Call::Outcome {
            user,
            outcome,
            amount,
            ..
        } = call
        {
            outcomes.push((user, outcome, amount, call.at()));
        }
    }
    store.close().unwrap();
    let direct = Store::open_read_only(&direct_dir).unwrap();
    let messages = direct.get_messages(&StatsFilter::new()).unwrap();
    assert_eq!(messages.len(), 20_000);
    assert_eq!(outcomes.len(), 367);

    // Fold: one row per message, one per outcome.
    let export = temp.path().join("export");
    std::fs::create_dir(&export).unwrap();
    let mut writer = csv::Writer::from_path(export.join("communication_metrics.csv")).unwrap();
    writer
        .write_record([
            "id",
            "user_id",
            "message_type",
            "channel",
            "status",
            "cost",
            "sent_at",
            "delivered_at",
            "opened_at",
            "clicked_at",
            "action_taken",
        ])
        .unwrap();
    let optional = |time: Option<DateTime<Utc>>| time.map_or_else(String::new, naive);
    let mut expected_events = 0u64;
    for message in &messages {
        assert_eq!(message.failed_at, None, "the workload reports no failure");
        writer
            .write_record([
                message.id.to_string(),
                message.user_id.to_string(),
                message.message_type.to_string(),
                message.channel.to_string(),
                message.status.to_string(),
                dollars(message.cost.micros()),
                naive(message.sent_at),
                optional(message.delivered_at),
                optional(message.opened_at),
                optional(message.clicked_at),
                message.action_taken.as_deref().unwrap_or("\\N").to_string(),
            ])
            .unwrap();
        expected_events += 1
            + u64::from(message.delivered_at.is_some())
            + u64::from(message.opened_at.is_some())
            + u64::from(message.action_taken.is_some());
    }
    writer.flush().unwrap();
    let mut writer = csv::Writer::from_path(export.join("financial_impact_metrics.csv")).unwrap();
    writer
        .write_record([
            "id",
            "user_id",
            "outcome_type",
            "outcome_value",
            "outcome_date",
            "attributed_message_id",
            "attribution_confidence",
        ])
        .unwrap();
    for (index, (user, outcome, amount, at)) in outcomes.iter().enumerate() {
        writer
            .write_record([
                format!("00000000-0000-4000-8000-{index:012x}"),
                user.to_string(),
                outcome.to_string(),
                format!("{amount:.2}"),
                naive(*at),
                String::new(),
                String::new(),
            ])
            .unwrap();
    }
    writer.flush().unwrap();
    expected_events += outcomes.len() as u64;
    // Direct ingest appended 46,249: a click without an open now has its own `opened` event.
    assert_eq!(expected_events, 46_577);

    let imported_dir = temp.path().join("imported");
    let summary = json_of(&import(&imported_dir, &export, &[]));
    assert_eq!(
        summary["communication_metrics"],
        json!({ "read": 20_000, "imported": 20_000, "skipped": 0, "status_changed": 0 })
    );
    assert_eq!(
        summary["financial_impact_metrics"],
        json!({ "read": 367, "imported": 367, "skipped": 0 })
    );
    assert_eq!(summary["events"], expected_events);
    assert_eq!(summary["ids_kept"], true);
    let imported = Store::open_read_only(&imported_dir).unwrap();
    assert_eq!(imported.open_report().events, expected_events);

    // Every message as it stands.
    assert_eq!(
        imported.get_messages(&StatsFilter::new()).unwrap(),
        messages
    );
    // Q1, with the reference figures for this size.
    let q1 = imported
        .get_communication_stats(&StatsFilter::new())
        .unwrap();
    assert_eq!(
        q1,
        direct.get_communication_stats(&StatsFilter::new()).unwrap()
    );
    assert_eq!(
        (
            q1.opened_count,
            q1.clicked_count,
            q1.total_cost.micros(),
            q1.total_impact.micros()
        ),
        (5_235, 452, 357_713_000, 92_613_680_000)
    );
    let picks = QueryPicks::new(spec);
    for user in &picks.q2_users {
        let filter = StatsFilter::new().user(*user);
        assert_eq!(
            imported.get_communication_stats(&filter).unwrap(),
            direct.get_communication_stats(&filter).unwrap(),
            "Q2 user {user}"
        );
    }
    for filter in picks.q3_filters.iter().chain(&picks.q5_filters) {
        assert_eq!(
            imported.get_communication_stats(filter).unwrap(),
            direct.get_communication_stats(filter).unwrap(),
            "Q3/Q5 {filter:?}"
        );
    }
    for user in &picks.q4_users {
        assert_eq!(
            imported
                .get_user_communication_history(*user, Q4_LIMIT)
                .unwrap(),
            direct
                .get_user_communication_history(*user, Q4_LIMIT)
                .unwrap(),
            "Q4 user {user}"
        );
    }

    // An import cut short (here by a file-size limit) says so, and with --json every line it
    // writes to stderr is a JSON object.
    let cut_dir = temp.path().join("cut");
    let output = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 64; exec \"$0\" --json --dir \"$1\" import --from-sql-export \"$2\"")
        .arg(env!("CARGO_BIN_EXE_commlog"))
        .arg(&cut_dir)
        .arg(&export)
        .env_remove("COMMLOG_DIR")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line:?}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(lines[0]["warning"], "import_incomplete", "{stderr}");
    assert_eq!(lines[1]["kind"], "io", "{stderr}");
}

#[test]
fn a_header_without_a_needed_column_is_refused_before_any_row() {
    let temp = tempfile::tempdir().unwrap();
    let from = temp.path().join("export");
    std::fs::create_dir(&from).unwrap();
    let file = from.join("communication_metrics.csv");
    std::fs::write(
        &file,
        "id,user_id,message_type,channel,status,cost,sent_at,delivered_at,opened_at,action_taken\n\
         1,1,low_balance,sms,sent,0.05,2025-01-01 00:00:00,,,\n",
    )
    .unwrap();
    let dir = temp.path().join("store");
    let output = commlog(
        &dir,
        &["import", "--from-sql-export", from.to_str().unwrap()],
    );
    assert_eq!(output.code, 1);
    assert_eq!(
        output.stderr,
        format!(
            "commlog: {}:1: the header lacks clicked_at; it needs id, user_id, message_type, \
             channel, status, cost, sent_at, delivered_at, opened_at, clicked_at, action_taken\n",
            file.display()
        )
    );
    assert!(!dir.exists());
}

#[test]
fn user_ids_above_i64_max_are_bad_rows() {
    let temp = tempfile::tempdir().unwrap();
    let from = messages_export(
        temp.path(),
        "1,9223372036854775807,low_balance,SMS,sent,0.05,2025-01-03 00:00:00,,,,\n\
         2,18446744073709551615,low_balance,sms,sent,0.05,2025-01-03 00:00:00,,,,\n",
    );
    let dir = temp.path().join("store");
    let output = import(&dir, &from, &[]);
    assert_eq!(output.code, 1);
    assert!(
        output
            .stderr
            .contains("\"line\":3,\"column\":\"user_id\",\"value\":\"18446744073709551615\",\"reason\":\"must be at most 9223372036854775807"),
        "{}",
        output.stderr
    );
    assert!(!dir.exists());

    let output = import(&dir, &from, &["--skip-bad-rows"]);
    assert_eq!(output.code, 0, "{output:?}");
    let history = history(&dir, i64::MAX as u64);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].channel, Channel::Sms);
}

/// A problem's line is the line its record starts on in the file as an editor shows it: with
/// CRLF line endings (RFC 4180's), empty lines, and a quoted field holding a line break.
#[test]
fn problems_name_the_line_a_record_starts_on_whatever_the_line_endings() {
    let temp = tempfile::tempdir().unwrap();
    let from = messages_export(temp.path(), "");
    let good = |id: u32| format!("{id},1,low_balance,sms,sent,0.05,2025-01-01 09:00:00,,,,");
    let quoted = "3,1,\"two\nlines\",sms,sent,0.05,2025-01-01 09:00:00,,,,";
    for ending in ["\n", "\r\n"] {
        // Line 1 the header, 2 id 1, 3 empty, 4 and 5 a record whose type holds a (quoted)
        // line break, 6 id 1 again, 7 and 8 empty, 9 a user id 0.
        let lines = [
            MESSAGES_HEADER.to_string(),
            good(1),
            String::new(),
            quoted.to_string(),
            good(1),
            String::new(),
            String::new(),
            "4,0,low_balance,sms,sent,0.05,2025-01-01 09:00:00,,,,".to_string(),
        ];
        let text = lines.join(ending) + ending;
        std::fs::write(from.join("communication_metrics.csv"), &text).unwrap();
        let dir = temp.path().join("store");
        let output = commlog(
            &dir,
            &["import", "--from-sql-export", from.to_str().unwrap()],
        );
        assert_eq!(output.code, 1, "{output:?}");
        let file = from.join("communication_metrics.csv").display().to_string();
        let problems: Vec<&str> = output.stderr.lines().take(3).collect();
        assert_eq!(problems.len(), 3, "{}", output.stderr);
        assert!(
            problems[0].starts_with(&format!("{file}:4: message_type 'two\\nlines'")),
            "{ending:?}: {}",
            output.stderr
        );
        assert!(
            problems[1].starts_with(&format!("{file}:6: id '1': duplicate id (first on line 2)")),
            "{ending:?}: {}",
            output.stderr
        );
        assert!(
            problems[2].starts_with(&format!("{file}:9: user_id '0'")),
            "{ending:?}: {}",
            output.stderr
        );
        assert!(!dir.exists());
    }
}

#[test]
fn rows_with_times_the_store_refuses_are_bad_rows_and_nothing_is_written() {
    let temp = tempfile::tempdir().unwrap();
    let from = temp.path().join("dump");
    std::fs::create_dir(&from).unwrap();
    let messages = from.join("communication_metrics.csv");
    let outcomes = from.join("financial_impact_metrics.csv");
    std::fs::write(
        &messages,
        "id,user_id,message_type,channel,status,cost,sent_at,delivered_at,opened_at,clicked_at,action_taken\n\
         1,1,low_balance,sms,delivered,0.05,2025-01-01 09:00:00,2025-01-01 08:58:00,,,\n\
         2,1,low_balance,sms,delivered,0.05,2025-01-01 10:00:00,2025-01-01 09:00:00,,,\n\
         3,1,low_balance,email,opened,0.001,2025-01-01 11:00:00,,9999-12-31 23:59:59,,\n\
         4,1,low_balance,sms,sent,0.05,1969-12-31 23:59:59,,,,\n\
         5,1,low_balance,email,clicked,0.001,2025-01-01 12:00:00,,,2025-01-01 11:54:59.999,clicked_link\n",
    )
    .unwrap();
    std::fs::write(
        &outcomes,
        "user_id,outcome_type,outcome_value,outcome_date\n\
         1,bill_paid_on_time,25.00,2025-01-02 00:00:00\n\
         1,bill_paid_on_time,1.00,1969-12-31\n",
    )
    .unwrap();
    let (messages, outcomes) = (messages.display(), outcomes.display());
    let expected = [
        format!(
            "{messages}:3: delivered_at '2025-01-01 09:00:00': must be at or after \
             2025-01-01T09:55:00.000Z, 5 minutes before the message's sent time \
             2025-01-01T10:00:00.000Z"
        ),
        format!("{messages}:4: opened_at '9999-12-31 23:59:59': must be at or before "),
        format!(
            "{messages}:5: sent_at '1969-12-31 23:59:59': must be at or after \
             1970-01-01T00:00:00.000Z"
        ),
        format!(
            "{messages}:6: clicked_at '2025-01-01 11:54:59.999': must be at or after \
             2025-01-01T11:55:00.000Z, 5 minutes before the message's sent time \
             2025-01-01T12:00:00.000Z"
        ),
        format!(
            "{outcomes}:3: outcome_date '1969-12-31': must be at or after \
             1970-01-01T00:00:00.000Z"
        ),
        "commlog: 5 bad rows (communication_metrics.csv: 4, financial_impact_metrics.csv: 1); \
         nothing imported: fix them, or pass --skip-bad-rows to import only the good rows"
            .to_string(),
    ];
    let check_problems = |stderr: &str, expected: &[String]| {
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), expected.len(), "{stderr}");
        for (line, expected) in lines.iter().zip(expected) {
            assert!(
                line.starts_with(expected.as_str()),
                "{line:?} ≠ {expected:?}…"
            );
        }
        assert!(
            lines[1].ends_with(", 24 hours after the clock at the call"),
            "{stderr}"
        );
    };

    let dir = temp.path().join("store");
    let from_text = from.to_str().unwrap();
    let output = commlog(&dir, &["import", "--from-sql-export", from_text]);
    assert_eq!(output.code, 1, "{output:?}");
    check_problems(&output.stderr, &expected);
    assert!(!dir.exists(), "no store is created");

    // The good rows: a delivery two minutes before the send counts at the send.
    let output = commlog(
        &dir,
        &["import", "--from-sql-export", from_text, "--skip-bad-rows"],
    );
    assert_eq!(output.code, 0, "{output:?}");
    check_problems(&output.stderr, &expected[..5]);
    let history = history(&dir, 1);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].sent_at, time("2025-01-01T09:00:00Z"));
    assert_eq!(history[0].delivered_at, Some(time("2025-01-01T09:00:00Z")));
    let stats = stats(&dir, &[]);
    assert_eq!(
        (stats.outcome_count, stats.total_impact.micros()),
        (1, 25_000_000)
    );
}

#[test]
fn a_store_under_a_missing_parent_is_refused_before_any_row_is_read() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("missing").join("store");
    let output = import(&dir, &fixture("bad"), &["--skip-bad-rows"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert_eq!(
        output.stderr.lines().count(),
        1,
        "no row is reported: {output:?}"
    );
    assert!(
        output.stderr.contains("parent of dir") && output.stderr.contains("missing"),
        "{output:?}"
    );
    assert!(!temp.path().join("missing").exists());
}

/// An import stopped by a signal while it appends says that the store is incomplete, and exits
/// 128 + the signal.
#[test]
fn an_import_stopped_by_a_signal_says_the_store_is_incomplete() {
    let temp = tempfile::tempdir().unwrap();
    let mut rows = String::new();
    for id in 1..=300_000 {
        rows.push_str(&format!(
            "{id},{},low_balance,sms,opened,0.05,2025-01-01 09:00:00,2025-01-01 09:00:05,2025-01-01 10:00:00,,\n",
            id % 1000 + 1
        ));
    }
    let from = messages_export(temp.path(), &rows);
    let dir = temp.path().join("store");
    let child = Command::new(env!("CARGO_BIN_EXE_commlog"))
        .arg("--dir")
        .arg(&dir)
        .args(["import", "--from-sql-export", from.to_str().unwrap()])
        .env_remove("COMMLOG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the log holds frames the import is appending (the rows are read and checked before).
    let segment = dir.join("00000000000000000001.log");
    let started = std::time::Instant::now();
    while std::fs::metadata(&segment).map_or(0, |metadata| metadata.len()) < 4096 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "commlog: the import stopped part way: the store in {} is incomplete; remove it \
                 and import again",
                dir.display()
            ),
            "commlog: interrupted by SIGINT: the import stopped part way".to_string(),
        ],
        "{stderr}"
    );
    let events = Store::open_read_only(&dir).unwrap().open_report().events;
    assert!(0 < events && events < 900_000, "{events} events");
}
