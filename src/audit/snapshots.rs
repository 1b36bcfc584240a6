//! The audit of the store's snapshots: which one an open would use, which it would ignore and
//! why, and with `deep`, whether each usable one holds what folding the log up to its position
//! gives. A snapshot is a cache of the log: its findings never change the log's verdict.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audit::{CutPoint, Finding, Fix};
use crate::log::replay::{self, Mode};
use crate::log::summary::LogSummary;
use crate::options::Options;
use crate::projection::{DecodedFacts, Projection, capture};
use crate::snapshot::{self, SNAPSHOT_DIRECTORY};

/// What an open makes of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotUse {
    /// The newest that passes every check: an open loads it.
    Used,
    /// Passes every check, but a newer one is used.
    Valid,
    /// Fails a check: an open passes it over (the reason says which).
    Ignored,
}

/// One snapshot file, as audit read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAudit {
    /// Path relative to the store directory, e.g. `snapshots/snapshot-00000000000000000042`.
    pub file: String,
    /// The sequence number of the last event it covers, as its name gives it.
    pub last_seq: u64,
    /// Size.
    pub bytes: u64,
    /// What an open makes of it.
    pub usage: SnapshotUse,
    /// Why an open ignores it, or (with `deep`) how its facts differ from the log's.
    pub reason: Option<String>,
}

/// Audits every snapshot file in `dir`, newest first; adds a finding for each one an open
/// ignores and, with `deep`, for each whose facts differ from the fold of the log up to its
/// position.
pub(crate) fn audit_snapshots(
    dir: &Path,
    deep: bool,
    findings: &mut Vec<Finding>,
) -> Vec<SnapshotAudit> {
    let directory = dir.join(SNAPSHOT_DIRECTORY);
    if let Some(metadata) = crate::log::segment::not_own_directory(&directory) {
        // An open ignores it (`snapshot::load_newest`): nothing inside a store is followed.
        findings.push(Finding {
            kind: "snapshot_ignored".to_string(),
            segment: SNAPSHOT_DIRECTORY.to_string(),
            offset: 0,
            bytes: metadata.len(),
            seq: None,
            reason: format!(
                "{} (a snapshot is a cache: the log is not affected)",
                crate::log::segment::NOT_OWN_DIRECTORY
            ),
            fix: Fix::DeleteSnapshot,
            cut: CutPoint::default(),
        });
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(&directory) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, std::path::PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let seq = snapshot::snapshot_file_sequence(entry.file_name().to_str()?)?;
            Some((seq, entry.path()))
        })
        .collect();
    files.sort_unstable_by(|a, b| b.cmp(a));
    let window_ms = i64::try_from(Options::default().attribution_window.as_millis())
        .expect("bounded by ATTRIBUTION_WINDOW_MAX");
    let mut used_found = false;
    let mut audits = Vec::with_capacity(files.len());
    for (last_seq, path) in files {
        let file = format!(
            "{SNAPSHOT_DIRECTORY}/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let bytes = std::fs::symlink_metadata(&path).map_or(0, |metadata| metadata.len());
        let mut audit = SnapshotAudit {
            file,
            last_seq,
            bytes,
            usage: SnapshotUse::Ignored,
            reason: None,
        };
        let finding = |kind: &str, reason: String| Finding {
            kind: kind.to_string(),
            segment: audit.file.clone(),
            offset: 0,
            bytes,
            seq: Some(last_seq),
            reason: format!("{reason} (a snapshot is a cache: the log is not affected)"),
            fix: Fix::DeleteSnapshot,
            cut: CutPoint::default(),
        };
        let loading = snapshot::Loading {
            on_demand: false,
            indexes: true,
            sums_by_time: true,
            count_totals: false,
        };
        match snapshot::load(dir, &path, window_ms, loading) {
            Err(reason) => {
                findings.push(finding("snapshot_ignored", reason.clone()));
                audit.reason = Some(reason);
            }
            Ok(loaded) => {
                audit.usage = match used_found {
                    false => SnapshotUse::Used,
                    true => SnapshotUse::Valid,
                };
                used_found = true;
                if deep
                    && let Some(difference) = compare_with_log(
                        dir,
                        loaded.position.last_seq,
                        capture::image_of(Projection::from_facts(loaded.facts)),
                        &loaded.indexes,
                        loaded.summary.ok(),
                        window_ms,
                    )
                {
                    let reason = format!(
                        "its facts differ from the log's up to seq {}: {difference}",
                        loaded.position.last_seq
                    );
                    findings.push(finding("snapshot_differs", reason.clone()));
                    audit.reason = Some(reason);
                }
            }
        }
        audits.push(audit);
    }
    audits
}

/// Folds the log up to `last_seq` and says what differs from `image`, from the `indexes` the
/// snapshot held (compared with those built over the folded facts) and from its `summary` of
/// the log, or `None` when nothing does (or when the log cannot be replayed: its own findings
/// say why).
fn compare_with_log(
    dir: &Path,
    last_seq: u64,
    image: DecodedFacts,
    indexes: &snapshot::Indexes,
    summary: Option<LogSummary>,
    window_ms: i64,
) -> Option<String> {
    let mut projection = Projection::new(window_ms);
    replay::replay(dir, Mode::ReadOnly, &mut |logged| {
        if logged.seq <= last_seq {
            projection.fold(logged);
        }
    })
    .ok()?;
    let mut index_differences = Vec::new();
    if let Some(rollup) = &indexes.rollup
        && rollup != projection.rollup()
    {
        index_differences.push("the message rollup".to_string());
    }
    if let Some(credits) = &indexes.credits
        && let Some(what) = credits.differs_from(projection.credits(), projection.outcome_states())
    {
        index_differences.push(format!("the outcome credits ({what})"));
    }
    if let Some(summary) = summary
        && summary != projection.log_summary().0
    {
        index_differences.push("the log's summary".to_string());
    }
    let folded = capture::image_of(projection);
    let mut differences = Vec::new();
    let mut list = |what: &str, index: Option<usize>| {
        if let Some(index) = index {
            differences.push(format!("{what} (first at index {index})"));
        }
    };
    list(
        "messages",
        first_difference(image.messages.iter(), folded.messages.iter()),
    );
    list(
        "outcomes",
        first_difference(&image.outcomes, &folded.outcomes),
    );
    list(
        "users",
        first_difference(image.users.iter(), folded.users.iter()),
    );
    list("names", first_difference(&image.names, &folded.names));
    list("budgets", first_difference(&image.budgets, &folded.budgets));
    list(
        "external ids",
        first_difference(&image.external_ids, &folded.external_ids),
    );
    if image.latest_event_ms != folded.latest_event_ms {
        differences.push("the latest event time".to_string());
    }
    differences.append(&mut index_differences);
    (!differences.is_empty()).then(|| differences.join(", "))
}

/// The first index at which two lists differ (the shorter one's length if one extends the
/// other), or `None` if they are equal.
fn first_difference<T: PartialEq>(
    left: impl IntoIterator<Item = T>,
    right: impl IntoIterator<Item = T>,
) -> Option<usize> {
    let (mut left, mut right) = (left.into_iter(), right.into_iter());
    let mut index = 0;
    loop {
        match (left.next(), right.next()) {
            (None, None) => return None,
            (Some(left), Some(right)) if left == right => index += 1,
            _ => return Some(index),
        }
    }
}
