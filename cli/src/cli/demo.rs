//! `demo`: the reference workload (docs/WORKLOAD.md) into a demo store, checked against the
//! reference counts, with every phase measured.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use commlog::workload::{Call, Generator, Q1_REPEATS, Q4_LIMIT, QueryPicks, Spec};
use commlog::{
    BudgetScope, BudgetStatus, ChannelImpact, ChannelReport, ChannelWinner, CommunicationStats,
    CostFilter, CostReport, EffectivenessFilter, EngagementFilter, ImpactFilter, ImpactReport,
    Message, Month, Options, StatsFilter, Store, SyncPolicy, UserId,
};
use serde::{Deserialize, Serialize};

use crate::cli::output::{self, Table, count, print_json, write_stdout};
use crate::cli::{CliError, Global, check_parent_exists, input, segment_bytes_on_disk};

/// The file that marks a directory as a demo store the demo may replace (and import refuses).
pub(crate) const MARKER_FILE_NAME: &str = "COMMLOG_DEMO";

/// The budget the demo sets for the workload's month, all channels, in dollars (the workload
/// spends $17,967.598 at the default size, so its alert fires at 90 %).
const DEMO_BUDGET_DOLLARS: f64 = 20_000.0;
/// The workload's month.
const DEMO_BUDGET_MONTH: &str = "2025-01";

/// Progress is redrawn after this many events.
const PROGRESS_EVENTS_STEP: u64 = 65_536;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Messages to generate.
    #[arg(long, default_value_t = 1_000_000, value_parser = input::at_least_one, allow_negative_numbers = true)]
    messages: u64,
    /// Users to draw from (user ids 1 to this, at most i64::MAX).
    #[arg(long, default_value_t = 10_000, value_parser = input::user_id, allow_negative_numbers = true)]
    users: u64,
    /// Seed of the workload's generator.
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    seed: u64,
    /// Durability: never (D0), interval (D1), always (D2: every call waits for its fdatasync).
    #[arg(long, value_enum, default_value_t = SyncArg::Interval)]
    sync: SyncArg,
    /// Sync interval of --sync interval, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = input::at_least_one, allow_negative_numbers = true)]
    interval_ms: u64,
    /// Threads tracking at once (messages dealt round robin; a message's calls stay in order).
    #[arg(long, default_value_t = 1, value_parser = input::count, allow_negative_numbers = true)]
    threads: usize,
    /// Calls per `Store::track_batch` on one thread (whole messages' calls; 1: one call at a
    /// time, as an application tracking each message).
    #[arg(long, default_value_t = 1, value_parser = input::count, allow_negative_numbers = true)]
    batch: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum SyncArg {
    Never,
    Interval,
    Always,
}

/// The demo's parameters, also written to the marker file.
#[derive(Debug, Clone, Serialize)]
struct Parameters {
    seed: u64,
    users: u64,
    messages: u64,
    sync: SyncArg,
    interval_ms: u64,
    threads: usize,
    batch: usize,
    dir: String,
}

/// The marker file: the parameters, and once the demo has finished, the events it wrote. The
/// demo replaces a directory only when its log holds exactly those events.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// Events the demo wrote (`None` while it runs, and if it was stopped part way).
    events_written: Option<u64>,
    /// Sequence number of the last event it wrote.
    last_seq: Option<u64>,
    #[serde(flatten)]
    parameters: serde_json::Value,
}

/// What the generator asked the store to do.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
struct Tally {
    sent: u64,
    delivered: u64,
    opened: u64,
    action: u64,
    outcome: u64,
    events: u64,
}

impl Tally {
    fn add(&mut self, calls: &[Call]) {
        for call in calls {
            self.events += 1;
            match call {
                Call::Sent { .. } => self.sent += 1,
                Call::Delivered { .. } => self.delivered += 1,
                Call::Opened { .. } => self.opened += 1,
                Call::Action { .. } => self.action += 1,
                Call::Outcome { .. } => self.outcome += 1,
            }
        }
    }
}

/// docs/WORKLOAD.md's figures for seed 42 and 10,000 users: the call tally and Q1.
struct Reference {
    messages: u64,
    tally: Tally,
    /// delivered, opened, clicked, action, outcome counts; total cost and impact in micros.
    q1_counts: [u64; 5],
    q1_cost_micros: i128,
    q1_impact_micros: i128,
}

const REFERENCES: [Reference; 3] = [
    Reference {
        messages: 20_000,
        tally: Tally {
            sent: 20_000,
            delivered: 19_028,
            opened: 4_907,
            action: 1_947,
            outcome: 367,
            events: 46_249,
        },
        q1_counts: [19_028, 5_235, 452, 1_947, 367],
        q1_cost_micros: 357_713_000,
        q1_impact_micros: 92_613_680_000,
    },
    Reference {
        messages: 100_000,
        tally: Tally {
            sent: 100_000,
            delivered: 95_005,
            opened: 24_492,
            action: 9_568,
            outcome: 1_945,
            events: 231_010,
        },
        q1_counts: [95_005, 26_257, 2_404, 9_568, 1_945],
        q1_cost_micros: 1_793_978_000,
        q1_impact_micros: 485_009_780_000,
    },
    Reference {
        messages: 1_000_000,
        tally: Tally {
            sent: 1_000_000,
            delivered: 949_669,
            opened: 247_155,
            action: 95_346,
            outcome: 19_882,
            events: 2_312_052,
        },
        q1_counts: [949_669, 264_725, 23_801, 95_346, 19_882],
        q1_cost_micros: 17_967_598_000,
        q1_impact_micros: 5_026_298_230_000,
    },
];

/// Latency of one reference query over its picks.
#[derive(Debug, Serialize)]
struct QueryTiming {
    query: &'static str,
    runs: usize,
    p50_us: f64,
    p99_us: f64,
}

#[derive(Debug, Serialize)]
struct Measured {
    ingest_seconds: f64,
    ingest_events_per_second: f64,
    queries: Vec<QueryTiming>,
    /// After the queries and views: Q1–Q5 and the four views warm ([`time_warm`]).
    warm: Vec<QueryTiming>,
    close_seconds: f64,
    /// Reopening as a writer: the newest snapshot loaded, the log after it replayed.
    reopen_seconds: f64,
    /// The log's events over `reopen_seconds`.
    replay_events_per_second: f64,
    /// Events the snapshot loaded at reopening covered (0: none was).
    reopen_snapshot_events: u64,
    /// The first Q1 after reopening: answered from the indexes the snapshot at close holds
    /// (a snapshot without them leaves this Q1 to count the totals over all time, in one pass
    /// over the messages).
    first_q1_after_reopen_seconds: f64,
    /// Right after that Q1: one pass of each query's picks (Q1 once), then one call of each
    /// view, on the reopened store.
    queries_after_reopen: Vec<QueryTiming>,
    /// Opening read-only without loading a snapshot: the whole log replayed.
    full_replay_seconds: f64,
    full_replay_events_per_second: f64,
    /// Opening read-only as `commlog history` does (a snapshot's facts decoded on demand, its
    /// indexes unread), then one user's history: the time to a first answer in a new reader.
    first_history_on_demand_seconds: f64,
    /// Opening read-only as `commlog stats` does (a snapshot's facts decoded on demand and
    /// counted into the totals over all time, its indexes unread), then Q1: the time to a
    /// first answer over all messages in a new reader.
    first_q1_on_demand_seconds: f64,
    bytes_on_disk: u64,
    bytes_per_message: f64,
    /// Anonymous resident memory after ingest minus before opening, per message (mapped files
    /// do not count).
    memory_bytes_per_message: Option<f64>,
    /// The same after the queries and views, once their indexes (the message rollup and the
    /// outcome credits) are built.
    memory_with_indexes_bytes_per_message: Option<f64>,
    /// Resident memory (VmRSS) after the queries and views: the steady size of the store.
    resident_bytes: Option<u64>,
    /// Of the anonymous memory then, the part in transparent huge pages (AnonHugePages of
    /// /proc/self/smaps_rollup): none unless the machine's allocator was asked for them
    /// (docs/PERFORMANCE.md, "Huge pages"), so that a figure tells which pages it was made in.
    huge_page_bytes: Option<u64>,
    /// The highest resident memory of the whole demo (the highest of `phase_peaks`).
    peak_rss_bytes: Option<u64>,
    /// The highest resident memory (VmHWM) within each phase, where the kernel lets a process
    /// reset it (/proc/self/clear_refs).
    phase_peaks: Vec<PhasePeak>,
}

/// The highest resident memory while one phase of the demo ran.
#[derive(Debug, Serialize)]
struct PhasePeak {
    phase: &'static str,
    /// Resident memory (VmRSS) as the phase began: what earlier phases left behind, such as
    /// freed memory the allocator keeps for reuse.
    rss_at_start_bytes: Option<u64>,
    peak_rss_bytes: Option<u64>,
}

/// Measures the peak resident memory of each phase: `start` resets the process's high-water
/// mark, `end` reads it.
#[derive(Default)]
struct PhasePeaks {
    peaks: Vec<PhasePeak>,
    rss_at_start: Option<u64>,
    /// Whether the kernel took the reset: without it, a phase's figure would be the peak of
    /// all that came before, and none is given.
    reset: bool,
}

impl PhasePeaks {
    fn start(&mut self) {
        // Writing 5 to clear_refs sets VmHWM to the current resident size (proc(5)).
        self.reset = fs::write("/proc/self/clear_refs", "5").is_ok();
        self.rss_at_start = proc_status_bytes("VmRSS:");
    }

    fn end(&mut self, phase: &'static str) {
        self.peaks.push(PhasePeak {
            phase,
            rss_at_start_bytes: self.rss_at_start,
            peak_rss_bytes: peak_rss_bytes().filter(|_| self.reset),
        });
    }

    /// The highest of the phases' peaks; without them, the process's VmHWM.
    fn overall(&self) -> Option<u64> {
        match self.reset {
            true => self
                .peaks
                .iter()
                .filter_map(|phase| phase.peak_rss_bytes)
                .max(),
            false => peak_rss_bytes(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Sample {
    history_user: u64,
    history: Vec<Message>,
    stats_filter: StatsFilter,
    stats: CommunicationStats,
}

/// What the analytics views say of the workload, and what each call took.
#[derive(Debug, Serialize)]
struct Views {
    /// For each message type, the channel with the highest performance score.
    winners: Vec<ChannelWinner>,
    /// The month's spend against the budget the demo sets.
    budget: Option<BudgetStatus>,
    /// Outcomes credited to each channel's messages, with cost and ROI.
    impact_by_channel: Vec<ChannelImpact>,
    /// One call of each view on the whole workload (engagement: the first Q4 user).
    timings: Vec<QueryTiming>,
}

#[derive(Debug, Serialize)]
struct Report {
    parameters: Parameters,
    tally: Tally,
    q1: CommunicationStats,
    /// "matches the reference", "differs from the reference", or "unchecked".
    reference: String,
    mismatches: Vec<String>,
    sample: Sample,
    views: Views,
    measured: Measured,
}

pub(crate) fn run(global: &Global, args: &DemoArgs) -> Result<(), CliError> {
    if args.threads > 1 && args.batch > 1 {
        return Err(CliError::Usage(
            "--batch tracks on one thread: --threads and --batch cannot both be above 1"
                .to_string(),
        ));
    }
    if args.sync == SyncArg::Always && !global.quiet {
        eprintln!(
            "commlog: warning: --sync always makes every call wait for its fdatasync, so the demo runs at the \
             speed of this disk's fsync (the report gives the rate measured); --threads N shares each fsync \
             among N callers"
        );
    }
    let spec = Spec {
        seed: args.seed,
        users: args.users,
        messages: args.messages,
    };
    let parameters = Parameters {
        seed: args.seed,
        users: args.users,
        messages: args.messages,
        sync: args.sync,
        interval_ms: args.interval_ms,
        threads: args.threads,
        batch: args.batch,
        dir: global.dir.display().to_string(),
    };
    prepare_directory(&global.dir, &parameters)?;
    let sync = match args.sync {
        SyncArg::Never => SyncPolicy::Never,
        SyncArg::Interval => SyncPolicy::Interval(Duration::from_millis(args.interval_ms.max(1))),
        SyncArg::Always => SyncPolicy::Always,
    };
    let options = Options {
        sync,
        ..Options::default()
    };
    let anonymous_before = anonymous_rss_bytes();
    let mut peaks = PhasePeaks::default();
    peaks.start();
    let store = Store::open_with(&global.dir, options.clone())?;

    let started = Instant::now();
    let tally = ingest(global, &store, spec, args.threads, args.batch)?;
    store.sync()?;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let memory_per_message = || {
        anonymous_before
            .zip(anonymous_rss_bytes())
            .map(|(before, after)| after.saturating_sub(before) as f64 / args.messages as f64)
    };
    let memory_bytes_per_message = memory_per_message();
    peaks.end("ingest (with background snapshots)");

    peaks.start();
    let q1 = store.get_communication_stats(&StatsFilter::new())?;
    let picks = QueryPicks::new(spec);
    let history_user = picks.q4_users[0];
    // The sample's stats over a window build the indexes over time, so that the timed
    // queries find them built.
    let sample = Sample {
        history_user: history_user.0,
        history: store.get_user_communication_history(history_user, Q4_LIMIT)?,
        stats_filter: picks.q5_filters[0].clone(),
        stats: store.get_communication_stats(&picks.q5_filters[0])?,
    };
    let queries = time_queries(&store, &picks, Q1_REPEATS)?;

    let views = analytics_views(&store, history_user)?;
    let warm = time_warm(&store, &picks)?;
    let memory_with_indexes_bytes_per_message = memory_per_message();
    let resident_bytes = proc_status_bytes("VmRSS:");
    let huge_page_bytes = proc_kib_field("/proc/self/smaps_rollup", "AnonHugePages:");
    peaks.end("queries and views (their indexes built)");

    peaks.start();
    let started = Instant::now();
    store.close()?;
    let close_seconds = started.elapsed().as_secs_f64();
    peaks.end("close (with its snapshot)");
    peaks.start();
    let started = Instant::now();
    let reopened = Store::open_with(&global.dir, options.clone())?;
    let reopen_seconds = started.elapsed().as_secs_f64();
    peaks.end("reopen (loading the snapshot)");
    let replayed_events = reopened.open_report().events;
    let reopen_snapshot_events = reopened.open_report().snapshot_events;
    let mut mismatches = Vec::new();
    // The first answer over all messages reads the indexes the snapshot held, or counts the
    // totals over all time without them.
    let started = Instant::now();
    let q1_after_reopen = reopened.get_communication_stats(&StatsFilter::new())?;
    let first_q1_after_reopen_seconds = started.elapsed().as_secs_f64();
    if q1_after_reopen != q1 {
        mismatches.push("Q1 after reopening differs from Q1 before closing".to_string());
    }
    let mut queries_after_reopen = time_queries(&reopened, &picks, 1)?;
    queries_after_reopen.extend(time_views(&reopened, history_user)?.1);
    // The tracking calls, and the budget the demo sets.
    if replayed_events != tally.events + 1 {
        mismatches.push(format!(
            "replayed {replayed_events} events, tracked {} and a budget",
            tally.events
        ));
    }
    // Written while the store is still open (and so locked). The lock was free between
    // preparing the directory and opening the store, and between closing and reopening it: the
    // marker counts the events only when the log holds exactly the demo's own.
    write_marker(
        &global.dir,
        &parameters,
        demo_events(
            replayed_events,
            tally.events,
            reopened.open_report().last_seq,
        ),
    )?;
    reopened.close()?;
    peaks.start();
    let started = Instant::now();
    let whole_log = Options {
        load_snapshot: false,
        ..options.clone()
    };
    let replayed_whole = Store::open_read_only_with(&global.dir, whole_log)?;
    let full_replay_seconds = started.elapsed().as_secs_f64();
    peaks.end("open without the snapshot (full replay)");
    if replayed_whole.get_communication_stats(&StatsFilter::new())? != q1 {
        mismatches.push("Q1 after replaying the whole log differs from Q1 before closing".into());
    }
    drop(replayed_whole);
    peaks.start();
    let started = Instant::now();
    // As the CLI's read commands open: `history` reads neither the indexes nor the totals,
    // `stats` (over all time) the totals only.
    let one_user_options = Options {
        decode_on_demand: true,
        load_indexes: false,
        count_totals: false,
        ..options
    };
    let on_demand = Options {
        count_totals: true,
        ..one_user_options.clone()
    };
    let one_user = Store::open_read_only_with(&global.dir, one_user_options)?;
    let history = one_user.get_user_communication_history(history_user, Q4_LIMIT)?;
    let first_history_on_demand_seconds = started.elapsed().as_secs_f64();
    peaks.end("read-only open decoding on demand, one user's history");
    if history != sample.history {
        mismatches.push("a user's history decoded on demand differs from before closing".into());
    }
    drop(one_user);
    peaks.start();
    let started = Instant::now();
    let all_users = Store::open_read_only_with(&global.dir, on_demand)?;
    let q1_on_demand = all_users.get_communication_stats(&StatsFilter::new())?;
    let first_q1_on_demand_seconds = started.elapsed().as_secs_f64();
    peaks.end("read-only open decoding on demand, Q1");
    if q1_on_demand != q1 {
        mismatches.push("Q1 in a reader decoding on demand differs from before closing".into());
    }
    drop(all_users);

    let reference = REFERENCES.iter().find(|reference| {
        args.seed == 42 && args.users == 10_000 && reference.messages == args.messages
    });
    if let Some(reference) = reference {
        mismatches.extend(compare_with_reference(reference, &tally, &q1));
    }
    let verdict = match (reference, mismatches.is_empty()) {
        (_, false) => "differs from the reference",
        (Some(_), true) => "matches the reference",
        (None, true) => "unchecked",
    };
    let bytes_on_disk =
        segment_bytes_on_disk(&global.dir).map_err(|source| commlog::Error::Io {
            path: global.dir.clone(),
            source,
        })?;
    let report = Report {
        parameters,
        tally,
        q1,
        reference: verdict.to_string(),
        mismatches,
        sample,
        views,
        measured: Measured {
            ingest_seconds,
            ingest_events_per_second: tally.events as f64 / ingest_seconds,
            queries,
            warm,
            close_seconds,
            reopen_seconds,
            replay_events_per_second: replayed_events as f64 / reopen_seconds,
            reopen_snapshot_events,
            first_q1_after_reopen_seconds,
            queries_after_reopen,
            full_replay_seconds,
            full_replay_events_per_second: replayed_events as f64 / full_replay_seconds,
            first_history_on_demand_seconds,
            first_q1_on_demand_seconds,
            bytes_on_disk,
            bytes_per_message: bytes_on_disk as f64 / args.messages as f64,
            memory_bytes_per_message,
            memory_with_indexes_bytes_per_message,
            resident_bytes,
            huge_page_bytes,
            peak_rss_bytes: peaks.overall(),
            phase_peaks: peaks.peaks,
        },
    };
    if global.json {
        print_json(&report)?;
    } else {
        write_stdout(render(&report).as_bytes())?;
    }
    if report.mismatches.is_empty() {
        Ok(())
    } else {
        Err(CliError::SelfCheck(format!(
            "the demo {} (docs/WORKLOAD.md): {}",
            report.reference,
            report.mismatches.join("; ")
        )))
    }
}

/// Makes `dir` an empty demo store directory with its marker. Replaces only an earlier demo
/// store: a directory holding just the marker, segments, LOCK and `snapshots/` with only
/// snapshot files in it (a cache of the log: removing them loses nothing), not locked, whose
/// log holds exactly the events the marker says the demo wrote.
fn prepare_directory(dir: &Path, parameters: &Parameters) -> Result<(), CliError> {
    let refuse = |why: String| {
        CliError::Usage(format!(
            "{}: {why}; the demo only replaces a directory of its own (choose another with --dir)",
            dir.display()
        ))
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(refuse("is not a directory".to_string()));
        }
        let io = |source| store_io(dir, source);
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            names.push(
                entry
                    .map_err(io)?
                    .file_name()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        if !names.is_empty() {
            if !names.iter().any(|name| name == MARKER_FILE_NAME) {
                return Err(refuse("holds files but no COMMLOG_DEMO marker".to_string()));
            }
            if let Some(other) = names.iter().find(|name| {
                *name != MARKER_FILE_NAME
                    && *name != commlog::LOCK_FILE_NAME
                    && *name != commlog::SNAPSHOT_DIRECTORY
                    && commlog::segment_file_sequence(name).is_none()
            }) {
                return Err(refuse(format!(
                    "holds {other:?}, which is not part of a demo store"
                )));
            }
            let snapshots = match names.iter().any(|name| name == commlog::SNAPSHOT_DIRECTORY) {
                true => {
                    snapshot_files(&dir.join(commlog::SNAPSHOT_DIRECTORY)).map_err(
                        |why| match why {
                            SnapshotsHold::Other(other) => refuse(format!(
                                "holds {:?}, which is not part of a demo store",
                                Path::new(commlog::SNAPSHOT_DIRECTORY).join(other)
                            )),
                            SnapshotsHold::Unreadable(error) => error,
                        },
                    )?
                }
                false => Vec::new(),
            };
            // Held until the old files are gone, so no writer starts in between.
            let lock = match File::options()
                .read(true)
                .write(true)
                .open(dir.join(commlog::LOCK_FILE_NAME))
            {
                Ok(lock) => {
                    if lock.try_lock().is_err() {
                        return Err(refuse("locked by another process".to_string()));
                    }
                    Some(lock)
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(io(source)),
            };
            check_only_demo_events(dir)
                .map_err(|why| why.map_or_else(|| refuse(String::new()), refuse))?;
            // The snapshots first: a demo stopped part way through this leaves the log.
            for path in &snapshots {
                fs::remove_file(path).map_err(|source| store_io(path, source))?;
            }
            for name in &names {
                let path = dir.join(name);
                match name == commlog::SNAPSHOT_DIRECTORY {
                    true => fs::remove_dir(&path),
                    false => fs::remove_file(&path),
                }
                .map_err(|source| store_io(&path, source))?;
            }
            drop(lock);
        }
    }
    check_parent_exists(dir)?;
    // Like every store directory and file: readable by the owner only.
    fs::DirBuilder::new()
        .mode(commlog::DIRECTORY_MODE)
        .create(dir)
        .or_else(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(error),
        })
        .map_err(|source| store_io(dir, source))?;
    write_marker(dir, parameters, None)
}

/// What a demo store's `snapshots/` holds besides snapshot files, if anything.
enum SnapshotsHold {
    /// An entry of this name that is not a snapshot file (a directory or a link included).
    Other(String),
    Unreadable(CliError),
}

/// The snapshot files in `snapshots`, a demo store's snapshot directory, if it holds only
/// those (regular files named as a snapshot, or as one being written).
fn snapshot_files(snapshots: &Path) -> Result<Vec<PathBuf>, SnapshotsHold> {
    let unreadable = |source| SnapshotsHold::Unreadable(store_io(snapshots, source));
    if !fs::symlink_metadata(snapshots)
        .map_err(unreadable)?
        .is_dir()
    {
        return Err(SnapshotsHold::Other(String::new()));
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(snapshots).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map_err(unreadable)?.is_file();
        if !is_file || !commlog::is_snapshot_file_name(&name) {
            return Err(SnapshotsHold::Other(name));
        }
        files.push(entry.path());
    }
    Ok(files)
}

/// An I/O error on `path`, as the store names one.
fn store_io(path: &Path, source: std::io::Error) -> CliError {
    CliError::Store(commlog::Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `Ok` when the log in `dir` holds exactly the events its marker says the demo wrote; else
/// why not (`Err(None)` never happens: every refusal has a reason).
fn check_only_demo_events(dir: &Path) -> Result<(), Option<String>> {
    let marker_path = dir.join(MARKER_FILE_NAME);
    let marker: Option<Marker> = fs::read(&marker_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let mut last_seq = 0;
    let report = commlog::audit::read_log(dir, |logged| last_seq = logged.seq)
        .map_err(|error| Some(format!("its log cannot be read whole ({error})")))?;
    let events = report.events;
    let written = marker
        .as_ref()
        .and_then(|marker| marker.events_written.zip(marker.last_seq));
    match written {
        Some((written, written_last_seq)) if events == written && last_seq == written_last_seq => {
            Ok(())
        }
        Some((written, _)) if events > written => Err(Some(format!(
            "holds {} other event{} besides the {} the demo wrote",
            count(events - written),
            if events - written == 1 { "" } else { "s" },
            count(written)
        ))),
        Some((written, written_last_seq)) => Err(Some(format!(
            "holds {} events up to seq {last_seq}, not the {} up to seq {written_last_seq} the \
             demo wrote",
            count(events),
            count(written)
        ))),
        None if events == 0 => Ok(()),
        None => Err(Some(format!(
            "holds {} events, and the demo that made it did not finish or another writer \
             added to it while it ran (its marker counts no events), so they cannot be told \
             from others: remove the directory yourself if they are all the demo's",
            count(events)
        ))),
    }
}

/// What the marker records as the demo's events: `(replayed, last_seq)` when the log holds
/// exactly the `tracked` calls and the budget the demo made; else `None`, so that a later demo
/// refuses the directory (another writer took the lock while the demo did not hold it).
fn demo_events(replayed: u64, tracked: u64, last_seq: u64) -> Option<(u64, u64)> {
    (replayed == tracked + 1).then_some((replayed, last_seq))
}

/// Writes the marker whole or not at all (a new file renamed over the old one): the parameters,
/// and with `written` the events the demo wrote and the last one's sequence number.
fn write_marker(
    dir: &Path,
    parameters: &Parameters,
    written: Option<(u64, u64)>,
) -> Result<(), CliError> {
    let path = dir.join(MARKER_FILE_NAME);
    let io = |source| store_io(&path, source);
    let marker = Marker {
        events_written: written.map(|(events, _)| events),
        last_seq: written.map(|(_, last_seq)| last_seq),
        parameters: serde_json::to_value(parameters).expect("parameters serialize"),
    };
    let bytes = serde_json::to_vec_pretty(&marker).expect("the marker serializes");
    let temporary = dir.join(format!("{MARKER_FILE_NAME}.new"));
    File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(commlog::FILE_MODE)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        })
        .map_err(io)?;
    fs::rename(&temporary, &path).map_err(io)?;
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)
}

/// Tracks the workload, on `threads` threads or in batches of at least `batch` calls (whole
/// messages' calls) on one, drawing progress on a terminal.
fn ingest(
    global: &Global,
    store: &Store,
    spec: Spec,
    threads: usize,
    batch: usize,
) -> Result<Tally, CliError> {
    let progress = global.show_progress().then(|| {
        let bar = indicatif::ProgressBar::new(spec.messages);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} messages  {msg}  ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar
    });
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut next_progress_events = PROGRESS_EVENTS_STEP;
    let mut report_progress = |tally: &Tally| {
        if let Some(bar) = &progress
            && tally.events >= next_progress_events
        {
            next_progress_events += PROGRESS_EVENTS_STEP;
            let rate = tally.events as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_position(tally.sent);
            bar.set_message(format!(
                "{} events  {} events/s",
                count(tally.events),
                count(rate as u64)
            ));
        }
    };
    let mut generator = Generator::new(spec);
    if batch > 1 {
        // The demo's store starts empty, so the workload's message numbers are the ids.
        let (mut calls, mut pending) = (Vec::new(), Vec::with_capacity(batch + 8));
        loop {
            let more = generator.next_message(&mut calls);
            pending.extend(calls.iter().map(Call::tracking_call));
            tally.add(&calls);
            calls.clear();
            if pending.len() >= batch || !more {
                commlog::workload::apply_batch(store, &pending)?;
                pending.clear();
                report_progress(&tally);
            }
            if !more {
                break;
            }
        }
    } else if threads == 1 {
        let mut calls = Vec::new();
        while generator.next_message(&mut calls) {
            commlog::workload::apply_message(store, &calls)?;
            tally.add(&calls);
            report_progress(&tally);
            calls.clear();
        }
    } else {
        std::thread::scope(|scope| -> Result<(), CliError> {
            let mut senders = Vec::new();
            let mut workers = Vec::new();
            for _ in 0..threads {
                let (sender, receiver) = mpsc::sync_channel::<Vec<Call>>(1024);
                senders.push(sender);
                // A thread the system refuses (too many) ends the demo with the OS's error; the
                // threads made so far end as their senders drop.
                let worker = std::thread::Builder::new()
                    .spawn_scoped(scope, move || -> commlog::Result<()> {
                        for calls in receiver {
                            commlog::workload::apply_message(store, &calls)?;
                        }
                        Ok(())
                    })
                    .map_err(|source| {
                        CliError::Store(commlog::Error::Io {
                            path: PathBuf::from(format!(
                                "tracking thread {} of {threads}",
                                workers.len() + 1
                            )),
                            source,
                        })
                    })?;
                workers.push(worker);
            }
            let mut message_index = 0usize;
            loop {
                let mut calls = Vec::with_capacity(5);
                if !generator.next_message(&mut calls) {
                    break;
                }
                tally.add(&calls);
                report_progress(&tally);
                // A worker that stopped on an error is reported when joined.
                if senders[message_index % threads].send(calls).is_err() {
                    break;
                }
                message_index += 1;
            }
            drop(senders);
            for worker in workers {
                worker.join().expect("a tracking thread panicked")?;
            }
            Ok(())
        })?;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(tally)
}

/// Runs Q1 `q1_runs` times and Q2–Q5 over their picks, timing every call.
fn time_queries(
    store: &Store,
    picks: &QueryPicks,
    q1_runs: usize,
) -> Result<Vec<QueryTiming>, CliError> {
    let mut timings = Vec::new();
    let mut time = |query: &'static str,
                    runs: &mut dyn Iterator<Item = commlog::Result<()>>|
     -> Result<(), CliError> {
        timings.push(timing(query, runs)?);
        Ok(())
    };
    let all = StatsFilter::new();
    time(
        "Q1",
        &mut (0..q1_runs).map(|_| store.get_communication_stats(&all).map(drop)),
    )?;
    time(
        "Q2",
        &mut picks.q2_users.iter().map(|user| {
            store
                .get_communication_stats(&StatsFilter::new().user(*user))
                .map(drop)
        }),
    )?;
    time(
        "Q3",
        &mut picks
            .q3_filters
            .iter()
            .map(|filter| store.get_communication_stats(filter).map(drop)),
    )?;
    time(
        "Q4",
        &mut picks.q4_users.iter().map(|user| {
            store
                .get_user_communication_history(*user, Q4_LIMIT)
                .map(drop)
        }),
    )?;
    time(
        "Q5",
        &mut picks
            .q5_filters
            .iter()
            .map(|filter| store.get_communication_stats(filter).map(drop)),
    )?;
    Ok(timings)
}

/// Times each of `runs` (each a call, timed as the iterator makes it), for its p50 and p99.
fn timing(
    query: &'static str,
    runs: &mut dyn Iterator<Item = commlog::Result<()>>,
) -> Result<QueryTiming, CliError> {
    let mut durations = Vec::new();
    loop {
        let started = Instant::now();
        let Some(result) = runs.next() else { break };
        durations.push(started.elapsed());
        result?;
    }
    durations.sort_unstable();
    let percentile = |p: f64| {
        let index = ((durations.len() as f64 * p).ceil() as usize).clamp(1, durations.len()) - 1;
        durations[index].as_secs_f64() * 1e6
    };
    Ok(QueryTiming {
        query,
        runs: durations.len(),
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
    })
}

/// Calls of each query and view timed warm: its picks repeated to this many.
const WARM_CALLS: usize = 10_000;

/// Q1–Q5 and the four views, warm: each one's picks repeated to [`WARM_CALLS`] calls, on a
/// store whose indexes are built, as `cargo bench --bench query` times them (the views'
/// picks: engagement over the Q4 users; channel effectiveness, cost and impact over all
/// messages and then each Q5 window).
fn time_warm(store: &Store, picks: &QueryPicks) -> Result<Vec<QueryTiming>, CliError> {
    fn repeated<T>(picks: &[T]) -> impl Iterator<Item = &T> {
        picks.iter().cycle().take(WARM_CALLS)
    }
    let q1 = [StatsFilter::new()];
    let q2: Vec<StatsFilter> = (picks.q2_users.iter())
        .map(|&user| StatsFilter::new().user(user))
        .collect();
    let windows: Vec<_> = std::iter::once((None, None))
        .chain((picks.q5_filters.iter()).map(|filter| (filter.start, filter.end)))
        .collect();
    let channels: Vec<EffectivenessFilter> = (windows.iter())
        .map(|&(start, end)| EffectivenessFilter {
            start,
            end,
            ..EffectivenessFilter::new()
        })
        .collect();
    let costs: Vec<CostFilter> = (windows.iter())
        .map(|&(start, end)| CostFilter {
            start,
            end,
            ..CostFilter::new()
        })
        .collect();
    let impact: Vec<ImpactFilter> = (windows.iter())
        .map(|&(start, end)| ImpactFilter {
            start,
            end,
            ..ImpactFilter::new()
        })
        .collect();
    let stats = |filter| store.get_communication_stats(filter).map(drop);
    let everything = EngagementFilter::new();
    Ok(vec![
        timing("Q1", &mut repeated(&q1).map(stats))?,
        timing("Q2", &mut repeated(&q2).map(stats))?,
        timing("Q3", &mut repeated(&picks.q3_filters).map(stats))?,
        timing(
            "Q4",
            &mut repeated(&picks.q4_users).map(|&user| {
                store
                    .get_user_communication_history(user, Q4_LIMIT)
                    .map(drop)
            }),
        )?,
        timing("Q5", &mut repeated(&picks.q5_filters).map(stats))?,
        timing(
            "engagement (one user)",
            &mut repeated(&picks.q4_users)
                .map(|&user| store.get_user_engagement(user, &everything).map(drop)),
        )?,
        timing(
            "channel effectiveness",
            &mut repeated(&channels)
                .map(|filter| store.get_channel_effectiveness(filter).map(drop)),
        )?,
        timing(
            "cost report",
            &mut repeated(&costs).map(|filter| store.get_cost_report(filter).map(drop)),
        )?,
        timing(
            "financial impact",
            &mut repeated(&impact).map(|filter| store.get_financial_impact(filter).map(drop)),
        )?,
    ])
}

/// Sets the month's budget, then asks each analytics view once, timing it.
fn analytics_views(store: &Store, engagement_user: UserId) -> Result<Views, CliError> {
    store.set_budget(
        BudgetScope::All,
        DEMO_BUDGET_MONTH,
        DEMO_BUDGET_DOLLARS,
        None,
    )?;
    let ((channels, costs, impact), timings) = time_views(store, engagement_user)?;
    Ok(Views {
        winners: channels.winners,
        budget: costs
            .budgets
            .into_iter()
            .find(|budget| budget.scope == BudgetScope::All),
        impact_by_channel: impact.by_channel,
        timings,
    })
}

/// What the channel effectiveness, cost and impact views answered.
type ViewAnswers = (ChannelReport, CostReport, ImpactReport);

/// Calls each analytics view once (engagement of `engagement_user`, the others over all
/// messages; cost for the demo's budget month), timing each call.
fn time_views(
    store: &Store,
    engagement_user: UserId,
) -> Result<(ViewAnswers, Vec<QueryTiming>), CliError> {
    let mut timings = Vec::new();
    let mut timed = |view: &'static str, started: Instant| {
        let micros = started.elapsed().as_secs_f64() * 1e6;
        timings.push(QueryTiming {
            query: view,
            runs: 1,
            p50_us: micros,
            p99_us: micros,
        });
    };
    let started = Instant::now();
    store.get_user_engagement(engagement_user, &EngagementFilter::new())?;
    timed("engagement (one user)", started);
    let started = Instant::now();
    let channels = store.get_channel_effectiveness(&EffectivenessFilter::new())?;
    timed("channel effectiveness", started);
    let month: Month = DEMO_BUDGET_MONTH.parse()?;
    let started = Instant::now();
    let costs = store.get_cost_report(&CostFilter::new().month(month))?;
    timed("cost report (month)", started);
    let started = Instant::now();
    let impact = store.get_financial_impact(&ImpactFilter::new())?;
    timed("financial impact", started);
    Ok(((channels, costs, impact), timings))
}

fn compare_with_reference(
    reference: &Reference,
    tally: &Tally,
    q1: &CommunicationStats,
) -> Vec<String> {
    let mut mismatches = Vec::new();
    if *tally != reference.tally {
        mismatches.push(format!(
            "call tally {tally:?}, reference {:?}",
            reference.tally
        ));
    }
    let counts = [
        q1.delivered_count,
        q1.opened_count,
        q1.clicked_count,
        q1.action_count,
        q1.outcome_count,
    ];
    let names = [
        "delivered_count",
        "opened_count",
        "clicked_count",
        "action_count",
        "outcome_count",
    ];
    for ((name, got), want) in names.iter().zip(counts).zip(reference.q1_counts) {
        if got != want {
            mismatches.push(format!("Q1 {name} {got}, reference {want}"));
        }
    }
    if q1.total_cost.micros() != reference.q1_cost_micros {
        mismatches.push(format!(
            "Q1 total_cost {} micros, reference {}",
            q1.total_cost.micros(),
            reference.q1_cost_micros
        ));
    }
    if q1.total_impact.micros() != reference.q1_impact_micros {
        mismatches.push(format!(
            "Q1 total_impact {} micros, reference {}",
            q1.total_impact.micros(),
            reference.q1_impact_micros
        ));
    }
    mismatches
}

/// Peak resident memory of this process (VmHWM), where /proc tells it.
fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// Resident anonymous memory of this process (RssAnon: not mapped files), where /proc tells it.
fn anonymous_rss_bytes() -> Option<u64> {
    proc_status_bytes("RssAnon:")
}

/// A `kB` field of /proc/self/status, in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    proc_kib_field("/proc/self/status", field)
}

/// A `kB` field (`field` with its colon) of a /proc file of lines `Name:  value kB`, in bytes.
fn proc_kib_field(path: &str, field: &str) -> Option<u64> {
    let status = fs::read_to_string(path).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn render(report: &Report) -> String {
    let parameters = &report.parameters;
    let mut text = format!(
        "commlog demo: workload mingus-30d, seed {}, {} users, {} messages, sync {}, {} thread(s){}, store {}\n\n",
        parameters.seed,
        count(parameters.users),
        count(parameters.messages),
        serde_json::to_value(parameters.sync)
            .expect("serializes")
            .as_str()
            .unwrap_or("?"),
        parameters.threads,
        match parameters.batch {
            1 => String::new(),
            calls => format!(", batches of {calls} calls"),
        },
        parameters.dir
    );
    let mut tally = Table::new(&["calls", "count"]).right_align(&[1]);
    let t = &report.tally;
    for (name, value) in [
        ("sent", t.sent),
        ("delivered", t.delivered),
        ("opened", t.opened),
        ("action", t.action),
        ("outcome", t.outcome),
        ("events", t.events),
    ] {
        tally.row(vec![name.to_string(), count(value)]);
    }
    text.push_str(&tally.render());
    text.push_str("\nQ1, all messages:\n");
    text.push_str(&output::stats_table(&report.q1));
    text.push_str(&format!(
        "\nreference check (docs/WORKLOAD.md): {}\n",
        report.reference
    ));
    for mismatch in &report.mismatches {
        text.push_str(&format!("  mismatch: {mismatch}\n"));
    }
    text.push_str(&format!(
        "\nSample: history of user {} (first Q4 pick, limit {Q4_LIMIT}), newest first:\n",
        report.sample.history_user
    ));
    text.push_str(&output::messages_table(&report.sample.history));
    let filter = &report.sample.stats_filter;
    text.push_str(&format!(
        "\nSample: stats for channel {} from {} to {} (first Q5 pick):\n",
        filter
            .channel
            .map_or("-".to_string(), |channel| channel.to_string()),
        filter.start.map_or("-".to_string(), output::time),
        filter.end.map_or("-".to_string(), output::time),
    ));
    text.push_str(&output::stats_table(&report.sample.stats));
    text.push_str(&render_views(&report.views));
    let measured = &report.measured;
    text.push_str("\nMeasured:\n");
    let mut phases = Table::new(&["phase", "seconds", "rate"]).right_align(&[1, 2]);
    phases.row(vec![
        match parameters.batch {
            1 => "ingest (tracking calls, final sync)".to_string(),
            calls => format!("ingest (batches of {calls} calls, final sync)"),
        },
        format!("{:.3}", measured.ingest_seconds),
        format!(
            "{} events/s",
            count(measured.ingest_events_per_second as u64)
        ),
    ]);
    phases.row(vec![
        "close".to_string(),
        format!("{:.3}", measured.close_seconds),
        String::new(),
    ]);
    phases.row(vec![
        match measured.reopen_snapshot_events {
            0 => "reopen (no snapshot: full replay)".to_string(),
            events => format!("reopen (snapshot of {} events + the rest)", count(events)),
        },
        format!("{:.3}", measured.reopen_seconds),
        format!(
            "{} events/s",
            count(measured.replay_events_per_second as u64)
        ),
    ]);
    phases.row(vec![
        "first Q1 after reopening".to_string(),
        format!("{:.3}", measured.first_q1_after_reopen_seconds),
        String::new(),
    ]);
    phases.row(vec![
        "open without the snapshot (full replay)".to_string(),
        format!("{:.3}", measured.full_replay_seconds),
        format!(
            "{} events/s",
            count(measured.full_replay_events_per_second as u64)
        ),
    ]);
    phases.row(vec![
        "read-only open decoding on demand + one user's history".to_string(),
        format!("{:.3}", measured.first_history_on_demand_seconds),
        String::new(),
    ]);
    phases.row(vec![
        "read-only open decoding on demand + Q1".to_string(),
        format!("{:.3}", measured.first_q1_on_demand_seconds),
        String::new(),
    ]);
    text.push_str(&phases.render());
    for (title, timings) in [
        ("query", &measured.queries),
        ("warm (picks repeated)", &measured.warm),
        ("first pass after reopening", &measured.queries_after_reopen),
    ] {
        let mut queries = Table::new(&[title, "runs", "p50", "p99"]).right_align(&[1, 2, 3]);
        for timing in timings {
            queries.row(vec![
                timing.query.to_string(),
                count(timing.runs as u64),
                format_micros(timing.p50_us),
                format_micros(timing.p99_us),
            ]);
        }
        text.push('\n');
        text.push_str(&queries.render());
    }
    let mut storage = Table::new(&["storage", "value"]).right_align(&[1]);
    storage.row(vec![
        "bytes on disk".to_string(),
        count(measured.bytes_on_disk),
    ]);
    storage.row(vec![
        "bytes per message".to_string(),
        format!("{:.1}", measured.bytes_per_message),
    ]);
    storage.row(vec![
        "memory per message (RssAnon after ingest)".to_string(),
        measured
            .memory_bytes_per_message
            .map_or("-".to_string(), |bytes| format!("{bytes:.1}")),
    ]);
    storage.row(vec![
        "memory per message (and views' indexes)".to_string(),
        measured
            .memory_with_indexes_bytes_per_message
            .map_or("-".to_string(), |bytes| format!("{bytes:.1}")),
    ]);
    let mib = |bytes: Option<u64>| {
        bytes.map_or("-".to_string(), |bytes| {
            format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
        })
    };
    storage.row(vec![
        "resident memory after the views (VmRSS)".to_string(),
        mib(measured.resident_bytes),
    ]);
    storage.row(vec![
        "  of it in huge pages (AnonHugePages)".to_string(),
        mib(measured.huge_page_bytes),
    ]);
    storage.row(vec![
        "peak memory (VmHWM)".to_string(),
        mib(measured.peak_rss_bytes),
    ]);
    for phase in &measured.phase_peaks {
        let ratio = phase
            .peak_rss_bytes
            .zip(measured.resident_bytes)
            .map_or(String::new(), |(peak, steady)| {
                format!(" ({:.2}x)", peak as f64 / steady.max(1) as f64)
            });
        storage.row(vec![
            format!("  peak while {}", phase.phase),
            format!(
                "{}{ratio}, from {} at its start",
                mib(phase.peak_rss_bytes),
                mib(phase.rss_at_start_bytes)
            ),
        ]);
    }
    text.push('\n');
    text.push_str(&storage.render());
    text
}

fn render_views(views: &Views) -> String {
    let mut text =
        String::from("\nChannel winners (highest performance score per message type):\n");
    let mut winners =
        Table::new(&["message_type", "channel", "score", "cost/response"]).right_align(&[2, 3]);
    for winner in &views.winners {
        winners.row(vec![
            winner.message_type.clone(),
            winner.channel.to_string(),
            format!("{:.2}", winner.performance_score),
            winner
                .cost_per_response
                .map_or("-".to_string(), |cost| cost.to_string()),
        ]);
    }
    text.push_str(&winners.render());
    if let Some(budget) = &views.budget {
        text.push_str(&format!(
            "\nBudget {} ({} channels):\n",
            budget.month, budget.scope
        ));
        let mut table = Table::new(&[
            "budget",
            "spent",
            "utilization",
            "projected",
            "alert",
            "exceeded",
        ])
        .right_align(&[0, 1, 2, 3]);
        table.row(vec![
            budget.budget.to_string(),
            budget.spent.to_string(),
            format!("{:.1}%", budget.utilization),
            budget.projected.to_string(),
            if budget.alert { "yes" } else { "no" }.to_string(),
            if budget.exceeded { "yes" } else { "no" }.to_string(),
        ]);
        text.push_str(&table.render());
    }
    text.push_str("\nAttributed impact per channel:\n");
    let mut impact =
        Table::new(&["channel", "outcomes", "impact", "cost", "roi"]).right_align(&[1, 2, 3, 4]);
    for line in &views.impact_by_channel {
        impact.row(vec![
            line.channel.to_string(),
            count(line.attributed.count),
            line.attributed.amount.to_string(),
            line.cost.to_string(),
            output::roi(line.roi),
        ]);
    }
    text.push_str(&impact.render());
    let mut timings = Table::new(&["view call", "time"]).right_align(&[1]);
    for timing in &views.timings {
        timings.row(vec![timing.query.to_string(), format_micros(timing.p50_us)]);
    }
    text.push('\n');
    text.push_str(&timings.render());
    text
}

fn format_micros(micros: f64) -> String {
    if micros >= 1000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{micros:.1} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_counts_events_only_when_all_are_the_demos() {
        // 683 tracking calls and the budget.
        assert_eq!(demo_events(684, 683, 684), Some((684, 684)));
        // Another writer's event, appended while the demo did not hold the lock.
        assert_eq!(demo_events(685, 683, 685), None);
    }
}
