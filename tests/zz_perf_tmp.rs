use commlog::workload::{Generator, Spec};
use commlog::{Options, StatsFilter, Store, SyncPolicy};
use std::time::Instant;
#[test]
fn perf() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { sync: SyncPolicy::Never, ..Options::default() };
    let calls: Vec<_> = Generator::calls(Spec::default()).collect();
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    let t = Instant::now();
    for call in &calls { commlog::workload::apply(&store, call).unwrap(); }
    let e = t.elapsed();
    println!("ingest {} calls in {:?}: {:.0}/s", calls.len(), e, calls.len() as f64 / e.as_secs_f64());
    store.close().unwrap();
    let bytes: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    println!("bytes/message {:.1}", bytes as f64 / 1e6);
    let t = Instant::now();
    let store = Store::open_with(dir.path(), options).unwrap();
    let e = t.elapsed();
    println!("replay {:?}: {:.0} ev/s", e, 2_312_052.0 / e.as_secs_f64());
    let t = Instant::now();
    let s = store.get_communication_stats(&StatsFilter::new()).unwrap();
    println!("q1 {:?} {:?}", t.elapsed(), s.opened_count);
}
#[test]
fn replay_only() {
    let dir = std::path::Path::new("/tmp/commlog-perf-1m");
    if !dir.exists() {
        let options = Options { sync: SyncPolicy::Never, ..Options::default() };
        let store = Store::open_with(dir, options).unwrap();
        for call in Generator::calls(Spec::default()) { commlog::workload::apply(&store, &call).unwrap(); }
        store.close().unwrap();
    }
    for _ in 0..5 {
        let t = Instant::now();
        let store = Store::open_read_only(dir).unwrap();
        let e = t.elapsed();
        println!("replay {:?}: {:.0} ev/s", e, store.open_report().events as f64 / e.as_secs_f64());
    }
}
