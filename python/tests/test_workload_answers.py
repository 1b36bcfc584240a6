"""The reference workload (``commlog demo``, 20,000 messages), read back from
``commlog export --format jsonl`` and replayed event by event through the tracking calls, gives
the same answers through the embedded ``Store``, through the ``Client`` of a server, and from
the original store opened read-only."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from commlog.client import Client

from conftest import PYTHON_DIR, Server, native_built

if not native_built():
    pytest.skip("commlog._native is not built: no embedded store to compare with", allow_module_level=True)

from commlog.store import Store  # noqa: E402

MESSAGES = 20_000
UTC = timezone.utc


def cli_binary() -> Path:
    """The ``commlog`` binary: ``$COMMLOG_BIN``, else ``../target/release/commlog`` relative to
    ``python/``; skips the test if it was not built."""
    configured = os.environ.get("COMMLOG_BIN")
    path = Path(configured) if configured else PYTHON_DIR.parent / "target" / "release" / "commlog"
    if not path.is_file():
        pytest.skip(
            f"no commlog binary at {path} (build it with "
            "`cargo build --release -p commlog-cli` or set COMMLOG_BIN)"
        )
    return path


def when(text: str) -> datetime:
    """An export's time (RFC 3339 UTC with a ``Z``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def dollars(micros: int) -> Decimal:
    return Decimal(micros) / Decimal(1_000_000)


@pytest.fixture
def workload(short_tmp: Path) -> Tuple[Path, List[Dict[str, Any]]]:
    """The demo store ``DIR`` and its events, in log order, as exported."""
    binary = cli_binary()
    reference = short_tmp / "reference"
    out = short_tmp / "events.jsonl"
    subprocess.run(
        [str(binary), "--dir", str(reference), "demo", "--messages", str(MESSAGES), "-q"],
        check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=120,
    )
    subprocess.run(
        [str(binary), "--dir", str(reference), "-q", "export", "--format", "jsonl", "--out", str(out)],
        check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=120,
    )
    with open(out, encoding="utf-8") as lines:
        events = [json.loads(line) for line in lines if line.strip()]
    return reference, events


@pytest.fixture
def replay_targets(short_tmp: Path) -> Iterator[Tuple[Store, Client]]:
    """An embedded store and the client of a fresh server, both synced on an interval."""
    server_root = short_tmp / "srv"
    server_root.mkdir()
    srv = Server(server_root, extra=["--sync", "interval"]).start()
    store = Store(short_tmp / "embedded", sync="interval")
    client = Client(socket=srv.socket)
    try:
        yield store, client
    finally:
        try:
            store.close()
            client.close()
            code = srv.stop()
        finally:
            srv.kill()
        assert code == 0, f"commlog-serve exit status {code}: {srv.log.read_text()}"


def replay(backend: Any, events: List[Dict[str, Any]]) -> List[Any]:
    """Every event through its call, in order; each call's answer (``None`` for a budget)."""
    answers: List[Any] = []
    for e in events:
        kind = e["kind"]
        if kind == "sent":
            answers.append(backend.track_message_sent(
                e["user_id"], e["channel"], e["message_type"], dollars(e["cost_micros"]),
                sent_at=when(e["time"]),
            ))
        elif kind == "delivered":
            answers.append(backend.track_message_delivered(e["message_id"], delivery_time=when(e["time"])))
        elif kind == "opened":
            answers.append(backend.track_message_opened(e["message_id"], open_time=when(e["time"])))
        elif kind == "action":
            answers.append(backend.track_user_action(e["message_id"], e["action"], timestamp=when(e["time"])))
        elif kind == "failed":
            answers.append(backend.track_message_failed(e["message_id"], e["reason"], failed_at=when(e["time"])))
        elif kind == "outcome":
            answers.append(backend.track_financial_outcome(
                e["user_id"], e["outcome"], dollars(e["amount_micros"]), at=when(e["time"]),
            ))
        elif kind == "budget":
            # Budgets carry no time of their own in the call: set as of now, they concern
            # neither a history nor the statistics compared here.
            backend.set_budget(
                e["budget_scope"], e["budget_month"], dollars(e["budget_micros"]),
                alert_percent=e["alert_percent"],
            )
            answers.append(None)
        else:
            raise AssertionError(f"unknown event kind {kind!r} in the export: {e}")
    return answers


def test_workload_same_answers(
    workload: Tuple[Path, List[Dict[str, Any]]], replay_targets: Tuple[Store, Client]
) -> None:
    reference_dir, events = workload
    store, client = replay_targets
    kinds = Counter(e["kind"] for e in events)
    assert kinds["sent"] == MESSAGES, kinds
    assert kinds["delivered"] and kinds["opened"] and kinds["action"] and kinds["outcome"], kinds

    embedded = replay(store, events)
    served = replay(client, events)

    # The ids: each message gets the id it has in the reference store, and every call answers
    # the same on both.
    for e, a, b in zip(events, embedded, served):
        assert a == b, e
        if e["kind"] in ("sent", "delivered", "opened", "action", "failed"):
            assert a.id == e["message_id"], e
        elif e["kind"] == "outcome":
            assert a.user_id == e["user_id"], e
    assert len(embedded) == len(served) == len(events)

    reference = Store.open_read_only(reference_dir)
    try:
        rng = random.Random(20_000)
        by_user = Counter(e["user_id"] for e in events if e["kind"] == "sent")
        users = sorted(by_user)
        sample = rng.sample(users, 200) + [by_user.most_common(1)[0][0], max(users) + 1]
        for user in sample:
            want = reference.get_user_communication_history(user, limit=1000)
            assert len(want) == by_user.get(user, 0), user
            assert store.get_user_communication_history(user, limit=1000) == want, user
            assert client.get_user_communication_history(user, limit=1000) == want, user
            want = reference.get_user_communication_history(user, limit=2)
            assert store.get_user_communication_history(user, limit=2) == want, user
            assert client.get_user_communication_history(user, limit=2) == want, user

        sent = [e for e in events if e["kind"] == "sent"]
        first = when(sent[0]["time"])
        start, end = first + timedelta(days=9, hours=5), first + timedelta(days=16, minutes=7)
        filters: List[Dict[str, Any]] = [{}]
        filters += [{"user_id": u} for u in sample[:5] + [sample[-2]]]
        filters += [{"message_type": t} for t in sorted({e["message_type"] for e in sent})]
        filters += [{"channel": c} for c in sorted({e["channel"] for e in sent})]
        filters += [
            {"start_date": start, "end_date": end},
            {"start_date": start},
            {"end_date": end},
            {"start_date": start.date(), "end_date": end.date()},
            {"channel": "sms", "message_type": sent[0]["message_type"], "start_date": start, "end_date": end},
        ]
        for f in filters:
            want = reference.get_communication_stats(**f)
            assert store.get_communication_stats(**f) == want, f
            assert client.get_communication_stats(**f) == want, f

        overall = reference.get_communication_stats()
        assert overall["total_messages"] == MESSAGES
        assert overall["total_cost"] == dollars(sum(e["cost_micros"] for e in sent))
        windowed = reference.get_communication_stats(start_date=start, end_date=end)
        assert 0 < windowed["total_messages"] < MESSAGES
        assert windowed["total_messages"] == sum(1 for e in sent if start <= when(e["time"]) <= end)
    finally:
        reference.close()
