//! Offline audit: read the log, event by event, without opening a store for writing.

use std::path::Path;

use crate::codec::SegmentHeader;
use crate::error::Result;
use crate::event::LoggedEvent;
use crate::log::OpenReport;
use crate::log::replay::{self, Checksums, Expected, Mode, Position};

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
