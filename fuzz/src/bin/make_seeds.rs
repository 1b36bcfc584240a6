//! Writes seed segment files for the `segment_reader` fuzz target into `seeds/` (or the
//! directory given as the first argument): real segments that commlog itself wrote, holding
//! every kind of event, plus a few cut and multi-segment variants.
//!
//! Run from `fuzz/`: `cargo run --bin make_seeds`.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use commlog::{Channel, Options, Store, SyncPolicy};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn options(segment_bytes: Option<u64>) -> Options {
    let defaults = Options::default();
    Options {
        sync: SyncPolicy::Never,
        segment_bytes: segment_bytes.unwrap_or(defaults.segment_bytes),
        ..defaults
    }
}

/// The segment files in a store directory, in name (= first seq) order.
fn segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|path| path.extension().is_some_and(|ext| ext == "log"));
    paths.sort();
    Ok(paths)
}

/// Tracks a few events of every kind, starting at `base`.
fn track_every_kind(store: &Store, base: DateTime<Utc>, user: u64) -> Result<()> {
    let sms = store.track_message_sent_at(user, Channel::Sms, "low_balance", 0.05, base)?;
    let email = store.track_message_sent_at(user + 1, Channel::Email, "weekly_checkin", 0.001, base + Duration::seconds(1))?;
    let push = store.track_message_sent_at(user, Channel::Push, "bill.reminder-v2", 0.0, base + Duration::seconds(2))?;
    let in_app = store.track_message_sent_at(user + 2, Channel::InApp, "tip_of_the_day", 1234.567891, base + Duration::seconds(3))?;
    store.track_message_delivered(sms.id, Some(base + Duration::seconds(4)))?;
    store.track_message_delivered(email.id, Some(base + Duration::seconds(5)))?;
    store.track_message_opened(sms.id, Some(base + Duration::minutes(1)))?;
    store.track_message_opened(in_app.id, Some(base + Duration::minutes(2)))?;
    store.track_user_action(sms.id, "clicked_link", Some(base + Duration::minutes(3)))?;
    store.track_user_action(in_app.id, "viewed_forecast", Some(base + Duration::minutes(4)))?;
    store.track_message_failed(push.id, "undelivered", Some(base + Duration::seconds(6)))?;
    // Out of order in time: the deltas go negative.
    store.track_message_failed(email.id, "bounced", Some(base - Duration::days(3)))?;
    store.track_financial_outcome_at(user, "bill_paid_on_time", 25.0, base + Duration::days(1))?;
    store.track_financial_outcome_at(user + 1, "overdraft", -35.5, base + Duration::days(2))?;
    store.track_financial_outcome_at(user + 2, "saved", 0.000001, base + Duration::days(2))?;
    Ok(())
}

fn copy_segment(from: &Path, seeds: &Path, name: &str) -> Result<Vec<u8>> {
    let bytes = fs::read(from)?;
    fs::write(seeds.join(name), &bytes)?;
    println!("{name}: {} bytes", bytes.len());
    Ok(bytes)
}

fn main() -> Result<()> {
    let seeds = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    fs::create_dir_all(&seeds)?;
    let base = Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap();

    // 1. Every kind of event, closed cleanly (ends with a close marker).
    let dir = tempfile::tempdir()?;
    let store = Store::open_with(dir.path(), options(None))?;
    track_every_kind(&store, base, 123)?;
    store.close()?;
    let first = segments(dir.path())?;
    let closed = copy_segment(&first[0], &seeds, "every_kind_closed.log")?;

    // 2. The same, reopened and written to again: a close marker in the middle of a segment.
    let store = Store::open_with(dir.path(), options(None))?;
    track_every_kind(&store, base + Duration::days(30), 7)?;
    store.close()?;
    let reopened = segments(dir.path())?;
    copy_segment(&reopened[0], &seeds, "every_kind_reopened.log")?;

    // 3. A torn tail: the clean segment cut in the middle of its last frames.
    let cut = closed.len() - 9;
    fs::write(seeds.join("every_kind_torn.log"), &closed[..cut])?;
    println!("every_kind_torn.log: {cut} bytes");

    // 4. Zeros after the last frame, as a preallocated file would have.
    let mut padded = closed.clone();
    padded.extend_from_slice(&[0u8; 64]);
    fs::write(seeds.join("every_kind_zero_padded.log"), &padded)?;
    println!("every_kind_zero_padded.log: {} bytes", padded.len());

    // 5. Extreme values: the far past and future, the largest amounts, long names, big ids.
    let dir = tempfile::tempdir()?;
    let store = Store::open_with(dir.path(), options(None))?;
    let long_name = "a".repeat(64);
    let far_past = DateTime::<Utc>::MIN_UTC;
    let far_future = DateTime::<Utc>::MAX_UTC;
    let m = store.track_message_sent_at(u64::MAX, Channel::InApp, &long_name, 9e12, far_past)?;
    store.track_message_delivered(m.id, Some(far_future))?;
    store.track_user_action(m.id, &long_name, Some(far_past))?;
    store.track_financial_outcome_at(u64::MAX, &long_name, -9e12, far_future)?;
    store.track_financial_outcome_at(1, "z", 9e12, Utc.timestamp_millis_opt(0).unwrap())?;
    store.close()?;
    copy_segment(&segments(dir.path())?[0], &seeds, "extremes_closed.log")?;

    // 6. A store that rolled over: its second segment starts at a later seq and message id.
    let dir = tempfile::tempdir()?;
    let store = Store::open_with(dir.path(), options(Some(256)))?;
    for round in 0..4 {
        track_every_kind(&store, base + Duration::hours(round), 1000 + round as u64)?;
    }
    store.close()?;
    let rolled = segments(dir.path())?;
    copy_segment(&rolled[0], &seeds, "rolled_first.log")?;
    copy_segment(&rolled[rolled.len() / 2], &seeds, "rolled_middle.log")?;
    copy_segment(rolled.last().expect("a segment"), &seeds, "rolled_last.log")?;

    // Every seed must read back without error (the cut one as a torn tail).
    for entry in fs::read_dir(&seeds)? {
        let path = entry?.path();
        let bytes = fs::read(&path)?;
        let audit = commlog::audit::audit_segment(&path, &bytes, |_| {})?;
        println!("  {}: {audit:?}", path.file_name().unwrap().to_string_lossy());
    }
    Ok(())
}
