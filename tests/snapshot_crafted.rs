//! Snapshots whose bytes were crafted or damaged and whose checksums were recomputed, so that
//! only their meaning is wrong. A snapshot is a cache never trusted blindly: whatever such a
//! file holds, no open (writer or read-only, its facts decoded whole or on demand, its indexes
//! read or not), later query, tracking call, `Store::refresh`, close or deep audit panics, hangs
//! or allocates absurd memory. Either the open's checks reject the snapshot (it is named, with a
//! reason, among the open's ignored snapshots, and the store answers as a full replay of the log
//! does), or it loads and then everything works: the store answers as a full replay does, or a
//! deep audit finds that the snapshot differs from the log (a file rewritten with its checksums
//! can hold other counts or facts that fit together; only a fold can tell).
//!
//! The store is built once: messages and outcomes in slices dense enough for the indexes' minute
//! buckets, in several channels, types and days, with stages, budgets and external ids, a first
//! and a last message and outcome each alone in its day. Its close writes a snapshot holding
//! both indexes. Each case changes that snapshot's bytes, recomputes its checksums, and runs
//! everything on a copy of the store. The cases are single-byte changes over the facts and the
//! indexes, spread evenly over both parts, and targeted rewrites of fields (each naming what it
//! breaks), with the reason the open must give for those it checks (`REJECTED`); and counts
//! past what the bytes left hold, for which the open must reserve nothing (a global allocator
//! notes the largest allocation). Every case is run with the facts decoded whole and on demand
//! (the messages and the users' lists then left in the file, each checked where it lies), and
//! every open that reads both indexes must make the same of the snapshot; on demand, an open
//! that reads past their sums by time (taking only each outcome's credit) must answer as the
//! others.

mod support;

use support::walk::{Walk, recompute_checksums};

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use commlog::workload::SplitMix64;
use commlog::{
    BudgetScope, Channel, CostFilter, EffectivenessFilter, EngagementFilter, ImpactFilter,
    MessageId, Month, Options, Period, SNAPSHOT_DIRECTORY, StatsFilter, Store, SyncPolicy,
};
use tempfile::TempDir;

/// 2025-01-01T00:00:00Z, the start of a ten-minute slice, an hour and a day.
const T0: i64 = 1_735_689_600_000;
const MINUTE: i64 = 60_000;
const SLICE: i64 = 10 * MINUTE;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Messages sent in the first slice: more than the 1,024 that make a rollup slice dense.
const DENSE_MESSAGES: u64 = 1_100;
/// Outcomes in the slice an hour later: more than the 128 that make a credits slice dense.
const DENSE_OUTCOMES: u64 = 140;
const USERS: u64 = 30;
const TYPES: [&str; 4] = ["bill_due", "welcome", "promo_upgrade", "reminder"];
const OUTCOMES: [&str; 2] = ["bill_paid", "plan_upgraded"];

/// The time `ms` milliseconds after the epoch.
fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn options() -> Options {
    Options {
        sync: SyncPolicy::Never,
        ..Options::default()
    }
}

/// What the tracking calls after an open touch: messages by id, chosen while building the store.
#[derive(Debug, Clone, Copy)]
struct Targets {
    /// Sent in the dense slice, delivered, not opened.
    dense_delivered: u64,
    /// Sent in a quiet slice, with no stage yet.
    quiet_sent: u64,
    /// Delivered, neither opened nor acted on, and credited (delivered) with an outcome.
    credited_delivered: u64,
    /// Another message with no stage yet, to fail.
    to_fail: u64,
    /// The user of `credited_delivered`, who has outcomes after the dense slice.
    user_with_outcomes: u64,
    /// The last message sent before the calls, alone in its day.
    last: u64,
}

/// The store every case starts from: its files (the log's segments and the snapshot), where the
/// snapshot's parts lie, and what a full replay answers before and after the tracking calls.
struct Base {
    /// (name, bytes) of each segment file.
    segments: Vec<(String, Vec<u8>)>,
    snapshot_name: String,
    snapshot: Vec<u8>,
    layout: Layout,
    targets: Targets,
    expected_before: Vec<String>,
    expected_after: Vec<String>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build_base)
}

fn build_base() -> Base {
    let dir = TempDir::new().unwrap();
    // No snapshot while the calls are made (one in the background would hold no indexes).
    let store = Store::open_with(
        dir.path(),
        Options {
            snapshot_every: 0,
            ..options()
        },
    )
    .unwrap();
    let mut random = SplitMix64::new(7);
    // (id, user, sent_ms, delivered, opened, acted, failed)
    let mut sent: Vec<(u64, u64, i64, bool, bool, bool, bool)> = Vec::new();
    let mut send =
        |store: &Store, random: &mut SplitMix64, user: u64, sent_ms: i64, external: bool| {
            let channel = Channel::ALL[random.int(0, 4 - 1) as usize];
            let message_type = TYPES[random.int(0, 4 - 1) as usize];
            let cost = random.int(0, 5_000 - 1) as f64 / 1e6;
            let external_id = format!("ext-{}", sent.len() + 1);
            let message = store
                .track_message_sent_with(
                    user,
                    channel,
                    message_type,
                    cost,
                    Some(at(sent_ms)),
                    external.then_some(external_id.as_str()),
                )
                .unwrap();
            sent.push((message.id.0, user, sent_ms, false, false, false, false));
            message.id.0
        };
    // The first message, alone in its day.
    send(&store, &mut random, 1, T0 - 5 * DAY + 3 * HOUR, false);
    // The dense slice, sent mostly in time order with some out of it.
    for index in 0..DENSE_MESSAGES {
        let mut sent_ms = T0 + (index as i64 * SLICE) / DENSE_MESSAGES as i64;
        if random.int(0, 10 - 1) == 0 {
            sent_ms = T0 + random.int(0, SLICE as u64 - 1) as i64;
        }
        let user = 1 + random.int(0, USERS - 1);
        send(&store, &mut random, user, sent_ms, index % 97 == 0);
    }
    // Quiet slices over four days, some sent out of order.
    for index in 0..150 {
        let mut sent_ms = T0 + HOUR / 2 + index * 37 * MINUTE;
        if index % 11 == 0 {
            sent_ms -= 3 * HOUR;
        }
        let user = 1 + random.int(0, USERS - 1);
        send(&store, &mut random, user, sent_ms, index % 13 == 0);
    }
    // The last message, alone in its day.
    let last = send(&store, &mut random, 2, T0 + 9 * DAY + 5 * HOUR, false);
    // Stages, for every message but the first and the last (the calls after an open change
    // those).
    let count = sent.len();
    for entry in &mut sent[1..count - 1] {
        let (id, _, sent_ms, delivered, opened, acted, failed) = entry;
        let roll = random.int(0, 100 - 1);
        if roll < 5 {
            store
                .track_message_failed(MessageId(*id), "bounced", Some(at(*sent_ms + 2_000)))
                .unwrap();
            *failed = true;
            continue;
        }
        if roll < 70 {
            let delay = 1_000 + random.int(0, 60_000 - 1) as i64;
            store
                .track_message_delivered(MessageId(*id), Some(at(*sent_ms + delay)))
                .unwrap();
            *delivered = true;
        }
        if roll < 35 {
            let delay = 90_000 + random.int(0, 300_000 - 1) as i64;
            store
                .track_message_opened(MessageId(*id), Some(at(*sent_ms + delay)))
                .unwrap();
            *opened = true;
        }
        if roll < 12 {
            let action = if roll < 4 {
                "upgrade_now"
            } else {
                "clicked_link"
            };
            store
                .track_user_action(MessageId(*id), action, Some(at(*sent_ms + 400_000)))
                .unwrap();
            *acted = true;
        }
    }
    // Outcomes: the first alone in its day, a dense slice an hour after the messages', quiet
    // ones over six days, the last alone in its day.
    store
        .track_financial_outcome_at(3, OUTCOMES[0], 12.5, at(T0 - 4 * DAY))
        .unwrap();
    for index in 0..DENSE_OUTCOMES {
        let at_ms = T0 + HOUR + (index as i64 * SLICE) / DENSE_OUTCOMES as i64;
        let user = 1 + random.int(0, USERS - 1);
        let outcome = OUTCOMES[random.int(0, 2 - 1) as usize];
        let amount = random.int(0, 100_000 - 1) as f64 / 100.0 - 50.0;
        store
            .track_financial_outcome_at(user, outcome, amount, at(at_ms))
            .unwrap();
    }
    for index in 0..30 {
        let at_ms = T0 + 3 * HOUR + index * 4 * HOUR + 7 * MINUTE;
        let user = 1 + random.int(0, USERS - 1);
        store
            .track_financial_outcome_at(user, OUTCOMES[1], 20.0, at(at_ms))
            .unwrap();
    }
    store
        .track_financial_outcome_at(4, OUTCOMES[1], 99.0, at(T0 + 12 * DAY))
        .unwrap();
    store
        .set_budget(BudgetScope::All, "2025-01", 250.0, None)
        .unwrap();
    store
        .set_budget(
            BudgetScope::Channel(Channel::Email),
            "2025-01",
            40.0,
            Some(75),
        )
        .unwrap();
    store.close().unwrap();
    // Reopened, the queries over all users build both indexes, which the close's snapshot
    // holds.
    let store = Store::open_with(
        dir.path(),
        Options {
            snapshot_every: 1,
            ..options()
        },
    )
    .unwrap();
    answers(&store);
    store.close().unwrap();

    let in_dense =
        |entry: &&(u64, u64, i64, bool, bool, bool, bool)| (T0..T0 + SLICE).contains(&entry.2);
    let dense_delivered = sent
        .iter()
        .filter(in_dense)
        .find(|entry| entry.3 && !entry.4 && !entry.5)
        .unwrap()
        .0;
    let quiet_sent = sent
        .iter()
        .find(|entry| entry.2 >= T0 + HOUR && !entry.3 && !entry.4 && !entry.6)
        .unwrap()
        .0;
    let to_fail = sent
        .iter()
        .rev()
        .find(|entry| entry.2 < T0 + SLICE && !entry.3 && !entry.4 && !entry.6)
        .unwrap()
        .0;
    // A delivered message of the dense slice whose user has outcomes in the dense outcome
    // slice, within the window: a credit at the delivered level (or one that opening it moves).
    let credited = sent
        .iter()
        .filter(in_dense)
        .find(|entry| entry.3 && !entry.4 && !entry.5 && entry.0 != dense_delivered)
        .unwrap();
    let targets = Targets {
        dense_delivered,
        quiet_sent,
        credited_delivered: credited.0,
        to_fail,
        user_with_outcomes: credited.1,
        last,
    };

    let mut segments = Vec::new();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "log") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            segments.push((name, fs::read(&path).unwrap()));
        }
    }
    segments.sort();
    let snapshots = dir.path().join(SNAPSHOT_DIRECTORY);
    let mut names: Vec<String> = fs::read_dir(&snapshots)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let snapshot_name = names.pop().expect("the close wrote a snapshot");
    let snapshot = fs::read(snapshots.join(&snapshot_name)).unwrap();
    let layout = Layout::of(&snapshot);
    assert!(
        layout.rollup.is_some() && layout.credits.is_some(),
        "both indexes"
    );

    // What a full replay answers, before and after the tracking calls.
    let mut base = Base {
        segments,
        snapshot_name,
        snapshot,
        layout,
        targets,
        expected_before: Vec::new(),
        expected_after: Vec::new(),
    };
    let replayed = base.store_dir(None);
    let full = Options {
        load_snapshot: false,
        ..options()
    };
    let reader = Store::open_read_only_with(replayed.path(), full.clone()).unwrap();
    base.expected_before = answers(&reader);
    let writer = Store::open_with(replayed.path(), full).unwrap();
    let mut after = track_calls(&writer, &targets);
    after.extend(answers(&writer));
    writer.close().unwrap();
    base.expected_after = after;
    assert!(
        base.layout.rollup.as_ref().unwrap().dense.len() == 1
            && base.layout.credits.as_ref().unwrap().dense.len() == 1,
        "one dense slice in each index"
    );
    base
}

impl Base {
    /// A store directory holding the log and `snapshot` (the base's own with `None`), its
    /// checksums recomputed.
    fn store_dir(&self, snapshot: Option<&[u8]>) -> TempDir {
        let dir = TempDir::new().unwrap();
        for (name, bytes) in &self.segments {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let snapshots = dir.path().join(SNAPSHOT_DIRECTORY);
        fs::create_dir(&snapshots).unwrap();
        let mut bytes = snapshot.unwrap_or(&self.snapshot).to_vec();
        recompute_checksums(&mut bytes);
        fs::write(snapshots.join(&self.snapshot_name), bytes).unwrap();
        dir
    }

    fn snapshot_path(&self, dir: &Path) -> PathBuf {
        dir.join(SNAPSHOT_DIRECTORY).join(&self.snapshot_name)
    }
}

/// The tracking calls made after an open: each changes what an index holds (a kind in a dense
/// and a quiet slice, a credit's touch and level, a send before a user's outcomes, a send into
/// the dense slice and one far after, outcomes into the dense slice and a quiet one). Returns
/// what each answered.
fn track_calls(store: &Store, targets: &Targets) -> Vec<String> {
    let mut answered = Vec::new();
    let mut answer = |what: &str, result: String| answered.push(format!("{what}: {result}"));
    let message = |id: u64| MessageId(id);
    let late = at(T0 + 20 * DAY);
    answer(
        "deliver quiet",
        format!(
            "{:?}",
            store.track_message_delivered(message(targets.quiet_sent), Some(late))
        ),
    );
    answer(
        "open dense",
        format!(
            "{:?}",
            store
                .track_message_opened(message(targets.dense_delivered), Some(at(T0 + 30 * MINUTE)))
        ),
    );
    answer(
        "open credited",
        format!(
            "{:?}",
            store.track_message_opened(
                message(targets.credited_delivered),
                Some(at(T0 + 20 * MINUTE))
            )
        ),
    );
    answer(
        "act credited",
        format!(
            "{:?}",
            store.track_user_action(
                message(targets.credited_delivered),
                "upgrade_now",
                Some(at(T0 + 25 * MINUTE))
            )
        ),
    );
    answer(
        "fail",
        format!(
            "{:?}",
            store.track_message_failed(message(targets.to_fail), "blocked", Some(late))
        ),
    );
    answer(
        "send dense",
        format!(
            "{:?}",
            store.track_message_sent_at(
                targets.user_with_outcomes,
                Channel::Push,
                "welcome",
                0.002,
                at(T0 + 4 * MINUTE + 123),
            )
        ),
    );
    answer(
        "send new type",
        format!(
            "{:?}",
            store.track_message_sent_at(
                targets.user_with_outcomes,
                Channel::Sms,
                "brand_new_type",
                0.01,
                at(T0 + 50 * MINUTE),
            )
        ),
    );
    answer(
        "send far",
        format!(
            "{:?}",
            store.track_message_sent_at(31, Channel::Email, "reminder", 0.0, at(T0 + 15 * DAY))
        ),
    );
    answer(
        "deliver the first",
        format!(
            "{:?}",
            store.track_message_delivered(message(1), Some(at(T0 - 5 * DAY + 3 * HOUR + 1_000)))
        ),
    );
    answer(
        "open the last",
        format!(
            "{:?}",
            store.track_message_opened(message(targets.last), Some(at(T0 + 9 * DAY + 6 * HOUR)))
        ),
    );
    answer(
        "send before the first outcome",
        format!(
            "{:?}",
            store.track_message_sent_at(3, Channel::Push, "bill_due", 0.0, at(T0 - 4 * DAY - HOUR))
        ),
    );
    answer(
        "send before the last outcome",
        format!(
            "{:?}",
            store.track_message_sent_at(4, Channel::Sms, "reminder", 0.0, at(T0 + 12 * DAY - HOUR))
        ),
    );
    answer(
        "deliver before the last outcome",
        format!(
            "{:?}",
            store.track_message_delivered(
                message(targets.last + 5),
                Some(at(T0 + 12 * DAY - HOUR + 5))
            )
        ),
    );
    answer(
        "outcome dense",
        format!(
            "{:?}",
            store.track_financial_outcome_at(
                targets.user_with_outcomes,
                OUTCOMES[1],
                7.0,
                at(T0 + HOUR + 5 * MINUTE + 17)
            )
        ),
    );
    answer(
        "outcome quiet",
        format!(
            "{:?}",
            store.track_financial_outcome_at(5, OUTCOMES[0], 3.0, at(T0 + 2 * DAY + 1))
        ),
    );
    answered
}

/// What the views answer: every query over all users and over one user, with time ranges that
/// cut the dense slices' minutes, span days, or are open at one end.
fn answers(store: &Store) -> Vec<String> {
    let mut answered = Vec::new();
    let mut answer = |what: String, result: String| answered.push(format!("{what}: {result}"));
    let user = 7;
    let ranges: [(Option<i64>, Option<i64>); 5] = [
        (None, None),
        (
            Some(T0 + 3 * MINUTE + 30_000),
            Some(T0 + 7 * MINUTE + 15_000),
        ),
        (
            Some(T0 + HOUR + 2 * MINUTE + 1),
            Some(T0 + HOUR + 8 * MINUTE),
        ),
        (Some(T0 - DAY), Some(T0 + 3 * DAY + 17 * MINUTE)),
        (Some(T0 + 2 * HOUR), None),
    ];
    macro_rules! ranged {
        ($filter:expr, $range:expr) => {{
            let mut filter = $filter;
            if let Some(start) = $range.0 {
                filter = filter.start(at(start));
            }
            if let Some(end) = $range.1 {
                filter = filter.end(at(end));
            }
            filter
        }};
    }
    for (place, range) in ranges.iter().enumerate() {
        let stats = |filter: StatsFilter| format!("{:?}", store.get_communication_stats(&filter));
        answer(
            format!("stats {place}"),
            stats(ranged!(StatsFilter::new(), range)),
        );
        answer(
            format!("stats user {place}"),
            stats(ranged!(StatsFilter::new().user(user), range)),
        );
        answer(
            format!("stats email {place}"),
            stats(ranged!(StatsFilter::new().channel(Channel::Email), range)),
        );
        answer(
            format!("stats type {place}"),
            stats(ranged!(StatsFilter::new().message_type(TYPES[2]), range)),
        );
        let channels =
            |filter: EffectivenessFilter| format!("{:?}", store.get_channel_effectiveness(&filter));
        answer(
            format!("channels {place}"),
            channels(ranged!(EffectivenessFilter::new(), range)),
        );
        answer(
            format!("channels user {place}"),
            channels(ranged!(EffectivenessFilter::new().user(user), range)),
        );
        let costs = |filter: CostFilter| format!("{:?}", store.get_cost_report(&filter));
        answer(
            format!("costs {place}"),
            costs(ranged!(CostFilter::new(), range)),
        );
        answer(
            format!("costs user {place}"),
            costs(ranged!(
                CostFilter::new().user(user).channel(Channel::Sms),
                range
            )),
        );
        let impact = |filter: ImpactFilter| format!("{:?}", store.get_financial_impact(&filter));
        answer(
            format!("impact {place}"),
            impact(ranged!(ImpactFilter::new(), range)),
        );
        answer(
            format!("impact user {place}"),
            impact(ranged!(ImpactFilter::new().user(user), range)),
        );
        answer(
            format!("impact push {place}"),
            impact(ranged!(ImpactFilter::new().channel(Channel::Push), range)),
        );
        answer(
            format!("engagement {place}"),
            format!(
                "{:?}",
                store.get_user_engagement(user, &ranged!(EngagementFilter::new(), range))
            ),
        );
    }
    answer(
        "channels by week".to_string(),
        format!(
            "{:?}",
            store.get_channel_effectiveness(&EffectivenessFilter::new().period(Period::Week))
        ),
    );
    answer(
        "channels by day, a type".to_string(),
        format!(
            "{:?}",
            store.get_channel_effectiveness(
                &EffectivenessFilter::new()
                    .period(Period::Day)
                    .message_type(TYPES[0])
            )
        ),
    );
    answer(
        "costs of a month".to_string(),
        format!(
            "{:?}",
            store.get_cost_report(&CostFilter::new().month(Month::new(2025, 1).unwrap()))
        ),
    );
    answer(
        "messages in a cut range".to_string(),
        format!(
            "{:?}",
            store.get_messages(
                &StatsFilter::new()
                    .start(at(T0 + 5 * MINUTE))
                    .end(at(T0 + 5 * MINUTE + 20_000))
            )
        ),
    );
    for user in [1, 7, 19, 31, 99] {
        answer(
            format!("history {user}"),
            format!("{:?}", store.get_user_communication_history(user, 30)),
        );
        answer(
            format!("messages {user}"),
            format!("{:?}", store.get_messages(&StatsFilter::new().user(user))),
        );
    }
    for id in [1, 2, 500, 1_100, 1_252, 1_253, 1_254, 5_000] {
        answer(
            format!("message {id}"),
            format!("{:?}", store.get_message(MessageId(id))),
        );
        answer(
            format!("external id of {id}"),
            format!("{:?}", store.get_external_id(MessageId(id))),
        );
    }
    for external in ["ext-2", "ext-99", "ext-1200", "nope"] {
        answer(
            format!("by external id {external}"),
            format!("{:?}", store.message_by_external_id(external)),
        );
    }
    answer(
        "summary".to_string(),
        format!(
            "{:?}",
            store
                .log_summary()
                .map(|s| (s.events, s.messages, s.outcomes))
        ),
    );
    answered
}

// ---------------------------------------------------------------------------------------------
// Where the snapshot's fields lie (docs/FORMAT.md, "Body" and "Indexes").

/// A user's lists: each entry's offset, time and index.
#[derive(Debug, Clone)]
struct UserAt {
    id: u64,
    messages: Vec<(usize, i64, u32)>,
    outcomes: Vec<(usize, i64, u32)>,
}

/// An outcome bucket's entries: (offset of the key ordinal, ordinal).
type Entries = Vec<(usize, u32)>;
/// A bucket of a level: the key's offset, the key, its entries (none for the rollup's).
type LevelBucket = (usize, i64, Entries);
/// A key of the credits: its offset, its outcome name, its credit (channel, type, level).
type KeyAt = (usize, u32, Option<(u8, u32, u8)>);
/// A dense slice of the credits: its key's offset, its key, each minute's entries, its
/// starts' offset.
type DenseMinutesAt = (usize, i64, Vec<Entries>, usize);

/// A time index: each level's buckets (the key's offset, the key, the bucket's entries as
/// (offset of the key ordinal, ordinal) for outcome buckets), each slice's items (the key's
/// offset, the key, the first item's offset, the items), and the slice range's offset.
#[derive(Debug, Clone, Default)]
struct TimeIndexAt {
    levels: [Vec<LevelBucket>; 4],
    slices: Vec<(usize, i64, usize, Vec<u32>)>,
    range_at: usize,
}

#[derive(Debug, Clone)]
struct RollupAt {
    types_at: usize,
    types: Vec<u32>,
    index: TimeIndexAt,
    /// Per dense slice: its key's offset, its key, its starts' offset.
    dense: Vec<(usize, i64, usize)>,
    dense_count_at: usize,
}

#[derive(Debug, Clone)]
struct CreditAt {
    /// The attribution's message index offset, index, level offset, level.
    attribution: Option<(usize, u32, usize, u8)>,
    last_sent_at: Option<usize>,
    key_at: usize,
}

#[derive(Debug, Clone)]
struct CreditsAt {
    credits: Vec<CreditAt>,
    lags_at: usize,
    keys_at: usize,
    /// Each key: outcome name, credit (channel, type, level).
    keys: Vec<KeyAt>,
    index: TimeIndexAt,
    /// Per dense slice: its key's offset, its key, each minute's entries, its starts' offset.
    dense: Vec<DenseMinutesAt>,
    dense_count_at: usize,
}

#[derive(Debug, Clone)]
struct Layout {
    /// The position's flag saying its last frame is a close marker, in the bound.
    close_marker_at: usize,
    /// The position's cursor (next message id, last event time, last appended time), in the
    /// bound.
    cursor_at: usize,
    /// The count of the covered segments, in the bound.
    covered_count_at: usize,
    /// The option tag of the log's summary's range of own times, in the bound.
    summary_event_ms_at: usize,
    facts_at: usize,
    /// Each message's offset, user, sent time, and whether it has any stage.
    messages: Vec<(usize, u64, i64, bool)>,
    /// Each outcome's offset, user and time.
    outcomes: Vec<(usize, u64, i64)>,
    users: Vec<UserAt>,
    names: Vec<String>,
    latest_event_at: usize,
    indexes_at: usize,
    /// Where the indexes end: the facts' directory follows.
    end: usize,
    rollup: Option<RollupAt>,
    credits: Option<CreditsAt>,
}

impl Layout {
    fn of(bytes: &[u8]) -> Layout {
        let mut walk = Walk { bytes, offset: 28 };
        // The bound: the position, the covered segments, the log's summary (version 4).
        assert_eq!(&bytes[8..12], 5_u32.to_le_bytes());
        walk.take(16);
        if walk.some() {
            walk.take(8);
        }
        walk.take(8 + 4 + 8 + 8);
        let close_marker_at = walk.offset;
        walk.take(1);
        let cursor_at = walk.offset;
        walk.take(8 + 8 + 8);
        let covered_count_at = walk.offset;
        let covered = walk.u64();
        walk.take(covered as usize * 20);
        walk.take(24);
        let summary_event_ms_at = walk.offset;
        for _ in 0..2 {
            if walk.some() {
                walk.take(16);
            }
        }
        let facts_at = walk.offset;
        let count = walk.u64();
        let mut messages = Vec::new();
        for _ in 0..count {
            let start = walk.offset;
            let user = walk.u64();
            let sent_ms = walk.i64();
            walk.take(8);
            let touched = walk.i64() != i64::MAX || walk.i64() != i64::MAX;
            walk.offset = start + 40;
            let rare = walk.some();
            if rare {
                walk.take(16);
                if walk.some() {
                    walk.take(4);
                }
                walk.take(8);
                if walk.some() {
                    walk.take(12);
                }
            }
            walk.take(4 + 2);
            messages.push((start, user, sent_ms, touched || rare));
        }
        let outcomes_list_at = walk.offset;
        let count = walk.u64();
        let outcomes = (0..count)
            .map(|_| {
                let start = walk.offset;
                let user = walk.u64();
                let at_ms = walk.i64();
                walk.take(12);
                (start, user, at_ms)
            })
            .collect();
        let users_list_at = walk.offset;
        let count = walk.u64();
        let users = (0..count)
            .map(|_| {
                let id = walk.u64();
                let messages = walk.skip_pairs();
                if walk.some() {
                    walk.take(12);
                }
                let outcomes = walk.skip_pairs();
                walk.take(8);
                UserAt {
                    id,
                    messages,
                    outcomes,
                }
            })
            .collect();
        let count = walk.u64();
        let names = (0..count)
            .map(|_| {
                let len = walk.u64() as usize;
                String::from_utf8(walk.take(len).to_vec()).unwrap()
            })
            .collect();
        let latest_event_at = walk.offset;
        if walk.some() {
            walk.take(8);
        }
        let budgets = walk.u64();
        walk.take(budgets as usize * 18);
        let external = walk.u64();
        for _ in 0..external {
            walk.take(8);
            let len = walk.u64() as usize;
            walk.take(len);
        }
        let indexes_at = walk.offset;
        // The trailer: the facts' directory (the message halfway, the first of a run of
        // 1,024, and where its record begins; where the outcomes' and the users' lists begin),
        // then where the indexes begin; offsets in the body, which starts after 28 bytes.
        let end = bytes.len() - 40;
        let trailer =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        let split = messages.len() / 2 / 1024 * 1024;
        assert_eq!(trailer(end), split, "the message halfway");
        assert_eq!(
            [
                trailer(end + 8),
                trailer(end + 16),
                trailer(end + 24),
                trailer(end + 32)
            ]
            .map(|offset| offset + 28),
            [
                messages[split].0,
                outcomes_list_at,
                users_list_at,
                indexes_at
            ],
            "the trailer names where the message halfway, the outcomes, the users and the \
             indexes begin"
        );
        let rollup = walk.some().then(|| {
            let types_at = walk.offset;
            let count = walk.u64();
            let types = (0..count).map(|_| walk.u32()).collect();
            let index = time_index(&mut walk, |walk| {
                let slots = walk.u64();
                walk.take(slots as usize * 56);
                Vec::new()
            });
            let dense_count_at = walk.offset;
            let count = walk.u64();
            let dense = (0..count)
                .map(|_| {
                    let key_at = walk.offset;
                    let key = walk.i64();
                    let buckets = walk.u64();
                    for _ in 0..buckets {
                        let slots = walk.u64();
                        walk.take(slots as usize * 56);
                    }
                    let starts_at = walk.offset;
                    walk.take(41 * 4);
                    (key_at, key, starts_at)
                })
                .collect();
            RollupAt {
                types_at,
                types,
                index,
                dense,
                dense_count_at,
            }
        });
        let credits = walk.some().then(|| {
            walk.take(8);
            let count = walk.u64();
            let credits = (0..count)
                .map(|_| {
                    let attribution = walk.some().then(|| {
                        let message_at = walk.offset;
                        let message = walk.u32();
                        let level_at = walk.offset;
                        (message_at, message, level_at, walk.u8())
                    });
                    let last_sent_at = walk.some().then(|| {
                        let offset = walk.offset;
                        walk.take(8);
                        offset
                    });
                    let key_at = walk.offset;
                    walk.take(4);
                    if walk.some() {
                        walk.take(6);
                    }
                    CreditAt {
                        attribution,
                        last_sent_at,
                        key_at,
                    }
                })
                .collect();
            let lags_at = walk.offset;
            walk.take(16);
            let keys_at = walk.offset;
            let count = walk.u64();
            let keys = (0..count)
                .map(|_| {
                    let offset = walk.offset;
                    let outcome = walk.u32();
                    let credit = walk.some().then(|| (walk.u8(), walk.u32(), walk.u8()));
                    (offset, outcome, credit)
                })
                .collect();
            let index = time_index(&mut walk, |walk| {
                walk.take(48);
                entries(walk)
            });
            let dense_count_at = walk.offset;
            let count = walk.u64();
            let dense = (0..count)
                .map(|_| {
                    let key_at = walk.offset;
                    let key = walk.i64();
                    walk.take(10 * 48);
                    let minutes = (0..10).map(|_| entries(&mut walk)).collect();
                    let starts_at = walk.offset;
                    walk.take(11 * 4);
                    (key_at, key, minutes, starts_at)
                })
                .collect();
            CreditsAt {
                credits,
                lags_at,
                keys_at,
                keys,
                index,
                dense,
                dense_count_at,
            }
        });
        assert_eq!(walk.offset, end, "the indexes end at the trailer");
        Layout {
            close_marker_at,
            cursor_at,
            covered_count_at,
            summary_event_ms_at,
            facts_at,
            messages,
            outcomes,
            users,
            names,
            latest_event_at,
            indexes_at,
            end,
            rollup,
            credits,
        }
    }
}

impl Layout {
    /// Which field the byte at `offset` belongs to, roughly: for naming a case.
    fn field_at(&self, offset: usize) -> String {
        let last_before = |starts: &[usize]| starts.partition_point(|&start| start <= offset);
        if offset < self.indexes_at {
            let starts: Vec<usize> = self.messages.iter().map(|m| m.0).collect();
            let place = last_before(&starts);
            let outcomes_at = self.outcomes.first().map_or(usize::MAX, |o| o.0);
            if place > 0 && offset < outcomes_at {
                let (start, ..) = self.messages[place - 1];
                return format!("message {} +{}", place, offset - start);
            }
            let starts: Vec<usize> = self.outcomes.iter().map(|o| o.0).collect();
            let place = last_before(&starts);
            if place > 0 && offset < self.outcomes[place - 1].0 + 28 {
                return format!("outcome {} +{}", place - 1, offset - starts[place - 1]);
            }
            for user in &self.users {
                for (kind, list) in [("message", &user.messages), ("outcome", &user.outcomes)] {
                    if let Some(k) = list.iter().position(|e| (e.0..e.0 + 12).contains(&offset)) {
                        return format!(
                            "user {}'s {kind} entry {k} +{}",
                            user.id,
                            offset - list[k].0
                        );
                    }
                }
            }
            if offset >= self.latest_event_at {
                return format!("after the names, +{}", offset - self.latest_event_at);
            }
            return "facts, elsewhere".to_string();
        }
        let credits_at = self.credits.as_ref().map_or(usize::MAX, |credits| {
            credits.credits.first().map_or(0, |c| c.key_at)
        });
        if offset < credits_at {
            let rollup = self.rollup.as_ref().unwrap();
            if offset >= rollup.dense_count_at {
                return "rollup's dense slices".to_string();
            }
            if offset >= rollup.index.range_at {
                return "rollup's slice range".to_string();
            }
            if let Some(slice) = rollup
                .index
                .slices
                .iter()
                .find(|s| s.0 <= offset && offset < s.2 + 4 * s.3.len())
            {
                return format!("rollup's items of slice {}", slice.1);
            }
            return "rollup's types or buckets".to_string();
        }
        let credits = self.credits.as_ref().unwrap();
        if offset < credits.lags_at {
            return "a credit".to_string();
        }
        if offset < credits.keys_at + 8 + 11 * credits.keys.len() {
            return "credits' lags or keys".to_string();
        }
        if offset >= credits.dense_count_at {
            return "credits' dense minutes".to_string();
        }
        if offset >= credits.index.range_at {
            return "credits' slice range".to_string();
        }
        if let Some(slice) = credits
            .index
            .slices
            .iter()
            .find(|s| s.0 <= offset && offset < s.2 + 4 * s.3.len())
        {
            return format!("credits' items of slice {}", slice.1);
        }
        "credits' buckets".to_string()
    }
}

/// An outcome bucket's entries: (offset of the key ordinal, ordinal).
fn entries(walk: &mut Walk<'_>) -> Entries {
    let count = walk.u64();
    (0..count)
        .map(|_| {
            let offset = walk.offset;
            let key = walk.u32();
            walk.take(48);
            (offset, key)
        })
        .collect()
}

fn time_index(
    walk: &mut Walk<'_>,
    mut bucket: impl FnMut(&mut Walk<'_>) -> Entries,
) -> TimeIndexAt {
    bucket(walk);
    let levels = std::array::from_fn(|_| {
        let count = walk.u64();
        (0..count)
            .map(|_| {
                let key_at = walk.offset;
                let key = walk.i64();
                (key_at, key, bucket(walk))
            })
            .collect()
    });
    let count = walk.u64();
    let slices = (0..count)
        .map(|_| {
            let key_at = walk.offset;
            let key = walk.i64();
            let len = walk.u64();
            let items_at = walk.offset;
            let items = (0..len).map(|_| walk.u32()).collect();
            (key_at, key, items_at, items)
        })
        .collect();
    let range_at = walk.offset;
    if walk.some() {
        walk.take(16);
    }
    TimeIndexAt {
        levels,
        slices,
        range_at,
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case.

/// The message of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// Runs `step`, turning a panic into an error naming it.
fn step<T>(what: &str, step: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(step))
        .map_err(|payload| format!("{what} panicked: {}", panic_message(payload.as_ref())))
}

/// How a store opened: whether it loaded the snapshot, and the reason it gave if not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Opened {
    Loaded,
    Ignored(String),
}

fn opened(base: &Base, dir: &Path, store: &Store) -> Result<Opened, String> {
    let report = store.open_report();
    match (&report.snapshot, report.ignored_snapshots.as_slice()) {
        (Some(path), []) if *path == base.snapshot_path(dir) => Ok(Opened::Loaded),
        (None, [ignored]) if ignored.path == base.snapshot_path(dir) => {
            Ok(Opened::Ignored(ignored.reason.clone()))
        }
        _ => Err(format!(
            "unexpected open report: {:?}, ignored {:?}",
            report.snapshot, report.ignored_snapshots
        )),
    }
}

/// What one mode of opening gave: how it opened, and what it answered (`after`: once the
/// tracking calls were made).
struct Run {
    mode: &'static str,
    opened: Opened,
    answers: Vec<String>,
    after: bool,
}

/// What a case did: each run, and what a deep audit said of the snapshot.
struct CaseResult {
    runs: Vec<Run>,
    /// The deep audit's `snapshot_differs` reason, if it found one.
    differs: Option<String>,
    /// The reason the audit gave for ignoring it, if it did.
    audit_ignored: Option<String>,
}

fn read_only(on_demand: bool, indexes: bool) -> Options {
    Options {
        decode_on_demand: on_demand,
        load_indexes: indexes,
        ..options()
    }
}

/// The read-only open that takes a snapshot's outcome credits and reads past its sums by time
/// (the rollup, and the credits' own).
const SUMS_BY_TIME_READ_PAST: &str = "read-only, decoded on demand, the sums by time read past";

/// Runs everything over copies of the store holding `snapshot` (checksums recomputed), its
/// facts decoded whole, then on demand: read-only opens (the indexes read or not), a writer's
/// tracking calls and queries, a read-only store's refresh beside it, the close; then a deep
/// audit.
fn run_case(base: &Base, snapshot: &[u8]) -> Result<CaseResult, String> {
    let mut runs = Vec::new();
    let mut audited = None;
    for on_demand in [false, true] {
        let how = if on_demand {
            "decoded on demand"
        } else {
            "decoded whole"
        };
        let dir = base.store_dir(Some(snapshot));
        let path = dir.path();
        let mut reader = None;
        let modes: &[(&'static str, bool, bool)] = match on_demand {
            true => &[
                (SUMS_BY_TIME_READ_PAST, true, false),
                ("read-only, decoded on demand", true, true),
            ],
            false => &[
                ("read-only, indexes unread", false, true),
                ("read-only, decoded whole", true, true),
            ],
        };
        for &(mode, indexes, sums_by_time) in modes {
            let store = step(&format!("{mode}: the open"), || {
                let options = Options {
                    load_sums_by_time: sums_by_time,
                    ..read_only(on_demand, indexes)
                };
                Store::open_read_only_with(path, options)
            })?
            .map_err(|error| format!("{mode}: the open failed: {error}"))?;
            let opened = opened(base, path, &store)?;
            let answers = step(&format!("{mode}: the queries"), || answers(&store))?;
            runs.push(Run {
                mode,
                opened: opened.clone(),
                answers,
                after: false,
            });
            reader = Some((store, opened));
        }
        let (reader, reader_opened) = reader.expect("a reader");
        // A writer: tracking calls, the queries, the reader's refresh, the close.
        let writer = step(&format!("writer, {how}: the open"), || {
            Store::open_with(
                path,
                Options {
                    decode_on_demand: on_demand,
                    ..options()
                },
            )
        })?
        .map_err(|error| format!("writer, {how}: the open failed: {error}"))?;
        let opened_writer = opened(base, path, &writer)?;
        let mut answers_writer = step(&format!("writer, {how}: the tracking calls"), || {
            track_calls(&writer, &base.targets)
        })?;
        answers_writer.extend(step(&format!("writer, {how}: the queries after"), || {
            answers(&writer)
        })?);
        let refreshed = step(&format!("reader, {how}: the refresh"), || {
            writer.flush().unwrap();
            reader.refresh()
        })?;
        let mut answers_reader = match refreshed {
            Ok(_) => track_answers_of_reader(base),
            Err(error) => vec![format!("refresh failed: {error}")],
        };
        answers_reader.extend(step(&format!("reader, {how}: the queries after"), || {
            answers(&reader)
        })?);
        step(&format!("writer, {how}: the close"), || writer.close())?
            .map_err(|error| format!("writer, {how}: the close failed: {error}"))?;
        drop(reader);
        runs.push(Run {
            mode: if on_demand {
                "writer, decoded on demand"
            } else {
                "writer, decoded whole"
            },
            opened: opened_writer,
            answers: answers_writer,
            after: true,
        });
        runs.push(Run {
            mode: "read-only, refreshed beside the writer",
            opened: reader_opened,
            answers: answers_reader,
            after: true,
        });
        if audited.is_none() {
            // The deep audit, of the snapshot and the log it covers.
            let audit = step("the deep audit", || commlog::audit::audit(path, true))?
                .map_err(|error| format!("the deep audit failed: {error}"))?;
            let finding = |kind: &str| {
                audit
                    .findings
                    .iter()
                    .find(|finding| finding.kind == kind)
                    .map(|finding| finding.reason.clone())
            };
            audited = Some((finding("snapshot_differs"), finding("snapshot_ignored")));
        }
    }
    let (differs, audit_ignored) = audited.expect("an audit");
    Ok(CaseResult {
        runs,
        differs,
        audit_ignored,
    })
}

/// What a reader answers for the tracking calls it did not make: the writer's answers are
/// compared in full, the reader's from the queries on.
fn track_answers_of_reader(base: &Base) -> Vec<String> {
    base.expected_after[..base.expected_after.len() - base.expected_before.len()].to_vec()
}

/// The first answer that differs, as "what: ours / expected".
fn first_difference(ours: &[String], expected: &[String]) -> Option<String> {
    if let Some((mine, theirs)) = ours.iter().zip(expected).find(|(a, b)| a != b) {
        let cut = |text: &str| text.chars().take(300).collect::<String>();
        return Some(format!("{} / expected {}", cut(mine), cut(theirs)));
    }
    (ours.len() != expected.len())
        .then(|| format!("{} answers, expected {}", ours.len(), expected.len()))
}

/// What a case requires: no panic (nor error) anywhere; every open that ignored the snapshot
/// answers as a full replay; every open that loaded it too, unless a deep audit finds that the
/// snapshot differs from the log; and every open that reads both indexes and the audit make the
/// same of the snapshot. Returns what they made of it (ignored with which reason, or loaded).
fn judge(name: &str, snapshot: Vec<u8>) -> Result<Opened, String> {
    let base = base();
    let result = run_with_deadline(name, move || run_case(base, &snapshot))?;
    let result = result.map_err(|error| format!("{name}: {error}"))?;
    for run in &result.runs {
        let expected = match run.after {
            true => &base.expected_after,
            false => &base.expected_before,
        };
        let audit_objects = result.differs.is_some() || result.audit_ignored.is_some();
        let may_differ = matches!(run.opened, Opened::Loaded) && audit_objects;
        if !may_differ && let Some(difference) = first_difference(&run.answers, expected) {
            return Err(format!(
                "{name}: {} ({:?}; audit: {:?}) answers otherwise than a full replay: {difference}",
                run.mode, run.opened, result.differs
            ));
        }
    }
    // Every open that reads the indexes makes the same of the snapshot, decoded whole or on
    // demand, read-only or as the writer; the audit ignores it alike.
    let mut with_indexes = (result.runs.iter())
        .filter(|run| !["read-only, indexes unread", SUMS_BY_TIME_READ_PAST].contains(&run.mode))
        .map(|run| (run.mode, &run.opened));
    let (_, agreed) = with_indexes.next().expect("an open that reads the indexes");
    if let Some((mode, opened)) = with_indexes.find(|(_, opened)| *opened != agreed) {
        return Err(format!(
            "{name}: {mode}: {opened:?}, but another open: {agreed:?}"
        ));
    }
    match (agreed, &result.audit_ignored) {
        (Opened::Ignored(reason), Some(audit)) if audit.starts_with(reason.as_str()) => {}
        (Opened::Loaded, None) => {}
        (opened, audit) => {
            return Err(format!(
                "{name}: the open {opened:?}, but the audit {audit:?}"
            ));
        }
    }
    Ok(agreed.clone())
}

/// Runs `work` on its own thread, failing if it takes longer than a minute (a hang).
fn run_with_deadline<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| format!("{name}: still running after a minute (a hang)"))
}

// ---------------------------------------------------------------------------------------------
// The cases.

fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_i64(bytes: &mut [u8], offset: usize, value: i64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn get_i64(bytes: &[u8], offset: usize) -> i64 {
    i64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// Single-byte changes at every `stride`-th offset of `range` (a prime stride, so that they
/// fall on every field of the records it crosses), each byte changed in one of five ways in
/// turn.
fn single_byte_cases(
    part: &str,
    range: std::ops::Range<usize>,
    stride: usize,
) -> Vec<(String, Vec<u8>)> {
    let base = base();
    range
        .step_by(stride)
        .enumerate()
        .map(|(place, offset)| {
            let mut bytes = base.snapshot.clone();
            let old = bytes[offset];
            let mut new = match place % 5 {
                0 => old ^ 0x01,
                1 => old ^ 0x80,
                2 => 0xFF,
                3 => old ^ 0x40,
                _ => 0x00,
            };
            if new == old {
                new = old ^ 0x02;
            }
            bytes[offset] = new;
            let field = base.layout.field_at(offset);
            (
                format!("{part}: byte {offset} ({field}) {old:#04x} -> {new:#04x}"),
                bytes,
            )
        })
        .collect()
}

/// Runs every case, and fails naming each one that panicked, hung, failed or answered
/// otherwise than it may; returns how each opened.
fn run_all(cases: Vec<(String, Vec<u8>)>) -> Vec<(String, Opened)> {
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    // With COMMLOG_CRAFTED_VERBOSE set, each case is named as it starts (run with
    // --nocapture): a case that aborts the process (an allocation the system refuses) is the
    // last one named.
    let verbose = std::env::var_os("COMMLOG_CRAFTED_VERBOSE").is_some();
    for (name, bytes) in cases {
        if verbose {
            eprintln!("case {name}");
        }
        match judge(&name, bytes) {
            Ok(opened) => outcomes.push((name, opened)),
            Err(failure) => {
                if verbose {
                    eprintln!("FAILED {}", failure.chars().take(600).collect::<String>());
                }
                failures.push(failure)
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        failures.len() + outcomes.len(),
        failures.join("\n")
    );
    outcomes
}

#[test]
fn the_snapshot_as_written_loads_and_answers_as_a_full_replay() {
    let opened = judge("unchanged", base().snapshot.clone()).unwrap();
    assert_eq!(opened, Opened::Loaded);
}

#[test]
fn single_byte_changes_to_the_facts_never_panic() {
    let layout = &base().layout;
    run_all(single_byte_cases(
        "facts",
        layout.facts_at..layout.indexes_at,
        211,
    ));
}

#[test]
fn single_byte_changes_to_the_indexes_never_panic() {
    let layout = &base().layout;
    run_all(single_byte_cases(
        "indexes",
        layout.indexes_at..layout.end,
        433,
    ));
}

/// The keys of the slice, hour, quarter day and day of a slice.
fn parents(slice: i64) -> [i64; 4] {
    let hour = slice.div_euclid(6);
    let quarter = hour.div_euclid(6);
    [slice, hour, quarter, quarter.div_euclid(4)]
}

/// Moves the first or the last slice of `index` (alone in its day) to `to`, with its buckets
/// at every level and the slice range: what a file crafted to fit the index's own checks holds.
fn move_slice(bytes: &mut [u8], index: &TimeIndexAt, last: bool, to: i64) {
    let (key_at, from, ..) = match last {
        true => index.slices.last().unwrap().clone(),
        false => index.slices.first().unwrap().clone(),
    };
    put_i64(bytes, key_at, to);
    for (level, (old, new)) in parents(from).into_iter().zip(parents(to)).enumerate() {
        let (key_at, ..) = index.levels[level]
            .iter()
            .find(|(_, key, _)| *key == old)
            .unwrap();
        put_i64(bytes, *key_at, new);
    }
    let range_at = index.range_at + 1 + if last { 8 } else { 0 };
    put_i64(bytes, range_at, to);
}

/// Swaps the `first` item of slice `a` with the `second` of slice `b` (each still filed once).
fn swap_items(
    bytes: &mut [u8],
    index: &TimeIndexAt,
    (a, first): (usize, usize),
    (b, second): (usize, usize),
) {
    let at_a = index.slices[a].2 + 4 * first;
    let at_b = index.slices[b].2 + 4 * second;
    let (item_a, item_b) = (get_u32(bytes, at_a), get_u32(bytes, at_b));
    put_u32(bytes, at_a, item_b);
    put_u32(bytes, at_b, item_a);
}

/// Sets the u64 at `at` (a list's or map's count) to as many entries as the bytes left after
/// it hold at `entry_bytes` each: more than the bytes can hold at the entry's true size.
fn inflate_count(bytes: &mut [u8], at: usize, end: usize, entry_bytes: usize) {
    let count = ((end - at - 8) / entry_bytes) as u64;
    bytes[at..at + 8].copy_from_slice(&count.to_le_bytes());
}

/// The slice the time `ms` falls in.
fn slice_of(ms: i64) -> i64 {
    ms.div_euclid(SLICE)
}

/// The latest time a `DateTime<Utc>` holds, in ms.
const TIME_MS_MAX: i64 = 8_210_266_876_799_999;

/// Fields rewritten so that the indexes keep their shape but disagree with the facts: (what
/// the rewrite breaks, the bytes).
fn index_cases() -> Vec<(String, Vec<u8>)> {
    let base = base();
    let layout = &base.layout;
    let rollup = layout.rollup.as_ref().unwrap();
    let credits = layout.credits.as_ref().unwrap();
    let name_id = |name: &str| layout.names.iter().position(|n| n == name).unwrap() as u32;
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut case = |name: &str, change: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = base.snapshot.clone();
        change(&mut bytes);
        assert_ne!(bytes, base.snapshot, "{name} changes the snapshot");
        cases.push((name.to_string(), bytes));
    };
    let quiet = |index: &TimeIndexAt| {
        (0..index.slices.len())
            .filter(|&place| (1..100).contains(&index.slices[place].3.len()))
            .collect::<Vec<_>>()
    };
    let dense_place = |index: &TimeIndexAt, key: i64| {
        index
            .slices
            .iter()
            .position(|slice| slice.1 == key)
            .unwrap()
    };

    // The rollup.
    for (place, _) in rollup.types.iter().enumerate() {
        case(
            &format!("rollup: message type {place} replaced by an action name"),
            &|bytes| {
                put_u32(
                    bytes,
                    rollup.types_at + 8 + 4 * place,
                    name_id("clicked_link"),
                )
            },
        );
    }
    case(
        "rollup: a type replaced by a name past the types",
        &|bytes| put_u32(bytes, rollup.types_at + 8, name_id(OUTCOMES[1])),
    );
    let quiet_rollup = quiet(&rollup.index);
    case("rollup: items swapped between two quiet slices", &|bytes| {
        swap_items(
            bytes,
            &rollup.index,
            (quiet_rollup[0], 0),
            (quiet_rollup[3], 0),
        )
    });
    case(
        "rollup: items swapped between two quiet slices inside the index",
        &|bytes| {
            swap_items(
                bytes,
                &rollup.index,
                (quiet_rollup[5], 0),
                (quiet_rollup[9], 0),
            )
        },
    );
    case(
        "rollup: items swapped between a quiet slice and the dense one",
        &|bytes| {
            let dense = dense_place(&rollup.index, rollup.dense[0].1);
            swap_items(bytes, &rollup.index, (quiet_rollup[1], 0), (dense, 500))
        },
    );
    case(
        "rollup: items of the dense slice swapped across runs",
        &|bytes| {
            let dense = dense_place(&rollup.index, rollup.dense[0].1);
            swap_items(bytes, &rollup.index, (dense, 3), (dense, 900))
        },
    );
    case(
        "rollup: items of the dense slice out of time order",
        &|bytes| {
            let dense = dense_place(&rollup.index, rollup.dense[0].1);
            swap_items(bytes, &rollup.index, (dense, 0), (dense, 1))
        },
    );
    case(
        "rollup: the dense slice's runs start one item late",
        &|bytes| {
            let (_, _, starts_at) = rollup.dense[0];
            for run in 1..20 {
                let at = starts_at + 4 * run;
                let start = get_u32(bytes, at);
                put_u32(bytes, at, start + 1);
            }
        },
    );
    let last = rollup.index.slices.last().unwrap().1;
    let first = rollup.index.slices.first().unwrap().1;
    for (what, to) in [
        ("a day after the facts' latest time", last + 144),
        ("to the last time a DateTime holds", slice_of(TIME_MS_MAX)),
        (
            "past the times of a DateTime",
            slice_of(TIME_MS_MAX) + 1_000,
        ),
        ("to where slice × 600,000 overflows", i64::MAX / SLICE),
        ("to the largest key", i64::MAX - 30),
    ] {
        case(&format!("rollup: the last slice moved {what}"), &|bytes| {
            move_slice(bytes, &rollup.index, true, to)
        });
    }
    for (what, to) in [
        ("before 1970", -1),
        ("to where slice × 600,000 overflows", i64::MIN / SLICE - 1),
        ("to the smallest key", i64::MIN + 30),
        ("a day earlier", first - 144),
    ] {
        case(&format!("rollup: the first slice moved {what}"), &|bytes| {
            move_slice(bytes, &rollup.index, false, to)
        });
    }
    case("rollup: a level's count inflated", &|bytes| {
        let at = rollup.index.levels[0][0].0 - 8;
        inflate_count(bytes, at, layout.end, 8 + 8)
    });
    case("rollup: the dense slices' count inflated", &|bytes| {
        inflate_count(bytes, rollup.dense_count_at, layout.end, 16)
    });

    // The credits.
    let quiet_credits = quiet(&credits.index);
    let dense_credits = dense_place(&credits.index, credits.dense[0].1);
    case(
        "credits: outcomes swapped between two quiet slices",
        &|bytes| {
            swap_items(
                bytes,
                &credits.index,
                (quiet_credits[0], 0),
                (quiet_credits[1], 0),
            )
        },
    );
    case(
        "credits: outcomes swapped between a quiet slice and the dense one",
        &|bytes| {
            swap_items(
                bytes,
                &credits.index,
                (quiet_credits[0], 0),
                (dense_credits, 70),
            )
        },
    );
    case(
        "credits: outcomes of the dense slice swapped across minutes",
        &|bytes| {
            swap_items(
                bytes,
                &credits.index,
                (dense_credits, 2),
                (dense_credits, 120),
            )
        },
    );
    case(
        "credits: the dense slice's minutes start one item late",
        &|bytes| {
            let starts_at = credits.dense[0].3;
            for minute in 1..5 {
                let at = starts_at + 4 * minute;
                let start = get_u32(bytes, at);
                put_u32(bytes, at, start + 1);
            }
        },
    );
    let keys = credits.keys.len() as u32;
    case(
        "credits: a slice's entry filed under another key",
        &|bytes| {
            let (_, _, entries) = credits.index.levels[0]
                .iter()
                .find(|(_, _, entries)| entries.last().is_some_and(|e| e.1 + 1 < keys))
                .unwrap();
            put_u32(bytes, entries.last().unwrap().0, keys - 1)
        },
    );
    case(
        "credits: the last outcome's entries filed under another key",
        &|bytes| {
            for level in 0..4 {
                let (_, _, entries) = credits.index.levels[level].last().unwrap();
                let (at, ordinal) = *entries.last().unwrap();
                put_u32(bytes, at, (ordinal + 1) % keys);
            }
        },
    );
    case("credits: a day's entry filed under another key", &|bytes| {
        let (_, _, entries) = credits.index.levels[3]
            .iter()
            .find(|(_, _, entries)| entries.last().is_some_and(|e| e.1 + 1 < keys))
            .unwrap();
        put_u32(bytes, entries.last().unwrap().0, keys - 1)
    });
    case(
        "credits: a dense minute's entry filed under another key",
        &|bytes| {
            let minute = credits.dense[0]
                .2
                .iter()
                .find(|entries| entries.last().is_some_and(|e| e.1 + 1 < keys))
                .unwrap();
            put_u32(bytes, minute.last().unwrap().0, keys - 1)
        },
    );
    let attributed: Vec<(usize, &CreditAt)> = credits
        .credits
        .iter()
        .enumerate()
        .filter(|(_, credit)| credit.attribution.is_some())
        .collect();
    case(
        "credits: an outcome credited at the other level",
        &|bytes| {
            for (_, credit) in &attributed {
                let (_, _, level_at, level) = credit.attribution.unwrap();
                bytes[level_at] = 1 - level;
            }
        },
    );
    case(
        "credits: an outcome credited to another user's message",
        &|bytes| {
            let (outcome, credit) = attributed[0];
            let user = layout.outcomes[outcome].1;
            let other = layout.messages.iter().position(|m| m.1 != user).unwrap();
            put_u32(bytes, credit.attribution.unwrap().0, other as u32);
        },
    );
    case(
        "credits: an outcome credited to a message never delivered",
        &|bytes| {
            let (_, credit) = attributed[0];
            let never = base.targets.quiet_sent - 1;
            put_u32(bytes, credit.attribution.unwrap().0, never as u32);
        },
    );
    case(
        "credits: an outcome credited to a message of its user never touched",
        &|bytes| {
            // An outcome of the user whose message the calls open: that open offers the message
            // to the user's outcomes in its window, ranking it against each one's credit.
            let user = base.targets.user_with_outcomes;
            let (outcome, credit) = attributed
                .iter()
                .find(|(outcome, _)| {
                    layout.outcomes[*outcome].1 == user && layout.outcomes[*outcome].2 > T0 + HOUR
                })
                .expect("an outcome of the user credited after the dense slice");
            let untouched = layout
                .messages
                .iter()
                .position(|m| m.1 == user && !m.3)
                .expect("a message of the user never touched");
            assert!(layout.outcomes[*outcome].2 < T0 + 7 * DAY);
            put_u32(bytes, credit.attribution.unwrap().0, untouched as u32);
        },
    );
    case("credits: an outcome's last send after it", &|bytes| {
        let (outcome, credit) = credits
            .credits
            .iter()
            .enumerate()
            .find(|(_, credit)| credit.last_sent_at.is_some())
            .unwrap();
        put_i64(
            bytes,
            credit.last_sent_at.unwrap(),
            layout.outcomes[outcome].2 + 1,
        );
    });
    case("credits: an outcome under another key", &|bytes| {
        let (_, credit) = attributed[1];
        let own = &bytes[credit.key_at..credit.key_at + 11].to_vec();
        let other = credits
            .keys
            .iter()
            .map(|(at, ..)| bytes[*at..*at + 11].to_vec())
            .find(|other| other != own && other[4] == 1)
            .unwrap();
        bytes[credit.key_at..credit.key_at + 11].copy_from_slice(&other);
    });
    case("credits: a key credited to another channel", &|bytes| {
        let (at, ..) = credits.keys.iter().find(|key| key.2.is_some()).unwrap();
        bytes[at + 5] = (bytes[at + 5] + 1) % 4;
    });
    case("credits: the lags narrowed to nothing", &|bytes| {
        put_i64(bytes, credits.lags_at, 0);
        put_i64(bytes, credits.lags_at + 8, 0);
    });
    case("credits: the lags reversed", &|bytes| {
        put_i64(bytes, credits.lags_at, i64::MAX);
        put_i64(bytes, credits.lags_at + 8, i64::MIN);
    });
    let last = credits.index.slices.last().unwrap().1;
    for (what, to) in [
        ("a day after the facts' latest time", last + 144),
        ("to where slice × 600,000 overflows", i64::MAX / SLICE),
        ("to the largest key", i64::MAX - 30),
    ] {
        case(&format!("credits: the last slice moved {what}"), &|bytes| {
            move_slice(bytes, &credits.index, true, to)
        });
    }
    case("credits: the first slice moved before 1970", &|bytes| {
        move_slice(bytes, &credits.index, false, -5)
    });
    case("credits: a level's count inflated", &|bytes| {
        let at = credits.index.levels[0][0].0 - 8;
        inflate_count(bytes, at, layout.end, 8 + 8)
    });
    case("credits: the dense slices' count inflated", &|bytes| {
        inflate_count(bytes, credits.dense_count_at, layout.end, 16)
    });

    cases
}

/// Facts rewritten so that they disagree with one another: (what the rewrite breaks, the
/// bytes).
fn fact_cases() -> Vec<(String, Vec<u8>)> {
    let base = base();
    let layout = &base.layout;
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut case = |name: &str, change: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = base.snapshot.clone();
        change(&mut bytes);
        assert_ne!(bytes, base.snapshot, "{name} changes the snapshot");
        cases.push((name.to_string(), bytes));
    };
    // The bound's position: what a writer continues the log from.
    let cursor = layout.cursor_at;
    case(
        "bound: the cursor's next message id one past the log's",
        &|bytes| {
            let next = get_i64(bytes, cursor) + 1;
            put_i64(bytes, cursor, next);
        },
    );
    case(
        "bound: the cursor's last event time a day early",
        &|bytes| {
            let earlier = get_i64(bytes, cursor + 8) - DAY;
            put_i64(bytes, cursor + 8, earlier);
        },
    );
    case(
        "bound: the cursor's last appended time a day late",
        &|bytes| {
            let later = get_i64(bytes, cursor + 16) + DAY;
            put_i64(bytes, cursor + 16, later);
        },
    );
    case("bound: the position's frame count one more", &|bytes| {
        let at = layout.close_marker_at - 8;
        let more = get_i64(bytes, at) + 1;
        put_i64(bytes, at, more);
    });
    case(
        "bound: the position's last frame not a close marker",
        &|bytes| {
            bytes[layout.close_marker_at] ^= 1;
        },
    );
    let users = &layout.users;
    let (a, b) = (&users[0], &users[1]);
    case("facts: two users' lists trade a message", &|bytes| {
        let (at_a, at_b) = (a.messages[0].0 + 8, b.messages[0].0 + 8);
        let (index_a, index_b) = (get_u32(bytes, at_a), get_u32(bytes, at_b));
        put_u32(bytes, at_a, index_b);
        put_u32(bytes, at_b, index_a);
    });
    case("facts: a user's list names a message twice", &|bytes| {
        let first = a.messages[1].0;
        let entry = bytes[first..first + 12].to_vec();
        bytes[first + 12..first + 24].copy_from_slice(&entry);
    });
    case(
        "facts: a user's list holds a message at another time",
        &|bytes| {
            let (at, time, _) = *a.messages.last().unwrap();
            put_i64(bytes, at, time + 1);
        },
    );
    let with_outcomes: Vec<&UserAt> = users.iter().filter(|u| !u.outcomes.is_empty()).collect();
    case("facts: two users' lists trade an outcome", &|bytes| {
        let (at_a, at_b) = (
            with_outcomes[0].outcomes[0].0 + 8,
            with_outcomes[1].outcomes[0].0 + 8,
        );
        let (index_a, index_b) = (get_u32(bytes, at_a), get_u32(bytes, at_b));
        put_u32(bytes, at_a, index_b);
        put_u32(bytes, at_b, index_a);
    });
    case(
        "facts: the latest event time, and the log's summary, far after every event",
        &|bytes| {
            put_i64(bytes, layout.latest_event_at + 1, TIME_MS_MAX);
            put_i64(bytes, layout.summary_event_ms_at + 9, TIME_MS_MAX);
        },
    );
    for (what, to) in [
        ("far after every event", TIME_MS_MAX),
        ("before the last events", T0 + DAY),
        ("before 1970", -1),
    ] {
        case(
            &format!("facts: the latest event time moved {what}"),
            &|bytes| put_i64(bytes, layout.latest_event_at + 1, to),
        );
    }
    let message = |id: u64| layout.messages[id as usize - 1];
    for (what, to) in [
        ("past the times of a DateTime", TIME_MS_MAX + 1),
        ("before 1970", -1),
        ("a millisecond later", message(5).2 + 1),
        ("after the latest event", T0 + 30 * DAY),
    ] {
        case(&format!("facts: a message sent {what}"), &|bytes| {
            put_i64(bytes, message(5).0 + 8, to)
        });
    }
    case("facts: a message of another user", &|bytes| {
        let (at, user, ..) = message(9);
        bytes[at..at + 8].copy_from_slice(&(user % USERS + 1).to_le_bytes());
    });
    case("facts: a message of a user without lists", &|bytes| {
        bytes[message(9).0..message(9).0 + 8].copy_from_slice(&777_u64.to_le_bytes());
    });
    case("facts: a message delivered before it was sent", &|bytes| {
        let (at, _, sent_ms, ..) = message(base.targets.dense_delivered);
        put_i64(bytes, at + 24, sent_ms - 1_000);
    });
    case(
        "facts: a message delivered past the times of a DateTime",
        &|bytes| {
            let (at, ..) = message(base.targets.dense_delivered);
            put_i64(bytes, at + 24, TIME_MS_MAX + 1);
        },
    );
    case("facts: a message acted on, never delivered", &|bytes| {
        let (at, ..) = message(base.targets.quiet_sent);
        assert_eq!(bytes[at + 40], 0, "no rare stages");
        bytes[at + 46] = 4;
    });
    case(
        "facts: a message clicked without its click's time",
        &|bytes| {
            let (at, ..) = message(base.targets.dense_delivered);
            assert_eq!(bytes[at + 40], 0, "no rare stages");
            bytes[at + 46] = 1 | 4;
        },
    );
    case("facts: an outcome past the times of a DateTime", &|bytes| {
        put_i64(bytes, layout.outcomes[3].0 + 8, TIME_MS_MAX + 1)
    });
    case("facts: an outcome of another user", &|bytes| {
        let (at, user, _) = layout.outcomes[3];
        bytes[at..at + 8].copy_from_slice(&(user % USERS + 1).to_le_bytes());
    });
    case(
        "facts: an outcome's amount past the money bound",
        &|bytes| put_i64(bytes, layout.outcomes[3].0 + 16, i64::MAX),
    );
    case("facts: a message's cost past the money bound", &|bytes| {
        put_i64(bytes, message(7).0 + 16, i64::MIN)
    });
    // The facts' directory: the message halfway and its offset, the outcomes' offset, then
    // the users'.
    let (split_index, split_at) = (layout.end, layout.end + 8);
    let (outcomes_at, users_at) = (layout.end + 16, layout.end + 24);
    case(
        "facts: the directory puts the message halfway a byte late",
        &|bytes| {
            let late = get_i64(bytes, split_at) + 1;
            put_i64(bytes, split_at, late)
        },
    );
    case(
        "facts: the directory's message halfway is past the messages",
        &|bytes| put_i64(bytes, split_index, layout.messages.len() as i64 + 1),
    );
    case(
        "facts: the directory puts the message halfway after the outcomes",
        &|bytes| {
            let outcomes = get_i64(bytes, outcomes_at);
            put_i64(bytes, split_at, outcomes + 1)
        },
    );
    // Not the first of a chunk, but where its record begins: the records are read in order.
    case(
        "facts: the directory's message halfway is message 1, where it begins",
        &|bytes| {
            put_i64(bytes, split_index, 1);
            put_i64(bytes, split_at, (layout.messages[1].0 - 28) as i64)
        },
    );
    // The last message's end: no record is read ahead.
    case(
        "facts: the directory's message halfway is past the last, where the records end",
        &|bytes| {
            put_i64(bytes, split_index, layout.messages.len() as i64);
            let outcomes = get_i64(bytes, outcomes_at);
            put_i64(bytes, split_at, outcomes)
        },
    );
    case(
        "facts: the directory puts the outcomes a byte late",
        &|bytes| {
            let late = get_i64(bytes, outcomes_at) + 1;
            put_i64(bytes, outcomes_at, late)
        },
    );
    case(
        "facts: the directory puts the users a byte early",
        &|bytes| {
            let early = get_i64(bytes, users_at) - 1;
            put_i64(bytes, users_at, early)
        },
    );
    case(
        "facts: the directory puts the users after the facts",
        &|bytes| put_i64(bytes, users_at, (layout.indexes_at - 28 + 1) as i64),
    );
    case(
        "facts: the directory puts the users before the outcomes",
        &|bytes| {
            let outcomes = get_i64(bytes, outcomes_at);
            put_i64(bytes, users_at, outcomes - 1)
        },
    );
    cases
}

/// The rewrites an open rejects, with (part of) the reason it gives: each of the index's holes
/// the open checks. The other rewrites load, and must be harmless: what only the messages can
/// tell (the open does not read them, or only the first and last slice's), or what only a fold
/// can (counts, the lags, the message a credit names).
const REJECTED: &[(&str, &str)] = &[
    (
        "rollup: a type replaced by a name past the types",
        "at an end of the index, files messages of other times or types",
    ),
    (
        "rollup: items swapped between two quiet slices",
        "at an end of the index, files messages of other times or types",
    ),
    (
        "rollup: the dense slice's runs start one item late",
        "minute 0 of dense slice 2892816: a bucket of 115 messages counts 114",
    ),
    (
        "rollup: the last slice moved a day after the facts' latest time",
        "at an end of the index",
    ),
    (
        "rollup: the last slice moved to the last time a DateTime holds",
        "lies outside the facts' slices",
    ),
    (
        "rollup: the last slice moved past the times of a DateTime",
        "lies outside the facts' slices",
    ),
    (
        "rollup: the last slice moved to where slice × 600,000 overflows",
        "lies outside the facts' slices",
    ),
    (
        "rollup: the last slice moved to the largest key",
        "lies outside the facts' slices",
    ),
    (
        "rollup: the first slice moved before 1970",
        "at an end of the index",
    ),
    (
        "rollup: the first slice moved to where slice × 600,000 overflows",
        "lies outside the facts' slices",
    ),
    (
        "rollup: the first slice moved to the smallest key",
        "lies outside the facts' slices",
    ),
    (
        "rollup: the first slice moved a day earlier",
        "at an end of the index",
    ),
    ("rollup: a level's count inflated", "does not decode"),
    (
        "rollup: the dense slices' count inflated",
        "a list longer than the bytes left can hold",
    ),
    (
        "credits: outcomes swapped between two quiet slices",
        "files outcomes of other times, or out of time order",
    ),
    (
        "credits: outcomes swapped between a quiet slice and the dense one",
        "files outcomes of other times",
    ),
    (
        "credits: outcomes of the dense slice swapped across minutes",
        "out of time order",
    ),
    (
        "credits: the dense slice's minutes start one item late",
        "the minutes of dense slice 2892822 do not cover it",
    ),
    (
        "credits: a slice's entry filed under another key",
        "of level 0: its entries are not the keys of its outcomes",
    ),
    (
        "credits: the last outcome's entries filed under another key",
        "of level 0: its entries are not the keys of its outcomes",
    ),
    (
        "credits: a day's entry filed under another key",
        "of level 3: its entries are not the keys of its outcomes",
    ),
    (
        "credits: a dense minute's entry filed under another key",
        "minute 0 of dense slice 2892822: its entries are not the keys",
    ),
    (
        "credits: an outcome credited at the other level",
        "credit does not agree with it",
    ),
    (
        "credits: an outcome's last send after it",
        "credit does not agree with it",
    ),
    (
        "credits: an outcome under another key",
        "as no 8 outcomes can be summed",
    ),
    (
        "credits: a key credited to another channel",
        "credit is not listed",
    ),
    (
        "credits: the last slice moved a day after the facts' latest time",
        "lies outside the facts' slices",
    ),
    (
        "credits: the last slice moved to where slice × 600,000 overflows",
        "lies outside the facts' slices",
    ),
    (
        "credits: the last slice moved to the largest key",
        "lies outside the facts' slices",
    ),
    (
        "credits: the first slice moved before 1970",
        "files outcomes of other times",
    ),
    (
        "credits: a level's count inflated",
        "a list longer than the bytes left can hold",
    ),
    (
        "credits: the dense slices' count inflated",
        "a list longer than the bytes left can hold",
    ),
    (
        "facts: two users' lists trade a message",
        "the users' lists do not name each message and outcome once",
    ),
    (
        "facts: a user's list names a message twice",
        "the users' lists do not name each message",
    ),
    (
        "facts: a user's list holds a message at another time",
        "user 1's latest outcome time or last message",
    ),
    (
        "facts: two users' lists trade an outcome",
        "the users' lists do not name each message",
    ),
    (
        "facts: the latest event time moved far after every event",
        "its summary of the log does not fit",
    ),
    (
        "facts: the latest event time moved before the last events",
        "a time after the latest event time",
    ),
    (
        "facts: the latest event time moved before 1970",
        "a time after the latest event time",
    ),
    (
        "facts: a message sent past the times of a DateTime",
        "message 5 has no user, or a time after",
    ),
    (
        "facts: a message sent before 1970",
        "the users' lists do not name each message",
    ),
    (
        "facts: a message sent a millisecond later",
        "the users' lists do not name each message",
    ),
    (
        "facts: a message sent after the latest event",
        "message 5 has no user, or a time after",
    ),
    (
        "facts: a message of another user",
        "the users' lists do not name each message",
    ),
    (
        "facts: a message of a user without lists",
        "the users' lists do not name each message",
    ),
    (
        "facts: a message delivered before it was sent",
        "has stages no events make",
    ),
    (
        "facts: a message delivered past the times of a DateTime",
        "has stages no events make",
    ),
    (
        "facts: a message acted on, never delivered",
        "has stages no events make",
    ),
    (
        "facts: a message clicked without its click's time",
        "has stages no events make",
    ),
    (
        "facts: an outcome past the times of a DateTime",
        "outcome 3 has no user, a time after",
    ),
    (
        "facts: an outcome of another user",
        "the users' lists do not name each message",
    ),
    (
        "facts: an outcome's amount past the money bound",
        "outcome 3 has no user, a time after",
    ),
    (
        "facts: a message's cost past the money bound",
        "message 7 has a negative cost",
    ),
    (
        "bound: the cursor's next message id one past the log's",
        "message id",
    ),
    (
        "bound: the cursor's last event time a day early",
        "give last event time (ms)",
    ),
    (
        "bound: the cursor's last appended time a day late",
        "give last appended time (ms)",
    ),
    ("bound: the position's frame count one more", "give frames"),
    (
        "bound: the position's last frame not a close marker",
        "give ending with a close marker",
    ),
    (
        "facts: the directory puts the message halfway a byte late",
        "'s record begins at",
    ),
    (
        "facts: the directory's message halfway is past the messages",
        "past the",
    ),
    (
        "facts: the directory puts the message halfway after the outcomes",
        "does not lie in order within the facts",
    ),
    (
        "facts: the directory puts the outcomes a byte late",
        "the messages' records end at",
    ),
    (
        "facts: the directory puts the users a byte early",
        "the outcomes end at",
    ),
    (
        "facts: the directory puts the users after the facts",
        "does not lie in order within the facts",
    ),
    (
        "facts: the directory puts the users before the outcomes",
        "does not lie in order within the facts",
    ),
];

/// Checks how each case opened against [`REJECTED`].
fn check_rejections(outcomes: &[(String, Opened)]) {
    let mut wrong = Vec::new();
    for (name, opened) in outcomes {
        let expected = REJECTED
            .iter()
            .find(|(case, _)| case == name)
            .map(|(_, reason)| *reason);
        let fits = match (expected, opened) {
            (Some(part), Opened::Ignored(reason)) => reason.contains(part),
            (Some(_), Opened::Loaded) => false,
            (None, _) => true,
        };
        if !fits {
            wrong.push(format!(
                "{name}: {opened:?}, expected a reason with {expected:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn rewritten_index_fields_are_rejected_or_harmless() {
    let cases = index_cases();
    let count = cases.len();
    let outcomes = run_all(cases);
    assert_eq!(outcomes.len(), count);
    check_rejections(&outcomes);
}

#[test]
fn rewritten_fact_fields_are_rejected_or_harmless() {
    let outcomes = run_all(fact_cases());
    check_rejections(&outcomes);
}

// ---------------------------------------------------------------------------------------------
// What an open reserves for a count a snapshot gives.

/// The system's allocator, noting the largest allocation each thread makes while it is asked
/// to (`TRACKED`).
struct Noting;

thread_local! {
    static TRACKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LARGEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn note(size: usize) {
    let tracked = TRACKED.try_with(std::cell::Cell::get).unwrap_or(false);
    if tracked {
        let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
    }
}

// SAFETY: every call goes to the system's allocator with the caller's arguments; noting the
// size touches only thread-locals that allocate nothing.
unsafe impl std::alloc::GlobalAlloc for Noting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires of it.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Noting = Noting;

/// A count of an index's map (each level's buckets, each slice's items, the dense slices) set
/// to as many entries as the bytes after it hold at 8 bytes each (a key's): the open refuses it
/// before it reserves anything for them, rather than reserve several times the bytes (a dense
/// slice's minutes take 612 bytes or more in the file, about 780 in memory). The indexes are
/// decoded on the opening thread, whose allocations are noted.
#[test]
fn a_count_past_what_the_bytes_left_hold_reserves_nothing() {
    let base = base();
    let layout = &base.layout;
    let rollup = layout.rollup.as_ref().unwrap();
    let credits = layout.credits.as_ref().unwrap();
    let count_before = |index: &TimeIndexAt, level: Option<usize>| match level {
        Some(level) => index.levels[level][0].0 - 8,
        None => index.slices[0].0 - 8,
    };
    let sites = [
        (
            "the rollup's slices' buckets",
            count_before(&rollup.index, Some(0)),
        ),
        (
            "the rollup's days' buckets",
            count_before(&rollup.index, Some(3)),
        ),
        (
            "the rollup's slices' items",
            count_before(&rollup.index, None),
        ),
        ("the rollup's dense slices", rollup.dense_count_at),
        (
            "the credits' slices' buckets",
            count_before(&credits.index, Some(0)),
        ),
        (
            "the credits' hours' buckets",
            count_before(&credits.index, Some(1)),
        ),
        (
            "the credits' slices' items",
            count_before(&credits.index, None),
        ),
        ("the credits' dense slices", credits.dense_count_at),
    ];
    let mut failures = Vec::new();
    for (what, at) in sites {
        let left = layout.end - at - 8;
        let mut bytes = base.snapshot.clone();
        inflate_count(&mut bytes, at, layout.end, 8);
        let dir = base.store_dir(Some(&bytes));
        LARGEST.with(|largest| largest.set(0));
        TRACKED.with(|tracked| tracked.set(true));
        let store = Store::open_read_only_with(dir.path(), read_only(false, true));
        TRACKED.with(|tracked| tracked.set(false));
        let largest = LARGEST.with(std::cell::Cell::get);
        let store = store.unwrap();
        let opened = opened(base, dir.path(), &store).unwrap();
        let refused = matches!(
            &opened,
            Opened::Ignored(reason) if reason.contains("a list longer than the bytes left can hold")
        );
        if !refused || largest > left + (128 << 10) {
            failures.push(format!(
                "{what} ({} entries in {left} bytes): {opened:?}, the largest allocation {largest} \
                 bytes",
                left / 8
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The bound's count of covered segments set past what the bytes left can hold, up to the
/// largest count: the open refuses it (the snapshot is ignored with a reason, the store answers
/// as a full replay) and reserves nothing for it.
#[test]
fn a_count_of_covered_segments_past_the_bytes_left_reserves_nothing() {
    let base = base();
    let at = base.layout.covered_count_at;
    let left = base.snapshot.len() - at - 8;
    let mut failures = Vec::new();
    for count in [(left / 20 + 1) as u64, 1 << 40, u64::MAX / 20, u64::MAX] {
        let mut bytes = base.snapshot.clone();
        bytes[at..at + 8].copy_from_slice(&count.to_le_bytes());
        recompute_checksums(&mut bytes);
        for on_demand in [false, true] {
            let dir = base.store_dir(Some(&bytes));
            LARGEST.with(|largest| largest.set(0));
            TRACKED.with(|tracked| tracked.set(true));
            let store =
                catch_unwind(|| Store::open_read_only_with(dir.path(), read_only(on_demand, true)));
            TRACKED.with(|tracked| tracked.set(false));
            let largest = LARGEST.with(std::cell::Cell::get);
            let opened = match store {
                Ok(Ok(store)) => opened(base, dir.path(), &store),
                Ok(Err(error)) => Err(format!("the open failed: {error}")),
                Err(panic) => Err(format!("the open panicked: {}", panic_message(&*panic))),
            };
            let refused = matches!(
                &opened,
                Ok(Opened::Ignored(reason))
                    if reason.contains(&format!("a list of {count} items in "))
            );
            if !refused || largest > left + (128 << 10) {
                failures.push(format!(
                    "{count} covered segments, on demand {on_demand}: {opened:?}, the largest \
                     allocation {largest} bytes"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
