//! The log's summary: how many events it holds and the range of their times, folded event by
//! event like a view, so that `commlog info` reads it from a snapshot and the log after it
//! rather than from every frame.

use std::path::Path;

use crate::error::Result;
use crate::event::{Event, LoggedEvent};
use crate::log::replay::{self, Mode};

/// What the log holds up to a point: its events, how many sent a message or recorded an
/// outcome, and the range of their own times and of their append times. Times are milliseconds
/// since 1970 (UTC); close markers are not events and count in none of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct LogSummary {
    /// Events.
    pub events: u64,
    /// `MessageSent` events.
    pub messages: u64,
    /// `FinancialOutcome` events.
    pub outcomes: u64,
    /// The earliest and the latest own time of any event (`None` without events).
    pub event_ms: Option<(i64, i64)>,
    /// The earliest and the latest append time of any event (`None` without events).
    pub appended_ms: Option<(i64, i64)>,
}

impl LogSummary {
    /// Counts one event.
    #[inline]
    pub(crate) fn add(&mut self, logged: &LoggedEvent<'_>) {
        self.events += 1;
        match logged.event {
            Event::MessageSent { .. } => self.messages += 1,
            Event::FinancialOutcome { .. } => self.outcomes += 1,
            _ => {}
        }
        widen(&mut self.event_ms, logged.event.at_ms());
        widen(&mut self.appended_ms, logged.appended_ms);
    }

    /// The summary of a log holding `self`'s events and then `after`'s.
    pub(crate) fn then(self, after: LogSummary) -> LogSummary {
        let join = |a: Option<(i64, i64)>, b: Option<(i64, i64)>| match (a, b) {
            (Some((low_a, high_a)), Some((low_b, high_b))) => {
                Some((low_a.min(low_b), high_a.max(high_b)))
            }
            (a, b) => a.or(b),
        };
        LogSummary {
            events: self.events + after.events,
            messages: self.messages + after.messages,
            outcomes: self.outcomes + after.outcomes,
            event_ms: join(self.event_ms, after.event_ms),
            appended_ms: join(self.appended_ms, after.appended_ms),
        }
    }
}

/// The summary of the log in `dir` up to seq `through`, counted from its frames (read-only, as
/// beside a running writer).
pub(crate) fn count_through(dir: &Path, through: u64) -> Result<LogSummary> {
    let mut summary = LogSummary::default();
    replay::replay(dir, Mode::ReadOnly, &mut |logged| {
        if logged.seq <= through {
            summary.add(logged);
        }
    })?;
    Ok(summary)
}

fn widen(range: &mut Option<(i64, i64)>, ms: i64) {
    *range = Some(range.map_or((ms, ms), |(low, high)| (low.min(ms), high.max(ms))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{MessageId, UserId};

    fn logged(event: Event<'static>, appended_ms: i64) -> LoggedEvent<'static> {
        LoggedEvent {
            seq: 1,
            appended_ms,
            durable_seq: 0,
            event,
        }
    }

    #[test]
    fn a_summary_then_another_is_the_summary_of_both_logs() {
        let events = [
            logged(
                Event::MessageDelivered {
                    message_id: MessageId(1),
                    at_ms: 50,
                },
                900,
            ),
            logged(
                Event::FinancialOutcome {
                    user_id: UserId(3),
                    outcome: "bill_paid",
                    amount: crate::money::Money::from_micros(1),
                    at_ms: -20,
                },
                800,
            ),
            logged(
                Event::MessageOpened {
                    message_id: MessageId(1),
                    at_ms: 70,
                },
                1_000,
            ),
        ];
        let mut whole = LogSummary::default();
        events.iter().for_each(|event| whole.add(event));
        assert_eq!(
            whole,
            LogSummary {
                events: 3,
                messages: 0,
                outcomes: 1,
                event_ms: Some((-20, 70)),
                appended_ms: Some((800, 1_000)),
            }
        );
        for split in 0..=events.len() {
            let (mut first, mut second) = (LogSummary::default(), LogSummary::default());
            events[..split].iter().for_each(|event| first.add(event));
            events[split..].iter().for_each(|event| second.add(event));
            assert_eq!(first.then(second), whole, "split at {split}");
        }
    }
}
