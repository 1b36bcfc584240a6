//! Fuzz target: `commlog::audit::audit_segment` must give `Ok` or an `Error` for any bytes,
//! never panic (nor overflow, with the debug assertions cargo fuzz turns on).
//!
//! Each input is read twice: as it is (which exercises the header checks and the search for a
//! durability proof behind a torn header), and with its first 32 bytes replaced by a valid
//! segment header (first_seq 1, first_message_id 1), so that the fuzzer spends its time on the
//! frames behind the header rather than on forging a header checksum. The seeds are whole
//! segment files, so in both readings their frames start at offset 32.

#![no_main]

use std::hint::black_box;
use std::path::Path;

use commlog::audit::audit_segment;
use commlog::{Event, LoggedEvent};
use libfuzzer_sys::fuzz_target;

const HEADER_BYTES: usize = 32;

fn valid_header() -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(b"CMLOGSEG");
    header[8..12].copy_from_slice(&1u32.to_le_bytes()); // format version
    header[12..20].copy_from_slice(&1u64.to_le_bytes()); // first_seq
    header[20..28].copy_from_slice(&1u64.to_le_bytes()); // first_message_id
    let crc = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Folds every field of the event into `sum`, so none of the decoding is optimised away.
fn touch(sum: &mut u64, logged: &LoggedEvent<'_>) {
    let mut mix = |value: u64| *sum = sum.rotate_left(5).wrapping_mul(0x100_0000_01b3) ^ value;
    mix(logged.seq);
    mix(logged.appended_ms as u64);
    mix(logged.durable_seq);
    let event = &logged.event;
    mix(event.at_ms() as u64);
    mix(event.kind().len() as u64);
    mix(event.message_id().map_or(0, |id| id.0));
    let text = match *event {
        Event::MessageSent { user_id, channel, message_type, cost, .. } => {
            mix(user_id.0);
            mix(channel.index() as u64);
            mix(cost.micros() as u64);
            message_type
        }
        Event::MessageDelivered { .. } | Event::MessageOpened { .. } => "",
        Event::UserAction { action, .. } => action,
        Event::MessageFailed { reason, .. } => reason,
        Event::FinancialOutcome { user_id, outcome, amount, .. } => {
            mix(user_id.0);
            mix(amount.micros() as u64);
            outcome
        }
    };
    for byte in text.bytes() {
        mix(u64::from(byte));
    }
}

fn check(bytes: &[u8]) {
    let mut sum = 0u64;
    let mut visited = 0u64;
    let result = audit_segment(Path::new("fuzz.log"), bytes, |logged| {
        visited += 1;
        touch(&mut sum, logged);
    });
    if let Ok(report) = &result {
        // What the report says must agree with what it handed over and with the input.
        assert_eq!(report.events, visited, "report counts {} events, visit saw {visited}", report.events);
        assert!(report.end_offset <= bytes.len() as u64, "end offset past the input");
        assert!(report.frames >= report.events, "fewer frames than events");
    }
    if let Err(error) = &result {
        // Formatting the error must not panic either.
        black_box(error.to_string());
    }
    let _ = black_box((sum, result));
}

fuzz_target!(|data: &[u8]| {
    // 1. The bytes as they are.
    check(data);

    // 2. The first 32 bytes replaced by a valid header, followed by the rest of the data.
    let frames = data.get(HEADER_BYTES..).unwrap_or(&[]);
    let mut with_header = Vec::with_capacity(HEADER_BYTES + frames.len());
    with_header.extend_from_slice(&valid_header());
    with_header.extend_from_slice(frames);
    check(&with_header);
});
