"""commlog: communication analytics on an append-only event store.

Two ways in, with the same methods and answers:

* `Store` — the store embedded in this process (Rust, through PyO3): scripts, notebooks,
  tests, single-process apps, read-only reports.
* `Client` — a thin HTTP client of ``commlog serve``, for several processes (gunicorn, Celery).

Money is ``decimal.Decimal`` dollars; times are timezone-aware UTC datetimes.
"""

from typing import TYPE_CHECKING, Any

from ._types import FinancialOutcome, Message, Stats, View
from .errors import (
    CommlogError,
    Conflict,
    InvalidInput,
    Locked,
    StorageError,
    Unavailable,
    UnknownMessage,
)
from .store import Store

if TYPE_CHECKING:
    # For type checkers: the real class (at run time `__getattr__` below imports it lazily).
    from .client import Client

__version__ = "0.1.0"

__all__ = [
    "Client",
    "CommlogError",
    "Conflict",
    "FinancialOutcome",
    "InvalidInput",
    "Locked",
    "Message",
    "Stats",
    "StorageError",
    "Store",
    "Unavailable",
    "UnknownMessage",
    "View",
]


def __getattr__(name: str) -> Any:
    # The HTTP client is imported on first use, so that `import commlog` stays light.
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(f"module 'commlog' has no attribute {name!r}")
