"""``commlog.client.Client`` against a real ``commlog-serve``."""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from commlog import client as client_module
from commlog._types import FinancialOutcome, Message, Stats, View
from commlog.client import Client
from commlog.errors import (
    CommlogError,
    Conflict,
    InvalidInput,
    StorageError,
    Unavailable,
    UnknownMessage,
)

from conftest import Server

UTC = timezone.utc


def recent(minutes: float = 0) -> datetime:
    """A naive UTC time ``minutes`` ago (whole milliseconds, as the store keeps them)."""
    t = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=minutes)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


# -- tracking -------------------------------------------------------------------------------


def test_track_message_sent_returns_the_message(client: Client) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    m = client.track_message_sent(123, "sms", "low_balance", 0.05)
    assert isinstance(m, Message)
    assert m.id == 1
    assert (m.user_id, m.channel, m.message_type, m.status) == (123, "sms", "low_balance", "sent")
    assert m.cost == Decimal("0.05")
    assert m.sent_at.tzinfo is not None and m.sent_at >= before
    assert m.delivered_at is None and m.opened_at is None and m.action_taken is None
    m2 = client.track_message_sent(124, "email", "bill_reminder", Decimal("0.001"))
    assert m2.id == 2 and m2.cost == Decimal("0.001")


def test_money_is_exact(client: Client) -> None:
    for i, cost in enumerate([0.1, Decimal("0.000001"), "0.07", 3, Decimal("12.345678")]):
        m = client.track_message_sent(1, "push", "t", cost)
        assert m.cost == Decimal(str(cost)), (i, cost)
    stats = client.get_communication_stats()
    assert stats["total_cost"] == Decimal("0.1") + Decimal("0.000001") + Decimal("0.07") + 3 + Decimal("12.345678")
    assert stats["total_cost_micros"] == 15_515_679


def test_times_naive_is_utc_and_aware_is_converted(client: Client) -> None:
    sent = recent(60)
    m = client.track_message_sent(7, "email", "promo", 0, sent_at=sent)
    assert m.sent_at == sent.replace(tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    delivered = (sent + timedelta(minutes=1)).replace(tzinfo=UTC).astimezone(plus_two)
    m = client.track_message_delivered(m.id, delivered)
    assert m.delivered_at == delivered and m.delivered_at.utcoffset() == timedelta(0)
    m = client.track_message_opened(m.id, sent + timedelta(minutes=2))
    assert m.opened_at == (sent + timedelta(minutes=2)).replace(tzinfo=UTC)
    m = client.track_user_action(m.id, "clicked_link", sent + timedelta(minutes=3))
    assert m.clicked_at == (sent + timedelta(minutes=3)).replace(tzinfo=UTC)
    assert m.action_taken == "clicked_link" and m.status == "clicked"


def test_follow_ups_by_id(client: Client) -> None:
    m = client.track_message_sent(5, "sms", "low_balance", 0.05)
    d = client.track_message_delivered(m.id)
    assert d.status == "delivered" and d.delivered_at is not None
    o = client.track_message_opened(m.id)
    assert o.status == "opened" and o.opened_at is not None
    a = client.track_user_action(m.id, "viewed_forecast")
    assert a.action_taken == "viewed_forecast"
    f = client.track_message_failed(client.track_message_sent(5, "sms", "x", 0).id, "undelivered")
    assert f.status == "failed" and f.failure_reason == "undelivered" and f.failed_at is not None
    assert client.message(m.id) == a


def test_follow_ups_by_external_id(client: Client) -> None:
    ext = "SM/abc?#%+&="  # characters that need quoting in a path
    m = client.track_message_sent(9, "sms", "low_balance", 0.05, external_id=ext)
    assert client.message(ext) == m
    assert client.track_message_delivered(ext).status == "delivered"
    assert client.track_message_opened(ext).status == "opened"
    assert client.track_user_action(ext, "clicked_link").status == "clicked"
    assert client.track_message_failed(ext, "bounced").failure_reason == "bounced"
    assert client.message(m.id).id == m.id


def test_external_id_is_idempotent_and_conflicts(client: Client) -> None:
    a = client.track_message_sent(1, "sms", "t", 0.05, external_id="SM1")
    b = client.track_message_sent(1, "sms", "t", 0.05, external_id="SM1")
    assert a == b
    with pytest.raises(Conflict) as info:
        client.track_message_sent(2, "sms", "t", 0.05, external_id="SM1")
    assert info.value.kind == "conflict" and info.value.fields["status"] == 409
    assert client.get_communication_stats()["total_messages"] == 1


def test_financial_outcome_and_budget(client: Client) -> None:
    out = client.track_financial_outcome(123, "bill_paid_on_time", 25.00)
    assert isinstance(out, FinancialOutcome)
    assert (out.user_id, out.outcome, out.amount) == (123, "bill_paid_on_time", Decimal("25"))
    at = recent(5)
    out = client.track_financial_outcome(123, "overdraft_avoided", Decimal("-1.5"), at=at)
    assert out.at == at.replace(tzinfo=UTC) and out.amount == Decimal("-1.5")
    month = datetime.now(UTC).strftime("%Y-%m")
    budget = client.set_budget("sms", month, 20, alert_percent=80)
    assert budget == {
        "scope": "sms",
        "month": month,
        "amount_micros": 20_000_000,
        "amount": Decimal("20"),
        "alert_percent": 80,
    }
    assert client.set_budget("all", date.today(), "100.5")["alert_percent"] == 90
    client.track_message_sent(123, "sms", "low_balance", 0.05)
    report = client.get_cost_report(month=month)
    budgets = {b["scope"]: b for b in report["budgets"]}
    assert budgets["sms"]["budget"] == Decimal("20") and budgets["sms"]["spent"] == Decimal("0.05")
    assert budgets["all"]["budget"] == Decimal("100.5")
    impact = client.get_financial_impact(user_id=123)
    assert impact["outcomes"]["count"] == 2
    assert impact["outcomes"]["amount"] == Decimal("23.5")


# -- queries --------------------------------------------------------------------------------


def test_history_newest_first_and_limit(client: Client) -> None:
    base = recent(30)
    ids = [
        client.track_message_sent(42, "email", "t", 0, sent_at=base + timedelta(seconds=i)).id
        for i in range(5)
    ]
    client.track_message_sent(43, "email", "t", 0)
    history = client.get_user_communication_history(42)
    assert [m.id for m in history] == ids[::-1]
    assert [m.id for m in client.get_user_communication_history(42, limit=2)] == ids[:2:-1][:2]
    assert client.get_user_communication_history(999) == []


def test_stats_filters(client: Client) -> None:
    t0 = recent(120)
    a = client.track_message_sent(1, "sms", "low_balance", 0.05, sent_at=t0)
    client.track_message_delivered(a.id, t0 + timedelta(seconds=5))
    client.track_message_opened(a.id, t0 + timedelta(seconds=10))
    client.track_message_sent(1, "email", "bill_reminder", 0.001, sent_at=t0 + timedelta(minutes=60))
    client.track_message_sent(2, "sms", "low_balance", 0.05, sent_at=t0 + timedelta(minutes=90))

    stats = client.get_communication_stats()
    assert isinstance(stats, Stats)
    assert stats["total_messages"] == 3
    assert stats.total_cost == Decimal("0.101")
    assert stats["delivery_rate"] == pytest.approx(100 / 3)
    assert stats["open_rate"] == 100.0  # opened / delivered
    assert client.get_communication_stats(user_id=1)["total_messages"] == 2
    assert client.get_communication_stats(channel="sms")["total_messages"] == 2
    assert client.get_communication_stats(message_type="bill_reminder")["total_messages"] == 1
    assert client.get_communication_stats(start_date=t0 + timedelta(minutes=30))["total_messages"] == 2
    assert client.get_communication_stats(end_date=t0 + timedelta(minutes=30))["total_messages"] == 1
    only = client.get_communication_stats(user_id=1, channel="sms", start_date=t0, end_date=t0 + timedelta(minutes=1))
    assert only["total_messages"] == 1 and only["delivery_rate"] == 100.0
    aware = (t0 + timedelta(minutes=30)).replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    assert client.get_communication_stats(start_date=aware)["total_messages"] == 2
    today = datetime.now(UTC).date()
    assert client.get_communication_stats(start_date=today - timedelta(days=1), end_date=today)["total_messages"] == 3


def test_views(client: Client) -> None:
    m = client.track_message_sent(11, "sms", "low_balance", 0.05)
    client.track_message_delivered(m.id)
    client.track_message_opened(m.id)
    client.track_user_action(m.id, "clicked_link")
    client.track_financial_outcome(11, "bill_paid_on_time", 25)
    client.track_message_sent(11, "email", "bill_reminder", 0.001)

    engagement = client.get_user_engagement(11)
    assert isinstance(engagement, View)
    assert engagement["user_id"] == 11 and engagement["sent"] == 2 and engagement["engaged"] == 1
    assert {c["channel"] for c in engagement["by_channel"]} == {"sms", "email"}
    assert client.get_user_engagement(11, channel="sms")["sent"] == 1
    assert client.get_user_engagement(11, message_type="bill_reminder")["sent"] == 1

    channels = client.get_channel_effectiveness()
    by_channel = {c["channel"]: c for c in channels["channels"]}
    assert by_channel["sms"]["total_cost"] == Decimal("0.05")
    assert by_channel["sms"]["attributed_impact"] == Decimal("25")
    winners = {(w["message_type"], w["channel"]) for w in channels["winners"]}
    assert ("low_balance", "sms") in winners
    assert client.get_channel_effectiveness(period="day")["periods"]
    assert client.get_channel_effectiveness(user_id=999)["channels"] == []

    costs = client.get_cost_report()
    assert costs["total"]["messages"] == 2 and costs["total"]["spent"] == Decimal("0.051")
    assert costs["by_channel"]["email"]["spent"] == Decimal("0.001")
    assert client.get_cost_report(channel="sms")["total"]["spent"] == Decimal("0.05")

    impact = client.get_financial_impact()
    assert impact["attributed"]["count"] == 1 and impact["attributed"]["amount"] == Decimal("25")
    assert client.get_financial_impact(channel="email")["attributed"]["count"] == 0

    info = client.info()
    assert info["messages"] == 2 and info["outcomes"] == 1 and info["sync"] == "always"
    assert client.health() is True


# -- errors ---------------------------------------------------------------------------------


def test_unknown_message(client: Client) -> None:
    with pytest.raises(UnknownMessage) as info:
        client.track_message_delivered(99)
    assert info.value.kind == "unknown_message"
    assert info.value.fields == {"status": 404, "id": 99}
    with pytest.raises(UnknownMessage) as info:
        client.track_message_opened("no-such-sid")
    assert info.value.fields["external_id"] == "no-such-sid"
    with pytest.raises(UnknownMessage):
        client.message(12345)
    with pytest.raises(UnknownMessage):
        client.message("nope")
    with pytest.raises(UnknownMessage):
        client.track_user_action(7, "clicked")
    with pytest.raises(UnknownMessage):
        client.track_message_failed(7, "x")
    # UnknownMessage is also a KeyError, as a missing key of a mapping.
    with pytest.raises(KeyError):
        client.message(3)


def test_invalid_input_from_the_server(client: Client) -> None:
    with pytest.raises(InvalidInput) as info:
        client.track_message_sent(0, "sms", "t", 0.05)
    assert info.value.kind == "invalid_input"
    assert info.value.fields["status"] == 400 and info.value.fields["field"] == "user_id"
    with pytest.raises(InvalidInput):
        client.track_message_sent(1, "pigeon", "t", 0.05)
    with pytest.raises(InvalidInput):
        client.track_message_sent(1, "sms", "t", -1)
    with pytest.raises(InvalidInput):
        client.track_message_sent(1, "sms", "t", 0.05, sent_at=datetime.now(UTC) + timedelta(days=3))
    m = client.track_message_sent(1, "sms", "t", 0.05)
    with pytest.raises(InvalidInput) as info:
        client.track_message_delivered(m.id, m.sent_at - timedelta(hours=1))
    assert info.value.fields["field"] == "at"
    with pytest.raises(InvalidInput):
        client.get_communication_stats(channel="pigeon")
    with pytest.raises(InvalidInput):
        client.get_communication_stats(start_date="yesterday")
    with pytest.raises(InvalidInput):
        client.get_channel_effectiveness(period="fortnight")
    with pytest.raises(InvalidInput):
        client.set_budget("all", "2025-13", 10)
    # InvalidInput is also a ValueError.
    with pytest.raises(ValueError):
        client.track_financial_outcome(0, "x", 1)
    # Nothing was appended by the refused calls.
    assert client.get_communication_stats()["total_messages"] == 1


def test_invalid_input_refused_before_sending(client: Client) -> None:
    for bad in (True, -3, 1.5, None, ""):
        with pytest.raises(InvalidInput):
            client.track_message_delivered(bad)  # type: ignore[arg-type]
    # Id 0 names no message: UnknownMessage, as the embedded store answers.
    with pytest.raises(UnknownMessage):
        client.track_message_delivered(0)
    with pytest.raises(InvalidInput):
        client.track_message_sent("abc", "sms", "t", 0.05)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        client.track_message_sent(1, "sms", "t", float("nan"))
    with pytest.raises(InvalidInput):
        client.track_message_sent(1, "sms", "t", "a dollar")
    with pytest.raises(InvalidInput):
        client.track_message_opened(1, open_time=12345)  # type: ignore[arg-type]
    assert client.get_communication_stats()["total_messages"] == 0


def test_server_down_is_unavailable(short_tmp: Path) -> None:
    c = Client(socket=str(short_tmp / "nothing.sock"), retries=2, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        c.track_message_sent(1, "sms", "t", 0.05)
    assert info.value.kind == "unavailable"
    assert info.value.fields["outcome"] == "not_applied" and info.value.fields["attempts"] == 3
    assert time.monotonic() - started < 5
    with pytest.raises(Unavailable):
        c.get_communication_stats()
    assert c.health() is False
    tcp = Client(url="http://127.0.0.1:9", retries=1, backoff=0.01)
    with pytest.raises(Unavailable):
        tcp.track_message_delivered(1)
    # Unavailable is a CommlogError, as every error of the package.
    assert isinstance(info.value, CommlogError)


def test_server_stopped_then_restarted(server: Server) -> None:
    c = Client(socket=server.socket, retries=2, backoff=0.01)
    m = c.track_message_sent(1, "sms", "t", 0.05)
    assert server.stop() == 0
    with pytest.raises(Unavailable):
        c.track_message_delivered(m.id)
    server.start()
    # The connection the client kept was closed by the old server: a new one is made.
    assert c.track_message_delivered(m.id).status == "delivered"
    assert c.get_communication_stats()["total_messages"] == 1


def test_keep_alive_survives_a_restart_without_errors(server: Server) -> None:
    c = Client(socket=server.socket)
    c.track_message_sent(1, "sms", "t", 0.05)
    server.stop()
    server.start()
    # The idle connection's end is noticed before the request is written.
    assert c.track_message_sent(1, "sms", "t", 0.05).id == 2


# -- retries --------------------------------------------------------------------------------


def test_the_same_idempotency_key_twice_creates_one_message(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    monkeypatch.setattr(client_module.uuid, "uuid4", lambda: key)
    a = client.track_message_sent(1, "sms", "t", 0.05)
    b = client.track_message_sent(1, "sms", "t", 0.05)
    assert a == b
    assert client.get_communication_stats()["total_messages"] == 1
    assert client.message(str(key)) == a


def lose_answers(monkeypatch: pytest.MonkeyPatch, client: Client, times: int) -> list:
    """The first ``times`` requests reach the server and are applied, but their answers are
    lost as if the connection broke."""
    real = Client._once
    calls: list = []

    def once(self, method, path, body, headers):  # type: ignore[no-untyped-def]
        calls.append((method, path, dict(headers)))
        answer = real(self, method, path, body, headers)
        if len(calls) <= times:
            self._discard()
            raise client_module._Written(ConnectionResetError("reset by peer")) from None
        return answer

    monkeypatch.setattr(Client, "_once", once)
    return calls


def test_a_retried_send_does_not_duplicate(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    client.backoff = 0.001
    calls = lose_answers(monkeypatch, client, 2)
    m = client.track_message_sent(1, "sms", "t", 0.05)
    assert len(calls) == 3
    keys = {headers["Idempotency-Key"] for _, _, headers in calls}
    assert len(keys) == 1
    monkeypatch.undo()
    assert client.get_communication_stats()["total_messages"] == 1
    assert client.message(m.id) == m


def test_a_retried_send_with_external_id_does_not_duplicate(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    client.backoff = 0.001
    calls = lose_answers(monkeypatch, client, 1)
    m = client.track_message_sent(1, "sms", "t", 0.05, external_id="SM42")
    assert len(calls) == 2 and "Idempotency-Key" not in calls[0][2]
    monkeypatch.undo()
    assert client.get_communication_stats()["total_messages"] == 1
    assert client.message("SM42") == m


def test_a_follow_up_is_not_retried_once_written(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    m = client.track_message_sent(1, "sms", "t", 0.05)
    calls = lose_answers(monkeypatch, client, 1)
    with pytest.raises(Unavailable) as info:
        client.track_user_action(m.id, "viewed_forecast")
    assert info.value.fields["outcome"] == "unknown"
    assert len(calls) == 1
    monkeypatch.undo()
    assert client.message(m.id).action_taken == "viewed_forecast"


def test_a_follow_up_is_retried_when_not_written(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Client(socket=server.socket, backoff=0.001)
    m = c.track_message_sent(1, "sms", "t", 0.05)
    real = Client._once
    calls: list = []

    def once(self, method, path, body, headers):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) <= 2:
            raise client_module._NotWritten(ConnectionRefusedError("refused"))
        return real(self, method, path, body, headers)

    monkeypatch.setattr(Client, "_once", once)
    assert c.track_message_delivered(m.id).status == "delivered"
    assert len(calls) == 3


# -- connections ----------------------------------------------------------------------------


def test_one_connection_per_thread_is_kept_alive(client: Client) -> None:
    client.track_message_sent(1, "sms", "t", 0.05)
    first = client._connection()
    sock = first.sock
    for _ in range(20):
        client.get_communication_stats()
    assert client._connection() is first and first.sock is sock
    errors: list = []
    ids: list = []

    def work() -> None:
        try:
            for _ in range(50):
                ids.append(client.track_message_sent(2, "email", "t", 0.001).id)
            assert client._connection() is not first
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 400
    assert client.get_communication_stats()["total_messages"] == 401
    client.close()
    assert client.get_communication_stats()["total_messages"] == 401


def test_close_from_another_thread_mid_call_raises_unavailable_or_answers(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread whose connection another thread's close() takes away between writing its
    # request and reading the answer: the call is Unavailable (outcome unknown), never an
    # assertion or attribute error.
    sent = client.track_message_sent(1, "sms", "t", 0.05)
    conn = client._connection()
    real_answer = type(conn).answer

    def closed_first(self: Any) -> Any:
        client.close()
        return real_answer(self)

    monkeypatch.setattr(type(conn), "answer", closed_first)
    with pytest.raises(Unavailable) as e:
        client.track_message_delivered(sent.id)
    assert e.value.fields.get("outcome") == "unknown"
    monkeypatch.undo()
    assert client.get_communication_stats()["total_messages"] >= 0

    errors: list = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            try:
                client.get_user_communication_history(1, 50)
            except Unavailable:
                pass
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        client.close()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_environment_configuration(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COMMLOG_SOCKET", "COMMLOG_URL", "COMMLOG_DIR", "COMMLOG_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError):
        Client()
    monkeypatch.setenv("COMMLOG_DIR", str(server.dir))
    assert Client().track_message_sent(1, "sms", "t", 0).id == 1
    monkeypatch.setenv("COMMLOG_SOCKET", server.socket)
    assert Client().track_message_sent(1, "sms", "t", 0).id == 2
    with pytest.raises(ValueError):
        Client(socket=server.socket, url="http://127.0.0.1:1")
    with pytest.raises(ValueError):
        Client(url="ftp://example.com")
    with pytest.raises(ValueError, match="control characters"):
        Client(url="http://127.0.0.1:8080/a prefix")
    with pytest.raises(ValueError, match="one line"):
        Client(url="http://127.0.0.1:8080", token="a\r\nX-Injected: 1")


def test_tcp_with_token(short_tmp: Path) -> None:
    token = "a-token-for-the-tests"
    (short_tmp / "token").write_text(token + "\n")
    srv = Server(short_tmp, ["--listen", "127.0.0.1:0", "--token-file", str(short_tmp / "token")]).start()
    try:
        match = None
        deadline = time.monotonic() + 10
        while match is None and time.monotonic() < deadline:
            match = re.search(r"listening on (http://[0-9.:]+)", srv.log.read_text())
            time.sleep(0.01)
        assert match, srv.log.read_text()
        url = match.group(1)
        c = Client(url=url, token=token)
        m = c.track_message_sent(1, "sms", "t", 0.05)
        assert c.track_message_delivered(m.id).status == "delivered"
        assert c.get_communication_stats()["total_messages"] == 1
        with pytest.raises(CommlogError) as info:
            Client(url=url, token="wrong").get_communication_stats()
        assert info.value.kind == "unauthorized" and info.value.fields["status"] == 401
        assert token not in str(info.value)
        with pytest.raises(CommlogError):
            Client(url=url).track_message_sent(1, "sms", "t", 0.05)
        # The Unix socket needs no token.
        assert Client(socket=srv.socket).get_communication_stats()["total_messages"] == 1
    finally:
        assert srv.stop() == 0


def test_storage_errors_map_to_storage_error() -> None:
    error = client_module._error(503, b'{"error":"disk full","kind":"io"}', {})
    assert isinstance(error, StorageError) and error.fields == {"status": 503}
    error = client_module._error(502, b"<html>bad gateway</html>", {})
    assert isinstance(error, Unavailable)
    error = client_module._error(418, b"", {})
    assert type(error) is CommlogError and error.fields["status"] == 418


def test_a_thread_s_connection_closes_with_its_thread(client: Client) -> None:
    import gc

    sockets: list = []

    def work() -> None:
        client.get_communication_stats()
        sockets.append(client._connection().sock)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for t in threads:
        t.start()
        t.join()
    gc.collect()
    assert all(s is None or s.fileno() == -1 for s in sockets)
    assert len(client._all.get(__import__("os").getpid(), ())) <= 1


def test_stopping_is_retried(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 ``stopping`` means the call was not applied: it is tried again."""
    client.backoff = 0.001
    real = Client._once
    calls: list = []

    def once(self, method, path, body, headers):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) == 1:
            return 503, b'{"error":"the server is stopping","kind":"stopping"}'
        return real(self, method, path, body, headers)

    monkeypatch.setattr(Client, "_once", once)
    m = client.track_message_sent(1, "sms", "t", 0.05)
    assert client.track_message_delivered(m.id).status == "delivered"
    assert len(calls) == 3
    monkeypatch.setattr(
        Client, "_once", lambda *a: (503, b'{"error":"the server is stopping","kind":"stopping"}')
    )
    with pytest.raises(StorageError) as info:
        client.get_communication_stats()
    assert info.value.kind == "stopping" and info.value.fields["status"] == 503


def test_a_server_that_does_not_answer_times_out(short_tmp: Path) -> None:
    import socket

    path = str(short_tmp / "mute.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    try:
        c = Client(socket=path, timeout=0.2, retries=3)
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            c.track_message_delivered(1)
        assert info.value.fields["outcome"] == "unknown"
        with pytest.raises(Unavailable):
            c.track_message_sent(1, "sms", "t", 0.05)
        # A timeout is not retried: each call waited once.
        assert time.monotonic() - started < 1.5
    finally:
        listener.close()


# -- the transport, against a fake server answering canned bytes ---------------------------

MESSAGE_JSON = (
    b'{"id":7,"user_id":1,"channel":"sms","message_type":"t","status":"sent",'
    b'"cost_micros":50000,"sent_at":"2026-01-02T03:04:05.000Z"}'
)


def ok(body: bytes, *headers: bytes) -> bytes:
    """A 200 answer carrying ``body`` with ``Content-Length`` (unless ``headers`` say how)."""
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", *headers]
    if not headers:
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.fixture
def fake(short_tmp: Path):  # type: ignore[no-untyped-def]
    from fake_server import FakeServer

    servers: list = []

    def start(*answers):  # type: ignore[no-untyped-def]
        servers.append(FakeServer(str(short_tmp / f"fake{len(servers)}.sock"), list(answers)))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_a_chunked_answer_is_decoded_and_the_connection_kept(fake) -> None:  # type: ignore[no-untyped-def]
    chunked = ok(
        b'5;ext=1\r\n{"ver\r\n'
        b'9\r\nsion":"1"\r\n'
        b"1\r\n}\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n",
        b"Transfer-Encoding: chunked",
    )
    server = fake(chunked, ok(b'{"status":"ok"}'))
    c = Client(socket=server.path, retries=0)
    assert c.info() == {"version": "1"}
    assert c.health() is True
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"GET /v1/info HTTP/1.1\r\n") and b"\r\nHost: localhost\r\n" in first


def test_a_connection_close_answer_is_read_to_its_end(fake) -> None:  # type: ignore[no-untyped-def]
    server = fake(
        ok(b'{"version":"2"}', b"Connection: close"),
        ok(MESSAGE_JSON, b"Connection: close", b"Content-Length: %d" % len(MESSAGE_JSON)),
        ok(b'{"status":"ok"}'),
    )
    c = Client(socket=server.path, retries=0)
    assert c.info() == {"version": "2"}
    m = c.track_message_sent(1, "sms", "t", 0.05)
    assert m.id == 7 and m.cost == Decimal("0.05")
    assert c.health() is True
    # Each Connection: close answer ended its connection: the next call made a new one.
    assert server.connections == 3
    body = server.requests[1].partition(b"\r\n\r\n")[2]
    assert b"\r\nContent-Length: %d\r\n" % len(body) in server.requests[1]


def test_a_server_that_closes_after_reading_the_request(fake) -> None:  # type: ignore[no-untyped-def]
    server = fake(None)
    c = Client(socket=server.path, backoff=0.001)
    with pytest.raises(Unavailable) as info:
        c.track_message_delivered(7)
    assert info.value.fields["outcome"] == "unknown" and info.value.fields["attempts"] == 1
    assert "closed the connection" in str(info.value)
    assert len(server.requests) == 1
    # A send carries an idempotency key: it is sent again, with the same key.
    server = fake(None, ok(MESSAGE_JSON))
    c = Client(socket=server.path, backoff=0.001)
    assert c.track_message_sent(1, "sms", "t", 0.05).id == 7
    keys = [re.search(rb"\r\nIdempotency-Key: ([^\r]+)\r\n", r).group(1) for r in server.requests]  # type: ignore[union-attr]
    assert len(keys) == 2 and keys[0] == keys[1]


@pytest.mark.parametrize(
    "answer, said",
    [
        (b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\n{}", "malformed status line"),
        (b"SPDY/3 200 OK\r\nContent-Length: 2\r\n\r\n{}", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 2\r\n\r\n{}", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}", "malformed Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", "not followed by CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk", "unexpected bytes"),
        (b"HTTP/1.1 200 OK\r\n\r\n{}", "without Content-Length"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", "longer than 64 KiB"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\n{}", "closed the connection"),
    ],
)
def test_a_malformed_answer_is_a_clear_error(fake, answer: bytes, said: str) -> None:  # type: ignore[no-untyped-def]
    server = fake(answer, ok(b'{"status":"ok"}'))
    c = Client(socket=server.path, retries=0, timeout=5)
    with pytest.raises(Unavailable) as info:
        c.track_message_opened(7)
    assert said in str(info.value)
    assert info.value.fields["outcome"] == "unknown"
    # The connection was discarded: the next call works on a new one.
    assert c.health() is True
