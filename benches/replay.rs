//! Opening (replaying) the 1,000,000-message reference store (docs/WORKLOAD.md), in events
//! per second, and its bytes on disk per message (printed once); auditing it
//! (`commlog::audit::audit`), in bytes per second.
//!
//! The store is built once, at `SyncPolicy::Never`, with a snapshot of the whole log written
//! before it is closed; its files are then in the page cache, so this is a warm open.
//! `open_1m/read_only` and `open_1m/writer` replay the whole log (`load_snapshot: false`);
//! `open_1m/snapshot` opens read-only from the snapshot; `refresh/reference_1m/nothing_new` is
//! `Store::refresh` on a read-only store opened from it, with nothing appended since.
//! `cargo bench --bench replay`.
//!
//! `replay/damaged_open_500k` opens (read-only) the files a crash leaves after 500,000 messages
//! in one segment of about 37 MB, clean and with one bit flipped in its first frame: judging
//! the damage (torn tail or corruption) must cost about as much as replaying the same bytes.

use std::path::Path;
use std::time::{Duration, Instant};

use commlog::workload::{self, Generator, Spec};
use commlog::{Options, Store, SyncPolicy};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

/// Tracks the whole reference workload into a new store in `dir`, writes a snapshot of it and
/// closes it; returns the number of calls (= events).
fn build_reference_store(dir: &Path) -> u64 {
    let store = Store::open_with(
        dir,
        Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        },
    )
    .expect("open a fresh store");
    let mut calls = 0;
    for call in Generator::calls(Spec::default()) {
        workload::apply(&store, &call).expect("track a workload call");
        calls += 1;
    }
    store.snapshot().expect("write a snapshot");
    store.close().expect("close the store");
    calls
}

/// (segment files, their total size in bytes).
fn segment_bytes(dir: &Path) -> (u64, u64) {
    let mut segments = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).expect("read the store directory") {
        let entry = entry.expect("a directory entry");
        if entry
            .file_name()
            .to_str()
            .and_then(commlog::segment_file_sequence)
            .is_some()
        {
            segments += 1;
            bytes += entry.metadata().expect("segment metadata").len();
        }
    }
    (segments, bytes)
}

/// Times `open` alone, dropping each store outside the timed region.
fn time_opens(iterations: u64, open: impl Fn() -> Store) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iterations {
        let start = Instant::now();
        let store = open();
        elapsed += start.elapsed();
        drop(store);
    }
    elapsed
}

fn replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let events = build_reference_store(dir.path());
    let messages = Spec::default().messages;
    let (segments, bytes) = segment_bytes(dir.path());
    eprintln!(
        "replay/open_1m: {messages} messages, {events} events, {segments} segment files, {bytes} bytes: \
         {:.1} bytes on disk per message, {:.1} per event",
        bytes as f64 / messages as f64,
        bytes as f64 / events as f64,
    );
    let whole_log = Options {
        sync: SyncPolicy::Never,
        load_snapshot: false,
        snapshot_every: 0,
        ..Options::default()
    };
    let report = Store::open_read_only_with(dir.path(), whole_log.clone())
        .expect("open read-only")
        .open_report();
    assert_eq!(report.events, events, "replay finds every event");
    let from_snapshot = Store::open_read_only(dir.path())
        .expect("open read-only")
        .open_report();
    assert_eq!(
        from_snapshot.snapshot_events, events,
        "the snapshot covers every event"
    );
    assert_eq!(
        report.truncated_bytes, 0,
        "a cleanly closed store has no torn tail"
    );

    let mut group = c.benchmark_group("replay");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(events));
    group.bench_function(BenchmarkId::new("open_1m", "read_only"), |b| {
        b.iter_custom(|iterations| {
            time_opens(iterations, || {
                Store::open_read_only_with(dir.path(), whole_log.clone()).expect("open read-only")
            })
        })
    });
    group.bench_function(BenchmarkId::new("open_1m", "writer"), |b| {
        b.iter_custom(|iterations| {
            time_opens(iterations, || {
                Store::open_with(dir.path(), whole_log.clone()).expect("open for writing")
            })
        })
    });
    group.bench_function(BenchmarkId::new("open_1m", "snapshot"), |b| {
        b.iter_custom(|iterations| {
            time_opens(iterations, || {
                Store::open_read_only(dir.path()).expect("open read-only")
            })
        })
    });
    group.finish();

    // A read-only store's refresh when the writer has appended nothing: it reads the last
    // segment from the store's position on, never the 8 MB of frames before it.
    let mut group = c.benchmark_group("refresh");
    group.warm_up_time(Duration::from_millis(500));
    let reader = Store::open_read_only(dir.path()).expect("open read-only");
    group.bench_function(BenchmarkId::new("reference_1m", "nothing_new"), |b| {
        b.iter(|| assert_eq!(reader.refresh().expect("refresh"), 0))
    });
    group.finish();

    // Auditing the same bytes, in bytes per second: every header and frame checked as open
    // checks them, the views not built.
    let mut group = c.benchmark_group("audit");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Bytes(bytes));
    for deep in [false, true] {
        let name = if deep { "deep" } else { "default" };
        group.bench_function(BenchmarkId::new("reference_1m", name), |b| {
            b.iter(|| {
                let audit = commlog::audit::audit(dir.path(), deep).expect("audit");
                assert_eq!(audit.verdict, commlog::audit::Verdict::Clean);
                audit
            })
        });
    }
    group.finish();
}

/// Byte of the first frame's body that [`damaged_open`] flips: past the 56-byte segment header (format version 2)
/// and the frame's 6-byte prefix.
const FLIPPED_BYTE_OFFSET: usize = 56 + 6 + 4;

/// The files a crash leaves after `spec`'s calls under `SyncPolicy::Never`, without snapshots
/// or syncs ahead (each would make the log durable up to it; without them no frame proves
/// another durable, the worst case for judging damage): the calls are tracked and flushed, and the
/// segment files copied to `crashed` while the store is still open (so no close marker).
fn build_crashed_store(spec: Spec, crashed: &Path) -> u64 {
    let original = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open_with(
        original.path(),
        Options {
            sync: SyncPolicy::Never,
            sync_ahead_bytes: 0,
            snapshot_every: 0,
            ..Options::default()
        },
    )
    .expect("open a fresh store");
    let mut calls = 0;
    for call in Generator::calls(spec) {
        workload::apply(&store, &call).expect("track a workload call");
        calls += 1;
    }
    store.flush().expect("flush the store");
    std::fs::create_dir_all(crashed).expect("create the crashed store's directory");
    for entry in std::fs::read_dir(original.path()).expect("read the store directory") {
        let entry = entry.expect("a directory entry");
        if entry
            .file_name()
            .to_str()
            .and_then(commlog::segment_file_sequence)
            .is_some()
        {
            std::fs::copy(entry.path(), crashed.join(entry.file_name())).expect("copy a segment");
        }
    }
    store.close().expect("close the store");
    calls
}

fn damaged_open(c: &mut Criterion) {
    let spec = Spec {
        messages: 500_000,
        ..Spec::default()
    };
    let root = tempfile::tempdir().expect("a temporary directory");
    let clean = root.path().join("clean");
    let events = build_crashed_store(spec, &clean);
    let (segments, bytes) = segment_bytes(&clean);
    assert_eq!(segments, 1, "one large segment");
    let flipped = root.path().join("flipped");
    std::fs::create_dir_all(&flipped).expect("create the damaged store's directory");
    for entry in std::fs::read_dir(&clean).expect("read the store directory") {
        let entry = entry.expect("a directory entry");
        let mut segment = std::fs::read(entry.path()).expect("read a segment");
        segment[FLIPPED_BYTE_OFFSET] ^= 1 << 3;
        std::fs::write(flipped.join(entry.file_name()), segment).expect("write a segment");
    }
    eprintln!("replay/damaged_open_500k: {events} events, {bytes} bytes in one segment");
    let report = Store::open_read_only(&clean)
        .expect("open the clean copy")
        .open_report();
    assert_eq!(report.events, events, "replay finds every event");
    // Under SyncPolicy::Never no frame records the first as durable: a torn tail from it.
    let report = Store::open_read_only(&flipped)
        .expect("open the damaged copy")
        .open_report();
    assert_eq!(report.events, 0, "the log ends at the flipped frame");
    assert_eq!(report.truncated_bytes, bytes - 56);

    let mut group = c.benchmark_group("replay");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6));
    for (name, dir) in [("clean", &clean), ("flipped_near_start", &flipped)] {
        group.bench_function(BenchmarkId::new("damaged_open_500k", name), |b| {
            b.iter_custom(|iterations| {
                time_opens(iterations, || {
                    Store::open_read_only(dir).expect("open read-only")
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, replay, damaged_open);
criterion_main!(benches);
