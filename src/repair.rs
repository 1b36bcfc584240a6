//! `repair`: make a damaged log open again, deleting nothing.
//!
//! Under the writer lock, [`repair`] audits the store. A torn tail or header is dealt with as a
//! writable open deals with it. Corruption is cut only when asked (`cut`): the log is cut at
//! the earliest finding, and everything from there on is first copied (or renamed) into
//! `quarantine/repair-<YYYYMMDDTHHMMSSZ>/`, with `REPORT.json`, and made durable; only then is
//! the segment truncated. Every step leaves each byte either in place or in quarantine, so
//! after a crash at any point a rerun finishes the job.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{self, Audit, CutPoint, Finding, Verdict};
use crate::codec::{self, SEAL_SLOT_OFFSET, SegmentHeader};
use crate::error::{Error, Result};
use crate::limits::SEGMENT_HEADER_V2_BYTES;
use crate::log::replay::{self, Mode, QUARANTINE_DIRECTORY};
use crate::log::segment::{
    FILE_MODE, create_directory, numbered_name, open_no_follow, read_header_bytes, sync_directory,
};
use crate::store;

/// What [`repair`] may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairOptions {
    /// Cut the log at the earliest corrupt finding (else corruption is only reported).
    pub cut: bool,
    /// Plan only: change nothing.
    pub dry_run: bool,
    /// Audit with `deep` (events whose meaning is wrong are findings a cut removes).
    pub deep: bool,
}

/// What [`repair`] did, or with `dry_run`, would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairAction {
    /// The log was clean: nothing to do.
    Nothing,
    /// A torn tail or header was quarantined and cut off, as a writable open does.
    QuarantinedTorn,
    /// The log was cut at its earliest finding; the rest is in the repair directory.
    Cut,
    /// The log is corrupt and `cut` was not given: nothing changed.
    Refused,
}

/// One file's bytes moved to quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedBytes {
    /// The segment file they came from (its name in the store).
    pub segment: String,
    /// Offset in that file where they start (0: the whole file).
    pub from_offset: u64,
    /// How many.
    pub bytes: u64,
    /// crc32 (IEEE) of them.
    pub crc32: u32,
    /// Where they are now, relative to the store directory.
    pub quarantined_as: String,
    /// Whether the original was renamed (a whole file) rather than copied and truncated.
    pub renamed: bool,
}

/// A seal slot that was cleared because the segment it sealed became the log's last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearedSeal {
    /// The segment.
    pub segment: String,
    /// Offset of the slot.
    pub offset: u64,
    /// The slot's bytes before, in hex.
    pub was: String,
}

/// The repair's plan and outcome; also what `REPORT.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repair {
    /// The audit's verdict before the repair.
    pub verdict: Verdict,
    /// What was (or would be) done.
    pub action: RepairAction,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Every finding of the audit before the repair.
    pub findings: Vec<Finding>,
    /// The steps, in words.
    pub plan: Vec<String>,
    /// The repair directory (relative to the store), for a cut.
    pub repair_dir: Option<String>,
    /// What moved (or would move) to quarantine.
    pub moved: Vec<MovedBytes>,
    /// A seal cleared (or to be cleared) on the segment left last.
    pub cleared_seal: Option<ClearedSeal>,
    /// The sequence numbers cut off, first and last (as far as the damaged bytes tell).
    pub seq_range_cut: Option<(u64, u64)>,
    /// Events in the cut range that had been proven durable (acknowledged data lost).
    pub durable_events_cut: u64,
    /// Events the log holds after the repair.
    pub events_kept: u64,
    /// When the repair ran.
    #[serde(with = "crate::serde_time")]
    pub at: DateTime<Utc>,
}

impl Repair {
    /// The exit status `commlog repair` gives: 0 when the log opens afterwards, 3 when
    /// corruption was found but not cut.
    pub fn exit_status(&self) -> u8 {
        match self.action {
            RepairAction::Refused => 3,
            RepairAction::Nothing | RepairAction::QuarantinedTorn | RepairAction::Cut => 0,
        }
    }
}

/// Name of the report in each repair directory.
pub const REPORT_FILE_NAME: &str = "REPORT.json";

/// Repairs the store in `dir` as [`RepairOptions`] allow (module docs). Takes the writer lock:
/// fails with [`Error::Locked`] while a writer runs, with [`Error::InvalidInput`] when `dir`
/// is not a store directory, and with [`Error::Io`] when a step fails (a rerun finishes it).
pub fn repair(dir: impl AsRef<Path>, options: RepairOptions) -> Result<Repair> {
    let dir = dir.as_ref();
    let metadata = std::fs::metadata(dir).map_err(|source| Error::io(dir, source))?;
    if !metadata.is_dir() {
        return Err(Error::invalid(
            "dir",
            dir.display(),
            "is not a directory holding a store",
        ));
    }
    store::check_store_directory(dir, &metadata)?;
    audit::check_holds_store(dir)?;
    let _lock = store::lock_directory(dir, std::time::Duration::ZERO)?;
    let audit = audit::audit_locked(dir, options.deep)?;
    let at = Utc::now();
    let mut repair = Repair {
        verdict: audit.verdict,
        action: RepairAction::Nothing,
        dry_run: options.dry_run,
        findings: audit.findings.clone(),
        plan: Vec::new(),
        repair_dir: None,
        moved: Vec::new(),
        cleared_seal: None,
        seq_range_cut: None,
        durable_events_cut: 0,
        events_kept: audit.events,
        at,
    };
    match audit.verdict {
        Verdict::Clean => repair
            .plan
            .push("nothing to do: the log is clean".to_string()),
        Verdict::Torn => {
            repair.action = RepairAction::QuarantinedTorn;
            for finding in &audit.findings {
                repair.plan.push(format!(
                    "copy the {} of {} ({} bytes from offset {}) to {QUARANTINE_DIRECTORY}/ \
                     and cut it off, as a writable open does",
                    finding.kind.replace('_', " "),
                    finding.segment,
                    finding.bytes,
                    finding.offset
                ));
            }
            if !options.dry_run {
                let replayed = replay::replay(dir, Mode::Write, &mut |_| {})?;
                if let Some(path) = replayed.report.quarantined {
                    repair
                        .plan
                        .push(format!("quarantined as {}", path.display()));
                }
            }
        }
        Verdict::Corrupt => {
            let cut = audit.cut_point().expect("a corrupt log has a finding");
            plan_cut(dir, &audit, cut, at, &mut repair)?;
            if options.cut {
                repair.action = RepairAction::Cut;
                if !options.dry_run {
                    carry_out_cut(dir, &mut repair)?;
                }
            } else {
                repair.action = RepairAction::Refused;
                repair.plan.push(
                    "nothing changed: restore the damaged segment from a backup first (then \
                     audit again); if there is none, run `commlog repair --cut`, which cuts the \
                     log as planned above"
                        .to_string(),
                );
            }
        }
    }
    Ok(repair)
}

/// Fills in what a cut at `cut` moves, and the words for it.
fn plan_cut(
    dir: &Path,
    audit: &Audit,
    cut: CutPoint,
    at: DateTime<Utc>,
    repair: &mut Repair,
) -> Result<()> {
    let repair_dir = Path::new(QUARANTINE_DIRECTORY).join(free_name(
        &dir.join(QUARANTINE_DIRECTORY),
        &format!("repair-{}", at.format("%Y%m%dT%H%M%SZ")),
    ));
    let segments = &audit.segments;
    for (index, segment) in segments.iter().enumerate().skip(cut.index) {
        let path = dir.join(&segment.file);
        let whole = index > cut.index || cut.offset < header_bytes(&path)?;
        let from_offset = if whole { 0 } else { cut.offset };
        if from_offset >= segment.bytes && !whole {
            continue;
        }
        let quarantined_as = if whole {
            repair_dir.join(&segment.file)
        } else {
            repair_dir.join(format!("{}.{from_offset}.cut", segment.file))
        };
        repair.moved.push(MovedBytes {
            segment: segment.file.clone(),
            from_offset,
            bytes: segment.bytes - from_offset,
            crc32: crc32_from(&path, from_offset)?,
            quarantined_as: quarantined_as.to_string_lossy().into_owned(),
            renamed: whole,
        });
    }
    // The segment left last must not stay sealed (its successor is gone), nor keep a damaged
    // seal slot: a last segment's slot is zeros.
    let last_kept = match repair.moved.first() {
        Some(first) if first.renamed => cut.index.checked_sub(1),
        _ => Some(cut.index),
    };
    if let Some(segment) = last_kept.and_then(|index| segments.get(index)) {
        let path = dir.join(&segment.file);
        let header = read_header_bytes(&path)?;
        let version_2 =
            SegmentHeader::decode(&header).is_ok_and(|header| header.store_id.is_some());
        if version_2 && header[SEAL_SLOT_OFFSET..].iter().any(|byte| *byte != 0) {
            repair.cleared_seal = Some(ClearedSeal {
                segment: segment.file.clone(),
                offset: SEAL_SLOT_OFFSET as u64,
                was: header[SEAL_SLOT_OFFSET..]
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect(),
            });
        }
    }
    let kept = audit.events;
    let last_cut = segments
        .iter()
        .filter_map(|s| s.last_seq)
        .max()
        .unwrap_or(0);
    if last_cut > kept {
        repair.seq_range_cut = Some((kept + 1, last_cut));
        repair.durable_events_cut = audit.durable_seq.min(last_cut).saturating_sub(kept);
    }
    repair.events_kept = kept;
    repair.repair_dir = Some(repair_dir.to_string_lossy().into_owned());
    let first = audit
        .findings
        .iter()
        .find(|finding| finding.cut == cut)
        .unwrap_or(&audit.findings[0]);
    repair.plan.push(format!(
        "cut the log at {} offset {} (finding: {}), keeping {kept} event{}",
        segments
            .get(cut.index)
            .map_or(first.segment.as_str(), |s| s.file.as_str()),
        cut.offset,
        first.reason,
        if kept == 1 { "" } else { "s" }
    ));
    for moved in &repair.moved {
        repair.plan.push(format!(
            "{} {} bytes of {} from offset {} to {}",
            if moved.renamed {
                "move"
            } else {
                "copy, then cut off,"
            },
            moved.bytes,
            moved.segment,
            moved.from_offset,
            moved.quarantined_as
        ));
    }
    if let Some(seal) = &repair.cleared_seal {
        repair.plan.push(format!(
            "clear the seal slot of {} (offset {}, was {}), which names a segment no longer in \
             the log",
            seal.segment, seal.offset, seal.was
        ));
    }
    if let Some((first, last)) = repair.seq_range_cut {
        repair.plan.push(format!(
            "events cut: seq {first} to {last}, of which {} had been proven durable",
            repair.durable_events_cut
        ));
    }
    Ok(())
}

/// Carries out the planned cut: the report and every copy first, made durable; then renames,
/// the truncation, and the seal.
fn carry_out_cut(dir: &Path, repair: &mut Repair) -> Result<()> {
    let quarantine = dir.join(QUARANTINE_DIRECTORY);
    create_directory(&quarantine)?;
    // The name was free when planned; take the next free one if a rerun raced.
    let repair_name = free_name(
        &quarantine,
        Path::new(repair.repair_dir.as_deref().expect("planned"))
            .file_name()
            .expect("a name")
            .to_str()
            .expect("ASCII"),
    );
    let repair_dir = quarantine.join(&repair_name);
    std::fs::DirBuilder::new()
        .mode(crate::log::segment::DIRECTORY_MODE)
        .create(&repair_dir)
        .map_err(|source| Error::io(&repair_dir, source))?;
    sync_directory(&quarantine)?;
    sync_directory(dir)?;
    step()?;
    let relative = Path::new(QUARANTINE_DIRECTORY).join(&repair_name);
    repair.repair_dir = Some(relative.to_string_lossy().into_owned());
    for moved in &mut repair.moved {
        let name = Path::new(&moved.quarantined_as)
            .file_name()
            .expect("a name")
            .to_owned();
        moved.quarantined_as = relative.join(name).to_string_lossy().into_owned();
    }
    write_report(&repair_dir, repair)?;
    step()?;
    // Copies of partial segments, durable before anything is cut.
    for moved in repair.moved.iter().filter(|moved| !moved.renamed) {
        copy_tail(
            &dir.join(&moved.segment),
            moved.from_offset,
            moved.bytes,
            &dir.join(&moved.quarantined_as),
        )?;
        step()?;
    }
    sync_directory(&repair_dir)?;
    // Whole segments, newest first: a crash between renames leaves a log whose damage (at or
    // before the cut) is still there for a rerun to find.
    for moved in repair.moved.iter().rev().filter(|moved| moved.renamed) {
        let from = dir.join(&moved.segment);
        let to = dir.join(&moved.quarantined_as);
        std::fs::rename(&from, &to).map_err(|source| Error::io(&from, source))?;
        step()?;
    }
    sync_directory(&repair_dir)?;
    sync_directory(dir)?;
    for moved in repair.moved.iter().filter(|moved| !moved.renamed) {
        let path = dir.join(&moved.segment);
        let file = open_no_follow(OpenOptions::new().write(true), &path)?;
        file.set_len(moved.from_offset)
            .and_then(|()| file.sync_all())
            .map_err(|source| Error::io(&path, source))?;
        step()?;
    }
    if let Some(seal) = &repair.cleared_seal {
        let path = dir.join(&seal.segment);
        let file = open_no_follow(OpenOptions::new().write(true), &path)?;
        file.write_all_at(&[0; codec::SEAL_SLOT_BYTES], seal.offset)
            .and_then(|()| file.sync_all())
            .map_err(|source| Error::io(&path, source))?;
    }
    Ok(())
}

/// Passed after each step of a cut that changes the files. A unit test makes one fail, which
/// stops the cut there as a crash would.
fn step() -> Result<()> {
    #[cfg(test)]
    if tests::crash_now() {
        return Err(Error::io(
            Path::new("repair step"),
            std::io::Error::other("simulated crash"),
        ));
    }
    Ok(())
}

/// Writes `REPORT.json` into the repair directory and makes it durable.
fn write_report(repair_dir: &Path, repair: &Repair) -> Result<()> {
    let path = repair_dir.join(REPORT_FILE_NAME);
    let mut text = serde_json::to_vec_pretty(repair).expect("a repair serializes");
    text.push(b'\n');
    let mut file = open_no_follow(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE),
        &path,
    )?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::io(&path, source))?;
    sync_directory(repair_dir)
}

/// Copies `len` bytes of `source` from `offset` into a new file `target`, durably.
fn copy_tail(source: &Path, offset: u64, len: u64, target: &Path) -> Result<()> {
    let mut input = open_no_follow(OpenOptions::new().read(true), source)?;
    input
        .seek(SeekFrom::Start(offset))
        .map_err(|error| Error::io(source, error))?;
    let mut output = open_no_follow(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE),
        target,
    )?;
    let copied = std::io::copy(&mut input.take(len), &mut output)
        .map_err(|error| Error::io(target, error))?;
    if copied != len {
        return Err(Error::io(
            source,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the segment changed during the repair: {copied} of {len} bytes read"),
            ),
        ));
    }
    output.sync_all().map_err(|error| Error::io(target, error))
}

/// `base`, or `base.1`, `base.2`, … : the first name not taken in `dir`.
fn free_name(dir: &Path, base: &str) -> String {
    (0..)
        .map(|attempt| numbered_name(base, attempt))
        .find(|name| std::fs::symlink_metadata(dir.join(name)).is_err())
        .expect("some name is free")
}

/// The header size a segment file's bytes start with (a version 2 header's if unreadable).
fn header_bytes(path: &Path) -> Result<u64> {
    let bytes = read_header_bytes(path)?;
    Ok(SegmentHeader::decode(&bytes)
        .map(|header| header.len_bytes())
        .unwrap_or(SEGMENT_HEADER_V2_BYTES) as u64)
}

/// crc32 of a file's bytes from `offset` to its end (0 for what is not a regular file).
fn crc32_from(path: &Path, offset: u64) -> Result<u32> {
    if !is_regular_file(path)? {
        return Ok(0);
    }
    let mut file = open_no_follow(OpenOptions::new().read(true), path)?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|source| Error::io(path, source))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|source| Error::io(path, source))?;
        if read == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buffer[..read]);
    }
}

fn is_regular_file(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) => Ok(metadata.file_type().is_file()),
        Err(source) => Err(Error::io(path, source)),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use chrono::TimeZone;

    use super::*;
    use crate::{Channel, Options, Store, SyncPolicy};

    thread_local! {
        /// Steps left before the simulated crash (`None`: no crash).
        static STEPS_BEFORE_CRASH: Cell<Option<u32>> = const { Cell::new(None) };
    }

    pub(super) fn crash_now() -> bool {
        STEPS_BEFORE_CRASH.with(|steps| match steps.get() {
            Some(0) => true,
            Some(left) => {
                steps.set(Some(left - 1));
                false
            }
            None => false,
        })
    }

    /// Every file under `dir` (but LOCK), by path relative to it.
    fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(path) = pending.pop() {
            for entry in std::fs::read_dir(&path).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.file_name().unwrap() != "LOCK" {
                    let bytes = std::fs::read(&path).unwrap();
                    files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
                }
            }
        }
        files
    }

    /// The bytes with a version 2 seal slot zeroed: what a cut may change in a kept segment.
    fn without_seal(bytes: &[u8]) -> Vec<u8> {
        let mut bytes = bytes.to_vec();
        if bytes.len() >= SEGMENT_HEADER_V2_BYTES {
            bytes[SEAL_SLOT_OFFSET..SEGMENT_HEADER_V2_BYTES].fill(0);
        }
        bytes
    }

    /// Checks that every byte of every original segment is in place or in quarantine: the
    /// segment is whole, or its kept prefix plus a quarantined `<name>.<offset>.cut` make it
    /// whole, or a quarantined copy under its own name is it.
    fn every_byte_in_place_or_quarantined(
        originals: &BTreeMap<PathBuf, Vec<u8>>,
        dir: &Path,
        when: &str,
    ) {
        let now = files(dir);
        let quarantined = |name: &str| -> Vec<(String, Vec<u8>)> {
            now.iter()
                .filter(|(path, _)| path.starts_with(QUARANTINE_DIRECTORY))
                .map(|(path, bytes)| {
                    let file = path.file_name().unwrap().to_string_lossy().into_owned();
                    (file, bytes.clone())
                })
                .filter(|(file, _)| file.starts_with(name))
                .collect()
        };
        for (path, original) in originals {
            let name = path.to_str().unwrap();
            let whole_elsewhere = quarantined(name)
                .iter()
                .any(|(file, bytes)| file == name && bytes == original);
            let in_place = match now.get(path) {
                Some(kept) if kept.len() <= original.len() => {
                    let prefix_ok = without_seal(kept) == without_seal(&original[..kept.len()]);
                    let tail = format!("{name}.{}.cut", kept.len());
                    prefix_ok
                        && (kept.len() == original.len()
                            || quarantined(name).iter().any(|(file, bytes)| {
                                *file == tail && bytes[..] == original[kept.len()..]
                            }))
                }
                _ => false,
            };
            assert!(in_place || whole_elsewhere, "{when}: bytes of {name} lost");
        }
    }

    #[test]
    fn a_cut_stopped_after_any_step_loses_no_byte_and_a_rerun_finishes_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let options = Options {
            segment_bytes: 512,
            sync: SyncPolicy::Always,
            ..Options::default()
        };
        let store = Store::open_with(&data, options).unwrap();
        let at = Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap();
        for user in 1..=40 {
            store
                .track_message_sent_at(user, Channel::Sms, "low_balance", 0.05, at)
                .unwrap();
        }
        store.close().unwrap();
        let mut segments: Vec<PathBuf> = files(&data).into_keys().collect();
        segments.sort();
        assert!(segments.len() >= 3, "{segments:?}");
        // A flipped bit in the middle of the first (sealed) segment.
        let first = data.join(&segments[0]);
        let mut bytes = std::fs::read(&first).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&first, bytes).unwrap();
        let originals = files(&data);
        assert_eq!(
            audit::audit(&data, false).unwrap().verdict,
            Verdict::Corrupt
        );

        let cut = RepairOptions {
            cut: true,
            ..RepairOptions::default()
        };
        let mut crashes = 0;
        for steps in 0.. {
            let copy = dir.path().join(format!("crash-after-{steps}"));
            std::fs::create_dir(&copy).unwrap();
            for (path, bytes) in &originals {
                let target = copy.join(path);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(target, bytes).unwrap();
            }
            STEPS_BEFORE_CRASH.with(|left| left.set(Some(steps)));
            let first_run = repair(&copy, cut);
            STEPS_BEFORE_CRASH.with(|left| left.set(None));
            let when = format!("crash after {steps} steps");
            every_byte_in_place_or_quarantined(&originals, &copy, &when);
            let finished = match first_run {
                Ok(done) => {
                    assert_eq!(done.action, RepairAction::Cut);
                    true
                }
                Err(error) => {
                    assert!(error.to_string().contains("simulated crash"), "{error}");
                    crashes += 1;
                    let rerun = repair(&copy, cut).unwrap();
                    assert_ne!(rerun.action, RepairAction::Refused, "{when}");
                    every_byte_in_place_or_quarantined(&originals, &copy, &when);
                    false
                }
            };
            let after = audit::audit(&copy, false).unwrap();
            assert_eq!(
                after.verdict,
                Verdict::Clean,
                "{when}: {:?}",
                after.findings
            );
            Store::open_read_only(&copy).unwrap();
            if finished {
                break;
            }
        }
        // The repair directory, the report, one copy, the renames, the cut, the seal.
        assert!(crashes >= 5, "{crashes} steps");
    }
}
