//! How to open a store: the log's sync policy and segment size, the impact view's attribution
//! window, and how long to wait for another writer's lock.

use std::time::Duration;

use crate::limits::{
    ATTRIBUTION_WINDOW_DEFAULT, SEGMENT_BYTES_DEFAULT, SNAPSHOT_EVERY_DEFAULT,
    SYNC_AHEAD_BYTES_DEFAULT,
};
use crate::log::SyncPolicy;

/// How to open a store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Options {
    /// Durability of acknowledged calls. Default: [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Size at which a segment rolls over, in bytes. Default: 64 MiB.
    pub segment_bytes: u64,
    /// Under [`SyncPolicy::Never`], bytes of a segment handed to the OS between two syncs a
    /// background thread makes of it, so that the sync sealing the segment at rollover, on a
    /// tracking call's path, finds at most about this much left to write rather than the whole
    /// segment. 0: no such thread, a segment is synced only when sealed (and by
    /// [`Store::sync`](crate::Store::sync) and [`Store::close`](crate::Store::close)). The
    /// other policies sync often enough without it. Default: 2 MiB
    /// ([`SYNC_AHEAD_BYTES_DEFAULT`](crate::SYNC_AHEAD_BYTES_DEFAULT)).
    pub sync_ahead_bytes: u64,
    /// How far before an outcome a message may be to be credited with it (impact view).
    /// Default: 7 days.
    pub attribution_window: Duration,
    /// How long opening for writing waits for another writer to release the store's lock,
    /// trying again every few milliseconds, before it fails with [`Error::Locked`](crate::Error::Locked).
    /// Default: zero (fail at once).
    pub lock_timeout: Duration,
    /// A writer writes a snapshot of its views when it closes if the log holds at least this
    /// many events past the newest snapshot (or an eighth of what that one covers, and at least
    /// [`SNAPSHOT_AT_CLOSE_MIN`](crate::SNAPSHOT_AT_CLOSE_MIN)), so that the next open replays
    /// only what comes after; and in the background once the log has grown past the newest
    /// snapshot by this many events and by half the events that snapshot covers (after one
    /// covering n events, the next is due at n + max(this, n / 2); 0: only when
    /// [`Store::snapshot`](crate::Store::snapshot) is called). Smaller logs replay about
    /// as fast as a snapshot loads. Default: 1,000,000 (a tenth of a second of replay).
    pub snapshot_every: u64,
    /// Whether opening loads the newest valid snapshot (and replays only the log after it);
    /// `false` replays the whole log, to measure it or to have every frame checked. Default:
    /// `true`.
    pub load_snapshot: bool,
    /// Whether a loaded snapshot's messages and users' lists are decoded only when first used
    /// (the file stays mapped, and a chunk of 256 messages or one user's lists is decoded the
    /// first time a query or the fold reads or changes it), rather than all at open; so are the
    /// items of each ten-minute slice of the message rollup it takes (`load_indexes` and
    /// `load_sums_by_time`), which only a query over a time range that cuts the slice, or the
    /// fold, reads. For a
    /// process that answers or makes a call or two about a few users and ends (the CLI's
    /// `history`, `engagement` and `track`; in Python, `Store.open_read_only(path, decode_on_demand=True)`): at 100 M
    /// messages it opens several times faster, in a small share of the
    /// memory. A process that answers many calls should leave it off, or decode the rest on a
    /// thread of its own once open ([`Store::decode_rest`](crate::Store::decode_rest), as
    /// `commlog serve` does): otherwise every first read of a message or a user decodes its
    /// chunk or lists, and the first query over every message (one that builds an index)
    /// decodes them chunk by chunk, slower than the open would have (docs/PERFORMANCE.md).
    /// Default: `false`.
    pub decode_on_demand: bool,
    /// Whether opening takes the indexes a loaded snapshot holds (those of the views over all
    /// users: the message rollup, and the outcome credits when made under the same
    /// `attribution_window`; docs/FORMAT.md, "Indexes"), so that the first such query answers
    /// at once rather than building them from every message. `false` leaves the snapshot's
    /// indexes unread and builds them on first use: for a process that reads only a few
    /// users' calls, the log's summary, every message once, or stats and the cost report over
    /// all time (the CLI's `history`, `engagement`, `info`, `export`, and `stats` and `costs`
    /// without a time range), or makes a call or two (the CLI's `track`), which then opens
    /// faster. A writer opened so builds them before a snapshot its close writes, so that the
    /// next opens find them there. Default: `true`.
    pub load_indexes: bool,
    /// With `load_indexes`, whether their sums by time are taken too: the message rollup, and
    /// the outcome credits' sums by time. `false` reads past them and takes only each outcome's
    /// credit, summing the outcomes over all time from those as the open checks them: for a
    /// process that asks only views over every user and all time (the CLI's `channels` without
    /// a period and `impact`, each without a time range), whose counts come from the totals
    /// over all time (`count_totals`) and whose outcomes from those sums. The rollup is then
    /// built from the messages on first use, if ever, and the credits' sums by time are filed
    /// from the credits when a query over a time range (or the snapshot a writer's close
    /// writes) first needs them; until then the fold keeps the sums over all time. Default:
    /// `true`.
    pub load_sums_by_time: bool,
    /// Whether a snapshot's messages read on demand (`decode_on_demand`) are counted, as the
    /// open checks them, into totals over all time by channel and message type (and spend by
    /// day), so that the queries without a user or a time range count their messages from
    /// those (stats, channel effectiveness without a period, impact, and the cost report
    /// without a message type or month, and its budgets without an end; as the CLI's `stats`,
    /// `costs`, `channels` and `impact` do)
    /// rather than from the message rollup or by decoding every message. It adds
    /// a few percent to such an open: `false` for a process that reads only a few users' calls
    /// or the log's summary (the CLI's `history`, `engagement` and `info`). Otherwise (decoded
    /// whole, or this `false`) the first such query counts the totals in one pass over the
    /// messages, unless the message rollup is built by then (loaded from the snapshot, or
    /// built by a query over a time range): it answers instead. So an open that takes the
    /// snapshot's rollup (`load_indexes` and `load_sums_by_time`, and the snapshot holds one)
    /// counts no totals, whatever this says. Default: `true`.
    pub count_totals: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sync: SyncPolicy::Always,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            sync_ahead_bytes: SYNC_AHEAD_BYTES_DEFAULT,
            attribution_window: ATTRIBUTION_WINDOW_DEFAULT,
            lock_timeout: Duration::ZERO,
            snapshot_every: SNAPSHOT_EVERY_DEFAULT,
            load_snapshot: true,
            decode_on_demand: false,
            load_indexes: true,
            load_sums_by_time: true,
            count_totals: true,
        }
    }
}
