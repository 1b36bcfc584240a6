//! `engagement`: one user's engagement report (received, engaged, ignored, when and how fast
//! they engage, the trend, the preferred channel).

use clap::Args;
use commlog::{EngagementFilter, UserEngagement};

use crate::cli::output::{Table, count, print_json, time, write_stdout};
use crate::cli::{CliError, DayEdge, Global, parse_channel, parse_time};

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

#[derive(Debug, Clone, Args)]
pub(crate) struct EngagementArgs {
    /// The user id (≥ 1).
    #[arg(long, value_parser = crate::cli::input::user_id, allow_negative_numbers = true)]
    user: u64,
    /// Only this message type (the trend too).
    #[arg(long = "type")]
    message_type: Option<String>,
    /// Only this channel: sms, email, push, in_app, any case (the trend too).
    #[arg(long, value_parser = crate::cli::input::CHANNEL_VALUES, ignore_case = true)]
    channel: Option<String>,
    /// Only messages sent from this time (RFC 3339 or YYYY-MM-DD), inclusive; the trend ignores
    /// it.
    #[arg(long)]
    start: Option<String>,
    /// Only messages sent up to this time, inclusive (a bare date means its last millisecond);
    /// "now" is never later.
    #[arg(long)]
    end: Option<String>,
}

impl EngagementArgs {
    fn filter(&self) -> Result<EngagementFilter, CliError> {
        let mut filter = EngagementFilter::new();
        if let Some(message_type) = &self.message_type {
            filter = filter.message_type(message_type.clone());
        }
        if let Some(channel) = &self.channel {
            filter = filter.channel(parse_channel(channel)?);
        }
        if let Some(start) = &self.start {
            filter = filter.start(parse_time("--start", start, DayEdge::Start)?);
        }
        if let Some(end) = &self.end {
            filter = filter.end(parse_time("--end", end, DayEdge::End)?);
        }
        Ok(filter)
    }
}

pub(crate) fn run(global: &Global, args: &EngagementArgs) -> Result<(), CliError> {
    let filter = args.filter()?;
    let store = global.open_read_only_without_indexes()?;
    let engagement = store.get_user_engagement(args.user, &filter)?;
    if global.json {
        return print_json(&engagement);
    }
    write_stdout(render(&engagement).as_bytes())
}

/// The report as aligned tables: summary, channels, message types, response times, then the
/// hour, weekday and month histograms.
fn render(engagement: &UserEngagement) -> String {
    let rate = |value: f64| format!("{value:.2}%");
    let mut summary = Table::new(&["engagement", "value"]).right_align(&[1]);
    let trend_side = |window: &commlog::TrendWindow| {
        format!(
            "{} of {} ({})",
            count(window.engaged),
            count(window.received),
            rate(window.engagement_score)
        )
    };
    let trend = serde_json::to_value(engagement.trend).expect("a unit variant serializes");
    for (name, value) in [
        ("user", engagement.user_id.to_string()),
        ("now", engagement.now.map_or_else(|| "-".to_string(), time)),
        ("sent", count(engagement.sent)),
        ("received", count(engagement.received)),
        ("engaged", count(engagement.engaged)),
        ("ignored", count(engagement.ignored)),
        ("engagement_score", rate(engagement.engagement_score)),
        ("trend", trend.as_str().unwrap_or_default().to_string()),
        ("trend_recent_30_days", trend_side(&engagement.trend_recent)),
        (
            "trend_previous_30_days",
            trend_side(&engagement.trend_previous),
        ),
        (
            "preferred_channel",
            engagement
                .preferred_channel
                .map_or_else(|| "-".to_string(), |channel| channel.to_string()),
        ),
    ] {
        summary.row(vec![name.to_string(), value]);
    }
    let mut text = summary.render();

    let mut channels = Table::new(&[
        "channel",
        "sent",
        "received",
        "engaged",
        "ignored",
        "engagement_rate",
        "total_cost",
        "average_cost",
    ])
    .right_align(&[1, 2, 3, 4, 5, 6, 7]);
    for channel in &engagement.by_channel {
        channels.row(vec![
            channel.channel.to_string(),
            count(channel.sent),
            count(channel.received),
            count(channel.engaged),
            count(channel.ignored),
            rate(channel.engagement_rate),
            channel.total_cost.to_string(),
            channel
                .average_cost
                .map_or_else(|| "-".to_string(), |cost| cost.to_string()),
        ]);
    }
    text.push('\n');
    text.push_str(&channels.render());

    let mut types = Table::new(&[
        "message_type",
        "sent",
        "received",
        "engaged",
        "ignored",
        "engagement_rate",
    ])
    .right_align(&[1, 2, 3, 4, 5]);
    for message_type in &engagement.by_message_type {
        types.row(vec![
            message_type.message_type.clone(),
            count(message_type.sent),
            count(message_type.received),
            count(message_type.engaged),
            count(message_type.ignored),
            rate(message_type.engagement_rate),
        ]);
    }
    text.push('\n');
    text.push_str(&types.render());

    let times = &engagement.response_times;
    let mut responses = Table::new(&["response_time", "messages"]).right_align(&[1]);
    for (name, value) in [
        ("0-5 min", count(times.under_5_minutes)),
        ("5-15 min", count(times.from_5_to_15_minutes)),
        ("15-60 min", count(times.from_15_to_60_minutes)),
        ("1-24 h", count(times.from_1_to_24_hours)),
        ("24 h or more", count(times.at_least_24_hours)),
        (
            "mean",
            times.mean_ms.map_or_else(|| "-".to_string(), duration),
        ),
        (
            "median",
            times.median_ms.map_or_else(|| "-".to_string(), duration),
        ),
    ] {
        responses.row(vec![name.to_string(), value]);
    }
    text.push('\n');
    text.push_str(&responses.render());

    let hours: Vec<String> = (0..24).map(|hour| format!("{hour:02}")).collect();
    for (title, labels, counts) in [
        (
            "hour_utc",
            hours.iter().map(String::as_str).collect::<Vec<_>>(),
            &engagement.engagement_by_hour[..],
        ),
        (
            "weekday_utc",
            WEEKDAYS.to_vec(),
            &engagement.engagement_by_weekday[..],
        ),
        (
            "month_utc",
            MONTHS.to_vec(),
            &engagement.engagement_by_month[..],
        ),
    ] {
        let mut table = Table::new(&[title, "engaged"]).right_align(&[1]);
        for (label, value) in labels.iter().zip(counts) {
            table.row(vec![label.to_string(), count(*value)]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}

/// Milliseconds in the largest unit that keeps the number readable: "850 ms", "4.2 min".
fn duration(ms: f64) -> String {
    const UNITS: [(f64, &str); 4] = [
        (86_400_000.0, "d"),
        (3_600_000.0, "h"),
        (60_000.0, "min"),
        (1_000.0, "s"),
    ];
    for (unit_ms, unit) in UNITS {
        // Two units' worth before switching up, so 90 s reads "90.0 s", not "1.5 min".
        if ms >= 2.0 * unit_ms {
            return format!("{:.1} {unit}", ms / unit_ms);
        }
    }
    format!("{ms:.1} ms")
}
