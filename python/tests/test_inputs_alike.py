"""Inputs are checked alike by the embedded ``Store`` and the ``Client``: money is exact or
refused (never rounded), whatever the caller's decimal context; bad input is ``InvalidInput``
naming the field, never a bare Python error; the client answers as the store does."""

from __future__ import annotations

import decimal
import enum
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from queue import Queue
from typing import Any, Callable, Iterator, Tuple

import pytest

from commlog.client import Client
from commlog.errors import CommlogError, InvalidInput, UnknownMessage

from conftest import native_built

if not native_built():
    pytest.skip("commlog._native is not built: no embedded store", allow_module_level=True)

from commlog._types import micros_to_dollars, to_micros  # noqa: E402
from commlog.store import Store  # noqa: E402

UTC = timezone.utc
# More significant digits than an f64 carries: the library's dollars would round it.
INEXACT = Decimal("12345678901.234567")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store", sync="never") as s:
        yield s


def outcome(call: Callable[[], Any]) -> Tuple[str, Any]:
    """What a call did: ``("OK", answer)`` or the error's class and field."""
    try:
        return ("OK", call())
    except CommlogError as error:
        return (type(error).__name__, error.fields.get("field"))
    except Exception as error:  # a bare Python error is itself the defect
        return (type(error).__name__, str(error))


# -- money ----------------------------------------------------------------------------------


def test_store_refuses_an_amount_its_dollars_would_round(store: Store) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    with pytest.raises(InvalidInput) as info:
        store.track_financial_outcome(1, "bill_paid_on_time", INEXACT)
    assert info.value.fields["field"] == "impact_amount"
    assert "significant digits" in str(info.value)
    with pytest.raises(InvalidInput) as info:
        store.track_message_sent(1, "sms", "t", INEXACT)
    assert info.value.fields["field"] == "cost"
    with pytest.raises(InvalidInput) as info:
        store.set_budget("sms", month, INEXACT)
    assert info.value.fields["field"] == "amount"
    assert store.get_communication_stats()["total_messages"] == 0
    assert store.get_cost_report(month=month)["budgets"] == []
    # The native module refuses it too (the library's dollars would round it), naming the field.
    with pytest.raises(InvalidInput) as info:
        store._native.track_financial_outcome(1, "x", 12_345_678_901_234_567)
    assert info.value.fields["field"] == "amount"
    with pytest.raises(InvalidInput) as info:
        store._native.track_message_sent(1, "sms", "t", 12_345_678_901_234_567)
    assert info.value.fields["field"] == "cost"
    # Large amounts an f64 carries exactly are stored exactly; set_budget answers what it stored.
    for amount in (Decimal("12345678901.23"), Decimal("999999999.999999"), Decimal("8999999999999.99")):
        assert store.track_financial_outcome(1, "x", amount).amount == amount
        assert store.track_message_sent(1, "sms", "t", amount).cost == amount
        answer = store.set_budget("all", month, amount)
        assert answer["amount"] == amount
        budget = store.get_cost_report(month=month)["budgets"][0]
        assert budget["budget"] == answer["amount"] and budget["budget_micros"] == answer["amount_micros"]


def test_client_refuses_an_amount_the_dollars_would_round(client: Client) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    for call, field in (
        (lambda: client.track_financial_outcome(1, "x", INEXACT), "impact_amount"),
        (lambda: client.track_message_sent(1, "sms", "t", INEXACT), "cost"),
        (lambda: client.set_budget("sms", month, INEXACT), "amount"),
    ):
        with pytest.raises(InvalidInput) as info:
            call()
        assert info.value.fields["field"] == field
    assert client.get_communication_stats()["total_messages"] == 0
    answer = client.set_budget("all", month, Decimal("12345678901.23"))
    assert answer["amount"] == Decimal("12345678901.23")
    assert client.get_cost_report(month=month)["budgets"][0]["budget"] == answer["amount"]


def test_client_names_the_argument_when_the_server_refuses_an_amount(short_tmp: Path) -> None:
    from fake_server import FakeServer

    def refusal(field: str) -> bytes:
        body = (
            f'{{"error":"invalid {field}: 12345678901234567 (more significant digits than dollars '
            'carry exactly: at most 15)","kind":"invalid_input"}'
        ).encode()
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    server = FakeServer(
        str(short_tmp / "fake.sock"),
        [refusal("cost_micros"), refusal("amount_micros"), refusal("amount_micros")],
    )
    try:
        c = Client(socket=server.path, retries=0)
        for call, field in (
            (lambda: c.track_message_sent(1, "sms", "t", 1), "cost"),
            (lambda: c.track_financial_outcome(1, "x", 1), "impact_amount"),
            (lambda: c.set_budget("sms", "2025-01", 1), "amount"),
        ):
            with pytest.raises(InvalidInput) as info:
                call()
            assert info.value.fields["field"] == field and info.value.fields["status"] == 400
        c.close()
    finally:
        server.close()


def test_money_does_not_depend_on_the_callers_decimal_context(store: Store) -> None:
    m = store.track_message_sent(1, "sms", "t", Decimal("12345.678901"))
    o = store.track_financial_outcome(1, "x", 98765.432101)
    with decimal.localcontext() as ctx:
        ctx.prec = 8
        assert micros_to_dollars(12_345_678_901) == Decimal("12345.678901")
        assert str(micros_to_dollars(290_000)) == "0.29"
        assert store.message(m.id).cost == Decimal("12345.678901")
        assert o.amount == Decimal("98765.432101")
        assert store.get_communication_stats()["total_cost"] == Decimal("12345.678901")
        assert to_micros(Decimal("12345.678901")) == 12_345_678_901
        assert to_micros("98765.4321015") == 98_765_432_102
        assert store.track_message_sent(1, "sms", "t", Decimal("12345.678901")).cost == Decimal("12345.678901")
        ctx.rounding = decimal.ROUND_DOWN
        ctx.traps[decimal.Inexact] = True
        assert to_micros(Decimal("0.0000005")) == 1
        assert to_micros(Decimal("-2.0000015")) == -2_000_002


# -- the client's connections ----------------------------------------------------------------


def test_close_reaches_a_thread_s_connection_reopened_after_an_earlier_close(client: Client) -> None:
    calls: "Queue[bool]" = Queue()
    made: "Queue[Any]" = Queue()

    def worker() -> None:  # a long-lived thread (a threaded gunicorn worker, a pool thread)
        while calls.get():
            client.health()
            made.put(client._local.conn)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        calls.put(True)
        first = made.get(timeout=10)
        client.close()
        assert first.sock is None
        calls.put(True)
        again = made.get(timeout=10)
        assert again.sock is not None
        client.close()
        assert again.sock is None, "close() left another thread's reopened connection open"
    finally:
        calls.put(False)
        thread.join()


# -- typing ----------------------------------------------------------------------------------


def test_mypy_sees_the_client_class(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    script = tmp_path / "uses_client.py"
    script.write_text(
        "from commlog import Client, Message\n"
        "client = Client(socket='/tmp/x.sock')\n"
        "def good() -> int:\n"
        "    return client.track_message_sent(1, 'sms', 't', 1).id\n"
        "def bad() -> Message:\n"
        "    return client.track_mesage_sent(1, 'sms', 't', 1)\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(script)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    out = run.stdout + run.stderr
    assert '"Client" has no attribute "track_mesage_sent"' in out, out
    assert "uses_client.py:4" not in out, out


# -- bad input is InvalidInput naming the field ----------------------------------------------


class Channel(str, enum.Enum):  # the common pre-3.11 "string enum" idiom
    SMS = "sms"


class MessageType(str, enum.Enum):
    LOW_BALANCE = "low_balance"


class Period(enum.Enum):
    WEEK = "week"


BAD_INPUTS = {
    "budget without a month": (lambda b: b.set_budget("sms", None, 1), "month"),
    "the last datetime, west of UTC": (
        lambda b: b.track_message_sent(
            1, "sms", "t", 1, sent_at=datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))
        ),
        "sent_at",
    ),
    "surrogate message type": (lambda b: b.track_message_sent(1, "sms", "\udc80", 1), "message_type"),
    "surrogate channel": (lambda b: b.track_message_sent(1, "\udc80", "t", 1), "channel"),
    "surrogate external id": (lambda b: b.track_message_sent(1, "sms", "t", 1, external_id="\udc80"), "external_id"),
    "surrogate ref": (lambda b: b.track_message_delivered("\udc80"), "external_id"),
    "surrogate message ref": (lambda b: b.message("ab\udc80"), "external_id"),
    "surrogate action": (lambda b: b.track_user_action(1, "\udc80"), "action_type"),
    "superscript user id": (lambda b: b.track_message_sent("²", "sms", "t", 1), "user_id"),
    "arabic-indic user id": (lambda b: b.get_user_communication_history("١"), "user_id"),
    "superscript outcome user": (lambda b: b.track_financial_outcome("²", "x", 1), "user_id"),
    "user -1": (lambda b: b.track_message_sent(-1, "sms", "t", 1), "user_id"),
    "user 2**63": (lambda b: b.track_message_sent(2**63, "sms", "t", 1), "user_id"),
    "user 2**64": (lambda b: b.get_user_communication_history(2**64), "user_id"),
    "message type of 100k characters": (lambda b: b.track_message_sent(1, "sms", "a" * 100_000, 1), "message_type"),
    "external id of 100k characters": (
        lambda b: b.track_message_sent(1, "sms", "t", 1, external_id="a" * 100_000),
        "external_id",
    ),
    "message of an external id of 100k characters": (lambda b: b.message("a" * 100_000), "external_id"),
    "stats of a type of 100k characters": (
        lambda b: b.get_communication_stats(message_type="a" * 100_000),
        "message_type",
    ),
    "action of 100k characters": (lambda b: b.track_user_action(1, "a" * 100_000), "action_type"),
    "limit None": (lambda b: b.get_user_communication_history(1, None), "limit"),
    "limit True": (lambda b: b.get_user_communication_history(1, True), "limit"),
    "limit 2.7": (lambda b: b.get_user_communication_history(1, 2.7), "limit"),
    "limit '3'": (lambda b: b.get_user_communication_history(1, "3"), "limit"),
    "limit -1": (lambda b: b.get_user_communication_history(1, -1), "limit"),
    "alert percent True": (lambda b: b.set_budget("sms", "2025-01", 1, alert_percent=True), "alert_percent"),
    "alert percent 50.0": (lambda b: b.set_budget("sms", "2025-01", 1, alert_percent=50.0), "alert_percent"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_invalid_input_naming_the_field_in_both(both: Tuple[Store, Client], case: str) -> None:
    store, client = both
    call, field = BAD_INPUTS[case]
    assert outcome(lambda: call(store)) == ("InvalidInput", field)
    assert outcome(lambda: call(client)) == ("InvalidInput", field)
    assert store.get_communication_stats()["total_messages"] == 0
    assert client.get_communication_stats()["total_messages"] == 0


def test_a_user_id_s_bound_is_the_library_s(store: Store) -> None:
    with pytest.raises(InvalidInput) as info:
        store.track_message_sent(-1, "sms", "t", 1)
    assert "9223372036854775807" in str(info.value) and "18446744073709551615" not in str(info.value)
    largest = store.track_message_sent(2**63 - 1, "sms", "t", 1)
    assert largest.user_id == 2**63 - 1
    assert store.track_message_sent(" 42 ", "sms", "t", 1).user_id == 42


# -- the client answers as the store ---------------------------------------------------------


def test_client_answers_as_the_store(both: Tuple[Store, Client]) -> None:
    store, client = both
    sent_at = datetime.now(UTC) - timedelta(minutes=5)
    for b in (store, client):
        b.track_message_sent(1, Channel.SMS, MessageType.LOW_BALANCE, 1, external_id="EXT1", sent_at=sent_at)
    cases = {
        "message(0)": lambda b: b.message(0),
        "delivered(0)": lambda b: b.track_message_delivered(0),
        "opened(0)": lambda b: b.track_message_opened(0),
        "history limit 0": lambda b: b.get_user_communication_history(1, 0),
        "history limit 0 of user 0": lambda b: b.get_user_communication_history(0, 0),
        "history limit 1": lambda b: b.get_user_communication_history(1, 1),
        "period 'Week'": lambda b: type(b.get_channel_effectiveness(period="Week")).__name__,
        "period enum": lambda b: type(b.get_channel_effectiveness(period=Period.WEEK)).__name__,
        "period 'fortnight'": lambda b: type(b.get_channel_effectiveness(period="fortnight")).__name__,
        "stats of a str enum channel": lambda b: b.get_communication_stats(channel=Channel.SMS)["total_messages"],
        "stats of a str enum type": lambda b: b.get_communication_stats(
            message_type=MessageType.LOW_BALANCE
        )["total_messages"],
        "cost report of a str enum channel": lambda b: b.get_cost_report(channel=Channel.SMS)["total"]["messages"],
        "the message sent with str enums": lambda b: (b.message("EXT1").channel, b.message("EXT1").message_type),
        "sent at a time without seconds": lambda b: b.track_message_sent(
            2, "sms", "x", 0, sent_at=(sent_at).strftime("%Y-%m-%dT%H:%M")
        ).sent_at,
        "sent at a time in spaces": lambda b: b.track_message_sent(
            3, "sms", "x", 0, sent_at=" " + sent_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + " "
        ).sent_at,
        "sent at a bad time": lambda b: b.track_message_sent(4, "sms", "x", 0, sent_at="yesterday"),
        "stats from a date in spaces": lambda b: b.get_communication_stats(start_date=" 2020-01-01 ")[
            "total_messages"
        ],
        "stats from the first datetime, east of UTC": lambda b: b.get_communication_stats(
            start_date=datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))
        )["total_messages"],
        "stats to the last datetime, west of UTC": lambda b: b.get_communication_stats(
            end_date=datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))
        )["total_messages"],
        "stats to a time past 9999 in UTC, as text": lambda b: b.get_communication_stats(
            end_date="9999-12-31T23:00:00-05:00"
        )["total_messages"],
        "sent at a time past 9999 in UTC, as text": lambda b: b.track_message_sent(
            5, "sms", "x", 0, sent_at="9999-12-31T23:00:00-05:00"
        ),
        "message by external id": lambda b: b.message_by_external_id("EXT1").id,
        "message by an unknown external id": lambda b: b.message_by_external_id("EXT2"),
        "message by a bad external id": lambda b: b.message_by_external_id(""),
        "external id of a message": lambda b: b.get_external_id(1),
        "external id of an unknown message": lambda b: b.get_external_id(99),
        "external id of an external id": lambda b: b.get_external_id("EXT1"),
    }
    for name, call in cases.items():
        assert outcome(lambda: call(store)) == outcome(lambda: call(client)), name
    # A time past 9999 once in UTC is read, not a bare OverflowError: a query bound answers,
    # a tracking time is refused naming its field.
    past = "9999-12-31T23:00:00-05:00"
    for b in (store, client):
        assert outcome(lambda: b.get_communication_stats(end_date=past))[0] == "OK"
        assert outcome(lambda: b.track_message_sent(6, "sms", "x", 0, sent_at=past)) == (
            "InvalidInput",
            "sent_at",
        )
    assert outcome(lambda: client.message(0)) == ("UnknownMessage", None)
    with pytest.raises(UnknownMessage) as info:
        client.track_message_delivered(0)
    assert info.value.fields["id"] == 0
    assert client.get_user_communication_history(1, 0) == []
    assert client.get_communication_stats(channel=Channel.SMS)["total_messages"] == 3
    assert client.message("EXT1").channel == "sms"
    assert (client.get_external_id(1), client.message_by_external_id("EXT2")) == ("EXT1", None)
