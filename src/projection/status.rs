//! The message-status view: each message's furthest stage and the earliest time of each.
//!
//! Folding is order-independent (webhooks arrive out of order): every stage keeps the earliest
//! time reported or implied, and the latest action is decided by (time, seq). A stage's time
//! is never before the message's sent time: an earlier report (clocks differ) counts as sent.

use std::sync::Arc;

use crate::event::{Channel, MessageId, UserId};
use crate::message::{Message, Status, time_from_ms};
use crate::money::Money;
use crate::projection::message_table::MessageTable;
use crate::projection::names::{ActionKind, NameId, Names};
use crate::projection::{Facts, Projection};

/// The earliest of the times seen so far, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub(crate) struct Earliest(i64);

impl Earliest {
    // DateTime<Utc> ends near 8.2e15 ms, far below this.
    const NONE: Earliest = Earliest(i64::MAX);

    pub(crate) fn keep(&mut self, at_ms: i64) {
        self.0 = self.0.min(at_ms);
    }

    pub(crate) fn get(self) -> Option<i64> {
        (self != Earliest::NONE).then_some(self.0)
    }

    pub(crate) fn is_some(self) -> bool {
        self != Earliest::NONE
    }
}

/// The action with the latest time so far; ties go to the one folded later (log order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub(crate) struct LatestAction {
    pub at_ms: i64,
    pub name: NameId,
}

/// One message as its events so far describe it. The stages most messages reach (sent,
/// delivered, opened) are inline; the times of the rare ones (click, failure, actions) live in
/// a box that only the messages reaching them allocate, which keeps the record at 56 bytes.
/// Which rare stages a message reached is also kept inline (`reached`, in what would be
/// padding), so its status and kind are read without the box. The layout is fixed (`repr(C)`)
/// with `user_id` first and `message_type` last but two bytes, so reading those two fetches
/// every cache line the record spans (`Projection::prefetch_states`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct MessageState {
    pub user_id: u64,
    pub sent_ms: i64,
    pub cost_micros: i64,
    pub delivered: Earliest,
    pub opened: Earliest,
    rare: Option<Box<RareStages>>,
    pub message_type: NameId,
    pub channel: Channel,
    /// The rare stages reached: a union of the `REACHED_*` bits.
    reached: u8,
}

impl MessageState {
    /// A record that stands for no message: it fills memory being made ready for records
    /// (`message_table::ReadyChunks`), and is never read as one.
    pub(crate) fn blank() -> MessageState {
        MessageState {
            user_id: 0,
            sent_ms: 0,
            cost_micros: 0,
            delivered: Earliest::NONE,
            opened: Earliest::NONE,
            rare: None,
            message_type: 0,
            channel: Channel::Email,
            reached: 0,
        }
    }
}

/// A snapshot holds the fields in declaration order, the channel as its byte in the log
/// (docs/FORMAT.md, "Snapshots").
impl bincode::Encode for MessageState {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.user_id.encode(encoder)?;
        self.sent_ms.encode(encoder)?;
        self.cost_micros.encode(encoder)?;
        self.delivered.encode(encoder)?;
        self.opened.encode(encoder)?;
        self.rare.encode(encoder)?;
        self.message_type.encode(encoder)?;
        (self.channel.index() as u8).encode(encoder)?;
        self.reached.encode(encoder)
    }
}

/// Where a snapshot's record of a message holds the tag of `rare` (0: `None`), after five 8-byte
/// fields.
const RARE_TAG_AT: usize = 5 * 8;
/// Bytes of a record without rare stages (most): up to the `None` tag and past it, the type's
/// 4 bytes, the channel and `reached` bytes.
const COMMON_RECORD_BYTES: usize = RARE_TAG_AT + 1 + 4 + 1 + 1;
/// Bytes of a record with rare stages, a failure reason and a latest action (the longest): the
/// rare stages' tag, two times, the reason's tag and id, a time, the latest action's tag, time
/// and name id; the type, the channel and `reached`. One nearer the body's end than this is
/// decoded field by field.
const RARE_RECORD_BYTES_MAX: usize = RARE_TAG_AT + 1 + 8 + 8 + 1 + 4 + 8 + 1 + 8 + 4 + 4 + 1 + 1;

/// Reads the layout above (the snapshot's, `codec::SNAPSHOT_CONFIG`); a record is parsed where
/// the reader holds it in memory ([`MessageState::record_in_place`]), field by field otherwise.
impl<Context> bincode::Decode<Context> for MessageState {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<MessageState, bincode::error::DecodeError> {
        // A record without rare stages fits the first peek, any other the second.
        for len in [COMMON_RECORD_BYTES, RARE_RECORD_BYTES_MAX] {
            let parsed = crate::codec::peek_snapshot_slice(decoder, len)
                .and_then(MessageState::record_in_place);
            if let Some((state, taken)) = parsed {
                crate::codec::consume_snapshot_bytes(decoder, taken)?;
                return Ok(state);
            }
        }
        Ok(MessageState {
            user_id: u64::decode(decoder)?,
            sent_ms: i64::decode(decoder)?,
            cost_micros: i64::decode(decoder)?,
            delivered: Earliest::decode(decoder)?,
            opened: Earliest::decode(decoder)?,
            rare: Option::decode(decoder)?,
            message_type: NameId::decode(decoder)?,
            channel: channel_of_byte(u8::decode(decoder)?)?,
            reached: u8::decode(decoder)?,
        })
    }
}

pub(crate) fn channel_of_byte(byte: u8) -> Result<Channel, bincode::error::DecodeError> {
    Channel::ALL
        .get(usize::from(byte))
        .copied()
        .ok_or(bincode::error::DecodeError::Other(
            "channel byte out of range",
        ))
}

bincode::impl_borrow_decode!(MessageState);

/// `MessageState::reached` bits.
const REACHED_CLICK: u8 = 1;
const REACHED_FAILURE: u8 = 2;
const REACHED_ACTION: u8 = 4;
const REACHED_UPGRADE: u8 = 8;
const REACHED_ALL: u8 = REACHED_CLICK | REACHED_FAILURE | REACHED_ACTION | REACHED_UPGRADE;

/// [`MessageState::stage_bits`]: a delivery, and an open, above the `REACHED_*` bits.
const STAGE_DELIVERED: usize = 1 << 4;
const STAGE_OPENED: usize = 1 << 5;
const _: () = assert!((REACHED_ALL as usize) < STAGE_DELIVERED);

/// `bit` if `set`, else 0, without a branch.
fn if_set(set: bool, bit: usize) -> usize {
    usize::from(set) * bit
}

/// How many values [`MessageState::stage_bits`] can take: all are below this.
pub(crate) const STAGE_PATTERNS: usize = STAGE_OPENED << 1;

/// The status and action of a message whose [`MessageState::stage_bits`] are `bits`.
pub(crate) const fn status_and_action_of(bits: usize) -> (Status, ActionLevel) {
    let reached = bits as u8 & REACHED_ALL;
    let (delivered, opened) = (bits & STAGE_DELIVERED != 0, bits & STAGE_OPENED != 0);
    let status = if reached & REACHED_CLICK != 0 {
        Status::Clicked
    } else if opened {
        Status::Opened
    } else if delivered {
        Status::Delivered
    } else if reached & REACHED_FAILURE != 0 {
        Status::Failed
    } else {
        Status::Sent
    };
    let action = if reached & REACHED_UPGRADE != 0 {
        ActionLevel::Upgrade
    } else if reached & REACHED_ACTION != 0 {
        ActionLevel::Action
    } else {
        ActionLevel::NoAction
    };
    (status, action)
}

/// The stages few messages reach.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
struct RareStages {
    clicked: Earliest,
    failed: Earliest,
    /// The reason of the earliest failure report (of reports at the same time, the first).
    failure_reason: Option<NameId>,
    /// The earliest action of any kind (with the earliest open: the first engagement).
    first_action: Earliest,
    latest_action: Option<LatestAction>,
}

/// The box of the rare stages of records parsed one after another and not kept
/// ([`SpareRare::record_in_place`]): a scan of a snapshot's records allocates one box, not one
/// per record with rare stages.
#[derive(Default)]
pub(crate) struct SpareRare(Option<Box<RareStages>>);

impl SpareRare {
    /// The record at the start of `bytes`, as [`MessageState::record_in_place`] parses it, its
    /// rare stages in the spare box if there is one.
    #[inline]
    pub(crate) fn record_in_place(&mut self, bytes: &[u8]) -> Option<(MessageState, usize)> {
        MessageState::parse_in_place(bytes, |rare| match self.0.take() {
            Some(mut spare) => {
                *spare = rare;
                spare
            }
            None => Box::new(rare),
        })
    }

    /// Takes back the box of a record no longer needed.
    #[inline]
    pub(crate) fn give_back(&mut self, state: MessageState) {
        if state.rare.is_some() {
            self.0 = state.rare;
        }
    }
}

impl RareStages {
    const NONE: RareStages = RareStages {
        clicked: Earliest::NONE,
        failed: Earliest::NONE,
        failure_reason: None,
        first_action: Earliest::NONE,
        latest_action: None,
    };
}

impl MessageState {
    /// The fewest bytes a snapshot's record of a message takes (one without rare stages).
    pub(crate) const SNAPSHOT_BYTES_MIN: usize = COMMON_RECORD_BYTES;

    /// The record at the start of `bytes`, parsed where it lies, and the bytes it takes.
    /// `None` for one cut short or with a tag or channel byte out of range: decoding it tells
    /// which.
    #[inline]
    pub(crate) fn record_in_place(bytes: &[u8]) -> Option<(MessageState, usize)> {
        MessageState::parse_in_place(bytes, Box::new)
    }

    /// [`MessageState::record_in_place`], its rare stages boxed by `boxed`.
    #[inline]
    fn parse_in_place(
        bytes: &[u8],
        boxed: impl FnOnce(RareStages) -> Box<RareStages>,
    ) -> Option<(MessageState, usize)> {
        let mut fields = crate::codec::FixedFields(bytes.get(..RARE_TAG_AT)?);
        let (user_id, sent_ms, cost_micros) = (fields.u64(), fields.i64(), fields.i64());
        let (delivered, opened) = (Earliest(fields.i64()), Earliest(fields.i64()));
        let mut at = RARE_TAG_AT;
        let mut take = |len: usize| {
            let field = bytes.get(at..at + len)?;
            at += len;
            Some(field)
        };
        let i64_of = |field: &[u8]| i64::from_le_bytes(field.try_into().expect("8 bytes"));
        let u32_of = |field: &[u8]| u32::from_le_bytes(field.try_into().expect("4 bytes"));
        let rare = match take(1)?[0] {
            0 => None,
            1 => Some(boxed(RareStages {
                clicked: Earliest(i64_of(take(8)?)),
                failed: Earliest(i64_of(take(8)?)),
                failure_reason: match take(1)?[0] {
                    0 => None,
                    1 => Some(u32_of(take(4)?)),
                    _ => return None,
                },
                first_action: Earliest(i64_of(take(8)?)),
                latest_action: match take(1)?[0] {
                    0 => None,
                    1 => Some(LatestAction {
                        at_ms: i64_of(take(8)?),
                        name: u32_of(take(4)?),
                    }),
                    _ => return None,
                },
            })),
            _ => return None,
        };
        let state = MessageState {
            user_id,
            sent_ms,
            cost_micros,
            delivered,
            opened,
            rare,
            message_type: u32_of(take(4)?),
            channel: *Channel::ALL.get(usize::from(take(1)?[0]))?,
            reached: take(1)?[0],
        };
        Some((state, at))
    }

    pub(crate) fn new(
        user_id: UserId,
        channel: Channel,
        message_type: NameId,
        cost: Money,
        sent_ms: i64,
    ) -> MessageState {
        MessageState {
            user_id: user_id.0,
            sent_ms,
            cost_micros: cost.event_micros(),
            delivered: Earliest::NONE,
            opened: Earliest::NONE,
            rare: None,
            message_type,
            channel,
            reached: 0,
        }
    }

    /// The rare stages' times, if the message reached the stage `bit` (the box is read only
    /// then).
    fn rare_if(&self, bit: u8) -> Option<&RareStages> {
        if self.reached & bit == 0 {
            return None;
        }
        self.rare.as_deref()
    }

    /// A word of the rare stages' box (0 without one), read only to bring the box into cache
    /// ahead of its use (`Projection::prefetch_states`).
    pub(crate) fn rare_word(&self) -> i64 {
        self.rare.as_deref().map_or(0, |rare| rare.first_action.0)
    }

    fn rare_mut(&mut self) -> &mut RareStages {
        self.rare.get_or_insert_with(|| Box::new(RareStages::NONE))
    }

    /// The highest name id the state refers to: its type, failure reason or latest action.
    pub(crate) fn highest_name(&self) -> NameId {
        let rare = self.rare.as_deref();
        let reason = rare.and_then(|rare| rare.failure_reason).unwrap_or(0);
        let action = rare
            .and_then(|rare| rare.latest_action)
            .map_or(0, |action| action.name);
        self.message_type.max(reason).max(action)
    }

    /// Whether the message reached no stage past an open: no click, failure or action.
    #[inline]
    pub(crate) fn plain(&self) -> bool {
        self.reached == 0 && self.rare.is_none()
    }

    /// The earliest click.
    pub(crate) fn clicked(&self) -> Earliest {
        self.rare_if(REACHED_CLICK)
            .map_or(Earliest::NONE, |rare| rare.clicked)
    }

    /// The earliest failure report.
    pub(crate) fn failed(&self) -> Earliest {
        self.rare_if(REACHED_FAILURE)
            .map_or(Earliest::NONE, |rare| rare.failed)
    }

    /// The earliest action of any kind.
    pub(crate) fn first_action(&self) -> Earliest {
        self.rare_if(REACHED_ACTION)
            .map_or(Earliest::NONE, |rare| rare.first_action)
    }

    /// The action with the latest time (ties: the one folded later).
    pub(crate) fn latest_action(&self) -> Option<LatestAction> {
        self.rare_if(REACHED_ACTION)?.latest_action
    }

    /// Some action's name contains "upgrade".
    pub(crate) fn converted(&self) -> bool {
        self.reached & REACHED_UPGRADE != 0
    }

    /// A time reported for a later stage, taken as the sent time when earlier: the tracking
    /// calls refuse one more than `CLOCK_SKEW_MS_MAX` earlier, but replay takes the log as it
    /// is, so no stage precedes the send and no response time is negative.
    fn not_before_sent(&self, at_ms: i64) -> i64 {
        at_ms.max(self.sent_ms)
    }

    pub(crate) fn fold_delivered(&mut self, at_ms: i64) {
        let at_ms = self.not_before_sent(at_ms);
        self.delivered.keep(at_ms);
    }

    /// An open implies delivery at the open's time.
    pub(crate) fn fold_opened(&mut self, at_ms: i64) {
        let at_ms = self.not_before_sent(at_ms);
        self.opened.keep(at_ms);
        self.delivered.keep(at_ms);
    }

    /// Any action implies delivery; a click implies an open and sets the click time. Folds
    /// come in log order, so on equal times the later action wins.
    pub(crate) fn fold_action(&mut self, action: NameId, kind: ActionKind, at_ms: i64) {
        let (is_click, is_upgrade) = (kind.is_click(), kind.is_upgrade());
        let at_ms = self.not_before_sent(at_ms);
        self.delivered.keep(at_ms);
        if is_click {
            self.opened.keep(at_ms);
        }
        self.reached |= REACHED_ACTION
            | if is_click { REACHED_CLICK } else { 0 }
            | if is_upgrade { REACHED_UPGRADE } else { 0 };
        let rare = self.rare_mut();
        rare.first_action.keep(at_ms);
        if is_click {
            rare.clicked.keep(at_ms);
        }
        if rare
            .latest_action
            .is_none_or(|latest| at_ms >= latest.at_ms)
        {
            rare.latest_action = Some(LatestAction {
                at_ms,
                name: action,
            });
        }
    }

    /// The first engagement: the earliest open (a click implies one) or action.
    pub(crate) fn first_engagement_ms(&self) -> Option<i64> {
        match (self.opened.get(), self.first_action().get()) {
            (Some(opened), Some(action)) => Some(opened.min(action)),
            (opened, action) => opened.or(action),
        }
    }

    pub(crate) fn fold_failed(&mut self, reason: NameId, at_ms: i64) {
        let at_ms = self.not_before_sent(at_ms);
        self.reached |= REACHED_FAILURE;
        let rare = self.rare_mut();
        if rare.failed.get().is_none_or(|failed_ms| at_ms < failed_ms) {
            rare.failure_reason = Some(reason);
        }
        rare.failed.keep(at_ms);
    }

    /// The reason of the earliest failure report.
    pub(crate) fn failure_reason(&self) -> Option<NameId> {
        self.rare_if(REACHED_FAILURE)
            .and_then(|rare| rare.failure_reason)
    }

    /// The furthest stage; failed only if never delivered.
    pub(crate) fn status(&self) -> Status {
        status_and_action_of(self.stage_bits()).0
    }

    /// What its status and furthest action (its kind for the rollup and the totals) follow
    /// from, read from the record alone, below [`STAGE_PATTERNS`]: the rare stages reached
    /// (the `REACHED_*` bits), a delivery and an open. Computed without a branch, so that a
    /// pass over many records can count them by these bits and find each count's status and
    /// action once ([`status_and_action_of`]).
    #[inline]
    pub(crate) fn stage_bits(&self) -> usize {
        usize::from(self.reached & REACHED_ALL)
            | if_set(self.delivered.is_some(), STAGE_DELIVERED)
            | if_set(self.opened.is_some(), STAGE_OPENED)
    }

    /// Some action was taken.
    pub(crate) fn has_action(&self) -> bool {
        self.reached & REACHED_ACTION != 0
    }

    pub(crate) fn to_message(&self, id: MessageId, names: &Names) -> Message {
        Message {
            id,
            user_id: UserId(self.user_id),
            channel: self.channel,
            message_type: names.shared(self.message_type),
            status: self.status(),
            cost: Money::from_micros(i128::from(self.cost_micros)),
            sent_at: time_from_ms(self.sent_ms),
            delivered_at: self.delivered.get().map(time_from_ms),
            opened_at: self.opened.get().map(time_from_ms),
            clicked_at: self.clicked().get().map(time_from_ms),
            failed_at: self.failed().get().map(time_from_ms),
            failure_reason: self.failure_reason().map(|reason| names.shared(reason)),
            action_taken: self.latest_action().map(|action| names.shared(action.name)),
        }
    }
}

/// The furthest action a message has: none, an action, or an upgrade action (a conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ActionLevel {
    NoAction,
    Action,
    Upgrade,
}

impl Projection {
    /// The message with this id, if tracked.
    pub(crate) fn message(&self, id: MessageId) -> Option<Message> {
        let index = usize::try_from(id.0.checked_sub(1)?).ok()?;
        Some(self.messages.get(index)?.to_message(id, &self.names))
    }

    /// The message an external id names, if any.
    pub(crate) fn message_id_of_external(&self, external_id: &str) -> Option<MessageId> {
        self.external_ids.get(external_id).copied()
    }
}

impl Facts {
    /// Files a send's external id. The tracking calls never write one twice; a log that holds
    /// it twice anyway (written by other code) keeps the first, as a repeat of the send would.
    pub(crate) fn add_external_id(&mut self, external_id: &str, message_id: MessageId) {
        if self.external_ids.contains_key(external_id) {
            return;
        }
        let external_id: Arc<str> = external_id.into();
        self.external_ids
            .insert(Arc::clone(&external_id), message_id);
        self.external_id_of.insert(message_id.0, external_id);
        self.external_id_order.push(message_id.0);
    }

    /// The external id the message was sent with, if any.
    pub(crate) fn external_id_of(&self, id: MessageId) -> Option<&str> {
        self.external_id_of
            .get(&id.0)
            .map(|external_id| &**external_id)
    }

    /// The sent time of the message with this id, if tracked.
    pub(crate) fn sent_ms(&self, id: MessageId) -> Option<i64> {
        let index = usize::try_from(id.0.checked_sub(1)?).ok()?;
        Some(self.messages.get(index)?.sent_ms)
    }

    /// Every message's state; message id `n` is at index `n - 1`.
    pub(crate) fn message_states(&self) -> &MessageTable {
        &self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record's size is part of the memory budget (docs/PERFORMANCE.md).
    #[test]
    fn a_message_record_is_56_bytes() {
        assert_eq!(std::mem::size_of::<MessageState>(), 56);
        assert_eq!(std::mem::offset_of!(MessageState, user_id), 0);
        assert_eq!(std::mem::offset_of!(MessageState, message_type), 48);
    }

    /// A record parsed where it lies is the record encoded, and otherwise taken exactly when
    /// decoding it would take it, with the same state and length: records with and without rare
    /// stages, a failure reason or a latest action, whole, cut short, with a bad tag or channel
    /// byte. Parsed one after another in a spare box, each is the same.
    #[test]
    fn a_record_parsed_in_place_is_the_record_decoding_gives() {
        use crate::event::{Channel, UserId};
        use crate::money::Money;
        use crate::projection::names::ActionKind;
        let mut longest = 0;
        let mut random = crate::workload::SplitMix64::new(5);
        let mut next = move |bound: u64| random.int(0, bound - 1);
        let mut taken = 0;
        let mut spare = SpareRare::default();
        for round in 0..20_000 {
            let sent_ms = next(1_000) as i64;
            let mut record = MessageState::new(
                UserId(next(50)),
                Channel::ALL[next(4) as usize],
                next(60) as NameId,
                Money::from_micros(i128::from(next(90_000))),
                sent_ms,
            );
            for _ in 0..next(4) {
                let at_ms = sent_ms + next(20) as i64;
                let name = next(60) as NameId;
                match next(5) {
                    0 => record.fold_action(name, ActionKind::Click, at_ms),
                    1 => record.fold_action(name, ActionKind::Upgrade, at_ms),
                    2 => record.fold_action(name, ActionKind::Other, at_ms),
                    3 => record.fold_failed(name, at_ms),
                    _ => record.fold_delivered(at_ms),
                }
            }
            let mut bytes = Vec::new();
            crate::codec::encode_snapshot_part(&record, &mut bytes).unwrap();
            let whole = bytes.len();
            let in_place = MessageState::record_in_place;
            assert_eq!(
                in_place(&bytes),
                Some((record.clone(), whole)),
                "round {round}"
            );
            longest = longest.max(whole);
            match next(6) {
                0 => bytes.truncate(next(whole as u64) as usize),
                1 => {
                    let at = RARE_TAG_AT + next((whole - RARE_TAG_AT) as u64) as usize;
                    bytes[at] = next(5) as u8;
                }
                2 => bytes.extend([7, 7, 7]),
                _ => {}
            }
            let in_place = in_place(&bytes);
            let in_spare = spare.record_in_place(&bytes);
            assert_eq!(in_spare, in_place, "round {round}, in the spare box");
            if let Some((state, _)) = in_spare {
                spare.give_back(state);
            }
            let mut reader = crate::codec::SnapshotReader::new(&bytes);
            let decoded = reader
                .decode::<MessageState>()
                .map(|state| (state, reader.position()));
            assert_eq!(
                in_place,
                decoded.ok(),
                "round {round}: {record:?}, {bytes:?}"
            );
            taken += usize::from(in_place.is_some());
        }
        assert!(taken > 10_000 && taken < 19_000, "{taken} of 20,000 taken");
        assert_eq!(longest, RARE_RECORD_BYTES_MAX, "the longest record");
    }
}
