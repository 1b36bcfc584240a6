//! Live readers: a read-only store that `refresh`es beside a writer answers, at every moment,
//! as the brute-force model of a prefix of the writer's calls, and in the end as the whole.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};

use commlog::{Options, Store};
use proptest::prelude::*;
use support::brute::{self, Brute};
use support::calls::{Call, any_call, track, windows_ms};
use tempfile::TempDir;

/// Small segments, so that the reader follows the writer across rollovers.
fn options() -> Options {
    Options {
        segment_bytes: 512,
        ..support::store::options()
    }
}

/// The model after each prefix of `calls` that appends, by the events it holds: `models[n]` is
/// the model of the calls that appended the first `n` events.
fn models_by_events(calls: &[Call]) -> Vec<Brute> {
    let mut model = Brute::default();
    let mut models = vec![model.clone()];
    for call in calls {
        if call.is_report() && model.message_count() == 0 {
            continue;
        }
        model.apply(call);
        while models.len() as u64 <= model.event_count {
            models.push(model.clone());
        }
    }
    models
}

/// Tracks `calls` as the models expect them (reports only once a message exists), handing the
/// frames to the OS after every `flush_every` calls.
fn track_all(store: &Store, calls: &[Call], flush_every: usize) {
    let mut model = Brute::default();
    for (index, call) in calls.iter().enumerate() {
        if call.is_report() && model.message_count() == 0 {
            continue;
        }
        let _ = track(store, call, model.message_count());
        model.apply(call);
        if index % flush_every == 0 {
            store.flush().unwrap();
        }
    }
}

fn check(store: &Store, model: &Brute, what: &str) -> Result<(), TestCaseError> {
    brute::check(store, model, &[], &windows_ms())
        .map_err(|error| TestCaseError::fail(format!("{what}: {error}")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn a_reader_refreshing_beside_a_writer_always_answers_as_a_prefix_of_its_calls(
        calls in prop::collection::vec(any_call(), 20..160),
        flush_every in 1usize..6,
    ) {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        let models = models_by_events(&calls);
        let writer = Store::open_with(&data, options()).unwrap();
        let reader = Store::open_read_only(&data).unwrap();
        let mut seen = reader.open_report().events;
        prop_assert_eq!(seen, 0);
        let done = AtomicBool::new(false);
        let mut checks = 0;
        std::thread::scope(|scope| -> Result<(), TestCaseError> {
            scope.spawn(|| {
                track_all(&writer, &calls, flush_every);
                done.store(true, Ordering::Release);
            });
            while !done.load(Ordering::Acquire) {
                seen += reader.refresh().unwrap();
                prop_assert!(seen < models.len() as u64, "{} events seen", seen);
                check(&reader, &models[seen as usize], &format!("after {seen} events"))?;
                checks += 1;
            }
            Ok(())
        })?;
        writer.close().unwrap();
        seen += reader.refresh().unwrap();
        let all = models.last().unwrap();
        prop_assert_eq!(seen, all.event_count, "after {} checks", checks);
        check(&reader, all, "at the end")?;
        prop_assert_eq!(reader.refresh().unwrap(), 0);
    }
}

#[test]
fn a_writer_refreshes_nothing_and_a_reader_follows_a_writer_that_reopens() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let calls: Vec<Call> = (0..60)
        .map(|index| Call::Sent {
            user: index % 7 + 1,
            channel: commlog::Channel::ALL[index as usize % 4],
            message_type: "bill_due",
            cost_micros: 10_000,
            at_ms: 1_735_689_600_000 + index as i64 * 60_000,
        })
        .collect();
    let models = models_by_events(&calls);
    let writer = Store::open_with(&data, options()).unwrap();
    assert_eq!(writer.refresh().unwrap(), 0);
    track_all(&writer, &calls[..30], 1);
    let reader = Store::open_read_only(&data).unwrap();
    assert_eq!(reader.open_report().events, 30);
    assert_eq!(writer.refresh().unwrap(), 0);
    writer.close().unwrap();
    assert_eq!(reader.refresh().unwrap(), 0);

    // A new writer goes on in the same segments, after the close marker.
    let writer = Store::open_with(&data, options()).unwrap();
    for call in &calls[30..] {
        track(&writer, call, 0).unwrap();
    }
    writer.flush().unwrap();
    assert_eq!(reader.refresh().unwrap(), 30);
    brute::check(&reader, &models[60], &[], &windows_ms()).unwrap();
    writer.close().unwrap();
    assert_eq!(reader.refresh().unwrap(), 0);
}

/// A writer in `dir` whose segments roll over every 4 KiB, without snapshots.
fn rolling_writer(dir: &std::path::Path, sync: commlog::SyncPolicy) -> Store {
    let options = Options {
        sync,
        segment_bytes: 4096,
        snapshot_every: 0,
        ..Options::default()
    };
    Store::open_with(dir, options).unwrap()
}

/// Readers refreshing in a loop while a writer rolls its segments over (a few dozen frames
/// each, every call synced) never fail: a rollover is read whole, or not yet, however the
/// reader's listing and reading fall between the writer's steps (the successor created, the
/// predecessor sealed, the first frame written).
#[test]
fn readers_refreshing_across_rollovers_never_fail() {
    let dir = TempDir::new().unwrap();
    let writer = rolling_writer(dir.path(), commlog::SyncPolicy::Always);
    let sends: u64 = 10_000;
    writer
        .track_message_sent(1, commlog::Channel::Sms, "x", 0.0)
        .unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let reader = Store::open_read_only(dir.path()).unwrap();
                    let mut seen = 0;
                    while !stop.load(Ordering::Acquire) {
                        reader.refresh().unwrap();
                        let stats = reader
                            .get_communication_stats(&commlog::StatsFilter::new())
                            .unwrap();
                        assert!(stats.total_messages >= seen, "a refresh went back");
                        seen = stats.total_messages;
                    }
                    seen
                })
            })
            .collect();
        for index in 0..sends {
            writer
                .track_message_sent(index % 50 + 1, commlog::Channel::Email, "x", 0.001)
                .unwrap();
        }
        stop.store(true, Ordering::Release);
        for reader in readers {
            assert!(reader.join().unwrap() <= sends + 1);
        }
    });
}

/// Readers opening and refreshing beside a writer that rolls over thousands of small segments
/// never fail: a directory that large is read in several batches, and a segment created while
/// it is read may be left out of the listing between two that are in it. The seal of the
/// segment before it names it, and the reader reads it from there.
#[test]
fn readers_beside_thousands_of_rollovers_never_miss_a_segment() {
    let dir = TempDir::new().unwrap();
    let writer = rolling_writer(dir.path(), commlog::SyncPolicy::Never);
    writer
        .track_message_sent(1, commlog::Channel::Sms, "x", 0.0)
        .unwrap();
    writer.flush().unwrap();
    let segments = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".log")
            })
            .count()
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut opens = 0;
                    while !stop.load(Ordering::Acquire) {
                        let reader = Store::open_read_only(dir.path())
                            .unwrap_or_else(|error| panic!("open {opens}: {error}"));
                        let mut seen = reader.open_report().events;
                        for _ in 0..20 {
                            seen += reader.refresh().unwrap_or_else(|error| {
                                panic!("refresh after open {opens}: {error}")
                            });
                        }
                        assert_eq!(reader.log_summary().unwrap().events, seen);
                        opens += 1;
                    }
                    opens
                })
            })
            .collect();
        let mut index = 0u64;
        let mut five_hundred_sends = || {
            for _ in 0..500 {
                writer
                    .track_message_sent(index % 50 + 1, commlog::Channel::Email, "x", 0.001)
                    .unwrap();
                index += 1;
            }
            writer.flush().unwrap();
        };
        let started = std::time::Instant::now();
        while segments() < 3_000 && started.elapsed() < std::time::Duration::from_secs(20) {
            five_hundred_sends();
        }
        // Readers go on a while beside a writer adding segments to the large directory.
        let busy = std::time::Instant::now();
        while busy.elapsed() < std::time::Duration::from_secs(3) {
            five_hundred_sends();
        }
        stop.store(true, Ordering::Release);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    });
}

/// A refresh that meets damage after the views' end applies the events before it and says how
/// many in its error, so that what the refreshes report adds up to what the views hold; a later
/// refresh fails at the same damage.
#[test]
fn a_refresh_that_meets_damage_counts_what_it_applied() {
    let dir = TempDir::new().unwrap();
    let options = Options {
        sync: commlog::SyncPolicy::Always,
        snapshot_every: 0,
        ..Options::default()
    };
    let writer = Store::open_with(dir.path(), options.clone()).unwrap();
    writer
        .track_message_sent(1, commlog::Channel::Sms, "x", 0.0)
        .unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    let segment = dir.path().join("00000000000000000001.log");
    let before = std::fs::metadata(&segment).unwrap().len();
    for user in 2..=11 {
        writer
            .track_message_sent(user, commlog::Channel::Sms, "x", 0.0)
            .unwrap();
    }
    drop(writer);
    let after = std::fs::metadata(&segment).unwrap().len();
    // A byte in the middle of the ten new frames.
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = ((before + after) / 2) as usize;
    bytes[middle] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();

    let error = reader.refresh().unwrap_err().to_string();
    let messages = reader
        .get_communication_stats(&commlog::StatsFilter::new())
        .unwrap()
        .total_messages;
    assert!((2..11).contains(&messages), "{messages} messages: {error}");
    assert!(
        error.contains(&format!(
            "this refresh applied the {} events before it",
            messages - 1
        )),
        "{error}"
    );
    let again = reader.refresh().unwrap_err().to_string();
    assert!(!again.contains("applied"), "{again}");
}
