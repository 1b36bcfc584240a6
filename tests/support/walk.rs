//! Reading a snapshot's bytes field by field, as docs/FORMAT.md, "Snapshots", lays them out,
//! and making its header fit bytes changed on purpose.

/// Sets a snapshot's header to fit its bytes: the body length, the body crc and the header crc,
/// so that only what was changed on purpose is wrong.
pub fn recompute_checksums(bytes: &mut [u8]) {
    let body_len = (bytes.len() - 28) as u64;
    bytes[12..20].copy_from_slice(&body_len.to_le_bytes());
    let body_crc = crc32fast::hash(&bytes[28..]);
    bytes[20..24].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[..24]);
    bytes[24..28].copy_from_slice(&header_crc.to_le_bytes());
}

/// A cursor over a snapshot's bytes; each read takes its field and moves past it.
pub struct Walk<'a> {
    pub bytes: &'a [u8],
    pub offset: usize,
}

impl<'a> Walk<'a> {
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let taken = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        taken
    }

    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }

    pub fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take(8).try_into().unwrap())
    }

    pub fn i128(&mut self) -> i128 {
        i128::from_le_bytes(self.take(16).try_into().unwrap())
    }

    /// An option's tag: whether a value follows.
    pub fn some(&mut self) -> bool {
        match self.u8() {
            0 => false,
            1 => true,
            tag => panic!("option tag {tag} at offset {}", self.offset - 1),
        }
    }

    pub fn option<T>(&mut self, value: impl FnOnce(&mut Walk<'a>) -> T) -> Option<T> {
        self.some().then(|| value(self))
    }

    pub fn str(&mut self) -> &'a str {
        let len = self.u64() as usize;
        std::str::from_utf8(self.take(len)).unwrap()
    }

    pub fn list<T>(&mut self, mut item: impl FnMut(&mut Walk<'a>) -> T) -> Vec<T> {
        let len = self.u64();
        (0..len).map(|_| item(self)).collect()
    }

    /// A `(time, index)` pair of a user's list.
    pub fn entry(&mut self) -> (i64, u32) {
        (self.i64(), self.u32())
    }

    /// A user's list: each entry's offset, time and index.
    pub fn skip_pairs(&mut self) -> Vec<(usize, i64, u32)> {
        self.list(|walk| {
            let offset = walk.offset;
            let (at_ms, index) = walk.entry();
            (offset, at_ms, index)
        })
    }
}
