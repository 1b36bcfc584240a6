//! Views folded from the events, and the queries they answer. Views never read the clock:
//! everything here is a function of the events folded so far, in log order.
//!
//! This file holds [`Projection`] (the facts and the indexes built over them on first use),
//! [`Facts`] and the fold. The methods of both live with the concept they serve:
//!
//! - `status.rs`: one message's state; a message by id or external id.
//! - `outcome.rs`: one outcome's record; an outcome by index.
//! - `user_lists.rs`: each user's sorted messages and outcomes; a user's history.
//! - `selection.rs`: which messages a query takes, visited one by one or counted.
//! - `stats.rs`, `engagement.rs`, `channel.rs`, `cost.rs`, `impact.rs`: one report each.
//! - `attribution.rs`: the attribution rule, and the outcome credits kept current.
//! - `rollup.rs`, `time_index.rs`: the message counts by time, and the time buckets beneath.
//! - `totals.rs`: the counts and sums over all time, which need no index over time.
//! - `names.rs`, `id_map.rs`: interned names; the hash map keyed by ids, and rows by id.
//!
//! Readers see [`Facts`] through `Deref` on [`Projection`], so that only the fold can write the
//! facts and the built indexes that must follow them.

pub(crate) mod attribution;
pub(crate) mod capture;
pub(crate) mod channel;
pub(crate) mod cost;
pub(crate) mod engagement;
pub(crate) mod id_map;
pub(crate) mod impact;
pub(crate) mod message_table;
pub(crate) mod names;
pub(crate) mod outcome;
pub(crate) mod rollup;
pub(crate) mod selection;
pub(crate) mod stats;
pub(crate) mod status;
pub(crate) mod time_index;
pub(crate) mod totals;
pub(crate) mod user_lists;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::OnceLock;

use crate::event::{BudgetScope, Event, LoggedEvent, MessageId, Month};
use crate::log::summary::LogSummary;
use attribution::{Credits, Touches};
use id_map::IdMap;
use message_table::{MessageTable, ReadyChunks};
use names::Names;
use outcome::OutcomeState;
use rollup::MessageRollup;
use status::MessageState;
use time_index::MappedItems;
use totals::{MessageTotals, Totals};
use user_lists::{UserEntries, UserTable};

/// A budget as the last `BudgetSet` for its scope and month set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub(crate) struct BudgetState {
    pub amount_micros: i64,
    pub alert_percent: u8,
}

/// The views: the facts folded from the events, and the indexes built over them on first use.
/// Readers see the facts through `Deref`; the fold writes them and keeps the built indexes
/// current.
#[derive(Debug)]
pub(crate) struct Projection {
    facts: Facts,
    /// Time-bucketed message counts for the views over all users; built on first use, then
    /// kept current.
    rollup: OnceLock<MessageRollup>,
    /// Each outcome's credit, and time-bucketed outcome sums; built on first use, then kept
    /// current.
    credits: OnceLock<Credits>,
    /// Every message's counts and every outcome's sums, over all time; built on first use (or
    /// as a snapshot's records were checked), then kept current.
    totals: OnceLock<Totals>,
    /// The facts at a log position, while a snapshot of them is written.
    capture: Option<capture::Capture>,
    /// The events folded: the log's summary, but for those up to `log_summary_missing_through`.
    log_summary: LogSummary,
    /// The last seq of the events `log_summary` leaves out: those a snapshot without a summary
    /// covered (0: none; `Store::log_summary` counts them from the log when asked).
    log_summary_missing_through: u64,
}

/// How far [`Projection::mapped_rest`] has gone: past the messages' chunks before `chunk`,
/// the users' places before `place`, and the first `slice` of `slices`, the message rollup's
/// slices whose items were still mapped once the facts were done.
#[derive(Debug, Default)]
pub(crate) struct DecodeCursor {
    chunk: usize,
    place: usize,
    slices: Option<Vec<i64>>,
    slice: usize,
}

/// Messages' chunks, users' lists and the message rollup's slices' items still in a mapped
/// snapshot ([`Projection::mapped_rest`]).
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    chunks: Vec<message_table::MappedChunk>,
    lists: Vec<user_lists::MappedLists>,
    items: Vec<(i64, MappedItems)>,
}

/// What [`Mapped::decode`] decoded, in the same order.
#[derive(Debug)]
pub(crate) struct Decoded {
    chunks: Vec<Vec<MessageState>>,
    lists: Vec<UserEntries>,
    items: Vec<Vec<u32>>,
}

impl Mapped {
    /// Decodes every chunk, user's lists and slice's items, after checking that their bytes
    /// hash as they did at load.
    pub(crate) fn decode(&self) -> Decoded {
        Decoded {
            chunks: self.chunks.iter().map(|chunk| chunk.decode()).collect(),
            lists: self.lists.iter().map(|lists| lists.decode()).collect(),
            items: (self.items.iter())
                .map(|(_, items)| items.decode())
                .collect(),
        }
    }
}

/// Chunks of messages' records [`Facts::mapped_ahead`] takes at a time: 4,096 records,
/// decoded in about a hundred microseconds.
const DECODE_AHEAD_CHUNKS: usize = 16;

/// Users' lists [`Facts::mapped_ahead`] takes at a time, once the messages are done: about as
/// many bytes as its chunks.
const DECODE_AHEAD_USERS: usize = 256;

/// Items of the message rollup's slices [`Projection::mapped_rest`] takes at a time, once the
/// facts are done (at least one slice's): 256 KiB of them.
const DECODE_AHEAD_ITEMS: usize = 65_536;

/// Chunks and users [`Facts::mapped_ahead`] looks at a call, decoded already or not: so that
/// going past those decoded on demand holds the read lock no longer than a batch takes.
const DECODE_AHEAD_LOOKS: usize = 4096;

/// Every message's and outcome's state, per-user indexes, names and budgets: what the events
/// say, with nothing derived for speed.
#[derive(Debug)]
pub(crate) struct Facts {
    /// Message id `n` lives at index `n - 1`.
    messages: MessageTable,
    outcomes: Vec<OutcomeState>,
    users: UserTable,
    /// Every user in `users`, in the order of their first event: the order a snapshot lists
    /// them in, which a snapshot written while events are folded can go through in parts.
    user_order: Vec<u64>,
    names: Names,
    /// The latest own time of any tracking event (budgets excluded): the views' "now".
    latest_event_ms: Option<i64>,
    budgets: BTreeMap<(BudgetScope, Month), BudgetState>,
    /// How far back from an outcome a message may be credited with it.
    attribution_window_ms: i64,
    /// The message each external id names. Hashed with std's keyed SipHash, not `IdHasher`:
    /// external ids come from providers and callers, who could choose colliding keys.
    external_ids: HashMap<Arc<str>, MessageId>,
    /// The external id of each message sent with one, by message id: a side map, so that the
    /// messages without one (most) spend no memory on it.
    external_id_of: IdMap<u64, Arc<str>>,
    /// The messages with an external id, by id (ascending: sends are folded in id order).
    external_id_order: Vec<u64>,
}

/// The facts as a snapshot holds them (docs/FORMAT.md, "Snapshots"), written by
/// [`capture::write_image`]. Lists are in a fixed order, so that the same log always gives the
/// same bytes: users in the order of their first event, external ids by message id, budgets by
/// (scope, month); names by id; a budget is (scope byte, month index, its state).
#[derive(Debug, PartialEq, bincode::Decode)]
pub(crate) struct DecodedFacts {
    pub(crate) messages: MessageTable,
    pub(crate) outcomes: Vec<OutcomeState>,
    pub(crate) users: DecodedUsers,
    pub(crate) names: Vec<String>,
    pub(crate) latest_event_ms: Option<i64>,
    pub(crate) budgets: Vec<(u8, i64, BudgetState)>,
    pub(crate) external_ids: Vec<(u64, String)>,
}

/// A snapshot's users: decoded in full, or read from the mapped snapshot with their lists left
/// in the file until used ([`UserTable`]).
#[derive(Debug)]
pub(crate) enum DecodedUsers {
    List(Vec<(u64, UserEntries)>),
    Mapped(user_lists::ReadUsers),
}

impl DecodedUsers {
    /// Each user and their lists, in the order of their first event.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (u64, &UserEntries)> + '_> {
        match self {
            DecodedUsers::List(list) => {
                Box::new(list.iter().map(|(user, entries)| (*user, entries)))
            }
            DecodedUsers::Mapped(read) => Box::new(read.order.iter().map(|&user| {
                let entries = read
                    .table
                    .get(user)
                    .expect("every user in the order is listed");
                (user, entries)
            })),
        }
    }
}

impl PartialEq for DecodedUsers {
    fn eq(&self, other: &DecodedUsers) -> bool {
        self.iter().eq(other.iter())
    }
}

bincode::impl_borrow_decode!(DecodedUsers);

impl<Context> bincode::Decode<Context> for DecodedUsers {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<DecodedUsers, bincode::error::DecodeError> {
        Ok(DecodedUsers::List(bincode::Decode::decode(decoder)?))
    }
}

impl Facts {
    /// The budgets as a snapshot lists them.
    pub(crate) fn budget_list(&self) -> Vec<(u8, i64, BudgetState)> {
        self.budgets
            .iter()
            .map(|((scope, month), budget)| {
                (
                    crate::codec::budget_scope_byte(*scope),
                    month.index(),
                    *budget,
                )
            })
            .collect()
    }

    /// How many messages, outcomes and names the facts hold.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.messages.len(), self.outcomes.len(), self.names.len())
    }

    /// The facts a snapshot holds, after checking that they fit together (every index and name
    /// id in range, each user's lists sorted, as many entries in them as messages and
    /// outcomes); the error says what does not.
    pub(crate) fn from_image(
        image: DecodedFacts,
        attribution_window_ms: i64,
    ) -> Result<Facts, String> {
        let DecodedFacts {
            messages,
            outcomes,
            users: user_list,
            names: name_list,
            latest_event_ms,
            budgets: budget_list,
            external_ids: external_id_list,
        } = image;
        let mut names = Names::default();
        for (id, name) in name_list.iter().enumerate() {
            if !crate::event::is_valid_name(name) || names.intern(name) as usize != id {
                return Err(format!("name {id} is invalid or repeats an earlier one"));
            }
        }
        let name_count = names.len();
        // The messages' names and the users' lists are checked at once, on two threads: each
        // check reads its own tens of bytes per message, from memory, not from cache.
        let (beyond, listed) = std::thread::scope(|scope| {
            let beyond = scope.spawn(|| messages.first_beyond(name_count));
            let listed = users_of(user_list, messages.len(), outcomes.len());
            let beyond = beyond
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (beyond, listed)
        });
        if let Some(index) = beyond {
            return Err(format!(
                "message {} refers to a name beyond the {name_count} listed",
                index + 1
            ));
        }
        if let Some(index) = outcomes
            .iter()
            .position(|outcome| outcome.outcome as usize >= name_count)
        {
            return Err(format!(
                "outcome {index} refers to a name beyond the {name_count} listed"
            ));
        }
        let (users, user_order) = listed?;
        let mut budgets = BTreeMap::new();
        for (scope, month_index, budget) in budget_list {
            let key = crate::codec::budget_scope_of_byte(scope).zip(Month::from_index(month_index));
            let Some(key) = key
                .filter(|_| budget.amount_micros > 0 && (1..=100).contains(&budget.alert_percent))
            else {
                return Err(format!(
                    "budget (scope byte {scope}, month index {month_index}) is invalid"
                ));
            };
            budgets.insert(key, budget);
        }
        let mut facts = Facts {
            messages,
            outcomes,
            users,
            user_order,
            names,
            latest_event_ms,
            budgets,
            attribution_window_ms,
            external_ids: HashMap::with_capacity(external_id_list.len()),
            external_id_of: IdMap::default(),
            external_id_order: Vec::new(),
        };
        for (id, external_id) in external_id_list {
            let known =
                usize::try_from(id).is_ok_and(|id| (1..=facts.messages.len()).contains(&id));
            if !known
                || !crate::event::is_valid_external_id(&external_id)
                || facts.external_ids.contains_key(external_id.as_str())
                || facts.external_id_of.contains_key(&id)
            {
                return Err(format!(
                    "external id of message {id} is invalid or repeated"
                ));
            }
            facts.add_external_id(&external_id, MessageId(id));
        }
        Ok(facts)
    }
}

/// The users of a snapshot, by id and in order, after checking their lists against
/// `message_count` messages and `outcome_count` outcomes (see [`Facts::from_image`]); a mapped
/// snapshot's were checked as they were read.
fn users_of(
    users: DecodedUsers,
    message_count: usize,
    outcome_count: usize,
) -> Result<(UserTable, Vec<u64>), String> {
    let (table, order, (listed_messages, listed_outcomes)) = match users {
        DecodedUsers::Mapped(read) => match read.failure {
            Some(failure) => return Err(failure),
            None => (read.table, read.order, read.listed),
        },
        DecodedUsers::List(user_list) => {
            let mut table = UserTable::default();
            table.reserve(user_list.len());
            let mut order = Vec::with_capacity(user_list.len());
            let mut listed = (0usize, 0usize);
            for (user, entries) in user_list {
                user_lists::check_lists(user, &entries, message_count, outcome_count)?;
                listed.0 += entries.messages.len();
                listed.1 += entries.outcomes.len();
                if !table.insert(user, entries) {
                    return Err(format!("user {user} is listed twice"));
                }
                order.push(user);
            }
            (table, order, listed)
        }
    };
    if listed_messages != message_count || listed_outcomes != outcome_count {
        return Err(format!(
            "the users' lists hold {listed_messages} messages and {listed_outcomes} outcomes, \
             but there are {message_count} and {outcome_count}"
        ));
    }
    Ok((table, order))
}

impl Facts {
    /// The latest own time of any event but `BudgetSet` (`None` before the first).
    pub(crate) fn latest_event_ms(&self) -> Option<i64> {
        self.latest_event_ms
    }

    /// The next few of the messages' records, then of the users' lists, that a snapshot loaded
    /// with `Options::decode_on_demand` left in its file, from where `cursor` says (moved past
    /// them), to be decoded apart from the facts ([`Mapped::decode`]), so that a thread doing
    /// so holds no lock on the projection meanwhile, then put in their places
    /// ([`install`](Self::install)); `None` once nothing is left.
    ///
    /// Each call looks at no more than [`DECODE_AHEAD_LOOKS`] chunks or users, decoded already
    /// or not, and may then return none.
    pub(crate) fn mapped_ahead(&self, cursor: &mut DecodeCursor) -> Option<Mapped> {
        let chunks = match self.messages.on_demand() {
            true => self.messages.chunk_count(),
            false => 0,
        };
        let places = self.users.on_demand_places();
        if cursor.chunk >= chunks && cursor.place >= places {
            return None;
        }
        let mut mapped = Mapped::default();
        let mut looks = 0;
        while cursor.chunk < chunks
            && mapped.chunks.len() < DECODE_AHEAD_CHUNKS
            && looks < DECODE_AHEAD_LOOKS
        {
            mapped
                .chunks
                .extend(self.messages.mapped_chunk(cursor.chunk));
            cursor.chunk += 1;
            looks += 1;
        }
        if cursor.chunk < chunks {
            return Some(mapped);
        }
        while cursor.place < places
            && mapped.chunks.len() + mapped.lists.len() < DECODE_AHEAD_USERS
            && looks < DECODE_AHEAD_LOOKS
        {
            mapped.lists.extend(self.users.mapped_lists(cursor.place));
            cursor.place += 1;
            looks += 1;
        }
        Some(mapped)
    }

    /// Puts the chunks and lists decoded from `mapped` in their places, where nothing was
    /// decoded meanwhile.
    fn install(&self, mapped: &Mapped, decoded: Decoded) {
        for (chunk, records) in mapped.chunks.iter().zip(decoded.chunks) {
            self.messages.install(chunk, records);
        }
        for (lists, entries) in mapped.lists.iter().zip(decoded.lists) {
            self.users.install(lists, entries);
        }
    }

    /// The user's entries, made (and put last in `user_order`) on the user's first event.
    fn user_entries(&mut self, user: u64) -> &mut UserEntries {
        let (entries, new) = self.users.get_or_insert_mut(user);
        if new {
            self.user_order.push(user);
        }
        entries
    }
}

impl std::ops::Deref for Projection {
    type Target = Facts;

    fn deref(&self) -> &Facts {
        &self.facts
    }
}

impl Projection {
    /// No events yet; outcomes are credited with `attribution_window_ms`.
    pub(crate) fn new(attribution_window_ms: i64) -> Projection {
        Projection {
            facts: Facts {
                messages: MessageTable::default(),
                outcomes: Vec::new(),
                users: UserTable::default(),
                user_order: Vec::new(),
                names: Names::default(),
                latest_event_ms: None,
                budgets: BTreeMap::new(),
                attribution_window_ms,
                external_ids: HashMap::new(),
                external_id_of: IdMap::default(),
                external_id_order: Vec::new(),
            },
            rollup: OnceLock::new(),
            credits: OnceLock::new(),
            totals: OnceLock::new(),
            capture: None,
            log_summary: LogSummary::default(),
            log_summary_missing_through: 0,
        }
    }

    /// From now on (`Some`) or no longer (`None`), the message table's new chunks come from
    /// `ready` while it has some (`MessageTable::take_chunks_from`).
    pub(crate) fn take_chunks_from(&mut self, ready: Option<Arc<ReadyChunks>>) {
        self.facts.messages.take_chunks_from(ready);
    }

    /// The views over `facts` alone, to read or compare them (the log's summary is not
    /// among the facts: it starts empty here); the indexes are built on first use.
    pub(crate) fn from_facts(facts: Facts) -> Projection {
        Projection::from_snapshot(facts, None, None, None, Ok(LogSummary::default()))
    }

    /// The views over facts a snapshot held, with the indexes it held (checked to fit them,
    /// `snapshot::DecodedIndexes::fit`) and the messages' totals counted as its records were
    /// checked, if they were; any it did not hold is built on first use. `summary` is the
    /// log's summary up to the snapshot, or `Err(last_seq)` for one that holds none.
    pub(crate) fn from_snapshot(
        facts: Facts,
        rollup: Option<MessageRollup>,
        credits: Option<Credits>,
        message_totals: Option<MessageTotals>,
        summary: std::result::Result<LogSummary, u64>,
    ) -> Projection {
        let totals = message_totals.map(|counted| Totals::with_messages(counted, &facts.outcomes));
        Projection {
            facts,
            rollup: rollup.map_or_else(OnceLock::new, OnceLock::from),
            credits: credits.map_or_else(OnceLock::new, OnceLock::from),
            totals: totals.map_or_else(OnceLock::new, OnceLock::from),
            capture: None,
            log_summary: summary.unwrap_or_default(),
            log_summary_missing_through: summary.err().unwrap_or(0),
        }
    }

    /// The summary of the events folded, and the last seq of those it leaves out (0: none).
    pub(crate) fn log_summary(&self) -> (LogSummary, u64) {
        (self.log_summary, self.log_summary_missing_through)
    }

    /// Puts `missing`, the summary of the log up to `through`, before the events folded, if
    /// those are still the ones left out.
    pub(crate) fn complete_log_summary(&mut self, missing: LogSummary, through: u64) {
        if self.log_summary_missing_through == through && through != 0 {
            self.log_summary = missing.then(self.log_summary);
            self.log_summary_missing_through = 0;
        }
    }

    /// The indexes built so far: the message rollup and the outcome credits.
    pub(crate) fn built_indexes(&self) -> (Option<&MessageRollup>, Option<&Credits>) {
        (self.rollup.get(), self.credits.get())
    }

    /// Folds one event, in log order.
    pub(crate) fn fold(&mut self, logged: &LoggedEvent<'_>) {
        self.log_summary.add(logged);
        if let Some(capture) = &mut self.capture {
            capture.folded_since += 1;
        }
        if !matches!(logged.event, Event::BudgetSet { .. }) {
            let at_ms = logged.event.at_ms();
            self.facts.latest_event_ms = Some(
                self.facts
                    .latest_event_ms
                    .map_or(at_ms, |latest| latest.max(at_ms)),
            );
        }
        match logged.event {
            Event::MessageSent {
                message_id,
                user_id,
                channel,
                message_type,
                cost,
                at_ms,
                external_id,
            } => {
                assert_eq!(
                    message_id.0,
                    self.facts.messages.len() as u64 + 1,
                    "message ids are dense"
                );
                if let Some(external_id) = external_id {
                    self.facts.add_external_id(external_id, message_id);
                }
                let index =
                    u32::try_from(self.facts.messages.len()).expect("fewer than 2^32 messages");
                let message_type = self.facts.names.intern(message_type);
                self.facts.messages.push(MessageState::new(
                    user_id,
                    channel,
                    message_type,
                    cost,
                    at_ms,
                ));
                let entries = self.facts.user_entries(user_id.0);
                if let Some(capture) = &mut self.capture {
                    capture.keep_user(user_id.0, entries, entries.appends_message(at_ms, index));
                }
                entries.add_message(at_ms, index);
                if let Some(rollup) = self.rollup.get_mut() {
                    rollup.add(&self.facts.messages, index);
                }
                if let Some(totals) = self.totals.get_mut() {
                    totals
                        .messages_mut()
                        .add_message(&self.facts.messages[index as usize]);
                }
                if let Some(credits) = self.credits.get_mut() {
                    self.facts.credit_new_message(credits, user_id, at_ms);
                }
            }
            Event::MessageDelivered { message_id, at_ms } => {
                self.fold_message(message_id, |state| state.fold_delivered(at_ms))
            }
            Event::MessageOpened { message_id, at_ms } => {
                self.fold_message(message_id, |state| state.fold_opened(at_ms))
            }
            Event::UserAction {
                message_id,
                action,
                at_ms,
            } => {
                let action = self.facts.names.intern(action);
                let kind = self.facts.names.action_kind(action);
                self.fold_message(message_id, |state| state.fold_action(action, kind, at_ms));
            }
            Event::MessageFailed {
                message_id,
                reason,
                at_ms,
            } => {
                let reason = self.facts.names.intern(reason);
                self.fold_message(message_id, |state| state.fold_failed(reason, at_ms));
            }
            Event::FinancialOutcome {
                user_id,
                outcome,
                amount,
                at_ms,
            } => {
                let index =
                    u32::try_from(self.facts.outcomes.len()).expect("fewer than 2^32 outcomes");
                let outcome = self.facts.names.intern(outcome);
                self.facts.outcomes.push(OutcomeState {
                    user_id: user_id.0,
                    at_ms,
                    amount_micros: amount.event_micros(),
                    outcome,
                });
                let entries = self.facts.user_entries(user_id.0);
                if let Some(capture) = &mut self.capture {
                    capture.keep_user(user_id.0, entries, entries.appends_outcome(at_ms, index));
                }
                entries.add_outcome(at_ms, index);
                if let Some(totals) = self.totals.get_mut() {
                    totals.add_outcome(&self.facts.outcomes[index as usize]);
                }
                if let Some(credits) = self.credits.get_mut() {
                    self.facts.credit_new_outcome(credits);
                }
            }
            Event::BudgetSet {
                scope,
                month,
                amount,
                alert_percent,
                ..
            } => {
                // A later budget for the same scope and month replaces the earlier one.
                let budget = BudgetState {
                    amount_micros: amount.event_micros(),
                    alert_percent,
                };
                self.facts.budgets.insert((scope, month), budget);
            }
        }
    }

    /// Reads the memory that folding `logged` will read first (its user's entry and list end,
    /// and while a snapshot is written what the capture kept of the user; or its message's
    /// record) and returns something of it, changing nothing. Replay reads a
    /// run of events ahead this way, so that their cache misses, many in a large store, overlap
    /// rather than come one after another.
    pub(crate) fn pre_read(&self, logged: &LoggedEvent<'_>) -> u64 {
        let list_end = |user: u64, list: fn(&UserEntries) -> &[(i64, u32)]| {
            self.facts
                .users
                .get(user)
                .map_or(0, |entries| user_lists::end_of(list(entries)))
        };
        // While a snapshot is written, the fold also looks up what the capture kept of the user.
        let kept = |user: u64| {
            self.capture
                .as_ref()
                .map_or(0, |capture| capture.kept(user))
        };
        match logged.event {
            Event::MessageSent { user_id, .. } => {
                list_end(user_id.0, |entries| &entries.messages) ^ kept(user_id.0)
            }
            Event::FinancialOutcome { user_id, .. } => {
                list_end(user_id.0, |entries| &entries.outcomes) ^ kept(user_id.0)
            }
            Event::MessageDelivered { message_id, .. }
            | Event::MessageOpened { message_id, .. }
            | Event::UserAction { message_id, .. }
            | Event::MessageFailed { message_id, .. } => {
                let index = message_id.0.wrapping_sub(1) as usize;
                self.facts
                    .messages
                    .get(index)
                    .map_or(0, |state| state.user_id ^ u64::from(state.message_type))
            }
            Event::BudgetSet { .. } => 0,
        }
    }

    /// The interned names (message types, actions, outcomes).
    pub(crate) fn names(&self) -> &Names {
        &self.names
    }

    /// The views' "now": the latest own time of any tracking event, or `end` if that is
    /// earlier; `None` before the first tracking event. Never the wall clock.
    pub(crate) fn now_ms(&self, end_ms: Option<i64>) -> Option<i64> {
        let latest = self.latest_event_ms?;
        Some(end_ms.map_or(latest, |end| end.min(latest)))
    }

    /// Applies `change` to a message's state, keeping the rollup, the totals and the credits
    /// (once built) current.
    fn fold_message(&mut self, id: MessageId, change: impl FnOnce(&mut MessageState)) {
        let index = id.0.checked_sub(1).expect("message ids start at 1") as usize;
        let state = &mut self.facts.messages[index];
        if let Some(capture) = &mut self.capture {
            capture.keep_message(index, state);
        }
        let old_touches = self.credits.get().map(|_| Touches::of(state));
        let counted = self.rollup.get().is_some() || self.totals.get().is_some();
        let old_kind = counted.then(|| rollup::kind_of(state));
        change(state);
        if let Some(old_kind) = old_kind {
            if let Some(rollup) = self.rollup.get_mut() {
                rollup.change_kind(state, old_kind);
            }
            if let Some(totals) = self.totals.get_mut() {
                totals.messages_mut().change_kind(state, old_kind);
            }
        }
        if let Some(old_touches) = old_touches
            && let Some(credits) = self.credits.get_mut()
        {
            self.facts
                .credit_changed_message(credits, index as u32, old_touches);
        }
    }

    /// Builds the message rollup and the outcome credits when neither is built yet, at once:
    /// the rollup on a second thread while this one works out the credits, so that the first
    /// view over all messages, which reads both, waits for the longer build rather than the
    /// two. A small store's builds are shorter than starting a thread: each is left to its
    /// first use.
    pub(crate) fn build_indexes(&self) {
        if self.messages.len() < attribution::TWO_THREADS_MESSAGES_MIN
            || self.rollup.get().is_some()
            || self.credits.get().is_some()
        {
            return;
        }
        std::thread::scope(|scope| {
            let rollup = scope.spawn(|| {
                self.rollup();
            });
            self.credits();
            if let Err(panic) = rollup.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }

    /// What a snapshot loaded with `Options::decode_on_demand` left in its file, a batch at a
    /// time, from where `cursor` says (moved past them): the facts' ([`Facts::mapped_ahead`]),
    /// then the items of the message rollup's slices (`time_index::SliceItems`), to be decoded
    /// apart ([`Mapped::decode`]) and put in place ([`install_rest`](Self::install_rest));
    /// `None` once nothing is left. Each call looks at no more than [`DECODE_AHEAD_LOOKS`]
    /// slices, decoded already or not.
    pub(crate) fn mapped_rest(&self, cursor: &mut DecodeCursor) -> Option<Mapped> {
        if let Some(mapped) = self.facts.mapped_ahead(cursor) {
            return Some(mapped);
        }
        let buckets = self.rollup.get().map(MessageRollup::time_buckets)?;
        let slices = cursor.slices.get_or_insert_with(|| buckets.mapped_slices());
        if cursor.slice >= slices.len() {
            return None;
        }
        let mut mapped = Mapped::default();
        let (mut items, mut looks) = (0, 0);
        while cursor.slice < slices.len()
            && items < DECODE_AHEAD_ITEMS
            && looks < DECODE_AHEAD_LOOKS
        {
            let slice = slices[cursor.slice];
            cursor.slice += 1;
            looks += 1;
            if let Some(found) = buckets.mapped_items(slice) {
                items += found.len();
                mapped.items.push((slice, found));
            }
        }
        Some(mapped)
    }

    /// Puts what was decoded from `mapped` in its places, where nothing was decoded meanwhile.
    pub(crate) fn install_rest(&self, mapped: &Mapped, mut decoded: Decoded) {
        let items = std::mem::take(&mut decoded.items);
        self.facts.install(mapped, decoded);
        if let Some(rollup) = self.rollup.get() {
            for ((slice, _), items) in mapped.items.iter().zip(items) {
                rollup.time_buckets().install_items(*slice, items);
            }
        }
    }

    /// The message rollup, built on first use.
    pub(crate) fn rollup(&self) -> &MessageRollup {
        self.rollup
            .get_or_init(|| MessageRollup::build(&self.messages))
    }

    /// The outcome credits, built on first use.
    pub(crate) fn credits(&self) -> &Credits {
        self.credits.get_or_init(|| self.build_credits())
    }

    /// The totals over all time, if a query without a time range should read them: once
    /// counted, or while the rollup is not built (they are then counted, in one pass over the
    /// facts, where the rollup would take a pass and a sort). With the rollup built and the
    /// totals not, the rollup answers: its counts over all time are the same.
    pub(crate) fn all_time_totals(&self) -> Option<&Totals> {
        if self.totals.get().is_none() && self.rollup.get().is_some() {
            return None;
        }
        Some(
            self.totals
                .get_or_init(|| Totals::of(self.messages.iter(), &self.outcomes)),
        )
    }
}
