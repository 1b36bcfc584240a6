//! Damage property test: random stores, one piece of damage each, and the verdict that damage
//! must get, derived here from the undamaged segment files alone (docs/FORMAT.md, "Recovery"),
//! never from audit or open. Then audit, a read-only open and (for corruption) `repair --cut`
//! must agree with it and with each other.
//!
//! Cases: `COMMLOG_DAMAGE_CASES` (default 2,000). A failing case prints its number and seed;
//! `COMMLOG_DAMAGE_SEED=<seed> COMMLOG_DAMAGE_CASE=<case>` runs that case alone.
//!
//! Seal slots (bytes 40..56 of a segment) are damaged too; the expectation for them follows the
//! seal rules: a segment whose successor holds frames carries a valid seal naming it, and a
//! last segment's slot is zeros or a seal.

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use commlog::audit::{Verdict, audit};
use commlog::repair::{REPORT_FILE_NAME, RepairOptions, repair};
use commlog::{Error, Options, Store, SyncPolicy};
use support::script::track_scripted_event;
use tempfile::TempDir;

/// Bytes of a format version 2 segment header, seal slot included.
const HEADER_BYTES: usize = 56;
/// Where the seal slot starts; the header checksum covers the bytes before it.
const SEAL_SLOT: std::ops::Range<usize> = 40..56;
/// Bytes in front of every frame body: u16 length, u32 crc32.
const FRAME_PREFIX_BYTES: usize = 6;
/// The payload tag of a close marker.
const CLOSE_MARKER_TAG: u64 = 6;

const DEFAULT_CASES: u64 = 2_000;
const DEFAULT_SEED: u64 = 0x00da_3a6e;

// ---------------------------------------------------------------------------------------------
// Base stores.

/// A store's files, in memory: what every case starts from.
struct Base {
    label: String,
    /// Files other than segments (the lock file), by name.
    other_files: Vec<(String, Vec<u8>)>,
    /// Segments in log order.
    segments: Vec<Segment>,
}

/// One undamaged segment file and where its frames are.
struct Segment {
    name: String,
    bytes: Vec<u8>,
    first_seq: u64,
    /// The successor's first seq its seal slot names, if it holds a valid seal.
    seal: Option<u64>,
    frames: Vec<FrameAt>,
}

#[derive(Debug, Clone, Copy)]
struct FrameAt {
    offset: usize,
    len: usize,
    seq: u64,
    durable_seq: u64,
    close_marker: bool,
}

impl FrameAt {
    fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap()
}

/// The top-level files of `dir`, by name.
fn read_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect()
}

/// `events` events under `sync` and `segment_bytes`; closed cleanly, or copied after a flush
/// while still open (a crash: no close marker).
fn build_base(sync: SyncPolicy, segment_bytes: u64, events: u64, closed: bool) -> Base {
    let temp = TempDir::new().unwrap();
    let data = temp.path().join("data");
    let options = Options {
        sync,
        segment_bytes,
        ..Options::default()
    };
    let store = Store::open_with(&data, options).unwrap();
    for i in 0..events {
        track_scripted_event(&store, i, t0(), 5);
    }
    let files = if closed {
        store.close().unwrap();
        read_files(&data)
    } else {
        store.flush().unwrap();
        let files = read_files(&data);
        store.close().unwrap();
        files
    };
    let (segment_files, other_files): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|(name, _)| name.ends_with(".log"));
    let segments: Vec<Segment> = segment_files
        .into_iter()
        .map(|(name, bytes)| parse_segment(name, bytes))
        .collect();
    let label = format!(
        "{sync:?}, segment_bytes {segment_bytes}, {events} events, {}, {} segments",
        if closed { "closed" } else { "crashed" },
        segments.len()
    );
    assert_eq!(
        segments.iter().map(|s| s.frames.len()).sum::<usize>() as u64,
        events + u64::from(closed),
        "{label}"
    );
    Base {
        label,
        other_files,
        segments,
    }
}

/// A bincode (standard config) varint: below 251 one byte, else a marker (251: u16, 252: u32,
/// 253: u64) and the value, little endian. Gives the value and the bytes it takes.
fn varint(bytes: &[u8]) -> (u64, usize) {
    let wide = |n: usize| {
        let mut value = [0u8; 8];
        value[..n].copy_from_slice(&bytes[1..1 + n]);
        (u64::from_le_bytes(value), 1 + n)
    };
    match bytes[0] {
        byte @ 0..=250 => (u64::from(byte), 1),
        251 => wide(2),
        252 => wide(4),
        253 => wide(8),
        other => panic!("varint marker {other}"),
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// Walks an undamaged version 2 segment: its header, then frame after frame to the file's end.
fn parse_segment(name: String, bytes: Vec<u8>) -> Segment {
    assert_eq!(&bytes[0..8], b"CMLOGSEG", "{name}");
    assert_eq!(u32_at(&bytes, 8), 2, "{name}: format version");
    assert_eq!(u32_at(&bytes, 36), crc32fast::hash(&bytes[0..36]), "{name}");
    let first_seq = u64_at(&bytes, 12);
    let slot = &bytes[SEAL_SLOT];
    let seal = (u64_at(slot, 0) != 0
        && u32_at(slot, 8) == crc32fast::hash(&slot[0..8])
        && slot[12..16] == [0; 4])
        .then(|| u64_at(slot, 0));
    let mut frames = Vec::new();
    let mut offset = HEADER_BYTES;
    while offset < bytes.len() {
        let body_len = usize::from(u16::from_le_bytes([bytes[offset], bytes[offset + 1]]));
        let body = &bytes[offset + FRAME_PREFIX_BYTES..offset + FRAME_PREFIX_BYTES + body_len];
        assert_eq!(u32_at(&bytes, offset + 2), crc32fast::hash(body), "{name}");
        // seq, durable lag, appended-time delta, event-time delta, payload tag.
        let mut fields = [0u64; 5];
        let mut at = 0;
        for field in &mut fields {
            let (value, used) = varint(&body[at..]);
            *field = value;
            at += used;
        }
        let [seq, lag, _, _, tag] = fields;
        frames.push(FrameAt {
            offset,
            len: FRAME_PREFIX_BYTES + body_len,
            seq,
            durable_seq: seq - lag,
            close_marker: tag == CLOSE_MARKER_TAG,
        });
        offset += FRAME_PREFIX_BYTES + body_len;
    }
    assert_eq!(offset, bytes.len(), "{name}: frames end at the file's end");
    Segment {
        name,
        bytes,
        first_seq,
        seal,
        frames,
    }
}

fn bases() -> Vec<Base> {
    use SyncPolicy::{Always, Never};
    let bases: Vec<Base> = [
        (Always, 64 << 10, 20, true),
        (Always, 64 << 10, 20, false),
        (Never, 64 << 10, 60, false),
        (Never, 1024, 90, true),
        (Never, 1024, 90, false),
        (Always, 2048, 150, false),
        (Always, 4096, 400, true),
        (Never, 4096, 400, false),
    ]
    .into_iter()
    .map(|(sync, segment_bytes, events, closed)| build_base(sync, segment_bytes, events, closed))
    .collect();
    for base in &bases {
        assert!((1..=5).contains(&base.segments.len()), "{}", base.label);
    }
    assert!(bases.iter().any(|base| base.segments.len() >= 3));
    bases
}

// ---------------------------------------------------------------------------------------------
// Damage.

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Flips bit `bit` of the byte at `offset`.
    Flip {
        segment: usize,
        offset: usize,
        bit: u8,
    },
    /// Cuts the file to `len` bytes.
    Truncate { segment: usize, len: usize },
    /// Zeros `start..end`.
    Zero {
        segment: usize,
        start: usize,
        end: usize,
    },
    /// Deletes the file.
    Delete { segment: usize },
}

impl Damage {
    /// The index of the segment damaged.
    fn segment(self) -> usize {
        match self {
            Damage::Flip { segment, .. }
            | Damage::Truncate { segment, .. }
            | Damage::Zero { segment, .. }
            | Damage::Delete { segment } => segment,
        }
    }
}

/// splitmix64: small, seedable, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// An offset in `0..len`: a third of the time at or right around a frame boundary (where the
/// rules change), else anywhere.
fn pick_offset(rng: &mut Rng, segment: &Segment, len: usize) -> usize {
    if rng.below(3) == 0 {
        let boundaries: Vec<usize> = std::iter::once(HEADER_BYTES)
            .chain(segment.frames.iter().map(|frame| frame.offset + frame.len))
            .collect();
        let boundary = boundaries[rng.below(boundaries.len())] as i64 + rng.below(3) as i64 - 1;
        (boundary.max(0) as usize).min(len - 1)
    } else {
        rng.below(len)
    }
}

fn pick_damage(rng: &mut Rng, base: &Base) -> Damage {
    let count = base.segments.len();
    loop {
        let segment = rng.below(count);
        let len = base.segments[segment].bytes.len();
        let seg = &base.segments[segment];
        let damage = match rng.below(10) {
            0..=3 => Damage::Flip {
                segment,
                offset: if rng.below(4) == 0 {
                    SEAL_SLOT.start + rng.below(SEAL_SLOT.len())
                } else {
                    pick_offset(rng, seg, len)
                },
                bit: rng.below(8) as u8,
            },
            4..=5 => Damage::Truncate {
                segment,
                // A sixth of the time inside the header: a torn header, or a sealed one cut.
                len: if rng.below(6) == 0 {
                    rng.below(HEADER_BYTES + 1).min(len - 1)
                } else {
                    pick_offset(rng, seg, len)
                },
            },
            6..=8 => {
                let start = pick_offset(rng, seg, len);
                let end = if rng.below(2) == 0 {
                    len
                } else {
                    (start + 1 + rng.below(64)).min(len)
                };
                Damage::Zero {
                    segment,
                    start,
                    end,
                }
            }
            _ if count >= 3 && rng.below(2) == 0 => Damage::Delete {
                segment: 1 + rng.below(count - 2),
            },
            _ if count >= 2 => Damage::Delete { segment: count - 1 },
            _ => continue,
        };
        let damaged = apply(base, damage);
        let original = &base.segments[damage.segment()].bytes;
        let changed = damaged.get(&base.segments[damage.segment()].name);
        if changed == Some(original) {
            continue; // a range that was zeros already
        }
        return damage;
    }
}

/// The base's segment files with `damage` applied, by name.
fn apply(base: &Base, damage: Damage) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = base
        .segments
        .iter()
        .map(|segment| (segment.name.clone(), segment.bytes.clone()))
        .collect();
    let name = |segment: usize| &base.segments[segment].name;
    match damage {
        Damage::Flip {
            segment,
            offset,
            bit,
        } => files.get_mut(name(segment)).unwrap()[offset] ^= 1 << bit,
        Damage::Truncate { segment, len } => files.get_mut(name(segment)).unwrap().truncate(len),
        Damage::Zero {
            segment,
            start,
            end,
        } => files.get_mut(name(segment)).unwrap()[start..end].fill(0),
        Damage::Delete { segment } => {
            files.remove(name(segment));
        }
    }
    files
}

// ---------------------------------------------------------------------------------------------
// The expected verdict, from the undamaged layout.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// The log opens holding `events` events.
    Clean { events: u64 },
    /// The log opens holding `events` events; the bytes of `segment` from `offset` on are a
    /// torn tail (or header) to cut.
    Torn {
        segment: String,
        offset: u64,
        events: u64,
    },
    /// Open fails naming this file and offset.
    Corrupt { segment: String, offset: u64 },
}

/// How one segment reads after the damage, on its own.
enum SegmentOutcome {
    /// Every frame as before.
    Whole,
    /// Zeros (or nothing) from `at` to the file's end: the segment ends there.
    EndsAt {
        at: usize,
        events_lost: bool,
    },
    /// A torn tail (or header) from `at` on.
    TornAt(usize),
    CorruptAt(usize),
}

/// Reads `damaged` as open does, knowing from `segment` where every frame was. `named_by_seal`:
/// the predecessor's seal names this segment, so its header had been fsynced.
fn judge_segment(
    segment: &Segment,
    damaged: &[u8],
    last: bool,
    named_by_seal: bool,
) -> SegmentOutcome {
    let original = &segment.bytes;
    let intact = |frame: &FrameAt| damaged.get(frame.range()) == Some(&original[frame.range()]);
    // A valid frame after `offset` recording `failed_seq` as durable.
    let durable_proof = |offset: usize, failed_seq: u64| {
        segment.frames.iter().any(|frame| {
            frame.offset > offset
                && intact(frame)
                && frame.seq >= failed_seq
                && frame.durable_seq >= failed_seq
        })
    };
    // The header checksum covers bytes 0..40; a header shorter than 56 bytes is incomplete.
    if damaged.len() < HEADER_BYTES || damaged[..SEAL_SLOT.start] != original[..SEAL_SLOT.start] {
        if !last || named_by_seal {
            return SegmentOutcome::CorruptAt(0);
        }
        if damaged.is_empty() {
            // A torn header of no bytes: nothing to cut, the log ends before the segment.
            return SegmentOutcome::EndsAt {
                at: 0,
                events_lost: true,
            };
        }
        let frame_behind = segment.frames.first().is_some_and(intact);
        return if frame_behind || durable_proof(0, segment.first_seq) {
            SegmentOutcome::CorruptAt(0)
        } else {
            SegmentOutcome::TornAt(0)
        };
    }
    for (index, frame) in segment.frames.iter().enumerate() {
        if intact(frame) {
            continue;
        }
        let rest = damaged.get(frame.offset..).unwrap_or_default();
        if rest.iter().all(|byte| *byte == 0) {
            return SegmentOutcome::EndsAt {
                at: frame.offset,
                events_lost: segment.frames[index..].iter().any(|f| !f.close_marker),
            };
        }
        if !last {
            return SegmentOutcome::CorruptAt(frame.offset);
        }
        // A close marker repeats the seq of the event before it: the seq that failed is the
        // one expected next.
        let failed_seq = if frame.close_marker {
            frame.seq + 1
        } else {
            frame.seq
        };
        return if durable_proof(frame.offset, failed_seq) {
            SegmentOutcome::CorruptAt(frame.offset)
        } else {
            SegmentOutcome::TornAt(frame.offset)
        };
    }
    SegmentOutcome::Whole
}

/// The verdict open must reach on `damaged`: the segments' own checks, in log order, then the
/// seals.
fn expected_outcome(base: &Base, damaged: &BTreeMap<String, Vec<u8>>) -> Expected {
    match expected_from_frames(base, damaged) {
        corrupt @ Expected::Corrupt { .. } => corrupt,
        otherwise => bad_seal(base, damaged).unwrap_or(otherwise),
    }
}

/// The first segment whose header is whole but whose seal slot changed, as corruption, if the
/// seal rules make it one: a segment whose successor holds frames needs its valid seal; the
/// last segment's slot must be zeros or a seal.
fn bad_seal(base: &Base, damaged: &BTreeMap<String, Vec<u8>>) -> Option<Expected> {
    let count = base.segments.len();
    base.segments
        .iter()
        .enumerate()
        .find_map(|(index, segment)| {
            let bytes = damaged.get(&segment.name)?;
            let header_whole = bytes.len() >= HEADER_BYTES
                && bytes[..SEAL_SLOT.start] == segment.bytes[..SEAL_SLOT.start];
            if !header_whole || bytes[SEAL_SLOT] == segment.bytes[SEAL_SLOT] {
                return None;
            }
            let successor_has_frames = base.segments.get(index + 1).is_some_and(|next| {
                damaged.get(&next.name).is_some_and(|next_bytes| {
                    next.frames.first().is_some_and(|first| {
                        next_bytes.get(first.range()) == Some(&next.bytes[first.range()])
                    })
                })
            });
            let is_bad = if index + 1 == count {
                bytes[SEAL_SLOT].iter().any(|byte| *byte != 0)
            } else {
                successor_has_frames || index + 2 < count
            };
            is_bad.then(|| Expected::Corrupt {
                segment: segment.name.clone(),
                offset: SEAL_SLOT.start as u64,
            })
        })
}

/// The verdict from the segments' headers and frames alone, seals aside.
fn expected_from_frames(base: &Base, damaged: &BTreeMap<String, Vec<u8>>) -> Expected {
    let count = base.segments.len();
    let corrupt = |segment: &str, offset: usize| Expected::Corrupt {
        segment: segment.to_string(),
        offset: offset as u64,
    };
    // Events of the segments before this one, all read whole.
    let mut events = 0;
    for (index, segment) in base.segments.iter().enumerate() {
        let last = index + 1 == count;
        // Events in this segment's frames before `offset`, and in the segments before.
        let events_before = |offset: usize| {
            let here = segment
                .frames
                .iter()
                .filter(|frame| frame.offset < offset && !frame.close_marker)
                .count();
            events + here as u64
        };
        let Some(bytes) = damaged.get(&segment.name) else {
            assert!(index > 0, "the first segment is never deleted");
            let previous = &base.segments[index - 1];
            if !last {
                // The previous segment ends a seq short of the next one's start.
                return corrupt(&previous.name, previous.bytes.len());
            }
            // The newest is missing: its predecessor's seal names it, if it got one.
            return if previous.seal.is_some() {
                corrupt(&segment.name, SEAL_SLOT.start)
            } else {
                Expected::Clean { events }
            };
        };
        let named_by_seal = index > 0 && base.segments[index - 1].seal == Some(segment.first_seq);
        match judge_segment(segment, bytes, last, named_by_seal) {
            SegmentOutcome::Whole => {}
            SegmentOutcome::EndsAt { at, .. } if last => {
                return Expected::Clean {
                    events: events_before(at),
                };
            }
            SegmentOutcome::EndsAt { at, events_lost } => {
                if events_lost {
                    // The next segment starts after seqs this one no longer holds.
                    return corrupt(&segment.name, at);
                }
            }
            SegmentOutcome::TornAt(at) => {
                return Expected::Torn {
                    segment: segment.name.clone(),
                    offset: at as u64,
                    events: events_before(at),
                };
            }
            SegmentOutcome::CorruptAt(offset) => return corrupt(&segment.name, offset),
        }
        events = events_before(usize::MAX);
    }
    Expected::Clean { events }
}

// ---------------------------------------------------------------------------------------------
// The checks.

struct Case<'a> {
    number: u64,
    seed: u64,
    base: &'a Base,
    damage: Damage,
    expected: Expected,
}

impl fmt::Display for Case<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let damaged = &self.base.segments[self.damage.segment()];
        write!(
            f,
            "case {} (COMMLOG_DAMAGE_SEED={} COMMLOG_DAMAGE_CASE={}): base [{}]: {:?} of {} (len {}): expected {:?}",
            self.number,
            self.seed,
            self.number,
            self.base.label,
            self.damage,
            damaged.name,
            damaged.bytes.len(),
            self.expected
        )
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every file under `dir`, by path relative to it.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                files.insert(format!("{relative}/"), Vec::new());
                pending.push(path);
            } else {
                files.insert(relative, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Runs one case in `dir` (which must not exist yet); `Err` says what disagreed.
fn check_case(
    case: &Case<'_>,
    damaged: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
) -> Result<(), String> {
    fs::create_dir(dir).unwrap();
    for (name, bytes) in damaged
        .iter()
        .chain(case.base.other_files.iter().map(|(n, b)| (n, b)))
    {
        fs::write(dir.join(name), bytes).unwrap();
    }
    let before = snapshot(dir);
    let audited = audit(dir, false).map_err(|error| format!("audit failed: {error}"))?;
    let first = audited.findings.first().map(|finding| {
        (
            finding.segment.clone(),
            finding.offset,
            finding.reason.clone(),
        )
    });
    let opened = Store::open_read_only(dir);
    let opened_text = match &opened {
        Ok(store) => format!(
            "opens, truncated_bytes {}",
            store.open_report().truncated_bytes
        ),
        Err(error) => format!("fails: {error}"),
    };
    let disagree = |what: &str| {
        Err(format!(
            "{what}: audit {:?}, first finding {first:?}; open {opened_text}",
            audited.verdict
        ))
    };
    let expected_verdict = match case.expected {
        Expected::Clean { .. } => Verdict::Clean,
        Expected::Torn { .. } => Verdict::Torn,
        Expected::Corrupt { .. } => Verdict::Corrupt,
    };
    if audited.verdict != expected_verdict {
        return disagree("verdict");
    }
    match (&case.expected, &opened) {
        (
            Expected::Corrupt { segment, offset },
            Err(Error::Corruption {
                segment: path,
                offset: at,
                ..
            }),
        ) => {
            let Some((finding_segment, finding_offset, _)) = &first else {
                return disagree("no finding");
            };
            if (finding_segment, finding_offset) != (&file_name(path), at) {
                return disagree("open and the first finding name different places");
            }
            if (segment, offset) != (finding_segment, finding_offset) {
                return disagree("the first finding is not where the damage is");
            }
        }
        (Expected::Corrupt { .. }, _) => return disagree("open does not fail with corruption"),
        (
            Expected::Torn {
                segment,
                offset,
                events,
            },
            Ok(store),
        ) => {
            let report = store.open_report();
            let torn_bytes = damaged[segment].len() as u64 - offset;
            if (report.truncated_bytes, report.events) != (torn_bytes, *events) {
                return disagree("open's torn bytes or events");
            }
            if first.as_ref().map(|(s, o, _)| (s, *o)) != Some((segment, *offset)) {
                return disagree("the torn finding is not where the tail starts");
            }
            if audited.events != *events {
                return disagree("audit's events");
            }
        }
        (Expected::Clean { events }, Ok(store)) => {
            let report = store.open_report();
            if (report.truncated_bytes, report.events) != (0, *events) {
                return disagree("open's torn bytes or events");
            }
            if audited.events != *events || !audited.findings.is_empty() {
                return disagree("audit's events or findings");
            }
        }
        (_, Err(_)) => return disagree("open fails"),
    }
    drop(opened);
    if snapshot(dir) != before {
        return disagree("audit or the read-only open changed bytes");
    }
    if matches!(case.expected, Expected::Corrupt { .. }) && case.number.is_multiple_of(4) {
        check_repair(dir, &before)?;
    }
    Ok(())
}

/// `repair --cut` leaves a clean log, and every byte of the segments is kept or quarantined.
fn check_repair(dir: &Path, before: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let repaired = repair(
        dir,
        RepairOptions {
            cut: true,
            dry_run: false,
            ..RepairOptions::default()
        },
    )
    .map_err(|error| format!("repair failed: {error}"))?;
    let after = audit(dir, false).map_err(|error| format!("audit after repair failed: {error}"))?;
    if after.verdict != Verdict::Clean {
        return Err(format!(
            "after repair ({:?}, moved {:?}): audit {:?}, findings {:?}",
            repaired.action, repaired.moved, after.verdict, after.findings
        ));
    }
    let segment_bytes = |files: &BTreeMap<String, Vec<u8>>| -> usize {
        files
            .iter()
            .filter(|(name, _)| name.ends_with(".log") && !name.contains('/'))
            .map(|(_, bytes)| bytes.len())
            .sum()
    };
    let files = snapshot(dir);
    let quarantined: usize = files
        .iter()
        .filter(|(name, _)| name.starts_with("quarantine/") && !name.ends_with(REPORT_FILE_NAME))
        .map(|(_, bytes)| bytes.len())
        .sum();
    let (kept, original) = (segment_bytes(&files), segment_bytes(before));
    if kept + quarantined != original {
        return Err(format!(
            "after repair: {kept} bytes kept + {quarantined} quarantined != {original} (moved {:?})",
            repaired.moved
        ));
    }
    Ok(())
}

/// Whether the damage changed a seal slot of a segment whose header it left whole.
fn touches_seal_slot(base: &Base, damaged: &BTreeMap<String, Vec<u8>>) -> bool {
    base.segments.iter().any(|segment| {
        damaged.get(&segment.name).is_some_and(|bytes| {
            bytes.len() >= HEADER_BYTES && bytes[SEAL_SLOT] != segment.bytes[SEAL_SLOT]
        })
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|value| value.parse().unwrap_or_else(|_| panic!("{name}={value}")))
}

#[test]
fn every_damage_gets_the_verdict_its_layout_implies_from_audit_open_and_repair() {
    let cases = env_u64("COMMLOG_DAMAGE_CASES").unwrap_or(DEFAULT_CASES);
    let seed = env_u64("COMMLOG_DAMAGE_SEED").unwrap_or(DEFAULT_SEED);
    let only = env_u64("COMMLOG_DAMAGE_CASE");
    let bases = bases();
    let temp = TempDir::new().unwrap();
    let numbers: Vec<u64> = match only {
        Some(number) => vec![number],
        None => (0..cases).collect(),
    };
    let mut failures = Vec::new();
    let mut tally: BTreeMap<String, u64> = BTreeMap::new();
    for number in numbers {
        let mut rng = Rng(seed ^ number.wrapping_mul(0xa076_1d64_78bd_642f));
        let base = &bases[rng.below(bases.len())];
        let damage = pick_damage(&mut rng, base);
        let damaged = apply(base, damage);
        let expected = expected_outcome(base, &damaged);
        let mut kind = format!("{damage:?}")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        if touches_seal_slot(base, &damaged) {
            kind.push_str(" (seal slot)");
        }
        let verdict = match expected {
            Expected::Clean { .. } => "clean",
            Expected::Torn { .. } => "torn",
            Expected::Corrupt { .. } => "corrupt",
        };
        *tally.entry(format!("{kind} -> {verdict}")).or_default() += 1;
        let case = Case {
            number,
            seed,
            base,
            damage,
            expected,
        };
        let dir = temp.path().join(number.to_string());
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_case(&case, &damaged, &dir)
        }));
        let what = match checked {
            Ok(Ok(())) => None,
            Ok(Err(what)) => Some(what),
            Err(panic) => Some(format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
            )),
        };
        if let Some(what) = what {
            failures.push(format!("{case}\n    {what}"));
        }
        fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("damage cases by kind and expected verdict: {tally:#?}");
    assert!(
        failures.is_empty(),
        "{} of the cases disagree:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
