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
    use crate::{
        BudgetScope, Call, Channel, Error, MessageId, MessageRef, Options, StatsFilter, Store,
        SyncPolicy, Tracked, UserId,
    };

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

    // Batches (`Store::track_batch`): a chunk's frames are handed to the OS before any of its
    // events is folded, and the batch's one fsync comes after every chunk.

    fn send(external_id: &str) -> Call<'_> {
        Call::Sent {
            user: UserId(1),
            channel: Channel::Sms,
            message_type: "low_balance",
            cost: 0.05,
            sent_at: None,
            external_id: Some(external_id),
        }
    }

    fn external_ids(count: usize) -> Vec<String> {
        (0..count).map(|index| format!("batch-{index}")).collect()
    }

    fn cost_report(store: &Store) -> crate::CostReport {
        store.get_cost_report(&crate::CostFilter::new()).unwrap()
    }

    fn assert_poisoned_as(what: &str, answer: &crate::Result<Tracked>, may_be_durable: bool) {
        match answer {
            Err(Error::Poisoned {
                event_may_be_durable,
                ..
            }) => assert_eq!(*event_may_be_durable, may_be_durable, "{what}: {answer:?}"),
            other => panic!(
                "{what}: expected Poisoned {{ event_may_be_durable: {may_be_durable} }}, got \
                 {other:?}"
            ),
        }
    }

    /// The rule of docs/SEMANTICS.md for a batch of sends, each with its own external id, as
    /// a store reopened after it answers: a send answered `Ok` is there, one answered with an
    /// error other than `Poisoned { event_may_be_durable: true }` is not.
    fn assert_answers_hold_after_reopen(
        store: &Store,
        ids: &[String],
        answers: &[crate::Result<Tracked>],
    ) {
        assert_eq!(ids.len(), answers.len());
        for (index, (external_id, answer)) in ids.iter().zip(answers).enumerate() {
            let found = store.message_by_external_id(external_id).unwrap();
            match answer {
                Ok(Tracked::Message(message)) => assert_eq!(
                    found.as_ref().map(|found| found.id),
                    Some(message.id),
                    "call {index}, answered Ok, is missing after reopen"
                ),
                Err(Error::Poisoned {
                    event_may_be_durable: true,
                    ..
                }) => {}
                other => assert!(
                    found.is_none(),
                    "call {index}, answered {other:?}, is in the log after reopen: {found:?}"
                ),
            }
        }
    }

    /// A store with one message, then a batch of every kind of call whose write fails: the
    /// store, the message and the stats and cost report before the batch, and the answers.
    fn batch_whose_write_fails(
        dir: &Path,
    ) -> (
        Store,
        crate::Message,
        (crate::CommunicationStats, crate::CostReport),
        Vec<crate::Result<Tracked>>,
    ) {
        let store = open(dir, SyncPolicy::Always);
        let message = store
            .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
            .unwrap();
        let before = (stats(&store), cost_report(&store));

        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store
            .track_batch(&[
                send("batch-0"),
                Call::Delivered {
                    message: MessageRef::Id(MessageId(2)),
                    at: None,
                },
                send("batch-1"),
                Call::Opened {
                    message: MessageRef::from("batch-0"),
                    at: None,
                },
                Call::Delivered {
                    message: MessageRef::Id(message.id),
                    at: None,
                },
                Call::Outcome {
                    user: UserId(1),
                    outcome: "overdraft_avoided",
                    amount: 35.0,
                    at: None,
                },
                Call::Budget {
                    scope: BudgetScope::All,
                    month: "2025-01",
                    amount: 100.0,
                    alert_percent: None,
                },
            ])
            .unwrap();
        (store, message, before, answers)
    }

    #[test]
    fn a_batch_whose_write_fails_answers_io_then_poisoned_and_leaves_no_trace_in_the_views() {
        let dir = tempfile::tempdir().unwrap();
        let (store, message, before, answers) = batch_whose_write_fails(dir.path());
        assert_eq!(answers.len(), 7);
        match &answers[0] {
            Err(error @ Error::Io { .. }) => {
                assert!(error.to_string().contains("File too large"), "{error}");
            }
            other => panic!("the first call: expected Error::Io, got {other:?}"),
        }
        for (index, answer) in answers.iter().enumerate().skip(1) {
            assert_poisoned_as(&format!("call {index}"), answer, false);
        }

        assert_unknown(&store, MessageId(2));
        assert_unknown(&store, MessageId(3));
        assert_eq!(store.message_by_external_id("batch-0").unwrap(), None);
        assert_eq!(store.get_message(message.id).unwrap(), message);
        assert_eq!((stats(&store), cost_report(&store)), before);
        assert_poisoned("track_batch", store.track_batch(&[send("batch-2")]));
        assert_poisoned("empty track_batch", store.track_batch(&[]));
    }

    /// Docs/SEMANTICS.md: a call answered `Error::Io` or `Poisoned { event_may_be_durable:
    /// false }` is absent after reopening. The failed write lands its first half, as a
    /// file-size limit does, and that half holds whole frames of the batch's first calls.
    #[test]
    #[ignore = "bug: a chunk write that fails part-way leaves whole frames of calls answered Io/Poisoned{false}, and reopening replays them"]
    fn a_batch_whose_write_fails_leaves_no_trace_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, message, before, _) = batch_whose_write_fails(dir.path());
        drop(store);

        let store = open(dir.path(), SyncPolicy::Always);
        assert_unknown(&store, MessageId(2));
        assert_unknown(&store, MessageId(3));
        assert_eq!(store.get_message(message.id).unwrap(), message);
        assert_eq!((stats(&store), cost_report(&store)), before);
        assert_eq!(store.open_report().events, 1);
    }

    #[test]
    fn a_batch_whose_fsync_fails_answers_every_appended_call_poisoned_with_its_event_maybe_durable()
    {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let message = store
            .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
            .unwrap();

        fail_next(Operation::Sync, INPUT_OUTPUT_ERROR);
        let answers = store
            .track_batch(&[
                send("batch-0"),
                Call::Delivered {
                    message: MessageRef::from("batch-0"),
                    at: None,
                },
                Call::Sent {
                    user: UserId(1),
                    channel: Channel::Sms,
                    message_type: "",
                    cost: 0.05,
                    sent_at: None,
                    external_id: Some("batch-1"),
                },
                Call::Opened {
                    message: MessageRef::Id(MessageId(999)),
                    at: None,
                },
                // A repeat appends nothing, but promises its message durable.
                send("batch-0"),
                Call::Outcome {
                    user: UserId(1),
                    outcome: "overdraft_avoided",
                    amount: 35.0,
                    at: None,
                },
                Call::Budget {
                    scope: BudgetScope::All,
                    month: "2025-01",
                    amount: 100.0,
                    alert_percent: None,
                },
            ])
            .unwrap();
        assert_eq!(answers.len(), 7);
        for index in [0, 1, 4, 5, 6] {
            assert_poisoned_as(&format!("call {index}"), &answers[index], true);
            let text = answers[index].as_ref().unwrap_err().to_string();
            assert!(text.contains("may or may not be durable"), "{text}");
            assert!(text.contains("Input/output error"), "{text}");
        }
        match &answers[2] {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(*field, "message_type"),
            other => panic!("call 2: expected InvalidInput, got {other:?}"),
        }
        match &answers[3] {
            Err(Error::UnknownMessage { id }) => assert_eq!(*id, MessageId(999)),
            other => panic!("call 3: expected UnknownMessage, got {other:?}"),
        }

        // The outcome is unknown, so the views keep the events the disk may hold.
        let sent = store.get_message("batch-0").unwrap();
        assert_eq!(sent.id, MessageId(2));
        assert_eq!(sent.status, crate::Status::Delivered);
        assert_unknown(&store, MessageId(3));
        let now = stats(&store);
        assert_eq!((now.total_messages, now.outcome_count), (2, 1));
        assert_eq!(cost_report(&store).budgets.len(), 1);
        assert_poisoned("sync", store.sync());
        drop(store);

        // The frames reached the OS before the fsync failed, and this process did not crash:
        // the reopened store holds them, and nothing of the refused calls.
        let store = open(dir.path(), SyncPolicy::Always);
        assert_eq!(store.open_report().events, 5);
        assert_eq!(store.get_message("batch-0").unwrap(), sent);
        assert_eq!(store.get_message(message.id).unwrap(), message);
        assert_unknown(&store, MessageId(3));
        assert_eq!(stats(&store), now);
    }

    /// Sends of more than `WRITE_BUFFER_BYTES` of frames: several chunks.
    fn sends_of_several_chunks() -> Vec<String> {
        external_ids(3 * crate::limits::WRITE_BUFFER_BYTES / 40)
    }

    /// The bytes of every segment file in `dir`.
    fn log_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
            .map(|entry| entry.metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn a_batch_of_several_chunks_whose_fsync_fails_answers_every_call_poisoned_maybe_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let ids = sends_of_several_chunks();
        let calls: Vec<Call<'_>> = ids.iter().map(|id| send(id)).collect();
        fail_next(Operation::Sync, INPUT_OUTPUT_ERROR);
        let answers = store.track_batch(&calls).unwrap();
        assert!(
            log_bytes(dir.path()) > 2 * crate::limits::WRITE_BUFFER_BYTES as u64,
            "the batch spans several chunks: {} bytes",
            log_bytes(dir.path())
        );
        for (index, answer) in answers.iter().enumerate() {
            assert_poisoned_as(&format!("call {index}"), answer, true);
        }
        assert_eq!(stats(&store).total_messages, ids.len() as u64);
        drop(store);

        let store = open(dir.path(), SyncPolicy::Always);
        assert_eq!(store.open_report().events, ids.len() as u64);
        assert_answers_hold_after_reopen(&store, &ids, &answers);
    }

    /// Under `Always` with small segments every chunk is written before the next call; the
    /// call that rolls over to a new segment fsyncs the full one first. When that fsync fails,
    /// the chunks before it are in the views (their frames reached the OS) and answered
    /// `Poisoned { event_may_be_durable: true }`; the rolling call is answered `Error::Io` and
    /// the ones after it `Poisoned { event_may_be_durable: false }`, and these leave no trace.
    #[test]
    fn a_batch_whose_rollover_fsync_fails_keeps_the_chunks_before_it_and_nothing_after() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            sync: SyncPolicy::Always,
            segment_bytes: 600,
            ..Options::default()
        };
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        let ids = external_ids(40);
        let calls: Vec<Call<'_>> = ids.iter().map(|id| send(id)).collect();
        fail_next(Operation::Sync, INPUT_OUTPUT_ERROR);
        let answers = store.track_batch(&calls).unwrap();

        let failed = answers
            .iter()
            .position(|answer| matches!(answer, Err(Error::Io { .. })))
            .expect("a call rolls over");
        assert!(failed >= 2, "several chunks before the rollover: {failed}");
        for (index, answer) in answers.iter().enumerate() {
            assert!(
                index == failed || matches!(answer, Err(Error::Poisoned { .. })),
                "call {index}: {answer:?}"
            );
            if index != failed {
                assert_poisoned_as(&format!("call {index}"), answer, index < failed);
            }
        }
        for (index, external_id) in ids.iter().enumerate() {
            let found = store.message_by_external_id(external_id).unwrap();
            assert_eq!(found.is_some(), index < failed, "call {index}: {found:?}");
        }
        assert_eq!(stats(&store).total_messages, failed as u64);
        drop(store);

        let store = Store::open_with(dir.path(), options).unwrap();
        assert_eq!(store.open_report().events, failed as u64);
        assert_answers_hold_after_reopen(&store, &ids, &answers);
    }

    /// A batch of several chunks whose first chunk's write fails: that chunk's first call gets
    /// the I/O error, every other call of the batch finds the store poisoned, and the views
    /// show none of them.
    #[test]
    fn a_batch_of_several_chunks_whose_first_write_fails_leaves_no_trace_in_the_views() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let ids = sends_of_several_chunks();
        let calls: Vec<Call<'_>> = ids.iter().map(|id| send(id)).collect();
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store.track_batch(&calls).unwrap();
        assert!(
            matches!(answers[0], Err(Error::Io { .. })),
            "{:?}",
            answers[0]
        );
        for (index, answer) in answers.iter().enumerate().skip(1) {
            assert_poisoned_as(&format!("call {index}"), answer, false);
        }
        assert_eq!(stats(&store).total_messages, 0);
        assert_unknown(&store, MessageId(1));
        assert_eq!(store.message_by_external_id(&ids[0]).unwrap(), None);
    }

    #[test]
    #[ignore = "bug: a chunk write that fails part-way leaves whole frames of calls answered Io/Poisoned{false}, and reopening replays them"]
    fn a_batch_of_several_chunks_whose_first_write_fails_leaves_no_trace_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let ids = sends_of_several_chunks();
        let calls: Vec<Call<'_>> = ids.iter().map(|id| send(id)).collect();
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store.track_batch(&calls).unwrap();
        drop(store);

        let store = open(dir.path(), SyncPolicy::Always);
        assert_answers_hold_after_reopen(&store, &ids, &answers);
        assert_eq!(store.open_report().events, 0);
    }

    /// A call after a failed chunk that names a message the chunk sent (by id) finds the
    /// store poisoned, or the message unknown: it is never answered `Ok`, and the batch
    /// returns.
    #[test]
    #[ignore = "bug: a follow-up by id of a message sent in a chunk whose write failed panics (\"a message in the log is folded or in the chunk\")"]
    fn a_follow_up_of_a_message_of_a_failed_chunk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let ids = sends_of_several_chunks();
        let mut calls: Vec<Call<'_>> = ids.iter().map(|id| send(id)).collect();
        calls.push(Call::Delivered {
            message: MessageRef::Id(MessageId(1)),
            at: None,
        });
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store.track_batch(&calls).unwrap();
        let last = answers.last().unwrap();
        assert!(
            matches!(
                last,
                Err(Error::Poisoned {
                    event_may_be_durable: false,
                    ..
                }) | Err(Error::UnknownMessage { .. })
            ),
            "{last:?}"
        );
        assert_unknown(&store, MessageId(1));
    }

    /// Under `Never` a chunk is written when the buffer is full. When that write fails, a
    /// repeat of a send of the same chunk (same external id and fields) is refused like the
    /// send: its message was never folded.
    #[test]
    #[ignore = "bug: under Never, a repeated send whose original is in a chunk whose write failed panics (\"a folded message\")"]
    fn a_repeat_of_a_send_of_a_failed_chunk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Never);
        let ids = sends_of_several_chunks();
        let mut calls: Vec<Call<'_>> = vec![send("repeated"), send("repeated")];
        calls.extend(ids.iter().map(|id| send(id)));
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store.track_batch(&calls).unwrap();
        assert!(
            matches!(answers[0], Err(Error::Io { .. })),
            "{:?}",
            answers[0]
        );
        assert_poisoned_as("the repeat", &answers[1], false);
        assert_eq!(store.message_by_external_id("repeated").unwrap(), None);
    }
}
