//! The messages' records, by index (message id `n` at index `n − 1`): decoded whole, or, for a
//! store opened with `Options::decode_on_demand`, in chunks of [`CHUNK_MESSAGES`] decoded on
//! demand. Such a store keeps its snapshot's file mapped and decodes a chunk of records the
//! first time anything reads or changes one of them, so an open that answers a few users'
//! queries decodes a few chunks, not every message: the records a snapshot holds cost
//! page-cache pages, which the kernel maps in cheaply, rather than fresh memory, which it must
//! clear page by page. Records added by the fold go into the last chunk.
//!
//! A whole table holds its first [`FLAT_RECORDS`] records in one `Vec`, and those past them in
//! fixed chunks of [`WHOLE_CHUNK_MESSAGES`], so that another thread can provide the memory of
//! the next chunks ([`ReadyChunks`]): a replay's folding thread, which sets the pace, then
//! seldom waits on the kernel for fresh pages. A read past the `Vec` takes one lookup more, in
//! a list of chunks small enough to stay in cache.
//!
//! A chunk's bytes were checked with the whole snapshot at open (`snapshot::load`), and each
//! keeps how they hashed then (the crc32 the open's reading had taken at the chunk's start and
//! end: `CrcSpan`), checked again when it is decoded: bytes that changed on disk since are
//! never taken for records. Once decoded, a chunk's pages of the file are given back to the OS.

use std::ops::{Index, IndexMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};

use crate::codec::SnapshotReader;
use crate::projection::names::NameId;
use crate::projection::status::{MessageState, SpareRare};
use crate::snapshot::{CrcSpan, MappedSnapshot, PAGE_BYTES};

/// Records per chunk decoded on demand: about 14 KB decoded. A user's hundred messages of a
/// month touch at most a hundred chunks, a small share of a large store's; a smaller chunk
/// decodes fewer records that the query does not read, a larger one keeps fewer chunks.
pub(crate) const CHUNK_MESSAGES: usize = 256;

/// Records a whole table keeps in one `Vec` (about 59 MB; fewer in unit tests, so that they
/// cross into the chunks), a multiple of [`WHOLE_CHUNK_MESSAGES`].
const FLAT_RECORDS: usize = if cfg!(test) { 1 << 17 } else { 1 << 20 };

/// Records per chunk of a whole table past its first [`FLAT_RECORDS`]: about 59 MB, above the
/// 32 MiB past which the allocator (glibc's) maps each allocation on its own and gives it back
/// to the OS when it is freed, so that a dropped table's memory goes back at once (fewer in
/// unit tests). A multiple of [`CHUNK_MESSAGES`].
const WHOLE_CHUNK_MESSAGES: usize = 1 << WHOLE_CHUNK_SHIFT;
const WHOLE_CHUNK_SHIFT: u32 = if cfg!(test) { 14 } else { 20 };

/// The records of the messages: whole, or, loaded from a snapshot to be decoded on demand, in
/// chunks decoded when first used.
#[derive(Debug, Default)]
pub(crate) struct MessageTable {
    whole: WholeRecords,
    lazy: Option<Box<LazyRecords>>,
}

/// The records of a whole table: the first [`FLAT_RECORDS`] in one `Vec`, the others in chunks
/// of [`WHOLE_CHUNK_MESSAGES`], every chunk but the last full.
#[derive(Debug, Default)]
struct WholeRecords {
    flat: Vec<MessageState>,
    chunks: Vec<Vec<MessageState>>,
    len: usize,
    /// Where a new chunk's memory comes from, while another thread makes it ready.
    ready: Option<Arc<ReadyChunks>>,
}

/// Chunks whose memory another thread has made ready for a [`MessageTable`] growing fast:
/// allocated and written once, so that the kernel has provided their pages before the table
/// fills them. A replay's decoding thread makes them a step at a time while it waits for the
/// folding thread ([`top_up`](Self::top_up)); a snapshot's load makes those its messages need
/// on the thread that checks the log meanwhile ([`make_needed`](Self::make_needed)); a
/// writer's thread keeps the next one ready while tracking calls fill the table
/// ([`keep_one_ready`](Self::keep_one_ready)).
#[derive(Debug, Default)]
pub(crate) struct ReadyChunks {
    chunks: Mutex<Vec<Vec<MessageState>>>,
    /// Signalled, under `chunks`' lock, when the table takes a chunk or begins its chunks, and
    /// at [`stop`](Self::stop): what [`keep_one_ready`](Self::keep_one_ready) waits for.
    changed: Condvar,
    stopped: AtomicBool,
    /// The chunk [`top_up`](Self::top_up) is making ready, up to its length so far.
    making: Mutex<Vec<MessageState>>,
    /// Chunks the table still needs, as far as it knows ([`expect`](Self::expect)).
    needed: AtomicUsize,
    /// Whether the table has begun its chunks ([`want`](Self::want)); until then
    /// [`top_up`](Self::top_up) makes none.
    wanted: AtomicBool,
}

/// Chunks [`ReadyChunks::top_up`] keeps ready: enough for the folding thread to go on while
/// the other is busy.
const READY_CHUNKS: usize = 2;

/// Records [`ReadyChunks::top_up`] writes a call: about 3.7 MB, a few milliseconds, so that
/// the thread making them is never long away from its own work (fewer in unit tests).
const MAKE_STEP: usize = if cfg!(test) { 1 << 12 } else { 1 << 16 };

impl ReadyChunks {
    /// Makes ready the next [`MAKE_STEP`] records of a chunk, unless [`READY_CHUNKS`] are or
    /// the table does not [`want`](Self::want) any yet.
    pub(crate) fn top_up(&self) {
        if !self.wanted.load(Ordering::Relaxed) || self.chunks.lock().len() >= READY_CHUNKS {
            return;
        }
        let mut making = self.making.lock();
        if making.capacity() < WHOLE_CHUNK_MESSAGES {
            *making = Vec::with_capacity(WHOLE_CHUNK_MESSAGES);
        }
        // Writing records makes the kernel provide (and clear) their pages now.
        let len = (making.len() + MAKE_STEP).min(WHOLE_CHUNK_MESSAGES);
        making.resize(len, MessageState::blank());
        if len == WHOLE_CHUNK_MESSAGES {
            let mut chunk = std::mem::take(&mut *making);
            chunk.clear();
            self.chunks.lock().push(chunk);
        }
    }

    /// From now on [`top_up`](Self::top_up) makes chunks: the table has begun its first, so
    /// that a store that never needs one makes none.
    fn want(&self) {
        if !self.wanted.swap(true, Ordering::Relaxed) {
            let _chunks = self.chunks.lock();
            self.changed.notify_all();
        }
    }

    /// Keeps one chunk ready, made as soon as the table has begun its chunks and again each
    /// time it takes the one ready, until [`stop`](Self::stop): a writer's thread runs this, so
    /// that tracking calls seldom wait on the kernel for the table's fresh pages. One chunk
    /// (about 59 MB) is enough: the table fills one in about a second of tracking calls, and
    /// the thread makes the next in a tenth of that.
    pub(crate) fn keep_one_ready(&self) {
        loop {
            {
                let mut chunks = self.chunks.lock();
                while !self.stopped.load(Ordering::Relaxed)
                    && (!self.wanted.load(Ordering::Relaxed) || !chunks.is_empty())
                {
                    self.changed.wait(&mut chunks);
                }
                if self.stopped.load(Ordering::Relaxed) {
                    chunks.clear();
                    return;
                }
            }
            self.make_one();
        }
    }

    /// Ends [`keep_one_ready`](Self::keep_one_ready), which gives back the chunk it kept ready
    /// as it returns.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let _chunks = self.chunks.lock();
        self.changed.notify_all();
    }

    /// The table, empty, will hold `records` records (0: no more chunks needed).
    pub(crate) fn expect(&self, records: usize) {
        let chunks = records
            .saturating_sub(FLAT_RECORDS)
            .div_ceil(WHOLE_CHUNK_MESSAGES);
        self.needed.store(chunks, Ordering::Relaxed);
    }

    /// Makes chunks ready until as many are as the table still needs.
    pub(crate) fn make_needed(&self) {
        while self.chunks.lock().len() < self.needed.load(Ordering::Relaxed) {
            self.make_one();
        }
    }

    fn make_one(&self) {
        // Writing every record makes the kernel provide (and clear) every page now.
        let mut chunk = vec![MessageState::blank(); WHOLE_CHUNK_MESSAGES];
        chunk.clear();
        self.chunks.lock().push(chunk);
    }

    /// A chunk for the table, which needs one fewer from now on.
    fn take(&self) -> Option<Vec<MessageState>> {
        let _ = self
            .needed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |needed| {
                needed.checked_sub(1)
            });
        let mut chunks = self.chunks.lock();
        let chunk = chunks.pop();
        self.changed.notify_all();
        chunk
    }
}

impl WholeRecords {
    #[inline]
    fn get(&self, index: usize) -> Option<&MessageState> {
        (index < self.len).then(|| &self[index])
    }

    #[inline]
    fn push(&mut self, state: MessageState) {
        match self.len.checked_sub(FLAT_RECORDS) {
            None => self.flat.push(state),
            Some(beyond) => self.push_in_chunks(beyond, state),
        }
        self.len += 1;
    }

    /// Appends record `FLAT_RECORDS + beyond`: out of line, so that appending to the `Vec`
    /// stays small enough to inline where records are decoded.
    #[inline(never)]
    fn push_in_chunks(&mut self, beyond: usize, state: MessageState) {
        if beyond.is_multiple_of(WHOLE_CHUNK_MESSAGES) {
            let chunk = self.ready.as_ref().and_then(|ready| {
                ready.want();
                ready.take()
            });
            self.chunks
                .push(chunk.unwrap_or_else(|| Vec::with_capacity(WHOLE_CHUNK_MESSAGES)));
        }
        self.chunks.last_mut().expect("pushed above").push(state);
    }

    /// Records `start..` up to [`CHUNK_MESSAGES`] of them (`start` a multiple of it).
    fn chunk(&self, start: usize) -> &[MessageState] {
        let (records, first) = match start.checked_sub(FLAT_RECORDS) {
            None => (&self.flat, start),
            Some(beyond) => (
                &self.chunks[beyond >> WHOLE_CHUNK_SHIFT],
                beyond % WHOLE_CHUNK_MESSAGES,
            ),
        };
        &records[first..(first + CHUNK_MESSAGES).min(records.len())]
    }

    /// How far past the flat records `index` lies; panics if it is not past them.
    fn beyond_flat(&self, index: usize) -> usize {
        index
            .checked_sub(FLAT_RECORDS)
            .unwrap_or_else(|| panic!("message index {index} of {}", self.len))
    }

    /// Record `index`, past the flat ones: out of line, so that a read of a flat record is one
    /// comparison.
    #[inline(never)]
    fn in_chunks(&self, index: usize) -> &MessageState {
        let beyond = self.beyond_flat(index);
        &self.chunks[beyond >> WHOLE_CHUNK_SHIFT][beyond % WHOLE_CHUNK_MESSAGES]
    }

    #[inline(never)]
    fn in_chunks_mut(&mut self, index: usize) -> &mut MessageState {
        let beyond = self.beyond_flat(index);
        &mut self.chunks[beyond >> WHOLE_CHUNK_SHIFT][beyond % WHOLE_CHUNK_MESSAGES]
    }
}

impl Index<usize> for WholeRecords {
    type Output = MessageState;

    #[inline]
    fn index(&self, index: usize) -> &MessageState {
        match self.flat.get(index) {
            Some(state) => state,
            None => self.in_chunks(index),
        }
    }
}

impl IndexMut<usize> for WholeRecords {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut MessageState {
        match index < self.flat.len() {
            true => &mut self.flat[index],
            false => self.in_chunks_mut(index),
        }
    }
}

/// The records in chunks, each decoded from a mapped snapshot when first used.
#[derive(Debug)]
struct LazyRecords {
    /// Chunk `c` holds the records of indexes `c * CHUNK_MESSAGES..`; every chunk but the last
    /// is full. A chunk of the snapshot is empty until decoded; one the fold added is not.
    chunks: Vec<OnceLock<Vec<MessageState>>>,
    len: usize,
    mapped: MappedRecords,
}

/// Where the records of the chunks not yet decoded lie in a mapped snapshot.
#[derive(Debug)]
struct MappedRecords {
    snapshot: Arc<MappedSnapshot>,
    /// Each chunk's place in the file, crc32 and highest name id.
    chunks: ChunkScan,
}

impl MappedRecords {
    /// The bytes of chunk `chunk`'s records in the mapped snapshot.
    fn range(&self, chunk: usize) -> std::ops::Range<usize> {
        self.chunks.starts[chunk]..self.chunks.starts[chunk + 1]
    }
}

/// What reading a snapshot's list of messages found, chunk by chunk: where each chunk's first
/// record starts, then where the last chunk ends; how each chunk hashed (the reading's crc32 at
/// its start and end); the highest name id each chunk's records refer to.
#[derive(Debug, Default)]
pub(crate) struct ChunkScan {
    count: usize,
    starts: Vec<usize>,
    crcs: Vec<CrcSpan>,
    highest_names: Vec<NameId>,
}

impl ChunkScan {
    /// A scan of a list of `count` messages, before any record is read.
    pub(crate) fn new(count: usize) -> ChunkScan {
        ChunkScan {
            count,
            ..ChunkScan::default()
        }
    }

    /// Reads `len` records at `body`'s position, as a snapshot lays them out, the first of
    /// index `first`: the records after those this scan has read, or, in a scan of its own,
    /// from the first of a chunk. Decodes every record and passes it to `each` with its index,
    /// but keeps none; `every` and `passed` as in [`SnapshotReader::decode_list`], and
    /// `crc_at` gives the reading's crc32 at a point of the body, taken on to there, at each
    /// chunk's start.
    pub(crate) fn read(
        &mut self,
        body: &mut SnapshotReader,
        (first, len): (usize, usize),
        every: usize,
        (passed, crc_at): (impl FnMut(usize), &dyn Fn(usize) -> u32),
        mut each: impl FnMut(usize, &MessageState),
    ) -> Result<(), String> {
        let mut index = first;
        let mut spare = SpareRare::default();
        body.scan_items(len, every, passed, |start, rest| {
            if index.is_multiple_of(CHUNK_MESSAGES) {
                let crc = crc_at(start);
                if let Some(previous) = self.crcs.last_mut() {
                    previous.after = crc;
                }
                self.crcs.push(CrcSpan {
                    before: crc,
                    after: crc,
                });
                self.starts.push(start);
                self.highest_names.push(0);
            }
            let (state, taken) = match spare.record_in_place(rest) {
                Some(parsed) => parsed,
                None => decode_record(rest)?,
            };
            each(index, &state);
            index += 1;
            let highest = self.highest_names.last_mut().expect("pushed above");
            *highest = state.highest_name().max(*highest);
            spare.give_back(state);
            Ok(taken)
        })
    }

    /// The records read end at `end`: the last chunk's crc32 there (`crc_at`, as in
    /// [`ChunkScan::read`]), and where it ends.
    pub(crate) fn end_at(&mut self, end: usize, crc_at: &dyn Fn(usize) -> u32) {
        if let Some(last) = self.crcs.last_mut() {
            last.after = crc_at(end);
        }
        self.starts.push(end);
    }

    /// Joins to this scan, ended where `later` begins, the scan of the records after them, read
    /// from the first of a chunk.
    pub(crate) fn join(&mut self, later: ChunkScan) {
        self.starts.pop();
        self.starts.extend(later.starts);
        self.crcs.extend(later.crcs);
        self.highest_names.extend(later.highest_names);
    }
}

/// The record at the start of `bytes`, and the bytes it takes: parsed where it lies, or, if
/// that fails, decoded for the reason.
#[inline]
fn decode_record(bytes: &[u8]) -> Result<(MessageState, usize), String> {
    if let Some(parsed) = MessageState::record_in_place(bytes) {
        return Ok(parsed);
    }
    let mut record = SnapshotReader::new(bytes);
    Ok((record.decode::<MessageState>()?, record.position()))
}

/// Decodes `count` records from `bytes`.
fn decode_records(bytes: &[u8], count: usize) -> Result<Vec<MessageState>, String> {
    let mut records = Vec::with_capacity(CHUNK_MESSAGES);
    let mut at = 0;
    for _ in 0..count {
        let (state, taken) = decode_record(&bytes[at..])?;
        records.push(state);
        at += taken;
    }
    Ok(records)
}

impl LazyRecords {
    /// A table of the records a scan found in the body of `snapshot`, which starts at byte
    /// `body_at` of the file: none decoded yet.
    fn mapped(mut scan: ChunkScan, snapshot: Arc<MappedSnapshot>, body_at: usize) -> LazyRecords {
        for start in &mut scan.starts {
            *start += body_at;
        }
        LazyRecords {
            chunks: (0..scan.crcs.len()).map(|_| OnceLock::new()).collect(),
            len: scan.count,
            mapped: MappedRecords {
                snapshot,
                chunks: scan,
            },
        }
    }

    /// The index of the first record that refers to a name id at or past `name_count`. A chunk
    /// not decoded yet is decoded only if the scan found such an id in it.
    pub(crate) fn first_beyond(&self, name_count: usize) -> Option<usize> {
        (0..self.chunks.len()).find_map(|chunk| {
            let clear = self.chunks[chunk].get().is_none()
                && (self.mapped.chunks.highest_names[chunk] as usize) < name_count;
            if clear {
                return None;
            }
            let place = self
                .chunk(chunk)
                .iter()
                .position(|state| state.highest_name() as usize >= name_count)?;
            Some(chunk * CHUNK_MESSAGES + place)
        })
    }

    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&MessageState> {
        (index < self.len).then(|| &self.chunk(index / CHUNK_MESSAGES)[index % CHUNK_MESSAGES])
    }

    /// Appends a record.
    pub(crate) fn push(&mut self, state: MessageState) {
        if self.len.is_multiple_of(CHUNK_MESSAGES) {
            self.chunks
                .push(OnceLock::from(Vec::with_capacity(CHUNK_MESSAGES)));
        }
        let last = self.chunks.len() - 1;
        self.chunk_mut(last).push(state);
        self.len += 1;
    }

    /// The records of chunk `chunk`, decoded now if they are not yet.
    #[inline]
    pub(crate) fn chunk(&self, chunk: usize) -> &[MessageState] {
        match self.chunks[chunk].get() {
            Some(records) => records,
            None => self.chunk_decoded(chunk),
        }
    }

    #[cold]
    #[inline(never)]
    fn chunk_decoded(&self, chunk: usize) -> &[MessageState] {
        self.chunks[chunk].get_or_init(|| self.decode(chunk))
    }

    fn chunk_mut(&mut self, chunk: usize) -> &mut Vec<MessageState> {
        if self.chunks[chunk].get().is_none() {
            let decoded = self.decode(chunk);
            let _ = self.chunks[chunk].set(decoded);
        }
        self.chunks[chunk].get_mut().expect("decoded above")
    }

    /// Decodes chunk `chunk` from the mapped snapshot, then gives back the pages only its
    /// records took, and those it shares with a neighbour decoded already.
    fn decode(&self, chunk: usize) -> Vec<MessageState> {
        let records = self.mapped_chunk(chunk).decode();
        self.give_back(chunk);
        records
    }

    /// Where chunk `chunk`'s records lie in the mapped snapshot.
    fn mapped_chunk(&self, chunk: usize) -> MappedChunk {
        MappedChunk {
            chunk,
            snapshot: Arc::clone(&self.mapped.snapshot),
            range: self.mapped.range(chunk),
            crc: self.mapped.chunks.crcs[chunk],
            count: CHUNK_MESSAGES.min(self.len - chunk * CHUNK_MESSAGES),
        }
    }

    /// Gives back the pages of the mapped snapshot only chunk `chunk`'s records took, and
    /// those it shares with a neighbour decoded already.
    fn give_back(&self, chunk: usize) {
        let mapped = &self.mapped;
        let range = mapped.range(chunk);
        let decoded = |other: Option<usize>| {
            other.is_some_and(|other| {
                other < self.chunks.len() && self.chunks[other].get().is_some()
            })
        };
        let first = match decoded(chunk.checked_sub(1)) {
            true => range.start - range.start % PAGE_BYTES,
            false => range.start.next_multiple_of(PAGE_BYTES),
        };
        let last = match decoded(Some(chunk + 1)) {
            true => range
                .end
                .next_multiple_of(PAGE_BYTES)
                .min(mapped.snapshot.len()),
            false => range.end - range.end % PAGE_BYTES,
        };
        mapped.snapshot.release(first..last.max(first));
    }
}

/// A chunk of records still in the mapped snapshot, to be decoded apart from its table (by a
/// thread that holds no lock on it: `MessageTable::mapped_chunk`), then put in its place
/// (`MessageTable::install`).
#[derive(Debug)]
pub(crate) struct MappedChunk {
    chunk: usize,
    snapshot: Arc<MappedSnapshot>,
    range: std::ops::Range<usize>,
    crc: CrcSpan,
    count: usize,
}

impl MappedChunk {
    /// The chunk's records, after checking that its bytes hash as they did at load.
    pub(crate) fn decode(&self) -> Vec<MessageState> {
        let what = "the messages' records";
        let bytes = self.snapshot.checked(self.range.clone(), self.crc, what);
        decode_records(bytes, self.count).unwrap_or_else(|error| {
            self.snapshot
                .changed(&self.range, what, &format!("no longer decode ({error})"))
        })
    }
}

impl From<Vec<MessageState>> for MessageTable {
    fn from(records: Vec<MessageState>) -> MessageTable {
        let mut table = MessageTable::default();
        table
            .whole
            .flat
            .reserve_exact(records.len().min(FLAT_RECORDS));
        for state in records {
            table.push(state);
        }
        table
    }
}

impl MessageTable {
    /// A table of the records a scan found in the body of `snapshot`, which starts at byte
    /// `body_at` of the file: none decoded yet.
    pub(crate) fn mapped(
        scan: ChunkScan,
        snapshot: Arc<MappedSnapshot>,
        body_at: usize,
    ) -> MessageTable {
        MessageTable {
            whole: WholeRecords::default(),
            lazy: Some(Box::new(LazyRecords::mapped(scan, snapshot, body_at))),
        }
    }

    /// Decodes `len` records from `body` (laid out as a snapshot holds them) into a whole table:
    /// those past its `Vec` into chunks taken from `ready` while it has some; `every` and
    /// `passed` as in [`SnapshotReader::decode_items`]. Once the records before index
    /// `mark.0` (at most `len`) are read, and before any after them, calls `mark.1` with the
    /// bytes read so far.
    pub(crate) fn decode_whole(
        body: &mut SnapshotReader,
        len: usize,
        (every, mut passed): (usize, impl FnMut(usize)),
        ready: &ReadyChunks,
        mark: Option<(usize, impl FnOnce(usize) -> Result<(), String>)>,
    ) -> Result<MessageTable, String> {
        let mut whole = WholeRecords {
            flat: Vec::with_capacity(len.min(FLAT_RECORDS)),
            ..WholeRecords::default()
        };
        let mut mark = mark;
        let mut decoded = 0;
        // Decodes `count` records into `push`, stopping at the mark to call it.
        let mut records = |body: &mut SnapshotReader,
                           count: usize,
                           push: &mut dyn FnMut(MessageState)|
         -> Result<(), String> {
            let end = decoded + count;
            loop {
                if mark.as_ref().is_some_and(|(index, _)| *index == decoded) {
                    let (_, reached) = mark.take().expect("checked above");
                    reached(body.position())?;
                }
                let run_end = match &mark {
                    Some((index, _)) if *index < end => *index,
                    _ => end,
                };
                if run_end == decoded {
                    return Ok(());
                }
                body.decode_items(run_end - decoded, every, &mut passed, |_, state| {
                    push(state)
                })?;
                decoded = run_end;
            }
        };
        let flat = &mut whole.flat;
        records(body, len.min(FLAT_RECORDS), &mut |state| flat.push(state))?;
        let mut left = len - whole.flat.len();
        while left > 0 {
            let mut chunk = ready
                .take()
                .unwrap_or_else(|| Vec::with_capacity(WHOLE_CHUNK_MESSAGES));
            let count = left.min(WHOLE_CHUNK_MESSAGES);
            records(body, count, &mut |state| chunk.push(state))?;
            whole.chunks.push(chunk);
            left -= count;
        }
        whole.len = len;
        Ok(MessageTable { whole, lazy: None })
    }

    /// From now on (`Some`) or no longer (`None`), the chunks a whole table adds come from
    /// `ready` while it has some.
    pub(crate) fn take_chunks_from(&mut self, ready: Option<Arc<ReadyChunks>>) {
        if let Some(ready) = &ready
            && self.whole.len > FLAT_RECORDS
        {
            ready.want();
        }
        self.whole.ready = ready;
    }

    /// The index of the first record that refers to a name id at or past `name_count` (in a
    /// table decoded on demand, a chunk is decoded only if its scan found such an id).
    pub(crate) fn first_beyond(&self, name_count: usize) -> Option<usize> {
        match &self.lazy {
            Some(lazy) => lazy.first_beyond(name_count),
            None => self
                .iter()
                .position(|state| state.highest_name() as usize >= name_count),
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        match &self.lazy {
            Some(lazy) => lazy.len,
            None => self.whole.len,
        }
    }

    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&MessageState> {
        match &self.lazy {
            Some(lazy) => lazy.get(index),
            None => self.whole.get(index),
        }
    }

    /// Appends a record.
    #[inline]
    pub(crate) fn push(&mut self, state: MessageState) {
        match &mut self.lazy {
            Some(lazy) => lazy.push(state),
            None => self.whole.push(state),
        }
    }

    /// How many chunks of [`CHUNK_MESSAGES`] the records take.
    pub(crate) fn chunk_count(&self) -> usize {
        self.len().div_ceil(CHUNK_MESSAGES)
    }

    /// The records of chunk `chunk` (decoded now, if on demand and not yet).
    pub(crate) fn chunk(&self, chunk: usize) -> &[MessageState] {
        match &self.lazy {
            Some(lazy) => lazy.chunk(chunk),
            None => self.whole.chunk(chunk * CHUNK_MESSAGES),
        }
    }

    /// Whether some of the records may still lie in a mapped snapshot, decoded on demand.
    pub(crate) fn on_demand(&self) -> bool {
        self.lazy.is_some()
    }

    /// Chunk `chunk` (of [`chunk_count`](Self::chunk_count)), if its records still lie in
    /// the mapped snapshot, to be decoded apart from the table.
    pub(crate) fn mapped_chunk(&self, chunk: usize) -> Option<MappedChunk> {
        let lazy = self.lazy.as_ref()?;
        lazy.chunks[chunk]
            .get()
            .is_none()
            .then(|| lazy.mapped_chunk(chunk))
    }

    /// Puts the records decoded from `mapped` in their chunk, unless it was decoded meanwhile
    /// (then they are dropped: the same records), and gives back the chunk's pages (again,
    /// if decoded meanwhile: reading them to decode `records` mapped them in anew).
    pub(crate) fn install(&self, mapped: &MappedChunk, records: Vec<MessageState>) {
        if let Some(lazy) = &self.lazy {
            let _ = lazy.chunks[mapped.chunk].set(records);
            lazy.give_back(mapped.chunk);
        }
    }

    /// Every record, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &MessageState> {
        (0..self.chunk_count()).flat_map(move |chunk| self.chunk(chunk))
    }
}

impl Index<usize> for MessageTable {
    type Output = MessageState;

    #[inline]
    fn index(&self, index: usize) -> &MessageState {
        match &self.lazy {
            Some(lazy) => lazy.index(index),
            None => &self.whole[index],
        }
    }
}

impl IndexMut<usize> for MessageTable {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut MessageState {
        match &mut self.lazy {
            Some(lazy) => lazy.index_mut(index),
            None => &mut self.whole[index],
        }
    }
}

impl LazyRecords {
    fn index(&self, index: usize) -> &MessageState {
        assert!(index < self.len, "message index {index} of {}", self.len);
        &self.chunk(index / CHUNK_MESSAGES)[index % CHUNK_MESSAGES]
    }

    fn index_mut(&mut self, index: usize) -> &mut MessageState {
        assert!(index < self.len, "message index {index} of {}", self.len);
        &mut self.chunk_mut(index / CHUNK_MESSAGES)[index % CHUNK_MESSAGES]
    }
}

bincode::impl_borrow_decode!(MessageTable);

impl<Context> bincode::Decode<Context> for MessageTable {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<MessageTable, bincode::error::DecodeError> {
        Ok(MessageTable::from(Vec::<MessageState>::decode(decoder)?))
    }
}

impl PartialEq for MessageTable {
    fn eq(&self, other: &MessageTable) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Channel, UserId};
    use crate::money::Money;
    use crate::projection::names::ActionKind;
    use crate::snapshot::{assert_changed_on_disk, write_in_place};

    /// What a mark in the records decoded whole calls.
    type Reached = fn(usize) -> Result<(), String>;
    /// No mark in the records decoded whole.
    const NO_MARK: Option<(usize, Reached)> = None;

    /// Records of every kind: some with rare stages (a click, a failure, actions), most without.
    fn records(count: usize, seed: u64) -> Vec<MessageState> {
        let mut state = seed;
        let mut next = move |below: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % below
        };
        (0..count)
            .map(|index| {
                let sent_ms = 1_735_689_600_000 + index as i64 * 1_000;
                let mut record = MessageState::new(
                    UserId(next(50)),
                    Channel::ALL[next(4) as usize],
                    next(6) as NameId,
                    Money::from_micros(i128::from(next(90_000))),
                    sent_ms,
                );
                match next(10) {
                    0 => record.fold_action(7, ActionKind::Click, sent_ms + 5),
                    1 => record.fold_failed(8, sent_ms + 9),
                    2 => record.fold_action(9, ActionKind::Upgrade, sent_ms + 3),
                    3..=6 => record.fold_delivered(sent_ms + 1),
                    _ => {}
                }
                record
            })
            .collect()
    }

    /// A file holding `prefix` bytes, then `records` as a snapshot lists them, then a few bytes
    /// more; the table of its records, mapped, and the file's path.
    fn mapped_table(
        dir: &tempfile::TempDir,
        records: &[MessageState],
        prefix: usize,
    ) -> (MessageTable, std::path::PathBuf) {
        let path = dir.path().join("snapshot");
        let (snapshot, list_len) = MappedSnapshot::of_part(&path, prefix, &records.to_vec());
        let mut reader = SnapshotReader::new(&snapshot.bytes()[prefix..]);
        let mut passed = Vec::new();
        let mut scanned = Vec::new();
        let count = reader
            .decode_list_len(MessageState::SNAPSHOT_BYTES_MIN)
            .unwrap();
        let mut scan = ChunkScan::new(count);
        let crc_at = crate::snapshot::running_crc(reader.body());
        scan.read(
            &mut reader,
            (0, count),
            10_000,
            (|read| passed.push(read), &crc_at),
            |index, state| {
                assert_eq!(index, scanned.len());
                scanned.push(state.clone());
            },
        )
        .unwrap();
        scan.end_at(reader.position(), &crc_at);
        assert_eq!(reader.position(), list_len, "the scan reads the whole list");
        assert_eq!(scanned, records, "the scan gives each record");
        assert!(passed.len() + 1 >= list_len / 10_000, "{passed:?}");
        let table = MessageTable::mapped(scan, Arc::clone(&snapshot), prefix);
        (table, path)
    }

    /// Chunks decoded apart from the table and put in place answer as chunks decoded on first
    /// read; chunks decoded apart and then read or changed before they are put in place keep
    /// what was read or changed; records pushed meanwhile stay.
    #[test]
    fn chunks_put_in_place_answer_as_chunks_decoded_on_first_read() {
        let dir = tempfile::TempDir::new().unwrap();
        let count = 5_000;
        let mut expected = records(count, 3);
        let (mut table, _) = mapped_table(&dir, &expected, 28);
        let mapped: Vec<MappedChunk> = (0..table.chunk_count())
            .map(|chunk| table.mapped_chunk(chunk).unwrap())
            .collect();
        let decoded: Vec<Vec<MessageState>> = mapped.iter().map(MappedChunk::decode).collect();
        // A record of every third chunk read before its chunk is put in place, of every fifth
        // changed.
        for chunk in 0..table.chunk_count() {
            let first = chunk * CHUNK_MESSAGES;
            let index = first + chunk % CHUNK_MESSAGES.min(count - first);
            if chunk % 3 == 0 {
                assert_eq!(table.get(index), Some(&expected[index]));
            }
            if chunk % 5 == 0 {
                let at_ms = expected[index].sent_ms + 2;
                table[index].fold_opened(at_ms);
                expected[index].fold_opened(at_ms);
            }
        }
        for record in records(300, 11) {
            table.push(record.clone());
            expected.push(record);
        }
        for (chunk, records) in mapped.iter().zip(decoded) {
            table.install(chunk, records);
        }
        assert!((0..table.chunk_count()).all(|chunk| table.mapped_chunk(chunk).is_none()));
        assert!(table.iter().eq(expected.iter()));
    }

    #[test]
    fn a_mapped_table_reads_and_changes_the_records_as_a_vec_would() {
        let dir = tempfile::TempDir::new().unwrap();
        for (count, prefix) in [(0, 0), (1, 28), (257, 100), (1024, 4096), (5_000, 28)] {
            let mut expected = records(count, count as u64 + 1);
            let (mut table, _) = mapped_table(&dir, &expected, prefix);
            assert_eq!(table.len(), count);
            assert_eq!(table.chunk_count(), count.div_ceil(CHUNK_MESSAGES));
            // Out of order: each chunk is decoded with or without its neighbours decoded first,
            // and gives pages back either way.
            let mut state = 99u64;
            for _ in 0..count.min(3_000) {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let index = (state >> 33) as usize % count;
                assert_eq!(table.get(index), Some(&expected[index]), "{count}: {index}");
                if index.is_multiple_of(3) {
                    let at_ms = expected[index].sent_ms + 2;
                    table[index].fold_opened(at_ms);
                    expected[index].fold_opened(at_ms);
                }
            }
            assert_eq!(table.get(count), None);
            let more = records(1_500, 7);
            for record in &more {
                table.push(record.clone());
                expected.push(record.clone());
            }
            assert_eq!(table.len(), expected.len());
            assert!(table.iter().eq(expected.iter()), "{count}");
            assert_eq!(table, MessageTable::from(expected), "{count}");
        }
    }

    #[test]
    fn a_whole_table_reads_and_changes_the_records_as_a_vec_would_with_chunks_made_ready_or_not() {
        let count = FLAT_RECORDS + 3 * WHOLE_CHUNK_MESSAGES + 100;
        for made_ready in [false, true] {
            let ready = Arc::new(ReadyChunks::default());
            if made_ready {
                ready.top_up();
                assert_eq!(
                    ready.making.lock().len(),
                    0,
                    "none before the table wants them"
                );
                ready.want();
                // A chunk is made a step at a time.
                let steps = WHOLE_CHUNK_MESSAGES / MAKE_STEP;
                for step in 1..=READY_CHUNKS * steps {
                    ready.top_up();
                    assert_eq!(ready.chunks.lock().len(), step / steps, "step {step}");
                }
                ready.top_up();
                assert_eq!(ready.making.lock().len(), 0, "no more than READY_CHUNKS");
            }
            let mut expected = records(count, 11);
            let mut table = MessageTable::default();
            table.take_chunks_from(Some(Arc::clone(&ready)));
            for record in &expected {
                table.push(record.clone());
            }
            table.take_chunks_from(None);
            // The first chunks came from those made ready, the others were allocated.
            assert_eq!(ready.chunks.lock().len(), 0);
            assert_eq!(table.len(), count);
            for index in [
                0,
                1,
                FLAT_RECORDS - 1,
                FLAT_RECORDS,
                FLAT_RECORDS + WHOLE_CHUNK_MESSAGES - 1,
                FLAT_RECORDS + WHOLE_CHUNK_MESSAGES,
                count - 1,
            ] {
                assert_eq!(table.get(index), Some(&expected[index]), "{index}");
                let at_ms = expected[index].sent_ms + 2;
                table[index].fold_opened(at_ms);
                expected[index].fold_opened(at_ms);
                assert_eq!(table[index], expected[index], "{index}");
            }
            assert_eq!(table.get(count), None);
            assert_eq!(table.chunk_count(), count.div_ceil(CHUNK_MESSAGES));
            for chunk in 0..table.chunk_count() {
                let start = chunk * CHUNK_MESSAGES;
                let end = (start + CHUNK_MESSAGES).min(count);
                assert_eq!(table.chunk(chunk), &expected[start..end], "chunk {chunk}");
            }
            assert!(table.iter().eq(expected.iter()));
            assert_eq!(table, MessageTable::from(expected));
        }
    }

    #[test]
    fn records_decoded_whole_are_those_encoded_with_chunks_made_ready_or_not() {
        let counts = [
            0,
            FLAT_RECORDS - 1,
            FLAT_RECORDS,
            FLAT_RECORDS + 2 * WHOLE_CHUNK_MESSAGES + 7,
        ];
        for count in counts {
            let expected = records(count, count as u64 + 3);
            let mut bytes = Vec::new();
            crate::codec::encode_snapshot_part(&expected, &mut bytes).unwrap();
            for made in [0usize, 1, 5] {
                let ready = ReadyChunks::default();
                for _ in 0..made {
                    ready.make_one();
                }
                let mut reader = SnapshotReader::new(&bytes);
                let len = reader
                    .decode_list_len(MessageState::SNAPSHOT_BYTES_MIN)
                    .unwrap();
                assert_eq!(len, count);
                let mut passed = Vec::new();
                let table = MessageTable::decode_whole(
                    &mut reader,
                    len,
                    (50_000, |read| passed.push(read)),
                    &ready,
                    NO_MARK,
                )
                .unwrap();
                assert_eq!(reader.bytes_left(), 0, "{count}, {made} made");
                assert!(
                    passed.windows(2).all(|pair| pair[0] < pair[1]),
                    "{passed:?}"
                );
                assert_eq!(table.len(), count);
                assert!(table.iter().eq(expected.iter()), "{count}, {made} made");
                let chunks = count
                    .saturating_sub(FLAT_RECORDS)
                    .div_ceil(WHOLE_CHUNK_MESSAGES);
                assert_eq!(ready.chunks.lock().len(), made.saturating_sub(chunks));
                // Cut short: an error, not a table.
                if count > 0 {
                    let cut = &bytes[..bytes.len() - 1];
                    let mut reader = SnapshotReader::new(cut);
                    let len = reader.decode_list_len(1).unwrap();
                    assert!(
                        MessageTable::decode_whole(
                            &mut reader,
                            len,
                            (50_000, |_| ()),
                            &ready,
                            NO_MARK
                        )
                        .is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn a_table_wants_chunks_made_ready_once_it_has_begun_its_chunks() {
        let ready = Arc::new(ReadyChunks::default());
        let mut table = MessageTable::default();
        table.take_chunks_from(Some(Arc::clone(&ready)));
        for (index, record) in records(FLAT_RECORDS + 2, 5).into_iter().enumerate() {
            let wanted = ready.wanted.load(Ordering::Relaxed);
            assert_eq!(wanted, index > FLAT_RECORDS, "{index}");
            table.push(record);
        }
        ready.top_up();
        assert_eq!(ready.making.lock().len(), MAKE_STEP);
    }

    #[test]
    fn a_writer_s_thread_keeps_one_chunk_ready_once_the_table_has_begun_its_chunks() {
        let ready = Arc::new(ReadyChunks::default());
        let maker = {
            let ready = Arc::clone(&ready);
            std::thread::spawn(move || ready.keep_one_ready())
        };
        let ready_count = || ready.chunks.lock().len();
        let wait_for_one = || {
            let started = std::time::Instant::now();
            while ready_count() == 0 {
                assert!(started.elapsed().as_secs() < 60, "no chunk made ready");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        let expected = records(FLAT_RECORDS + 3 * WHOLE_CHUNK_MESSAGES + 5, 3);
        let mut table = MessageTable::default();
        table.take_chunks_from(Some(Arc::clone(&ready)));
        for (index, record) in expected.iter().enumerate() {
            if let Some(beyond) = index.checked_sub(FLAT_RECORDS)
                && beyond.is_multiple_of(WHOLE_CHUNK_MESSAGES)
            {
                let made = (beyond > 0).then(|| {
                    wait_for_one();
                    let chunks = ready.chunks.lock();
                    assert_eq!(chunks.len(), 1, "one chunk ready, no more");
                    chunks[0].as_ptr()
                });
                table.push(record.clone());
                if let Some(made) = made {
                    let taken = table.whole.chunks.last().unwrap().as_ptr();
                    assert_eq!(taken, made, "the table took the chunk made ready");
                }
                continue;
            }
            if index == FLAT_RECORDS - 1 {
                assert_eq!(ready_count(), 0, "none before the table begins its chunks");
            }
            table.push(record.clone());
        }
        assert!(table.iter().eq(expected.iter()));
        wait_for_one();
        ready.stop();
        maker.join().unwrap();
        assert_eq!(ready_count(), 0, "the chunk kept ready is given back");
        // A table already in its chunks wants them from the start.
        let again = Arc::new(ReadyChunks::default());
        table.take_chunks_from(Some(Arc::clone(&again)));
        assert!(again.wanted.load(Ordering::Relaxed));
        let mut small = MessageTable::from(records(3, 4));
        let unwanted = Arc::new(ReadyChunks::default());
        small.take_chunks_from(Some(Arc::clone(&unwanted)));
        assert!(!unwanted.wanted.load(Ordering::Relaxed));
    }

    #[test]
    fn a_load_makes_ready_as_many_chunks_as_the_table_needs() {
        let ready = ReadyChunks::default();
        ready.expect(FLAT_RECORDS);
        ready.make_needed();
        assert_eq!(
            ready.chunks.lock().len(),
            0,
            "the flat records need no chunk"
        );
        ready.expect(FLAT_RECORDS + 2 * WHOLE_CHUNK_MESSAGES + 1);
        ready.make_needed();
        assert_eq!(ready.chunks.lock().len(), 3);
        assert!(ready.take().is_some());
        ready.make_needed();
        assert_eq!(
            ready.chunks.lock().len(),
            2,
            "one taken is one fewer needed"
        );
        ready.expect(0);
        ready.make_needed();
        assert_eq!(ready.chunks.lock().len(), 2);
    }

    #[test]
    fn a_name_beyond_those_listed_is_found_in_the_chunk_that_holds_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut records = records(4_000, 3);
        assert_eq!(
            mapped_table(&dir, &records, 28).0.first_beyond(10),
            None,
            "names up to 9"
        );
        records[2_500].message_type = 10;
        records[3_900].message_type = 12;
        let (table, _) = mapped_table(&dir, &records, 28);
        assert_eq!(table.first_beyond(10), Some(2_500));
        assert_eq!(table.first_beyond(11), Some(3_900));
        assert_eq!(table.first_beyond(13), None);
        // Only the chunk holding the first was decoded to find it.
        let decoded: Vec<usize> = (0..table.chunk_count())
            .filter(|&chunk| table.lazy.as_ref().unwrap().chunks[chunk].get().is_some())
            .collect();
        assert_eq!(decoded, [2_500 / CHUNK_MESSAGES, 3_900 / CHUNK_MESSAGES]);
    }

    #[test]
    fn a_chunk_whose_bytes_changed_on_disk_after_the_load_is_never_decoded() {
        let dir = tempfile::TempDir::new().unwrap();
        let records = records(3_000, 5);
        let (table, path) = mapped_table(&dir, &records, 28);
        assert_eq!(table.get(10), Some(&records[10]));
        // A byte of the second chunk changes (in its first record's user id): the same
        // length, another value.
        let offset = table.lazy.as_ref().unwrap().mapped.chunks.starts[1] + 2;
        let byte = std::fs::read(&path).unwrap()[offset];
        write_in_place(&path, offset, byte ^ 0x40);
        assert_changed_on_disk(&path, &["crc32"], || {
            table.get(CHUNK_MESSAGES * 3 / 2).cloned()
        });
        // The chunk read before is still there.
        assert_eq!(table.get(10), Some(&records[10]));
    }
}
