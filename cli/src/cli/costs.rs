//! `costs` (spend per channel, type, day and month, and each budget against its month) and
//! `budget set` (plan a month's spend).

use clap::{Args, Subcommand};
use commlog::{BudgetScope, CostFilter, CostReport, CostSummary, Money, Month};
use serde::Serialize;

use crate::cli::output::{self, Table, count, print_json, write_stdout};
use crate::cli::{CliError, Global, StatsArgs};

#[derive(Debug, Args)]
pub(crate) struct CostsArgs {
    /// Only messages sent in this month (YYYY-MM, UTC), and only its budgets.
    #[arg(long)]
    month: Option<String>,
    #[command(flatten)]
    filter: StatsArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BudgetCommand {
    /// Set a month's budget for one channel or all of them (a later one replaces it).
    #[command(
        after_help = "Example:\n  commlog budget set --scope sms --month 2025-01 --amount 1000 --alert-percent 80"
    )]
    Set(BudgetSetArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BudgetSetArgs {
    /// What spend it covers: sms, email, push, in_app or all (any case).
    #[arg(long, value_parser = crate::cli::input::SCOPE_VALUES, ignore_case = true)]
    scope: String,
    /// The month it covers, YYYY-MM (UTC).
    #[arg(long)]
    month: String,
    /// The budget in dollars (more than 0).
    #[arg(long, allow_negative_numbers = true)]
    amount: f64,
    /// Alert when spend reaches this percentage of the budget, 1 to 100.
    #[arg(long, default_value_t = 90, allow_negative_numbers = true)]
    alert_percent: i64,
}

pub(crate) fn run(global: &Global, args: &CostsArgs) -> Result<(), CliError> {
    let stats_filter = args.filter.filter()?;
    let mut filter = CostFilter {
        user: stats_filter.user,
        message_type: stats_filter.message_type,
        channel: stats_filter.channel,
        start: stats_filter.start,
        end: stats_filter.end,
        month: None,
    };
    if let Some(month) = &args.month {
        filter = filter.month(month.parse::<Month>()?);
    }
    // Over every user, all time and every type: from the totals, which hold the spend by day.
    let over_all_time = filter.start.is_none() && filter.end.is_none() && filter.month.is_none();
    let store = match (&filter.user, &filter.message_type, over_all_time) {
        (None, None, true) => global.open_read_only_for_totals()?,
        _ => global.open_read_only()?,
    };
    let report = store.get_cost_report(&filter)?;
    if global.json {
        return print_json(&report);
    }
    write_stdout(report_text(&report).as_bytes())
}

/// What `budget set` prints.
#[derive(Debug, Serialize)]
struct BudgetSet {
    scope: BudgetScope,
    month: Month,
    #[serde(rename = "amount_micros")]
    amount: Money,
    alert_percent: u8,
}

/// Appends one BudgetSet with SyncPolicy::Always: when the command returns, it is durable.
pub(crate) fn budget(global: &Global, command: &BudgetCommand) -> Result<(), CliError> {
    let BudgetCommand::Set(args) = command;
    global.check_dir_named("budget set")?;
    // Check everything before the store is opened: bad input touches nothing, and never
    // creates a store.
    // Any case, as the help says.
    let scope: BudgetScope = args.scope.to_ascii_lowercase().parse()?;
    let month: Month = args.month.parse()?;
    let invalid = |field: &'static str, value: String, rule: &'static str| {
        CliError::Store(commlog::Error::InvalidInput {
            field,
            value,
            rule: rule.into(),
        })
    };
    if args.amount.is_nan() || args.amount <= 0.0 {
        return Err(invalid(
            "amount",
            args.amount.to_string(),
            "a budget must be more than zero",
        ));
    }
    let amount = Money::from_dollars(args.amount).map_err(|_| {
        invalid(
            "amount",
            args.amount.to_string(),
            "must be a finite number within 9e12 dollars",
        )
    })?;
    if amount.micros() <= 0 {
        return Err(invalid(
            "amount",
            args.amount.to_string(),
            "a budget must be at least one micro-dollar",
        ));
    }
    let alert_percent = u8::try_from(args.alert_percent)
        .ok()
        .filter(|percent| (1..=100).contains(percent))
        .ok_or_else(|| {
            invalid(
                "alert_percent",
                args.alert_percent.to_string(),
                "must be 1 to 100",
            )
        })?;
    let store = global.open_for_writing("budget set")?;
    store.set_budget(scope, &args.month, args.amount, Some(alert_percent))?;
    global.close_after_durable(store);
    let set = BudgetSet {
        scope,
        month,
        amount,
        alert_percent,
    };
    if global.json {
        return print_json(&set);
    }
    let mut table = Table::new(&["scope", "month", "amount", "alert_percent"]).right_align(&[2, 3]);
    table.row(vec![
        set.scope.to_string(),
        set.month.to_string(),
        set.amount.to_string(),
        format!("{}%", set.alert_percent),
    ]);
    write_stdout(table.render().as_bytes())
}

const SUMMARY_HEADERS: [&str; 10] = [
    "",
    "messages",
    "delivered",
    "responded",
    "converted",
    "spent",
    "per_message",
    "per_delivered",
    "per_response",
    "per_conversion",
];

fn summary_row(name: String, summary: &CostSummary) -> Vec<String> {
    let optional = |value: Option<Money>| value.map_or_else(|| "-".to_string(), |m| m.to_string());
    vec![
        name,
        count(summary.messages),
        count(summary.delivered),
        count(summary.responded),
        count(summary.converted),
        summary.spent.to_string(),
        optional(summary.cost_per_message),
        optional(summary.cost_per_delivered),
        optional(summary.cost_per_response),
        optional(summary.cost_per_conversion),
    ]
}

/// Per channel (with the total), per message type, per month, per day, then the budgets.
fn report_text(report: &CostReport) -> String {
    let now = report.now.map_or_else(|| "-".to_string(), output::time);
    let mut text = format!("as of {now}\n\n");
    let numbers: Vec<usize> = (1..SUMMARY_HEADERS.len()).collect();

    let mut headers = SUMMARY_HEADERS;
    headers[0] = "channel";
    let mut table = Table::new(&headers).right_align(&numbers);
    for (channel, summary) in &report.by_channel {
        table.row(summary_row(channel.to_string(), summary));
    }
    table.row(summary_row("total".to_string(), &report.total));
    text.push_str(&table.render());

    headers[0] = "type";
    let mut table = Table::new(&headers).right_align(&numbers);
    for (message_type, summary) in &report.by_message_type {
        table.row(summary_row(message_type.clone(), summary));
    }
    text.push('\n');
    text.push_str(&table.render());

    let mut table = Table::new(&["month", "channel", "messages", "spent"]).right_align(&[2, 3]);
    for line in &report.monthly {
        table.row(vec![
            line.month_start.format("%Y-%m").to_string(),
            line.channel.to_string(),
            count(line.messages),
            line.spent.to_string(),
        ]);
    }
    text.push('\n');
    text.push_str(&table.render());

    let mut table = Table::new(&["day", "channel", "messages", "spent"]).right_align(&[2, 3]);
    for line in &report.daily {
        table.row(vec![
            line.day.to_string(),
            line.channel.to_string(),
            count(line.messages),
            line.spent.to_string(),
        ]);
    }
    text.push('\n');
    text.push_str(&table.render());

    let mut table = Table::new(&[
        "month",
        "scope",
        "budget",
        "spent",
        "utilization",
        "variance",
        "projected",
        "alert_at",
        "state",
    ])
    .right_align(&[2, 3, 4, 5, 6, 7]);
    for budget in &report.budgets {
        let state = if budget.exceeded {
            "exceeded"
        } else if budget.alert {
            "alert"
        } else {
            "ok"
        };
        table.row(vec![
            budget.month.to_string(),
            budget.scope.to_string(),
            budget.budget.to_string(),
            budget.spent.to_string(),
            format!("{:.2}%", budget.utilization),
            budget.variance.to_string(),
            budget.projected.to_string(),
            format!("{}%", budget.alert_percent),
            state.to_string(),
        ]);
    }
    text.push('\n');
    text.push_str(&table.render());
    text
}
