//! The rules the brute-force models share: which reports imply a delivery and which count as an
//! engagement (docs/SEMANTICS.md, "Status" and "Engagement").

/// The kind of a provider's report about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Delivered,
    Opened,
    Action,
    Failed,
}

/// The earliest time among `reports` whose kind `counts`.
pub fn earliest_ms(
    reports: impl IntoIterator<Item = (ReportKind, i64)>,
    counts: impl Fn(ReportKind) -> bool,
) -> Option<i64> {
    reports
        .into_iter()
        .filter(|(kind, _)| counts(*kind))
        .map(|(_, at_ms)| at_ms)
        .min()
}

/// Delivered: reported, or implied by an open or any action; the earliest time.
pub fn delivered_ms(reports: impl IntoIterator<Item = (ReportKind, i64)>) -> Option<i64> {
    earliest_ms(reports, |kind| kind != ReportKind::Failed)
}

/// The first engagement: the earliest open or action (a click is an action and implies an open).
pub fn engaged_ms(reports: impl IntoIterator<Item = (ReportKind, i64)>) -> Option<i64> {
    earliest_ms(reports, |kind| {
        matches!(kind, ReportKind::Opened | ReportKind::Action)
    })
}

/// The earliest failure.
pub fn failed_ms(reports: impl IntoIterator<Item = (ReportKind, i64)>) -> Option<i64> {
    earliest_ms(reports, |kind| kind == ReportKind::Failed)
}

/// A click: an action whose name contains "click"; it implies an open.
pub fn is_click(action: &str) -> bool {
    action.contains("click")
}

/// A conversion: an action whose name contains "upgrade".
pub fn is_conversion(action: &str) -> bool {
    action.contains("upgrade")
}

/// How much earlier than its message's sent time a report may be (docs/SEMANTICS.md, "Times"):
/// an earlier report is refused, one within the skew counts as at the sent time.
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
