//! Recovery is decided exactly: bytes that were never provably durable (a torn tail, a garbled
//! unsynced frame, a half-made segment) are copied byte for byte to `quarantine/` and cut off;
//! damage to bytes that were provably durable (later frames, a close marker or a later segment
//! prove it) is `Error::Corruption`, and the failed open changes nothing on disk.
//!
//! A "crash" here is a copy of the store's directory taken after `flush()` while the store is
//! still open: exactly the files a killed process would leave, without the close marker.

mod support;

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use commlog::audit::audit_segment;
use commlog::{
    Channel, CommunicationStats, Error, Message, OpenReport, Options, StatsFilter, Store,
    SyncPolicy,
};
use support::files::{assert_mode, segments, snapshot};
use support::script::track_scripted_event;
use tempfile::TempDir;

/// Bytes of the fixed segment header of a store created by this build (format version 2).
const HEADER_BYTES: usize = 56;
/// Bytes in front of every frame body: u16 length, u32 crc32.
const FRAME_PREFIX_BYTES: usize = 6;
/// Users of the script in [`track_event`].
const USERS: u64 = 4;

fn options(sync: SyncPolicy) -> Options {
    Options {
        sync,
        ..Options::default()
    }
}

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

/// Tracks event `i` of the script from [`t0`] over [`USERS`] users.
fn track_event(store: &Store, i: u64) {
    track_scripted_event(store, i, t0(), USERS);
}

fn track_events(store: &Store, events: Range<u64>) {
    for i in events {
        track_event(store, i);
    }
}

/// Everything a reader can ask the store.
#[derive(Debug, PartialEq)]
struct Views {
    all: CommunicationStats,
    per_user: Vec<CommunicationStats>,
    per_channel: Vec<CommunicationStats>,
    histories: Vec<Vec<Message>>,
}

fn views(store: &Store) -> Views {
    let stats = |filter: StatsFilter| store.get_communication_stats(&filter).unwrap();
    Views {
        all: stats(StatsFilter::new()),
        per_user: (1..=USERS)
            .map(|user| stats(StatsFilter::new().user(user)))
            .collect(),
        per_channel: [Channel::Sms, Channel::Email, Channel::Push, Channel::InApp]
            .into_iter()
            .map(|channel| stats(StatsFilter::new().channel(channel)))
            .collect(),
        histories: (1..=USERS)
            .map(|user| {
                store
                    .get_user_communication_history(user, usize::MAX)
                    .unwrap()
            })
            .collect(),
    }
}

/// The views of a store that holds exactly the first `events` events of the script.
fn reference_views(events: u64) -> Views {
    let dir = TempDir::new().unwrap();
    let store = Store::open_with(dir.path(), options(SyncPolicy::Never)).unwrap();
    track_events(&store, 0..events);
    views(&store)
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

/// The files a crash would leave: `events` events tracked under `opts`, flushed, and the
/// directory copied while the store is still open (so no close marker).
fn crashed_store(opts: Options, events: u64) -> (TempDir, PathBuf) {
    let original = TempDir::new().unwrap();
    let data = original.path().join("data");
    let store = Store::open_with(&data, opts).unwrap();
    track_events(&store, 0..events);
    store.flush().unwrap();
    let copy = copy_of(&data);
    store.close().unwrap();
    copy
}

/// A store of `events` events under `opts`, closed cleanly.
fn closed_store(opts: Options, events: u64) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_with(&data, opts).unwrap();
    track_events(&store, 0..events);
    store.close().unwrap();
    (dir, data)
}

fn last_segment(data: &Path) -> PathBuf {
    segments(data).pop().expect("a segment")
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

/// The byte range of every frame in a whole segment (close markers included), walked by the
/// length prefix and cross-checked against `audit_segment`.
fn frames(path: &Path) -> Vec<Range<usize>> {
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
    let audit = audit_segment(path, &bytes, |_| {}).unwrap();
    assert_eq!(audit.frames, ranges.len() as u64);
    assert_eq!(audit.end_offset, offset as u64);
    assert_eq!(audit.torn_offset, None);
    ranges
}

/// A byte in the middle of the frame's body: a bit flipped there fails its crc32.
fn body_byte(frame: &Range<usize>) -> usize {
    frame.start + FRAME_PREFIX_BYTES + (frame.len() - FRAME_PREFIX_BYTES) / 2
}

fn flip_bit(path: &Path, offset: usize, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 1 << bit;
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

/// The header a segment of store `store_id` starting at `first_seq` / `first_message_id` has
/// (docs/FORMAT.md, format version 2).
fn segment_header(first_seq: u64, first_message_id: u64, store_id: u64) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(b"CMLOGSEG");
    header[8..12].copy_from_slice(&2u32.to_le_bytes());
    header[12..20].copy_from_slice(&first_seq.to_le_bytes());
    header[20..28].copy_from_slice(&first_message_id.to_le_bytes());
    header[28..36].copy_from_slice(&store_id.to_le_bytes());
    let crc = crc32fast::hash(&header[0..36]);
    header[36..40].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The store id in the header of the store's first segment.
fn store_id_of(data: &Path) -> u64 {
    let bytes = fs::read(&segments(data)[0]).unwrap();
    u64::from_le_bytes(bytes[28..36].try_into().unwrap())
}

/// Opens `data` for writing, expecting corruption; returns what the error names.
fn open_expecting_corruption(data: &Path, opts: Options) -> (PathBuf, u64, String) {
    match Store::open_with(data, opts) {
        Err(Error::Corruption {
            segment,
            offset,
            reason,
        }) => (segment, offset, reason),
        Err(other) => panic!("expected Error::Corruption, got {other:?}"),
        Ok(store) => panic!(
            "expected Error::Corruption, but open succeeded: {:?}",
            store.open_report()
        ),
    }
}

fn clean_report(store: &Store, segments: u64, events: u64) {
    assert_eq!(
        store.open_report(),
        OpenReport {
            segments,
            events,
            last_seq: events,
            truncated_bytes: 0,
            quarantined: None,
            ..OpenReport::default()
        },
        "{}",
        store.dir().display()
    );
}

#[test]
fn a_cut_anywhere_inside_the_last_frame_loses_exactly_that_event_and_quarantines_its_bytes() {
    cut_inside_the_last_frame(options(SyncPolicy::Never), 8);
}

#[test]
fn a_cut_inside_the_last_frame_of_the_last_of_many_segments_loses_exactly_that_event() {
    cut_inside_the_last_frame(small_segments(SyncPolicy::Never), 60);
}

/// Cuts the crashed store's last segment at every byte inside its last frame.
fn cut_inside_the_last_frame(opts: Options, events: u64) {
    let (_crash_dir, crashed) = crashed_store(opts.clone(), events);
    let segment_count = segments(&crashed).len() as u64;
    let segment = last_segment(&crashed);
    let original = fs::read(&segment).unwrap();
    let frames = frames(&segment);
    let last = frames.last().expect("a frame in the last segment").clone();
    let without_last = reference_views(events - 1);

    for kept in 0..last.len() {
        let (_dir, data) = copy_of(&crashed);
        let segment = data.join(file_name(&segment));
        truncate(&segment, last.start + kept);
        let store = Store::open_with(&data, opts.clone()).unwrap();
        let report = store.open_report();
        assert_eq!(
            report.events,
            events - 1,
            "kept {kept} bytes of the last frame"
        );
        assert_eq!(
            report.segments, segment_count,
            "kept {kept} bytes of the last frame"
        );
        assert_eq!(
            views(&store),
            without_last,
            "kept {kept} bytes of the last frame"
        );
        if kept == 0 {
            // The file ends on a frame boundary: nothing is torn.
            assert_eq!(report.truncated_bytes, 0);
            assert_eq!(report.quarantined, None);
        } else {
            assert_eq!(
                report.truncated_bytes, kept as u64,
                "kept {kept} bytes of the last frame"
            );
            let expected = data.join("quarantine").join(format!(
                "{}.{}.tail",
                file_name(&segment),
                last.start
            ));
            assert_eq!(report.quarantined.as_deref(), Some(expected.as_path()));
            assert_eq!(
                fs::read(&expected).unwrap(),
                &original[last.start..last.start + kept]
            );
            assert_mode(&data.join("quarantine"), 0o700);
            assert_mode(&expected, 0o600);
        }
        assert_eq!(
            fs::read(&segment).unwrap(),
            &original[..last.start],
            "the segment is cut at the frame"
        );
        drop(store);

        let reopened = Store::open_with(&data, opts.clone()).unwrap();
        clean_report(&reopened, segment_count, events - 1);
        assert_eq!(views(&reopened), without_last);
    }
}

#[test]
fn a_store_keeps_appending_after_its_torn_tail_is_cut() {
    const EVENTS: u64 = 8;
    let (_crash_dir, data) = crashed_store(options(SyncPolicy::Never), EVENTS);
    let segment = last_segment(&data);
    let last = frames(&segment).pop().unwrap();
    truncate(&segment, last.start + 3);

    let store = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
    assert_eq!(store.open_report().truncated_bytes, 3);
    // The lost event is tracked again, and more after it.
    track_events(&store, EVENTS - 1..EVENTS + 4);
    store.close().unwrap();

    let reopened = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
    clean_report(&reopened, 1, EVENTS + 4);
    assert_eq!(views(&reopened), reference_views(EVENTS + 4));
}

#[test]
fn a_garbled_unsynced_frame_ends_the_log_and_everything_from_it_is_quarantined() {
    const EVENTS: u64 = 8;
    let (_crash_dir, crashed) = crashed_store(options(SyncPolicy::Never), EVENTS);
    let segment = last_segment(&crashed);
    let frames = frames(&segment);
    assert_eq!(frames.len() as u64, EVENTS);

    for (k, frame) in frames.iter().enumerate() {
        let (_dir, data) = copy_of(&crashed);
        let segment = data.join(file_name(&segment));
        flip_bit(&segment, body_byte(frame), 3);
        let garbled = fs::read(&segment).unwrap();

        let store = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
        let report = store.open_report();
        assert_eq!(report.events, k as u64, "frame {k} garbled");
        assert_eq!(
            views(&store),
            reference_views(k as u64),
            "frame {k} garbled"
        );
        assert_eq!(
            report.truncated_bytes,
            (garbled.len() - frame.start) as u64,
            "frame {k} garbled"
        );
        let expected =
            data.join("quarantine")
                .join(format!("{}.{}.tail", file_name(&segment), frame.start));
        assert_eq!(
            report.quarantined.as_deref(),
            Some(expected.as_path()),
            "frame {k} garbled"
        );
        assert_eq!(
            fs::read(&expected).unwrap(),
            &garbled[frame.start..],
            "frame {k} garbled"
        );
        assert_eq!(
            fs::read(&segment).unwrap(),
            &garbled[..frame.start],
            "frame {k} garbled"
        );
    }
}

#[test]
fn a_bit_flip_in_a_frame_that_later_frames_prove_durable_is_corruption_and_changes_nothing() {
    const EVENTS: u64 = 6;
    let (_crash_dir, crashed) = crashed_store(options(SyncPolicy::Always), EVENTS);
    let segment = last_segment(&crashed);
    let frames = frames(&segment);
    assert_eq!(frames.len() as u64, EVENTS);

    // Every frame but the last has a later frame recording it as durable.
    for (k, frame) in frames[..frames.len() - 1].iter().enumerate() {
        for offset in [frame.start + 2, body_byte(frame), frame.end - 1] {
            let (_dir, data) = copy_of(&crashed);
            let segment = data.join(file_name(&segment));
            flip_bit(&segment, offset, 0);
            let before = snapshot(&data);
            let (named, at, reason) = open_expecting_corruption(&data, options(SyncPolicy::Always));
            assert_eq!(named, segment, "frame {k}, byte {offset}: {reason}");
            assert_eq!(at, frame.start as u64, "frame {k}, byte {offset}: {reason}");
            assert_eq!(
                snapshot(&data),
                before,
                "frame {k}, byte {offset}: files changed"
            );
            assert!(!data.join("quarantine").exists());
        }
    }
}

#[test]
fn a_bit_flip_in_the_last_frame_after_a_clean_close_is_corruption_and_changes_nothing() {
    const EVENTS: u64 = 6;
    let (_dir, data) = closed_store(options(SyncPolicy::Never), EVENTS);
    let segment = last_segment(&data);
    let frames = frames(&segment);
    assert_eq!(
        frames.len() as u64,
        EVENTS + 1,
        "events and the close marker"
    );
    let last_event = &frames[EVENTS as usize - 1];
    flip_bit(&segment, body_byte(last_event), 7);
    let before = snapshot(&data);

    let (named, at, reason) = open_expecting_corruption(&data, options(SyncPolicy::Never));
    assert_eq!(named, segment, "{reason}");
    assert_eq!(at, last_event.start as u64, "{reason}");
    assert_eq!(snapshot(&data), before);
    assert!(!data.join("quarantine").exists());
}

#[test]
fn a_bit_flip_in_a_sealed_segment_is_corruption_naming_it_and_changes_nothing() {
    let (_dir, closed) = closed_store(small_segments(SyncPolicy::Never), 90);
    let all = segments(&closed);
    assert!(all.len() >= 3, "{} segments", all.len());
    let first = &all[0];
    let frames = frames(first);
    assert!(frames.len() >= 2);

    for (k, frame) in frames.iter().enumerate() {
        let (_copy_dir, data) = copy_of(&closed);
        let segment = data.join(file_name(first));
        flip_bit(&segment, body_byte(frame), 5);
        let before = snapshot(&data);
        let (named, at, reason) =
            open_expecting_corruption(&data, small_segments(SyncPolicy::Never));
        assert_eq!(named, segment, "frame {k}: {reason}");
        assert_eq!(at, frame.start as u64, "frame {k}: {reason}");
        assert_eq!(snapshot(&data), before, "frame {k}: files changed");
    }

    // A damaged header of a sealed segment is corruption at offset 0.
    let (_copy_dir, data) = copy_of(&closed);
    let segment = data.join(file_name(first));
    flip_bit(&segment, 14, 1);
    let before = snapshot(&data);
    let (named, at, reason) = open_expecting_corruption(&data, small_segments(SyncPolicy::Never));
    assert_eq!((named, at), (segment, 0), "{reason}");
    assert_eq!(snapshot(&data), before);
}

#[test]
fn a_sealed_segment_cut_or_zeroed_at_a_frame_boundary_is_corruption_naming_it() {
    let (_dir, closed) = closed_store(small_segments(SyncPolicy::Never), 90);
    let all = segments(&closed);
    assert!(all.len() >= 3, "{} segments", all.len());
    let middle = &all[1];
    let frames = frames(middle);
    assert!(frames.len() >= 2);

    for (k, frame) in frames.iter().enumerate() {
        let boundary = frame.start;
        let (_cut_dir, cut) = copy_of(&closed);
        let segment = cut.join(file_name(middle));
        truncate(&segment, boundary);
        let before = snapshot(&cut);
        let (named, at, reason) =
            open_expecting_corruption(&cut, small_segments(SyncPolicy::Never));
        assert_eq!(named, segment, "cut before frame {k}: {reason}");
        assert_eq!(at, boundary as u64, "cut before frame {k}: {reason}");
        assert_eq!(
            snapshot(&cut),
            before,
            "cut before frame {k}: files changed"
        );

        let (_zeroed_dir, zeroed) = copy_of(&closed);
        let segment = zeroed.join(file_name(middle));
        let mut bytes = fs::read(&segment).unwrap();
        bytes[boundary..].fill(0);
        fs::write(&segment, bytes).unwrap();
        let before = snapshot(&zeroed);
        let (named, at, reason) =
            open_expecting_corruption(&zeroed, small_segments(SyncPolicy::Never));
        assert_eq!(named, segment, "zeros from frame {k}: {reason}");
        assert_eq!(at, boundary as u64, "zeros from frame {k}: {reason}");
        assert_eq!(
            snapshot(&zeroed),
            before,
            "zeros from frame {k}: files changed"
        );
    }
}

#[test]
fn a_last_segment_with_an_incomplete_header_is_quarantined_whole() {
    const EVENTS: u64 = 9;
    let (_dir, closed) = closed_store(options(SyncPolicy::Never), EVENTS);
    // Sanity check of the hand-made header against a real one.
    assert_eq!(
        fs::read(last_segment(&closed)).unwrap()[..HEADER_BYTES],
        segment_header(1, 1, store_id_of(&closed))
    );
    let next_name = format!("{:020}.log", EVENTS + 1);
    let header = segment_header(EVENTS + 1, EVENTS / 3 + 1, store_id_of(&closed));
    let expected_views = reference_views(EVENTS);

    for len in 0..HEADER_BYTES {
        let (_copy_dir, data) = copy_of(&closed);
        let half_made = data.join(&next_name);
        fs::write(&half_made, &header[..len]).unwrap();

        let store = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
        let report = store.open_report();
        assert_eq!(
            (report.segments, report.events),
            (1, EVENTS),
            "{len} header bytes"
        );
        assert_eq!(report.truncated_bytes, len as u64, "{len} header bytes");
        let expected = data.join("quarantine").join(format!("{next_name}.0.tail"));
        if len > 0 || report.quarantined.is_some() {
            assert_eq!(
                report.quarantined.as_deref(),
                Some(expected.as_path()),
                "{len} header bytes"
            );
            assert_eq!(
                fs::read(&expected).unwrap(),
                &header[..len],
                "{len} header bytes"
            );
        }
        assert!(
            !half_made.exists(),
            "{len} header bytes: the half-made segment is gone"
        );
        assert_eq!(views(&store), expected_views, "{len} header bytes");

        track_events(&store, EVENTS..EVENTS + 2);
        store.close().unwrap();
        let reopened = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
        assert_eq!(reopened.open_report().events, EVENTS + 2);
        assert_eq!(reopened.open_report().truncated_bytes, 0);
        assert_eq!(views(&reopened), reference_views(EVENTS + 2));
    }
}

#[test]
fn a_last_segment_whose_header_fails_its_checksum_with_no_frame_after_it_is_quarantined_whole() {
    const EVENTS: u64 = 9;
    let (_dir, data) = closed_store(options(SyncPolicy::Never), EVENTS);
    let next_name = format!("{:020}.log", EVENTS + 1);
    let mut header = segment_header(EVENTS + 1, EVENTS / 3 + 1, store_id_of(&data));
    header[29] ^= 0x10;
    fs::write(data.join(&next_name), header).unwrap();

    let store = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
    let report = store.open_report();
    assert_eq!(
        (report.segments, report.events, report.truncated_bytes),
        (1, EVENTS, HEADER_BYTES as u64)
    );
    let expected = data.join("quarantine").join(format!("{next_name}.0.tail"));
    assert_eq!(report.quarantined.as_deref(), Some(expected.as_path()));
    assert_eq!(fs::read(&expected).unwrap(), header);
    assert!(!data.join(&next_name).exists());
}

#[test]
fn a_last_segment_whose_bad_header_a_frame_proves_durable_is_corruption_at_offset_zero() {
    let original = TempDir::new().unwrap();
    let data = original.path().join("data");
    let store = Store::open_with(&data, small_segments(SyncPolicy::Always)).unwrap();
    // Under Always the second frame of a segment records the first as durable, and so the
    // header before it.
    let mut events = 0;
    while segments(&data).len() < 3 {
        track_event(&store, events);
        events += 1;
    }
    track_event(&store, events);
    let (_crash_dir, crashed) = copy_of(&data);
    store.close().unwrap();
    let segment = last_segment(&crashed);
    assert!(frames(&segment).len() >= 2);

    for offset in [0, 13, 21, 29] {
        let (_copy_dir, copy) = copy_of(&crashed);
        let segment = copy.join(file_name(&segment));
        flip_bit(&segment, offset, 2);
        let before = snapshot(&copy);
        let (named, at, reason) =
            open_expecting_corruption(&copy, small_segments(SyncPolicy::Always));
        assert_eq!((named, at), (segment, 0), "header byte {offset}: {reason}");
        assert_eq!(
            snapshot(&copy),
            before,
            "header byte {offset}: files changed"
        );
    }
}

#[test]
fn a_bad_header_with_a_valid_frame_behind_it_is_corruption_even_when_no_frame_proves_it_durable() {
    // Under Never no frame of a store's first session records anything as durable; a header
    // is fsynced before any frame goes behind it all the same, so a frame behind it proves it.
    const EVENTS: u64 = 300;
    for closed in [false, true] {
        let (_dir, data) = if closed {
            closed_store(options(SyncPolicy::Never), EVENTS)
        } else {
            crashed_store(options(SyncPolicy::Never), EVENTS)
        };
        assert_eq!(segments(&data).len(), 1);
        let segment = last_segment(&data);
        assert!(frames(&segment).len() as u64 >= EVENTS);

        for offset in [0, 8, 13, 21, 29] {
            let (_copy_dir, copy) = copy_of(&data);
            let segment = copy.join(file_name(&segment));
            flip_bit(&segment, offset, 0);
            let before = snapshot(&copy);
            let (named, at, reason) = open_expecting_corruption(&copy, options(SyncPolicy::Never));
            assert_eq!(
                named, segment,
                "closed {closed}, header byte {offset}: {reason}"
            );
            assert!(
                at < HEADER_BYTES as u64,
                "closed {closed}, header byte {offset}: offset {at}: {reason}"
            );
            assert_eq!(
                snapshot(&copy),
                before,
                "closed {closed}, header byte {offset}: files changed"
            );

            match Store::open_read_only(&copy) {
                Err(Error::Corruption {
                    segment: named,
                    offset: at,
                    reason,
                }) => {
                    assert_eq!(named, segment, "read-only, header byte {offset}: {reason}");
                    assert!(at < HEADER_BYTES as u64, "read-only: offset {at}: {reason}");
                }
                Err(other) => panic!("expected Error::Corruption, got {other:?}"),
                Ok(store) => panic!(
                    "expected Error::Corruption, but the read-only open succeeded: {:?}",
                    store.open_report()
                ),
            }
            assert_eq!(snapshot(&copy), before, "read-only, header byte {offset}");
        }
    }
}

#[test]
fn a_lone_segment_with_a_bad_header_and_no_frame_behind_it_is_quarantined_whole() {
    let name = format!("{:020}.log", 1);
    let mut header = segment_header(1, 1, 0x5eed).to_vec();
    header[13] ^= 1;
    // Nothing behind the header, or zeros (a file extended without its data).
    for zeros in [0, 4096] {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(&data).unwrap();
        let mut bytes = header.clone();
        bytes.resize(HEADER_BYTES + zeros, 0);
        fs::write(data.join(&name), &bytes).unwrap();

        let store = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
        let report = store.open_report();
        assert_eq!(
            (report.segments, report.events, report.truncated_bytes),
            (0, 0, bytes.len() as u64),
            "{zeros} zeros"
        );
        let expected = data.join("quarantine").join(format!("{name}.0.tail"));
        assert_eq!(report.quarantined.as_deref(), Some(expected.as_path()));
        assert_eq!(fs::read(&expected).unwrap(), bytes, "{zeros} zeros");
        track_events(&store, 0..4);
        store.close().unwrap();
        let reopened = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
        clean_report(&reopened, 1, 4);
        assert_eq!(views(&reopened), reference_views(4), "{zeros} zeros");
    }
}

#[test]
fn zero_bytes_after_the_last_frame_are_simply_the_end_of_the_log() {
    const EVENTS: u64 = 7;
    for closed in [false, true] {
        let (_dir, data) = if closed {
            closed_store(options(SyncPolicy::Never), EVENTS)
        } else {
            crashed_store(options(SyncPolicy::Never), EVENTS)
        };
        let segment = last_segment(&data);
        let mut bytes = fs::read(&segment).unwrap();
        bytes.extend_from_slice(&[0u8; 4096]);
        fs::write(&segment, bytes).unwrap();

        let store = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
        clean_report(&store, 1, EVENTS);
        assert_eq!(views(&store), reference_views(EVENTS), "closed: {closed}");
        assert!(!data.join("quarantine").exists(), "closed: {closed}");

        track_events(&store, EVENTS..EVENTS + 5);
        store.close().unwrap();
        let reopened = Store::open_with(&data, options(SyncPolicy::Never)).unwrap();
        clean_report(&reopened, 1, EVENTS + 5);
        assert_eq!(
            views(&reopened),
            reference_views(EVENTS + 5),
            "closed: {closed}"
        );
        assert!(!data.join("quarantine").exists(), "closed: {closed}");
        // The zeros made room for the new frames: nothing but frames follows the header.
        frames(&last_segment(&data));
    }
}

#[test]
fn a_read_only_open_reports_a_torn_tail_but_changes_no_file() {
    const EVENTS: u64 = 8;
    let (_crash_dir, data) = crashed_store(options(SyncPolicy::Never), EVENTS);
    let segment = last_segment(&data);
    let last = frames(&segment).pop().unwrap();
    let kept = last.len() / 2;
    truncate(&segment, last.start + kept);
    let before = snapshot(&data);

    let store = Store::open_read_only(&data).unwrap();
    let report = store.open_report();
    assert_eq!(report.events, EVENTS - 1);
    assert_eq!(report.truncated_bytes, kept as u64);
    assert_eq!(report.quarantined, None);
    assert_eq!(views(&store), reference_views(EVENTS - 1));
    assert!(matches!(
        store.track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, t0()),
        Err(Error::ReadOnly { .. })
    ));
    drop(store);
    assert_eq!(snapshot(&data), before);
}

#[test]
fn an_empty_last_segment_is_removed_by_a_writer_and_leaves_no_empty_quarantine_file() {
    let opts = small_segments(SyncPolicy::Always);
    let (_dir, data) = closed_store(opts.clone(), 40);
    let all = segments(&data);
    assert!(all.len() >= 2, "{} segments", all.len());
    // A crash right after creating the newest segment's file, before its header was written
    // (the seal naming it comes later, so its predecessor is not sealed).
    let last = all.last().unwrap();
    truncate(last, 0);
    let predecessor = &all[all.len() - 2];
    let mut bytes = fs::read(predecessor).unwrap();
    bytes[40..56].fill(0);
    fs::write(predecessor, bytes).unwrap();
    let reference = Store::open_read_only(&data).unwrap().open_report();
    assert_eq!(reference.truncated_bytes, 0);

    let store = Store::open_with(&data, opts).unwrap();
    let report = store.open_report();
    assert_eq!(
        (
            report.events,
            report.truncated_bytes,
            report.quarantined.clone()
        ),
        (reference.events, 0, None)
    );
    assert!(!last.exists(), "the empty file is removed");
    assert!(
        !data.join("quarantine").exists()
            || fs::read_dir(data.join("quarantine"))
                .unwrap()
                .next()
                .is_none(),
        "no empty file in quarantine"
    );
    drop(store);
    assert_eq!(
        Store::open_read_only(&data).unwrap().open_report().events,
        reference.events
    );
}

#[test]
fn a_quarantine_that_is_a_symlink_is_never_followed_and_the_log_is_left_as_it_was() {
    const EVENTS: u64 = 8;
    let (_crash_dir, data) = crashed_store(options(SyncPolicy::Never), EVENTS);
    let segment = last_segment(&data);
    let last = frames(&segment).pop().unwrap();
    truncate(&segment, last.start + 3);
    let outside = data.parent().unwrap().join("outside");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, data.join("quarantine")).unwrap();
    let before = snapshot(&data);

    match Store::open_with(&data, options(SyncPolicy::Never)).map(drop) {
        Err(error @ commlog::Error::Io { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("quarantine") && text.contains("not a directory"),
                "{text}"
            );
        }
        other => panic!("expected an I/O error naming quarantine, got {other:?}"),
    }
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "a copy landed outside"
    );
    assert_eq!(
        snapshot(&data),
        before,
        "the refused open changed the store"
    );
}
