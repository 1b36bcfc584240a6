//! Opening (replaying) the 1,000,000-message reference store (docs/WORKLOAD.md), in events
//! per second, and its bytes on disk per message (printed once).
//!
//! The store is built once, at `SyncPolicy::Never`, and closed; its files are then in the page
//! cache, so this is a warm open. `cargo bench --bench replay`.

use std::path::Path;
use std::time::{Duration, Instant};

use commlog::workload::{self, Generator, Spec};
use commlog::{Options, Store, SyncPolicy};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

/// Tracks the whole reference workload into a new store in `dir` and closes it; returns the
/// number of calls (= events).
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
    store.close().expect("close the store");
    calls
}

/// `00000000000000000001.log`: a segment file.
fn is_segment(name: &str) -> bool {
    name.strip_suffix(".log")
        .is_some_and(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// (segment files, their total size in bytes).
fn segment_bytes(dir: &Path) -> (u64, u64) {
    let mut segments = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).expect("read the store directory") {
        let entry = entry.expect("a directory entry");
        if entry.file_name().to_str().is_some_and(is_segment) {
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
    let report = Store::open_read_only(dir.path())
        .expect("open read-only")
        .open_report();
    assert_eq!(report.events, events, "replay finds every event");
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
                Store::open_read_only(dir.path()).expect("open read-only")
            })
        })
    });
    group.bench_function(BenchmarkId::new("open_1m", "writer"), |b| {
        let options = Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        };
        b.iter_custom(|iterations| {
            time_opens(iterations, || {
                Store::open_with(dir.path(), options.clone()).expect("open for writing")
            })
        })
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
