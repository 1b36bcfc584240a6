//! `Store::track_batch`: a batch answers every call as the calls one at a time would, leaves
//! the same views, also after reopening, whatever the chunks, segments and sync policy; the
//! documented behaviours of a batch as a whole; and what a batch whose second chunk's write
//! fails leaves behind.

mod support;

use std::borrow::Cow;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commlog::{
    BudgetScope, Call, Channel, CostFilter, EffectivenessFilter, EngagementFilter, Error,
    ImpactFilter, MessageId, MessageRef, Month, Options, Period, StatsFilter, Status, Store,
    SyncPolicy, Tracked, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// Every time the calls give is this plus a few minutes, or a little before it.
fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap()
}

/// Milliseconds from `base()`.
fn time(offset_ms: i64) -> DateTime<Utc> {
    base() + Duration::milliseconds(offset_ms)
}

/// 9999-12-31T23:59:59Z, an `at` refused as more than a day after the clock.
const FAR_FUTURE_OFFSET_MS: i64 = 253_402_300_799_000 - 1_735_722_000_000;

/// 1969-12-31T23:59:59.999Z, refused as before 1970.
const BEFORE_1970_OFFSET_MS: i64 = -1 - 1_735_722_000_000;

const USERS: u64 = 4;
const MESSAGE_TYPES: [&str; 5] = ["low_balance", "weekly_checkin", "bill_due", "Bad Type", ""];
const ACTIONS: [&str; 4] = ["viewed_forecast", "clicked_link", "dismissed", ""];
const REASONS: [&str; 3] = ["undelivered", "bounced", "No Reason"];
const OUTCOMES: [&str; 3] = ["bill_paid_on_time", "overdraft", ""];
const EXTERNAL_IDS: [&str; 4] = ["SM-a", "SM-b", "re_0123", "key-4"];
const EXTERNAL_ID_UNKNOWN: &str = "SM-never-sent";
const EXTERNAL_ID_INVALID: &str = "has space";
const MONTHS: [&str; 4] = ["2025-01", "2025-02", "2025-13", "jan"];

/// A call as generated: message picks and repeats are resolved into a [`Call`] against the
/// calls before it.
#[derive(Debug, Clone)]
enum Spec {
    Sent {
        user: u64,
        channel: Channel,
        message_type: &'static str,
        cost: f64,
        at_ms: i64,
        external_id: Option<&'static str>,
    },
    /// An earlier send with an external id, again, as it was or with one field changed.
    Repeat {
        of: Index,
        change: Change,
    },
    Delivered {
        message: Pick,
        at_ms: i64,
    },
    Opened {
        message: Pick,
        at_ms: i64,
    },
    Failed {
        message: Pick,
        reason: &'static str,
        at_ms: i64,
    },
    Action {
        message: Pick,
        action: &'static str,
        at_ms: i64,
    },
    Outcome {
        user: u64,
        outcome: &'static str,
        amount: f64,
        at_ms: i64,
    },
    Budget {
        scope: BudgetScope,
        month: &'static str,
        amount: f64,
        alert_percent: Option<u8>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Change {
    None,
    User,
    Channel,
    MessageType,
    Cost,
    SentAt,
}

/// How a follow-up names its message.
#[derive(Debug, Clone)]
enum Pick {
    /// One of the ids the sends before it may have taken (some failed: then it is unknown).
    Earlier(Index),
    /// An id: 0, or past every send.
    Id(u64),
    External(&'static str),
}

fn at_ms() -> impl Strategy<Value = i64> {
    prop_oneof![
        30 => 0i64..=120_000,
        // More than 5 minutes before the sends at 0 and after: their reports are refused;
        // those of sends this early are not.
        4 => (0i64..=60_000).prop_map(|offset| -6 * 60_000 - offset),
        1 => prop::sample::select(vec![FAR_FUTURE_OFFSET_MS, BEFORE_1970_OFFSET_MS]),
    ]
}

fn user() -> impl Strategy<Value = u64> {
    prop_oneof![20 => 1..=USERS, 1 => Just(0u64)]
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

fn cost() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => (0i64..=200_000).prop_map(|micros| micros as f64 / 1e6),
        1 => prop::sample::select(vec![-0.01, f64::NAN, f64::INFINITY]),
    ]
}

fn amount() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => (-50_000_000i64..=50_000_000).prop_map(|micros| micros as f64 / 1e6),
        1 => prop::sample::select(vec![f64::NAN, f64::NEG_INFINITY]),
    ]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        12 => any::<Index>().prop_map(Pick::Earlier),
        1 => prop::sample::select(vec![0u64, 1_000_000]).prop_map(Pick::Id),
        5 => prop::sample::select(EXTERNAL_IDS.to_vec()).prop_map(Pick::External),
        1 => prop::sample::select(vec![EXTERNAL_ID_UNKNOWN, EXTERNAL_ID_INVALID])
            .prop_map(Pick::External),
    ]
}

fn external_id() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        6 => Just(None),
        5 => prop::sample::select(EXTERNAL_IDS.to_vec()).prop_map(Some),
        1 => Just(Some(EXTERNAL_ID_INVALID)),
    ]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => Just(Change::None),
        1 => prop::sample::select(vec![
            Change::User,
            Change::Channel,
            Change::MessageType,
            Change::Cost,
            Change::SentAt,
        ]),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        8 => (user(), channel(), prop::sample::select(MESSAGE_TYPES.to_vec()), cost(), at_ms(), external_id())
            .prop_map(|(user, channel, message_type, cost, at_ms, external_id)| Spec::Sent {
                user, channel, message_type, cost, at_ms, external_id,
            }),
        3 => (any::<Index>(), change()).prop_map(|(of, change)| Spec::Repeat { of, change }),
        4 => (pick(), at_ms()).prop_map(|(message, at_ms)| Spec::Delivered { message, at_ms }),
        3 => (pick(), at_ms()).prop_map(|(message, at_ms)| Spec::Opened { message, at_ms }),
        2 => (pick(), prop::sample::select(REASONS.to_vec()), at_ms())
            .prop_map(|(message, reason, at_ms)| Spec::Failed { message, reason, at_ms }),
        3 => (pick(), prop::sample::select(ACTIONS.to_vec()), at_ms())
            .prop_map(|(message, action, at_ms)| Spec::Action { message, action, at_ms }),
        2 => (user(), prop::sample::select(OUTCOMES.to_vec()), amount(), at_ms())
            .prop_map(|(user, outcome, amount, at_ms)| Spec::Outcome { user, outcome, amount, at_ms }),
        1 => (
            prop_oneof![Just(BudgetScope::All), channel().prop_map(BudgetScope::Channel)],
            prop::sample::select(MONTHS.to_vec()),
            prop::sample::select(vec![100.0, 0.5, 1e-7, 0.0, -5.0, f64::NAN]),
            prop::sample::select(vec![None, Some(50u8), Some(100), Some(0), Some(101)]),
        )
            .prop_map(|(scope, month, amount, alert_percent)| Spec::Budget {
                scope, month, amount, alert_percent,
            }),
    ]
}

/// Any call, or (half the time) a send without an external id.
fn spec_or_send() -> impl Strategy<Value = Spec> {
    let send = (
        user(),
        channel(),
        prop::sample::select(MESSAGE_TYPES.to_vec()),
        cost(),
        at_ms(),
    )
        .prop_map(|(user, channel, message_type, cost, at_ms)| Spec::Sent {
            user,
            channel,
            message_type,
            cost,
            at_ms,
            external_id: None,
        });
    prop_oneof![spec(), send]
}

/// The calls the specs stand for, every time fixed, every message named by a concrete id or
/// external id.
fn resolve(specs: &[Spec]) -> Vec<Call<'static>> {
    let mut calls: Vec<Call<'static>> = Vec::with_capacity(specs.len());
    // Sends so far: at most this many ids are taken.
    let mut send_count = 0u64;
    let message = |pick: &Pick, send_count: u64| match pick {
        Pick::Earlier(index) => MessageRef::Id(MessageId(
            index.index(send_count.max(1) as usize) as u64 + 1,
        )),
        Pick::Id(id) => MessageRef::Id(MessageId(*id)),
        Pick::External(external_id) => MessageRef::from(*external_id),
    };
    for spec in specs {
        let call = match *spec {
            Spec::Sent {
                user,
                channel,
                message_type,
                cost,
                at_ms,
                external_id,
            } => Call::Sent {
                user: UserId(user),
                channel,
                message_type: message_type.into(),
                cost,
                sent_at: Some(time(at_ms)),
                external_id: external_id.map(Cow::Borrowed),
            },
            Spec::Repeat { ref of, change } => {
                let earlier: Vec<&Call<'static>> = calls
                    .iter()
                    .filter(|call| {
                        matches!(
                            call,
                            Call::Sent {
                                external_id: Some(_),
                                ..
                            }
                        )
                    })
                    .collect();
                match earlier.get(of.index(earlier.len().max(1))) {
                    Some(&&Call::Sent {
                        user,
                        channel,
                        ref message_type,
                        cost,
                        sent_at,
                        ref external_id,
                    }) => {
                        let external_id = external_id.clone();
                        let mut repeat = (user, channel, message_type.clone(), cost, sent_at);
                        match change {
                            Change::None => {}
                            Change::User => repeat.0 = UserId(user.0 % USERS + 1),
                            Change::Channel => {
                                repeat.1 = if channel == Channel::Sms {
                                    Channel::Email
                                } else {
                                    Channel::Sms
                                }
                            }
                            Change::MessageType => repeat.2 = "never_sent_type".into(),
                            Change::Cost => repeat.3 = cost + 0.01,
                            Change::SentAt => {
                                repeat.4 = sent_at.map(|at| at + Duration::seconds(1))
                            }
                        }
                        let (user, channel, message_type, cost, sent_at) = repeat;
                        Call::Sent {
                            user,
                            channel,
                            message_type,
                            cost,
                            sent_at,
                            external_id,
                        }
                    }
                    _ => Call::Sent {
                        user: UserId(1),
                        channel: Channel::Push,
                        message_type: "low_balance".into(),
                        cost: 0.0,
                        sent_at: Some(time(0)),
                        external_id: Some(EXTERNAL_IDS[0].into()),
                    },
                }
            }
            Spec::Delivered {
                message: ref pick,
                at_ms,
            } => Call::Delivered {
                message: message(pick, send_count),
                at: Some(time(at_ms)),
            },
            Spec::Opened {
                message: ref pick,
                at_ms,
            } => Call::Opened {
                message: message(pick, send_count),
                at: Some(time(at_ms)),
            },
            Spec::Failed {
                message: ref pick,
                reason,
                at_ms,
            } => Call::Failed {
                message: message(pick, send_count),
                reason: reason.into(),
                at: Some(time(at_ms)),
            },
            Spec::Action {
                message: ref pick,
                action,
                at_ms,
            } => Call::Action {
                message: message(pick, send_count),
                action: action.into(),
                at: Some(time(at_ms)),
            },
            Spec::Outcome {
                user,
                outcome,
                amount,
                at_ms,
            } => Call::Outcome {
                user: UserId(user),
                outcome: outcome.into(),
                amount,
                at: Some(time(at_ms)),
            },
            Spec::Budget {
                scope,
                month,
                amount,
                alert_percent,
            } => Call::Budget {
                scope,
                month: month.into(),
                amount,
                alert_percent,
            },
        };
        if matches!(call, Call::Sent { .. }) {
            send_count += 1;
        }
        calls.push(call);
    }
    calls
}

/// The call through the store method it names, one at a time.
fn track_one(store: &Store, call: &Call<'_>) -> commlog::Result<Tracked> {
    match call.clone() {
        Call::Sent {
            user,
            channel,
            message_type,
            cost,
            sent_at,
            external_id,
        } => store
            .track_message_sent_with(
                user,
                channel,
                &message_type,
                cost,
                sent_at,
                external_id.as_deref(),
            )
            .map(|message| Tracked::Message(message.id)),
        Call::Delivered { message, at } => store
            .track_message_delivered(message, at)
            .map(|message| Tracked::Message(message.id)),
        Call::Opened { message, at } => store
            .track_message_opened(message, at)
            .map(|message| Tracked::Message(message.id)),
        Call::Failed {
            message,
            reason,
            at,
        } => store
            .track_message_failed(message, &reason, at)
            .map(|message| Tracked::Message(message.id)),
        Call::Action {
            message,
            action,
            at,
        } => store
            .track_user_action(message, &action, at)
            .map(|message| Tracked::Message(message.id)),
        Call::Outcome {
            user,
            outcome,
            amount,
            at,
        } => store
            .track_financial_outcome_at(user, &outcome, amount, at.expect("a fixed time"))
            .map(Tracked::Outcome),
        Call::Budget {
            scope,
            month,
            amount,
            alert_percent,
        } => store
            .set_budget(scope, &month, amount, alert_percent)
            .map(|()| Tracked::Budget),
    }
}

/// What must be the same whichever way a call was made: the message id answered, the outcome
/// recorded, or the error and its fields, but not a bound that depends on the clock at the call.
#[derive(Debug, PartialEq)]
enum Same {
    Message(MessageId),
    Outcome(commlog::FinancialOutcome),
    Budget,
    InvalidInput {
        field: &'static str,
        value: String,
        rule: Option<String>,
    },
    UnknownMessage(MessageId),
    UnknownExternalId(String),
    Conflict {
        external_id: String,
        existing: MessageId,
        field: &'static str,
    },
}

fn same(answer: &commlog::Result<Tracked>) -> Same {
    match answer {
        Ok(Tracked::Message(id)) => Same::Message(*id),
        Ok(Tracked::Outcome(outcome)) => Same::Outcome(outcome.clone()),
        Ok(Tracked::Budget) => Same::Budget,
        Err(Error::InvalidInput { field, value, rule }) => Same::InvalidInput {
            field,
            value: value.clone(),
            rule: (!rule.contains("clock")).then(|| rule.to_string()),
        },
        Err(Error::UnknownMessage { id }) => Same::UnknownMessage(*id),
        Err(Error::UnknownExternalId { external_id }) => {
            Same::UnknownExternalId(external_id.clone())
        }
        Err(Error::Conflict {
            external_id,
            existing,
            field,
        }) => Same::Conflict {
            external_id: external_id.clone(),
            existing: *existing,
            field,
        },
        Err(error) => panic!("no call of these fails so: {error:?}"),
    }
}

/// Every answer the views give about the calls.
#[derive(Debug, PartialEq)]
struct Views {
    messages: Vec<commlog::Result<commlog::Message, String>>,
    by_external_id: Vec<Option<commlog::Message>>,
    stats: Vec<commlog::CommunicationStats>,
    histories: Vec<Vec<commlog::Message>>,
    engagement: Vec<commlog::UserEngagement>,
    channels: Vec<commlog::ChannelReport>,
    costs: Vec<commlog::CostReport>,
    impact: Vec<commlog::ImpactReport>,
}

fn views(store: &Store, max_id: u64) -> Views {
    let january = Month::new(2025, 1).unwrap();
    let stats_filters = [
        StatsFilter::new(),
        StatsFilter::new().user(1),
        StatsFilter::new().channel(Channel::Sms),
        StatsFilter::new().message_type("low_balance"),
        StatsFilter::new().start(time(0)).end(time(60_000)),
    ];
    Views {
        messages: (0..=max_id + 1)
            .map(|id| store.get_message(id).map_err(|error| error.to_string()))
            .collect(),
        by_external_id: EXTERNAL_IDS
            .iter()
            .chain([&EXTERNAL_ID_UNKNOWN])
            .map(|external_id| store.message_by_external_id(external_id).unwrap())
            .collect(),
        stats: stats_filters
            .iter()
            .map(|filter| store.get_communication_stats(filter).unwrap())
            .collect(),
        histories: (1..=USERS)
            .map(|user| {
                store
                    .get_user_communication_history(user, usize::MAX)
                    .unwrap()
            })
            .collect(),
        engagement: (1..=USERS)
            .map(|user| {
                store
                    .get_user_engagement(user, &EngagementFilter::new())
                    .unwrap()
            })
            .collect(),
        channels: [
            EffectivenessFilter::new(),
            EffectivenessFilter::new().period(Period::Day).user(2),
        ]
        .iter()
        .map(|filter| store.get_channel_effectiveness(filter).unwrap())
        .collect(),
        costs: [
            CostFilter::new(),
            CostFilter::new().month(january).channel(Channel::Email),
        ]
        .iter()
        .map(|filter| store.get_cost_report(filter).unwrap())
        .collect(),
        impact: [ImpactFilter::new(), ImpactFilter::new().user(3)]
            .iter()
            .map(|filter| store.get_financial_impact(filter).unwrap())
            .collect(),
    }
}

/// Applies `calls` one at a time to store A and in batches of `sizes` (cycled) to store B,
/// comparing every answer, then every view, also after both are closed and reopened. Both are
/// also closed and reopened once before the first batch starting at or after call `reopen_at`.
/// The first size must not be 0.
fn run(
    calls: &[Call<'_>],
    sizes: &[usize],
    reopen_at: Option<usize>,
    options: Options,
) -> Result<(), TestCaseError> {
    let dir_one = tempfile::tempdir().unwrap();
    let dir_batch = tempfile::tempdir().unwrap();
    let options_one = Options {
        sync: SyncPolicy::Never,
        ..Options::default()
    };
    let mut one = Store::open_with(dir_one.path(), options_one.clone()).unwrap();
    let mut batch = Store::open_with(dir_batch.path(), options.clone()).unwrap();

    assert!(sizes[0] > 0, "batches of {sizes:?} never end");
    let mut reopened = false;
    let mut start = 0;
    for size in sizes.iter().cycle() {
        if start >= calls.len() {
            break;
        }
        if !reopened && reopen_at.is_some_and(|reopen_at| start >= reopen_at) {
            // Once, part-way: the batches go on on a replayed log.
            reopened = true;
            one.close().unwrap();
            batch.close().unwrap();
            one = Store::open_with(dir_one.path(), options_one.clone()).unwrap();
            batch = Store::open_with(dir_batch.path(), options.clone()).unwrap();
            prop_assert_eq!(batch.open_report().events, one.open_report().events);
        }
        let end = (start + size).min(calls.len());
        let answers = batch.track_batch(&calls[start..end]).unwrap();
        prop_assert_eq!(answers.len(), end - start);
        for (index, answer) in (start..end).zip(&answers) {
            let alone = track_one(&one, &calls[index]);
            prop_assert_eq!(
                same(answer),
                same(&alone),
                "call {}: {:?}, in the batch of calls {}..{}",
                index,
                &calls[index],
                start,
                end
            );
        }
        // Each message answered, read after the batch, is as the calls one at a time left it.
        for (index, answer) in (start..end).zip(&answers) {
            if let Ok(Tracked::Message(id)) = answer {
                prop_assert_eq!(
                    batch.get_message(*id).unwrap(),
                    one.get_message(*id).unwrap(),
                    "call {}, in the batch of calls {}..{}",
                    index,
                    start,
                    end
                );
            }
        }
        start = end;
    }

    let max_id = calls.len() as u64;
    let before = views(&one, max_id);
    prop_assert_eq!(&views(&batch, max_id), &before);
    one.close().unwrap();
    batch.close().unwrap();

    let one = Store::open_with(dir_one.path(), options_one).unwrap();
    let batch = Store::open_with(dir_batch.path(), options).unwrap();
    prop_assert_eq!(batch.open_report().events, one.open_report().events);
    prop_assert_eq!(&views(&one, max_id), &before, "store A after reopening");
    prop_assert_eq!(&views(&batch, max_id), &before, "store B after reopening");
    Ok(())
}

fn options_for(sync: SyncPolicy, segment_bytes: Option<u64>) -> Options {
    let defaults = Options::default();
    Options {
        sync,
        segment_bytes: segment_bytes.unwrap_or(defaults.segment_bytes),
        ..defaults
    }
}

/// Sizes of the batches, cycled: the first at least 1, so that the calls get through; now and
/// then an empty batch, and now and then one longer than a run of 64 events that a fold reads
/// ahead.
fn batch_sizes() -> impl Strategy<Value = Vec<usize>> {
    (
        1usize..40,
        prop::collection::vec(
            prop_oneof![1 => Just(0usize), 20 => 1usize..40, 4 => 65usize..160],
            0..7,
        ),
    )
        .prop_map(|(first, rest)| [vec![first], rest].concat())
}

fn sync_policy() -> impl Strategy<Value = SyncPolicy> {
    prop::sample::select(vec![
        SyncPolicy::Always,
        SyncPolicy::Never,
        SyncPolicy::Interval(std::time::Duration::from_millis(2)),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_batch_answers_and_leaves_views_as_its_calls_one_at_a_time(
        specs in prop::collection::vec(spec(), 0..160),
        sizes in batch_sizes(),
        sync in sync_policy(),
        segment_bytes in prop::option::of(300u64..=4096),
        reopen_at in prop::option::of(any::<Index>()),
    ) {
        run(&resolve(&specs), &sizes, reopen_at.map(|at| at.index(specs.len() + 1)), options_for(sync, segment_bytes))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2))]

    /// One batch of several write buffers' worth of frames: it is cut into several chunks,
    /// and the follow-ups name messages of earlier chunks. The sends without an external id
    /// get a long one of their own, so that the frames are large.
    #[test]
    fn a_batch_of_several_chunks_answers_and_leaves_views_as_its_calls_one_at_a_time(
        specs in prop::collection::vec(spec_or_send(), 12_000..13_000),
        sync in sync_policy(),
    ) {
        let long_ids: Vec<String> = (0..specs.len()).map(|index| format!("{index:0>120}")).collect();
        let calls: Vec<Call<'_>> = resolve(&specs)
            .into_iter()
            .zip(&long_ids)
            .map(|(call, long_id)| match call {
                Call::Sent { user, channel, message_type, cost, sent_at, external_id: None } => {
                    Call::Sent { user, channel, message_type, cost, sent_at, external_id: Some(long_id.as_str().into()) }
                }
                call => call,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        // The frames of the calls fill more than two write buffers.
        let store = Store::open_with(dir.path(), options_for(SyncPolicy::Never, None)).unwrap();
        drop(store.track_batch(&calls).unwrap());
        store.close().unwrap();
        let bytes: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
            .map(|entry| entry.metadata().unwrap().len())
            .sum();
        prop_assert!(bytes > 2 * 256 * 1024, "{} bytes of frames", bytes);

        run(&calls, &[calls.len()], None, options_for(sync, None))?;
    }
}

// ---------------------------------------------------------------------------------------------
// The documented behaviours of a batch as a whole.

fn open(dir: &std::path::Path, sync: SyncPolicy) -> Store {
    Store::open_with(dir, options_for(sync, None)).unwrap()
}

fn send(external_id: &str) -> Call<'_> {
    Call::Sent {
        user: UserId(7),
        channel: Channel::Push,
        message_type: "bill_reminder".into(),
        cost: 0.01,
        sent_at: Some(time(0)),
        external_id: Some(external_id.into()),
    }
}

fn message_id_of(answer: &commlog::Result<Tracked>) -> MessageId {
    match answer {
        Ok(Tracked::Message(id)) => *id,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn a_batch_answers_each_call_of_a_message_with_its_id_and_leaves_it_as_the_calls_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    let answers = store
        .track_batch(&[
            send("push-1"),
            Call::Delivered {
                message: MessageRef::from("push-1"),
                at: Some(time(1_000)),
            },
            Call::Opened {
                message: MessageRef::Id(MessageId(1)),
                at: Some(time(2_000)),
            },
            // A repeat of the send names the same message.
            send("push-1"),
        ])
        .unwrap();
    let after = store.get_message(1).unwrap();
    assert_eq!(after.status, Status::Opened);
    assert_eq!(after.delivered_at, Some(time(1_000)));
    for (index, answer) in answers.iter().enumerate() {
        assert_eq!(message_id_of(answer), after.id, "call {index}");
    }

    // A later batch goes on from where the earlier one left the message.
    let answers = store
        .track_batch(&[
            Call::Action {
                message: MessageRef::from("push-1"),
                action: "clicked_link".into(),
                at: Some(time(3_000)),
            },
            send("push-1"),
        ])
        .unwrap();
    let after = store.get_message(1).unwrap();
    assert_eq!(after.status, Status::Clicked);
    assert_eq!(message_id_of(&answers[0]), after.id);
    assert_eq!(message_id_of(&answers[1]), after.id);
}

#[test]
fn a_read_only_store_refuses_a_batch_naming_the_batch_or_its_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.track_batch(&[send("push-1")]).unwrap();
    store.close().unwrap();

    let store = Store::open_read_only(dir.path()).unwrap();
    let at = Some(time(1_000));
    let message = || MessageRef::Id(MessageId(1));
    let calls = [
        send("push-2"),
        Call::Delivered {
            message: message(),
            at,
        },
        Call::Opened {
            message: message(),
            at,
        },
        Call::Failed {
            message: message(),
            reason: "undelivered".into(),
            at,
        },
        Call::Action {
            message: message(),
            action: "clicked_link".into(),
            at,
        },
        Call::Outcome {
            user: UserId(7),
            outcome: "bill_paid_on_time".into(),
            amount: 10.0,
            at,
        },
        Call::Budget {
            scope: BudgetScope::All,
            month: "2025-01".into(),
            amount: 100.0,
            alert_percent: None,
        },
    ];
    match store.track_batch(&calls) {
        Err(Error::ReadOnly { operation }) => assert_eq!(operation, "track_batch"),
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    let methods = [
        "track_message_sent",
        "track_message_delivered",
        "track_message_opened",
        "track_message_failed",
        "track_user_action",
        "track_financial_outcome",
        "set_budget",
    ];
    for (call, method) in calls.iter().zip(methods) {
        match store.track_batch(std::slice::from_ref(call)) {
            Err(Error::ReadOnly { operation }) => assert_eq!(operation, method),
            other => panic!("{call:?}: expected ReadOnly, got {other:?}"),
        }
    }
    // The single methods are refused the same way.
    match store.track_message_delivered(1, at) {
        Err(Error::ReadOnly { operation }) => assert_eq!(operation, "track_message_delivered"),
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    assert_eq!(store.get_message(1).unwrap().status, Status::Sent);
}

#[test]
fn an_empty_batch_answers_nothing_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    assert!(store.track_batch(&[]).unwrap().is_empty());
    store.track_batch(&[send("push-1")]).unwrap();
    let stats = store.get_communication_stats(&StatsFilter::new()).unwrap();
    assert!(store.track_batch(&[]).unwrap().is_empty());
    assert_eq!(
        store.get_communication_stats(&StatsFilter::new()).unwrap(),
        stats
    );
    store.close().unwrap();

    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.open_report().events, 1);
    assert!(store.track_batch(&[]).unwrap().is_empty());
    drop(store);
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.open_report().events, 1);
}

/// Under `Always` the batch returns once its events are handed to the OS and fsynced: a
/// reader opening the store right after it, the writer still open, finds them all.
#[test]
fn under_always_every_event_of_a_batch_is_in_the_log_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    let external_ids: Vec<String> = (0..2_000).map(|index| format!("push-{index}")).collect();
    let mut calls: Vec<Call<'_>> = external_ids.iter().map(|id| send(id)).collect();
    calls.extend(external_ids.iter().map(|id| Call::Delivered {
        message: MessageRef::from(id.as_str()),
        at: Some(time(1_000)),
    }));
    calls.push(Call::Outcome {
        user: UserId(7),
        outcome: "bill_paid_on_time".into(),
        amount: 10.0,
        at: Some(time(2_000)),
    });
    calls.push(Call::Budget {
        scope: BudgetScope::Channel(Channel::Push),
        month: "2025-01".into(),
        amount: 100.0,
        alert_percent: Some(80),
    });
    let answers = store.track_batch(&calls).unwrap();
    assert!(answers.iter().all(|answer| answer.is_ok()));
    let expected = views(&store, external_ids.len() as u64);

    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.open_report().events, calls.len() as u64);
    assert_eq!(views(&reader, external_ids.len() as u64), expected);
    drop(reader);
    drop(store);

    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.open_report().events, calls.len() as u64);
    assert_eq!(views(&store, external_ids.len() as u64), expected);
}

// ---------------------------------------------------------------------------------------------
// A chunk after the first whose write fails, by a real file-size limit (`ulimit -f`, in a child
// process: `support::file_size_limit`).

const WRITE_BUFFER_BYTES: u64 = 256 * 1024;

/// The child's file-size limit, in the 512-byte blocks of `ulimit -f`: the first chunk (less
/// than a write buffer, after the segment's header) fits below it; the second does not.
const FILE_SIZE_LIMIT_BLOCKS: u64 = (WRITE_BUFFER_BYTES + 8 * 1024) / 512 + 1;

/// In the child process: true. Else runs the test `name` in a child process under the
/// file-size limit and checks it passed.
fn in_child_process(name: &str) -> bool {
    support::file_size_limit::in_child_process(name, FILE_SIZE_LIMIT_BLOCKS)
}

fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

/// Under `Always`, a batch of sends of several chunks whose second chunk's write fails part-way
/// (in the child process): the store, the sends' external ids, the answers and the index of
/// the call answered `Io`, every call before it answered `Poisoned { event_may_be_durable:
/// true }` and every call after it `Poisoned { event_may_be_durable: false }`.
fn batch_whose_second_chunk_write_fails(
    dir: &std::path::Path,
) -> (Store, Vec<String>, Vec<commlog::Result<Tracked>>, usize) {
    let store = open(dir, SyncPolicy::Always);
    let external_ids: Vec<String> = (0..20_000).map(|index| format!("batch-{index}")).collect();
    let calls: Vec<Call<'_>> = external_ids.iter().map(|id| send(id)).collect();
    let answers = store.track_batch(&calls).unwrap();
    // The write took every byte up to the limit.
    assert_eq!(log_bytes(dir), FILE_SIZE_LIMIT_BLOCKS * 512);
    let failed = answers
        .iter()
        .position(|answer| matches!(answer, Err(Error::Io { .. })))
        .expect("a write fails");
    let text = answers[failed].as_ref().unwrap_err().to_string();
    assert!(text.contains("File too large"), "{text}");
    for (index, answer) in answers.iter().enumerate() {
        if index != failed {
            match answer {
                Err(Error::Poisoned {
                    event_may_be_durable,
                    ..
                }) => assert_eq!(*event_may_be_durable, index < failed, "call {index}"),
                other => panic!("call {index}: expected Poisoned, got {other:?}"),
            }
        }
    }
    (store, external_ids, answers, failed)
}

/// The frames of the first chunk, and those of the second up to the limit, reached the OS
/// whole: their calls are in the views and, the batch's fsync never done, answered `Poisoned
/// { event_may_be_durable: true }`. The first call whose frame the write did not take whole
/// gets the I/O error; it and every call after it leave no trace in the views.
#[test]
fn a_batch_whose_second_chunk_write_fails_keeps_the_calls_whose_frames_it_took_and_nothing_after() {
    let name = "a_batch_whose_second_chunk_write_fails_keeps_the_calls_whose_frames_it_took_and_nothing_after";
    if !in_child_process(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (store, external_ids, _, failed) = batch_whose_second_chunk_write_fails(dir.path());
    assert!(
        failed > 1_000 && failed < external_ids.len() / 2,
        "the limit falls among the frames of the second chunk: {failed} calls taken whole"
    );
    for (index, external_id) in external_ids.iter().enumerate() {
        let found = store.message_by_external_id(external_id).unwrap();
        assert_eq!(found.is_some(), index < failed, "call {index}: {found:?}");
    }
    let stats = store.get_communication_stats(&StatsFilter::new()).unwrap();
    assert_eq!(stats.total_messages, failed as u64);
}

/// Docs/SEMANTICS.md: a call answered `Error::Io` or `Poisoned { event_may_be_durable: false }`
/// is absent after reopening; one answered `Poisoned { event_may_be_durable: true }` may be
/// there or not. Here its frame is with the OS, and the process did not crash: it is there.
#[test]
fn a_batch_whose_second_chunk_write_fails_leaves_nothing_after_the_frames_it_took_after_reopen() {
    let name = "a_batch_whose_second_chunk_write_fails_leaves_nothing_after_the_frames_it_took_after_reopen";
    if !in_child_process(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (store, external_ids, _, failed) = batch_whose_second_chunk_write_fails(dir.path());
    drop(store);

    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.open_report().events, failed as u64);
    for (index, external_id) in external_ids.iter().enumerate() {
        let found = store.message_by_external_id(external_id).unwrap();
        assert_eq!(
            found.is_some(),
            index < failed,
            "call {index}, taken whole: {}, after reopen: {found:?}",
            index < failed
        );
    }
}
