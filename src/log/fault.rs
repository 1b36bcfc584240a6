//! Injected I/O faults, for unit tests only (compiled under `cfg(test)`): the next write or
//! fsync of a segment on this thread fails with a chosen OS error, as a full disk, a file-size
//! limit or a failing device makes it fail. Integration tests cannot reach this; the tests of
//! what a store does after such a failure live below.

use std::cell::Cell;

/// What the injected fault breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// A write of frames (`write_segment`): half the bytes land, then the error.
    Write,
    /// An fsync of a segment (`sync_segment`).
    Sync,
}

/// Linux `EFBIG`: a write past the process's file-size limit (`ulimit -f`).
pub(crate) const FILE_TOO_LARGE: i32 = 27;
/// Linux `EIO`: the device failed.
pub(crate) const INPUT_OUTPUT_ERROR: i32 = 5;

thread_local! {
    // Thread-local, so that tests running in parallel never trip over each other's faults.
    static NEXT_FAULT: Cell<Option<(Operation, i32)>> = const { Cell::new(None) };
}

/// Makes the next `operation` on this thread fail with the OS error `os_error`.
pub(crate) fn fail_next(operation: Operation, os_error: i32) {
    NEXT_FAULT.set(Some((operation, os_error)));
}

/// The injected error, if the next `operation` on this thread is to fail (once).
pub(super) fn take(operation: Operation) -> Option<std::io::Error> {
    match NEXT_FAULT.get() {
        Some((armed, os_error)) if armed == operation => {
            NEXT_FAULT.set(None);
            Some(std::io::Error::from_raw_os_error(os_error))
        }
        _ => None,
    }
}

mod tests {
    use std::path::Path;

    use super::*;
    use crate::{BudgetScope, Channel, Error, MessageId, Options, StatsFilter, Store, SyncPolicy};

    fn open(dir: &Path, sync: SyncPolicy) -> Store {
        let options = Options {
            sync,
            ..Options::default()
        };
        Store::open_with(dir, options).unwrap()
    }

    fn stats(store: &Store) -> crate::CommunicationStats {
        store.get_communication_stats(&StatsFilter::new()).unwrap()
    }

    fn assert_poisoned<T: std::fmt::Debug>(call: &str, result: crate::Result<T>) {
        match result {
            Err(Error::Poisoned { .. }) => {}
            other => panic!("{call}: expected Error::Poisoned, got {other:?}"),
        }
    }

    fn assert_unknown(store: &Store, id: MessageId) {
        match store.get_message(id) {
            Err(Error::UnknownMessage { id: unknown }) => assert_eq!(unknown, id),
            other => panic!("message {id:?}: expected UnknownMessage, got {other:?}"),
        }
    }

    #[test]
    fn a_poisoned_store_refuses_every_write_and_durability_call_and_still_answers_queries() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Never);
        let message = store
            .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
            .unwrap();
        let before = stats(&store);

        fail_next(Operation::Write, FILE_TOO_LARGE);
        let error = store.flush().unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
        assert!(error.to_string().contains("File too large"), "{error}");

        assert_poisoned("flush", store.flush());
        assert_poisoned("sync", store.sync());
        let id = message.id;
        assert_poisoned(
            "track_message_sent",
            store.track_message_sent(1, Channel::Sms, "low_balance", 0.05),
        );
        let sent_at = chrono::Utc::now();
        assert_poisoned(
            "track_message_sent_at",
            store.track_message_sent_at(1, Channel::Sms, "low_balance", 0.05, sent_at),
        );
        assert_poisoned(
            "track_message_delivered",
            store.track_message_delivered(id, None),
        );
        assert_poisoned("track_message_opened", store.track_message_opened(id, None));
        assert_poisoned(
            "track_user_action",
            store.track_user_action(id, "viewed_forecast", None),
        );
        assert_poisoned(
            "track_message_failed",
            store.track_message_failed(id, "undelivered", None),
        );
        // An id never tracked is still refused as poisoned: the store takes no call at all.
        assert_poisoned(
            "track_message_delivered of an unknown id",
            store.track_message_delivered(id.0 + 1, None),
        );
        assert_poisoned(
            "track_financial_outcome",
            store.track_financial_outcome(1, "overdraft_avoided", 35.0),
        );
        assert_poisoned(
            "track_financial_outcome_at",
            store.track_financial_outcome_at(1, "overdraft_avoided", 35.0, sent_at),
        );
        assert_poisoned(
            "set_budget",
            store.set_budget(BudgetScope::All, "2025-01", 100.0, None),
        );

        assert_eq!(store.get_message(id).unwrap(), message);
        assert_eq!(stats(&store), before);
        assert_poisoned("close", store.close());
    }

    #[test]
    fn a_tracking_call_whose_write_fails_leaves_no_trace_now_or_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let message = store
            .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
            .unwrap();
        let before = stats(&store);

        fail_next(Operation::Write, FILE_TOO_LARGE);
        let error = store
            .track_message_sent(1, Channel::Email, "low_balance", 0.07)
            .unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
        let failed_id = MessageId(message.id.0 + 1);
        assert_unknown(&store, failed_id);
        assert_eq!(stats(&store), before);
        assert_eq!(store.get_message(message.id).unwrap(), message);
        drop(store);

        let store = open(dir.path(), SyncPolicy::Always);
        assert_eq!(store.open_report().events, 1);
        assert_unknown(&store, failed_id);
        assert_eq!(stats(&store), before);
    }

    #[test]
    fn a_report_whose_write_fails_leaves_no_trace_now_or_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let message = store
            .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
            .unwrap();
        let before = stats(&store);

        fail_next(Operation::Write, INPUT_OUTPUT_ERROR);
        let error = store.track_message_opened(message.id, None).unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
        assert_eq!(store.get_message(message.id).unwrap(), message);
        assert_eq!(stats(&store), before);
        drop(store);

        let store = open(dir.path(), SyncPolicy::Always);
        assert_eq!(store.get_message(message.id).unwrap(), message);
        assert_eq!(stats(&store), before);
    }

    #[test]
    fn a_tracking_call_whose_fsync_fails_says_its_event_may_or_may_not_be_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        store
            .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
            .unwrap();

        fail_next(Operation::Sync, INPUT_OUTPUT_ERROR);
        let error = store
            .track_message_sent(1, Channel::Email, "low_balance", 0.07)
            .unwrap_err();
        assert!(matches!(error, Error::Poisoned { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("may or may not be durable"), "{text}");
        assert!(text.contains("Input/output error"), "{text}");
        // The outcome is unknown, so the views keep the event the disk may hold.
        assert_eq!(stats(&store).total_messages, 2);
        assert_poisoned("sync", store.sync());
    }

    /// Under `SyncPolicy::Never` the call that fills the write buffer hands it to the OS; when
    /// that write fails, the calls acknowledged before it stay in the views (their loss shows
    /// only after reopening, as after a crash), and the failing call leaves no trace.
    #[test]
    fn a_tracking_call_whose_buffer_write_fails_leaves_no_trace_but_earlier_calls_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Never);
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let mut acknowledged_count = 0;
        let error = loop {
            match store.track_message_sent(1, Channel::Sms, "low_balance", 0.05) {
                Ok(_) => acknowledged_count += 1,
                Err(error) => break error,
            }
        };
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
        let failed_id = MessageId(acknowledged_count + 1);
        assert_unknown(&store, failed_id);
        assert_eq!(stats(&store).total_messages, acknowledged_count);
        drop(store);

        let store = open(dir.path(), SyncPolicy::Never);
        assert_unknown(&store, failed_id);
        let replayed_count = store.open_report().events;
        assert!(
            replayed_count < acknowledged_count,
            "half the buffer was lost"
        );
        assert_eq!(stats(&store).total_messages, replayed_count);
    }
}
