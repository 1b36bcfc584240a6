//! `commlog audit` and `commlog repair`: the log's damage, named; and cut, when asked.

use std::path::PathBuf;

use commlog::audit::{Audit, Fix, SnapshotUse, Verdict};
use commlog::repair::{Repair, RepairAction, RepairOptions};

use super::output::{Table, count, print_json, time, write_stdout};
use super::{CliError, Global};

/// `commlog audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// The store directory [default: --dir, $COMMLOG_DIR, else commlog-demo].
    // Its own id: the global `--dir` is still taken after the subcommand.
    #[arg(id = "store_dir", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Also check each event's meaning against the events before it, and compare each
    /// snapshot an open could load with the state folded from the log up to its position.
    #[arg(long)]
    deep: bool,
}

/// `commlog repair`.
#[derive(Debug, clap::Args)]
pub(crate) struct RepairArgs {
    /// The store directory [default: --dir or $COMMLOG_DIR].
    // Its own id: the global `--dir` is still taken after the subcommand.
    #[arg(id = "store_dir", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Cut the log at its earliest corrupt finding, moving the rest to quarantine.
    #[arg(long)]
    cut: bool,
    /// Print the plan and the exit status the real run would have; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Audit with --deep first: events whose meaning is wrong are findings too.
    #[arg(long)]
    deep: bool,
}

/// Exit status of an audit: 0 clean, 4 torn, 3 corrupt.
fn audit_status(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Clean => 0,
        Verdict::Torn => 4,
        Verdict::Corrupt => 3,
    }
}

/// The global options with a positional DIR, if given, as the store.
fn with_dir(global: &Global, dir: &Option<PathBuf>) -> Global {
    Global {
        dir: dir.clone().unwrap_or_else(|| global.dir.clone()),
        dir_named: global.dir_named || dir.is_some(),
        lock_timeout: global.lock_timeout,
        json: global.json,
        quiet: global.quiet,
    }
}

pub(crate) fn audit(global: &Global, args: &AuditArgs) -> Result<(), CliError> {
    let global = with_dir(global, &args.dir);
    global.check_store_exists()?;
    let audit = commlog::audit::audit(&global.dir, args.deep)?;
    if global.json {
        print_json(&audit)?;
    } else {
        write_stdout(render_audit(&audit).as_bytes())?;
    }
    match audit_status(audit.verdict) {
        0 => Ok(()),
        status => Err(CliError::Status(status)),
    }
}

pub(crate) fn repair(global: &Global, args: &RepairArgs) -> Result<(), CliError> {
    let global = with_dir(global, &args.dir);
    global.check_dir_named("repair")?;
    global.check_store_exists()?;
    let repair = commlog::repair::repair(
        &global.dir,
        RepairOptions {
            cut: args.cut,
            dry_run: args.dry_run,
            deep: args.deep,
        },
    )?;
    if global.json {
        print_json(&repair)?;
    } else {
        write_stdout(render_repair(&repair).as_bytes())?;
    }
    match repair.exit_status() {
        0 => Ok(()),
        status => Err(CliError::Status(status)),
    }
}

fn render_audit(audit: &Audit) -> String {
    let verdict = match audit.verdict {
        Verdict::Clean => "clean: every byte checks out".to_string(),
        Verdict::Torn => "torn: the next writable open (or `commlog repair`) quarantines the \
                          unfinished end a crash left"
            .to_string(),
        // `--deep` alone finds an event whose meaning is wrong: an open accepts the log.
        Verdict::Corrupt
            if audit
                .findings
                .iter()
                .all(|finding| finding.kind == "meaning") =>
        {
            "corrupt: an event's meaning is wrong (an open accepts the log, and answers with \
             it); restore the damaged segment from a backup, else `commlog repair --deep --cut` \
             (docs/OPERATIONS.md)"
                .to_string()
        }
        Verdict::Corrupt => "corrupt: open refuses this log; restore the damaged segment from a \
                             backup, else `commlog repair --cut` (docs/OPERATIONS.md)"
            .to_string(),
    };
    let mut text = format!(
        "verdict: {verdict}\nevents: {}  bytes: {}  last_seq: {}  durable_seq: {}\n",
        count(audit.events),
        count(audit.bytes),
        audit.last_seq,
        audit.durable_seq
    );
    if let Some(in_flight) = &audit.in_flight {
        text.push_str(&format!(
            "in flight: a writer is running; {} bytes at offset {} of {} are still being \
             written (not damage)\n",
            count(in_flight.bytes),
            in_flight.offset,
            in_flight.segment
        ));
    }
    let optional_seq =
        |seq: Option<u64>| seq.map_or_else(|| "-".to_string(), |seq| seq.to_string());
    let optional_time =
        |at: Option<chrono::DateTime<chrono::Utc>>| at.map_or_else(|| "-".to_string(), time);
    let mut segments = Table::new(&[
        "segment",
        "first_seq",
        "last_seq",
        "events",
        "bytes",
        "sealed",
        "time_min",
        "time_max",
    ])
    .right_align(&[1, 2, 3, 4]);
    for segment in &audit.segments {
        segments.row(vec![
            segment.file.clone(),
            optional_seq(segment.first_seq),
            optional_seq(segment.last_seq),
            count(segment.events),
            count(segment.bytes),
            if segment.sealed { "yes" } else { "no" }.to_string(),
            optional_time(segment.time_min),
            optional_time(segment.time_max),
        ]);
    }
    text.push('\n');
    text.push_str(&segments.render());
    if !audit.findings.is_empty() {
        let mut findings =
            Table::new(&["kind", "segment", "offset", "bytes", "seq", "fix", "reason"])
                .right_align(&[2, 3, 4]);
        for finding in &audit.findings {
            findings.row(vec![
                finding.kind.clone(),
                finding.segment.clone(),
                finding.offset.to_string(),
                count(finding.bytes),
                optional_seq(finding.seq),
                match finding.fix {
                    Fix::Open => "open",
                    Fix::RepairCut => "repair --cut",
                    Fix::DeleteSnapshot => "delete snapshot",
                }
                .to_string(),
                finding.reason.clone(),
            ]);
        }
        text.push('\n');
        text.push_str(&findings.render());
    }
    if !audit.snapshots.is_empty() {
        let mut snapshots =
            Table::new(&["snapshot", "last_seq", "bytes", "use", "reason"]).right_align(&[1, 2]);
        for snapshot in &audit.snapshots {
            snapshots.row(vec![
                snapshot.file.clone(),
                snapshot.last_seq.to_string(),
                count(snapshot.bytes),
                match snapshot.usage {
                    SnapshotUse::Used => "used",
                    SnapshotUse::Valid => "valid",
                    SnapshotUse::Ignored => "ignored",
                }
                .to_string(),
                snapshot.reason.clone().unwrap_or_else(|| "-".to_string()),
            ]);
        }
        text.push('\n');
        text.push_str(&snapshots.render());
        text.push_str(
            "snapshots are a cache of the log: their findings do not change the verdict, and \
             deleting one loses nothing\n",
        );
    }
    if !audit.quarantine.is_empty() {
        let mut quarantine = Table::new(&["quarantined file", "bytes"]).right_align(&[1]);
        for file in &audit.quarantine {
            quarantine.row(vec![file.file.clone(), count(file.bytes)]);
        }
        text.push('\n');
        text.push_str(&quarantine.render());
    }
    text
}

fn render_repair(repair: &Repair) -> String {
    let headline = match (repair.action, repair.dry_run) {
        (RepairAction::Nothing, _) => "the log is clean: nothing to repair",
        (RepairAction::QuarantinedTorn, false) => "repaired: the torn end was quarantined",
        (RepairAction::QuarantinedTorn, true) => "dry run: would quarantine the torn end",
        (RepairAction::Cut, false) => "repaired: the log was cut at its first damage",
        (RepairAction::Cut, true) => "dry run: would cut the log at its first damage",
        (RepairAction::Refused, _) => "corrupt: not changed (cutting needs --cut)",
    };
    let mut text = format!("{headline}\n");
    for step in &repair.plan {
        text.push_str(&format!("  - {step}\n"));
    }
    if let Some(dir) = &repair.repair_dir
        && repair.action == RepairAction::Cut
        && !repair.dry_run
    {
        text.push_str(&format!(
            "report: {dir}/{}\n",
            commlog::repair::REPORT_FILE_NAME
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use commlog::audit::{Finding, Fix, Verdict};

    use super::render_audit;

    #[test]
    fn a_log_corrupt_only_in_its_events_meaning_is_not_said_to_be_refused_by_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = commlog::Store::open(dir.path()).unwrap();
        store
            .track_message_sent(1, commlog::Channel::Sms, "low_balance", 0.05)
            .unwrap();
        store.close().unwrap();
        let mut audit = commlog::audit::audit(dir.path(), true).unwrap();
        let finding = |kind: &str| -> Finding {
            serde_json::from_value(serde_json::json!({
                "kind": kind,
                "segment": "00000000000000000001.log",
                "offset": 56,
                "bytes": 20,
                "seq": 1,
                "reason": "a delivery 10 minutes before its send",
                "fix": Fix::RepairCut,
            }))
            .unwrap()
        };
        audit.verdict = Verdict::Corrupt;
        audit.findings = vec![finding("meaning")];
        let text = render_audit(&audit);
        assert!(!text.contains("open refuses"), "{text}");
        assert!(text.contains("an open accepts the log"), "{text}");
        audit.findings.push(finding("frame"));
        let text = render_audit(&audit);
        assert!(text.contains("open refuses this log"), "{text}");
    }
}
