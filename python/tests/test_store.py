"""The embedded store, `commlog.Store`: every method, the typed answers, errors, lifecycle."""

from __future__ import annotations

import gc
import os
import sys
import threading
import warnings
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

import commlog
from commlog import (
    CommlogError,
    Conflict,
    FinancialOutcome,
    InvalidInput,
    Locked,
    Message,
    Stats,
    StorageError,
    Store,
    Unavailable,
    UnknownMessage,
    View,
)
from commlog.errors import error_from

UTC = timezone.utc
T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(path: Path):
    with Store(path, sync="never") as s:
        yield s


def populate(s: Store) -> None:
    a = s.track_message_sent(123, "sms", "low_balance", 0.05, external_id="SM1", sent_at=T0)
    s.track_message_delivered("SM1", T0 + timedelta(minutes=1))
    s.track_message_opened(a.id, T0 + timedelta(minutes=2))
    s.track_user_action(a.id, "clicked_link", T0 + timedelta(minutes=3))
    b = s.track_message_sent(123, "email", "weekly_checkin", Decimal("0.001"), sent_at=T0 + timedelta(hours=1))
    s.track_message_failed(b.id, "bounced", T0 + timedelta(hours=1, minutes=1))
    s.track_message_sent(456, "push", "low_balance", 0, sent_at=T0 + timedelta(days=1))
    s.track_financial_outcome(123, "bill_paid_on_time", 25, T0 + timedelta(hours=5))
    s.set_budget("sms", "2025-01", 100, alert_percent=80)


def all_answers(s: Store) -> dict:
    answers = {
        "history": s.get_user_communication_history(123),
        "stats": s.get_communication_stats(),
        "stats_user": s.get_communication_stats(user_id=123, channel="sms"),
        "channels": s.get_channel_effectiveness(period="day"),
        "impact": s.get_financial_impact(),
        "engagement": s.get_user_engagement(123),
        "costs": s.get_cost_report(month="2025-01"),
        "message": s.message("SM1"),
    }
    for k in ("costs", "engagement", "channels", "impact"):
        d = answers[k].to_dict()
        d.pop("now", None)
        answers[k] = d
    return answers


# -- tracking and typed answers -------------------------------------------------------------


def test_track_message_sent_answers_a_typed_message(store: Store) -> None:
    m = store.track_message_sent(123, "sms", "low_balance", 0.05, sent_at=T0)
    assert isinstance(m, Message)
    assert m.id == 1 and m.user_id == 123
    assert (m.channel, m.message_type, m.status) == ("sms", "low_balance", "sent")
    assert m.cost == Decimal("0.05") and isinstance(m.cost, Decimal)
    assert f"{m.cost:.2f}" == "0.05"
    assert m.sent_at == T0 and m.sent_at.tzinfo is not None
    assert m.sent_at.utcoffset() == timedelta(0)
    assert m.delivered_at is None and m.opened_at is None and m.clicked_at is None
    assert m.failed_at is None and m.failure_reason is None and m.action_taken is None
    with pytest.raises(Exception):
        m.status = "x"  # type: ignore[misc]
    # A dataclass like any other: equal to itself rebuilt, comparable to the JSON form.
    assert m == store.message(m.id)
    assert Message.from_json(
        {
            "id": 1,
            "user_id": 123,
            "channel": "sms",
            "message_type": "low_balance",
            "status": "sent",
            "cost_micros": 50000,
            "sent_at": "2025-01-01T09:00:00.000Z",
            "delivered_at": None,
            "opened_at": None,
            "clicked_at": None,
            "failed_at": None,
            "failure_reason": None,
            "action_taken": None,
        }
    ) == m


def test_answers_are_values_that_print_hash_pickle_and_round_trip_through_json(store: Store) -> None:
    import pickle

    m = store.track_message_sent(123, "sms", "low_balance", 0.05, external_id="SMv", sent_at=T0)
    m = store.track_user_action(m.id, "clicked_link", T0 + timedelta(minutes=3))
    assert repr(m) == (
        "Message(id=1, user_id=123, channel='sms', message_type='low_balance', status='clicked', "
        "cost=Decimal('0.05'), sent_at=datetime.datetime(2025, 1, 1, 9, 0, tzinfo=datetime.timezone.utc), "
        "delivered_at=datetime.datetime(2025, 1, 1, 9, 3, tzinfo=datetime.timezone.utc), "
        "opened_at=datetime.datetime(2025, 1, 1, 9, 3, tzinfo=datetime.timezone.utc), "
        "clicked_at=datetime.datetime(2025, 1, 1, 9, 3, tzinfo=datetime.timezone.utc), "
        "failed_at=None, failure_reason=None, action_taken='clicked_link')"
    )
    same = store.message("SMv")
    assert same == m and same is not m and hash(same) == hash(m) and len({m, same}) == 1
    assert m != store.track_message_sent(123, "sms", "low_balance", 0.05, sent_at=T0)
    assert pickle.loads(pickle.dumps(m)) == m
    assert Message.from_json(m.to_json()) == m == Message.from_json(m.to_json().encode())
    d = m.to_dict()
    assert list(d) == [
        "id", "user_id", "channel", "message_type", "status", "cost", "sent_at", "delivered_at",
        "opened_at", "clicked_at", "failed_at", "failure_reason", "action_taken",
    ]
    assert d["cost"] == Decimal("0.05") and d["clicked_at"] == T0 + timedelta(minutes=3)
    with pytest.raises(AttributeError):
        m.id = 2  # type: ignore[misc]
    with pytest.raises(ValueError, match="message JSON"):
        Message.from_json({"id": 1})

    o = store.track_financial_outcome(123, "overdraft_fee", Decimal("-34.99"), T0)
    assert repr(o) == (
        "FinancialOutcome(user_id=123, outcome='overdraft_fee', amount=Decimal('-34.99'), "
        "at=datetime.datetime(2025, 1, 1, 9, 0, tzinfo=datetime.timezone.utc))"
    )
    assert pickle.loads(pickle.dumps(o)) == o == FinancialOutcome.from_json(o.to_json())
    assert o.to_dict() == {"user_id": 123, "outcome": "overdraft_fee", "amount": Decimal("-34.99"), "at": T0}
    assert hash(o) == hash(FinancialOutcome.from_json(o.to_json()))


def test_sent_without_time_is_now(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    m = store.track_message_sent(1, "email", "welcome", 0)
    assert before <= m.sent_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert m.cost == Decimal(0)


def test_money_as_float_int_decimal_or_str_is_exact(store: Store) -> None:
    for cost, expected in [
        (0.05, "0.05"),
        (0.1 + 0.2, "0.3"),
        (3, "3"),
        (Decimal("0.0075"), "0.0075"),
        ("1.25", "1.25"),
        (0.0000005, "0.000001"),
    ]:
        m = store.track_message_sent(1, "sms", "t", cost, sent_at=T0)
        assert m.cost == Decimal(expected), cost
    total = store.get_communication_stats()["total_cost"]
    assert total == Decimal("0.05") + Decimal("0.3") + 3 + Decimal("0.0075") + Decimal("1.25") + Decimal("0.000001")


def test_follow_ups_by_id_and_by_external_id(store: Store) -> None:
    m = store.track_message_sent(7, "sms", "reminder", 0.01, external_id="SMabc", sent_at=T0)
    again = store.track_message_sent(7, "sms", "reminder", 0.01, external_id="SMabc", sent_at=T0)
    assert again.id == m.id
    d = store.track_message_delivered("SMabc", T0 + timedelta(minutes=1))
    assert d.status == "delivered" and d.delivered_at == T0 + timedelta(minutes=1)
    o = store.track_message_opened(m.id, T0 + timedelta(minutes=2))
    assert o.status == "opened" and o.opened_at == T0 + timedelta(minutes=2)
    c = store.track_user_action("SMabc", "clicked_link", T0 + timedelta(minutes=3))
    assert c.status == "clicked" and c.action_taken == "clicked_link"
    assert c.clicked_at == T0 + timedelta(minutes=3)
    f = store.track_message_failed(m.id, "carrier_error", T0 + timedelta(minutes=4))
    assert f.failure_reason == "carrier_error" and f.failed_at == T0 + timedelta(minutes=4)
    assert store.message("SMabc") == store.message(m.id) == f
    assert store.message_by_external_id("SMabc") == f
    assert store.message_by_external_id("SMnone") is None
    assert store.get_external_id(m.id) == "SMabc"
    n = store.track_message_sent(7, "email", "x", 0, sent_at=T0)
    assert store.get_external_id(n.id) is None


def test_follow_ups_default_to_now(store: Store) -> None:
    m = store.track_message_sent(1, "push", "x", 0)
    now = datetime.now(UTC)
    d = store.track_message_delivered(m.id)
    assert d.delivered_at is not None and abs(d.delivered_at - now) < timedelta(seconds=5)
    a = store.track_user_action(m.id, "viewed")
    assert a.action_taken == "viewed"
    f = store.track_message_failed(m.id, "late")
    assert f.failed_at is not None


def test_naive_times_are_utc_and_aware_ones_converted(store: Store) -> None:
    naive = datetime(2025, 1, 1, 9, 0)
    plus2 = datetime(2025, 1, 1, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    a = store.track_message_sent(1, "sms", "x", 0, sent_at=naive)
    b = store.track_message_sent(1, "sms", "x", 0, sent_at=plus2)
    assert a.sent_at == b.sent_at == T0
    assert a.sent_at.tzinfo == UTC and b.sent_at.tzinfo == UTC
    # Strings as the server takes them.
    c = store.track_message_sent(1, "sms", "x", 0, sent_at="2025-01-01T09:00:00.000Z")
    assert c.sent_at == T0
    # Milliseconds survive, finer parts are cut.
    d = store.track_message_sent(1, "sms", "x", 0, sent_at=T0 + timedelta(microseconds=123_456))
    assert d.sent_at == T0 + timedelta(milliseconds=123)


def test_financial_outcome(store: Store) -> None:
    o = store.track_financial_outcome(123, "bill_paid_on_time", 25.0, T0)
    assert isinstance(o, FinancialOutcome)
    assert (o.user_id, o.outcome, o.amount, o.at) == (123, "bill_paid_on_time", Decimal(25), T0)
    loss = store.track_financial_outcome(123, "overdraft_fee", Decimal("-34.99"), datetime(2025, 1, 2))
    assert loss.amount == Decimal("-34.99") and loss.at == datetime(2025, 1, 2, tzinfo=UTC)
    now = store.track_financial_outcome(5, "x", 1)
    assert abs(now.at - datetime.now(UTC)) < timedelta(seconds=5)


def test_set_budget_and_cost_report(store: Store) -> None:
    store.track_message_sent(1, "sms", "x", 0.5, sent_at=T0)
    b = store.set_budget("sms", "2025-01", 100, alert_percent=80)
    assert b == {
        "scope": "sms",
        "month": "2025-01",
        "amount_micros": 100_000_000,
        "alert_percent": 80,
        "amount": Decimal(100),
    }
    assert store.set_budget("all", date(2025, 1, 15), Decimal("250.50"))["alert_percent"] == 90
    report = store.get_cost_report(month="2025-01")
    assert isinstance(report, View)
    budgets = {x["scope"]: x for x in report["budgets"]}
    assert budgets["sms"]["budget"] == Decimal(100) and budgets["sms"].alert_percent == 80
    assert budgets["all"]["budget"] == Decimal("250.5")
    assert report.total["spent"] == Decimal("0.5")
    assert report["by_channel"]["sms"]["spent_micros"] == 500_000


def test_history(store: Store) -> None:
    ids = [store.track_message_sent(9, "sms", "x", 0, sent_at=T0 + timedelta(minutes=i)).id for i in range(5)]
    store.track_message_sent(10, "sms", "x", 0, sent_at=T0)
    h = store.get_user_communication_history(9)
    assert [m.id for m in h] == list(reversed(ids))
    assert all(isinstance(m, Message) for m in h)
    assert [m.id for m in store.get_user_communication_history(9, limit=2)] == ids[:-3:-1]
    assert store.get_user_communication_history(77) == []


def test_stats_is_a_mapping_with_the_original_keys(store: Store) -> None:
    populate(store)
    stats = store.get_communication_stats()
    assert isinstance(stats, Stats)
    for key in (
        "total_messages",
        "delivered_count",
        "opened_count",
        "clicked_count",
        "failed_count",
        "delivery_rate",
        "open_rate",
        "total_cost",
        "total_cost_micros",
        "status_breakdown",
        "channel_breakdown",
        "message_type_breakdown",
    ):
        assert key in stats, key
    assert stats["total_messages"] == stats.total_messages == 3
    assert isinstance(stats["delivery_rate"], float)
    assert stats["total_cost"] == Decimal("0.051")
    assert stats["total_cost_micros"] == 51_000
    assert stats["total_impact"] == Decimal(25)
    assert dict(stats["channel_breakdown"]) == {"sms": 1, "email": 1, "push": 1}
    assert f"{stats['delivery_rate']:.1f}"
    with pytest.raises(TypeError):
        stats["total_messages"] = 0  # type: ignore[index]
    assert store.get_communication_stats(user_id=123).total_messages == 2
    assert store.get_communication_stats(channel="sms").total_messages == 1
    assert store.get_communication_stats(message_type="low_balance").total_messages == 2
    assert store.get_communication_stats(start_date=T0 + timedelta(minutes=30)).total_messages == 2
    assert store.get_communication_stats(end_date=date(2025, 1, 1)).total_messages == 2
    assert store.get_communication_stats(start_date=date(2025, 1, 2), end_date=date(2025, 1, 2)).total_messages == 1


def test_the_four_views(store: Store) -> None:
    populate(store)
    e = store.get_user_engagement(123)
    assert isinstance(e, View) and e
    e_sms = store.get_user_engagement(123, channel="sms", start_date=T0, end_date=T0 + timedelta(days=2))
    assert isinstance(e_sms, View)
    c = store.get_channel_effectiveness()
    assert isinstance(c, View) and c
    for period in ("day", "week", "month"):
        assert isinstance(store.get_channel_effectiveness(user_id=123, period=period), View)
    costs = store.get_cost_report()
    assert costs["total"]["spent"] == Decimal("0.051")
    assert store.get_cost_report(month="2025-01", channel="sms")["total"]["spent"] == Decimal("0.05")
    impact = store.get_financial_impact()
    assert isinstance(impact, View) and impact
    assert isinstance(store.get_financial_impact(user_id=123, channel="sms"), View)
    # Nested objects are Views, lists hold Views; micro-dollar keys have a dollar twin.
    for view in (e, c, costs, impact):
        for key, value in view.items():
            if key.endswith("_micros"):
                twin = view[key[: -len("_micros")]]
                assert twin is None or isinstance(twin, Decimal)


# -- errors ---------------------------------------------------------------------------------


def test_invalid_input_names_the_field_and_value(store: Store) -> None:
    with pytest.raises(InvalidInput) as e:
        store.track_message_sent(0, "sms", "x", 0)
    assert e.value.kind == "invalid_input"
    assert e.value.fields["field"] == "user_id" and e.value.fields["value"] == "0"
    assert "user_id" in str(e.value)
    with pytest.raises(InvalidInput) as e:
        store.track_message_sent(1, "fax", "x", 0)
    assert e.value.fields["field"] == "channel" and e.value.fields["value"] == "fax"
    with pytest.raises(InvalidInput) as e:
        store.track_message_sent(1, "sms", "x", -1)
    assert e.value.fields["field"] == "cost"
    for bad in (float("nan"), float("inf"), "abc", None):
        with pytest.raises(InvalidInput) as e:
            store.track_message_sent(1, "sms", "x", bad)  # type: ignore[arg-type]
        assert e.value.fields["field"] == "cost"
    with pytest.raises(InvalidInput) as e:
        store.track_message_sent(1, "sms", "x", 0, sent_at=datetime.now(UTC) + timedelta(days=3))
    assert e.value.fields["field"] == "sent_at"
    with pytest.raises(InvalidInput) as e:
        store.track_message_sent(1, "sms", "x", 0, sent_at="yesterday")
    assert e.value.fields["field"] == "sent_at"
    with pytest.raises(InvalidInput) as e:
        store.set_budget("sms", "2025-13", 10)
    assert e.value.fields["field"] == "month"
    with pytest.raises(InvalidInput) as e:
        store.set_budget("sms", "2025-01", 10, alert_percent=101)
    assert e.value.fields["field"] == "alert_percent"
    with pytest.raises(InvalidInput) as e:
        store.get_channel_effectiveness(period="year")
    assert e.value.fields["field"] == "period"
    with pytest.raises(InvalidInput):
        store.track_message_delivered(1.5)  # type: ignore[arg-type]
    for huge in (1 << 64, -1):
        with pytest.raises(InvalidInput) as e:
            store.track_message_sent(huge, "sms", "x", 0)
        assert e.value.fields["field"] == "user_id"
        with pytest.raises(InvalidInput) as e:
            store.track_message_delivered(huge)
        assert e.value.fields["field"] == "message_id"
    with pytest.raises(InvalidInput):
        store.track_message_sent(1, "sms", "x", 10**14)
    with pytest.raises(InvalidInput):
        store.set_budget("all", "2025-01", 1, alert_percent=1 << 70)
    with pytest.raises(InvalidInput) as e:
        store.get_user_communication_history(1, limit=-1)
    assert e.value.fields["field"] == "limit"
    # InvalidInput is also a ValueError.
    with pytest.raises(ValueError):
        store.track_message_sent(1, "sms", "", 0)


def test_unknown_message(store: Store) -> None:
    with pytest.raises(UnknownMessage) as e:
        store.track_message_delivered(999)
    assert e.value.kind == "unknown_message" and e.value.fields == {"id": 999}
    with pytest.raises(UnknownMessage) as e:
        store.track_message_opened("SMnope")
    assert e.value.fields == {"external_id": "SMnope"}
    with pytest.raises(UnknownMessage):
        store.message(42)
    with pytest.raises(KeyError):
        store.message("SMnope")


def test_conflict(store: Store) -> None:
    m = store.track_message_sent(1, "sms", "x", 0.05, external_id="SMc", sent_at=T0)
    with pytest.raises(Conflict) as e:
        store.track_message_sent(1, "sms", "x", 0.06, external_id="SMc", sent_at=T0)
    assert e.value.kind == "conflict"
    assert e.value.fields == {"external_id": "SMc", "existing": m.id, "field": "cost"}


def test_locked_by_a_second_writer(path: Path) -> None:
    with Store(path):
        with pytest.raises(Locked) as e:
            Store(path)
        assert e.value.kind == "locked"
        assert str(path) in str(e.value.fields["path"])
        assert e.value.fields["holder"] == f"pid {os.getpid()}"
        assert e.value.fields["by_this_process"] is True
        assert isinstance(e.value.fields["waited_ms"], int)
        # The holder is this process itself, and the message says so.
        assert f"locked by this process (pid {os.getpid()})" in str(e.value)


def test_reports_pickle_copy_and_deepcopy_as_equal_reports(store: Store) -> None:
    import copy
    import pickle

    populate(store)
    for report in (
        store.get_communication_stats(),
        store.get_cost_report(),
        store.get_channel_effectiveness(period="day"),
        store.get_user_engagement(123),
        store.get_financial_impact(),
    ):
        for again in (
            pickle.loads(pickle.dumps(report)),
            copy.copy(report),
            copy.deepcopy(report),
        ):
            assert type(again) is type(report)
            assert again == report and again.to_dict() == report.to_dict()
        assert copy.deepcopy(report)._data is not report._data
    stats = pickle.loads(pickle.dumps(store.get_communication_stats()))
    assert stats.total_messages == stats["total_messages"]
    with pytest.raises(AttributeError):
        stats.no_such_key


def test_read_only_refuses_writes_and_reads_the_snapshot(path: Path) -> None:
    with Store(path) as s:
        populate(s)
        expected = all_answers(s)
    with Store.open_read_only(path) as r:
        assert r.read_only
        assert all_answers(r) == expected
        with pytest.raises(CommlogError) as e:
            r.track_message_sent(1, "sms", "x", 0)
        assert e.value.kind == "read_only" and e.value.fields["operation"]
        with pytest.raises(CommlogError):
            r.track_message_delivered(1)
        with pytest.raises(CommlogError):
            r.set_budget("all", "2025-01", 1)
        with pytest.raises(CommlogError):
            r.track_financial_outcome(1, "x", 1)


def test_read_only_decoding_on_demand_answers_as_the_default(path: Path) -> None:
    with Store(path) as s:
        populate(s)
        assert s.snapshot() is not None
        # After the snapshot: replayed onto facts still in the snapshot's file.
        s.track_message_opened("SM1", T0 + timedelta(minutes=4))
        s.track_message_sent(456, "sms", "low_balance", 0.02, sent_at=T0 + timedelta(days=2))
        expected = all_answers(s)
    with Store.open_read_only(path, decode_on_demand=True) as r:
        assert r.read_only
        assert all_answers(r) == expected
    with Store.open_read_only(path, decode_on_demand=False) as r:
        assert all_answers(r) == expected
    with pytest.raises(InvalidInput) as e:
        Store.open_read_only(path, decode_on_demand="yes")  # type: ignore[arg-type]
    assert e.value.fields["field"] == "decode_on_demand"


def test_sync_and_interval_are_checked(path: Path) -> None:
    with pytest.raises(InvalidInput) as e:
        Store(path, sync="sometimes")
    assert e.value.fields["field"] == "sync"
    for interval_ms in (0, 2**64, -1):
        with pytest.raises(InvalidInput) as e:
            Store(path, sync="interval", interval_ms=interval_ms)
        assert e.value.fields["field"] == "interval_ms"
    for sync in ("always", "interval", "never"):
        with Store(path, sync=sync, interval_ms=5) as s:
            s.track_message_sent(1, "sms", "x", 0)
            s.flush()
            s.sync()


def test_error_classes_and_error_from() -> None:
    cases = {
        "invalid_input": InvalidInput,
        "unknown_message": UnknownMessage,
        "conflict": Conflict,
        "locked": Locked,
        "storage": StorageError,
        "io": StorageError,
        "corruption": StorageError,
        "stopping": StorageError,
        "poisoned": StorageError,
        "unavailable": Unavailable,
        "teapot": CommlogError,
    }
    for kind, cls in cases.items():
        err = error_from(kind, f"a {kind} error", file="f", offset=3)
        assert type(err) is cls
        assert isinstance(err, CommlogError)
        assert (err.kind, err.message, err.fields) == (kind, f"a {kind} error", {"file": "f", "offset": 3})
        assert str(err) == f"a {kind} error"
    assert InvalidInput("x").kind == "invalid_input"


# -- lifecycle ------------------------------------------------------------------------------


def test_context_manager_closes_and_a_second_open_works(path: Path) -> None:
    with Store(path) as s:
        s.track_message_sent(1, "sms", "x", 0, sent_at=T0)
    assert s.closed
    with pytest.raises(CommlogError) as e:
        s.track_message_sent(1, "sms", "x", 0)
    assert e.value.kind == "closed"
    s.close()  # twice: nothing
    with Store(path) as again:
        assert again.message(1).sent_at == T0


def test_reopen_gives_identical_answers(path: Path) -> None:
    with Store(path, sync="interval", interval_ms=10) as s:
        populate(s)
        expected = all_answers(s)
    with Store(path) as s:
        assert all_answers(s) == expected


def test_forked_child_raises_and_parent_keeps_working(path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    with Store(path, sync="interval", interval_ms=10) as s:
        m = s.track_message_sent(1, "sms", "x", 0.05, sent_at=T0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: report through the exit code only
            code = 1
            try:
                try:
                    s.track_message_delivered(m.id)
                    code = 2
                except CommlogError as e:
                    if e.kind == "forked" and "forked pid" in e.message and "open the store after fork" in e.message:
                        code = 0
                    if e.fields.get("opened_pid") != os.getppid():
                        code = 3
                try:
                    s.close()
                    code = 4
                except CommlogError:
                    pass
                try:
                    s.get_communication_stats()
                    code = 5
                except CommlogError:
                    pass
                # A second open in the child is refused by the parent's lock: another
                # process's, whatever this one inherited from it.
                try:
                    Store(path)
                    code = 6
                except Locked as e:
                    if e.fields.get("by_this_process") is not False:
                        code = 7
                    if "locked by another process" not in str(e):
                        code = 8
                # Dropping the store in the child leaves the parent's store untouched.
                del s
                gc.collect()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        # The parent goes on.
        assert s.track_message_delivered(m.id, T0 + timedelta(minutes=1)).status == "delivered"
        s.track_message_sent(2, "email", "y", 0, sent_at=T0)
    with Store(path) as s:
        assert s.get_communication_stats().total_messages == 2
        assert s.message(m.id).status == "delivered"


def test_close_releases_the_lock_while_a_forked_child_lives(path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    s = Store(path)
    s.track_message_sent(1, "sms", "x", 0.05, sent_at=T0)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child holds the inherited descriptors until the parent is done
        os.close(write)
        os.read(read, 1)
        os._exit(0)
    os.close(read)
    try:
        s.close()
        # The store is closed: this process, or any other, may open it again at once.
        with Store(path) as again:
            assert again.get_communication_stats().total_messages == 1
    finally:
        os.close(write)
        os.waitpid(pid, 0)


def test_threads_track_concurrently(path: Path) -> None:
    # Every call releases the GIL: several threads tracking at once all complete.
    n_threads, per_thread = 4, 500
    errors: list = []
    with Store(path, sync="always") as s:

        def work(user: int) -> None:
            try:
                for i in range(per_thread):
                    m = s.track_message_sent(user, "sms", "x", 0.01)
                    s.track_message_delivered(m.id)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(u + 1,)) for u in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        stats = s.get_communication_stats()
        assert stats.total_messages == n_threads * per_thread
        assert stats.delivered_count == n_threads * per_thread
        assert stats.total_cost == Decimal("0.01") * n_threads * per_thread


def test_gil_is_released_during_a_call(path: Path) -> None:
    # While the main thread waits in a store call, a spinning thread runs Python code. The
    # switch interval is far longer than the calls, so without a GIL release inside them the
    # spinner could not run between `before` and `after`.
    with Store(path, sync="always") as s:
        done = threading.Event()
        ticks = [0]

        def spin() -> None:
            while not done.is_set():
                ticks[0] += 1

        t = threading.Thread(target=spin)
        old = sys.getswitchinterval()
        sys.setswitchinterval(0.1)
        try:
            t.start()
            before = ticks[0]
            for _ in range(5):
                s.track_message_sent(1, "sms", "x", 0)
            after = ticks[0]
        finally:
            done.set()
            t.join()
            sys.setswitchinterval(old)
        assert after > before


def test_exports() -> None:
    for name in ("Store", "Message", "FinancialOutcome", "Stats", "View", "CommlogError",
                 "InvalidInput", "UnknownMessage", "Locked", "Conflict", "StorageError", "Unavailable"):
        assert hasattr(commlog, name), name
    assert Path(commlog.__file__).with_name("py.typed").exists()
    assert Path(commlog.__file__).with_name("_native.pyi").exists()


def test_corruption_is_a_storage_error_with_file_and_offset(path: Path) -> None:
    with Store(path, sync="never") as s:
        for _ in range(200):
            s.track_message_sent(1, "sms", "x", 0.01, sent_at=T0)
    segment = max((p for p in path.iterdir() if p.suffix == ".log"), key=lambda p: p.stat().st_size)
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    for opener in (Store, Store.open_read_only):
        with pytest.raises(StorageError) as e:
            opener(path)
        assert e.value.kind == "corruption"
        assert e.value.fields["file"] == str(segment)
        assert isinstance(e.value.fields["offset"], int) and e.value.fields["offset"] > 0
        assert e.value.fields["reason"]


def test_a_path_that_is_not_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(CommlogError) as e:
        Store(file)
    assert e.value.fields.get("field") or e.value.fields.get("path")
    with pytest.raises(CommlogError):
        Store.open_read_only(tmp_path / "missing")


def test_a_reader_refreshes_to_what_the_writer_appended_and_a_snapshot_loads_the_same(
    tmp_path: Path,
) -> None:
    writer = Store(tmp_path / "data", sync="never")
    reader = Store.open_read_only(tmp_path / "data")
    assert reader.refresh() == 0
    sent = [writer.track_message_sent(7, "push", "bill_due", "0.01") for _ in range(3)]
    writer.track_message_delivered(sent[0].id)
    writer.flush()
    assert reader.refresh() == 4
    assert [m.id for m in reader.get_user_communication_history(7)] == [m.id for m in reversed(sent)]
    assert reader.get_communication_stats(user_id=7).delivered_count == 1
    assert writer.refresh() == 0
    path = writer.snapshot()
    assert path is not None and Path(path).name == "snapshot-00000000000000000004"
    assert writer.snapshot() is None
    with pytest.raises(commlog.CommlogError) as raised:
        reader.snapshot()
    assert raised.value.kind == "read_only"
    writer.close()
    reopened = Store.open_read_only(tmp_path / "data")
    assert reopened.get_communication_stats(user_id=7) == reader.get_communication_stats(user_id=7)
