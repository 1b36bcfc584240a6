//! `import --from-sql-export DIR`: the original service's rows, as the events that made them.
//!
//! The mapping, every rule and the error format are in docs/IMPORT.md. In short: every row of
//! both files is read and checked before the store is touched; then each
//! `communication_metrics` row (in order of its old id) becomes a `sent` event followed by its
//! follow-up events in time order, and each `financial_impact_metrics` row (in file order) an
//! outcome, after all the messages.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::Args;
use commlog::{Channel, Money, Status, Store, SyncPolicy};
use serde::Serialize;

use crate::cli::demo::MARKER_FILE_NAME;
use crate::cli::output::{Table, count, print_json, write_stdout};
use crate::cli::{CliError, Global, Interrupts, check_parent_exists, input};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Directory holding communication_metrics.csv (and financial_impact_metrics.csv).
    #[arg(long)]
    from_sql_export: PathBuf,
    /// Import the good rows and report the bad ones, instead of importing nothing.
    #[arg(long)]
    skip_bad_rows: bool,
}

/// The messages file: one row per message.
const MESSAGES_FILE: &str = "communication_metrics.csv";
/// The outcomes file, optional.
const OUTCOMES_FILE: &str = "financial_impact_metrics.csv";
/// Written into the store's directory when the old message ids are not exactly 1..N.
const ID_MAP_FILE: &str = "import-id-map.csv";
/// Bad values longer than this are shortened in reports.
const VALUE_CHARS_SHOWN: usize = 80;

/// The columns of `communication_metrics.csv` the import reads (all required in the header).
const MESSAGE_COLUMNS: [&str; 11] = [
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
];
/// The columns of `financial_impact_metrics.csv` the import reads (all required in the header;
/// `id` is optional and only checked for duplicates).
const OUTCOME_COLUMNS: [&str; 4] = ["user_id", "outcome_type", "outcome_value", "outcome_date"];

const TIME_FORMAT: &str = "YYYY-MM-DD[ T]HH:MM:SS[.ffffff][Z|±HH[:MM]]";
const NAME_RULE: &str =
    "must be 1 to 64 characters of a-z, 0-9, '_', '.' and '-' (after lowercasing)";

pub(crate) fn run(global: &Global, args: &ImportArgs) -> Result<(), CliError> {
    global.check_dir_named("import")?;
    let source = &args.from_sql_export;
    if !source.is_dir() {
        return Err(CliError::Usage(format!(
            "no SQL export at {}: the directory does not exist",
            source.display()
        )));
    }
    // Fail fast on a store that already holds events, before reading any row.
    check_target(&global.dir)?;
    let export = read_export(global, args)?;
    let imported = write_store(global, &export)?;
    let summary = Summary {
        dir: global.dir.display().to_string(),
        from: source.display().to_string(),
        communication_metrics: FileSummary {
            read: export.messages.read,
            imported: export.messages.rows.len() as u64,
            skipped: export.messages.skipped,
            status_changed: Some(imported.status_changed),
        },
        financial_impact_metrics: export.outcomes.as_ref().map(|file| FileSummary {
            read: file.read,
            imported: file.rows.len() as u64,
            skipped: file.skipped,
            status_changed: None,
        }),
        messages: export.messages.rows.len() as u64,
        outcomes: export.outcome_rows().len() as u64,
        events: imported.events,
        ids_kept: imported.id_map.is_none(),
        id_map: imported.id_map.map(|path| path.display().to_string()),
    };
    if global.json {
        return print_json(&summary);
    }
    write_stdout(render(&summary).as_bytes())
}

/// The good rows of an export, the messages sorted by old id.
struct Export {
    messages: FileRead<MessageRow>,
    /// `None` when the export has no outcomes file.
    outcomes: Option<FileRead<OutcomeRow>>,
    names: Names,
}

impl Export {
    fn outcome_rows(&self) -> &[OutcomeRow] {
        self.outcomes.as_ref().map_or(&[], |file| &file.rows)
    }
}

/// Reads and checks every row of both files, reporting the bad ones; without
/// `--skip-bad-rows`, one bad row is an error. Writes nothing.
fn read_export(global: &Global, args: &ImportArgs) -> Result<Export, CliError> {
    let messages_path = args.from_sql_export.join(MESSAGES_FILE);
    if !messages_path.is_file() {
        return Err(CliError::Usage(format!(
            "{}: not found (an SQL export holds {MESSAGES_FILE} and, optionally, {OUTCOMES_FILE})",
            messages_path.display()
        )));
    }
    let outcomes_path = args.from_sql_export.join(OUTCOMES_FILE);
    let mut names = Names::default();
    let mut messages = read_messages(&messages_path, &mut names)?;
    let outcomes = if outcomes_path.exists() {
        Some(read_outcomes(&outcomes_path, &mut names)?)
    } else {
        None
    };
    let problems = messages
        .problems
        .iter()
        .chain(outcomes.iter().flat_map(|file| &file.problems));
    for problem in problems {
        if global.json {
            let line = serde_json::to_string(problem).expect("problems serialize");
            eprintln!("{line}");
        } else {
            eprintln!("{problem}");
        }
    }
    let bad_rows = messages.skipped + outcomes.as_ref().map_or(0, |file| file.skipped);
    if bad_rows > 0 && !args.skip_bad_rows {
        let mut per_file = format!("{MESSAGES_FILE}: {}", messages.skipped);
        if let Some(outcomes) = &outcomes {
            per_file.push_str(&format!(", {OUTCOMES_FILE}: {}", outcomes.skipped));
        }
        let (rows, them) = if bad_rows == 1 {
            ("row", "it")
        } else {
            ("rows", "them")
        };
        return Err(CliError::Usage(format!(
            "{bad_rows} bad {rows} ({per_file}); nothing imported: fix {them}, or pass \
             --skip-bad-rows to import only the good rows"
        )));
    }
    // New ids are given in order of the old ones.
    messages.rows.sort_by_key(|row| row.old_id);
    Ok(Export {
        messages,
        outcomes,
        names,
    })
}

/// What writing the store gave.
struct Imported {
    events: u64,
    /// Messages whose status, as the store derives it from the events, differs from the row's.
    status_changed: u64,
    /// Where the id map went, when the old ids were not 1..N.
    id_map: Option<PathBuf>,
}

/// Appends the export's events to the new or empty store in `dir`, then makes them durable.
fn write_store(global: &Global, export: &Export) -> Result<Imported, CliError> {
    let dir = global.dir.as_path();
    let rows = &export.messages.rows;
    let ids_kept = rows
        .iter()
        .enumerate()
        .all(|(index, row)| i128::from(row.old_id) == index as i128 + 1);
    // Bulk load: one sync at the end instead of one per event.
    let store = global.open_for_writing_with("import", SyncPolicy::Never, false)?;
    // From here on a signal stops the import at its next row, which says so.
    let interrupts = Interrupts::watch();
    let events_before = store.open_report().events;
    if events_before > 0 {
        return Err(not_empty(dir, events_before));
    }
    // Before the first event: a store holding imported events always has its map.
    let id_map = if ids_kept {
        None
    } else {
        Some(write_id_map(dir, rows)?)
    };
    let (events, status_changed) = append_all(&store, export, &interrupts).inspect_err(|_| {
        let warning = format!(
            "the import stopped part way: the store in {} is incomplete; remove it and import \
             again",
            dir.display()
        );
        match global.json {
            true => eprintln!(
                "{}",
                serde_json::json!({"warning": "import_incomplete", "message": warning})
            ),
            false => eprintln!("commlog: {warning}"),
        }
    })?;
    store.sync()?;
    global.close_after_durable(store);
    Ok(Imported {
        events,
        status_changed,
        id_map,
    })
}

/// Refuses a directory that is not a new or empty store.
fn check_target(dir: &Path) -> Result<(), CliError> {
    if !dir.exists() {
        return check_parent_exists(dir);
    }
    if dir.join(MARKER_FILE_NAME).exists() {
        return Err(CliError::Usage(format!(
            "{} is a demo store (it holds {MARKER_FILE_NAME}, and the demo may replace it): \
             import into another --dir",
            dir.display()
        )));
    }
    let events = Store::open_read_only(dir)?.open_report().events;
    if events > 0 {
        return Err(not_empty(dir, events));
    }
    Ok(())
}

fn not_empty(dir: &Path, events: u64) -> CliError {
    CliError::Usage(format!(
        "the store in {} already holds {} {}: import only into a new or empty store",
        dir.display(),
        count(events),
        if events == 1 { "event" } else { "events" }
    ))
}

mod rows;

use rows::*;

/// Writes `old_id,new_id` for every message to the store directory, durably (a temporary file
/// renamed over any earlier one: the store is empty, so an earlier map describes nothing).
fn write_id_map(dir: &Path, rows: &[MessageRow]) -> Result<PathBuf, CliError> {
    let path = dir.join(ID_MAP_FILE);
    let temporary = dir.join(format!("{ID_MAP_FILE}.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| {
            CliError::Store(commlog::Error::Io {
                path: path.clone(),
                source,
            })
        }
    };
    let mut text = String::with_capacity(16 + rows.len() * 16);
    text.push_str("old_id,new_id\n");
    for (index, row) in rows.iter().enumerate() {
        text.push_str(&format!("{},{}\n", row.old_id, index + 1));
    }
    // Nothing inside a store is followed: a leftover of an earlier import (a file, or a link,
    // which goes rather than what it points to) is removed, and the file is created anew
    // (`O_EXCL`, which never follows a link).
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(&temporary)(error));
        }
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(commlog::FILE_MODE)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&temporary))?;
    fs::rename(&temporary, &path).map_err(io(&path))?;
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io(dir))?;
    Ok(path)
}

/// The follow-up events of a message, in the order they are appended on equal times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FollowUp {
    Failed,
    Delivered,
    Opened,
    /// The synthesized `clicked` action.
    Clicked,
    /// The row's action_taken: last, so that it is the message's latest action.
    Action(u32),
}

/// The events a row stands for, after `sent`, in time order (ties: the `FollowUp` order).
fn follow_ups(row: &MessageRow) -> Vec<(i64, FollowUp)> {
    let mut events = Vec::with_capacity(4);
    let click_action = row.action.is_some_and(|(_, is_click)| is_click);
    if row.status == Status::Failed {
        events.push((row.sent_ms, FollowUp::Failed));
    }
    if let Some(at) = row.delivered_ms {
        events.push((at, FollowUp::Delivered));
    }
    if let Some(at) = row.opened_ms {
        events.push((at, FollowUp::Opened));
    }
    if let Some(at) = row.clicked_ms
        && !click_action
    {
        events.push((at, FollowUp::Clicked));
    }
    if let Some((action, is_click)) = row.action {
        let latest = [row.delivered_ms, row.opened_ms, row.clicked_ms]
            .into_iter()
            .flatten()
            .fold(row.sent_ms, i64::max);
        let at = match row.clicked_ms {
            Some(clicked) if is_click => clicked,
            _ => latest,
        };
        events.push((at, FollowUp::Action(action)));
    }
    // A status whose stage the times above do not reach: that stage at sent_at.
    let clicked = row.clicked_ms.is_some() || click_action;
    let opened = clicked || row.opened_ms.is_some();
    let delivered = opened || row.delivered_ms.is_some() || row.action.is_some();
    match row.status {
        Status::Delivered if !delivered => events.push((row.sent_ms, FollowUp::Delivered)),
        Status::Opened if !opened => events.push((row.sent_ms, FollowUp::Opened)),
        Status::Clicked if !clicked => events.push((row.sent_ms, FollowUp::Clicked)),
        _ => {}
    }
    events.sort();
    events
}

/// Appends every message's events, then every outcome; returns the events appended and how
/// many messages got another status than their row said.
fn append_all(
    store: &Store,
    export: &Export,
    interrupts: &Interrupts,
) -> Result<(u64, u64), CliError> {
    let names = &export.names;
    let time = time_of_ms;
    let interrupted = || interrupts.check(|| "the import stopped part way".to_string());
    let (mut events, mut status_changed) = (0u64, 0u64);
    for row in &export.messages.rows {
        interrupted()?;
        // The original service's id stays the message's external id.
        let mut message = store.track_message_sent_with(
            row.user,
            row.channel,
            names.name(row.message_type),
            row.cost,
            Some(time(row.sent_ms)),
            Some(&row.old_id.to_string()),
        )?;
        events += 1;
        let id = message.id;
        for (at, event) in follow_ups(row) {
            let at = Some(time(at));
            message = match event {
                FollowUp::Failed => store.track_message_failed(id, "failed", at)?,
                FollowUp::Delivered => store.track_message_delivered(id, at)?,
                FollowUp::Opened => store.track_message_opened(id, at)?,
                FollowUp::Clicked => store.track_user_action(id, "clicked", at)?,
                FollowUp::Action(action) => store.track_user_action(id, names.name(action), at)?,
            };
            events += 1;
        }
        if message.status != row.status {
            status_changed += 1;
        }
    }
    for row in export.outcome_rows() {
        interrupted()?;
        let at = time(row.at_ms);
        store.track_financial_outcome_at(row.user, names.name(row.outcome), row.amount, at)?;
        events += 1;
    }
    Ok((events, status_changed))
}

/// What `import` reports.
#[derive(Debug, Serialize)]
struct Summary {
    dir: String,
    from: String,
    communication_metrics: FileSummary,
    /// `None` when the file is not in the export.
    financial_impact_metrics: Option<FileSummary>,
    messages: u64,
    outcomes: u64,
    events: u64,
    /// Whether the old message ids were exactly 1..N and so kept.
    ids_kept: bool,
    /// Where the `old_id,new_id` map was written, when the ids were not kept.
    id_map: Option<String>,
}

#[derive(Debug, Serialize)]
struct FileSummary {
    read: u64,
    imported: u64,
    skipped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_changed: Option<u64>,
}

fn render(summary: &Summary) -> String {
    let mut table = Table::new(&["file", "read", "imported", "skipped"]).right_align(&[1, 2, 3]);
    let mut files = vec![(MESSAGES_FILE, &summary.communication_metrics)];
    if let Some(outcomes) = &summary.financial_impact_metrics {
        files.push((OUTCOMES_FILE, outcomes));
    }
    for (name, file) in files {
        table.row(vec![
            name.to_string(),
            count(file.read),
            count(file.imported),
            count(file.skipped),
        ]);
    }
    let mut text = table.render();
    text.push('\n');
    if summary.financial_impact_metrics.is_none() {
        text.push_str(&format!(
            "{OUTCOMES_FILE}: not in the export, no outcomes imported\n"
        ));
    }
    text.push_str(&format!(
        "imported {}, {} ({}) into {}\n",
        plural(summary.messages, "message"),
        plural(summary.outcomes, "outcome"),
        plural(summary.events, "event"),
        summary.dir
    ));
    match &summary.id_map {
        None => text.push_str("message ids: kept (the old ids are 1..N)\n"),
        Some(path) => text.push_str(&format!(
            "message ids: renumbered 1..N in order of the old ids; old_id,new_id map in {path}\n"
        )),
    }
    let changed = summary.communication_metrics.status_changed.unwrap_or(0);
    if changed > 0 {
        text.push_str(&format!(
            "status: {} got another status than their row said, by the store's rules \
             (docs/IMPORT.md)\n",
            plural(changed, "message")
        ));
    }
    text
}

/// "1 message", "2,000 messages".
fn plural(value: u64, noun: &str) -> String {
    let s = if value == 1 { "" } else { "s" };
    format!("{} {noun}{s}", count(value))
}
