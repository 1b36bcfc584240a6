//! The `costs` and `budget set` commands; the cost report itself: tests/cost.rs.

mod support;

use commlog::{BudgetScope, Channel, CostReport};
use support::command::run_in;
use support::reports::budget_of;

#[test]
fn budget_set_appends_a_budget_that_costs_reports() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let ok = |args: &[&str]| {
        let output = run_in(&dir, args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    ok(&[
        "track",
        "sent",
        "--user",
        "1",
        "--channel",
        "sms",
        "--type",
        "low_balance",
        "--cost",
        "0.5",
        "--at",
        "2025-01-10T00:00:00Z",
    ]);
    let set = ok(&[
        "--json",
        "budget",
        "set",
        "--scope",
        "sms",
        "--month",
        "2025-01",
        "--amount",
        "1",
        "--alert-percent",
        "50",
    ]);
    let set: serde_json::Value = serde_json::from_str(&set).unwrap();
    // The scope in the serde form of `BudgetScope`, as `costs --json` prints it.
    assert_eq!(set["scope"], serde_json::json!("sms"));
    assert_eq!(set["amount_micros"], 1_000_000);
    let report: CostReport =
        serde_json::from_str(&ok(&["--json", "costs", "--month", "2025-01"])).unwrap();
    let sms = budget_of(&report, BudgetScope::Channel(Channel::Sms), "2025-01");
    assert_eq!(
        (sms.spent.micros(), sms.alert, sms.exceeded),
        (500_000, true, false)
    );
    let text = ok(&["costs", "--channel", "sms"]);
    assert!(text.contains("alert"), "{text}");
    assert!(text.contains("$0.50"), "{text}");
}

#[test]
fn budget_set_refuses_bad_arguments_before_creating_a_store() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    for args in [
        [
            "--scope",
            "fax",
            "--month",
            "2025-01",
            "--amount",
            "1",
            "--alert-percent",
            "90",
        ],
        [
            "--scope",
            "all",
            "--month",
            "2025-1",
            "--amount",
            "1",
            "--alert-percent",
            "90",
        ],
        [
            "--scope",
            "all",
            "--month",
            "2025-01",
            "--amount",
            "0",
            "--alert-percent",
            "90",
        ],
        [
            "--scope",
            "all",
            "--month",
            "2025-01",
            "--amount",
            "-5",
            "--alert-percent",
            "90",
        ],
        [
            "--scope",
            "all",
            "--month",
            "2025-01",
            "--amount",
            "1",
            "--alert-percent",
            "0",
        ],
        [
            "--scope",
            "all",
            "--month",
            "2025-01",
            "--amount",
            "1",
            "--alert-percent",
            "101",
        ],
    ] {
        let mut full = vec!["budget", "set"];
        full.extend(args);
        let output = run_in(&dir, &full);
        assert_eq!(output.status.code(), Some(1), "{full:?}: {output:?}");
        assert!(!dir.exists(), "{full:?} created the store");
    }
    // A negative percent is refused naming the field and the value, as 0 is.
    for percent in ["-1", "0"] {
        let args = [
            "budget",
            "set",
            "--scope",
            "all",
            "--month",
            "2025-01",
            "--amount",
            "1",
            "--alert-percent",
            percent,
        ];
        let output = run_in(&dir, &args);
        assert_eq!(output.status.code(), Some(1), "{percent}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "invalid alert_percent: \"{percent}\" (must be 1 to 100)"
            )),
            "{percent}: {stderr}"
        );
        assert!(!dir.exists(), "{percent} created the store");
    }
    // costs on a missing store is a usage error too.
    assert_eq!(run_in(&dir, &["costs"]).status.code(), Some(1));
    assert_eq!(
        run_in(&dir, &["costs", "--month", "January"]).status.code(),
        Some(1)
    );
}
