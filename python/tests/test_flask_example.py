"""The Flask example (``examples/flask_app/app.py``), backed by a real server through
``commlog.compat``: every route, then the statistics."""

from __future__ import annotations

import importlib.util
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

pytest.importorskip("flask")

from commlog import compat  # noqa: E402
from commlog.client import Client  # noqa: E402

from conftest import PYTHON_DIR, Server  # noqa: E402

APP = PYTHON_DIR / "examples" / "flask_app" / "app.py"


@pytest.fixture
def example(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    for name in ("COMMLOG_URL", "COMMLOG_DIR", "COMMLOG_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COMMLOG_SOCKET", server.socket)
    compat.reset()
    spec = importlib.util.spec_from_file_location("commlog_flask_example", APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.app.config["TESTING"] = True
    try:
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        compat.reset()


def test_every_route_then_the_stats(example: ModuleType, server: Server, capsys: pytest.CaptureFixture) -> None:
    http = example.app.test_client()
    check = Client(socket=server.socket)

    # The background task sends an SMS through the (stub) provider and tracks it.
    sms_id = example.send_low_balance_sms(123)
    assert sms_id == 1
    assert example.sms_provider.sent[-1]["to"].endswith("123")
    sms = check.message(sms_id)
    assert (sms.user_id, sms.channel, sms.message_type, sms.status) == (123, "sms", "low_balance", "delivered")
    assert sms.cost == Decimal("0.0075")

    # An email the app sent, then opened through the provider's webhook.
    email = check.track_message_sent(123, "email", "bill_reminder", 0.001)
    check.track_message_delivered(email.id)
    answer = http.post("/webhook/email-opened", json={"message_id": email.id})
    assert answer.status_code == 200 and answer.get_json() == {"status": "success", "tracked": True}
    assert check.message(email.id).opened_at is not None

    # A user action on the SMS, with a financial impact.
    answer = http.post(
        "/user-action",
        json={
            "message_id": sms_id,
            "action_type": "clicked_link",
            "user_id": 123,
            "action": "bill_paid_on_time",
            "impact_amount": 25.0,
        },
    )
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "success", "tracked": True, "outcome_tracked": True}
    assert check.message(sms_id).action_taken == "clicked_link"
    assert check.get_financial_impact(user_id=123)["outcomes"]["amount"] == Decimal("25")

    # A user action without impact.
    answer = http.post("/user-action", json={"message_id": email.id, "action_type": "viewed_forecast"})
    assert answer.get_json() == {"status": "success", "tracked": True, "outcome_tracked": False}

    # Failures are reported in the answer, never as a 500: the tracking functions do not raise.
    answer = http.post("/user-action", json={"message_id": 999, "action_type": "clicked"})
    assert answer.status_code == 200 and answer.get_json()["tracked"] is False
    answer = http.post("/webhook/email-opened", json={"message_id": 999})
    assert answer.status_code == 200 and answer.get_json()["tracked"] is False
    assert http.post("/user-action", json={"action_type": "x"}).status_code == 400
    assert http.post("/user-action", json={"message_id": sms_id, "action_type": "x", "impact_amount": 5}).status_code == 400
    assert http.post("/webhook/email-opened", data="not json").status_code == 400

    # The stats.
    answer = http.get("/stats")
    assert answer.status_code == 200
    stats = answer.get_json()
    assert stats["total_messages"] == 2
    assert stats["delivery_rate"] == 100.0
    assert stats["open_rate"] == 100.0  # the click on the SMS implies its open
    assert Decimal(stats["total_cost"]) == Decimal("0.0085")
    assert stats["total_cost_micros"] == 8500
    assert stats["channel_breakdown"] == {"sms": 1, "email": 1}
    assert "2 messages, delivery 100.0%, open 100.0%, cost $0.0085" in capsys.readouterr().out

    answer = http.get("/stats?channel=sms&user_id=123")
    assert answer.get_json()["total_messages"] == 1
    answer = http.get("/stats?start_date=2000-01-01&end_date=2000-01-02")
    assert answer.get_json()["total_messages"] == 0
    assert http.get("/stats?channel=pigeon").status_code == 503


def test_stats_route_when_the_server_is_down(example: ModuleType, server: Server) -> None:
    http = example.app.test_client()
    assert http.get("/stats").status_code == 200
    backend = compat._get_backend()
    backend.retries, backend.backoff = 0, 0.0
    server.stop()
    assert http.get("/stats").status_code == 503
    assert example.send_low_balance_sms(5) is None
    assert http.post("/webhook/email-opened", json={"message_id": 1}).get_json()["tracked"] is False
    server.start()
