//! Tracking calls per second on the reference workload (docs/WORKLOAD.md), per SyncPolicy.
//!
//! The calls are generated before timing; each iteration tracks them into a fresh store in a
//! temporary directory, and only the tracking calls are timed (not opening, closing or removing
//! the store). `cargo bench --bench append`.
//!
//! With `COMMLOG_BENCH_MESSAGES` or `COMMLOG_BENCH_USERS` set to another size (as for the query
//! bench), the bench instead tracks that workload once under `SyncPolicy::Never` on one thread,
//! one call at a time and then in batches of 1,000 calls, each into a fresh store, generating
//! the calls as it goes and timing only the tracking calls, and prints each pass's events/s,
//! its longest message (or batch) and how many took over 5 ms: at 100 M messages each pass
//! takes minutes, too long for criterion's samples. E.g.
//! `COMMLOG_BENCH_MESSAGES=100000000 COMMLOG_BENCH_USERS=1000000 cargo bench --bench append`.
//!
//! `append/longest_call_while_snapshotting` measures what a snapshot costs the calls that go on
//! while it is written: on a store holding the reference workload, each iteration writes one
//! snapshot (`Store::snapshot`) on another thread while this one tracks opens and outcomes, and
//! its time is the longest of those calls. `append/longest_call_without_snapshot` is the same
//! number of calls with no snapshot: the machine's own hiccups, for comparison.

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use commlog::workload::{self, Call, Generator, Spec};
use commlog::{EffectivenessFilter, Options, StatsFilter, Store, SyncPolicy};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

mod support;
use support::spec_from_env;

/// Calls tracked by one thread under `SyncPolicy::Always` (whole messages, at least this many).
const ALWAYS_1_THREAD_CALLS: usize = 4_000;
/// Calls tracked by all threads together under `SyncPolicy::Always`.
const ALWAYS_16_THREADS_CALLS: usize = 16_000;
const THREADS: usize = 16;
/// Calls per `Store::track_batch` in the batch benchmarks.
const BATCH_CALLS: usize = 1_000;

/// Every message of the workload, each as its calls in order.
fn messages(spec: Spec) -> Vec<Vec<Call>> {
    let mut generator = Generator::new(spec);
    let mut messages = Vec::with_capacity(spec.messages as usize);
    let mut calls = Vec::new();
    while generator.next_message(&mut calls) {
        messages.push(std::mem::take(&mut calls));
    }
    messages
}

/// The first whole messages holding at least `calls` calls.
fn first_messages(messages: &[Vec<Call>], calls: usize) -> &[Vec<Call>] {
    let mut total = 0;
    let count = messages
        .iter()
        .take_while(|message| {
            let before = total;
            total += message.len();
            before < calls
        })
        .count();
    &messages[..count]
}

fn open(dir: &Path, sync: SyncPolicy) -> Store {
    Store::open_with(
        dir,
        Options {
            sync,
            ..Options::default()
        },
    )
    .expect("open a fresh store")
}

/// Tracks `calls` in order on one thread into a fresh store per iteration, after `prepare`
/// (untimed) has had the store.
fn one_thread(
    calls: &[Call],
    sync: SyncPolicy,
    iterations: u64,
    prepare: impl Fn(&Store),
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iterations {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(dir.path(), sync);
        prepare(&store);
        let start = Instant::now();
        for call in calls {
            workload::apply(&store, call).expect("track a workload call");
        }
        elapsed += start.elapsed();
        store.close().expect("close the store");
    }
    elapsed
}

/// Tracks `calls` in order with `Store::track_batch`, `batch` calls at a time, into a fresh
/// store per iteration.
fn batches(
    calls: &[commlog::Call<'static>],
    batch: usize,
    sync: SyncPolicy,
    iterations: u64,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iterations {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(dir.path(), sync);
        let start = Instant::now();
        for chunk in calls.chunks(batch) {
            for answer in store.track_batch(chunk).expect("a batch") {
                answer.expect("track a workload call");
            }
        }
        elapsed += start.elapsed();
        store.close().expect("close the store");
    }
    elapsed
}

/// Tracks the messages dealt round-robin to `threads` threads (each message's calls in order on
/// one thread), all threads starting together, into a fresh store per iteration.
fn many_threads(
    messages: &[Vec<Call>],
    threads: usize,
    sync: SyncPolicy,
    iterations: u64,
) -> Duration {
    let dealt: Vec<Vec<&[Call]>> = (0..threads)
        .map(|thread| {
            messages
                .iter()
                .skip(thread)
                .step_by(threads)
                .map(Vec::as_slice)
                .collect()
        })
        .collect();
    let mut elapsed = Duration::ZERO;
    for _ in 0..iterations {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(dir.path(), sync);
        let barrier = Barrier::new(threads + 1);
        let took = std::thread::scope(|scope| {
            for share in &dealt {
                let (store, barrier) = (&store, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    for message in share {
                        workload::apply_message(store, message).expect("track a message");
                    }
                });
            }
            barrier.wait();
            Instant::now()
        })
        .elapsed();
        elapsed += took;
        store.close().expect("close the store");
    }
    elapsed
}

/// Tracks the workload `spec` once into a fresh store under `SyncPolicy::Never`, one call at a
/// time (`batch` 1) or `batch` calls at a time (whole messages' calls), and prints the events/s
/// of the tracking calls alone and the longest of them.
fn ingest_once(spec: Spec, batch: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(dir.path(), SyncPolicy::Never);
    let mut generator = Generator::new(spec);
    let (mut calls, mut pending) = (Vec::new(), Vec::with_capacity(batch + 8));
    let (mut timed, mut events) = (Duration::ZERO, 0u64);
    // The longest message's calls (one at a time) or batch, and how many took over 5 ms.
    let (mut longest, mut over_5_ms) = (Duration::ZERO, 0u64);
    loop {
        let more = generator.next_message(&mut calls);
        let start = Instant::now();
        if batch == 1 {
            workload::apply_message(&store, &calls).expect("track a message");
        } else {
            pending.extend(calls.iter().map(Call::tracking_call));
            if pending.len() >= batch || !more {
                workload::apply_batch(&store, &pending).expect("track a batch");
                pending.clear();
            }
        }
        let took = start.elapsed();
        timed += took;
        longest = longest.max(took);
        over_5_ms += u64::from(took > Duration::from_millis(5));
        events += calls.len() as u64;
        calls.clear();
        if !more {
            break;
        }
    }
    let (way, unit) = match batch {
        1 => ("one call at a time".to_string(), "message's calls"),
        calls => (format!("batches of {calls} calls"), "batch"),
    };
    eprintln!(
        "append/never_1_thread at {} messages, {} users, {way}: {events} events in {:.2} s, \
         {:.0} events/s; longest {unit} {:.1} ms, {over_5_ms} over 5 ms",
        spec.messages,
        spec.users,
        timed.as_secs_f64(),
        events as f64 / timed.as_secs_f64(),
        longest.as_secs_f64() * 1e3,
    );
    store.close().expect("close the store");
}

/// The longest of the calls tracked on this thread while `during` runs on another, and how many
/// calls that was; at least `calls_min` calls are tracked (all of them if `during` is `None`).
/// The calls are opens of the workload's messages, spread over them, and every twentieth an
/// outcome of its users in turn: they change records and lists the snapshot is writing, and
/// grow the store by little.
fn longest_call(
    store: &Store,
    next_call: &mut u64,
    calls_min: usize,
    during: Option<&(dyn Fn() + Sync)>,
) -> (Duration, usize) {
    let done = std::sync::atomic::AtomicBool::new(during.is_none());
    std::thread::scope(|scope| {
        if let Some(during) = during {
            let done = &done;
            scope.spawn(move || {
                during();
                done.store(true, std::sync::atomic::Ordering::Release);
            });
        }
        // 2025-01-01: the workload's month, which its outcomes spread over.
        let base = chrono::DateTime::from_timestamp_millis(1_735_689_600_000).expect("a time");
        let spec = Spec::default();
        let (mut longest, mut calls) = (Duration::ZERO, 0);
        while calls < calls_min || !done.load(std::sync::atomic::Ordering::Acquire) {
            *next_call += 1;
            let start = Instant::now();
            if calls % 20 == 19 {
                let user = *next_call % spec.users + 1;
                let at = base + chrono::Duration::seconds((*next_call % 2_592_000) as i64);
                store
                    .track_financial_outcome_at(user, "bill_paid_on_time", 12.5, at)
                    .expect("track an outcome");
            } else {
                let message = commlog::MessageId(*next_call * 7_919 % spec.messages + 1);
                store
                    .track_message_opened(message, None)
                    .expect("track an open");
            }
            longest = longest.max(start.elapsed());
            calls += 1;
        }
        (longest, calls)
    })
}

/// The longest call while a snapshot is written, and with none (see the module doc).
fn snapshot_hold_up(c: &mut Criterion, messages: &[Vec<Call>]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open_with(
        dir.path(),
        Options {
            sync: SyncPolicy::Never,
            snapshot_every: 0,
            ..Options::default()
        },
    )
    .expect("open a fresh store");
    for message in messages {
        workload::apply_message(&store, message).expect("track a message");
    }
    // Kept current by every call, as a long-running writer's are: the totals over all time
    // (stats over all users) and the indexes over time (a view over all users).
    store
        .get_communication_stats(&StatsFilter::new())
        .expect("stats");
    store
        .get_channel_effectiveness(&EffectivenessFilter::new())
        .expect("channel effectiveness");
    let mut next_call = 0;
    let write_snapshot = || {
        store.snapshot().expect("write a snapshot");
    };
    let mut calls_per_snapshot = 0;
    let mut group = c.benchmark_group("append");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("longest_call_while_snapshotting", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let (longest, calls) =
                        longest_call(&store, &mut next_call, 1, Some(&write_snapshot));
                    calls_per_snapshot = calls;
                    longest
                })
                .sum()
        })
    });
    group.bench_function("longest_call_without_snapshot", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| longest_call(&store, &mut next_call, calls_per_snapshot, None).0)
                .sum()
        })
    });
    group.finish();
    eprintln!(
        "append/longest_call_*: {calls_per_snapshot} calls while the last snapshot was written"
    );
}

fn append(c: &mut Criterion) {
    let spec = spec_from_env();
    if spec != Spec::default() {
        ingest_once(spec, 1);
        ingest_once(spec, BATCH_CALLS);
        return;
    }
    let messages = messages(Spec::default());
    let all: Vec<Call> = messages.iter().flatten().copied().collect();
    let always_1 = first_messages(&messages, ALWAYS_1_THREAD_CALLS);
    let always_1: Vec<Call> = always_1.iter().flatten().copied().collect();
    let always_16 = first_messages(&messages, ALWAYS_16_THREADS_CALLS);
    let always_16_calls: usize = always_16.iter().map(Vec::len).sum();

    let mut group = c.benchmark_group("append");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));

    group
        .throughput(Throughput::Elements(all.len() as u64))
        .measurement_time(Duration::from_secs(12));
    group.bench_function("never_1_thread", |b| {
        b.iter_custom(|iterations| one_thread(&all, SyncPolicy::Never, iterations, |_| {}))
    });
    // The same with the views' indexes built first (stats over all users count the totals
    // over all time, a view over all users builds the message rollup and the outcome credits),
    // so that every call also keeps them current: tracking with all views on.
    group.bench_function("never_1_thread_views_kept", |b| {
        let build_indexes = |store: &Store| {
            store
                .get_communication_stats(&StatsFilter::new())
                .expect("stats");
            store
                .get_channel_effectiveness(&EffectivenessFilter::new())
                .expect("channel effectiveness");
        };
        b.iter_custom(|iterations| one_thread(&all, SyncPolicy::Never, iterations, build_indexes))
    });
    group.bench_function("interval_1_thread", |b| {
        let interval = SyncPolicy::Interval(Duration::from_millis(100));
        b.iter_custom(|iterations| one_thread(&all, interval, iterations, |_| {}))
    });
    // The same calls as batches of BATCH_CALLS: under Always, one write and one fsync each.
    let all_batched: Vec<commlog::Call<'static>> = all.iter().map(Call::tracking_call).collect();
    group.bench_function("never_batch", |b| {
        b.iter_custom(|iterations| {
            batches(&all_batched, BATCH_CALLS, SyncPolicy::Never, iterations)
        })
    });
    group.bench_function("always_batch", |b| {
        b.iter_custom(|iterations| {
            batches(&all_batched, BATCH_CALLS, SyncPolicy::Always, iterations)
        })
    });

    group
        .throughput(Throughput::Elements(always_1.len() as u64))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("always_1_thread", |b| {
        b.iter_custom(|iterations| one_thread(&always_1, SyncPolicy::Always, iterations, |_| {}))
    });

    group
        .throughput(Throughput::Elements(always_16_calls as u64))
        .measurement_time(Duration::from_secs(6));
    group.bench_function("always_16_threads", |b| {
        b.iter_custom(|iterations| many_threads(always_16, THREADS, SyncPolicy::Always, iterations))
    });
    group.finish();
    snapshot_hold_up(c, &messages);
}

criterion_group!(benches, append);
criterion_main!(benches);
