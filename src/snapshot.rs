//! Snapshots: the folded facts written to a file, so that an open replays only the log after
//! them. A snapshot is a cache and the log is the truth: a snapshot is used only when its
//! checksums hold, its version is known and the log still holds the frame it ends at; any other
//! is reported and ignored, and the open replays the whole log. docs/FORMAT.md, "Snapshots",
//! specifies the file.
//!
//! A snapshot is written to a temporary file, fsynced, then renamed into place and the
//! directory fsynced: a crash while writing leaves a temporary file, which is never read.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};

use crate::codec::{self, FrameCursor, SEAL_SLOT_OFFSET, SegmentHeader};
use crate::error::{Error, Result};
use crate::limits::{FRAME_BODY_BYTES_MAX, FRAME_PREFIX_BYTES};
use crate::log::segment::{
    FILE_MODE, NOT_OWN_DIRECTORY, create_directory, file_name_of, list_segments, map_segment,
    not_own_directory, open_no_follow, read_header_bytes, segment_file_name, sync_directory,
};
use crate::log::summary::{LogSummary, count_through};
use crate::log::{CoveredSegment, LogPosition, SharedLog};
use crate::projection::attribution::Credits;
use crate::projection::message_table::{CHUNK_MESSAGES, ChunkScan, MessageTable, ReadyChunks};
use crate::projection::outcome::OutcomeState;
use crate::projection::rollup::MessageRollup;
use crate::projection::status::MessageState;
use crate::projection::time_index::MappedReading;
use crate::projection::totals::{MessageTotals, ScannedTotals};
use crate::projection::user_lists::{ListsInPlace, ReadUsers, UserEntries, UserTable};
use crate::projection::{DecodedFacts, DecodedUsers, Facts, Projection, capture};

/// Name of the directory, inside the store, that holds the snapshots.
pub const SNAPSHOT_DIRECTORY: &str = "snapshots";

/// First eight bytes of every snapshot file.
const MAGIC: [u8; 8] = *b"CMLOGSNP";

/// The snapshot format this build writes: version 5, whose bound ends with the log's summary
/// and whose body ends with the indexes part and then the facts' directory, which says where
/// the message halfway begins.
const FORMAT_VERSION: u32 = 5;
/// The oldest format whose bound ends with the log's summary (versions 1 and 2 hold none).
const FORMAT_VERSION_SUMMARY: u32 = 3;
/// The oldest format whose body ends with the facts' directory ([`FactsDirectory`]).
const FORMAT_VERSION_DIRECTORY: u32 = 4;
/// The oldest format whose facts' directory says where the message halfway begins.
const FORMAT_VERSION_SPLIT: u32 = 5;
/// The oldest format this build reads: version 1, whose body ends with the facts.
const FORMAT_VERSION_FACTS_ONLY: u32 = 1;

// The header's fields, each starting where the one before it ends (docs/FORMAT.md).
const VERSION_OFFSET: usize = MAGIC.len();
const BODY_LEN_OFFSET: usize = VERSION_OFFSET + 4;
const BODY_CRC_OFFSET: usize = BODY_LEN_OFFSET + 8;
const HEADER_CRC_OFFSET: usize = BODY_CRC_OFFSET + 4;
/// Bytes of the header; the body follows.
const HEADER_BYTES: usize = HEADER_CRC_OFFSET + 4;

const SNAPSHOT_PREFIX: &str = "snapshot-";
const TEMPORARY_SUFFIX: &str = ".tmp";
const SEQ_DIGITS: usize = 20;

/// Snapshots kept: the newest, and the one before it.
const SNAPSHOTS_KEPT: usize = 2;

/// Bytes buffered while a body is written, and read at a time while the covered log is checked.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Bytes of a mapped snapshot read between two calls that give its pages back to the OS.
const RELEASE_BYTES: usize = 8 << 20;

/// Bytes of a snapshot written between two syncs of its file ([`SyncedAsWritten`]): at a
/// disk's few hundred MB/s, about a tenth of a second of writing.
const SNAPSHOT_SYNC_BYTES: u64 = 32 << 20;

/// `snapshot-00000000000000000042`: the sequence number of the last event it covers,
/// zero-padded to 20 digits.
pub(crate) fn snapshot_file_name(last_seq: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{last_seq:0SEQ_DIGITS$}")
}

/// The last sequence number a snapshot file's name gives, or `None` if `name` is not a
/// snapshot's (a temporary file is not).
pub(crate) fn snapshot_file_sequence(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SNAPSHOT_PREFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `name` is a snapshot file's in `snapshots/`, or that of one being written (or left
/// by a crash while it was): the files a store's snapshot writing makes there.
///
/// ```
/// assert!(commlog::is_snapshot_file_name("snapshot-00000000000000412700"));
/// assert!(commlog::is_snapshot_file_name("snapshot-00000000000000412700.tmp"));
/// assert!(!commlog::is_snapshot_file_name("snapshot-412700"));
/// assert!(!commlog::is_snapshot_file_name("notes.txt"));
/// ```
pub fn is_snapshot_file_name(name: &str) -> bool {
    let name = name.strip_suffix(TEMPORARY_SUFFIX).unwrap_or(name);
    snapshot_file_sequence(name).is_some()
}

/// A snapshot an open found and did not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IgnoredSnapshot {
    /// The snapshot file (or the snapshot directory, if it could not be listed).
    pub path: PathBuf,
    /// Why it was not used.
    pub reason: String,
}

/// A snapshot read and checked.
pub(crate) struct Loaded {
    pub path: PathBuf,
    pub position: LogPosition,
    /// The segments before the position's, as the snapshot covers them (checked).
    pub covered_before: Vec<CoveredSegment>,
    pub facts: Facts,
    /// The indexes it held that fit the facts and the open's attribution window.
    pub indexes: Indexes,
    /// The messages' totals over all time, counted as the records were checked when they
    /// were read on demand (`None`: decoded whole, or `Options::count_totals` false).
    pub message_totals: Option<MessageTotals>,
    /// The log's summary up to the position; `Err(last_seq)` for a snapshot of a version that
    /// holds none.
    pub summary: std::result::Result<LogSummary, u64>,
    /// Whether the snapshot is of an older format version than this build writes.
    pub older_version: bool,
}

/// The indexes over the facts a snapshot may hold (docs/FORMAT.md, "Indexes").
#[derive(Default)]
pub(crate) struct Indexes {
    pub rollup: Option<MessageRollup>,
    pub credits: Option<Credits>,
}

/// What a body holds before the facts: where in the log they end, every segment up to there
/// (the position's own up to it) with the checksum of its frames, and what the log holds up to
/// there. Field order is the byte order.
#[derive(bincode::Encode)]
struct Bound {
    position: LogPosition,
    covered: Vec<CoveredSegment>,
    summary: LogSummary,
}

/// Bytes of a covered segment: its first seq, its end, its crc.
const COVERED_SEGMENT_BYTES: usize = 8 + 8 + 4;

impl Bound {
    /// Reads a bound as `Bound`'s fields lay it out, its covered segments refused if the bytes
    /// left cannot hold them; versions 1 and 2 end it with the covered segments, with no
    /// summary (`Err` of the position's last seq, which the events are then counted up to).
    fn decode(
        body: &mut codec::SnapshotReader,
        version: u32,
    ) -> std::result::Result<(LogPosition, Vec<CoveredSegment>, SummaryOrLastSeq), String> {
        let position: LogPosition = body.decode()?;
        let covered = body.decode_list(COVERED_SEGMENT_BYTES, usize::MAX, |_| ())?;
        let summary = match version >= FORMAT_VERSION_SUMMARY {
            true => Ok(body.decode()?),
            false => Err(position.last_seq),
        };
        Ok((position, covered, summary))
    }
}

/// A snapshot's summary of the log, or (versions 1 and 2, which hold none) the last seq it
/// covers.
type SummaryOrLastSeq = std::result::Result<LogSummary, u64>;

/// A writer's snapshots: when the next one is due, and writing one while tracking calls go on.
pub(crate) struct Snapshots {
    dir: PathBuf,
    log: Arc<SharedLog>,
    projection: Arc<RwLock<Projection>>,
    /// The last seq the newest snapshot covers (0: none); held while one is written, so that
    /// one is written at a time.
    newest_seq: Mutex<u64>,
    /// Whether the newest snapshot is of an older format version (without the log's summary,
    /// or without the facts' directory): the close then writes one of this version however
    /// short the log after it.
    newest_is_older: AtomicBool,
    /// `Options::snapshot_every` (0: none but those asked for).
    every: u64,
    /// The log's last seq from which a snapshot is due in the background.
    due_seq: AtomicU64,
    /// Whether a snapshot written at close builds the indexes first: the store was opened from
    /// a snapshot with its indexes left unread (`Options::load_indexes` false).
    build_indexes_at_close: bool,
}

impl Snapshots {
    /// The snapshots of the store in `dir`, whose newest covers the log up to `newest_seq`.
    /// `newest_is_older`: that snapshot is of an older format version than this build writes.
    /// `build_indexes_at_close`: a snapshot written at close builds the indexes it holds.
    pub(crate) fn new(
        dir: &Path,
        log: Arc<SharedLog>,
        projection: Arc<RwLock<Projection>>,
        newest_seq: u64,
        newest_is_older: bool,
        every: u64,
        build_indexes_at_close: bool,
    ) -> Snapshots {
        let snapshots = Snapshots {
            dir: dir.to_path_buf(),
            log,
            projection,
            newest_seq: Mutex::new(newest_seq),
            newest_is_older: AtomicBool::new(newest_is_older),
            every,
            due_seq: AtomicU64::new(u64::MAX),
            build_indexes_at_close,
        };
        snapshots.plan(newest_seq);
        snapshots
    }

    /// Sets when the next background snapshot is due, after one covering `newest_seq`: once
    /// the log has grown by `every` events, and by half of what that one covers (so that the
    /// snapshots of a growing store cost a bounded share of its writes).
    fn plan(&self, newest_seq: u64) {
        let due = match self.every {
            0 => u64::MAX,
            every => newest_seq.saturating_add(every.max(newest_seq / 2)),
        };
        self.due_seq.store(due, Ordering::Relaxed);
    }

    /// Whether a background snapshot is due with the log's last seq at `last_seq`.
    pub(crate) fn is_due(&self, last_seq: u64) -> bool {
        last_seq >= self.due_seq.load(Ordering::Relaxed)
    }

    /// Writes a snapshot of the views now, if the log holds any event past the newest
    /// snapshot; returns its path. The views are captured at the log's end under the log's lock
    /// (which makes every frame before it handed to the OS) and written while tracking calls
    /// go on; the snapshot is written only once the log is durable up to it. It holds no
    /// indexes: copying them at the capture would hold up tracking calls.
    pub(crate) fn write(&self) -> Result<Option<PathBuf>> {
        self.write_when(|newest_seq| newest_seq.saturating_add(1), false)
    }

    /// Writes a snapshot at close, if the log holds past the newest snapshot `every` events, or
    /// an eighth of the events that snapshot covers and at least
    /// [`SNAPSHOT_AT_CLOSE_MIN`](crate::SNAPSHOT_AT_CLOSE_MIN): the tail every later
    /// open would replay otherwise; or whatever the log holds, if that snapshot is of an older
    /// format version, once any event follows it (an open of one this build writes is faster).
    /// `every` 0: none. No call runs any more, so it also holds the indexes that are built; a
    /// store opened from a snapshot with its indexes left unread builds them first, so that
    /// the next opens find them there as in the snapshot it opened.
    pub(crate) fn write_at_close(&self) -> Result<Option<PathBuf>> {
        let is_older = self.newest_is_older.load(Ordering::Relaxed);
        match self.every {
            0 => Ok(None),
            every => self.write_when(
                |newest_seq| {
                    let tail =
                        every.min((newest_seq / 8).max(crate::limits::SNAPSHOT_AT_CLOSE_MIN));
                    match is_older {
                        true => newest_seq,
                        false => newest_seq.saturating_add(tail),
                    }
                },
                true,
            ),
        }
    }

    /// Writes a snapshot if one is due in the background (a wake-up may come while the one
    /// it asked for is being written).
    pub(crate) fn write_if_due(&self) -> Result<Option<PathBuf>> {
        self.write_when(|_| self.due_seq.load(Ordering::Relaxed), false)
    }

    /// Writes a snapshot if the log's last seq has reached `from_seq(newest snapshot's)`;
    /// `at_close`: no call runs any more (see [`write_file`]).
    fn write_when(&self, from_seq: impl Fn(u64) -> u64, at_close: bool) -> Result<Option<PathBuf>> {
        let mut newest_seq = self.newest_seq.lock();
        let (position, covered, summary) = {
            let mut log = self.log.lock();
            log.check_poison()?;
            if log.last_seq() < from_seq(*newest_seq).max(newest_seq.saturating_add(1)) {
                return Ok(None);
            }
            if at_close && self.build_indexes_at_close {
                // Both at once on two threads when the store is large, then either left.
                let projection = self.projection.read();
                projection.build_indexes();
                projection.rollup();
                projection.credits();
            }
            log.write_buffer()?;
            let mut projection = self.projection.write();
            projection.begin_capture();
            (log.position(), log.covered(), projection.log_summary())
        };
        let written = self.log.sync_to(position.last_seq).and_then(|()| {
            let summary = completed_summary(&self.dir, &self.projection, summary)?;
            let bound = Bound {
                position,
                covered,
                summary,
            };
            write_file(&self.dir, bound, &self.projection, at_close)
        });
        let capture = self.projection.write().end_capture();
        drop(capture);
        match written {
            Ok(path) => {
                *newest_seq = position.last_seq;
                self.newest_is_older.store(false, Ordering::Relaxed);
                self.plan(position.last_seq);
                Ok(Some(path))
            }
            Err(error) => {
                // Tried again once the log has grown as much again.
                self.plan(position.last_seq);
                Err(error)
            }
        }
    }
}

/// `captured`, a projection's summary of the log and the last seq of the events it leaves out
/// (0: none), with those counted from the log in `dir` (a snapshot of a version without a
/// summary covered them); `projection` keeps them too, so that they are counted once.
pub(crate) fn completed_summary(
    dir: &Path,
    projection: &RwLock<Projection>,
    captured: (LogSummary, u64),
) -> Result<LogSummary> {
    let (summary, through) = captured;
    if through == 0 {
        return Ok(summary);
    }
    let missing = count_through(dir, through)?;
    projection.write().complete_log_summary(missing, through);
    Ok(missing.then(summary))
}

/// Writes a snapshot of the views captured in `projection`, which the log in `dir` holds
/// durably up to `bound`'s position, and removes all but the newest snapshots. Returns its
/// path. While calls may go on, the file is synced as it is written ([`SyncedAsWritten`]); at
/// close (`at_close`: no call runs any more), only at its end, and it holds the indexes if
/// none of the views changed since the capture.
fn write_file(
    dir: &Path,
    bound: Bound,
    projection: &RwLock<Projection>,
    at_close: bool,
) -> Result<PathBuf> {
    let position = bound.position;
    let directory = dir.join(SNAPSHOT_DIRECTORY);
    create_directory(&directory)?;
    let name = snapshot_file_name(position.last_seq);
    let path = directory.join(&name);
    let temporary = directory.join(format!("{name}{TEMPORARY_SUFFIX}"));
    assert_eq!(
        bound.covered.last().map(|last| (last.first_seq, last.end)),
        Some((position.segment_first_seq, position.end)),
        "the covered segments end at the position"
    );
    let file = open_no_follow(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE),
        &temporary,
    )?;
    // A snapshot that fails goes, so that a full disk keeps no half-written one holding space
    // until a later snapshot succeeds; removing it may fail too (the error is the write's).
    write_temporary(&file, &temporary, &bound, projection, at_close).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(|source| Error::io(&temporary, source))?;
    sync_directory(&directory)?;
    remove_older(&directory, position.last_seq)?;
    Ok(path)
}

/// Writes the snapshot of `bound` and `projection` to `file` (at `temporary`) and syncs it.
fn write_temporary(
    file: &File,
    temporary: &Path,
    bound: &Bound,
    projection: &RwLock<Projection>,
    at_close: bool,
) -> Result<()> {
    let io = |source| Error::io(temporary, source);
    let encode = |error: bincode::error::EncodeError| match error {
        bincode::error::EncodeError::Io { inner, .. } => Error::io(temporary, inner),
        other => Error::io(temporary, std::io::Error::other(other.to_string())),
    };
    let header = {
        let mut body = Checksummed::new(BufWriter::with_capacity(
            READ_BUFFER_BYTES,
            SyncedAsWritten::new(file, !at_close),
        ));
        body.inner.write_all(&[0; HEADER_BYTES]).map_err(io)?;
        codec::encode_snapshot_part(bound, &mut body).map_err(encode)?;
        let directory =
            capture::write_image(projection, &mut body, |body| body.bytes).map_err(encode)?;
        let indexes_at = body.bytes;
        capture::write_indexes(&projection.read(), at_close, &mut body).map_err(encode)?;
        let (split_index, split_at) = directory.split.expect("the writer splits the records");
        let trailer = [
            split_index as u64,
            split_at,
            directory.outcomes_at,
            directory.users_at,
            indexes_at,
        ];
        for offset in trailer {
            body.write_all(&offset.to_le_bytes()).map_err(io)?;
        }
        body.inner.flush().map_err(io)?;
        encode_header(body.bytes, body.hasher.clone().finalize())
    };
    file.write_all_at(&header, 0).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Removes temporary files, snapshots past `newest_seq` (the log, which ends there, no longer
/// holds what they cover: a repair cut it), and all but the `SNAPSHOTS_KEPT` newest up to it.
fn remove_older(directory: &Path, newest_seq: u64) -> Result<()> {
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(|source| Error::io(directory, source))? {
        let entry = entry.map_err(|source| Error::io(directory, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(TEMPORARY_SUFFIX) {
            removed.push(entry.path());
        } else if let Some(seq) = snapshot_file_sequence(&name) {
            match seq <= newest_seq {
                true => kept.push((seq, entry.path())),
                false => removed.push(entry.path()),
            }
        }
    }
    kept.sort_unstable_by(|a, b| b.cmp(a));
    removed.extend(kept.into_iter().skip(SNAPSHOTS_KEPT).map(|(_, path)| path));
    for path in &removed {
        std::fs::remove_file(path).map_err(|source| Error::io(path, source))?;
    }
    sync_directory(directory)
}

fn encode_header(body_len: u64, body_crc: u32) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[..VERSION_OFFSET].copy_from_slice(&MAGIC);
    header[VERSION_OFFSET..BODY_LEN_OFFSET].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[BODY_LEN_OFFSET..BODY_CRC_OFFSET].copy_from_slice(&body_len.to_le_bytes());
    header[BODY_CRC_OFFSET..HEADER_CRC_OFFSET].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header[..HEADER_CRC_OFFSET]);
    header[HEADER_CRC_OFFSET..].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// The newest snapshot in `dir` that passes every check, its facts given
/// `attribution_window_ms`, loaded as `options` say (`decode_on_demand`, `load_indexes`); each
/// one passed over is added to `ignored`, with the reason.
pub(crate) fn load_newest(
    dir: &Path,
    attribution_window_ms: i64,
    options: &crate::Options,
    ignored: &mut Vec<IgnoredSnapshot>,
) -> Option<Loaded> {
    let directory = dir.join(SNAPSHOT_DIRECTORY);
    // Nothing inside a store is followed: snapshots elsewhere are not this store's.
    if not_own_directory(&directory).is_some() {
        ignored.push(IgnoredSnapshot {
            path: directory,
            reason: NOT_OWN_DIRECTORY.to_string(),
        });
        return None;
    }
    let entries = match std::fs::read_dir(&directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            ignored.push(IgnoredSnapshot {
                path: directory,
                reason: format!("the snapshot directory cannot be listed: {error}"),
            });
            return None;
        }
    };
    let mut snapshots: Vec<(u64, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let seq = snapshot_file_sequence(entry.file_name().to_str()?)?;
            Some((seq, entry.path()))
        })
        .collect();
    snapshots.sort_unstable_by(|a, b| b.cmp(a));
    for (_, path) in snapshots {
        let loading = Loading {
            on_demand: options.decode_on_demand,
            indexes: options.load_indexes,
            sums_by_time: options.load_sums_by_time,
            count_totals: options.count_totals,
        };
        match load(dir, &path, attribution_window_ms, loading) {
            Ok(loaded) => return Some(loaded),
            Err(reason) => ignored.push(IgnoredSnapshot { path, reason }),
        }
    }
    None
}

/// How [`load`] reads a snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loading {
    /// Leave the messages' records and the users' lists in the mapped file until used
    /// (`Options::decode_on_demand`).
    pub on_demand: bool,
    /// Read the indexes part (`Options::load_indexes`).
    pub indexes: bool,
    /// Of the indexes, take the sums by time too (the message rollup, and the outcome credits'
    /// sums by time), rather than read past them (`Options::load_sums_by_time`).
    pub sums_by_time: bool,
    /// Count the messages' totals over all time as their records are read on demand
    /// (`Options::count_totals`).
    pub count_totals: bool,
}

/// Reads and checks the snapshot at `path`: its header, its body's checksum, the log position
/// it is bound to, that its facts fit together, and (if `loading` reads them) that its indexes
/// fit the facts; the credits are taken only if made under `attribution_window_ms`.
pub(crate) fn load(
    dir: &Path,
    path: &Path,
    attribution_window_ms: i64,
    loading: Loading,
) -> std::result::Result<Loaded, String> {
    let metadata = std::fs::symlink_metadata(path).map_err(|error| error.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".to_string());
    }
    let file = open_no_follow(OpenOptions::new().read(true), path).map_err(|e| e.to_string())?;
    let len = metadata.len();
    if len < HEADER_BYTES as u64 {
        return Err(format!(
            "header is short: the file holds {len} bytes, a header {HEADER_BYTES}"
        ));
    }
    let snapshot = Arc::new(MappedSnapshot {
        path: path.to_path_buf(),
        map: map_snapshot(&file)?,
    });
    let map = &snapshot.map;
    let (header, body) = map.split_at(HEADER_BYTES);
    let header: &[u8; HEADER_BYTES] = header.try_into().expect("split at HEADER_BYTES");
    let version = check_header(header, map.len() as u64)?;
    let body_crc = u32_at(header, BODY_CRC_OFFSET);
    let mismatch = |computed: u32| {
        (computed != body_crc).then(|| {
            format!("body checksum mismatch (stored {body_crc:#010x}, computed {computed:#010x})")
        })
    };
    // Decoded whole, the body is read twice, each pass giving back the pages it has read: the
    // checksum, then the decoding, which allocates what the facts need and must not start
    // before the checksum holds. Read on demand, every length is checked against the bytes left
    // before it sizes anything (check 7), so the checksum is taken as the body is read, each
    // part by the thread reading it (`Crcs`), and judged before anything read is used: where
    // the reading fails, the checksum is taken whole, and a mismatch is the reason given, as
    // it would be checked first.
    let crcs = loading.on_demand.then(Crcs::default);
    if crcs.is_none()
        && let Some(reason) = mismatch(checksum_on_two_threads(map, HEADER_BYTES))
    {
        return Err(reason);
    }
    let checked_first = |reason: String| match &crcs {
        Some(_) => mismatch(checksum_on_two_threads(map, HEADER_BYTES)).unwrap_or(reason),
        None => reason,
    };
    let whole_body = body;
    let BodyParts {
        facts_end,
        indexes: indexes_part,
        directory,
    } = split_body(body, version).map_err(checked_first)?;
    let mut body = codec::SnapshotReader::new(&body[..facts_end]);
    let (position, covered_segments, summary) =
        Bound::decode(&mut body, version).map_err(checked_first)?;
    check_position(dir, &position)
        .map_err(|reason| checked_first(format!("not the log's: {reason}")))?;
    // The newest snapshot is found by its name: one named for another seq than its bound's is
    // not what its name says.
    let named = (path.file_name().and_then(|name| name.to_str())).and_then(snapshot_file_sequence);
    if let Some(named) = named.filter(|&named| named != position.last_seq) {
        return Err(checked_first(format!(
            "named for seq {named}, it covers the log up to seq {}",
            position.last_seq
        )));
    }
    // Decoded whole, the facts are decoded here and then the indexes, so that the two do not
    // hold their pages and fresh memory at once, while another thread checks the log's frames
    // and then makes ready the memory of the messages' records still to decode. Only read
    // through (on demand), the facts, the longest part, are read on another thread (and the
    // users' lists, given a facts' directory, on a third, the messages' records from its
    // split on a fourth: `decode_facts`), while this one decodes the indexes (a new thread's
    // allocations cost more); then another thread checks the log's frames while this one
    // judges what was read (below).
    let ready = ReadyChunks::default();
    // Where the open takes the message rollup, its counts over all time answer the queries
    // that the totals would (`Projection::all_time_totals`): those are not counted. A rollup
    // that the open would take but that does not fit makes the snapshot ignored, so the
    // facts read here are never used without it. The option tag is checked where the indexes
    // are decoded.
    let takes_rollup = loading.indexes
        && loading.sums_by_time
        && indexes_part
            .as_ref()
            .is_some_and(|part| whole_body.get(part.start) == Some(&1));
    let count_totals = loading.count_totals && !takes_rollup;
    let mut decode_facts_part = || {
        // With a directory, the users' lists are read (and taken into the checksum) by a
        // thread of their own, and, past a split with many records after it, those records by
        // another: this one's checksum ends where the first of those begins.
        let ahead = records_ahead(
            directory,
            loading.indexes && loading.sums_by_time && indexes_part.is_some(),
        );
        let crc_end = match (ahead, directory) {
            (Some((_, split_at)), _) => split_at,
            (None, Some(directory)) => directory.users_at,
            (None, None) => facts_end,
        };
        let behind = ReadBehind::new(map, whole_body, (0, 0), crcs.is_some(), crc_end);
        let crc_at = |at| behind.crc_at(at);
        let decoded = decode_facts(
            &mut body,
            behind.every(),
            |read| behind.passed(read),
            match &crcs {
                Some(crcs) => {
                    Decoding::OnDemand(&snapshot, HEADER_BYTES, crcs, ahead, &crc_at, count_totals)
                }
                None => Decoding::Whole(&ready),
            },
            directory,
        );
        behind.done(crcs.as_ref());
        decoded.and_then(|decoded| match body.bytes_left() {
            0 => Ok(decoded),
            left => Err(format!("body has {left} bytes after its end")),
        })
    };
    let decode_indexes_part = || match &indexes_part {
        Some(part) if loading.indexes => {
            let start = HEADER_BYTES + part.start;
            let mut reader = codec::SnapshotReader::new(&whole_body[part.clone()]);
            let at = (part.start, start);
            let behind = ReadBehind::new(map, whole_body, at, crcs.is_some(), part.end);
            // Read on demand, the rollup's slices' items stay in the mapped file until used,
            // with how this reading hashed them.
            let crc_at = |file_at: usize| behind.crc_at(file_at - HEADER_BYTES);
            let mapped = loading.on_demand.then(|| MappedReading {
                snapshot: Arc::clone(&snapshot),
                crc_at: &crc_at,
            });
            let indexes = decode_indexes(
                &mut reader,
                behind.every(),
                (loading.sums_by_time, mapped),
                |read| behind.passed(part.start + read),
            );
            behind.give_back_to(part.end);
            behind.done(crcs.as_ref());
            indexes
        }
        // Not decoded, the indexes are still part of the checksum: taken here, beside the
        // facts' reading, rather than after it.
        Some(part) if crcs.is_some() => {
            let at = (part.start, HEADER_BYTES + part.start);
            let behind = ReadBehind::new(map, whole_body, at, true, part.end);
            pass_over(part.start..part.end, behind.every(), |read| {
                behind.passed(read)
            });
            behind.passed(part.end);
            behind.give_back_to(part.end);
            behind.done(crcs.as_ref());
            Ok(DecodedIndexes::default())
        }
        _ => Ok(DecodedIndexes::default()),
    };
    let check_covered_part = || {
        let covered = check_covered(dir, &position, &covered_segments);
        ready.make_needed();
        covered
    };
    // What was read, judged: read on demand, the checksum first (nothing read is used before
    // it holds; `Err` outside), then the facts, the log's summary and the indexes fitted to
    // them (checks 8 and 9, and the indexes').
    let judge = |decoded: std::result::Result<(DecodedFacts, Option<MessageTotals>), String>,
                 indexes: std::result::Result<DecodedIndexes, String>| {
        if let Some(crcs) = &crcs {
            let computed = match decoded.is_err() || indexes.is_err() {
                false => crcs.body_crc(whole_body),
                true => checksum_on_two_threads(map, HEADER_BYTES),
            };
            if let Some(reason) = mismatch(computed) {
                return Err(reason);
            }
        }
        let fitted = || -> std::result::Result<(Facts, Indexes, Option<MessageTotals>), String> {
            let ((decoded, message_totals), indexes) = (decoded?, indexes?);
            let facts = Facts::from_image(decoded, attribution_window_ms)?;
            let (messages, _, _) = facts.counts();
            if messages as u64 + 1 != position.cursor.next_message_id {
                return Err(format!(
                    "its facts hold {messages} messages, its position follows message id {}",
                    position.cursor.next_message_id.saturating_sub(1)
                ));
            }
            if let Ok(summary) = &summary {
                check_summary(summary, position.last_seq, &facts)
                    .map_err(|reason| format!("its summary of the log does not fit: {reason}"))?;
            }
            let indexes = indexes.fit(&facts, attribution_window_ms)?;
            // Read on demand, the fit read the rollup's slices' items where they lie, in the
            // file: their pages go back, as the indexes' reading gave back the rest.
            if let (true, Some(part)) = (loading.on_demand, &indexes_part) {
                snapshot.give_back(HEADER_BYTES + part.start..HEADER_BYTES + part.end);
            }
            Ok((facts, indexes, message_totals))
        };
        Ok(fitted())
    };
    let (covered, judged) = std::thread::scope(|scope| match loading.on_demand {
        // The covered log is checked on a thread of its own once the indexes are read, while
        // this one judges what was read, which needs none of the log: so that an open that
        // ends on the covered log's check fits the indexes on the core the facts' threads
        // leave. Its reason still comes before those of the facts (check 6).
        true => {
            let decoded = scope.spawn(decode_facts_part);
            let indexes = decode_indexes_part();
            let covered = scope.spawn(check_covered_part);
            let judged = judge(joined(decoded), indexes);
            (joined(covered), Some(judged))
        }
        false => {
            let covered = scope.spawn(check_covered_part);
            let decoded = decode_facts_part();
            let covered = joined(covered);
            let judged = covered
                .is_ok()
                .then(|| judge(decoded, decode_indexes_part()));
            (covered, judged)
        }
    });
    let fitted = judged.transpose()?;
    drop(snapshot);
    covered?;
    let (facts, indexes, message_totals) = fitted.expect("judged when the covered log holds")?;
    let mut covered_before = covered_segments;
    covered_before.pop();
    Ok(Loaded {
        path: path.to_path_buf(),
        position,
        covered_before,
        facts,
        indexes,
        message_totals,
        summary,
        older_version: version < FORMAT_VERSION,
    })
}

/// Checks a summary of the log up to `last_seq` against the facts folded from it: as many
/// events as seqs (dense from 1), a message and an outcome for each counted, and time ranges
/// exactly when there are events, the latest own time no earlier than the facts' latest.
fn check_summary(
    summary: &LogSummary,
    last_seq: u64,
    facts: &Facts,
) -> std::result::Result<(), String> {
    let (messages, outcomes, _) = facts.counts();
    if summary.events != last_seq {
        return Err(format!(
            "it counts {} events up to seq {last_seq}",
            summary.events
        ));
    }
    if (summary.messages, summary.outcomes) != (messages as u64, outcomes as u64) {
        return Err(format!(
            "it counts {} messages and {} outcomes, the facts hold {messages} and {outcomes}",
            summary.messages, summary.outcomes
        ));
    }
    let ranges = [summary.event_ms, summary.appended_ms];
    if ranges.iter().any(|range| {
        range.is_some() != (summary.events > 0) || range.is_some_and(|(low, high)| low > high)
    }) {
        return Err("its time ranges do not match its events".to_string());
    }
    match (summary.event_ms, facts.latest_event_ms()) {
        (Some((_, high)), Some(latest)) if high < latest => Err(format!(
            "its latest event time {high} is before the facts' latest {latest}"
        )),
        _ => Ok(()),
    }
}

/// A loaded snapshot's file, mapped: the facts not decoded at load (the messages' records, the
/// users' lists) are decoded from it when first used (`projection::message_table`,
/// `projection::user_lists`).
#[derive(Debug)]
pub(crate) struct MappedSnapshot {
    path: PathBuf,
    map: Mmap,
}

impl MappedSnapshot {
    /// Maps the file at `path` (a snapshot, or a test's file laid out as one).
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> std::result::Result<MappedSnapshot, String> {
        let file =
            open_no_follow(OpenOptions::new().read(true), path).map_err(|e| e.to_string())?;
        Ok(MappedSnapshot {
            path: path.to_path_buf(),
            map: map_snapshot(&file)?,
        })
    }

    /// A file at `path` holding `prefix` bytes, then `value` as a snapshot encodes it, then a
    /// few bytes more, mapped; and how many bytes `value` took.
    #[cfg(test)]
    pub(crate) fn of_part(
        path: &Path,
        prefix: usize,
        value: &impl bincode::Encode,
    ) -> (Arc<MappedSnapshot>, usize) {
        let mut bytes = vec![0xAB; prefix];
        codec::encode_snapshot_part(value, &mut bytes).unwrap();
        let len = bytes.len() - prefix;
        bytes.extend([1, 2, 3]);
        std::fs::write(path, bytes).unwrap();
        (Arc::new(MappedSnapshot::open(path).unwrap()), len)
    }

    /// Every byte of the file.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The bytes of `range`, after checking that they still hash to `crc`, as they did when
    /// the snapshot was loaded. Bytes that changed on disk since are never taken for facts: a
    /// panic names the file, the range and `what` they hold.
    pub(crate) fn checked(&self, range: Range<usize>, crc: CrcSpan, what: &str) -> &[u8] {
        let bytes = &self.map[range.clone()];
        let mut hasher = crc32fast::Hasher::new_with_initial(crc.before);
        hasher.update(bytes);
        let now = hasher.finalize();
        if now != crc.after {
            self.changed(
                &range,
                what,
                &format!(
                    "have crc32 {now:#010x} hashed on from {:#010x}, {:#010x} when loaded",
                    crc.before, crc.after
                ),
            );
        }
        bytes
    }

    /// The bytes of `range`, as they lie now (not checked: [`MappedSnapshot::checked`]).
    pub(crate) fn bytes_at(&self, range: Range<usize>) -> &[u8] {
        &self.map[range]
    }

    /// Where `bytes`, a part of this file's mapped bytes, lie in it; `None` for bytes held
    /// elsewhere.
    pub(crate) fn range_of(&self, bytes: &[u8]) -> Option<Range<usize>> {
        let start = (bytes.as_ptr() as usize).checked_sub(self.map.as_ptr() as usize)?;
        (start + bytes.len() <= self.map.len()).then_some(start..start + bytes.len())
    }

    /// Panics: the bytes of `range`, holding `what`, are not those loaded.
    pub(crate) fn changed(&self, range: &Range<usize>, what: &str, reason: &str) -> ! {
        panic!(
            "snapshot {} changed on disk after it was loaded: {what} at offset {}..{} {reason}",
            self.path.display(),
            range.start,
            range.end
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Gives back this process's pages of `range`, which must start on a page boundary
    /// ([`PAGE_BYTES`]) and end on one or at the end of the file.
    pub(crate) fn release(&self, range: Range<usize>) {
        if range.start < range.end {
            release(&self.map, range);
        }
    }

    /// Gives back every page `range` has bytes in, whole: one it shares with bytes read later
    /// is read in again from the file then.
    pub(crate) fn give_back(&self, range: Range<usize>) {
        let start = range.start - range.start % PAGE_BYTES;
        let end = range.end.next_multiple_of(PAGE_BYTES).min(self.len());
        self.release(start..end.max(start));
    }
}

/// How a range of a mapped snapshot's bytes hashed when the snapshot was loaded: the crc32 the
/// reading that went through them had taken at their start (of the bytes it read before them)
/// and at their end. The range's bytes are still those read if, hashed on from `before`, they
/// give `after`: the reading's own checksum serves, and no pass of their own is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CrcSpan {
    pub before: u32,
    pub after: u32,
}

/// The crc32 of `body`'s bytes up to a point, taken on as a reading on demand takes it
/// ([`ReadBehind::crc_at`]), for tests of what reads through a snapshot.
#[cfg(test)]
pub(crate) fn running_crc(body: &[u8]) -> impl Fn(usize) -> u32 + '_ {
    let taken = RefCell::new(RunningCrc {
        start: 0,
        done: 0,
        end: body.len(),
        hasher: crc32fast::Hasher::new(),
    });
    move |at| {
        let mut taken = taken.borrow_mut();
        taken.take_to(body, at);
        taken.hasher.clone().finalize()
    }
}

/// Writes `byte` at `offset` of the file at `path`, in place: a mapping of the file sees it.
#[cfg(test)]
pub(crate) fn write_in_place(path: &Path, offset: usize, byte: u8) {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[byte], offset as u64).unwrap();
}

/// Asserts that `read` panics as a read of bytes of the mapped snapshot at `path` that changed
/// on disk since the load does ([`MappedSnapshot::changed`]), naming the file and each of
/// `named`.
#[cfg(test)]
pub(crate) fn assert_changed_on_disk<R>(path: &Path, named: &[&str], read: impl FnOnce() -> R) {
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
        .err()
        .expect("the read panics");
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains(&format!("snapshot {} changed on disk", path.display()))
            && named.iter().all(|name| message.contains(name)),
        "{message}"
    );
}

/// Of the pages that lie wholly within `bytes` (bytes of this process's memory), how many are
/// resident, and how many there are: read from `/proc/self/pagemap` (an entry of 8 bytes a
/// page, bit 63 set when present).
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn resident_pages(bytes: &[u8]) -> (usize, usize) {
    use std::io::{Read, Seek, SeekFrom};
    let start = (bytes.as_ptr() as usize).next_multiple_of(PAGE_BYTES);
    let end = (bytes.as_ptr() as usize + bytes.len()) / PAGE_BYTES * PAGE_BYTES;
    let pages = end.saturating_sub(start) / PAGE_BYTES;
    let mut pagemap = File::open("/proc/self/pagemap").unwrap();
    pagemap
        .seek(SeekFrom::Start((start / PAGE_BYTES * 8) as u64))
        .unwrap();
    let mut entries = vec![0u8; pages * 8];
    pagemap.read_exact(&mut entries).unwrap();
    let resident = (entries.chunks_exact(8))
        .filter(|entry| u64::from_le_bytes((*entry).try_into().unwrap()) >> 63 == 1)
        .count();
    (resident, pages)
}

/// The page size the ranges given back are aligned to. Where pages are larger, the OS widens a
/// range to whole pages: a neighbour's bytes given back too are read from the file again if
/// needed, with the same bytes.
pub(crate) const PAGE_BYTES: usize = 4096;

/// Maps a snapshot file for reading.
fn map_snapshot(file: &File) -> std::result::Result<Mmap, String> {
    // SAFETY: the map is only read: while the snapshot loads, and, with
    // `Options::decode_on_demand`, by the loaded facts' message and user tables
    // (`projection::message_table`, `projection::user_lists`), which decode each chunk of
    // records and each user's lists from it once and keep the map until the store closes.
    // commlog never writes, truncates or extends a snapshot file once it has its name (it is
    // written under a temporary name, then renamed into place, and later only removed, which
    // leaves a mapped file readable): only an outside process changing the file could change
    // or fault what is read, and the tables check the crc32 of what they decode first.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(file) };
    map.map_err(|error| format!("the file cannot be mapped: {error}"))
}

/// Bytes a thread reads between two looks behind it while it takes the checksum as it reads
/// ([`ReadBehind`]): few enough to be checksummed while still in the core's cache.
const CRC_RUN_BYTES: usize = 1 << 20;

/// Follows one thread's in-order reading of a part of a mapped body: takes what it has read
/// into the part's crc32 (when the checksum is taken as the body is read, up to where the part
/// ends) and, each [`RELEASE_BYTES`], gives back the pages read
/// ([`give_back_to`](Self::give_back_to)). A snapshot is read front to back, and its pages
/// would otherwise count as resident until it is loaded, nearly as much as the facts decoded
/// from them.
///
/// Shared by the reading's two callbacks (where it has passed, its crc32 at a point), each
/// call taking its turn.
struct ReadBehind<'a> {
    map: &'a Mmap,
    body: &'a [u8],
    /// Where in the map pages are given back from.
    release_at: usize,
    /// How far in the body the pages read have been given back.
    released: Cell<usize>,
    crc: RefCell<Option<RunningCrc>>,
}

/// The crc32 of the body's bytes from `start` to `done`, taken no further than `end`.
struct RunningCrc {
    start: usize,
    done: usize,
    end: usize,
    hasher: crc32fast::Hasher,
}

impl RunningCrc {
    /// Takes the checksum of `body` on to `at`, no further than its end.
    fn take_to(&mut self, body: &[u8], at: usize) {
        let to = at.min(self.end);
        if to > self.done {
            self.hasher.update(&body[self.done..to]);
            self.done = to;
        }
    }
}

impl<'a> ReadBehind<'a> {
    /// A reading of `body` (mapped in `map` after the header) from `start`, giving back pages
    /// from `release_at` in the map; with `crc`, checksumming up to `crc_end`.
    fn new(
        map: &'a Mmap,
        body: &'a [u8],
        (start, release_at): (usize, usize),
        crc: bool,
        crc_end: usize,
    ) -> ReadBehind<'a> {
        ReadBehind {
            map,
            body,
            release_at,
            released: Cell::new(start),
            crc: RefCell::new(crc.then(|| RunningCrc {
                start,
                done: start,
                end: crc_end.min(body.len()),
                hasher: crc32fast::Hasher::new(),
            })),
        }
    }

    /// A reading of `body` from `at` on a thread of its own, checksummed up to `crc_end`: the
    /// reader there, and the reading followed.
    fn ahead(
        snapshot: &'a MappedSnapshot,
        body: &'a [u8],
        (at, body_at): (usize, usize),
        crc_end: usize,
    ) -> (codec::SnapshotReader<'a>, ReadBehind<'a>) {
        let mut reader = codec::SnapshotReader::new(body);
        reader.skip(at);
        let behind = ReadBehind::new(&snapshot.map, body, (at, body_at + at), true, crc_end);
        (reader, behind)
    }

    /// How many bytes the reader should read between two calls of [`passed`](Self::passed).
    fn every(&self) -> usize {
        match *self.crc.borrow() {
            Some(_) => CRC_RUN_BYTES,
            None => RELEASE_BYTES,
        }
    }

    /// The reader has read the body up to `read`.
    fn passed(&self, read: usize) {
        if let Some(crc) = self.crc.borrow_mut().as_mut() {
            crc.take_to(self.body, read);
        }
        if read >= self.released.get() + RELEASE_BYTES {
            self.give_back_to(read);
        }
    }

    /// Gives back the pages read up to `read` in the body (and of the page that holds it) that
    /// an earlier call left: from where that call ended, so that each page is given back once,
    /// and never a page that also holds bytes before the reading's first page to give back,
    /// which another thread may be reading.
    fn give_back_to(&self, read: usize) {
        let after_last = (HEADER_BYTES + self.released.get()) / PAGE_BYTES * PAGE_BYTES;
        let start = self.release_at.next_multiple_of(PAGE_BYTES).max(after_last);
        let end = HEADER_BYTES + read;
        if start < end {
            release(self.map, start..end);
        }
        self.released.set(read);
    }

    /// The crc32 of the body's bytes from this reading's start to `at`, taken on to there
    /// (no further than where its checksum ends). `at` is no earlier than any point passed.
    fn crc_at(&self, at: usize) -> u32 {
        let mut crc = self.crc.borrow_mut();
        let crc = crc
            .as_mut()
            .expect("a reading on demand takes its checksum");
        assert!(
            at.min(crc.end) >= crc.done,
            "a checksum is taken on, not back"
        );
        crc.take_to(self.body, at);
        crc.hasher.clone().finalize()
    }

    /// The reading is over: its checksum, as far as it went, joins `crcs`.
    fn done(self, crcs: Option<&Crcs>) {
        if let (Some(crc), Some(crcs)) = (self.crc.into_inner(), crcs) {
            crcs.0.lock().push(crc);
        }
    }
}

/// The checksums of the parts of a body that threads took as they read them.
#[derive(Default)]
pub(crate) struct Crcs(Mutex<Vec<RunningCrc>>);

impl Crcs {
    /// The crc32 of `body`: the parts' checksums (taken out) joined in order, the bytes no part
    /// covers (where a reading ended early, and the small parts between the long ones) read
    /// here.
    fn body_crc(&self, body: &[u8]) -> u32 {
        let mut parts = std::mem::take(&mut *self.0.lock());
        parts.sort_by_key(|part| part.start);
        let mut hasher = crc32fast::Hasher::new();
        let mut at = 0;
        for part in parts {
            if part.start < at {
                // Parts that overlap cannot be joined: the whole body is read again.
                return crc32fast::hash(body);
            }
            hasher.update(&body[at..part.start]);
            hasher.combine(&part.hasher);
            at = part.done;
        }
        hasher.update(&body[at..]);
        hasher.finalize()
    }
}

/// The crc32 of `map` from byte `start` on, read on two threads: the span is split at a
/// multiple of [`RELEASE_BYTES`] from `start` at or before its middle, and each thread reads a
/// run of [`RELEASE_BYTES`] at a time and gives it back (with the pages that hold the run's
/// ends: the next run faults in again the one it still has to read).
fn checksum_on_two_threads(map: &Mmap, start: usize) -> u32 {
    let checksum = |range: Range<usize>| {
        let mut hasher = crc32fast::Hasher::new();
        for run in range.clone().step_by(RELEASE_BYTES) {
            let run = run..(run + RELEASE_BYTES).min(range.end);
            hasher.update(&map[run.clone()]);
            release(map, run);
        }
        hasher
    };
    let len = map.len() - start;
    let middle = start + len / 2 / RELEASE_BYTES * RELEASE_BYTES;
    let (mut first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| checksum(middle..map.len()));
        let first = checksum(start..middle);
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    });
    first.combine(&second);
    first.finalize()
}

/// Gives back to the OS this process's pages of `range` of `map`, widened to whole pages: a page
/// only partly in `range` is given back too, and faulted in again if read.
fn release(map: &Mmap, range: Range<usize>) {
    // SAFETY: MADV_DONTNEED on a read-only shared mapping of a file that nothing writes (see
    // `map_snapshot`) drops only this process's view of the pages: a later read through the
    // map faults them in again from the file, with the same bytes, so nothing read through the
    // map changes.
    #[allow(unsafe_code)]
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
    };
}

/// Decodes the facts, which end the body, part by part as [`DecodedFacts`] lays them out;
/// calls `passed` with the bytes read so far each time `every` more of its two long lists (the
/// messages, the users) have been read. Decoding on demand, the messages' records and the
/// users' lists are only checked, and left in the file to be decoded when first used; the
/// users' lists and the records from the split, read ahead each on another thread (given
/// `directory`), give back their own pages rather than call `passed`; and the records are
/// counted into the totals over all time as they are checked, if the decoding asks for them,
/// which are returned beside the facts. Decoded either way, the messages' records reach the
/// split (version 5) where the directory puts it.
pub(crate) fn decode_facts(
    body: &mut codec::SnapshotReader,
    every: usize,
    mut passed: impl FnMut(usize),
    decoding: Decoding,
    directory: Option<FactsDirectory>,
) -> std::result::Result<(DecodedFacts, Option<MessageTotals>), String> {
    let prints = Prints::new();
    // Decoded on demand, the messages and the users' lists are left in the file, each checked
    // as it is read; with a directory, the users' lists on another thread, from where it says
    // they begin, and the records from its split on a third, while this one reads the records
    // before the split and the outcomes.
    let mut in_place = InPlace::default();
    let (messages, outcomes, users) = std::thread::scope(|scope| {
        let users_ahead = match (decoding, directory) {
            (Decoding::OnDemand(snapshot, body_at, crcs, ..), Some(directory)) => {
                let (whole, prints) = (body.body(), &prints);
                let counts = counts_ahead(whole, body.position(), directory);
                counts.map(|counts| {
                    scope.spawn(move || {
                        users_in_place(
                            whole,
                            counts,
                            directory.users_at,
                            every,
                            (snapshot, body_at, crcs),
                            prints,
                        )
                    })
                })
            }
            _ => None,
        };
        let messages = match decoding {
            Decoding::OnDemand(snapshot, body_at, crcs, ahead, crc_at, counting) => {
                let (whole, prints) = (body.body(), &prints);
                let pace = Pace { every, counting };
                let count = body.decode_list_len(MessageState::SNAPSHOT_BYTES_MIN)?;
                let split = split_within(directory, count)?;
                // The records from the split, read on a thread of their own, count once the
                // first half ends there.
                let later = ahead
                    .filter(|&(index, _)| index < count)
                    .map(|(index, at)| {
                        let ends = (directory.map_or(at, |directory| directory.users_at), count);
                        scope.spawn(move || {
                            let mapped = (snapshot, body_at, crcs);
                            messages_in_place(whole, (index, at), ends, pace, mapped, prints)
                        })
                    });
                let first_len = split.map_or(count, |(index, _)| index);
                let mut scan = ChunkScan::new(count);
                let read = (0, first_len);
                let reading = (&mut passed as &mut dyn FnMut(usize), crc_at);
                in_place.messages = read_records(&mut scan, body, read, pace, reading, prints)?;
                if let Some((index, at)) = split {
                    reached_split(index, at, body.position())?;
                }
                match later {
                    Some(later) => {
                        let (later, in_place_later, end) = joined(later)?;
                        scan.end_at(body.position(), crc_at);
                        scan.join(later);
                        in_place.messages.join(in_place_later);
                        body.skip(end - body.position());
                    }
                    None => {
                        let rest = (first_len, count - first_len);
                        let reading = (&mut passed as &mut dyn FnMut(usize), crc_at);
                        let found = read_records(&mut scan, body, rest, pace, reading, prints)?;
                        in_place.messages.join(found);
                        scan.end_at(body.position(), crc_at);
                    }
                }
                MessageTable::mapped(scan, Arc::clone(snapshot), body_at)
            }
            Decoding::Whole(ready) => {
                let len = body.decode_list_len(MessageState::SNAPSHOT_BYTES_MIN)?;
                let split = split_within(directory, len)?;
                let mark = split
                    .map(|(index, at)| (index, move |position| reached_split(index, at, position)));
                ready.expect(len);
                let table =
                    MessageTable::decode_whole(body, len, (every, &mut passed), ready, mark);
                ready.expect(0);
                table?
            }
        };
        let ends_at = |body: &codec::SnapshotReader, what: &str, at: usize, next: &str| {
            let end = body.position();
            if end == at {
                return Ok(());
            }
            Err(format!(
                "the {what} end at {end}, not where the facts' directory puts the {next} ({at})"
            ))
        };
        if let Some(directory) = directory {
            ends_at(body, "messages' records", directory.outcomes_at, "outcomes")?;
        }
        // Every length read from the file is bounded by the bytes left before it sizes
        // anything.
        let outcomes: Vec<OutcomeState> = body.decode_list(OUTCOME_BYTES, every, &mut passed)?;
        if let Some(directory) = directory {
            ends_at(body, "outcomes", directory.users_at, "users")?;
        }
        let users = match (users_ahead, decoding) {
            (Some(users_ahead), _) => {
                let (table, lists, end) = joined(users_ahead)?;
                body.skip(end - body.position());
                in_place.lists = lists;
                DecodedUsers::Mapped(table)
            }
            (None, Decoding::OnDemand(snapshot, body_at, _, _, crc_at, _)) => {
                DecodedUsers::Mapped(UserTable::read_mapped(
                    body,
                    every,
                    (&mut passed, crc_at),
                    (messages.len(), outcomes.len()),
                    (Arc::clone(snapshot), body_at),
                    |user, lists| in_place.lists.add(user, lists, &prints),
                )?)
            }
            // A user's lists follow the user's id, 8 bytes.
            (None, Decoding::Whole(_)) => {
                let len = body.decode_list_len(8 + UserEntries::SNAPSHOT_BYTES_MIN)?;
                let mut users = Vec::with_capacity(len);
                body.scan_items(len, every, &mut passed, |_, rest| {
                    let taken = 8 + UserEntries::record_bytes(rest.get(8..).unwrap_or_default())?;
                    users.push(codec::SnapshotReader::new(&rest[..taken]).decode()?);
                    Ok(taken)
                })?;
                DecodedUsers::List(users)
            }
        };
        Ok::<_, String>((messages, outcomes, users))
    })?;
    // A name: its length, then its bytes.
    let name_count = body.decode_list_len(8)?;
    let names = (0..name_count)
        .map(|_| bounded_string(body))
        .collect::<std::result::Result<Vec<String>, String>>()?;
    let latest_event_ms = body.decode()?;
    // A budget: scope, month index, amount, alert percent.
    let budgets = body.decode_list(1 + 8 + 8 + 1, every, &mut passed)?;
    // An external id: the message id, the id's length, its bytes.
    let external_count = body.decode_list_len(8 + 8)?;
    let external_ids = (0..external_count)
        .map(|_| Ok((body.decode()?, bounded_string(body)?)))
        .collect::<std::result::Result<Vec<(u64, String)>, String>>()?;
    let facts = DecodedFacts {
        messages,
        outcomes,
        users,
        names,
        latest_event_ms,
        budgets,
        external_ids,
    };
    facts_agree(&facts, &prints, &in_place)?;
    // Read on demand, every record was read: the totals counted as they were are kept.
    let totals = in_place.messages.totals.map(ScannedTotals::totals);
    Ok((facts, totals))
}

/// Bytes of an outcome's record: user, time, amount, name id.
const OUTCOME_BYTES: usize = 8 + 8 + 8 + 4;

/// The counts of messages and outcomes of `body` (the lengths of their lists, at
/// `messages_at` and where `directory` puts the outcomes), if the outcomes, at their fixed
/// size, end where `directory` puts the users: the users' list is then read there as an open
/// reading in order would read it, once the messages' records end where the directory says.
/// `None` otherwise: the users are then read in order, after the outcomes, and the open names
/// what does not fit.
fn counts_ahead(
    body: &[u8],
    messages_at: usize,
    directory: FactsDirectory,
) -> Option<(usize, usize)> {
    let count_at = |offset: usize, min_bytes: usize| {
        let mut reader = codec::SnapshotReader::new(body);
        reader.skip(offset);
        reader.decode_list_len(min_bytes).ok()
    };
    let messages = count_at(messages_at, MessageState::SNAPSHOT_BYTES_MIN)?;
    let outcomes = count_at(directory.outcomes_at, OUTCOME_BYTES)?;
    let outcomes_end = (outcomes.checked_mul(OUTCOME_BYTES))
        .and_then(|bytes| bytes.checked_add(directory.outcomes_at + 8));
    (outcomes_end == Some(directory.users_at)).then_some((messages, outcomes))
}

/// Bytes of records after the split that make it worth reading them on a thread of their own
/// while the opening thread reads the indexes: fewer are read in order, since a thread more
/// then only takes a core from the indexes' reading and the covered log's check after it, the
/// longer chain of a small store. With the indexes left unread, that chain is short,
/// and a few MiB are worth a thread.
const SPLIT_THREAD_BYTES: [usize; 2] = [4 << 20, 256 << 20];

/// The split of the messages' records a writer puts in the facts' directory is the first record
/// of a run of this many (docs/FORMAT.md, "Body"), and only such a split is read on a thread of
/// its own: the first record of a chunk decoded on demand, too.
pub(crate) const SPLIT_RECORDS: usize = 1024;
const _: () = assert!(SPLIT_RECORDS.is_multiple_of(CHUNK_MESSAGES));

/// The split of the messages' records `directory` gives, if the records from there are to be
/// read on a thread of their own: the split is at the first record of a run of
/// [`SPLIT_RECORDS`], and enough bytes of records follow it ([`SPLIT_THREAD_BYTES`], more when
/// the open reads the indexes).
fn records_ahead(directory: Option<FactsDirectory>, indexes: bool) -> Option<(usize, usize)> {
    let directory = directory?;
    let (index, at) = directory.split?;
    let enough =
        directory.outcomes_at.saturating_sub(at) >= SPLIT_THREAD_BYTES[usize::from(indexes)];
    (index.is_multiple_of(SPLIT_RECORDS) && enough).then_some((index, at))
}

/// The split of the messages' records `directory` gives (version 5), refused if it names a
/// record past the `count` messages.
fn split_within(
    directory: Option<FactsDirectory>,
    count: usize,
) -> std::result::Result<Option<(usize, usize)>, String> {
    match directory.and_then(|directory| directory.split) {
        Some((index, at)) if index > count => Err(format!(
            "the facts' directory puts message {index} at {at}, past the {count} messages"
        )),
        split => Ok(split),
    }
}

/// Checks that the record of message `index` begins at `position`, where the facts' directory
/// puts it (`at`).
fn reached_split(index: usize, at: usize, position: usize) -> std::result::Result<(), String> {
    match position == at {
        true => Ok(()),
        false => Err(format!(
            "message {index}'s record begins at {position}, not where the facts' directory puts \
             it ({at})"
        )),
    }
}

/// The messages' records of `body` (a snapshot's, mapped) from record `first`, which begins at
/// `at` and the first of a chunk, to the last of `count`, read on demand as the whole list is
/// ([`ChunkScan::read`]): their scan, what was found of them, and where they end. Pages read
/// are given back as the messages' reading does, at `pace`; the checksum runs on to `crc_end`,
/// where the next thread's begins.
fn messages_in_place(
    body: &[u8],
    (first, at): (usize, usize),
    (crc_end, count): (usize, usize),
    pace: Pace,
    (snapshot, body_at, crcs): (&Arc<MappedSnapshot>, usize, &Crcs),
    prints: &Prints,
) -> std::result::Result<(ChunkScan, MessagesInPlace, usize), String> {
    let (mut records, behind) = ReadBehind::ahead(snapshot, body, (at, body_at), crc_end);
    let mut scan = ChunkScan::new(count);
    let read = (first, count - first);
    let crc_at = |at| behind.crc_at(at);
    let found = read_records(
        &mut scan,
        &mut records,
        read,
        pace,
        (&mut |read| behind.passed(read), &crc_at),
        prints,
    );
    if found.is_ok() {
        scan.end_at(records.position(), &crc_at);
    }
    behind.passed(crc_end.max(records.position()));
    behind.done(Some(crcs));
    Ok((scan, found?, records.position()))
}

/// How a thread reads records on demand: it tells where it has passed every `every` bytes, and
/// counts the records into the totals over all time if `counting`.
#[derive(Clone, Copy)]
struct Pace {
    every: usize,
    counting: bool,
}

/// Reads `(first, len)` records on demand into `scan` ([`ChunkScan::read`]), each checked
/// where it lies (and counted, at the `pace` that says so): what was found of them. `reading`
/// is told where the reading has passed and gives its crc32 at a point, as in
/// [`ChunkScan::read`]. One function for every thread that reads records, so that its loop is
/// compiled once.
fn read_records(
    scan: &mut ChunkScan,
    body: &mut codec::SnapshotReader,
    (first, len): (usize, usize),
    Pace { every, counting }: Pace,
    reading: (&mut dyn FnMut(usize), &dyn Fn(usize) -> u32),
    prints: &Prints,
) -> std::result::Result<MessagesInPlace, String> {
    let mut found = MessagesInPlace {
        totals: counting.then(ScannedTotals::default),
        ..MessagesInPlace::default()
    };
    scan.read(body, (first, len), every, reading, |index, state| {
        found.message(index, state, prints)
    })?;
    Ok(found)
}

/// The users' lists of `body` (a snapshot's, mapped: `snapshot` and the body's offset in it)
/// read on demand from `users_at`, each checked where it lies against `counts` (messages,
/// outcomes), with the sums of their prints; and where the list ends. Every `every` bytes
/// read, the pages read are given back, as the messages' reading does.
fn users_in_place(
    body: &[u8],
    counts: (usize, usize),
    users_at: usize,
    every: usize,
    (snapshot, body_at, crcs): (&Arc<MappedSnapshot>, usize, &Crcs),
    prints: &Prints,
) -> std::result::Result<(ReadUsers, ListsSums, usize), String> {
    let (mut users, behind) = ReadBehind::ahead(snapshot, body, (users_at, body_at), body.len());
    let mut sums = ListsSums::default();
    let table = UserTable::read_mapped(
        &mut users,
        every,
        (|read| behind.passed(read), &|at| behind.crc_at(at)),
        counts,
        (Arc::clone(snapshot), body_at),
        |user, lists| sums.add(user, lists, prints),
    );
    // What was read joins the checksum, however the reading ended.
    behind.passed(users.position());
    behind.done(Some(crcs));
    Ok((table?, sums, users.position()))
}

/// The string at `body`'s position, its length refused if the bytes left cannot hold it,
/// before anything is allocated for it.
fn bounded_string(body: &mut codec::SnapshotReader) -> std::result::Result<String, String> {
    codec::SnapshotReader::new(&body.body()[body.position()..]).decode_list_len(1)?;
    body.decode()
}

/// Each message and outcome as a keyed hash of (index, user, time). Equal sums over the
/// records and over the users' lists say (but for odds of about 2^-64 against keys no file can
/// know) that the lists name each one once, in its user's lists, at its time: two passes in
/// the order of the file, not a look-up of every record from the lists.
struct Prints {
    keys: [u64; 3],
}

impl Prints {
    fn new() -> Prints {
        let state = std::collections::hash_map::RandomState::new();
        let key = |part: u8| std::hash::BuildHasher::hash_one(&state, ("snapshot facts", part));
        Prints {
            keys: [key(0), key(1), key(2) | 1],
        }
    }

    /// Two rounds of a folded 128-bit product (as wyhash mixes): the user with the time,
    /// then that with the index.
    #[inline]
    fn of(&self, index: u32, user: u64, at_ms: i64) -> u64 {
        let fold = |a: u64, b: u64| {
            let product = u128::from(a) * u128::from(b);
            (product as u64) ^ ((product >> 64) as u64)
        };
        let [k0, k1, k2] = self.keys;
        fold(fold(user ^ k0, at_ms as u64 ^ k1) ^ u64::from(index), k2)
    }
}

/// What reading the messages and the users' lists where they lie (facts decoded on demand)
/// found: of the messages, see [`MessagesInPlace`]; of the lists, [`ListsSums`].
/// [`facts_agree`] reports what fails in the order it checks facts decoded whole, with the
/// same reasons.
#[derive(Default)]
struct InPlace {
    messages: MessagesInPlace,
    lists: ListsSums,
}

/// What checking the users' lists where they lie found: the sums of the prints of the lists'
/// entries (messages, outcomes), how many they list, and the first user whose lists fail
/// [`user_agrees`].
#[derive(Default)]
struct ListsSums {
    prints: (u64, u64),
    listed: (usize, usize),
    fail: Option<String>,
}

/// What checking the messages' records found: the sum of their prints; whether one fails
/// [`message_agrees`] even without the latest event time (read after them), and the latest
/// time of any stage; and their totals over all time, which the views keep
/// (`projection/totals.rs`) rather than read every record again to count them.
#[derive(Default)]
struct MessagesInPlace {
    prints: u64,
    fail: bool,
    latest_stage_ms: Option<i64>,
    /// `None` when not counted (`Options::count_totals`).
    totals: Option<ScannedTotals>,
}

impl MessagesInPlace {
    /// Takes in what was found of the messages after these.
    fn join(&mut self, later: MessagesInPlace) {
        self.prints = self.prints.wrapping_add(later.prints);
        self.fail |= later.fail;
        self.latest_stage_ms = self.latest_stage_ms.max(later.latest_stage_ms);
        if let (Some(totals), Some(later)) = (&mut self.totals, later.totals) {
            totals.join(later);
        }
    }

    /// Checks message `index` as [`message_agrees`] does, but for its times against the latest
    /// event time, and adds its print and its counts.
    #[inline]
    fn message(&mut self, index: usize, state: &MessageState, prints: &Prints) {
        self.prints =
            (self.prints).wrapping_add(prints.of(index as u32, state.user_id, state.sent_ms));
        if let Some(totals) = &mut self.totals {
            totals.add_message(state);
        }
        if let Some(latest_ms) = plain_message_agrees(state) {
            self.latest_stage_ms = self.latest_stage_ms.max(Some(latest_ms));
            return;
        }
        let latest = std::cell::Cell::new(self.latest_stage_ms);
        let time_fits = |ms: i64| {
            latest.set(latest.get().max(Some(ms)));
            codec::time_in_range(i128::from(ms))
        };
        self.fail |= message_agrees(state, time_fits).is_err();
        self.latest_stage_ms = latest.get();
    }
}

impl ListsSums {
    /// Checks one user's lists as [`user_agrees`] does and adds their prints.
    #[inline]
    fn add(&mut self, user: u64, lists: &ListsInPlace<'_>, prints: &Prints) {
        let (message_count, outcome_count) = lists.counts();
        self.listed.0 += message_count;
        self.listed.1 += outcome_count;
        let sums = user_agrees(
            user,
            (lists.messages(), lists.last_message),
            (lists.outcomes(), lists.latest_outcome_ms),
            prints,
        );
        match sums {
            Ok((messages, outcomes)) => {
                self.prints.0 = self.prints.0.wrapping_add(messages);
                self.prints.1 = self.prints.1.wrapping_add(outcomes);
            }
            Err(error) => {
                self.fail.get_or_insert(error);
            }
        }
    }
}

/// Checks that the facts agree with one another as a fold makes them, which the views rely
/// on not to panic (`Facts::from_image` checks that they fit together: names, indexes in
/// range, sorted lists): every time one a frame can hold and none after the latest event
/// time; each outcome's user, amount; each message's user, cost and stages (each at or after
/// the send, an engagement after a delivery), and each user's lists naming exactly the user's
/// messages and outcomes at their times ([`Prints`]). Facts decoded on demand had their
/// messages and lists checked as they were read (`in_place`). Lists that do not fit together
/// are left to `Facts::from_image`, which names what is wrong.
fn facts_agree(
    facts: &DecodedFacts,
    prints: &Prints,
    in_place: &InPlace,
) -> std::result::Result<(), String> {
    let in_range = |ms: i64| codec::time_in_range(i128::from(ms));
    let latest_ms = match facts.latest_event_ms {
        Some(latest_ms) if in_range(latest_ms) => latest_ms,
        Some(latest_ms) => {
            return Err(format!("its latest event time {latest_ms} is no time"));
        }
        None if facts.messages.len() == 0 && facts.outcomes.is_empty() => i64::MIN,
        None => return Err("it holds events but no latest event time".to_string()),
    };
    let time_fits = |ms: i64| in_range(ms) && ms <= latest_ms;
    let mut outcome_prints = 0u64;
    for (index, outcome) in facts.outcomes.iter().enumerate() {
        let fits = outcome.user_id != 0
            && time_fits(outcome.at_ms)
            && outcome.amount_micros.unsigned_abs() <= crate::limits::MONEY_MICROS_MAX as u64;
        if !fits {
            return Err(format!(
                "outcome {index} has no user, a time after the latest event time or none a \
                 frame holds, or an amount past the bound"
            ));
        }
        outcome_prints =
            outcome_prints.wrapping_add(prints.of(index as u32, outcome.user_id, outcome.at_ms));
    }
    let counts = (facts.messages.len(), facts.outcomes.len());
    let (message_prints, list_prints) = match &facts.users {
        DecodedUsers::Mapped(read) => {
            let messages = &in_place.messages;
            if messages.fail || messages.latest_stage_ms > Some(latest_ms) {
                // Which message, and why, as decoded whole.
                messages_agree(&facts.messages, time_fits, prints)?;
            }
            let lists = &in_place.lists;
            if let Some(error) = &lists.fail {
                return Err(error.clone());
            }
            let list_prints = (read.lists_fit && lists.listed == counts).then_some(lists.prints);
            (messages.prints, list_prints)
        }
        // The records on another thread, the lists on this one.
        DecodedUsers::List(users) => {
            let (messages, lists) = std::thread::scope(|scope| {
                let messages = scope.spawn(|| messages_agree(&facts.messages, time_fits, prints));
                let lists = lists_agree(users, counts, prints);
                (joined(messages), lists)
            });
            (messages?, lists?)
        }
    };
    match list_prints {
        Some(list_prints) if list_prints != (message_prints, outcome_prints) => Err(
            "the users' lists do not name each message and outcome once, in its user's \
             lists, at its time"
                .to_string(),
        ),
        _ => Ok(()),
    }
}

/// The sum of the prints of the messages, after checking each with [`message_agrees`].
fn messages_agree(
    messages: &MessageTable,
    time_fits: impl Fn(i64) -> bool + Copy,
    prints: &Prints,
) -> std::result::Result<u64, String> {
    let mut sum = 0u64;
    for (index, state) in messages.iter().enumerate() {
        message_agrees(state, time_fits).map_err(|what| format!("message {} {what}", index + 1))?;
        sum = sum.wrapping_add(prints.of(index as u32, state.user_id, state.sent_ms));
    }
    Ok(sum)
}

/// The sums of the prints of the users' lists' entries (messages, outcomes), after checking
/// each user's lists with [`user_agrees`]; `None` if the lists do not fit together (unsorted,
/// an index out of range, not as many entries as `counts`, messages and outcomes), which
/// `Facts::from_image` names.
fn lists_agree(
    users: &[(u64, UserEntries)],
    (message_count, outcome_count): (usize, usize),
    prints: &Prints,
) -> std::result::Result<Option<(u64, u64)>, String> {
    let mut listed = (0usize, 0usize);
    let mut sums = (0u64, 0u64);
    let fits = |list: &[(i64, u32)], len: usize| {
        list.is_sorted() && list.iter().all(|&(_, index)| (index as usize) < len)
    };
    for (user, entries) in users {
        if !fits(&entries.messages, message_count) || !fits(&entries.outcomes, outcome_count) {
            return Ok(None);
        }
        listed.0 += entries.messages.len();
        listed.1 += entries.outcomes.len();
        let (messages, outcomes) = user_agrees(
            *user,
            (entries.messages.iter().copied(), entries.last_message()),
            (entries.outcomes.iter().copied(), entries.latest_outcome_ms),
            prints,
        )?;
        sums = (sums.0.wrapping_add(messages), sums.1.wrapping_add(outcomes));
    }
    Ok((listed == (message_count, outcome_count)).then_some(sums))
}

/// The sums of the prints of one user's (sorted) lists: its messages, with the last one it
/// names, and its outcomes, with the latest outcome time it holds; after checking that the
/// last message is one of its messages (or none, without messages) and that the latest
/// outcome time is its last outcome's (`i64::MIN` without outcomes).
fn user_agrees(
    user: u64,
    (messages, last_message): (impl Iterator<Item = (i64, u32)>, Option<(i64, u32)>),
    (outcomes, latest_outcome_ms): (impl Iterator<Item = (i64, u32)>, i64),
    prints: &Prints,
) -> std::result::Result<(u64, u64), String> {
    let mut sums = (0u64, 0u64);
    let (mut any_message, mut last_message_listed) = (false, false);
    for (sent_ms, index) in messages {
        sums.0 = sums.0.wrapping_add(prints.of(index, user, sent_ms));
        any_message = true;
        last_message_listed |= Some((sent_ms, index)) == last_message;
    }
    let mut last_outcome_ms = i64::MIN;
    for (at_ms, index) in outcomes {
        sums.1 = sums.1.wrapping_add(prints.of(index, user, at_ms));
        last_outcome_ms = at_ms;
    }
    let last_message_fits = match last_message {
        None => !any_message,
        Some(_) => last_message_listed,
    };
    if latest_outcome_ms != last_outcome_ms || !last_message_fits {
        return Err(format!(
            "user {user}'s latest outcome time or last message is not one of its lists'"
        ));
    }
    Ok(sums)
}

/// The latest time of a plain message (a send, then at most a delivery and an open:
/// [`MessageState::plain`]) that [`message_agrees`] takes whatever the latest event time at or
/// after it: a user, a cost within the bound, each time at or after the one before and none
/// past the times a frame holds. `None` for any other message, which `message_agrees` then
/// decides: most messages are plain, and this takes a few comparisons.
#[inline]
fn plain_message_agrees(state: &MessageState) -> Option<i64> {
    let (sent_ms, delivered, opened) = (state.sent_ms, state.delivered, state.opened);
    let mut latest_ms = sent_ms;
    let mut fits = state.plain()
        && state.user_id != 0
        && codec::time_in_range(i128::from(sent_ms))
        && (0..=crate::limits::MONEY_MICROS_MAX).contains(&state.cost_micros);
    if let Some(delivered_ms) = delivered.get() {
        fits &= delivered_ms >= latest_ms;
        latest_ms = delivered_ms;
    }
    if let Some(opened_ms) = opened.get() {
        fits &= delivered.is_some() && opened_ms >= latest_ms;
        latest_ms = opened_ms;
    }
    (fits && codec::time_in_range(i128::from(latest_ms))).then_some(latest_ms)
}

/// Checks one message's record as a fold makes it: a user, a cost never negative and
/// within the bound, every stage's time one that `time_fits` (a frame's, at or before the
/// latest event time) and at or after the send, a delivery no later than an open or an
/// action, an open no later than a click; an action with its latest, a click and a
/// failure with their times.
#[inline]
fn message_agrees(
    state: &MessageState,
    time_fits: impl Fn(i64) -> bool,
) -> std::result::Result<(), &'static str> {
    let sent_ms = state.sent_ms;
    if state.user_id == 0 || !time_fits(sent_ms) {
        return Err("has no user, or a time after the latest event time or none a frame holds");
    }
    if !(0..=crate::limits::MONEY_MICROS_MAX).contains(&state.cost_micros) {
        return Err("has a negative cost, or one past the bound");
    }
    let stage_fits =
        |at_ms: Option<i64>| at_ms.is_none_or(|at_ms| at_ms >= sent_ms && time_fits(at_ms));
    let (delivered, opened) = (state.delivered.get(), state.opened.get());
    let (first_action, clicked) = (state.first_action().get(), state.clicked().get());
    let latest_action = state.latest_action().map(|action| action.at_ms);
    let stages_fit = [
        delivered,
        opened,
        first_action,
        clicked,
        latest_action,
        state.failed().get(),
    ]
    .into_iter()
    .all(stage_fits);
    let delivered_first = |at_ms: Option<i64>| {
        at_ms.is_none_or(|at_ms| delivered.is_some_and(|delivered| delivered <= at_ms))
    };
    let engagements_fit = delivered_first(opened)
        && delivered_first(first_action)
        && first_action.is_some() == state.has_action()
        && latest_action.is_some() == state.has_action()
        && first_action <= latest_action
        && (state.converted() <= state.has_action())
        && match state.status() {
            crate::Status::Clicked => {
                clicked.is_some_and(|clicked| opened.is_some_and(|opened| opened <= clicked))
                    && first_action.is_some_and(|action| clicked.is_some_and(|c| action <= c))
            }
            _ => clicked.is_none(),
        };
    let failure_fits = state.failed().is_some() == state.failure_reason().is_some()
        && (state.status() != crate::Status::Failed || state.failed().is_some());
    match stages_fit && engagements_fit && failure_fits {
        true => Ok(()),
        false => Err("has stages no events make (their times, or their order)"),
    }
}

/// The indexes part of a body as read, not yet checked against the facts.
#[derive(Default)]
pub(crate) struct DecodedIndexes {
    rollup: Option<MessageRollup>,
    /// With the attribution window they were made under.
    credits: Option<(i64, Credits)>,
}

/// What a scoped thread returned; its panic goes on in the caller.
fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Where parts of the facts begin in a body: the record of one message (`split`: its index, the
/// first of a run of [`SPLIT_RECORDS`] halfway through, and where it begins), the outcomes'
/// list and the users' list (each at its length). A body of format version 4 or later lists
/// the lists' offsets after its indexes part, version 5 the split as well, so that an open
/// reads the users' lists, and the second half of the messages' records, each on a thread of
/// its own while it reads the first half on another; the reading of the messages then reaches
/// record `split.0` at `split.1` and ends at `outcomes_at`, and that of the outcomes at
/// `users_at`, or the snapshot is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FactsDirectory<Offset = usize> {
    pub(crate) split: Option<(usize, Offset)>,
    pub(crate) outcomes_at: Offset,
    pub(crate) users_at: Offset,
}

/// Where the parts of a body lie: the facts end at `facts_end`; the indexes part (versions 2
/// and later) and the facts' directory (versions 4 and later).
struct BodyParts {
    facts_end: usize,
    indexes: Option<Range<usize>>,
    directory: Option<FactsDirectory>,
}

/// The parts of a body of format `version`: a version 2 or 3 body ends with the indexes part
/// and then the u64 offset where the part begins; a version 4 body ends with that part, the
/// directory (two u64) and the same offset, a version 5 body likewise with a directory of four
/// u64 (the split first); a version 1 body ends with the facts.
fn split_body(body: &[u8], version: u32) -> std::result::Result<BodyParts, String> {
    if version == FORMAT_VERSION_FACTS_ONLY {
        return Ok(BodyParts {
            facts_end: body.len(),
            indexes: None,
            directory: None,
        });
    }
    let offset_at = body
        .len()
        .checked_sub(8)
        .ok_or("body is short: it has no room for the indexes' offset")?;
    let offset = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let indexes_at = offset(offset_at);
    // The directory as the file holds it: the split (version 5), the outcomes, the users.
    let (indexes_end, directory) = match version >= FORMAT_VERSION_DIRECTORY {
        true => {
            let split_bytes = match version >= FORMAT_VERSION_SPLIT {
                true => 16,
                false => 0,
            };
            let directory_at = offset_at
                .checked_sub(16 + split_bytes)
                .ok_or("body is short: it has no room for the facts' directory")?;
            let lists_at = directory_at + split_bytes;
            let split = (split_bytes > 0).then(|| (offset(directory_at), offset(directory_at + 8)));
            let lists = (offset(lists_at), offset(lists_at + 8));
            (directory_at, Some((split, lists)))
        }
        false => (offset_at, None),
    };
    let indexes_at = match usize::try_from(indexes_at) {
        Ok(at) if at <= indexes_end => at,
        _ => {
            return Err(format!(
                "the indexes' offset {indexes_at} lies past the indexes' end {indexes_end}"
            ));
        }
    };
    let directory = directory
        .map(|(split, (outcomes_at, users_at))| {
            let at = |offset: u64| usize::try_from(offset).ok().filter(|&at| at <= indexes_at);
            let in_order = |split_at: Option<usize>| {
                let (outcomes, users) = (at(outcomes_at)?, at(users_at)?);
                (split_at.unwrap_or(0) <= outcomes && outcomes <= users)
                    .then_some((outcomes, users))
            };
            let fits = match split {
                None => in_order(None).map(|lists| (None, lists)),
                Some((index, split_at)) => {
                    let index = usize::try_from(index).ok()?;
                    let split_at = at(split_at)?;
                    in_order(Some(split_at)).map(|lists| (Some((index, split_at)), lists))
                }
            };
            fits.map(|(split, (outcomes_at, users_at))| FactsDirectory {
                split,
                outcomes_at,
                users_at,
            })
        })
        .map(|fits| {
            fits.ok_or_else(|| {
                let (split, (outcomes_at, users_at)) = directory.expect("a directory was read");
                let split = match split {
                    Some((index, at)) => format!("message {index} at {at}, "),
                    None => String::new(),
                };
                format!(
                    "the facts' directory ({split}outcomes at {outcomes_at}, users at {users_at}) \
                     does not lie in order within the facts, which end at {indexes_at}"
                )
            })
        })
        .transpose()?;
    Ok(BodyParts {
        facts_end: indexes_at,
        indexes: Some(indexes_at..indexes_end),
        directory,
    })
}

/// Tells `passed` of every `every` bytes of `range` past its start, as a reading of those bytes
/// would ([`decode_facts`]), for bytes read past rather than decoded.
fn pass_over(range: Range<usize>, every: usize, passed: impl FnMut(usize)) {
    range.step_by(every).skip(1).for_each(passed);
}

/// Reads a body's indexes part (all of `part`); with `sums_by_time` whole, else the rollup and
/// the credits' sums by time read past (`Options::load_sums_by_time`). With `mapped`, the
/// reading of the snapshot `part` lies in, the message rollup's slices' items stay there until
/// used (`time_index::SliceItems`; the outcome credits' are few, and their checks read them
/// all). Calls `passed` with the bytes read so far each time `every` more have been read, as
/// [`decode_facts`] does.
pub(crate) fn decode_indexes(
    part: &mut codec::SnapshotReader,
    every: usize,
    (sums_by_time, mapped): (bool, Option<MappedReading<'_>>),
    mut passed: impl FnMut(usize),
) -> std::result::Result<DecodedIndexes, String> {
    let indexes = match sums_by_time {
        true => DecodedIndexes {
            rollup: part.decode_passing_in(every, &mut passed, mapped)?,
            credits: part.decode_passing(every, &mut passed)?,
        },
        false => {
            // Bytes read past are passed as a reading passes them: once `every` more are behind.
            let mut every_bytes = codec::EveryBytes::new(part.position(), every, &mut passed);
            let mut reached = |at: usize| every_bytes.reached(at);
            let tag = |part: &mut codec::SnapshotReader, what: &str| match part.decode::<u8>()? {
                tag @ (0 | 1) => Ok(tag == 1),
                tag => Err(format!(
                    "snapshot body does not decode: the {what} option tag is {tag}"
                )),
            };
            if tag(part, "rollup's")? {
                MessageRollup::skip(part, &mut reached)?;
            }
            let credits = match tag(part, "outcome credits'")? {
                true => Some((
                    part.decode()?,
                    Credits::decode_past_sums_by_time(part, every, &mut reached)?,
                )),
                false => None,
            };
            DecodedIndexes {
                rollup: None,
                credits,
            }
        }
    };
    let left = part.bytes_left();
    if left != 0 {
        return Err(format!("the indexes part has {left} bytes after its end"));
    }
    Ok(indexes)
}

impl DecodedIndexes {
    /// The indexes checked to fit `facts` (any that does not is an error, naming why); the
    /// credits only if made under `attribution_window_ms`, else none (they are built on first
    /// use under the open's window).
    pub(crate) fn fit(
        self,
        facts: &Facts,
        attribution_window_ms: i64,
    ) -> std::result::Result<Indexes, String> {
        let (messages, _, names) = facts.counts();
        // Every item an index files has a time of the facts': one a frame can hold, at or
        // before the facts' latest (`decode_facts` checks both of that time): the slices of
        // those times are every key an index may hold.
        let earliest_ms = chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp_millis();
        let slices = match facts.latest_event_ms() {
            Some(latest_ms) if codec::time_in_range(i128::from(latest_ms)) => {
                crate::projection::time_index::slices_of(earliest_ms, latest_ms)
            }
            _ => crate::projection::time_index::slices_of(0, -1),
        };
        // The two indexes are checked on two threads: an open waits for the longer.
        let fit_rollup = |rollup: Option<MessageRollup>| {
            rollup
                .map(|rollup| rollup.fit(facts.message_states(), names, slices.clone()))
                .transpose()
                .map_err(|reason| format!("its message rollup does not fit its facts: {reason}"))
        };
        let fit_credits = |credits: Option<(i64, Credits)>| match credits {
            Some((window_ms, credits)) if window_ms == attribution_window_ms => credits
                .fit(facts.outcome_states(), messages, names, slices.clone())
                .map(Some)
                .map_err(|reason| format!("its outcome credits do not fit its facts: {reason}")),
            _ => Ok(None),
        };
        let (rollup, credits) = match (self.rollup, self.credits) {
            (Some(rollup), Some(credits)) => std::thread::scope(|scope| {
                let credits = scope.spawn(|| fit_credits(Some(credits)));
                let rollup = fit_rollup(Some(rollup));
                (rollup, joined(credits))
            }),
            (rollup, credits) => (fit_rollup(rollup), fit_credits(credits)),
        };
        Ok(Indexes {
            rollup: rollup?,
            credits: credits?,
        })
    }
}

/// How [`decode_facts`] decodes the two long lists.
#[derive(Clone, Copy)]
pub(crate) enum Decoding<'a> {
    /// Whole, the messages' records into chunks made ready by another thread when it can.
    Whole(&'a ReadyChunks),
    /// On demand, from the mapped snapshot the body lies in (and the body's offset in it); a
    /// thread reading a part ahead leaves its checksum of it in the `Crcs`; the records from
    /// the split, if given ([`records_ahead`]), are read ahead on a thread of their own. Then
    /// this reading's own checksum: taken on to a point, its crc32 there
    /// ([`ReadBehind::crc_at`]); last, whether the records are counted into the totals over
    /// all time as they are read (`Options::count_totals`).
    OnDemand(
        &'a Arc<MappedSnapshot>,
        usize,
        &'a Crcs,
        Option<(usize, usize)>,
        &'a dyn Fn(usize) -> u32,
        bool,
    ),
}

/// Checks a header read from a file of `file_len` bytes; returns the format version.
fn check_header(header: &[u8; HEADER_BYTES], file_len: u64) -> std::result::Result<u32, String> {
    if header[..VERSION_OFFSET] != MAGIC {
        return Err("bad magic: not a commlog snapshot".to_string());
    }
    let stored = u32_at(header, HEADER_CRC_OFFSET);
    let computed = crc32fast::hash(&header[..HEADER_CRC_OFFSET]);
    if stored != computed {
        return Err(format!(
            "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let version = u32_at(header, VERSION_OFFSET);
    if !(FORMAT_VERSION_FACTS_ONLY..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "format version {version}, but this build reads versions \
             {FORMAT_VERSION_FACTS_ONLY} to {FORMAT_VERSION}"
        ));
    }
    let body_len = u64::from_le_bytes(
        header[BODY_LEN_OFFSET..BODY_CRC_OFFSET]
            .try_into()
            .expect("8 bytes"),
    );
    if HEADER_BYTES as u64 + body_len != file_len {
        return Err(format!(
            "file is {file_len} bytes, but its header says {}",
            HEADER_BYTES as u64 + body_len
        ));
    }
    Ok(version)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

/// Checks that the log in `dir` holds what `position` names: its segment, with the same store
/// id and first seq, and there the frame (seq, start, end, checksum) or, right after the header,
/// nothing yet. The error says what differs.
pub(crate) fn check_position(
    dir: &Path,
    position: &LogPosition,
) -> std::result::Result<(), String> {
    let path = dir.join(segment_file_name(position.segment_first_seq));
    let name = file_name_of(&path);
    let header_bytes = read_header_bytes(&path).map_err(|error| error.to_string())?;
    let header = SegmentHeader::decode(&header_bytes)
        .map_err(|reason| format!("segment {name}: {reason}"))?;
    if header.store_id != position.store_id || header.first_seq != position.segment_first_seq {
        return Err(format!(
            "segment {name} belongs to another store or starts elsewhere (store id {:?}, first \
             seq {})",
            header.store_id, header.first_seq
        ));
    }
    let header_end = header.len_bytes() as u64;
    if position.frame_start == position.end {
        let fits = position.end == header_end
            && position.frame_count == 0
            && header.first_seq == position.last_seq + 1
            && header.first_message_id == position.cursor.next_message_id;
        return fits
            .then_some(())
            .ok_or_else(|| format!("segment {name} does not start where the snapshot ends"));
    }
    let frame_len = position
        .end
        .checked_sub(position.frame_start)
        .filter(|len| *len <= 4096 && position.frame_start >= header_end)
        .ok_or_else(|| {
            format!(
                "frame bounds {}..{} are implausible",
                position.frame_start, position.end
            )
        })?;
    let file = open_no_follow(OpenOptions::new().read(true), &path).map_err(|e| e.to_string())?;
    let mut frame = vec![0; frame_len as usize];
    file.read_exact_at(&mut frame, position.frame_start)
        .map_err(|error| {
            format!(
                "segment {name} has no frame at offset {}: {error}",
                position.frame_start
            )
        })?;
    let raw = codec::read_frame(&frame)
        .map_err(|reason| format!("segment {name}, offset {}: {reason}", position.frame_start))?;
    if raw.frame_bytes as u64 != frame_len
        || codec::stored_crc(&frame) != position.frame_crc
        || raw.seq() != position.last_seq
    {
        return Err(format!(
            "segment {name} holds another frame at offset {} (seq {}, checksum {:#010x}; the \
             snapshot ends after seq {}, checksum {:#010x})",
            position.frame_start,
            raw.seq(),
            codec::stored_crc(&frame),
            position.last_seq,
            position.frame_crc
        ));
    }
    Ok(())
}

/// Checks that the log's segments up to the position are those the snapshot covers, with the
/// same frames: each segment's frames up to where the snapshot covers it have the checksum it
/// recorded. So damage to the log before a snapshot is found at open as without one (the
/// snapshot is ignored, and the full replay names the damage).
fn check_covered(
    dir: &Path,
    position: &LogPosition,
    covered: &[CoveredSegment],
) -> std::result::Result<(), String> {
    let listed: Vec<(u64, PathBuf)> = list_segments(dir)
        .map_err(|error| error.to_string())?
        .into_iter()
        .filter(|(first_seq, _)| *first_seq <= position.segment_first_seq)
        .collect();
    if !listed
        .iter()
        .map(|(first_seq, _)| *first_seq)
        .eq(covered.iter().map(|segment| segment.first_seq))
    {
        return Err(format!(
            "the log's segments up to {} are not those the snapshot covers ({} listed, {} covered)",
            segment_file_name(position.segment_first_seq),
            listed.len(),
            covered.len()
        ));
    }
    let mut buffer = vec![0; CHECK_BUFFER_BYTES];
    for (at, ((_, path), segment)) in listed.iter().zip(covered).enumerate() {
        // Segments before the position's are sealed, never cut: read through a map. The
        // position's may be the log's last, whose torn tail a writer opening meanwhile may cut:
        // read into a buffer, which a shorter file cannot fault.
        let sealed_before = covered.get(at + 1).map(|next| next.first_seq);
        let walked = sealed_before.is_none().then_some(position);
        check_frames(
            path,
            segment,
            (position.store_id, sealed_before),
            (walked, &mut buffer),
        )?;
    }
    Ok(())
}

/// Bytes of the covered log read at a time: pieces that stay in the core's cache while they are
/// checksummed.
const CHECK_BUFFER_BYTES: usize = 64 << 10;

/// Checks one covered segment: its header (same store, first seq) and its frames' checksum;
/// for a segment before the position's, sealed before the segment starting at `sealed_before`,
/// that its seal slot (which no checksum of the snapshot covers) names that segment, where its
/// version has one, and that nothing but zeros follows its covered end, as replay requires of a
/// sealed segment; and for the segment of `position` (`walked`), read into `buffer`, that its
/// frames up to the position give the running state the position records ([`FrameWalk`]).
fn check_frames(
    path: &Path,
    segment: &CoveredSegment,
    (store_id, sealed_before): (Option<u64>, Option<u64>),
    (walked, buffer): (Option<&LogPosition>, &mut [u8]),
) -> std::result::Result<(), String> {
    let name = file_name_of(path);
    let header_bytes = read_header_bytes(path).map_err(|error| error.to_string())?;
    let header = SegmentHeader::decode(&header_bytes)
        .map_err(|reason| format!("segment {name}: {reason}"))?;
    if header.first_seq != segment.first_seq || header.store_id != store_id {
        return Err(format!(
            "segment {name} does not carry the header the snapshot covered"
        ));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut offset = header.len_bytes() as u64;
    let short = |error: &dyn std::fmt::Display| {
        format!(
            "segment {name} is shorter than the snapshot covered ({}): {error}",
            segment.end
        )
    };
    let mut walk = walked.map(|_| FrameWalk::new(&header));
    if walk.is_none() {
        let bytes = map_segment(path).map_err(|error| error.to_string())?;
        let frames = bytes
            .get(offset as usize..segment.end as usize)
            .ok_or_else(|| short(&format!("it holds {} bytes", bytes.len())))?;
        hasher.update(frames);
        let next_first_seq = sealed_before.expect("a segment not walked is sealed");
        if header.store_id.is_some() && codec::decode_seal(&bytes) != Some(next_first_seq) {
            return Err(format!(
                "segment {name}'s seal slot (offset {SEAL_SLOT_OFFSET}) does not name its \
                 successor {}",
                segment_file_name(next_first_seq)
            ));
        }
        if let Some(extra) = bytes[segment.end as usize..]
            .iter()
            .position(|&byte| byte != 0)
        {
            return Err(format!(
                "segment {name} holds bytes past the end the snapshot covered ({}), at \
                 offset {}",
                segment.end,
                segment.end + extra as u64
            ));
        }
    } else {
        let file =
            open_no_follow(OpenOptions::new().read(true), path).map_err(|e| e.to_string())?;
        while offset < segment.end {
            let len = buffer.len().min((segment.end - offset) as usize);
            file.read_exact_at(&mut buffer[..len], offset)
                .map_err(|error| short(&error))?;
            hasher.update(&buffer[..len]);
            if let Some(walk) = &mut walk {
                walk.feed(&buffer[..len]).map_err(|reason| {
                    format!("segment {name}, before offset {offset}: {reason}")
                })?;
            }
            offset += len as u64;
        }
    }
    let crc = hasher.finalize();
    if crc != segment.crc {
        return Err(format!(
            "segment {name}'s frames before offset {} differ from those the snapshot covered \
             (checksum {crc:#010x}, recorded {:#010x})",
            segment.end, segment.crc
        ));
    }
    if let (Some(walk), Some(position)) = (walk, walked) {
        walk.check(position)
            .map_err(|reason| format!("segment {name}: {reason}"))?;
    }
    Ok(())
}

/// The running state of a segment's frames, walked from its header: the position a snapshot
/// records (its frame count, whether the last frame is a close marker, and the cursor that the
/// frames after it are read against and written against) is checked against what the log's own
/// frames give, so that a snapshot whose checksums hold but whose position does not fit the log
/// is not used: a writer continues the segment from that cursor.
struct FrameWalk {
    cursor: FrameCursor,
    frames: u64,
    last_closed: bool,
    /// The start of a frame that the bytes fed so far end inside.
    carry: Vec<u8>,
}

impl FrameWalk {
    fn new(header: &SegmentHeader) -> FrameWalk {
        FrameWalk {
            cursor: FrameCursor::new(header),
            frames: 0,
            last_closed: false,
            carry: Vec::new(),
        }
    }

    /// Walks the frames `bytes` (the segment's next ones) complete. Their checksums are not
    /// checked here: the segment's checksum over all of them is.
    fn feed(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        let joined;
        let mut rest = if self.carry.is_empty() {
            bytes
        } else {
            self.carry.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.carry);
            &joined[..]
        };
        while let Some(len) = codec::frame_len(rest) {
            self.last_closed = codec::advance(&mut self.cursor, &rest[..len])?;
            self.frames += 1;
            rest = &rest[len..];
        }
        if rest.len() >= FRAME_PREFIX_BYTES + FRAME_BODY_BYTES_MAX {
            return Err(format!(
                "no frame fits in the {} bytes after the last",
                rest.len()
            ));
        }
        self.carry = rest.to_vec();
        Ok(())
    }

    /// Whether the frames walked end at `position` with the state it records.
    fn check(self, position: &LogPosition) -> std::result::Result<(), String> {
        if !self.carry.is_empty() {
            return Err(format!(
                "{} bytes before the position are not a whole frame",
                self.carry.len()
            ));
        }
        let fields = |frames: u64, closed: bool, cursor: &FrameCursor| {
            let (at_ms, appended_ms) = cursor.times();
            [
                ("frames", frames as i128),
                ("ending with a close marker", i128::from(closed)),
                ("next message id", i128::from(cursor.next_message_id)),
                ("last event time (ms)", i128::from(at_ms)),
                ("last appended time (ms)", i128::from(appended_ms)),
            ]
        };
        let walked = fields(self.frames, self.last_closed, &self.cursor);
        let recorded = fields(
            position.frame_count,
            position.ends_with_close_marker,
            &position.cursor,
        );
        match walked
            .iter()
            .zip(&recorded)
            .find(|(walked, recorded)| walked != recorded)
        {
            None => Ok(()),
            Some(((field, walked), (_, recorded))) => Err(format!(
                "its frames up to the position give {field} {walked}, the snapshot records \
                 {recorded}"
            )),
        }
    }
}

/// A writer that checksums and counts what passes through it.
struct Checksummed<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl<W> Checksummed<W> {
    fn new(inner: W) -> Checksummed<W> {
        Checksummed {
            inner,
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A file written through [`Write`] and, if `as_written`, synced each time another
/// [`SNAPSHOT_SYNC_BYTES`] have been written to it, so that the OS never holds much of it
/// unwritten: a tracking call that syncs its segment as it rolls over then waits for that
/// segment, not behind gigabytes of a snapshot the OS would write out all at once.
struct SyncedAsWritten<'a> {
    file: &'a File,
    as_written: bool,
    unsynced: u64,
}

impl SyncedAsWritten<'_> {
    fn new(file: &File, as_written: bool) -> SyncedAsWritten<'_> {
        SyncedAsWritten {
            file,
            as_written,
            unsynced: 0,
        }
    }
}

impl Write for SyncedAsWritten<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut file = self.file;
        let written = file.write(bytes)?;
        self.unsynced += written as u64;
        if self.as_written && self.unsynced >= SNAPSHOT_SYNC_BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain message passes the quick check exactly when it passes `message_agrees` with its
    /// latest stage as the latest event time, and that time is the latest it gives; no other
    /// message passes the quick check.
    #[test]
    fn the_quick_check_of_a_plain_message_is_message_agrees() {
        use crate::event::{Channel, UserId};
        use crate::money::Money;
        use crate::projection::names::ActionKind;
        let mut random = crate::workload::SplitMix64::new(11);
        let mut next = move |bound: u64| random.int(0, bound - 1);
        let (mut plain, mut passed) = (0, 0);
        for round in 0..20_000 {
            let sent_ms = next(1_000) as i64;
            let mut state = MessageState::new(
                UserId(next(5)),
                Channel::ALL[next(4) as usize],
                0,
                Money::from_micros(i128::from(next(90_000))),
                sent_ms,
            );
            for _ in 0..next(3) {
                let at_ms = sent_ms + next(20) as i64;
                match next(8) {
                    0 => state.fold_action(1, ActionKind::Other, at_ms),
                    1 => state.fold_failed(1, at_ms),
                    2..=4 => state.fold_opened(at_ms),
                    _ => state.fold_delivered(at_ms),
                }
            }
            match next(8) {
                0 => state.sent_ms += next(30) as i64,
                1 => state.cost_micros = -1,
                2 => state.cost_micros = crate::limits::MONEY_MICROS_MAX + 1,
                3 => state.sent_ms = i64::MIN,
                _ => {}
            }
            let quick = plain_message_agrees(&state);
            plain += usize::from(state.plain());
            let stages = [state.delivered.get(), state.opened.get()];
            let latest_ms = stages.into_iter().flatten().fold(state.sent_ms, i64::max);
            let agrees = |latest: i64| {
                message_agrees(&state, |ms| {
                    codec::time_in_range(i128::from(ms)) && ms <= latest
                })
                .is_ok()
            };
            match state.plain() {
                true => assert_eq!(
                    quick,
                    agrees(latest_ms).then_some(latest_ms),
                    "round {round}: {state:?}"
                ),
                false => assert_eq!(quick, None, "round {round}: {state:?}"),
            }
            if let Some(latest_ms) = quick {
                assert!(!agrees(latest_ms - 1), "round {round}: {state:?}");
                passed += 1;
            }
        }
        assert!(
            plain > 5_000 && passed > 3_000 && passed < plain,
            "{plain}, {passed}"
        );
    }

    /// A store of `SNAPSHOT_AT_CLOSE_MIN` sends, one every `every_ms`, whose close wrote a
    /// snapshot holding the message rollup (a query over a time range built it): the store's
    /// directory, the snapshot and the attribution window in milliseconds.
    fn store_with_rollup_snapshot(every_ms: i64) -> (tempfile::TempDir, PathBuf, i64) {
        use crate::{Channel, Options, StatsFilter, Store, SyncPolicy};
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        };
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        let start = chrono::DateTime::from_timestamp_millis(1_735_689_600_000).unwrap();
        for send in 0..crate::SNAPSHOT_AT_CLOSE_MIN as i64 {
            let at = start + chrono::Duration::milliseconds(send * every_ms);
            let channel = Channel::ALL[send as usize % 4];
            store
                .track_message_sent_at(send as u64 % 7 + 1, channel, "tip", 0.01, at)
                .unwrap();
        }
        let range = StatsFilter {
            start: Some(start + chrono::Duration::minutes(17)),
            end: Some(start + chrono::Duration::minutes(61)),
            ..StatsFilter::new()
        };
        store.get_communication_stats(&range).unwrap();
        store.close().unwrap();
        let snapshot = (Store::open_read_only(dir.path()).unwrap().open_report())
            .snapshot
            .expect("the close wrote a snapshot");
        (dir, snapshot, options.attribution_window.as_millis() as i64)
    }

    /// An open on demand counts the totals over all time only where it does not take the
    /// snapshot's message rollup, whose counts over all time answer the same queries.
    #[test]
    fn an_open_taking_the_rollup_counts_no_totals() {
        // A send a minute.
        let (dir, snapshot, window_ms) = store_with_rollup_snapshot(60_000);
        let counted = |indexes: bool, sums_by_time: bool| {
            let loading = Loading {
                on_demand: true,
                indexes,
                sums_by_time,
                count_totals: true,
            };
            let loaded = load(dir.path(), &snapshot, window_ms, loading).unwrap();
            assert_eq!(loaded.indexes.rollup.is_some(), indexes && sums_by_time);
            // Read on demand, the rollup leaves its slices' items in the file.
            if let Some(rollup) = &loaded.indexes.rollup {
                assert!(!rollup.time_buckets().mapped_slices().is_empty());
            }
            loaded.message_totals.is_some()
        };
        assert!(!counted(true, true));
        assert!(counted(true, false));
        assert!(counted(false, true));
    }

    /// Read on demand, the rollup's slices' items stay in the file, and neither the fit's
    /// reading of them nor a slice's decoding keeps their pages.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_rollups_items_left_in_the_file_keep_no_pages() {
        use crate::projection::time_index::MappedItems;
        // 8,000 sends a slice (the last 1,536): 32,000 bytes of items each, several pages of
        // their own.
        let (dir, snapshot, window_ms) = store_with_rollup_snapshot(75);
        let loading = Loading {
            on_demand: true,
            indexes: true,
            sums_by_time: true,
            count_totals: true,
        };
        let loaded = load(dir.path(), &snapshot, window_ms, loading).unwrap();
        let buckets = loaded.indexes.rollup.as_ref().unwrap().time_buckets();
        let mut mapped: Vec<MappedItems> = (buckets.mapped_slices().into_iter())
            .map(|slice| buckets.mapped_items(slice).unwrap())
            .collect();
        assert_eq!(mapped.len(), 9);
        for items in &mapped {
            let (resident, pages) = resident_pages(items.file_bytes());
            assert!(pages >= 1, "{pages} pages");
            assert_eq!(resident, 0, "a slice's items after the load");
        }
        // In the file's order: reading a page maps in its neighbours already in the page
        // cache too (the kernel's fault-around), those of the next slice among them.
        mapped.sort_by_key(|items| items.file_bytes().as_ptr());
        for items in &mapped {
            assert_eq!(items.decode().len(), items.len());
            assert_eq!(
                resident_pages(items.file_bytes()).0,
                0,
                "a slice's items decoded"
            );
        }
    }

    /// The checksum read on two threads is the file's crc32 from `start` on, for files shorter
    /// than a run, around a run's end and spanning several runs.
    #[test]
    fn the_checksum_on_two_threads_is_the_crc32_of_the_bytes() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut random = crate::workload::SplitMix64::new(9);
        for len in [
            0,
            1,
            4_095,
            RELEASE_BYTES - 1,
            RELEASE_BYTES + 1,
            2 * RELEASE_BYTES,
            3 * RELEASE_BYTES + 12_345,
        ] {
            let bytes: Vec<u8> = (0..len).map(|_| random.int(0, 255) as u8).collect();
            let path = dir.path().join(format!("file-{len}"));
            std::fs::write(&path, &bytes).unwrap();
            let file = File::open(&path).unwrap();
            let map = map_snapshot(&file).unwrap();
            for start in [0, HEADER_BYTES, 4_096].into_iter().filter(|&at| at <= len) {
                assert_eq!(
                    checksum_on_two_threads(&map, start),
                    crc32fast::hash(&bytes[start..]),
                    "{len} bytes from {start}"
                );
            }
        }
    }
}
