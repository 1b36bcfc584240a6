//! Writing results: aligned tables for people, JSON for programs, and a closed pipe is not an
//! error.

use std::io::Write;

use chrono::{DateTime, Utc};
use commlog::{CommunicationStats, Message};
use serde::Serialize;

use crate::cli::CliError;

/// Writes bytes to stdout; a closed pipe ends the command quietly.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// Maps a write error on stdout: a closed pipe is `ClosedPipe`, anything else a usage-level
/// failure naming stdout.
pub(crate) fn stdout_error(error: std::io::Error) -> CliError {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::ClosedPipe
    } else {
        CliError::Store(commlog::Error::Io {
            path: "<stdout>".into(),
            source: error,
        })
    }
}

/// Prints `value` as one line of JSON.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    let mut line = serde_json::to_vec(value).expect("public types serialize");
    line.push(b'\n');
    write_stdout(&line)
}

/// A table with a header row; columns holding numbers or money are right-aligned.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    right_aligned: Vec<bool>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
            right_aligned: vec![false; headers.len()],
        }
    }

    pub(crate) fn right_align(mut self, columns: &[usize]) -> Table {
        for column in columns {
            self.right_aligned[*column] = true;
        }
        self
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.headers.len(),
            "a row has a cell per column"
        );
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|header| header.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        let header_cells: Vec<String> = self
            .headers
            .iter()
            .map(|header| header.to_string())
            .collect();
        for cells in std::iter::once(&header_cells).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in cells.iter().enumerate() {
                let pad = widths[column] - cell.chars().count();
                if column > 0 {
                    line.push_str("  ");
                }
                if self.right_aligned[column] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// 949669 → "949,669".
pub(crate) fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A return on cost (a ratio: 1.0 is +100 %) as a signed percentage with two decimals, e.g.
/// "+250.00%" or "-125.00%"; "-" when there is none (nothing was spent). Every table prints
/// ROI this way.
pub(crate) fn roi(roi: Option<f64>) -> String {
    roi.map_or_else(|| "-".to_string(), |roi| format!("{:+.2}%", roi * 100.0))
}

/// RFC 3339, UTC, milliseconds: the form of times in JSON too.
pub(crate) fn time(time: DateTime<Utc>) -> String {
    commlog::serde_time::to_text(time)
}

fn optional_time(value: Option<DateTime<Utc>>) -> String {
    value.map_or_else(|| "-".to_string(), time)
}

/// Messages as a table.
pub(crate) fn messages_table(messages: &[Message]) -> String {
    let mut table = Table::new(&[
        "id",
        "user",
        "channel",
        "type",
        "status",
        "cost",
        "sent_at",
        "delivered_at",
        "opened_at",
        "clicked_at",
        "action",
        "failure",
    ])
    .right_align(&[0, 1, 5]);
    for message in messages {
        table.row(vec![
            message.id.to_string(),
            message.user_id.to_string(),
            message.channel.to_string(),
            message.message_type.to_string(),
            message.status.to_string(),
            message.cost.to_string(),
            time(message.sent_at),
            optional_time(message.delivered_at),
            optional_time(message.opened_at),
            optional_time(message.clicked_at),
            message.action_taken.as_deref().unwrap_or("-").to_string(),
            message.failure_reason.as_deref().unwrap_or("-").to_string(),
        ]);
    }
    table.render()
}

/// Stats as a two-column table, then the breakdowns.
pub(crate) fn stats_table(stats: &CommunicationStats) -> String {
    let mut table = Table::new(&["stat", "value"]).right_align(&[1]);
    let rows = [
        ("total_messages", count(stats.total_messages)),
        ("delivered_count", count(stats.delivered_count)),
        ("opened_count", count(stats.opened_count)),
        ("clicked_count", count(stats.clicked_count)),
        ("action_count", count(stats.action_count)),
        ("failed_count", count(stats.failed_count)),
        ("delivery_rate", format!("{:.2}%", stats.delivery_rate)),
        ("open_rate", format!("{:.2}%", stats.open_rate)),
        ("click_rate", format!("{:.2}%", stats.click_rate)),
        ("action_rate", format!("{:.2}%", stats.action_rate)),
        ("total_cost", stats.total_cost.to_string()),
        (
            "avg_cost_per_message",
            stats.avg_cost_per_message.to_string(),
        ),
        ("outcome_count", count(stats.outcome_count)),
        ("total_impact", stats.total_impact.to_string()),
    ];
    for (name, value) in rows {
        table.row(vec![name.to_string(), value]);
    }
    let mut text = table.render();
    for (title, breakdown) in [
        ("status", &stats.status_breakdown),
        ("channel", &stats.channel_breakdown),
        ("message_type", &stats.message_type_breakdown),
    ] {
        let mut table = Table::new(&[title, "messages"]).right_align(&[1]);
        for (key, value) in breakdown {
            table.row(vec![key.clone(), count(*value)]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}
