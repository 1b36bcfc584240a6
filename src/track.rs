//! Tracking calls: how a call is checked, becomes an event in the log, is folded into the
//! views and waits for durability, alone ([`Store::track_message_sent`] and the others) or many
//! at once ([`Store::track_batch`]), which share one write and one fsync.
//!
//! A batch is cut into chunks that fit the write buffer and the segment; a chunk's frames are
//! handed to the OS (under `SyncPolicy::Always`) before any of its events is folded, so a call
//! whose frame a failed write did not take whole leaves no trace in the views (one it took is
//! in the segment, and folded). Checks that need earlier calls of the same
//! chunk (a follow-up of a message sent just before it, a repeated external id) read them from
//! [`Unfolded`], beside the views.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::event::{
    BudgetScope, Channel, Event, LoggedEvent, MessageId, MessageRef, Month, UserId,
    validate_external_id, validate_name,
};
use crate::limits::{BUDGET_ALERT_PERCENT_DEFAULT, PRE_READ_EVENTS};
use crate::log::{Log, SyncPolicy};
use crate::message::{FinancialOutcome, Message};
use crate::money::Money;
use crate::projection::Projection;
use crate::stats::validate_user;
use crate::store::Store;
use crate::times::{check_after_sent, clock_now_ms, time_at_call};

/// One tracking call, for [`Store::track_batch`]: the arguments of the `Store` method of the
/// same name (`at` of `None`: the clock at the call). Its strings are borrowed or owned
/// (`"low_balance".into()`, `String::into()`), so a call can wait in a queue as `Call<'static>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Call<'a> {
    /// [`Store::track_message_sent_with`].
    Sent {
        /// The recipient.
        user: UserId,
        /// How it is sent.
        channel: Channel,
        /// What kind of message.
        message_type: Cow<'a, str>,
        /// What sending it cost, in dollars.
        cost: f64,
        /// When it was sent (`None`: now).
        sent_at: Option<DateTime<Utc>>,
        /// The provider's message id or the caller's idempotency key.
        external_id: Option<Cow<'a, str>>,
    },
    /// [`Store::track_message_delivered`].
    Delivered {
        /// The message.
        message: MessageRef,
        /// When.
        at: Option<DateTime<Utc>>,
    },
    /// [`Store::track_message_opened`].
    Opened {
        /// The message.
        message: MessageRef,
        /// When.
        at: Option<DateTime<Utc>>,
    },
    /// [`Store::track_message_failed`].
    Failed {
        /// The message.
        message: MessageRef,
        /// Why.
        reason: Cow<'a, str>,
        /// When.
        at: Option<DateTime<Utc>>,
    },
    /// [`Store::track_user_action`].
    Action {
        /// The message.
        message: MessageRef,
        /// What the user did.
        action: Cow<'a, str>,
        /// When.
        at: Option<DateTime<Utc>>,
    },
    /// [`Store::track_financial_outcome_at`].
    Outcome {
        /// The user.
        user: UserId,
        /// What happened.
        outcome: Cow<'a, str>,
        /// Its value in dollars (negative: a loss).
        amount: f64,
        /// When.
        at: Option<DateTime<Utc>>,
    },
    /// [`Store::set_budget`].
    Budget {
        /// Whose spend it bounds.
        scope: BudgetScope,
        /// `"YYYY-MM"`.
        month: Cow<'a, str>,
        /// Dollars, more than 0.
        amount: f64,
        /// 1 to 100; `None`: 90.
        alert_percent: Option<u8>,
    },
}

impl Call<'_> {
    /// The name of the `Store` method the call stands for (in [`Error::ReadOnly`]).
    pub fn operation(&self) -> &'static str {
        match self {
            Call::Sent { .. } => "track_message_sent",
            Call::Delivered { .. } => "track_message_delivered",
            Call::Opened { .. } => "track_message_opened",
            Call::Failed { .. } => "track_message_failed",
            Call::Action { .. } => "track_user_action",
            Call::Outcome { .. } => "track_financial_outcome",
            Call::Budget { .. } => "set_budget",
        }
    }
}

/// What a tracking call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracked {
    /// The message the call sent or named ([`Store::get_message`] gives its record: a bulk
    /// load needs the ids, and building every record would cost more than the calls).
    Message(MessageId),
    /// The outcome as recorded.
    Outcome(FinancialOutcome),
    /// The budget was set.
    Budget,
}

impl Tracked {
    /// The message a message call sent or named.
    pub fn message_id(&self) -> Option<MessageId> {
        match self {
            Tracked::Message(id) => Some(*id),
            _ => None,
        }
    }
}

/// A send appended in the current chunk and not folded yet, as a repeat of its external id
/// must compare it.
#[derive(Clone, Copy)]
struct Sent<'a> {
    user_id: UserId,
    channel: Channel,
    message_type: &'a str,
    cost: Money,
    at_ms: i64,
}

impl Sent<'_> {
    /// The first field in which a repeated send differs (its sent time only if it gave one).
    fn differs_from(&self, existing: &Sent<'_>, sent_at_given: bool) -> Option<&'static str> {
        [
            (self.user_id != existing.user_id, "user"),
            (self.channel != existing.channel, "channel"),
            (self.message_type != existing.message_type, "message_type"),
            (self.cost != existing.cost, "cost"),
            (sent_at_given && self.at_ms != existing.at_ms, "sent_at"),
        ]
        .into_iter()
        .find_map(|(differs, field)| differs.then_some(field))
    }
}

/// The sends of the current chunk, appended but not folded: the views do not know them yet.
#[derive(Default)]
struct Unfolded<'a> {
    /// The chunk's first new message id.
    first_id: u64,
    /// Each send, and where its frame ends in the write buffer.
    sent: Vec<(Sent<'a>, usize)>,
    external_ids: HashMap<&'a str, MessageId>,
}

/// A call of the current chunk whose answer waits for the chunk's frames to reach the OS.
struct Pending<'a> {
    /// The call's place in the batch.
    index: usize,
    /// Its event; `None` for a repeated send of a message the chunk sent.
    event: Option<LoggedEvent<'a>>,
    /// Where the frame it stands on ends in the write buffer: its own, or the repeated send's.
    frame_end: usize,
}

impl<'a> Unfolded<'a> {
    fn clear(&mut self, next_message_id: u64) {
        self.first_id = next_message_id;
        self.sent.clear();
        self.external_ids.clear();
    }

    fn sent(&self, id: MessageId) -> Option<&(Sent<'a>, usize)> {
        let index = usize::try_from(id.0.checked_sub(self.first_id)?).ok()?;
        self.sent.get(index)
    }
}

/// The state a call is checked against: the views, and the chunk not folded yet.
struct Known<'p, 'a> {
    projection: &'p Projection,
    unfolded: &'p Unfolded<'a>,
}

impl<'a> Known<'_, 'a> {
    fn message_id(&self, message: &MessageRef, log: &Log) -> Result<MessageId> {
        let id = match message {
            MessageRef::Id(id) => *id,
            MessageRef::External(external_id) => {
                validate_external_id(external_id)?;
                self.projection
                    .message_id_of_external(external_id)
                    .or_else(|| {
                        self.unfolded
                            .external_ids
                            .get(external_id.as_str())
                            .copied()
                    })
                    .ok_or_else(|| Error::UnknownExternalId {
                        external_id: external_id.clone(),
                    })?
            }
        };
        if id.0 == 0 || id.0 >= log.next_message_id() {
            return Err(Error::UnknownMessage { id });
        }
        Ok(id)
    }

    fn sent_ms(&self, id: MessageId) -> Result<i64> {
        self.projection
            .sent_ms(id)
            .or_else(|| self.unfolded.sent(id).map(|(sent, _)| sent.at_ms))
            .ok_or(Error::UnknownMessage { id })
    }

    /// The message an external id already names, and the first field in which `sent`
    /// differs from its send (its sent time only if the call gave one).
    fn repeat_of(
        &self,
        external_id: &str,
        sent: &Sent<'_>,
        sent_at_given: bool,
    ) -> Option<(MessageId, Option<&'static str>)> {
        if let Some(id) = self.projection.message_id_of_external(external_id) {
            let message = self.projection.message(id).expect("an indexed message");
            let earlier = Sent {
                user_id: message.user_id,
                channel: message.channel,
                message_type: &message.message_type,
                cost: message.cost,
                at_ms: message.sent_at.timestamp_millis(),
            };
            return Some((id, sent.differs_from(&earlier, sent_at_given)));
        }
        let id = *self.unfolded.external_ids.get(external_id)?;
        let (earlier, _) = self.unfolded.sent(id).expect("a send of the chunk");
        Some((id, sent.differs_from(earlier, sent_at_given)))
    }
}

/// What a call becomes: an event to append, or (a repeated send) the message it names.
enum Prepared<'a> {
    Append { event: Event<'a>, clock_ms: i64 },
    Existing(MessageId),
}

/// Checks `call` against everything appended before it and builds its event.
fn prepare<'c>(call: &'c Call<'_>, log: &Log, known: &Known<'_, 'c>) -> Result<Prepared<'c>> {
    let follow_up = |message: &MessageRef,
                     at: Option<DateTime<Utc>>,
                     make: &dyn Fn(MessageId, i64) -> Event<'c>| {
        let message_id = known.message_id(message, log)?;
        let (at_ms, clock_ms) = time_at_call("at", at)?;
        check_after_sent("at", at_ms, known.sent_ms(message_id)?)?;
        Ok(Prepared::Append {
            event: make(message_id, at_ms),
            clock_ms,
        })
    };
    // A follow-up that names something (a failure's reason, an action).
    let named = |message: &MessageRef,
                 field: &'static str,
                 name: &'c str,
                 at: Option<DateTime<Utc>>,
                 make: &dyn Fn(MessageId, &'c str, i64) -> Event<'c>| {
        validate_name(field, name)?;
        follow_up(message, at, &|message_id, at_ms| {
            make(message_id, name, at_ms)
        })
    };
    match call {
        Call::Sent {
            user,
            channel,
            message_type,
            cost,
            sent_at,
            external_id,
        } => {
            let (channel, cost, sent_at) = (*channel, *cost, *sent_at);
            let user_id = validate_user(*user)?;
            validate_name("message_type", message_type)?;
            let external_id = external_id.as_deref();
            if let Some(external_id) = external_id {
                validate_external_id(external_id)?;
            }
            let cost = Money::cost_from_dollars(cost)?;
            let (at_ms, clock_ms) = time_at_call("sent_at", sent_at)?;
            let sent = Sent {
                user_id,
                channel,
                message_type,
                cost,
                at_ms,
            };
            if let Some(external_id) = external_id
                && let Some((existing, differs)) =
                    known.repeat_of(external_id, &sent, sent_at.is_some())
            {
                return match differs {
                    Some(field) => Err(Error::Conflict {
                        external_id: external_id.to_string(),
                        existing,
                        field,
                    }),
                    None => Ok(Prepared::Existing(existing)),
                };
            }
            Ok(Prepared::Append {
                event: Event::MessageSent {
                    message_id: MessageId(log.next_message_id()),
                    user_id,
                    channel,
                    message_type,
                    cost,
                    at_ms,
                    external_id,
                },
                clock_ms,
            })
        }
        Call::Delivered { message, at } => follow_up(message, *at, &|message_id, at_ms| {
            Event::MessageDelivered { message_id, at_ms }
        }),
        Call::Opened { message, at } => follow_up(message, *at, &|message_id, at_ms| {
            Event::MessageOpened { message_id, at_ms }
        }),
        Call::Failed {
            message,
            reason,
            at,
        } => named(
            message,
            "reason",
            reason,
            *at,
            &|message_id, reason, at_ms| Event::MessageFailed {
                message_id,
                reason,
                at_ms,
            },
        ),
        Call::Action {
            message,
            action,
            at,
        } => named(
            message,
            "action",
            action,
            *at,
            &|message_id, action, at_ms| Event::UserAction {
                message_id,
                action,
                at_ms,
            },
        ),
        Call::Outcome {
            user,
            outcome,
            amount,
            at,
        } => {
            let user_id = validate_user(*user)?;
            validate_name("outcome", outcome)?;
            let amount = Money::from_dollars_for("amount", *amount)?;
            let (at_ms, clock_ms) = time_at_call("at", *at)?;
            Ok(Prepared::Append {
                event: Event::FinancialOutcome {
                    user_id,
                    outcome,
                    amount,
                    at_ms,
                },
                clock_ms,
            })
        }
        Call::Budget {
            scope,
            month,
            amount,
            alert_percent,
        } => {
            let (amount, month) = (*amount, month.parse::<Month>()?);
            if amount.is_nan() || amount <= 0.0 {
                return Err(Error::invalid(
                    "amount",
                    amount,
                    "a budget must be more than zero",
                ));
            }
            let amount = Money::from_dollars_for("amount", amount)?;
            if amount.micros() <= 0 {
                return Err(Error::invalid(
                    "amount",
                    amount.dollars(),
                    "a budget must be at least one micro-dollar",
                ));
            }
            let alert_percent = alert_percent.unwrap_or(BUDGET_ALERT_PERCENT_DEFAULT);
            if !(1..=100).contains(&alert_percent) {
                return Err(Error::invalid(
                    "alert_percent",
                    alert_percent,
                    "must be 1 to 100",
                ));
            }
            let at_ms = clock_now_ms();
            Ok(Prepared::Append {
                event: Event::BudgetSet {
                    scope: *scope,
                    month,
                    amount,
                    alert_percent,
                    at_ms,
                },
                clock_ms: at_ms,
            })
        }
    }
}

impl Store {
    /// Applies `calls` in order, as the `Store` methods they name would one after the other,
    /// and returns each call's answer or error: a call that fails (bad input, an unknown
    /// message, a conflict) does not stop the ones after it.
    ///
    /// The calls share the log's lock, its writes and, under `SyncPolicy::Always`, one fsync
    /// at the end: the batch returns once every appended event is durable, so it is much faster
    /// than the calls one by one. A message call answers with the message's id.
    /// Fails as a whole only when no call could be tried: the store is read-only
    /// ([`Error::ReadOnly`]) or poisoned ([`Error::Poisoned`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = commlog::Store::open(dir.path())?;
    /// use commlog::{Call, Channel, MessageRef, Tracked};
    /// let answers = store.track_batch(&[
    ///     Call::Sent { user: 7.into(), channel: Channel::Push, message_type: "bill_reminder".into(),
    ///                  cost: 0.0, sent_at: None, external_id: Some("push-1".into()) },
    ///     Call::Delivered { message: MessageRef::from("push-1"), at: None },
    ///     Call::Opened { message: MessageRef::from(999), at: None },
    /// ])?;
    /// let Ok(Tracked::Message(id)) = answers[0] else { panic!() };
    /// assert_eq!(store.get_message(id)?.status, commlog::Status::Delivered);
    /// assert!(matches!(answers[2], Err(commlog::Error::UnknownMessage { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn track_batch(&self, calls: &[Call<'_>]) -> Result<Vec<Result<Tracked>>> {
        let operation = match calls {
            [call] => call.operation(),
            _ => "track_batch",
        };
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly { operation })?;
        let mut answers: Vec<Result<Tracked>> = Vec::with_capacity(calls.len());
        let mut appended: Option<u64> = None;
        let mut answered_existing = false;
        let last_seq = {
            let mut log = writer.log.lock();
            // First: after a failed write the log may have assigned ids the views never saw.
            log.check_poison()?;
            let mut chunk: Vec<Pending<'_>> = Vec::new();
            let mut unfolded = Unfolded::default();
            unfolded.clear(log.next_message_id());
            let mut projection = self.projection.read();
            for (index, call) in calls.iter().enumerate() {
                if !chunk.is_empty() && !log.has_room_for_frame_unwritten() {
                    drop(projection);
                    self.fold_chunk(&mut log, writer.policy, &mut chunk, &mut answers);
                    unfolded.clear(log.next_message_id());
                    projection = self.projection.read();
                }
                // A failed write poisons the log, and may have taken ids the views never saw.
                if let Err(error) = log.check_poison() {
                    answers.push(Err(error));
                    continue;
                }
                let known = Known {
                    projection: &projection,
                    unfolded: &unfolded,
                };
                let answer = prepare(call, &log, &known).and_then(|prepared| match prepared {
                    Prepared::Existing(id) => {
                        match unfolded.sent(id) {
                            // Sent earlier in this chunk: answered once that send's frame is.
                            Some(&(_, frame_end)) => chunk.push(Pending {
                                index,
                                event: None,
                                frame_end,
                            }),
                            None => answered_existing = true,
                        }
                        Ok(Tracked::Message(id))
                    }
                    Prepared::Append { event, clock_ms } => {
                        let logged = log.append(event, clock_ms)?;
                        let frame_end = log.buffered_bytes();
                        let answer = match logged.event {
                            Event::MessageSent {
                                message_id,
                                user_id,
                                channel,
                                message_type,
                                cost,
                                at_ms,
                                external_id,
                            } => {
                                let sent = Sent {
                                    user_id,
                                    channel,
                                    message_type,
                                    cost,
                                    at_ms,
                                };
                                // Only a later call of the batch can name it.
                                if index + 1 < calls.len() {
                                    unfolded.sent.push((sent, frame_end));
                                    if let Some(external_id) = external_id {
                                        unfolded.external_ids.insert(external_id, message_id);
                                    }
                                }
                                Tracked::Message(message_id)
                            }
                            // Replaced by the outcome as folded, in fold_chunk.
                            Event::FinancialOutcome { .. } => Tracked::Budget,
                            Event::BudgetSet { .. } => Tracked::Budget,
                            ref event => Tracked::Message(
                                event.message_id().expect("a follow-up names its message"),
                            ),
                        };
                        appended = Some(logged.seq);
                        chunk.push(Pending {
                            index,
                            event: Some(logged),
                            frame_end,
                        });
                        Ok(answer)
                    }
                });
                answers.push(answer);
            }
            drop(projection);
            if !chunk.is_empty() {
                self.fold_chunk(&mut log, writer.policy, &mut chunk, &mut answers);
            }
            log.last_seq()
        };
        if let Some((wake, _)) = &writer.snapshotter
            && writer.snapshots.is_due(last_seq)
        {
            // Already awake (writing one) if the channel is full.
            let _ = wake.try_send(());
        }
        // Durable as the policy promises: what this batch appended, and for a repeated send
        // everything folded before it.
        let wait_for = if answered_existing {
            Some(last_seq)
        } else {
            appended
        };
        if writer.policy == SyncPolicy::Always
            && let Some(seq) = wait_for
            && let Err(error) = writer.log.sync_to(seq)
        {
            // The events are in the views and with the OS, but their fsync failed: they may or
            // may not be on disk, and the store is poisoned.
            let first = match error {
                Error::Poisoned { first, .. } => first,
                error => error.to_string(),
            };
            for answer in answers.iter_mut().filter(|answer| answer.is_ok()) {
                *answer = Err(Error::Poisoned {
                    first: first.clone(),
                    event_may_be_durable: true,
                });
            }
        }
        Ok(answers)
    }

    /// One call: [`Store::track_batch`] of it.
    pub(crate) fn track_one(&self, call: Call<'_>) -> Result<Tracked> {
        self.track_batch(std::slice::from_ref(&call))?
            .pop()
            .expect("one answer per call")
    }

    /// One message call, answered with the message as it now stands.
    pub(crate) fn track_message(&self, call: Call<'_>) -> Result<Message> {
        let id = self.track_one(call)?.message_id();
        self.get_message(id.expect("a message call answers with its message"))
    }

    /// Hands the chunk's frames to the OS (under `Always`, or when the buffer is full), then
    /// folds its events. If the write fails part-way, the calls whose frames reached the OS
    /// whole are folded and answered `Poisoned { event_may_be_durable: true }` (the segment holds
    /// them, unsynced); of the others, none is folded: the first returns the I/O error, the
    /// rest `Poisoned { event_may_be_durable: false }`.
    fn fold_chunk<'a>(
        &self,
        log: &mut Log,
        policy: SyncPolicy,
        chunk: &mut Vec<Pending<'a>>,
        answers: &mut [Result<Tracked>],
    ) {
        let (written, mut error) =
            if policy == SyncPolicy::Always || !log.has_room_for_frame_unwritten() {
                match log.write_buffer_counted() {
                    Ok(()) => (usize::MAX, None),
                    Err(failed) => (failed.written, Some(failed.error)),
                }
            } else {
                (usize::MAX, None)
            };
        let first = error.as_ref().map(Error::to_string);
        let poisoned = |event_may_be_durable| Error::Poisoned {
            first: first.clone().unwrap_or_default(),
            event_may_be_durable,
        };
        let mut projection = self.projection.write();
        for run in chunk.chunks(PRE_READ_EVENTS) {
            // Many calls: one tight pass of independent reads of what folding them reads first,
            // whose cache misses overlap, then the folds, which find that memory in cache (as
            // replay does). A lone call's fold reads it at once anyway.
            if run.len() > 1 {
                let read = run
                    .iter()
                    .filter_map(|pending| pending.event.as_ref())
                    .fold(0u64, |read, logged| read ^ projection.pre_read(logged));
                std::hint::black_box(read);
            }
            for pending in run {
                if pending.frame_end > written {
                    answers[pending.index] = Err(error.take().unwrap_or_else(|| poisoned(false)));
                    continue;
                }
                if let Some(logged) = &pending.event {
                    projection.fold(logged);
                    if let Event::FinancialOutcome { .. } = logged.event {
                        let index = projection.outcome_count() - 1;
                        let outcome = projection.outcome(index).expect("just folded");
                        answers[pending.index] = Ok(Tracked::Outcome(outcome));
                    }
                }
                if first.is_some() {
                    answers[pending.index] = Err(poisoned(true));
                }
            }
        }
        chunk.clear();
    }
}
