//! A log over 1 MiB replays on two threads, with checksums verified by the folding thread. A
//! damaged frame there must be judged exactly as the one-thread replay judges it.

mod support;

use std::path::{Path, PathBuf};

use commlog::workload::{Generator, Spec};
use commlog::{Error, Options, StatsFilter, Store, SyncPolicy};
use support::files::snapshot;

const SPEC: Spec = Spec {
    seed: 42,
    users: 10_000,
    messages: 20_000,
};
const EVENTS: u64 = 46_249;

fn never() -> Options {
    Options {
        sync: SyncPolicy::Never,
        ..Options::default()
    }
}

fn fill(store: &Store) {
    for call in Generator::calls(SPEC) {
        commlog::workload::apply(store, &call).unwrap();
    }
}

fn only_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    assert_eq!(segments.len(), 1);
    segments.pop().unwrap()
}

/// Start offsets of the frames in a segment (each frame: u16 body length, u32 crc, body).
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    // A store created by this build writes format version 2: a 56-byte header.
    let mut offset = 56;
    while offset < bytes.len() {
        offsets.push(offset);
        offset += 6 + usize::from(u16::from_le_bytes([bytes[offset], bytes[offset + 1]]));
    }
    offsets
}

#[test]
fn a_large_log_replays_on_two_threads_to_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), never()).unwrap();
    fill(&store);
    let before = store.get_communication_stats(&StatsFilter::new()).unwrap();
    store.close().unwrap();
    assert!(
        std::fs::metadata(only_segment(dir.path())).unwrap().len() > 1 << 20,
        "large enough for two threads"
    );
    let reopened = Store::open_with(dir.path(), never()).unwrap();
    assert_eq!(reopened.open_report().events, EVENTS);
    assert_eq!(
        reopened
            .get_communication_stats(&StatsFilter::new())
            .unwrap(),
        before
    );
}

#[test]
fn a_checksum_failure_in_a_durable_frame_of_a_large_log_is_corruption_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), never()).unwrap();
    fill(&store);
    store.close().unwrap(); // the close marker proves every frame durable
    let segment = only_segment(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let offsets = frame_offsets(&bytes);
    let victim = offsets[offsets.len() / 2];
    // Damage the stored checksum: the body still decodes, so only the folding thread's
    // checksum verification can notice.
    bytes[victim + 3] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let before = snapshot(dir.path());
    match Store::open_with(dir.path(), never()) {
        Err(Error::Corruption {
            segment: named,
            offset,
            reason,
        }) => {
            assert_eq!(named, segment);
            assert_eq!(offset, victim as u64);
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!(
            "expected corruption, got {:?}",
            other.map(|store| store.open_report())
        ),
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a failed open changes nothing"
    );
}

#[test]
fn a_checksum_failure_in_an_unsynced_frame_of_a_large_log_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), never()).unwrap();
    fill(&store);
    store.flush().unwrap();
    // A crash: the files as they are now, before any close marker or sync.
    for (path, bytes) in snapshot(dir.path()) {
        if let Some(bytes) = bytes {
            std::fs::write(crashed.path().join(path.file_name().unwrap()), bytes).unwrap();
        }
    }
    drop(store);
    let segment = only_segment(crashed.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let offsets = frame_offsets(&bytes);
    let victim_index = offsets.len() * 2 / 3;
    let victim = offsets[victim_index];
    bytes[victim + 2] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let reopened = Store::open_with(crashed.path(), never()).unwrap();
    let report = reopened.open_report();
    assert_eq!(
        report.events, victim_index as u64,
        "everything before the damaged frame"
    );
    assert_eq!(report.truncated_bytes, (bytes.len() - victim) as u64);
    let quarantined = std::fs::read(report.quarantined.unwrap()).unwrap();
    assert_eq!(quarantined, bytes[victim..]);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), victim as u64);
}
