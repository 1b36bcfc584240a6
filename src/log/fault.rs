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
    use crate::log::segment::segment_file_sequence;
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

    /// A store in `dir` holding one sent message: the store, the message, and the stats then.
    fn open_with_one_message(
        dir: &Path,
        sync: SyncPolicy,
    ) -> (Store, crate::Message, crate::CommunicationStats) {
        let store = open(dir, sync);
        let message = store
            .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
            .unwrap();
        let before = stats(&store);
        (store, message, before)
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
        let (store, message, before) = open_with_one_message(dir.path(), SyncPolicy::Never);

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
        let (store, message, before) = open_with_one_message(dir.path(), SyncPolicy::Always);

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
        let (store, message, before) = open_with_one_message(dir.path(), SyncPolicy::Always);

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
            message_type: "low_balance".into(),
            cost: 0.05,
            sent_at: None,
            external_id: Some(external_id.into()),
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
                Ok(Tracked::Message(id)) => assert_eq!(
                    found.as_ref().map(|found| found.id),
                    Some(*id),
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

    /// An outcome of user 1, as the batches end with.
    fn outcome() -> Call<'static> {
        Call::Outcome {
            user: UserId(1),
            outcome: "overdraft_avoided".into(),
            amount: 35.0,
            at: None,
        }
    }

    /// A budget for every channel, as the batches end with.
    fn budget() -> Call<'static> {
        Call::Budget {
            scope: BudgetScope::All,
            month: "2025-01".into(),
            amount: 100.0,
            alert_percent: None,
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
                outcome(),
                budget(),
            ])
            .unwrap();
        (store, message, before, answers)
    }

    /// The answers of a batch whose write failed part-way, as docs/SEMANTICS.md has them: the
    /// calls whose frames the write took whole `Poisoned { event_may_be_durable: true }`, the
    /// first of the others the I/O error, every call after it `Poisoned { event_may_be_durable:
    /// false }`. Returns how many calls the write took whole.
    fn taken_whole(answers: &[crate::Result<Tracked>], io_text: &str) -> usize {
        let failed = answers
            .iter()
            .position(|answer| matches!(answer, Err(Error::Io { .. })))
            .expect("a call gets the I/O error");
        let text = answers[failed].as_ref().unwrap_err().to_string();
        assert!(text.contains(io_text), "{text}");
        for (index, answer) in answers.iter().enumerate() {
            if index != failed {
                assert_poisoned_as(&format!("call {index}"), answer, index < failed);
            }
        }
        failed
    }

    /// Where the batch of `batch_whose_write_fails` leaves the store, given how many of its
    /// calls are in the views: each call is, or is not, in the views and the stats.
    fn assert_batch_calls_in_views(
        store: &Store,
        message: &crate::Message,
        before: &(crate::CommunicationStats, crate::CostReport),
        in_views: usize,
    ) {
        let batch_0 = store.message_by_external_id("batch-0").unwrap();
        assert_eq!(
            batch_0.as_ref().map(|sent| sent.id),
            (in_views > 0).then_some(MessageId(2))
        );
        if let Some(sent) = &batch_0 {
            let status = match in_views {
                1 => crate::Status::Sent,
                2 | 3 => crate::Status::Delivered,
                _ => crate::Status::Opened,
            };
            assert_eq!(sent.status, status, "{in_views} calls in the views");
        }
        if in_views > 2 {
            assert_eq!(
                store.get_message(MessageId(3)).unwrap().status,
                crate::Status::Sent
            );
        } else {
            assert_unknown(store, MessageId(3));
        }
        assert_unknown(store, MessageId(4));
        let status = store.get_message(message.id).unwrap().status;
        let delivered = in_views > 4;
        assert_eq!(status == crate::Status::Delivered, delivered, "{status:?}");
        if !delivered {
            assert_eq!(&store.get_message(message.id).unwrap(), message);
        }
        let now = stats(store);
        let sends = u64::from(in_views > 0) + u64::from(in_views > 2);
        assert_eq!(now.total_messages, before.0.total_messages + sends);
        assert_eq!(now.outcome_count, u64::from(in_views > 5));
        assert_eq!(cost_report(store).budgets.len(), usize::from(in_views > 6));
        if in_views == 0 {
            assert_eq!((now, cost_report(store)), *before);
        }
    }

    /// The failed write lands its first half, as a file-size limit does, which holds whole
    /// frames of the batch's first calls: those are in the views; no call after them is.
    #[test]
    fn a_batch_whose_write_fails_part_way_keeps_the_calls_it_took_whole_and_nothing_after() {
        let dir = tempfile::tempdir().unwrap();
        let (store, message, before, answers) = batch_whose_write_fails(dir.path());
        assert_eq!(answers.len(), 7);
        let taken = taken_whole(&answers, "File too large");
        assert!(
            (1..7).contains(&taken),
            "half the bytes hold some frames, not all: {taken}"
        );
        assert_batch_calls_in_views(&store, &message, &before, taken);
        assert_poisoned("track_batch", store.track_batch(&[send("batch-2")]));
        assert_poisoned("empty track_batch", store.track_batch(&[]));
    }

    /// Docs/SEMANTICS.md: a call answered `Error::Io` or `Poisoned { event_may_be_durable:
    /// false }` is absent after reopening. The calls whose frames the write took whole are
    /// with the OS, and this process did not crash: the reopened store holds them.
    #[test]
    fn a_batch_whose_write_fails_part_way_leaves_nothing_after_the_frames_it_took_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, message, before, answers) = batch_whose_write_fails(dir.path());
        let taken = taken_whole(&answers, "File too large");
        drop(store);

        let store = open(dir.path(), SyncPolicy::Always);
        assert_eq!(store.open_report().events, 1 + taken as u64);
        assert_batch_calls_in_views(&store, &message, &before, taken);
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
                    message_type: "".into(),
                    cost: 0.05,
                    sent_at: None,
                    external_id: Some("batch-1".into()),
                },
                Call::Opened {
                    message: MessageRef::Id(MessageId(999)),
                    at: None,
                },
                // A repeat appends nothing, but promises its message durable.
                send("batch-0"),
                outcome(),
                budget(),
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
            .filter(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(segment_file_sequence)
                    .is_some()
            })
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

    /// A batch of several chunks whose first chunk's write fails part-way: the calls whose
    /// frames it took whole are in the views; the first of the others gets the I/O error, and
    /// it and every call after it (the rest of the chunk, the later chunks) leave no trace.
    #[test]
    fn a_batch_of_several_chunks_whose_first_write_fails_keeps_the_calls_it_took_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let ids = sends_of_several_chunks();
        let calls: Vec<Call<'_>> = ids.iter().map(|id| send(id)).collect();
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store.track_batch(&calls).unwrap();
        let taken = taken_whole(&answers, "File too large");
        assert!(
            taken > 1_000 && taken < ids.len() / 3,
            "the write took about half the first chunk: {taken} of {} calls",
            ids.len()
        );
        assert_eq!(stats(&store).total_messages, taken as u64);
        for (index, external_id) in ids.iter().enumerate() {
            let found = store.message_by_external_id(external_id).unwrap();
            assert_eq!(found.is_some(), index < taken, "call {index}: {found:?}");
        }
        assert_unknown(&store, MessageId(taken as u64 + 1));
    }

    /// The reopened store holds the calls whose frames the write took whole (with the OS, and
    /// this process did not crash) and none of the others.
    #[test]
    fn a_batch_of_several_chunks_whose_first_write_fails_leaves_nothing_after_the_frames_it_took_after_reopen()
     {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let ids = sends_of_several_chunks();
        let calls: Vec<Call<'_>> = ids.iter().map(|id| send(id)).collect();
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store.track_batch(&calls).unwrap();
        let taken = taken_whole(&answers, "File too large");
        drop(store);

        let store = open(dir.path(), SyncPolicy::Always);
        assert_answers_hold_after_reopen(&store, &ids, &answers);
        assert_eq!(store.open_report().events, taken as u64);
        assert_unknown(&store, MessageId(taken as u64 + 1));
    }

    /// Calls after a failed chunk that name messages the chunk sent, by id (whether the write
    /// took their frames whole or not) or by external id, are answered `Poisoned {
    /// event_may_be_durable: false }` without being checked, and the batch returns.
    #[test]
    fn follow_ups_of_messages_of_a_failed_chunk_are_refused_as_poisoned() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Always);
        let ids = sends_of_several_chunks();
        let mut calls: Vec<Call<'_>> = ids.iter().map(|id| send(id)).collect();
        calls.extend((1..=ids.len() as u64).map(|id| Call::Delivered {
            message: MessageRef::Id(MessageId(id)),
            at: None,
        }));
        calls.extend(ids.iter().map(|id| Call::Opened {
            message: MessageRef::from(id.as_str()),
            at: None,
        }));
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store.track_batch(&calls).unwrap();
        let taken = taken_whole(&answers, "File too large");
        assert!(taken > 0 && taken < ids.len(), "{taken}");
        assert_eq!(
            store.get_message(MessageId(1)).unwrap().status,
            crate::Status::Sent
        );
        assert_unknown(&store, MessageId(taken as u64 + 1));
        assert_eq!(stats(&store).total_messages, taken as u64);
        assert_eq!(stats(&store).delivered_count, 0);
    }

    /// Under `Never` a chunk is written when the buffer is full. When that write fails
    /// part-way, a repeat of a send of the same chunk (same external id and fields) follows
    /// that send's fate: `Poisoned { event_may_be_durable: true }` and in the views if the write
    /// took the send's frame whole, else refused, and its message not in the views.
    #[test]
    fn a_repeat_of_a_send_of_a_failed_chunk_follows_that_sends_fate() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), SyncPolicy::Never);
        let ids = sends_of_several_chunks();
        let calls: Vec<Call<'_>> = ids.iter().flat_map(|id| [send(id), send(id)]).collect();
        fail_next(Operation::Write, FILE_TOO_LARGE);
        let answers = store.track_batch(&calls).unwrap();
        let failed = answers
            .iter()
            .position(|answer| matches!(answer, Err(Error::Io { .. })))
            .expect("a call gets the I/O error");
        assert!(failed > 1_000 && failed % 2 == 0, "a send fails: {failed}");
        for (index, answer) in answers.iter().enumerate() {
            if index != failed {
                assert_poisoned_as(&format!("call {index}"), answer, index < failed);
            }
        }
        for (index, external_id) in ids.iter().enumerate() {
            let found = store.message_by_external_id(external_id).unwrap();
            assert_eq!(
                found.is_some(),
                2 * index < failed,
                "send {index}: {found:?}"
            );
        }
        assert_eq!(stats(&store).total_messages, failed as u64 / 2);
        drop(store);

        let store = open(dir.path(), SyncPolicy::Never);
        assert_eq!(store.open_report().events, failed as u64 / 2);
    }
}
