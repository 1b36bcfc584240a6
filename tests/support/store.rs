//! A store for a test: its options, its opening, its times.

use std::path::Path;

use chrono::{DateTime, Utc};
use commlog::{Options, Store, SyncPolicy};

/// Options for a test store: no fsync (no test crashes the machine), the defaults otherwise.
pub fn options() -> Options {
    Options {
        sync: SyncPolicy::Never,
        ..Options::default()
    }
}

/// The store in `dir`, opened with [`options`].
pub fn open(dir: &Path) -> Store {
    Store::open_with(dir, options()).unwrap()
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn time_of_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}
