//! `impact`: financial outcomes credited to the messages that led to them, and ROI per channel.

use clap::Args;
use commlog::{AttributedImpact, ImpactFilter, ImpactReport, ImpactTotal};

use crate::cli::output::{Table, count, print_json, roi, write_stdout};
use crate::cli::{CliError, Global, StatsArgs};

#[derive(Debug, Args)]
pub(crate) struct ImpactArgs {
    #[command(flatten)]
    filter: StatsArgs,
}

pub(crate) fn run(global: &Global, args: &ImpactArgs) -> Result<(), CliError> {
    let stats_filter = args.filter.filter()?;
    let filter = ImpactFilter {
        user: stats_filter.user,
        message_type: stats_filter.message_type,
        channel: stats_filter.channel,
        start: stats_filter.start,
        end: stats_filter.end,
    };
    let store = match (filter.user, filter.start, filter.end) {
        (None, None, None) => global.open_read_only_for_credits()?,
        _ => global.open_read_only()?,
    };
    let report = store.get_financial_impact(&filter)?;
    if global.json {
        return print_json(&report);
    }
    write_stdout(report_tables(&report).as_bytes())
}

/// The report as aligned tables: a summary, then outcomes by name, channel and message type.
fn report_tables(report: &ImpactReport) -> String {
    let mut summary = Table::new(&["impact", "outcomes", "amount"]).right_align(&[1, 2]);
    let total_row = |name: &str, total: &ImpactTotal| {
        vec![
            name.to_string(),
            count(total.count),
            total.amount.to_string(),
        ]
    };
    summary.row(total_row("all", &report.outcomes));
    summary.row(vec![
        "attributed".to_string(),
        count(report.attributed.count),
        report.attributed.amount.to_string(),
    ]);
    summary.row(total_row("engaged", &report.attributed.engaged));
    summary.row(total_row("delivered", &report.attributed.delivered));
    summary.row(total_row("unattributed", &report.unattributed));
    let mut text = summary.render();

    let mut gap = Table::new(&["last communication", "value"]).right_align(&[1]);
    gap.row(vec![
        "outcomes_after_communication".to_string(),
        count(report.outcomes_after_communication),
    ]);
    gap.row(vec![
        "mean_days_since_last_communication".to_string(),
        report
            .mean_days_since_last_communication
            .map_or_else(|| "-".to_string(), |days| format!("{days:.2}")),
    ]);
    text.push('\n');
    text.push_str(&gap.render());

    let mut by_outcome = Table::new(&["outcome", "count", "amount"]).right_align(&[1, 2]);
    for (name, total) in &report.by_outcome {
        by_outcome.row(total_row(name, total));
    }
    text.push('\n');
    text.push_str(&by_outcome.render());

    let mut by_channel = attributed_table("channel", &["cost", "roi"]);
    for channel in &report.by_channel {
        let mut row = attributed_cells(&channel.channel.to_string(), &channel.attributed);
        row.push(channel.cost.to_string());
        row.push(roi(channel.roi));
        by_channel.row(row);
    }
    text.push('\n');
    text.push_str(&by_channel.render());

    let mut by_type = attributed_table("message_type", &[]);
    for (name, attributed) in &report.by_message_type {
        by_type.row(attributed_cells(name, attributed));
    }
    text.push('\n');
    text.push_str(&by_type.render());
    text
}

/// A table of attributed impact keyed by `key`, with `extra` columns after it.
fn attributed_table(key: &'static str, extra: &[&'static str]) -> Table {
    let mut headers = vec![
        key,
        "attributed",
        "amount",
        "engaged",
        "engaged_amount",
        "delivered",
        "delivered_amount",
    ];
    headers.extend_from_slice(extra);
    let numbers: Vec<usize> = (1..headers.len()).collect();
    Table::new(&headers).right_align(&numbers)
}

fn attributed_cells(key: &str, attributed: &AttributedImpact) -> Vec<String> {
    vec![
        key.to_string(),
        count(attributed.count),
        attributed.amount.to_string(),
        count(attributed.engaged.count),
        attributed.engaged.amount.to_string(),
        count(attributed.delivered.count),
        attributed.delivered.amount.to_string(),
    ]
}
