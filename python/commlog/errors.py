"""The errors every commlog call raises, embedded (`Store`) or over HTTP (`Client`).

Each carries the library's or the server's error kind (``kind``), its sentence (``message``)
and the fields it names (``fields``: for instance ``field``/``value`` for bad input,
``id``/``external_id`` for an unknown message).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "CommlogError",
    "InvalidInput",
    "UnknownMessage",
    "Locked",
    "Conflict",
    "StorageError",
    "Unavailable",
    "error_from",
]


class CommlogError(Exception):
    """Base class of every commlog error."""

    kind: str
    message: str
    fields: Dict[str, object]

    default_kind = "error"

    def __init__(self, message: str, kind: Optional[str] = None, **fields: object) -> None:
        super().__init__(message)
        self.kind = kind if kind is not None else self.default_kind
        self.message = message
        self.fields = dict(fields)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, kind={self.kind!r}, fields={self.fields!r})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild, (type(self), self.message, self.kind, self.fields))


def _rebuild(cls: Type[CommlogError], message: str, kind: str, fields: Dict[str, object]) -> CommlogError:
    return cls(message, kind, **fields)


class InvalidInput(CommlogError, ValueError):
    """A value the store refuses (``fields``: ``field``, ``value``); nothing was appended."""

    default_kind = "invalid_input"


class UnknownMessage(CommlogError, KeyError):
    """A message id or external id never tracked (``fields``: ``id`` or ``external_id``)."""

    default_kind = "unknown_message"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class Locked(CommlogError):
    """Another process holds the store's writer lock."""

    default_kind = "locked"


class Conflict(CommlogError):
    """An external id already used by a message with other fields (``fields``: ``existing``, ``field``)."""

    default_kind = "conflict"


class StorageError(CommlogError, OSError):
    """The store failed to read, write or sync, found corruption, is stopping or is poisoned."""

    default_kind = "storage"

    def __str__(self) -> str:
        return self.message


class Unavailable(CommlogError):
    """The server could not be reached or answered 503 without a storage kind."""

    default_kind = "unavailable"


_KINDS: Dict[str, Type[CommlogError]] = {
    "invalid_input": InvalidInput,
    "unknown_message": UnknownMessage,
    "conflict": Conflict,
    "locked": Locked,
    "storage": StorageError,
    "io": StorageError,
    "corruption": StorageError,
    "stopping": StorageError,
    "poisoned": StorageError,
    "unavailable": Unavailable,
}


def error_from(kind: str, message: str, **fields: object) -> CommlogError:
    """The error of this kind (the server's JSON ``kind``), carrying ``fields``."""
    cls = _KINDS.get(kind, CommlogError)
    return cls(message, kind, **fields)
