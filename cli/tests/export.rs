//! `commlog export`: the built binary on temporary stores, its files read back (serde_json, csv,
//! the parquet crate) and checked against the store and against `commlog --json stats`.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, SecondsFormat, Utc};
use commlog::workload::{Generator, Spec};
use commlog::{Message, Options, StatsFilter, Store, SyncPolicy};
use serde_json::Value;
use support::command::run_in;

const EVENT_COLUMNS: [&str; 18] = [
    "seq",
    "kind",
    "message_id",
    "user_id",
    "channel",
    "message_type",
    "time",
    "appended_at",
    "cost_micros",
    "amount_micros",
    "action",
    "outcome",
    "reason",
    "budget_scope",
    "budget_month",
    "budget_micros",
    "alert_percent",
    "external_id",
];

const MESSAGE_COLUMNS: [&str; 14] = [
    "id",
    "user_id",
    "channel",
    "message_type",
    "status",
    "cost_micros",
    "sent_at",
    "delivered_at",
    "opened_at",
    "clicked_at",
    "failed_at",
    "action_taken",
    "failure_reason",
    "external_id",
];

/// The filter of the filtered checks: email, a window inside the workload's 30 days.
const EMAIL_WINDOW: [&str; 6] = [
    "--channel",
    "email",
    "--start",
    "2025-01-05",
    "--end",
    "2025-01-20",
];

/// A temporary directory holding the 20,000-message reference workload in `store/`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        };
        let store = Store::open_with(dir.path().join("store"), options).unwrap();
        for call in Generator::calls(Spec {
            seed: 42,
            users: 10_000,
            messages: 20_000,
        }) {
            commlog::workload::apply(&store, &call).unwrap();
        }
        store.close().unwrap();
        Fixture { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `commlog --dir STORE ARGS...`.
    fn run(&self, args: &[&str]) -> Output {
        run_in(&self.store(), args)
    }

    /// Runs an export to `out` and asserts it succeeded.
    fn export(&self, format: &str, out: &Path, extra: &[&str]) {
        let mut args = vec![
            "-q",
            "export",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = self.run(&args);
        assert!(
            output.status.success(),
            "export {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.stdout.is_empty(), "-q prints nothing");
    }

    /// `commlog --json stats FLAGS`.
    fn stats(&self, flags: &[&str]) -> Value {
        let mut args = vec!["--json", "stats"];
        args.extend_from_slice(flags);
        let output = self.run(&args);
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

/// What the checks compare: rows, rows per kind, and the money sums.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    rows: u64,
    kinds: BTreeMap<String, u64>,
    cost_micros: i64,
    amount_micros: i64,
}

impl Tally {
    fn add(&mut self, kind: &str, cost: Option<i64>, amount: Option<i64>) {
        self.rows += 1;
        *self.kinds.entry(kind.to_string()).or_default() += 1;
        self.cost_micros += cost.unwrap_or(0);
        self.amount_micros += amount.unwrap_or(0);
    }

    fn kind(&self, kind: &str) -> u64 {
        self.kinds.get(kind).copied().unwrap_or(0)
    }

    /// The export agrees with `commlog --json stats` of the same flags.
    fn assert_matches_stats(&self, stats: &Value) {
        assert_eq!(self.kind("sent"), stats["total_messages"].as_u64().unwrap());
        assert_eq!(
            self.cost_micros,
            stats["total_cost_micros"].as_i64().unwrap()
        );
        assert_eq!(
            self.kind("outcome"),
            stats["outcome_count"].as_u64().unwrap()
        );
        assert_eq!(
            self.amount_micros,
            stats["total_impact_micros"].as_i64().unwrap()
        );
    }

    /// The unfiltered 20,000-message workload (tests/workload.rs's call tally).
    fn assert_reference(&self) {
        assert_eq!(self.rows, 46_249);
        assert_eq!(self.kind("sent"), 20_000);
        assert_eq!(self.kind("delivered"), 19_028);
        assert_eq!(self.kind("opened"), 4_907);
        assert_eq!(self.kind("action"), 1_947);
        assert_eq!(self.kind("outcome"), 367);
        assert_eq!(self.cost_micros, 357_713_000);
        assert_eq!(self.amount_micros, 92_613_680_000);
    }
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Map<String, Value>> {
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(file)
        .lines()
        .map(|line| match serde_json::from_str(&line.unwrap()).unwrap() {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

fn is_millisecond_utc(text: &str) -> bool {
    DateTime::parse_from_rfc3339(text).is_ok()
        && text.len() == "2025-01-01T00:00:00.000Z".len()
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
}

/// Checks a JSON event row's shape (keys in order, which fields a kind has) and tallies it.
fn tally_json_event(tally: &mut Tally, row: &serde_json::Map<String, Value>) {
    let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut sorted_columns = EVENT_COLUMNS.to_vec();
    sorted_columns.sort_unstable();
    assert_eq!(keys, sorted_columns, "every column, null when absent");
    let kind = row["kind"].as_str().unwrap();
    let present = |key: &str| !row[key].is_null();
    assert_eq!(present("user_id"), kind != "budget", "{row:?}");
    if kind != "budget" {
        assert!(row["user_id"].as_u64().unwrap() >= 1);
    }
    assert!(is_millisecond_utc(row["time"].as_str().unwrap()), "{row:?}");
    assert!(is_millisecond_utc(row["appended_at"].as_str().unwrap()));
    for budget_column in [
        "budget_scope",
        "budget_month",
        "budget_micros",
        "alert_percent",
    ] {
        assert_eq!(present(budget_column), kind == "budget", "{row:?}");
    }
    let is_message = kind != "outcome" && kind != "budget";
    assert_eq!(present("message_id"), is_message, "{row:?}");
    assert_eq!(present("channel"), is_message, "{row:?}");
    assert_eq!(present("message_type"), is_message, "{row:?}");
    assert_eq!(present("cost_micros"), kind == "sent", "{row:?}");
    assert_eq!(present("amount_micros"), kind == "outcome", "{row:?}");
    assert_eq!(present("action"), kind == "action", "{row:?}");
    assert_eq!(present("outcome"), kind == "outcome", "{row:?}");
    assert_eq!(present("reason"), kind == "failed", "{row:?}");
    tally.add(
        kind,
        row["cost_micros"].as_i64(),
        row["amount_micros"].as_i64(),
    );
}

#[test]
fn jsonl_has_one_row_per_event_and_the_reference_sums() {
    let fixture = Fixture::new();
    let out = fixture.path("events.jsonl");
    fixture.export("jsonl", &out, &[]);
    let rows = read_jsonl(&out);
    // The keys in the column order.
    let text = std::fs::read_to_string(&out).unwrap();
    let first_line = text.lines().next().unwrap();
    let positions: Vec<usize> = EVENT_COLUMNS
        .iter()
        .map(|column| first_line.find(&format!("\"{column}\":")).unwrap())
        .collect();
    assert!(positions.is_sorted(), "{first_line}");
    let mut tally = Tally::default();
    let mut message_of = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row["seq"].as_u64().unwrap(), index as u64 + 1, "log order");
        tally_json_event(&mut tally, row);
        // Follow-up rows carry their message's user, channel and type.
        if let Some(id) = row["message_id"].as_u64() {
            let group = (
                row["user_id"].clone(),
                row["channel"].clone(),
                row["message_type"].clone(),
            );
            assert_eq!(
                message_of.entry(id).or_insert_with(|| group.clone()),
                &group
            );
        }
    }
    tally.assert_reference();
    tally.assert_matches_stats(&fixture.stats(&[]));
    // The first row is the first message's sent event, as the store has it.
    let store = Store::open_read_only(fixture.store()).unwrap();
    let first = store.get_message(1).unwrap();
    assert_eq!(rows[0]["kind"], "sent");
    assert_eq!(rows[0]["time"], millis(first.sent_at));
    assert_eq!(rows[0]["user_id"], first.user_id.0);
    assert_eq!(rows[0]["channel"], first.channel.as_str());
    assert_eq!(
        rows[0]["cost_micros"],
        i64::try_from(first.cost.micros()).unwrap()
    );
}

#[test]
fn filtered_exports_sum_to_the_stats_of_the_same_flags() {
    let fixture = Fixture::new();
    let filters: [&[&str]; 5] = [
        &EMAIL_WINDOW,
        &["--user", "42"],
        &["--type", "low_balance", "--start", "2025-01-10T12:00:00Z"],
        &["--channel", "sms", "--end", "2025-01-03"],
        &["--type", "never_tracked"],
    ];
    for (index, filter) in filters.iter().enumerate() {
        let stats = fixture.stats(filter);

        let jsonl = fixture.path(&format!("filtered-{index}.jsonl"));
        fixture.export("jsonl", &jsonl, filter);
        let mut tally = Tally::default();
        for row in read_jsonl(&jsonl) {
            tally_json_event(&mut tally, &row);
        }
        tally.assert_matches_stats(&stats);

        let csv_path = fixture.path(&format!("filtered-{index}.csv"));
        fixture.export("csv", &csv_path, filter);
        let csv_tally = tally_csv(&csv_path);
        assert_eq!(
            csv_tally, tally,
            "csv and jsonl hold the same rows: {filter:?}"
        );
    }
    // The email window selects messages and outcomes: the check above is not vacuous.
    let stats = fixture.stats(&EMAIL_WINDOW);
    assert!(stats["total_messages"].as_u64().unwrap() > 1_000);
    assert!(stats["outcome_count"].as_u64().unwrap() > 100);
}

fn tally_csv(path: &Path) -> Tally {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, EVENT_COLUMNS);
    let mut tally = Tally::default();
    for record in reader.records() {
        let record = record.unwrap();
        let number = |column: usize| -> Option<i64> {
            let text = &record[column];
            (!text.is_empty()).then(|| text.parse().unwrap())
        };
        tally.add(&record[1], number(8), number(9));
    }
    tally
}

#[test]
fn csv_has_a_header_and_the_reference_sums() {
    let fixture = Fixture::new();
    let out = fixture.path("events.csv");
    fixture.export("csv", &out, &[]);
    tally_csv(&out).assert_reference();

    // An export selecting nothing is its header alone.
    let empty = fixture.path("empty.csv");
    fixture.export("csv", &empty, &["--user", "999999"]);
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        format!("{}\n", EVENT_COLUMNS.join(","))
    );
}

fn millis(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A message as the JSON-lines export writes it.
fn message_json(message: &Message) -> Value {
    let time = |time: Option<DateTime<Utc>>| time.map(millis);
    serde_json::json!({
        "id": message.id.0,
        "user_id": message.user_id.0,
        "channel": message.channel.as_str(),
        "message_type": message.message_type,
        "status": message.status.as_str(),
        "cost_micros": message.cost.micros(),
        "sent_at": millis(message.sent_at),
        "delivered_at": time(message.delivered_at),
        "opened_at": time(message.opened_at),
        "clicked_at": time(message.clicked_at),
        "failed_at": time(message.failed_at),
        "action_taken": message.action_taken,
        "failure_reason": message.failure_reason,
        // The reference workload sends no message with an external id.
        "external_id": null,
    })
}

#[test]
fn messages_export_has_the_rows_of_get_messages() {
    let fixture = Fixture::new();
    let store = Store::open_read_only(fixture.store()).unwrap();
    for (name, flags, filter) in [
        ("all", &[][..], StatsFilter::new()),
        (
            "email",
            &EMAIL_WINDOW[..],
            StatsFilter::new()
                .channel(commlog::Channel::Email)
                .start("2025-01-05T00:00:00Z".parse().unwrap())
                .end("2025-01-20T23:59:59.999Z".parse().unwrap()),
        ),
    ] {
        let expected: Vec<Value> = store
            .get_messages(&filter)
            .unwrap()
            .iter()
            .map(message_json)
            .collect();
        let mut args = vec!["--messages"];
        args.extend_from_slice(flags);

        let jsonl = fixture.path(&format!("messages-{name}.jsonl"));
        fixture.export("jsonl", &jsonl, &args);
        let rows: Vec<Value> = read_jsonl(&jsonl).into_iter().map(Value::Object).collect();
        assert_eq!(rows.len(), expected.len());
        assert_eq!(rows, expected);

        let csv_path = fixture.path(&format!("messages-{name}.csv"));
        fixture.export("csv", &csv_path, &args);
        let mut reader = csv::Reader::from_path(&csv_path).unwrap();
        assert_eq!(reader.headers().unwrap(), MESSAGE_COLUMNS.as_slice());
        let mut count = 0;
        for (record, expected) in reader.records().zip(&expected) {
            let record = record.unwrap();
            for (column, name) in MESSAGE_COLUMNS.iter().enumerate() {
                let text = match &expected[name] {
                    Value::Null => String::new(),
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                assert_eq!(record[column], text, "{name}");
            }
            count += 1;
        }
        assert_eq!(count, expected.len());
    }
    let all = store.get_messages(&StatsFilter::new()).unwrap();
    assert_eq!(all.len(), 20_000);
}

#[test]
fn an_existing_output_is_refused_and_left_alone() {
    let fixture = Fixture::new();
    let file = fixture.path("taken.csv");
    std::fs::write(&file, "mine\n").unwrap();
    let directory = fixture.path("taken");
    std::fs::create_dir(&directory).unwrap();
    for (format, out) in [
        ("csv", &file),
        ("jsonl", &file),
        ("parquet", &file),
        ("parquet", &directory),
        ("jsonl", &directory),
    ] {
        let output = fixture.run(&["export", "--format", format, "--out", out.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{format} {out:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = if format == "parquet" && !cfg!(feature = "parquet") {
            "without Parquet support"
        } else {
            "already exists"
        };
        assert!(stderr.contains(expected), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine\n");
    assert_eq!(std::fs::read_dir(&directory).unwrap().count(), 0);
}

#[test]
fn bad_invocations_exit_1_and_write_nothing() {
    let fixture = Fixture::new();
    let out = fixture.path("out.jsonl");
    let out = out.to_str().unwrap();
    // A missing store: exit 1, nothing created (neither the store nor the output).
    let missing = fixture.path("no-store");
    let output = run_in(&missing, &["export", "--format", "jsonl", "--out", out]);
    assert_eq!(output.status.code(), Some(1));
    assert!(!missing.exists());
    for args in [
        // Parquet is a directory: not stdout.
        &["export", "--format", "parquet", "--out", "-"][..],
        &["export", "--format", "xml", "--out", out],
        &["export", "--format", "csv"],
        &[
            "export",
            "--format",
            "csv",
            "--out",
            out,
            "--channel",
            "fax",
        ],
        &[
            "export",
            "--format",
            "csv",
            "--out",
            out,
            "--start",
            "yesterday",
        ],
        &[
            "export",
            "--format",
            "csv",
            "--out",
            out,
            "--start",
            "2025-01-02",
            "--end",
            "2025-01-01",
        ],
    ] {
        let output = fixture.run(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!Path::new(out).exists(), "{args:?}");
    }
}

#[test]
fn summary_line_and_json_summary() {
    let fixture = Fixture::new();
    let out = fixture.path("summary.jsonl");
    let output = fixture.run(&[
        "export",
        "--format",
        "jsonl",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("exported 46,249 events to "), "{stdout}");

    let out = fixture.path("summary.csv");
    let output = fixture.run(&[
        "--json",
        "export",
        "--messages",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["rows"], 20_000);
    assert_eq!(summary["row_kind"], "messages");
    assert_eq!(summary["format"], "csv");
}

#[test]
fn stdout_export_streams_and_a_closed_pipe_exits_0() {
    let fixture = Fixture::new();
    for format in ["jsonl", "csv"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_commlog"))
            .arg("--dir")
            .arg(fixture.store())
            .args(["export", "--format", format, "--out", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        if format == "jsonl" {
            let row: Value = serde_json::from_str(&first).unwrap();
            assert_eq!(row["seq"], 1);
        } else {
            assert_eq!(first.trim_end(), EVENT_COLUMNS.join(","));
        }
        drop(reader); // `| head -1`
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{format}: {output:?}");
        assert!(output.stderr.is_empty(), "quietly: {output:?}");
    }

    // To the end of the pipe: every row, nothing else.
    let output = fixture.run(&["export", "--format", "jsonl", "--out", "-"]);
    assert!(output.status.success());
    assert_eq!(
        output.stdout.iter().filter(|&&byte| byte == b'\n').count(),
        46_249
    );
}

/// The external id the message of [`budgets_and_a_failure`] is sent with.
const EXTERNAL_ID: &str = "SM0123456789abcdef";

/// A small store with a message sent with an external id, its failure, an outcome and two
/// budgets (all channels, and sms).
fn budgets_and_a_failure(dir: &Path) -> Store {
    let store = Store::open_with(
        dir,
        Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        },
    )
    .unwrap();
    let sent_at: DateTime<Utc> = "2025-01-02T09:00:00Z".parse().unwrap();
    let message = store
        .track_message_sent_with(
            7,
            commlog::Channel::Sms,
            "low_balance",
            0.05,
            Some(sent_at),
            Some(EXTERNAL_ID),
        )
        .unwrap();
    store
        .track_message_failed(
            message.id,
            "undelivered",
            Some(sent_at + chrono::Duration::seconds(5)),
        )
        .unwrap();
    store
        .track_financial_outcome_at(
            7,
            "bill_paid_on_time",
            25.0,
            sent_at + chrono::Duration::hours(1),
        )
        .unwrap();
    store
        .set_budget(commlog::BudgetScope::All, "2025-01", 1000.0, None)
        .unwrap();
    store
        .set_budget(
            commlog::BudgetScope::Channel(commlog::Channel::Sms),
            "2025-01",
            250.5,
            Some(80),
        )
        .unwrap();
    store.sync().unwrap();
    store
}

#[test]
fn every_event_leaves_by_export_budgets_and_failure_reasons_included() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let _writer = budgets_and_a_failure(&dir);
    let export = |name: &str, format: &str, extra: &[&str]| {
        let out = temp.path().join(name);
        let mut args = vec![
            "-q",
            "export",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = run_in(&dir, &args);
        assert!(output.status.success(), "{output:?}");
        out
    };

    // One row per event, in log order, the budgets too.
    let rows = read_jsonl(&export("all.jsonl", "jsonl", &[]));
    let kinds: Vec<&str> = rows
        .iter()
        .map(|row| row["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["sent", "failed", "outcome", "budget", "budget"]);
    let events = Store::open_read_only(&dir).unwrap().open_report().events;
    assert_eq!(rows.len() as u64, events);
    let mut tally = Tally::default();
    for row in &rows {
        tally_json_event(&mut tally, row);
    }
    assert_eq!(rows[1]["reason"], "undelivered");
    // The sent row carries the external id the message was sent with; no other row has one.
    let external_ids: Vec<&Value> = rows.iter().map(|row| &row["external_id"]).collect();
    let sent_only = [
        &Value::from(EXTERNAL_ID),
        &Value::Null,
        &Value::Null,
        &Value::Null,
    ];
    assert_eq!(
        external_ids,
        [sent_only.as_slice(), &[&Value::Null]].concat()
    );
    let budget = |row: &serde_json::Map<String, Value>| {
        (
            row["budget_scope"].clone(),
            row["budget_month"].clone(),
            row["budget_micros"].clone(),
            row["alert_percent"].clone(),
            row["user_id"].clone(),
        )
    };
    assert_eq!(
        budget(&rows[3]),
        (
            Value::from("all"),
            Value::from("2025-01"),
            Value::from(1_000_000_000i64),
            Value::from(90),
            Value::Null
        )
    );
    assert_eq!(
        budget(&rows[4]),
        (
            Value::from("sms"),
            Value::from("2025-01"),
            Value::from(250_500_000i64),
            Value::from(80),
            Value::Null
        )
    );

    // CSV has the same rows.
    let csv_path = export("all.csv", "csv", &[]);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(reader.headers().unwrap(), EVENT_COLUMNS.as_slice());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 5);
    let budget_cells: Vec<&str> = (13..17).map(|column| &records[4][column]).collect();
    assert_eq!(budget_cells, ["sms", "2025-01", "250500000", "80"]);
    assert_eq!(&records[4][3], "");
    let external_ids: Vec<&str> = records.iter().map(|record| &record[17]).collect();
    assert_eq!(external_ids, [EXTERNAL_ID, "", "", "", ""]);

    // A budget concerns no user and no message type; a channel filter keeps its own budget.
    let sms = read_jsonl(&export("sms.jsonl", "jsonl", &["--channel", "sms"]));
    let kinds: Vec<&str> = sms
        .iter()
        .map(|row| row["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["sent", "failed", "outcome", "budget"]);
    assert_eq!(sms[3]["budget_scope"], "sms");
    for flags in [&["--user", "7"][..], &["--type", "low_balance"]] {
        let rows = read_jsonl(&export(&format!("f{}.jsonl", flags[1]), "jsonl", flags));
        assert!(rows.iter().all(|row| row["kind"] != "budget"), "{flags:?}");
    }

    // The message export, history and its JSON carry the failure's reason.
    let messages = read_jsonl(&export("messages.jsonl", "jsonl", &["--messages"]));
    assert_eq!(messages[0]["failure_reason"], "undelivered");
    assert_eq!(messages[0]["external_id"], EXTERNAL_ID);
    let csv_path = export("messages.csv", "csv", &["--messages"]);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(reader.headers().unwrap(), MESSAGE_COLUMNS.as_slice());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(&records[0][13], EXTERNAL_ID);
    let history = run_in(&dir, &["--json", "history", "--user", "7"]);
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history[0]["failure_reason"], "undelivered");
    let table = run_in(&dir, &["history", "--user", "7"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("failure") && table.contains("undelivered"),
        "{table}"
    );
}

#[cfg(feature = "parquet")]
mod parquet_export {
    use std::fs::File;

    use chrono::NaiveDate;
    use parquet::basic::{LogicalType, TimeUnit, Type as PhysicalType};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    use super::*;

    /// Every `date=YYYY-MM-DD/part-NNNNN.parquet` under `root`, sorted, with its day.
    fn partition_files(root: &Path) -> Vec<(NaiveDate, PathBuf)> {
        let mut files = Vec::new();
        for partition in std::fs::read_dir(root).unwrap() {
            let partition = partition.unwrap();
            assert!(partition.file_type().unwrap().is_dir());
            let name = partition.file_name().into_string().unwrap();
            let day = name
                .strip_prefix("date=")
                .expect("a date=YYYY-MM-DD partition");
            let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
            assert_eq!(name, format!("date={}", day.format("%Y-%m-%d")));
            for file in std::fs::read_dir(partition.path()).unwrap() {
                let file = file.unwrap();
                let file_name = file.file_name().into_string().unwrap();
                assert!(
                    file_name.starts_with("part-") && file_name.ends_with(".parquet"),
                    "{file_name}"
                );
                files.push((day, file.path()));
            }
        }
        files.sort();
        files
    }

    /// The rows of a Parquet file as (column name → field) maps, after checking its schema's
    /// types: `timestamps` are INT64 TIMESTAMP(MICROS, true), `strings` BYTE_ARRAY STRING, the
    /// others INT64.
    fn read_rows(
        path: &Path,
        columns: &[&str],
        timestamps: &[&str],
        strings: &[&str],
    ) -> Vec<BTreeMap<String, Field>> {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema
            .columns()
            .iter()
            .map(|column| column.name())
            .collect();
        assert_eq!(names, columns);
        for column in schema.columns() {
            let name = column.name();
            if timestamps.contains(&name) {
                assert_eq!(column.physical_type(), PhysicalType::INT64, "{name}");
                assert_eq!(
                    column.logical_type_ref(),
                    Some(&LogicalType::timestamp(true, TimeUnit::MICROS)),
                    "{name}"
                );
            } else if strings.contains(&name) {
                assert_eq!(column.physical_type(), PhysicalType::BYTE_ARRAY, "{name}");
                assert_eq!(
                    column.logical_type_ref(),
                    Some(&LogicalType::String),
                    "{name}"
                );
            } else {
                assert_eq!(column.physical_type(), PhysicalType::INT64, "{name}");
            }
        }
        let compression = reader.metadata().row_group(0).column(0).compression();
        assert_eq!(compression, parquet::basic::Compression::SNAPPY);
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                row.unwrap()
                    .into_columns()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>()
            })
            .collect()
    }

    fn long(field: &Field) -> Option<i64> {
        match field {
            Field::Null => None,
            Field::Long(value) => Some(*value),
            other => panic!("not an INT64: {other:?}"),
        }
    }

    fn string(field: &Field) -> Option<&str> {
        match field {
            Field::Null => None,
            Field::Str(value) => Some(value),
            other => panic!("not a string: {other:?}"),
        }
    }

    fn micros(field: &Field) -> Option<i64> {
        match field {
            Field::Null => None,
            Field::TimestampMicros(value) => Some(*value),
            other => panic!("not a timestamp: {other:?}"),
        }
    }

    const EVENT_STRINGS: [&str; 9] = [
        "kind",
        "channel",
        "message_type",
        "action",
        "outcome",
        "reason",
        "budget_scope",
        "budget_month",
        "external_id",
    ];

    /// Reads an event export back: checks the layout and that each row sits in its day's
    /// partition, and tallies the rows.
    fn tally_events(root: &Path) -> (Tally, Vec<i64>) {
        let mut tally = Tally::default();
        let mut seqs = Vec::new();
        let files = partition_files(root);
        for (day, path) in &files {
            let rows = read_rows(
                path,
                &EVENT_COLUMNS,
                &["time", "appended_at"],
                &EVENT_STRINGS,
            );
            assert!(!rows.is_empty(), "no empty files");
            for row in rows {
                let time = micros(&row["time"]).unwrap();
                let time = DateTime::from_timestamp_micros(time).unwrap();
                assert_eq!(time.date_naive(), *day, "a row in its UTC day's partition");
                assert_eq!(time.timestamp_subsec_micros() % 1000, 0, "ms resolution");
                assert!(micros(&row["appended_at"]).is_some());
                let kind = string(&row["kind"]).unwrap();
                let is_message = kind != "outcome" && kind != "budget";
                assert_eq!(long(&row["user_id"]).is_some(), kind != "budget");
                assert!(long(&row["user_id"]).is_none_or(|user| user >= 1));
                assert_eq!(long(&row["message_id"]).is_some(), is_message);
                assert_eq!(string(&row["channel"]).is_some(), is_message);
                assert_eq!(string(&row["message_type"]).is_some(), is_message);
                assert_eq!(string(&row["budget_scope"]).is_some(), kind == "budget");
                assert_eq!(long(&row["budget_micros"]).is_some(), kind == "budget");
                assert_eq!(string(&row["action"]).is_some(), kind == "action");
                assert_eq!(string(&row["outcome"]).is_some(), kind == "outcome");
                assert_eq!(string(&row["reason"]).is_some(), kind == "failed");
                let cost = long(&row["cost_micros"]);
                let amount = long(&row["amount_micros"]);
                assert_eq!(cost.is_some(), kind == "sent");
                assert_eq!(amount.is_some(), kind == "outcome");
                tally.add(kind, cost, amount);
                seqs.push(long(&row["seq"]).unwrap());
            }
        }
        // One file per day here: the workload's days fit the writer's buffers.
        for (index, (day, path)) in files.iter().enumerate() {
            assert_eq!(path.file_name().unwrap(), "part-00000.parquet");
            assert!(index == 0 || files[index - 1].0 < *day);
        }
        (tally, seqs)
    }

    #[test]
    fn parquet_is_partitioned_by_day_with_the_reference_rows_and_sums() {
        let fixture = Fixture::new();
        let out = fixture.path("events");
        fixture.export("parquet", &out, &[]);
        let (tally, mut seqs) = tally_events(&out);
        tally.assert_reference();
        tally.assert_matches_stats(&fixture.stats(&[]));
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=46_249).collect::<Vec<i64>>(), "every event once");
        // The workload's 30 days, and the opens and actions that spill past them.
        let days: Vec<NaiveDate> = partition_files(&out).iter().map(|(day, _)| *day).collect();
        assert_eq!(days[0], NaiveDate::from_ymd_opt(2025, 1, 1).unwrap());
        assert!((30..=33).contains(&days.len()), "{days:?}");
    }

    #[test]
    fn filtered_parquet_sums_to_the_stats_of_the_same_flags() {
        let fixture = Fixture::new();
        for (index, filter) in [&EMAIL_WINDOW[..], &["--user", "42"]].iter().enumerate() {
            let out = fixture.path(&format!("filtered-{index}"));
            fixture.export("parquet", &out, filter);
            let (tally, _) = tally_events(&out);
            tally.assert_matches_stats(&fixture.stats(filter));
            assert!(tally.rows > 0);
        }
        // A type never tracked selects no message, but outcomes still (by user and time only,
        // as stats counts them).
        let out = fixture.path("no-type");
        let filter = ["--type", "never_tracked"];
        fixture.export("parquet", &out, &filter);
        let (tally, _) = tally_events(&out);
        tally.assert_matches_stats(&fixture.stats(&filter));
        assert_eq!((tally.kind("sent"), tally.kind("outcome")), (0, 367));
        assert_eq!(tally.rows, 367);
        // Nothing selected: an empty directory.
        let out = fixture.path("nothing");
        fixture.export("parquet", &out, &["--user", "999999"]);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn parquet_messages_have_the_rows_of_get_messages_by_sent_day() {
        let fixture = Fixture::new();
        let out = fixture.path("messages");
        fixture.export("parquet", &out, &["--messages"]);
        let store = Store::open_read_only(fixture.store()).unwrap();
        let expected = store.get_messages(&StatsFilter::new()).unwrap();
        let time = |time: Option<DateTime<Utc>>| time.map(|time| time.timestamp_micros());
        let mut rows = Vec::new();
        for (day, path) in partition_files(&out) {
            let file_rows = read_rows(
                &path,
                &MESSAGE_COLUMNS,
                &[
                    "sent_at",
                    "delivered_at",
                    "opened_at",
                    "clicked_at",
                    "failed_at",
                ],
                &[
                    "channel",
                    "message_type",
                    "status",
                    "action_taken",
                    "failure_reason",
                    "external_id",
                ],
            );
            for row in file_rows {
                let sent = DateTime::from_timestamp_micros(micros(&row["sent_at"]).unwrap());
                assert_eq!(sent.unwrap().date_naive(), day);
                rows.push(row);
            }
        }
        rows.sort_by_key(|row| long(&row["id"]));
        assert_eq!(rows.len(), expected.len());
        for (row, message) in rows.iter().zip(&expected) {
            assert_eq!(long(&row["id"]), Some(message.id.0 as i64));
            assert_eq!(long(&row["user_id"]), Some(message.user_id.0 as i64));
            assert_eq!(string(&row["channel"]), Some(message.channel.as_str()));
            assert_eq!(string(&row["message_type"]), Some(&*message.message_type));
            assert_eq!(string(&row["status"]), Some(message.status.as_str()));
            assert_eq!(
                long(&row["cost_micros"]).map(i128::from),
                Some(message.cost.micros())
            );
            assert_eq!(micros(&row["sent_at"]), time(Some(message.sent_at)));
            assert_eq!(micros(&row["delivered_at"]), time(message.delivered_at));
            assert_eq!(micros(&row["opened_at"]), time(message.opened_at));
            assert_eq!(micros(&row["clicked_at"]), time(message.clicked_at));
            assert_eq!(micros(&row["failed_at"]), time(message.failed_at));
            assert_eq!(
                string(&row["action_taken"]),
                message.action_taken.as_deref()
            );
            assert_eq!(
                string(&row["failure_reason"]),
                message.failure_reason.as_deref()
            );
            assert_eq!(string(&row["external_id"]), None);
        }
    }

    #[test]
    fn parquet_has_the_budget_rows_and_the_failure_reason() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        drop(budgets_and_a_failure(&dir));
        let out = temp.path().join("events");
        let output = run_in(
            &dir,
            &[
                "-q",
                "export",
                "--format",
                "parquet",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(output.status.success(), "{output:?}");
        let mut budgets = Vec::new();
        let mut kinds = 0;
        for (_, path) in partition_files(&out) {
            for row in read_rows(
                &path,
                &EVENT_COLUMNS,
                &["time", "appended_at"],
                &EVENT_STRINGS,
            ) {
                kinds += 1;
                let sent = string(&row["kind"]) == Some("sent");
                assert_eq!(string(&row["external_id"]), sent.then_some(EXTERNAL_ID));
                if string(&row["kind"]) == Some("budget") {
                    assert_eq!(long(&row["user_id"]), None);
                    budgets.push((
                        string(&row["budget_scope"]).unwrap().to_string(),
                        long(&row["budget_micros"]).unwrap(),
                        long(&row["alert_percent"]).unwrap(),
                    ));
                }
            }
        }
        assert_eq!(kinds, 5);
        budgets.sort();
        assert_eq!(
            budgets,
            [
                ("all".to_string(), 1_000_000_000, 90),
                ("sms".to_string(), 250_500_000, 80)
            ]
        );

        let out = temp.path().join("messages");
        let output = run_in(
            &dir,
            &[
                "-q",
                "export",
                "--format",
                "parquet",
                "--messages",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(output.status.success(), "{output:?}");
        let (_, path) = &partition_files(&out)[0];
        let rows = read_rows(
            path,
            &MESSAGE_COLUMNS,
            &[
                "sent_at",
                "delivered_at",
                "opened_at",
                "clicked_at",
                "failed_at",
            ],
            &[
                "channel",
                "message_type",
                "status",
                "action_taken",
                "failure_reason",
                "external_id",
            ],
        );
        assert_eq!(string(&rows[0]["failure_reason"]), Some("undelivered"));
        assert_eq!(string(&rows[0]["external_id"]), Some(EXTERNAL_ID));
    }
}

/// An export stopped by a signal while it writes leaves no output that looks whole: the file or
/// directory is removed, the error says so, and the exit status is 128 + the signal.
#[test]
fn an_export_stopped_by_a_signal_leaves_no_output() {
    let temp = tempfile::tempdir().unwrap();
    let store = temp.path().join("store");
    let demo = run_in(&store, &["-q", "demo", "--messages", "300000"]);
    assert!(demo.status.success(), "{demo:?}");
    for (format, signal, status) in [("csv", "TERM", 143), ("parquet", "INT", 130)] {
        let out = temp.path().join(format!("out-{format}"));
        let child = {
            let _spawning = support::command::spawning();
            support::command::cli_in(&store)
                .args(["export", "--format", format, "--out", out.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        // Once the output exists the export is writing rows (the log is read before).
        let started = std::time::Instant::now();
        while !out.exists() {
            assert!(started.elapsed() < std::time::Duration::from_secs(60));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{format}: {stderr}");
        assert!(
            stderr.contains(&format!("interrupted by SIG{signal}: the partial output"))
                && stderr.contains("was removed"),
            "{format}: {stderr}"
        );
        assert!(!out.exists(), "{format}: {} is left", out.display());
    }
}
