//! Snapshots at the command line: `audit` lists them (and with `--deep` compares each with the
//! log), every command that opens a store says on stderr which snapshot it ignored, and the
//! commands that make one call decode a snapshot's facts only as far as that call needs.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use commlog::{
    Channel, CostFilter, EffectivenessFilter, ImpactFilter, Options, SNAPSHOT_DIRECTORY, Store,
};
use serde_json::Value;
use support::command::{run_in, spawning};
use tempfile::TempDir;

/// The snapshot a store of three events gets at close.
const SNAPSHOT_NAME: &str = "snapshot-00000000000000000003";

/// A writer of a new store `data` in `dir`, whose close writes a snapshot of every event.
fn snapshotting_writer(dir: &TempDir) -> (PathBuf, Store) {
    let data = dir.path().join("data");
    let options = Options {
        snapshot_every: 1,
        ..Options::default()
    };
    let store = Store::open_with(&data, options).unwrap();
    (data, store)
}

/// A writer of the store `data` that writes no snapshot unless asked (`Store::snapshot`), not
/// even at close.
fn writer_without_snapshots(data: &Path) -> Store {
    let options = Options {
        snapshot_every: 0,
        ..Options::default()
    };
    Store::open_with(data, options).unwrap()
}

/// A store of two sends (one at 0.05) and a delivery, closed with a snapshot of all three.
fn store_with_snapshot() -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let (data, store) = snapshotting_writer(&dir);
    let sent = store
        .track_message_sent(7, Channel::Sms, "low_balance", 0.05)
        .unwrap();
    store.track_message_delivered(sent.id, None).unwrap();
    store
        .track_message_sent(8, Channel::Email, "upgrade_offer", 0.0)
        .unwrap();
    store.close().unwrap();
    let snapshot = data.join(SNAPSHOT_DIRECTORY).join(SNAPSHOT_NAME);
    assert!(snapshot.is_file());
    (dir, data)
}

fn run(data: &Path, args: &[&str]) -> (i32, String, String) {
    let _spawning = spawning();
    let Output {
        status,
        stdout,
        stderr,
    } = run_in(data, args);
    (
        status.code().unwrap(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// Rewrites the snapshot's first message's cost (docs/FORMAT.md, "Snapshots": after the 28-byte
/// header, the 78-byte position with a store id, the covered list of one segment (8 + 20), the
/// log's summary (24 + 2 × 17) and the messages' count (8), the message's user_id and sent_ms)
/// and recomputes both checksums, so that the loader accepts it.
fn change_first_cost(snapshot: &Path) {
    const COST_OFFSET: usize = 28 + 78 + 28 + 58 + 8 + 16;
    let mut bytes = fs::read(snapshot).unwrap();
    let cost = &mut bytes[COST_OFFSET..COST_OFFSET + 8];
    assert_eq!(cost, 50_000_i64.to_le_bytes());
    cost.copy_from_slice(&60_000_i64.to_le_bytes());
    let body_crc = crc32fast::hash(&bytes[28..]);
    bytes[20..24].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[..24]);
    bytes[24..28].copy_from_slice(&header_crc.to_le_bytes());
    fs::write(snapshot, bytes).unwrap();
}

#[test]
fn audit_lists_the_snapshot_used_and_deep_finds_one_whose_facts_were_changed() {
    let (_dir, data) = store_with_snapshot();
    let file = format!("{SNAPSHOT_DIRECTORY}/{SNAPSHOT_NAME}");
    let (code, stdout, stderr) = run(&data, &["audit", "--deep"]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    let row = stdout
        .lines()
        .find(|line| line.starts_with(&file))
        .unwrap_or_else(|| panic!("no row for the snapshot: {stdout}"));
    assert!(row.contains(" used "), "{row}");

    change_first_cost(&data.join(&file));
    let (code, stdout, _) = run(&data, &["audit"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(!stdout.contains("snapshot_differs"), "{stdout}");

    let (code, stdout, _) = run(&data, &["audit", "--deep"]);
    assert_eq!(
        code, 0,
        "a snapshot finding leaves the verdict clean: {stdout}"
    );
    assert!(stdout.starts_with("verdict: clean"), "{stdout}");
    assert!(stdout.contains("snapshot_differs"), "{stdout}");
    assert!(
        stdout.contains("snapshots are a cache of the log"),
        "{stdout}"
    );

    let (code, stdout, _) = run(&data, &["--json", "audit", "--deep"]);
    assert_eq!(code, 0, "{stdout}");
    let audit: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(audit["verdict"], "clean");
    let findings = audit["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["kind"], "snapshot_differs");
    assert_eq!(findings[0]["segment"], file.as_str());
    assert_eq!(findings[0]["fix"], "delete snapshot");
    let reason = findings[0]["reason"].as_str().unwrap();
    assert!(reason.contains("messages (first at index 0)"), "{reason}");
    assert_eq!(audit["snapshots"][0]["usage"], "used");
}

#[test]
fn every_open_says_on_stderr_which_snapshot_it_ignored() {
    let (_dir, data) = store_with_snapshot();
    let file = format!("{SNAPSHOT_DIRECTORY}/{SNAPSHOT_NAME}");
    fs::write(data.join(&file), [0xa5; 64]).unwrap();
    let warning = format!(
        "commlog: warning: snapshot {file} ignored: bad magic: not a commlog snapshot; the log \
         was replayed instead\n"
    );

    // Read-only.
    let (code, stdout, stderr) = run(&data, &["stats"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, warning);
    assert!(
        stdout
            .lines()
            .any(|line| line.split_whitespace().eq(["total_messages", "2"])),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(&data, &["--json", "stats"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<Value>(&stdout).expect("stdout stays JSON");
    let line: Value = serde_json::from_str(stderr.trim_end()).unwrap();
    assert_eq!(line["warning"], "snapshot_ignored");
    assert_eq!(line["file"], file.as_str());
    assert_eq!(line["reason"], "bad magic: not a commlog snapshot");

    // Writer.
    let args = [
        "track",
        "sent",
        "--user",
        "9",
        "--channel",
        "push",
        "--type",
        "nudge",
        "--cost",
        "0",
    ];
    let (code, _, stderr) = run(&data, &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, warning);

    // The audit reports it too, with the same reason, and the verdict stays clean.
    let (code, stdout, stderr) = run(&data, &["--json", "audit"]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    let audit: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(audit["verdict"], "clean");
    assert_eq!(audit["findings"][0]["kind"], "snapshot_ignored");
    assert_eq!(audit["snapshots"][0]["usage"], "ignored");
    assert_eq!(
        audit["snapshots"][0]["reason"],
        "bad magic: not a commlog snapshot"
    );
}

#[test]
fn an_older_snapshot_is_valid_and_deep_audit_compares_it_with_the_log_up_to_its_end() {
    let (_dir, data) = store_with_snapshot();
    let options = Options {
        snapshot_every: 1,
        ..Options::default()
    };
    let store = Store::open_with(&data, options).unwrap();
    assert_eq!(store.open_report().snapshot_events, 3);
    store
        .track_message_sent(7, Channel::Push, "low_balance", 0.25)
        .unwrap();
    store.close().unwrap();

    let (code, stdout, stderr) = run(&data, &["--json", "audit", "--deep"]);
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    let audit: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(audit["findings"], serde_json::json!([]));
    let snapshots: Vec<(String, u64, String)> = audit["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|snapshot| {
            (
                snapshot["file"].as_str().unwrap().to_string(),
                snapshot["last_seq"].as_u64().unwrap(),
                snapshot["usage"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        snapshots,
        [
            (
                format!("{SNAPSHOT_DIRECTORY}/snapshot-00000000000000000004"),
                4,
                "used".to_string()
            ),
            (
                format!("{SNAPSHOT_DIRECTORY}/{SNAPSHOT_NAME}"),
                3,
                "valid".to_string()
            ),
        ]
    );
}

/// `info` reads the counts and times from the snapshot's summary of the log and the log after
/// it: the same report as from every frame (a copy of the store without its snapshots), but for
/// the snapshot the open report names.
#[test]
fn info_from_a_snapshot_and_the_log_after_it_reports_what_every_frame_says() {
    let (_dir, data) = store_with_snapshot();
    let store = writer_without_snapshots(&data);
    store
        .track_financial_outcome_at(
            7,
            "bill_paid_on_time",
            12.5,
            chrono::DateTime::from_timestamp_millis(1_000).unwrap(),
        )
        .unwrap();
    store.track_message_opened(1, None).unwrap();
    store.close().unwrap();
    let copy = TempDir::new().unwrap();
    for entry in fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    let info = |dir: &Path| {
        let (code, stdout, stderr) = run(dir, &["--json", "info"]);
        assert_eq!(code, 0, "{stderr}");
        let mut info: Value = serde_json::from_str(&stdout).unwrap();
        let report = info["open_report"].as_object_mut().unwrap().clone();
        info.as_object_mut().unwrap().remove("open_report");
        info.as_object_mut().unwrap().remove("dir");
        (info, report)
    };
    let (from_snapshot, report) = info(&data);
    let (from_frames, full_report) = info(copy.path());
    assert_eq!(from_snapshot, from_frames);
    assert_eq!(from_snapshot["events"], Value::from(5));
    assert_eq!(from_snapshot["outcomes"], Value::from(1));
    assert_eq!(
        from_snapshot["first_event_at"],
        Value::from("1970-01-01T00:00:01.000Z")
    );
    assert_eq!(
        report["snapshot"],
        Value::from(
            data.join(SNAPSHOT_DIRECTORY)
                .join(SNAPSHOT_NAME)
                .display()
                .to_string()
        )
    );
    assert_eq!(report["snapshot_events"], Value::from(3));
    assert_eq!(full_report["snapshot"], Value::Null);
    assert_eq!(report["events"], full_report["events"]);
}

/// `track` and `budget set` decode a snapshot's facts only as far as their call reads or
/// changes them: a store they write to answers as one written through the library's eager
/// writer, call for call.
#[test]
fn track_and_budget_set_from_a_snapshot_leave_the_store_an_eager_writer_leaves() {
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(1_735_722_000_000 + ms).unwrap();
    let dir = TempDir::new().unwrap();
    // Sends in several chunks of records, some delivered: a snapshot of all of them at close.
    let (data, store) = snapshotting_writer(&dir);
    for i in 0..1_500u64 {
        let channel = Channel::ALL[(i % 4) as usize];
        let sent = store
            .track_message_sent_at(
                i % 23 + 1,
                channel,
                "low_balance",
                0.01,
                at(i as i64 * 60_000),
            )
            .unwrap();
        if i % 3 == 0 {
            store
                .track_message_delivered(sent.id, Some(at(i as i64 * 60_000 + 5_000)))
                .unwrap();
        }
    }
    store.close().unwrap();
    let copy = |name: &str| {
        let to = dir.path().join(name);
        support::files::copy_dir(&data, &to);
        to
    };
    let (by_cli, by_library) = (copy("cli"), copy("library"));

    let time = |ms: i64| at(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let calls = [
        format!("track delivered --message 2 --at {}", time(70_000)),
        format!(
            "track opened --message 1300 --at {}",
            time(1_299 * 60_000 + 9_000)
        ),
        format!(
            "track action --message 700 --action upgrade_click --at {}",
            time(699 * 60_000 + 10_000)
        ),
        format!(
            "track sent --user 5 --channel email --type bill_due --cost 0.02 --at {}",
            time(1_500 * 60_000)
        ),
        format!(
            "track outcome --user 5 --outcome bill_paid_on_time --amount 12.5 --at {}",
            time(1_501 * 60_000)
        ),
        "budget set --scope sms --month 2025-01 --amount 100".to_string(),
    ];
    for call in &calls {
        let args: Vec<&str> = call.split(' ').collect();
        let (code, _, stderr) = run(&by_cli, &args);
        assert_eq!(code, 0, "{call}: {stderr}");
        assert_eq!(stderr, "", "{call}: no snapshot ignored");
    }
    let store = Store::open_with(&by_library, Options::default()).unwrap();
    assert!(store.open_report().snapshot.is_some());
    store.track_message_delivered(2, Some(at(70_000))).unwrap();
    store
        .track_message_opened(1_300, Some(at(1_299 * 60_000 + 9_000)))
        .unwrap();
    store
        .track_user_action(700, "upgrade_click", Some(at(699 * 60_000 + 10_000)))
        .unwrap();
    store
        .track_message_sent_at(5, Channel::Email, "bill_due", 0.02, at(1_500 * 60_000))
        .unwrap();
    store
        .track_financial_outcome_at(5, "bill_paid_on_time", 12.5, at(1_501 * 60_000))
        .unwrap();
    store
        .set_budget(
            commlog::BudgetScope::Channel(Channel::Sms),
            "2025-01",
            100.0,
            None,
        )
        .unwrap();
    store.close().unwrap();

    let answers = |data: &Path| {
        let mut answers = Vec::new();
        for query in [
            &["--json", "stats"][..],
            &["--json", "channels"],
            &["--json", "costs"],
            &["--json", "impact"],
            &["--json", "history", "--user", "5"],
            &["--json", "engagement", "--user", "5"],
        ] {
            let (code, stdout, stderr) = run(data, query);
            assert_eq!(code, 0, "{query:?}: {stderr}");
            answers.push(stdout);
        }
        let out = data.with_extension("jsonl");
        let (code, _, stderr) = run(
            data,
            &[
                "export",
                "--messages",
                "--format",
                "jsonl",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        answers.push(fs::read_to_string(&out).unwrap());
        answers
    };
    let (cli_answers, library_answers) = (answers(&by_cli), answers(&by_library));
    assert_eq!(cli_answers.len(), library_answers.len());
    for (cli, library) in cli_answers.iter().zip(&library_answers) {
        // `costs` and `engagement` say "now": the latest time the store holds, which includes
        // when each call was appended, by the clock.
        let without_now = |text: &str| match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(mut answer)) => {
                answer.remove("now");
                Value::Object(answer).to_string()
            }
            _ => text.to_string(),
        };
        assert_eq!(without_now(cli), without_now(library));
    }
    assert!(cli_answers[1].contains("bill_due") && cli_answers[4].contains("bill_due"));
    assert_eq!(
        cli_answers[6].lines().count(),
        1_501,
        "every message exported"
    );
}

/// Whether the snapshot at `path` holds the message rollup: the first byte of its indexes part
/// is the rollup's option tag (docs/FORMAT.md, "Body": indexes_at is the body's last 8 bytes,
/// after the 32 of the facts' directory).
fn holds_the_rollup(path: &Path) -> bool {
    const HEADER_BYTES: usize = 28;
    let bytes = fs::read(path).unwrap();
    let end = bytes.len() - 8;
    let indexes_at = u64::from_le_bytes(bytes[end..].try_into().unwrap()) as usize;
    match bytes[HEADER_BYTES + indexes_at] {
        0 => false,
        1 => true,
        tag => panic!("option tag {tag}"),
    }
}

/// `track` leaves a snapshot's indexes unread (its one call reads none), and when its close
/// writes a snapshot (the log holding 65,536 events past the newest, of a store this small)
/// it builds them first: the new snapshot holds them, as the one it opened did.
#[test]
fn a_track_whose_close_writes_a_snapshot_builds_the_indexes_for_it() {
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(1_735_722_000_000 + ms).unwrap();
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let newest = |data: &Path| {
        let mut names: Vec<PathBuf> = fs::read_dir(data.join(SNAPSHOT_DIRECTORY))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        names.sort();
        names.pop().unwrap()
    };
    let send = |store: &Store, i: u64| {
        store
            .track_message_sent_at(i % 97 + 1, Channel::Push, "low_balance", 0.0, at(i as i64))
            .unwrap();
    };
    // 70,000 sends and a query over a time range (which builds the indexes); the close writes
    // the snapshot (none in the background).
    let quiet = |snapshot_every| Options {
        sync: commlog::SyncPolicy::Never,
        snapshot_every,
        ..Options::default()
    };
    let store = Store::open_with(&data, quiet(1 << 40)).unwrap();
    for i in 0..70_000 {
        send(&store, i);
    }
    let filter = commlog::StatsFilter::new().start(at(0)).end(at(60_000));
    assert_eq!(
        store
            .get_communication_stats(&filter)
            .unwrap()
            .total_messages,
        60_001
    );
    store.close().unwrap();
    let opened = newest(&data);
    assert!(opened.ends_with("snapshot-00000000000000070000"));
    assert!(holds_the_rollup(&opened));
    // 65,535 more, no snapshot; then `track` makes it 65,536.
    let store = Store::open_with(&data, quiet(0)).unwrap();
    for i in 70_000..135_535 {
        send(&store, i);
    }
    store.close().unwrap();
    assert_eq!(newest(&data), opened);
    let (code, _, stderr) = run(
        &data,
        &[
            "track",
            "delivered",
            "--message",
            "7",
            "--at",
            &at(9).to_rfc3339(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let written = newest(&data);
    assert!(
        written.ends_with("snapshot-00000000000000135536"),
        "{written:?}"
    );
    assert!(holds_the_rollup(&written));
    let store = Store::open_read_only(&data).unwrap();
    assert_eq!(store.open_report().snapshot, Some(written));
    assert_eq!(
        store
            .get_communication_stats(&filter)
            .unwrap()
            .delivered_count,
        1
    );
}

/// `stats`, `costs`, `channels` and `impact` read what their filter needs: over every user and
/// all time, the totals counted as a snapshot's records are checked (and for `channels` and
/// `impact` its outcome credits, read past its rollup); over a time range, the snapshot's
/// indexes; one user's, the user's lists. Each answers as the library does over the whole log
/// replayed, with events after the snapshot (some of them reports on messages it holds).
#[test]
fn read_commands_from_a_snapshot_answer_as_the_whole_log_for_every_filter() {
    let dir = TempDir::new().unwrap();
    let (data, store) = snapshotting_writer(&dir);
    let types = ["low_balance", "upgrade_offer", "bill_reminder"];
    let at = |n: i64| chrono::DateTime::from_timestamp_millis(1_735_689_600_000 + n * 37_000);
    let track = |store: &Store, from: i64, to: i64| {
        for n in from..to {
            let channel = Channel::ALL[(n % 4) as usize];
            let cost = (n % 7) as f64 / 100.0;
            let message_type = types[(n % 3) as usize];
            let sent = store
                .track_message_sent_at(
                    1 + n as u64 % 40,
                    channel,
                    message_type,
                    cost,
                    at(n).unwrap(),
                )
                .unwrap();
            match n % 5 {
                0 => {}
                1 => {
                    store
                        .track_message_failed(sent.id, "bounced", at(n + 1))
                        .unwrap();
                }
                _ => {
                    store.track_message_delivered(sent.id, at(n + 1)).unwrap();
                }
            }
            if n % 5 == 3 {
                store.track_message_opened(sent.id, at(n + 2)).unwrap();
            }
            if n % 11 == 0 {
                let at = at(n + 3).unwrap();
                store
                    .track_financial_outcome_at(1 + n as u64 % 40, "bill_paid", 2.5, at)
                    .unwrap();
            }
        }
    };
    track(&store, 0, 3_000);
    // Budgets the cost report reports against each month's spend (and one month without
    // messages).
    store
        .set_budget(commlog::BudgetScope::All, "2025-01", 50.0, None)
        .unwrap();
    store
        .set_budget(
            commlog::BudgetScope::Channel(Channel::Sms),
            "2025-01",
            9.0,
            None,
        )
        .unwrap();
    store
        .set_budget(commlog::BudgetScope::All, "2025-03", 5.0, None)
        .unwrap();
    // A query over a time range builds both indexes, which the snapshot at close then holds.
    let range = commlog::EffectivenessFilter::new().start(at(0).unwrap());
    store.get_channel_effectiveness(&range).unwrap();
    store.close().unwrap();
    let store = writer_without_snapshots(&data);
    track(&store, 3_000, 3_400);
    for id in (1..3_000).step_by(13) {
        store
            .track_user_action(id, "clicked_link", at(4_000))
            .unwrap();
    }
    store.close().unwrap();
    let whole_log = Store::open_read_only_with(
        &data,
        Options {
            load_snapshot: false,
            ..Options::default()
        },
    )
    .unwrap();
    let cases: [&[&str]; 6] = [
        &[],
        &["--channel", "sms"],
        &["--type", "upgrade_offer", "--channel", "push"],
        &["--type", "never_tracked"],
        &[
            "--start",
            "2025-01-01T05:00:00Z",
            "--end",
            "2025-01-01T20:00:00Z",
        ],
        &["--user", "7"],
    ];
    for command in ["stats", "costs", "channels", "impact"] {
        for case in cases {
            // `channels` compares every channel: it takes no --channel.
            if command == "channels" && case.contains(&"--channel") {
                continue;
            }
            let mut args = vec!["--json", command];
            args.extend_from_slice(case);
            let (code, stdout, stderr) = run(&data, &args);
            assert_eq!(code, 0, "{command} {case:?}: {stderr}");
            let mut filter = commlog::StatsFilter::new();
            for pair in case.chunks(2) {
                let time = || pair[1].parse::<chrono::DateTime<chrono::Utc>>().unwrap();
                filter = match pair[0] {
                    "--channel" => filter.channel(match pair[1] {
                        "sms" => Channel::Sms,
                        _ => Channel::Push,
                    }),
                    "--type" => filter.message_type(pair[1]),
                    "--user" => filter.user(7),
                    "--start" => filter.start(time()),
                    _ => filter.end(time()),
                };
            }
            let expected = match command {
                "stats" => {
                    serde_json::to_value(whole_log.get_communication_stats(&filter).unwrap())
                }
                "costs" => serde_json::to_value(
                    whole_log
                        .get_cost_report(&CostFilter {
                            user: filter.user,
                            message_type: filter.message_type.clone(),
                            channel: filter.channel,
                            start: filter.start,
                            end: filter.end,
                            month: None,
                        })
                        .unwrap(),
                ),
                "channels" => {
                    let filter = EffectivenessFilter {
                        user: filter.user,
                        message_type: filter.message_type.clone(),
                        start: filter.start,
                        end: filter.end,
                        period: None,
                    };
                    serde_json::to_value(whole_log.get_channel_effectiveness(&filter).unwrap())
                }
                _ => serde_json::to_value(
                    whole_log
                        .get_financial_impact(&ImpactFilter {
                            user: filter.user,
                            message_type: filter.message_type.clone(),
                            channel: filter.channel,
                            start: filter.start,
                            end: filter.end,
                        })
                        .unwrap(),
                ),
            };
            let got: Value = serde_json::from_str(&stdout).unwrap();
            // Both through the same float parsing.
            let expected: Value = serde_json::from_str(&expected.unwrap().to_string()).unwrap();
            assert_eq!(got, expected, "{command} {case:?}");
            if command == "costs" && !case.contains(&"--start") {
                assert!(
                    !got["budgets"].as_array().unwrap().is_empty(),
                    "{case:?}: {got}"
                );
            }
            let counted = match command {
                "stats" => &got["total_messages"],
                "costs" => &got["total"]["messages"],
                "channels" => &got["lines"][0]["sent"],
                _ => &got["outcomes"]["count"],
            };
            assert!(
                counted.as_u64().unwrap_or(0) > 0 || case.contains(&"never_tracked"),
                "{command} {case:?}: {got}"
            );
        }
    }
}
