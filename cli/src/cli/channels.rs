//! `channels`: channel effectiveness per channel and message type, the winner of each type, and
//! an optional time series.

use clap::{Args, ValueEnum};
use commlog::{
    ChannelLine, ChannelReport, ChannelWinner, EffectivenessFilter, Money, Period, UserId,
};

use crate::cli::output::{Table, count, print_json, roi, write_stdout};
use crate::cli::{CliError, DayEdge, Global, parse_time};

#[derive(Debug, Args)]
pub(crate) struct ChannelsArgs {
    /// Only this user's messages and outcomes.
    #[arg(long, value_parser = crate::cli::input::user_id, allow_negative_numbers = true)]
    user: Option<u64>,
    /// Only this message type (and the outcomes credited to it).
    #[arg(long = "type")]
    message_type: Option<String>,
    /// From this time (RFC 3339 or YYYY-MM-DD), inclusive.
    #[arg(long)]
    start: Option<String>,
    /// Up to this time, inclusive (a bare date means its last millisecond).
    #[arg(long)]
    end: Option<String>,
    /// Also break the report down by day, ISO week (from Monday) or month, UTC.
    #[arg(long, value_enum)]
    period: Option<PeriodArg>,
}

/// The `--period` values (the library never sees clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PeriodArg {
    Day,
    Week,
    Month,
}

impl ChannelsArgs {
    /// The common filters of `stats` but `--channel`: the report compares every channel.
    fn filter(&self) -> Result<EffectivenessFilter, CliError> {
        let time = |flag: &'static str, text: &Option<String>, edge: DayEdge| {
            text.as_deref()
                .map(|text| parse_time(flag, text, edge))
                .transpose()
        };
        Ok(EffectivenessFilter {
            user: self.user.map(UserId),
            message_type: self.message_type.clone(),
            start: time("--start", &self.start, DayEdge::Start)?,
            end: time("--end", &self.end, DayEdge::End)?,
            period: self.period.map(|period| match period {
                PeriodArg::Day => Period::Day,
                PeriodArg::Week => Period::Week,
                PeriodArg::Month => Period::Month,
            }),
        })
    }
}

pub(crate) fn run(global: &Global, args: &ChannelsArgs) -> Result<(), CliError> {
    let filter = args.filter()?;
    let over_all_time = filter.start.is_none() && filter.end.is_none() && filter.period.is_none();
    let store = match (filter.user, over_all_time) {
        (None, true) => global.open_read_only_for_credits()?,
        _ => global.open_read_only()?,
    };
    let report = store.get_channel_effectiveness(&filter)?;
    if global.json {
        return print_json(&report);
    }
    write_stdout(report_text(&report).as_bytes())
}

const LINE_HEADERS: [&str; 20] = [
    "channel",
    "type",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "responded",
    "converted",
    "delivery",
    "open",
    "click",
    "response",
    "conversion",
    "cost",
    "per_message",
    "per_response",
    "per_conversion",
    "impact",
    "roi",
    "score",
];

/// The lines, the channel totals and the winners; then, with a period, one table of lines and
/// totals per period and one of winners per period.
fn report_text(report: &ChannelReport) -> String {
    let mut text = String::new();
    let mut lines = line_table(&[]);
    for line in report.lines.iter().chain(&report.channels) {
        lines.row(line_cells(line));
    }
    text.push_str(&lines.render());
    text.push('\n');
    let mut winners = winner_table(&[]);
    for winner in &report.winners {
        winners.row(winner_cells(winner));
    }
    text.push_str(&winners.render());
    if report.periods.is_empty() {
        return text;
    }
    let mut lines = line_table(&["period"]);
    let mut winners = winner_table(&["period"]);
    for period in &report.periods {
        let start = period.start.to_string();
        for line in period.lines.iter().chain(&period.channels) {
            lines.row([vec![start.clone()], line_cells(line)].concat());
        }
        for winner in &period.winners {
            winners.row([vec![start.clone()], winner_cells(winner)].concat());
        }
    }
    text.push('\n');
    text.push_str(&lines.render());
    text.push('\n');
    text.push_str(&winners.render());
    text
}

/// A table of lines after the `leading` columns; numbers are right-aligned.
fn line_table(leading: &[&'static str]) -> Table {
    let headers = [leading, &LINE_HEADERS[..]].concat();
    let numbers: Vec<usize> = (leading.len() + 2..headers.len()).collect();
    Table::new(&headers).right_align(&numbers)
}

fn line_cells(line: &ChannelLine) -> Vec<String> {
    let rate = |value: f64| format!("{value:.2}%");
    let money = |value: Option<Money>| value.map_or_else(|| "-".to_string(), |m| m.to_string());
    vec![
        line.channel.to_string(),
        // A channel's total over every type.
        line.message_type
            .clone()
            .unwrap_or_else(|| "all".to_string()),
        count(line.sent),
        count(line.delivered),
        count(line.opened),
        count(line.clicked),
        count(line.responded),
        count(line.converted),
        rate(line.delivery_rate),
        rate(line.open_rate),
        rate(line.click_rate),
        rate(line.response_rate),
        rate(line.conversion_rate),
        line.total_cost.to_string(),
        money(line.cost_per_message),
        money(line.cost_per_response),
        money(line.cost_per_conversion),
        line.attributed_impact.to_string(),
        roi(line.roi),
        format!("{:.2}", line.performance_score),
    ]
}

fn winner_table(leading: &[&'static str]) -> Table {
    let headers = [leading, &["type", "winner", "score", "per_response"][..]].concat();
    Table::new(&headers).right_align(&[leading.len() + 2, leading.len() + 3])
}

fn winner_cells(winner: &ChannelWinner) -> Vec<String> {
    vec![
        winner.message_type.clone(),
        winner.channel.to_string(),
        format!("{:.2}", winner.performance_score),
        winner
            .cost_per_response
            .map_or_else(|| "-".to_string(), |m| m.to_string()),
    ]
}
