"""The typed answers of commlog (the same for the embedded `Store` and the HTTP `Client`).

Money is ``decimal.Decimal`` dollars, exact (the store counts integer micro-dollars); times are
timezone-aware UTC ``datetime`` objects. ``Message`` and ``FinancialOutcome`` are the native
module's immutable classes, which wrap the library's own values and make these Python values
when an attribute is read; the reports (``View``, ``Stats``) are read from the library's JSON,
in which money is an integer under a name ending in ``_micros`` and times are RFC 3339 UTC
strings.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

from ._native import FinancialOutcome, Message
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
]

_MICROS = Decimal(1_000_000)
_DOLLARS_MAX = 9_000_000_000_000
_FAST_SCALED_MAX = float(1 << 43)

MoneyLike = Union[float, int, Decimal, str]


def micros_to_dollars(micros: int) -> Decimal:
    """Integer micro-dollars as exact ``Decimal`` dollars."""
    return Decimal(int(micros)) / _MICROS


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """An RFC 3339 string (``2025-01-01T09:00:00.000Z``) as an aware UTC datetime."""
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
    return dt.astimezone(timezone.utc)


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
            d = Decimal(x.strip())
        except InvalidOperation:
            raise InvalidInput(f"{field} {x!r} is not an amount of dollars", field=field, value=x) from None
    else:
        raise InvalidInput(f"{field} {x!r} is not an amount of dollars", field=field, value=repr(x))
    if not d.is_finite():
        raise InvalidInput(f"{field} {x!r} is not a finite amount", field=field, value=str(x))
    return d


def to_micros(x: MoneyLike, field: str = "amount") -> int:
    """Dollars as integer micro-dollars, rounded half away from zero to the micro-dollar."""
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
            return i * 1_000_000
    d = to_decimal_dollars(x, field)
    if abs(d) > _DOLLARS_MAX:
        raise InvalidInput(
            f"{field} {x!r} must be within ±9e12 dollars", field=field, value=str(x)
        )
    try:
        return int((d * _MICROS).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    except InvalidOperation:
        raise InvalidInput(f"{field} {x!r} is too large", field=field, value=str(x)) from None


def to_name(value: Any, name: str) -> str:
    """A channel, type, action… as a string (an enum gives its value)."""
    if isinstance(value, str):
        return value
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, str):
        return enum_value
    raise InvalidInput(f"{name} {value!r} is not a string", field=name, value=repr(value))


def to_month(value: Union[str, date, None], name: str = "month") -> Optional[str]:
    """A month as `YYYY-MM` (a date or datetime gives its own)."""
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return f"{value.year:04d}-{value.month:02d}"
    if isinstance(value, str):
        return value
    raise InvalidInput(
        f"{name} {value!r} is not a month YYYY-MM or a date", field=name, value=repr(value)
    )


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

    def to_dict(self) -> Dict[str, Any]:
        """A plain (recursive) dict copy."""

        def plain(v: Any) -> Any:
            if isinstance(v, View):
                return v.to_dict()
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        return {k: plain(v) for k, v in self._data.items()}


class Stats(View):
    """The communication statistics: the original keys (``total_messages``, ``delivery_rate``
    and ``open_rate`` in percent, …), with ``total_cost``, ``avg_cost_per_message`` and
    ``total_impact`` in Decimal dollars next to their ``_micros`` keys."""

    __slots__ = ()
