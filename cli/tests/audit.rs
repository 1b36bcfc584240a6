//! `audit` and `repair` on every kind of damage a store's files can suffer: bit flips, zeroed
//! sectors, truncations, removed, duplicated, foreign, renamed and non-regular segments.
//!
//! For each case: audit's verdict predicts what open does (Clean: opens without cutting; Torn:
//! opens, cutting a torn end; Corrupt: both opens fail with `Error::Corruption` at audit's first
//! finding), audit changes no byte, and repair does what it promises: it refuses corruption
//! unless asked to cut, a dry run changes nothing, and a cut leaves a clean log while every
//! original byte is either still in place or in the repair directory.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commlog::audit::{Audit, Fix, Verdict, audit};
use commlog::repair::{REPORT_FILE_NAME, Repair, RepairAction, RepairOptions, repair};
use commlog::{Channel, Error, MessageId, Options, Store, SyncPolicy};
use serde_json::Value;
use support::files::segments;
use tempfile::TempDir;

/// Bytes of a format version 2 segment header.
const HEADER_BYTES: usize = 56;
/// Where the seal slot of a version 2 header starts, and its size.
const SEAL_SLOT: std::ops::Range<usize> = 40..56;
/// Bytes in front of every frame body: u16 length, u32 crc32.
const FRAME_PREFIX_BYTES: usize = 6;
/// A disk sector.
const SECTOR: usize = 512;

// ---------------------------------------------------------------------------------------------
// Building stores

fn small_segments(sync: SyncPolicy) -> Options {
    Options {
        sync,
        segment_bytes: 512,
        ..Options::default()
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap()
}

/// Tracks event `i` (0-based) of a fixed script, for users numbered from `first_user`: every
/// second event sends a message, the next delivers it.
fn track_event(store: &Store, i: u64, first_user: u64) {
    let at = t0() + Duration::minutes(i as i64);
    let latest = MessageId(i / 2 + 1);
    if i.is_multiple_of(2) {
        let sent = store
            .track_message_sent_at(i % 3 + first_user, Channel::Sms, "low_balance", 0.05, at)
            .unwrap();
        assert_eq!(sent.id, latest);
    } else {
        store.track_message_delivered(latest, Some(at)).unwrap();
    }
}

/// A store of `events` events under `opts` for users from `first_user`, closed cleanly.
fn closed_store_of_users(opts: Options, events: u64, first_user: u64) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(&data, opts).unwrap();
    for i in 0..events {
        track_event(&store, i, first_user);
    }
    store.close().unwrap();
    (dir, data)
}

fn closed_store(opts: Options, events: u64) -> (TempDir, PathBuf) {
    closed_store_of_users(opts, events, 1)
}

/// The files a crash would leave: `events` events tracked under `opts`, flushed, and the
/// directory copied while the store is still open (so no close marker).
fn crashed_store(opts: Options, events: u64) -> (TempDir, PathBuf) {
    let original = TempDir::new().unwrap();
    let data = original.path().join("data");
    let store = Store::open_with(&data, opts).unwrap();
    for i in 0..events {
        track_event(&store, i, 1);
    }
    store.flush().unwrap();
    let copy = copy_of(&data);
    store.close().unwrap();
    copy
}

/// A store written as the command line writes it: each event by its own open and close, so a
/// close marker follows every event.
fn reopened_store(opts: Options, events: u64) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    for i in 0..events {
        let store = Store::open_with(&data, opts.clone()).unwrap();
        track_event(&store, i, 1);
        store.close().unwrap();
    }
    (dir, data)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// A fresh copy of the store in `data`, to damage.
fn copy_of(data: &Path) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let copy = dir.path().join("data");
    copy_dir(data, &copy);
    (dir, copy)
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

fn first_seq_of(segment: &Path) -> u64 {
    file_name(segment).trim_end_matches(".log").parse().unwrap()
}

/// The byte range of every frame of a whole segment (close markers included).
fn frames(path: &Path) -> Vec<std::ops::Range<usize>> {
    let bytes = fs::read(path).unwrap();
    let mut ranges = Vec::new();
    let mut offset = HEADER_BYTES;
    while offset + FRAME_PREFIX_BYTES <= bytes.len() {
        let body = usize::from(u16::from_le_bytes([bytes[offset], bytes[offset + 1]]));
        assert!(body > 0, "zeros at offset {offset} of {}", path.display());
        ranges.push(offset..offset + FRAME_PREFIX_BYTES + body);
        offset += FRAME_PREFIX_BYTES + body;
    }
    assert_eq!(
        offset,
        bytes.len(),
        "{} ends inside a frame",
        path.display()
    );
    ranges
}

/// A byte in the middle of the frame's body: a bit flipped there fails its crc32.
fn body_byte(frame: &std::ops::Range<usize>) -> usize {
    frame.start + FRAME_PREFIX_BYTES + (frame.len() - FRAME_PREFIX_BYTES) / 2
}

// ---------------------------------------------------------------------------------------------
// Damage

fn flip_bit(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 1 << 3;
    fs::write(path, bytes).unwrap();
}

fn zero(path: &Path, range: std::ops::Range<usize>) {
    let mut bytes = fs::read(path).unwrap();
    let end = range.end.min(bytes.len());
    bytes[range.start..end].fill(0);
    fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: usize) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len as u64)
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Checking

/// One entry under a store directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
    /// A FIFO or device: not read.
    Other,
}

/// Every entry under `data`, by relative path, but the top-level `LOCK`, which every writer's
/// open (and repair) rewrites with its process id.
fn snapshot(data: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Entry>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if relative == Path::new("LOCK") {
                continue;
            }
            let kind = fs::symlink_metadata(&path).unwrap().file_type();
            let value = if kind.is_dir() {
                walk(root, &path, into);
                Entry::Dir
            } else if kind.is_symlink() {
                Entry::Link(fs::read_link(&path).unwrap())
            } else if kind.is_file() {
                Entry::File(fs::read(&path).unwrap())
            } else {
                Entry::Other
            };
            into.insert(relative, value);
        }
    }
    let mut entries = BTreeMap::new();
    walk(data, data, &mut entries);
    entries
}

fn file_bytes(entry: Option<&Entry>) -> &[u8] {
    match entry {
        Some(Entry::File(bytes)) => bytes,
        _ => &[],
    }
}

/// What an open found: `Ok(truncated_bytes)` or the corruption's (file name, offset).
fn open_outcome(result: commlog::Result<Store>) -> Result<(u64, u64), (String, u64)> {
    match result {
        Ok(store) => {
            let report = store.open_report();
            Ok((report.truncated_bytes, report.events))
        }
        Err(Error::Corruption {
            segment, offset, ..
        }) => Err((file_name(&segment), offset)),
        Err(other) => panic!("expected Ok or Error::Corruption, got {other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Audits the damaged store in `data` and checks everything audit promises and repair does;
/// returns the audit. `case` names the case in failures; `kind` is the first finding's kind
/// expected (ignored for `Clean`).
fn check(case: &str, data: &Path, opts: &Options, verdict: Verdict, kind: &str) -> Audit {
    verify(case, data, opts, Some((verdict, kind)))
}

/// [`check`], with the verdict and the first finding's kind expected if given.
fn verify(case: &str, data: &Path, opts: &Options, expected: Option<(Verdict, &str)>) -> Audit {
    let before = snapshot(data);
    let audited = audit(data, false).unwrap();
    assert_eq!(snapshot(data), before, "{case}: audit changed files");
    let deep = audit(data, true).unwrap();
    assert_eq!(snapshot(data), before, "{case}: deep audit changed files");
    assert_eq!(deep.verdict, audited.verdict, "{case}: deep audit");
    assert_eq!(deep.findings, audited.findings, "{case}: deep audit");
    assert_eq!(audited.in_flight, None, "{case}");
    if let Some((verdict, kind)) = expected {
        assert_eq!(
            audited.verdict, verdict,
            "{case}: verdict; findings {:#?}",
            audited.findings
        );
        if verdict != Verdict::Clean {
            assert_eq!(
                audited.findings[0].kind, kind,
                "{case}: {:#?}",
                audited.findings
            );
        }
    }

    // The verdict predicts open.
    let read_only = open_outcome(Store::open_read_only_with(data, opts.clone()));
    assert_eq!(
        snapshot(data),
        before,
        "{case}: read-only open changed files"
    );
    match audited.verdict {
        Verdict::Clean => {
            assert!(
                audited.findings.is_empty(),
                "{case}: {:#?}",
                audited.findings
            );
            assert_eq!(read_only, Ok((0, audited.events)), "{case}");
        }
        Verdict::Torn => {
            let torn = audited.findings[0].bytes;
            assert!(torn > 0, "{case}");
            assert_eq!(read_only, Ok((torn, audited.events)), "{case}");
            for finding in &audited.findings {
                assert_eq!(finding.fix, Fix::Open, "{case}: {finding:?}");
            }
            let (_dir, copy) = copy_of(data);
            let store = Store::open_with(&copy, opts.clone()).unwrap();
            let report = store.open_report();
            assert_eq!(report.truncated_bytes, torn, "{case}");
            assert!(report.quarantined.is_some(), "{case}");
            assert_eq!(report.events, audited.events, "{case}");
            store.close().unwrap();
            let reopened = open_outcome(Store::open_with(&copy, opts.clone()));
            assert_eq!(
                reopened,
                Ok((0, audited.events)),
                "{case}: reopening after the torn end was cut"
            );
        }
        Verdict::Corrupt => {
            let first = &audited.findings[0];
            let expected = Err((first.segment.clone(), first.offset));
            assert_eq!(read_only, expected, "{case}: read-only open");
            let writable = open_outcome(Store::open_with(data, opts.clone()));
            assert_eq!(writable, expected, "{case}: writable open");
            assert_eq!(
                snapshot(data),
                before,
                "{case}: a failed open changed files"
            );
        }
    }

    match audited.verdict {
        Verdict::Clean => {
            let repaired = repair(data, RepairOptions::default()).unwrap();
            assert_eq!(repaired.action, RepairAction::Nothing, "{case}");
            assert_eq!(snapshot(data), before, "{case}");
        }
        Verdict::Torn => check_torn_repair(case, data, &audited),
        Verdict::Corrupt => check_cut(case, data, opts, &audited),
    }
    audited
}

/// Repair of a torn log: quarantines as a writable open does.
fn check_torn_repair(case: &str, data: &Path, audited: &Audit) {
    let before = snapshot(data);
    let planned = repair(
        data,
        RepairOptions {
            cut: false,
            dry_run: true,
            deep: false,
        },
    )
    .unwrap();
    assert_eq!(planned.action, RepairAction::QuarantinedTorn, "{case}");
    assert_eq!(snapshot(data), before, "{case}: dry run changed files");

    let repaired = repair(data, RepairOptions::default()).unwrap();
    assert_eq!(repaired.action, RepairAction::QuarantinedTorn, "{case}");
    assert_eq!(repaired.exit_status(), 0);
    let after = audit(data, false).unwrap();
    assert_eq!(
        after.verdict,
        Verdict::Clean,
        "{case}: {:#?}",
        after.findings
    );
    assert_eq!(after.events, audited.events, "{case}");
    let torn = &audited.findings[0];
    let quarantined: u64 = after.quarantine.iter().map(|file| file.bytes).sum();
    assert_eq!(quarantined, torn.bytes, "{case}: {:?}", after.quarantine);
    let again = repair(data, RepairOptions::default()).unwrap();
    assert_eq!(again.action, RepairAction::Nothing, "{case}");
}

/// Repair of a corrupt log: refused without `cut`, a dry run changes nothing, and the cut keeps
/// or quarantines every byte.
fn check_cut(case: &str, data: &Path, opts: &Options, audited: &Audit) {
    let before = snapshot(data);
    let refused = repair(data, RepairOptions::default()).unwrap();
    assert_eq!(refused.action, RepairAction::Refused, "{case}");
    assert_eq!(refused.exit_status(), 3, "{case}");
    assert_eq!(
        snapshot(data),
        before,
        "{case}: refused repair changed files"
    );

    let planned = repair(
        data,
        RepairOptions {
            cut: true,
            dry_run: true,
            deep: false,
        },
    )
    .unwrap();
    assert_eq!(planned.action, RepairAction::Cut, "{case}");
    assert!(planned.dry_run);
    assert!(!planned.plan.is_empty(), "{case}");
    assert!(
        !planned.moved.is_empty() || planned.cleared_seal.is_some(),
        "{case}: a cut that changes nothing"
    );
    assert_eq!(planned.events_kept, audited.events, "{case}");
    assert_eq!(snapshot(data), before, "{case}: dry run changed files");

    let cut = repair(
        data,
        RepairOptions {
            cut: true,
            dry_run: false,
            deep: false,
        },
    )
    .unwrap();
    assert_eq!(cut.action, RepairAction::Cut, "{case}");
    assert_eq!(cut.exit_status(), 0, "{case}");
    assert_eq!(cut.events_kept, audited.events, "{case}");
    let plan_of = |repair: &Repair| {
        repair
            .moved
            .iter()
            .map(|moved| {
                (
                    moved.segment.clone(),
                    moved.from_offset,
                    moved.bytes,
                    moved.crc32,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        plan_of(&planned),
        plan_of(&cut),
        "{case}: the dry run's plan"
    );
    assert_eq!(planned.cleared_seal, cut.cleared_seal, "{case}");
    check_conservation(case, data, &before, &cut);

    let after = audit(data, false).unwrap();
    assert_eq!(
        after.verdict,
        Verdict::Clean,
        "{case}: {:#?}",
        after.findings
    );
    assert_eq!(after.events, audited.events, "{case}");
    let store = Store::open_with(data, opts.clone()).unwrap();
    let report = store.open_report();
    assert_eq!(report.truncated_bytes, 0, "{case}");
    assert_eq!(report.events, audited.events, "{case}");
    store.close().unwrap();

    let again = repair(
        data,
        RepairOptions {
            cut: true,
            dry_run: false,
            deep: false,
        },
    )
    .unwrap();
    assert_eq!(
        again.action,
        RepairAction::Nothing,
        "{case}: a second repair"
    );
}

/// Every original byte of the store is either kept in place or in the repair directory, the
/// report says so, and nothing else changed.
fn check_conservation(case: &str, data: &Path, before: &BTreeMap<PathBuf, Entry>, cut: &Repair) {
    let after = snapshot(data);
    let repair_dir = PathBuf::from(cut.repair_dir.as_deref().expect("a repair directory"));
    assert!(
        repair_dir.starts_with("quarantine"),
        "{case}: {repair_dir:?}"
    );
    let report: Repair =
        serde_json::from_slice(file_bytes(after.get(&repair_dir.join(REPORT_FILE_NAME))))
            .unwrap_or_else(|error| panic!("{case}: {REPORT_FILE_NAME}: {error}"));
    assert_eq!(report.moved, cut.moved, "{case}");
    assert_eq!(report.cleared_seal, cut.cleared_seal, "{case}");
    let json = |findings: &[commlog::audit::Finding]| serde_json::to_value(findings).unwrap();
    assert_eq!(json(&report.findings), json(&cut.findings), "{case}");
    assert_eq!(report.events_kept, cut.events_kept, "{case}");
    assert_eq!(report.seq_range_cut, cut.seq_range_cut, "{case}");

    // The repair directory holds the report and what moved, nothing more.
    let in_repair_dir: BTreeSet<PathBuf> = after
        .keys()
        .filter(|path| path.starts_with(&repair_dir) && **path != repair_dir)
        .cloned()
        .collect();
    let mut expected: BTreeSet<PathBuf> = cut
        .moved
        .iter()
        .map(|moved| PathBuf::from(&moved.quarantined_as))
        .collect();
    expected.insert(repair_dir.join(REPORT_FILE_NAME));
    assert_eq!(in_repair_dir, expected, "{case}");

    let is_segment = |path: &Path| {
        path.components().count() == 1 && path.extension().is_some_and(|ext| ext == "log")
    };
    let (mut original_bytes, mut kept_and_moved_bytes) = (0u64, 0u64);
    for (path, original) in before.iter().filter(|(path, _)| is_segment(path)) {
        let name = path.to_str().unwrap();
        let moved: Vec<_> = cut.moved.iter().filter(|m| m.segment == name).collect();
        assert!(moved.len() <= 1, "{case}: {moved:?}");
        let kept = after.get(path);
        let Entry::File(original) = original else {
            // Not a regular file: it can only have been moved whole, as it was.
            assert!(kept.is_none(), "{case}: {name} left in place");
            let moved = moved
                .first()
                .unwrap_or_else(|| panic!("{case}: {name} not moved"));
            assert!(moved.renamed, "{case}");
            assert_eq!(
                after.get(Path::new(&moved.quarantined_as)),
                Some(original),
                "{case}: {name}"
            );
            continue;
        };
        original_bytes += original.len() as u64;
        let mut rebuilt = match kept {
            Some(Entry::File(kept)) => kept.clone(),
            None => Vec::new(),
            Some(other) => panic!("{case}: {name} is now {other:?}"),
        };
        kept_and_moved_bytes += rebuilt.len() as u64;
        if let Some(moved) = moved.first() {
            let quarantined = file_bytes(after.get(Path::new(&moved.quarantined_as)));
            assert_eq!(
                moved.crc32,
                crc32fast::hash(quarantined),
                "{case}: crc32 of {}",
                moved.quarantined_as
            );
            assert_eq!(moved.bytes, quarantined.len() as u64, "{case}");
            assert_eq!(moved.from_offset, rebuilt.len() as u64, "{case}: {name}");
            assert_eq!(moved.renamed, kept.is_none(), "{case}: {name}");
            kept_and_moved_bytes += quarantined.len() as u64;
            rebuilt.extend_from_slice(quarantined);
        }
        if let Some(seal) = cut
            .cleared_seal
            .as_ref()
            .filter(|seal| seal.segment == name)
        {
            assert_eq!(seal.offset, SEAL_SLOT.start as u64, "{case}");
            assert_eq!(rebuilt[SEAL_SLOT].to_vec(), vec![0; 16], "{case}: {name}");
            assert_eq!(seal.was, hex(&original[SEAL_SLOT]), "{case}: {name}");
            rebuilt[SEAL_SLOT].copy_from_slice(&original[SEAL_SLOT]);
        }
        assert!(
            rebuilt == *original,
            "{case}: {name} is not its kept and quarantined bytes"
        );
    }
    assert_eq!(kept_and_moved_bytes, original_bytes, "{case}");

    // Nothing but segments and the repair directory changed.
    let others = |entries: &BTreeMap<PathBuf, Entry>| {
        entries
            .iter()
            .filter(|(path, _)| !is_segment(path) && !path.starts_with(&repair_dir))
            .filter(|(path, _)| **path != Path::new("quarantine"))
            .map(|(path, entry)| (path.clone(), entry.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(others(&after), others(before), "{case}");
}

/// A closed store of several small segments, and its segment paths.
fn sealed_base() -> (TempDir, PathBuf, Vec<PathBuf>) {
    let (dir, data) = closed_store(small_segments(SyncPolicy::Never), 90);
    let all = segments(&data);
    assert!(all.len() >= 4, "{} segments", all.len());
    (dir, data, all)
}

/// Runs `check` on a fresh copy of `base` damaged by `damage` (given the copy's directory).
fn case(
    name: &str,
    base: &Path,
    opts: &Options,
    damage: impl FnOnce(&Path),
    verdict: Verdict,
    kind: &str,
) -> Audit {
    let (_dir, data) = copy_of(base);
    damage(&data);
    check(name, &data, opts, verdict, kind)
}

// ---------------------------------------------------------------------------------------------
// Damage kinds

#[test]
fn an_undamaged_store_is_clean_and_repair_does_nothing() {
    let opts = small_segments(SyncPolicy::Never);
    let (_dir, data, _) = sealed_base();
    let audited = case("closed", &data, &opts, |_| {}, Verdict::Clean, "");
    assert_eq!(audited.events, 90);
    assert_eq!(audited.last_seq, 90);
    assert_eq!(audited.durable_seq, 90);
    let (_dir, crashed) = crashed_store(opts.clone(), 40);
    case("crashed", &crashed, &opts, |_| {}, Verdict::Clean, "");
}

#[test]
fn bit_flips() {
    let never = small_segments(SyncPolicy::Never);
    let always = small_segments(SyncPolicy::Always);
    let (_dir, sealed, all) = sealed_base();
    let name = |index: usize| file_name(&all[index]);

    for index in [0, 1, all.len() - 1] {
        let segment = name(index);
        case(
            &format!("header of segment {index}"),
            &sealed,
            &never,
            |data| flip_bit(&data.join(&segment), 14),
            Verdict::Corrupt,
            "header",
        );
    }
    let middle = frames(&all[1]);
    for k in [0, middle.len() / 2, middle.len() - 1] {
        let segment = name(1);
        let frame = middle[k].clone();
        let audited = case(
            &format!("frame {k} of a sealed segment"),
            &sealed,
            &never,
            |data| flip_bit(&data.join(&segment), body_byte(&frame)),
            Verdict::Corrupt,
            "frame",
        );
        assert_eq!(audited.findings[0].segment, segment);
        assert_eq!(audited.findings[0].offset, frame.start as u64);
    }
    // The last event of a cleanly closed log: its close marker proves it durable.
    let last = all.last().unwrap();
    let last_frames = frames(last);
    let last_event = last_frames[last_frames.len() - 2].clone();
    case(
        "last event before the close marker",
        &sealed,
        &never,
        |data| flip_bit(&data.join(file_name(last)), body_byte(&last_event)),
        Verdict::Corrupt,
        "frame",
    );
    // The close marker itself, last frame of the log: nothing later proves it was written.
    let marker = last_frames.last().unwrap().clone();
    case(
        "the final close marker",
        &sealed,
        &never,
        |data| flip_bit(&data.join(file_name(last)), body_byte(&marker)),
        Verdict::Torn,
        "torn_tail",
    );

    // Under SyncPolicy::Always every frame records the one before as durable.
    let (_dir, crashed) = crashed_store(always.clone(), 40);
    let last = segments(&crashed).pop().unwrap();
    let last_frames = frames(&last);
    assert!(last_frames.len() >= 3);
    let frame = last_frames[1].clone();
    case(
        "middle frame of the last segment, synced",
        &crashed,
        &always,
        |data| flip_bit(&data.join(file_name(&last)), body_byte(&frame)),
        Verdict::Corrupt,
        "frame",
    );
    let frame = last_frames.last().unwrap().clone();
    let audited = case(
        "last frame of the last segment, synced",
        &crashed,
        &always,
        |data| flip_bit(&data.join(file_name(&last)), body_byte(&frame)),
        Verdict::Torn,
        "torn_tail",
    );
    assert_eq!(audited.findings[0].offset, frame.start as u64);

    // A close marker in the middle of the log, as the command line leaves after each event.
    let (_dir, reopened) = reopened_store(never.clone(), 8);
    let only = segments(&reopened);
    assert_eq!(only.len(), 1);
    let reopened_frames = frames(&only[0]);
    assert_eq!(
        reopened_frames.len(),
        16,
        "an event and a close marker each"
    );
    let marker = reopened_frames[5].clone();
    let audited = case(
        "a close marker in the middle",
        &reopened,
        &never,
        |data| flip_bit(&data.join(file_name(&only[0])), body_byte(&marker)),
        Verdict::Corrupt,
        "frame",
    );
    assert_eq!(audited.events, 3);
}

#[test]
fn zeroed_sectors() {
    let never = small_segments(SyncPolicy::Never);
    let big = Options {
        sync: SyncPolicy::Never,
        segment_bytes: 2048,
        ..Options::default()
    };
    let (_dir, sealed) = closed_store(big.clone(), 300);
    let all = segments(&sealed);
    assert!(all.len() >= 3, "{} segments", all.len());
    let first = file_name(&all[0]);
    for sector in [0, 1, 2] {
        let range = sector * SECTOR..(sector + 1) * SECTOR;
        let kind = if sector == 0 { "header" } else { "frame" };
        let audited = case(
            &format!("sector {sector} of a sealed segment"),
            &sealed,
            &big,
            |data| zero(&data.join(&first), range),
            Verdict::Corrupt,
            kind,
        );
        assert_eq!(audited.findings[0].segment, first);
    }
    // The last sector of the last segment of a crashed log holds its unsynced end.
    let (_dir, crashed) = crashed_store(big.clone(), 300);
    let last = segments(&crashed).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len() as usize;
    let sector = (len - 1) / SECTOR * SECTOR;
    assert!(sector > HEADER_BYTES);
    case(
        "last sector of the last segment, crashed",
        &crashed,
        &big,
        |data| zero(&data.join(file_name(&last)), sector..len),
        Verdict::Torn,
        "torn_tail",
    );
    // Its first sector: the header its predecessor's seal names had been fsynced.
    let audited = case(
        "first sector of the last segment, crashed",
        &crashed,
        &big,
        |data| zero(&data.join(file_name(&last)), 0..SECTOR),
        Verdict::Corrupt,
        "header",
    );
    assert_eq!(audited.findings[0].segment, file_name(&last));
    assert_eq!(audited.findings[0].offset, 0);
    // A sector in the middle of a small store's sealed segment.
    let (_dir, small, small_all) = sealed_base();
    let segment = file_name(&small_all[2]);
    case(
        "a small sealed segment's only sector",
        &small,
        &never,
        |data| zero(&data.join(&segment), 0..SECTOR),
        Verdict::Corrupt,
        "header",
    );
}

#[test]
fn truncations() {
    let never = small_segments(SyncPolicy::Never);
    let (_dir, sealed, all) = sealed_base();
    let middle = file_name(&all[1]);
    let middle_frames = frames(&all[1]);
    let boundary = middle_frames[middle_frames.len() / 2].start;
    let audited = case(
        "sealed segment at a frame boundary",
        &sealed,
        &never,
        |data| truncate(&data.join(&middle), boundary),
        Verdict::Corrupt,
        "gap",
    );
    assert_eq!(audited.findings[0].offset, boundary as u64);
    let inside = body_byte(&middle_frames[2]);
    case(
        "sealed segment inside a frame",
        &sealed,
        &never,
        |data| truncate(&data.join(&middle), inside),
        Verdict::Corrupt,
        "frame",
    );
    case(
        "sealed segment inside its header",
        &sealed,
        &never,
        |data| truncate(&data.join(&middle), 20),
        Verdict::Corrupt,
        "header",
    );
    case(
        "sealed segment to nothing",
        &sealed,
        &never,
        |data| truncate(&data.join(&middle), 0),
        Verdict::Corrupt,
        "header",
    );

    let last = all.last().unwrap();
    let last_frames = frames(last);
    let inside = body_byte(&last_frames[last_frames.len() / 2]);
    case(
        "last segment inside a frame, closed",
        &sealed,
        &never,
        |data| truncate(&data.join(file_name(last)), inside),
        Verdict::Torn,
        "torn_tail",
    );
    let (_dir, crashed) = crashed_store(small_segments(SyncPolicy::Always), 40);
    let last = segments(&crashed).pop().unwrap();
    let last_frames = frames(&last);
    let inside = body_byte(last_frames.last().unwrap());
    case(
        "last segment inside its last frame, synced",
        &crashed,
        &small_segments(SyncPolicy::Always),
        |data| truncate(&data.join(file_name(&last)), inside),
        Verdict::Torn,
        "torn_tail",
    );
}

#[test]
fn removed_segments() {
    let never = small_segments(SyncPolicy::Never);
    let (_dir, sealed, all) = sealed_base();
    let n = all.len();
    let audited = case(
        "a middle segment",
        &sealed,
        &never,
        |data| fs::remove_file(data.join(file_name(&all[1]))).unwrap(),
        Verdict::Corrupt,
        "gap",
    );
    assert_eq!(audited.events, first_seq_of(&all[1]) - 1);
    let audited = case(
        "the newest segment",
        &sealed,
        &never,
        |data| fs::remove_file(data.join(file_name(&all[n - 1]))).unwrap(),
        Verdict::Corrupt,
        "missing_segment",
    );
    assert_eq!(audited.findings[0].segment, file_name(&all[n - 1]));
    let audited = case(
        "the newest two segments",
        &sealed,
        &never,
        |data| {
            fs::remove_file(data.join(file_name(&all[n - 1]))).unwrap();
            fs::remove_file(data.join(file_name(&all[n - 2]))).unwrap();
        },
        Verdict::Corrupt,
        "missing_segment",
    );
    assert_eq!(audited.findings[0].segment, file_name(&all[n - 2]));
    assert_eq!(audited.events, first_seq_of(&all[n - 2]) - 1);
}

#[test]
fn duplicated_segments() {
    let never = small_segments(SyncPolicy::Never);
    let (_dir, sealed, all) = sealed_base();
    let n = all.len();
    case(
        "a copy of the first segment under the second's name",
        &sealed,
        &never,
        |data| {
            fs::copy(&all[0], data.join(file_name(&all[1])))
                .map(|_| ())
                .unwrap()
        },
        Verdict::Corrupt,
        "misnamed_segment",
    );
    case(
        "a copy of a segment under the last one's name",
        &sealed,
        &never,
        |data| {
            fs::copy(&all[1], data.join(file_name(&all[n - 1])))
                .map(|_| ())
                .unwrap()
        },
        Verdict::Corrupt,
        "misnamed_segment",
    );
    let extra = segment_name(first_seq_of(&all[n - 1]) + 1000);
    case(
        "an extra copy of the last segment after it",
        &sealed,
        &never,
        |data| {
            fs::copy(&all[n - 1], data.join(&extra))
                .map(|_| ())
                .unwrap()
        },
        Verdict::Corrupt,
        "gap",
    );
}

#[test]
fn a_foreign_segment_with_matching_boundaries() {
    let never = small_segments(SyncPolicy::Never);
    let (_dir, ours, all) = sealed_base();
    let (_their_dir, theirs) = closed_store_of_users(never.clone(), 90, 101);
    for index in [1, all.len() - 1] {
        let name = file_name(&all[index]);
        let foreign = theirs.join(&name);
        let header = |path: &Path| fs::read(path).unwrap()[12..28].to_vec();
        assert_eq!(header(&foreign), header(&all[index]), "same boundaries");
        let audited = case(
            &format!("segment {index} from another store"),
            &ours,
            &never,
            |data| fs::copy(&foreign, data.join(&name)).map(|_| ()).unwrap(),
            Verdict::Corrupt,
            "foreign_segment",
        );
        assert_eq!(audited.findings[0].offset, 28);
    }
}

#[test]
fn a_renamed_segment() {
    let never = small_segments(SyncPolicy::Never);
    let (_dir, sealed, all) = sealed_base();
    let n = all.len();
    for index in [1, n - 1] {
        let from = file_name(&all[index]);
        let to = segment_name(first_seq_of(&all[index]) + 1);
        case(
            &format!("segment {index} renamed"),
            &sealed,
            &never,
            |data| fs::rename(data.join(&from), data.join(&to)).unwrap(),
            Verdict::Corrupt,
            "gap",
        );
    }
}

#[test]
fn a_segment_that_is_a_symbolic_link() {
    let never = small_segments(SyncPolicy::Never);
    let (_dir, sealed, all) = sealed_base();
    let outside = TempDir::new().unwrap();
    for index in [1, all.len() - 1] {
        let name = file_name(&all[index]);
        let target = outside.path().join(format!("{index}.log"));
        fs::copy(&all[index], &target).unwrap();
        let audited = case(
            &format!("segment {index} a symbolic link"),
            &sealed,
            &never,
            |data| {
                fs::remove_file(data.join(&name)).unwrap();
                std::os::unix::fs::symlink(&target, data.join(&name)).unwrap();
            },
            Verdict::Corrupt,
            "not_regular_file",
        );
        assert_eq!(audited.findings[0].segment, name);
        assert_eq!(fs::read(&target).unwrap(), fs::read(&all[index]).unwrap());
    }
}

#[test]
fn a_segment_that_is_a_fifo() {
    let never = small_segments(SyncPolicy::Never);
    let (_dir, sealed, all) = sealed_base();
    let name = file_name(&all[1]);
    let (_copy_dir, data) = copy_of(&sealed);
    fs::remove_file(data.join(&name)).unwrap();
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(data.join(&name))
        .status()
        .unwrap();
    assert!(made.success());
    assert!(
        fs::symlink_metadata(data.join(&name))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // Nothing may block on opening the FIFO: run the whole check on a thread with a deadline.
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let audited = check(
            "a FIFO",
            &data,
            &never,
            Verdict::Corrupt,
            "not_regular_file",
        );
        done.send(()).unwrap();
        audited
    });
    finished
        .recv_timeout(StdDuration::from_secs(20))
        .expect("audit, open and repair finish beside a FIFO");
    assert_eq!(thread.join().unwrap().findings[0].segment, name);
}

// ---------------------------------------------------------------------------------------------
// Repair directories

#[test]
fn a_second_cut_takes_a_new_repair_directory() {
    let never = small_segments(SyncPolicy::Never);
    let (_dir, sealed, all) = sealed_base();
    let (_copy_dir, data) = copy_of(&sealed);
    let cut = RepairOptions {
        cut: true,
        dry_run: false,
        deep: false,
    };
    let frames1 = frames(&all[1]);
    flip_bit(&data.join(file_name(&all[1])), body_byte(&frames1[3]));
    let first = repair(&data, cut).unwrap();
    assert_eq!(first.action, RepairAction::Cut);
    assert_eq!(repair(&data, cut).unwrap().action, RepairAction::Nothing);

    // Damage the log again; the names the repair could take this second and the next few are
    // taken already.
    flip_bit(
        &data.join(file_name(&all[0])),
        body_byte(&frames(&all[0])[2]),
    );
    let now = Utc::now();
    for seconds in 0..4 {
        let at = now + Duration::seconds(seconds);
        let name = format!("repair-{}", at.format("%Y%m%dT%H%M%SZ"));
        let path = data.join("quarantine").join(name);
        if !path.exists() {
            fs::create_dir(path).unwrap();
        }
    }
    let before = snapshot(&data);
    let second = repair(&data, cut).unwrap();
    assert_eq!(second.action, RepairAction::Cut);
    let repair_dir = second.repair_dir.clone().unwrap();
    assert!(repair_dir.ends_with(".1"), "{repair_dir}");
    assert_ne!(Some(&repair_dir), first.repair_dir.as_ref());
    assert!(data.join(&repair_dir).join(REPORT_FILE_NAME).is_file());
    check_conservation("second cut", &data, &before, &second);
    assert_eq!(audit(&data, false).unwrap().verdict, Verdict::Clean);
    let store = Store::open_with(&data, never).unwrap();
    assert_eq!(store.open_report().events, second.events_kept);
}

// ---------------------------------------------------------------------------------------------
// Beside a running writer

#[test]
fn beside_a_running_writer_an_unfinished_end_is_in_flight_not_torn() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(&data, small_segments(SyncPolicy::Never)).unwrap();
    for i in 0..40 {
        track_event(&store, i, 1);
    }
    // Appended but perhaps not yet handed to the OS.
    let audited = audit(&data, false).unwrap();
    assert_eq!(audited.verdict, Verdict::Clean, "{:#?}", audited.findings);
    assert!(audited.findings.is_empty());

    store.flush().unwrap();
    let last = segments(&data).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    // A frame being written: its length prefix and part of its body.
    let mut file = fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut file, &[40, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    drop(file);
    let audited = audit(&data, false).unwrap();
    assert_eq!(audited.verdict, Verdict::Clean, "{:#?}", audited.findings);
    assert!(audited.findings.is_empty(), "{:#?}", audited.findings);
    let in_flight = audited.in_flight.expect("the unfinished end is in flight");
    assert_eq!(in_flight.segment, file_name(&last));
    assert_eq!(in_flight.offset, len);
    assert_eq!(in_flight.bytes, 9);
    // The same bytes without a writer are a torn tail.
    let (_copy_dir, copy) = copy_of(&data);
    fs::remove_file(copy.join("LOCK")).ok();
    let alone = audit(&copy, false).unwrap();
    assert_eq!(alone.verdict, Verdict::Torn);
    assert_eq!(alone.in_flight, None);
    drop(store);
}

// ---------------------------------------------------------------------------------------------
// The command line

/// Runs the binary; returns its exit status, stdout and stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_commlog"))
        .args(args)
        .env_remove("COMMLOG_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().expect("an exit status"),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn audit_exit_statuses_and_json() {
    let (_dir, sealed, all) = sealed_base();
    let (_torn_dir, torn) = copy_of(&sealed);
    let last = all.last().unwrap();
    truncate(
        &torn.join(file_name(last)),
        fs::metadata(last).unwrap().len() as usize - 1,
    );
    let (_corrupt_dir, corrupt) = copy_of(&sealed);
    flip_bit(&corrupt.join(file_name(&all[1])), 14);

    for (data, status, verdict) in [
        (&sealed, 0, "clean"),
        (&torn, 4, "torn"),
        (&corrupt, 3, "corrupt"),
    ] {
        let dir = data.to_str().unwrap();
        let (code, stdout, stderr) = run(&["--json", "audit", dir]);
        assert_eq!(code, status, "{verdict}: {stderr}");
        let json: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json["verdict"], verdict);
        let expected = audit(data, false).unwrap();
        assert_eq!(json["events"], expected.events);
        assert_eq!(json["last_seq"], expected.last_seq);
        assert_eq!(json["durable_seq"], expected.durable_seq);
        assert_eq!(json["segments"].as_array().unwrap().len(), all.len());
        let findings = json["findings"].as_array().unwrap();
        assert_eq!(findings.len(), expected.findings.len(), "{verdict}");
        if let Some(first) = findings.first() {
            assert_eq!(first["kind"], expected.findings[0].kind.as_str());
            assert_eq!(first["segment"], expected.findings[0].segment.as_str());
            assert_eq!(first["offset"], expected.findings[0].offset);
            assert!(first["fix"].is_string());
        }
        assert!(json["in_flight"].is_null());
        assert!(json["quarantine"].is_array());
        let (code, stdout, _) = run(&["audit", dir]);
        assert_eq!(code, status, "{verdict}");
        assert!(
            stdout.starts_with(&format!("verdict: {verdict}")),
            "{stdout}"
        );
    }

    let before = snapshot(&corrupt);
    let corrupt_dir = corrupt.to_str().unwrap();
    for (args, status) in [
        (vec!["repair", corrupt_dir], 3),
        (vec!["repair", corrupt_dir, "--dry-run"], 3),
        (vec!["repair", corrupt_dir, "--cut", "--dry-run"], 0),
        (vec!["repair"], 1),
    ] {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, status, "{args:?}: {stdout}{stderr}");
        assert_eq!(snapshot(&corrupt), before, "{args:?}");
    }
    let (code, stdout, _) = run(&["--json", "repair", corrupt_dir, "--cut", "--dry-run"]);
    assert_eq!(code, 0);
    let planned: Repair = serde_json::from_str(&stdout).unwrap();
    assert_eq!(planned.action, RepairAction::Cut);
    assert!(planned.dry_run);
    let (code, _, stderr) = run(&["repair", corrupt.to_str().unwrap(), "--cut"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(run(&["audit", corrupt.to_str().unwrap()]).0, 0);

    let missing = TempDir::new().unwrap();
    let missing = missing.path().join("missing");
    let (code, _, stderr) = run(&["audit", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!missing.exists());
}

#[test]
fn repair_beside_a_running_writer_exits_2_naming_the_lock() {
    let (_dir, sealed, _) = sealed_base();
    let store = Store::open_with(&sealed, small_segments(SyncPolicy::Never)).unwrap();
    let before = snapshot(&sealed);
    let (code, _, stderr) = run(&["repair", sealed.to_str().unwrap(), "--cut"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("LOCK"), "{stderr}");
    assert_eq!(snapshot(&sealed), before);
    assert!(matches!(
        repair(&sealed, RepairOptions::default()),
        Err(Error::Locked { .. })
    ));
    store.close().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Sweeps: whatever the verdict, it must predict open, and repair must keep every byte.

/// Runs [`verify`] on a fresh copy of `base` damaged by `damage`; returns the verdict.
fn sweep_case(name: &str, base: &Path, opts: &Options, damage: impl FnOnce(&Path)) -> Verdict {
    let (_dir, data) = copy_of(base);
    damage(&data);
    verify(name, &data, opts, None).verdict
}

/// Damage done to a copy of a store, given its directory.
type Damage = Box<dyn FnOnce(&Path)>;

/// Flips a bit in every frame and in every header field of every segment of `base`, and cuts
/// every segment at every frame boundary and inside every frame.
fn sweep(label: &str, base: &Path, opts: &Options) -> HashMap<Verdict, usize> {
    let mut verdicts = HashMap::new();
    for segment in segments(base) {
        let name = file_name(&segment);
        let frames = frames(&segment);
        let mut damages: Vec<(String, Damage)> = Vec::new();
        for offset in [8, 12, 20, 28, 36, 40, 48, 55] {
            let name = name.clone();
            damages.push((
                format!("header byte {offset}"),
                Box::new(move |data: &Path| flip_bit(&data.join(&name), offset)),
            ));
        }
        for (k, frame) in frames.iter().enumerate() {
            for (what, offset) in [("length", frame.start), ("body", body_byte(frame))] {
                let name = name.clone();
                damages.push((
                    format!("{what} of frame {k}"),
                    Box::new(move |data: &Path| flip_bit(&data.join(&name), offset)),
                ));
            }
            for (what, len) in [("before", frame.start), ("inside", body_byte(frame))] {
                let name = name.clone();
                damages.push((
                    format!("cut {what} frame {k}"),
                    Box::new(move |data: &Path| truncate(&data.join(&name), len)),
                ));
            }
        }
        for (what, damage) in damages {
            let verdict = sweep_case(&format!("{label}: {name}: {what}"), base, opts, damage);
            *verdicts.entry(verdict).or_insert(0) += 1;
        }
    }
    verdicts
}

#[test]
fn sweep_a_closed_store() {
    let opts = small_segments(SyncPolicy::Never);
    let (_dir, base) = closed_store(opts.clone(), 60);
    let verdicts = sweep("closed", &base, &opts);
    assert!(verdicts.contains_key(&Verdict::Corrupt), "{verdicts:?}");
    assert!(verdicts.contains_key(&Verdict::Torn), "{verdicts:?}");
}

#[test]
fn sweep_a_crashed_synced_store() {
    let opts = small_segments(SyncPolicy::Always);
    let (_dir, base) = crashed_store(opts.clone(), 45);
    let verdicts = sweep("crashed", &base, &opts);
    assert!(verdicts.contains_key(&Verdict::Corrupt), "{verdicts:?}");
    assert!(verdicts.contains_key(&Verdict::Torn), "{verdicts:?}");
}

#[test]
fn sweep_a_store_written_by_the_command_line() {
    let opts = small_segments(SyncPolicy::Never);
    let (_dir, base) = reopened_store(opts.clone(), 14);
    let verdicts = sweep("reopened", &base, &opts);
    assert!(verdicts.contains_key(&Verdict::Corrupt), "{verdicts:?}");
}

#[test]
fn sweep_zeroed_sectors() {
    let opts = Options {
        sync: SyncPolicy::Never,
        segment_bytes: 2048,
        ..Options::default()
    };
    for (label, (_dir, base)) in [
        ("closed", closed_store(opts.clone(), 200)),
        ("crashed", crashed_store(opts.clone(), 200)),
    ] {
        for segment in segments(&base) {
            let name = file_name(&segment);
            let len = fs::metadata(&segment).unwrap().len() as usize;
            for start in (0..len).step_by(SECTOR) {
                sweep_case(
                    &format!("{label}: {name}: sector at {start}"),
                    &base,
                    &opts,
                    |data| zero(&data.join(&name), start..start + SECTOR),
                );
            }
        }
    }
}

#[test]
fn sweep_removed_and_misplaced_segments() {
    let opts = small_segments(SyncPolicy::Never);
    let (_dir, base, all) = sealed_base();
    for (index, segment) in all.iter().enumerate() {
        let name = file_name(segment);
        sweep_case(&format!("remove segment {index}"), &base, &opts, |data| {
            fs::remove_file(data.join(&name)).unwrap()
        });
        for (other_index, other) in all.iter().enumerate() {
            if other_index != index {
                sweep_case(
                    &format!("segment {other_index} copied over segment {index}"),
                    &base,
                    &opts,
                    |data| fs::copy(other, data.join(&name)).map(|_| ()).unwrap(),
                );
            }
        }
        for moved in [first_seq_of(segment) - 1, first_seq_of(segment) + 1] {
            if moved == 0 {
                continue;
            }
            let to = segment_name(moved);
            sweep_case(
                &format!("segment {index} renamed to {to}"),
                &base,
                &opts,
                |data| {
                    if !data.join(&to).exists() {
                        fs::rename(data.join(&name), data.join(&to)).unwrap()
                    }
                },
            );
            sweep_case(
                &format!("segment {index} copied to {to}"),
                &base,
                &opts,
                |data| {
                    if !data.join(&to).exists() {
                        fs::copy(data.join(&name), data.join(&to))
                            .map(|_| ())
                            .unwrap();
                    }
                },
            );
        }
    }
}

/// Sets a segment's format version field to `version`; with `rewrite_crc`, the header crc
/// (bytes 36..40, over 0..36) is computed again, as a commlog writing that version would.
fn set_version(path: &Path, version: u32, rewrite_crc: bool) {
    let mut bytes = fs::read(path).unwrap();
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    if rewrite_crc {
        let crc = crc32fast::hash(&bytes[0..36]);
        bytes[36..40].copy_from_slice(&crc.to_le_bytes());
    }
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_segment_of_a_newer_format_version_stops_the_audit_and_a_flipped_version_is_corruption() {
    let (_dir, sealed, all) = sealed_base();
    let (_newer_dir, newer) = copy_of(&sealed);
    set_version(&newer.join(file_name(&all[1])), 3, true);
    let before = snapshot(&newer);
    let (code, _, stderr) = run(&["audit", newer.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&file_name(&all[1])) && stderr.contains("format version 3"),
        "{stderr}"
    );
    assert_eq!(snapshot(&newer), before);
    // Every command that opens the store says the same, and no command calls it damage.
    let dir = newer.to_str().unwrap();
    for args in [
        vec!["--dir", dir, "info"],
        vec!["--dir", dir, "stats"],
        vec![
            "--dir",
            dir,
            "track",
            "sent",
            "--user",
            "5",
            "--channel",
            "sms",
            "--type",
            "x",
        ],
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&file_name(&all[1]))
                && stderr.contains("format version 3 is newer than this commlog reads")
                && !stderr.contains("corrupt"),
            "{args:?}: {stderr}"
        );
        assert_eq!(snapshot(&newer), before, "{args:?}");
    }

    // The same field with one bit flipped (2 → 3) in a header written by this commlog.
    let (_flipped_dir, flipped) = copy_of(&sealed);
    set_version(&flipped.join(file_name(&all[1])), 3, false);
    let audited = audit(&flipped, false).unwrap();
    assert_eq!(audited.verdict, Verdict::Corrupt);
    assert_eq!(
        (
            audited.findings[0].segment.as_str(),
            audited.findings[0].offset
        ),
        (file_name(&all[1]).as_str(), 0)
    );
    let (code, _, stderr) = run(&["audit", flipped.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
}

#[test]
fn a_segment_cut_inside_its_version_field_is_judged_not_a_panic() {
    let (_dir, sealed, all) = sealed_base();
    for len in 8..12 {
        // A sealed segment, and the last one, whose predecessor's seal names it.
        for index in [0, all.len() - 1] {
            let (_copy_dir, copy) = copy_of(&sealed);
            truncate(&copy.join(file_name(&all[index])), len);
            let audited = audit(&copy, false).unwrap();
            assert_eq!(
                audited.verdict,
                Verdict::Corrupt,
                "segment {index} cut to {len} bytes"
            );
            let (code, _, stderr) = run(&["audit", copy.to_str().unwrap()]);
            assert_eq!(code, 3, "{stderr}");
        }
    }
}
