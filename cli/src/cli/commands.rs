//! `track`, `history`, `stats` and `info`: every library call from the shell.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use commlog::{Money, OpenReport};
use serde::Serialize;

use crate::cli::output::{self, Table, count, print_json, write_stdout};
use crate::cli::{
    CliError, DayEdge, Global, StatsArgs, input, parse_channel, parse_time, segment_bytes_on_disk,
};

#[derive(Debug, Subcommand)]
pub(crate) enum TrackCommand {
    /// A message was sent; prints it with its new id.
    #[command(
        after_help = "Example:\n  commlog track sent --user 123 --channel sms --type low_balance --cost 0.05"
    )]
    Sent {
        /// Recipient user id (≥ 1).
        #[arg(long, value_parser = input::user_id, allow_negative_numbers = true)]
        user: u64,
        /// sms, email, push or in_app (any case).
        #[arg(long, value_parser = input::CHANNEL_VALUES, ignore_case = true)]
        channel: String,
        /// Message type, e.g. low_balance.
        #[arg(long = "type")]
        message_type: String,
        /// Cost in dollars.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        cost: f64,
        /// When (RFC 3339, YYYY-MM-DD, or YYYY-MM-DD HH:MM:SS as UTC); default now.
        #[arg(long)]
        at: Option<String>,
        /// The provider's message id or an idempotency key (≤ 128 printable ASCII bytes): the
        /// same id again prints the message it created and appends nothing.
        #[arg(long, value_name = "ID")]
        external_id: Option<String>,
    },
    /// The provider delivered a message.
    #[command(
        after_help = "Example:\n  commlog track delivered --message 1 --at 2025-01-01T09:00:02Z"
    )]
    Delivered(MessageTime),
    /// The user opened a message.
    #[command(after_help = "Example:\n  commlog track opened --message 1")]
    Opened(MessageTime),
    /// The user acted on a message (an action containing "click" is a click).
    #[command(after_help = "Example:\n  commlog track action --message 1 --action clicked_link")]
    Action {
        #[command(flatten)]
        message: MessageTime,
        /// What the user did.
        #[arg(long)]
        action: String,
    },
    /// The provider reported a failure or bounce.
    #[command(after_help = "Example:\n  commlog track failed --message 1 --reason undelivered")]
    Failed {
        #[command(flatten)]
        message: MessageTime,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// A financial outcome for a user.
    #[command(
        after_help = "Example:\n  commlog track outcome --user 123 --outcome bill_paid_on_time --amount 25"
    )]
    Outcome {
        /// The user id (≥ 1).
        #[arg(long, value_parser = input::user_id, allow_negative_numbers = true)]
        user: u64,
        /// What happened, e.g. bill_paid_on_time.
        #[arg(long)]
        outcome: String,
        /// Value in dollars (negative: a loss).
        #[arg(long, allow_negative_numbers = true)]
        amount: f64,
        /// When (RFC 3339, YYYY-MM-DD, or YYYY-MM-DD HH:MM:SS as UTC); default now.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct MessageTime {
    /// The message id (≥ 1).
    #[arg(long, value_parser = input::at_least_one, allow_negative_numbers = true)]
    message: u64,
    /// When (RFC 3339, YYYY-MM-DD, or YYYY-MM-DD HH:MM:SS as UTC); default now.
    #[arg(long)]
    at: Option<String>,
}

impl MessageTime {
    fn at(&self) -> Result<Option<DateTime<Utc>>, CliError> {
        self.at
            .as_deref()
            .map(|text| parse_time("--at", text, DayEdge::Start))
            .transpose()
    }
}

/// Checks a follow-up's own input (its time, the name it gives, if any) before the store is
/// opened; and, since such an event needs a tracked message, that the store's directory exists
/// and holds a segment: an empty store has no message, and the open would create one.
fn check_follow_up(
    global: &Global,
    message: &MessageTime,
    name: Option<(&'static str, &str)>,
) -> Result<(), CliError> {
    if let Some((field, name)) = name {
        commlog::validate_name(field, name)?;
    }
    if let Some(time) = message.at()? {
        commlog::validate_time("at", time)?;
    }
    global.check_store_exists()?;
    let segments = segment_bytes_on_disk(&global.dir).map_err(|source| {
        CliError::Store(commlog::Error::Io {
            path: global.dir.clone(),
            source,
        })
    })?;
    match segments {
        0 => Err(CliError::Store(commlog::Error::UnknownMessage {
            id: commlog::MessageId(message.message),
        })),
        _ => Ok(()),
    }
}

/// Appends one event with SyncPolicy::Always: when the command returns, it is durable.
pub(crate) fn track(global: &Global, command: &TrackCommand) -> Result<(), CliError> {
    global.check_dir_named("track")?;
    let at = |text: &Option<String>| {
        text.as_deref()
            .map(|text| parse_time("--at", text, DayEdge::Start))
            .transpose()
    };
    // Check everything that can be checked before the store is opened: bad input touches
    // nothing, and never creates a store.
    let channel = match command {
        TrackCommand::Sent {
            channel,
            message_type,
            cost,
            at: time,
            external_id,
            ..
        } => {
            commlog::validate_name("message_type", message_type)?;
            if let Some(external_id) = external_id {
                commlog::validate_external_id(external_id)?;
            }
            Money::cost_from_dollars(*cost)?;
            if let Some(time) = at(time)? {
                commlog::validate_time("sent_at", time)?;
            }
            Some(parse_channel(channel)?)
        }
        TrackCommand::Outcome {
            outcome,
            amount,
            at: time,
            ..
        } => {
            commlog::validate_name("outcome", outcome)?;
            Money::from_dollars_for("amount", *amount)?;
            if let Some(time) = at(time)? {
                commlog::validate_time("at", time)?;
            }
            None
        }
        TrackCommand::Delivered(message) | TrackCommand::Opened(message) => {
            check_follow_up(global, message, None)?;
            None
        }
        TrackCommand::Action { message, action } => {
            check_follow_up(global, message, Some(("action", action)))?;
            None
        }
        TrackCommand::Failed { message, reason } => {
            check_follow_up(global, message, Some(("reason", reason)))?;
            None
        }
    };
    let store = global.open_for_writing("track")?;
    let message = match command {
        TrackCommand::Sent {
            user,
            message_type,
            cost,
            at: time,
            external_id,
            ..
        } => {
            let channel = channel.expect("parsed above");
            store.track_message_sent_with(
                *user,
                channel,
                message_type,
                *cost,
                at(time)?,
                external_id.as_deref(),
            )?
        }
        TrackCommand::Delivered(message) => {
            store.track_message_delivered(message.message, message.at()?)?
        }
        TrackCommand::Opened(message) => {
            store.track_message_opened(message.message, message.at()?)?
        }
        TrackCommand::Action { message, action } => {
            store.track_user_action(message.message, action, message.at()?)?
        }
        TrackCommand::Failed { message, reason } => {
            store.track_message_failed(message.message, reason, message.at()?)?
        }
        TrackCommand::Outcome {
            user,
            outcome,
            amount,
            at: time,
        } => {
            let time = at(time)?.unwrap_or_else(Utc::now);
            let outcome = store.track_financial_outcome_at(*user, outcome, *amount, time)?;
            global.close_after_durable(store);
            if global.json {
                return print_json(&outcome);
            }
            let mut table = Table::new(&["user", "outcome", "amount", "at"]).right_align(&[0, 2]);
            table.row(vec![
                outcome.user_id.to_string(),
                outcome.outcome,
                outcome.amount.to_string(),
                output::time(outcome.at),
            ]);
            return write_stdout(table.render().as_bytes());
        }
    };
    global.close_after_durable(store);
    if global.json {
        return print_json(&message);
    }
    write_stdout(output::messages_table(std::slice::from_ref(&message)).as_bytes())
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The user id (≥ 1).
    #[arg(long, value_parser = input::user_id, allow_negative_numbers = true)]
    user: u64,
    /// At most this many messages (≥ 1).
    #[arg(long, default_value_t = 100, value_parser = input::at_least_one, allow_negative_numbers = true)]
    limit: u64,
}

pub(crate) fn history(global: &Global, args: &HistoryArgs) -> Result<(), CliError> {
    let store = global.open_read_only_without_indexes()?;
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let messages = store.get_user_communication_history(args.user, limit)?;
    if global.json {
        return print_json(&messages);
    }
    write_stdout(output::messages_table(&messages).as_bytes())
}

pub(crate) fn stats(global: &Global, args: &StatsArgs) -> Result<(), CliError> {
    let filter = args.filter()?;
    // One user's stats read the user's lists; over every user, stats over all time read the
    // totals over all time, and a time range the indexes (docs/SEMANTICS.md, "Stats").
    let store = match (filter.user, filter.start.or(filter.end)) {
        (Some(_), _) => global.open_read_only_without_indexes()?,
        (None, None) => global.open_read_only_for_totals()?,
        (None, Some(_)) => global.open_read_only()?,
    };
    let stats = store.get_communication_stats(&filter)?;
    if global.json {
        return print_json(&stats);
    }
    write_stdout(output::stats_table(&stats).as_bytes())
}

/// What `info` reports.
#[derive(Debug, Serialize)]
struct Info {
    dir: String,
    segments: u64,
    events: u64,
    messages: u64,
    outcomes: u64,
    bytes_on_disk: u64,
    #[serde(with = "commlog::serde_time::optional")]
    first_event_at: Option<DateTime<Utc>>,
    #[serde(with = "commlog::serde_time::optional")]
    last_event_at: Option<DateTime<Utc>>,
    #[serde(with = "commlog::serde_time::optional")]
    first_appended_at: Option<DateTime<Utc>>,
    #[serde(with = "commlog::serde_time::optional")]
    last_appended_at: Option<DateTime<Utc>>,
    open_report: OpenReport,
}

pub(crate) fn info(global: &Global) -> Result<(), CliError> {
    let store = global.open_read_only_without_indexes()?;
    let summary = store.log_summary()?;
    let report = store.open_report();
    let bytes_on_disk =
        segment_bytes_on_disk(&global.dir).map_err(|source| commlog::Error::Io {
            path: global.dir.clone(),
            source,
        })?;
    let time = |ms: i64| DateTime::from_timestamp_millis(ms);
    let info = Info {
        dir: global.dir.display().to_string(),
        segments: report.segments,
        events: summary.events,
        messages: summary.messages,
        outcomes: summary.outcomes,
        bytes_on_disk,
        first_event_at: summary.event_ms.and_then(|(low, _)| time(low)),
        last_event_at: summary.event_ms.and_then(|(_, high)| time(high)),
        first_appended_at: summary.appended_ms.and_then(|(low, _)| time(low)),
        last_appended_at: summary.appended_ms.and_then(|(_, high)| time(high)),
        open_report: report,
    };
    if global.json {
        return print_json(&info);
    }
    let optional =
        |value: Option<DateTime<Utc>>| value.map_or_else(|| "-".to_string(), output::time);
    let mut table = Table::new(&["store", "value"]).right_align(&[1]);
    for (name, value) in [
        ("dir", info.dir.clone()),
        ("segments", count(info.segments)),
        ("events", count(info.events)),
        ("messages", count(info.messages)),
        ("outcomes", count(info.outcomes)),
        ("bytes_on_disk", count(info.bytes_on_disk)),
        ("first_event_at", optional(info.first_event_at)),
        ("last_event_at", optional(info.last_event_at)),
        ("first_appended_at", optional(info.first_appended_at)),
        ("last_appended_at", optional(info.last_appended_at)),
        (
            "torn_bytes_ignored",
            count(info.open_report.truncated_bytes),
        ),
    ] {
        table.row(vec![name.to_string(), value]);
    }
    write_stdout(table.render().as_bytes())
}
