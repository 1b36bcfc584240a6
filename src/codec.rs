//! Event <-> frame bytes, and the segment header: the only module that knows the byte layout
//! (docs/FORMAT.md specifies it; tests/golden pins it).
//!
//! A frame is `body_len: u16 LE | crc32(body): u32 LE | body`, the body a bincode-2 encoding
//! (standard config: little endian, variable-length integers, zigzag for signed ones) of
//! [`WireFrame`]. Times and message ids in a body are deltas against a [`FrameCursor`], the
//! running state of the segment, so that a typical frame takes about 25 bytes; the sequence
//! number and durability watermark stay absolute, so any single frame can be checked alone.

use bincode::{BorrowDecode, Decode, Encode};

use crate::event::{
    BudgetScope, Channel, Event, LoggedEvent, MessageId, Month, UserId, is_valid_external_id,
    is_valid_name,
};
use crate::limits::{
    FRAME_BODY_BYTES_MAX, FRAME_PREFIX_BYTES, MONEY_MICROS_MAX, SEGMENT_HEADER_V1_BYTES,
    SEGMENT_HEADER_V2_BYTES,
};
use crate::money::Money;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// A snapshot body's encoding: bincode 2, little endian, integers at their fixed width (most of
/// a snapshot is ids and millisecond times, which varints would not shorten).
const SNAPSHOT_CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
> = bincode::config::standard().with_fixed_int_encoding();

/// Writes one part of a snapshot body (docs/FORMAT.md, "Snapshots") to `out`.
pub(crate) fn encode_snapshot_part<T: Encode>(
    value: &T,
    out: &mut impl std::io::Write,
) -> Result<(), bincode::error::EncodeError> {
    bincode::encode_into_std_write(value, out, SNAPSHOT_CONFIG).map(|_| ())
}

/// Reads the parts of a snapshot body held in memory (a mapped file), one after another; each
/// record's fixed-width fields are parsed straight from the bytes, nothing copied first.
pub(crate) struct SnapshotReader<'a> {
    body: &'a [u8],
    /// Bytes of `body` read so far.
    read: usize,
}

impl<'a> SnapshotReader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> SnapshotReader<'a> {
        SnapshotReader { body, read: 0 }
    }

    fn decoder(&mut self) -> bincode::de::DecoderImpl<&mut Self, impl bincode::config::Config, ()> {
        bincode::de::DecoderImpl::new(self, SNAPSHOT_CONFIG, ())
    }

    /// Reads the next part; the error says what did not decode.
    pub(crate) fn decode<T: Decode<()>>(&mut self) -> Result<T, String> {
        T::decode(&mut self.decoder()).map_err(not_decoded)
    }

    /// Reads the next part as [`decode`](Self::decode) does, calling `passed` with the bytes
    /// read so far each time `every` more have been read, so that the caller can give back what
    /// lies behind.
    pub(crate) fn decode_passing<T: Decode<()>>(
        &mut self,
        every: usize,
        passed: impl FnMut(usize),
    ) -> Result<T, String> {
        self.decode_passing_in(every, passed, ())
    }

    /// [`decode_passing`](Self::decode_passing) with the decoder's context `context`.
    pub(crate) fn decode_passing_in<T: Decode<C>, C>(
        &mut self,
        every: usize,
        passed: impl FnMut(usize),
        context: C,
    ) -> Result<T, String> {
        let passed = EveryBytes::new(self.read, every, passed);
        let reader = Passing {
            inner: self,
            passed,
        };
        T::decode(&mut bincode::de::DecoderImpl::new(
            reader,
            SNAPSHOT_CONFIG,
            context,
        ))
        .map_err(not_decoded)
    }

    /// Reads the next part, a `Vec<T>` (its length, then each item), as [`decode`](Self::decode)
    /// would; calls `passed` with the bytes read so far each time `every` more have been read,
    /// so that the caller can check and give back what lies behind. An item takes at least
    /// `item_bytes_min` bytes, so a length that the bytes left cannot hold is refused before
    /// anything is allocated.
    pub(crate) fn decode_list<T: Decode<()>>(
        &mut self,
        item_bytes_min: usize,
        every: usize,
        passed: impl FnMut(usize),
    ) -> Result<Vec<T>, String> {
        let len = self.decode_list_len(item_bytes_min)?;
        let mut items = Vec::with_capacity(len);
        self.decode_items(len, every, passed, |_, item| items.push(item))?;
        Ok(items)
    }

    /// Reads a list's length, refusing one that the bytes left cannot hold at `item_bytes_min`
    /// bytes an item.
    pub(crate) fn decode_list_len(&mut self, item_bytes_min: usize) -> Result<usize, String> {
        let len: u64 = self.decode()?;
        let left = self.bytes_left();
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= left / item_bytes_min.max(1))
            .ok_or_else(|| {
                format!("snapshot body does not decode: a list of {len} items in {left} bytes")
            })
    }

    /// Reads `len` items of a list, as [`decode_list`](Self::decode_list) does, but hands each
    /// to `each` with the offset in the body where it starts, rather than keeping them.
    pub(crate) fn decode_items<T: Decode<()>>(
        &mut self,
        len: usize,
        every: usize,
        passed: impl FnMut(usize),
        mut each: impl FnMut(usize, T),
    ) -> Result<(), String> {
        let mut passed = EveryBytes::new(self.read, every, passed);
        for _ in 0..len {
            let start = self.read;
            let item = T::decode(&mut self.decoder()).map_err(not_decoded)?;
            each(start, item);
            passed.reached(self.read);
        }
        Ok(())
    }

    /// Reads `len` items of a list as [`decode_items`](Self::decode_items) does, but hands
    /// `each` the bytes from where each item starts (and that offset in the body) to check as it
    /// likes; `each` returns how many bytes the item took.
    pub(crate) fn scan_items(
        &mut self,
        len: usize,
        every: usize,
        passed: impl FnMut(usize),
        mut each: impl FnMut(usize, &'a [u8]) -> Result<usize, String>,
    ) -> Result<(), String> {
        let mut passed = EveryBytes::new(self.read, every, passed);
        for _ in 0..len {
            let taken = each(self.read, &self.body[self.read..])?;
            self.read += taken;
            passed.reached(self.read);
        }
        Ok(())
    }

    /// The whole body this reader reads from.
    pub(crate) fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Bytes of the body read so far.
    pub(crate) fn position(&self) -> usize {
        self.read
    }

    /// Moves past `len` bytes, checked in place by the caller (at most those left).
    pub(crate) fn skip(&mut self, len: usize) {
        assert!(len <= self.bytes_left(), "skips past the body's end");
        self.read += len;
    }

    /// Bytes left after the parts read.
    pub(crate) fn bytes_left(&self) -> usize {
        self.body.len() - self.read
    }
}

fn not_decoded(error: bincode::error::DecodeError) -> String {
    format!("snapshot body does not decode: {error}")
}

impl bincode::de::read::Reader for SnapshotReader<'_> {
    #[inline(always)]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let end = self.read.saturating_add(bytes.len());
        let available = self.body.get(self.read..end).ok_or_else(|| {
            bincode::error::DecodeError::UnexpectedEnd {
                additional: end.saturating_sub(self.body.len()),
            }
        })?;
        bytes.copy_from_slice(available);
        self.read = end;
        Ok(())
    }

    #[inline(always)]
    fn peek_read(&mut self, len: usize) -> Option<&[u8]> {
        self.body.get(self.read..self.read.checked_add(len)?)
    }

    #[inline(always)]
    fn consume(&mut self, len: usize) {
        self.read = (self.read + len).min(self.body.len());
    }
}

/// A [`SnapshotReader`] that calls `passed` each time `every` more bytes have been read.
struct Passing<'r, 'a, F> {
    inner: &'r mut SnapshotReader<'a>,
    passed: EveryBytes<F>,
}

impl<F: FnMut(usize)> Passing<'_, '_, F> {
    #[inline(always)]
    fn check(&mut self) {
        self.passed.reached(self.inner.read);
    }
}

/// Tells `passed` where a reading is each time it has gone `every` bytes past where it was
/// last told (or past its start), so that the caller can give back what lies behind.
pub(crate) struct EveryBytes<F> {
    every: usize,
    next: usize,
    passed: F,
}

impl<F: FnMut(usize)> EveryBytes<F> {
    /// `every` may be `usize::MAX`: never told (the sum saturates).
    pub(crate) fn new(start: usize, every: usize, passed: F) -> EveryBytes<F> {
        EveryBytes {
            every,
            next: start.saturating_add(every),
            passed,
        }
    }

    /// The reading is at `at`.
    #[inline(always)]
    pub(crate) fn reached(&mut self, at: usize) {
        if at >= self.next {
            (self.passed)(at);
            self.next = at.saturating_add(self.every);
        }
    }
}

impl<F: FnMut(usize)> bincode::de::read::Reader for Passing<'_, '_, F> {
    #[inline(always)]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        self.inner.read(bytes)?;
        self.check();
        Ok(())
    }

    #[inline(always)]
    fn peek_read(&mut self, len: usize) -> Option<&[u8]> {
        self.inner.peek_read(len)
    }

    #[inline(always)]
    fn consume(&mut self, len: usize) {
        self.inner.consume(len);
        self.check();
    }
}

/// The next `N` bytes of a snapshot body, without reading them, if the reader holds them in
/// memory (a [`SnapshotReader`] holds all of them): the fixed-width fields of a record, to be parsed in one go with [`FixedFields`] and
/// then passed with [`consume_snapshot_bytes`]. `None`: decode them field by field.
#[inline(always)]
pub(crate) fn peek_snapshot_bytes<const N: usize, D: bincode::de::Decoder>(
    decoder: &mut D,
) -> Option<[u8; N]> {
    use bincode::de::read::Reader;
    let bytes = decoder.reader().peek_read(N)?;
    bytes.try_into().ok()
}

/// The next `len` bytes of a snapshot body, without reading them, if the reader holds them in
/// memory: a record of varying width, to be parsed where it lies and then passed with
/// [`consume_snapshot_bytes`]. `None`: decode it field by field.
#[inline(always)]
pub(crate) fn peek_snapshot_slice<D: bincode::de::Decoder>(
    decoder: &mut D,
    len: usize,
) -> Option<&[u8]> {
    use bincode::de::read::Reader;
    decoder.reader().peek_read(len)
}

/// Passes `len` bytes that [`peek_snapshot_bytes`] or [`peek_snapshot_slice`] gave.
#[inline(always)]
pub(crate) fn consume_snapshot_bytes<D: bincode::de::Decoder>(
    decoder: &mut D,
    len: usize,
) -> Result<(), bincode::error::DecodeError> {
    use bincode::de::read::Reader;
    decoder.claim_bytes_read(len)?;
    decoder.reader().consume(len);
    Ok(())
}

/// Writes an id-keyed map of a snapshot's indexes as a list of (key, value) sorted by key, so
/// that the same map always gives the same bytes (docs/FORMAT.md, "Indexes").
pub(crate) fn encode_sorted_map<K, V, S, E>(
    map: &std::collections::HashMap<K, V, S>,
    encoder: &mut E,
) -> Result<(), bincode::error::EncodeError>
where
    K: Encode + Ord + Copy,
    V: Encode,
    E: bincode::enc::Encoder,
{
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    entries.sort_unstable_by_key(|(key, _)| **key);
    (entries.len() as u64).encode(encoder)?;
    for (key, value) in entries {
        key.encode(encoder)?;
        value.encode(encoder)?;
    }
    Ok(())
}

/// Reads a map written by [`encode_sorted_map`], each value by `value`; refuses keys out of
/// order or repeated, and a length the bytes left cannot hold at `entry_bytes_min` bytes an
/// entry, before anything is reserved for the entries. `entry_bytes_min` is the fewest bytes
/// an entry (its key and its value) takes in the file: a smaller one lets a count reserve
/// several times the bytes left (an entry in memory can take far more than its fewest bytes).
pub(crate) fn decode_sorted_map<K, V, S, D>(
    decoder: &mut D,
    entry_bytes_min: usize,
    mut value: impl FnMut(&mut D) -> Result<V, bincode::error::DecodeError>,
) -> Result<std::collections::HashMap<K, V, S>, bincode::error::DecodeError>
where
    K: Decode<D::Context> + Ord + Copy + std::hash::Hash,
    S: std::hash::BuildHasher + Default,
    D: bincode::de::Decoder,
{
    let len = decode_bounded_len(decoder, entry_bytes_min)?;
    let mut map = std::collections::HashMap::with_capacity_and_hasher(len, S::default());
    let mut previous: Option<K> = None;
    for _ in 0..len {
        let key = K::decode(decoder)?;
        if previous.is_some_and(|previous| previous >= key) {
            return Err(bincode::error::DecodeError::Other(
                "an index's map lists its keys out of order",
            ));
        }
        previous = Some(key);
        let value = value(decoder)?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Reads a list (its u64 length, then each item), refusing a length the bytes left cannot
/// hold at `item_bytes_min` bytes an item before anything is allocated.
pub(crate) fn decode_bounded_list<T, D>(
    decoder: &mut D,
    item_bytes_min: usize,
) -> Result<Vec<T>, bincode::error::DecodeError>
where
    T: Decode<D::Context>,
    D: bincode::de::Decoder,
{
    let len = decode_bounded_len(decoder, item_bytes_min)?;
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        items.push(T::decode(decoder)?);
    }
    Ok(items)
}

/// Reads a list of u32 written as bincode writes a `Vec<u32>` (its u64 length, then each
/// item), parsed in one go where the reader holds the bytes in memory (a [`SnapshotReader`]
/// holds all of them).
pub(crate) fn decode_u32_list<D: bincode::de::Decoder>(
    decoder: &mut D,
) -> Result<Vec<u32>, bincode::error::DecodeError> {
    use bincode::de::read::Reader;
    let len = decode_bounded_len(decoder, 4)?;
    let items = match decoder.reader().peek_read(len * 4) {
        Some(bytes) => u32_items(bytes).collect(),
        None => return (0..len).map(|_| u32::decode(decoder)).collect(),
    };
    consume_snapshot_bytes(decoder, len * 4)?;
    Ok(items)
}

/// The items of a list of u32 as a snapshot lays them out after its length: 4 bytes LE each.
pub(crate) fn u32_items(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    (bytes.chunks_exact(4)).map(|item| u32::from_le_bytes(item.try_into().expect("4 bytes")))
}

pub(crate) fn decode_bounded_len<D: bincode::de::Decoder>(
    decoder: &mut D,
    item_bytes_min: usize,
) -> Result<usize, bincode::error::DecodeError> {
    use bincode::de::read::Reader;
    let len = u64::decode(decoder)?;
    usize::try_from(len)
        .ok()
        .filter(|&len| {
            len.checked_mul(item_bytes_min.max(1))
                .is_some_and(|bytes| decoder.reader().peek_read(bytes).is_some())
        })
        .ok_or(bincode::error::DecodeError::Other(
            "a list longer than the bytes left can hold",
        ))
}

/// Fixed-width little-endian fields read off the front of a snapshot record, as
/// `SNAPSHOT_CONFIG` lays them out.
pub(crate) struct FixedFields<'a>(pub(crate) &'a [u8]);

impl FixedFields<'_> {
    #[inline(always)]
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (field, rest) = self.0.split_at(N);
        self.0 = rest;
        field.try_into().expect("split at N")
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    #[inline(always)]
    pub(crate) fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    #[inline(always)]
    pub(crate) fn i128(&mut self) -> i128 {
        i128::from_le_bytes(self.take())
    }
}

/// Decodes a snapshot part from `bytes` through a reader that holds none of them in memory, so
/// that every field is read on its own: what parsing in runs must agree with.
#[cfg(test)]
pub(crate) fn decode_snapshot_field_by_field<T: Decode<()>>(mut bytes: &[u8]) -> T {
    bincode::decode_from_std_read(&mut bytes, SNAPSHOT_CONFIG).expect("the part decodes")
}

/// Bytes of one `(i64, u32)` pair in a snapshot body.
pub(crate) const PAIR_BYTES: usize = 12;
/// Pairs parsed at a time from the reader's block.
const PAIRS_AT_ONCE: usize = 256;

/// Decodes a snapshot's list of `(i64, u32)` pairs (a user's messages or outcomes), as bincode
/// lays out a `Vec<(i64, u32)>` in `SNAPSHOT_CONFIG`: its length, then each pair. Parsed in
/// runs from the reader's block where it holds them, pair by pair across its edges.
pub(crate) fn decode_snapshot_pairs<D: bincode::de::Decoder>(
    decoder: &mut D,
) -> Result<Vec<(i64, u32)>, bincode::error::DecodeError> {
    let len = u64::decode(decoder)?;
    let len =
        usize::try_from(len).map_err(|_| bincode::error::DecodeError::OutsideUsizeRange(len))?;
    decoder.claim_container_read::<(i64, u32)>(len)?;
    // A damaged length asks for no more than a few runs up front: the reader's end stops it.
    let mut pairs = Vec::with_capacity(len.min(16 * PAIRS_AT_ONCE));
    while pairs.len() < len {
        let run = (len - pairs.len()).min(PAIRS_AT_ONCE);
        let parsed = {
            use bincode::de::read::Reader;
            decoder.reader().peek_read(run * PAIR_BYTES).map(|bytes| {
                pairs.extend(bytes.chunks_exact(PAIR_BYTES).map(|pair| {
                    let mut fields = FixedFields(pair);
                    (fields.i64(), fields.u32())
                }));
            })
        };
        match parsed {
            Some(()) => consume_snapshot_bytes(decoder, run * PAIR_BYTES)?,
            None => pairs.push(<(i64, u32)>::decode(decoder)?),
        }
    }
    Ok(pairs)
}

// A frame's prefix: the body's length (u16), then the body's checksum (u32).
const FRAME_LEN_OFFSET: usize = 0;
const FRAME_LEN_BYTES: usize = 2;
const FRAME_CRC_OFFSET: usize = FRAME_LEN_OFFSET + FRAME_LEN_BYTES;
const FRAME_CRC_BYTES: usize = 4;

const _: () = assert!(FRAME_CRC_OFFSET + FRAME_CRC_BYTES == FRAME_PREFIX_BYTES);

/// First eight bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; MAGIC_BYTES] = *b"CMLOGSEG";

// The segment header's fields, each starting where the one before it ends (docs/FORMAT.md).
// Versions 1 and 2 share everything up to the first message id; version 2 adds the store id
// before the checksum, and the seal slot after it.
const MAGIC_OFFSET: usize = 0;
const MAGIC_BYTES: usize = 8;
/// Where the header's format version (u32) starts, at the same place in every version.
pub(crate) const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC_BYTES;
const VERSION_BYTES: usize = 4;
/// Where the header's first seq (u64) starts.
pub(crate) const FIRST_SEQ_OFFSET: usize = VERSION_OFFSET + VERSION_BYTES;
const FIRST_SEQ_BYTES: usize = 8;
/// Where the header's first message id (u64) starts.
pub(crate) const FIRST_MESSAGE_ID_OFFSET: usize = FIRST_SEQ_OFFSET + FIRST_SEQ_BYTES;
const FIRST_MESSAGE_ID_BYTES: usize = 8;
/// Where a version 2 header's store id (u64) starts; a version 1 header has its checksum here.
pub(crate) const STORE_ID_OFFSET: usize = FIRST_MESSAGE_ID_OFFSET + FIRST_MESSAGE_ID_BYTES;
const STORE_ID_BYTES: usize = 8;
/// Where a version 1 header's checksum starts: right after the first message id.
const HEADER_V1_CRC_OFFSET: usize = FIRST_MESSAGE_ID_OFFSET + FIRST_MESSAGE_ID_BYTES;
/// Where a version 2 header's checksum starts: right after the store id.
const HEADER_V2_CRC_OFFSET: usize = STORE_ID_OFFSET + STORE_ID_BYTES;
const HEADER_CRC_BYTES: usize = 4;

const _: () = assert!(SEGMENT_MAGIC.len() == MAGIC_BYTES);
const _: () = assert!(HEADER_V1_CRC_OFFSET + HEADER_CRC_BYTES == SEGMENT_HEADER_V1_BYTES);
const _: () = assert!(HEADER_V2_CRC_OFFSET + HEADER_CRC_BYTES == SEAL_SLOT_OFFSET);
const _: () = assert!(VERSION_OFFSET + VERSION_BYTES <= SEGMENT_HEADER_V1_BYTES);

/// The format of a segment without a store id: every segment a store created before store ids
/// existed, and every segment such a store adds.
pub(crate) const FORMAT_VERSION_1: u32 = 1;

/// The format of a segment carrying its store's id: every segment of a store created since.
pub(crate) const FORMAT_VERSION_2: u32 = 2;

/// The fixed header at the start of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// Sequence number of the segment's first frame; also the file's name.
    pub first_seq: u64,
    /// Message id that the segment's first `MessageSent` gets.
    pub first_message_id: u64,
    /// The id of the store the segment belongs to, chosen when the store was created; `None`
    /// in a version 1 segment, which has no room for it.
    pub store_id: Option<u64>,
}

impl SegmentHeader {
    /// The format version the header is written in.
    pub(crate) fn version(&self) -> u32 {
        match self.store_id {
            None => FORMAT_VERSION_1,
            Some(_) => FORMAT_VERSION_2,
        }
    }

    /// Bytes the header takes: where the segment's first frame starts.
    pub(crate) fn len_bytes(&self) -> usize {
        match self.store_id {
            None => SEGMENT_HEADER_V1_BYTES,
            Some(_) => SEGMENT_HEADER_V2_BYTES,
        }
    }

    /// Bytes the header's checksum covers; the checksum follows them. In version 2 the seal
    /// slot comes after it, zeros until the segment is sealed ([`encode_seal`]).
    fn checked_bytes(version_2: bool) -> usize {
        if version_2 {
            HEADER_V2_CRC_OFFSET
        } else {
            HEADER_V1_CRC_OFFSET
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let len = self.len_bytes();
        let checked = SegmentHeader::checked_bytes(self.store_id.is_some());
        let mut bytes = vec![0u8; len];
        bytes[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&SEGMENT_MAGIC);
        bytes[VERSION_OFFSET..FIRST_SEQ_OFFSET].copy_from_slice(&self.version().to_le_bytes());
        bytes[FIRST_SEQ_OFFSET..FIRST_MESSAGE_ID_OFFSET]
            .copy_from_slice(&self.first_seq.to_le_bytes());
        bytes[FIRST_MESSAGE_ID_OFFSET..STORE_ID_OFFSET]
            .copy_from_slice(&self.first_message_id.to_le_bytes());
        if let Some(store_id) = self.store_id {
            bytes[STORE_ID_OFFSET..HEADER_V2_CRC_OFFSET].copy_from_slice(&store_id.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes[MAGIC_OFFSET..checked]);
        bytes[checked..checked + HEADER_CRC_BYTES].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and checks a header; the error says which check failed. The version field
    /// (at [`VERSION_OFFSET`]) tells the layouts apart; a version 1 header is checked by the
    /// version 1 rules alone.
    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentHeader, String> {
        let version_2 = version_field(bytes) == Some(FORMAT_VERSION_2);
        let len = if version_2 {
            SEGMENT_HEADER_V2_BYTES
        } else {
            SEGMENT_HEADER_V1_BYTES
        };
        let Some(bytes) = bytes.get(..len) else {
            return Err(format!(
                "segment header is incomplete: {} of {len} bytes",
                bytes.len()
            ));
        };
        let checked = SegmentHeader::checked_bytes(version_2);
        let stored_crc = u32_at(bytes, checked);
        let computed_crc = crc32fast::hash(&bytes[MAGIC_OFFSET..checked]);
        if stored_crc != computed_crc {
            return Err(format!(
                "segment header checksum mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
            ));
        }
        if bytes[MAGIC_OFFSET..VERSION_OFFSET] != SEGMENT_MAGIC {
            return Err("not a commlog segment (bad magic)".to_string());
        }
        let version = u32_at(bytes, VERSION_OFFSET);
        if version != FORMAT_VERSION_1 && version != FORMAT_VERSION_2 {
            return Err(format!(
                "unsupported format version {version} (this build reads {FORMAT_VERSION_1} and {FORMAT_VERSION_2})"
            ));
        }
        let header = SegmentHeader {
            first_seq: u64_at(bytes, FIRST_SEQ_OFFSET),
            first_message_id: u64_at(bytes, FIRST_MESSAGE_ID_OFFSET),
            store_id: version_2.then(|| u64_at(bytes, STORE_ID_OFFSET)),
        };
        // Both count from 1, and the segment must leave room to count on.
        if header.first_seq == 0 || header.first_seq == u64::MAX {
            return Err(format!("segment header has first seq {}", header.first_seq));
        }
        if header.first_message_id == 0 || header.first_message_id == u64::MAX {
            return Err(format!(
                "segment header has first message id {}",
                header.first_message_id
            ));
        }
        Ok(header)
    }
}

/// The format version a segment's header gives when it is one this build does not know, a
/// newer commlog's: the magic is right, and the header is not a known version's with a
/// damaged version field (restoring that field to 1 or 2 does not make it check out).
pub(crate) fn newer_format_version(bytes: &[u8]) -> Option<u32> {
    if bytes.get(MAGIC_OFFSET..VERSION_OFFSET)? != SEGMENT_MAGIC {
        return None;
    }
    let version = version_field(bytes)?;
    if version <= FORMAT_VERSION_2 {
        return None;
    }
    let restored_decodes = [FORMAT_VERSION_1, FORMAT_VERSION_2].iter().any(|known| {
        let mut restored = bytes[..bytes.len().min(SEGMENT_HEADER_V2_BYTES)].to_vec();
        restored[VERSION_OFFSET..FIRST_SEQ_OFFSET].copy_from_slice(&known.to_le_bytes());
        SegmentHeader::decode(&restored).is_ok()
    });
    (!restored_decodes).then_some(version)
}

/// Where a version 2 header's seal slot starts: right after the header checksum, which does
/// not cover it (the slot is written when the segment is sealed, after the header).
pub(crate) const SEAL_SLOT_OFFSET: usize = HEADER_V2_CRC_OFFSET + HEADER_CRC_BYTES;

/// Bytes of the seal slot: the next segment's first seq (u64), a crc32 of those 8 bytes, and
/// 4 bytes of zeros.
pub(crate) const SEAL_SLOT_BYTES: usize = SEAL_CRC_OFFSET + SEAL_CRC_BYTES + SEAL_PADDING_BYTES;

// The seal slot's fields, relative to the slot's start.
const SEAL_NEXT_SEQ_OFFSET: usize = 0;
const SEAL_NEXT_SEQ_BYTES: usize = 8;
const SEAL_CRC_OFFSET: usize = SEAL_NEXT_SEQ_OFFSET + SEAL_NEXT_SEQ_BYTES;
const SEAL_CRC_BYTES: usize = 4;
const SEAL_PADDING_OFFSET: usize = SEAL_CRC_OFFSET + SEAL_CRC_BYTES;
const SEAL_PADDING_BYTES: usize = 4;

const _: () = assert!(SEAL_SLOT_OFFSET + SEAL_SLOT_BYTES == SEGMENT_HEADER_V2_BYTES);
const _: () = assert!(SEAL_PADDING_OFFSET + SEAL_PADDING_BYTES == SEAL_SLOT_BYTES);

/// The seal slot of a segment whose successor starts at `next_first_seq`.
pub(crate) fn encode_seal(next_first_seq: u64) -> [u8; SEAL_SLOT_BYTES] {
    let mut slot = [0u8; SEAL_SLOT_BYTES];
    slot[SEAL_NEXT_SEQ_OFFSET..SEAL_CRC_OFFSET].copy_from_slice(&next_first_seq.to_le_bytes());
    let crc = crc32fast::hash(&slot[SEAL_NEXT_SEQ_OFFSET..SEAL_CRC_OFFSET]);
    slot[SEAL_CRC_OFFSET..SEAL_PADDING_OFFSET].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// The next segment's first seq a version 2 segment's seal slot records, or `None` when the
/// segment is not sealed: the slot is zeros, fails its checksum, or `bytes` is not a version
/// 2 segment.
pub(crate) fn decode_seal(bytes: &[u8]) -> Option<u64> {
    if version_field(bytes) != Some(FORMAT_VERSION_2) {
        return None;
    }
    let slot = bytes.get(SEAL_SLOT_OFFSET..SEAL_SLOT_OFFSET + SEAL_SLOT_BYTES)?;
    let next_first_seq = u64_at(slot, SEAL_NEXT_SEQ_OFFSET);
    let sealed = next_first_seq != 0
        && u32_at(slot, SEAL_CRC_OFFSET)
            == crc32fast::hash(&slot[SEAL_NEXT_SEQ_OFFSET..SEAL_CRC_OFFSET])
        && slot[SEAL_PADDING_OFFSET..] == [0; SEAL_PADDING_BYTES];
    sealed.then_some(next_first_seq)
}

/// Whether `bytes` begin a version 2 segment whose seal slot names no successor yet.
pub(crate) fn unsealed_v2(bytes: &[u8]) -> bool {
    version_field(bytes) == Some(FORMAT_VERSION_2) && decode_seal(bytes).is_none()
}

/// The format version a segment's header gives, unchecked; `None` if `bytes` ends before it.
fn version_field(bytes: &[u8]) -> Option<u32> {
    let field = bytes.get(VERSION_OFFSET..VERSION_OFFSET + VERSION_BYTES)?;
    Some(u32_at(field, 0))
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

/// What a frame holds: an event, or the marker a clean close writes after its final sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Event(LoggedEvent<'a>),
    /// Everything up to and including `last_seq` is durable. Takes no sequence number of its
    /// own: its `seq` field repeats `last_seq`.
    Closed {
        last_seq: u64,
        appended_ms: i64,
    },
}

/// The running state that frame deltas are taken against; starts afresh in every segment. A
/// snapshot records it (docs/FORMAT.md, "Snapshots"): field order is the byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct FrameCursor {
    pub next_message_id: u64,
    previous_at_ms: i64,
    previous_appended_ms: i64,
}

impl FrameCursor {
    pub(crate) fn new(header: &SegmentHeader) -> FrameCursor {
        FrameCursor {
            next_message_id: header.first_message_id,
            previous_at_ms: 0,
            previous_appended_ms: 0,
        }
    }

    /// A cursor for resolving frames from the middle of a segment before the state there is
    /// known: message ids counted from `next_message_id`, times from 0. What it reaches is
    /// turned into the real state by [`FrameCursor::rebase`].
    pub(crate) fn speculative(next_message_id: u64) -> FrameCursor {
        FrameCursor {
            next_message_id,
            previous_at_ms: 0,
            previous_appended_ms: 0,
        }
    }

    /// The previous frame's event time and appended time.
    pub(crate) fn times(&self) -> (i64, i64) {
        (self.previous_at_ms, self.previous_appended_ms)
    }

    /// The cursor `self` would be had resolving started from `to` instead of `from`: each
    /// field moved by `to - from`. The caller checks that the times stay in range.
    pub(crate) fn rebase(&self, from: &FrameCursor, to: &FrameCursor) -> FrameCursor {
        FrameCursor {
            next_message_id: self
                .next_message_id
                .wrapping_sub(from.next_message_id)
                .wrapping_add(to.next_message_id),
            previous_at_ms: self.previous_at_ms - from.previous_at_ms + to.previous_at_ms,
            previous_appended_ms: self.previous_appended_ms - from.previous_appended_ms
                + to.previous_appended_ms,
        }
    }
}

/// A budget scope's byte in the log and in snapshots: 0 all channels, 1 + the channel's byte
/// otherwise.
pub(crate) fn budget_scope_byte(scope: BudgetScope) -> u8 {
    match scope {
        BudgetScope::All => 0,
        BudgetScope::Channel(channel) => 1 + channel.index() as u8,
    }
}

/// The budget scope a byte stands for ([`budget_scope_byte`]), if any.
pub(crate) fn budget_scope_of_byte(byte: u8) -> Option<BudgetScope> {
    match byte {
        0 => Some(BudgetScope::All),
        channel => Channel::ALL
            .get(usize::from(channel - 1))
            .map(|channel| BudgetScope::Channel(*channel)),
    }
}

/// Whether `ms` is a time a frame may resolve to (what `DateTime<Utc>` can hold).
pub(crate) fn time_in_range(ms: i128) -> bool {
    (i128::from(TIME_MS_MIN)..=i128::from(TIME_MS_MAX)).contains(&ms)
}

/// Bytes the frame starting at `bytes` takes, by its length prefix alone, if that length is
/// plausible and the frame fits in `bytes`.
pub(crate) fn frame_len(bytes: &[u8]) -> Option<usize> {
    frame_body(bytes)
        .ok()
        .map(|body| FRAME_PREFIX_BYTES + body.len())
}

/// The body of a frame on the wire. Field order is the byte order.
#[derive(Debug, Encode, BorrowDecode)]
struct WireFrame<'a> {
    seq: u64,
    /// `seq - durable_seq`.
    durable_lag: u64,
    /// `appended_ms` minus the previous frame's (0 for a segment's first frame).
    appended_delta_ms: i64,
    /// The event's own time minus the previous frame's (0 for a segment's first frame).
    at_delta_ms: i64,
    payload: WirePayload<'a>,
}

/// Variants are tagged by position: new ones go at the end, none is ever reordered.
#[derive(Debug, Encode, BorrowDecode)]
enum WirePayload<'a> {
    /// The message id is the cursor's next one.
    MessageSent {
        user_id: u64,
        channel: u8,
        message_type: &'a str,
        cost_micros: u64,
    },
    /// `message_back` = cursor's next message id − message id (≥ 1).
    MessageDelivered {
        message_back: u64,
    },
    MessageOpened {
        message_back: u64,
    },
    UserAction {
        message_back: u64,
        action: &'a str,
    },
    MessageFailed {
        message_back: u64,
        reason: &'a str,
    },
    FinancialOutcome {
        user_id: u64,
        outcome: &'a str,
        amount_micros: i64,
    },
    Closed,
    /// `scope`: 0 all channels, 1 + the channel's byte otherwise; `month_index`: months since
    /// January of year 0.
    BudgetSet {
        scope: u8,
        month_index: i64,
        amount_micros: u64,
        alert_percent: u8,
    },
    /// `MessageSent` with an external id: written only for a send that has one, so a store
    /// without external ids holds only `MessageSent` sends.
    MessageSentWithExternalId {
        user_id: u64,
        channel: u8,
        message_type: &'a str,
        cost_micros: u64,
        external_id: &'a str,
    },
}

/// Appends `frame` to `out` and advances `cursor` past it.
///
/// Panics if the frame breaks an invariant the caller guarantees (a `MessageSent` with an id
/// other than the cursor's next, a reference to a message not yet sent, a negative cost).
pub(crate) fn encode_frame(cursor: &mut FrameCursor, frame: &Frame<'_>, out: &mut Vec<u8>) {
    let (wire, next) = match *frame {
        Frame::Event(logged) => encode_event(cursor, &logged),
        Frame::Closed {
            last_seq,
            appended_ms,
        } => encode_close_marker(cursor, last_seq, appended_ms),
    };
    write_frame(&wire, out);
    *cursor = next;
}

/// The wire frame of an event frame, with times taken against `cursor`, and the cursor after
/// it.
#[inline]
fn encode_event<'a>(
    cursor: &FrameCursor,
    logged: &LoggedEvent<'a>,
) -> (WireFrame<'a>, FrameCursor) {
    assert!(
        logged.durable_seq < logged.seq,
        "durable_seq runs ahead of seq"
    );
    let at_ms = logged.event.at_ms();
    let payload = encode_payload(cursor, logged.event);
    let wire = WireFrame {
        seq: logged.seq,
        durable_lag: logged.seq - logged.durable_seq,
        appended_delta_ms: logged.appended_ms.wrapping_sub(cursor.previous_appended_ms),
        at_delta_ms: at_ms.wrapping_sub(cursor.previous_at_ms),
        payload,
    };
    // Only a send takes a message id.
    let sent = matches!(logged.event, Event::MessageSent { .. });
    let next = FrameCursor {
        next_message_id: cursor.next_message_id + u64::from(sent),
        previous_at_ms: at_ms,
        previous_appended_ms: logged.appended_ms,
    };
    (wire, next)
}

/// The wire frame of a close marker, and the cursor after it: a close marker has no event
/// time, so only its appended time moves the cursor.
#[inline]
fn encode_close_marker(
    cursor: &FrameCursor,
    last_seq: u64,
    appended_ms: i64,
) -> (WireFrame<'static>, FrameCursor) {
    let wire = WireFrame {
        seq: last_seq,
        durable_lag: 0,
        appended_delta_ms: appended_ms.wrapping_sub(cursor.previous_appended_ms),
        at_delta_ms: 0,
        payload: WirePayload::Closed,
    };
    let next = FrameCursor {
        previous_appended_ms: appended_ms,
        ..*cursor
    };
    (wire, next)
}

/// An event's payload on the wire, message ids counted back from `cursor`'s next one.
#[inline]
fn encode_payload<'a>(cursor: &FrameCursor, event: Event<'a>) -> WirePayload<'a> {
    match event {
        Event::MessageSent {
            message_id,
            user_id,
            channel,
            message_type,
            cost,
            external_id,
            ..
        } => {
            assert_eq!(
                message_id.0, cursor.next_message_id,
                "message ids are dense"
            );
            encode_send(user_id, channel, message_type, cost, external_id)
        }
        Event::MessageDelivered { message_id, .. } => WirePayload::MessageDelivered {
            message_back: encode_message_back(cursor, message_id),
        },
        Event::MessageOpened { message_id, .. } => WirePayload::MessageOpened {
            message_back: encode_message_back(cursor, message_id),
        },
        Event::UserAction {
            message_id, action, ..
        } => WirePayload::UserAction {
            message_back: encode_message_back(cursor, message_id),
            action,
        },
        Event::MessageFailed {
            message_id, reason, ..
        } => WirePayload::MessageFailed {
            message_back: encode_message_back(cursor, message_id),
            reason,
        },
        Event::FinancialOutcome {
            user_id,
            outcome,
            amount,
            ..
        } => WirePayload::FinancialOutcome {
            user_id: user_id.0,
            outcome,
            amount_micros: amount.event_micros(),
        },
        Event::BudgetSet {
            scope,
            month,
            amount,
            alert_percent,
            ..
        } => WirePayload::BudgetSet {
            scope: budget_scope_byte(scope),
            month_index: month.index(),
            amount_micros: u64::try_from(amount.event_micros()).expect("a budget is positive"),
            alert_percent,
        },
    }
}

/// A send's payload on the wire: the frame with an external id only for a send that has one.
#[inline]
fn encode_send<'a>(
    user_id: UserId,
    channel: Channel,
    message_type: &'a str,
    cost: Money,
    external_id: Option<&'a str>,
) -> WirePayload<'a> {
    let cost_micros = u64::try_from(cost.event_micros()).expect("cost is never negative");
    let (user_id, channel) = (user_id.0, channel.index() as u8);
    match external_id {
        None => WirePayload::MessageSent {
            user_id,
            channel,
            message_type,
            cost_micros,
        },
        Some(external_id) => {
            assert!(is_valid_external_id(external_id), "checked at the call");
            WirePayload::MessageSentWithExternalId {
                user_id,
                channel,
                message_type,
                cost_micros,
                external_id,
            }
        }
    }
}

/// How many messages back from `cursor`'s next one the message `id` is (at least 1).
#[inline]
fn encode_message_back(cursor: &FrameCursor, id: MessageId) -> u64 {
    assert!(
        id.0 >= 1 && id.0 < cursor.next_message_id,
        "message {id} not yet sent"
    );
    cursor.next_message_id - id.0
}

/// Appends `wire` to `out` as a frame: the body's length and checksum, then the body.
#[inline]
fn write_frame(wire: &WireFrame<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_PREFIX_BYTES]);
    bincode::encode_into_std_write(wire, out, CONFIG).expect("writing to a Vec cannot fail");
    let body_len = out.len() - start - FRAME_PREFIX_BYTES;
    assert!(
        body_len <= FRAME_BODY_BYTES_MAX,
        "frame body of {body_len} bytes"
    );
    let crc = crc32fast::hash(&out[start + FRAME_PREFIX_BYTES..]);
    let body_len = u16::try_from(body_len).expect("bounded by FRAME_BODY_BYTES_MAX");
    out[start + FRAME_LEN_OFFSET..start + FRAME_CRC_OFFSET]
        .copy_from_slice(&body_len.to_le_bytes());
    out[start + FRAME_CRC_OFFSET..start + FRAME_PREFIX_BYTES].copy_from_slice(&crc.to_le_bytes());
}

/// A frame whose length, checksum and encoding are good; its meaning is not yet checked.
#[derive(Debug)]
pub(crate) struct RawFrame<'a> {
    wire: WireFrame<'a>,
    /// Bytes the frame takes, prefix included.
    pub frame_bytes: usize,
}

impl RawFrame<'_> {
    pub(crate) fn seq(&self) -> u64 {
        self.wire.seq
    }

    /// The durability watermark the frame records; `None` if its lag exceeds its seq.
    pub(crate) fn durable_seq(&self) -> Option<u64> {
        self.wire.seq.checked_sub(self.wire.durable_lag)
    }

    pub(crate) fn is_close_marker(&self) -> bool {
        matches!(self.wire.payload, WirePayload::Closed)
    }
}

/// Reads the frame at the start of `bytes`, checking what a frame can check alone: its length,
/// its checksum, and that its body decodes exactly. The error says which check failed.
#[inline(always)]
pub(crate) fn read_frame(bytes: &[u8]) -> Result<RawFrame<'_>, String> {
    let body = frame_body(bytes)?;
    let stored_crc = u32_at(bytes, FRAME_CRC_OFFSET);
    let computed_crc = crc32fast::hash(body);
    if stored_crc != computed_crc {
        return Err(format!(
            "frame checksum mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
        ));
    }
    decode_body(body)
}

/// [`read_frame`] without the checksum, which the caller verifies with [`checksum_ok`] (on
/// another thread, during replay).
#[inline(always)]
pub(crate) fn read_frame_unverified(bytes: &[u8]) -> Result<RawFrame<'_>, String> {
    decode_body(frame_body(bytes)?)
}

/// The body length a frame's prefix gives, unchecked; `prefix` holds at least the prefix.
#[inline(always)]
fn body_len_field(prefix: &[u8]) -> usize {
    usize::from(u16::from_le_bytes([
        prefix[FRAME_LEN_OFFSET],
        prefix[FRAME_LEN_OFFSET + 1],
    ]))
}

/// The checksum a frame starting at `bytes` stores in its prefix; `bytes` holds at least the
/// prefix.
pub(crate) fn stored_crc(bytes: &[u8]) -> u32 {
    u32_at(bytes, FRAME_CRC_OFFSET)
}

/// Whether a whole frame's (prefix and body) stored checksum matches its body.
#[inline]
pub(crate) fn checksum_ok(frame: &[u8]) -> bool {
    let stored_crc = u32_at(frame, FRAME_CRC_OFFSET);
    crc32fast::hash(&frame[FRAME_PREFIX_BYTES..]) == stored_crc
}

/// The seq and durable_seq (`None` if its lag exceeds its seq) that a frame starting at
/// `bytes` would have, read from the first two fields of its body without the checksum or the
/// rest of the body; `None` if its length is implausible or those fields do not decode.
///
/// A cheap first look for a search over every offset: it allocates nothing, and wherever
/// [`read_frame`] succeeds it gives the same values.
#[inline]
pub(crate) fn peek_frame_seqs(bytes: &[u8]) -> Option<(u64, Option<u64>)> {
    let prefix = bytes.get(..FRAME_PREFIX_BYTES)?;
    let body_len = body_len_field(prefix);
    if body_len == 0 || body_len > FRAME_BODY_BYTES_MAX {
        return None;
    }
    let body = bytes.get(FRAME_PREFIX_BYTES..FRAME_PREFIX_BYTES + body_len)?;
    let (seq, seq_bytes) = peek_varint_u64(body)?;
    let (durable_lag, _) = peek_varint_u64(&body[seq_bytes..])?;
    Some((seq, seq.checked_sub(durable_lag)))
}

/// A bincode (standard config) variable-length u64 at the start of `bytes`, and the bytes it
/// takes: below 251 one byte, else a marker (251: u16, 252: u32, 253: u64) and the value.
#[inline]
fn peek_varint_u64(bytes: &[u8]) -> Option<(u64, usize)> {
    match *bytes.first()? {
        byte @ 0..=250 => Some((u64::from(byte), 1)),
        251 => {
            let value = u16::from_le_bytes(bytes.get(1..3)?.try_into().ok()?);
            Some((u64::from(value), 3))
        }
        252 => {
            let value = u32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?);
            Some((u64::from(value), 5))
        }
        253 => {
            let value = u64::from_le_bytes(bytes.get(1..9)?.try_into().ok()?);
            Some((value, 9))
        }
        _ => None,
    }
}

/// The body of the frame at the start of `bytes`, if its length is plausible and present.
#[inline(always)]
fn frame_body(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < FRAME_PREFIX_BYTES {
        return Err(format!(
            "frame is short: {} bytes left, a frame needs at least {FRAME_PREFIX_BYTES}",
            bytes.len()
        ));
    }
    let body_len = body_len_field(bytes);
    if body_len == 0 || body_len > FRAME_BODY_BYTES_MAX {
        return Err(format!(
            "frame length {body_len} is outside 1..={FRAME_BODY_BYTES_MAX}"
        ));
    }
    bytes
        .get(FRAME_PREFIX_BYTES..FRAME_PREFIX_BYTES + body_len)
        .ok_or_else(|| {
            format!(
                "frame is short: body of {body_len} bytes, {} left",
                bytes.len() - FRAME_PREFIX_BYTES
            )
        })
}

#[inline(always)]
fn decode_body(body: &[u8]) -> Result<RawFrame<'_>, String> {
    let (wire, used): (WireFrame<'_>, usize) = bincode::borrow_decode_from_slice(body, CONFIG)
        .map_err(|error| format!("frame body does not decode: {error}"))?;
    if used != body.len() {
        return Err(format!(
            "frame body has {} bytes after its end",
            body.len() - used
        ));
    }
    Ok(RawFrame {
        wire,
        frame_bytes: FRAME_PREFIX_BYTES + body.len(),
    })
}

/// Gives a checked frame its meaning against `cursor` (absolute times and message ids), checks
/// every field against its rule, and advances `cursor` past it.
#[inline(always)]
pub(crate) fn resolve<'a>(
    cursor: &mut FrameCursor,
    raw: &RawFrame<'a>,
) -> Result<Frame<'a>, String> {
    let wire = &raw.wire;
    let durable_seq = raw.durable_seq().ok_or_else(|| {
        format!(
            "frame seq {} records a durability lag of {}",
            wire.seq, wire.durable_lag
        )
    })?;
    let appended_ms = add_time(
        cursor.previous_appended_ms,
        wire.appended_delta_ms,
        "appended time",
    )?;
    let at_ms = add_time(cursor.previous_at_ms, wire.at_delta_ms, "event time")?;
    if let WirePayload::Closed = wire.payload {
        return resolve_close_marker(cursor, wire, appended_ms);
    }
    let (event, next_message_id) = resolve_event(cursor, wire, at_ms)?;
    *cursor = FrameCursor {
        next_message_id,
        previous_at_ms: at_ms,
        previous_appended_ms: appended_ms,
    };
    Ok(Frame::Event(LoggedEvent {
        seq: wire.seq,
        appended_ms,
        durable_seq,
        event,
    }))
}

/// The variant indexes of [`WirePayload`] that move a cursor other than by its times: the
/// sends (each takes the next message id) and the close marker (no event time of its own).
const SENT_VARIANT: u64 = 0;
const CLOSED_VARIANT: u64 = 6;
const SENT_WITH_EXTERNAL_ID_VARIANT: u64 = 8;

/// Moves `cursor` past the frame `frame` (its prefix and body) as [`resolve`] does (its times,
/// and the next message id past a send), reading only the body's first fields and its
/// variant: for a walk over frames whose bytes a checksum already vouches for, which needs
/// only the running state at their end. Returns whether the frame is a close marker.
#[inline]
pub(crate) fn advance(cursor: &mut FrameCursor, frame: &[u8]) -> Result<bool, String> {
    let body = frame_body(frame)?;
    let mut offset = 0;
    let mut field = |what: &str| {
        let (value, used) = body
            .get(offset..)
            .and_then(peek_varint_u64)
            .ok_or_else(|| format!("frame's {what} does not decode"))?;
        offset += used;
        Ok::<u64, String>(value)
    };
    let zigzag = |value: u64| (value >> 1) as i64 ^ -((value & 1) as i64);
    let seq = field("seq")?;
    field("durability lag")?;
    let appended_delta_ms = zigzag(field("appended time")?);
    let at_delta_ms = zigzag(field("event time")?);
    let variant = field("payload")?;
    cursor.previous_appended_ms = add_time(
        cursor.previous_appended_ms,
        appended_delta_ms,
        "appended time",
    )?;
    if variant == CLOSED_VARIANT {
        return Ok(true);
    }
    if variant == SENT_VARIANT || variant == SENT_WITH_EXTERNAL_ID_VARIANT {
        cursor.next_message_id = (cursor.next_message_id.checked_add(1))
            .ok_or_else(|| format!("frame seq {seq} overflows the message id"))?;
    }
    cursor.previous_at_ms = add_time(cursor.previous_at_ms, at_delta_ms, "event time")?;
    Ok(false)
}

/// Checks a close marker (no lag, no time of its own) and moves `cursor` to its appended time.
#[inline]
fn resolve_close_marker<'a>(
    cursor: &mut FrameCursor,
    wire: &WireFrame<'_>,
    appended_ms: i64,
) -> Result<Frame<'a>, String> {
    if wire.durable_lag != 0 || wire.at_delta_ms != 0 {
        return Err(format!(
            "close marker at seq {} has non-zero lag or time",
            wire.seq
        ));
    }
    cursor.previous_appended_ms = appended_ms;
    Ok(Frame::Closed {
        last_seq: wire.seq,
        appended_ms,
    })
}

/// The event an event frame's payload holds, happening at `at_ms`, its message ids counted
/// back from `cursor`'s next one; and the next message id after it.
#[inline(always)]
fn resolve_event<'a>(
    cursor: &FrameCursor,
    wire: &WireFrame<'a>,
    at_ms: i64,
) -> Result<(Event<'a>, u64), String> {
    let seq = wire.seq;
    let message = |back: u64| resolve_message_back(cursor, seq, back);
    let event = match wire.payload {
        WirePayload::Closed => unreachable!("resolve takes close markers apart"),
        WirePayload::MessageSent {
            user_id,
            channel,
            message_type,
            cost_micros,
        } => {
            let send = (user_id, channel, message_type, cost_micros);
            return resolve_send(cursor, seq, at_ms, send, None);
        }
        WirePayload::MessageSentWithExternalId {
            user_id,
            channel,
            message_type,
            cost_micros,
            external_id,
        } => {
            let send = (user_id, channel, message_type, cost_micros);
            return resolve_send(cursor, seq, at_ms, send, Some(external_id));
        }
        WirePayload::MessageDelivered { message_back } => Event::MessageDelivered {
            message_id: message(message_back)?,
            at_ms,
        },
        WirePayload::MessageOpened { message_back } => Event::MessageOpened {
            message_id: message(message_back)?,
            at_ms,
        },
        WirePayload::UserAction {
            message_back,
            action,
        } => Event::UserAction {
            message_id: message(message_back)?,
            action: resolve_name(seq, "action", action)?,
            at_ms,
        },
        WirePayload::MessageFailed {
            message_back,
            reason,
        } => Event::MessageFailed {
            message_id: message(message_back)?,
            reason: resolve_name(seq, "reason", reason)?,
            at_ms,
        },
        WirePayload::FinancialOutcome {
            user_id,
            outcome,
            amount_micros,
        } => resolve_outcome(seq, at_ms, user_id, outcome, amount_micros)?,
        WirePayload::BudgetSet {
            scope,
            month_index,
            amount_micros,
            alert_percent,
        } => resolve_budget(seq, at_ms, scope, month_index, amount_micros, alert_percent)?,
    };
    // Only a send takes a message id.
    Ok((event, cursor.next_message_id))
}

/// The `MessageSent` a send frame holds (`send`: its user id, channel byte, message type and
/// cost in micros; `external_id`: the one a send frame with an external id has): it takes
/// `cursor`'s next message id, and the next message id after it is returned too.
#[inline(always)]
fn resolve_send<'a>(
    cursor: &FrameCursor,
    seq: u64,
    at_ms: i64,
    send: (u64, u8, &'a str, u64),
    external_id: Option<&'a str>,
) -> Result<(Event<'a>, u64), String> {
    let (user_id, channel_byte, message_type, cost_micros) = send;
    if let Some(external_id) = external_id
        && !is_valid_external_id(external_id)
    {
        return Err(format!(
            "frame seq {seq} has an invalid external id {external_id:?}"
        ));
    }
    let channel = *Channel::ALL
        .get(usize::from(channel_byte))
        .ok_or_else(|| format!("frame seq {seq} has channel byte {channel_byte}"))?;
    let cost = i64::try_from(cost_micros)
        .ok()
        .filter(|micros| *micros <= MONEY_MICROS_MAX)
        .ok_or_else(|| format!("frame seq {seq} has cost {cost_micros} micros"))?;
    let next_message_id = cursor
        .next_message_id
        .checked_add(1)
        .ok_or_else(|| format!("frame seq {seq} overflows the message id"))?;
    let event = Event::MessageSent {
        message_id: MessageId(cursor.next_message_id),
        user_id: resolve_user(seq, user_id)?,
        channel,
        message_type: resolve_name(seq, "message_type", message_type)?,
        cost: Money::from_micros(i128::from(cost)),
        at_ms,
        external_id,
    };
    Ok((event, next_message_id))
}

/// The `FinancialOutcome` an outcome frame holds.
#[inline]
fn resolve_outcome<'a>(
    seq: u64,
    at_ms: i64,
    user_id: u64,
    outcome: &'a str,
    amount_micros: i64,
) -> Result<Event<'a>, String> {
    if amount_micros.unsigned_abs() > MONEY_MICROS_MAX as u64 {
        return Err(format!("frame seq {seq} has amount {amount_micros} micros"));
    }
    Ok(Event::FinancialOutcome {
        user_id: resolve_user(seq, user_id)?,
        outcome: resolve_name(seq, "outcome", outcome)?,
        amount: Money::from_micros(i128::from(amount_micros)),
        at_ms,
    })
}

/// The `BudgetSet` a budget frame holds.
#[inline]
fn resolve_budget<'a>(
    seq: u64,
    at_ms: i64,
    scope: u8,
    month_index: i64,
    amount_micros: u64,
    alert_percent: u8,
) -> Result<Event<'a>, String> {
    let scope = budget_scope_of_byte(scope)
        .ok_or_else(|| format!("frame seq {seq} has budget scope byte {scope}"))?;
    let month = Month::from_index(month_index)
        .ok_or_else(|| format!("frame seq {seq} has budget month {month_index}"))?;
    let amount = i64::try_from(amount_micros)
        .ok()
        .filter(|micros| (1..=MONEY_MICROS_MAX).contains(micros))
        .ok_or_else(|| format!("frame seq {seq} has budget {amount_micros} micros"))?;
    if !(1..=100).contains(&alert_percent) {
        return Err(format!("frame seq {seq} has alert percent {alert_percent}"));
    }
    Ok(Event::BudgetSet {
        scope,
        month,
        amount: Money::from_micros(i128::from(amount)),
        alert_percent,
        at_ms,
    })
}

/// The message `back` messages before `cursor`'s next one, which must have been sent.
#[inline(always)]
fn resolve_message_back(cursor: &FrameCursor, seq: u64, back: u64) -> Result<MessageId, String> {
    if back == 0 || back >= cursor.next_message_id {
        return Err(format!(
            "frame seq {seq} refers {back} messages back, but only {} were sent",
            cursor.next_message_id - 1
        ));
    }
    Ok(MessageId(cursor.next_message_id - back))
}

/// `value`, if it is a valid name for `field`.
#[inline(always)]
fn resolve_name<'a>(seq: u64, field: &str, value: &'a str) -> Result<&'a str, String> {
    if is_valid_name(value) {
        Ok(value)
    } else {
        Err(format!("frame seq {seq} has an invalid {field} {value:?}"))
    }
}

/// The user `id` names: any but 0.
#[inline(always)]
fn resolve_user(seq: u64, id: u64) -> Result<UserId, String> {
    if id == 0 {
        Err(format!("frame seq {seq} names user 0"))
    } else {
        Ok(UserId(id))
    }
}

/// `DateTime::<Utc>::MIN_UTC` in ms since the Unix epoch (checked by a test).
const TIME_MS_MIN: i64 = -8_334_601_228_800_000;
/// `DateTime::<Utc>::MAX_UTC` in ms since the Unix epoch (checked by a test).
const TIME_MS_MAX: i64 = 8_210_266_876_799_999;

/// `previous + delta`, if that is a time `DateTime<Utc>` can hold.
fn add_time(previous: i64, delta: i64, what: &str) -> Result<i64, String> {
    previous
        .checked_add(delta)
        .filter(|ms| (TIME_MS_MIN..=TIME_MS_MAX).contains(ms))
        .ok_or_else(|| format!("{what} out of range ({previous} + {delta} ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::FRAME_PREFIX_BYTES;

    #[test]
    fn a_reading_told_every_usize_max_bytes_is_never_told() {
        let told = |start: usize, every: usize, reached: &[usize]| {
            let mut told = Vec::new();
            let mut passed = EveryBytes::new(start, every, |at| told.push(at));
            for &at in reached {
                passed.reached(at);
            }
            told
        };
        assert_eq!(
            told(100, usize::MAX, &[100, 101, 1 << 20, usize::MAX - 1]),
            [0usize; 0]
        );
        assert_eq!(
            told(100, 10, &[105, 110, 115, 125, usize::MAX]),
            [110, 125, usize::MAX]
        );
    }

    #[test]
    fn a_snapshot_list_longer_than_its_bytes_can_hold_is_refused_before_it_is_allocated() {
        let mut body = Vec::new();
        for len in [3_u64, 1 << 40] {
            body.clear();
            encode_snapshot_part(&(len, [7_u64, 8, 9]), &mut body).unwrap();
            let read = SnapshotReader::new(&body).decode_list::<u64>(8, 8, |_| ());
            match len {
                3 => assert_eq!(read.unwrap(), [7, 8, 9]),
                _ => {
                    let error = read.unwrap_err();
                    assert!(
                        error.contains("a list of 1099511627776 items in 24 bytes"),
                        "{error}"
                    );
                }
            }
        }
        // Four items of 8 bytes do not fit in 24.
        body.clear();
        encode_snapshot_part(&(4_u64, [7_u64, 8, 9]), &mut body).unwrap();
        let error = SnapshotReader::new(&body)
            .decode_list::<u64>(8, 8, |_| ())
            .unwrap_err();
        assert!(error.contains("a list of 4 items in 24 bytes"), "{error}");
    }

    /// One segment holding every kind of frame, with fixed times: docs/FORMAT.md's example.
    fn golden_segment() -> Vec<u8> {
        golden_segment_of(None, None)
    }

    /// The external id the first send of `tests/golden/segment_v2_external_id.bin` carries
    /// (34 bytes, as a Twilio MessageSid).
    const GOLDEN_EXTERNAL_ID: &str = "SM0123456789abcdef0123456789abcdef";

    /// The store id of `tests/golden/segment_v2.bin`.
    const GOLDEN_STORE_ID: u64 = 0x0123_4567_89ab_cdef;

    /// The golden segment's frames behind a header of the version `store_id` implies, the
    /// first send carrying `external_id`.
    fn golden_segment_of(store_id: Option<u64>, external_id: Option<&'static str>) -> Vec<u8> {
        let header = SegmentHeader {
            first_seq: 1,
            first_message_id: 1,
            store_id,
        };
        let mut bytes = header.encode().to_vec();
        let mut cursor = FrameCursor::new(&header);
        let t0 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
        let appended = 1_764_000_000_000;
        let events = [
            Event::MessageSent {
                message_id: MessageId(1),
                user_id: UserId(123),
                channel: Channel::Sms,
                message_type: "low_balance",
                cost: Money::from_micros(50_000),
                at_ms: t0,
                external_id,
            },
            Event::MessageDelivered {
                message_id: MessageId(1),
                at_ms: t0 + 1_500,
            },
            Event::MessageOpened {
                message_id: MessageId(1),
                at_ms: t0 + 60_000,
            },
            Event::UserAction {
                message_id: MessageId(1),
                action: "clicked_link",
                at_ms: t0 + 61_000,
            },
            Event::MessageSent {
                message_id: MessageId(2),
                user_id: UserId(7),
                channel: Channel::InApp,
                message_type: "upgrade_offer",
                cost: Money::ZERO,
                at_ms: t0 + 1_000,
                external_id: None,
            },
            Event::MessageFailed {
                message_id: MessageId(2),
                reason: "undelivered",
                at_ms: t0 + 2_000,
            },
            Event::FinancialOutcome {
                user_id: UserId(123),
                outcome: "bill_paid_on_time",
                amount: Money::from_micros(-25_000_000),
                at_ms: t0 + 86_400_000,
            },
        ];
        for (index, event) in events.into_iter().enumerate() {
            let seq = index as u64 + 1;
            let logged = LoggedEvent {
                seq,
                appended_ms: appended + index as i64,
                durable_seq: seq - 1,
                event,
            };
            encode_frame(&mut cursor, &Frame::Event(logged), &mut bytes);
        }
        encode_frame(
            &mut cursor,
            &Frame::Closed {
                last_seq: 7,
                appended_ms: appended + 10,
            },
            &mut bytes,
        );
        bytes
    }

    #[test]
    fn a_peek_at_any_offset_agrees_with_the_full_read_wherever_that_succeeds() {
        let mut bytes = golden_segment();
        // Wide varints too: a seq and a lag past one byte.
        let header = SegmentHeader {
            first_seq: 70_000,
            first_message_id: 1,
            store_id: None,
        };
        let mut cursor = FrameCursor::new(&header);
        let event = Event::MessageDelivered {
            message_id: MessageId(1),
            at_ms: 1_735_689_600_000,
        };
        for (seq, durable_seq) in [(70_000, 0), (5_000_000_000, 1), (300, 299)] {
            let logged = LoggedEvent {
                seq,
                appended_ms: 1_735_689_600_000,
                durable_seq,
                event,
            };
            cursor.next_message_id = 2;
            encode_frame(&mut cursor, &Frame::Event(logged), &mut bytes);
        }
        let mut full_reads = 0;
        for offset in 0..bytes.len() {
            let peeked = peek_frame_seqs(&bytes[offset..]);
            if let Ok(raw) = read_frame(&bytes[offset..]) {
                assert_eq!(
                    peeked,
                    Some((raw.seq(), raw.durable_seq())),
                    "offset {offset}"
                );
                full_reads += 1;
            }
        }
        assert!(full_reads >= 11, "{full_reads} frames read");
    }

    #[test]
    fn segment_bytes_match_the_golden_file() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/segment_v1.bin");
        let bytes = golden_segment();
        if std::env::var_os("COMMLOG_BLESS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden =
            std::fs::read(&path).expect("tests/golden/segment_v1.bin (COMMLOG_BLESS=1 writes it)");
        assert_eq!(
            bytes, golden,
            "the byte layout changed: that is a format change (docs/FORMAT.md)"
        );
    }

    #[test]
    fn version_2_segment_bytes_match_their_golden_file() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/segment_v2.bin");
        let bytes = golden_segment_of(Some(GOLDEN_STORE_ID), None);
        if std::env::var_os("COMMLOG_BLESS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden =
            std::fs::read(&path).expect("tests/golden/segment_v2.bin (COMMLOG_BLESS=1 writes it)");
        assert_eq!(
            bytes, golden,
            "the byte layout changed: that is a format change (docs/FORMAT.md)"
        );
        // Only the header differs from version 1: the frames behind it are the same bytes.
        let version_1 = golden_segment();
        assert_eq!(
            bytes[SEGMENT_HEADER_V2_BYTES..],
            version_1[SEGMENT_HEADER_V1_BYTES..]
        );
    }

    #[test]
    fn external_id_segment_bytes_match_their_golden_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/segment_v2_external_id.bin");
        let bytes = golden_segment_of(Some(GOLDEN_STORE_ID), Some(GOLDEN_EXTERNAL_ID));
        if std::env::var_os("COMMLOG_BLESS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden = std::fs::read(&path)
            .expect("tests/golden/segment_v2_external_id.bin (COMMLOG_BLESS=1 writes it)");
        assert_eq!(
            bytes, golden,
            "the byte layout changed: that is a format change (docs/FORMAT.md)"
        );
        // Only the first frame differs from segment_v2.bin: variant 8 instead of 0, and the
        // external id (length, then bytes) after the cost.
        let plain = golden_segment_of(Some(GOLDEN_STORE_ID), None);
        let first = SEGMENT_HEADER_V2_BYTES;
        let plain_first_len = FRAME_PREFIX_BYTES + usize::from(plain[first]);
        let first_len = FRAME_PREFIX_BYTES + usize::from(bytes[first]);
        assert_eq!(first_len, plain_first_len + 1 + GOLDEN_EXTERNAL_ID.len());
        assert_eq!(bytes[..first], plain[..first]);
        assert_eq!(bytes[first + first_len..], plain[first + plain_first_len..]);
        let body = &bytes[first + FRAME_PREFIX_BYTES..first + first_len];
        let plain_body = &plain[first + FRAME_PREFIX_BYTES..first + plain_first_len];
        assert_eq!(body[20], 8, "MessageSentWithExternalId is variant 8");
        assert_eq!(plain_body[20], 0);
        assert_eq!(body[..20], plain_body[..20]);
        assert_eq!(body[21..plain_body.len()], plain_body[21..]);
        assert_eq!(
            body[plain_body.len()],
            GOLDEN_EXTERNAL_ID.len() as u8,
            "length of the external id"
        );
        assert_eq!(&body[plain_body.len() + 1..], GOLDEN_EXTERNAL_ID.as_bytes());
        // It decodes back to the event it was written from.
        let header = SegmentHeader::decode(&bytes).unwrap();
        let mut cursor = FrameCursor::new(&header);
        let raw = read_frame(&bytes[first..]).unwrap();
        let Frame::Event(logged) = resolve(&mut cursor, &raw).unwrap() else {
            panic!("an event")
        };
        assert!(matches!(
            logged.event,
            Event::MessageSent {
                message_id: MessageId(1),
                user_id: UserId(123),
                external_id: Some(GOLDEN_EXTERNAL_ID),
                ..
            }
        ));
    }

    /// What a build that stops at variant 8 makes of a newer variant: a body that does not
    /// decode, the reason naming the variant index.
    #[test]
    fn a_frame_of_an_unknown_variant_fails_naming_its_index() {
        let bytes = golden_segment_of(None, None);
        let first = SEGMENT_HEADER_V1_BYTES;
        let body_len = usize::from(bytes[first]);
        let mut frame = bytes[first..first + FRAME_PREFIX_BYTES + body_len].to_vec();
        frame[FRAME_PREFIX_BYTES + 20] = 9;
        let crc = crc32fast::hash(&frame[FRAME_PREFIX_BYTES..]);
        frame[2..6].copy_from_slice(&crc.to_le_bytes());
        let error = read_frame(&frame).unwrap_err();
        assert!(error.contains("does not decode"), "{error}");
        assert!(error.contains("found: 9"), "{error}");
    }

    #[test]
    fn a_frame_with_an_invalid_external_id_fails_to_resolve() {
        let header = SegmentHeader {
            first_seq: 1,
            first_message_id: 1,
            store_id: None,
        };
        for bad in ["", "has space", "tab\t", "é", &"x".repeat(129)] {
            let wire = WireFrame {
                seq: 1,
                durable_lag: 1,
                appended_delta_ms: 1_764_000_000_000,
                at_delta_ms: 1_735_689_600_000,
                payload: WirePayload::MessageSentWithExternalId {
                    user_id: 1,
                    channel: 0,
                    message_type: "low_balance",
                    cost_micros: 0,
                    external_id: bad,
                },
            };
            let body = bincode::encode_to_vec(&wire, CONFIG).unwrap();
            let mut frame = (body.len() as u16).to_le_bytes().to_vec();
            frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            frame.extend_from_slice(&body);
            let raw = read_frame(&frame).unwrap();
            let error = resolve(&mut FrameCursor::new(&header), &raw).unwrap_err();
            assert!(error.contains("invalid external id"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_version_2_header_is_laid_out_as_documented_and_round_trips() {
        let header = SegmentHeader {
            first_seq: 412_733,
            first_message_id: 9,
            store_id: Some(GOLDEN_STORE_ID),
        };
        let bytes = header.encode();
        assert_eq!(bytes.len(), SEGMENT_HEADER_V2_BYTES);
        assert_eq!(&bytes[0..8], b"CMLOGSEG");
        assert_eq!(bytes[8..12], 2u32.to_le_bytes());
        assert_eq!(bytes[12..20], 412_733u64.to_le_bytes());
        assert_eq!(bytes[20..28], 9u64.to_le_bytes());
        assert_eq!(bytes[28..36], GOLDEN_STORE_ID.to_le_bytes());
        assert_eq!(bytes[36..40], crc32fast::hash(&bytes[0..36]).to_le_bytes());
        assert_eq!(
            bytes[40..56],
            [0; 16],
            "an unsealed segment's seal slot is zeros"
        );
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        assert_eq!(decode_seal(&bytes), None);
        // The header checksum leaves the seal slot out: sealing keeps the header valid.
        let mut sealed = bytes.clone();
        sealed[40..56].copy_from_slice(&encode_seal(412_900));
        assert_eq!(sealed[40..48], 412_900u64.to_le_bytes());
        assert_eq!(
            sealed[48..52],
            crc32fast::hash(&sealed[40..48]).to_le_bytes()
        );
        assert_eq!(sealed[52..56], [0; 4]);
        assert_eq!(SegmentHeader::decode(&sealed), Ok(header));
        assert_eq!(decode_seal(&sealed), Some(412_900));
        // A damaged slot fails its checksum: not sealed.
        for bit in 0..16 * 8 {
            let mut damaged = sealed.clone();
            damaged[40 + bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_seal(&damaged), None, "bit {bit}");
            assert_eq!(SegmentHeader::decode(&damaged), Ok(header), "bit {bit}");
        }
        // A version 1 header has no slot.
        let version_1 = SegmentHeader {
            store_id: None,
            ..header
        }
        .encode();
        assert_eq!(decode_seal(&version_1), None);
        for len in 0..SEGMENT_HEADER_V2_BYTES {
            assert!(SegmentHeader::decode(&bytes[..len]).is_err(), "{len} bytes");
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(
            SegmentHeader::decode(&flipped)
                .unwrap_err()
                .contains("checksum")
        );
    }

    #[test]
    fn golden_segment_decodes_to_the_same_frames() {
        let bytes = golden_segment();
        let header = SegmentHeader::decode(&bytes).unwrap();
        assert_eq!(
            header,
            SegmentHeader {
                first_seq: 1,
                first_message_id: 1,
                store_id: None,
            }
        );
        let mut cursor = FrameCursor::new(&header);
        let mut offset = SEGMENT_HEADER_V1_BYTES;
        let mut frames = Vec::new();
        while offset < bytes.len() {
            let raw = read_frame(&bytes[offset..]).unwrap();
            frames.push(resolve(&mut cursor, &raw).unwrap());
            offset += raw.frame_bytes;
        }
        assert_eq!(frames.len(), 8);
        assert!(matches!(
            frames[3],
            Frame::Event(LoggedEvent {
                seq: 4,
                event: Event::UserAction {
                    message_id: MessageId(1),
                    action: "clicked_link",
                    at_ms: 1_735_689_661_000
                },
                ..
            })
        ));
        assert!(
            matches!(frames[6], Frame::Event(LoggedEvent { event: Event::FinancialOutcome { amount, .. }, .. }) if amount.micros() == -25_000_000)
        );
        assert_eq!(
            frames[7],
            Frame::Closed {
                last_seq: 7,
                appended_ms: 1_764_000_000_010
            }
        );
    }

    /// A walk that only advances the cursor keeps it where resolving every frame does, frame by
    /// frame, over both golden segments (sends with and without an external id, follow-ups, an
    /// outcome and a close marker).
    #[test]
    fn advancing_moves_the_cursor_as_resolving_does() {
        for external_id in [None, Some(GOLDEN_EXTERNAL_ID)] {
            let bytes = golden_segment_of(Some(GOLDEN_STORE_ID), external_id);
            let header = SegmentHeader::decode(&bytes).unwrap();
            let (mut resolved, mut advanced) =
                (FrameCursor::new(&header), FrameCursor::new(&header));
            let mut offset = SEGMENT_HEADER_V2_BYTES;
            let mut closes = 0;
            while offset < bytes.len() {
                let raw = read_frame(&bytes[offset..]).unwrap();
                let frame = resolve(&mut resolved, &raw).unwrap();
                let closed = advance(&mut advanced, &bytes[offset..]).unwrap();
                assert_eq!(closed, matches!(frame, Frame::Closed { .. }));
                closes += usize::from(closed);
                assert_eq!(advanced, resolved, "after the frame at offset {offset}");
                offset += raw.frame_bytes;
            }
            assert_eq!(closes, 1);
            assert_eq!(resolved.next_message_id, 3);
        }
    }

    #[test]
    fn a_budget_frame_round_trips() {
        let header = SegmentHeader {
            first_seq: 9,
            first_message_id: 1,
            store_id: None,
        };
        let mut cursor = FrameCursor::new(&header);
        let event = Event::BudgetSet {
            scope: BudgetScope::Channel(Channel::InApp),
            month: Month::new(2025, 12).unwrap(),
            amount: Money::from_micros(1_000_000_000),
            alert_percent: 75,
            at_ms: 1_764_000_000_000,
        };
        let logged = LoggedEvent {
            seq: 9,
            appended_ms: 1_764_000_000_001,
            durable_seq: 8,
            event,
        };
        let mut bytes = Vec::new();
        encode_frame(&mut cursor, &Frame::Event(logged), &mut bytes);
        let raw = read_frame(&bytes).unwrap();
        assert_eq!(raw.frame_bytes, bytes.len());
        // Variant 7 after seq, lag and the two 9-byte time deltas; scope 1 + in_app (3).
        assert_eq!(
            &bytes[FRAME_PREFIX_BYTES + 20..FRAME_PREFIX_BYTES + 22],
            &[7, 4]
        );
        let mut cursor = FrameCursor::new(&header);
        assert_eq!(resolve(&mut cursor, &raw).unwrap(), Frame::Event(logged));
    }

    #[test]
    fn the_first_frame_is_laid_out_as_documented() {
        let bytes = golden_segment();
        let frame = &bytes[SEGMENT_HEADER_V1_BYTES..];
        let body_len = usize::from(u16::from_le_bytes([frame[0], frame[1]]));
        let body = &frame[FRAME_PREFIX_BYTES..FRAME_PREFIX_BYTES + body_len];
        assert_eq!(
            u32::from_le_bytes(frame[2..6].try_into().unwrap()),
            crc32fast::hash(body)
        );
        // seq 1, lag 1, appended delta (zigzag, 9 bytes), time delta (zigzag, 9 bytes), tag 0.
        assert_eq!(body[0], 1);
        assert_eq!(body[1], 1);
        assert_eq!(body[2], 253);
        assert_eq!(
            u64::from_le_bytes(body[3..11].try_into().unwrap()),
            1_764_000_000_000 * 2
        );
        assert_eq!(body[11], 253);
        assert_eq!(
            u64::from_le_bytes(body[12..20].try_into().unwrap()),
            1_735_689_600_000 * 2
        );
        assert_eq!(body[20], 0, "MessageSent is variant 0");
        assert_eq!(body[21], 123, "user id");
        assert_eq!(body[22], 0, "channel sms");
        assert_eq!(body[23], 11, "length of \"low_balance\"");
        assert_eq!(&body[24..35], b"low_balance");
        assert_eq!(
            &body[35..],
            &[251, 0x50, 0xC3],
            "cost 50,000 micros as u16 varint"
        );
    }

    #[test]
    fn time_bounds_are_chronos() {
        assert_eq!(
            TIME_MS_MIN,
            chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp_millis()
        );
        assert_eq!(
            TIME_MS_MAX,
            chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis()
        );
    }
}
