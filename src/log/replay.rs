//! Open: replay every segment into a fold, and decide exactly where the log ends.
//!
//! The rules (docs/FORMAT.md, "Recovery"): in the last segment, the log ends at the first frame
//! that fails its checks unless a valid frame after it proves, through its durable_seq, that
//! the failed frame had been durable; such a torn tail is copied to `quarantine/` and cut off.
//! A failed frame that was provably durable, and any failure in a sealed segment, is
//! corruption: open fails and nothing on disk changes. Zero bytes to the end of a file are
//! simply its end.

use std::fs::OpenOptions;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::codec::{self, Frame, FrameCursor, SEAL_SLOT_BYTES, SEAL_SLOT_OFFSET, SegmentHeader};
use crate::error::{Error, Result};
use crate::event::{Event, LoggedEvent};
use crate::limits::{
    PIPELINED_REPLAY_BYTES_MIN, PRE_READ_EVENTS, REPLAY_BATCH_EVENTS, REPLAY_BATCHES_IN_FLIGHT,
    SEGMENT_HEADER_V1_BYTES, SEGMENT_HEADER_V2_BYTES, SPLIT_CHUNK_BYTES, SPLIT_REPLAY_BYTES_MIN,
};
use crate::log::segment::{
    FILE_MODE, SegmentBytes, create_directory, file_name_of, list_segments, map_segment,
    numbered_name, open_no_follow, read_header_bytes, read_segment, read_segment_from,
    refuse_newer_format, segment_file_name, segment_file_sequence, sync_directory,
};
use crate::log::{CoveredSegment, LogPosition, OpenReport};

/// Name of the directory, inside the store, that keeps every cut-off tail.
pub(crate) const QUARANTINE_DIRECTORY: &str = "quarantine";

/// Whether replay may cut off a torn tail (a writer holding the lock) or only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Write,
    /// Only reads, perhaps beside a writer: a last segment that a rollover in progress may
    /// still be writing is left out ([`segments_in_use`]).
    ReadOnly,
    /// Only reads, no writer running (an audit that found the lock free, or holds it): every
    /// segment listed is read and judged, as a writer's open judges it.
    ReadAlone,
}

/// The segment a writer continues in, as replay left it.
#[derive(Debug)]
pub(crate) struct Tail {
    pub path: PathBuf,
    pub cursor: FrameCursor,
    /// Bytes of header and whole frames: where the next frame goes.
    pub end: u64,
    pub frame_count: u64,
    /// Where the last frame starts and its stored checksum (`end` and 0 without a frame).
    pub last_frame: (u64, u32),
    pub ends_with_close_marker: bool,
    /// The store id its header carries (`None`: format version 1).
    pub store_id: Option<u64>,
}

impl Tail {
    /// The position at the tail's end, `last_seq` the last event before it.
    pub(crate) fn position(&self, last_seq: u64) -> LogPosition {
        LogPosition {
            last_seq,
            segment_first_seq: segment_file_sequence(&file_name_of(&self.path))
                .expect("replay reads only segments named for their first seq"),
            store_id: self.store_id,
            frame_start: self.last_frame.0,
            frame_crc: self.last_frame.1,
            end: self.end,
            frame_count: self.frame_count,
            ends_with_close_marker: self.ends_with_close_marker,
            cursor: self.cursor,
        }
    }
}

/// What replay found.
#[derive(Debug)]
pub(crate) struct Replayed {
    pub report: OpenReport,
    /// `None` when no segment remains.
    pub tail: Option<Tail>,
    pub last_seq: u64,
    pub next_message_id: u64,
    /// Each segment replayed, as a snapshot covers it (up to where replay ended in it), for a
    /// writer, which continues the log and writes snapshots of it; empty for a read-only replay.
    pub covered: Vec<CoveredSegment>,
}

struct TornTail {
    path: PathBuf,
    offset: u64,
    file_len: u64,
}

/// Replays the log in `dir` on this thread, handing every event to `fold` in sequence order.
pub(crate) fn replay(
    dir: &Path,
    mode: Mode,
    fold: &mut dyn FnMut(&LoggedEvent<'_>),
) -> Result<Replayed> {
    replay_with(dir, mode, None, fold)
}

/// Replays the log in `dir` from `resume` on, like [`replay`]: the segments before the one
/// holding it are not read, and its frames before it neither. The caller has checked that the
/// log still holds the frame before it (`snapshot::check_position`).
pub(crate) fn replay_from(
    dir: &Path,
    mode: Mode,
    resume: &LogPosition,
    fold: &mut dyn FnMut(&LoggedEvent<'_>),
) -> Result<Replayed> {
    replay_with(dir, mode, Some(resume), fold)
}

fn replay_with(
    dir: &Path,
    mode: Mode,
    resume: Option<&LogPosition>,
    fold: &mut dyn FnMut(&LoggedEvent<'_>),
) -> Result<Replayed> {
    let (segments, maps, covered) = list_and_map_segments(dir, mode, resume)?;
    let scanned = scan_segments(
        dir,
        &segments,
        &maps,
        Start { resume, covered },
        mode,
        Checksums::Verify,
        Some(Split::DEFAULT),
        &mut |logged, _| fold(logged),
    )?;
    // The maps must be gone before a torn tail is cut off.
    drop(maps);
    finish(dir, mode, scanned)
}

/// Replays the log in `dir` into a state made by `new_state`, like [`replay`], but on two
/// threads for a large log: this one decodes frames, the other folds them. Each frame's
/// checksum is verified by whichever thread has time for it: by this one when it finds the
/// folding thread behind (every batch in flight waiting), and then it also calls `idle` before
/// it waits (work that spares the folding thread later); else by the folding thread, which
/// then verifies each frame before folding it. A frame failing its checksum (a damaged log:
/// rare) makes the whole replay start over on one thread, which then decides exactly what the
/// damage means.
pub(crate) fn replay_parallel<S: Send>(
    dir: &Path,
    mode: Mode,
    new_state: impl Fn() -> S + Sync,
    fold: impl Fn(&mut S, &LoggedEvent<'_>) + Sync,
    pre_read: impl Fn(&S, &LoggedEvent<'_>) -> u64 + Sync,
    idle: impl Fn(),
) -> Result<(S, Replayed)> {
    let replay_sequentially = || {
        let mut state = new_state();
        let replayed = replay(dir, mode, &mut |logged| fold(&mut state, logged))?;
        Ok((state, replayed))
    };
    let (segments, maps, _) = list_and_map_segments(dir, mode, None)?;
    let total_bytes: usize = maps.iter().map(|bytes| bytes.len()).sum();
    if total_bytes < PIPELINED_REPLAY_BYTES_MIN {
        drop(maps);
        return replay_sequentially();
    }
    let (state, checksums_ok, scanned) = std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<Batch<'_>>(REPLAY_BATCHES_IN_FLIGHT);
        let folder = scope.spawn(|| {
            let mut state = new_state();
            let mut checksums_ok = true;
            for Batch { events, verified } in receiver {
                for run in events.chunks(PRE_READ_EVENTS) {
                    // One tight pass of independent reads, whose cache misses overlap, then the
                    // folds, which find that memory in cache.
                    let read = run
                        .iter()
                        .fold(0u64, |read, (logged, _)| read ^ pre_read(&state, logged));
                    std::hint::black_box(read);
                    for (logged, frame) in run {
                        if !checksums_ok {
                            break;
                        }
                        checksums_ok = verified || codec::checksum_ok(frame);
                        if checksums_ok {
                            fold(&mut state, logged);
                        }
                    }
                }
            }
            (state, checksums_ok)
        });
        let mut batch = Batch::new();
        let scanned = scan_segments(
            dir,
            &segments,
            &maps,
            Start::default(),
            mode,
            Checksums::Deferred,
            None,
            &mut |logged, frame| {
                batch.events.push((*logged, frame));
                if batch.events.len() == REPLAY_BATCH_EVENTS {
                    send(&sender, std::mem::replace(&mut batch, Batch::new()), &idle);
                }
            },
        );
        // Every decoded frame is checked, also when the scan stopped on an error.
        send(&sender, batch, &idle);
        drop(sender);
        match folder.join() {
            Ok((state, checksums_ok)) => (state, checksums_ok, scanned),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    drop(maps);
    if !checksums_ok {
        return replay_sequentially();
    }
    Ok((state, finish(dir, mode, scanned?)?))
}

/// Sends `batch` to the folding thread; when every batch in flight is waiting, first verifies
/// its checksums (a batch with a failing frame is left for the folder to stop at) and calls
/// `idle`. Fails only if the folder panicked, which joining it resumes. Called once a batch, and
/// kept out of the decoding loop, which runs faster without it inlined.
#[inline(never)]
fn send<'a>(sender: &mpsc::SyncSender<Batch<'a>>, batch: Batch<'a>, idle: &impl Fn()) {
    if let Err(mpsc::TrySendError::Full(mut batch)) = sender.try_send(batch) {
        batch.verified = batch
            .events
            .iter()
            .all(|(_, frame)| codec::checksum_ok(frame));
        idle();
        let _ = sender.send(batch);
    }
}

/// Decoded frames on their way from the decoding thread to the folding one, each with its
/// bytes.
struct Batch<'a> {
    events: Vec<(LoggedEvent<'a>, &'a [u8])>,
    /// Whether every frame's checksum has been verified already.
    verified: bool,
}

impl Batch<'_> {
    fn new() -> Self {
        Batch {
            events: Vec::with_capacity(REPLAY_BATCH_EVENTS),
            verified: false,
        }
    }
}

/// Whether frames' checksums are verified while scanning, or by the caller's fold (which gets
/// each frame's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checksums {
    Verify,
    Deferred,
}

/// The segments' bytes: mapped, but for a read-only open's last segment, which is read into
/// memory (from `resume_end` on, where the replay resumes in it). A writer opening meanwhile
/// may cut a torn tail off that segment, and a mapping of bytes cut off would kill the reader
/// (SIGBUS); sealed segments are never cut.
fn map_segments(
    segments: &[(u64, PathBuf)],
    mode: Mode,
    resume_end: Option<u64>,
) -> Result<Vec<SegmentBytes>> {
    segments
        .iter()
        .enumerate()
        .map(|(index, (_, path))| {
            if mode != Mode::Write && index + 1 == segments.len() {
                match resume_end.filter(|_| index == 0) {
                    Some(end) => read_segment_from(path, end),
                    None => read_segment(path),
                }
            } else {
                map_segment(path)
            }
        })
        .collect()
}

/// The store's segment files, ordered by first sequence number (`list_segments`).
type Segments = Vec<(u64, PathBuf)>;

/// Lists the store's segments from the one `resume` is in (else all), gets their bytes, and
/// counts those before it. A read-only open races a writer: the last
/// segment listed may have been sealed by a rollover before its bytes were read, its successor
/// created after the listing, or created while the directory was read and left out of the
/// listing between two that are in it. Then the successor each seal names is read too where
/// the listing lacks it, and so on while the segment read last is sealed and its successor
/// exists, so that a successor that exists is replayed rather than reported missing. Each step
/// reads a segment the writer has already filled, so the reader catches up with it.
fn list_and_map_segments(
    dir: &Path,
    mode: Mode,
    resume: Option<&LogPosition>,
) -> Result<(Segments, Vec<SegmentBytes>, u64)> {
    let from_seq = resume.map_or(0, |position| position.segment_first_seq);
    let mut segments = list_segments(dir)?;
    let covered = segments.partition_point(|(first_seq, _)| *first_seq < from_seq);
    segments.drain(..covered);
    if mode == Mode::ReadOnly {
        segments.truncate(segments_in_use(&segments)?);
    }
    let resume_end = resume
        .filter(|position| {
            segments.first().map(|(seq, _)| *seq) == Some(position.segment_first_seq)
        })
        .map(|position| position.end);
    let mut maps = map_segments(&segments, mode, resume_end)?;
    if mode != Mode::Write {
        // A segment a rollover created while the directory was read may be missing from the
        // listing, wherever it falls in it (a directory is not read in the order its files
        // were created): the successor a sealed segment's seal names is read when the listing
        // lacks it and it exists.
        let mut at = 0;
        while at < segments.len() {
            if let Some(next_first_seq) = codec::decode_seal(&maps[at]) {
                let listed_next = segments.get(at + 1).map(|(first_seq, _)| *first_seq);
                let path = dir.join(segment_file_name(next_first_seq));
                if next_first_seq > segments[at].0
                    && listed_next.is_none_or(|listed| next_first_seq < listed)
                    && path.exists()
                {
                    maps.insert(at + 1, read_segment(&path)?);
                    segments.insert(at + 1, (next_first_seq, path));
                }
            }
            at += 1;
        }
    }
    Ok((segments, maps, covered as u64))
}

/// How many of `segments` (listed by a read-only open, beside a writer) to read: all but the
/// last when the last holds no frame and the version 2 segment before it has an empty seal slot.
/// A rollover creates the successor (its header written and synced), then seals its
/// predecessor, and only then writes a frame to the successor: listed while that runs, the
/// successor may have a half-written header, and the predecessor's seal, read later through
/// its map, would name it. Left out, it is read once the seal names it (the next refresh).
/// A successor that holds frames while its predecessor still reads unsealed is not a rollover
/// in progress: it is read, for the replay to judge.
fn segments_in_use(segments: &[(u64, PathBuf)]) -> Result<usize> {
    let [.., (_, path), (_, last)] = segments else {
        return Ok(segments.len());
    };
    if !codec::unsealed_v2(&read_header_bytes(path)?) {
        return Ok(segments.len());
    }
    let last_len = std::fs::symlink_metadata(last)
        .map_err(|source| Error::io(last, source))?
        .len();
    match last_len <= SEGMENT_HEADER_V2_BYTES as u64 {
        true => Ok(segments.len() - 1),
        false => Ok(segments.len()),
    }
}

/// A seal slot that does not fit the segments listed.
#[derive(Debug)]
pub(crate) struct SealProblem {
    /// The file to blame: the segment whose slot is wrong, or the missing successor it names.
    pub path: PathBuf,
    /// `missing_segment`, `seal_mismatch` or `seal`.
    pub kind: &'static str,
    pub reason: String,
    /// Where a cut removes the problem: the segment's position and the offset in it from which
    /// bytes go (its length: nothing of it goes, but its slot is cleared).
    pub cut: (usize, u64),
}

/// Checks every version 2 segment's seal slot against the segments listed. A rollover creates
/// the successor (durably), then seals its predecessor (durably), and only then writes frames
/// to the successor. So a sealed segment names the next segment listed, and a sealed last
/// segment means its successor, and any segment after it, is missing. A segment not sealed
/// (its slot zeros, or failing its check) is followed by nothing or by one segment without a
/// frame (a rollover cut short by a crash, which the next writer finishes): otherwise its slot
/// is damaged. A last segment's slot is zeros or a seal.
///
/// `frame_counts[i]`: frames read in segment `i`. Returns every problem, and the unsealed
/// predecessor of a last segment without frames, with the seal it must get: the rollover to
/// finish.
pub(crate) fn seal_problems(
    dir: &Path,
    segments: &[(u64, PathBuf)],
    maps: &[SegmentBytes],
    frame_counts: &[u64],
) -> (Vec<SealProblem>, Option<(PathBuf, u64)>) {
    let mut problems = Vec::new();
    let mut unfinished_rollover = None;
    for (index, (_, bytes)) in segments.iter().zip(maps).enumerate() {
        if !SegmentHeader::decode(bytes).is_ok_and(|header| header.store_id.is_some()) {
            continue;
        }
        let checked = match codec::decode_seal(bytes) {
            Some(next_first_seq) => check_sealed(dir, segments, index, bytes, next_first_seq),
            None => check_unsealed(segments, frame_counts, index, bytes),
        };
        match checked {
            Ok(Some(rollover)) => unfinished_rollover = Some(rollover),
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
    }
    (problems, unfinished_rollover)
}

/// Checks the slot of segment `index` (`bytes`), sealed naming `next_first_seq`: the next
/// segment listed must start there.
fn check_sealed(
    dir: &Path,
    segments: &[(u64, PathBuf)],
    index: usize,
    bytes: &[u8],
    next_first_seq: u64,
) -> Result<Option<(PathBuf, u64)>, SealProblem> {
    let path = &segments[index].1;
    let expected_name = segment_file_name(next_first_seq);
    match segments.get(index + 1) {
        None => Err(SealProblem {
            path: dir.join(&expected_name),
            kind: "missing_segment",
            reason: format!(
                "segment file is missing: segment {} was sealed (seal slot at offset \
                 {SEAL_SLOT_OFFSET}) when its successor {expected_name}, starting at seq \
                 {next_first_seq}, had been created; the newest segments were deleted or \
                 lost",
                file_name_of(path),
            ),
            cut: (index, bytes.len() as u64),
        }),
        Some((next_seq, next_path)) if *next_seq != next_first_seq => Err(SealProblem {
            path: path.clone(),
            kind: "seal_mismatch",
            reason: format!(
                "seal slot names the next segment {expected_name} (first seq \
                 {next_first_seq}), but the next segment is {}",
                file_name_of(next_path)
            ),
            cut: (index + 1, 0),
        }),
        Some(_) => Ok(None),
    }
}

/// Checks the slot of segment `index` (`bytes`), not sealed: it may be followed by nothing, or
/// by one segment without a frame, the rollover to finish (returned with the seal it must get).
fn check_unsealed(
    segments: &[(u64, PathBuf)],
    frame_counts: &[u64],
    index: usize,
    bytes: &[u8],
) -> Result<Option<(PathBuf, u64)>, SealProblem> {
    let path = &segments[index].1;
    let slot = &bytes[SEAL_SLOT_OFFSET..SEAL_SLOT_OFFSET + SEAL_SLOT_BYTES];
    let zeros = slot.iter().all(|byte| *byte == 0);
    let slot_state = if zeros {
        "is zeros (not sealed)"
    } else {
        "fails its check"
    };
    match segments.get(index + 1) {
        Some((next_seq, next_path))
            if frame_counts.get(index + 1).is_some_and(|count| *count > 0)
                || index + 2 < segments.len() =>
        {
            Err(SealProblem {
                path: path.clone(),
                kind: "seal",
                reason: format!(
                    "seal slot {slot_state}, but the next segment {} (first seq {next_seq}) \
                     holds frames, which are written only after this segment's seal is \
                     durable",
                    file_name_of(next_path)
                ),
                cut: (index + 1, 0),
            })
        }
        Some((next_seq, _)) => Ok(Some((path.clone(), *next_seq))),
        None if !zeros => Err(SealProblem {
            path: path.clone(),
            kind: "seal",
            reason: "seal slot of the last segment fails its check: it is neither zeros nor \
                     a seal"
                .to_string(),
            cut: (index, bytes.len() as u64),
        }),
        None => Ok(None),
    }
}

/// [`seal_problems`], the first of them as corruption.
fn check_seals(
    dir: &Path,
    segments: &[(u64, PathBuf)],
    maps: &[SegmentBytes],
    frame_counts: &[u64],
) -> Result<Option<(PathBuf, u64)>> {
    let (problems, unfinished_rollover) = seal_problems(dir, segments, maps, frame_counts);
    match problems.into_iter().next() {
        Some(problem) => Err(Error::corruption(
            &problem.path,
            SEAL_SLOT_OFFSET as u64,
            problem.reason,
        )),
        None => Ok(unfinished_rollover),
    }
}

/// Deals with a torn tail (a writer quarantines and cuts it) and reports.
fn finish(dir: &Path, mode: Mode, scanned: Scanned) -> Result<Replayed> {
    let Scanned {
        mut report,
        unfinished_rollover,
        tail,
        torn,
        last_seq,
        next_message_id,
        covered,
    } = scanned;
    if let Some(torn) = torn {
        report.truncated_bytes = torn.file_len - torn.offset;
        if mode == Mode::Write {
            // An empty file (a crash before its header was written) holds nothing to keep.
            if torn.file_len > torn.offset {
                report.quarantined = Some(quarantine_tail(dir, &torn)?);
            }
            cut_tail(dir, &torn)?;
        }
    }
    if let (Mode::Write, Some((path, next_first_seq))) = (mode, &unfinished_rollover) {
        // The crash came between creating the successor and sealing this segment: finish the
        // rollover before any frame goes to the successor.
        crate::log::seal_segment(path, *next_first_seq)?;
    }
    Ok(Replayed {
        report,
        tail,
        last_seq,
        next_message_id,
        covered,
    })
}

/// What scanning the segments found, before any torn tail is dealt with.
struct Scanned {
    report: OpenReport,
    /// A segment left unsealed by a rollover a crash cut short; the writer seals it.
    unfinished_rollover: Option<(PathBuf, u64)>,
    tail: Option<Tail>,
    torn: Option<TornTail>,
    last_seq: u64,
    next_message_id: u64,
    covered: Vec<CoveredSegment>,
}

/// Where a scan starts: at the log's start, or at a position in the first segment given, with
/// `covered` segments before it that are not read.
#[derive(Debug, Clone, Copy, Default)]
struct Start<'p> {
    resume: Option<&'p LogPosition>,
    covered: u64,
}

/// Replays the mapped segments in order, checking that each continues the one before. For a
/// writer (`mode`), each segment replayed is also hashed as a snapshot covers it (see
/// [`Replayed::covered`]); a read-only scan writes no snapshot, and reads no byte of a segment
/// before the point it resumes at (which a read-only open or refresh has not even read).
#[allow(clippy::too_many_arguments)]
fn scan_segments<'a>(
    dir: &Path,
    segments: &[(u64, PathBuf)],
    maps: &'a [SegmentBytes],
    start: Start<'_>,
    mode: Mode,
    checksums: Checksums,
    split: Option<Split>,
    fold: &mut dyn FnMut(&LoggedEvent<'a>, &'a [u8]),
) -> Result<Scanned> {
    let mut report = OpenReport {
        segments: start.covered,
        ..OpenReport::default()
    };
    let mut expected_seq: u64 = 1;
    let mut next_message_id: u64 = 1;
    if let Some(position) = start.resume {
        if segments.first().map(|(first_seq, _)| *first_seq) != Some(position.segment_first_seq) {
            let path = dir.join(segment_file_name(position.segment_first_seq));
            return Err(Error::corruption(
                &path,
                position.end,
                "segment file is missing: the views were built up to this offset of it",
            ));
        }
        expected_seq = position.last_seq + 1;
        next_message_id = position.cursor.next_message_id;
        report.events = position.last_seq;
    }
    let mut tail: Option<Tail> = None;
    let mut torn: Option<TornTail> = None;
    let mut frame_counts = Vec::with_capacity(segments.len());
    let mut covered = Vec::with_capacity(segments.len());
    for (index, ((name_seq, path), bytes)) in segments.iter().zip(maps).enumerate() {
        let resume = start.resume.filter(|_| index == 0);
        let position = if index + 1 == segments.len() {
            Position::Last
        } else {
            Position::Sealed
        };
        let expected = Expected {
            first_seq: expected_seq,
            first_message_id: next_message_id,
            store_id: tail.as_ref().map(|previous| previous.store_id),
        };
        if resume.is_none() {
            check_segment_name(tail.as_ref(), expected_seq, *name_seq, path, bytes)?;
        }
        let segment = replay_segment_split(
            path, bytes, position, expected, resume, checksums, split, fold,
        )?;
        // The one before: the folding may still be reading this one (pipelined replay).
        if let Some(previous) = index.checked_sub(1) {
            maps[previous].release();
        }
        check_torn_header(segments, maps, index, segment.torn_offset)?;
        if let Some(offset) = segment.torn_offset {
            torn = Some(TornTail {
                path: path.clone(),
                offset,
                file_len: bytes.len() as u64,
            });
        }
        let Some(cursor) = segment.cursor else { break };
        if mode == Mode::Write {
            covered.push(CoveredSegment {
                first_seq: *name_seq,
                end: segment.end,
                crc: crc32fast::hash(&bytes[segment.frames_start as usize..segment.end as usize]),
            });
        }
        frame_counts.push(segment.frame_count);
        report.segments += 1;
        report.events += segment.events;
        expected_seq += segment.events;
        next_message_id = cursor.next_message_id;
        tail = Some(Tail {
            path: path.clone(),
            cursor,
            end: segment.end,
            frame_count: segment.frame_count,
            last_frame: segment.last_frame,
            ends_with_close_marker: segment.ends_with_close_marker,
            store_id: segment.store_id,
        });
    }
    // Segments after the one replay stopped in read no frames.
    frame_counts.resize(segments.len(), 0);
    let unfinished_rollover =
        check_seals(dir, segments, maps, &frame_counts)?.filter(|(_, next_first_seq)| {
            // Only when the writer goes on in the successor (its header is whole).
            tail.as_ref()
                .is_some_and(|tail| tail.path == dir.join(segment_file_name(*next_first_seq)))
        });
    report.last_seq = expected_seq - 1;
    Ok(Scanned {
        unfinished_rollover,
        report,
        tail,
        torn,
        last_seq: expected_seq - 1,
        next_message_id,
        covered,
    })
}

/// Checks that a segment with a valid header (`bytes`) is named for where the log before it
/// (ending in `previous`) ends: its file name's first seq `name_seq` is `expected_seq`.
fn check_segment_name(
    previous: Option<&Tail>,
    expected_seq: u64,
    name_seq: u64,
    path: &Path,
    bytes: &[u8],
) -> Result<()> {
    if let Some(previous) = previous
        && name_seq > expected_seq
        && SegmentHeader::decode(bytes).is_ok()
    {
        // A sealed segment was written and fsynced whole before this one was created: the
        // missing events were cut from its end (or the segment that held them is missing).
        return Err(Error::corruption(
            &previous.path,
            previous.end,
            format!(
                "segment ends at seq {}, but the next segment {} starts at seq {name_seq}",
                expected_seq - 1,
                file_name_of(path)
            ),
        ));
    }
    if name_seq != expected_seq && SegmentHeader::decode(bytes).is_ok() {
        return Err(Error::corruption(
            path,
            codec::FIRST_SEQ_OFFSET as u64,
            format!(
                "segment file name says first seq {name_seq}, but the log before it ends at seq {}",
                expected_seq - 1
            ),
        ));
    }
    Ok(())
}

/// Checks segment `index`, when its header is incomplete or fails its checks (`torn_offset`
/// 0: a torn tail from its start), against its predecessor's seal: a segment's header is
/// fsynced before its predecessor's seal names it.
fn check_torn_header(
    segments: &[(u64, PathBuf)],
    maps: &[SegmentBytes],
    index: usize,
    torn_offset: Option<u64>,
) -> Result<()> {
    let (name_seq, path) = &segments[index];
    if torn_offset == Some(0)
        && let Some(previous) = index.checked_sub(1).map(|index| &segments[index].1)
        && codec::decode_seal(&maps[index - 1]) == Some(*name_seq)
    {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "segment header is incomplete or fails its checks, but segment {} was \
                 sealed naming this one, so its header had been written and fsynced",
                file_name_of(previous)
            ),
        ));
    }
    Ok(())
}

/// Whether a segment is sealed (a later one exists, so it was fsynced whole) or the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    Sealed,
    Last,
}

/// What the segment's header must say, given the segments before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    pub first_seq: u64,
    pub first_message_id: u64,
    /// The store id the segment's header must carry (`Some(None)`: none, format version 1),
    /// as the log's first segment says; `None` when nothing before it says (the first segment).
    pub store_id: Option<Option<u64>>,
}

/// How one segment ended.
#[derive(Debug)]
pub(crate) struct SegmentEnd {
    /// The running state after the last good frame; `None` when the header itself is torn.
    pub cursor: Option<FrameCursor>,
    /// Events folded.
    pub events: u64,
    /// Frames read, close markers included.
    pub frame_count: u64,
    /// Offset after the last good frame.
    pub end: u64,
    /// Where the frames start: the header's length.
    pub frames_start: u64,
    /// Where the last good frame starts and its stored checksum (`end` and 0 without one).
    pub last_frame: (u64, u32),
    /// Where a torn tail starts, if the segment has one.
    pub torn_offset: Option<u64>,
    pub ends_with_close_marker: bool,
    /// The store id the header carries (`None`: format version 1, or no valid header).
    pub store_id: Option<u64>,
}

/// Replays one segment's `bytes` (`path` names it in errors), handing its events to `fold`.
/// Decides where it ends: its end, zeros, a torn tail (last segment only, never durable),
/// or corruption (an error).
pub(crate) fn replay_segment<'a>(
    path: &Path,
    bytes: &'a [u8],
    position: Position,
    expected: Expected,
    checksums: Checksums,
    fold: &mut dyn FnMut(&LoggedEvent<'a>, &'a [u8]),
) -> Result<SegmentEnd> {
    replay_segment_split(path, bytes, position, expected, None, checksums, None, fold)
}

/// [`replay_segment`], from `resume` when given (a position in this segment); a segment of at least `split.segment_bytes_min` bytes (with
/// `Checksums::Verify`) is
/// replayed on two threads: this one from the start, another one ([`speculate`]) from a frame
/// boundary in the middle. Events are folded in order all the same, and where the other
/// thread's work does not fit, this one replays that half itself, so the outcome never
/// differs.
#[allow(clippy::too_many_arguments)]
fn replay_segment_split<'a>(
    path: &Path,
    bytes: &'a [u8],
    position: Position,
    expected: Expected,
    resume: Option<&LogPosition>,
    checksums: Checksums,
    split: Option<Split>,
    fold: &mut dyn FnMut(&LoggedEvent<'a>, &'a [u8]),
) -> Result<SegmentEnd> {
    let header = match (SegmentHeader::decode(bytes), resume) {
        (Ok(header), _) => header,
        (Err(reason), None) => {
            // Not damage: a format this build does not read.
            refuse_newer_format(path, bytes, "open it")?;
            return judge_bad_header(path, bytes, position, expected, reason);
        }
        (Err(reason), Some(_)) => return Err(Error::corruption(path, 0, reason)),
    };
    let mut replay = match resume {
        None => {
            check_header(path, &header, expected)?;
            SegmentReplay::new(&header)
        }
        Some(resume) => {
            check_resumed_header(path, &header, resume, bytes.len())?;
            SegmentReplay::resume(resume)
        }
    };
    let first_seq = replay.next_seq;
    let mut torn_offset = None;
    let chunks = split
        .filter(|split| checksums == Checksums::Verify && bytes.len() >= split.segment_bytes_min)
        .map(|split| chunk_boundaries(bytes, replay.offset, split.chunk_bytes))
        .unwrap_or_default();
    std::thread::scope(|scope| -> Result<()> {
        let mut speculated = Speculation::spawn(scope, bytes, &chunks);
        while replay.offset < bytes.len() {
            if let Some(chunk) = speculated.take(replay.offset)
                && let Some(rebase) = chunk.fits(&replay.cursor, replay.next_seq)
            {
                replay.fold_chunk(bytes, &chunk, rebase, fold);
                speculated.recycle(chunk);
                continue;
            }
            let offset = replay.offset;
            let next_seq = replay.next_seq;
            match next_frame(&bytes[offset..], &mut replay.cursor, next_seq, checksums) {
                Ok((frame, frame_bytes)) => {
                    replay.fold_frame(path, bytes, frame, frame_bytes, fold)?
                }
                Err(reason) => {
                    let reason = full_check_reason(
                        &bytes[offset..],
                        &replay.cursor,
                        next_seq,
                        checksums,
                        reason,
                    );
                    torn_offset = judge_bad_frame(path, bytes, offset, position, next_seq, reason)?;
                    break;
                }
            }
        }
        Ok(())
    })?;
    Ok(SegmentEnd {
        cursor: Some(replay.cursor),
        events: replay.next_seq - first_seq,
        frame_count: replay.frame_count,
        end: replay.offset as u64,
        frames_start: header.len_bytes() as u64,
        last_frame: replay.last_frame,
        torn_offset,
        ends_with_close_marker: replay.ends_with_close_marker,
        store_id: header.store_id,
    })
}

/// How far a segment's replay has got: the state after the last frame folded.
struct SegmentReplay {
    cursor: FrameCursor,
    next_seq: u64,
    /// Where the next frame starts.
    offset: usize,
    /// Frames read, close markers included.
    frame_count: u64,
    /// Where the last frame read starts and its stored checksum (`offset` and 0 before any).
    last_frame: (u64, u32),
    ends_with_close_marker: bool,
}

impl SegmentReplay {
    /// The state before the first frame behind `header`.
    fn new(header: &SegmentHeader) -> SegmentReplay {
        SegmentReplay {
            cursor: FrameCursor::new(header),
            next_seq: header.first_seq,
            offset: header.len_bytes(),
            frame_count: 0,
            last_frame: (header.len_bytes() as u64, 0),
            ends_with_close_marker: false,
        }
    }

    /// The state at `position`, in its segment.
    fn resume(position: &LogPosition) -> SegmentReplay {
        SegmentReplay {
            cursor: position.cursor,
            next_seq: position.last_seq + 1,
            offset: position.end as usize,
            frame_count: position.frame_count,
            last_frame: (position.frame_start, position.frame_crc),
            ends_with_close_marker: position.ends_with_close_marker,
        }
    }

    /// Folds the frame at the offset reached (`frame`, taking `frame_bytes` of `bytes`), and
    /// moves past it.
    #[inline(always)]
    fn fold_frame<'a>(
        &mut self,
        path: &Path,
        bytes: &'a [u8],
        frame: Frame<'a>,
        frame_bytes: usize,
        fold: &mut dyn FnMut(&LoggedEvent<'a>, &'a [u8]),
    ) -> Result<()> {
        let offset = self.offset;
        match frame {
            Frame::Event(logged) => {
                fold(&logged, &bytes[offset..offset + frame_bytes]);
                // The header check leaves room, but a segment can hold more frames.
                self.next_seq = self.next_seq.checked_add(1).ok_or_else(|| {
                    Error::corruption(path, offset as u64, "sequence number overflows")
                })?;
                self.ends_with_close_marker = false;
            }
            Frame::Closed { .. } => self.ends_with_close_marker = true,
        }
        self.last_frame = (offset as u64, codec::stored_crc(&bytes[offset..]));
        self.offset += frame_bytes;
        self.frame_count += 1;
        Ok(())
    }

    /// Folds a chunk the second thread replayed ahead from the offset reached, moved to the
    /// real state by `rebase`, and moves past it.
    fn fold_chunk<'a>(
        &mut self,
        bytes: &'a [u8],
        chunk: &Speculated<'a>,
        rebase: Rebase,
        fold: &mut dyn FnMut(&LoggedEvent<'a>, &'a [u8]),
    ) {
        rebase.fold_events(bytes, chunk, fold);
        self.cursor = rebase.cursor;
        self.next_seq = chunk.next_seq;
        self.frame_count += chunk.frame_count;
        if chunk.frame_count > 0 {
            self.ends_with_close_marker = chunk.ends_with_close_marker;
            let start = chunk.last_frame_start;
            self.last_frame = (start as u64, codec::stored_crc(&bytes[start..]));
        }
        self.offset = chunk.chunk_end;
    }
}

/// Judges a segment whose header fails its checks (`reason`): corruption when the segment is
/// sealed or a frame shows that the header had been durable; otherwise a crash right after the
/// segment was created, a torn tail from offset 0.
fn judge_bad_header(
    path: &Path,
    bytes: &[u8],
    position: Position,
    expected: Expected,
    reason: String,
) -> Result<SegmentEnd> {
    if position == Position::Sealed {
        return Err(Error::corruption(path, 0, reason));
    }
    // A header is written and fsynced before any frame goes behind it, so a valid frame right
    // behind it shows that the header had been whole: damage, not a crash. The header's
    // version may be what is damaged, so both places a first frame can start are looked at.
    for first_frame_offset in [SEGMENT_HEADER_V1_BYTES, SEGMENT_HEADER_V2_BYTES] {
        let first_frame = bytes.get(first_frame_offset..).unwrap_or_default();
        if let Ok(raw) = codec::read_frame(first_frame) {
            return Err(Error::corruption(
                path,
                0,
                format!(
                    "{reason}; the valid frame at offset {first_frame_offset} (seq {}) shows \
                     the header had been written and fsynced",
                    raw.seq()
                ),
            ));
        }
    }
    // A crash right after creating the segment, unless a later frame proves otherwise.
    if let Some(proof) = find_durable_proof(bytes, SEGMENT_HEADER_V1_BYTES, expected.first_seq) {
        return Err(Error::corruption(path, 0, format!("{reason}; {proof}")));
    }
    Ok(SegmentEnd {
        cursor: None,
        events: 0,
        frame_count: 0,
        end: 0,
        frames_start: 0,
        last_frame: (0, 0),
        torn_offset: Some(0),
        ends_with_close_marker: false,
        store_id: None,
    })
}

/// Checks that the header of the segment a replay resumes in says what the position says, and
/// that the segment reaches the position.
fn check_resumed_header(
    path: &Path,
    header: &SegmentHeader,
    resume: &LogPosition,
    segment_bytes: usize,
) -> Result<()> {
    // Where the segment starts, the position says; its first message id, only its header.
    let expected = Expected {
        first_seq: resume.segment_first_seq,
        first_message_id: header.first_message_id,
        store_id: Some(resume.store_id),
    };
    check_header(path, header, expected)?;
    if (segment_bytes as u64) < resume.end || resume.end < header.len_bytes() as u64 {
        return Err(Error::corruption(
            path,
            segment_bytes as u64,
            format!(
                "segment is {segment_bytes} bytes, but the views were built up to offset {}",
                resume.end
            ),
        ));
    }
    Ok(())
}

/// Checks that a valid header says what the segments before it lead to expect.
fn check_header(path: &Path, header: &SegmentHeader, expected: Expected) -> Result<()> {
    if let Some(store_id) = expected.store_id
        && header.store_id != store_id
    {
        let (offset, reason) = foreign_store_reason(header.store_id, store_id);
        return Err(Error::corruption(path, offset, reason));
    }
    if header.first_seq != expected.first_seq {
        return Err(Error::corruption(
            path,
            codec::FIRST_SEQ_OFFSET as u64,
            format!(
                "header says first seq {}, but the log before it ends at seq {}",
                header.first_seq,
                expected.first_seq - 1
            ),
        ));
    }
    if header.first_message_id != expected.first_message_id {
        return Err(Error::corruption(
            path,
            codec::FIRST_MESSAGE_ID_OFFSET as u64,
            format!(
                "header says first message id {}, but {} messages came before",
                header.first_message_id,
                expected.first_message_id - 1
            ),
        ));
    }
    Ok(())
}

/// Why the frame at the start of `bytes` fails, as the full checks say: without checksums, a
/// damaged frame may fail another check first (`reason`).
fn full_check_reason(
    bytes: &[u8],
    cursor: &FrameCursor,
    next_seq: u64,
    checksums: Checksums,
    reason: String,
) -> String {
    match checksums {
        Checksums::Verify => reason,
        Checksums::Deferred => next_frame(bytes, &mut cursor.clone(), next_seq, Checksums::Verify)
            .err()
            .unwrap_or(reason),
    }
}

/// Judges the frame at `offset` that fails its checks (`reason`), `next_seq` being the seq it
/// should have: zeros to the end of the file (preallocation) are the end of the log (`None`);
/// in the last segment, a frame never made durable starts a torn tail (`Some(offset)`);
/// anything else is corruption.
fn judge_bad_frame(
    path: &Path,
    bytes: &[u8],
    offset: usize,
    position: Position,
    next_seq: u64,
    reason: String,
) -> Result<Option<u64>> {
    if bytes[offset..].iter().all(|byte| *byte == 0) {
        return Ok(None);
    }
    if position == Position::Sealed {
        return Err(Error::corruption(path, offset as u64, reason));
    }
    if let Some(proof) = find_durable_proof(bytes, offset + 1, next_seq) {
        return Err(Error::corruption(
            path,
            offset as u64,
            format!("{reason}; {proof}"),
        ));
    }
    Ok(Some(offset as u64))
}

/// Where a segment's header shows that it belongs to another store than the log's first
/// segment (`store_id`: what that one says), and why.
pub(crate) fn foreign_store_reason(found: Option<u64>, store_id: Option<u64>) -> (u64, String) {
    let first_segment = segment_file_name(1);
    match (found, store_id) {
        (Some(found), Some(store_id)) => (
            codec::STORE_ID_OFFSET as u64,
            format!(
                "segment belongs to another store: its store id is {found:#018x}, but the \
                 store's first segment {first_segment} has {store_id:#018x}"
            ),
        ),
        (None, Some(store_id)) => (
            codec::VERSION_OFFSET as u64,
            format!(
                "segment belongs to another store: it is of format version 1, without a store \
                 id, but the store's first segment {first_segment} has store id {store_id:#018x}"
            ),
        ),
        (Some(found), None) => (
            codec::VERSION_OFFSET as u64,
            format!(
                "segment belongs to another store: it has store id {found:#018x}, but the \
                 store's first segment {first_segment} is of format version 1, without one"
            ),
        ),
        (None, None) => unreachable!("the ids are equal"),
    }
}

/// Reads, checks and resolves the frame at the start of `bytes`.
#[inline(always)]
fn next_frame<'a>(
    bytes: &'a [u8],
    cursor: &mut FrameCursor,
    expected_seq: u64,
    checksums: Checksums,
) -> Result<(Frame<'a>, usize), String> {
    let raw = match checksums {
        Checksums::Verify => codec::read_frame(bytes)?,
        Checksums::Deferred => {
            let raw = codec::read_frame_unverified(bytes)?;
            // Close markers never reach the fold, so they are checked here.
            if raw.is_close_marker() && !codec::checksum_ok(&bytes[..raw.frame_bytes]) {
                return Err(codec::read_frame(bytes).expect_err("the checksum fails"));
            }
            raw
        }
    };
    // A close marker repeats the seq of the event before it.
    let wanted_seq = if raw.is_close_marker() {
        expected_seq - 1
    } else {
        expected_seq
    };
    if raw.seq() != wanted_seq {
        return Err(format!(
            "frame has seq {}, expected {wanted_seq}",
            raw.seq()
        ));
    }
    let frame = codec::resolve(cursor, &raw)?;
    Ok((frame, raw.frame_bytes))
}

/// When a segment's replay is split in chunks, and how large they are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    pub segment_bytes_min: usize,
    pub chunk_bytes: usize,
}

impl Split {
    const DEFAULT: Split = Split {
        segment_bytes_min: SPLIT_REPLAY_BYTES_MIN,
        chunk_bytes: SPLIT_CHUNK_BYTES,
    };
}

/// Where a split replay's chunks begin: frame boundaries about `chunk_bytes` apart,
/// found by following the frames' length prefixes from `first_frame`, up to where a length is
/// implausible (the segment is damaged there, or ends). The first chunk starts at
/// `first_frame`.
fn chunk_boundaries(bytes: &[u8], first_frame: usize, chunk_bytes: usize) -> Vec<usize> {
    let mut boundaries = vec![first_frame];
    let mut offset = first_frame;
    let mut chunk_start = first_frame;
    while offset < bytes.len() {
        let Some(frame_bytes) = codec::frame_len(&bytes[offset..]) else {
            break;
        };
        offset += frame_bytes;
        if offset - chunk_start >= chunk_bytes {
            boundaries.push(offset);
            chunk_start = offset;
        }
    }
    if boundaries.last() != Some(&offset) {
        boundaries.push(offset);
    }
    boundaries
}

/// The chunks of a split replay that a second thread replays ahead (every other one), handed
/// over in order; buffers come back for reuse.
struct Speculation<'a> {
    chunks: Option<mpsc::Receiver<Option<Speculated<'a>>>>,
    /// Where each chunk replayed ahead starts, the next one first.
    starts: std::iter::Peekable<std::vec::IntoIter<usize>>,
    spare: Option<mpsc::SyncSender<Vec<(LoggedEvent<'a>, usize, usize)>>>,
}

impl<'a> Speculation<'a> {
    /// Starts replaying every second chunk of `bytes` (those starting at `boundaries[1]`,
    /// `boundaries[3]`, …) on `scope`.
    fn spawn<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        bytes: &'a [u8],
        boundaries: &'scope [usize],
    ) -> Speculation<'a>
    where
        'a: 'scope,
    {
        let starts: Vec<usize> = boundaries
            .windows(2)
            .skip(1)
            .step_by(2)
            .map(|pair| pair[0])
            .collect();
        if starts.is_empty() {
            return Speculation {
                chunks: None,
                starts: Vec::new().into_iter().peekable(),
                spare: None,
            };
        }
        let (sender, receiver) = mpsc::sync_channel(1);
        let (spare_sender, spare_receiver) = mpsc::sync_channel::<Vec<_>>(2);
        scope.spawn(move || {
            for pair in boundaries.windows(2).skip(1).step_by(2) {
                let events = spare_receiver.try_recv().unwrap_or_default();
                let chunk = speculate(bytes, pair[0], pair[1], events);
                if sender.send(chunk).is_err() {
                    return; // the replay is over
                }
            }
        });
        Speculation {
            chunks: Some(receiver),
            starts: starts.into_iter().peekable(),
            spare: Some(spare_sender),
        }
    }

    /// The chunk replayed ahead from `offset`, if one starts there and its replay succeeded;
    /// waits for the second thread to finish it.
    fn take(&mut self, offset: usize) -> Option<Speculated<'a>> {
        if self.starts.peek() != Some(&offset) {
            return None;
        }
        self.starts.next();
        self.chunks.as_ref()?.recv().ok().flatten()
    }

    /// Hands a folded chunk's buffer back to be filled again.
    fn recycle(&self, chunk: Speculated<'a>) {
        if let Some(spare) = &self.spare {
            let mut events = chunk.events;
            events.clear();
            let _ = spare.try_send(events);
        }
    }
}

/// Message ids the second half of a split replay counts from before it knows the real ones:
/// far above any id a log reaches, and far below where counting on would overflow.
const SPECULATIVE_MESSAGE_ID: u64 = 1 << 62;

/// The second half of a segment, replayed from `from` without the state the first half leaves
/// there (message ids and times counted from [`FrameCursor::speculative`]), its events kept
/// for the first half to fold once it knows that state.
struct Speculated<'a> {
    first_seq: u64,
    /// Where the chunk ends (a frame boundary).
    chunk_end: usize,
    start: FrameCursor,
    end: FrameCursor,
    /// Each event, with its frame's offset and size.
    events: Vec<(LoggedEvent<'a>, usize, usize)>,
    next_seq: u64,
    frame_count: u64,
    /// Where the chunk's last frame starts (meaningful when `frame_count > 0`).
    last_frame_start: usize,
    ends_with_close_marker: bool,
    /// Lowest and highest event time and appended time reached, counted from 0.
    at_range: (i64, i64),
    appended_range: (i64, i64),
    /// The lowest message id a report (delivered, opened, action, failed) names.
    lowest_report_id: Option<u64>,
}

/// Replays `bytes[from..to]` (frame boundaries), every frame checked as [`next_frame`]
/// checks it, into `events`; `None` when any frame fails (the replay then goes through that
/// stretch itself, deciding what the failure means).
fn speculate<'a>(
    bytes: &'a [u8],
    from: usize,
    to: usize,
    events: Vec<(LoggedEvent<'a>, usize, usize)>,
) -> Option<Speculated<'a>> {
    let (first_seq, _) = codec::peek_frame_seqs(&bytes[from..])?;
    let start = FrameCursor::speculative(SPECULATIVE_MESSAGE_ID);
    let mut speculated = Speculated {
        first_seq,
        start,
        end: start,
        events,
        chunk_end: to,
        next_seq: first_seq,
        frame_count: 0,
        last_frame_start: from,
        ends_with_close_marker: false,
        at_range: (0, 0),
        appended_range: (0, 0),
        lowest_report_id: None,
    };
    let mut offset = from;
    while offset < to {
        let (frame, frame_bytes) = next_frame(
            &bytes[offset..],
            &mut speculated.end,
            speculated.next_seq,
            Checksums::Verify,
        )
        .ok()?;
        match frame {
            Frame::Event(logged) => {
                if !matches!(logged.event, Event::MessageSent { .. })
                    && let Some(message_id) = logged.event.message_id()
                {
                    let lowest = speculated.lowest_report_id.get_or_insert(message_id.0);
                    *lowest = (*lowest).min(message_id.0);
                }
                speculated.events.push((logged, offset, frame_bytes));
                speculated.next_seq = speculated.next_seq.checked_add(1)?;
                speculated.ends_with_close_marker = false;
            }
            Frame::Closed { .. } => speculated.ends_with_close_marker = true,
        }
        let (at_ms, appended_ms) = speculated.end.times();
        let widen = |range: &mut (i64, i64), ms: i64| *range = (range.0.min(ms), range.1.max(ms));
        widen(&mut speculated.at_range, at_ms);
        widen(&mut speculated.appended_range, appended_ms);
        speculated.frame_count += 1;
        speculated.last_frame_start = offset;
        offset += frame_bytes;
    }
    Some(speculated)
}

/// How a second half's events and end state become the real ones.
struct Rebase {
    cursor: FrameCursor,
    message_id_shift: u64,
    at_shift: i64,
    appended_shift: i64,
}

impl Speculated<'_> {
    /// Whether the second half, replayed from the real state the first half reached (`cursor`,
    /// `next_seq`), passes every check it passed from the speculative one; then how to move its
    /// events there. Only message ids and times depend on that state: ids must stay at least 1
    /// for reports (a report names a message sent before it) and representable, times in range.
    fn fits(&self, cursor: &FrameCursor, next_seq: u64) -> Option<Rebase> {
        if self.first_seq != next_seq {
            return None;
        }
        let id_shift = i128::from(cursor.next_message_id) - i128::from(SPECULATIVE_MESSAGE_ID);
        if self
            .lowest_report_id
            .is_some_and(|lowest| i128::from(lowest) + id_shift < 1)
            || i128::from(self.end.next_message_id) + id_shift > i128::from(u64::MAX)
        {
            return None;
        }
        let (at_base, appended_base) = cursor.times();
        let in_range = |base: i64, (low, high): (i64, i64)| {
            codec::time_in_range(i128::from(base) + i128::from(low))
                && codec::time_in_range(i128::from(base) + i128::from(high))
        };
        if !in_range(at_base, self.at_range) || !in_range(appended_base, self.appended_range) {
            return None;
        }
        Some(Rebase {
            cursor: self.end.rebase(&self.start, cursor),
            message_id_shift: cursor.next_message_id.wrapping_sub(SPECULATIVE_MESSAGE_ID),
            at_shift: at_base,
            appended_shift: appended_base,
        })
    }
}

impl Rebase {
    /// Folds a second half's events as the real state makes them.
    fn fold_events<'a>(
        &self,
        bytes: &'a [u8],
        chunk: &Speculated<'a>,
        fold: &mut dyn FnMut(&LoggedEvent<'a>, &'a [u8]),
    ) {
        for (logged, frame_offset, frame_bytes) in &chunk.events {
            let frame = &bytes[*frame_offset..frame_offset + frame_bytes];
            fold(&self.event(logged), frame);
        }
    }

    /// A second-half event as the real state makes it.
    fn event<'a>(&self, logged: &LoggedEvent<'a>) -> LoggedEvent<'a> {
        let mut event = logged.event;
        match &mut event {
            Event::MessageSent {
                message_id, at_ms, ..
            }
            | Event::MessageDelivered { message_id, at_ms }
            | Event::MessageOpened { message_id, at_ms }
            | Event::UserAction {
                message_id, at_ms, ..
            }
            | Event::MessageFailed {
                message_id, at_ms, ..
            } => {
                message_id.0 = message_id.0.wrapping_add(self.message_id_shift);
                *at_ms += self.at_shift;
            }
            Event::FinancialOutcome { at_ms, .. } | Event::BudgetSet { at_ms, .. } => {
                *at_ms += self.at_shift;
            }
        }
        LoggedEvent {
            appended_ms: logged.appended_ms + self.appended_shift,
            event,
            ..*logged
        }
    }
}

/// Looks at every offset from `first_offset` on for a valid frame whose durable_seq shows that
/// `failed_seq` had been durable; says which one, if any.
fn find_durable_proof(bytes: &[u8], first_offset: usize, failed_seq: u64) -> Option<String> {
    (first_offset..bytes.len()).find_map(|position| {
        // Most offsets fail the cheap look at the length and the first two fields; only the
        // few that would prove something are checksummed and decoded.
        let (seq, durable_seq) = codec::peek_frame_seqs(&bytes[position..])?;
        if seq < failed_seq || durable_seq? < failed_seq {
            return None;
        }
        let raw = codec::read_frame(&bytes[position..]).ok()?;
        debug_assert_eq!((raw.seq(), raw.durable_seq()), (seq, durable_seq));
        Some(format!(
            "the valid frame at offset {position} (seq {seq}) records seq {} as durable",
            durable_seq?
        ))
    })
}

/// Copies the torn tail byte for byte to `quarantine/<segment>.<offset>.tail` and makes the
/// copy durable. Never overwrites an earlier copy; a copy that fails is removed, so every file
/// in `quarantine/` is a whole tail.
fn quarantine_tail(dir: &Path, torn: &TornTail) -> Result<PathBuf> {
    let quarantine_dir = dir.join(QUARANTINE_DIRECTORY);
    create_directory(&quarantine_dir)?;
    let mut source = open_no_follow(OpenOptions::new().read(true), &torn.path)?;
    source
        .seek(SeekFrom::Start(torn.offset))
        .map_err(|error| Error::io(&torn.path, error))?;
    let segment_name = file_name_of(&torn.path);
    let base_name = format!("{segment_name}.{}.tail", torn.offset);
    let mut attempt = 0;
    let (mut copy, copy_path) = loop {
        let path = quarantine_dir.join(numbered_name(&base_name, attempt));
        match open_no_follow(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE),
            &path,
        ) {
            Ok(file) => break (file, path),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                attempt += 1
            }
            Err(error) => return Err(error),
        }
    };
    let mut write_copy = || -> Result<()> {
        let copied =
            io::copy(&mut source, &mut copy).map_err(|error| Error::io(&copy_path, error))?;
        assert_eq!(
            copied,
            torn.file_len - torn.offset,
            "the segment changed under replay"
        );
        copy.sync_all()
            .map_err(|error| Error::io(&copy_path, error))?;
        sync_directory(&quarantine_dir)?;
        sync_directory(dir)
    };
    if let Err(error) = write_copy() {
        // A partial copy (a full disk, a failed read) would pass for a tail and take the name a
        // later open gives the whole one. The first error is the one to report.
        drop(copy);
        let _ = std::fs::remove_file(&copy_path);
        let _ = sync_directory(&quarantine_dir);
        return Err(error);
    }
    Ok(copy_path)
}

/// Cuts the quarantined tail off its segment; a segment without a whole header goes entirely.
fn cut_tail(dir: &Path, torn: &TornTail) -> Result<()> {
    if torn.offset == 0 {
        std::fs::remove_file(&torn.path).map_err(|error| Error::io(&torn.path, error))?;
        return sync_directory(dir);
    }
    let file = open_no_follow(OpenOptions::new().write(true), &torn.path)?;
    file.set_len(torn.offset)
        .map_err(|error| Error::io(&torn.path, error))?;
    file.sync_all()
        .map_err(|error| Error::io(&torn.path, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Channel, Options, Store, SyncPolicy};

    /// Replays one segment's bytes, split in chunks of `chunk_bytes` (or not), as the last or
    /// a sealed segment: every event folded, and how it ended (or the error).
    fn replay_bytes(
        bytes: &[u8],
        position: Position,
        split: Option<Split>,
    ) -> (Vec<String>, String) {
        let header = SegmentHeader::decode(bytes).expect("the header is intact");
        let expected = Expected {
            first_seq: header.first_seq,
            first_message_id: header.first_message_id,
            store_id: None,
        };
        let mut events = Vec::new();
        let end = replay_segment_split(
            Path::new("segment.log"),
            bytes,
            position,
            expected,
            None,
            Checksums::Verify,
            split,
            &mut |logged, frame| events.push(format!("{logged:?} {}", frame.len())),
        );
        let end = match end {
            Ok(end) => format!(
                "{:?} {} {} {} {:?} {}",
                end.cursor,
                end.events,
                end.frame_count,
                end.end,
                end.torn_offset,
                end.ends_with_close_marker
            ),
            Err(error) => error.to_string(),
        };
        (events, end)
    }

    #[test]
    fn a_split_replay_folds_and_ends_exactly_as_one_thread_also_on_damaged_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        };
        let at = chrono::DateTime::from_timestamp_millis(1_735_722_000_000).unwrap();
        // Three writers one after another: close markers in the middle, every kind of event.
        for round in 0..3u64 {
            let store = Store::open_with(dir.path(), options.clone()).unwrap();
            for i in 0..400u64 {
                let at = at + chrono::Duration::minutes((round * 400 + i) as i64);
                let message = store
                    .track_message_sent_at(
                        i % 7 + 1,
                        Channel::ALL[(i % 4) as usize],
                        "low_balance",
                        0.01,
                        at,
                    )
                    .unwrap();
                if i % 2 == 0 {
                    store.track_message_delivered(message.id, Some(at)).unwrap();
                }
                if i % 5 == 0 {
                    store
                        .track_user_action(message.id, "clicked_link", Some(at))
                        .unwrap();
                }
                if i % 11 == 0 {
                    store
                        .track_message_failed(message.id, "bounced", Some(at))
                        .unwrap();
                    store
                        .track_financial_outcome_at(i % 7 + 1, "bill_paid_on_time", -2.5, at)
                        .unwrap();
                }
            }
            store.close().unwrap();
        }
        let path = dir.path().join(segment_file_name(1));
        let clean = std::fs::read(&path).unwrap();
        let split = |chunk_bytes| {
            Some(Split {
                segment_bytes_min: 0,
                chunk_bytes,
            })
        };
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |below: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % below as u64) as usize
        };
        for case in 0..120 {
            let mut bytes = clean.clone();
            match case % 4 {
                0 if case > 0 => {
                    let offset =
                        SEGMENT_HEADER_V2_BYTES + next(bytes.len() - SEGMENT_HEADER_V2_BYTES);
                    bytes[offset] ^= 1 << next(8);
                }
                1 => bytes.truncate(
                    SEGMENT_HEADER_V2_BYTES + next(bytes.len() - SEGMENT_HEADER_V2_BYTES),
                ),
                2 => {
                    let start =
                        SEGMENT_HEADER_V2_BYTES + next(bytes.len() - SEGMENT_HEADER_V2_BYTES);
                    bytes[start..].fill(0);
                }
                _ => {}
            }
            for position in [Position::Last, Position::Sealed] {
                let one_thread = replay_bytes(&bytes, position, None);
                for chunk_bytes in [64, 700, 4096] {
                    assert_eq!(
                        replay_bytes(&bytes, position, split(chunk_bytes)),
                        one_thread,
                        "case {case}, {position:?}, chunks of {chunk_bytes} bytes"
                    );
                }
            }
        }
    }

    #[test]
    fn a_pipelined_replay_folds_and_ends_as_one_thread_whichever_thread_verifies_the_frames() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        };
        let at = chrono::DateTime::from_timestamp_millis(1_735_722_000_000).unwrap();
        let store = Store::open_with(dir.path(), options).unwrap();
        for i in 0..60_000u64 {
            let at = at + chrono::Duration::seconds(i as i64);
            let channel = Channel::ALL[(i % 4) as usize];
            let message = store
                .track_message_sent_at(i % 97 + 1, channel, "low_balance", 0.01, at)
                .unwrap();
            if i % 3 == 0 {
                store.track_message_delivered(message.id, Some(at)).unwrap();
            }
        }
        store.close().unwrap();
        let path = dir.path().join(segment_file_name(1));
        let clean = std::fs::read(&path).unwrap();
        assert!(clean.len() > PIPELINED_REPLAY_BYTES_MIN, "{}", clean.len());
        let ended = |result: Result<Replayed>| match result {
            Ok(replayed) => format!("{:?}", replayed.report),
            Err(error) => error.to_string(),
        };
        // Intact, then a bit flipped in a frame near the end (in a batch sent once the folding
        // thread is behind, when the fold is slow): in some frames the flip leaves the frame
        // decoding, so that only its checksum fails.
        let flips = (0..12).map(|k| Some(clean.len() * 8 / 10 + k * 997));
        for flipped in std::iter::once(None).chain(flips) {
            let mut bytes = clean.clone();
            if let Some(offset) = flipped {
                bytes[offset] ^= 0x01;
            }
            std::fs::write(&path, &bytes).unwrap();
            let mut one_thread = Vec::new();
            let replayed = replay(dir.path(), Mode::ReadOnly, &mut |logged| {
                one_thread.push(format!("{logged:?}"))
            });
            let one_thread = (one_thread, ended(replayed));
            for slow in [false, true] {
                let idled = std::sync::atomic::AtomicUsize::new(0);
                let pipelined = replay_parallel(
                    dir.path(),
                    Mode::ReadOnly,
                    Vec::new,
                    |events: &mut Vec<String>, logged| {
                        if slow && events.len().is_multiple_of(1000) {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        events.push(format!("{logged:?}"));
                    },
                    |_, _| 0,
                    || {
                        idled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    },
                );
                let pipelined = match pipelined {
                    Ok((events, replayed)) => (events, ended(Ok(replayed))),
                    Err(error) => (one_thread.0.clone(), ended(Err(error))),
                };
                assert!(pipelined == one_thread, "flipped {flipped:?}, slow {slow}");
                if slow {
                    assert!(idled.into_inner() > 0, "the folding thread was behind");
                }
            }
        }
    }

    /// A writer's replay hashes the frames of each segment it replays, as a snapshot covers
    /// them, from the log's start or from a position; a read-only replay, which writes no
    /// snapshot, hashes none, so that a read-only open or refresh resumed far into a long
    /// segment reads none of the bytes before its position.
    #[test]
    fn only_a_writer_s_replay_hashes_the_segments_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            sync: SyncPolicy::Never,
            segment_bytes: 64 * 1024,
            ..Options::default()
        };
        let store = Store::open_with(dir.path(), options).unwrap();
        for user in 0..40_000u64 {
            store
                .track_message_sent(user % 97 + 1, Channel::Sms, "low_balance", 0.01)
                .unwrap();
        }
        store.close().unwrap();
        let segments = crate::log::segment::list_segments(dir.path()).unwrap();
        assert!(segments.len() > 2, "{} segments", segments.len());
        let expected: Vec<CoveredSegment> = segments
            .iter()
            .map(|(first_seq, path)| {
                let bytes = std::fs::read(path).unwrap();
                let start = SegmentHeader::decode(&bytes).unwrap().len_bytes();
                CoveredSegment {
                    first_seq: *first_seq,
                    end: bytes.len() as u64,
                    crc: crc32fast::hash(&bytes[start..]),
                }
            })
            .collect();
        let whole = |mode| replay(dir.path(), mode, &mut |_| {}).unwrap();
        assert_eq!(whole(Mode::Write).covered, expected);
        assert_eq!(whole(Mode::ReadOnly).covered, []);
        let pipelined = |mode| replay_parallel(dir.path(), mode, || (), |_, _| {}, |_, _| 0, || {});
        assert_eq!(pipelined(Mode::Write).unwrap().1.covered, expected);
        assert_eq!(pipelined(Mode::ReadOnly).unwrap().1.covered, []);

        // From the log's end, as an open after a snapshot or a refresh resumes: a writer still
        // hashes the last segment's frames, up to there.
        let replayed = whole(Mode::ReadOnly);
        let position = replayed.tail.as_ref().unwrap().position(replayed.last_seq);
        let from = |mode| replay_from(dir.path(), mode, &position, &mut |_| {}).unwrap();
        assert_eq!(from(Mode::Write).covered, expected[expected.len() - 1..]);
        assert_eq!(from(Mode::ReadOnly).covered, []);
    }

    /// The files in the store's quarantine directory.
    fn quarantined_files(dir: &Path) -> Vec<PathBuf> {
        match std::fs::read_dir(dir.join(QUARANTINE_DIRECTORY)) {
            Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn a_failed_quarantine_copy_leaves_no_file_behind_and_the_real_tail_takes_the_first_name() {
        let dir = tempfile::tempdir().unwrap();
        let name = segment_file_name(1);
        // A directory in the segment's place opens, but reading it fails during the copy.
        let unreadable = dir.path().join("unreadable").join(&name);
        std::fs::create_dir_all(&unreadable).unwrap();
        let missing = dir.path().join("missing").join(&name);
        for source in [&unreadable, &missing] {
            let torn = TornTail {
                path: source.clone(),
                offset: 32,
                file_len: 100,
            };
            let error = quarantine_tail(dir.path(), &torn).expect_err("the copy fails");
            assert!(matches!(error, Error::Io { .. }), "{error}");
            assert_eq!(
                quarantined_files(dir.path()),
                Vec::<PathBuf>::new(),
                "{}",
                source.display()
            );
        }

        let segment = dir.path().join(&name);
        std::fs::write(&segment, [7u8; 100]).unwrap();
        let torn = TornTail {
            path: segment,
            offset: 32,
            file_len: 100,
        };
        let copy = quarantine_tail(dir.path(), &torn).unwrap();
        let expected = dir
            .path()
            .join(QUARANTINE_DIRECTORY)
            .join(format!("{name}.32.tail"));
        assert_eq!(copy, expected);
        assert_eq!(std::fs::read(&copy).unwrap(), [7u8; 68]);
        assert_eq!(quarantined_files(dir.path()), vec![expected]);
    }

    #[test]
    fn a_torn_tail_that_is_a_symlink_is_neither_copied_nor_cut() {
        let temp = tempfile::tempdir().unwrap();
        let outside = temp.path().join("outside.txt");
        let precious = [7u8; 100];
        std::fs::write(&outside, precious).unwrap();
        let dir = temp.path().join("store");
        create_directory(&dir).unwrap();
        let segment = dir.join(segment_file_name(1));
        std::os::unix::fs::symlink(&outside, &segment).unwrap();
        let torn = TornTail {
            path: segment.clone(),
            offset: 32,
            file_len: 100,
        };
        for (what, result) in [
            ("quarantine_tail", quarantine_tail(&dir, &torn).map(drop)),
            ("cut_tail", cut_tail(&dir, &torn)),
        ] {
            match result {
                Err(Error::Io { path, source }) => {
                    assert_eq!(path, segment, "{what}");
                    assert!(source.to_string().contains("a symbolic link"), "{what}");
                }
                other => panic!("{what}: expected an I/O error naming the segment, got {other:?}"),
            }
        }
        assert_eq!(std::fs::read(&outside).unwrap(), precious);
        assert_eq!(quarantined_files(&dir), Vec::<PathBuf>::new());
    }
}
