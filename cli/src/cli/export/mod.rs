//! `export`: events or messages as JSON lines, CSV or Parquet.
//!
//! Rows are selected as `stats` selects them, so that sums over an export equal the stats of the
//! same flags: a message event is exported when its message is selected (user, type, channel,
//! sent time), an outcome when it matches the user and its own time is in range. JSON lines and
//! CSV are written while the log is read; Parquet is a directory partitioned by the UTC day
//! (`date=YYYY-MM-DD/part-00000.parquet`), written a row group at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use commlog::{
    BudgetScope, Channel, Event, LoggedEvent, Message, MessageId, Money, Month, StatsFilter,
};
use serde::Serialize;

use crate::cli::output::{self, print_json, write_stdout};
use crate::cli::{CliError, Global, Interrupts, StatsArgs};

/// The columns of an event row, in order (CSV header, JSON keys, Parquet schema).
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

/// The columns of a message row, in order.
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

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// A directory of Parquet files, partitioned by UTC day (date=YYYY-MM-DD/).
    Parquet,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// jsonl, csv or parquet.
    #[arg(long, value_enum)]
    format: Format,
    /// Output file (a new directory for parquet), or - for stdout (jsonl and csv only). Never
    /// overwritten: an existing path is refused.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// One row per message (its current state) instead of one per event.
    #[arg(long)]
    messages: bool,
    #[command(flatten)]
    filter: StatsArgs,
}

pub(crate) fn run(global: &Global, args: &ExportArgs) -> Result<(), CliError> {
    let filter = args.filter.filter()?;
    let to_stdout = args.out.as_os_str() == "-";
    if args.format == Format::Parquet {
        if !cfg!(feature = "parquet") {
            return Err(CliError::Usage(
                "this commlog was built without Parquet support: rebuild with the cargo feature \
                 `parquet` (on by default), or export --format jsonl or csv"
                    .to_string(),
            ));
        }
        if to_stdout {
            return Err(CliError::Usage(
                "--format parquet writes a directory of files: give --out a new directory path, \
                 not - (stdout)"
                    .to_string(),
            ));
        }
    }
    // Checked before the (possibly long) replay; creating the output checks again.
    if !to_stdout && std::fs::symlink_metadata(&args.out).is_ok() {
        return Err(already_exists(&args.out));
    }
    let store = global.open_read_only_without_indexes()?;
    let last_seq = store.open_report().events;
    let messages = store.get_messages(&filter)?;
    let external_ids = if args.messages {
        external_ids_of(&store, &messages)?
    } else {
        Vec::new()
    };
    // The views' memory goes back before the export builds its own.
    drop(std::mem::ManuallyDrop::into_inner(store));

    let rows = if args.messages {
        match args.format {
            Format::Jsonl | Format::Csv => messages_as_text(args, &messages, &external_ids)?,
            Format::Parquet => parquet_messages(&args.out, &messages, &external_ids)?,
        }
    } else {
        let export_scope = ExportScope::new(&messages, &filter);
        drop(messages);
        match args.format {
            Format::Jsonl | Format::Csv => events_as_text(global, args, &export_scope, last_seq)?,
            Format::Parquet => parquet_events(&global.dir, &args.out, &export_scope, last_seq)?,
        }
    };
    if to_stdout {
        return Ok(());
    }
    report(global, args, &rows)
}

/// The external id each of `messages` was sent with, in their order.
fn external_ids_of(
    store: &commlog::Store,
    messages: &[Message],
) -> Result<Vec<Option<String>>, CliError> {
    let mut external_ids = Vec::with_capacity(messages.len());
    for message in messages {
        external_ids.push(store.get_external_id(message.id)?);
    }
    Ok(external_ids)
}

/// What an export wrote.
#[derive(Debug, Default)]
struct Written {
    rows: u64,
    /// Parquet only: files written.
    files: Option<u64>,
    /// Parquet only: day partitions written.
    partitions: Option<u64>,
}

/// Says what was written (only when the rows went to a file).
fn report(global: &Global, args: &ExportArgs, written: &Written) -> Result<(), CliError> {
    let what = if args.messages { "messages" } else { "events" };
    if global.json {
        return print_json(&serde_json::json!({
            "format": args.format.name(),
            "out": args.out.display().to_string(),
            "rows": written.rows,
            "row_kind": what,
            "files": written.files,
            "partitions": written.partitions,
        }));
    }
    if global.quiet {
        return Ok(());
    }
    let mut line = format!(
        "exported {} {what} to {}",
        output::count(written.rows),
        args.out.display()
    );
    if let (Some(files), Some(partitions)) = (written.files, written.partitions) {
        line.push_str(&format!(
            " ({} files in {} date partitions)",
            output::count(files),
            output::count(partitions)
        ));
    }
    line.push('\n');
    write_stdout(line.as_bytes())
}

fn already_exists(path: &Path) -> CliError {
    CliError::Usage(format!(
        "{} already exists: export never overwrites; remove it or choose another --out",
        super::shown_path(path)
    ))
}

/// Milliseconds since the epoch as a UTC time (stored times are always in range: the codec
/// checks them).
fn utc(ms: i64) -> Result<DateTime<Utc>, CliError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| CliError::Usage(format!("time {ms} ms is outside the range of dates")))
}

/// The micro-dollars of one event's cost or amount, which the store bounds by ±9 × 10^18: an
/// export column of 64-bit integers holds every one.
fn event_micros(money: Money) -> i64 {
    i64::try_from(money.micros()).expect("an event's amount is within ±9e18 micros")
}

// ---------------------------------------------------------------------------------------------
// ExportScope: the events an export holds, those the stats filter covers.

/// A selected message: what its follow-up events are grouped by.
#[derive(Debug, Clone, Copy)]
struct Selected {
    user_id: u64,
    message_type: u32,
    channel: Channel,
}

/// The messages a stats filter selects (by id), and its outcome filter.
struct ExportScope {
    /// Message id `n` at index `n - 1`, up to the highest selected id.
    messages: Vec<Option<Selected>>,
    /// Message types, by the index in [`Selected::message_type`].
    types: Vec<String>,
    user: Option<u64>,
    start_ms: i64,
    end_ms: i64,
    /// Budgets are selected when the filter names no user and no message type (a budget has
    /// neither), and by a channel filter when they cover that channel alone.
    budgets: bool,
    channel: Option<Channel>,
}

/// A budget as exported.
#[derive(Debug, Clone, Copy)]
struct BudgetRecord {
    scope: BudgetScope,
    month: Month,
    amount_micros: i64,
    alert_percent: u8,
}

/// One event as exported.
struct EventRecord<'a> {
    seq: u64,
    kind: &'static str,
    message_id: Option<u64>,
    /// `None` for a budget, which concerns no user.
    user_id: Option<u64>,
    channel: Option<Channel>,
    message_type: Option<&'a str>,
    time_ms: i64,
    appended_ms: i64,
    cost_micros: Option<i64>,
    amount_micros: Option<i64>,
    action: Option<&'a str>,
    outcome: Option<&'a str>,
    reason: Option<&'a str>,
    budget: Option<BudgetRecord>,
    /// Sent rows only: the external id the message was sent with.
    external_id: Option<&'a str>,
}

impl ExportScope {
    /// `messages` is `Store::get_messages(filter)`.
    fn new(messages: &[Message], filter: &StatsFilter) -> ExportScope {
        let highest = messages
            .iter()
            .map(|message| message.id.0)
            .max()
            .unwrap_or(0);
        let mut selected = vec![None; usize::try_from(highest).expect("ids fit memory")];
        let mut type_ids: HashMap<&str, u32> = HashMap::new();
        let mut types = Vec::new();
        for message in messages {
            let next = u32::try_from(types.len()).expect("fewer than 2^32 message types");
            let message_type = *type_ids.entry(&*message.message_type).or_insert_with(|| {
                types.push(message.message_type.to_string());
                next
            });
            selected[(message.id.0 - 1) as usize] = Some(Selected {
                user_id: message.user_id.0,
                message_type,
                channel: message.channel,
            });
        }
        ExportScope {
            messages: selected,
            types,
            user: filter.user.map(|user| user.0),
            // As the stats query reads the range (docs/SEMANTICS.md).
            start_ms: filter
                .start
                .map_or(i64::MIN, |start| start.timestamp_millis()),
            end_ms: filter.end.map_or(i64::MAX, |end| end.timestamp_millis()),
            budgets: filter.user.is_none() && filter.message_type.is_none(),
            channel: filter.channel,
        }
    }

    fn message(&self, id: MessageId) -> Option<Selected> {
        let index = usize::try_from(id.0.checked_sub(1)?).ok()?;
        *self.messages.get(index)?
    }

    /// The row of `logged`, if the filter selects it.
    fn record<'a>(&'a self, logged: &LoggedEvent<'a>) -> Option<EventRecord<'a>> {
        let event = logged.event;
        let mut record = EventRecord {
            seq: logged.seq,
            kind: event.kind(),
            message_id: event.message_id().map(|id| id.0),
            user_id: None,
            channel: None,
            message_type: None,
            time_ms: event.at_ms(),
            appended_ms: logged.appended_ms,
            cost_micros: None,
            amount_micros: None,
            action: None,
            outcome: None,
            reason: None,
            budget: None,
            external_id: None,
        };
        if let Event::BudgetSet {
            scope,
            month,
            amount,
            alert_percent,
            at_ms,
        } = event
        {
            let selected = self.budgets
                && self
                    .channel
                    .is_none_or(|channel| scope == BudgetScope::Channel(channel))
                && self.start_ms <= at_ms
                && at_ms <= self.end_ms;
            if !selected {
                return None;
            }
            record.budget = Some(BudgetRecord {
                scope,
                month,
                amount_micros: event_micros(amount),
                alert_percent,
            });
            return Some(record);
        }
        if let Event::FinancialOutcome {
            user_id,
            outcome,
            amount,
            at_ms,
        } = event
        {
            let selected = self.user.is_none_or(|user| user == user_id.0)
                && self.start_ms <= at_ms
                && at_ms <= self.end_ms;
            if !selected {
                return None;
            }
            record.user_id = Some(user_id.0);
            record.outcome = Some(outcome);
            record.amount_micros = Some(event_micros(amount));
            return Some(record);
        }
        let message = self.message(event.message_id()?)?;
        record.user_id = Some(message.user_id);
        record.channel = Some(message.channel);
        record.message_type = Some(&self.types[message.message_type as usize]);
        match event {
            Event::MessageSent {
                cost, external_id, ..
            } => {
                record.cost_micros = Some(event_micros(cost));
                record.external_id = external_id;
            }
            Event::UserAction { action, .. } => record.action = Some(action),
            Event::MessageFailed { reason, .. } => record.reason = Some(reason),
            // Outcomes and budgets are handled above.
            Event::MessageDelivered { .. }
            | Event::MessageOpened { .. }
            | Event::FinancialOutcome { .. }
            | Event::BudgetSet { .. } => {}
        }
        Some(record)
    }
}

/// Reads the log (up to `last_seq`, what the store saw when it was opened) and hands each
/// selected event to `write`; stops writing at the first error. Returns the rows written.
fn for_each_event(
    dir: &Path,
    export_scope: &ExportScope,
    last_seq: u64,
    mut write: impl FnMut(&EventRecord<'_>) -> Result<(), CliError> + Send,
) -> Result<u64, CliError> {
    let mut rows = 0u64;
    let mut failure = None;
    commlog::audit::read_log(dir, |logged| {
        if failure.is_some() || logged.seq > last_seq {
            return;
        }
        if let Some(record) = export_scope.record(logged) {
            match write(&record) {
                Ok(()) => rows += 1,
                Err(error) => failure = Some(error),
            }
        }
    })?;
    match failure {
        Some(error) => Err(error),
        None => Ok(rows),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON lines and CSV.

/// An event row as JSON lines and CSV write it: times as RFC 3339 UTC with milliseconds.
#[derive(Serialize)]
struct TextEventRow<'a> {
    seq: u64,
    kind: &'static str,
    message_id: Option<u64>,
    user_id: Option<u64>,
    channel: Option<&'static str>,
    message_type: Option<&'a str>,
    time: String,
    appended_at: String,
    cost_micros: Option<i64>,
    amount_micros: Option<i64>,
    action: Option<&'a str>,
    outcome: Option<&'a str>,
    reason: Option<&'a str>,
    budget_scope: Option<String>,
    budget_month: Option<String>,
    budget_micros: Option<i64>,
    alert_percent: Option<u8>,
    external_id: Option<&'a str>,
}

impl<'a> TextEventRow<'a> {
    fn new(record: &EventRecord<'a>) -> Result<TextEventRow<'a>, CliError> {
        Ok(TextEventRow {
            seq: record.seq,
            kind: record.kind,
            message_id: record.message_id,
            user_id: record.user_id,
            channel: record.channel.map(Channel::as_str),
            message_type: record.message_type,
            time: output::time(utc(record.time_ms)?),
            appended_at: output::time(utc(record.appended_ms)?),
            cost_micros: record.cost_micros,
            amount_micros: record.amount_micros,
            action: record.action,
            outcome: record.outcome,
            reason: record.reason,
            budget_scope: record.budget.map(|budget| budget.scope.to_string()),
            budget_month: record.budget.map(|budget| budget.month.to_string()),
            budget_micros: record.budget.map(|budget| budget.amount_micros),
            alert_percent: record.budget.map(|budget| budget.alert_percent),
            external_id: record.external_id,
        })
    }
}

/// A message row as JSON lines and CSV write it.
#[derive(Serialize)]
struct TextMessageRow<'a> {
    id: u64,
    user_id: u64,
    channel: &'static str,
    message_type: &'a str,
    status: &'static str,
    cost_micros: i64,
    sent_at: String,
    delivered_at: Option<String>,
    opened_at: Option<String>,
    clicked_at: Option<String>,
    failed_at: Option<String>,
    action_taken: Option<&'a str>,
    failure_reason: Option<&'a str>,
    external_id: Option<&'a str>,
}

impl<'a> TextMessageRow<'a> {
    fn new(message: &'a Message, external_id: Option<&'a str>) -> TextMessageRow<'a> {
        TextMessageRow {
            id: message.id.0,
            user_id: message.user_id.0,
            channel: message.channel.as_str(),
            message_type: &message.message_type,
            status: message.status.as_str(),
            cost_micros: event_micros(message.cost),
            sent_at: output::time(message.sent_at),
            delivered_at: message.delivered_at.map(output::time),
            opened_at: message.opened_at.map(output::time),
            clicked_at: message.clicked_at.map(output::time),
            failed_at: message.failed_at.map(output::time),
            action_taken: message.action_taken.as_deref(),
            failure_reason: message.failure_reason.as_deref(),
            external_id,
        }
    }
}

/// Where text rows go.
enum Output {
    Stdout(io::Stdout),
    File(File),
}

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(stdout) => stdout.write(bytes),
            Output::File(file) => file.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(stdout) => stdout.flush(),
            Output::File(file) => file.flush(),
        }
    }
}

/// Rows as JSON lines or CSV, through a buffer.
enum TextSink {
    Jsonl(BufWriter<Output>),
    Csv(Box<csv::Writer<BufWriter<Output>>>),
}

impl TextSink {
    fn new(format: Format, output: Output, header: &[&str]) -> io::Result<TextSink> {
        let buffered = BufWriter::with_capacity(1 << 16, output);
        if format == Format::Csv {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(buffered);
            // Written here, not by the first row, so that an empty export has its header.
            writer.write_record(header).map_err(csv_io_error)?;
            Ok(TextSink::Csv(Box::new(writer)))
        } else {
            Ok(TextSink::Jsonl(buffered))
        }
    }

    fn write<T: Serialize>(&mut self, row: &T) -> io::Result<()> {
        match self {
            TextSink::Jsonl(writer) => {
                serde_json::to_writer(&mut *writer, row)?;
                writer.write_all(b"\n")
            }
            TextSink::Csv(writer) => writer.serialize(row).map_err(csv_io_error),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            TextSink::Jsonl(mut writer) => writer.flush(),
            TextSink::Csv(mut writer) => writer.flush(),
        }
    }
}

/// The I/O error inside a CSV error (so that a closed pipe stays one).
fn csv_io_error(error: csv::Error) -> io::Error {
    if !error.is_io_error() {
        return io::Error::other(error);
    }
    match error.into_kind() {
        csv::ErrorKind::Io(error) => error,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// The output file (or stdout) of a text export, removed again if the export fails.
struct TextTarget {
    path: Option<PathBuf>,
    cleanup: Cleanup,
}

impl TextTarget {
    fn create(out: &Path) -> Result<(TextTarget, Output), CliError> {
        if out.as_os_str() == "-" {
            let target = TextTarget {
                path: None,
                cleanup: Cleanup::none(),
            };
            return Ok((target, Output::Stdout(io::stdout())));
        }
        let file = File::create_new(out).map_err(|error| create_error(out, error))?;
        let target = TextTarget {
            path: Some(out.to_path_buf()),
            cleanup: Cleanup::file(out),
        };
        Ok((target, Output::File(file)))
    }

    fn error(&self, error: io::Error) -> CliError {
        match &self.path {
            None => output::stdout_error(error),
            Some(path) => io_error(path, error),
        }
    }
}

/// Watches for a signal from now on ([`Interrupts`]): the check an export makes between rows,
/// once its output exists. Its error says what the export leaves: nothing of a file or
/// directory (its [`Cleanup`] removes it as the error returns), or what already went to stdout.
fn watch_interrupts(out: &Path) -> impl Fn() -> Result<(), CliError> + Sync + '_ {
    let interrupts = Interrupts::watch();
    move || {
        interrupts.check(|| match out.as_os_str() == "-" {
            true => "the rows written to stdout so far are not the whole export".to_string(),
            false => format!("the partial output {} was removed", out.display()),
        })
    }
}

/// An output that cannot be created: a path that exists or cannot name a new file here is a
/// bad argument (exit 1); anything else (a read-only or full file system, …) is an I/O
/// failure (exit 2).
fn create_error(path: &Path, error: io::Error) -> CliError {
    use io::ErrorKind::{
        AlreadyExists, InvalidFilename, IsADirectory, NotADirectory, NotFound, PermissionDenied,
    };
    match error.kind() {
        AlreadyExists => already_exists(path),
        NotFound | NotADirectory | IsADirectory | InvalidFilename | PermissionDenied => {
            CliError::Usage(format!("cannot create {}: {error}", path.display()))
        }
        _ => io_error(path, error),
    }
}

fn io_error(path: &Path, source: io::Error) -> CliError {
    CliError::Store(commlog::Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Removes a partly written output when dropped, unless kept.
struct Cleanup {
    path: Option<PathBuf>,
    directory: bool,
}

impl Cleanup {
    fn none() -> Cleanup {
        Cleanup {
            path: None,
            directory: false,
        }
    }

    fn file(path: &Path) -> Cleanup {
        Cleanup {
            path: Some(path.to_path_buf()),
            directory: false,
        }
    }

    #[cfg_attr(not(feature = "parquet"), allow(dead_code))]
    fn directory(path: &Path) -> Cleanup {
        Cleanup {
            path: Some(path.to_path_buf()),
            directory: true,
        }
    }

    fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = if self.directory {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

fn events_as_text(
    global: &Global,
    args: &ExportArgs,
    export_scope: &ExportScope,
    last_seq: u64,
) -> Result<Written, CliError> {
    // Watched before the output exists: a signal never finds it made and unwatched.
    let interrupted = watch_interrupts(&args.out);
    let (target, output) = TextTarget::create(&args.out)?;
    let mut sink =
        TextSink::new(args.format, output, &EVENT_COLUMNS).map_err(|e| target.error(e))?;
    let rows = for_each_event(&global.dir, export_scope, last_seq, |record| {
        interrupted()?;
        sink.write(&TextEventRow::new(record)?)
            .map_err(|e| target.error(e))
    })?;
    sink.finish().map_err(|e| target.error(e))?;
    interrupted()?;
    target.cleanup.keep();
    Ok(Written {
        rows,
        ..Written::default()
    })
}

fn messages_as_text(
    args: &ExportArgs,
    messages: &[Message],
    external_ids: &[Option<String>],
) -> Result<Written, CliError> {
    // Watched before the output exists: a signal never finds it made and unwatched.
    let interrupted = watch_interrupts(&args.out);
    let (target, output) = TextTarget::create(&args.out)?;
    let mut sink =
        TextSink::new(args.format, output, &MESSAGE_COLUMNS).map_err(|e| target.error(e))?;
    for (message, external_id) in messages.iter().zip(external_ids) {
        interrupted()?;
        sink.write(&TextMessageRow::new(message, external_id.as_deref()))
            .map_err(|e| target.error(e))?;
    }
    sink.finish().map_err(|e| target.error(e))?;
    interrupted()?;
    target.cleanup.keep();
    Ok(Written {
        rows: messages.len() as u64,
        ..Written::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Parquet.

#[cfg(not(feature = "parquet"))]
fn parquet_events(
    _dir: &Path,
    _out: &Path,
    _export_scope: &ExportScope,
    _last_seq: u64,
) -> Result<Written, CliError> {
    unreachable!("refused in run() without the parquet feature")
}

#[cfg(not(feature = "parquet"))]
fn parquet_messages(
    _out: &Path,
    _messages: &[Message],
    _external_ids: &[Option<String>],
) -> Result<Written, CliError> {
    unreachable!("refused in run() without the parquet feature")
}

#[cfg(feature = "parquet")]
fn parquet_events(
    dir: &Path,
    out: &Path,
    export_scope: &ExportScope,
    last_seq: u64,
) -> Result<Written, CliError> {
    // Watched before the output exists: a signal never finds it made and unwatched.
    let interrupted = watch_interrupts(out);
    let cleanup = parquet_files::create_directory(out)?;
    let mut writer = parquet_files::PartitionedWriter::<parquet_files::EventRow>::new(
        out,
        parquet_files::LIMITS,
    )?;
    for_each_event(dir, export_scope, last_seq, |record| {
        interrupted()?;
        let date = utc(record.time_ms)?.date_naive();
        let row = parquet_files::EventRow::new(&mut writer.names, record)?;
        writer.push(date, row)
    })?;
    let written = writer.finish()?;
    interrupted()?;
    cleanup.keep();
    Ok(written)
}

#[cfg(feature = "parquet")]
fn parquet_messages(
    out: &Path,
    messages: &[Message],
    external_ids: &[Option<String>],
) -> Result<Written, CliError> {
    // Watched before the output exists: a signal never finds it made and unwatched.
    let interrupted = watch_interrupts(out);
    let cleanup = parquet_files::create_directory(out)?;
    let mut writer = parquet_files::PartitionedWriter::<parquet_files::MessageRow>::new(
        out,
        parquet_files::LIMITS,
    )?;
    for (message, external_id) in messages.iter().zip(external_ids) {
        interrupted()?;
        let row =
            parquet_files::MessageRow::new(&mut writer.names, message, external_id.as_deref())?;
        writer.push(message.sent_at.date_naive(), row)?;
    }
    let written = writer.finish()?;
    interrupted()?;
    cleanup.keep();
    Ok(written)
}

#[cfg(feature = "parquet")]
mod parquet_files;

#[cfg(test)]
mod tests {
    use super::*;

    /// A path the user can change is a bad argument; a file system that cannot take the file is
    /// an I/O failure, as the same failure while writing is.
    #[test]
    fn an_output_that_cannot_be_created_is_usage_or_io_by_its_cause() {
        let out = Path::new("/somewhere/out.csv");
        for (kind, exit) in [
            (io::ErrorKind::NotFound, 1),
            (io::ErrorKind::PermissionDenied, 1),
            (io::ErrorKind::NotADirectory, 1),
            (io::ErrorKind::AlreadyExists, 1),
            (io::ErrorKind::ReadOnlyFilesystem, 2),
            (io::ErrorKind::StorageFull, 2),
            (io::ErrorKind::QuotaExceeded, 2),
        ] {
            let error = create_error(out, io::Error::from(kind));
            assert_eq!(error.exit_status(), exit, "{kind:?}: {error}");
            assert!(error.to_string().contains("/somewhere/out.csv"), "{error}");
        }
    }
}
