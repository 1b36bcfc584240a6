//! Offline audit: what the log holds and every piece of damage in it, read-only.
//!
//! [`audit`] runs open's own checks (a read-only replay) for the verdict and the first finding,
//! then, on a damaged log, walks every segment again, resynchronising after each bad frame, to
//! list all the damage. [`crate::repair`] acts on what it finds.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::{self, Frame, FrameCursor, SEAL_SLOT_OFFSET, SegmentHeader};
use crate::error::{Error, Result};
use crate::event::{Event, LoggedEvent};
use crate::limits::{
    CLOCK_SKEW_MS_MAX, SEGMENT_HEADER_V1_BYTES, SEGMENT_HEADER_V2_BYTES, TIME_AFTER_CLOCK_MS_MAX,
    TIME_MS_MIN, USER_ID_MAX,
};
use crate::log::OpenReport;
use crate::log::replay::{self, Checksums, Expected, Mode, Position, QUARANTINE_DIRECTORY};
use crate::log::segment::{
    SegmentBytes, file_name_of, list_segment_files, map_segment, open_no_follow, read_header_bytes,
    read_segment, refuse_newer_format,
};
use crate::store::LOCK_FILE_NAME;

mod snapshots;
pub use snapshots::{SnapshotAudit, SnapshotUse};

/// What one segment's bytes hold, read as the last segment of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentAudit {
    /// The header's first sequence number; `None` if the header is torn.
    pub first_seq: Option<u64>,
    /// Events read.
    pub events: u64,
    /// Frames read, close markers included.
    pub frames: u64,
    /// Offset after the last good frame.
    pub end_offset: u64,
    /// Where a torn tail starts, if any (it is not an error in a last segment).
    pub torn_offset: Option<u64>,
    /// Whether the last frame is a close marker (the log was closed cleanly there).
    pub closed: bool,
}

/// Checks a segment file's bytes frame by frame, handing each event to `visit`, and says where
/// they end. `name` is used in errors. Any input gives `Ok` or an [`crate::Error`], never a
/// panic.
///
/// ```
/// let report = commlog::audit::audit_segment(std::path::Path::new("x.log"), &[], |_| {})?;
/// assert_eq!(report.torn_offset, Some(0)); // no header: torn right at the start
/// # Ok::<(), commlog::Error>(())
/// ```
pub fn audit_segment(
    name: &Path,
    bytes: &[u8],
    mut visit: impl FnMut(&LoggedEvent<'_>),
) -> Result<SegmentAudit> {
    let header = SegmentHeader::decode(bytes).ok();
    let expected = header.map_or(
        Expected {
            first_seq: 1,
            first_message_id: 1,
            store_id: None,
        },
        |header| Expected {
            first_seq: header.first_seq,
            first_message_id: header.first_message_id,
            store_id: None,
        },
    );
    let end = replay::replay_segment(
        name,
        bytes,
        Position::Last,
        expected,
        Checksums::Verify,
        &mut |logged, _| visit(logged),
    )?;
    Ok(SegmentAudit {
        first_seq: header.map(|header| header.first_seq),
        events: end.events,
        frames: end.frame_count,
        end_offset: end.end,
        torn_offset: end.torn_offset,
        closed: end.ends_with_close_marker,
    })
}

/// Reads the whole log in `dir` read-only, handing every event to `visit` in sequence order,
/// exactly as opening the store would replay it.
pub fn read_log(
    dir: impl AsRef<Path>,
    mut visit: impl FnMut(&LoggedEvent<'_>),
) -> Result<OpenReport> {
    Ok(replay::replay(dir.as_ref(), Mode::ReadOnly, &mut visit)?.report)
}

/// What the next open will do with the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every byte checks out (or, beside a running writer, all but its unfinished end).
    Clean,
    /// A torn tail or header from a crash: the next writable open quarantines and cuts it.
    Torn,
    /// Damage open refuses ([`Error::Corruption`]), or with `deep`, events whose meaning is
    /// wrong: restore the segment from a backup, else `commlog repair --cut`.
    Corrupt,
}

/// What removes a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fix {
    /// The next writable open (or `commlog repair`) quarantines it.
    #[serde(rename = "open")]
    Open,
    /// Only cutting the log there removes it: `commlog repair --cut`, after trying a backup.
    #[serde(rename = "repair --cut")]
    RepairCut,
    /// A snapshot's finding: an open ignores the snapshot, or (found by `deep`) it does not
    /// hold what the log does. Deleting it loses nothing: it is a cache of the log.
    #[serde(rename = "delete snapshot")]
    DeleteSnapshot,
}

/// One piece of damage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `torn_tail`, `torn_header`, `header`, `frame`, `foreign_segment`, `misnamed_segment`,
    /// `gap`, `missing_segment`, `seal_mismatch`, `seal`, `not_regular_file`, (with `deep`)
    /// `meaning` (docs/CLI.md), or for a snapshot, which never changes the verdict,
    /// `snapshot_ignored` or (with `deep`) `snapshot_differs`.
    pub kind: String,
    /// The segment file's name (for `missing_segment`, the name of the file that is missing;
    /// for a snapshot, its path relative to the store directory).
    pub segment: String,
    /// Offset of the first bad byte in that file.
    pub offset: u64,
    /// How many bytes the damage spans, up to the next valid frame or the file's end (0 for a
    /// whole missing file or a single bad field).
    pub bytes: u64,
    /// The sequence number the bad bytes should have held, where known.
    pub seq: Option<u64>,
    /// What check failed.
    pub reason: String,
    /// What removes it.
    pub fix: Fix,
    /// Where a cut for this finding starts: the segment's position in the listing and the
    /// offset from which bytes go to quarantine.
    #[serde(skip)]
    pub(crate) cut: CutPoint,
}

/// Where `repair --cut` cuts: everything from `offset` of the `index`-th segment on, and every
/// later segment, goes to quarantine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CutPoint {
    pub index: usize,
    pub offset: u64,
}

/// One segment file, as audit read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// File name.
    pub file: String,
    /// First sequence number its header gives (`None`: no valid header).
    pub first_seq: Option<u64>,
    /// Last sequence number of a valid event in it (`None`: none).
    pub last_seq: Option<u64>,
    /// Valid events read in it, also after damage.
    pub events: u64,
    /// File size.
    pub bytes: u64,
    /// Whether it is sealed: a later segment follows it (its seal slot says so, or, format
    /// version 1, a later segment exists).
    pub sealed: bool,
    /// Earliest append time of its events (the clock at each call), where readable.
    #[serde(with = "crate::serde_time::optional")]
    pub time_min: Option<DateTime<Utc>>,
    /// Latest append time of its events.
    #[serde(with = "crate::serde_time::optional")]
    pub time_max: Option<DateTime<Utc>>,
}

/// A file kept in the store's `quarantine/` directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineFile {
    /// Path relative to the store directory, e.g. `quarantine/00000000000000000001.log.96.tail`.
    pub file: String,
    /// Size.
    pub bytes: u64,
}

/// A running writer's unfinished end: bytes being written, not damage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The segment being written.
    pub segment: String,
    /// Where the unfinished frames start.
    pub offset: u64,
    /// How many bytes of them audit saw.
    pub bytes: u64,
}

/// Everything [`audit`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// What the next open does.
    pub verdict: Verdict,
    /// Events the log holds before its earliest finding (in log order): what `repair --cut`
    /// keeps; for a clean or torn log, what an open replays.
    pub events: u64,
    /// Bytes of all segment files.
    pub bytes: u64,
    /// Sequence number of the last of those events (0: none).
    pub last_seq: u64,
    /// Highest sequence number proven durable: the end of a sealed segment, a close marker, or
    /// the durability a later frame records.
    pub durable_seq: u64,
    /// Every segment file, in log order.
    pub segments: Vec<SegmentSummary>,
    /// Every piece of damage. For a corrupt verdict the first is the error open reports; with
    /// `deep`, findings of meaning come before any torn end.
    pub findings: Vec<Finding>,
    /// The files in `quarantine/`.
    pub quarantine: Vec<QuarantineFile>,
    /// Beside a running writer: its unfinished end, which is not a finding.
    pub in_flight: Option<InFlight>,
    /// Every snapshot file, newest first (empty from a repair's audit). A snapshot an open
    /// ignores, or (with `deep`) one whose facts differ from the log's, is also a finding, but
    /// never changes the verdict: a snapshot is a cache of the log.
    #[serde(default)]
    pub snapshots: Vec<SnapshotAudit>,
}

impl Audit {
    /// Where `repair --cut` cuts: the earliest finding in log order (open's first finding, or
    /// one before it that open checks later, such as a seal).
    pub(crate) fn cut_point(&self) -> Option<CutPoint> {
        self.findings
            .iter()
            .filter(|finding| finding.fix != Fix::DeleteSnapshot)
            .map(|finding| finding.cut)
            .min()
    }
}

/// Audits the store in `dir` without changing a byte: the verdict the next open would reach,
/// every finding, each segment, the quarantine. With `deep`, also checks each event's meaning
/// against the events before it (a report names a message sent before it, its time is not
/// before the send by more than the clock skew allowed, times and user ids within their
/// bounds, durability never going back); such findings make the verdict
/// [`Verdict::Corrupt`] although open accepts them.
///
/// It also lists the snapshots ([`Audit::snapshots`]): the one an open uses, and each one it
/// ignores, with the loader's reason, as a finding. With `deep`, each usable snapshot is
/// compared with the fold of the log up to its position; a difference is a finding naming the
/// file and what differs. Snapshot findings never change the verdict: a snapshot is a cache.
///
/// Fails with [`Error::Io`] when a file cannot be read or a segment is of a newer format
/// version, and with [`Error::InvalidInput`] when `dir` holds no store (neither a segment
/// file nor a `LOCK`).
pub fn audit(dir: impl AsRef<Path>, deep: bool) -> Result<Audit> {
    let dir = dir.as_ref();
    let mut audit = audit_with(dir, deep, false)?;
    audit.snapshots = snapshots::audit_snapshots(dir, deep, &mut audit.findings);
    Ok(audit)
}

/// [`audit`] for a caller holding the writer lock: there is no other writer whose unfinished
/// end to spare.
pub(crate) fn audit_locked(dir: &Path, deep: bool) -> Result<Audit> {
    audit_with(dir, deep, true)
}

/// Refuses a directory that holds no store: neither a segment file nor a `LOCK`.
pub(crate) fn check_holds_store(dir: &Path) -> Result<()> {
    let holds_store = !list_segment_files(dir)?.is_empty()
        || std::fs::symlink_metadata(dir.join(LOCK_FILE_NAME)).is_ok();
    if holds_store {
        Ok(())
    } else {
        Err(Error::invalid(
            "dir",
            dir.display(),
            "holds no commlog store: no segment file and no LOCK",
        ))
    }
}

fn audit_with(dir: &Path, deep: bool, lock_held: bool) -> Result<Audit> {
    check_holds_store(dir)?;
    let writer_before = !lock_held && writer_running(dir)?;
    let listed = list_segment_files(dir)?;
    check_format_versions(&listed)?;
    let first_seqs: Vec<u64> = listed.iter().map(|(seq, _)| *seq).collect();
    // Open's checks, on two threads for a large segment (the tally is cheap to fold).
    let mut tally = Tally::new(&first_seqs, deep);
    // With no writer running, every segment is judged, a last one a rollover left behind too.
    let mode = match writer_before {
        true => Mode::ReadOnly,
        false => Mode::ReadAlone,
    };
    let oracle = replay::replay(dir, mode, &mut |logged| tally.add(logged)).map(|r| (tally, r));
    let writer_running = writer_before || (!lock_held && writer_running(dir)?);
    let quarantine = list_quarantine(dir)?;
    match oracle {
        Ok((tally, replayed)) => {
            let mut audit = clean_audit(dir, &listed, &tally, &replayed, quarantine)?;
            if let Some(torn) = torn_finding(&audit, &replayed) {
                if writer_running {
                    audit.in_flight = Some(InFlight {
                        segment: torn.segment,
                        offset: torn.offset,
                        bytes: torn.bytes,
                    });
                } else {
                    audit.verdict = Verdict::Torn;
                    audit.findings.push(torn);
                }
            }
            if !tally.meaning.is_empty() {
                audit.verdict = Verdict::Corrupt;
                let findings = meaning_findings(&listed, &tally.meaning)?;
                audit.findings.splice(0..0, findings);
                if let Some(first) = audit.findings.first() {
                    let seq = first.seq.unwrap_or(1);
                    audit.events = seq - 1;
                    audit.last_seq = seq - 1;
                }
            }
            Ok(audit)
        }
        Err(Error::Corruption {
            segment,
            offset,
            reason,
        }) => {
            let scan = scan_damage(dir)?;
            let first = open_finding(dir, &scan, &segment, offset, reason);
            let mut findings = vec![first.clone()];
            findings.extend(scan.findings.into_iter().filter(|finding| {
                (&finding.segment, finding.offset) != (&first.segment, first.offset)
            }));
            let cut = findings
                .iter()
                .map(|finding| finding.cut)
                .min()
                .expect("a finding");
            let kept = events_before(&scan.segments, &scan.event_starts, cut);
            Ok(Audit {
                verdict: Verdict::Corrupt,
                events: kept,
                bytes: scan.segments.iter().map(|segment| segment.bytes).sum(),
                last_seq: kept,
                durable_seq: scan.durable_seq,
                segments: scan.segments,
                findings,
                quarantine,
                in_flight: None,
                snapshots: Vec::new(),
            })
        }
        Err(error) => Err(error),
    }
}

/// Whether another process holds the store's writer lock. Looks without taking it for longer
/// than a moment, and without creating the lock file.
fn writer_running(dir: &Path) -> Result<bool> {
    let path = dir.join(LOCK_FILE_NAME);
    crate::store::check_lock_file(&path)?;
    let file = match open_no_follow(OpenOptions::new().read(true), &path) {
        Ok(file) => file,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(false);
        }
        Err(error) => return Err(error),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::io(&path, source)),
    }
}

/// Refuses, as an I/O error (audit could not finish, the log is not judged), a segment that a
/// newer commlog wrote.
fn check_format_versions(listed: &[(u64, PathBuf)]) -> Result<()> {
    for (_, path) in listed {
        refuse_newer_format(path, &read_header_bytes(path)?, "audit it")?;
    }
    Ok(())
}

/// The files under `quarantine/`, by path.
fn list_quarantine(dir: &Path) -> Result<Vec<QuarantineFile>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::from(QUARANTINE_DIRECTORY)];
    while let Some(relative) = pending.pop() {
        let path = dir.join(&relative);
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::io(&path, source)),
        };
        for entry in entries {
            let entry = entry.map_err(|source| Error::io(&path, source))?;
            let relative = relative.join(entry.file_name());
            let metadata = std::fs::symlink_metadata(entry.path())
                .map_err(|source| Error::io(&entry.path(), source))?;
            if metadata.is_dir() {
                pending.push(relative);
            } else {
                files.push(QuarantineFile {
                    file: relative.to_string_lossy().into_owned(),
                    bytes: metadata.len(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(files)
}

/// Per-segment counts and times, and with `deep` the meaning checks, folded over the events a
/// replay hands over. Segments are told apart by their names' first seqs.
struct Tally<'a> {
    first_seqs: &'a [u64],
    /// The segment the last event was in, by position in `first_seqs`.
    segment: usize,
    per_segment: Vec<SegmentTally>,
    durable_seq: u64,
    /// With `deep`: each message's sent time, by id (index 0 unused).
    sent_ms: Option<Vec<i64>>,
    /// With `deep`: (seq, reason) of each event whose meaning is wrong.
    meaning: Vec<(u64, String)>,
}

#[derive(Debug, Clone, Copy)]
struct SegmentTally {
    events: u64,
    last_seq: u64,
    /// Earliest and latest append time (meaningless while `events` is 0).
    time_min: i64,
    time_max: i64,
}

impl Default for SegmentTally {
    fn default() -> SegmentTally {
        SegmentTally {
            events: 0,
            last_seq: 0,
            time_min: i64::MAX,
            time_max: i64::MIN,
        }
    }
}

impl<'a> Tally<'a> {
    fn new(first_seqs: &'a [u64], deep: bool) -> Tally<'a> {
        Tally {
            first_seqs,
            segment: 0,
            per_segment: vec![SegmentTally::default(); first_seqs.len().max(1)],
            durable_seq: 0,
            sent_ms: deep.then(|| vec![0]),
            meaning: Vec::new(),
        }
    }

    fn add(&mut self, logged: &LoggedEvent<'_>) {
        // Events come in seq order: the segment changes only forward.
        while self
            .first_seqs
            .get(self.segment + 1)
            .is_some_and(|first_seq| *first_seq <= logged.seq)
        {
            self.segment += 1;
        }
        let segment = &mut self.per_segment[self.segment];
        segment.events += 1;
        segment.last_seq = logged.seq;
        segment.time_min = segment.time_min.min(logged.appended_ms);
        segment.time_max = segment.time_max.max(logged.appended_ms);
        if self.sent_ms.is_some()
            && let Some(reason) = self.meaning_problem(logged)
        {
            self.meaning.push((logged.seq, reason));
        }
        self.durable_seq = self.durable_seq.max(logged.durable_seq);
    }

    /// What is wrong with the event's meaning, given the events before it.
    fn meaning_problem(&mut self, logged: &LoggedEvent<'_>) -> Option<String> {
        let sent_ms = self.sent_ms.as_mut().expect("deep");
        let event = &logged.event;
        let at_ms = event.at_ms();
        if logged.durable_seq < self.durable_seq {
            return Some(format!(
                "records seq {} as durable, but an earlier frame recorded seq {}",
                logged.durable_seq, self.durable_seq
            ));
        }
        if at_ms < TIME_MS_MIN {
            return Some(format!("{} time {at_ms} ms is before 1970", event.kind()));
        }
        if at_ms > logged.appended_ms.saturating_add(TIME_AFTER_CLOCK_MS_MAX) {
            return Some(format!(
                "{} time {at_ms} ms is more than {TIME_AFTER_CLOCK_MS_MAX} ms after the clock \
                 at its append ({} ms)",
                event.kind(),
                logged.appended_ms
            ));
        }
        match *event {
            Event::MessageSent {
                message_id,
                user_id,
                ..
            } => {
                sent_ms.push(at_ms);
                debug_assert_eq!(sent_ms.len() as u64, message_id.0 + 1);
                if user_id.0 > USER_ID_MAX {
                    return Some(format!("user id {user_id} is above {USER_ID_MAX}"));
                }
            }
            Event::FinancialOutcome { user_id, .. } if user_id.0 > USER_ID_MAX => {
                return Some(format!("user id {user_id} is above {USER_ID_MAX}"));
            }
            Event::FinancialOutcome { .. } | Event::BudgetSet { .. } => {}
            Event::MessageDelivered { message_id, .. }
            | Event::MessageOpened { message_id, .. }
            | Event::UserAction { message_id, .. }
            | Event::MessageFailed { message_id, .. } => {
                let Some(&sent) = usize::try_from(message_id.0)
                    .ok()
                    .filter(|id| *id > 0)
                    .and_then(|id| sent_ms.get(id))
                else {
                    return Some(format!(
                        "{} event names message {message_id}, which was not sent before it",
                        event.kind()
                    ));
                };
                if at_ms < sent.saturating_sub(CLOCK_SKEW_MS_MAX) {
                    return Some(format!(
                        "{} time {at_ms} ms is more than {CLOCK_SKEW_MS_MAX} ms before message \
                         {message_id} was sent ({sent} ms)",
                        event.kind()
                    ));
                }
            }
        }
        None
    }
}

fn time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

/// The audit of a log open accepts, from the replay's tally.
fn clean_audit(
    dir: &Path,
    listed: &[(u64, PathBuf)],
    tally: &Tally<'_>,
    replayed: &replay::Replayed,
    quarantine: Vec<QuarantineFile>,
) -> Result<Audit> {
    // A writer may have rolled over since the listing: describe the segments replay read.
    let listed_now;
    let listed = if replayed.report.segments as usize > listed.len() {
        listed_now = list_segment_files(dir)?;
        &listed_now
    } else {
        listed
    };
    let mut segments = Vec::with_capacity(listed.len());
    for (index, (first_seq, path)) in listed.iter().enumerate() {
        let metadata = std::fs::metadata(path).map_err(|source| Error::io(path, source))?;
        let counted = tally.per_segment.get(index).copied().unwrap_or_default();
        let header_bytes = read_header_bytes(path)?;
        let sealed = index + 1 < listed.len() || codec::decode_seal(&header_bytes).is_some();
        segments.push(SegmentSummary {
            file: file_name_of(path),
            first_seq: SegmentHeader::decode(&header_bytes)
                .ok()
                .map(|header| header.first_seq)
                .or((index + 1 < listed.len()).then_some(*first_seq)),
            last_seq: (counted.events > 0).then_some(counted.last_seq),
            events: counted.events,
            bytes: metadata.len(),
            sealed,
            time_min: time((counted.events > 0).then_some(counted.time_min)),
            time_max: time((counted.events > 0).then_some(counted.time_max)),
        });
    }
    let last_seq = replayed.last_seq;
    let mut durable_seq = tally.durable_seq;
    if let Some(last) = listed.last()
        && listed.len() > 1
    {
        durable_seq = durable_seq.max(last.0.saturating_sub(1).min(last_seq));
    }
    if replayed
        .tail
        .as_ref()
        .is_some_and(|tail| tail.ends_with_close_marker)
    {
        durable_seq = last_seq;
    }
    Ok(Audit {
        verdict: Verdict::Clean,
        events: replayed.report.events,
        bytes: segments.iter().map(|segment| segment.bytes).sum(),
        last_seq,
        durable_seq,
        segments,
        findings: Vec::new(),
        quarantine,
        in_flight: None,
        snapshots: Vec::new(),
    })
}

/// The torn tail or header a read-only replay left in place, as a finding.
fn torn_finding(audit: &Audit, replayed: &replay::Replayed) -> Option<Finding> {
    let torn_bytes = replayed.report.truncated_bytes;
    if torn_bytes == 0 {
        return None;
    }
    let index = audit.segments.len() - 1;
    let last = &audit.segments[index];
    let offset = last.bytes - torn_bytes;
    let (kind, reason) = if offset == 0 {
        (
            "torn_header",
            "the last segment's header is incomplete or fails its checks, and no valid frame \
             follows: a crash right after the segment was created",
        )
    } else {
        (
            "torn_tail",
            "the last segment ends in bytes that are not a valid frame, and no later frame \
             records them as durable: a write cut short by a crash",
        )
    };
    Some(Finding {
        kind: kind.to_string(),
        segment: last.file.clone(),
        offset,
        bytes: torn_bytes,
        seq: Some(replayed.last_seq + 1),
        reason: reason.to_string(),
        fix: Fix::Open,
        cut: CutPoint { index, offset },
    })
}

/// The findings for events whose meaning is wrong, located in their segments.
fn meaning_findings(listed: &[(u64, PathBuf)], problems: &[(u64, String)]) -> Result<Vec<Finding>> {
    let mut findings = Vec::with_capacity(problems.len());
    for (seq, reason) in problems {
        let index = listed
            .partition_point(|(first_seq, _)| first_seq <= seq)
            .saturating_sub(1);
        let (_, path) = &listed[index];
        let bytes = map_segment(path)?;
        let (offset, frame_bytes) = locate_seq(&bytes, *seq).unwrap_or((0, 0));
        findings.push(Finding {
            kind: "meaning".to_string(),
            segment: file_name_of(path),
            offset,
            bytes: frame_bytes,
            seq: Some(*seq),
            reason: format!("frame seq {seq}: {reason}"),
            fix: Fix::RepairCut,
            cut: CutPoint { index, offset },
        });
    }
    Ok(findings)
}

/// Offset and size of the frame holding event `seq` in a valid segment.
fn locate_seq(bytes: &[u8], seq: u64) -> Option<(u64, u64)> {
    let header = SegmentHeader::decode(bytes).ok()?;
    let mut offset = header.len_bytes();
    while offset < bytes.len() {
        let raw = codec::read_frame(&bytes[offset..]).ok()?;
        if raw.seq() == seq && !raw.is_close_marker() {
            return Some((offset as u64, raw.frame_bytes as u64));
        }
        offset += raw.frame_bytes;
    }
    None
}

/// Open's error as the first finding, with the kind and extent the scan found at its place.
fn open_finding(dir: &Path, scan: &Scan, segment: &Path, offset: u64, reason: String) -> Finding {
    let name = file_name_of(segment);
    if let Some(found) = scan
        .findings
        .iter()
        .find(|finding| finding.segment == name && finding.offset == offset)
    {
        return Finding {
            reason,
            ..found.clone()
        };
    }
    // Not found by the scan (it checks what open checks, so this is a safety net): cut at the
    // named segment, from the offset if it lies past the header.
    let index = scan
        .segments
        .iter()
        .position(|summary| summary.file == name)
        .unwrap_or(scan.segments.len());
    let cut_offset = if offset >= SEGMENT_HEADER_V2_BYTES as u64 && dir.join(&name).exists() {
        offset
    } else {
        0
    };
    Finding {
        kind: "frame".to_string(),
        segment: name,
        offset,
        bytes: 0,
        seq: None,
        reason,
        fix: Fix::RepairCut,
        cut: CutPoint {
            index,
            offset: cut_offset,
        },
    }
}

/// Valid events before a cut point, from the scan's record of where each segment's events
/// start.
fn events_before(segments: &[SegmentSummary], event_starts: &[Vec<u64>], cut: CutPoint) -> u64 {
    let whole: u64 = segments[..cut.index.min(segments.len())]
        .iter()
        .map(|segment| segment.events)
        .sum();
    let partial = event_starts.get(cut.index).map_or(0, |starts| {
        starts.partition_point(|start| *start < cut.offset) as u64
    });
    whole + partial
}

/// What the damage scan found.
struct Scan {
    segments: Vec<SegmentSummary>,
    findings: Vec<Finding>,
    /// Per segment, the offset of each valid event frame (in order), until its first damage.
    event_starts: Vec<Vec<u64>>,
    durable_seq: u64,
}

/// Walks every segment, checking what open checks but going on after each finding: a bad
/// frame is skipped up to the next offset where a valid frame starts.
fn scan_damage(dir: &Path) -> Result<Scan> {
    let listed = list_segment_files(dir)?;
    let mut scan = Scan {
        segments: Vec::new(),
        findings: Vec::new(),
        event_starts: Vec::new(),
        durable_seq: 0,
    };
    let mut expected_seq: u64 = 1;
    let mut lost_track = false;
    let mut expected_message_id: Option<u64> = Some(1);
    let mut store_id: Option<Option<u64>> = None;
    let mut previous: Option<(String, u64)> = None;
    let count = listed.len();
    let mut maps = Vec::with_capacity(count);
    let mut frame_counts = Vec::with_capacity(count);
    for (index, (name_seq, path)) in listed.iter().enumerate() {
        let name = file_name_of(path);
        let metadata = std::fs::symlink_metadata(path).map_err(|source| Error::io(path, source))?;
        let finding =
            |kind: &str, offset: u64, bytes: u64, seq: Option<u64>, reason: String| Finding {
                kind: kind.to_string(),
                segment: name.clone(),
                offset,
                bytes,
                seq,
                reason,
                fix: Fix::RepairCut,
                cut: CutPoint { index, offset: 0 },
            };
        if !metadata.file_type().is_file() {
            scan.findings.push(finding(
                "not_regular_file",
                0,
                0,
                None,
                "not a regular file (a symbolic link, directory, FIFO or device)".to_string(),
            ));
            scan.segments.push(SegmentSummary {
                file: name.clone(),
                first_seq: None,
                last_seq: None,
                events: 0,
                bytes: 0,
                sealed: index + 1 < count,
                time_min: None,
                time_max: None,
            });
            scan.event_starts.push(Vec::new());
            maps.push(SegmentBytes::Empty);
            frame_counts.push(0);
            continue;
        }
        let bytes = if index + 1 == count {
            read_segment(path)?
        } else {
            map_segment(path)?
        };
        if lost_track {
            // The walk of the segment before lost track of the seqs (damage it found no valid
            // frame after): its finding covers the rest of it, and this segment's name is the
            // best word on where the log goes on, so it is not blamed for the gap.
            expected_seq = *name_seq;
            expected_message_id = None;
        }
        let header = SegmentHeader::decode(&bytes);
        if let (Some((previous_name, previous_end)), Ok(_)) = (&previous, &header)
            && *name_seq > expected_seq
        {
            scan.findings.push(Finding {
                segment: previous_name.clone(),
                ..finding(
                    "gap",
                    *previous_end,
                    0,
                    Some(expected_seq),
                    format!(
                        "segment ends at seq {}, but the next segment {name} starts at seq \
                         {name_seq}",
                        expected_seq - 1
                    ),
                )
            });
        } else if *name_seq != expected_seq && header.is_ok() {
            scan.findings.push(finding(
                "misnamed_segment",
                codec::FIRST_SEQ_OFFSET as u64,
                0,
                Some(expected_seq),
                format!(
                    "segment file name says first seq {name_seq}, but the log before it ends \
                     at seq {}",
                    expected_seq - 1
                ),
            ));
        }
        let mut segment = SegmentWalk::new(index, &bytes);
        match header {
            Err(reason) => {
                let header_bytes = SEGMENT_HEADER_V2_BYTES.min(bytes.len()) as u64;
                scan.findings.push(finding(
                    "header",
                    0,
                    header_bytes,
                    Some(expected_seq),
                    reason,
                ));
                segment.resync(SEGMENT_HEADER_V1_BYTES, expected_seq);
            }
            Ok(header) => {
                if let Some(store_id) = store_id
                    && header.store_id != store_id
                {
                    let (offset, reason) = replay::foreign_store_reason(header.store_id, store_id);
                    scan.findings.push(finding(
                        "foreign_segment",
                        offset,
                        bytes.len() as u64,
                        None,
                        reason,
                    ));
                } else if header.first_seq != expected_seq {
                    scan.findings.push(finding(
                        "misnamed_segment",
                        codec::FIRST_SEQ_OFFSET as u64,
                        0,
                        Some(expected_seq),
                        format!(
                            "header says first seq {}, but the log before it ends at seq {}",
                            header.first_seq,
                            expected_seq - 1
                        ),
                    ));
                } else if expected_message_id.is_some_and(|id| id != header.first_message_id) {
                    scan.findings.push(finding(
                        "misnamed_segment",
                        codec::FIRST_MESSAGE_ID_OFFSET as u64,
                        0,
                        Some(expected_seq),
                        format!(
                            "header says first message id {}, but {} messages came before",
                            header.first_message_id,
                            expected_message_id.unwrap_or(1) - 1
                        ),
                    ));
                }
                if store_id.is_none() {
                    store_id = Some(header.store_id);
                }
                segment.start(&header);
            }
        }
        // A sealed segment was synced whole before its seal: damage in it is never a torn
        // tail, and its end is durable, even when it is the last one listed (its successor
        // missing).
        let seal = codec::decode_seal(&bytes);
        let sealed = index + 1 < count || seal.is_some();
        segment.walk(&name, !sealed, &mut scan.findings);
        lost_track = segment.damaged && segment.next_seq.is_none();
        if let Some(next_seq) = segment.next_seq {
            expected_seq = next_seq;
        }
        expected_message_id = segment.cursor.map(|cursor| cursor.next_message_id);
        scan.durable_seq = scan.durable_seq.max(segment.durable_seq);
        if sealed {
            let last_read = segment.last_seq.unwrap_or(0);
            scan.durable_seq = scan.durable_seq.max(expected_seq - 1).max(last_read);
        }
        scan.segments.push(SegmentSummary {
            file: name.clone(),
            first_seq: segment.first_seq,
            last_seq: segment.last_seq,
            events: segment.events,
            bytes: bytes.len() as u64,
            sealed,
            time_min: time(segment.time_min),
            time_max: time(segment.time_max),
        });
        scan.event_starts
            .push(std::mem::take(&mut segment.event_starts));
        previous = Some((name, segment.end));
        frame_counts.push(segment.frames);
        maps.push(bytes);
    }
    let (problems, _) = replay::seal_problems(dir, &listed, &maps, &frame_counts);
    for problem in problems {
        let (index, offset) = problem.cut;
        scan.findings.push(Finding {
            kind: problem.kind.to_string(),
            segment: file_name_of(&problem.path),
            offset: SEAL_SLOT_OFFSET as u64,
            bytes: 0,
            seq: None,
            reason: problem.reason,
            fix: Fix::RepairCut,
            cut: CutPoint { index, offset },
        });
    }
    Ok(scan)
}

/// The frame-by-frame walk of one segment in the damage scan.
struct SegmentWalk<'a> {
    index: usize,
    bytes: &'a [u8],
    offset: usize,
    /// `None` after a resync: deltas can no longer be resolved, so only checksums and
    /// sequence numbers are checked.
    cursor: Option<FrameCursor>,
    /// The seq the next event frame must carry; `None` until the first frame is found.
    next_seq: Option<u64>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    events: u64,
    /// Valid frames read, close markers included.
    frames: u64,
    durable_seq: u64,
    time_min: Option<i64>,
    time_max: Option<i64>,
    /// Offset of each valid event frame before the first damage.
    event_starts: Vec<u64>,
    damaged: bool,
    /// Offset after the last valid frame before the first damage.
    end: u64,
}

impl<'a> SegmentWalk<'a> {
    fn new(index: usize, bytes: &'a [u8]) -> SegmentWalk<'a> {
        SegmentWalk {
            index,
            bytes,
            offset: bytes.len(),
            cursor: None,
            next_seq: None,
            first_seq: None,
            last_seq: None,
            events: 0,
            frames: 0,
            durable_seq: 0,
            time_min: None,
            time_max: None,
            event_starts: Vec::new(),
            damaged: false,
            end: 0,
        }
    }

    fn start(&mut self, header: &SegmentHeader) {
        self.offset = header.len_bytes();
        self.end = self.offset as u64;
        self.cursor = Some(FrameCursor::new(header));
        self.next_seq = Some(header.first_seq);
        self.first_seq = Some(header.first_seq);
    }

    /// Goes on at the first valid frame at or after `from`, if any.
    fn resync(&mut self, from: usize, expected_seq: u64) {
        self.damaged = true;
        self.cursor = None;
        self.offset = match next_valid_frame(self.bytes, from, expected_seq) {
            Some((position, _)) => position,
            None => self.bytes.len(),
        };
        self.next_seq = None;
    }

    fn walk(&mut self, name: &str, last: bool, findings: &mut Vec<Finding>) {
        while self.offset < self.bytes.len() {
            let rest = &self.bytes[self.offset..];
            match self.read(rest) {
                Ok(frame_bytes) => {
                    self.offset += frame_bytes;
                    if !self.damaged {
                        self.end = self.offset as u64;
                    }
                }
                Err(reason) => {
                    if rest.iter().all(|byte| *byte == 0) {
                        break;
                    }
                    let expected_seq = self.next_seq.unwrap_or(1);
                    let next = next_valid_frame(self.bytes, self.offset + 1, expected_seq);
                    let end = next.map_or(self.bytes.len(), |(position, _)| position);
                    let kind = if last && next.is_none() {
                        "torn_tail"
                    } else {
                        "frame"
                    };
                    findings.push(Finding {
                        kind: kind.to_string(),
                        segment: name.to_string(),
                        offset: self.offset as u64,
                        bytes: (end - self.offset) as u64,
                        seq: self.next_seq,
                        reason,
                        fix: Fix::RepairCut,
                        cut: CutPoint {
                            index: self.index,
                            offset: self.offset as u64,
                        },
                    });
                    self.damaged = true;
                    self.cursor = None;
                    self.next_seq = None;
                    self.offset = end;
                }
            }
        }
    }

    /// Checks the frame at the start of `rest` as far as the walk's state allows; returns its
    /// size.
    fn read(&mut self, rest: &[u8]) -> Result<usize, String> {
        let raw = codec::read_frame(rest)?;
        if let Some(next_seq) = self.next_seq {
            let wanted = if raw.is_close_marker() {
                next_seq - 1
            } else {
                next_seq
            };
            if raw.seq() != wanted {
                return Err(format!("frame has seq {}, expected {wanted}", raw.seq()));
            }
        }
        let appended_ms = match &mut self.cursor {
            Some(cursor) => match codec::resolve(cursor, &raw)? {
                Frame::Event(logged) => Some(logged.appended_ms),
                Frame::Closed { .. } => None,
            },
            None => None,
        };
        self.frames += 1;
        if let Some(durable_seq) = raw.durable_seq() {
            self.durable_seq = self.durable_seq.max(durable_seq);
        }
        if raw.is_close_marker() {
            self.durable_seq = self.durable_seq.max(raw.seq());
            self.next_seq = Some(raw.seq() + 1);
        } else {
            if !self.damaged {
                self.event_starts.push(self.offset as u64);
            }
            self.events += 1;
            self.first_seq.get_or_insert(raw.seq());
            self.last_seq = Some(raw.seq());
            self.next_seq = Some(raw.seq() + 1);
            if let Some(ms) = appended_ms {
                self.time_min = Some(self.time_min.map_or(ms, |t| t.min(ms)));
                self.time_max = Some(self.time_max.map_or(ms, |t| t.max(ms)));
            }
        }
        Ok(raw.frame_bytes)
    }
}

/// The first offset at or after `from` where a frame passes its checksum and carries a seq
/// the log could hold there (at least `expected_seq - 1`, and no further ahead than the bytes
/// left could hold).
fn next_valid_frame(bytes: &[u8], from: usize, expected_seq: u64) -> Option<(usize, u64)> {
    let low = expected_seq.saturating_sub(1);
    (from..bytes.len()).find_map(|position| {
        let (seq, _) = codec::peek_frame_seqs(&bytes[position..])?;
        let high = expected_seq.saturating_add((bytes.len() - position) as u64);
        if seq < low || seq > high {
            return None;
        }
        codec::read_frame(&bytes[position..]).ok()?;
        Some((position, seq))
    })
}
