//! The one error type of the crate.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::event::MessageId;
use crate::limits::SHOWN_VALUE_CHARS_MAX;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each naming what was wrong and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller passed a value outside its rule; nothing was appended.
    #[error("invalid {field}: {} ({rule})", quote_value(.value))]
    InvalidInput {
        /// The parameter or field, e.g. `"message_type"`.
        field: &'static str,
        /// The value as given.
        value: String,
        /// The rule it broke, with its bound where the bound depends on the call (the clock, a
        /// message's sent time).
        rule: Cow<'static, str>,
    },
    /// A call named a message id that was never tracked; nothing was appended.
    #[error("unknown message id {id}: no message with this id has been tracked")]
    UnknownMessage {
        /// The id as given.
        id: MessageId,
    },
    /// A call named a message by an external id no message was sent with; nothing was
    /// appended.
    #[error("unknown external id {}: no message has been tracked with it", quote_value(.external_id))]
    UnknownExternalId {
        /// The external id as given.
        external_id: String,
    },
    /// A send repeated an external id that names a message with other fields; nothing was
    /// appended. A repeat with the same fields returns that message instead.
    #[error(
        "external id {} already names message {existing}, which has another {field}; a repeat \
         must give the same user, channel, message type, cost and (if given) sent time",
        quote_value(.external_id)
    )]
    Conflict {
        /// The external id as given.
        external_id: String,
        /// The message it names.
        existing: MessageId,
        /// The first field that differs: `"user"`, `"channel"`, `"message_type"`, `"cost"` or
        /// `"sent_at"`.
        field: &'static str,
    },
    /// The log holds bytes that fail their checks where they must be whole.
    #[error("corrupt log {}: offset {offset}: {reason}", .segment.display())]
    Corruption {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the first bad byte range in that file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// Another process, or another open of the store in this one, holds the store's `LOCK`.
    #[error("{}: locked by {}", .path.display(), locked_by(.holder, *.by_this_process, *.waited_ms))]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder, `pid N`, or `holder unknown`.
        holder: String,
        /// Whether the holder is this very process: another open of the store in it, which a
        /// second open for writing waits for in vain.
        by_this_process: bool,
        /// How long the open waited for the lock (`Options::lock_timeout`, `--wait`), in
        /// milliseconds.
        waited_ms: u64,
    },
    /// An operating-system call failed on a file of the store.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A write or sync failed, so what is on disk is unknown: every later call that writes or
    /// promises durability (`track_*`, `set_budget`, `flush`, `sync`, `close`) fails with this;
    /// queries still answer.
    #[error("{}", poisoned_message(.first, *.event_may_be_durable))]
    Poisoned {
        /// The first failure.
        first: String,
        /// True for a tracking call under `SyncPolicy::Always` whose event was handed to the
        /// OS and folded into the views, but whose fsync failed (or was cut short by another
        /// failure): the event may or may not be durable, and only a reopen tells. False: the
        /// call appended nothing.
        event_may_be_durable: bool,
    },
    /// A tracking call on a store opened with `Store::open_read_only`.
    #[error("{operation} needs a writer, but the store was opened read-only")]
    ReadOnly {
        /// The refused operation.
        operation: &'static str,
    },
}

/// A caller's value as error messages show it: quoted, and when longer than 64 characters, its
/// first 64 and its length, so that a pasted megabyte does not flood a terminal or a log.
///
/// ```
/// assert_eq!(commlog::quote_value("sms"), "\"sms\"");
/// assert_eq!(commlog::quote_value(&"x".repeat(100)), format!("{:?}… (100 characters)", "x".repeat(64)));
/// ```
pub fn quote_value(value: &str) -> String {
    let length = value.chars().count();
    if length <= SHOWN_VALUE_CHARS_MAX {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(SHOWN_VALUE_CHARS_MAX).collect();
    format!("{head:?}… ({length} characters)")
}

fn poisoned_message(first: &str, event_may_be_durable: bool) -> String {
    if event_may_be_durable {
        format!(
            "store poisoned ({first}) before this call's event was known durable: it was handed \
             to the OS and may or may not be durable; reopen the store to see whether it is"
        )
    } else {
        format!("store poisoned by an earlier failure ({first}); reopen the store")
    }
}

/// Who holds a store's lock, and what to do about it: another process, or this one; and how
/// long the open waited for it, where that was longer than its brief first tries.
fn locked_by(holder: &str, by_this_process: bool, waited_ms: u64) -> String {
    let waited = match waited_ms {
        0..100 => String::new(),
        ms => format!(", held through the {:.1} s waited", ms as f64 / 1000.0),
    };
    if by_this_process {
        format!(
            "this process ({holder}), which has the store open for writing already{waited}; use \
             or close that open, or open the store read-only"
        )
    } else {
        format!("another process ({holder}){waited}; stop it, or open the store read-only")
    }
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(
        field: &'static str,
        value: impl ToString,
        rule: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error::InvalidInput {
            field,
            value: value.to_string(),
            rule: rule.into(),
        }
    }

    pub(crate) fn corruption(segment: &Path, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corruption {
            segment: segment.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}
