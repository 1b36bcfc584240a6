"""The embedded ``Store`` and the ``Client`` of a server answer the same calls the same way:
the same messages, the same errors, the same statistics and views."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, List, Tuple

import pytest

from commlog.client import Client
from commlog.errors import CommlogError

from conftest import Server, native_built

if not native_built():
    pytest.skip("commlog._native is not built: no embedded store to compare with", allow_module_level=True)

from commlog.store import Store  # noqa: E402

UTC = timezone.utc
CHANNELS = ["sms", "email", "push", "in_app"]
TYPES = ["low_balance", "bill_reminder", "savings_tip", "security_alert"]
ACTIONS = ["clicked_link", "viewed_forecast", "transferred_funds"]
OUTCOMES = ["bill_paid_on_time", "overdraft_avoided", "savings_increased"]


def script(seed: int, base: datetime) -> List[Tuple[str, tuple, dict]]:
    """Calls with explicit times (a few hours before ``base``), some of them refused."""
    rng = random.Random(seed)
    calls: List[Tuple[str, tuple, dict]] = []
    sent = 0
    for i in range(120):
        at = base + timedelta(minutes=i)
        user = rng.randint(1, 6)
        cost = rng.choice([0.05, "0.001", Decimal("0.0075"), 0, 1.1])
        calls.append(("track_message_sent", (user, rng.choice(CHANNELS), rng.choice(TYPES), cost),
                      {"sent_at": at, **({"external_id": f"ext-{i}"} if i % 3 == 0 else {})}))
        sent += 1
        ref: Any = f"ext-{i}" if i % 3 == 0 else sent
        r = rng.random()
        if r < 0.8:
            calls.append(("track_message_delivered", (ref,), {"delivery_time": at + timedelta(seconds=rng.randint(1, 90))}))
        if r < 0.5:
            calls.append(("track_message_opened", (ref,), {"open_time": at + timedelta(minutes=rng.randint(2, 40))}))
        if r < 0.25:
            calls.append(("track_user_action", (ref, rng.choice(ACTIONS)), {"timestamp": at + timedelta(minutes=45)}))
        if 0.9 < r:
            calls.append(("track_message_failed", (ref, "undelivered"), {"failed_at": at + timedelta(seconds=30)}))
        if rng.random() < 0.2:
            calls.append(("track_financial_outcome", (user, rng.choice(OUTCOMES), rng.choice([25, "-3.5", 0.1])),
                          {"at": at + timedelta(minutes=50)}))
    # Refused calls: each must fail the same way on both.
    calls += [
        ("track_message_delivered", (10_000,), {}),
        ("track_message_opened", ("no-such-external-id",), {}),
        ("track_message_sent", (0, "sms", "t", 0.05), {"sent_at": base}),
        ("track_message_sent", (1, "pigeon", "t", 0.05), {"sent_at": base}),
        ("track_message_sent", (1, "sms", "t", -1), {"sent_at": base}),
        ("track_message_sent", (2, "sms", "t", 0.05), {"external_id": "ext-0", "sent_at": base}),
        ("track_message_delivered", (1,), {"delivery_time": base - timedelta(days=2)}),
    ]
    month = base.strftime("%Y-%m")
    calls += [
        ("set_budget", ("all", month, 100), {}),
        ("set_budget", ("sms", month, "2.5"), {"alert_percent": 75}),
    ]
    return calls


def apply(backend: Any, calls: List[Tuple[str, tuple, dict]]) -> List[Any]:
    answers = []
    for name, args, kwargs in calls:
        try:
            answers.append(getattr(backend, name)(*args, **kwargs))
        except CommlogError as error:
            answers.append((type(error).__name__, error.kind))
    return answers


def without_now(value: Any) -> Any:
    """A view's plain form without what depends on the time of the query."""
    if hasattr(value, "items"):
        return {
            k: without_now(v)
            for k, v in value.items()
            if k not in ("now", "projected", "projected_micros", "mean_days_since_last_communication")
        }
    if isinstance(value, list):
        return [without_now(v) for v in value]
    return value


def test_same_answers(both: Tuple[Store, Client]) -> None:
    store, client = both
    now = datetime.now(UTC)
    base = (now - timedelta(hours=5)).replace(second=0, microsecond=123456, tzinfo=None)
    calls = script(7, base)
    embedded = apply(store, calls)
    served = apply(client, calls)
    for (name, args, kwargs), a, b in zip(calls, embedded, served):
        assert a == b, (name, args, kwargs)
    assert any(isinstance(a, tuple) for a in embedded), "some calls were refused"

    for user in range(1, 8):
        assert store.get_user_communication_history(user) == client.get_user_communication_history(user)
        assert store.get_user_communication_history(user, limit=3) == client.get_user_communication_history(user, limit=3)
    for i in range(1, 121):
        assert store.message(i) == client.message(i)
    assert store.message("ext-3") == client.message("ext-3")

    start, end = base + timedelta(minutes=30), base + timedelta(minutes=90)
    filters: List[dict] = [
        {},
        {"user_id": 3},
        {"channel": "sms"},
        {"message_type": "bill_reminder"},
        {"start_date": start, "end_date": end},
        {"start_date": start.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=9)))},
        {"start_date": base.date(), "end_date": base.date()},
        {"start_date": date(2000, 1, 1), "end_date": "2000-01-02"},
        {"user_id": 2, "channel": "email", "message_type": "low_balance", "end_date": end},
    ]
    for f in filters:
        assert store.get_communication_stats(**f) == client.get_communication_stats(**f), f
        assert without_now(store.get_financial_impact(**f)) == without_now(client.get_financial_impact(**f)), f
        assert without_now(store.get_cost_report(**f)) == without_now(client.get_cost_report(**f)), f
        g = {k: v for k, v in f.items() if k != "channel"}
        assert without_now(store.get_channel_effectiveness(**g)) == without_now(client.get_channel_effectiveness(**g)), f
    for user in range(1, 7):
        assert without_now(store.get_user_engagement(user)) == without_now(client.get_user_engagement(user))
        assert without_now(store.get_user_engagement(user, channel="sms")) == without_now(
            client.get_user_engagement(user, channel="sms")
        )
    for period in ("day", "week", "month"):
        assert without_now(store.get_channel_effectiveness(period=period)) == without_now(
            client.get_channel_effectiveness(period=period)
        )
    month = base.strftime("%Y-%m")
    assert without_now(store.get_cost_report(month=month)) == without_now(client.get_cost_report(month=month))
    stats = client.get_communication_stats()
    assert stats["total_messages"] == 120
    assert isinstance(stats["total_cost"], Decimal)


def test_notebook_example_reads_beside_the_server(server: Server) -> None:
    """``examples/notebook.py`` opens the server's store read-only while the server runs."""
    import os
    import subprocess
    import sys

    from conftest import PYTHON_DIR

    client = Client(socket=server.socket)
    m = client.track_message_sent(1, "sms", "low_balance", 0.05)
    client.track_message_delivered(m.id)
    client.track_financial_outcome(1, "bill_paid_on_time", 25)
    month = datetime.now(UTC).strftime("%Y-%m")
    client.set_budget("all", month, 10)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run(
        [sys.executable, str(PYTHON_DIR / "examples" / "notebook.py"), str(server.dir), month, "1"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    ).stdout
    assert "1 messages, 1 outcomes" in out
    assert "budget all" in out and "engagement of user 1" in out
    assert client.track_message_sent(1, "sms", "low_balance", 0.05).id == 2
