//! Every bound commlog enforces, with its unit and its reason.
//!
//! A length read from disk meets its limit here before it sizes anything.

/// Longest message type, action, failure reason or outcome name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;

/// Longest external id of a message (a provider's message id or a caller's idempotency key), in
/// bytes. Provider ids are 34 (Twilio) to about 60 bytes; keys are usually UUIDs (36).
pub const EXTERNAL_ID_BYTES_MAX: usize = 128;

/// Largest frame body (sequence number, envelope and event), in bytes. The largest event the
/// codec can produce is about 260 bytes (a send with a 64-byte type and a 128-byte external
/// id); the margin leaves room for events added later, and the bound rejects garbage lengths
/// during replay.
pub const FRAME_BODY_BYTES_MAX: usize = 1024;

/// Bytes in front of every frame body: its length (u16) and its crc32 (u32).
pub const FRAME_PREFIX_BYTES: usize = 6;

/// Largest close marker frame: prefix, seq and appended delta (9 bytes each at most), three
/// one-byte fields. Every segment keeps room for one, so a clean close never takes a segment
/// past `Options::segment_bytes`.
pub const CLOSE_MARKER_BYTES_MAX: u64 = 32;

/// Bytes of the fixed header at the start of a format version 1 segment file.
pub const SEGMENT_HEADER_V1_BYTES: usize = 32;

/// Bytes of the fixed header at the start of a format version 2 segment file: version 1's
/// fields, the store id, the header checksum and the seal slot (docs/FORMAT.md).
pub const SEGMENT_HEADER_V2_BYTES: usize = 56;

/// Default size at which a segment rolls over, in bytes.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default `Options::snapshot_every`: events past the newest snapshot for a close to write one.
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 1_000_000;

/// Fewest events past the newest snapshot for a close to write one before
/// `Options::snapshot_every` are reached (when they are an eighth of what that snapshot
/// covers): below this, the next open replays them in a few milliseconds.
pub const SNAPSHOT_AT_CLOSE_MIN: u64 = 65_536;

/// Smallest `Options::segment_bytes` accepted. A segment always takes at least one frame, so
/// this is a floor for sanity, not for correctness.
pub const SEGMENT_BYTES_MIN: u64 = 256;

/// Largest `Options::segment_bytes` accepted: a segment is mapped whole during replay.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 40;

/// Default `Options::sync_ahead_bytes`: under `SyncPolicy::Never`, bytes of a segment handed to
/// the OS between two syncs a background thread makes of it, so that the sync sealing the
/// segment at rollover, on the call path, finds at most about this much left to write rather
/// than the whole segment (a few milliseconds, against about 150 ms for 64 MiB on a disk that
/// writes 400 MB/s).
pub const SYNC_AHEAD_BYTES_DEFAULT: u64 = 2 * 1024 * 1024;

/// Frames buffered in memory before they are handed to the OS, in bytes.
pub const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Logs smaller than this replay on one thread; larger ones decode and fold on two.
pub const PIPELINED_REPLAY_BYTES_MIN: usize = 1024 * 1024;

/// Segments at least this large replay on two threads when read on one (`replay`), in chunks
/// of about [`SPLIT_CHUNK_BYTES`], every other one replayed ahead by the second thread.
pub const SPLIT_REPLAY_BYTES_MIN: usize = 4 * 1024 * 1024;

/// Bytes of a chunk of a split replay: its events are held until folded, about 3 MB of memory
/// per MB of chunk.
pub const SPLIT_CHUNK_BYTES: usize = 1024 * 1024;

/// Events handed from the decoding thread to the folding thread at a time during replay.
pub const REPLAY_BATCH_EVENTS: usize = 4096;

/// Events whose state the folding thread reads ahead in one pass before folding them during
/// replay (`Projection::pre_read`).
pub const PRE_READ_EVENTS: usize = 64;

/// Batches in flight between the two replay threads (bounds replay's extra memory).
pub const REPLAY_BATCHES_IN_FLIGHT: usize = 8;

/// Default `Options::attribution_window`: an outcome is credited to a message engaged with
/// (or delivered) up to 7 days before it.
pub const ATTRIBUTION_WINDOW_DEFAULT: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// Longest `Options::attribution_window` accepted: 10 years.
pub const ATTRIBUTION_WINDOW_MAX: std::time::Duration =
    std::time::Duration::from_secs(10 * 366 * 24 * 3600);

/// Earliest time a caller may pass to a tracking call, in ms since the epoch: 1970-01-01T00:00Z.
/// No communication of this service happened before it; an earlier time is a unit or parsing
/// mistake.
pub const TIME_MS_MIN: i64 = 0;

/// How far after the wall clock at the call a time a caller passes may lie, in ms: 24 hours.
/// Clocks and time zones of callers differ by hours at most; a time further ahead is a mistake,
/// and would move every view's "now" for every user.
pub const TIME_AFTER_CLOCK_MS_MAX: i64 = 24 * 3600 * 1000;

/// How much earlier than its message's sent time a delivery, open, action or failure may be
/// reported, in ms: 5 minutes. Provider and application clocks differ by seconds; within this
/// skew the time is taken as the sent time, beyond it the report is refused.
pub const CLOCK_SKEW_MS_MAX: i64 = 5 * 60 * 1000;

/// Default alert threshold of a budget, in percent of it.
pub const BUDGET_ALERT_PERCENT_DEFAULT: u8 = 90;

/// Characters of a caller's value an error message shows (it adds the length of a longer one).
pub const SHOWN_VALUE_CHARS_MAX: usize = 64;

/// Largest user id accepted: `i64::MAX`, so that every id fits the signed 64-bit integers of
/// SQL databases, Parquet and Python's JSON readers.
pub const USER_ID_MAX: u64 = i64::MAX as u64;

/// Pause between attempts to take a store's lock while `Options::lock_timeout` has not run out.
pub const LOCK_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Largest absolute amount of money accepted from a caller, in dollars.
pub const MONEY_DOLLARS_MAX: f64 = 9e12;

/// The same bound in micro-dollars.
pub const MONEY_MICROS_MAX: i64 = 9_000_000_000_000_000_000;

const _: () = assert!(FRAME_BODY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(SEGMENT_HEADER_V1_BYTES < SEGMENT_HEADER_V2_BYTES);
const _: () = assert!(SEGMENT_HEADER_V2_BYTES as u64 + CLOSE_MARKER_BYTES_MAX <= SEGMENT_BYTES_MIN);
const _: () = assert!(MONEY_MICROS_MAX < i64::MAX);
// A send: envelope (≤ 4 varints of 9 bytes), tag, user, channel, cost, two strings with
// their lengths.
const _: () = assert!(
    4 * 9 + 1 + 9 + 1 + 9 + (1 + NAME_BYTES_MAX) + (1 + EXTERNAL_ID_BYTES_MAX)
        <= FRAME_BODY_BYTES_MAX
);
