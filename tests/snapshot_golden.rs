//! The snapshot file's bytes, pinned: `tests/golden/snapshot_v5.bin` is the snapshot a writer
//! closing a store of `tests/golden/segment_v2_external_id.bin` writes once a query has built
//! its indexes, and docs/FORMAT.md, "Snapshots", describes it byte for byte (its walk here
//! follows the document). `tests/golden/snapshot_v4.bin`, `snapshot_v3.bin`, `snapshot_v2.bin`
//! and `snapshot_v1.bin` are the format version 4, 3, 2 and 1 snapshots of the same store
//! (version 4 without the split of the messages' records in the facts' directory, version 3
//! without the directory, version 2 without it and without the log's summary, version 1
//! without any of them and without indexes), which this build still reads: a store with any of
//! them answers as a full replay of its log does.
//!
//! The golden files change only with a deliberate change of the snapshot format, which also
//! raises the format version, keeps the older files, and updates docs/FORMAT.md: then, and only
//! then, run this test once with `COMMLOG_BLESS=1` to write the new file, and check it in. A test
//! that fails here otherwise found an accidental format change: fix the code, not the file.

mod support;

use support::walk::{Walk, recompute_checksums};

use std::fs;
use std::path::{Path, PathBuf};

use commlog::{
    CommunicationStats, CostFilter, CostReport, EffectivenessFilter, EngagementFilter,
    ImpactFilter, ImpactReport, Message, Options, SNAPSHOT_DIRECTORY, StatsFilter, Store,
};
use tempfile::TempDir;

/// The golden log: one version 2 segment holding every kind of event and a close marker, so
/// that a writer opening it and closing appends nothing (a close marker carries the clock).
const GOLDEN_SEGMENT: &str = "tests/golden/segment_v2_external_id.bin";
const GOLDEN_SNAPSHOT: &str = "tests/golden/snapshot_v5.bin";
const GOLDEN_SNAPSHOT_V4: &str = "tests/golden/snapshot_v4.bin";
const GOLDEN_SNAPSHOT_V3: &str = "tests/golden/snapshot_v3.bin";
const GOLDEN_SNAPSHOT_V2: &str = "tests/golden/snapshot_v2.bin";
const GOLDEN_SNAPSHOT_V1: &str = "tests/golden/snapshot_v1.bin";
/// The segment's name in a store: its first seq, 1.
const SEGMENT_NAME: &str = "00000000000000000001.log";
/// The snapshot's name: the seq of the last event it covers, 7.
const SNAPSHOT_NAME: &str = "snapshot-00000000000000000007";

fn golden(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A store holding the golden segment as its only segment.
fn golden_store() -> TempDir {
    let dir = TempDir::new().unwrap();
    fs::copy(golden(GOLDEN_SEGMENT), dir.path().join(SEGMENT_NAME)).unwrap();
    dir
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_DIRECTORY).join(SNAPSHOT_NAME)
}

/// What the views answer, over every query.
#[derive(Debug, PartialEq)]
struct Answers {
    stats: CommunicationStats,
    messages: Vec<Message>,
    histories: Vec<Vec<Message>>,
    external: Option<Message>,
    engagement: Vec<String>,
    channels: String,
    costs: CostReport,
    impact: ImpactReport,
}

fn answers(store: &Store) -> Answers {
    let users = [7, 123];
    Answers {
        stats: store.get_communication_stats(&StatsFilter::new()).unwrap(),
        messages: store.get_messages(&StatsFilter::new()).unwrap(),
        histories: users
            .iter()
            .map(|user| {
                store
                    .get_user_communication_history(*user, usize::MAX)
                    .unwrap()
            })
            .collect(),
        external: store
            .message_by_external_id("SM0123456789abcdef0123456789abcdef")
            .unwrap(),
        engagement: users
            .iter()
            .map(|user| {
                let report = store
                    .get_user_engagement(*user, &EngagementFilter::new())
                    .unwrap();
                format!("{report:?}")
            })
            .collect(),
        channels: format!(
            "{:?}",
            store
                .get_channel_effectiveness(&EffectivenessFilter::new())
                .unwrap()
        ),
        costs: store.get_cost_report(&CostFilter::new()).unwrap(),
        impact: store.get_financial_impact(&ImpactFilter::new()).unwrap(),
    }
}

#[test]
fn closing_a_store_of_the_golden_segment_writes_the_golden_snapshot() {
    let dir = golden_store();
    let options = Options {
        snapshot_every: 1,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(store.open_report().snapshot, None);
    // A view by period builds both indexes, which the close's snapshot holds (the queries
    // over all time read the totals and the credits).
    let by_day = EffectivenessFilter::new().period(commlog::Period::Day);
    store.get_channel_effectiveness(&by_day).unwrap();
    answers(&store);
    store.close().unwrap();
    assert_eq!(
        fs::read(dir.path().join(SEGMENT_NAME)).unwrap(),
        fs::read(golden(GOLDEN_SEGMENT)).unwrap(),
        "the segment already ends with a close marker: closing appends nothing"
    );
    let written = fs::read(snapshot_path(dir.path())).unwrap();
    if std::env::var_os("COMMLOG_BLESS").is_some() {
        fs::write(golden(GOLDEN_SNAPSHOT), &written).unwrap();
    }
    let expected = fs::read(golden(GOLDEN_SNAPSHOT))
        .expect("tests/golden/snapshot_v5.bin (COMMLOG_BLESS=1 writes it; see the module doc)");
    assert_eq!(
        written, expected,
        "the snapshot's bytes changed: that is a format change (docs/FORMAT.md, \"Snapshots\")"
    );
}

#[test]
fn a_store_with_any_golden_snapshot_answers_as_a_full_replay_does() {
    let replayed = golden_store();
    let full = Store::open_read_only(replayed.path()).unwrap();
    assert_eq!(full.open_report().snapshot, None);
    let expected = answers(&full);
    let expected_summary = full.log_summary().unwrap();
    for file in [
        GOLDEN_SNAPSHOT,
        GOLDEN_SNAPSHOT_V4,
        GOLDEN_SNAPSHOT_V3,
        GOLDEN_SNAPSHOT_V2,
        GOLDEN_SNAPSHOT_V1,
    ] {
        let with_snapshot = golden_store();
        let snapshots = with_snapshot.path().join(SNAPSHOT_DIRECTORY);
        fs::create_dir(&snapshots).unwrap();
        fs::copy(golden(file), snapshot_path(with_snapshot.path())).unwrap();
        let on_demand = Options {
            decode_on_demand: true,
            ..Options::default()
        };
        let without_indexes = Options {
            load_indexes: false,
            ..Options::default()
        };
        for store in [
            Store::open_read_only(with_snapshot.path()).unwrap(),
            Store::open_read_only_with(with_snapshot.path(), on_demand).unwrap(),
            Store::open_read_only_with(with_snapshot.path(), without_indexes).unwrap(),
            Store::open(with_snapshot.path()).unwrap(),
        ] {
            let report = store.open_report();
            assert_eq!(report.ignored_snapshots, vec![], "{file}");
            assert_eq!(report.snapshot, Some(snapshot_path(with_snapshot.path())));
            assert_eq!(report.snapshot_events, 7);
            assert_eq!((report.segments, report.events, report.last_seq), (1, 7, 7));
            assert_eq!(answers(&store), expected, "{file}");
            assert_eq!(store.log_summary().unwrap(), expected_summary, "{file}");
        }
    }
}

/// The golden snapshot, field by field: the header, the bound, the facts, the indexes, the
/// facts' directory, the offset of the indexes, and nothing after.
#[test]
fn the_golden_snapshot_holds_the_fields_docs_format_lists_in_order() {
    let bytes = fs::read(golden(GOLDEN_SNAPSHOT)).unwrap();
    let mut walk = Walk {
        bytes: &bytes,
        offset: 0,
    };
    let (outcomes_at, users_at) = walk_header_bound_and_facts(&mut walk, 5);
    walk_indexes(&mut walk);
    assert_eq!(
        (walk.u64(), walk.u64()),
        (0, (FACTS_AT - 28 + 8) as u64),
        "the facts' directory: the message halfway (of fewer than 2,048, the first) and the \
         body offset where its record begins, after the messages' count"
    );
    assert_eq!(
        (walk.u64(), walk.u64()),
        (outcomes_at, users_at),
        "the facts' directory: the body offsets where the outcomes and the users begin"
    );
    assert_eq!(
        walk.u64(),
        BOUND_BYTES as u64 + 527,
        "the body offset where the indexes begin"
    );
    assert_eq!(walk.offset, bytes.len(), "nothing after that offset");
}

/// The version 4 golden snapshot: the same header but its version, the same bound, facts and
/// indexes, then the facts' directory without the split of the messages' records, and the
/// offset of the indexes.
#[test]
fn the_version_4_golden_snapshot_holds_no_split_of_the_messages() {
    let bytes = fs::read(golden(GOLDEN_SNAPSHOT_V4)).unwrap();
    let mut walk = Walk {
        bytes: &bytes,
        offset: 0,
    };
    let (outcomes_at, users_at) = walk_header_bound_and_facts(&mut walk, 4);
    walk_indexes(&mut walk);
    assert_eq!((walk.u64(), walk.u64()), (outcomes_at, users_at));
    assert_eq!(walk.u64(), BOUND_BYTES as u64 + 527);
    assert_eq!(walk.offset, bytes.len(), "nothing after that offset");
    let v5 = fs::read(golden(GOLDEN_SNAPSHOT)).unwrap();
    assert_eq!(
        bytes[28..bytes.len() - 24],
        v5[28..v5.len() - 40],
        "the same bound, facts and indexes"
    );
    assert_eq!(bytes[bytes.len() - 24..], v5[v5.len() - 24..]);
}

/// The version 3 golden snapshot: the same header but its version, the same bound, facts and
/// indexes, then the offset of the indexes without the facts' directory before it.
#[test]
fn the_version_3_golden_snapshot_holds_no_directory_of_the_facts() {
    let bytes = fs::read(golden(GOLDEN_SNAPSHOT_V3)).unwrap();
    let mut walk = Walk {
        bytes: &bytes,
        offset: 0,
    };
    walk_header_bound_and_facts(&mut walk, 3);
    walk_indexes(&mut walk);
    assert_eq!(walk.u64(), BOUND_BYTES as u64 + 527);
    assert_eq!(walk.offset, bytes.len(), "nothing after that offset");
    let v4 = fs::read(golden(GOLDEN_SNAPSHOT_V4)).unwrap();
    assert_eq!(
        bytes[28..bytes.len() - 8],
        v4[28..v4.len() - 24],
        "the same bound, facts and indexes"
    );
    assert_eq!(bytes[bytes.len() - 8..], v4[v4.len() - 8..]);
}

/// The version 2 golden snapshot: the same header but its version, the bound without the log's
/// summary, then the same facts, indexes and offset of the indexes (less the summary's bytes).
#[test]
fn the_version_2_golden_snapshot_holds_no_summary_of_the_log() {
    let bytes = fs::read(golden(GOLDEN_SNAPSHOT_V2)).unwrap();
    let mut walk = Walk {
        bytes: &bytes,
        offset: 0,
    };
    walk_header_bound_and_facts(&mut walk, 2);
    walk_indexes(&mut walk);
    let indexes_at = BOUND_BYTES - SUMMARY_BYTES + 527;
    assert_eq!(walk.u64(), indexes_at as u64);
    assert_eq!(walk.offset, bytes.len(), "nothing after that offset");
    let v3 = fs::read(golden(GOLDEN_SNAPSHOT_V3)).unwrap();
    let summary_at = 28 + BOUND_BYTES - SUMMARY_BYTES;
    assert_eq!(
        bytes[28..summary_at],
        v3[28..summary_at],
        "the same position"
    );
    assert_eq!(
        bytes[summary_at..bytes.len() - 8],
        v3[summary_at + SUMMARY_BYTES..v3.len() - 8],
        "the same facts and indexes"
    );
}

/// The version 1 golden snapshot: the same header but its version, the bound of version 2 and
/// the facts, and nothing after the facts.
#[test]
fn the_version_1_golden_snapshot_holds_the_facts_and_nothing_after() {
    let bytes = fs::read(golden(GOLDEN_SNAPSHOT_V1)).unwrap();
    let mut walk = Walk {
        bytes: &bytes,
        offset: 0,
    };
    walk_header_bound_and_facts(&mut walk, 1);
    assert_eq!(walk.offset, bytes.len(), "nothing after the facts");
    let v2 = fs::read(golden(GOLDEN_SNAPSHOT_V2)).unwrap();
    assert_eq!(
        bytes[28..],
        v2[28..bytes.len()],
        "version 2 begins its body with the same bound and facts"
    );
    assert_eq!(
        v2[v2.len() - 8..],
        (bytes.len() as u64 - 28).to_le_bytes(),
        "and ends with the offset in the body where its indexes begin: where version 1 ends"
    );
}

/// The header (with format `version`), the bound and the facts of a golden snapshot; returns
/// the body offsets where the outcomes' and the users' lists begin.
fn walk_header_bound_and_facts(walk: &mut Walk<'_>, version: u32) -> (u64, u64) {
    let bytes = walk.bytes;
    let segment = fs::read(golden(GOLDEN_SEGMENT)).unwrap();
    // Header (28 bytes).
    assert_eq!(walk.take(8), b"CMLOGSNP");
    assert_eq!(walk.u32(), version, "format version");
    let body_len = walk.u64();
    assert_eq!(28 + body_len, bytes.len() as u64);
    assert_eq!(walk.u32(), crc32fast::hash(&bytes[28..]), "body crc");
    assert_eq!(walk.u32(), crc32fast::hash(&bytes[..24]), "header crc");

    // Bound: the log position.
    let close_marker_start = 289;
    assert_eq!(walk.u64(), 7, "last_seq");
    assert_eq!(walk.u64(), 1, "segment_first_seq");
    assert_eq!(
        walk.option(Walk::u64),
        Some(0x0123_4567_89ab_cdef),
        "store_id"
    );
    assert_eq!(walk.u64(), close_marker_start, "frame_start");
    let marker_crc = u32::from_le_bytes(segment[291..295].try_into().unwrap());
    assert_eq!(
        walk.u32(),
        marker_crc,
        "frame_crc: the close marker's stored crc"
    );
    assert_eq!(walk.u64(), segment.len() as u64, "end");
    assert_eq!(
        walk.u64(),
        8,
        "frame_count: seven events and the close marker"
    );
    assert_eq!(walk.u8(), 1, "ends_with_close_marker");
    assert_eq!(walk.u64(), 3, "cursor.next_message_id");
    assert_eq!(
        walk.i64(),
        1_735_689_600_000 + 86_400_000,
        "cursor.previous_at_ms"
    );
    assert_eq!(
        walk.i64(),
        1_764_000_000_000 + 10,
        "cursor.previous_appended_ms"
    );
    // Bound: the covered segments.
    let covered = walk.list(|walk| (walk.u64(), walk.u64(), walk.u32()));
    assert_eq!(
        covered,
        vec![(1, segment.len() as u64, crc32fast::hash(&segment[56..]))]
    );
    if version >= 3 {
        // Bound: the log's summary.
        assert_eq!(walk.u64(), 7, "summary.events");
        assert_eq!(walk.u64(), 2, "summary.messages");
        assert_eq!(walk.u64(), 1, "summary.outcomes");
        let range = |walk: &mut Walk<'_>| walk.option(|walk| (walk.i64(), walk.i64()));
        assert_eq!(
            range(walk),
            Some((1_735_689_600_000, 1_735_689_600_000 + 86_400_000)),
            "summary.event_ms: the first send and the outcome a day later"
        );
        assert_eq!(
            range(walk),
            Some((1_764_000_000_000, 1_764_000_000_000 + 6)),
            "summary.appended_ms: the first event's and the seventh's"
        );
    }
    let bound_bytes = match version {
        3.. => BOUND_BYTES,
        _ => BOUND_BYTES - SUMMARY_BYTES,
    };
    assert_eq!(
        walk.offset,
        28 + bound_bytes,
        "the bound takes {bound_bytes} bytes"
    );

    // Facts: the messages.
    let t0 = 1_735_689_600_000_i64;
    let none = i64::MAX;
    let messages = walk.list(|walk| {
        let fixed = (walk.u64(), walk.i64(), walk.i64(), walk.i64(), walk.i64());
        let rare = walk.option(|walk| {
            let clicked = walk.i64();
            let failed = walk.i64();
            let failure_reason = walk.option(Walk::u32);
            let first_action = walk.i64();
            let latest_action = walk.option(|walk| (walk.i64(), walk.u32()));
            (clicked, failed, failure_reason, first_action, latest_action)
        });
        (fixed, rare, walk.u32(), walk.u8(), walk.u8())
    });
    assert_eq!(
        messages,
        vec![
            (
                (123, t0, 50_000, t0 + 1_500, t0 + 60_000),
                Some((t0 + 61_000, none, None, t0 + 61_000, Some((t0 + 61_000, 1)))),
                0,
                0,
                1 | 4,
            ),
            (
                (7, t0 + 1_000, 0, none, none),
                Some((none, t0 + 2_000, Some(3), none, None)),
                2,
                3,
                2,
            ),
        ],
        "(user, sent, cost, delivered, opened), rare stages, type, channel, reached"
    );
    let outcomes_at = (walk.offset - 28) as u64;
    let outcomes = walk.list(|walk| (walk.u64(), walk.i64(), walk.i64(), walk.u32()));
    assert_eq!(outcomes, vec![(123, t0 + 86_400_000, -25_000_000, 4)]);
    let users_at = (walk.offset - 28) as u64;
    let users = walk.list(|walk| {
        let user = walk.u64();
        let messages = walk.list(Walk::entry);
        let last_message = walk.option(Walk::entry);
        let outcomes = walk.list(Walk::entry);
        (user, messages, last_message, outcomes, walk.i64())
    });
    assert_eq!(
        users,
        vec![
            (
                123,
                vec![(t0, 0)],
                Some((t0, 0)),
                vec![(t0 + 86_400_000, 0)],
                t0 + 86_400_000
            ),
            (
                7,
                vec![(t0 + 1_000, 1)],
                Some((t0 + 1_000, 1)),
                vec![],
                i64::MIN
            ),
        ],
        "(user, messages, last message, outcomes, latest outcome), in the order of first events"
    );
    let names = walk.list(|walk| walk.str().to_string());
    assert_eq!(
        names,
        [
            "low_balance",
            "clicked_link",
            "upgrade_offer",
            "undelivered",
            "bill_paid_on_time"
        ]
    );
    assert_eq!(
        walk.option(Walk::i64),
        Some(t0 + 86_400_000),
        "latest_event_ms"
    );
    let budgets = walk.list(|walk| (walk.u8(), walk.i64(), walk.i64(), walk.u8()));
    assert_eq!(budgets, vec![]);
    let external_ids = walk.list(|walk| (walk.u64(), walk.str().to_string()));
    assert_eq!(
        external_ids,
        vec![(1, "SM0123456789abcdef0123456789abcdef".to_string())]
    );
    assert_eq!(
        walk.offset,
        28 + bound_bytes + 527,
        "the facts take 527 bytes"
    );
    (outcomes_at, users_at)
}

/// A time index's fields, each bucket read by `bucket`: the total, each level's buckets by key,
/// each slice's items, the first and last slice.
type TimeIndex<B> = (
    B,
    [Vec<(i64, B)>; 4],
    Vec<(i64, Vec<u32>)>,
    Option<(i64, i64)>,
);

fn walk_time_index<'a, B>(
    walk: &mut Walk<'a>,
    bucket: impl Fn(&mut Walk<'a>) -> B,
) -> TimeIndex<B> {
    let total = bucket(walk);
    let levels = std::array::from_fn(|_| walk.list(|walk| (walk.i64(), bucket(walk))));
    let slice_items = walk.list(|walk| (walk.i64(), walk.list(Walk::u32)));
    let slice_range = walk.option(|walk| (walk.i64(), walk.i64()));
    (total, levels, slice_items, slice_range)
}

/// The keys of the slice, hour, quarter day and day of `ms` (docs/FORMAT.md, "Indexes").
fn bucket_keys(ms: i64) -> [i64; 4] {
    let slice = ms.div_euclid(600_000);
    let hour = slice.div_euclid(6);
    let quarter = hour.div_euclid(6);
    [slice, hour, quarter, quarter.div_euclid(4)]
}

/// The golden snapshot's indexes: the message rollup and the outcome credits, as the query
/// built them over its two messages and one outcome.
fn walk_indexes(walk: &mut Walk<'_>) {
    let t0 = 1_735_689_600_000_i64;
    // The rollup: types low_balance (0) then upgrade_offer (2); slot = type ordinal × 4 +
    // channel. The first message (sms, low_balance) is clicked with an action: slot 0, kind 8;
    // the second (in_app, upgrade_offer) failed: slot 7, kind 1.
    let rollup = walk.option(|walk| {
        let types = walk.list(Walk::u32);
        let slots = |walk: &mut Walk<'_>| {
            walk.list(|walk| {
                let kinds: [u32; 10] = std::array::from_fn(|_| walk.u32());
                (kinds, walk.i128())
            })
        };
        let buckets = walk_time_index(walk, slots);
        let dense = walk.list(|walk| walk.i64());
        (types, buckets, dense)
    });
    let (types, (total, levels, slice_items, slice_range), dense) = rollup.expect("a rollup");
    assert_eq!(types, vec![0, 2], "message types in the order first seen");
    let mut expected_slots = vec![([0u32; 10], 0i128); 8];
    expected_slots[0].0[8] = 1;
    expected_slots[0].1 = 50_000;
    expected_slots[7].0[1] = 1;
    assert_eq!(
        total, expected_slots,
        "the total: a slot per type × channel up to the last"
    );
    let keys = bucket_keys(t0);
    for (level, buckets) in levels.iter().enumerate() {
        assert_eq!(
            buckets,
            &vec![(keys[level], expected_slots.clone())],
            "level {level}"
        );
    }
    assert_eq!(slice_items, vec![(keys[0], vec![0, 1])]);
    assert_eq!(slice_range, Some((keys[0], keys[0])));
    assert_eq!(
        dense,
        Vec::<i64>::new(),
        "no slice of more than 1,024 messages"
    );

    // The credits: the outcome (user 123, a day after t0) is credited to the first message,
    // engaged (opened) within the window.
    let credits = walk.option(|walk| {
        let window_ms = walk.i64();
        let key = |walk: &mut Walk<'_>| {
            (
                walk.u32(),
                walk.option(|walk| (walk.u8(), walk.u32(), walk.u8())),
            )
        };
        let credits = walk.list(|walk| {
            let attribution = walk.option(|walk| (walk.u32(), walk.u8()));
            let last_sent_ms = walk.option(Walk::i64);
            (attribution, last_sent_ms, key(walk))
        });
        let lags = (walk.i64(), walk.i64());
        let keys = walk.list(key);
        let sums = |walk: &mut Walk<'_>| (walk.u64(), walk.i128(), walk.u64(), walk.i128());
        let bucket = |walk: &mut Walk<'_>| (sums(walk), walk.list(|walk| (walk.u32(), sums(walk))));
        let buckets = walk_time_index(walk, bucket);
        let dense = walk.list(|walk| walk.i64());
        (window_ms, credits, lags, keys, buckets, dense)
    });
    let (window_ms, credits, lags, keys, buckets, dense) = credits.expect("credits");
    assert_eq!(
        window_ms,
        Options::default().attribution_window.as_millis() as i64
    );
    let key = (4, Some((0, 0, 0)));
    assert_eq!(
        credits,
        vec![(Some((0, 0)), Some(t0), key)],
        "(attribution (message index, level engaged), last send, key (outcome, credit))"
    );
    assert_eq!(
        lags,
        (1_500, 60_000),
        "delivered 1.5 s and opened 60 s after the send"
    );
    assert_eq!(keys, vec![key]);
    let outcome_sums = (1, -25_000_000_i128, 1, 86_400_000_i128);
    let expected_bucket = (outcome_sums, vec![(0, outcome_sums)]);
    let (total, levels, slice_items, slice_range) = buckets;
    assert_eq!(total, expected_bucket);
    let keys = bucket_keys(t0 + 86_400_000);
    for (level, buckets) in levels.iter().enumerate() {
        assert_eq!(
            buckets,
            &vec![(keys[level], expected_bucket.clone())],
            "level {level}"
        );
    }
    assert_eq!(slice_items, vec![(keys[0], vec![0])]);
    assert_eq!(slice_range, Some((keys[0], keys[0])));
    assert_eq!(
        dense,
        Vec::<i64>::new(),
        "no slice of more than 128 outcomes"
    );
}

/// A store of the golden segment and the golden snapshot, the snapshot changed by `tamper`
/// (given the whole file) and its checksums recomputed, so that only its meaning is wrong.
fn store_with_snapshot(tamper: impl FnOnce(&mut Vec<u8>)) -> TempDir {
    let dir = golden_store();
    fs::create_dir(dir.path().join(SNAPSHOT_DIRECTORY)).unwrap();
    let mut bytes = fs::read(golden(GOLDEN_SNAPSHOT)).unwrap();
    tamper(&mut bytes);
    recompute_checksums(&mut bytes);
    fs::write(snapshot_path(dir.path()), bytes).unwrap();
    dir
}

/// Bytes of the golden snapshot's bound: the position (78 with a store id), the covered list
/// (8 + 20) and the log's summary.
const BOUND_BYTES: usize = 78 + 28 + SUMMARY_BYTES;
/// Bytes of the log's summary: three counts (24) and two ranges, each an option (1 + 16).
const SUMMARY_BYTES: usize = 24 + 2 * 17;
/// Where the golden snapshot's facts begin, after the header and the bound.
const FACTS_AT: usize = 28 + BOUND_BYTES;

/// Offset of the first message's cost_micros in the golden snapshot: after the messages' count
/// (8), that message's user_id and sent_ms (16).
const FIRST_COST_OFFSET: usize = FACTS_AT + 8 + 16;

#[test]
fn the_golden_snapshot_passes_a_deep_audit_as_the_one_used() {
    let dir = store_with_snapshot(|_| {});
    let audit = commlog::audit::audit(dir.path(), true).unwrap();
    assert_eq!(audit.verdict, commlog::audit::Verdict::Clean);
    assert_eq!(audit.findings, vec![]);
    assert_eq!(audit.snapshots.len(), 1);
    let snapshot = &audit.snapshots[0];
    assert_eq!(
        snapshot.file,
        format!("{SNAPSHOT_DIRECTORY}/{SNAPSHOT_NAME}")
    );
    assert_eq!(
        (snapshot.last_seq, snapshot.usage, &snapshot.reason),
        (7, commlog::audit::SnapshotUse::Used, &None)
    );
}

#[test]
fn a_snapshot_whose_facts_were_changed_loads_but_a_deep_audit_finds_it() {
    let dir = store_with_snapshot(|bytes| {
        let cost = &mut bytes[FIRST_COST_OFFSET..FIRST_COST_OFFSET + 8];
        assert_eq!(cost, 50_000_i64.to_le_bytes());
        cost.copy_from_slice(&60_000_i64.to_le_bytes());
    });
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        store.open_report().snapshot,
        Some(snapshot_path(dir.path())),
        "the loader cannot tell: the checksums hold and the facts fit together"
    );
    drop(store);

    let shallow = commlog::audit::audit(dir.path(), false).unwrap();
    assert_eq!(shallow.findings, vec![]);
    let deep = commlog::audit::audit(dir.path(), true).unwrap();
    assert_eq!(
        deep.verdict,
        commlog::audit::Verdict::Clean,
        "a snapshot is a cache: the log's verdict stands"
    );
    assert_eq!(deep.findings.len(), 1, "{:?}", deep.findings);
    let finding = &deep.findings[0];
    assert_eq!(finding.kind, "snapshot_differs");
    assert_eq!(
        finding.segment,
        format!("{SNAPSHOT_DIRECTORY}/{SNAPSHOT_NAME}")
    );
    assert_eq!(finding.fix, commlog::audit::Fix::DeleteSnapshot);
    assert!(
        finding.reason.contains("messages (first at index 0)")
            && !finding.reason.contains("outcomes"),
        "{}",
        finding.reason
    );
    let reason = deep.snapshots[0].reason.as_deref().unwrap();
    assert!(finding.reason.starts_with(reason), "{reason}");
}

#[test]
fn a_snapshot_the_loader_ignores_is_a_finding_with_its_reason() {
    let dir = store_with_snapshot(|bytes| bytes[8] = 6);
    let store = Store::open_read_only(dir.path()).unwrap();
    let ignored = store.open_report().ignored_snapshots;
    assert_eq!(store.open_report().snapshot, None);
    assert_eq!(ignored.len(), 1);
    let audit = commlog::audit::audit(dir.path(), false).unwrap();
    assert_eq!(audit.verdict, commlog::audit::Verdict::Clean);
    assert_eq!(audit.findings.len(), 1);
    assert_eq!(audit.findings[0].kind, "snapshot_ignored");
    assert!(audit.findings[0].reason.starts_with(&ignored[0].reason));
    assert_eq!(
        audit.snapshots[0].usage,
        commlog::audit::SnapshotUse::Ignored
    );
    assert_eq!(audit.snapshots[0].reason.as_ref(), Some(&ignored[0].reason));
}

/// Facts that do not fit together, with both checksums recomputed: a name id beyond the names
/// listed (in a message, in an outcome), a user's list pointing past the messages. The loader
/// ignores the snapshot, saying which fact does not fit, and the store answers as the whole
/// log does. The offsets are those of the golden snapshot's fields (the walk above): the first
/// message's latest action name, the outcome's name, the index in user 123's first entry.
#[test]
fn a_snapshot_whose_facts_do_not_fit_together_is_ignored_with_the_reason() {
    let cases: [(usize, u32, u32, &str); 3] = [
        (
            FACTS_AT + 83,
            1,
            99,
            "message 1 refers to a name beyond the 5 listed",
        ),
        (
            FACTS_AT + 202,
            4,
            5,
            "outcome 0 refers to a name beyond the 5 listed",
        ),
        (
            FACTS_AT + 238,
            0,
            2,
            "user 123's lists are unsorted or out of range",
        ),
    ];
    for (offset, before, after, reason) in cases {
        ignored_with_changed_field(offset, &before.to_le_bytes(), &after.to_le_bytes(), reason);
    }
}

/// Where the golden snapshot records the crc32 of its covered segment's frames: after the
/// header, the position (78), the covered list's count (8), the segment's first seq and end.
const COVERED_CRC_OFFSET: usize = 28 + 78 + 8 + 16;

/// A snapshot that fails the covered log's check (check 6: its recorded checksum of the
/// segment's frames changed) and later ones (check 8, and an index's misfit) is ignored for the
/// covered log's, decoded whole or on demand, though an open on demand judges the facts and the
/// indexes while another thread checks the log; with its body's checksum wrong too, for that.
#[test]
fn a_snapshot_failing_the_covered_log_s_check_and_later_ones_is_ignored_for_the_first() {
    // A message's name beyond those listed (check 8) and a rollup item past the messages.
    let misfit = |bytes: &mut Vec<u8>| {
        replace_field(
            bytes,
            FACTS_AT + 83,
            &1u32.to_le_bytes(),
            &99u32.to_le_bytes(),
        );
        replace_field(
            bytes,
            SECOND_ITEM_OFFSET,
            &1u32.to_le_bytes(),
            &5u32.to_le_bytes(),
        );
    };
    let dir = store_with_snapshot(|bytes| {
        misfit(bytes);
        bytes[COVERED_CRC_OFFSET] ^= 0x01;
    });
    for on_demand in [false, true] {
        let reason = opened_with(dir.path(), on_demand);
        assert!(
            reason.contains("differ from those the snapshot covered"),
            "on demand {on_demand}: {reason}"
        );
    }
    // With its body's checksum wrong as well, that is the reason given (check 3).
    let path = snapshot_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[FACTS_AT + 20] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    for on_demand in [false, true] {
        let reason = opened_with(dir.path(), on_demand);
        assert!(
            reason.starts_with("body checksum mismatch"),
            "on demand {on_demand}: {reason}"
        );
    }
    // The facts' and the indexes' misfits alone: the first is the reason given.
    let facts = store_with_snapshot(misfit);
    for on_demand in [false, true] {
        assert_eq!(
            opened_with(facts.path(), on_demand),
            "message 1 refers to a name beyond the 5 listed"
        );
    }
}

/// Offsets in the golden snapshot's indexes (the walk above; they start after the facts, at
/// `INDEXES_AT`): the rollup's total bucket's first slot's cost (after the `Some` tag, the
/// types, the slots' count and the slot's ten counts), the rollup's second item of its slice,
/// and the message index of the outcome's credit.
const INDEXES_AT: usize = FACTS_AT + 527;
const TOTAL_COST_OFFSET: usize = INDEXES_AT + 1 + 16 + 8 + 40;
const SECOND_ITEM_OFFSET: usize = INDEXES_AT + 1 + 16 + (8 + 448) + 4 * 472 + 8 + 8 + 8 + 4;
const CREDITED_MESSAGE_OFFSET: usize = SECOND_ITEM_OFFSET + 4 + 17 + 8 + 1 + 8 + 8 + 1;

/// Opens read-only a store whose golden snapshot has the field at `offset` changed from
/// `before` to `after`, both checksums recomputed; checks that the open ignores it for `reason`
/// and answers as the whole log does. Returns the store and its directory.
fn ignored_with_changed_field(
    offset: usize,
    before: &[u8],
    after: &[u8],
    reason: &str,
) -> (TempDir, Store) {
    let replayed = answers(&Store::open_read_only(golden_store().path()).unwrap());
    let dir = store_with_snapshot(|bytes| replace_field(bytes, offset, before, after));
    let store = Store::open_read_only(dir.path()).unwrap();
    let report = store.open_report();
    assert_eq!(report.snapshot, None, "{reason}");
    assert_eq!(report.ignored_snapshots.len(), 1, "{reason}");
    assert_eq!(report.ignored_snapshots[0].reason, reason);
    assert_eq!(answers(&store), replayed, "{reason}");
    (dir, store)
}

fn replace_field(bytes: &mut [u8], offset: usize, before: &[u8], after: &[u8]) {
    let field = &mut bytes[offset..offset + before.len()];
    assert_eq!(field, before, "the field at offset {offset}");
    field.copy_from_slice(after);
}

/// Indexes that do not fit the facts, both checksums recomputed: an item filed past the
/// messages, an outcome credited to a message that does not exist. The loader ignores the
/// snapshot, saying which index does not fit and why, and the store answers as the whole log
/// does.
#[test]
fn a_snapshot_whose_indexes_do_not_fit_its_facts_is_ignored_with_the_reason() {
    let replayed = answers(&Store::open_read_only(golden_store().path()).unwrap());
    let cases: [(usize, u32, u32, &str); 2] = [
        (
            SECOND_ITEM_OFFSET,
            1,
            5,
            "its message rollup does not fit its facts: slice 2892816 files item 5 of 2",
        ),
        (
            CREDITED_MESSAGE_OFFSET,
            0,
            9,
            "its outcome credits do not fit its facts: outcome 0 is credited to message index 9 of 2",
        ),
    ];
    for (offset, before, after, reason) in cases {
        let (dir, _) =
            ignored_with_changed_field(offset, &before.to_le_bytes(), &after.to_le_bytes(), reason);
        // Leaving the indexes unread, the same snapshot loads.
        let options = Options {
            load_indexes: false,
            ..Options::default()
        };
        let store = Store::open_read_only_with(dir.path(), options).unwrap();
        assert_eq!(
            store.open_report().snapshot,
            Some(snapshot_path(dir.path()))
        );
        assert_eq!(answers(&store), replayed, "{reason}, indexes unread");
    }
}

/// A rollup whose sums were changed, its checksums recomputed, fits the facts: the loader
/// cannot tell, and the views answer from it. A deep audit finds it, naming the index.
#[test]
fn a_snapshot_whose_index_sums_were_changed_loads_but_a_deep_audit_finds_it() {
    let reason = changed_field_found_by_a_deep_audit(
        TOTAL_COST_OFFSET,
        &50_000_i128.to_le_bytes(),
        &60_000_i128.to_le_bytes(),
    );
    assert!(
        reason.contains("the message rollup")
            && !reason.contains("messages (first")
            && !reason.contains("credits"),
        "{reason}"
    );
}

/// Opens a store whose golden snapshot has the field at `offset` changed from `before` to
/// `after`, both checksums recomputed, checks that the open uses it (the change fits), and
/// returns the reason of the one finding a deep audit makes of it (`snapshot_differs`).
fn changed_field_found_by_a_deep_audit(offset: usize, before: &[u8], after: &[u8]) -> String {
    let dir = store_with_snapshot(|bytes| replace_field(bytes, offset, before, after));
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        store.open_report().snapshot,
        Some(snapshot_path(dir.path()))
    );
    drop(store);
    let deep = commlog::audit::audit(dir.path(), true).unwrap();
    assert_eq!(deep.verdict, commlog::audit::Verdict::Clean);
    assert_eq!(deep.findings.len(), 1, "{:?}", deep.findings);
    assert_eq!(deep.findings[0].kind, "snapshot_differs");
    deep.findings[0].reason.clone()
}

/// Credits made under another attribution window are not taken: they are built under the
/// open's, and every answer is a full replay's under that window.
#[test]
fn credits_made_under_another_window_are_built_again_under_the_open_s() {
    let options = Options {
        attribution_window: std::time::Duration::from_secs(3_600),
        ..Options::default()
    };
    let full = Store::open_read_only_with(golden_store().path(), options.clone()).unwrap();
    let with_snapshot = store_with_snapshot(|_| {});
    let store = Store::open_read_only_with(with_snapshot.path(), options).unwrap();
    assert_eq!(
        store.open_report().snapshot,
        Some(snapshot_path(with_snapshot.path()))
    );
    let (narrow, default) = (answers(&store), answers(&full));
    assert_eq!(narrow, default);
    let wide = answers(&Store::open_read_only(with_snapshot.path()).unwrap());
    assert_ne!(
        format!("{:?}", narrow.impact),
        format!("{:?}", wide.impact),
        "an hour's window credits the outcome a day after the send to no message"
    );
}

/// The offset where the indexes begin, changed with the checksums recomputed: past the body,
/// or a byte off (the facts then end before it, or run into it). The loader ignores the
/// snapshot with the reason, and the store answers as the whole log does.
#[test]
fn a_snapshot_whose_indexes_offset_is_wrong_is_ignored_with_the_reason() {
    let replayed = answers(&Store::open_read_only(golden_store().path()).unwrap());
    let cases: [(u64, &str); 3] = [
        (
            u64::MAX,
            "the indexes' offset 18446744073709551615 lies past",
        ),
        (INDEXES_AT as u64 - 28 + 1, "body has 1 bytes after its end"),
        (INDEXES_AT as u64 - 28 - 1, "does not decode"),
    ];
    let indexes_at = (INDEXES_AT as u64 - 28).to_le_bytes();
    for (offset, reason) in cases {
        let dir = store_with_snapshot(|bytes| {
            let at = bytes.len() - 8;
            replace_field(bytes, at, &indexes_at, &offset.to_le_bytes())
        });
        let store = Store::open_read_only(dir.path()).unwrap();
        let report = store.open_report();
        assert_eq!(report.snapshot, None, "{offset}");
        assert!(
            report.ignored_snapshots[0].reason.contains(reason),
            "{offset}: {}",
            report.ignored_snapshots[0].reason
        );
        assert_eq!(answers(&store), replayed, "{offset}");
    }
}

/// A summary of the log that does not fit the facts or the position, both checksums
/// recomputed: the loader ignores the snapshot with the reason, and the store answers (and
/// summarizes its log) as the whole log does.
#[test]
fn a_snapshot_whose_summary_of_the_log_does_not_fit_is_ignored_with_the_reason() {
    let summary = Store::open_read_only(golden_store().path())
        .unwrap()
        .log_summary()
        .unwrap();
    let summary_at = 28 + BOUND_BYTES - SUMMARY_BYTES;
    let cases: [(usize, u64, u64, &str); 3] = [
        (summary_at, 7, 8, "it counts 8 events up to seq 7"),
        (
            summary_at + 8,
            2,
            3,
            "it counts 3 messages and 1 outcomes, the facts hold 2 and 1",
        ),
        (
            summary_at + 24 + 9,
            1_735_689_600_000 + 86_400_000,
            1_735_689_600_000 - 1,
            "its time ranges do not match its events",
        ),
    ];
    for (offset, before, after, reason) in cases {
        let reason = format!("its summary of the log does not fit: {reason}");
        let (_dir, store) = ignored_with_changed_field(
            offset,
            &before.to_le_bytes(),
            &after.to_le_bytes(),
            &reason,
        );
        assert_eq!(store.log_summary().unwrap(), summary, "{reason}");
    }
}

/// A writer that loaded a snapshot of an older version (version 2, without the log's summary,
/// whose events it counts from the log when asked; version 3, without the facts' directory;
/// version 4, without the split of the messages' records) closes with a snapshot of this
/// build's version once any event follows, however few.
#[test]
fn a_writer_from_an_older_snapshot_closes_with_one_of_this_version() {
    for file in [GOLDEN_SNAPSHOT_V2, GOLDEN_SNAPSHOT_V3, GOLDEN_SNAPSHOT_V4] {
        let dir = golden_store();
        fs::create_dir(dir.path().join(SNAPSHOT_DIRECTORY)).unwrap();
        fs::copy(golden(file), snapshot_path(dir.path())).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.open_report().snapshot,
            Some(snapshot_path(dir.path())),
            "{file}"
        );
        store
            .track_message_sent(5, commlog::Channel::Push, "bill_due", 0.0)
            .unwrap();
        let summary = store.log_summary().unwrap();
        assert_eq!(
            (summary.events, summary.messages, summary.outcomes),
            (8, 3, 1),
            "{file}"
        );
        store.close().unwrap();
        let newest = dir
            .path()
            .join(SNAPSHOT_DIRECTORY)
            .join("snapshot-00000000000000000008");
        let bytes = fs::read(&newest).expect("the close wrote a snapshot of the one new event");
        assert_eq!(bytes[8..12], 5_u32.to_le_bytes(), "{file}: format version");
        let reopened = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(reopened.open_report().snapshot, Some(newest), "{file}");
        assert_eq!(reopened.log_summary().unwrap(), summary, "{file}");
        let (_copy, full) = {
            let copy = TempDir::new().unwrap();
            for entry in fs::read_dir(dir.path()).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
                }
            }
            let path = copy.path().to_path_buf();
            (copy, path)
        };
        let full = Store::open_read_only(&full).unwrap();
        assert_eq!(full.open_report().snapshot, None, "{file}");
        assert_eq!(full.log_summary().unwrap(), summary, "{file}");
    }
}

/// A summary of the log that fits the facts but is not what the log holds (an append time
/// changed, both checksums recomputed) loads; a deep audit finds it.
#[test]
fn a_snapshot_whose_summary_of_the_log_was_changed_loads_but_a_deep_audit_finds_it() {
    let appended_low_at = 28 + BOUND_BYTES - 16;
    let reason = changed_field_found_by_a_deep_audit(
        appended_low_at,
        &1_764_000_000_000_i64.to_le_bytes(),
        &1_764_000_000_001_i64.to_le_bytes(),
    );
    assert!(reason.contains("the log's summary"), "{reason}");
}

/// A change to a snapshot's bytes.
type Change = Box<dyn Fn(&mut Vec<u8>)>;

/// What an open of `dir` made of its snapshot, its facts decoded whole or on demand: loaded, or
/// the reason it was ignored for.
fn opened_with(dir: &Path, decode_on_demand: bool) -> String {
    let options = Options {
        decode_on_demand,
        ..Options::default()
    };
    let store = Store::open_read_only_with(dir, options).unwrap();
    let report = store.open_report();
    match report.snapshot {
        Some(_) => "loaded".to_string(),
        None => report.ignored_snapshots[0].reason.clone(),
    }
}

/// Decoded whole or on demand, an open makes the same of a snapshot: it loads both ways or is
/// ignored for the same reason, the first check that fails in the order docs/FORMAT.md lists
/// them. Every byte of the facts changed three ways, pairs of changes (one in the messages or
/// the outcomes, one in the users' lists, which an open on demand reads on a thread of their
/// own), and the facts' directory moved to every offset in and around the facts.
#[test]
fn a_changed_snapshot_is_judged_alike_decoded_whole_and_on_demand() {
    let facts = FACTS_AT..INDEXES_AT;
    // Where the golden snapshot's directory puts the users (body offset 370).
    let users_at = 28 + 370;
    let mut cases: Vec<(String, Change)> = Vec::new();
    for at in facts.clone() {
        for change in [0x01_u8, 0x80, 0xFF] {
            cases.push((
                format!("byte {at} ^ {change:#04x}"),
                Box::new(move |bytes: &mut Vec<u8>| bytes[at] ^= change),
            ));
        }
    }
    for first in (FACTS_AT..users_at).step_by(7) {
        for second in (users_at..INDEXES_AT).step_by(5) {
            cases.push((
                format!("bytes {first} and {second} ^ 0xff"),
                Box::new(move |bytes: &mut Vec<u8>| {
                    bytes[first] ^= 0xFF;
                    bytes[second] ^= 0xFF;
                }),
            ));
        }
    }
    let fields = [
        ("the split's message", 40),
        ("the split's offset", 32),
        ("outcomes_at", 24),
        ("users_at", 16),
    ];
    for (field, from_end) in fields {
        for offset in (0..INDEXES_AT as u64 - 28 + 10).chain([u64::MAX, 1 << 63]) {
            cases.push((
                format!("{field} {offset}"),
                Box::new(move |bytes: &mut Vec<u8>| {
                    let at = bytes.len() - from_end;
                    bytes[at..at + 8].copy_from_slice(&offset.to_le_bytes());
                }),
            ));
        }
    }
    let mut differ = Vec::new();
    for (what, change) in &cases {
        let dir = store_with_snapshot(|bytes| change(bytes));
        let (whole, on_demand) = (
            opened_with(dir.path(), false),
            opened_with(dir.path(), true),
        );
        if whole != on_demand {
            differ.push(format!("{what}: whole {whole:?}, on demand {on_demand:?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
