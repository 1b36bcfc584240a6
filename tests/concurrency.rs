//! Many threads track on one store at once: ids stay unique and dense, no event is lost or
//! counted twice; one writer per directory, any number of read-only openers beside it.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commlog::{Channel, Error, LOCK_FILE_NAME, MessageId, Options, StatsFilter, Store, SyncPolicy};
use tempfile::TempDir;

const THREADS: u64 = 8;

/// `Store` is shared between threads as an `Arc<Store>`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn never() -> Options {
    Options {
        sync: SyncPolicy::Never,
        ..Options::default()
    }
}

/// What happens to a thread's `j`-th message. Each rule is a function of `j` alone, so the
/// expected counts can be computed without looking at the store.
struct Fate {
    delivered: bool,
    opened: bool,
    clicked: bool,
    viewed: bool,
    failed: bool,
}

fn fate(j: u64) -> Fate {
    Fate {
        delivered: j.is_multiple_of(2),
        opened: j.is_multiple_of(3),
        clicked: j.is_multiple_of(5),
        viewed: j.is_multiple_of(7),
        failed: j % 4 == 1,
    }
}

/// Expected counts for one thread's `n` messages, as (total, delivered, opened, clicked,
/// action, failed).
fn expected_counts(n: u64) -> [u64; 6] {
    let mut counts = [n, 0, 0, 0, 0, 0];
    for j in 0..n {
        let f = fate(j);
        // An open implies delivery, any action implies delivery, a click implies an open.
        let opened = f.opened || f.clicked;
        let delivered = f.delivered || opened || f.viewed;
        counts[1] += u64::from(delivered);
        counts[2] += u64::from(opened);
        counts[3] += u64::from(f.clicked);
        counts[4] += u64::from(f.clicked || f.viewed);
        // Only a message never delivered counts as failed.
        counts[5] += u64::from(f.failed && !delivered);
    }
    counts
}

fn channel(j: u64) -> Channel {
    [Channel::Sms, Channel::Email, Channel::Push, Channel::InApp][(j % 4) as usize]
}

/// Thread `t` (user `t + 1`) sends `n` messages, then reports on them in reverse order;
/// returns the ids it was given and the number of events it tracked.
fn run_thread(store: &Store, t: u64, n: u64) -> (Vec<MessageId>, u64) {
    let user = t + 1;
    let mut ids = Vec::new();
    let mut events = 0;
    for j in 0..n {
        let at = t0() + Duration::seconds((j * THREADS + t) as i64);
        let message = store
            .track_message_sent_at(user, channel(j), "low_balance", 0.05, at)
            .unwrap();
        assert_eq!(message.user_id.0, user);
        ids.push(message.id);
        events += 1;
    }
    for (j, id) in ids.iter().enumerate().rev() {
        let j = j as u64;
        let f = fate(j);
        let time = t0() + Duration::days(1) + Duration::seconds(j as i64);
        let at = Some(time);
        if f.failed {
            store.track_message_failed(*id, "undelivered", at).unwrap();
            events += 1;
        }
        if f.delivered {
            store.track_message_delivered(*id, at).unwrap();
            events += 1;
        }
        if f.opened {
            store.track_message_opened(*id, at).unwrap();
            events += 1;
        }
        if f.clicked {
            store.track_user_action(*id, "clicked_link", at).unwrap();
            events += 1;
        }
        if f.viewed {
            store.track_user_action(*id, "viewed_forecast", at).unwrap();
            events += 1;
        }
        if j.is_multiple_of(10) {
            store
                .track_financial_outcome_at(user, "bill_paid_on_time", 1.25, time)
                .unwrap();
            events += 1;
        }
    }
    (ids, events)
}

fn assert_counts(store: &Store, filter: &StatsFilter, expected: [u64; 6], outcomes: u64) {
    let stats = store.get_communication_stats(filter).unwrap();
    let got = [
        stats.total_messages,
        stats.delivered_count,
        stats.opened_count,
        stats.clicked_count,
        stats.action_count,
        stats.failed_count,
    ];
    assert_eq!(
        got, expected,
        "{filter:?}: total, delivered, opened, clicked, action, failed"
    );
    assert_eq!(
        stats.total_cost.micros(),
        i128::from(expected[0]) * 50_000,
        "{filter:?}"
    );
    assert_eq!(stats.outcome_count, outcomes, "{filter:?}");
    assert_eq!(
        stats.total_impact.micros(),
        i128::from(outcomes) * 1_250_000,
        "{filter:?}"
    );
}

/// Eight threads track `n` messages each on one store; checks ids and every count, before and
/// after a reopen.
fn eight_threads_at_once(sync: SyncPolicy, n: u64) {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(
        Store::open_with(
            dir.path(),
            Options {
                sync,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || run_thread(&store, t, n))
        })
        .collect();
    let results: Vec<(Vec<MessageId>, u64)> = handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();

    // Ids are unique, dense from 1, and each thread's in the order it sent them.
    let mut all_ids: Vec<u64> = results
        .iter()
        .flat_map(|(ids, _)| ids.iter().map(|id| id.0))
        .collect();
    for (ids, _) in &results {
        assert!(ids.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }
    all_ids.sort_unstable();
    assert_eq!(all_ids, (1..=THREADS * n).collect::<Vec<u64>>());
    let events: u64 = results.iter().map(|(_, events)| events).sum();
    let outcomes_per_user = n.div_ceil(10);

    let check = |store: &Store| {
        let per_user = expected_counts(n);
        for (t, (ids, _)) in results.iter().enumerate() {
            let user = t as u64 + 1;
            assert_counts(
                store,
                &StatsFilter::new().user(user),
                per_user,
                outcomes_per_user,
            );
            let history = store
                .get_user_communication_history(user, usize::MAX)
                .unwrap();
            let mut history_ids: Vec<MessageId> =
                history.iter().map(|message| message.id).collect();
            history_ids.reverse(); // newest sent first; this thread sent in id order
            assert_eq!(&history_ids, ids, "user {user}");
            assert!(history.iter().all(|message| message.user_id.0 == user));
        }
        assert_counts(
            store,
            &StatsFilter::new(),
            per_user.map(|count| count * THREADS),
            outcomes_per_user * THREADS,
        );
    };
    check(&store);
    let store = Arc::into_inner(store).expect("every thread is done");
    store.close().unwrap();

    let reopened = Store::open_with(dir.path(), never()).unwrap();
    assert_eq!(reopened.open_report().events, events);
    assert_eq!(reopened.open_report().truncated_bytes, 0);
    check(&reopened);
}

#[test]
fn eight_threads_tracking_at_once_get_dense_ids_and_exact_counts() {
    eight_threads_at_once(SyncPolicy::Never, 2_000);
}

#[test]
fn eight_threads_tracking_at_once_under_always_share_fsyncs_and_lose_nothing() {
    eight_threads_at_once(SyncPolicy::Always, 250);
}

/// Every file under `dir` with its bytes, by relative path; `dir` holds no directory.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let files = support::files::snapshot(dir);
    for (path, bytes) in &files {
        assert!(bytes.is_some(), "{}", path.display());
    }
    files
}

#[test]
fn a_second_writer_is_locked_out_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let writer = Store::open_with(dir.path(), never()).unwrap();
    writer
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, t0())
        .unwrap();
    writer.flush().unwrap();
    let before = snapshot(dir.path());

    match Store::open(dir.path()) {
        Err(error @ Error::Locked { .. }) => {
            // The holder is this very process (another open of the store in it), and the
            // message says so rather than blaming another process.
            let this = format!("locked by this process (pid {})", std::process::id());
            assert!(error.to_string().contains(&this), "{error}");
            let Error::Locked { path, .. } = &error else {
                unreachable!()
            };
            assert_eq!(path, &dir.path().join(LOCK_FILE_NAME));
        }
        Err(other) => panic!("expected Error::Locked, got {other:?}"),
        Ok(_) => panic!("a second writer opened a locked store"),
    }
    assert_eq!(snapshot(dir.path()), before);

    // The first writer is unaffected.
    writer
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, t0())
        .unwrap();
    writer.close().unwrap();
}

#[test]
fn a_lock_held_by_another_process_under_this_process_s_pid_is_another_process_s() {
    let dir = TempDir::new().unwrap();
    Store::open_with(dir.path(), never())
        .unwrap()
        .close()
        .unwrap();
    let lock = dir.path().join(LOCK_FILE_NAME);
    // Another process holds the lock (flock(1), as a writer's open does), and the file names
    // this process's pid, as a writer in another PID namespace (a container sharing the
    // volume) may.
    // In a process group of its own: `flock`'s `sleep` child holds the lock too.
    let mut holder = std::process::Command::new("flock")
        .arg("--exclusive")
        .arg(&lock)
        .args(["sleep", "60"])
        .process_group(0)
        .spawn()
        .expect("flock(1) runs");
    loop {
        let probe = fs::File::open(&lock).unwrap();
        match probe.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => break,
            _ => thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    let pid = std::process::id();
    fs::write(&lock, pid.to_string()).unwrap();
    let opened = Store::open_with(
        dir.path(),
        Options {
            lock_timeout: std::time::Duration::ZERO,
            ..never()
        },
    );
    let group = format!("-{}", holder.id());
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success());
    holder.wait().unwrap();
    match opened {
        Err(
            error @ Error::Locked {
                by_this_process: false,
                ..
            },
        ) => assert!(
            error
                .to_string()
                .contains(&format!("locked by another process (pid {pid})")),
            "{error}"
        ),
        Err(other) => panic!("expected Error::Locked by another process, got {other:?}"),
        Ok(_) => panic!("opened a store another process holds"),
    }
    // Released, the store opens again.
    Store::open_with(dir.path(), never())
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn a_lock_passed_between_threads_of_this_process_is_always_this_process_s() {
    let dir = TempDir::new().unwrap();
    Store::open_with(dir.path(), never())
        .unwrap()
        .close()
        .unwrap();
    let briefly = || Options {
        lock_timeout: std::time::Duration::from_millis(200),
        ..never()
    };
    // Threads take the lock in turn, each trying a second open while it holds it: whoever
    // holds the lock then, it is this process.
    thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                for _ in 0..400 {
                    let Ok(store) = Store::open_with(dir.path(), briefly()) else {
                        continue;
                    };
                    match Store::open_with(
                        dir.path(),
                        Options {
                            lock_timeout: std::time::Duration::ZERO,
                            ..never()
                        },
                    ) {
                        Err(Error::Locked {
                            by_this_process, ..
                        }) => assert!(by_this_process, "a lock of this process called another's"),
                        Err(other) => panic!("expected Error::Locked, got {other:?}"),
                        Ok(_) => panic!("two opens for writing at once"),
                    }
                    store.close().unwrap();
                }
            });
        }
    });
}

#[test]
fn a_read_only_open_beside_a_writer_sees_what_it_flushed() {
    let dir = TempDir::new().unwrap();
    let writer = Store::open_with(dir.path(), never()).unwrap();
    for j in 0..50 {
        let message = writer
            .track_message_sent_at(1 + j % 3, channel(j), "low_balance", 0.05, t0())
            .unwrap();
        writer
            .track_message_delivered(message.id, Some(t0() + Duration::minutes(1)))
            .unwrap();
    }
    writer.flush().unwrap();

    let all = StatsFilter::new();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.open_report().events, 100);
    assert_eq!(reader.open_report().truncated_bytes, 0);
    assert_eq!(
        reader.get_communication_stats(&all).unwrap(),
        writer.get_communication_stats(&all).unwrap()
    );
    for user in 1..=3 {
        assert_eq!(
            reader
                .get_user_communication_history(user, usize::MAX)
                .unwrap(),
            writer
                .get_user_communication_history(user, usize::MAX)
                .unwrap()
        );
    }
    assert!(matches!(
        reader.track_message_delivered(1, Some(t0())),
        Err(Error::ReadOnly { .. })
    ));

    // More events, flushed: a second reader sees them; the first keeps its snapshot.
    for j in 0..10 {
        writer
            .track_message_opened(j + 1, Some(t0() + Duration::minutes(2)))
            .unwrap();
    }
    writer.flush().unwrap();
    let second = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(second.open_report().events, 110);
    assert_eq!(
        second.get_communication_stats(&all).unwrap(),
        writer.get_communication_stats(&all).unwrap()
    );
    assert_eq!(
        reader.get_communication_stats(&all).unwrap().opened_count,
        0
    );

    // Readers do not hold the lock: once the writer closes, a new writer opens.
    writer.close().unwrap();
    let next = Store::open_with(dir.path(), never()).unwrap();
    assert_eq!(next.open_report().events, 110);
    assert_eq!(
        next.get_communication_stats(&all).unwrap(),
        second.get_communication_stats(&all).unwrap()
    );
    drop(next);
    drop(reader);
    drop(second);

    // And after a writer is merely dropped, too.
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(again.open_report().events, 110);
}

#[test]
fn an_open_waits_for_the_lock_up_to_lock_timeout() {
    let dir = TempDir::new().unwrap();
    let writer = Store::open_with(dir.path(), never()).unwrap();
    writer
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, t0())
        .unwrap();

    // Held for longer than the timeout: Locked, after waiting it out.
    let briefly = Options {
        lock_timeout: std::time::Duration::from_millis(50),
        ..never()
    };
    let started = std::time::Instant::now();
    assert!(matches!(
        Store::open_with(dir.path(), briefly),
        Err(Error::Locked { .. })
    ));
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    // A longer wait is said, with how long it was.
    let longer = Options {
        lock_timeout: std::time::Duration::from_millis(400),
        ..never()
    };
    match Store::open_with(dir.path(), longer) {
        Err(error @ Error::Locked { waited_ms, .. }) => {
            assert!((400..5_000).contains(&waited_ms), "{error}");
            assert!(error.to_string().contains(" s waited"), "{error}");
        }
        Err(other) => panic!("expected Error::Locked, got {other:?}"),
        Ok(_) => panic!("opened a locked store"),
    }

    // Released while the second writer waits: it opens and sees the first writer's events.
    let patient = Options {
        lock_timeout: std::time::Duration::from_secs(60),
        ..never()
    };
    let closer = thread::spawn(move || {
        thread::sleep(std::time::Duration::from_millis(100));
        writer.close().unwrap();
    });
    let second = Store::open_with(dir.path(), patient).unwrap();
    closer.join().unwrap();
    assert_eq!(second.open_report().events, 1);
    let message = second
        .track_message_sent_at(2, Channel::Email, "low_balance", 0.05, t0())
        .unwrap();
    assert_eq!(message.id, MessageId(2));
}

#[test]
fn a_store_directory_is_created_only_under_an_existing_parent() {
    let temp = TempDir::new().unwrap();
    let nested = temp.path().join("missing").join("store");
    match Store::open(&nested) {
        Err(error @ Error::InvalidInput { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("missing") && text.contains("does not exist"),
                "{text}"
            );
        }
        Err(other) => panic!("expected InvalidInput, got {other:?}"),
        Ok(_) => panic!("opened a store under a missing parent"),
    }
    assert!(!temp.path().join("missing").exists(), "nothing created");

    let file = temp.path().join("a-file");
    fs::write(&file, b"not a store").unwrap();
    for result in [
        Store::open(&file).map(drop),
        Store::open_read_only(&file).map(drop),
    ] {
        match result {
            Err(error @ Error::InvalidInput { .. }) => {
                assert!(error.to_string().contains("is not a directory"), "{error}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(fs::read(&file).unwrap(), b"not a store");

    // A missing store directory under an existing parent is created.
    let store = Store::open(temp.path().join("store")).unwrap();
    assert_eq!(store.open_report().events, 0);
}

#[test]
fn user_ids_above_i64_max_are_refused_everywhere() {
    let dir = TempDir::new().unwrap();
    let store = Store::open_with(dir.path(), never()).unwrap();
    let too_large = i64::MAX as u64 + 1;
    let before = snapshot(dir.path());
    for error in [
        store
            .track_message_sent_at(too_large, Channel::Sms, "x", 0.0, t0())
            .map(drop)
            .unwrap_err(),
        store
            .track_financial_outcome_at(u64::MAX, "x", 1.0, t0())
            .map(drop)
            .unwrap_err(),
        store
            .get_user_communication_history(too_large, 10)
            .map(drop)
            .unwrap_err(),
        store
            .get_communication_stats(&StatsFilter::new().user(too_large))
            .map(drop)
            .unwrap_err(),
        store
            .get_channel_effectiveness(&commlog::EffectivenessFilter::new().user(too_large))
            .map(drop)
            .unwrap_err(),
        store
            .get_cost_report(&commlog::CostFilter::new().user(too_large))
            .map(drop)
            .unwrap_err(),
        store
            .get_financial_impact(&commlog::ImpactFilter::new().user(too_large))
            .map(drop)
            .unwrap_err(),
        store
            .get_user_engagement(too_large, &commlog::EngagementFilter::new())
            .map(drop)
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                &error,
                Error::InvalidInput {
                    field: "user_id",
                    ..
                }
            ) && error.to_string().contains("9223372036854775807"),
            "{error}"
        );
    }
    assert_eq!(snapshot(dir.path()), before);
    let largest = store
        .track_message_sent_at(i64::MAX as u64, Channel::Sms, "x", 0.0, t0())
        .unwrap();
    assert_eq!(largest.user_id.0, i64::MAX as u64);
}

#[test]
fn a_reader_survives_a_writer_cutting_the_torn_tail_it_is_reading() {
    let dir = TempDir::new().unwrap();
    {
        let writer = Store::open_with(dir.path(), never()).unwrap();
        for j in 0..20_000 {
            writer
                .track_message_sent_at(1 + j % 7, channel(j), "low_balance", 0.05, t0())
                .unwrap();
        }
        writer.close().unwrap();
    }
    let segment = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|extension| extension == "log"))
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let dir = dir.path().to_path_buf();
        thread::spawn(move || {
            let mut opens = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A reader replays whatever is there; it must never crash.
                let store = Store::open_read_only(&dir).unwrap();
                assert!(store.open_report().events >= 20_000);
                opens += 1;
            }
            opens
        })
    };
    // Each round: a torn tail of several pages, which the next writer's open cuts off.
    for _ in 0..60 {
        let mut file = fs::OpenOptions::new().append(true).open(&segment).unwrap();
        std::io::Write::write_all(&mut file, &[0xA5; 64 * 1024]).unwrap();
        drop(file);
        let writer = Store::open_with(dir.path(), never()).unwrap();
        assert_eq!(writer.open_report().truncated_bytes, 64 * 1024);
        writer.close().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}
