"""The typed answers of commlog (the same for the embedded `Store` and the HTTP `Client`).

Money is ``decimal.Decimal`` dollars, exact (the store counts integer micro-dollars); times are
timezone-aware UTC ``datetime`` objects. ``Message`` and ``FinancialOutcome`` are the native
module's immutable classes, which wrap the library's own values and make these Python values
when an attribute is read; the reports (``View``, ``Stats``) are read from the library's JSON,
in which money is an integer under a name ending in ``_micros`` and times are RFC 3339 UTC
strings.
"""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import date, datetime, timedelta, timezone
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from enum import Enum
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Type, Union

from ._native import FinancialOutcome, Message
from ._native import exact_dollars as _exact_dollars
from .errors import InvalidInput

__all__ = [
    "Message",
    "FinancialOutcome",
    "Stats",
    "View",
    "to_utc",
    "to_decimal_dollars",
    "to_micros",
    "parse_time",
    "micros_to_dollars",
    "to_name",
    "to_opt_name",
    "to_period",
    "to_month",
    "to_user",
    "to_opt_user",
    "to_ref",
    "to_external_id",
    "to_limit",
    "to_percent",
    "USER_ID_MAX",
    "MESSAGE_ID_MAX",
    "NAME_BYTES_MAX",
    "EXTERNAL_ID_BYTES_MAX",
]

_MICROS = Decimal(1_000_000)
_MICRO = Decimal("0.000001")
_DOLLARS_MAX = 9_000_000_000_000
_FAST_SCALED_MAX = float(1 << 43)
# Every amount within ±$1,000,000,000 (at most 15 significant digits) is exact in the dollars
# the library takes; beyond, `Money::exact_dollars` (the native `exact_dollars`) decides.
_EXACT_MICROS_MAX = 1_000_000_000_000_000
# Money's own decimal context, whatever the caller's (`decimal.getcontext()`): precise enough
# for every amount an answer holds (128-bit micro-dollars, 39 digits), so nothing is rounded
# but what `to_micros` rounds on purpose.
_EXACT = Context(prec=80, rounding=ROUND_HALF_UP, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation])

#: The library's bounds (src/limits.rs): user ids 1 to i64::MAX, message ids 1 to u64::MAX,
#: names (types, actions, reasons, outcomes, channels) 1 to 64 bytes, external ids 1 to 128.
USER_ID_MAX = (1 << 63) - 1
MESSAGE_ID_MAX = (1 << 64) - 1
NAME_BYTES_MAX = 64
EXTERNAL_ID_BYTES_MAX = 128
_SHOWN_CHARS_MAX = 64

MoneyLike = Union[float, int, Decimal, str]


def micros_to_dollars(micros: int) -> Decimal:
    """Integer micro-dollars as exact ``Decimal`` dollars (whatever the caller's decimal
    context)."""
    return _EXACT.divide(Decimal(int(micros)), _MICROS)


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """An RFC 3339 string (``2025-01-01T09:00:00.000Z``) as an aware datetime, in UTC where a
    datetime holds it (past year 9999 in UTC, in its own offset)."""
    if text is None:
        return None
    s = text
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise InvalidInput(f"time {text!r} is not RFC 3339", field="time", value=text) from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:
        # Past the years a datetime holds once in UTC: kept in its own offset, which
        # `datetime_ms` reads without building the UTC datetime.
        return dt


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)


def datetime_ms(value: datetime) -> int:
    """Milliseconds since the Unix epoch, floored: a naive datetime is UTC, an aware one
    converted (without building a datetime in UTC, so that none near the bounds overflows)."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - UNIX_EPOCH) // ONE_MS


#: The first and last millisecond a ``datetime`` holds (years 1 to 9999), within the years RFC
#: 3339 writes, to which the store and the server hold a query's times.
FIRST_MS = datetime_ms(datetime(1, 1, 1))
LAST_MS = datetime_ms(datetime.max)


def within_datetime_years(ms: int) -> int:
    """``ms`` moved into [FIRST_MS, LAST_MS]: a query's time past them lies beyond every
    store's events, and the nearest time a ``datetime`` holds answers alike."""
    return min(max(ms, FIRST_MS), LAST_MS)


def parse_time_or_date(value: str, name: str) -> Union[date, datetime]:
    """A time given as text, read alike by the embedded store and the client: a date
    ``YYYY-MM-DD`` (surrounding spaces ignored), else an RFC 3339 time as an aware UTC datetime
    (without an offset, UTC); else InvalidInput naming ``name``."""
    text = value.strip()
    if _DATE_RE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    else:
        try:
            parsed = parse_time(text)
            assert parsed is not None
            return parsed
        except InvalidInput:
            pass
    raise InvalidInput(
        f"{name} {value!r} is not an RFC 3339 time or a date YYYY-MM-DD",
        field=name,
        value=value,
    )


def to_utc(dt: Optional[datetime]) -> Optional[datetime]:
    """A datetime as aware UTC: a naive one is read as UTC, an aware one converted."""
    if dt is None:
        return None
    if not isinstance(dt, datetime):
        raise InvalidInput(
            f"time {dt!r} is not a datetime", field="time", value=repr(dt)
        )
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def to_decimal_dollars(x: MoneyLike, field: str = "amount") -> Decimal:
    """Dollars as an exact Decimal: a float through its shortest repr (as the Rust library rounds)."""
    if isinstance(x, bool):
        raise InvalidInput(f"{field} {x!r} is not an amount of dollars", field=field, value=repr(x))
    if isinstance(x, Decimal):
        d = x
    elif isinstance(x, int):
        d = Decimal(x)
    elif isinstance(x, float):
        if not math.isfinite(x):
            raise InvalidInput(f"{field} {x!r} is not a finite amount", field=field, value=repr(x))
        d = Decimal(repr(x))
    elif isinstance(x, str):
        try:
            d = Decimal(x.strip())  # exact, whatever the context's precision
        except InvalidOperation:
            raise InvalidInput(f"{field} {x!r} is not an amount of dollars", field=field, value=x) from None
    else:
        raise InvalidInput(f"{field} {x!r} is not an amount of dollars", field=field, value=repr(x))
    if not d.is_finite():
        raise InvalidInput(f"{field} {x!r} is not a finite amount", field=field, value=str(x))
    return d


def to_micros(x: MoneyLike, field: str = "amount") -> int:
    """Dollars as integer micro-dollars, rounded half away from zero to the micro-dollar (the
    library's rounding, whatever the caller's decimal context). An amount the library's dollars
    cannot carry exactly (more than 15 significant digits, beyond ±$1,000,000,000) is refused:
    never rounded further."""
    if type(x) is float:
        f: float = x
        # The library's rounding: far from a half, the product rounds like the decimal.
        if abs(f) <= _DOLLARS_MAX:  # False for NaN
            scaled = f * 1e6
            fraction = abs(scaled - math.trunc(scaled))
            if abs(scaled) < _FAST_SCALED_MAX and abs(fraction - 0.5) > 0.01:
                return int(round(scaled))
    elif type(x) is int:
        i: int = x
        if abs(i) <= _DOLLARS_MAX:
            return i * 1_000_000  # whole dollars of at most 13 digits: exact
    d = to_decimal_dollars(x, field)
    if d.copy_abs() > _DOLLARS_MAX:
        raise InvalidInput(
            f"{field} {x!r} must be within ±9e12 dollars", field=field, value=str(x)
        )
    micros = int(d.quantize(_MICRO, rounding=ROUND_HALF_UP, context=_EXACT).scaleb(6, _EXACT))
    if abs(micros) > _EXACT_MICROS_MAX and _exact_dollars(micros) is None:
        raise InvalidInput(
            f"{field} {x!r} has more significant digits than dollars carry exactly: at most 15, "
            "so any amount within ±$1,000,000,000",
            field=field,
            value=str(x),
        )
    return micros


def _quoted(value: str) -> str:
    """A value as the library's errors show it: quoted, cut after 64 characters."""
    if len(value) <= _SHOWN_CHARS_MAX:
        return json.dumps(value, ensure_ascii=False)
    return f"{json.dumps(value[:_SHOWN_CHARS_MAX], ensure_ascii=False)}… ({len(value)} characters)"


def _checked_text(value: str, name: str, bytes_max: int) -> str:
    """``value`` if it is Unicode text (no lone surrogate) of 1 to ``bytes_max`` UTF-8 bytes,
    as the library takes it; else InvalidInput naming ``name``. Checked here, before the value
    reaches the native module or a request, so that both backends refuse it alike."""
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            shown = json.dumps(value[:_SHOWN_CHARS_MAX])
            raise InvalidInput(
                f"invalid {name}: {shown} (must be Unicode text: it holds a lone surrogate)",
                field=name,
                value=shown,
            ) from None
    if not 0 < size <= bytes_max:
        raise InvalidInput(
            f"invalid {name}: {_quoted(value)} (must be 1 to {bytes_max} bytes)",
            field=name,
            value=value[:_SHOWN_CHARS_MAX],
        )
    return value


def to_name(value: Any, name: str) -> str:
    """A channel, type, action… as a string (an enum gives its value, also a ``str`` enum):
    at most 64 bytes of Unicode text. The library checks the rest."""
    text: str
    if type(value) is str:
        text = value
    else:
        given = value
        if isinstance(value, Enum) or not isinstance(value, str):
            given = getattr(value, "value", None)
            if not isinstance(given, str):
                raise InvalidInput(f"{name} {value!r} is not a string", field=name, value=repr(value))
        text = str.__str__(given)  # a str subclass's plain text, not its __str__
    if len(text) > NAME_BYTES_MAX or not text.isascii():
        _checked_text(text, name, NAME_BYTES_MAX)
    return text


def to_opt_name(value: Any, name: str) -> Optional[str]:
    return None if value is None else to_name(value, name)


def to_period(value: Any) -> Optional[str]:
    """A period of the channel view (``day``, ``week``, ``month``, any case, or an enum of
    them), lower case; the library checks the name."""
    if value is None:
        return None
    text = to_name(value, "period")
    return text.lower() if text.isascii() else text


def to_external_id(value: Any, name: str = "external_id") -> str:
    """An external id: a string of 1 to 128 bytes (the library checks its characters)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} {value!r} is not a string", field=name, value=repr(value))
    text: str = value if type(value) is str else str.__str__(value)
    if not 0 < len(text) <= EXTERNAL_ID_BYTES_MAX or not text.isascii():
        _checked_text(text, name, EXTERNAL_ID_BYTES_MAX)
    return text


def to_user(value: Any, name: str = "user_id") -> int:
    """A user id: an int, or a string of ASCII digits (as forms and JSON bodies carry it), from
    0 to the library's largest (0 is left to the library, which refuses it)."""
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value > USER_ID_MAX:
            raise InvalidInput(
                f"{name} {value!r} must be from 1 to {USER_ID_MAX}", field=name, value=str(value)
            )
        return int(value)
    raise InvalidInput(f"{name} {value!r} is not a whole number", field=name, value=repr(value))


def to_opt_user(value: Any, name: str = "user_id") -> Optional[int]:
    return None if value is None else to_user(value, name)


def to_ref(value: Any, name: str = "message_id") -> Union[int, str]:
    """A message id (int, 0 to 2^64 - 1: id 0 names no message) or the external id it was sent
    with (str)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value > MESSAGE_ID_MAX:
            raise InvalidInput(
                f"{name} {value!r} is not a message id (from 1 to {MESSAGE_ID_MAX})",
                field=name,
                value=str(value),
            )
        return int(value)
    if isinstance(value, str):
        return to_external_id(value)
    raise InvalidInput(
        f"{name} {value!r} is not a message id (int) or an external id (str)",
        field=name,
        value=repr(value),
    )


def to_limit(value: Any) -> int:
    """The most messages a history answers: a whole number ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MESSAGE_ID_MAX:
        raise InvalidInput(
            f"limit {value!r} is not a whole number ≥ 0", field="limit", value=repr(value)
        )
    return int(value)


def to_percent(value: Any) -> Optional[int]:
    """A budget's alert percent, an int (the library checks its range), or None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 62:
        return int(value)
    raise InvalidInput(
        f"alert_percent {value!r} is not a whole number from 1 to 100",
        field="alert_percent",
        value=repr(value),
    )


def to_month(value: Union[str, date, None], name: str = "month") -> Optional[str]:
    """A month as `YYYY-MM` (a date or datetime gives its own); None stays None."""
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return f"{value.year:04d}-{value.month:02d}"
    if isinstance(value, str):
        return to_name(value, name)
    raise InvalidInput(
        f"{name} {value!r} is not a month YYYY-MM or a date", field=name, value=repr(value)
    )


def to_required_month(value: Union[str, date], name: str = "month") -> str:
    """A month that must be given (a budget's)."""
    month = to_month(value, name)
    if month is None:
        raise InvalidInput(
            f"{name} None is not a month YYYY-MM or a date", field=name, value=repr(value)
        )
    return month


def _convert(value: Any) -> Any:
    if isinstance(value, dict):
        return View(value)
    if isinstance(value, list):
        return [_convert(v) for v in value]
    return value


def _convert_mapping(d: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in d.items():
        out[key] = _convert(value)
    for key, value in d.items():
        if key.endswith("_micros") and (
            value is None or (isinstance(value, int) and not isinstance(value, bool))
        ):
            plain = key[: -len("_micros")]
            if plain not in out:
                out[plain] = None if value is None else micros_to_dollars(value)
    return out


class View(Mapping[str, Any]):
    """A read-only mapping over a report's JSON: every key as given, and each ``X_micros``
    key also as ``X`` in Decimal dollars; nested objects are Views too. Keys are also
    attributes (``view.total_messages``)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", _convert_mapping(data))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        # Only a report's keys: never a special name that copy and pickle look up (on a View
        # not yet filled, reading ``_data`` here would call this again).
        if name.startswith("__") or name == "_data":
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no key {name!r}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | set(self._data))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, View):
            return bool(self._data == other._data)
        if isinstance(other, Mapping):
            return bool(self._data == dict(other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Tuple[Any, ...]:
        # Pickled and copied as its keys, read back as they are (already converted).
        return (_view_of, (type(self), self._data))

    def __copy__(self) -> "View":
        return self  # read-only: a copy is the same view

    def __deepcopy__(self, memo: Dict[int, Any]) -> "View":
        return _view_of(type(self), copy.deepcopy(self._data, memo))

    def to_dict(self) -> Dict[str, Any]:
        """A plain (recursive) dict copy."""

        def plain(v: Any) -> Any:
            if isinstance(v, View):
                return v.to_dict()
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        return {k: plain(v) for k, v in self._data.items()}


def _view_of(cls: Type[View], data: Dict[str, Any]) -> View:
    """A view of class ``cls`` over keys already converted (a pickled or copied view's)."""
    view = cls.__new__(cls)
    object.__setattr__(view, "_data", data)
    return view


class Stats(View):
    """The communication statistics: the original keys (``total_messages``, ``delivery_rate``
    and ``open_rate`` in percent, …), with ``total_cost``, ``avg_cost_per_message`` and
    ``total_impact`` in Decimal dollars next to their ``_micros`` keys."""

    __slots__ = ()
