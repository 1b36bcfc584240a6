"""``commlog.compat``: the original module's seven functions, which never raise."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest

from commlog import compat
from commlog._types import FinancialOutcome, Message

from conftest import Server, native_built

ENV = ("COMMLOG_SOCKET", "COMMLOG_URL", "COMMLOG_TOKEN", "COMMLOG_DIR", "COMMLOG_SYNC")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    compat.reset()
    yield
    compat.reset()


@pytest.fixture
def on_server(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("COMMLOG_SOCKET", server.socket)
    return server


def errors(caplog: pytest.LogCaptureFixture) -> list:
    return [r for r in caplog.records if r.name == "commlog.compat" and r.levelno >= logging.ERROR]


def test_the_seven_functions(on_server: Server, caplog: pytest.LogCaptureFixture) -> None:
    m = compat.track_message_sent(123, "sms", "low_balance", 0.05)
    assert isinstance(m, Message) and m.id == 1 and m.cost == Decimal("0.05")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert compat.track_message_delivered(m.id).status == "delivered"
    assert compat.track_message_opened(m.id, now).opened_at is not None
    assert compat.track_user_action(m.id, "clicked_link", timestamp=now).action_taken == "clicked_link"
    out = compat.track_financial_outcome(123, "bill_paid_on_time", 25.0)
    assert isinstance(out, FinancialOutcome) and out.amount == Decimal("25")
    m2 = compat.track_message_sent(123, "email", "bill_reminder", 0.001)
    assert compat.track_message_delivered(m2.id, delivery_time=now).delivered_at is not None
    history = compat.get_user_communication_history(123)
    assert [h.id for h in history] == [2, 1]
    assert len(compat.get_user_communication_history(123, limit=1)) == 1
    stats = compat.get_communication_stats()
    assert stats["total_messages"] == 2
    assert stats["delivery_rate"] == 100.0
    assert stats["open_rate"] == 50.0
    assert stats["total_cost"] == Decimal("0.051")
    only = compat.get_communication_stats(
        user_id=123, message_type="low_balance", channel="sms",
        start_date=now - timedelta(hours=1), end_date=now + timedelta(hours=1),
    )
    assert only["total_messages"] == 1
    assert errors(caplog) == []


def test_bad_input_returns_none_and_logs(on_server: Server, caplog: pytest.LogCaptureFixture) -> None:
    calls = [
        lambda: compat.track_message_sent(0, "sms", "t", 0.05),
        lambda: compat.track_message_sent(1, "pigeon", "t", 0.05),
        lambda: compat.track_message_sent(1, "sms", "t", -5),
        lambda: compat.track_message_sent("abc", "sms", "t", 0.05),
        lambda: compat.track_message_sent(1, "sms", "t", "free"),
        lambda: compat.track_message_sent(None, None, None, None),
        lambda: compat.track_message_delivered(object()),
        lambda: compat.track_message_opened(1, open_time="not a time"),
        lambda: compat.track_user_action(None, "clicked"),
        lambda: compat.track_financial_outcome(0, "x", 1),
        lambda: compat.track_financial_outcome(1, "x", float("inf")),
        lambda: compat.get_user_communication_history("nobody"),
        lambda: compat.get_communication_stats(channel="pigeon"),
        lambda: compat.get_communication_stats(start_date="last tuesday"),
    ]
    for i, call in enumerate(calls):
        caplog.clear()
        assert call() is None, i
        assert len(errors(caplog)) == 1, i
    assert compat.get_communication_stats()["total_messages"] == 0


def test_unknown_message_returns_none_and_logs(on_server: Server, caplog: pytest.LogCaptureFixture) -> None:
    for call in (
        lambda: compat.track_message_delivered(42),
        lambda: compat.track_message_opened(42),
        lambda: compat.track_user_action(42, "clicked_link"),
        lambda: compat.track_message_delivered("SMunknown"),
    ):
        caplog.clear()
        assert call() is None
        [record] = errors(caplog)
        assert "unknown" in record.getMessage()


def test_server_down_returns_none_and_logs(on_server: Server, caplog: pytest.LogCaptureFixture) -> None:
    m = compat.track_message_sent(1, "sms", "t", 0.05)
    assert m is not None
    backend = compat._get_backend()
    backend.retries, backend.backoff = 1, 0.01
    on_server.stop()
    calls = [
        lambda: compat.track_message_sent(1, "sms", "t", 0.05),
        lambda: compat.track_message_delivered(m.id),
        lambda: compat.track_message_opened(m.id),
        lambda: compat.track_user_action(m.id, "clicked"),
        lambda: compat.track_financial_outcome(1, "x", 1),
        lambda: compat.get_user_communication_history(1),
        lambda: compat.get_communication_stats(),
    ]
    for call in calls:
        caplog.clear()
        assert call() is None
        [record] = errors(caplog)
        assert "unavailable" in record.getMessage()
    # Back up: the same backend reconnects.
    on_server.start()
    assert compat.track_message_delivered(m.id).status == "delivered"


def test_no_configuration_returns_none_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    assert compat.track_message_sent(1, "sms", "t", 0.05) is None
    assert "COMMLOG_SOCKET" in errors(caplog)[0].getMessage()
    assert compat.get_communication_stats() is None


def test_unreachable_url_returns_none(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("COMMLOG_URL", "http://127.0.0.1:9")
    backend = compat._get_backend()
    backend.retries, backend.backoff = 0, 0.0
    assert compat.track_message_sent(1, "sms", "t", 0.05) is None
    assert len(errors(caplog)) == 1
    monkeypatch.setenv("COMMLOG_URL", "not a url")
    compat.reset()
    assert compat.get_communication_stats() is None


def test_unexpected_exceptions_are_logged_with_traceback(
    on_server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = compat._get_backend()

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(backend, "get_communication_stats", boom)
    assert compat.get_communication_stats() is None
    [record] = errors(caplog)
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])


def test_the_backend_is_made_again_in_a_forked_child(on_server: Server) -> None:
    assert compat.track_message_sent(1, "sms", "t", 0.05) is not None
    parent_backend = compat._get_backend()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            m = compat.track_message_sent(2, "sms", "t", 0.05)
            if m is not None and m.id == 2 and compat._get_backend() is not parent_backend:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert compat.get_communication_stats()["total_messages"] == 2


def test_embedded_store_from_commlog_dir(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("COMMLOG_DIR", str(short_tmp / "store"))
    if not native_built():
        # Without the native module: logged, never raised.
        assert compat.track_message_sent(1, "sms", "t", 0.05) is None
        assert "embedded store cannot be imported" in errors(caplog)[0].getMessage()
        pytest.skip("commlog._native is not built: the embedded store is not available")
    m = compat.track_message_sent(1, "sms", "t", 0.05)
    assert m is not None and m.id == 1
    assert compat.track_message_delivered(m.id).status == "delivered"
    assert compat.track_financial_outcome(1, "bill_paid_on_time", 10) is not None
    assert compat.get_communication_stats()["total_messages"] == 1
    assert compat.track_message_opened(99) is None
    assert errors(caplog)
