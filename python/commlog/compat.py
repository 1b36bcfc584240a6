"""Drop-in functions for the original ``flask_analytics_service`` module.

Replace ``from backend.services.flask_analytics_service import …`` with
``from commlog.compat import …``: the seven functions keep their names, arguments and habits.
Like the original, none of them ever raises: on any failure (bad input, an unknown message,
the server down, the store locked…) it logs through ``logging.getLogger("commlog.compat")``
and returns ``None``, so that tracking can never break the request or task that calls it.

The backend is chosen from the environment, once per process, on first use:

* ``COMMLOG_SOCKET`` (a Unix socket path) or ``COMMLOG_URL`` (``http://host:port``, with
  ``COMMLOG_TOKEN``): a :class:`commlog.client.Client` of ``commlog serve``. Use this when
  several processes track (gunicorn workers, Celery workers, webhooks).
* else ``COMMLOG_DIR``: the store embedded in this process (``commlog.store.Store``, sync policy
  ``COMMLOG_SYNC``, default ``always``). Only one process may have a store open for writing.

A forked child makes its own backend on its first call (the choice is keyed on the process
id), so importing this module, or even calling it, before ``os.fork`` is safe.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from datetime import date, datetime
from typing import Any, Callable, List, Optional, TypeVar, Union

from ._types import FinancialOutcome, Message, Stats
from .errors import CommlogError

__all__ = [
    "track_message_sent",
    "track_message_delivered",
    "track_message_opened",
    "track_user_action",
    "track_financial_outcome",
    "get_user_communication_history",
    "get_communication_stats",
    "reset",
]

logger = logging.getLogger("commlog.compat")

T = TypeVar("T")
TimeLike = Union[datetime, date, str, None]

_lock = threading.Lock()
_backend: Any = None
_backend_pid: Optional[int] = None


def _after_fork_in_child() -> None:
    # The lock may have been held by another thread of the parent at the fork.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _at_exit() -> None:
    # An embedded store is closed (synced) when the process that opened it exits.
    if _backend is not None and _backend_pid == os.getpid():
        reset()


atexit.register(_at_exit)


def _make_backend() -> Any:
    socket_path = os.environ.get("COMMLOG_SOCKET") or None
    url = os.environ.get("COMMLOG_URL") or None
    if socket_path or url:
        from .client import Client

        if socket_path:
            return Client(socket=socket_path)
        return Client(url=url, token=os.environ.get("COMMLOG_TOKEN") or None)
    directory = os.environ.get("COMMLOG_DIR") or None
    if directory:
        try:
            from .store import Store
        except ImportError as error:
            logger.error(
                "commlog: COMMLOG_DIR is set but the embedded store cannot be imported (%s); "
                "set COMMLOG_SOCKET or COMMLOG_URL to use a commlog server instead",
                error,
            )
            return None
        return Store(directory, sync=os.environ.get("COMMLOG_SYNC") or "always")
    logger.error("commlog: set COMMLOG_SOCKET, COMMLOG_URL or COMMLOG_DIR to track communications")
    return None


def _get_backend() -> Any:
    """This process's backend, made on first use (``None`` if it cannot be made: logged)."""
    global _backend, _backend_pid
    pid = os.getpid()
    if _backend is not None and _backend_pid == pid:
        return _backend
    with _lock:
        if _backend is not None and _backend_pid == pid:
            return _backend
        # A backend inherited from the parent process is not used (nor closed: it is the
        # parent's).
        backend = _make_backend()
        if backend is not None:
            _backend, _backend_pid = backend, pid
        return backend


def reset() -> None:
    """Forgets this process's backend (closing it), so that the next call reads the
    environment again. For tests and for a clean shutdown of an embedded store."""
    global _backend, _backend_pid
    with _lock:
        backend, pid = _backend, _backend_pid
        _backend, _backend_pid = None, None
    if backend is not None and pid == os.getpid():
        try:
            backend.close()
        except Exception:
            logger.exception("commlog: closing the backend failed")


def _call(name: str, call: Callable[[Any], T]) -> Optional[T]:
    try:
        backend = _get_backend()
        if backend is None:
            return None
        return call(backend)
    except CommlogError as error:
        logger.error("commlog: %s failed: %s (kind %s)", name, error.message, error.kind)
    except Exception:
        logger.exception("commlog: %s failed", name)
    return None


def track_message_sent(user_id: int, channel: str, message_type: str, cost: Any) -> Optional[Message]:
    """Records a message sent; the ``Message`` (``.id`` for the follow-ups), or ``None``."""
    return _call(
        "track_message_sent",
        lambda b: b.track_message_sent(user_id, channel, message_type, cost),
    )


def track_message_delivered(message_id: Any, delivery_time: TimeLike = None) -> Optional[Message]:
    """Records the delivery (``None``: now); the message, or ``None``."""
    return _call(
        "track_message_delivered",
        lambda b: b.track_message_delivered(message_id, delivery_time),
    )


def track_message_opened(message_id: Any, open_time: TimeLike = None) -> Optional[Message]:
    """Records the open (``None``: now); the message, or ``None``."""
    return _call(
        "track_message_opened",
        lambda b: b.track_message_opened(message_id, open_time),
    )


def track_user_action(
    message_id: Any, action_type: str, timestamp: TimeLike = None
) -> Optional[Message]:
    """Records the action a message led to (``None``: now); the message, or ``None``."""
    return _call(
        "track_user_action",
        lambda b: b.track_user_action(message_id, action_type, timestamp),
    )


def track_financial_outcome(user_id: int, action: str, impact_amount: Any) -> Optional[FinancialOutcome]:
    """Records a user's financial outcome (``impact_amount`` in dollars), or ``None``."""
    return _call(
        "track_financial_outcome",
        lambda b: b.track_financial_outcome(user_id, action, impact_amount),
    )


def get_user_communication_history(user_id: int, limit: int = 50) -> Optional[List[Message]]:
    """The user's messages, newest sent first, at most ``limit``; or ``None``."""
    return _call(
        "get_user_communication_history",
        lambda b: b.get_user_communication_history(user_id, limit),
    )


def get_communication_stats(
    user_id: Optional[int] = None,
    message_type: Optional[str] = None,
    channel: Optional[str] = None,
    start_date: TimeLike = None,
    end_date: TimeLike = None,
) -> Optional[Stats]:
    """The statistics (``total_messages``, ``delivery_rate``, ``open_rate``, ``total_cost``, …)
    of the messages matching every filter given; or ``None``."""
    return _call(
        "get_communication_stats",
        lambda b: b.get_communication_stats(
            user_id=user_id,
            message_type=message_type,
            channel=channel,
            start_date=start_date,
            end_date=end_date,
        ),
    )
