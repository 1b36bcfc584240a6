//! The public API: open a store, track events, query the views.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::event::{BudgetScope, Channel, MessageId, MessageRef, UserId, validate_external_id};
use crate::limits::{
    ATTRIBUTION_WINDOW_MAX, LOCK_POLL_INTERVAL, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
use crate::log::replay::{self, Mode, Replayed};
use crate::log::segment::{DIRECTORY_MODE, FILE_MODE, open_no_follow};
use crate::log::{LogPosition, OpenReport, SharedLog, SyncPolicy};
use crate::message::{FinancialOutcome, Message};
use crate::options::Options;
use crate::projection::channel::{ChannelReport, EffectivenessFilter};
use crate::projection::cost::{CostFilter, CostReport};
use crate::projection::engagement::{EngagementFilter, UserEngagement};
use crate::projection::impact::{ImpactFilter, ImpactReport};
use crate::projection::message_table::ReadyChunks;
use crate::projection::{DecodeCursor, Projection};
use crate::snapshot::{self, Snapshots};
use crate::stats::{CommunicationStats, StatsFilter, validate_selection, validate_user};
use crate::track::{Call, Tracked};

/// Name of the lock file that keeps a second writer out.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// An embedded communication-analytics store: an append-only log on disk and the views folded
/// from it in memory. `Send + Sync`: share it between threads (e.g. in an `Arc`).
///
/// ```
/// use commlog::{Channel, StatsFilter, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let message = store.track_message_sent(123, Channel::Sms, "low_balance", 0.05)?;
/// store.track_message_delivered(message.id, None)?;
/// let stats = store.get_communication_stats(&StatsFilter::new().user(123))?;
/// assert_eq!(stats.delivered_count, 1);
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Store {
    dir: PathBuf,
    pub(crate) projection: Arc<RwLock<Projection>>,
    report: OpenReport,
    /// `None` when opened read-only.
    pub(crate) writer: Option<Writer>,
    /// A read-only store's place in the log, which `refresh` goes on from; `None` for a writer.
    reader: Option<parking_lot::Mutex<Reader>>,
}

/// Where a read-only store's views end in the log.
struct Reader {
    /// `None` while the log held no segment.
    position: Option<LogPosition>,
    /// The highest seq folded: a refresh that failed part-way folded events past `position`,
    /// and the next one skips them.
    folded_seq: u64,
}

pub(crate) struct Writer {
    pub(crate) log: Arc<SharedLog>,
    pub(crate) policy: SyncPolicy,
    /// Holds the exclusive lock while the store is open; unlocked at close.
    lock_file: DirectoryLock,
    /// The `Interval` policy's background flusher: dropping the sender stops it.
    background: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    /// The `Never` policy's thread syncing the segment ahead of its rollover
    /// (`SharedLog::sync_ahead_wakes`): `SharedLog::stop_sync_ahead` stops it.
    sync_ahead: Option<JoinHandle<()>>,
    pub(crate) snapshots: Arc<Snapshots>,
    /// The thread writing snapshots in the background, woken when one is due: dropping the
    /// sender stops it.
    pub(crate) snapshotter: Option<(mpsc::SyncSender<()>, JoinHandle<()>)>,
    /// The thread keeping the message table's next chunk ready while tracking calls fill it
    /// (`ReadyChunks::keep_one_ready`).
    chunk_maker: Option<(Arc<ReadyChunks>, JoinHandle<()>)>,
    closed: bool,
}

impl Store {
    /// Opens the store in `dir` for writing with default [`Options`], replaying the log. A
    /// missing `dir` is created (but not its parent: a missing parent is
    /// [`Error::InvalidInput`], so a mistyped path never grows a tree of directories).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = commlog::Store::open(dir.path().join("data"))?;
    /// assert_eq!(store.open_report().events, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    /// Opens the store in `dir` for writing with `options`.
    ///
    /// Fails with [`Error::Locked`] if another process has it open for writing (after waiting
    /// up to `options.lock_timeout` for it to close), with [`Error::InvalidInput`] if `dir` is
    /// not a directory or its parent does not exist, and with
    /// [`Error::Corruption`] (changing nothing on disk) if durable bytes are damaged. A torn
    /// tail is copied to `quarantine/` and cut off; [`Store::open_report`] says so.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        validate_options(&options)?;
        create_store_directory(&dir)?;
        let lock_file = lock_directory(&dir, options.lock_timeout)?;
        let (projection, replayed, snapshot_is_older) = load_views(&dir, Mode::Write, &options)?;
        let snapshot_seq = replayed.report.snapshot_events;
        let projection = Arc::new(RwLock::new(projection));
        let log = Arc::new(SharedLog::open(
            &dir,
            &options,
            replayed.tail,
            replayed.last_seq,
            replayed.next_message_id,
            replayed.covered,
        )?);
        // The policy's background sync thread, if it has one.
        let (background, sync_ahead) = match options.sync {
            SyncPolicy::Interval(interval) => (Some(spawn_interval_sync(&log, interval)?), None),
            SyncPolicy::Never if options.sync_ahead_bytes > 0 => {
                (None, Some(spawn_sync_ahead(&log)?))
            }
            SyncPolicy::Never | SyncPolicy::Always => (None, None),
        };
        let snapshots = Arc::new(Snapshots::new(
            &dir,
            Arc::clone(&log),
            Arc::clone(&projection),
            snapshot_seq,
            snapshot_is_older,
            options.snapshot_every,
            replayed.report.snapshot.is_some() && !options.load_indexes,
        ));
        let snapshotter = match options.snapshot_every {
            0 => None,
            _ => Some(spawn_snapshotter(&snapshots)?),
        };
        // Last: nothing fails after it, so no error leaves it waiting.
        let chunk_maker = spawn_chunk_maker()?;
        projection
            .write()
            .take_chunks_from(Some(Arc::clone(&chunk_maker.0)));
        Ok(Store {
            dir,
            projection,
            report: replayed.report,
            writer: Some(Writer {
                log,
                policy: options.sync,
                lock_file,
                background,
                sync_ahead,
                snapshots,
                snapshotter,
                chunk_maker: Some(chunk_maker),
                closed: false,
            }),
            reader: None,
        })
    }

    /// Opens the store in `dir` without writing anything, even while a writer runs (for
    /// audits): it sees what the writer had handed to the OS at this moment. A torn tail is
    /// ignored, not cut off. Tracking calls fail with [`Error::ReadOnly`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_read_only_with(dir, Options::default())
    }

    /// [`Store::open_read_only`] with `options` for the views (`attribution_window`); the
    /// write options are ignored.
    pub fn open_read_only_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        validate_options(&options)?;
        let dir = dir.as_ref().to_path_buf();
        let metadata = std::fs::metadata(&dir).map_err(|source| {
            // A missing parent is the caller's mistake, named as a writer's open names it.
            check_parent(&dir)
                .err()
                .unwrap_or_else(|| Error::io(&dir, source))
        })?;
        if !metadata.is_dir() {
            return Err(not_a_directory("dir", &dir));
        }
        let (projection, replayed, _) = load_views(&dir, Mode::ReadOnly, &options)?;
        let position = replayed
            .tail
            .as_ref()
            .map(|tail| tail.position(replayed.last_seq));
        Ok(Store {
            dir,
            projection: Arc::new(RwLock::new(projection)),
            report: replayed.report,
            writer: None,
            reader: Some(parking_lot::Mutex::new(Reader {
                position,
                folded_seq: replayed.last_seq,
            })),
        })
    }

    /// Applies to a read-only store's views what the writer has appended since the open or the
    /// last refresh, reading the log from where they end (the segment's header and the bytes
    /// after that point, not the whole segment); returns how many events it applied. Like the
    /// open, it stops before a frame the writer has not finished. Queries on other threads go
    /// on while the log is read; they wait only while new events are applied, and see all of
    /// them or none. A writer's views are always current: for it this returns 0.
    ///
    /// Fails with [`Error::Corruption`] if the log no longer holds the frame the views end at
    /// (the store was repaired or replaced: open it again), or is damaged after it: then the
    /// events before the damage are applied, and the error's reason says how many, so that what
    /// the refreshes report adds up to what the views hold; every later refresh fails at the
    /// same damage until the log is repaired.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let writer = commlog::Store::open(dir.path())?;
    /// let reader = commlog::Store::open_read_only(dir.path())?;
    /// writer.track_message_sent(7, commlog::Channel::Push, "bill_due", 0.0)?;
    /// writer.flush()?;
    /// assert_eq!(reader.refresh()?, 1);
    /// assert_eq!(reader.get_user_communication_history(7, 10)?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh(&self) -> Result<u64> {
        let Some(reader) = &self.reader else {
            return Ok(0);
        };
        let mut reader = reader.lock();
        let folded_before = reader.folded_seq;
        // Taken at the first new event, once the log's new bytes are read: queries go on
        // while they are, and while a refresh finds nothing new.
        let mut projection = None;
        let mut folded_seq = reader.folded_seq;
        let mut fold = |logged: &crate::event::LoggedEvent<'_>| {
            if logged.seq > folded_seq {
                projection
                    .get_or_insert_with(|| self.projection.write())
                    .fold(logged);
                folded_seq = logged.seq;
            }
        };
        let replayed = match &reader.position {
            Some(position) => {
                snapshot::check_position(&self.dir, position).map_err(|reason| {
                    Error::corruption(
                        &self.dir.join(crate::log::segment::segment_file_name(
                            position.segment_first_seq,
                        )),
                        position.frame_start,
                        format!(
                            "the log no longer holds what this reader's views end at ({reason}): \
                             open the store again"
                        ),
                    )
                })?;
                replay::replay_from(&self.dir, Mode::ReadOnly, position, &mut fold)
            }
            None => replay::replay(&self.dir, Mode::ReadOnly, &mut fold),
        };
        reader.folded_seq = folded_seq;
        let applied = folded_seq - folded_before;
        let replayed = replayed.map_err(|error| match error {
            // The events before the damage are in the views: the error counts them, so that
            // what every refresh reports adds up to what the views hold.
            Error::Corruption {
                segment,
                offset,
                reason,
            } if applied > 0 => Error::Corruption {
                segment,
                offset,
                reason: format!("{reason} (this refresh applied the {applied} events before it)"),
            },
            error => error,
        })?;
        if let Some(tail) = &replayed.tail {
            reader.position = Some(tail.position(replayed.last_seq));
        }
        Ok(reader.folded_seq - folded_before)
    }

    /// Writes a snapshot of the views now (docs/FORMAT.md, "Snapshots"), so that the next open
    /// replays only the log after it; returns its path, or `None` when the newest snapshot
    /// already covers the whole log (or it is empty). The views are captured at the log's end
    /// and written while tracking calls go on (each waits at most for a read lock held while a
    /// few thousand entries are encoded); the snapshot is written once the log is durable up
    /// to it. A writer also writes one in the background as the log grows
    /// ([`Options::snapshot_every`]), and when it closes.
    pub fn snapshot(&self) -> Result<Option<PathBuf>> {
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly {
            operation: "snapshot",
        })?;
        writer.snapshots.write()
    }

    /// Decodes what an open with [`Options::decode_on_demand`] left in the snapshot's file:
    /// every message's record, every user's lists and the items of every slice of the message
    /// rollup not read yet (the outcome credits are decoded whole at open), 4,096 records, 256
    /// users' lists or 65,536 items at a time, each batch decoded without holding the views'
    /// lock (taken, for reading, only to find where the batch lies and to put it in place), the
    /// thread yielding its core
    /// between batches, so that tracking calls and queries on other threads go on meanwhile.
    /// Returns true once nothing is left (at once for a store decoded whole, or opened without
    /// a snapshot), false if `stop` was set first (checked between batches).
    ///
    /// For a process that answers many calls: open on demand, so that the first call answers
    /// within seconds at 100 M messages, then run this on a thread of its own, so that once it
    /// returns no query decodes anything first: a query's first pass over any user or message
    /// is as fast as after an open that decoded everything (`commlog serve` does so). Records
    /// are still read through the table of chunks an on-demand open keeps
    /// (docs/PERFORMANCE.md).
    ///
    /// ```
    /// use std::sync::atomic::AtomicBool;
    /// use commlog::{Channel, Options, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.track_message_sent(7, Channel::Email, "welcome", 0.001)?;
    /// store.snapshot()?;
    /// store.close()?;
    /// let options = Options { decode_on_demand: true, ..Options::default() };
    /// let store = std::sync::Arc::new(Store::open_with(dir.path(), options)?);
    /// assert!(store.open_report().snapshot.is_some());
    /// let stop = std::sync::Arc::new(AtomicBool::new(false));
    /// let decoder = std::thread::spawn({
    ///     let (store, stop) = (store.clone(), stop.clone());
    ///     move || store.decode_rest(&stop)
    /// });
    /// assert_eq!(store.get_user_communication_history(7, 10)?.len(), 1);
    /// assert!(decoder.join().unwrap());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_rest(&self, stop: &AtomicBool) -> bool {
        let mut cursor = DecodeCursor::default();
        loop {
            // The lock is held only to find where the next few lie and to put them in place.
            let Some(mapped) = self.projection.read().mapped_rest(&mut cursor) else {
                return true;
            };
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            let decoded = mapped.decode();
            self.projection.read().install_rest(&mapped, decoded);
            std::thread::yield_now();
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening found: segments and events replayed, torn bytes cut off and where they went.
    pub fn open_report(&self) -> OpenReport {
        self.report.clone()
    }

    /// What the log holds up to where the views end: its events, messages and outcomes, and
    /// the range of the events' own and append times (`commlog info`). Kept as events are
    /// folded, and held by snapshots, so it costs nothing to ask; after an open from a snapshot
    /// written by a version that holds none, the first call counts the events it covers from
    /// the log (read-only, as [`audit::read_log`](crate::audit::read_log) does) and keeps them.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = commlog::Store::open(dir.path())?;
    /// store.track_message_sent(7, commlog::Channel::Push, "bill_due", 0.0)?;
    /// let summary = store.log_summary()?;
    /// assert_eq!((summary.events, summary.messages, summary.outcomes), (1, 1, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log_summary(&self) -> Result<crate::LogSummary> {
        let captured = self.projection.read().log_summary();
        snapshot::completed_summary(&self.dir, &self.projection, captured)
    }

    /// Tracks a message sent now. `cost` is in dollars (rounded to the micro-dollar); returns
    /// the message with its new id.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = commlog::Store::open(dir.path())?;
    /// let message = store.track_message_sent(123, commlog::Channel::Sms, "low_balance", 0.05)?;
    /// assert_eq!(message.cost.micros(), 50_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn track_message_sent(
        &self,
        user: impl Into<UserId>,
        channel: Channel,
        message_type: &str,
        cost: f64,
    ) -> Result<Message> {
        self.track_message_sent_with(user, channel, message_type, cost, None, None)
    }

    /// Tracks a message sent at `sent_at`: not before 1970, and at most 24 hours after the
    /// clock at the call (else `Error::InvalidInput { field: "sent_at" }`).
    pub fn track_message_sent_at(
        &self,
        user: impl Into<UserId>,
        channel: Channel,
        message_type: &str,
        cost: f64,
        sent_at: DateTime<Utc>,
    ) -> Result<Message> {
        self.track_message_sent_with(user, channel, message_type, cost, Some(sent_at), None)
    }

    /// Tracks a message sent at `sent_at` (`None`: now), with an optional external id: the
    /// provider's message id (Twilio's MessageSid, SendGrid's X-Message-Id, Resend's email id)
    /// or the caller's idempotency key, 1 to 128 bytes of printable ASCII without space (see
    /// [`crate::validate_external_id`]). Every call that takes a message then takes the
    /// external id instead of the message id.
    ///
    /// An external id names one message per store. A send repeating it with the same user,
    /// channel, message type, cost and (if given) sent time appends nothing and returns the
    /// message the first send created, as it now stands; with any of them different it fails
    /// with [`Error::Conflict`], naming the message and the field.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = commlog::Store::open(dir.path())?;
    /// use commlog::Channel;
    /// let sid = "SM0123456789abcdef0123456789abcdef";
    /// let message = store.track_message_sent_with(123, Channel::Sms, "low_balance", 0.05, None, Some(sid))?;
    /// // A retry of the same send is the same message.
    /// let again = store.track_message_sent_with(123, Channel::Sms, "low_balance", 0.05, None, Some(sid))?;
    /// assert_eq!(again.id, message.id);
    /// // The provider's webhook names the message by its id.
    /// let delivered = store.track_message_delivered(sid, None)?;
    /// assert_eq!(delivered.id, message.id);
    /// assert_eq!(store.get_external_id(message.id)?.as_deref(), Some(sid));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn track_message_sent_with(
        &self,
        user: impl Into<UserId>,
        channel: Channel,
        message_type: &str,
        cost: f64,
        sent_at: Option<DateTime<Utc>>,
        external_id: Option<&str>,
    ) -> Result<Message> {
        self.track_message(Call::Sent {
            user: user.into(),
            channel,
            message_type: message_type.into(),
            cost,
            sent_at,
            external_id: external_id.map(Into::into),
        })
    }

    /// Tracks a delivery reported by the provider; `at` of `None` means now. `message` is the
    /// message's id or the external id it was sent with (an unknown one is
    /// [`Error::UnknownMessage`] or [`Error::UnknownExternalId`]); so in every call below.
    ///
    /// Every `at` of a message event is refused (`Error::InvalidInput { field: "at" }`) before
    /// 1970, more than 24 hours after the clock at the call, or more than 5 minutes before the
    /// message's sent time; within those 5 minutes the views take it as the sent time.
    pub fn track_message_delivered(
        &self,
        message: impl Into<MessageRef>,
        at: Option<DateTime<Utc>>,
    ) -> Result<Message> {
        self.track_message(Call::Delivered {
            message: message.into(),
            at,
        })
    }

    /// Tracks an open by the user; an open implies delivery.
    pub fn track_message_opened(
        &self,
        message: impl Into<MessageRef>,
        at: Option<DateTime<Utc>>,
    ) -> Result<Message> {
        self.track_message(Call::Opened {
            message: message.into(),
            at,
        })
    }

    /// Tracks an action the user took on a message, e.g. "viewed_forecast"; an action whose
    /// name contains "click" is a click.
    pub fn track_user_action(
        &self,
        message: impl Into<MessageRef>,
        action: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Message> {
        self.track_message(Call::Action {
            message: message.into(),
            action: action.into(),
            at,
        })
    }

    /// Tracks a failure or bounce reported by the provider, e.g. "undelivered".
    pub fn track_message_failed(
        &self,
        message: impl Into<MessageRef>,
        reason: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Message> {
        self.track_message(Call::Failed {
            message: message.into(),
            reason: reason.into(),
            at,
        })
    }

    /// Tracks a financial outcome for a user now; `amount` in dollars, negative for a loss.
    pub fn track_financial_outcome(
        &self,
        user: impl Into<UserId>,
        outcome: &str,
        amount: f64,
    ) -> Result<FinancialOutcome> {
        self.track_financial_outcome_at(user, outcome, amount, Utc::now())
    }

    /// Tracks a financial outcome at `at`: not before 1970, and at most 24 hours after the
    /// clock at the call (else `Error::InvalidInput { field: "at" }`).
    pub fn track_financial_outcome_at(
        &self,
        user: impl Into<UserId>,
        outcome: &str,
        amount: f64,
        at: DateTime<Utc>,
    ) -> Result<FinancialOutcome> {
        match self.track_one(Call::Outcome {
            user: user.into(),
            outcome: outcome.into(),
            amount,
            at: Some(at),
        })? {
            Tracked::Outcome(outcome) => Ok(outcome),
            _ => unreachable!("an outcome call answers with its outcome"),
        }
    }

    /// Sets the budget of `scope` for `month` (`"YYYY-MM"`): `amount` dollars (more than 0),
    /// alerting when spend reaches `alert_percent` (1 to 100; `None`: 90) of it. A budget is an
    /// event in the log, so the audit trail shows who planned what; a later budget for the same
    /// scope and month replaces the earlier one.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = commlog::Store::open(dir.path())?;
    /// use commlog::{BudgetScope, Channel};
    /// store.set_budget(BudgetScope::Channel(Channel::Sms), "2025-01", 1000.0, None)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_budget(
        &self,
        scope: BudgetScope,
        month: &str,
        amount: f64,
        alert_percent: Option<u8>,
    ) -> Result<()> {
        self.track_one(Call::Budget {
            scope,
            month: month.into(),
            amount,
            alert_percent,
        })
        .map(|_| ())
    }

    /// The message with this id or external id.
    pub fn get_message(&self, message: impl Into<MessageRef>) -> Result<Message> {
        let id = self.message_id(message.into())?;
        self.projection
            .read()
            .message(id)
            .ok_or(Error::UnknownMessage { id })
    }

    /// The message sent with this external id, if any (an invalid one is
    /// `Error::InvalidInput { field: "external_id" }`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = commlog::Store::open(dir.path())?;
    /// use commlog::Channel;
    /// store.track_message_sent_with(123, Channel::Email, "weekly_checkin", 0.001, None, Some("key-1"))?;
    /// assert_eq!(store.message_by_external_id("key-1")?.unwrap().user_id.0, 123);
    /// assert_eq!(store.message_by_external_id("key-2")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn message_by_external_id(&self, external_id: &str) -> Result<Option<Message>> {
        validate_external_id(external_id)?;
        let projection = self.projection.read();
        Ok(projection
            .message_id_of_external(external_id)
            .and_then(|id| projection.message(id)))
    }

    /// The external id the message with this id was sent with, if any.
    pub fn get_external_id(&self, message: impl Into<MessageId>) -> Result<Option<String>> {
        let id = message.into();
        let projection = self.projection.read();
        if projection.sent_ms(id).is_none() {
            return Err(Error::UnknownMessage { id });
        }
        Ok(projection.external_id_of(id).map(str::to_string))
    }

    /// The id of the message `message` names; an external id must name one. A message id is
    /// checked where it is used.
    fn message_id(&self, message: MessageRef) -> Result<MessageId> {
        match message {
            MessageRef::Id(id) => Ok(id),
            MessageRef::External(external_id) => {
                validate_external_id(&external_id)?;
                let id = self.projection.read().message_id_of_external(&external_id);
                id.ok_or(Error::UnknownExternalId { external_id })
            }
        }
    }

    /// The user's messages, newest sent first (ties: higher id first), at most `limit`.
    pub fn get_user_communication_history(
        &self,
        user: impl Into<UserId>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let user = validate_user(user.into())?;
        Ok(self.projection.read().history(user, limit))
    }

    /// The messages `filter` selects (as [`Store::get_communication_stats`] does), in id order.
    pub fn get_messages(&self, filter: &StatsFilter) -> Result<Vec<Message>> {
        validate_filter(filter)?;
        Ok(self.projection.read().messages(filter))
    }

    /// Counts, rates, costs and breakdowns over the messages `filter` selects, and the
    /// outcomes of its user and time range (docs/SEMANTICS.md).
    pub fn get_communication_stats(&self, filter: &StatsFilter) -> Result<CommunicationStats> {
        validate_filter(filter)?;
        Ok(self.projection.read().stats(filter))
    }

    // The analytics views (docs/SEMANTICS.md, "Views").

    /// One user's engagement over the messages `filter` selects: received, engaged and ignored
    /// per channel and message type, when and how fast they engage, the trend of the last 30
    /// days against the 30 before, and the preferred channel (docs/SEMANTICS.md, "Engagement").
    /// "now" is the filter's end or the latest tracking event, whichever is earlier.
    ///
    /// Cost: the user's messages in the window and in the trend's 60 days (binary search of
    /// their sorted list), never the whole store.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = commlog::Store::open(dir.path())?;
    /// use commlog::{Channel, EngagementFilter};
    /// let message = store.track_message_sent(123, Channel::Email, "weekly_checkin", 0.001)?;
    /// store.track_message_opened(message.id, None)?;
    /// let engagement = store.get_user_engagement(123, &EngagementFilter::new())?;
    /// assert_eq!((engagement.received, engagement.engaged), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_user_engagement(
        &self,
        user: impl Into<UserId>,
        filter: &EngagementFilter,
    ) -> Result<UserEngagement> {
        let user = validate_user(user.into())?;
        filter.validate()?;
        Ok(self.projection.read().engagement(user, filter))
    }

    /// Per channel and message type, and per channel: sent, delivered, opened, clicked,
    /// responded and converted counts and rates, cost and cost per message / response /
    /// conversion, attributed impact, ROI and performance score; the winning channel of each
    /// message type; with a period, the same per day, ISO week or month (docs/SEMANTICS.md,
    /// "Channel effectiveness"). Outcomes are credited with `Options::attribution_window`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = commlog::Store::open(dir.path())?;
    /// use commlog::{Channel, EffectivenessFilter};
    /// let message = store.track_message_sent(123, Channel::Sms, "low_balance", 0.05)?;
    /// store.track_user_action(message.id, "viewed_forecast", None)?;
    /// let report = store.get_channel_effectiveness(&EffectivenessFilter::new())?;
    /// assert_eq!(report.winners[0].channel, Channel::Sms);
    /// assert_eq!(report.lines[0].response_rate, 100.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_channel_effectiveness(&self, filter: &EffectivenessFilter) -> Result<ChannelReport> {
        validate_selection(
            filter.user,
            filter.message_type.as_deref(),
            filter.start,
            filter.end,
        )?;
        Ok(self.projection.read().channel_effectiveness(filter))
    }

    /// Spend per channel × day and × month, per channel and message type, cost per delivered
    /// message, response and conversion over the messages `filter` selects, and each budget it
    /// names against its month's spend (docs/SEMANTICS.md, "Cost and budgets").
    pub fn get_cost_report(&self, filter: &CostFilter) -> Result<CostReport> {
        filter.validate()?;
        Ok(self.projection.read().cost_report(filter))
    }

    /// Financial outcomes over `filter` (user, time range), each credited, last touch, to the
    /// user's message most recently engaged with within `Options::attribution_window` before
    /// it, else the one most recently delivered in it: totals per outcome, per channel and per
    /// message type, unattributed, ROI per channel and days since the last communication
    /// (docs/SEMANTICS.md, "Financial impact"). A channel or type filter keeps the outcomes
    /// credited to a matching message.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = commlog::Store::open(dir.path())?;
    /// use chrono::{Duration, TimeZone, Utc};
    /// use commlog::{Channel, ImpactFilter};
    /// let sent_at = Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap();
    /// let message = store.track_message_sent_at(123, Channel::Sms, "low_balance", 1.0, sent_at)?;
    /// store.track_message_opened(message.id, Some(sent_at + Duration::minutes(5)))?;
    /// store.track_financial_outcome_at(123, "overdraft_avoided", 35.0, sent_at + Duration::days(1))?;
    /// let report = store.get_financial_impact(&ImpactFilter::new())?;
    /// assert_eq!(report.attributed.engaged.count, 1);
    /// assert_eq!(report.by_channel[0].roi, Some(34.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_financial_impact(&self, filter: &ImpactFilter) -> Result<ImpactReport> {
        // The same rules as the stats filter: user ≥ 1, a valid type name, start ≤ end.
        validate_filter(&filter.message_filter())?;
        Ok(self.projection.read().impact(filter))
    }

    /// Hands every event appended so far to the OS (survives a crash of this process). Fails
    /// with [`Error::Poisoned`] once a write or sync has failed, even with nothing left to write.
    pub fn flush(&self) -> Result<()> {
        match &self.writer {
            Some(writer) => writer.log.flush(),
            None => Ok(()),
        }
    }

    /// Makes every event appended so far durable (survives a power cut). Fails with
    /// [`Error::Poisoned`] once a write or sync has failed, even with nothing left to sync.
    pub fn sync(&self) -> Result<()> {
        match &self.writer {
            Some(writer) => writer.log.sync(),
            None => Ok(()),
        }
    }

    /// Syncs everything, marks the log cleanly closed and releases the lock. Dropping the
    /// store does the same but cannot report an error. A poisoned store writes nothing more
    /// and fails with [`Error::Poisoned`]; the lock is released all the same.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(writer) = self.writer.as_mut().filter(|writer| !writer.closed) else {
            return Ok(());
        };
        writer.closed = true;
        if let Some((stop, thread)) = writer.snapshotter.take() {
            drop(stop);
            let _ = thread.join();
        }
        if let Some((stop, thread)) = writer.background.take() {
            drop(stop);
            let _ = thread.join();
        }
        if let Some(thread) = writer.sync_ahead.take() {
            writer.log.stop_sync_ahead();
            let _ = thread.join();
        }
        if let Some((ready, thread)) = writer.chunk_maker.take() {
            ready.stop();
            let _ = thread.join();
        }
        let closed = writer
            .log
            .close(crate::times::clock_now_ms())
            .and_then(|()| writer.snapshots.write_at_close().map(|_| ()));
        // Released here rather than when the file is dropped: a child forked from this process
        // shares the lock through its copy of the descriptor for as long as it lives, and the
        // store is closed now, whatever the close's outcome (the next writer's open recovers).
        let _ = writer.lock_file.unlock();
        closed
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The views as the newest valid snapshot and the log after it give them, or, without one, as
/// the whole log gives them; the report says which, and which snapshots were passed over; and
/// whether that snapshot is of an older format version than this build writes.
fn load_views(dir: &Path, mode: Mode, options: &Options) -> Result<(Projection, Replayed, bool)> {
    let window_ms = window_ms(options);
    let mut ignored = Vec::new();
    let loaded = match options.load_snapshot {
        true => snapshot::load_newest(dir, window_ms, options, &mut ignored),
        false => None,
    };
    let (projection, mut replayed, older) = match loaded {
        Some(loaded) => {
            let indexes = loaded.indexes;
            let mut projection = Projection::from_snapshot(
                loaded.facts,
                indexes.rollup,
                indexes.credits,
                loaded.message_totals,
                loaded.summary,
            );
            let mut replayed = replay::replay_from(dir, mode, &loaded.position, &mut |logged| {
                projection.fold(logged)
            })?;
            let mut covered = loaded.covered_before;
            covered.append(&mut replayed.covered);
            replayed.covered = covered;
            replayed.report.snapshot = Some(loaded.path);
            replayed.report.snapshot_events = loaded.position.last_seq;
            (projection, replayed, loaded.older_version)
        }
        None => {
            // The decoding thread makes the message table's next chunks ready while it waits.
            let ready = Arc::new(ReadyChunks::default());
            let new_projection = || {
                let mut projection = Projection::new(window_ms);
                projection.take_chunks_from(Some(Arc::clone(&ready)));
                projection
            };
            let (mut projection, replayed) = replay::replay_parallel(
                dir,
                mode,
                new_projection,
                Projection::fold,
                Projection::pre_read,
                || ready.top_up(),
            )?;
            projection.take_chunks_from(None);
            (projection, replayed, false)
        }
    };
    replayed.report.ignored_snapshots = ignored;
    Ok((projection, replayed, older))
}

fn not_a_directory(field: &'static str, path: &Path) -> Error {
    Error::invalid(field, path.display(), "is not a directory")
}

/// Refuses a store directory whose parent is missing or not a directory.
fn check_parent(dir: &Path) -> Result<()> {
    // `Path::parent` of a relative single name is "", the working directory.
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match std::fs::metadata(parent) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(not_a_directory("parent of dir", parent)),
        Err(error) if missing(error.kind()) => Err(Error::invalid(
            "parent of dir",
            parent.display(),
            "does not exist; commlog creates the store directory, not its parents",
        )),
        Err(source) => Err(Error::io(parent, source)),
    }
}

/// Whether an error of this kind says a path is missing. NotADirectory: a file on the way to
/// it.
fn missing(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// Creates the store's directory, readable by its owner only, if it is missing. Its parent
/// must exist: commlog creates one directory, never a path of them.
fn create_store_directory(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => return check_store_directory(dir, &metadata),
        Ok(_) => return Err(not_a_directory("dir", dir)),
        Err(error) if missing(error.kind()) => {}
        Err(source) => return Err(Error::io(dir, source)),
    }
    check_parent(dir)?;
    match std::fs::DirBuilder::new().mode(DIRECTORY_MODE).create(dir) {
        Ok(()) => Ok(()),
        // Another process made it first: fine if it is a directory.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(source) => Err(Error::io(dir, source)),
    }
}

fn validate_filter(filter: &StatsFilter) -> Result<()> {
    validate_selection(
        filter.user,
        filter.message_type.as_deref(),
        filter.start,
        filter.end,
    )
}

/// `Options::attribution_window` in milliseconds (validated: it fits).
fn window_ms(options: &Options) -> i64 {
    i64::try_from(options.attribution_window.as_millis())
        .expect("bounded by ATTRIBUTION_WINDOW_MAX")
}

fn validate_options(options: &Options) -> Result<()> {
    if options.attribution_window > ATTRIBUTION_WINDOW_MAX {
        return Err(Error::invalid(
            "attribution_window",
            format!("{:?}", options.attribution_window),
            "must be at most 10 years",
        ));
    }
    if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&options.segment_bytes) {
        return Err(Error::invalid(
            "segment_bytes",
            options.segment_bytes,
            "must be within 256 bytes and 1 TiB",
        ));
    }
    if options.sync == SyncPolicy::Interval(std::time::Duration::ZERO) {
        return Err(Error::invalid(
            "sync",
            "Interval(0s)",
            "an interval must be longer than zero",
        ));
    }
    Ok(())
}

/// Tries to take the lock this many times more before reporting it held.
const LOCK_ATTEMPTS: u32 = 20;
/// Pause between attempts: at most 20 ms in all, never a hang.
const LOCK_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// Refuses a store directory others could write into (writable by its group or by anyone, or
/// owned by another user): they could swap its files for links to files elsewhere. As ssh
/// refuses such a key, with the remedy in the message.
pub(crate) fn check_store_directory(dir: &Path, metadata: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if metadata.mode() & 0o022 != 0 {
        return Err(Error::invalid(
            "dir",
            dir.display(),
            format!(
                "is writable by its group or by others (mode {:o}), so they could replace the \
                 store's files: make it the owner's alone (chmod go-w)",
                metadata.mode() & 0o7777
            ),
        ));
    }
    // The owner of /proc/self is this process's effective user.
    if let Ok(process) = std::fs::metadata("/proc/self")
        && process.uid() != metadata.uid()
    {
        return Err(Error::invalid(
            "dir",
            dir.display(),
            format!(
                "is owned by user {} but this process runs as user {}: open it as its owner, or \
                 chown it",
                metadata.uid(),
                process.uid()
            ),
        ));
    }
    Ok(())
}

/// Refuses a `LOCK` that is not a regular file, naming the remedy. Nothing inside a store is
/// followed: a LOCK that is a symlink would have its target truncated and overwritten, and
/// opening a FIFO would wait for a writer forever. `O_NOFOLLOW` on the open after this check
/// refuses a symlink swapped in after it.
pub(crate) fn check_lock_file(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_file() => Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a symbolic link or special file): commlog follows nothing \
                 inside a store; remove it",
            ),
        )),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::io(path, source)),
    }
}

/// A store's `LOCK` file, held locked: released by [`DirectoryLock::unlock`] or when dropped.
/// This process's held locks are known by file, so that an open refused because this very
/// process holds the lock says so (a process id would not tell: another container's process
/// may have the same one).
pub(crate) struct DirectoryLock {
    file: File,
    /// The holder (this process's id when locked) and the file's device and inode.
    key: HeldLock,
    /// Whether [`DirectoryLock::unlock`] released it: the drop then leaves the registry alone,
    /// where another open may have registered the lock since.
    released: std::sync::atomic::AtomicBool,
}

/// A lock in [`HELD_LOCKS`]: the id of the process that took it, the file's device and inode.
type HeldLock = (u32, u64, u64);

/// The `LOCK` files this process holds locked. Each names the process that took it: a child
/// forked while a store was open inherits the set, not the lock's ownership, and holds none
/// of them.
static HELD_LOCKS: parking_lot::Mutex<std::collections::BTreeSet<HeldLock>> =
    parking_lot::Mutex::new(std::collections::BTreeSet::new());

impl DirectoryLock {
    /// Releases the lock now, whatever holds a copy of the descriptor (a forked child).
    pub(crate) fn unlock(&self) -> std::io::Result<()> {
        self.forget_held();
        self.file.unlock()
    }

    /// Takes the lock out of [`HELD_LOCKS`] before it is released, and only once: a second
    /// removal, once released, could take out the entry of the open that took it next.
    fn forget_held(&self) {
        if !self
            .released
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            HELD_LOCKS.lock().remove(&self.key);
        }
    }
}

impl Drop for DirectoryLock {
    fn drop(&mut self) {
        self.forget_held();
    }
}

/// Whether this process holds the lock on `file` (at `path`).
fn held_by_this_process(file: &File, path: &Path) -> Result<bool> {
    let (device, inode) = file_key(file, path)?;
    Ok(HELD_LOCKS
        .lock()
        .contains(&(std::process::id(), device, inode)))
}

/// The device and inode of an open file.
fn file_key(file: &File, path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = file.metadata().map_err(|source| Error::io(path, source))?;
    Ok((metadata.dev(), metadata.ino()))
}

/// Takes the store's exclusive lock, waiting up to `timeout` for another writer to release
/// it, or says who holds it.
pub(crate) fn lock_directory(dir: &Path, timeout: std::time::Duration) -> Result<DirectoryLock> {
    let path = dir.join(LOCK_FILE_NAME);
    check_lock_file(&path)?;
    let mut file = open_no_follow(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE),
        &path,
    )?;
    // A child this process is forking shares the lock's open file until it execs: such a
    // moment is waited out, briefly, rather than reported as another writer.
    // No deadline (a timeout past the end of time) waits as long as it takes.
    let started = std::time::Instant::now();
    let deadline = started.checked_add(timeout);
    let mut attempts = 0;
    let locked = loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if attempts < LOCK_ATTEMPTS => {
                attempts += 1;
                std::thread::sleep(LOCK_RETRY_INTERVAL);
            }
            Err(std::fs::TryLockError::WouldBlock)
                if deadline.is_none_or(|deadline| std::time::Instant::now() < deadline) =>
            {
                std::thread::sleep(LOCK_POLL_INTERVAL);
            }
            locked => break locked,
        }
    };
    match locked {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "holder unknown".to_string(),
                pid => format!("pid {pid}"),
            };
            let by_this_process = held_by_this_process(&file, &path)?;
            return Err(Error::Locked {
                path,
                holder,
                by_this_process,
                waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(Error::io(&path, source)),
    }
    // Known as held from the moment it is, and no longer once dropped on any error below.
    let (device, inode) = file_key(&file, &path)?;
    let key = (std::process::id(), device, inode);
    HELD_LOCKS.lock().insert(key);
    let mut lock = DirectoryLock {
        file,
        key,
        released: std::sync::atomic::AtomicBool::new(false),
    };
    let io = |source| Error::io(&path, source);
    lock.file.set_len(0).map_err(io)?;
    lock.file
        .write_all(std::process::id().to_string().as_bytes())
        .map_err(io)?;
    Ok(lock)
}

/// Starts the thread that writes a snapshot whenever it is woken (a tracking call found one
/// due). A failed snapshot loses nothing: the log has every event, and the next one is tried
/// once the log has grown as much again.
fn spawn_snapshotter(snapshots: &Arc<Snapshots>) -> Result<(mpsc::SyncSender<()>, JoinHandle<()>)> {
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    let snapshots = Arc::clone(snapshots);
    let thread = std::thread::Builder::new()
        .name("commlog-snapshot".to_string())
        .spawn(move || {
            while woken.recv().is_ok() {
                let _ = snapshots.write_if_due();
            }
        })
        .map_err(|source| Error::io(Path::new("commlog-snapshot thread"), source))?;
    Ok((wake, thread))
}

/// Starts the thread that keeps the message table's next chunk ready
/// (`ReadyChunks::keep_one_ready`); it makes none before the table has begun its chunks.
fn spawn_chunk_maker() -> Result<(Arc<ReadyChunks>, JoinHandle<()>)> {
    let ready = Arc::new(ReadyChunks::default());
    let maker = Arc::clone(&ready);
    let thread = std::thread::Builder::new()
        .name("commlog-memory".to_string())
        .spawn(move || maker.keep_one_ready())
        .map_err(|source| Error::io(Path::new("commlog-memory thread"), source))?;
    Ok((ready, thread))
}

/// The `Never` policy's thread: syncs the segment each time the log wakes it
/// ([`SharedLog::sync_ahead_wakes`]), so that the sync sealing it at rollover, on the call path,
/// finds little left to write. It holds the log weakly: the wake-ups end when the store stops
/// them or drops the log.
fn spawn_sync_ahead(log: &Arc<SharedLog>) -> Result<JoinHandle<()>> {
    let wakes = log.sync_ahead_wakes();
    let log = Arc::downgrade(log);
    std::thread::Builder::new()
        .name("commlog-sync".to_string())
        .spawn(move || {
            for () in wakes {
                let Some(log) = log.upgrade() else { return };
                // A failure poisons the log; the next call reports it.
                let _ = log.sync();
            }
        })
        .map_err(|source| Error::io(Path::new("commlog-sync thread"), source))
}

fn spawn_interval_sync(
    log: &Arc<SharedLog>,
    interval: std::time::Duration,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    let log = Arc::clone(log);
    let thread = std::thread::Builder::new()
        .name("commlog-sync".to_string())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                // A failure poisons the log; the next call reports it.
                let _ = log.sync();
            }
        })
        .map_err(|source| Error::io(Path::new("commlog-sync thread"), source))?;
    Ok((stop, thread))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::event::Event;
    use crate::limits::WRITE_BUFFER_BYTES;
    use crate::log::segment::segment_file_name;
    use crate::projection::engagement::EngagementFilter;

    /// A log may hold reports long before their message's send (appended by code that took
    /// any time): replay takes them, and the views count them as at the send.
    #[test]
    fn reports_long_before_the_send_in_the_log_replay_as_at_the_send() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        };
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        let sent_at = DateTime::parse_from_rfc3339("2025-01-01T09:00:00Z")
            .unwrap()
            .to_utc();
        let message = store
            .track_message_sent_at(1, Channel::Email, "low_balance", 0.01, sent_at)
            .unwrap();
        let early = |hours: i64| (sent_at - Duration::hours(hours)).timestamp_millis();
        // Past the checks of the tracking calls, which refuse these times.
        let append_unchecked = |event: Event<'static>| {
            let mut log = store.writer.as_ref().unwrap().log.lock();
            let logged = log.append(event, Utc::now().timestamp_millis()).unwrap();
            store.projection.write().fold(&logged);
        };
        append_unchecked(Event::MessageDelivered {
            message_id: message.id,
            at_ms: early(2),
        });
        append_unchecked(Event::MessageOpened {
            message_id: message.id,
            at_ms: early(1),
        });
        assert!(
            store
                .track_message_opened(message.id, Some(sent_at - Duration::hours(1)))
                .is_err()
        );

        let answers = |store: &Store| {
            (
                store.get_user_communication_history(1, 10).unwrap(),
                store
                    .get_user_engagement(1, &EngagementFilter::new())
                    .unwrap(),
            )
        };
        let before = answers(&store);
        store.close().unwrap();
        let store = Store::open_with(dir.path(), options).unwrap();
        assert_eq!(store.open_report().events, 3);
        let after = answers(&store);
        assert_eq!(after, before, "the same answers after replay");
        let (history, engagement) = after;
        assert_eq!(history[0].delivered_at, Some(sent_at));
        assert_eq!(history[0].opened_at, Some(sent_at));
        let responses = engagement.response_times;
        assert_eq!((responses.count, responses.under_5_minutes), (1, 1));
        assert_eq!(responses.mean_ms, Some(0.0));
    }

    /// Under `SyncPolicy::Never` the segment is synced in the background as it grows, long
    /// before its rollover: frames become durable without any call to sync, and the sync that
    /// seals the segment later finds little left to write. With `sync_ahead_bytes` 0 nothing
    /// is synced before the rollover.
    #[test]
    fn under_never_a_growing_segment_is_synced_ahead_of_its_rollover() {
        // Sends until the segment holds `bytes`, flushed: the store's log and how many.
        let fill = |sync_ahead_bytes: u64, bytes: u64| {
            let dir = tempfile::tempdir().unwrap();
            let options = Options {
                sync: SyncPolicy::Never,
                sync_ahead_bytes,
                snapshot_every: 0,
                ..Options::default()
            };
            let store = Store::open_with(dir.path(), options.clone()).unwrap();
            let segment = dir.path().join(segment_file_name(1));
            let mut sent = 0u64;
            while std::fs::metadata(&segment).unwrap().len() < bytes {
                for _ in 0..1_000 {
                    store
                        .track_message_sent(1 + sent % 100, Channel::Sms, "low_balance", 0.01)
                        .unwrap();
                    sent += 1;
                }
            }
            store.flush().unwrap();
            let log = Arc::clone(&store.writer.as_ref().unwrap().log);
            assert!(
                std::fs::metadata(&segment).unwrap().len() < options.segment_bytes,
                "the segment has not rolled over"
            );
            (dir, options, store, log, sent)
        };
        // Past the first wake-up, and one write buffer more, so that the bytes handed to the OS
        // reach it whatever the frames' sizes.
        let (dir, options, store, log, sent) =
            fill(1 << 20, (1 << 20) + 2 * WRITE_BUFFER_BYTES as u64);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while log.durable_seq() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no frame became durable within a minute of {sent} sends"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            log.durable_seq() <= sent,
            "durable up to {} of {sent} events",
            log.durable_seq()
        );
        store.close().unwrap();
        let store = Store::open_with(dir.path(), options).unwrap();
        assert_eq!(store.open_report().events, sent);

        // Without syncs ahead there is no thread to make any frame durable before the rollover.
        let (_dir, _options, store, log, _sent) =
            fill(0, (2 << 20) + 2 * WRITE_BUFFER_BYTES as u64);
        assert!(store.writer.as_ref().unwrap().sync_ahead.is_none());
        assert_eq!(log.durable_seq(), 0);
    }
}
