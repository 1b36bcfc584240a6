//! The segmented log: appends, rollover, the sync policies and group commit. Only this module
//! writes to the store directory (besides the `LOCK` file, which `store.rs` holds).
//!
//! Durability bookkeeping: `durable_seq` is the highest sequence number whose frame is known to
//! be on disk (an fsync of its segment completed). Every frame records the value it saw, so
//! replay can tell a torn tail (never durable) from corruption (durable, then damaged).

#[cfg(test)]
pub(crate) mod fault;
pub(crate) mod replay;
pub(crate) mod segment;
pub(crate) mod summary;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::codec::{self, Frame, FrameCursor, SegmentHeader};
use crate::error::{Error, Result};
use crate::event::{Event, LoggedEvent};
use crate::limits::{
    CLOSE_MARKER_BYTES_MAX, FRAME_BODY_BYTES_MAX, FRAME_PREFIX_BYTES, WRITE_BUFFER_BYTES,
};
use crate::options::Options;
use replay::Tail;
use segment::{create_segment, new_store_id, open_no_follow};

/// When an acknowledged call is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SyncPolicy {
    /// The OS decides when data reaches the disk (D0). Segments are still synced when sealed,
    /// and, so that sealing one at rollover does not hold up a call while the whole segment
    /// reaches the disk, a background thread syncs the segment each time another
    /// [`Options::sync_ahead_bytes`](crate::Options::sync_ahead_bytes) of it have been handed
    /// to the OS.
    Never,
    /// A background thread hands buffered frames to the OS and fsyncs every interval (D1):
    /// an acknowledged call is durable within about one interval.
    Interval(Duration),
    /// A call returns only after its frame is fsynced (D2); concurrent callers share one
    /// fdatasync (group commit).
    #[default]
    Always,
}

/// What opening the store found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpenReport {
    /// Segment files in the log (replayed, or covered by the snapshot loaded).
    pub segments: u64,
    /// Events in the log (replayed, or covered by the snapshot loaded).
    pub events: u64,
    /// Sequence number of the last event replayed (0: none).
    pub last_seq: u64,
    /// Bytes of torn tail cut off the last segment (read-only: ignored, left in place).
    pub truncated_bytes: u64,
    /// Where the cut-off bytes were copied, if any were.
    pub quarantined: Option<PathBuf>,
    /// The snapshot the views were loaded from, if one was; the log was replayed after it.
    pub snapshot: Option<PathBuf>,
    /// Events the snapshot loaded covers (0 without one): those not replayed.
    pub snapshot_events: u64,
    /// Snapshots found and not used (damaged, of another version, or not matching the log),
    /// newest first, each with the reason. Nothing is lost: the log was replayed instead.
    pub ignored_snapshots: Vec<crate::snapshot::IgnoredSnapshot>,
}

/// A place in the log right after a frame, or right after a segment's header while the segment
/// holds no frame: where a snapshot's state ends and a replay resumes (docs/FORMAT.md,
/// "Snapshots"). It names the frame there by its start and stored checksum, so that a log which
/// no longer holds that frame is told apart. Field order is the byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub(crate) struct LogPosition {
    /// Sequence number of the last event before the position (0: none).
    pub last_seq: u64,
    /// The first seq of the segment holding the position (its file name).
    pub segment_first_seq: u64,
    /// The store id that segment's header carries (`None`: format version 1).
    pub store_id: Option<u64>,
    /// Where the frame before the position starts; equal to `end` when the position follows
    /// the header.
    pub frame_start: u64,
    /// That frame's stored checksum; 0 when the position follows the header.
    pub frame_crc: u32,
    /// The position's offset in the segment: bytes of header and whole frames before it.
    pub end: u64,
    /// Frames before the position in its segment, close markers included.
    pub frame_count: u64,
    /// Whether the frame before the position is a close marker.
    pub ends_with_close_marker: bool,
    /// The segment's running state at the position.
    pub cursor: FrameCursor,
}

/// A segment's frames as a snapshot covers them: the bytes from the end of its header to `end`,
/// and their crc32. An open that loads the snapshot checks them, so that damage to the log
/// before a snapshot is found as it would be without one. Field order is the byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub(crate) struct CoveredSegment {
    pub first_seq: u64,
    pub end: u64,
    pub crc: u32,
}

/// The append side of the log: the segment being written and the frames not yet handed to
/// the OS. Lives behind [`SharedLog`]'s mutex.
pub(crate) struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    file: Arc<File>,
    path: PathBuf,
    cursor: FrameCursor,
    /// Bytes of the segment, buffered ones included.
    segment_len: u64,
    frame_count: u64,
    /// Where the segment's last frame starts, and its stored checksum (`segment_len` and 0
    /// while the segment holds none).
    last_frame: (u64, u32),
    /// The first seq of the segment being written (its file name).
    segment_first_seq: u64,
    /// The crc32 of the segment's frames handed to the OS so far.
    frames_crc: crc32fast::Hasher,
    /// The segments before it, as a snapshot covers them.
    sealed: Vec<CoveredSegment>,
    buffer: Vec<u8>,
    next_seq: u64,
    ends_with_close_marker: bool,
    durable_seq: Arc<AtomicU64>,
    poison: Arc<OnceLock<String>>,
    /// What every new segment's header says about its store: the store's id, or `None` for a
    /// store whose first segment is of format version 1 (it keeps writing that version).
    store_id: Option<u64>,
    /// Wakes the thread that syncs the segment ahead of its rollover (`SyncPolicy::Never`:
    /// [`SharedLog::sync_ahead_wakes`]) every `sync_ahead_bytes`; `None` without one.
    sync_ahead: Option<mpsc::SyncSender<()>>,
    /// `Options::sync_ahead_bytes`.
    sync_ahead_bytes: u64,
    /// Bytes of the segment handed to the OS when that thread was last woken (or when the
    /// segment was opened or begun).
    sync_ahead_at: u64,
}

impl Log {
    /// The id the next `MessageSent` gets.
    pub(crate) fn next_message_id(&self) -> u64 {
        self.cursor.next_message_id
    }

    /// The sequence number of the last event appended (0: none yet).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Whether the next frame, however long, goes into the buffer without a write or a
    /// rollover (so that a batch can hand a chunk of frames to the OS before folding any).
    pub(crate) fn has_room_for_frame_unwritten(&self) -> bool {
        let frame_max = FRAME_PREFIX_BYTES + FRAME_BODY_BYTES_MAX;
        self.buffer.len() + frame_max < WRITE_BUFFER_BYTES
            && self.segment_len + frame_max as u64 + CLOSE_MARKER_BYTES_MAX <= self.segment_bytes
    }

    /// Appends one event (to the buffer), rolling over to a new segment first if it would not
    /// fit. Returns the event as logged.
    pub(crate) fn append<'a>(
        &mut self,
        event: Event<'a>,
        appended_ms: i64,
    ) -> Result<LoggedEvent<'a>> {
        self.check_poison()?;
        let mut logged = LoggedEvent {
            seq: self.next_seq,
            appended_ms,
            durable_seq: self.durable_seq.load(Ordering::Acquire),
            event,
        };
        let start = self.buffer.len();
        let mut cursor = self.cursor;
        codec::encode_frame(&mut cursor, &Frame::Event(logged), &mut self.buffer);
        let mut frame_len = (self.buffer.len() - start) as u64;
        // Room for a close marker stays free, so that a clean close keeps within the limit.
        let segment_len_after = self.segment_len + frame_len + CLOSE_MARKER_BYTES_MAX;
        if self.frame_count > 0 && segment_len_after > self.segment_bytes {
            self.buffer.truncate(start);
            self.roll_over()?;
            logged.durable_seq = self.durable_seq.load(Ordering::Acquire);
            let start = self.buffer.len();
            cursor = self.cursor;
            codec::encode_frame(&mut cursor, &Frame::Event(logged), &mut self.buffer);
            frame_len = (self.buffer.len() - start) as u64;
        }
        let frame = &self.buffer[self.buffer.len() - frame_len as usize..];
        debug_assert!(codec::read_frame(frame).is_ok());
        self.last_frame = (self.segment_len, codec::stored_crc(frame));
        self.cursor = cursor;
        self.segment_len += frame_len;
        self.frame_count += 1;
        self.next_seq += 1;
        self.ends_with_close_marker = false;
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer()?;
        }
        Ok(logged)
    }

    /// Hands buffered frames to the OS. On a poisoned log it fails even with nothing buffered:
    /// the frames a failed write discarded were never handed over.
    pub(crate) fn write_buffer(&mut self) -> Result<()> {
        self.write_buffer_counted().map_err(|failed| failed.error)
    }

    /// [`Log::write_buffer`], telling on failure how many of the buffer's bytes reached the OS
    /// (the frames wholly inside them are in the segment; the store is poisoned).
    pub(crate) fn write_buffer_counted(&mut self) -> std::result::Result<(), WriteFailed> {
        self.check_poison()
            .map_err(|error| WriteFailed { written: 0, error })?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = write_segment(&self.file, &self.buffer);
        if result.is_ok() {
            self.frames_crc.update(&self.buffer);
            self.wake_sync_ahead();
        }
        self.buffer.clear();
        result.map_err(|(written, source)| WriteFailed {
            written,
            error: self.poisoned(Error::io(&self.path, source)),
        })
    }

    /// Wakes the sync-ahead thread once another `sync_ahead_bytes` of the segment have been
    /// handed to the OS since it was last woken. Never waits: a wake-up already pending leads
    /// to a sync that starts after these bytes were handed over, and so covers them too.
    fn wake_sync_ahead(&mut self) {
        let Some(wake) = &self.sync_ahead else {
            return;
        };
        if self.segment_len >= self.sync_ahead_at.saturating_add(self.sync_ahead_bytes) {
            self.sync_ahead_at = self.segment_len;
            let _ = wake.try_send(());
        }
    }

    /// Bytes buffered and not yet handed to the OS: right after an append, where its frame
    /// ends in the buffer.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Seals the current segment (written and fsynced whole) and starts the next one.
    ///
    /// The order makes a missing newest segment detectable (docs/FORMAT.md, "Rollover"): the
    /// new segment and its directory entry are made durable, then (format version 2) the old
    /// segment's seal slot names the new segment's first seq and is fsynced, and only then
    /// does any frame go into the new segment. An old segment found unsealed at open thus
    /// proves its successor never held an event.
    fn roll_over(&mut self) -> Result<()> {
        self.write_buffer()?;
        sync_segment(&self.file).map_err(|source| self.poisoned(Error::io(&self.path, source)))?;
        self.durable_seq
            .fetch_max(self.next_seq - 1, Ordering::AcqRel);
        let header = SegmentHeader {
            first_seq: self.next_seq,
            first_message_id: self.cursor.next_message_id,
            store_id: self.store_id,
        };
        let (file, path) =
            create_segment(&self.dir, &header).map_err(|error| self.poisoned(error))?;
        if self.store_id.is_some() {
            seal_segment(&self.path, header.first_seq).map_err(|error| self.poisoned(error))?;
        }
        let frames_crc = std::mem::replace(&mut self.frames_crc, crc32fast::Hasher::new());
        self.sealed.push(CoveredSegment {
            first_seq: self.segment_first_seq,
            end: self.segment_len,
            crc: frames_crc.finalize(),
        });
        self.segment_first_seq = header.first_seq;
        self.file = Arc::new(file);
        self.path = path;
        self.cursor = FrameCursor::new(&header);
        self.segment_len = header.len_bytes() as u64;
        self.sync_ahead_at = self.segment_len;
        self.frame_count = 0;
        self.last_frame = (self.segment_len, 0);
        Ok(())
    }

    /// Every segment up to where the log ends, as a snapshot covers them; nothing may be
    /// buffered ([`Log::write_buffer`] first).
    pub(crate) fn covered(&self) -> Vec<CoveredSegment> {
        assert!(self.buffer.is_empty(), "every frame is handed to the OS");
        let mut covered = self.sealed.clone();
        covered.push(CoveredSegment {
            first_seq: self.segment_first_seq,
            end: self.segment_len,
            crc: self.frames_crc.clone().finalize(),
        });
        covered
    }

    /// Where the log ends now, frames still buffered included.
    pub(crate) fn position(&self) -> LogPosition {
        LogPosition {
            last_seq: self.next_seq - 1,
            segment_first_seq: self.segment_first_seq,
            store_id: self.store_id,
            frame_start: self.last_frame.0,
            frame_crc: self.last_frame.1,
            end: self.segment_len,
            frame_count: self.frame_count,
            ends_with_close_marker: self.ends_with_close_marker,
            cursor: self.cursor,
        }
    }

    /// Fails with [`Error::Poisoned`] once a write or sync has failed.
    pub(crate) fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            Some(first) => Err(Error::Poisoned {
                first: first.clone(),
                event_may_be_durable: false,
            }),
            None => Ok(()),
        }
    }

    /// Records `error` as the first failure (if it is) and returns it.
    fn poisoned(&self, error: Error) -> Error {
        let _ = self.poison.set(error.to_string());
        error
    }
}

/// The log shared by every thread of a store: appends under a mutex, syncs outside it.
pub(crate) struct SharedLog {
    log: Mutex<Log>,
    durable_seq: Arc<AtomicU64>,
    poison: Arc<OnceLock<String>>,
    sync_in_progress: Mutex<bool>,
    sync_done: Condvar,
}

impl SharedLog {
    /// Continues the log where replay left it (or starts it), after making everything replayed
    /// durable, so that new frames may record it as such.
    pub(crate) fn open(
        dir: &Path,
        options: &Options,
        tail: Option<Tail>,
        last_seq: u64,
        next_message_id: u64,
        mut covered: Vec<CoveredSegment>,
    ) -> Result<SharedLog> {
        // The tail's segment goes on; the ones before it are sealed.
        let tail_frames = match &tail {
            Some(_) => covered.pop().expect("replay covers the tail's segment"),
            None => CoveredSegment {
                first_seq: last_seq + 1,
                end: 0,
                crc: 0,
            },
        };
        let (
            file,
            path,
            cursor,
            segment_len,
            frame_count,
            last_frame,
            ends_with_close_marker,
            store_id,
        ) = match tail {
            None => {
                // No segment is left: the store starts here, in the current format.
                let header = SegmentHeader {
                    first_seq: last_seq + 1,
                    first_message_id: next_message_id,
                    store_id: Some(new_store_id()),
                };
                let (file, path) = create_segment(dir, &header)?;
                (
                    file,
                    path,
                    FrameCursor::new(&header),
                    header.len_bytes() as u64,
                    0,
                    (header.len_bytes() as u64, 0),
                    false,
                    header.store_id,
                )
            }
            Some(tail) => {
                let file = open_no_follow(OpenOptions::new().append(true), &tail.path)?;
                let io = |source| Error::io(&tail.path, source);
                // Zeros after the last frame are not data; the next frame goes where they start.
                if file.metadata().map_err(io)?.len() > tail.end {
                    file.set_len(tail.end).map_err(io)?;
                }
                // A crashed writer's last frames may sit in the page cache only.
                file.sync_all().map_err(io)?;
                (
                    file,
                    tail.path,
                    tail.cursor,
                    tail.end,
                    tail.frame_count,
                    tail.last_frame,
                    tail.ends_with_close_marker,
                    tail.store_id,
                )
            }
        };
        let log = Log {
            dir: dir.to_path_buf(),
            segment_bytes: options.segment_bytes,
            file: Arc::new(file),
            path,
            cursor,
            segment_len,
            frame_count,
            last_frame,
            segment_first_seq: tail_frames.first_seq,
            frames_crc: crc32fast::Hasher::new_with_initial(tail_frames.crc),
            sealed: covered,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES + 4096),
            next_seq: last_seq + 1,
            ends_with_close_marker,
            durable_seq: Arc::new(AtomicU64::new(last_seq)),
            poison: Arc::new(OnceLock::new()),
            store_id,
            sync_ahead: None,
            sync_ahead_bytes: options.sync_ahead_bytes,
            sync_ahead_at: segment_len,
        };
        Ok(SharedLog {
            durable_seq: Arc::clone(&log.durable_seq),
            poison: Arc::clone(&log.poison),
            log: Mutex::new(log),
            sync_in_progress: Mutex::new(false),
            sync_done: Condvar::new(),
        })
    }

    /// Locks the append side.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock()
    }

    /// The wake-ups of a thread that syncs the segment ahead of its rollover: one each time
    /// another `Options::sync_ahead_bytes` of it have been handed to the OS. They end when
    /// [`SharedLog::stop_sync_ahead`] is called or the log is dropped.
    pub(crate) fn sync_ahead_wakes(&self) -> mpsc::Receiver<()> {
        let (wake, wakes) = mpsc::sync_channel(1);
        self.log.lock().sync_ahead = Some(wake);
        wakes
    }

    /// The highest seq known durable.
    #[cfg(test)]
    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    /// Ends the wake-ups of [`SharedLog::sync_ahead_wakes`].
    pub(crate) fn stop_sync_ahead(&self) {
        self.log.lock().sync_ahead = None;
    }

    /// Hands every buffered frame to the OS.
    pub(crate) fn flush(&self) -> Result<()> {
        self.log.lock().write_buffer()
    }

    /// Makes everything appended so far durable. On a poisoned log it fails even when nothing
    /// is left to sync: what the disk holds is unknown.
    pub(crate) fn sync(&self) -> Result<()> {
        let last_seq = {
            let log = self.log.lock();
            log.check_poison()?;
            log.next_seq - 1
        };
        self.sync_to(last_seq)
    }

    /// Returns once `seq` is durable. One caller at a time runs the fsync, covering every frame
    /// appended before it started; the others wait for it and find themselves covered (group
    /// commit).
    pub(crate) fn sync_to(&self, seq: u64) -> Result<()> {
        loop {
            // Durable first: a frame an fsync covered stays durable whatever failed after it.
            if self.durable_seq.load(Ordering::Acquire) >= seq {
                return Ok(());
            }
            if let Some(first) = self.poison.get() {
                return Err(Error::Poisoned {
                    first: first.clone(),
                    event_may_be_durable: false,
                });
            }
            let mut in_progress = self.sync_in_progress.lock();
            if self.durable_seq.load(Ordering::Acquire) >= seq {
                return Ok(());
            }
            if *in_progress {
                self.sync_done.wait(&mut in_progress);
                continue;
            }
            *in_progress = true;
            drop(in_progress);
            let result = self.sync_once();
            *self.sync_in_progress.lock() = false;
            self.sync_done.notify_all();
            result?;
        }
    }

    /// Writes the buffer and fsyncs the active segment outside the append lock.
    fn sync_once(&self) -> Result<()> {
        let (file, path, target_seq) = {
            let mut log = self.log.lock();
            log.write_buffer()?;
            (Arc::clone(&log.file), log.path.clone(), log.next_seq - 1)
        };
        match sync_segment(&file) {
            Ok(()) => {
                self.durable_seq.fetch_max(target_seq, Ordering::AcqRel);
                Ok(())
            }
            Err(source) => {
                let error = Error::io(&path, source);
                let _ = self.poison.set(error.to_string());
                Err(error)
            }
        }
    }

    /// Syncs everything, then writes and syncs a close marker proving the whole log durable.
    pub(crate) fn close(&self, appended_ms: i64) -> Result<()> {
        let mut log = self.log.lock();
        log.write_buffer()?;
        sync_segment(&log.file).map_err(|source| log.poisoned(Error::io(&log.path, source)))?;
        let last_seq = log.next_seq - 1;
        self.durable_seq.fetch_max(last_seq, Ordering::AcqRel);
        if last_seq == 0 || log.ends_with_close_marker {
            return Ok(());
        }
        let mut cursor = log.cursor;
        let start = log.buffer.len();
        codec::encode_frame(
            &mut cursor,
            &Frame::Closed {
                last_seq,
                appended_ms,
            },
            &mut log.buffer,
        );
        let marker_len = (log.buffer.len() - start) as u64;
        assert!(marker_len <= CLOSE_MARKER_BYTES_MAX);
        log.last_frame = (log.segment_len, codec::stored_crc(&log.buffer[start..]));
        log.segment_len += marker_len;
        log.frame_count += 1;
        log.cursor = cursor;
        log.ends_with_close_marker = true;
        log.write_buffer()?;
        sync_segment(&log.file).map_err(|source| log.poisoned(Error::io(&log.path, source)))
    }
}

/// A write of buffered frames that failed after `written` bytes reached the OS.
#[derive(Debug)]
pub(crate) struct WriteFailed {
    pub written: usize,
    pub error: Error,
}

/// Hands `bytes` to the OS at the end of a segment; on failure, how many of them it took.
/// Every write of frames goes through here, so that unit tests can make one fail (`fault`).
fn write_segment(
    mut file: &File,
    bytes: &[u8],
) -> std::result::Result<(), (usize, std::io::Error)> {
    #[cfg(test)]
    if let Some(error) = fault::take(fault::Operation::Write) {
        // As a file-size limit does: the bytes up to the limit land, the rest fail.
        let half = bytes.len() / 2;
        file.write_all(&bytes[..half]).map_err(|error| (0, error))?;
        return Err((half, error));
    }
    // `write_all`, counting: a partial write followed by an error leaves whole frames behind.
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return Err((written, std::io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err((written, error)),
        }
    }
    Ok(())
}

/// Writes a version 2 segment's seal slot, naming `next_first_seq` as its successor's first
/// seq, and makes it durable. The slot lies inside the header, so it is written in place
/// through a handle of its own (the segment's handle appends).
pub(crate) fn seal_segment(path: &Path, next_first_seq: u64) -> Result<()> {
    let file = open_no_follow(OpenOptions::new().write(true), path)?;
    file.write_all_at(
        &codec::encode_seal(next_first_seq),
        codec::SEAL_SLOT_OFFSET as u64,
    )
    .and_then(|()| file.sync_data())
    .map_err(|source| Error::io(path, source))
}

/// Makes a segment's written bytes durable. Every fsync of frames goes through here, so that
/// unit tests can make one fail (`fault`).
fn sync_segment(file: &File) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(error) = fault::take(fault::Operation::Sync) {
        return Err(error);
    }
    file.sync_data()
}
