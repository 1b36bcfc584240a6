//! The generator reproduces docs/WORKLOAD.md's counts, and the store's Q1 answers match.

use commlog::workload::{Call, Generator, Spec};
use commlog::{Options, StatsFilter, Store, SyncPolicy};

fn tally(spec: Spec) -> [u64; 5] {
    let mut counts = [0u64; 5]; // delivered, opened, action, outcome, events
    for call in Generator::calls(spec) {
        counts[4] += 1;
        match call {
            Call::Sent { .. } => {}
            Call::Delivered { .. } => counts[0] += 1,
            Call::Opened { .. } => counts[1] += 1,
            Call::Action { .. } => counts[2] += 1,
            Call::Outcome { .. } => counts[3] += 1,
        }
    }
    counts
}

#[test]
fn generator_reproduces_the_reference_call_tally() {
    let spec = |messages| Spec {
        seed: 42,
        users: 10_000,
        messages,
    };
    assert_eq!(tally(spec(20_000)), [19_028, 4_907, 1_947, 367, 46_249]);
    assert_eq!(
        tally(spec(100_000)),
        [95_005, 24_492, 9_568, 1_945, 231_010]
    );
}

#[test]
fn store_answers_q1_as_the_reference_for_20000_messages() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        sync: SyncPolicy::Never,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    for call in Generator::calls(Spec {
        seed: 42,
        users: 10_000,
        messages: 20_000,
    }) {
        commlog::workload::apply(&store, &call).unwrap();
    }
    let check = |store: &Store| {
        let stats = store.get_communication_stats(&StatsFilter::new()).unwrap();
        assert_eq!(stats.total_messages, 20_000);
        assert_eq!(stats.delivered_count, 19_028);
        assert_eq!(stats.opened_count, 5_235);
        assert_eq!(stats.clicked_count, 452);
        assert_eq!(stats.action_count, 1_947);
        assert_eq!(stats.total_cost.micros(), 357_713_000);
        assert_eq!(stats.outcome_count, 367);
        assert_eq!(stats.total_impact.micros(), 92_613_680_000);
    };
    check(&store);
    store.close().unwrap();
    let reopened = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(reopened.open_report().events, 46_249);
    check(&reopened);
}
