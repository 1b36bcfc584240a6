//! Argument parsing, dispatch, and exit statuses. The library never sees clap; this module never
//! sees frame bytes.

mod audit;
mod channels;
mod commands;
mod costs;
mod demo;
mod engagement;
mod export;
mod impact;
mod import;
mod input;
mod output;
mod serve;

use std::io::IsTerminal;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::{Parser, Subcommand};
use commlog::{Channel, Error, Options, StatsFilter, Store, SyncPolicy};

pub(crate) use input::parse_time;

/// commlog: an embedded event-sourced store for communication analytics.
///
/// Every command works on the store in --dir. Commands that write (track, budget set, import,
/// repair, serve) need --dir or $COMMLOG_DIR. Read-only commands (history, stats, info,
/// engagement, channels, costs, impact, export) open the store read-only and replay its log;
/// they never create a store, and default to commlog-demo.
#[derive(Debug, Parser)]
#[command(
    name = "commlog",
    version,
    propagate_version = true,
    after_help = "Example:\n  commlog demo --messages 100000\n  commlog --dir commlog-demo stats --channel sms --start 2025-01-01 --end 2025-01-07"
)]
pub(crate) struct Cli {
    /// Store directory [default: $COMMLOG_DIR; read-only commands and demo: else commlog-demo]
    #[arg(
        long,
        global = true,
        env = "COMMLOG_DIR",
        hide_env_values = true,
        value_parser = clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from)
    )]
    dir: Option<PathBuf>,
    /// Commands that write: wait up to this many seconds for another writer to close the
    /// store (0: fail at once if it is locked; inf: as long as it takes).
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    wait: f64,
    /// Print results (and errors) as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the reference workload (docs/WORKLOAD.md) into a demo store and report what it
    /// measures.
    #[command(after_help = "Example:\n  commlog demo --messages 100000 --threads 2")]
    Demo(demo::DemoArgs),
    /// Track one event (writes: appends to the log of --dir, creating the store if missing).
    #[command(
        subcommand,
        after_help = "Example:\n  commlog track sent --user 123 --channel sms --type low_balance --cost 0.05"
    )]
    Track(commands::TrackCommand),
    /// Read-only: a user's messages, newest first.
    #[command(after_help = "Example:\n  commlog history --user 123 --limit 10")]
    History(commands::HistoryArgs),
    /// Read-only: delivery, open, click and action counts and rates, costs, outcomes.
    #[command(
        after_help = "Example:\n  commlog stats --channel sms --start 2025-01-01 --end 2025-01-07"
    )]
    Stats(StatsArgs),
    /// Read-only: segments, events, bytes, time range and the open report of the store.
    #[command(after_help = "Example:\n  commlog --json info")]
    Info,
    /// Read-only: write the store's events (or messages) as JSON lines, CSV or Parquet.
    #[command(
        after_help = "Example:\n  commlog export --format csv --out events.csv --channel email"
    )]
    Export(export::ExportArgs),
    /// Import the original service's SQL export (CSV files) into a new or empty store (writes).
    #[command(after_help = "Example:\n  commlog --dir data import --from-sql-export dump/")]
    Import(import::ImportArgs),
    /// Read-only: one user's engagement: received, engaged and ignored per channel and message type, when
    /// and how fast they engage, the 30-day trend and the preferred channel.
    #[command(
        after_help = "Example:\n  commlog engagement --user 123\n  commlog --json engagement --user 123 --channel email --start 2025-01-01 --end 2025-03-31"
    )]
    Engagement(engagement::EngagementArgs),
    /// Read-only: channel effectiveness per channel and message type, the winning channel of each type,
    /// and an optional time series (--period).
    #[command(
        after_help = "Example:\n  commlog channels --type low_balance --period week --start 2025-01-01 --end 2025-01-31"
    )]
    Channels(channels::ChannelsArgs),
    /// Read-only: spend per channel, message type, month and day; cost per delivered message, response
    /// and conversion; each budget against its month's spend.
    #[command(
        after_help = "Example:\n  commlog costs --month 2025-01\n  commlog --json costs --channel sms --start 2025-01-01 --end 2025-01-15"
    )]
    Costs(costs::CostsArgs),
    /// Plan spend: set a month's budget for one channel or all channels (writes).
    #[command(
        subcommand,
        after_help = "Example:\n  commlog budget set --scope all --month 2025-01 --amount 1000 --alert-percent 90"
    )]
    Budget(costs::BudgetCommand),
    /// Read-only: financial outcomes credited (last touch) to the messages that led to them;
    /// ROI per channel.
    ///
    /// Outcomes are selected by --user and by their own time (--start, --end); --channel and
    /// --type keep the outcomes credited to a message of that channel and type. Costs (for ROI)
    /// are those of the messages the filters select, by sent time.
    #[command(
        after_help = "Example:\n  commlog impact --start 2025-01-01 --end 2025-01-31\n  commlog --json impact --channel sms --type low_balance"
    )]
    Impact(impact::ImpactArgs),
    /// Read-only, also beside a running writer: check every header and frame, list all damage
    /// and say what the next open does. Exit 0 clean, 4 torn, 3 corrupt, 2 could not finish.
    #[command(after_help = "Example:\n  commlog audit data --json")]
    Audit(audit::AuditArgs),
    /// Repair a damaged log under the writer lock, deleting nothing: a torn end as open does;
    /// corruption only with --cut, moving everything from the first damage to quarantine/.
    #[command(
        after_help = "Example:\n  commlog repair data --dry-run\n  commlog repair data --cut"
    )]
    Repair(audit::RepairArgs),
    /// Serve the store to other processes over HTTP: a Unix socket (DIR/commlog.sock), and TCP
    /// with a bearer token when asked (writes: owns the store until SIGTERM or SIGINT).
    #[command(
        after_help = "Example:\n  commlog serve --dir /srv/commlog\n  COMMLOG_TOKEN=secret commlog serve --dir /srv/commlog --listen 127.0.0.1:7070"
    )]
    Serve(serve::ServeArgs),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  commlog completions bash > /etc/bash_completion.d/commlog")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The filter flags shared by `stats` and `export`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StatsArgs {
    /// Only this user's messages and outcomes.
    #[arg(long, value_parser = input::user_id, allow_negative_numbers = true)]
    user: Option<u64>,
    /// Only this message type.
    #[arg(long = "type")]
    message_type: Option<String>,
    /// Only this channel: sms, email, push, in_app (any case).
    #[arg(long, value_parser = input::CHANNEL_VALUES, ignore_case = true)]
    channel: Option<String>,
    /// From this time (RFC 3339, YYYY-MM-DD, or YYYY-MM-DD HH:MM:SS as UTC), inclusive.
    #[arg(long)]
    start: Option<String>,
    /// Up to this time, inclusive (a bare date means its last millisecond).
    #[arg(long)]
    end: Option<String>,
}

impl StatsArgs {
    pub(crate) fn filter(&self) -> Result<StatsFilter, CliError> {
        let mut filter = StatsFilter::new();
        if let Some(user) = self.user {
            filter = filter.user(user);
        }
        if let Some(message_type) = &self.message_type {
            filter = filter.message_type(message_type.clone());
        }
        if let Some(channel) = &self.channel {
            filter = filter.channel(parse_channel(channel)?);
        }
        if let Some(start) = &self.start {
            filter = filter.start(parse_time("--start", start, DayEdge::Start)?);
        }
        if let Some(end) = &self.end {
            filter = filter.end(parse_time("--end", end, DayEdge::End)?);
        }
        Ok(filter)
    }
}

/// What went wrong, and so the exit status.
#[derive(Debug)]
pub(crate) enum CliError {
    /// A bad argument or a missing store: exit 1.
    Usage(String),
    /// An error of the store: exit 1 for bad input, 2 for storage trouble.
    Store(Error),
    /// A self-check failed: exit 3.
    SelfCheck(String),
    /// The reader of stdout went away (e.g. `| head`): stop quietly, exit 0.
    ClosedPipe,
    /// The results are printed and say what went wrong (an audit's verdict): exit with
    /// this status, printing nothing more.
    Status(u8),
    /// SIGINT, SIGTERM or SIGHUP stopped a command that writes ([`Interrupts`]); `left` says
    /// what it left behind. Exit 128 + the signal, as a shell reports a process it stopped.
    Interrupted { signal: i32, left: String },
}

impl From<Error> for CliError {
    fn from(error: Error) -> CliError {
        CliError::Store(error)
    }
}

impl CliError {
    fn exit_status(&self) -> u8 {
        match self {
            CliError::Usage(_) => 1,
            CliError::Store(
                Error::InvalidInput { .. }
                | Error::UnknownMessage { .. }
                | Error::UnknownExternalId { .. }
                | Error::Conflict { .. }
                | Error::ReadOnly { .. },
            ) => 1,
            CliError::Store(_) => 2,
            CliError::SelfCheck(_) => 3,
            CliError::ClosedPipe => 0,
            CliError::Status(status) => *status,
            CliError::Interrupted { signal, .. } => 128 + *signal as u8,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            CliError::Usage(_) => "usage",
            CliError::Store(Error::InvalidInput { .. }) => "invalid_input",
            CliError::Store(Error::UnknownMessage { .. } | Error::UnknownExternalId { .. }) => {
                "unknown_message"
            }
            CliError::Store(Error::Conflict { .. }) => "conflict",
            CliError::Store(Error::Corruption { .. }) => "corruption",
            CliError::Store(Error::Locked { .. }) => "locked",
            CliError::Store(Error::Io { .. }) => "io",
            CliError::Store(_) => "storage",
            CliError::SelfCheck(_) => "self_check",
            CliError::ClosedPipe => "closed_pipe",
            CliError::Status(_) => "status",
            CliError::Interrupted { .. } => "interrupted",
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(message) | CliError::SelfCheck(message) => f.write_str(message),
            CliError::Store(error) => write!(f, "{error}"),
            CliError::ClosedPipe => f.write_str("standard output was closed"),
            CliError::Status(status) => write!(f, "exit status {status}"),
            CliError::Interrupted { signal, left } => {
                write!(f, "interrupted by {}: {left}", Interrupts::name(*signal))
            }
        }
    }
}

/// The store directory of read-only commands and the demo when neither --dir nor $COMMLOG_DIR
/// names one.
pub(crate) const DEFAULT_DIR: &str = "commlog-demo";

/// Options every command sees.
pub(crate) struct Global {
    /// --dir, else $COMMLOG_DIR, else [`DEFAULT_DIR`].
    pub dir: PathBuf,
    /// Whether --dir or $COMMLOG_DIR named `dir`.
    pub dir_named: bool,
    /// --wait: how long a writing command waits for the store's lock.
    pub lock_timeout: std::time::Duration,
    pub json: bool,
    pub quiet: bool,
}

impl Global {
    /// Opens the store for writing with SyncPolicy::Always (when a call returns, its event is
    /// durable), waiting up to --wait for the lock. The store must be named: a command that
    /// writes never falls back to the demo's directory, which the next demo may replace.
    ///
    /// The command makes one call and closes the store, so a snapshot's facts are decoded only
    /// as far as that call reads or changes them (`Options::decode_on_demand`): a message's
    /// chunk of records and its user's lists, not every message; and its indexes are left
    /// unread (`Options::load_indexes`), which no call reads (a close that writes a snapshot
    /// builds them first).
    pub(crate) fn open_for_writing(&self, command: &str) -> Result<Store, CliError> {
        self.open_for_writing_with(command, SyncPolicy::Always, true)
    }

    /// [`Global::open_for_writing`] with another sync policy (a bulk load syncs once at the
    /// end), decoding a snapshot's facts on demand or all at open. Whatever the open quarantined is said on stderr, one line per file (a JSON object
    /// with --json): bytes moved out of the log are never moved silently.
    pub(crate) fn open_for_writing_with(
        &self,
        command: &str,
        sync: SyncPolicy,
        decode_on_demand: bool,
    ) -> Result<Store, CliError> {
        self.check_dir_named(command)?;
        let options = Options {
            sync,
            lock_timeout: self.lock_timeout,
            decode_on_demand,
            // A writing command reads no stats; one call reads no index either.
            load_indexes: !decode_on_demand,
            count_totals: false,
            ..Options::default()
        };
        let store = Store::open_with(&self.dir, options)?;
        let report = store.open_report();
        self.warn_ignored_snapshots(&report);
        if let Some(path) = &report.quarantined {
            let why = "a torn tail: the bytes after the last whole frame of the last segment, \
                       left unfinished by a crash, copied there and cut off the log";
            if self.json {
                let line = serde_json::json!({
                    "warning": "quarantined",
                    "file": path.display().to_string(),
                    "bytes": report.truncated_bytes,
                    "reason": why,
                });
                eprintln!("{line}");
            } else {
                eprintln!(
                    "commlog: quarantined {} bytes to {}: {why}",
                    output::count(report.truncated_bytes),
                    path.display()
                );
            }
        }
        Ok(store)
    }

    /// Closes a store every call of which has returned durable. A failure now (writing the
    /// close marker, which only saves the next open some checks) loses nothing, so it is a
    /// warning on stderr and the command still succeeds: a failed exit would invite a retry
    /// that duplicates the durable event.
    pub(crate) fn close_after_durable(&self, store: Store) {
        let Err(error) = store.close() else { return };
        if self.quiet {
            return;
        }
        let message = format!(
            "closing the store failed after every event was made durable ({error}); nothing \
             is lost, the next open checks the log's end"
        );
        if self.json {
            eprintln!(
                "{}",
                serde_json::json!({ "warning": "close_failed", "reason": message })
            );
        } else {
            eprintln!("commlog: warning: {message}");
        }
    }

    /// A command that writes needs --dir or $COMMLOG_DIR.
    pub(crate) fn check_dir_named(&self, command: &str) -> Result<(), CliError> {
        if self.dir_named {
            return Ok(());
        }
        Err(CliError::Usage(format!(
            "{command} writes to a store: name it with --dir DIR or $COMMLOG_DIR (only read-only \
             commands default to {DEFAULT_DIR})"
        )))
    }

    /// Opens the store read-only for a command over all users' messages; a missing store is a
    /// usage error, never created. A snapshot's facts are decoded only as far as the command
    /// reads them (`Options::decode_on_demand`): none when the snapshot holds the indexes the
    /// views over all users read (`Options::load_indexes`).
    ///
    /// The store is never dropped: a read command's process ends once the command has
    /// answered, and the OS takes back its memory at once, where dropping the views first (a
    /// list per user, a page-sized free at a time) would only delay the exit.
    pub(crate) fn open_read_only(&self) -> Result<ManuallyDrop<Store>, CliError> {
        self.open_read_only_with(Options {
            decode_on_demand: true,
            count_totals: false,
            ..Options::default()
        })
    }

    /// Opens the store read-only for a command that reads one user's messages, every message
    /// once (`export`) or the log's summary (`info`): a snapshot's facts are decoded only as far
    /// as it reads them, and its indexes not at all.
    pub(crate) fn open_read_only_without_indexes(&self) -> Result<ManuallyDrop<Store>, CliError> {
        self.open_read_only_with(Options {
            decode_on_demand: true,
            load_indexes: false,
            count_totals: false,
            ..Options::default()
        })
    }

    /// Opens the store read-only for stats or the cost report over every user and all time: as
    /// [`Global::open_read_only_without_indexes`], but a snapshot's messages are counted into
    /// the totals over all time as they are checked (`Options::count_totals`), which answer it.
    pub(crate) fn open_read_only_for_totals(&self) -> Result<ManuallyDrop<Store>, CliError> {
        self.open_read_only_with(Options {
            decode_on_demand: true,
            load_indexes: false,
            ..Options::default()
        })
    }

    /// Opens the store read-only for channel effectiveness or impact over every user and all
    /// time: as [`Global::open_read_only_for_totals`], but taking a snapshot's outcome credits
    /// without their sums by time, and not its message rollup (`Options::load_sums_by_time`):
    /// the totals stand in for the rollup, the credits' sums over all time for those by time.
    pub(crate) fn open_read_only_for_credits(&self) -> Result<ManuallyDrop<Store>, CliError> {
        self.open_read_only_with(Options {
            decode_on_demand: true,
            load_sums_by_time: false,
            ..Options::default()
        })
    }

    fn open_read_only_with(&self, options: Options) -> Result<ManuallyDrop<Store>, CliError> {
        self.check_store_exists()?;
        let store = Store::open_read_only_with(&self.dir, options)?;
        self.warn_ignored_snapshots(&store.open_report());
        Ok(ManuallyDrop::new(store))
    }

    /// Says on stderr, one line each (a JSON object with --json), which snapshots the open
    /// passed over and why: the log was replayed instead, so nothing is lost, but a snapshot
    /// that never loads costs every open a full replay.
    fn warn_ignored_snapshots(&self, report: &commlog::OpenReport) {
        if self.quiet {
            return;
        }
        for ignored in &report.ignored_snapshots {
            let path = ignored
                .path
                .strip_prefix(&self.dir)
                .unwrap_or(&ignored.path);
            if self.json {
                let line = serde_json::json!({
                    "warning": "snapshot_ignored",
                    "file": path.display().to_string(),
                    "reason": ignored.reason,
                });
                eprintln!("{line}");
            } else {
                eprintln!(
                    "commlog: warning: snapshot {} ignored: {}; the log was replayed instead",
                    path.display(),
                    ignored.reason
                );
            }
        }
    }

    /// A usage error unless `dir` is an existing directory.
    pub(crate) fn check_store_exists(&self) -> Result<(), CliError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        if self.dir.exists() {
            return Err(CliError::Usage(format!(
                "{} is not a directory",
                shown_path(&self.dir)
            )));
        }
        Err(CliError::Usage(format!(
            "no store at {}: the directory does not exist",
            shown_path(&self.dir)
        )))
    }

    /// Whether progress may be drawn: stderr is a terminal and not --quiet.
    pub(crate) fn show_progress(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }
}

/// A path the user gave, as an error echoes it: whole up to 64 characters, else its first 64
/// and its length (`commlog::quote_value`).
pub(crate) fn shown_path(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    match text.chars().count() > 64 {
        true => commlog::quote_value(&text),
        false => text,
    }
}

/// Makes a write past the file-size limit (`ulimit -f`) an I/O error rather than death.
///
/// Such a write raises SIGXFSZ, whose default action kills the process at once, with no
/// message. While a handler is installed, the write
/// fails with EFBIG instead, which the store reports as an I/O error naming the file (exit
/// status 2; a write that fails also poisons the open store, as any failed write does). The
/// handler only sets a flag that nothing reads: catching the signal is all it is for.
/// signal-hook installs it without `unsafe` code here.
fn handle_file_size_limit() {
    // Fails only if the OS refuses the handler; the signal then keeps its default action.
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    );
}

/// SIGINT, SIGTERM and SIGHUP, caught by a command while it writes what it must not leave
/// looking whole when stopped part way (an export's output, an import's store): it checks
/// between rows, stops at the next one, removes or reports what it left, and exits 128 + the
/// signal. Before a command watches them, and in every other command, they stop the process
/// at once as by default.
pub(crate) struct Interrupts(Arc<AtomicUsize>);

impl Interrupts {
    const SIGNALS: [i32; 3] = [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ];

    /// Catches the signals from now on. signal-hook installs the handlers without `unsafe`
    /// code here; one the OS refuses keeps its default action.
    pub(crate) fn watch() -> Interrupts {
        let caught = Arc::new(AtomicUsize::new(0));
        for signal in Self::SIGNALS {
            let _ = signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize);
        }
        Interrupts(caught)
    }

    /// `Err` once a signal came: [`CliError::Interrupted`], with `left` (called then) saying
    /// what the command leaves.
    pub(crate) fn check(&self, left: impl FnOnce() -> String) -> Result<(), CliError> {
        match self.0.load(Ordering::Relaxed) {
            0 => Ok(()),
            signal => Err(CliError::Interrupted {
                signal: signal as i32,
                left: left(),
            }),
        }
    }

    fn name(signal: i32) -> String {
        match signal {
            signal_hook::consts::SIGINT => "SIGINT".to_string(),
            signal_hook::consts::SIGTERM => "SIGTERM".to_string(),
            signal_hook::consts::SIGHUP => "SIGHUP".to_string(),
            other => format!("signal {other}"),
        }
    }
}

pub(crate) fn run() -> ExitCode {
    handle_file_size_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            if matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            // One line, like every other error: clap's first paragraph names the problem (and,
            // for missing arguments, lists them on the lines under it).
            let message = match error.kind() {
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    "a subcommand is missing; see --help".to_string()
                }
                _ => {
                    let rendered = error.to_string();
                    let paragraph: Vec<&str> = rendered
                        .lines()
                        .map(str::trim)
                        .skip_while(|line| line.is_empty())
                        .take_while(|line| !line.is_empty())
                        .collect();
                    let mut problem = paragraph.join(" ");
                    // A long value is shown by its first characters and its length.
                    // An unexpected argument or subcommand is a value too, when it is long.
                    for (kind, always) in [
                        (clap::error::ContextKind::InvalidValue, true),
                        (clap::error::ContextKind::InvalidArg, false),
                        (clap::error::ContextKind::InvalidSubcommand, false),
                    ] {
                        if let Some(clap::error::ContextValue::String(value)) = error.get(kind) {
                            let shown = commlog::quote_value(value);
                            if always || shown != format!("{value:?}") {
                                problem = problem.replace(&format!("'{value}'"), &shown);
                            }
                        }
                    }
                    format!("{}; see --help", problem.trim_start_matches("error: "))
                }
            };
            // An argument need not be UTF-8 (clap refuses it, and that error comes here).
            report_error(
                std::env::args_os().any(|arg| arg == "--json"),
                &CliError::Usage(message),
            );
            return ExitCode::from(1);
        }
    };
    // An empty $COMMLOG_DIR names no store.
    let named_dir = cli.dir.clone().filter(|dir| !dir.as_os_str().is_empty());
    // Longer than a Duration holds (inf included): as long as it takes.
    let lock_timeout = if cli.wait >= 0.0 {
        std::time::Duration::try_from_secs_f64(cli.wait).unwrap_or(std::time::Duration::MAX)
    } else {
        let error = CliError::Usage(format!(
            "invalid --wait {}: must be a number of seconds, 0 or more",
            commlog::quote_value(&cli.wait.to_string())
        ));
        report_error(cli.json, &error);
        return ExitCode::from(error.exit_status());
    };
    let global = Global {
        dir_named: named_dir.is_some(),
        dir: named_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
        lock_timeout,
        json: cli.json,
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Demo(args) => demo::run(&global, &args),
        Command::Track(command) => commands::track(&global, &command),
        Command::History(args) => commands::history(&global, &args),
        Command::Stats(args) => commands::stats(&global, &args),
        Command::Info => commands::info(&global),
        Command::Export(args) => export::run(&global, &args),
        Command::Import(args) => import::run(&global, &args),
        Command::Engagement(args) => engagement::run(&global, &args),
        Command::Channels(args) => channels::run(&global, &args),
        Command::Costs(args) => costs::run(&global, &args),
        Command::Budget(command) => costs::budget(&global, &command),
        Command::Impact(args) => impact::run(&global, &args),
        Command::Serve(args) => serve::run(&global, &args),
        Command::Audit(args) => audit::audit(&global, &args),
        Command::Repair(args) => audit::repair(&global, &args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "commlog", &mut script);
            output::write_stdout(&script)
        }
    };
    match result {
        Ok(()) | Err(CliError::ClosedPipe) => ExitCode::SUCCESS,
        Err(CliError::Status(status)) => ExitCode::from(status),
        Err(error) => {
            report_error(global.json, &error);
            ExitCode::from(error.exit_status())
        }
    }
}

/// One line on stderr: plain, or a JSON object with `--json`.
fn report_error(json: bool, error: &CliError) {
    if json {
        let object = serde_json::json!({
            "error": error.to_string(),
            "kind": error.kind(),
            "exit": error.exit_status(),
        });
        eprintln!("{object}");
    } else {
        eprintln!("commlog: {error}");
    }
}

pub(crate) use commlog::DayEdge;

pub(crate) fn parse_channel(text: &str) -> Result<Channel, CliError> {
    Ok(text.parse::<Channel>()?)
}

/// Refuses a store directory that is missing and could not be created: its parent is missing
/// or not a directory. (The library checks the same when it opens the store; commands that do
/// long work first check it up front.)
pub(crate) fn check_parent_exists(dir: &Path) -> Result<(), CliError> {
    if dir.exists() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => return Ok(()),
    };
    let rule = if parent.is_dir() {
        return Ok(());
    } else if parent.exists() {
        "is not a directory"
    } else {
        "does not exist; commlog creates the store directory, not its parents"
    };
    Err(CliError::Store(Error::InvalidInput {
        field: "parent of dir",
        value: parent.display().to_string(),
        rule: rule.into(),
    }))
}

/// Total size of the store's segment files, in bytes.
pub(crate) fn segment_bytes_on_disk(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .and_then(commlog::segment_file_sequence)
            .is_some()
        {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}
