//! Segments with extreme header values (fuzz/regressions/): each gives `Ok` or an `Error`,
//! never a panic, and a header that cannot count on is refused.

use std::path::Path;

#[test]
fn every_fuzz_regression_reads_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let mut events = 0u64;
        match commlog::audit::audit_segment(&path, &bytes, |_| events += 1) {
            Ok(audit) => assert_eq!(audit.events, events),
            Err(error) => assert!(!error.to_string().is_empty()),
        }
        count += 1;
    }
    assert!(count >= 4, "the regressions are present");
}

#[test]
fn a_header_with_first_seq_zero_is_not_a_valid_header() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/header_first_seq_0_close_marker");
    let bytes = std::fs::read(&path).unwrap();
    // The header is refused; the valid close marker behind it shows that it had been written
    // whole, so the segment is corrupt rather than torn.
    match commlog::audit::audit_segment(&path, &bytes, |_| {}) {
        Err(commlog::Error::Corruption {
            segment, offset, ..
        }) => assert_eq!((segment, offset), (path, 0)),
        other => panic!("expected Error::Corruption at offset 0, got {other:?}"),
    }
}
