//! The reference queries Q1–Q5 (shared/WORKLOAD.md) on the 1,000,000-message store, each
//! cycling through its picks (`QueryPicks::new(Spec::default())`).
//!
//! After each criterion bench, one pass over the query's picks (Q1: 100 runs) prints the
//! per-query p50/p99 that WORKLOAD.md asks for; criterion times batches of queries, so its
//! figures are averages over many picks. `cargo bench --bench query`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use commlog::workload::{self, Generator, Q1_REPEATS, Q4_LIMIT, QueryPicks, Spec};
use commlog::{
    CostFilter, EffectivenessFilter, EngagementFilter, ImpactFilter, StatsFilter, Store, SyncPolicy,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// Tracks the whole reference workload into a new store in `dir`; returns the open store.
fn build_reference_store(dir: &Path) -> Store {
    let store = Store::open_with(
        dir,
        commlog::Options {
            sync: SyncPolicy::Never,
            ..commlog::Options::default()
        },
    )
    .expect("open a fresh store");
    for call in Generator::calls(Spec::default()) {
        workload::apply(&store, &call).expect("track a workload call");
    }
    store
}

/// Runs `query` once per pick, in order, and prints p50 and p99 of the single-query times.
fn print_percentiles<P>(name: &str, picks: &[P], mut query: impl FnMut(&P)) {
    let mut times: Vec<Duration> = picks
        .iter()
        .map(|pick| {
            let start = Instant::now();
            query(pick);
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction).round() as usize];
    eprintln!(
        "query/{name}: {} picks, p50 {:?}, p99 {:?}",
        times.len(),
        at(0.50),
        at(0.99)
    );
}

/// A criterion bench of `query`, cycling through `picks`.
fn bench_cycling<P>(c: &mut Criterion, name: &str, picks: &[P], mut query: impl FnMut(&P)) {
    c.bench_function(&format!("query/{name}"), |b| {
        let mut next = picks.iter().cycle();
        b.iter(|| query(black_box(next.next().expect("picks"))))
    });
    print_percentiles(name, picks, &mut query);
}

/// A view's time range: (start, end), or neither for all messages.
type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = build_reference_store(dir.path());
    let picks = QueryPicks::new(Spec::default());

    let all = store
        .get_communication_stats(&StatsFilter::new())
        .expect("Q1");
    let counts = (
        all.total_messages,
        all.delivered_count,
        all.opened_count,
        all.clicked_count,
        all.action_count,
    );
    assert_eq!(
        counts,
        (1_000_000, 949_669, 264_725, 23_801, 95_346),
        "the Q1 counts of WORKLOAD.md"
    );
    assert_eq!(
        all.outcome_count, 19_882,
        "the Q1 outcome count of WORKLOAD.md"
    );

    let stats = |filter: &StatsFilter| {
        black_box(store.get_communication_stats(filter).expect("stats"));
    };
    let q1 = vec![StatsFilter::new(); Q1_REPEATS];
    let q2: Vec<StatsFilter> = picks
        .q2_users
        .iter()
        .map(|&user| StatsFilter::new().user(user))
        .collect();
    bench_cycling(c, "q1_all", &q1, stats);
    bench_cycling(c, "q2_user", &q2, stats);
    bench_cycling(c, "q3_user_type_channel_window", &picks.q3_filters, stats);
    bench_cycling(c, "q4_history_50", &picks.q4_users, |&user| {
        black_box(
            store
                .get_user_communication_history(user, Q4_LIMIT)
                .expect("history"),
        );
    });
    bench_cycling(c, "q5_channel_window", &picks.q5_filters, stats);

    // The analytics views (issue 5), on the same store: one user's engagement (the Q4 users),
    // and channel effectiveness, cost and impact over all messages and over the Q5 windows.
    bench_cycling(c, "view_engagement_user", &picks.q4_users, |&user| {
        black_box(
            store
                .get_user_engagement(user, &EngagementFilter::new())
                .expect("engagement"),
        );
    });
    let windows: Vec<Window> = std::iter::once((None, None))
        .chain(
            picks
                .q5_filters
                .iter()
                .map(|filter| (filter.start, filter.end)),
        )
        .collect();
    let window_or_all = |name: &str| format!("{name}_all_then_q5_windows");
    bench_cycling(
        c,
        &window_or_all("view_channels"),
        &windows,
        |&(start, end)| {
            let mut filter = EffectivenessFilter::new();
            if let (Some(start), Some(end)) = (start, end) {
                filter = filter.start(start).end(end);
            }
            black_box(store.get_channel_effectiveness(&filter).expect("channels"));
        },
    );
    bench_cycling(
        c,
        &window_or_all("view_costs"),
        &windows,
        |&(start, end)| {
            let mut filter = CostFilter::new();
            if let (Some(start), Some(end)) = (start, end) {
                filter = filter.start(start).end(end);
            }
            black_box(store.get_cost_report(&filter).expect("costs"));
        },
    );
    bench_cycling(
        c,
        &window_or_all("view_impact"),
        &windows,
        |&(start, end)| {
            let mut filter = ImpactFilter::new();
            if let (Some(start), Some(end)) = (start, end) {
                filter = filter.start(start).end(end);
            }
            black_box(store.get_financial_impact(&filter).expect("impact"));
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = queries
}
criterion_main!(benches);
