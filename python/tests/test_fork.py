"""A ``Client`` made and used before ``os.fork`` (gunicorn ``--preload``, Celery prefork) is safe
in every child: each process makes its own connection, so no two processes share a socket."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, List

from commlog import compat
from commlog.client import Client

from conftest import Server

PROCESSES = 8
CALLS = 1000


def fork_all(work: Callable[[int], List[int]], out: Path) -> None:
    """Runs ``work(n)`` in ``PROCESSES`` forked children; each writes the ids it got to
    ``out/n.json``. Fails if a child fails."""
    pids = []
    for n in range(PROCESSES):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                ids = work(n)
                (out / f"{n}.json").write_text(json.dumps(ids))
                code = 0
            except BaseException as error:
                (out / f"{n}.error").write_text(repr(error))
            finally:
                os._exit(code)
        pids.append(pid)
    failures = []
    for n, pid in enumerate(pids):
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            error = out / f"{n}.error"
            failures.append(f"child {n}: {error.read_text() if error.exists() else status}")
    assert not failures, failures


def test_eight_forked_processes_share_a_client_made_before_the_fork(server: Server, short_tmp: Path) -> None:
    client = Client(socket=server.socket)
    first = client.track_message_sent(1, "sms", "before_fork", 0.05)
    assert first.id == 1
    parent_connection = client._connection()

    def work(n: int) -> List[int]:
        # The parent's connection, inherited, must not be the one used here.
        assert client._connection() is not parent_connection
        user = 100 + n
        return [client.track_message_sent(user, "email", f"worker_{n}", "0.001").id for _ in range(CALLS)]

    started = time.monotonic()
    fork_all(work, short_tmp)
    elapsed = time.monotonic() - started

    ids: List[int] = []
    for n in range(PROCESSES):
        ids.extend(json.loads((short_tmp / f"{n}.json").read_text()))
    assert len(ids) == PROCESSES * CALLS
    assert sorted(ids) == list(range(2, PROCESSES * CALLS + 2)), "every message once"

    # The parent's keep-alive connection is still its own and still works.
    assert client._connection() is parent_connection
    stats = client.get_communication_stats()
    assert stats["total_messages"] == PROCESSES * CALLS + 1
    assert client.get_communication_stats(channel="email")["total_messages"] == PROCESSES * CALLS
    for n in range(PROCESSES):
        history = client.get_user_communication_history(100 + n, limit=2 * CALLS)
        assert len(history) == CALLS and len({m.id for m in history}) == CALLS
        assert {m.message_type for m in history} == {f"worker_{n}"}
        assert client.get_communication_stats(user_id=100 + n)["total_messages"] == CALLS
    print(f"{PROCESSES * CALLS} sends from {PROCESSES} processes in {elapsed:.2f} s")


def test_forked_processes_with_follow_ups(server: Server, short_tmp: Path) -> None:
    client = Client(socket=server.socket)
    client.get_communication_stats()  # used before the fork
    per_process = CALLS // 8  # 125 messages, each sent, delivered, opened, clicked: 500 calls

    def work(n: int) -> List[int]:
        ids = []
        for i in range(per_process):
            m = client.track_message_sent(200 + n, "sms", "low_balance", 0.05, external_id=f"w{n}-{i}")
            client.track_message_delivered(m.id)
            client.track_message_opened(f"w{n}-{i}")
            client.track_user_action(m.id, "clicked_link")
            ids.append(m.id)
        return ids

    fork_all(work, short_tmp)
    stats = client.get_communication_stats()
    assert stats["total_messages"] == PROCESSES * per_process
    assert stats["delivered_count"] == stats["opened_count"] == stats["clicked_count"] == PROCESSES * per_process
    for n in range(PROCESSES):
        history = client.get_user_communication_history(200 + n, limit=1000)
        assert len(history) == per_process
        assert all(m.status == "clicked" for m in history)


def test_compat_in_forked_processes(server: Server, short_tmp: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COMMLOG_SOCKET", server.socket)
    monkeypatch.delenv("COMMLOG_URL", raising=False)
    compat.reset()
    try:
        assert compat.track_message_sent(1, "push", "t", 0) is not None

        def work(n: int) -> List[int]:
            ids = []
            for _ in range(100):
                m = compat.track_message_sent(300 + n, "push", "t", 0)
                assert m is not None
                ids.append(m.id)
            return ids

        fork_all(work, short_tmp)
        assert compat.get_communication_stats()["total_messages"] == PROCESSES * 100 + 1
    finally:
        compat.reset()
