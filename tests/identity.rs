//! A store's segments carry the id of their store (format version 2): a segment copied in from
//! another store is `Error::Corruption` naming it, even when its sequence numbers and message
//! ids continue the log exactly. A store whose first segment is of format version 1 (no store
//! id) keeps writing version 1 and opens with the same answers.
//!
//! A sealed version 2 segment names its successor in its header's seal slot, so deleting the
//! newest segments is `Error::Corruption` naming the first missing file, while a crash before
//! the seal (the successor held no event yet) opens clean.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use commlog::{Channel, CommunicationStats, Error, MessageId, Options, StatsFilter, Store};
use support::files::{segments, snapshot_without_lock};
use tempfile::TempDir;

/// Bytes of a format version 1 segment header.
const HEADER_V1_BYTES: usize = 32;
/// Bytes of a format version 2 segment header.
const HEADER_V2_BYTES: usize = 56;

fn small_segments() -> Options {
    Options {
        segment_bytes: 512,
        ..Options::default()
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap()
}

/// Tracks event `i` (0-based) of a fixed script: every second event sends a message to one of
/// three users, the next delivers it.
fn track_event(store: &Store, i: u64) {
    track_event_of_users(store, i, 1);
}

/// [`track_event`] with users numbered from `first_user`.
fn track_event_of_users(store: &Store, i: u64, first_user: u64) {
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

fn closed_store(data: &Path, events: std::ops::Range<u64>) {
    let store = Store::open_with(data, small_segments()).unwrap();
    for i in events {
        track_event(&store, i);
    }
    store.close().unwrap();
}

fn stats(store: &Store) -> CommunicationStats {
    store.get_communication_stats(&StatsFilter::new()).unwrap()
}

fn version_of(segment: &Path) -> u32 {
    let bytes = fs::read(segment).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

fn store_id_of(segment: &Path) -> u64 {
    let bytes = fs::read(segment).unwrap();
    assert_eq!(version_of(segment), 2);
    u64::from_le_bytes(bytes[28..36].try_into().unwrap())
}

/// Rewrites every segment of `data` as the code before store ids wrote it: the same frames
/// behind a format version 1 header (docs/FORMAT.md).
fn rewrite_as_version_1(data: &Path) {
    for segment in segments(data) {
        let bytes = fs::read(&segment).unwrap();
        assert_eq!(version_of(&segment), 2);
        let mut rewritten = Vec::with_capacity(bytes.len());
        rewritten.extend_from_slice(b"CMLOGSEG");
        rewritten.extend_from_slice(&1u32.to_le_bytes());
        rewritten.extend_from_slice(&bytes[12..28]);
        let crc = crc32fast::hash(&rewritten);
        rewritten.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(rewritten.len(), HEADER_V1_BYTES);
        rewritten.extend_from_slice(&bytes[HEADER_V2_BYTES..]);
        fs::write(&segment, rewritten).unwrap();
    }
}

#[test]
fn every_segment_of_a_new_store_carries_its_store_id_and_two_stores_differ() {
    let dir = TempDir::new().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    closed_store(&first, 0..60);
    closed_store(&second, 0..60);
    let first_segments = segments(&first);
    assert!(
        first_segments.len() >= 3,
        "{} segments",
        first_segments.len()
    );
    let first_id = store_id_of(&first_segments[0]);
    for segment in &first_segments {
        assert_eq!(store_id_of(segment), first_id, "{}", segment.display());
    }
    assert_ne!(store_id_of(&segments(&second)[0]), first_id);
}

#[test]
fn a_segment_from_another_store_with_matching_boundaries_is_corruption_naming_it() {
    let dir = TempDir::new().unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    closed_store(&ours, 0..60);
    // The other store holds other users' messages, at the same sequence numbers and ids.
    let other = Store::open_with(&theirs, small_segments()).unwrap();
    for i in 0..60 {
        track_event_of_users(&other, i, 101);
    }
    other.close().unwrap();
    let (our_segments, their_segments) = (segments(&ours), segments(&theirs));
    assert!(our_segments.len() >= 3, "{} segments", our_segments.len());

    for index in [1, our_segments.len() - 1] {
        let copy = dir.path().join(format!("copy{index}"));
        copy_store(&ours, &copy);
        let name = our_segments[index].file_name().unwrap();
        let foreign = their_segments
            .iter()
            .find(|segment| segment.file_name().unwrap() == name)
            .expect("the other store has a segment of the same name");
        let header = |path: &Path| fs::read(path).unwrap()[12..28].to_vec();
        assert_eq!(
            header(foreign),
            header(&our_segments[index]),
            "same boundaries"
        );
        fs::copy(foreign, copy.join(name)).unwrap();
        for (segment, offset, reason) in
            corruption_on_both_opens(&copy, &format!("segment {index}"))
        {
            assert_eq!(segment, copy.join(name), "{reason}");
            assert_eq!(offset, 28, "{reason}");
            assert!(reason.contains("belongs to another store"), "{reason}");
        }
    }
}

#[test]
fn a_version_1_segment_in_a_version_2_store_is_corruption_naming_it() {
    let dir = TempDir::new().unwrap();
    let (ours, old) = (dir.path().join("ours"), dir.path().join("old"));
    closed_store(&ours, 0..60);
    closed_store(&old, 0..60);
    rewrite_as_version_1(&old);
    let name = segments(&ours)[1].file_name().unwrap().to_owned();
    fs::copy(old.join(&name), ours.join(&name)).unwrap();
    let before = snapshot_without_lock(&ours);
    match Store::open_with(&ours, small_segments()) {
        Err(Error::Corruption {
            segment,
            offset,
            reason,
        }) => {
            assert_eq!((segment, offset), (ours.join(&name), 8), "{reason}");
            assert!(reason.contains("belongs to another store"), "{reason}");
        }
        other => panic!("expected Error::Corruption, got {:?}", other.map(|_| ())),
    }
    assert_eq!(snapshot_without_lock(&ours), before);
}

#[test]
fn a_store_of_format_version_1_opens_with_the_same_answers_and_keeps_writing_version_1() {
    let dir = TempDir::new().unwrap();
    let (reference, old) = (dir.path().join("reference"), dir.path().join("old"));
    closed_store(&reference, 0..40);
    closed_store(&old, 0..40);
    rewrite_as_version_1(&old);
    let old_segments = segments(&old);
    assert!(old_segments.len() >= 2, "{} segments", old_segments.len());

    let reference_store = Store::open_read_only(&reference).unwrap();
    let store = Store::open_with(&old, small_segments()).unwrap();
    assert_eq!(store.open_report(), reference_store.open_report());
    assert_eq!(stats(&store), stats(&reference_store));
    drop(reference_store);

    // Continued by this build: new segments are of version 1 too, and the answers stay those
    // of a store that held the same events from the start.
    for i in 40..100 {
        track_event(&store, i);
    }
    store.close().unwrap();
    closed_store(&reference, 40..100);
    let continued = segments(&old);
    assert!(continued.len() > old_segments.len() + 1);
    for segment in &continued {
        assert_eq!(version_of(segment), 1, "{}", segment.display());
    }
    let reopened = Store::open_with(&old, small_segments()).unwrap();
    let reference_store = Store::open_read_only(&reference).unwrap();
    // The segment counts may differ: a version 1 header is smaller, so its segments hold
    // more frames.
    let (report, reference_report) = (reopened.open_report(), reference_store.open_report());
    assert_eq!(
        (report.events, report.last_seq, report.truncated_bytes),
        (
            reference_report.events,
            reference_report.last_seq,
            reference_report.truncated_bytes
        )
    );
    assert_eq!(stats(&reopened), stats(&reference_store));
    assert_eq!(
        reopened
            .get_user_communication_history(1, usize::MAX)
            .unwrap(),
        reference_store
            .get_user_communication_history(1, usize::MAX)
            .unwrap()
    );
}

#[test]
fn the_version_1_golden_segment_opens_as_a_store() {
    let dir = TempDir::new().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/segment_v1.bin");
    fs::copy(&golden, dir.path().join(format!("{:020}.log", 1))).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    let report = store.open_report();
    assert_eq!((report.segments, report.events, report.last_seq), (1, 7, 7));
    assert_eq!(stats(&store).total_messages, 2);
}

/// Opens `dir` for writing, then read-only: each must fail with `Error::Corruption` and change
/// no file (`what` names the case). Returns each error's segment, offset and reason.
fn corruption_on_both_opens(dir: &Path, what: &str) -> Vec<(PathBuf, u64, String)> {
    let before = snapshot_without_lock(dir);
    let mut found = Vec::new();
    for read_only in [false, true] {
        let opened = if read_only {
            Store::open_read_only(dir)
        } else {
            Store::open_with(dir, small_segments())
        };
        match opened {
            Err(Error::Corruption {
                segment,
                offset,
                reason,
            }) => found.push((segment, offset, reason)),
            Err(other) => {
                panic!("{what}, read-only {read_only}: expected Error::Corruption, got {other:?}")
            }
            Ok(store) => panic!(
                "{what}, read-only {read_only}: expected Error::Corruption, but open succeeded: {:?}",
                store.open_report()
            ),
        }
        assert_eq!(
            snapshot_without_lock(dir),
            before,
            "{what}, read-only {read_only}: files changed"
        );
    }
    found
}

fn copy_store(data: &Path, copy: &Path) {
    fs::create_dir(copy).unwrap();
    for segment in segments(data) {
        fs::copy(&segment, copy.join(segment.file_name().unwrap())).unwrap();
    }
}

/// The seal slot of a format version 2 segment header (docs/FORMAT.md).
const SEAL_SLOT: std::ops::Range<usize> = 40..56;

fn first_seq_of(segment: &Path) -> u64 {
    let bytes = fs::read(segment).unwrap();
    u64::from_le_bytes(bytes[12..20].try_into().unwrap())
}

fn first_message_id_of(segment: &Path) -> u64 {
    let bytes = fs::read(segment).unwrap();
    u64::from_le_bytes(bytes[20..28].try_into().unwrap())
}

#[test]
fn deleting_the_newest_segments_is_corruption_naming_the_first_missing_file() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    closed_store(&data, 0..60);
    let all = segments(&data);
    assert!(all.len() >= 4, "{} segments", all.len());
    for deleted in [1, 2] {
        let copy = dir.path().join(format!("deleted{deleted}"));
        copy_store(&data, &copy);
        let kept = all.len() - deleted;
        for segment in &all[kept..] {
            fs::remove_file(copy.join(segment.file_name().unwrap())).unwrap();
        }
        let missing = copy.join(all[kept].file_name().unwrap());
        let sealed = all[kept - 1].file_name().unwrap().to_string_lossy();
        for (segment, offset, reason) in
            corruption_on_both_opens(&copy, &format!("{deleted} deleted"))
        {
            assert_eq!(segment, missing, "{reason}");
            assert_eq!(offset, SEAL_SLOT.start as u64, "{reason}");
            assert!(reason.contains("missing"), "{reason}");
            assert!(reason.contains(sealed.as_ref()), "{reason}");
        }
    }
}

#[test]
fn a_crash_between_creating_a_segment_and_sealing_its_predecessor_opens_clean() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    closed_store(&data, 0..60);
    let all = segments(&data);
    assert!(all.len() >= 3, "{} segments", all.len());
    let newest = all.last().unwrap();
    let (first_seq, first_message_id) = (first_seq_of(newest), first_message_id_of(newest));
    let header = fs::read(newest).unwrap()[..HEADER_V2_BYTES].to_vec();
    assert_eq!(
        header[SEAL_SLOT], [0; 16],
        "the newest segment is not sealed"
    );

    // With the new segment holding only its header, and with the crash before it was created.
    for with_new_segment in [true, false] {
        let copy = dir.path().join(format!("crashed{with_new_segment}"));
        copy_store(&data, &copy);
        let new_segment = copy.join(newest.file_name().unwrap());
        let predecessor = copy.join(all[all.len() - 2].file_name().unwrap());
        let mut bytes = fs::read(&predecessor).unwrap();
        assert_ne!(
            bytes[SEAL_SLOT], [0; 16],
            "a rollover seals the old segment"
        );
        assert_eq!(
            bytes[SEAL_SLOT.start..SEAL_SLOT.start + 8],
            first_seq.to_le_bytes()
        );
        bytes[SEAL_SLOT].fill(0);
        fs::write(&predecessor, bytes).unwrap();
        if with_new_segment {
            fs::write(&new_segment, &header).unwrap();
        } else {
            fs::remove_file(&new_segment).unwrap();
        }

        let store = Store::open_read_only(&copy).unwrap();
        let report = store.open_report();
        assert_eq!(
            (report.events, report.last_seq),
            (first_seq - 1, first_seq - 1)
        );
        assert_eq!(report.truncated_bytes, 0);
        drop(store);
        let store = Store::open_with(&copy, small_segments()).unwrap();
        assert_eq!(store.open_report().last_seq, first_seq - 1);
        // The log continues where it ends: the next message gets the next id.
        let sent = store
            .track_message_sent_at(7, Channel::Sms, "low_balance", 0.05, t0())
            .unwrap();
        assert_eq!(sent.id, MessageId(first_message_id));
        for i in 1..=40 {
            let sent = store
                .track_message_sent_at(7, Channel::Sms, "low_balance", 0.05, t0())
                .unwrap();
            assert_eq!(sent.id, MessageId(first_message_id + i));
        }
        store.close().unwrap();
        let reopened = Store::open_read_only(&copy).unwrap();
        assert_eq!(reopened.open_report().last_seq, first_seq + 40);
    }
}

#[test]
fn read_only_opens_racing_rollovers_find_no_missing_segment() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(
        &data,
        Options {
            sync: commlog::SyncPolicy::Never,
            ..small_segments()
        },
    )
    .unwrap();
    track_event(&store, 0);
    store.sync().unwrap();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for i in 1..3000 {
                track_event(&store, i);
            }
        });
        let mut opens = 0;
        while !writer.is_finished() || opens < 20 {
            match Store::open_read_only(&data) {
                Ok(_) => {}
                Err(Error::Corruption {
                    segment, reason, ..
                }) => {
                    panic!("open {opens}: {}: {reason}", segment.display())
                }
                Err(other) => panic!("open {opens}: {other:?}"),
            }
            opens += 1;
        }
    });
    store.close().unwrap();
}

/// Flips one bit at `offset` of `segment`.
fn flip_bit(segment: &Path, offset: usize, bit: u8) {
    let mut bytes = fs::read(segment).unwrap();
    bytes[offset] ^= 1 << bit;
    fs::write(segment, bytes).unwrap();
}

#[test]
fn a_flipped_bit_in_any_seal_slot_is_corruption_naming_the_segment() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    closed_store(&data, 0..40);
    let all = segments(&data);
    assert!(all.len() >= 3, "{} segments", all.len());
    // A sealed segment's seal, and the zeros of the last segment's slot.
    for (index, offset, bit) in [
        (0, SEAL_SLOT.start, 0),
        (1, SEAL_SLOT.start + 9, 3),
        (1, SEAL_SLOT.end - 1, 7),
        (all.len() - 1, SEAL_SLOT.start + 2, 1),
        (all.len() - 1, SEAL_SLOT.end - 3, 5),
    ] {
        let copy = dir.path().join(format!("flip-{index}-{offset}-{bit}"));
        copy_store(&data, &copy);
        let segment = copy.join(all[index].file_name().unwrap());
        flip_bit(&segment, offset, bit);
        let what = format!("segment {index}, offset {offset}, bit {bit}");
        for (path, error_offset, reason) in corruption_on_both_opens(&copy, &what) {
            assert_eq!(
                (path.as_path(), error_offset),
                (segment.as_path(), 40),
                "{what}"
            );
            assert!(reason.contains("seal slot"), "{what}: {reason}");
        }
    }
}

#[test]
fn a_rollover_cut_short_before_the_seal_is_finished_by_the_next_writer() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    closed_store(&data, 0..40);
    let all = segments(&data);
    let last = all.last().unwrap();
    // A crash right after the successor was created: it holds only its header, and its
    // predecessor's seal was never written.
    let predecessor = &all[all.len() - 2];
    let header_only = {
        let bytes = fs::read(last).unwrap();
        let mut header = bytes[..HEADER_V2_BYTES].to_vec();
        header[SEAL_SLOT].fill(0);
        header
    };
    fs::write(last, &header_only).unwrap();
    let mut unsealed = fs::read(predecessor).unwrap();
    unsealed[SEAL_SLOT].fill(0);
    fs::write(predecessor, &unsealed).unwrap();

    let before = {
        let store = Store::open_read_only(&data).unwrap();
        assert_eq!(store.open_report().truncated_bytes, 0);
        stats(&store)
    };
    let store = Store::open_with(&data, small_segments()).unwrap();
    assert_eq!(stats(&store), before);
    let events = store.open_report().events;
    for i in events..events + 30 {
        track_event(&store, i);
    }
    store.close().unwrap();
    let sealed = fs::read(predecessor).unwrap();
    assert_ne!(
        sealed[SEAL_SLOT], [0; 16],
        "the writer sealed the predecessor"
    );
    let store = Store::open_read_only(&data).unwrap();
    assert_eq!(store.open_report().events, events + 30);
}

#[test]
fn audit_judges_the_segment_a_rollover_cut_short_left_as_a_writer_s_open_does() {
    use commlog::audit::{Verdict, audit};
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    closed_store(&data, 0..40);
    let all = segments(&data);
    let (last, predecessor) = (all.last().unwrap(), &all[all.len() - 2]);
    let header = {
        let mut header = fs::read(last).unwrap()[..HEADER_V2_BYTES].to_vec();
        header[SEAL_SLOT].fill(0);
        header
    };
    // The same header naming another store, its checksum (bytes 36..40) made again.
    let foreign = {
        let mut header = header.clone();
        header[28..36].copy_from_slice(&0xdead_beef_u64.to_le_bytes());
        let crc = crc32fast::hash(&header[..36]);
        header[36..40].copy_from_slice(&crc.to_le_bytes());
        header
    };
    // A crash after the successor was created, before its predecessor was sealed: the
    // successor's header whole (nothing to do but finish the rollover), cut short (a torn
    // header, which a writer quarantines), or another store's (which every writer refuses).
    for (case, successor, verdict) in [
        ("whole", header.clone(), Verdict::Clean),
        ("torn", header[..20].to_vec(), Verdict::Torn),
        ("foreign", foreign, Verdict::Corrupt),
    ] {
        let copy = dir.path().join(case);
        copy_store(&data, &copy);
        let mut unsealed = fs::read(predecessor).unwrap();
        unsealed[SEAL_SLOT].fill(0);
        fs::write(copy.join(predecessor.file_name().unwrap()), &unsealed).unwrap();
        let successor_path = copy.join(last.file_name().unwrap());
        fs::write(&successor_path, &successor).unwrap();

        let audited = audit(&copy, false).unwrap();
        assert_eq!(audited.verdict, verdict, "{case}: {:?}", audited.findings);
        let opened = Store::open_with(&copy, small_segments());
        match verdict {
            Verdict::Clean => {
                assert!(
                    audited.findings.is_empty(),
                    "{case}: {:?}",
                    audited.findings
                );
                assert_eq!(opened.unwrap().open_report().quarantined, None, "{case}");
            }
            Verdict::Torn => {
                let finding = &audited.findings[0];
                assert_eq!(finding.segment, last.file_name().unwrap().to_string_lossy());
                assert!(
                    opened.unwrap().open_report().quarantined.is_some(),
                    "{case}"
                );
            }
            Verdict::Corrupt => {
                let finding = &audited.findings[0];
                assert_eq!(finding.segment, last.file_name().unwrap().to_string_lossy());
                match opened.map(drop) {
                    Err(Error::Corruption { segment, .. }) => {
                        assert_eq!(segment, successor_path, "{case}")
                    }
                    other => panic!("{case}: expected Corruption, got {other:?}"),
                }
            }
        }
    }
}

#[test]
fn audit_blames_only_a_damaged_sealed_segment_and_counts_its_frames_durable() {
    use commlog::audit::{Verdict, audit};
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    closed_store(&data, 0..60);
    let all = segments(&data);
    assert!(all.len() >= 4, "{} segments", all.len());
    let name = |path: &Path| path.file_name().unwrap().to_string_lossy().into_owned();
    let flip_last_frame = |segment: &Path| {
        let len = fs::metadata(segment).unwrap().len() as usize;
        flip_bit(segment, len - 3, 0);
    };

    // The last frame of a sealed segment damaged: that segment alone is named, not the whole
    // one after it.
    let copy = dir.path().join("middle");
    copy_store(&data, &copy);
    let damaged = copy.join(all[1].file_name().unwrap());
    flip_last_frame(&damaged);
    let audited = audit(&copy, false).unwrap();
    assert_eq!(audited.verdict, Verdict::Corrupt);
    let blamed: Vec<_> = audited
        .findings
        .iter()
        .map(|f| (f.kind.as_str(), f.segment.clone()))
        .collect();
    assert_eq!(blamed, [("frame", name(&damaged))]);

    // The newest segment lost: the sealed one before it was synced whole, so its end is
    // durable, and damage in it is corruption, never a torn tail.
    let copy = dir.path().join("lost");
    copy_store(&data, &copy);
    fs::remove_file(copy.join(all.last().unwrap().file_name().unwrap())).unwrap();
    let audited = audit(&copy, false).unwrap();
    assert_eq!(
        audited.durable_seq, audited.last_seq,
        "{:?}",
        audited.findings
    );
    let sealed_last = copy.join(all[all.len() - 2].file_name().unwrap());
    flip_last_frame(&sealed_last);
    let audited = audit(&copy, false).unwrap();
    assert_eq!(audited.verdict, Verdict::Corrupt);
    let kinds: Vec<_> = audited.findings.iter().map(|f| f.kind.as_str()).collect();
    assert!(
        kinds.contains(&"frame") && !kinds.contains(&"torn_tail"),
        "{kinds:?}"
    );
    assert_eq!(
        audited.durable_seq, audited.last_seq,
        "{:?}",
        audited.findings
    );
}
