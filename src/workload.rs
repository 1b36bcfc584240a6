//! The reference workload "mingus-30d" (docs/WORKLOAD.md), exact down to the random
//! generator, so that its counts can be checked: the calls a service would make, and the
//! reference queries' picks.
//!
//! The test vectors of docs/WORKLOAD.md:
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use commlog::workload::{Call, Generator, QueryPicks, SplitMix64, Spec};
//! use commlog::{Channel, MessageId, UserId};
//!
//! let mut random = SplitMix64::new(42);
//! let first: Vec<u64> = (0..3).map(|_| random.next_u64()).collect();
//! assert_eq!(first, [0xBDD7_3226_2FEB_6E95, 0x28EF_E333_B266_F103, 0x4752_6757_130F_9F52]);
//!
//! let calls: Vec<Call> = Generator::calls(Spec::default()).take(9).collect();
//! assert_eq!(calls[0], Call::Sent {
//!     message: MessageId(1),
//!     user: UserId(5414),
//!     channel: Channel::Email,
//!     message_type: "bill_reminder",
//!     cost: 0.001,
//!     at_ms: 1_735_689_601_620,
//! });
//! assert_eq!(calls[6], Call::Action {
//!     message: MessageId(2),
//!     action: "viewed_forecast",
//!     at_ms: 1_735_755_727_743,
//! });
//! assert_eq!(calls[8], Call::Delivered { message: MessageId(3), at_ms: 1_735_689_609_323 });
//!
//! let picks = QueryPicks::new(Spec::default());
//! assert_eq!(picks.q2_users[..3], [UserId(4645), UserId(211), UserId(1011)]);
//! assert_eq!(picks.q4_users[..3], [UserId(8949), UserId(580), UserId(4556)]);
//! let q3 = &picks.q3_filters[0];
//! assert_eq!((q3.user, q3.message_type.as_deref(), q3.channel),
//!            (Some(UserId(1576)), Some("upgrade_offer"), Some(Channel::InApp)));
//! let q5 = &picks.q5_filters[0];
//! assert_eq!(q5.channel, Some(Channel::Sms));
//! assert_eq!(q5.start, Some(Utc.with_ymd_and_hms(2025, 1, 13, 5, 28, 12).unwrap()
//!     + chrono::Duration::milliseconds(613)));
//! assert_eq!(q5.end, Some(Utc.with_ymd_and_hms(2025, 1, 20, 5, 28, 12).unwrap()
//!     + chrono::Duration::milliseconds(613)));
//! ```

use chrono::{DateTime, Utc};

use crate::event::{Channel, MessageId, UserId};
use crate::message::time_from_ms;
use crate::stats::StatsFilter;

/// 2025-01-01T00:00:00Z in ms.
pub const START_MS: i64 = 1_735_689_600_000;
/// Thirty days in ms.
pub const SPAN_MS: i64 = 30 * DAY_MS;
const DAY_MS: i64 = 86_400_000;

/// The message types, in draw order.
pub const MESSAGE_TYPES: [&str; 8] = [
    "low_balance",
    "weekly_checkin",
    "bill_reminder",
    "savings_nudge",
    "budget_alert",
    "monthly_report",
    "security_alert",
    "upgrade_offer",
];
/// The user actions, in draw order.
pub const ACTIONS: [&str; 4] = [
    "viewed_forecast",
    "updated_budget",
    "clicked_link",
    "paid_bill",
];
/// The financial outcomes, in draw order.
pub const OUTCOMES: [&str; 7] = [
    "bill_paid_on_time",
    "late_fee_avoided",
    "savings_goal_achieved",
    "subscription_upgraded",
    "career_advancement",
    "budget_improved",
    "emergency_fund_built",
];
/// The channels of the query picks, in draw order.
pub const QUERY_CHANNELS: [Channel; 4] =
    [Channel::Email, Channel::Sms, Channel::Push, Channel::InApp];

/// SplitMix64, as the workload specifies it.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with `state = seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `lo + next() % (hi - lo + 1)`: inclusive bounds.
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `(next() >> 11) * 2^-53`, in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The workload's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spec {
    /// Seed of the call generator (default 42).
    pub seed: u64,
    /// Users drawn from 1..=users (default 10,000).
    pub users: u64,
    /// Messages generated (default 1,000,000).
    pub messages: u64,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            seed: 42,
            users: 10_000,
            messages: 1_000_000,
        }
    }
}

/// One tracking call of the workload. `message` is the 1-based message number, which is the
/// message's id in a store that was empty when the workload started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call {
    /// `track_message_sent_at`.
    Sent {
        /// The message number.
        message: MessageId,
        /// Recipient.
        user: UserId,
        /// Channel.
        channel: Channel,
        /// Message type.
        message_type: &'static str,
        /// Cost in dollars.
        cost: f64,
        /// Sent time, ms.
        at_ms: i64,
    },
    /// `track_message_delivered`.
    Delivered {
        /// The message number.
        message: MessageId,
        /// Time, ms.
        at_ms: i64,
    },
    /// `track_message_opened`.
    Opened {
        /// The message number.
        message: MessageId,
        /// Time, ms.
        at_ms: i64,
    },
    /// `track_user_action`.
    Action {
        /// The message number.
        message: MessageId,
        /// The action.
        action: &'static str,
        /// Time, ms.
        at_ms: i64,
    },
    /// `track_financial_outcome_at`.
    Outcome {
        /// The user.
        user: UserId,
        /// The outcome.
        outcome: &'static str,
        /// Amount in dollars (whole cents).
        amount: f64,
        /// Time, ms.
        at_ms: i64,
    },
}

impl Call {
    /// The store's tracking call, for [`crate::Store::track_batch`] (on a store that started
    /// empty, as [`apply`] needs).
    pub fn tracking_call(&self) -> crate::Call<'static> {
        let at = Some(self.at());
        match *self {
            Call::Sent {
                user,
                channel,
                message_type,
                cost,
                ..
            } => crate::Call::Sent {
                user,
                channel,
                message_type: message_type.into(),
                cost,
                sent_at: at,
                external_id: None,
            },
            Call::Delivered { message, .. } => crate::Call::Delivered {
                message: message.into(),
                at,
            },
            Call::Opened { message, .. } => crate::Call::Opened {
                message: message.into(),
                at,
            },
            Call::Action {
                message, action, ..
            } => crate::Call::Action {
                message: message.into(),
                action: action.into(),
                at,
            },
            Call::Outcome {
                user,
                outcome,
                amount,
                ..
            } => crate::Call::Outcome {
                user,
                outcome: outcome.into(),
                amount,
                at,
            },
        }
    }

    /// The call's time as a `DateTime<Utc>`.
    pub fn at(&self) -> DateTime<Utc> {
        match *self {
            Call::Sent { at_ms, .. }
            | Call::Delivered { at_ms, .. }
            | Call::Opened { at_ms, .. }
            | Call::Action { at_ms, .. }
            | Call::Outcome { at_ms, .. } => time_from_ms(at_ms),
        }
    }
}

/// Generates the workload's calls, one message (and its follow-up calls) at a time.
#[derive(Debug, Clone)]
pub struct Generator {
    spec: Spec,
    random: SplitMix64,
    next_index: u64,
}

impl Generator {
    /// A generator at the first message.
    pub fn new(spec: Spec) -> Generator {
        assert!(
            spec.users >= 1 && spec.messages >= 1,
            "a workload has users and messages"
        );
        Generator {
            spec,
            random: SplitMix64::new(spec.seed),
            next_index: 0,
        }
    }

    /// Appends the next message's calls to `calls`, in order; false when all are generated.
    pub fn next_message(&mut self, calls: &mut Vec<Call>) -> bool {
        let index = self.next_index;
        if index >= self.spec.messages {
            return false;
        }
        self.next_index += 1;
        let random = &mut self.random;
        let message = MessageId(index + 1);
        let slot_ms = (SPAN_MS as u64 / self.spec.messages).max(1);
        let user = UserId(random.int(1, self.spec.users));
        let u = random.unit();
        let channel = if u < 0.50 {
            Channel::Email
        } else if u < 0.85 {
            Channel::Sms
        } else if u < 0.95 {
            Channel::Push
        } else {
            Channel::InApp
        };
        let message_type = MESSAGE_TYPES[random.int(0, 7) as usize];
        let offset_ms =
            (u128::from(index) * SPAN_MS as u128 / u128::from(self.spec.messages)) as i64;
        let sent_ms = START_MS + offset_ms + random.int(0, slot_ms - 1) as i64;
        let cost = match channel {
            Channel::Email => 0.001,
            Channel::Sms => 0.05,
            Channel::Push | Channel::InApp => 0.0,
        };
        calls.push(Call::Sent {
            message,
            user,
            channel,
            message_type,
            cost,
            at_ms: sent_ms,
        });
        let mut last_ms = sent_ms;
        if random.unit() < 0.95 {
            let delivered_ms = sent_ms + random.int(1_000, 120_000) as i64;
            calls.push(Call::Delivered {
                message,
                at_ms: delivered_ms,
            });
            last_ms = delivered_ms;
            if channel != Channel::Sms && random.unit() < 0.40 {
                let opened_ms = delivered_ms + random.int(60_000, 172_800_000) as i64;
                calls.push(Call::Opened {
                    message,
                    at_ms: opened_ms,
                });
                last_ms = opened_ms;
            }
            if random.unit() < 0.10 {
                let action = ACTIONS[random.int(0, 3) as usize];
                let action_ms = last_ms + random.int(10_000, 3_600_000) as i64;
                calls.push(Call::Action {
                    message,
                    action,
                    at_ms: action_ms,
                });
                last_ms = action_ms;
            }
        }
        if random.unit() < 0.02 {
            let outcome = OUTCOMES[random.int(0, 6) as usize];
            let cents = random.int(500, 50_000);
            calls.push(Call::Outcome {
                user,
                outcome,
                amount: cents as f64 / 100.0,
                at_ms: last_ms,
            });
        }
        true
    }

    /// Every call of the workload, in order.
    pub fn calls(spec: Spec) -> impl Iterator<Item = Call> {
        let mut generator = Generator::new(spec);
        let mut batch = Vec::new();
        let mut position = 0;
        std::iter::from_fn(move || {
            if position == batch.len() {
                batch.clear();
                position = 0;
                if !generator.next_message(&mut batch) {
                    return None;
                }
            }
            position += 1;
            Some(batch[position - 1])
        })
    }
}

/// The reference queries' picks (Q1 has none: it is the empty filter, run 100 times).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPicks {
    /// Q2: stats for one user.
    pub q2_users: Vec<UserId>,
    /// Q3: stats for user + message type + channel + 7-day window.
    pub q3_filters: Vec<StatsFilter>,
    /// Q4: history of one user, limit 50.
    pub q4_users: Vec<UserId>,
    /// Q5: stats for channel + 7-day window, all users.
    pub q5_filters: Vec<StatsFilter>,
}

/// Q4's history limit.
pub const Q4_LIMIT: usize = 50;
/// How many times Q1 runs.
pub const Q1_REPEATS: usize = 100;

impl QueryPicks {
    /// Draws the picks from SplitMix64 with state `seed ^ 0xA5A5A5A5A5A5A5A5`, in the
    /// workload's order.
    pub fn new(spec: Spec) -> QueryPicks {
        let mut random = SplitMix64::new(spec.seed ^ 0xA5A5_A5A5_A5A5_A5A5);
        let window = |random: &mut SplitMix64, filter: StatsFilter| {
            let start_ms = START_MS + random.int(0, 23 * DAY_MS as u64) as i64;
            filter
                .start(time_from_ms(start_ms))
                .end(time_from_ms(start_ms + 7 * DAY_MS))
        };
        let q2_users = (0..1000)
            .map(|_| UserId(random.int(1, spec.users)))
            .collect();
        let q3_filters = (0..1000)
            .map(|_| {
                let user = random.int(1, spec.users);
                let message_type = MESSAGE_TYPES[random.int(0, 7) as usize];
                let channel = QUERY_CHANNELS[random.int(0, 3) as usize];
                window(
                    &mut random,
                    StatsFilter::new()
                        .user(user)
                        .message_type(message_type)
                        .channel(channel),
                )
            })
            .collect();
        let q4_users = (0..1000)
            .map(|_| UserId(random.int(1, spec.users)))
            .collect();
        let q5_filters = (0..100)
            .map(|_| {
                let channel = QUERY_CHANNELS[random.int(0, 3) as usize];
                window(&mut random, StatsFilter::new().channel(channel))
            })
            .collect();
        QueryPicks {
            q2_users,
            q3_filters,
            q4_users,
            q5_filters,
        }
    }
}

/// Applies one message's calls (as [`Generator::next_message`] gives them) to `store`, in
/// order, using the id the store assigns to the message for its follow-up calls: this works
/// on any store and from any number of threads.
pub fn apply_message(store: &crate::Store, calls: &[Call]) -> crate::Result<()> {
    let mut id = None;
    for call in calls {
        let call = match *call {
            Call::Sent {
                user,
                channel,
                message_type,
                cost,
                ..
            } => {
                id = Some(
                    store
                        .track_message_sent_at(user, channel, message_type, cost, call.at())?
                        .id,
                );
                continue;
            }
            Call::Delivered { at_ms, .. } => Call::Delivered {
                message: id.expect("sent first"),
                at_ms,
            },
            Call::Opened { at_ms, .. } => Call::Opened {
                message: id.expect("sent first"),
                at_ms,
            },
            Call::Action { action, at_ms, .. } => Call::Action {
                message: id.expect("sent first"),
                action,
                at_ms,
            },
            outcome @ Call::Outcome { .. } => outcome,
        };
        apply(store, &call)?;
    }
    Ok(())
}

/// Applies `calls` to `store` in one [`crate::Store::track_batch`], and returns the first
/// call's error if any; the message numbers must be the store's ids (an empty store).
pub fn apply_batch(store: &crate::Store, calls: &[crate::Call<'_>]) -> crate::Result<()> {
    for answer in store.track_batch(calls)? {
        answer?;
    }
    Ok(())
}

/// Applies one call to `store`; the message numbers must be the store's ids (an empty store).
pub fn apply(store: &crate::Store, call: &Call) -> crate::Result<()> {
    match *call {
        Call::Sent {
            message,
            user,
            channel,
            message_type,
            cost,
            ..
        } => {
            let sent = store.track_message_sent_at(user, channel, message_type, cost, call.at())?;
            debug_assert_eq!(sent.id, message, "the workload starts on an empty store");
        }
        Call::Delivered { message, .. } => {
            store.track_message_delivered(message, Some(call.at()))?;
        }
        Call::Opened { message, .. } => {
            store.track_message_opened(message, Some(call.at()))?;
        }
        Call::Action {
            message, action, ..
        } => {
            store.track_user_action(message, action, Some(call.at()))?;
        }
        Call::Outcome {
            user,
            outcome,
            amount,
            ..
        } => {
            store.track_financial_outcome_at(user, outcome, amount, call.at())?;
        }
    }
    Ok(())
}
