//! Rollover: with a tiny `segment_bytes` the log spreads over many segment files, each named by
//! its first sequence number and no larger than the limit (unless one frame alone exceeds it),
//! and a reopen replays them into exactly the same answers, whatever limit it is opened with.

mod support;

use std::fs;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use commlog::audit::audit_segment;
use commlog::workload::{self, Call, Generator, MESSAGE_TYPES, START_MS, Spec};
use commlog::{
    Channel, CommunicationStats, LOCK_FILE_NAME, Message, Options, StatsFilter, Store, SyncPolicy,
};
use support::files::{assert_mode, segments};
use tempfile::TempDir;

const SPEC: Spec = Spec {
    seed: 42,
    users: 50,
    messages: 2000,
};
const HEADER_BYTES: u64 = 56;

fn calls() -> Vec<Call> {
    Generator::calls(SPEC).collect()
}

fn never(segment_bytes: u64) -> Options {
    Options {
        sync: SyncPolicy::Never,
        segment_bytes,
        ..Options::default()
    }
}

fn apply_all(store: &Store, calls: &[Call]) {
    for call in calls {
        workload::apply(store, call).unwrap();
    }
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(START_MS).unwrap()
}

/// Everything a reader can ask the store, over a spread of filters.
#[derive(Debug, PartialEq)]
struct Views {
    stats: Vec<(StatsFilter, CommunicationStats)>,
    histories: Vec<Vec<Message>>,
    recent: Vec<Vec<Message>>,
}

fn filters() -> Vec<StatsFilter> {
    let mut filters = vec![StatsFilter::new()];
    filters.extend((1..=SPEC.users).map(|user| StatsFilter::new().user(user)));
    filters.extend(
        [Channel::Sms, Channel::Email, Channel::Push, Channel::InApp]
            .into_iter()
            .map(|channel| StatsFilter::new().channel(channel)),
    );
    filters.extend(
        MESSAGE_TYPES
            .iter()
            .map(|message_type| StatsFilter::new().message_type(*message_type)),
    );
    filters.extend((0..30).step_by(7).map(|day| {
        let from = start() + Duration::days(day);
        StatsFilter::new().start(from).end(from + Duration::days(7))
    }));
    filters.push(
        StatsFilter::new()
            .user(7)
            .channel(Channel::Email)
            .start(start() + Duration::days(3))
            .end(start() + Duration::days(20)),
    );
    filters
}

fn views(store: &Store) -> Views {
    Views {
        stats: filters()
            .into_iter()
            .map(|filter| {
                let stats = store.get_communication_stats(&filter).unwrap();
                (filter, stats)
            })
            .collect(),
        histories: (1..=SPEC.users)
            .map(|user| {
                store
                    .get_user_communication_history(user, usize::MAX)
                    .unwrap()
            })
            .collect(),
        recent: (1..=SPEC.users)
            .map(|user| store.get_user_communication_history(user, 5).unwrap())
            .collect(),
    }
}

/// Checks every segment of a cleanly closed log: names, headers, sizes, and that the events
/// are dense over the files; returns the events counted.
fn check_segments(data: &Path, segment_bytes: u64) -> u64 {
    let paths = segments(data);
    let mut next_seq = 1;
    for (index, path) in paths.iter().enumerate() {
        let name = path.file_name().unwrap().to_str().unwrap();
        let digits = name.strip_suffix(".log").unwrap();
        assert_eq!(digits.len(), 20, "{name}");
        assert!(digits.bytes().all(|byte| byte.is_ascii_digit()), "{name}");
        assert_eq!(
            digits.parse::<u64>().unwrap(),
            next_seq,
            "{name} is named by its first seq"
        );
        let bytes = fs::read(path).unwrap();
        let audit = audit_segment(path, &bytes, |_| {}).unwrap();
        assert_eq!(audit.first_seq, Some(next_seq), "{name}");
        assert_eq!(audit.torn_offset, None, "{name}");
        assert_eq!(
            audit.end_offset,
            bytes.len() as u64,
            "{name} holds only whole frames"
        );
        let size = bytes.len() as u64;
        let last = index + 1 == paths.len();
        if last {
            assert!(audit.closed, "{name}: a clean close leaves a close marker");
        } else {
            assert!(audit.events >= 1, "{name}: a sealed segment holds an event");
            assert!(
                size <= segment_bytes || audit.frames == 1,
                "{name}: sealed segment of {size} bytes, {} frames (ends with a close marker: {}), limit {segment_bytes}",
                audit.frames,
                audit.closed
            );
            assert!(size > HEADER_BYTES);
        }
        next_seq += audit.events;
    }
    next_seq - 1
}

fn rollover_reopens_equal(segment_bytes: u64) {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let calls = calls();
    let store = Store::open_with(&data, never(segment_bytes)).unwrap();
    apply_all(&store, &calls);
    let before = views(&store);
    store.close().unwrap();

    let paths = segments(&data);
    let total: u64 = paths
        .iter()
        .map(|path| fs::metadata(path).unwrap().len())
        .sum();
    assert!(
        paths.len() >= 5,
        "{} segments at {segment_bytes} bytes",
        paths.len()
    );
    assert!(
        paths.len() as u64 >= total / segment_bytes,
        "{} segments hold {total} bytes at {segment_bytes} bytes each",
        paths.len()
    );
    assert_eq!(check_segments(&data, segment_bytes), calls.len() as u64);

    let reopened = Store::open_with(&data, never(segment_bytes)).unwrap();
    let report = reopened.open_report();
    assert_eq!(report.segments, paths.len() as u64);
    assert_eq!(report.events, calls.len() as u64);
    assert_eq!((report.truncated_bytes, report.quarantined), (0, None));
    assert_eq!(views(&reopened), before);
    // The workload's own totals, as a check that the views are not trivially equal.
    let all = reopened
        .get_communication_stats(&StatsFilter::new())
        .unwrap();
    assert_eq!(all.total_messages, SPEC.messages);
    drop(reopened);

    // A read-only open replays the same.
    let read_only = Store::open_read_only(&data).unwrap();
    assert_eq!(read_only.open_report().events, calls.len() as u64);
    assert_eq!(views(&read_only), before);
}

#[test]
fn thousands_of_events_in_512_byte_segments_reopen_equal() {
    rollover_reopens_equal(512);
}

#[test]
fn thousands_of_events_in_4096_byte_segments_reopen_equal() {
    rollover_reopens_equal(4096);
}

#[test]
fn a_reopen_with_a_different_segment_size_continues_the_same_log() {
    let calls = calls();
    let thirds = [
        &calls[..calls.len() / 3],
        &calls[calls.len() / 3..2 * calls.len() / 3],
        &calls[2 * calls.len() / 3..],
    ];

    let reference_dir = TempDir::new().unwrap();
    let reference = Store::open_with(reference_dir.path(), never(64 * 1024 * 1024)).unwrap();

    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let mut applied = 0;
    for (part, segment_bytes) in thirds.iter().zip([512, 4096, 512]) {
        let store = Store::open_with(&data, never(segment_bytes)).unwrap();
        assert_eq!(store.open_report().events, applied);
        assert_eq!(
            views(&store),
            views(&reference),
            "reopened at {segment_bytes} bytes"
        );
        apply_all(&store, part);
        apply_all(&reference, part);
        applied += part.len() as u64;
        store.close().unwrap();
    }

    for segment_bytes in [512, 4096, 64 * 1024 * 1024] {
        let reopened = Store::open_with(&data, never(segment_bytes)).unwrap();
        assert_eq!(reopened.open_report().events, calls.len() as u64);
        assert_eq!(
            views(&reopened),
            views(&reference),
            "reopened at {segment_bytes} bytes"
        );
    }

    // Every sealed segment keeps to the larger limit; the 4096-byte stretch made larger ones.
    let sizes: Vec<u64> = segments(&data)
        .iter()
        .map(|path| fs::metadata(path).unwrap().len())
        .collect();
    assert!(sizes.iter().any(|size| *size > 512), "{sizes:?}");
    assert!(
        sizes.iter().filter(|size| **size <= 512).count() >= 5,
        "{sizes:?}"
    );
    assert_eq!(check_segments(&data, 4096), calls.len() as u64);
}

#[test]
fn closing_and_reopening_at_the_same_segment_size_keeps_every_sealed_segment_within_it() {
    let calls = calls();
    let reference_dir = TempDir::new().unwrap();
    let reference = Store::open_with(reference_dir.path(), never(64 * 1024 * 1024)).unwrap();
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    // Every session ends with a clean close, which writes a close marker into the segment the
    // next session continues.
    for part in calls.chunks(97) {
        let store = Store::open_with(&data, never(512)).unwrap();
        apply_all(&store, part);
        apply_all(&reference, part);
        store.close().unwrap();
    }
    let reopened = Store::open_with(&data, never(512)).unwrap();
    assert_eq!(reopened.open_report().events, calls.len() as u64);
    assert_eq!(views(&reopened), views(&reference));
    drop(reopened);
    assert_eq!(check_segments(&data, 512), calls.len() as u64);
}

#[test]
fn segments_and_the_lock_are_readable_by_their_owner_only() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(&data, never(512)).unwrap();
    apply_all(&store, &calls()[..500]);
    store.flush().unwrap();
    assert_mode(&data, 0o700);
    assert_mode(&data.join(LOCK_FILE_NAME), 0o600);
    let paths = segments(&data);
    assert!(paths.len() >= 5, "{} segments", paths.len());
    for path in &paths {
        assert_mode(path, 0o600);
    }
    store.close().unwrap();
    for path in segments(&data) {
        assert_mode(&path, 0o600);
    }
}
