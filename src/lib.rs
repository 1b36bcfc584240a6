//! commlog: an embedded, append-only, event-sourced store for communication analytics.
//!
//! Every tracking call appends one checksummed event to a segmented log on disk; in-memory
//! views fold the events into message records and statistics; reopening a store replays the
//! log and rebuilds exactly the same answers.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use commlog::{Channel, Options, StatsFilter, Store, SyncPolicy};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open_with(dir.path(), Options { sync: SyncPolicy::Never, ..Options::default() })?;
//! let sent_at = Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap();
//! let m = store.track_message_sent_at(123, Channel::Email, "weekly_checkin", 0.001, sent_at)?;
//! store.track_user_action(m.id, "clicked_link", Some(sent_at + chrono::Duration::minutes(5)))?;
//! store.track_financial_outcome_at(123, "bill_paid_on_time", 25.0, sent_at + chrono::Duration::days(1))?;
//! store.close()?;
//!
//! let store = Store::open(dir.path())?; // replays the log
//! let stats = store.get_communication_stats(&StatsFilter::new().user(123))?;
//! assert_eq!((stats.delivered_count, stats.opened_count, stats.clicked_count), (1, 1, 1));
//! assert_eq!(stats.total_impact.micros(), 25_000_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
mod codec;
mod error;
mod event;
mod limits;
mod log;
mod message;
mod money;
mod options;
mod projection;
pub mod repair;
pub mod serde_time;
mod snapshot;
mod stats;
mod store;
mod times;
mod track;
pub mod workload;

pub use error::{Error, Result, quote_value};
pub use event::{
    BudgetScope, Channel, Event, LoggedEvent, MessageId, MessageRef, Month, UserId,
    validate_external_id, validate_name,
};
pub use limits::{SNAPSHOT_AT_CLOSE_MIN, SYNC_AHEAD_BYTES_DEFAULT, USER_ID_MAX};
pub use log::segment::{DIRECTORY_MODE, FILE_MODE, segment_file_sequence};
pub use log::summary::LogSummary;
pub use log::{OpenReport, SyncPolicy};
pub use message::{FinancialOutcome, Message, Status};
pub use money::Money;
pub use options::Options;
pub use projection::attribution::AttributionLevel;
pub use projection::channel::{
    ChannelLine, ChannelPeriod, ChannelReport, ChannelWinner, EffectivenessFilter, Period,
};
pub use projection::cost::{
    BudgetStatus, CostFilter, CostReport, CostSummary, DailySpend, MonthlySpend,
};
pub use projection::engagement::{
    ChannelEngagement, EngagementFilter, MessageTypeEngagement, ResponseTimes, Trend, TrendWindow,
    UserEngagement,
};
pub use projection::impact::{
    AttributedImpact, ChannelImpact, ImpactFilter, ImpactReport, ImpactTotal,
};
pub use snapshot::{IgnoredSnapshot, SNAPSHOT_DIRECTORY, is_snapshot_file_name};
pub use stats::{CommunicationStats, StatsFilter};
pub use store::{LOCK_FILE_NAME, Store};
pub use times::{DayEdge, parse_time_at, parse_time_ms, validate_report_time, validate_time};
pub use track::{Call, Tracked};

/// The README's Rust examples, compiled (and run unless marked `no_run`) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
