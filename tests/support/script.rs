//! A fixed script of events, so that any prefix of it can be rebuilt as a reference.

use chrono::{DateTime, Duration, Utc};
use commlog::{Channel, MessageId, Store};

/// Tracks event `i` (0-based) of the script that starts at `t0`, one minute apart, over users
/// 1 to `user_count`: every third event sends a message, the next delivers it, the one after
/// clicks it or records an outcome.
pub fn track_scripted_event(store: &Store, i: u64, t0: DateTime<Utc>, user_count: u64) {
    let at = t0 + Duration::minutes(i as i64);
    let user = i % user_count + 1;
    let latest = MessageId(i / 3 + 1);
    match i % 3 {
        0 => {
            let channel = Channel::ALL[(i / 3 % 4) as usize];
            let message_type = ["low_balance", "weekly_checkin"][(i / 3 % 2) as usize];
            let sent = store
                .track_message_sent_at(user, channel, message_type, 0.05, at)
                .unwrap();
            assert_eq!(sent.id, latest);
        }
        1 => {
            store.track_message_delivered(latest, Some(at)).unwrap();
        }
        _ if i.is_multiple_of(2) => {
            store
                .track_user_action(latest, "clicked_link", Some(at))
                .unwrap();
        }
        _ => {
            store
                .track_financial_outcome_at(user, "bill_paid_on_time", 12.5, at)
                .unwrap();
        }
    }
}
