//! The `impact` command; the financial-impact view itself: tests/impact.rs.

mod support;

use std::process::Command;

use chrono::{DateTime, TimeZone, Utc};
use commlog::{Channel, ImpactFilter, ImpactReport, Store};
use support::store::options;

const DAY_MS: i64 = 86_400_000;

/// `days` days and `ms` milliseconds after 2025-01-01T00:00:00Z.
fn at(days: i64, ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
        + chrono::Duration::milliseconds(days * DAY_MS + ms)
}

#[test]
fn the_impact_command_prints_the_report_as_json_and_as_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let message = store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, at(1, 0))
        .unwrap();
    store
        .track_message_opened(message.id, Some(at(1, 1)))
        .unwrap();
    store
        .track_financial_outcome_at(1, "overdraft_avoided", 35.0, at(2, 0))
        .unwrap();
    store
        .track_financial_outcome_at(2, "overdraft", -5.0, at(2, 0))
        .unwrap();
    let expected = store
        .get_financial_impact(&ImpactFilter::new().channel(Channel::Sms))
        .unwrap();
    store.close().unwrap();

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_commlog"))
            .env_remove("COMMLOG_DIR")
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let output = run(&["--json", "impact", "--channel", "sms"]);
    assert!(output.status.success(), "{output:?}");
    let report: ImpactReport = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report, expected);

    let output = run(&["impact", "--start", "2025-01-01", "--end", "2025-01-03"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("$35.00"), "{text}");
    assert!(text.contains("+69900.00%"), "{text}");
    assert!(
        text.lines().any(|line| line.starts_with("unattributed")),
        "{text}"
    );

    let output = run(&["impact", "--user", "0"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}
