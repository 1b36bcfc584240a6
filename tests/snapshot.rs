//! Snapshots are a cache of the log: a store opened from one (and the log after it) answers
//! every query as a full replay of the log does, and as the brute-force model of the calls;
//! a snapshot written while calls run, one left half-written by a crash, a damaged one and one
//! that does not belong to the log change no answer: the last two are reported in
//! `OpenReport::ignored_snapshots` and passed over, and a read-only open changes no file.

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use commlog::{
    BudgetScope, Channel, ChannelReport, EffectivenessFilter, IgnoredSnapshot, ImpactFilter,
    ImpactReport, LogSummary, OpenReport, Options, StatsFilter, Store, Tracked,
};
use proptest::prelude::*;
use support::answers::{Answers, answers};
use support::brute::{self, Brute, StatsSpec};
use support::calls::{
    ANCHORS, Call, MESSAGE_TYPES, USER_COUNT, anchor_ms, any_call, at_ms, batch_call, channel,
    track, windows_ms,
};
use support::files::{copy_dir, segments};
use support::script::track_scripted_event;
use support::walk::recompute_checksums;
use tempfile::TempDir;

/// External ids the sends draw from.
const EXTERNAL_IDS: [&str; 3] = ["SM-a", "SM-b", "re_0123"];

/// The snapshot file's name and header (src/snapshot.rs): magic, format version, body length,
/// body crc32, header crc32 over the bytes before it.
const SNAPSHOT_DIRECTORY: &str = "snapshots";
const VERSION_OFFSET: usize = 8;
const BODY_LEN_OFFSET: usize = 12;
const BODY_CRC_OFFSET: usize = 20;
const HEADER_CRC_OFFSET: usize = 24;
const HEADER_BYTES: usize = 28;
/// The log position the body starts with (fixed-width fields): last seq, segment first seq,
/// store id (an option), frame start, frame crc, end, frame count, close marker flag, cursor.
const POSITION_BYTES: usize = 8 + 8 + 9 + 8 + 4 + 8 + 8 + 1 + 24;

fn options(segment_bytes: u64, snapshot_every: u64) -> Options {
    Options {
        segment_bytes,
        snapshot_every,
        ..support::store::options()
    }
}

/// Small segments, and a snapshot at every close that has something new.
fn rolling() -> Options {
    options(512, 1)
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn snapshot_path(data: &Path, last_seq: u64) -> PathBuf {
    data.join(SNAPSHOT_DIRECTORY)
        .join(format!("snapshot-{last_seq:020}"))
}

/// The snapshot files in `data`, oldest first (temporary files too).
fn snapshot_files(data: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(data.join(SNAPSHOT_DIRECTORY)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.map(|entry| entry.unwrap().path()).collect();
    paths.sort();
    paths
}

/// The last seq the newest snapshot in `data` covers (0: none).
fn newest_snapshot_seq(data: &Path) -> u64 {
    snapshot_files(data)
        .iter()
        .filter_map(|path| {
            path.file_name()?
                .to_str()?
                .strip_prefix("snapshot-")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// A copy of the store in `data`, to change.
fn copy_of(data: &Path) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let copy = dir.path().join("data");
    copy_dir(data, &copy);
    (dir, copy)
}

/// A copy of the store in `data` without its snapshots: opening it replays the whole log.
fn full_replay_copy(data: &Path) -> (TempDir, PathBuf) {
    let (dir, copy) = copy_of(data);
    let _ = fs::remove_dir_all(copy.join(SNAPSHOT_DIRECTORY));
    (dir, copy)
}

fn answers_of(store: &Store) -> Answers {
    answers(store, &EXTERNAL_IDS, &windows_ms())
}

/// What a full replay of the log in `data` answers, and its open report.
fn full_replay(data: &Path) -> (Answers, OpenReport) {
    let (_dir, copy) = full_replay_copy(data);
    let store = Store::open_read_only(&copy).unwrap();
    assert_eq!(store.open_report().snapshot, None);
    (answers_of(&store), store.open_report())
}

/// Opens `data` read-only and checks that no file changed; returns the store.
fn open_read_only_changing_nothing(data: &Path) -> Store {
    let before = support::files::snapshot(data);
    let store = Store::open_read_only(data).unwrap();
    assert_eq!(
        support::files::snapshot(data),
        before,
        "a read-only open changed files in {}",
        data.display()
    );
    store
}

// ---------------------------------------------------------------------------------------------
// Random calls, snapshots and reopens.

#[derive(Debug, Clone)]
enum Step {
    Track(Call),
    /// A send carrying an external id: the same send again appends nothing, another send
    /// under it is refused.
    SendWithExternalId {
        user: u64,
        channel: Channel,
        message_type: &'static str,
        cost_micros: i64,
        at_ms: i64,
        external_id: &'static str,
    },
    Snapshot,
    Reopen,
    /// Every query, checked against the model: it builds the indexes of the views over all
    /// users, which the fold then keeps current and a close's snapshot holds.
    Query,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => any_call().prop_map(Step::Track),
        3 => (
            1..=USER_COUNT,
            channel(),
            prop::sample::select(MESSAGE_TYPES.to_vec()),
            prop::sample::select(vec![0i64, 20_000]),
            prop::sample::select(ANCHORS.to_vec()).prop_map(anchor_ms),
            prop::sample::select(EXTERNAL_IDS.to_vec()),
        )
            .prop_map(|(user, channel, message_type, cost_micros, at_ms, external_id)| {
                Step::SendWithExternalId { user, channel, message_type, cost_micros, at_ms, external_id }
            }),
        2 => Just(Step::Snapshot),
        1 => Just(Step::Reopen),
        1 => Just(Step::Query),
    ]
}

/// A writer driven through steps, with the model of its calls and the newest snapshot's seq.
struct Run {
    data: PathBuf,
    options: Options,
    store: Option<Store>,
    model: Brute,
}

impl Run {
    fn new(data: PathBuf, options: Options) -> Run {
        let store = Store::open_with(&data, options.clone()).unwrap();
        Run {
            data,
            options,
            store: Some(store),
            model: Brute::default(),
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::Track(call) => {
                if call.is_report() && self.model.message_count() == 0 {
                    return Ok(());
                }
                let got = track(self.store(), call, self.model.message_count());
                let accepted = self.model.apply(call);
                prop_assert_eq!(got.is_ok(), accepted, "{:?}: {:?}", call, got);
            }
            Step::SendWithExternalId {
                user,
                channel,
                message_type,
                cost_micros,
                at_ms,
                external_id,
            } => {
                let got = self.store().track_message_sent_with(
                    *user,
                    *channel,
                    message_type,
                    *cost_micros as f64 / 1e6,
                    Some(time(*at_ms)),
                    Some(external_id),
                );
                let (_, expected) = self.model.send_with_external_id(
                    *user,
                    *channel,
                    message_type,
                    *cost_micros,
                    *at_ms,
                    external_id,
                );
                prop_assert_eq!(got.ok(), expected);
            }
            Step::Snapshot => {
                // A snapshot of the whole log exists afterwards: this one, or one the snapshot
                // thread wrote in the background.
                let written = self.store().snapshot().unwrap();
                let events = self.model.event_count;
                prop_assert_eq!(newest_snapshot_seq(&self.data), events);
                if let Some(written) = written {
                    prop_assert_eq!(written, snapshot_path(&self.data, events));
                }
            }
            Step::Reopen => {
                self.close();
                let store = Store::open_with(&self.data, self.options.clone()).unwrap();
                self.check_report(&store.open_report())?;
                self.store = Some(store);
            }
            Step::Query => {
                check_model(self.store(), &self.model)?;
                self.store().flush().unwrap();
                let summary = self.store().log_summary().unwrap();
                prop_assert_eq!(summary, summary_of_log(&self.data));
                prop_assert_eq!(summary.events, self.model.event_count);
            }
        }
        Ok(())
    }

    /// Closes the writer; its close writes a snapshot when `snapshot_every` events are new, so
    /// that afterwards fewer than that are past the newest one.
    fn close(&mut self) {
        self.store.take().unwrap().close().unwrap();
        let events = self.model.event_count;
        let every = self.options.snapshot_every;
        let newest = newest_snapshot_seq(&self.data);
        assert!(
            every == 0 || events < newest + every,
            "close leaves {events} events, the newest snapshot covers {newest}"
        );
    }

    /// The report of an open that loaded the newest snapshot and replayed the log after it.
    fn check_report(&self, report: &OpenReport) -> Result<(), TestCaseError> {
        let events = self.model.event_count;
        prop_assert_eq!(report.events, events);
        prop_assert_eq!(report.last_seq, events);
        let newest = newest_snapshot_seq(&self.data);
        let expected = (newest > 0).then(|| snapshot_path(&self.data, newest));
        prop_assert_eq!(&report.snapshot, &expected);
        prop_assert_eq!(report.snapshot_events, newest);
        prop_assert_eq!(&report.ignored_snapshots, &Vec::<IgnoredSnapshot>::new());
        Ok(())
    }
}

/// The log's summary counted from every frame of the log in `data`, one event at a time.
fn summary_of_log(data: &Path) -> LogSummary {
    let mut summary = LogSummary::default();
    let widen = |range: &mut Option<(i64, i64)>, ms: i64| {
        *range = Some(range.map_or((ms, ms), |(low, high)| (low.min(ms), high.max(ms))));
    };
    commlog::audit::read_log(data, |logged| {
        summary.events += 1;
        match logged.event {
            commlog::Event::MessageSent { .. } => summary.messages += 1,
            commlog::Event::FinancialOutcome { .. } => summary.outcomes += 1,
            _ => {}
        }
        widen(&mut summary.event_ms, logged.event.at_ms());
        widen(&mut summary.appended_ms, logged.appended_ms);
    })
    .unwrap();
    summary
}

fn check_model(store: &Store, model: &Brute) -> Result<(), TestCaseError> {
    brute::check(store, model, &EXTERNAL_IDS, &windows_ms()).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn answers_from_a_snapshot_and_the_log_after_it_equal_a_full_replay_and_the_model(
        steps in prop::collection::vec(step(), 0..120),
        segment_bytes in prop::sample::select(vec![512u64, 4096, 1 << 20]),
        snapshot_every in prop::sample::select(vec![1u64, 5, Options::default().snapshot_every]),
    ) {
        let dir = TempDir::new().unwrap();
        let mut run = Run::new(dir.path().join("data"), options(segment_bytes, snapshot_every));
        for step in &steps {
            run.step(step)?;
        }
        run.close();
        let (_full_dir, full_data) = full_replay_copy(&run.data);

        let store = Store::open_with(&run.data, run.options.clone()).unwrap();
        run.check_report(&store.open_report())?;
        let full = Store::open_with(&full_data, run.options.clone()).unwrap();
        let full_report = full.open_report();
        prop_assert_eq!(full_report.snapshot, None);
        prop_assert_eq!(full_report.snapshot_events, 0);
        prop_assert_eq!(full_report.events, store.open_report().events);
        prop_assert_eq!(full_report.last_seq, store.open_report().last_seq);
        prop_assert_eq!(full_report.segments, store.open_report().segments);

        let expected = answers_of(&full);
        prop_assert_eq!(&answers_of(&store), &expected);
        check_model(&store, &run.model)?;
        check_model(&full, &run.model)?;
        let read_only = Store::open_read_only_with(&run.data, run.options.clone()).unwrap();
        run.check_report(&read_only.open_report())?;
        prop_assert_eq!(&answers_of(&read_only), &expected);
        let summary = summary_of_log(&run.data);
        for store in [&store, &full, &read_only] {
            prop_assert_eq!(store.log_summary().unwrap(), summary);
        }
        // Its indexes, if the newest snapshot holds any, equal those built over a fold of the
        // log (they were built part-way, kept current by the fold, written at a close).
        let audit = commlog::audit::audit(&run.data, true).unwrap();
        prop_assert_eq!(&audit.findings, &vec![]);
    }
}

// ---------------------------------------------------------------------------------------------
// A snapshot written while calls run.

const TRACKER_COUNT: usize = 3;

/// Tracks `calls` on `store`, `batch_sizes` at a time in turn (one: a single call, more: a
/// batch); `sent` is the highest message id any tracker has seen, which the reports pick from.
fn track_concurrently(store: &Store, calls: &[Call], batch_sizes: &[usize], sent: &AtomicUsize) {
    let mut rest = calls;
    for batch_size in batch_sizes.iter().cycle() {
        if rest.is_empty() {
            return;
        }
        let (batch, after) = rest.split_at((*batch_size).min(rest.len()));
        rest = after;
        let message_count = sent.load(Ordering::SeqCst);
        let batch: Vec<&Call> = batch
            .iter()
            .filter(|call| message_count > 0 || !call.is_report())
            .collect();
        let ids: Vec<usize> = match batch.as_slice() {
            [] => Vec::new(),
            [call] => match track(store, call, message_count) {
                Ok(Some(message)) => vec![message.id.0 as usize],
                _ => Vec::new(),
            },
            calls => {
                let calls: Vec<commlog::Call<'static>> = calls
                    .iter()
                    .map(|call| batch_call(call, message_count))
                    .collect();
                store
                    .track_batch(&calls)
                    .unwrap()
                    .into_iter()
                    .filter_map(|answer| match answer {
                        Ok(Tracked::Message(id)) => Some(id.0 as usize),
                        _ => None,
                    })
                    .collect()
            }
        };
        for id in ids {
            sent.fetch_max(id, Ordering::SeqCst);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn every_snapshot_written_while_calls_run_opens_to_the_answers_of_a_full_replay(
        calls in prop::collection::vec(prop::collection::vec(any_call(), 50..200), TRACKER_COUNT),
        batch_sizes in prop::collection::vec(1usize..=8, 1..6),
        segment_bytes in prop::sample::select(vec![512u64, 4096, 1 << 20]),
    ) {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        let opts = options(segment_bytes, Options::default().snapshot_every);
        let store = Store::open_with(&data, opts.clone()).unwrap();
        let sent = AtomicUsize::new(0);
        let finished = AtomicUsize::new(0);
        // Each snapshot as it was written: the store keeps only the two newest.
        let written: Mutex<Vec<(PathBuf, Vec<u8>)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for calls in &calls {
                let (store, sent, finished) = (&store, &sent, &finished);
                let batch_sizes = &batch_sizes;
                scope.spawn(move || {
                    track_concurrently(store, calls, batch_sizes, sent);
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
            let (store, finished, written) = (&store, &finished, &written);
            scope.spawn(move || loop {
                // One more snapshot after the trackers finish, so that the last covers all.
                let done = finished.load(Ordering::SeqCst) == TRACKER_COUNT;
                match store.snapshot().unwrap() {
                    Some(path) => {
                        let bytes = fs::read(&path).unwrap();
                        written.lock().unwrap().push((path, bytes));
                    }
                    None => std::thread::yield_now(),
                }
                if done {
                    return;
                }
            });
        });
        store.close().unwrap();
        let (expected, full_report) = full_replay(&data);
        prop_assert!(full_report.events > 0);
        let written = written.into_inner().unwrap();
        prop_assert!(!written.is_empty());
        let seqs: Vec<u64> = written
            .iter()
            .map(|(path, _)| snapshot_seq_of(path))
            .collect();
        prop_assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{:?}", seqs);
        prop_assert_eq!(*seqs.last().unwrap(), full_report.last_seq);

        for (path, bytes) in &written {
            let (_copy_dir, copy) = full_replay_copy(&data);
            let name = path.file_name().unwrap();
            fs::create_dir(copy.join(SNAPSHOT_DIRECTORY)).unwrap();
            fs::write(copy.join(SNAPSHOT_DIRECTORY).join(name), bytes).unwrap();
            let store = Store::open_with(&copy, opts.clone()).unwrap();
            let report = store.open_report();
            prop_assert_eq!(&report.ignored_snapshots, &Vec::<IgnoredSnapshot>::new());
            prop_assert_eq!(report.snapshot, Some(copy.join(SNAPSHOT_DIRECTORY).join(name)));
            prop_assert_eq!(report.snapshot_events, snapshot_seq_of(path));
            prop_assert_eq!(report.events, full_report.events);
            prop_assert_eq!(&answers_of(&store), &expected, "from {:?}", name);
        }
    }
}

/// The last seq a snapshot file's name gives.
fn snapshot_seq_of(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.strip_prefix("snapshot-").unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Damaged and mismatched snapshots.

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn track_events(store: &Store, events: std::ops::Range<u64>) {
    for i in events {
        track_scripted_event(store, i, t0(), USER_COUNT);
    }
}

/// A closed store of 100 events (a budget among them) in segments of `segment_bytes`, with two
/// snapshots, after events 40 and 90; returns them oldest first.
fn store_with_two_snapshots(segment_bytes: u64) -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(
        &data,
        options(segment_bytes, Options::default().snapshot_every),
    )
    .unwrap();
    track_events(&store, 0..40);
    let older = store.snapshot().unwrap().unwrap();
    track_events(&store, 40..89);
    store
        .set_budget(BudgetScope::All, "2025-01", 10.0, Some(50))
        .unwrap();
    let newer = store.snapshot().unwrap().unwrap();
    assert_eq!(newer, snapshot_path(&data, 90));
    track_events(&store, 89..99);
    store.close().unwrap();
    assert_eq!(snapshot_files(&data), [older.clone(), newer.clone()]);
    (dir, data, older, newer)
}

/// The path in the copy `copy` of the file `path` in `data`.
fn in_copy(data: &Path, copy: &Path, path: &Path) -> PathBuf {
    copy.join(path.strip_prefix(data).unwrap())
}

#[test]
fn a_temporary_file_left_by_a_crash_while_writing_a_snapshot_is_never_read() {
    for opts in [options(1 << 20, 0), options(512, 0)] {
        let (_dir, data, older, newer) = store_with_two_snapshots(opts.segment_bytes);
        let bytes = fs::read(&newer).unwrap();
        let (expected, _) = full_replay(&data);
        let prefixes = [
            0,
            1,
            HEADER_BYTES - 1,
            HEADER_BYTES,
            HEADER_BYTES + POSITION_BYTES / 2,
            bytes.len() / 2,
            bytes.len() - 1,
            bytes.len(),
        ];
        for prefix in prefixes {
            let (_copy_dir, copy) = copy_of(&data);
            let newer = in_copy(&data, &copy, &newer);
            let temporary = newer.with_file_name(format!(
                "{}.tmp",
                newer.file_name().unwrap().to_str().unwrap()
            ));
            fs::remove_file(&newer).unwrap();
            fs::write(&temporary, &bytes[..prefix]).unwrap();

            let read_only = open_read_only_changing_nothing(&copy);
            let report = read_only.open_report();
            assert_eq!(
                report.snapshot,
                Some(in_copy(&data, &copy, &older)),
                "{prefix}"
            );
            assert_eq!(report.ignored_snapshots, [], "{prefix}");
            assert_eq!(answers_of(&read_only), expected, "{prefix}");
            drop(read_only);

            // A writer uses the older one too; its next snapshot removes the temporary file.
            let store = Store::open_with(&copy, opts.clone()).unwrap();
            assert_eq!(
                store.open_report().snapshot,
                Some(in_copy(&data, &copy, &older))
            );
            assert_eq!(answers_of(&store), expected, "{prefix}");
            track_events(&store, 99..100);
            let written = store.snapshot().unwrap().unwrap();
            assert_eq!(
                snapshot_files(&copy),
                [in_copy(&data, &copy, &older), written],
                "{prefix}"
            );
        }
    }
}

/// Damage to a snapshot file, and a word the reason for ignoring it must contain.
struct Damage {
    what: String,
    apply: Edit,
    reason: &'static str,
}

/// A change to a snapshot file's bytes.
type Edit = Box<dyn Fn(&mut Vec<u8>)>;

fn damages(len: usize) -> Vec<Damage> {
    let mut list = Vec::new();
    let truncations = [
        (0, "header is short"),
        (HEADER_BYTES - 1, "header is short"),
        (HEADER_BYTES, "header says"),
        (HEADER_BYTES + 20, "header says"),
        (HEADER_BYTES + POSITION_BYTES + 4, "header says"),
        (len / 2, "header says"),
        (len - 1, "header says"),
    ];
    for (keep, reason) in truncations {
        list.push(Damage {
            what: format!("cut to {keep} bytes"),
            apply: Box::new(move |bytes: &mut Vec<u8>| bytes.truncate(keep)),
            reason,
        });
    }
    let flips = [
        // The header: magic, version, body length, body crc, header crc.
        (0, "magic"),
        (VERSION_OFFSET, "header checksum"),
        (BODY_LEN_OFFSET + 1, "header checksum"),
        (BODY_CRC_OFFSET, "header checksum"),
        (HEADER_CRC_OFFSET + 3, "header checksum"),
        // The position: last seq, segment, store id, frame start, cursor.
        (HEADER_BYTES, "body checksum"),
        (HEADER_BYTES + 8, "body checksum"),
        (HEADER_BYTES + 17, "body checksum"),
        (HEADER_BYTES + 25, "body checksum"),
        (HEADER_BYTES + POSITION_BYTES - 1, "body checksum"),
        // The segments covered, the facts, the last byte.
        (HEADER_BYTES + POSITION_BYTES + 10, "body checksum"),
        (len / 2, "body checksum"),
        (len * 3 / 4, "body checksum"),
        (len - 1, "body checksum"),
    ];
    for (offset, reason) in flips {
        for bit in [0u8, 7] {
            list.push(Damage {
                what: format!("bit {bit} of byte {offset} flipped"),
                apply: Box::new(move |bytes: &mut Vec<u8>| bytes[offset] ^= 1 << bit),
                reason,
            });
        }
    }
    list
}

fn damage_file(path: &Path, damage: &Damage) {
    let mut bytes = fs::read(path).unwrap();
    (damage.apply)(&mut bytes);
    fs::write(path, bytes).unwrap();
}

fn assert_ignored(report: &OpenReport, ignored: &[PathBuf], reason: &str, what: &str) {
    let paths: Vec<&PathBuf> = report.ignored_snapshots.iter().map(|i| &i.path).collect();
    assert_eq!(paths, ignored.iter().collect::<Vec<_>>(), "{what}");
    for ignored in &report.ignored_snapshots {
        assert!(
            ignored.reason.contains(reason),
            "{what}: the reason {:?} does not say {reason:?}",
            ignored.reason
        );
    }
}

#[test]
fn a_damaged_newest_snapshot_is_reported_and_the_older_one_used() {
    let (_dir, data, older, newer) = store_with_two_snapshots(512);
    let (expected, full_report) = full_replay(&data);
    let len = fs::read(&newer).unwrap().len();
    for damage in damages(len) {
        let (_copy_dir, copy) = copy_of(&data);
        let newer = in_copy(&data, &copy, &newer);
        damage_file(&newer, &damage);

        let read_only = open_read_only_changing_nothing(&copy);
        let report = read_only.open_report();
        assert_ignored(
            &report,
            std::slice::from_ref(&newer),
            damage.reason,
            &damage.what,
        );
        assert_eq!(
            report.snapshot,
            Some(in_copy(&data, &copy, &older)),
            "{}",
            damage.what
        );
        assert_eq!(report.snapshot_events, 40, "{}", damage.what);
        assert_eq!(report.events, full_report.events, "{}", damage.what);
        assert_eq!(answers_of(&read_only), expected, "{}", damage.what);
        drop(read_only);

        let store = Store::open_with(&copy, rolling()).unwrap();
        assert_ignored(&store.open_report(), &[newer], damage.reason, &damage.what);
        assert_eq!(answers_of(&store), expected, "{}", damage.what);
    }
}

#[test]
fn with_every_snapshot_damaged_the_open_replays_the_whole_log() {
    let (_dir, data, older, newer) = store_with_two_snapshots(512);
    let (expected, full_report) = full_replay(&data);
    let len = fs::read(&older).unwrap().len();
    for damage in damages(len).into_iter().step_by(3) {
        let (_copy_dir, copy) = copy_of(&data);
        let older = in_copy(&data, &copy, &older);
        let newer = in_copy(&data, &copy, &newer);
        damage_file(&older, &damage);
        // The newer one loses its last byte.
        let bytes = fs::read(&newer).unwrap();
        fs::write(&newer, &bytes[..bytes.len() - 1]).unwrap();

        let read_only = open_read_only_changing_nothing(&copy);
        let report = read_only.open_report();
        assert_eq!(report.ignored_snapshots.len(), 2, "{}", damage.what);
        assert_eq!(report.ignored_snapshots[0].path, newer, "{}", damage.what);
        assert_eq!(report.ignored_snapshots[1].path, older, "{}", damage.what);
        assert!(report.ignored_snapshots[1].reason.contains(damage.reason));
        assert_eq!(report.snapshot, None, "{}", damage.what);
        assert_eq!(report.snapshot_events, 0, "{}", damage.what);
        assert_eq!(report.events, full_report.events, "{}", damage.what);
        assert_eq!(answers_of(&read_only), expected, "{}", damage.what);
    }
}

#[test]
fn a_snapshot_of_a_newer_format_version_is_reported_and_ignored() {
    let (_dir, data, older, newer) = store_with_two_snapshots(512);
    let (expected, _) = full_replay(&data);
    // Versions 1 to 4 are read too: a body of this build's version (5) labelled 2 or 1 has its
    // facts read from the log's summary's bytes (their bound ends before it); labelled 3, its
    // indexes part runs on into the facts' directory (which version 3 lacks), and labelled 4
    // into the directory's split of the messages' records (which version 4 lacks).
    for (version, reason) in [
        (1u32, "does not decode".to_string()),
        (2, "does not decode".to_string()),
        (3, "the indexes part has 32 bytes after its end".to_string()),
        (4, "the indexes part has 16 bytes after its end".to_string()),
        (6, "format version 6".to_string()),
        (u32::MAX, format!("format version {}", u32::MAX)),
    ] {
        let (_copy_dir, copy) = copy_of(&data);
        let newer = in_copy(&data, &copy, &newer);
        let mut bytes = fs::read(&newer).unwrap();
        bytes[VERSION_OFFSET..BODY_LEN_OFFSET].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..HEADER_CRC_OFFSET]);
        bytes[HEADER_CRC_OFFSET..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        fs::write(&newer, bytes).unwrap();

        let read_only = open_read_only_changing_nothing(&copy);
        let report = read_only.open_report();
        assert_ignored(&report, &[newer], &reason, "version");
        assert_eq!(report.snapshot, Some(in_copy(&data, &copy, &older)));
        assert_eq!(answers_of(&read_only), expected);
    }
}

#[test]
fn a_snapshot_of_another_store_is_reported_and_ignored() {
    let (_dir, data, _, _) = store_with_two_snapshots(1 << 20);
    // The other store: other events, one segment of the same name, a snapshot at a later seq
    // (the one asked for: none in the background, which could cover the log first).
    let other_dir = TempDir::new().unwrap();
    let other = other_dir.path().join("data");
    let store = Store::open_with(&other, options(1 << 20, 0)).unwrap();
    for i in 0..110 {
        track_scripted_event(&store, i, t0() + chrono::Duration::days(2), USER_COUNT);
    }
    let foreign = store.snapshot().unwrap().unwrap();
    store.close().unwrap();

    let (expected, full_report) = full_replay(&data);
    let copied = data
        .join(SNAPSHOT_DIRECTORY)
        .join(foreign.file_name().unwrap());
    fs::copy(&foreign, &copied).unwrap();
    let read_only = open_read_only_changing_nothing(&data);
    let report = read_only.open_report();
    assert_ignored(
        &report,
        std::slice::from_ref(&copied),
        "another store",
        "foreign",
    );
    assert_eq!(report.snapshot, Some(snapshot_path(&data, 90)));
    assert_eq!(report.events, full_report.events);
    assert_eq!(answers_of(&read_only), expected);
    drop(read_only);

    // Alone, it leaves a full replay.
    for path in snapshot_files(&data) {
        if path != copied {
            fs::remove_file(path).unwrap();
        }
    }
    let store = Store::open_with(&data, options(1 << 20, 1)).unwrap();
    assert_ignored(&store.open_report(), &[copied], "another store", "foreign");
    assert_eq!(store.open_report().snapshot, None);
    assert_eq!(answers_of(&store), expected);
}

/// The newest snapshot is found by its name: a snapshot copied under another seq's name (later
/// or earlier than the one it covers) is reported and ignored, and the one named right used.
#[test]
fn a_snapshot_named_for_another_seq_is_reported_and_ignored() {
    let (_dir, data, older, newer) = store_with_two_snapshots(512);
    let (expected, _) = full_replay(&data);
    for (copied, seq) in [(&older, 95), (&newer, 999_999)] {
        let (_copy_dir, copy) = copy_of(&data);
        let misnamed = snapshot_path(&copy, seq);
        fs::copy(in_copy(&data, &copy, copied), &misnamed).unwrap();
        let read_only = open_read_only_changing_nothing(&copy);
        let report = read_only.open_report();
        assert_ignored(
            &report,
            std::slice::from_ref(&misnamed),
            &format!("named for seq {seq}, it covers the log up to seq"),
            "misnamed",
        );
        assert_eq!(report.snapshot, Some(in_copy(&data, &copy, &newer)));
        assert_eq!(answers_of(&read_only), expected);
    }
}

#[test]
fn a_snapshot_past_a_log_cut_by_a_crash_is_reported_and_ignored() {
    for opts in [options(1 << 20, 0), options(512, 0)] {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        let store = Store::open_with(&data, opts.clone()).unwrap();
        track_events(&store, 0..30);
        let older = store.snapshot().unwrap().unwrap();
        track_events(&store, 30..60);
        let newer = store.snapshot().unwrap().unwrap();
        // What a crash leaves, then the last frame torn.
        let (_copy_dir, copy) = copy_of(&data);
        store.close().unwrap();
        let last = segments(&copy).pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (expected, full_report) = full_replay(&copy);
        assert_eq!(full_report.events, 59);

        let read_only = open_read_only_changing_nothing(&copy);
        let report = read_only.open_report();
        assert_ignored(
            &report,
            &[in_copy(&data, &copy, &newer)],
            "not the log's",
            "cut",
        );
        assert_eq!(report.snapshot, Some(in_copy(&data, &copy, &older)));
        assert_eq!(answers_of(&read_only), expected);
        drop(read_only);

        let store = Store::open_with(&copy, opts.clone()).unwrap();
        let report = store.open_report();
        assert_ignored(
            &report,
            &[in_copy(&data, &copy, &newer)],
            "not the log's",
            "cut",
        );
        assert_eq!(report.snapshot, Some(in_copy(&data, &copy, &older)));
        assert_eq!(report.events, 59);
        assert!(report.quarantined.is_some());
        assert_eq!(answers_of(&store), expected);
        // The writer goes on from the cut, and its next snapshot replaces the one past it.
        track_events(&store, 59..70);
        let written = store.snapshot().unwrap().unwrap();
        assert_eq!(written, snapshot_path(&copy, 70));
        // The two newest stay, though one of them no longer matches the log.
        assert_eq!(
            snapshot_files(&copy),
            [in_copy(&data, &copy, &newer), written.clone()]
        );
        let expected = answers_of(&store);
        store.close().unwrap();
        let store = Store::open_with(&copy, opts).unwrap();
        assert_eq!(store.open_report().snapshot, Some(written));
        assert_eq!(answers_of(&store), expected);
    }
}

#[test]
fn a_snapshot_whose_segment_holds_other_frames_is_reported_and_ignored() {
    for opts in [options(1 << 20, 0), options(512, 0)] {
        // Two writers share a log up to event 40, then each appends its own 40.
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        let store = Store::open_with(&data, opts.clone()).unwrap();
        track_events(&store, 0..40);
        store.flush().unwrap();
        let (_copy_dir, copy) = copy_of(&data);
        track_events(&store, 40..80);
        let theirs = store.snapshot().unwrap().unwrap();
        store.close().unwrap();

        let store = Store::open_with(&copy, opts.clone()).unwrap();
        for i in 40..80 {
            track_scripted_event(&store, i, t0() + chrono::Duration::days(1), USER_COUNT);
        }
        store.close().unwrap();
        let (expected, full_report) = full_replay(&copy);
        assert_eq!(full_report.events, 80);
        let copied = copy
            .join(SNAPSHOT_DIRECTORY)
            .join(theirs.file_name().unwrap());
        fs::create_dir_all(copied.parent().unwrap()).unwrap();
        fs::copy(&theirs, &copied).unwrap();

        let read_only = open_read_only_changing_nothing(&copy);
        let report = read_only.open_report();
        assert_ignored(&report, &[copied], "", "replaced");
        assert_eq!(report.ignored_snapshots.len(), 1);
        assert!(!report.ignored_snapshots[0].reason.is_empty());
        assert_eq!(report.snapshot, None);
        assert_eq!(answers_of(&read_only), expected);
    }
}

#[test]
fn a_snapshot_whose_segments_were_deleted_is_reported_and_ignored() {
    let (_dir, data, _, _) = store_with_two_snapshots(512);
    for segment in segments(&data) {
        fs::remove_file(segment).unwrap();
    }
    let store = Store::open_with(&data, rolling()).unwrap();
    let report = store.open_report();
    assert_eq!(report.ignored_snapshots.len(), 2, "{report:?}");
    assert_eq!(report.snapshot, None);
    assert_eq!(report.events, 0);
    let empty_dir = TempDir::new().unwrap();
    let empty = Store::open_with(empty_dir.path(), rolling()).unwrap();
    assert_eq!(answers_of(&store), answers_of(&empty));
}

/// A segment before the snapshot's position (sealed, read through a map) that was cut short
/// or changed in the frames the snapshot covers makes every open, eager or on demand, ignore
/// the snapshot and replay the log, which names the damage as it does without a snapshot.
#[test]
fn a_snapshot_over_a_sealed_segment_cut_short_or_changed_is_ignored_and_the_damage_named() {
    let (_dir, data, _, _) = store_with_two_snapshots(512);
    let listed = segments(&data);
    let first = listed[0].clone();
    let len = fs::metadata(&first).unwrap().len() as usize;
    // The seal slot (header bytes 40..56), which the header's checksum does not cover: the
    // successor's first seq, its crc32, four zero bytes.
    for what in [
        "cut",
        "changed",
        "seal zeroed",
        "seal flipped",
        "seal naming another successor",
        "bytes appended",
    ] {
        let (_copy_dir, copy) = copy_of(&data);
        let segment = in_copy(&data, &copy, &first);
        let mut bytes = fs::read(&segment).unwrap();
        match what {
            "cut" => bytes.truncate(len - 10),
            "changed" => bytes[len - 20] ^= 0x01,
            "seal zeroed" => bytes[40..56].fill(0),
            "seal flipped" => bytes[41] ^= 0x10,
            "seal naming another successor" => {
                let next: u64 = listed[1]
                    .file_stem()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                bytes[40..48].copy_from_slice(&(next + 1).to_le_bytes());
                let crc = crc32fast::hash(&bytes[40..48]);
                bytes[48..52].copy_from_slice(&crc.to_le_bytes());
            }
            _ => bytes.extend_from_slice(b"\x07garbage"),
        }
        fs::write(&segment, &bytes).unwrap();
        let replay = Options {
            load_snapshot: false,
            ..support::store::options()
        };
        let expected = Store::open_read_only_with(&copy, replay)
            .err()
            .map(|error| error.to_string());
        assert!(expected.is_some(), "{what}: the replay names the damage");
        for on_demand in [false, true] {
            let options = Options {
                decode_on_demand: on_demand,
                ..support::store::options()
            };
            let before = support::files::snapshot(&copy);
            let opened = Store::open_read_only_with(&copy, options).err();
            assert_eq!(
                opened.map(|error| error.to_string()),
                expected,
                "{what}, on demand {on_demand}"
            );
            assert_eq!(
                support::files::snapshot(&copy),
                before,
                "{what}: no file changed"
            );
        }
        // A writer neither: it appends nothing to a log whose damage a replay names.
        let writer = Store::open_with(&copy, support::store::options()).err();
        assert_eq!(
            writer.map(|error| error.to_string()),
            expected,
            "{what}, a writer"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Going on from a snapshot.

/// Tracks `calls` on `store` and in `model` (reports only once a message is sent).
fn track_all(store: &Store, model: &mut Brute, calls: &[Call]) {
    for call in calls {
        if call.is_report() && model.message_count() == 0 {
            continue;
        }
        let got = track(store, call, model.message_count());
        assert_eq!(got.is_ok(), model.apply(call), "{call:?}: {got:?}");
    }
}

/// Sends with every external id, each twice (the repeat appends nothing).
fn send_with_external_ids(store: &Store, model: &mut Brute, at_ms: i64) {
    for (user, external_id) in (1..).zip(EXTERNAL_IDS) {
        for _ in 0..2 {
            let got = store
                .track_message_sent_with(
                    user,
                    Channel::Email,
                    "bill_due",
                    0.02,
                    Some(time(at_ms)),
                    Some(external_id),
                )
                .ok();
            let (_, expected) = model.send_with_external_id(
                user,
                Channel::Email,
                "bill_due",
                20_000,
                at_ms,
                external_id,
            );
            assert_eq!(got, expected);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn a_writer_reopened_from_a_snapshot_goes_on_appending_and_deleting_snapshots_loses_nothing(
        first in prop::collection::vec(any_call(), 40..150),
        second in prop::collection::vec(any_call(), 1..150),
    ) {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        let mut model = Brute::default();
        let store = Store::open_with(&data, rolling()).unwrap();
        send_with_external_ids(&store, &mut model, anchor_ms(ANCHORS[1]));
        track_all(&store, &mut model, &first);
        store.close().unwrap();
        let first_events = model.event_count;

        let store = Store::open_with(&data, rolling()).unwrap();
        prop_assert_eq!(store.open_report().snapshot, Some(snapshot_path(&data, first_events)));
        prop_assert!(store.open_report().segments > 1);
        check_model(&store, &model)?;
        track_all(&store, &mut model, &second);
        send_with_external_ids(&store, &mut model, anchor_ms(ANCHORS[2]));
        store.close().unwrap();

        let (_full_dir, full_data) = full_replay_copy(&data);
        let store = Store::open_with(&data, rolling()).unwrap();
        prop_assert_eq!(
            store.open_report().snapshot,
            Some(snapshot_path(&data, model.event_count))
        );
        let full = Store::open_with(&full_data, rolling()).unwrap();
        prop_assert_eq!(full.open_report().snapshot, None);
        prop_assert_eq!(full.open_report().events, model.event_count);
        let expected = answers_of(&full);
        prop_assert_eq!(&answers_of(&store), &expected);
        check_model(&store, &model)?;
        check_model(&full, &model)?;
        drop(store);

        let read_only = Store::open_read_only(&data).unwrap();
        prop_assert_eq!(
            read_only.open_report().snapshot,
            Some(snapshot_path(&data, model.event_count))
        );
        prop_assert_eq!(&answers_of(&read_only), &expected);
    }
}

#[test]
fn a_small_store_closed_with_the_default_options_writes_no_snapshot() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(&data, support::store::options()).unwrap();
    track_events(&store, 0..50);
    store.close().unwrap();
    assert_eq!(snapshot_files(&data), Vec::<PathBuf>::new());
    let store = Store::open_with(&data, support::store::options()).unwrap();
    assert_eq!(store.open_report().snapshot, None);
    assert_eq!(store.open_report().events, 50);
}

#[test]
fn a_snapshot_is_written_only_when_the_log_holds_something_new() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(&data, options(1 << 20, 10)).unwrap();
    assert_eq!(store.snapshot().unwrap(), None);
    track_events(&store, 0..5);
    assert_eq!(store.snapshot().unwrap(), Some(snapshot_path(&data, 5)));
    assert_eq!(store.snapshot().unwrap(), None);
    track_events(&store, 5..9);
    // Four new events: fewer than `snapshot_every`, so the close writes none.
    store.close().unwrap();
    assert_eq!(snapshot_files(&data), [snapshot_path(&data, 5)]);
    let store = Store::open_with(&data, options(1 << 20, 4)).unwrap();
    assert_eq!(store.open_report().snapshot, Some(snapshot_path(&data, 5)));
    assert_eq!(store.open_report().snapshot_events, 5);
    // Four new events, `snapshot_every` 4: the close writes one.
    store.close().unwrap();
    assert_eq!(
        snapshot_files(&data),
        [snapshot_path(&data, 5), snapshot_path(&data, 9)]
    );
    let store = Store::open_with(&data, options(1 << 20, 1)).unwrap();
    track_events(&store, 9..10);
    store.close().unwrap();
    assert_eq!(
        snapshot_files(&data),
        [snapshot_path(&data, 9), snapshot_path(&data, 10)]
    );

    let read_only = Store::open_read_only(&data).unwrap();
    assert!(matches!(
        read_only.snapshot(),
        Err(commlog::Error::ReadOnly {
            operation: "snapshot"
        })
    ));
}

#[test]
fn a_read_only_open_uses_the_snapshot_and_changes_no_file() {
    let (_dir, data, _, newer) = store_with_two_snapshots(512);
    let (expected, full_report) = full_replay(&data);
    let read_only = open_read_only_changing_nothing(&data);
    let report = read_only.open_report();
    assert_eq!(report.snapshot, Some(newer));
    assert_eq!(report.snapshot_events, 90);
    assert_eq!(report.events, full_report.events);
    assert_eq!(report.last_seq, full_report.last_seq);
    assert_eq!(report.segments, full_report.segments);
    assert_eq!(answers_of(&read_only), expected);
}

#[test]
fn a_close_writes_a_snapshot_once_the_tail_is_an_eighth_of_the_newest_and_65536_events() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let every = Options::default().snapshot_every;
    let tail_min = commlog::SNAPSHOT_AT_CLOSE_MIN;
    let reopen = || Store::open_with(&data, options(1 << 26, every)).unwrap();
    // Without a snapshot: one event short of the floor writes none, the floor writes one.
    let store = reopen();
    track_events(&store, 0..tail_min - 1);
    store.close().unwrap();
    assert_eq!(snapshot_files(&data), Vec::<PathBuf>::new());
    let store = reopen();
    track_events(&store, tail_min - 1..tail_min);
    store.close().unwrap();
    assert_eq!(snapshot_files(&data), [snapshot_path(&data, tail_min)]);
    // Past a snapshot of 8 × 65,536 events, the tail must reach an eighth of it.
    let covered = 8 * tail_min + 8;
    let store = reopen();
    track_events(&store, tail_min..covered);
    assert!(store.snapshot().unwrap().is_some());
    track_events(&store, covered..covered + covered / 8 - 1);
    store.close().unwrap();
    assert_eq!(newest_snapshot_seq(&data), covered);
    let store = reopen();
    track_events(&store, covered + covered / 8 - 1..covered + covered / 8);
    store.close().unwrap();
    assert_eq!(newest_snapshot_seq(&data), covered + covered / 8);
    let store = reopen();
    assert_eq!(store.open_report().snapshot_events, covered + covered / 8);
    assert_eq!(store.open_report().events, covered + covered / 8);
}

// ---------------------------------------------------------------------------------------------
// A snapshot of thousands of messages: its records are decoded chunk by chunk, as they are read
// or changed.

fn any_send() -> impl Strategy<Value = Call> {
    (
        1..=USER_COUNT,
        channel(),
        prop::sample::select(MESSAGE_TYPES.to_vec()),
        prop_oneof![Just(0i64), 1..=60_000i64],
        at_ms(),
    )
        .prop_map(
            |(user, channel, message_type, cost_micros, at_ms)| Call::Sent {
                user,
                channel,
                message_type,
                cost_micros,
                at_ms,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn a_store_reopened_from_a_snapshot_of_thousands_of_messages_answers_as_the_model(
        sends in prop::collection::vec(any_send(), 3_000..3_600),
        before in prop::collection::vec(any_call(), 200..400),
        after in prop::collection::vec(any_call(), 200..400),
        decode_on_demand in any::<bool>(),
        count_totals in any::<bool>(),
        load_sums_by_time in any::<bool>(),
    ) {
        let dir = TempDir::new().unwrap();
        let options = Options {
            decode_on_demand,
            count_totals,
            load_sums_by_time,
            ..options(1 << 20, 1_000_000)
        };
        let mut run = Run::new(dir.path().join("data"), options);
        for call in sends.iter().chain(&before) {
            run.step(&Step::Track(call.clone()))?;
        }
        run.step(&Step::Snapshot)?;
        run.step(&Step::Reopen)?;
        // A reader first reads a few users' messages, then every one (the model's check).
        let read_only = Store::open_read_only_with(&run.data, run.options.clone()).unwrap();
        run.check_report(&read_only.open_report())?;
        for user in [1, 2] {
            let mut expected = run.model.history(user);
            expected.truncate(5);
            let got = read_only.get_user_communication_history(user, 5).unwrap();
            prop_assert_eq!(got, expected);
        }
        check_model(&read_only, &run.model)?;
        // The writer changes records it has not read yet, in every chunk.
        for call in &after {
            run.step(&Step::Track(call.clone()))?;
        }
        check_model(run.store(), &run.model)?;
        run.step(&Step::Reopen)?;
        check_model(run.store(), &run.model)?;
        run.close();
        let (expected, _) = full_replay(&run.data);
        let read_only = Store::open_read_only_with(&run.data, run.options.clone()).unwrap();
        prop_assert!(read_only.open_report().snapshot.is_some());
        prop_assert_eq!(&answers_of(&read_only), &expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// A writer opened on demand decodes the rest of its snapshot on a thread of its own
    /// (`Store::decode_rest`) while calls are tracked and answered on another, and answers as
    /// the model throughout, over time ranges too (the snapshot holds the message rollup, whose
    /// slices are decoded by the thread, by a range that cuts them, or by the fold, whichever
    /// comes first). Once the rest is decoded, the snapshot's file is no longer read: its bytes
    /// zeroed in place change no answer (a record, a user's lists or a slice's items read from
    /// the file then would be refused as changed on disk).
    #[test]
    fn a_writer_decoding_the_rest_of_its_snapshot_while_calls_run_answers_as_the_model(
        sends in prop::collection::vec(any_send(), 5_000..5_600),
        before in prop::collection::vec(any_call(), 100..200),
        during in prop::collection::vec(any_call(), 100..300),
    ) {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        let mut model = Brute::default();
        let eager = options(1 << 20, 1_000_000);
        let store = Store::open_with(&data, eager.clone()).unwrap();
        // Many more users than the model's, so that the users' lists take batches too, and
        // enough events that the close writes a snapshot, with the indexes built by then.
        let others: Vec<Call> = (0..commlog::SNAPSHOT_AT_CLOSE_MIN)
            .map(|n| Call::Sent {
                user: USER_COUNT + 10 + n,
                channel: Channel::ALL[n as usize % Channel::ALL.len()],
                message_type: MESSAGE_TYPES[0],
                cost_micros: 1_000,
                at_ms: anchor_ms(ANCHORS[2]) + n as i64 * 1_000,
            })
            .collect();
        track_all(&store, &mut model, &others);
        track_all(&store, &mut model, &sends);
        track_all(&store, &mut model, &before);
        // A window builds the message rollup, which the close's snapshot then holds: read on
        // demand, its slices' items stay in the file for the calls and the decoding thread.
        // Besides the model's windows, some cut the others' ten-minute slices in mid-minute.
        let others_ms = |slice: i64, ms: i64| anchor_ms(ANCHORS[2]) + slice * 600_000 + ms;
        let cutting_others =
            (0..4).map(|k| (others_ms(7 * k + 1, 123_456), others_ms(7 * k + 4, 234_567)));
        let windows: Vec<StatsSpec> = (windows_ms().into_iter().chain(cutting_others))
            .map(|(start_ms, end_ms)| StatsSpec {
                start_ms: Some(start_ms),
                end_ms: Some(end_ms),
                ..StatsSpec::default()
            })
            .collect();
        store.get_communication_stats(&windows[0].to_filter()).unwrap();
        store.close().unwrap();

        let on_demand = Options { decode_on_demand: true, ..eager };
        let store = Store::open_with(&data, on_demand).unwrap();
        let snapshot = store.open_report().snapshot.unwrap();
        let stop = AtomicBool::new(false);
        let decoded = std::thread::scope(|scope| {
            let decoder = scope.spawn(|| store.decode_rest(&stop));
            for (round, calls) in during.chunks(50).enumerate() {
                track_all(&store, &mut model, calls);
                let user = round as u64 % USER_COUNT + 1;
                let got = store.get_user_communication_history(user, 20).unwrap();
                let mut expected = model.history(user);
                expected.truncate(20);
                assert_eq!(got, expected, "user {user} after {round} rounds");
                let window = &windows[round % windows.len()];
                let got = store.get_communication_stats(&window.to_filter()).unwrap();
                assert_eq!(got, model.stats(window), "{window:?} after {round} rounds");
            }
            decoder.join().unwrap()
        });
        prop_assert!(decoded);
        zero_in_place(&snapshot);
        check_model(&store, &model)?;
        for window in &windows {
            let got = store.get_communication_stats(&window.to_filter()).unwrap();
            prop_assert_eq!(got, model.stats(window), "{:?}", window);
        }
        store.close().unwrap();
    }
}

/// `Store::decode_rest` stops at once when its flag is set, leaving what is not decoded to be
/// decoded on demand, and has nothing to do for a store decoded whole or opened without a
/// snapshot. Once it is done, nothing is read from the snapshot's file: its messages, its
/// users' lists and its indexes' slices are decoded.
#[test]
fn decoding_the_rest_stops_when_asked_and_has_nothing_to_do_for_a_store_decoded_whole() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(&data, support::store::options()).unwrap();
    let (set, unset) = (AtomicBool::new(true), AtomicBool::new(false));
    track_events(&store, 0..3_000);
    assert!(store.decode_rest(&unset), "no snapshot: nothing to decode");
    // Enough events that the close writes a snapshot, which holds the indexes the queries over
    // time ranges build.
    track_events(&store, 3_000..commlog::SNAPSHOT_AT_CLOSE_MIN);
    let expected = answers_of(&store);
    store.close().unwrap();

    let whole = Store::open_read_only_with(&data, support::store::options()).unwrap();
    assert!(whole.open_report().snapshot.is_some());
    assert!(whole.decode_rest(&set), "decoded whole: nothing to decode");
    drop(whole);
    let on_demand = Options {
        decode_on_demand: true,
        ..support::store::options()
    };
    let store = Store::open_read_only_with(&data, on_demand.clone()).unwrap();
    assert!(!store.decode_rest(&set), "stopped before the first step");
    assert_eq!(answers_of(&store), expected);
    drop(store);
    // Once the rest is decoded, nothing is read from the file: its bytes zeroed in place change
    // no answer.
    let store = Store::open_read_only_with(&data, on_demand).unwrap();
    assert!(store.decode_rest(&unset));
    zero_in_place(&store.open_report().snapshot.unwrap());
    assert_eq!(answers_of(&store), expected);
}

/// Overwrites the file's bytes with zeros, in place (a mapping of it sees them).
fn zero_in_place(path: &Path) {
    let len = fs::metadata(path).unwrap().len() as usize;
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all(&vec![0; len])
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The indexes a snapshot holds.

/// Sends 1,500 messages into one ten-minute slice (past the 1,024 that give a slice of the
/// message rollup a bucket per minute) and 300 outcomes into another (past the 128 that give the
/// outcome credits sums per minute), asks every query (which builds the indexes), then tracks
/// more into the same slices, out of order, with reports and outcomes that re-credit earlier
/// ones (the fold keeps the indexes current, minutes included). The close's snapshot holds the
/// indexes; a writer and a read-only store opened from it answer every query, over windows that
/// cut those minutes, as a full replay does (so do read-only stores that read past its sums by
/// time: the rollup, and the credits' buckets and dense minutes, then filed again from each
/// outcome's credit), and a deep audit finds them equal to the indexes built over a fold of the
/// log.
#[test]
fn indexes_with_busy_minutes_load_from_a_snapshot_and_answer_as_a_full_replay() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(&data, options(1 << 20, 1)).unwrap();
    let slice_ms = 600_000;
    let t0 = t0().timestamp_millis();
    let outcome_slice = t0 + 3 * slice_ms;
    let user = |i: i64| (i % USER_COUNT as i64 + 1) as u64;
    let send = |i: i64, at_ms: i64| {
        let channel = Channel::ALL[(i % 4) as usize];
        let message_type = MESSAGE_TYPES[(i % 3) as usize];
        store
            .track_message_sent_at(user(i), channel, message_type, 0.001, time(at_ms))
            .unwrap()
            .id
    };
    let mut sent = Vec::new();
    for i in 0..1_500 {
        sent.push(send(i, t0 + i * 397));
    }
    for (i, &message) in sent.iter().enumerate().step_by(3) {
        let at = time(t0 + i as i64 * 397 + 1_000);
        store.track_message_delivered(message, Some(at)).unwrap();
        if i % 2 == 0 {
            store.track_message_opened(message, Some(at)).unwrap();
        }
    }
    for i in 0..300 {
        let at = time(outcome_slice + i * 1_999);
        store
            .track_financial_outcome_at(user(i), "bill_paid_on_time", 12.5, at)
            .unwrap();
    }
    let windows = [
        (t0 + 90_500, t0 + 421_003),
        (t0 - 1, t0 + 59_999),
        (outcome_slice + 61_000, outcome_slice + 299_999),
        (t0 + 1_000, outcome_slice + 123_456),
    ];
    let before = answers(&store, &EXTERNAL_IDS, &windows);

    // More into the same slices, after the indexes are built: sends out of time order, reports
    // that change messages' kinds and engage them within the outcomes' window, more outcomes.
    for i in 0..200 {
        sent.push(send(i, t0 + 599_000 - i * 2_011));
    }
    for (i, &message) in sent.iter().enumerate().skip(1).step_by(5) {
        let at = time(outcome_slice + (i as i64 % 280) * 1_999 - 500);
        store.track_message_opened(message, Some(at)).unwrap();
        if i % 4 == 1 {
            store
                .track_user_action(message, "upgrade_plan", Some(at))
                .unwrap();
        }
    }
    for i in 300..360 {
        let at = time(outcome_slice + (i % 300) * 1_999 + 7);
        store
            .track_financial_outcome_at(user(i), "savings_goal_met", 3.0, at)
            .unwrap();
    }
    let after = answers(&store, &EXTERNAL_IDS, &windows);
    assert_ne!(before, after, "the later calls change the answers");
    store.close().unwrap();

    let (_full_dir, full_data) = full_replay_copy(&data);
    let full = Store::open_read_only(&full_data).unwrap();
    let expected = answers(&full, &EXTERNAL_IDS, &windows);
    assert_eq!(after, expected);
    let read_only = Store::open_read_only(&data).unwrap();
    let writer = Store::open_with(&data, options(1 << 20, 1)).unwrap();
    // Read-only opens that read past the sums by time (the rollup's and the credits' dense
    // slices too), decoded whole and on demand: the rollup is built again on first use, the
    // credits' sums by time filed from the credits.
    let past_sums_by_time = |decode_on_demand| {
        let options = Options {
            decode_on_demand,
            load_sums_by_time: false,
            ..Options::default()
        };
        Store::open_read_only_with(&data, options).unwrap()
    };
    for store in [
        &read_only,
        &writer,
        &past_sums_by_time(false),
        &past_sums_by_time(true),
    ] {
        let report = store.open_report();
        assert_eq!(report.snapshot, Some(snapshot_path(&data, report.events)));
        assert_eq!(report.ignored_snapshots, vec![]);
        assert_eq!(answers(store, &EXTERNAL_IDS, &windows), expected);
    }
    drop(writer);
    let audit = commlog::audit::audit(&data, true).unwrap();
    assert_eq!(audit.findings, vec![]);
    assert_eq!(audit.snapshots[0].usage, commlog::audit::SnapshotUse::Used);
}

/// The views over every user and all time, unfiltered and by channel and type: what a store
/// opened without the snapshot's sums by time answers from the credits alone.
fn views_over_all_time(store: &Store) -> (Vec<ChannelReport>, Vec<ImpactReport>) {
    let mut channel_filters = vec![EffectivenessFilter::new()];
    let mut impact_filters = vec![ImpactFilter::new()];
    for message_type in ["budget_alert", "savings_nudge", "never_sent"] {
        channel_filters.push(EffectivenessFilter {
            message_type: Some(message_type.to_string()),
            ..EffectivenessFilter::new()
        });
        impact_filters.push(ImpactFilter {
            message_type: Some(message_type.to_string()),
            ..ImpactFilter::new()
        });
    }
    impact_filters.extend(Channel::ALL.map(|channel| ImpactFilter {
        channel: Some(channel),
        ..ImpactFilter::new()
    }));
    let channels = (channel_filters.iter())
        .map(|filter| store.get_channel_effectiveness(filter).unwrap())
        .collect();
    let impact = (impact_filters.iter())
        .map(|filter| store.get_financial_impact(filter).unwrap())
        .collect();
    (channels, impact)
}

/// A writer that reads a snapshot's credits past their sums by time (`load_sums_by_time`
/// false) answers the views over all time as a store given the same calls that built its
/// indexes; more calls (outcomes, and deliveries and opens that credit earlier outcomes anew)
/// keep them so before and after a query over a time range files the sums by time from the
/// credits; its close writes the credits whole, with those sums, and a store opened from that
/// snapshot, or from one whose sums were never filed before the close, answers as the other, as
/// a deep audit finds.
#[test]
fn credits_taken_without_their_sums_by_time_fold_and_are_written_whole() {
    use commlog::workload::{Generator, Spec, apply};
    let spec = Spec {
        seed: 11,
        users: 300,
        messages: 6_000,
    };
    let calls: Vec<_> = Generator::calls(spec).collect();
    let (first, rest) = calls.split_at(calls.len() / 2);
    let (middle, last) = rest.split_at(rest.len() / 2);
    let window = (
        Utc.with_ymd_and_hms(2025, 1, 8, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 1, 19, 6, 30, 0).unwrap(),
    );
    let over_a_range = |store: &Store| {
        let (start, end) = (Some(window.0), Some(window.1));
        let channel = EffectivenessFilter {
            start,
            end,
            ..EffectivenessFilter::new()
        };
        let impact = ImpactFilter {
            start,
            end,
            ..ImpactFilter::new()
        };
        let stats = StatsFilter::new().start(window.0).end(window.1);
        (
            store.get_channel_effectiveness(&channel).unwrap(),
            store.get_financial_impact(&impact).unwrap(),
            store.get_communication_stats(&stats).unwrap(),
        )
    };
    let read_past = Options {
        load_sums_by_time: false,
        ..options(1 << 20, 1)
    };
    for range_asked in [false, true] {
        let dir = TempDir::new().unwrap();
        let (data, model_data) = (dir.path().join("data"), dir.path().join("model"));
        // The model is given every call with its indexes built, and keeps them by the fold.
        let model = Store::open_with(&model_data, options(1 << 20, 1)).unwrap();
        let store = Store::open_with(&data, options(1 << 20, 1)).unwrap();
        for call in first {
            apply(&store, call).unwrap();
            apply(&model, call).unwrap();
        }
        over_a_range(&store);
        over_a_range(&model);
        store.close().unwrap();
        let store = Store::open_with(&data, read_past.clone()).unwrap();
        assert!(store.open_report().snapshot.is_some());
        assert_eq!(views_over_all_time(&store), views_over_all_time(&model));
        for (part, calls) in [middle, last].into_iter().enumerate() {
            for call in calls {
                apply(&store, call).unwrap();
                apply(&model, call).unwrap();
            }
            assert_eq!(views_over_all_time(&store), views_over_all_time(&model));
            if range_asked && part == 0 {
                assert_eq!(over_a_range(&store), over_a_range(&model));
            }
        }
        store.close().unwrap();
        let expected = answers_of(&model);
        for options in [support::store::options(), read_past.clone()] {
            let reopened = Store::open_read_only_with(&data, options).unwrap();
            let report = reopened.open_report();
            assert_eq!(report.snapshot, Some(snapshot_path(&data, report.events)));
            assert_eq!(views_over_all_time(&reopened), views_over_all_time(&model));
            assert_eq!(answers_of(&reopened), expected);
        }
        let audit = commlog::audit::audit(&data, true).unwrap();
        assert_eq!(audit.findings, vec![]);
        assert_eq!(audit.snapshots[0].usage, commlog::audit::SnapshotUse::Used);
    }
}

/// The indexes part of the snapshot at `path` (version 5: it ends where the 40 bytes of the
/// facts' directory and indexes_at begin).
fn indexes_part_of(path: &Path) -> Vec<u8> {
    let bytes = fs::read(path).unwrap();
    let version = u32::from_le_bytes(
        bytes[VERSION_OFFSET..VERSION_OFFSET + 4]
            .try_into()
            .unwrap(),
    );
    assert_eq!(version, 5, "{}", path.display());
    let end = bytes.len() - 40;
    let at = HEADER_BYTES + u64::from_le_bytes(bytes[end + 32..].try_into().unwrap()) as usize;
    bytes[at..end].to_vec()
}

/// A writer that leaves the indexes of the snapshot it opens unread (`Options::load_indexes`
/// false), decoded on demand or whole, builds them before the snapshot its close writes: that
/// snapshot holds the same indexes, byte for byte, as one written by a writer that took them and
/// kept them by the fold, and both answer as the fold of every call.
#[test]
fn a_writer_that_left_the_indexes_unread_builds_them_for_its_close_snapshot() {
    use commlog::workload::{Generator, Spec, apply};
    let spec = Spec {
        seed: 5,
        users: 1_000,
        messages: 42_000,
    };
    let calls: Vec<_> = Generator::calls(spec).collect();
    let (first, rest) = calls.split_at(calls.len() - 5_000);
    // No background snapshot: the first calls' close writes the one the writers open (65,536
    // events are past none), and after it none comes due before the last call (the log would
    // have to grow by half of what it covers); the writers' close writes the next.
    let (none_in_the_background, every) = (1 << 40, 1_000);
    assert!(first.len() >= 65_536 && rest.len() < first.len() / 2 && rest.len() > every);
    for on_demand in [false, true] {
        let dir = TempDir::new().unwrap();
        let (data, model_data) = (dir.path().join("data"), dir.path().join("model"));
        for data in [&data, &model_data] {
            let store = Store::open_with(data, options(1 << 20, none_in_the_background)).unwrap();
            for call in first {
                apply(&store, call).unwrap();
            }
            // The queries over time ranges build both indexes.
            answers_of(&store);
            store.close().unwrap();
            let indexes = indexes_part_of(&snapshot_path(data, newest_snapshot_seq(data)));
            assert_eq!(
                indexes[0], 1,
                "the close's snapshot holds the message rollup"
            );
        }
        let model = Store::open_with(&model_data, options(1 << 20, every as u64)).unwrap();
        let unread = Options {
            decode_on_demand: on_demand,
            load_indexes: false,
            ..options(1 << 20, every as u64)
        };
        let store = Store::open_with(&data, unread).unwrap();
        assert!(store.open_report().snapshot.is_some());
        for call in rest {
            apply(&store, call).unwrap();
            apply(&model, call).unwrap();
        }
        store.close().unwrap();
        let expected = answers_of(&model);
        model.close().unwrap();
        let seq = newest_snapshot_seq(&data);
        assert_eq!(seq, calls.len() as u64, "on demand: {on_demand}");
        assert_eq!(newest_snapshot_seq(&model_data), seq);
        let indexes = indexes_part_of(&snapshot_path(&data, seq));
        assert_eq!(indexes[0], 1, "on demand: {on_demand}");
        assert_eq!(
            indexes,
            indexes_part_of(&snapshot_path(&model_data, seq)),
            "on demand: {on_demand}"
        );
        let reopened = Store::open_read_only(&data).unwrap();
        assert_eq!(answers_of(&reopened), expected);
        assert_eq!(full_replay(&data).0, expected);
    }
}

/// A snapshot of tens of megabytes, read in runs: decoded whole, after its checksum; decoded on
/// demand, with the checksum taken as each thread reads its part (the messages' records before
/// the directory's split and from it, the users' lists, the indexes), joined once all are read. Unchanged, it loads every way with the
/// same answers; a byte flipped anywhere (in each part, at its edges, in the trailer) is the
/// same body checksum mismatch, with the same computed value, however the store is opened.
#[test]
fn a_byte_flipped_in_a_large_snapshot_is_a_checksum_mismatch_however_it_is_read() {
    use commlog::workload::{Generator, Spec};
    let data = TempDir::new().unwrap();
    let store = Store::open_with(data.path(), options(64 << 20, 0)).unwrap();
    let spec = Spec {
        seed: 7,
        users: 20_000,
        messages: 300_000,
    };
    for call in Generator::calls(spec) {
        commlog::workload::apply(&store, &call).unwrap();
    }
    // The views over all users build the indexes the snapshot then holds.
    let expected = answers_of(&store);
    let snapshot = store.snapshot().unwrap().unwrap();
    store.close().unwrap();
    assert_eq!(snapshot_files(data.path()), std::slice::from_ref(&snapshot));
    let bytes = fs::read(&snapshot).unwrap();
    assert!(bytes.len() > 16 << 20, "{} bytes", bytes.len());
    // (decoded on demand, indexes read, their sums by time among them)
    let modes = [
        (false, false, true),
        (false, true, true),
        (false, true, false),
        (true, false, true),
        (true, true, true),
        (true, true, false),
    ];
    let open = |dir: &Path, (on_demand, indexes, sums_by_time): (bool, bool, bool)| {
        let options = Options {
            decode_on_demand: on_demand,
            load_indexes: indexes,
            load_sums_by_time: sums_by_time,
            ..support::store::options()
        };
        Store::open_read_only_with(dir, options).unwrap()
    };
    for mode in modes {
        let store = open(data.path(), mode);
        assert_eq!(store.open_report().snapshot.as_ref(), Some(&snapshot));
        assert_eq!(answers_of(&store), expected, "{mode:?}");
    }
    // Where the facts' directory puts the outcomes and the users, and where the indexes begin
    // (offsets in the body, after the header).
    let trailer = |from_end: usize| {
        let at = bytes.len() - from_end;
        HEADER_BYTES + u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize
    };
    let (outcomes_at, users_at, indexes_at) = (trailer(24), trailer(16), trailer(8));
    // The split: the message halfway, the first of a run of 1,024, and where it begins.
    let split_index = trailer(40) - HEADER_BYTES;
    let split_at = trailer(32);
    assert_eq!(split_index, 300_000 / 2 / 1024 * 1024);
    assert!(HEADER_BYTES + (4 << 20) < split_at && split_at + (4 << 20) < outcomes_at);
    assert!(
        HEADER_BYTES + (8 << 20) < outcomes_at,
        "the messages span several runs"
    );
    assert!(outcomes_at < users_at && users_at + (2 << 20) < indexes_at);
    let mut offsets: Vec<usize> = (0..16)
        .map(|part| HEADER_BYTES + (bytes.len() - HEADER_BYTES) * part / 16 + part)
        .collect();
    for edge in [
        split_at,
        outcomes_at,
        users_at,
        indexes_at,
        bytes.len() - 40,
    ] {
        offsets.extend([edge - 1, edge, edge + 1]);
    }
    offsets.extend([(users_at + indexes_at) / 2, bytes.len() - 1]);
    // Why every mode ignores the snapshot changed to `changed`: the same reason each way.
    let reason_for = |changed: &[u8], what: &str| {
        let (_copy_dir, copy) = copy_of(data.path());
        fs::write(in_copy(data.path(), &copy, &snapshot), changed).unwrap();
        let reasons: Vec<String> = modes
            .iter()
            .map(|&mode| {
                let report = open(&copy, mode).open_report();
                assert_eq!(report.snapshot, None, "{what}, {mode:?}");
                report.ignored_snapshots[0].reason.clone()
            })
            .collect();
        assert!(
            reasons.iter().all(|reason| *reason == reasons[0]),
            "{what}: {reasons:?}"
        );
        reasons[0].clone()
    };
    for offset in offsets {
        let mut changed = bytes.clone();
        changed[offset] ^= 0x10;
        let reason = reason_for(&changed, &format!("byte {offset}"));
        assert!(
            reason.starts_with("body checksum mismatch"),
            "byte {offset}: {reason}"
        );
    }
    // The directory's split a byte off, or a run of records on, its checksums recomputed: the
    // records read ahead from there (with the indexes unread) count only once the first half
    // ends there, and the open names the same fault however it reads them.
    let split_field = bytes.len() - 32;
    let split_index_field = bytes.len() - 40;
    let changes: [(usize, u64); 3] = [
        (split_field, (split_at - HEADER_BYTES) as u64 + 1),
        (split_field, (split_at - HEADER_BYTES) as u64 - 1),
        (split_index_field, (split_index + 1024) as u64),
    ];
    for (field, value) in changes {
        let mut changed = bytes.clone();
        changed[field..field + 8].copy_from_slice(&value.to_le_bytes());
        recompute_checksums(&mut changed);
        let reason = reason_for(&changed, &format!("{field} = {value}"));
        assert!(
            reason.contains("record begins at"),
            "{field} = {value}: {reason}"
        );
    }
}

#[test]
fn a_snapshot_directory_that_is_a_symlink_is_never_followed() {
    let (_dir, data, _older, _newer) = store_with_two_snapshots(512);
    let (expected, _) = full_replay(&data);
    let (_copy_dir, copy) = copy_of(&data);
    // The store's snapshots moved out, and a link left in their place.
    let outside = copy.parent().unwrap().join("outside");
    fs::rename(copy.join(SNAPSHOT_DIRECTORY), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, copy.join(SNAPSHOT_DIRECTORY)).unwrap();
    let outside_before = support::files::snapshot(&outside);

    // Opens report it and replay the whole log.
    let read_only = open_read_only_changing_nothing(&copy);
    let report = read_only.open_report();
    assert_eq!(report.snapshot, None);
    assert_ignored(
        &report,
        &[copy.join(SNAPSHOT_DIRECTORY)],
        "not a directory",
        "a symlink",
    );
    assert_eq!(answers_of(&read_only), expected);
    drop(read_only);
    // A writer writes no snapshot through it, and removes nothing there.
    let store = Store::open_with(&copy, options(512, 1)).unwrap();
    assert_eq!(store.open_report().snapshot, None);
    track_events(&store, 99..101);
    match store.snapshot() {
        Err(error @ commlog::Error::Io { .. }) => {
            assert!(error.to_string().contains("not a directory"), "{error}")
        }
        other => panic!("expected an I/O error naming snapshots, got {other:?}"),
    }
    drop(store);
    assert_eq!(support::files::snapshot(&outside), outside_before);
}

/// A snapshot whose write fails (here by a real file-size limit, in a child process), in the
/// background, when asked for, or at close, leaves no file: neither a snapshot nor its
/// temporary, which would hold its space on a full disk until a later snapshot succeeded. The
/// store goes on; a reopen replays the log and answers as the store did.
#[test]
fn a_snapshot_whose_write_fails_leaves_no_file() {
    let name = "a_snapshot_whose_write_fails_leaves_no_file";
    // 32 KiB: every 512-byte segment fits, a snapshot of 1,000 messages or more does not.
    if !support::file_size_limit::in_child_process(name, 64) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    // Background snapshots due from 1,000 events on.
    let store = Store::open_with(&data, options(512, 1_000)).unwrap();
    for user in 1..=3_000 {
        store
            .track_message_sent(user, Channel::Email, "bill_due", 0.001)
            .unwrap();
    }
    let error = store.snapshot().unwrap_err().to_string();
    assert!(error.contains("File too large"), "{error}");
    let assert_no_file = || {
        let left: Vec<_> = fs::read_dir(data.join(commlog::SNAPSHOT_DIRECTORY))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    };
    assert_no_file();
    let expected = answers_of(&store);
    // The close's snapshot fails the same way, and its error says so; the log is closed.
    let error = store.close().unwrap_err().to_string();
    assert!(error.contains("File too large"), "{error}");
    assert_no_file();
    let reopened = Store::open_read_only(&data).unwrap();
    assert_eq!(reopened.open_report().snapshot_events, 0);
    assert_eq!(answers_of(&reopened), expected);
}
