//! One segment file: its name, creation, and read-only mapping.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Deref;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{Mmap, MmapMut};

use crate::codec::SegmentHeader;
use crate::error::{Error, Result};
use crate::limits::SEGMENT_HEADER_V2_BYTES;

/// The mode of every file in a store: files hold user data, readable by their owner only.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a store's directory and its subdirectories: its owner's only.
pub const DIRECTORY_MODE: u32 = 0o700;

const SEGMENT_SUFFIX: &str = ".log";
const SEGMENT_DIGITS: usize = 20;

/// `00000000000000000001.log`: the first sequence number, zero-padded to 20 digits.
pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:0SEGMENT_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The first sequence number a segment file's name gives, or `None` if `name` is not a
/// segment's: exactly 20 decimal digits followed by `.log`.
///
/// ```
/// assert_eq!(commlog::segment_file_sequence("00000000000000412733.log"), Some(412_733));
/// assert_eq!(commlog::segment_file_sequence("412733.log"), None);
/// assert_eq!(commlog::segment_file_sequence("LOCK"), None);
/// ```
pub fn segment_file_sequence(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The files in `dir` named like segments, ordered by first sequence number, whatever they
/// are (audit judges them one by one).
pub(crate) fn list_segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| Error::io(dir, source))? {
        let entry = entry.map_err(|source| Error::io(dir, source))?;
        if let Some(first_seq) = entry.file_name().to_str().and_then(segment_file_sequence) {
            segments.push((first_seq, entry.path()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// The store's segment files, ordered by first sequence number.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let segments = list_segment_files(dir)?;
    for (_, path) in &segments {
        // Nothing inside a store is followed: a symlink would take appends and truncation
        // outside it, and a FIFO would hang the reader.
        let metadata = fs::symlink_metadata(path).map_err(|source| Error::io(path, source))?;
        if !metadata.file_type().is_file() {
            return Err(Error::corruption(
                path,
                0,
                "not a regular file (a symbolic link, directory, FIFO or device): a segment \
                 must be a regular file inside the store; move it out",
            ));
        }
    }
    Ok(segments)
}

/// Why a path inside a store that is not a directory of its own is passed over.
pub(crate) const NOT_OWN_DIRECTORY: &str =
    "not a directory (a symbolic link or special file): commlog follows nothing inside a store";

/// The metadata of `path` when it exists but is not a directory of its own (a symbolic link to
/// one elsewhere, or a special file), which nothing inside a store follows.
pub(crate) fn not_own_directory(path: &Path) -> Option<fs::Metadata> {
    fs::symlink_metadata(path)
        .ok()
        .filter(|metadata| !metadata.file_type().is_dir())
}

/// Creates a directory (and its parents) readable by its owner only; one that exists must be a
/// directory itself, not a symbolic link to one ([`not_own_directory`]), so that no quarantine
/// copy, snapshot or moved segment lands outside the store.
pub(crate) fn create_directory(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(path)
        .map_err(|source| Error::io(path, source))?;
    match not_own_directory(path) {
        None => Ok(()),
        Some(_) => Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{NOT_OWN_DIRECTORY}; move it out"),
            ),
        )),
    }
}

/// Makes the directory's entries (a created, renamed or removed file) durable.
pub(crate) fn sync_directory(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| Error::io(dir, source))
}

/// Opens `path`, a file inside the store, with `options` and `O_NOFOLLOW`: a symbolic link in
/// its place (even one swapped in after the directory was listed) is refused by the kernel
/// rather than followed out of the store. Every open of a file inside a store goes through here.
pub(crate) fn open_no_follow(options: &mut OpenOptions, path: &Path) -> Result<File> {
    options
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                let message = format!(
                    "{source}: a symbolic link, and commlog follows nothing inside a store; \
                     move it out"
                );
                Error::io(path, std::io::Error::new(source.kind(), message))
            } else {
                Error::io(path, source)
            }
        })
}

/// A path's file name, for messages and reports.
pub(crate) fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `base` for the first attempt, then `base.1`, `base.2`, …: the names quarantine tries in
/// turn, so that no earlier file is overwritten.
pub(crate) fn numbered_name(base: &str, attempt: u32) -> String {
    if attempt == 0 {
        base.to_string()
    } else {
        format!("{base}.{attempt}")
    }
}

/// Refuses, as an I/O error (the store is not judged, nor any answer given), a segment whose
/// header `bytes` a newer commlog wrote (`codec::newer_format_version`): for `what` to be done
/// by that commlog.
pub(crate) fn refuse_newer_format(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    match crate::codec::newer_format_version(bytes) {
        Some(version) => Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!(
                    "segment format version {version} is newer than this commlog reads (1 and \
                     2): {what} with the commlog that wrote it"
                ),
            ),
        )),
        None => Ok(()),
    }
}

/// The first bytes of a file, up to a version 2 header's worth (fewer if it is shorter; none
/// for what is not a regular file, which is never opened).
pub(crate) fn read_header_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let metadata = fs::symlink_metadata(path).map_err(|source| Error::io(path, source))?;
    if !metadata.is_file() {
        return Ok(Vec::new());
    }
    let file = open_no_follow(OpenOptions::new().read(true), path)?;
    let mut bytes = Vec::with_capacity(SEGMENT_HEADER_V2_BYTES);
    file.take(SEGMENT_HEADER_V2_BYTES as u64)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::io(path, source))?;
    Ok(bytes)
}

/// Creates a new segment holding only its header, and makes the file and its directory entry
/// durable before returning: a segment that any acknowledged frame lives in always exists.
pub(crate) fn create_segment(dir: &Path, header: &SegmentHeader) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_file_name(header.first_seq));
    let mut file = open_no_follow(
        OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(FILE_MODE),
        &path,
    )?;
    file.write_all(&header.encode())
        .map_err(|source| Error::io(&path, source))?;
    file.sync_all().map_err(|source| Error::io(&path, source))?;
    // A new segment's name is durable only once its directory is synced.
    sync_directory(dir)?;
    Ok((file, path))
}

/// A fresh store id: 64 bits hashed from the clock, the process id, a counter and the keys std
/// draws from the OS for `RandomState`, so that two stores (even two made in the same
/// nanosecond by one process) almost surely differ.
pub(crate) fn new_store_id() -> u64 {
    static STORES_CREATED: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_nanos().hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    STORES_CREATED
        .fetch_add(1, Ordering::Relaxed)
        .hash(&mut hasher);
    hasher.finish()
}

/// A segment's bytes, mapped read-only, or read into memory.
pub(crate) enum SegmentBytes {
    Mapped(Mmap),
    Read(Vec<u8>),
    /// The first `len` bytes of anonymous memory into which the segment's header and the
    /// bytes after a point were read ([`read_segment_from`]); the pages in between are never
    /// touched, and read as zeros.
    ReadFrom {
        map: MmapMut,
        len: usize,
    },
    Empty,
}

impl Deref for SegmentBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SegmentBytes::Mapped(map) => map,
            SegmentBytes::Read(bytes) => bytes,
            SegmentBytes::ReadFrom { map, len } => &map[..*len],
            SegmentBytes::Empty => &[],
        }
    }
}

impl SegmentBytes {
    /// Lets the OS take back this process's pages of a mapped segment that replay has read:
    /// they would otherwise count as resident memory until the whole log is replayed (as much
    /// as the views at 75 bytes a message). The bytes stay readable.
    pub(crate) fn release(&self) {
        if let SegmentBytes::Mapped(map) = self {
            // SAFETY: MADV_DONTNEED on a read-only shared mapping of a file drops only this
            // process's view of the pages: a later read through the map faults them in again
            // from the file, whose bytes are the same (see `map_segment`), so nothing read
            // through the map changes.
            #[allow(unsafe_code)]
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

/// Reads a segment file into memory: the bytes it holds now, whatever happens to the file
/// afterwards.
pub(crate) fn read_segment(path: &Path) -> Result<SegmentBytes> {
    let mut bytes = Vec::new();
    open_no_follow(OpenOptions::new().read(true), path)?
        .read_to_end(&mut bytes)
        .map_err(|source| Error::io(path, source))?;
    Ok(if bytes.is_empty() {
        SegmentBytes::Empty
    } else {
        SegmentBytes::Read(bytes)
    })
}

/// Reads a segment file into memory as [`read_segment`] does, but of the bytes before `from`
/// only the header: a replay resuming at `from` (the end of a frame) reads none of the frames
/// before it. They are left zero in anonymous memory that is never touched there, so they take
/// neither memory nor time (a buffer zeroed by the allocator could be cleared byte by byte), and
/// a reader that follows a writer reads what is new, not the whole segment.
pub(crate) fn read_segment_from(path: &Path, from: u64) -> Result<SegmentBytes> {
    let header_len = SEGMENT_HEADER_V2_BYTES as u64;
    let mut file = open_no_follow(OpenOptions::new().read(true), path)?;
    let io = |source| Error::io(path, source);
    // The header first, then the length: a writer appends a segment's last frame before it
    // seals it, so a seal read here names no frame past the length. (The length taken first,
    // a seal written between would name frames past it: a gap before the next segment.)
    let mut header = [0; SEGMENT_HEADER_V2_BYTES];
    let header_read = file.read_exact(&mut header);
    // A file that ends before `from` reads whole, for the replay to find it short.
    let file_len = file.metadata().map_err(io)?.len();
    if from <= header_len || file_len < from || header_read.is_err() {
        return read_segment(path);
    }
    let mut map = MmapMut::map_anon(file_len as usize).map_err(io)?;
    map[..header.len()].copy_from_slice(&header);
    file.seek(SeekFrom::Start(from)).map_err(io)?;
    // The bytes there now, up to the length found above: a writer appending meanwhile adds
    // frames the next refresh reads; one cutting a torn tail leaves fewer.
    let mut len = from as usize;
    while len < map.len() {
        match file.read(&mut map[len..]) {
            Ok(0) => break,
            Ok(read) => len += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(io(error)),
        }
    }
    Ok(SegmentBytes::ReadFrom { map, len })
}

/// Maps a segment file for reading.
pub(crate) fn map_segment(path: &Path) -> Result<SegmentBytes> {
    let file = open_no_follow(OpenOptions::new().read(true), path)?;
    let len = file
        .metadata()
        .map_err(|source| Error::io(path, source))?
        .len();
    if len == 0 {
        return Ok(SegmentBytes::Empty);
    }
    // SAFETY: the map is only read, and only while replay, an audit or a snapshot's check of
    // the log it covers (of sealed segments only: `snapshot::check_covered`) runs. commlog
    // never shrinks a segment another process may have mapped: a writer truncates only the
    // last segment (a torn tail, at open, under the store's LOCK), which a writer maps only
    // while it holds that lock and a read-only open reads instead (`read_segment`); a
    // writer's appends lie beyond the mapped length. Only an outside process truncating the
    // file could fault the reader.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::io(path, source))?;
    Ok(SegmentBytes::Mapped(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `result` is an I/O error naming `path` as a symbolic link.
    fn assert_refused_as_symlink<T>(result: Result<T>, path: &Path, what: &str) {
        match result {
            Err(error @ Error::Io { .. }) => {
                let Error::Io { path: named, .. } = &error else {
                    unreachable!()
                };
                assert_eq!(named, path, "{what}: {error}");
                assert!(
                    error.to_string().contains("a symbolic link"),
                    "{what}: {error}"
                );
            }
            Err(error) => panic!("{what}: expected an I/O error, got {error:?}"),
            Ok(_) => panic!("{what}: a symbolic link inside the store was followed"),
        }
    }

    #[test]
    fn every_open_of_a_segment_refuses_a_symlink_and_leaves_its_target_unchanged() {
        let temp = tempfile::tempdir().unwrap();
        let outside = temp.path().join("outside.txt");
        let precious = [7u8; 64];
        fs::write(&outside, precious).unwrap();
        let dir = temp.path().join("store");
        create_directory(&dir).unwrap();
        let segment = dir.join(segment_file_name(1));
        std::os::unix::fs::symlink(&outside, &segment).unwrap();

        assert_refused_as_symlink(map_segment(&segment), &segment, "map_segment");
        assert_refused_as_symlink(read_segment(&segment), &segment, "read_segment");
        assert_refused_as_symlink(
            read_segment_from(&segment, 100),
            &segment,
            "read_segment_from",
        );
        // As the writer reopens the last segment to append to it.
        let appended =
            open_no_follow(OpenOptions::new().append(true), &segment).and_then(|mut file| {
                file.write_all(b"appended")
                    .map_err(|source| Error::io(&segment, source))
            });
        assert_refused_as_symlink(appended, &segment, "append");
        assert_refused_as_symlink(
            super::super::seal_segment(&segment, 2),
            &segment,
            "seal_segment",
        );
        assert_eq!(fs::read(&outside).unwrap(), precious);
    }

    #[test]
    fn reading_from_an_offset_gives_the_header_and_the_bytes_from_there_on() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join(segment_file_name(1));
        let file: Vec<u8> = (0..1000u32).map(|i| (i % 251 + 1) as u8).collect();
        fs::write(&path, &file).unwrap();
        let header = SEGMENT_HEADER_V2_BYTES;
        for from in [0, 1, header, header + 1, 500, 999, 1000, 1200] {
            let bytes = read_segment_from(&path, from as u64).unwrap();
            if from <= header || from > file.len() {
                assert_eq!(&bytes[..], &file[..], "from {from}");
                continue;
            }
            assert_eq!(bytes.len(), file.len(), "from {from}");
            assert_eq!(bytes[..header], file[..header], "from {from}");
            assert!(
                bytes[header..from].iter().all(|&byte| byte == 0),
                "from {from}"
            );
            assert_eq!(bytes[from..], file[from..], "from {from}");
        }
        // A file shorter than a header reads whole.
        fs::write(&path, &file[..10]).unwrap();
        assert_eq!(&read_segment_from(&path, 500).unwrap()[..], &file[..10]);
    }
}
