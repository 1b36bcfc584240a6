//! One test per rule of docs/SEMANTICS.md: how events fold into
//! message records, what the stats count, and that reopening changes no answer.
//!
//! Every time is passed in explicitly; no test reads the clock or sleeps.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commlog::{
    Channel, CommunicationStats, EngagementFilter, Message, MessageId, Money, StatsFilter, Status,
    Store,
};
use support::store::open;

/// 2025-01-01 09:00:00 UTC; every test time is this plus some milliseconds.
fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap()
}

/// The test time `offset_ms` milliseconds after [`base`].
fn at(offset_ms: i64) -> DateTime<Utc> {
    base() + Duration::milliseconds(offset_ms)
}

/// Sends a message costing one cent and returns its id.
fn send(store: &Store, user: u64, channel: Channel, message_type: &str, sent_ms: i64) -> MessageId {
    store
        .track_message_sent_at(user, channel, message_type, 0.01, at(sent_ms))
        .unwrap()
        .id
}

fn delivered(store: &Store, id: MessageId, at_ms: i64) {
    store.track_message_delivered(id, Some(at(at_ms))).unwrap();
}

fn opened(store: &Store, id: MessageId, at_ms: i64) {
    store.track_message_opened(id, Some(at(at_ms))).unwrap();
}

fn action(store: &Store, id: MessageId, name: &str, at_ms: i64) {
    store.track_user_action(id, name, Some(at(at_ms))).unwrap();
}

fn failed(store: &Store, id: MessageId, reason: &str, at_ms: i64) {
    store
        .track_message_failed(id, reason, Some(at(at_ms)))
        .unwrap();
}

fn message(store: &Store, id: MessageId) -> Message {
    store.get_message(id).unwrap()
}

fn stats(store: &Store, filter: &StatsFilter) -> CommunicationStats {
    store.get_communication_stats(filter).unwrap()
}

fn all(store: &Store) -> CommunicationStats {
    stats(store, &StatsFilter::new())
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(name, count)| (name.to_string(), *count))
        .collect()
}

/// `part / whole` in percent, as the spec defines the rates.
fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

fn assert_close(got: f64, expected: f64) {
    assert!(
        (got - expected).abs() < 1e-9,
        "got {got}, expected {expected}"
    );
}

#[test]
fn status_is_the_furthest_stage_reached() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sent_only = send(&store, 1, Channel::Sms, "low_balance", 0);
    let delivered_only = send(&store, 1, Channel::Sms, "low_balance", 0);
    delivered(&store, delivered_only, 10);
    let opened_after_delivery = send(&store, 1, Channel::Sms, "low_balance", 0);
    delivered(&store, opened_after_delivery, 10);
    opened(&store, opened_after_delivery, 20);
    let clicked_after_all = send(&store, 1, Channel::Sms, "low_balance", 0);
    delivered(&store, clicked_after_all, 10);
    opened(&store, clicked_after_all, 20);
    action(&store, clicked_after_all, "clicked_link", 30);
    // A delivery or an open reported after a further stage does not move the status back.
    let clicked_then_delivered = send(&store, 1, Channel::Sms, "low_balance", 0);
    action(&store, clicked_then_delivered, "clicked_link", 30);
    delivered(&store, clicked_then_delivered, 40);
    opened(&store, clicked_then_delivered, 50);
    let opened_then_delivered = send(&store, 1, Channel::Sms, "low_balance", 0);
    opened(&store, opened_then_delivered, 20);
    delivered(&store, opened_then_delivered, 25);

    assert_eq!(message(&store, sent_only).status, Status::Sent);
    assert_eq!(message(&store, delivered_only).status, Status::Delivered);
    assert_eq!(
        message(&store, opened_after_delivery).status,
        Status::Opened
    );
    assert_eq!(message(&store, clicked_after_all).status, Status::Clicked);
    assert_eq!(
        message(&store, clicked_then_delivered).status,
        Status::Clicked
    );
    assert_eq!(
        message(&store, opened_then_delivered).status,
        Status::Opened
    );
    let stats = all(&store);
    assert_eq!(
        stats.status_breakdown,
        counts(&[("sent", 1), ("delivered", 1), ("opened", 2), ("clicked", 2)])
    );
    assert_eq!(
        (
            stats.delivered_count,
            stats.opened_count,
            stats.clicked_count
        ),
        (5, 4, 2),
        "delivered counts delivered or further, opened counts opened or further"
    );
}

#[test]
fn an_open_implies_delivery_at_the_time_of_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = send(&store, 1, Channel::Email, "weekly_checkin", 0);
    let returned = store.track_message_opened(id, Some(at(7))).unwrap();

    assert_eq!(
        returned,
        message(&store, id),
        "the call returns the message as it now stands"
    );
    assert_eq!(returned.status, Status::Opened);
    assert_eq!(returned.delivered_at, Some(at(7)));
    assert_eq!(returned.opened_at, Some(at(7)));
    assert_eq!(returned.clicked_at, None);
    let stats = all(&store);
    assert_eq!((stats.delivered_count, stats.opened_count), (1, 1));
    assert_eq!(stats.delivery_rate, 100.0);
}

#[test]
fn any_user_action_implies_delivery_but_not_an_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = send(&store, 1, Channel::Push, "low_balance", 0);
    let returned = store
        .track_user_action(id, "viewed_forecast", Some(at(4)))
        .unwrap();

    assert_eq!(returned.status, Status::Delivered);
    assert_eq!(returned.delivered_at, Some(at(4)));
    assert_eq!(returned.opened_at, None);
    assert_eq!(returned.clicked_at, None);
    assert_eq!(returned.action_taken.as_deref(), Some("viewed_forecast"));
    let stats = all(&store);
    assert_eq!(
        (
            stats.delivered_count,
            stats.opened_count,
            stats.action_count
        ),
        (1, 0, 1)
    );
}

#[test]
fn an_action_whose_name_contains_click_implies_an_open_and_sets_clicked_at() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for name in ["click", "clicked_link", "button_click", "unclickable.cta-2"] {
        let id = send(&store, 1, Channel::InApp, "bill_due", 0);
        let returned = store.track_user_action(id, name, Some(at(6))).unwrap();
        assert_eq!(returned.status, Status::Clicked, "{name}");
        assert_eq!(returned.delivered_at, Some(at(6)), "{name}");
        assert_eq!(returned.opened_at, Some(at(6)), "{name}");
        assert_eq!(returned.clicked_at, Some(at(6)), "{name}");
        assert_eq!(returned.action_taken.as_deref(), Some(name));
    }
    for name in ["clik", "cl1ck", "viewed_forecast"] {
        let id = send(&store, 1, Channel::InApp, "bill_due", 0);
        let returned = store.track_user_action(id, name, Some(at(6))).unwrap();
        assert_eq!(returned.status, Status::Delivered, "{name} is not a click");
        assert_eq!(returned.clicked_at, None, "{name}");
        assert_eq!(returned.opened_at, None, "{name}");
    }
    let stats = all(&store);
    assert_eq!(
        (
            stats.clicked_count,
            stats.opened_count,
            stats.delivered_count
        ),
        (4, 4, 7)
    );
    assert_eq!(stats.action_count, 7);
}

#[test]
fn implied_stages_take_the_time_of_the_implying_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A click alone: delivery and open both at the click's time.
    let clicked = send(&store, 1, Channel::Sms, "low_balance", 0);
    action(&store, clicked, "clicked_link", 15);
    // An open, then a later click: the open keeps its own time, delivery takes the open's.
    let opened_then_clicked = send(&store, 1, Channel::Sms, "low_balance", 0);
    opened(&store, opened_then_clicked, 12);
    action(&store, opened_then_clicked, "clicked_link", 15);
    // An action earlier than the open implies an earlier delivery (but no open).
    let acted_before_open = send(&store, 1, Channel::Sms, "low_balance", 0);
    opened(&store, acted_before_open, 12);
    action(&store, acted_before_open, "viewed_forecast", 8);

    let clicked = message(&store, clicked);
    assert_eq!(
        (clicked.delivered_at, clicked.opened_at, clicked.clicked_at),
        (Some(at(15)), Some(at(15)), Some(at(15)))
    );
    let opened_then_clicked = message(&store, opened_then_clicked);
    assert_eq!(
        (
            opened_then_clicked.delivered_at,
            opened_then_clicked.opened_at,
            opened_then_clicked.clicked_at
        ),
        (Some(at(12)), Some(at(12)), Some(at(15)))
    );
    let acted_before_open = message(&store, acted_before_open);
    assert_eq!(
        (
            acted_before_open.delivered_at,
            acted_before_open.opened_at,
            acted_before_open.clicked_at
        ),
        (Some(at(8)), Some(at(12)), None)
    );
}

#[test]
fn every_stage_keeps_the_earliest_time_reported_or_implied() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A later report of an earlier delivery moves delivered_at back; a later time does not.
    let delivery = send(&store, 1, Channel::Sms, "low_balance", 0);
    delivered(&store, delivery, 30);
    delivered(&store, delivery, 10);
    delivered(&store, delivery, 40);
    delivered(&store, delivery, 5);
    assert_eq!(message(&store, delivery).delivered_at, Some(at(5)));
    // An open reported after a delivery, but earlier in time, moves delivered_at back too.
    let open = send(&store, 1, Channel::Sms, "low_balance", 0);
    delivered(&store, open, 30);
    opened(&store, open, 50);
    opened(&store, open, 45);
    opened(&store, open, 20);
    assert_eq!(message(&store, open).delivered_at, Some(at(20)));
    assert_eq!(message(&store, open).opened_at, Some(at(20)));
    // The same for clicks and for the open a click implies.
    let click = send(&store, 1, Channel::Sms, "low_balance", 0);
    opened(&store, click, 65);
    action(&store, click, "clicked_link", 70);
    action(&store, click, "button_click", 60);
    action(&store, click, "clicked_link", 80);
    let click = message(&store, click);
    assert_eq!(
        (click.delivered_at, click.opened_at, click.clicked_at),
        (Some(at(60)), Some(at(60)), Some(at(60)))
    );
    // And for failures.
    let failure = send(&store, 1, Channel::Sms, "low_balance", 0);
    failed(&store, failure, "bounced", 20);
    failed(&store, failure, "undelivered", 15);
    failed(&store, failure, "bounced", 25);
    assert_eq!(message(&store, failure).failed_at, Some(at(15)));
}

#[test]
fn a_report_up_to_five_minutes_before_the_send_counts_as_sent_also_after_reopen() {
    const MINUTE_MS: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sent_ms = 10 * MINUTE_MS;
    // Every stage reported before the send, within the clock skew.
    let early = send(&store, 1, Channel::Email, "low_balance", sent_ms);
    delivered(&store, early, sent_ms - 5 * MINUTE_MS);
    opened(&store, early, sent_ms - 2 * MINUTE_MS);
    action(&store, early, "clicked_link", sent_ms - 1);
    failed(&store, early, "bounced", sent_ms - 4 * MINUTE_MS);
    // Delivered early, opened two minutes after the send: a response of two minutes, not five.
    let late_open = send(&store, 1, Channel::Email, "low_balance", sent_ms);
    delivered(&store, late_open, sent_ms - 3 * MINUTE_MS);
    opened(&store, late_open, sent_ms + 2 * MINUTE_MS);

    let answers = |store: &Store| {
        (
            store.get_user_communication_history(1, 10).unwrap(),
            store
                .get_user_engagement(1, &EngagementFilter::new())
                .unwrap(),
            all(store),
        )
    };
    let before = answers(&store);
    let (history, engagement, stats) = &before;
    // Newest first; equal sent times: the higher id first.
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<_>>(),
        [late_open, early]
    );
    let sent = Some(at(sent_ms));
    let early = &history[1];
    assert_eq!(early.status, Status::Clicked);
    assert_eq!(
        (
            early.delivered_at,
            early.opened_at,
            early.clicked_at,
            early.failed_at
        ),
        (sent, sent, sent, sent)
    );
    let late_open = &history[0];
    assert_eq!(late_open.delivered_at, sent);
    assert_eq!(late_open.opened_at, Some(at(sent_ms + 2 * MINUTE_MS)));
    let responses = &engagement.response_times;
    assert_eq!((responses.count, responses.under_5_minutes), (2, 2));
    assert_eq!(responses.mean_ms, Some(MINUTE_MS as f64));
    assert_eq!(responses.median_ms, Some(MINUTE_MS as f64));
    assert_eq!((stats.delivered_count, stats.opened_count), (2, 2));

    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(answers(&store), before, "the same answers after replay");
}

/// A report about an existing message, for the arrival-order test.
#[derive(Debug, Clone, Copy)]
enum Report {
    Delivered(u64, i64),
    Opened(u64, i64),
    Action(u64, &'static str, i64),
    Failed(u64, &'static str, i64),
}

fn apply_report(store: &Store, report: Report) {
    match report {
        Report::Delivered(id, at_ms) => delivered(store, MessageId(id), at_ms),
        Report::Opened(id, at_ms) => opened(store, MessageId(id), at_ms),
        Report::Action(id, name, at_ms) => action(store, MessageId(id), name, at_ms),
        Report::Failed(id, reason, at_ms) => failed(store, MessageId(id), reason, at_ms),
    }
}

/// Every answer the order test compares: all messages, two histories and several stats.
fn order_answers(store: &Store) -> (Vec<Message>, Vec<Vec<Message>>, Vec<CommunicationStats>) {
    let messages = (1..=6).map(|id| message(store, MessageId(id))).collect();
    let histories = (1..=2)
        .map(|user| store.get_user_communication_history(user, 10).unwrap())
        .collect();
    let filters = [
        StatsFilter::new(),
        StatsFilter::new().user(1),
        StatsFilter::new().user(2),
        StatsFilter::new().channel(Channel::Sms),
        StatsFilter::new().start(at(2)).end(at(4)),
    ];
    let stats = filters.iter().map(|filter| stats(store, filter)).collect();
    (messages, histories, stats)
}

/// A small deterministic generator (no clock, no randomness between runs).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = (self.next() % (index as u64 + 1)) as usize;
            items.swap(index, other);
        }
    }
}

#[test]
fn counts_and_records_never_depend_on_the_order_reports_arrive_in() {
    // Action times are distinct per message, so the latest action is decided by time alone.
    let reports = vec![
        Report::Delivered(1, 10),
        Report::Opened(1, 20),
        Report::Action(1, "clicked_link", 30),
        Report::Delivered(1, 5),
        Report::Failed(1, "bounced", 2),
        Report::Failed(2, "undelivered", 6),
        Report::Failed(2, "undelivered", 4),
        Report::Action(3, "viewed_forecast", 15),
        Report::Opened(3, 12),
        Report::Action(3, "dismissed", 40),
        Report::Action(4, "button_click", 8),
        Report::Delivered(4, 9),
        Report::Failed(6, "bounced", 50),
        Report::Delivered(6, 60),
        Report::Opened(3, 11),
    ];
    let run = |order: &[Report]| {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        send(&store, 1, Channel::Sms, "low_balance", 0);
        send(&store, 2, Channel::Email, "weekly_checkin", 3);
        send(&store, 1, Channel::Push, "low_balance", 3);
        send(&store, 2, Channel::InApp, "bill_due", 1);
        send(&store, 1, Channel::Sms, "bill_due", 4);
        send(&store, 2, Channel::Sms, "low_balance", 2);
        for report in order {
            apply_report(&store, *report);
        }
        order_answers(&store)
    };

    let expected = run(&reports);
    let (messages, _, stats) = &expected;
    assert_eq!(
        messages.iter().map(|m| m.status).collect::<Vec<_>>(),
        [
            Status::Clicked,
            Status::Failed,
            Status::Opened,
            Status::Clicked,
            Status::Sent,
            Status::Delivered
        ]
    );
    assert_eq!(messages[0].delivered_at, Some(at(5)));
    assert_eq!(messages[0].opened_at, Some(at(20)));
    assert_eq!(messages[1].failed_at, Some(at(4)));
    assert_eq!(messages[2].action_taken.as_deref(), Some("dismissed"));
    assert_eq!(messages[2].delivered_at, Some(at(11)));
    assert_eq!(messages[3].delivered_at, Some(at(8)));
    let everything = &stats[0];
    assert_eq!(
        (
            everything.delivered_count,
            everything.opened_count,
            everything.clicked_count
        ),
        (4, 3, 2)
    );
    assert_eq!((everything.action_count, everything.failed_count), (3, 1));

    let mut reversed = reports.clone();
    reversed.reverse();
    assert_eq!(run(&reversed), expected, "reversed order");
    let mut generator = SplitMix(3);
    for permutation in 0..40 {
        let mut order = reports.clone();
        generator.shuffle(&mut order);
        assert_eq!(
            run(&order),
            expected,
            "permutation {permutation}: {order:?}"
        );
    }
}

#[test]
fn failed_counts_only_messages_never_delivered_opened_or_clicked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let only_failed = send(&store, 1, Channel::Sms, "low_balance", 0);
    failed(&store, only_failed, "undelivered", 10);
    let delivered_then_failed = send(&store, 1, Channel::Sms, "low_balance", 0);
    delivered(&store, delivered_then_failed, 5);
    failed(&store, delivered_then_failed, "bounced", 10);
    let failed_then_opened = send(&store, 1, Channel::Sms, "low_balance", 0);
    failed(&store, failed_then_opened, "bounced", 10);
    opened(&store, failed_then_opened, 20);
    let failed_then_clicked = send(&store, 1, Channel::Sms, "low_balance", 0);
    failed(&store, failed_then_clicked, "bounced", 10);
    action(&store, failed_then_clicked, "clicked_link", 20);
    let failed_then_acted = send(&store, 1, Channel::Sms, "low_balance", 0);
    failed(&store, failed_then_acted, "bounced", 10);
    action(&store, failed_then_acted, "viewed_forecast", 20);

    assert_eq!(message(&store, only_failed).status, Status::Failed);
    assert_eq!(message(&store, only_failed).failed_at, Some(at(10)));
    assert_eq!(
        message(&store, delivered_then_failed).status,
        Status::Delivered
    );
    assert_eq!(message(&store, failed_then_opened).status, Status::Opened);
    assert_eq!(message(&store, failed_then_clicked).status, Status::Clicked);
    assert_eq!(message(&store, failed_then_acted).status, Status::Delivered);
    let stats = all(&store);
    assert_eq!(stats.failed_count, 1);
    assert_eq!(stats.delivered_count, 4);
    assert_eq!(
        stats.status_breakdown,
        counts(&[
            ("failed", 1),
            ("delivered", 2),
            ("opened", 1),
            ("clicked", 1)
        ])
    );
}

#[test]
fn a_later_delivery_wins_over_an_earlier_failure_and_failed_at_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let delivered_later_in_time = send(&store, 1, Channel::Email, "weekly_checkin", 0);
    failed(&store, delivered_later_in_time, "undelivered", 10);
    assert_eq!(
        message(&store, delivered_later_in_time).status,
        Status::Failed
    );
    let returned = store
        .track_message_delivered(delivered_later_in_time, Some(at(20)))
        .unwrap();
    assert_eq!(returned.status, Status::Delivered);
    assert_eq!(returned.delivered_at, Some(at(20)));
    assert_eq!(
        returned.failed_at,
        Some(at(10)),
        "failed_at is kept on the message"
    );
    // A delivery reported after the failure but dated before it wins too.
    let delivered_earlier_in_time = send(&store, 1, Channel::Email, "weekly_checkin", 0);
    failed(&store, delivered_earlier_in_time, "undelivered", 10);
    delivered(&store, delivered_earlier_in_time, 3);
    let record = message(&store, delivered_earlier_in_time);
    assert_eq!(
        (record.status, record.delivered_at, record.failed_at),
        (Status::Delivered, Some(at(3)), Some(at(10)))
    );

    let stats = all(&store);
    assert_eq!((stats.failed_count, stats.delivered_count), (0, 2));
    assert_eq!(stats.status_breakdown, counts(&[("delivered", 2)]));
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(message(&store, delivered_later_in_time), returned);
    assert_eq!(all(&store), stats);
}

#[test]
fn repeated_reports_are_appended_but_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = send(&store, 1, Channel::Sms, "low_balance", 0);
    let second = send(&store, 1, Channel::Sms, "low_balance", 0);
    delivered(&store, first, 30);
    delivered(&store, first, 10);
    delivered(&store, first, 20);
    opened(&store, first, 40);
    opened(&store, first, 35);
    failed(&store, second, "bounced", 12);
    failed(&store, second, "bounced", 11);
    failed(&store, second, "undelivered", 13);
    let event_count = 2 + 3 + 2 + 3;

    let check = |store: &Store| {
        let stats = all(store);
        assert_eq!(stats.total_messages, 2);
        assert_eq!(
            (
                stats.delivered_count,
                stats.opened_count,
                stats.failed_count
            ),
            (1, 1, 1)
        );
        assert_eq!(
            stats.status_breakdown,
            counts(&[("opened", 1), ("failed", 1)])
        );
        assert_eq!(message(store, first).delivered_at, Some(at(10)));
        assert_eq!(message(store, first).opened_at, Some(at(35)));
        assert_eq!(message(store, second).failed_at, Some(at(11)));
    };
    check(&store);
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(
        store.open_report().events,
        event_count,
        "every repeat is in the log"
    );
    check(&store);
}

#[test]
fn action_taken_is_the_action_with_the_latest_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = send(&store, 1, Channel::Push, "low_balance", 0);
    action(&store, id, "first", 5);
    assert_eq!(message(&store, id).action_taken.as_deref(), Some("first"));
    action(&store, id, "latest", 9);
    action(&store, id, "middle", 7);
    action(&store, id, "earliest", 3);
    assert_eq!(message(&store, id).action_taken.as_deref(), Some("latest"));
    // The latest action need not be the click; clicked_at keeps the click's time.
    let clicked = send(&store, 1, Channel::Push, "low_balance", 0);
    action(&store, clicked, "viewed_forecast", 8);
    action(&store, clicked, "clicked_link", 2);
    let clicked = message(&store, clicked);
    assert_eq!(clicked.action_taken.as_deref(), Some("viewed_forecast"));
    assert_eq!(clicked.clicked_at, Some(at(2)));
    assert_eq!(clicked.status, Status::Clicked);
}

#[test]
fn action_taken_ties_go_to_the_action_appended_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let forward = send(&store, 1, Channel::Sms, "low_balance", 0);
    action(&store, forward, "alpha", 9);
    action(&store, forward, "beta", 9);
    let backward = send(&store, 1, Channel::Sms, "low_balance", 0);
    action(&store, backward, "beta", 9);
    action(&store, backward, "alpha", 9);
    // Appended later but earlier in time: does not win.
    action(&store, backward, "gamma", 8);
    let interleaved = send(&store, 1, Channel::Sms, "low_balance", 0);
    action(&store, interleaved, "alpha", 9);
    action(&store, forward, "gamma", 1);
    action(&store, interleaved, "beta", 9);
    action(&store, interleaved, "gamma", 9);

    let check = |store: &Store| {
        assert_eq!(
            message(store, forward).action_taken.as_deref(),
            Some("beta")
        );
        assert_eq!(
            message(store, backward).action_taken.as_deref(),
            Some("alpha")
        );
        assert_eq!(
            message(store, interleaved).action_taken.as_deref(),
            Some("gamma")
        );
    };
    check(&store);
    store.close().unwrap();
    check(&open(dir.path()));
}

#[test]
fn action_count_counts_messages_with_any_action() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let three_actions = send(&store, 1, Channel::Sms, "low_balance", 0);
    action(&store, three_actions, "viewed_forecast", 1);
    action(&store, three_actions, "dismissed", 2);
    action(&store, three_actions, "viewed_forecast", 3);
    let one_click = send(&store, 1, Channel::Sms, "low_balance", 0);
    action(&store, one_click, "clicked_link", 1);
    let opened_without_action = send(&store, 1, Channel::Sms, "low_balance", 0);
    opened(&store, opened_without_action, 1);
    send(&store, 1, Channel::Sms, "low_balance", 0);

    let stats = all(&store);
    assert_eq!(stats.action_count, 2);
    assert_eq!(stats.delivered_count, 3);
    assert_close(stats.action_rate, percent(2, 3));
}

/// Six messages over three users, three channels and three types.
fn filter_fixture(store: &Store) {
    send(store, 1, Channel::Sms, "low_balance", 0);
    send(store, 1, Channel::Email, "weekly_checkin", 10);
    send(store, 1, Channel::Sms, "bill_due", 20);
    send(store, 2, Channel::Sms, "low_balance", 5);
    send(store, 2, Channel::Push, "low_balance", 15);
    send(store, 3, Channel::InApp, "weekly_checkin", 25);
}

#[test]
fn stats_filtered_by_user_cover_only_that_users_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    filter_fixture(&store);
    let user_one = stats(&store, &StatsFilter::new().user(1));
    assert_eq!(user_one.total_messages, 3);
    assert_eq!(
        user_one.channel_breakdown,
        counts(&[("sms", 2), ("email", 1)])
    );
    assert_eq!(user_one.total_cost.micros(), 30_000);
    assert_eq!(stats(&store, &StatsFilter::new().user(2)).total_messages, 2);
    let nobody = stats(&store, &StatsFilter::new().user(4));
    assert_eq!(nobody.total_messages, 0);
    assert!(nobody.channel_breakdown.is_empty());
}

#[test]
fn stats_filtered_by_message_type_cover_only_that_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    filter_fixture(&store);
    let low_balance = stats(&store, &StatsFilter::new().message_type("low_balance"));
    assert_eq!(low_balance.total_messages, 3);
    assert_eq!(
        low_balance.message_type_breakdown,
        counts(&[("low_balance", 3)])
    );
    assert_eq!(
        low_balance.channel_breakdown,
        counts(&[("sms", 2), ("push", 1)])
    );
    assert_eq!(
        stats(&store, &StatsFilter::new().message_type("never_sent")).total_messages,
        0
    );
}

#[test]
fn stats_filtered_by_channel_cover_only_that_channel() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    filter_fixture(&store);
    let sms = stats(&store, &StatsFilter::new().channel(Channel::Sms));
    assert_eq!(sms.total_messages, 3);
    assert_eq!(sms.channel_breakdown, counts(&[("sms", 3)]));
    assert_eq!(
        sms.message_type_breakdown,
        counts(&[("low_balance", 2), ("bill_due", 1)])
    );
    assert_eq!(
        stats(&store, &StatsFilter::new().channel(Channel::InApp)).total_messages,
        1
    );
}

#[test]
fn stats_filter_parts_combine() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    filter_fixture(&store);
    let filter = StatsFilter::new()
        .user(2)
        .message_type("low_balance")
        .channel(Channel::Sms);
    assert_eq!(stats(&store, &filter).total_messages, 1);
    let filter = StatsFilter::new()
        .user(1)
        .channel(Channel::Sms)
        .start(at(1));
    let one = stats(&store, &filter);
    assert_eq!(one.message_type_breakdown, counts(&[("bill_due", 1)]));
    let filter = StatsFilter::new()
        .message_type("weekly_checkin")
        .start(at(0))
        .end(at(20));
    assert_eq!(
        stats(&store, &filter).channel_breakdown,
        counts(&[("email", 1)])
    );
}

#[test]
fn stats_time_window_includes_both_edge_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for sent_ms in [99, 100, 101, 199, 200, 201] {
        send(&store, 1, Channel::Sms, "low_balance", sent_ms);
    }
    let window = |start: Option<i64>, end: Option<i64>| {
        let mut filter = StatsFilter::new();
        if let Some(start) = start {
            filter = filter.start(at(start));
        }
        if let Some(end) = end {
            filter = filter.end(at(end));
        }
        stats(&store, &filter).total_messages
    };
    assert_eq!(window(Some(100), Some(200)), 4);
    assert_eq!(window(Some(101), Some(199)), 2);
    assert_eq!(window(Some(100), Some(100)), 1);
    assert_eq!(window(Some(200), Some(200)), 1);
    assert_eq!(window(Some(150), Some(150)), 0);
    assert_eq!(window(Some(100), None), 5);
    assert_eq!(window(None, Some(200)), 5);
    assert_eq!(window(Some(202), None), 0);
    assert_eq!(window(None, Some(98)), 0);
    // The same edges with the user filter, which takes another path through the data.
    let filter = StatsFilter::new().user(1).start(at(100)).end(at(200));
    assert_eq!(stats(&store, &filter).total_messages, 4);
    let filter = StatsFilter::new().user(1).start(at(200)).end(at(200));
    assert_eq!(stats(&store, &filter).total_messages, 1);
}

#[test]
fn outcome_fields_use_only_the_user_filter_and_the_outcome_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, "low_balance", 150);
    let outcome = |user: u64, amount: f64, at_ms: i64| {
        store
            .track_financial_outcome_at(user, "bill_paid_on_time", amount, at(at_ms))
            .unwrap();
    };
    outcome(1, 1.0, 99);
    outcome(1, 2.5, 100);
    outcome(1, -0.75, 200);
    outcome(1, 10.0, 201);
    outcome(2, 1000.0, 150);

    let window = StatsFilter::new().user(1).start(at(100)).end(at(200));
    let windowed = stats(&store, &window);
    assert_eq!((windowed.total_messages, windowed.outcome_count), (1, 2));
    assert_eq!(windowed.total_impact.micros(), 1_750_000);
    // Message filters that select no message leave the outcome fields alone.
    let no_messages = window
        .clone()
        .channel(Channel::Email)
        .message_type("weekly_checkin");
    let unmatched = stats(&store, &no_messages);
    assert_eq!((unmatched.total_messages, unmatched.outcome_count), (0, 2));
    assert_eq!(unmatched.total_impact.micros(), 1_750_000);
    let never_sent = stats(
        &store,
        &StatsFilter::new().user(1).message_type("never_sent"),
    );
    assert_eq!(
        (never_sent.total_messages, never_sent.outcome_count),
        (0, 4)
    );
    assert_eq!(never_sent.total_impact.micros(), 12_750_000);
    // The window is on the outcome's time: a window without the message still counts them.
    let before_message = stats(
        &store,
        &StatsFilter::new().user(1).start(at(99)).end(at(100)),
    );
    assert_eq!(
        (before_message.total_messages, before_message.outcome_count),
        (0, 2)
    );
    let everyone = stats(&store, &StatsFilter::new().start(at(100)).end(at(200)));
    assert_eq!(
        (everyone.outcome_count, everyone.total_impact.micros()),
        (3, 1_001_750_000)
    );
    let everything = all(&store);
    assert_eq!(
        (everything.outcome_count, everything.total_impact.micros()),
        (5, 1_012_750_000)
    );
    assert_eq!(stats(&store, &StatsFilter::new().user(3)).outcome_count, 0);
}

#[test]
fn rates_are_percentages_of_their_specified_denominators() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, "low_balance", 0);
    let was_delivered = send(&store, 1, Channel::Sms, "low_balance", 0);
    delivered(&store, was_delivered, 1);
    let acted = send(&store, 1, Channel::Sms, "low_balance", 0);
    opened(&store, acted, 1);
    action(&store, acted, "viewed_forecast", 2);
    let clicked = send(&store, 1, Channel::Sms, "low_balance", 0);
    action(&store, clicked, "clicked_link", 1);

    let stats = all(&store);
    assert_eq!(
        (
            stats.total_messages,
            stats.delivered_count,
            stats.opened_count
        ),
        (4, 3, 2)
    );
    assert_eq!((stats.clicked_count, stats.action_count), (1, 2));
    assert_eq!(stats.delivery_rate, 75.0, "delivered / total");
    assert_close(stats.open_rate, percent(2, 3)); // opened / delivered
    assert_eq!(stats.click_rate, 50.0, "clicked / opened");
    assert_close(stats.action_rate, percent(2, 3)); // actions / delivered
}

#[test]
fn rates_are_zero_when_their_denominator_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rates = |stats: &CommunicationStats| {
        [
            stats.delivery_rate,
            stats.open_rate,
            stats.click_rate,
            stats.action_rate,
        ]
    };
    let empty = all(&store);
    assert_eq!(rates(&empty), [0.0; 4]);
    assert_eq!(
        (empty.total_cost, empty.avg_cost_per_message),
        (Money::ZERO, Money::ZERO)
    );
    // Sent but never delivered: every denominator but the first is 0.
    let id = send(&store, 1, Channel::Sms, "low_balance", 0);
    failed(&store, id, "bounced", 1);
    send(&store, 2, Channel::Sms, "low_balance", 0);
    assert_eq!(rates(&all(&store)), [0.0; 4]);
    // Delivered but never opened: click rate's denominator is 0.
    delivered(&store, MessageId(2), 1);
    let delivered_only = stats(&store, &StatsFilter::new().user(2));
    assert_eq!(rates(&delivered_only), [100.0, 0.0, 0.0, 0.0]);
}

#[test]
fn breakdown_maps_are_keyed_by_lowercase_names_and_hold_only_non_zero_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    send(&store, 1, Channel::Sms, "low_balance", 0);
    let was_delivered = send(&store, 1, Channel::Email, "weekly_checkin", 0);
    delivered(&store, was_delivered, 1);
    let clicked = send(&store, 1, Channel::InApp, "bill_due", 0);
    action(&store, clicked, "clicked_link", 1);
    let bounced = send(&store, 1, Channel::Sms, "low_balance", 0);
    failed(&store, bounced, "bounced", 1);
    store
        .track_financial_outcome_at(1, "overdraft_avoided", 3.0, at(1))
        .unwrap();

    let everything = all(&store);
    assert_eq!(
        everything.status_breakdown,
        counts(&[("sent", 1), ("delivered", 1), ("clicked", 1), ("failed", 1)])
    );
    assert_eq!(
        everything.channel_breakdown,
        counts(&[("sms", 2), ("email", 1), ("in_app", 1)])
    );
    assert_eq!(
        everything.message_type_breakdown,
        counts(&[("low_balance", 2), ("weekly_checkin", 1), ("bill_due", 1)]),
        "action, reason and outcome names are not message types"
    );
    let nothing = stats(&store, &StatsFilter::new().user(1).channel(Channel::Push));
    assert!(nothing.status_breakdown.is_empty());
    assert!(nothing.channel_breakdown.is_empty());
    assert!(nothing.message_type_breakdown.is_empty());
}

#[test]
fn history_lists_newest_sent_first_ties_by_higher_id_at_most_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ids = BTreeMap::new();
    for (index, sent_ms) in [50, 10, 50, 30, 50, 20].into_iter().enumerate() {
        ids.insert(index, send(&store, 1, Channel::Sms, "low_balance", sent_ms));
        send(&store, 2, Channel::Email, "weekly_checkin", 40);
    }
    // Sent times 50, 50, 50 (ids by position 4, 2, 0), then 30, 20, 10.
    let expected: Vec<MessageId> = [4, 2, 0, 3, 5, 1]
        .iter()
        .map(|position| ids[position])
        .collect();
    let history = |user: u64, limit: usize| -> Vec<MessageId> {
        store
            .get_user_communication_history(user, limit)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect()
    };
    assert_eq!(history(1, 100), expected);
    assert_eq!(history(1, 6), expected);
    assert_eq!(history(1, 4), expected[..4]);
    assert_eq!(history(1, 1), expected[..1]);
    assert!(history(1, 0).is_empty());
    assert!(history(3, 10).is_empty());
    let other = store.get_user_communication_history(2, 100).unwrap();
    assert_eq!(other.len(), 6);
    assert!(other.iter().all(|m| m.user_id.0 == 2));
    assert!(
        other.windows(2).all(|pair| pair[0].id > pair[1].id),
        "equal sent times: higher id first"
    );
    let full = store.get_user_communication_history(1, 100).unwrap();
    assert_eq!(
        full[0],
        message(&store, ids[&4]),
        "history holds the whole message record"
    );
}

#[test]
fn avg_cost_per_message_is_rounded_to_the_micro_halves_away_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // (user, costs in dollars, expected total micros, expected average micros)
    let cases: [(u64, &[f64], i128, i128); 9] = [
        (1, &[0.000001, 0.0], 1, 1),                     // 0.5 → 1
        (2, &[0.000001, 0.0, 0.0], 1, 0),                // 0.333 → 0
        (3, &[0.000003, 0.0], 3, 2),                     // 1.5 → 2
        (4, &[0.000005, 0.0, 0.0], 5, 2),                // 1.667 → 2
        (5, &[0.000002, 0.0, 0.0, 0.0], 2, 1),           // 0.5 → 1
        (6, &[0.05, 0.05, 0.06], 160_000, 53_333),       // 53,333.33 → 53,333
        (7, &[0.000001, 0.000002, 0.0, 0.0], 3, 1),      // 0.75 → 1
        (8, &[0.000009, 0.0, 0.0, 0.0, 0.0, 0.0], 9, 2), // 1.5 → 2
        (9, &[0.29], 290_000, 290_000),
    ];
    for (user, costs, _, _) in cases {
        for cost in costs {
            store
                .track_message_sent_at(user, Channel::Sms, "low_balance", *cost, at(0))
                .unwrap();
        }
    }
    for (user, _, total_micros, average_micros) in cases {
        let stats = stats(&store, &StatsFilter::new().user(user));
        assert_eq!(stats.total_cost.micros(), total_micros, "user {user}");
        assert_eq!(
            stats.avg_cost_per_message.micros(),
            average_micros,
            "user {user}"
        );
    }
    let everything = all(&store);
    assert_eq!(everything.total_messages, 28);
    assert_eq!(everything.total_cost.micros(), 450_024);
    assert_eq!(everything.avg_cost_per_message.micros(), 16_072); // 16,072.29 → 16,072
}

#[test]
fn money_from_dollars_rounds_to_the_nearest_micro_halves_away_from_zero() {
    let micros = |dollars: f64| Money::from_dollars(dollars).unwrap().micros();
    assert_eq!(micros(0.29), 290_000);
    assert_eq!(micros(0.05), 50_000);
    assert_eq!(micros(0.001), 1_000);
    assert_eq!(micros(25.0), 25_000_000);
    assert_eq!(micros(0.1 + 0.2), 300_000);
    assert_eq!(micros(1.1), 1_100_000);
    assert_eq!(micros(0.0000005), 1);
    assert_eq!(micros(-0.0000005), -1);
    assert_eq!(micros(0.0000015), 2);
    assert_eq!(micros(-0.0000015), -2);
    assert_eq!(micros(0.0000004999), 0);
    assert_eq!(micros(0.00000049), 0);
    assert_eq!(micros(1.0000005), 1_000_001);
    assert_eq!(micros(2.675), 2_675_000);
    assert_eq!(micros(-250.5), -250_500_000);
    assert_eq!(micros(0.0), 0);
    assert_eq!(micros(9e12), 9_000_000_000_000_000_000);
    assert_eq!(micros(-9e12), -9_000_000_000_000_000_000);
    assert_eq!(Money::from_micros(290_000).dollars(), 0.29);
    // The store rounds costs and amounts the same way.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let message = store
        .track_message_sent_at(1, Channel::Sms, "low_balance", 0.29, at(0))
        .unwrap();
    assert_eq!(message.cost.micros(), 290_000);
    let outcome = store
        .track_financial_outcome_at(1, "fee_charged", -0.0000005, at(0))
        .unwrap();
    assert_eq!(outcome.amount.micros(), -1);
}

#[test]
fn message_ids_are_dense_from_one_in_append_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first: Vec<u64> = (0..3)
        .map(|index| {
            send(
                &store,
                1 + index,
                Channel::Sms,
                "low_balance",
                10 - index as i64,
            )
            .0
        })
        .collect();
    assert_eq!(first, [1, 2, 3]);
    // Outcomes, reports and rejected sends take no id.
    store
        .track_financial_outcome_at(1, "bill_paid_on_time", 5.0, at(0))
        .unwrap();
    delivered(&store, MessageId(2), 11);
    assert!(
        store
            .track_message_sent_at(0, Channel::Sms, "low_balance", 0.01, at(0))
            .is_err()
    );
    assert!(
        store
            .track_message_sent_at(1, Channel::Sms, "Bad Type", 0.01, at(0))
            .is_err()
    );
    assert_eq!(
        send(&store, 1, Channel::Email, "low_balance", 0),
        MessageId(4)
    );
    store.close().unwrap();
    let store = open(dir.path());
    assert_eq!(
        send(&store, 2, Channel::Push, "low_balance", 0),
        MessageId(5)
    );
    assert_eq!(message(&store, MessageId(5)).id, MessageId(5));
    assert!(store.get_message(6).is_err());
    assert_eq!(all(&store).total_messages, 5);
}

/// Every answer the reopen test compares.
#[derive(Debug, PartialEq)]
struct Answers {
    messages: Vec<Message>,
    histories: Vec<Vec<Message>>,
    stats: Vec<CommunicationStats>,
}

fn answers(store: &Store, message_count: u64) -> Answers {
    let messages = (1..=message_count)
        .map(|id| message(store, MessageId(id)))
        .collect();
    let mut histories = Vec::new();
    for user in 1..=4 {
        for limit in [0, 2, 100] {
            histories.push(store.get_user_communication_history(user, limit).unwrap());
        }
    }
    let filters = [
        StatsFilter::new(),
        StatsFilter::new().user(1),
        StatsFilter::new().user(2).channel(Channel::Email),
        StatsFilter::new().message_type("low_balance"),
        StatsFilter::new().start(at(10)).end(at(30)),
        StatsFilter::new().user(3).start(at(20)),
        StatsFilter::new().end(at(15)),
    ];
    let stats = filters.iter().map(|filter| stats(store, filter)).collect();
    Answers {
        messages,
        histories,
        stats,
    }
}

#[test]
fn every_answer_is_equal_after_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let types = ["low_balance", "weekly_checkin", "bill_due"];
    let actions = ["viewed_forecast", "clicked_link", "dismissed"];
    let mut message_count = 0;
    for index in 0..40u64 {
        let user = 1 + index % 3;
        let sent_ms = (index * 7 % 40) as i64;
        let cost = (index * 1_234 % 9_000) as f64 / 1e6;
        let id = store
            .track_message_sent_at(
                user,
                Channel::ALL[(index % 4) as usize],
                types[(index % 3) as usize],
                cost,
                at(sent_ms),
            )
            .unwrap()
            .id;
        message_count += 1;
        match index % 6 {
            0 => delivered(&store, id, sent_ms + 3),
            1 => opened(&store, id, sent_ms + 5),
            2 => action(&store, id, actions[(index % 3) as usize], sent_ms + 1),
            3 => failed(&store, id, "bounced", sent_ms + 2),
            4 => {
                failed(&store, id, "undelivered", sent_ms + 9);
                delivered(&store, id, sent_ms + 4);
                action(&store, id, "clicked_link", sent_ms + 6);
                action(&store, id, "viewed_forecast", sent_ms + 6);
            }
            _ => {}
        }
        if index % 5 == 0 {
            let amount = (index as f64 - 20.0) * 1.25;
            store
                .track_financial_outcome_at(user, "bill_paid_on_time", amount, at(sent_ms + 2))
                .unwrap();
        }
    }
    let before = answers(&store, message_count);
    store.close().unwrap();

    let reopened = open(dir.path());
    assert_eq!(answers(&reopened, message_count), before);
    reopened.close().unwrap();
    let read_only = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(answers(&read_only, message_count), before);
}
