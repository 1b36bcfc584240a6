"""`commlog.Store`: the commlog store embedded in this process (the Rust library via PyO3).

For scripts, notebooks, tests and single-process apps: one process at a time may open a store
for writing (others open it read-only, or talk to `commlog serve` through `commlog.Client`).
Every call releases the GIL. A store cannot cross a ``fork()``: used from a forked child it
raises `CommlogError` and leaves the parent's store untouched; open it after the fork.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone
from types import TracebackType
from typing import Any, Dict, List, Optional, Type, Union

from . import _native
from ._types import (
    ONE_MS,
    UNIX_EPOCH,
    NAME_BYTES_MAX,
    USER_ID_MAX,
    FinancialOutcome,
    Message,
    MoneyLike,
    Stats,
    View,
    datetime_ms,
    micros_to_dollars,
    parse_time_or_date,
    to_external_id,
    to_limit,
    to_micros,
    to_period,
    to_required_month,
    within_datetime_years,
)
from ._types import to_month as _month
from ._types import to_name as _name
from ._types import to_opt_name as _opt_name
from ._types import to_opt_user as _opt_user
from ._types import to_percent as _percent
from ._types import to_ref as _ref
from ._types import to_user as _user
from .errors import InvalidInput

__all__ = ["Store", "TimeLike", "MessageId"]

TimeLike = Union[datetime, date, str, None]
MessageId = Union[int, str]
PathLike = Union[str, "os.PathLike[str]"]

_UTC = timezone.utc
_DAY_MS = 86_400_000
_NAIVE_EPOCH = datetime(1970, 1, 1)
# The most the native store takes (a u64 of milliseconds).
_INTERVAL_MS_MAX = (1 << 64) - 1


def _ms(value: TimeLike, name: str, end_of_day: bool = False) -> Optional[int]:
    """A time as milliseconds since the Unix epoch (floor): a naive datetime is UTC, an aware
    one converted; a date is its first millisecond (with ``end_of_day``, its last)."""
    if type(value) is datetime:  # the common case first: a plain naive or aware datetime
        zone = value.tzinfo
        if zone is None:
            return (value - _NAIVE_EPOCH) // ONE_MS
        if zone is _UTC:
            return (value - UNIX_EPOCH) // ONE_MS
    if value is None:
        return None
    if isinstance(value, datetime):
        return datetime_ms(value)
    if isinstance(value, date):
        first = (datetime(value.year, value.month, value.day, tzinfo=_UTC) - UNIX_EPOCH) // ONE_MS
        return first + _DAY_MS - 1 if end_of_day else first
    if isinstance(value, str):
        return _ms(parse_time_or_date(value, name), name, end_of_day)
    raise InvalidInput(
        f"{name} {value!r} is not a datetime, a date or an RFC 3339 string",
        field=name,
        value=repr(value),
    )


def _filter_ms(value: TimeLike, name: str, end_of_day: bool = False) -> Optional[int]:
    """A query filter's time (`_ms`), moved into the years RFC 3339 writes, as the client sends
    it: an aware datetime near ``datetime``'s bounds can fall past them in UTC, beyond every
    store's events, and the nearest time written answers alike."""
    ms = _ms(value, name, end_of_day)
    return None if ms is None else within_datetime_years(ms)


class Store:
    """The commlog store in directory ``path``, embedded in this process.

    ``sync``: ``"always"`` (a call returns once its event is fsynced; concurrent calls share
    one fsync), ``"interval"`` (fsync every ``interval_ms``; the fast choice) or ``"never"``.
    Use it as a context manager, or call `close()`.
    """

    __slots__ = ("_native", "__weakref__")

    def __init__(self, path: PathLike, sync: str = "always", interval_ms: int = 100) -> None:
        if not isinstance(sync, str):
            raise InvalidInput(
                f"sync {sync!r} must be always, interval or never", field="sync", value=repr(sync)
            )
        if (
            isinstance(interval_ms, bool)
            or not isinstance(interval_ms, int)
            or not 1 <= interval_ms <= _INTERVAL_MS_MAX
        ):
            raise InvalidInput(
                f"interval_ms {interval_ms!r} must be a whole number of milliseconds, from 1 to "
                f"{_INTERVAL_MS_MAX}",
                field="interval_ms",
                value=repr(interval_ms),
            )
        self._native = _native.NativeStore.open(os.fspath(path), sync, interval_ms)

    @classmethod
    def open_read_only(cls, path: PathLike, *, decode_on_demand: bool = False) -> "Store":
        """Opens the store read-only: a snapshot of the log as it is now, beside its writer if
        there is one (reopen to see later events). Tracking calls raise ``CommlogError``
        (kind ``read_only``).

        ``decode_on_demand=True`` suits a short-lived reader that asks about a few users (a
        script, a job): the store's snapshot is checked but its messages and users' lists are
        decoded only as queries reach them, so the open takes a fraction of the time and
        memory. Stats over every user and all time answer at once (the open counts their
        totals as it checks the messages); the first view or time-range query over all
        messages, and later per-user queries, are slower than with the default, which decodes
        everything at open. The answers are the same."""
        if not isinstance(decode_on_demand, bool):
            raise InvalidInput(
                f"decode_on_demand {decode_on_demand!r} must be True or False",
                field="decode_on_demand",
                value=repr(decode_on_demand),
            )
        store = cls.__new__(cls)
        store._native = _native.NativeStore.open_read_only(os.fspath(path), decode_on_demand)
        return store

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The store's directory."""
        return str(self._native.path)

    @property
    def read_only(self) -> bool:
        """True when opened with `open_read_only`."""
        return bool(self._native.read_only)

    @property
    def closed(self) -> bool:
        """True once closed."""
        return bool(self._native.closed)

    def close(self) -> None:
        """Syncs everything, marks the log cleanly closed and releases the lock; closing twice
        does nothing."""
        self._native.close()

    def flush(self) -> None:
        """Hands every event appended so far to the OS (survives a crash of this process)."""
        self._native.flush()

    def sync(self) -> None:
        """Makes every event appended so far durable (survives a power cut)."""
        self._native.sync()

    def refresh(self) -> int:
        """On a store opened read-only: applies what the writer appended since the open or the
        last refresh, reading the log from where the views end; returns how many events it
        applied (0 on a writer, whose views are always current)."""
        return self._native.refresh()

    def snapshot(self) -> Optional[str]:
        """Writes a snapshot of the views now, so that the next open replays only the log after
        it; returns its path, or None when the newest snapshot already covers the whole log.
        Tracking calls go on while it is written. A writer also writes one as the log grows,
        and when it closes."""
        path = self._native.snapshot()
        return None if path is None else str(path)

    def __enter__(self) -> "Store":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"commlog.Store({self._native!r})"

    # -- tracking ---------------------------------------------------------------------------

    def track_message_sent(
        self,
        user_id: int,
        channel: str,
        message_type: str,
        cost: MoneyLike,
        external_id: Optional[str] = None,
        sent_at: TimeLike = None,
    ) -> Message:
        """Records a message sent (``sent_at`` ``None``: now); its ``Message`` (``.id`` for the
        follow-ups). ``external_id`` (the provider's message id or an idempotency key) makes
        the call idempotent: the same id again returns the message it created (with other
        fields: ``Conflict``), and every follow-up may name the message by it."""
        # The common case (plain ASCII strings, an int user) is checked inline.
        if type(channel) is not str or len(channel) > NAME_BYTES_MAX or not channel.isascii():
            channel = _name(channel, "channel")
        if (
            type(message_type) is not str
            or len(message_type) > NAME_BYTES_MAX
            or not message_type.isascii()
        ):
            message_type = _name(message_type, "message_type")
        if type(user_id) is not int or not 0 <= user_id <= USER_ID_MAX:
            user_id = _user(user_id)
        if external_id is not None:
            external_id = to_external_id(external_id)
        return (
            self._native.track_message_sent(
                user_id,
                channel,
                message_type,
                to_micros(cost, "cost"),
                None if sent_at is None else _ms(sent_at, "sent_at"),
                external_id,
            )
        )

    def track_message_delivered(self, message_id: MessageId, delivery_time: TimeLike = None) -> Message:
        """Records the delivery (``None``: now); the message as it now stands."""
        return (
            self._native.track_message_delivered(
                _ref(message_id), _ms(delivery_time, "delivery_time")
            )
        )

    def track_message_opened(self, message_id: MessageId, open_time: TimeLike = None) -> Message:
        """Records the open (``None``: now; an open implies delivery); the message."""
        return (
            self._native.track_message_opened(_ref(message_id), _ms(open_time, "open_time"))
        )

    def track_user_action(
        self, message_id: MessageId, action_type: str, timestamp: TimeLike = None
    ) -> Message:
        """Records an action the message led to (a name containing "click" is a click)."""
        return (
            self._native.track_user_action(
                _ref(message_id), _name(action_type, "action_type"), _ms(timestamp, "timestamp")
            )
        )

    def track_message_failed(
        self, message_id: MessageId, reason: str, failed_at: TimeLike = None
    ) -> Message:
        """Records a failed delivery and its reason."""
        return (
            self._native.track_message_failed(
                _ref(message_id), _name(reason, "reason"), _ms(failed_at, "failed_at")
            )
        )

    def track_financial_outcome(
        self, user_id: int, action: str, impact_amount: MoneyLike, at: TimeLike = None
    ) -> FinancialOutcome:
        """Records a financial outcome of a user (``impact_amount`` in dollars, negative for a
        loss; ``at`` ``None``: now)."""
        return (
            self._native.track_financial_outcome(
                _user(user_id),
                _name(action, "action"),
                to_micros(impact_amount, "impact_amount"),
                _ms(at, "at"),
            )
        )

    def set_budget(
        self,
        scope: str,
        month: Union[str, date],
        amount: MoneyLike,
        alert_percent: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Sets the budget of a scope (``all`` or a channel) for a month ``YYYY-MM``; the
        budget as set: ``scope``, ``month``, ``amount`` (Decimal dollars), ``amount_micros``,
        ``alert_percent``."""
        scope_name = _name(scope, "scope")
        month_text = to_required_month(month)
        micros = to_micros(amount, "amount")
        percent = _percent(alert_percent)
        self._native.set_budget(scope_name, month_text, micros, percent)
        return {
            "scope": scope_name.lower(),
            "month": month_text,
            "amount_micros": micros,
            "alert_percent": 90 if percent is None else percent,
            "amount": micros_to_dollars(micros),
        }

    # -- queries ----------------------------------------------------------------------------

    def message(self, id_or_external_id: MessageId) -> Message:
        """A message by its id (int) or its external id (str)."""
        return self._native.message(_ref(id_or_external_id, "id_or_external_id"))

    def message_by_external_id(self, external_id: str) -> Optional[Message]:
        """The message sent with this external id, or None."""
        return self._native.message_by_external_id(to_external_id(external_id))

    def get_external_id(self, message_id: int) -> Optional[str]:
        """The external id a message was sent with, or None."""
        ref = _ref(message_id)
        if not isinstance(ref, int):
            raise InvalidInput(
                f"message_id {message_id!r} is not a message id (int)",
                field="message_id",
                value=repr(message_id),
            )
        return self._native.external_id(ref)

    def get_user_communication_history(self, user_id: int, limit: int = 50) -> List[Message]:
        """The user's messages, newest sent first, at most ``limit``."""
        limit = to_limit(limit)
        return self._native.history(_user(user_id), limit)

    def get_communication_stats(
        self,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
    ) -> Stats:
        """Counts, rates (percent) and costs of the messages matching every filter given."""
        return Stats(
            _json(
                self._native.stats_json(
                    _opt_user(user_id),
                    _opt_name(message_type, "message_type"),
                    _opt_name(channel, "channel"),
                    _filter_ms(start_date, "start_date"),
                    _filter_ms(end_date, "end_date", end_of_day=True),
                )
            )
        )

    def get_user_engagement(
        self,
        user_id: int,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
    ) -> View:
        """How the user engages: by channel, by message type, by hour, trend, preferred channel."""
        return View(
            _json(
                self._native.engagement_json(
                    _user(user_id),
                    _opt_name(message_type, "message_type"),
                    _opt_name(channel, "channel"),
                    _filter_ms(start_date, "start_date"),
                    _filter_ms(end_date, "end_date", end_of_day=True),
                )
            )
        )

    def get_channel_effectiveness(
        self,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
        period: Optional[str] = None,
    ) -> View:
        """Each channel's and message type's rates, costs and ROI; the winners; by ``period``
        (``day``, ``week``, ``month``) if given."""
        return View(
            _json(
                self._native.channels_json(
                    _opt_user(user_id),
                    _opt_name(message_type, "message_type"),
                    _filter_ms(start_date, "start_date"),
                    _filter_ms(end_date, "end_date", end_of_day=True),
                    to_period(period),
                )
            )
        )

    def get_cost_report(
        self,
        month: Union[str, date, None] = None,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
    ) -> View:
        """Spending by channel, type, day and month, and the budgets (of ``month`` if given)."""
        return View(
            _json(
                self._native.costs_json(
                    _month(month),
                    _opt_user(user_id),
                    _opt_name(message_type, "message_type"),
                    _opt_name(channel, "channel"),
                    _filter_ms(start_date, "start_date"),
                    _filter_ms(end_date, "end_date", end_of_day=True),
                )
            )
        )

    def get_financial_impact(
        self,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
    ) -> View:
        """The outcomes, attributed to the messages that preceded them, and each channel's ROI."""
        return View(
            _json(
                self._native.impact_json(
                    _opt_user(user_id),
                    _opt_name(message_type, "message_type"),
                    _opt_name(channel, "channel"),
                    _filter_ms(start_date, "start_date"),
                    _filter_ms(end_date, "end_date", end_of_day=True),
                )
            )
        )


_json = json.loads
