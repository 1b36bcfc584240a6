"""The HTTP client of ``commlog serve``: the same calls as the embedded ``Store``, answered by
the server that owns the store, over its Unix socket (``DIR/commlog.sock``) or TCP.

No dependency beyond the standard library and the package's own answer classes: a small
HTTP/1.1 keep-alive transport written for this server, on a plain socket, instead of ``http.client``, whose header handling cost ~110 µs per request (``GET
/healthz`` over the Unix socket, p50: raw socket 50 µs, this transport 60 µs, ``http.client``
160 µs).

Each thread of each process keeps one keep-alive connection, made on first use; a forked child
never uses its parent's connection (the connection is keyed on the process id), so a ``Client``
made before ``os.fork`` (gunicorn ``--preload``, Celery prefork) is safe to use in every child.

Retries are limited to what cannot duplicate an event:

* a connection that could not be made (refused, socket missing, reset while connecting) is
  retried a few times with backoff, for every call;
* ``track_message_sent`` always carries an idempotency key (the caller's ``external_id``, else a
  fresh ``Idempotency-Key``), so it is also retried when the connection broke after the request
  was written: the server returns the message the first attempt created;
* queries are retried the same way (they change nothing);
* the other tracking calls (follow-ups, outcomes, budgets) are retried only when the request
  could not be written at all; once written, a broken connection is ``Unavailable`` with
  ``fields["outcome"] == "unknown"``.

A server answer ``{"error", "kind"}`` raises :func:`commlog.errors.error_from` (``InvalidInput``,
``UnknownMessage``, ``Conflict``, ``StorageError``, …) with ``fields["status"]`` the HTTP status.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket as _socket
import ssl
import struct
import threading
import time
import uuid
import weakref
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote, urlencode, urlsplit

from ._native import messages_from_json
from ._types import (
    ONE_MS,
    UNIX_EPOCH,
    FinancialOutcome,
    Message,
    Stats,
    View,
    datetime_ms,
    micros_to_dollars,
    parse_time_or_date,
    to_external_id,
    to_limit,
    to_micros,
    within_datetime_years,
    to_period,
    to_ref,
    to_required_month,
)
from ._types import to_month as _month
from ._types import to_name as _name
from ._types import to_opt_name as _opt_name
from ._types import to_opt_user as _opt_user
from ._types import to_percent as _percent
from ._types import to_user as _user
from .errors import CommlogError, InvalidInput, UnknownMessage, Unavailable, error_from

__all__ = ["Client"]

MessageId = Union[int, str]
TimeLike = Union[datetime, date, str, None]
MoneyLike = Union[float, int, Decimal, str]

# Kinds the server answers without having applied the call: retried like a refused connection.
_NOT_APPLIED_KINDS = frozenset({"stopping"})


_MAX_HEAD = 64 * 1024  # bytes of status line and headers (and of a chunk-size line)
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _ProtocolError(Exception):
    """The server's answer is malformed, or ended before it was complete."""


class _Connection:
    """One process's, one thread's HTTP/1.1 keep-alive connection to the server, made on first
    use; closed when its thread ends (the thread-local that holds it is dropped), by
    ``Client.close``, or after an answer that ends it.

    Written for ``commlog serve`` alone: one request at a time, its answer read whole (body by
    ``Content-Length``, chunked, or up to the end of a ``Connection: close`` answer)."""

    __slots__ = ("pid", "sock", "address", "tls_host", "timeout", "__weakref__")

    def __init__(
        self, pid: int, address: Union[str, Tuple[str, int]], tls_host: Optional[str], timeout: float
    ) -> None:
        self.pid = pid
        self.sock: Optional[_socket.socket] = None
        self.address = address  # a Unix socket path, or (host, port)
        self.tls_host = tls_host  # the host name to verify, for https
        self.timeout = timeout

    def __del__(self) -> None:
        # Only the process that made the connection closes it.
        if self.pid == os.getpid():
            try:
                self.close()
            except Exception:
                pass

    def connect(self) -> _socket.socket:
        if isinstance(self.address, str):
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.address)
            except BaseException:
                sock.close()
                raise
        else:
            sock = _socket.create_connection(self.address, self.timeout)
            try:
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                if self.tls_host is not None:
                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.tls_host)
            except BaseException:
                sock.close()
                raise
        if self.tls_host is None:
            # The kernel's timeouts rather than Python's: a socket with a Python timeout polls
            # before each recv, ~25 µs more per request. A timeout is then BlockingIOError.
            micros = max(1, round(self.timeout * 1e6))
            timeval = struct.pack("ll", micros // 1_000_000, micros % 1_000_000)
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, timeval)
            sock.settimeout(None)
        self.sock = sock
        return sock

    def send(self, request: bytes) -> None:
        """Writes the whole request, connecting first if need be."""
        try:
            (self.sock or self.connect()).sendall(request)
        except BlockingIOError:
            raise _socket.timeout("timed out") from None

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _read(self, buf: bytearray, eof_ok: bool = False) -> bool:
        """Appends what the server sent next to ``buf``; False at the end of the stream."""
        sock = self.sock
        if sock is None:  # `Client.close` from another thread, while this one waited
            raise ConnectionAbortedError("the connection was closed while the answer was read")
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            raise _socket.timeout("timed out") from None
        if not data and not eof_ok:
            raise _ProtocolError("the server closed the connection before the answer was complete")
        buf += data
        return bool(data)

    def _line(self, buf: bytearray) -> bytes:
        while True:
            end = buf.find(b"\r\n")
            if 0 <= end <= _MAX_HEAD:
                line = bytes(buf[:end])
                del buf[: end + 2]
                return line
            if end > _MAX_HEAD or len(buf) > _MAX_HEAD:
                raise _ProtocolError("a line of the answer is longer than 64 KiB")
            self._read(buf)

    def _fill(self, buf: bytearray, size: int) -> None:
        while len(buf) < size:
            self._read(buf)

    def _chunked(self, buf: bytearray) -> bytes:
        body = bytearray()
        while True:
            line = self._line(buf)
            digits = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(digits):
                raise _ProtocolError(f"malformed chunk size line {line[:40]!r}")
            size = int(digits, 16)
            if size == 0:
                break
            self._fill(buf, size + 2)
            if buf[size : size + 2] != b"\r\n":
                raise _ProtocolError("a chunk is not followed by CRLF")
            body += buf[:size]
            del buf[: size + 2]
        while self._line(buf):  # trailer fields, up to the empty line
            pass
        return bytes(body)

    def answer(self) -> Tuple[int, bytes, bool]:
        """Reads the answer to the request just written: its status, its body, and whether the
        connection can carry the next request."""
        buf = bytearray()
        while True:
            end = buf.find(b"\r\n\r\n")
            if 0 <= end <= _MAX_HEAD:
                break
            if end > _MAX_HEAD or len(buf) > _MAX_HEAD + 3:
                raise _ProtocolError("the answer's headers are longer than 64 KiB")
            self._read(buf)
        lines = buf[:end].decode("latin-1").split("\r\n")
        del buf[: end + 4]
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        well_formed = code.isascii() and code.isdigit() and rest[3:4] in ("", " ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or not well_formed:
            raise _ProtocolError(f"malformed status line {lines[0][:100]!r}")
        status = int(code)
        fields: Dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _ProtocolError(f"malformed header line {line[:100]!r}")
            fields[name.lower()] = value.strip()
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        length = fields.get("content-length")
        if status < 200 or status in (204, 304):
            body = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunked(buf)
        elif length is not None:
            if not (length.isascii() and length.isdigit()):
                raise _ProtocolError(f"malformed Content-Length {length[:40]!r}")
            self._fill(buf, int(length))
            body = bytes(buf[: int(length)])
            del buf[: int(length)]
        elif not keep:
            while self._read(buf, eof_ok=True):
                pass
            body = bytes(buf)
            buf.clear()
        else:
            raise _ProtocolError("a keep-alive answer without Content-Length or chunked body")
        if keep and buf:
            raise _ProtocolError(f"{len(buf)} unexpected bytes after the answer")
        return status, body, keep


class _NotWritten(Exception):
    """The request could not be written: the server cannot have applied it."""


class _Written(Exception):
    """The request was written but no complete answer came back: the outcome is unknown."""


def _dropped(sock: Optional[_socket.socket]) -> bool:
    """True if an idle keep-alive connection was closed by the server (readable = EOF or junk)."""
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)




def _time(value: TimeLike, name: str) -> Optional[str]:
    """A time as the server reads it: RFC 3339 UTC (a naive datetime is UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        # The store keeps milliseconds: the time is floored to its millisecond, as the
        # embedded store does. A time past the years RFC 3339 writes (1 to 9999), which a
        # datetime near its own bounds reaches in UTC, lies beyond every store's events: the
        # nearest time written answers alike.
        ms = within_datetime_years(datetime_ms(value))
        utc = UNIX_EPOCH + ms * ONE_MS
        return (
            f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        # Read as the embedded store reads it, and sent in the server's own form.
        return _time(parse_time_or_date(value, name), name)
    raise InvalidInput(
        f"{name} {value!r} is not a datetime, a date or an RFC 3339 string",
        field=name,
        value=repr(value),
    )


def _message_path(message_id: MessageId, name: str = "message_id") -> Tuple[str, Dict[str, object]]:
    """The path of a message (by id or by external id) and the fields naming it in errors,
    checked as the embedded store checks it (``commlog._types.to_ref``). Id 0 names no message:
    ``UnknownMessage``, as the store answers, without asking the server (which refuses it)."""
    ref = to_ref(message_id, name)
    if isinstance(ref, int):
        if ref == 0:
            raise UnknownMessage(
                "unknown message id 0: no message with this id has been tracked", status=404, id=0
            )
        return f"/v1/messages/{ref}", {"id": ref}
    return (
        "/v1/messages/by-external-id/" + quote(ref, safe=""),
        {"external_id": ref},
    )


# The body fields of the money calls, as the embedded store names them (the argument given).
_SENT_FIELDS = {"cost_micros": "cost"}
_OUTCOME_FIELDS = {"amount_micros": "impact_amount"}
_BUDGET_FIELDS = {"amount_micros": "amount"}
# A query's user (in its path or its parameters) is the argument ``user_id``.
_QUERY_FIELDS = {"user": "user_id"}

_INVALID_FIELD = re.compile(r"^(?:invalid|missing field|unknown field) `?([A-Za-z_]+)`?")


def _error(
    status: int,
    payload: bytes,
    context: Mapping[str, object],
    rename: Optional[Mapping[str, str]] = None,
) -> CommlogError:
    """The error a non-2xx answer stands for; ``rename`` maps a field of the request body to
    the argument the caller gave (``cost_micros`` is ``cost``), as the embedded store names it."""
    try:
        body = json.loads(payload)
        kind = str(body["kind"])
        message = str(body["error"])
    except (ValueError, KeyError, TypeError):
        text = payload.decode("utf-8", "replace").strip()[:500]
        kind = "unavailable" if status in (502, 503, 504) else "http"
        message = f"HTTP {status}: {text or 'no body'}"
    fields: Dict[str, object] = {"status": status}
    if kind == "unknown_message":
        fields.update(context)
    elif kind == "invalid_input":
        match = _INVALID_FIELD.match(message)
        if match:
            field = match.group(1)
            fields["field"] = (rename or {}).get(field, field)
    return error_from(kind, message, **fields)


class Client:
    """The commlog server's client: ``Client(socket="/var/lib/commlog/commlog.sock")`` or
    ``Client(url="http://127.0.0.1:8080", token=...)``.

    Without ``socket`` or ``url``: ``$COMMLOG_SOCKET``, else ``$COMMLOG_URL``, else
    ``$COMMLOG_DIR/commlog.sock``. The token (TCP only) defaults to ``$COMMLOG_TOKEN``.
    ``timeout`` bounds each connect and each wait for an answer (seconds). ``retries`` is how
    many times a call that is safe to retry is tried again, after 50 ms, 100 ms, 200 ms, …
    """

    def __init__(
        self,
        socket: Optional[str] = None,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = 10.0,
        *,
        retries: int = 4,
        backoff: float = 0.05,
    ) -> None:
        if socket is not None and url is not None:
            raise ValueError("give socket or url, not both")
        if socket is None and url is None:
            socket = os.environ.get("COMMLOG_SOCKET") or None
            if socket is None:
                url = os.environ.get("COMMLOG_URL") or None
            if socket is None and url is None:
                directory = os.environ.get("COMMLOG_DIR")
                if not directory:
                    raise ValueError(
                        "no server: give socket= or url=, or set COMMLOG_SOCKET, COMMLOG_URL or COMMLOG_DIR"
                    )
                socket = os.path.join(directory, "commlog.sock")
        self._socket_path: Optional[str] = os.fspath(socket) if socket is not None else None
        self._scheme = "unix"
        self._host = "localhost"
        self._host_header = "localhost"
        self._port: Optional[int] = None
        self._prefix = ""
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url {url!r} must be http://HOST[:PORT] or https://HOST[:PORT]")
            self._scheme = parts.scheme
            self._host = parts.hostname
            self._port = parts.port
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            self._host_header = host if parts.port is None else f"{host}:{parts.port}"
            self._prefix = parts.path.rstrip("/")
            if any(c <= " " or c == "\x7f" for c in self._prefix):
                raise ValueError(f"url {url!r}: its path must not hold spaces or control characters")
            if token is None:
                token = os.environ.get("COMMLOG_TOKEN") or None
        if token is not None and ("\r" in token or "\n" in token):
            raise ValueError("the token must be one line")
        self._url = url
        self._token = token
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self._local = threading.local()
        # Every live connection, by process (weak: a thread's connection goes with its thread).
        # No lock: a lock held by another thread at a fork would stay locked in the child.
        self._all: Dict[int, "weakref.WeakSet[_Connection]"] = {}

    def __repr__(self) -> str:
        where = f"socket={self._socket_path!r}" if self._socket_path else f"url={self._url!r}"
        return f"Client({where})"

    # -- connections ------------------------------------------------------------------------

    def _connection(self) -> _Connection:
        """This thread's connection in this process: a new one after a fork."""
        pid = os.getpid()
        current: Optional[_Connection] = getattr(self._local, "conn", None)
        if current is not None and current.pid == pid:
            return current
        # A connection inherited from the parent is left alone: closing the child's copy of
        # the descriptor would be harmless, but its buffered state belongs to the parent.
        if self._socket_path is not None:
            conn = _Connection(pid, self._socket_path, None, self.timeout)
        else:
            port = self._port or (443 if self._scheme == "https" else 80)
            tls_host = self._host if self._scheme == "https" else None
            conn = _Connection(pid, (self._host, port), tls_host, self.timeout)
        self._local.conn = conn
        for other in [p for p in self._all if p != pid]:
            self._all.pop(other, None)  # the parent's, after a fork
        self._all.setdefault(pid, weakref.WeakSet()).add(conn)
        return conn

    def _discard(self) -> None:
        current: Optional[_Connection] = getattr(self._local, "conn", None)
        if current is not None and current.pid == os.getpid():
            current.close()
        self._local.conn = None

    def close(self) -> None:
        """Closes this process's connections (every thread's). The client stays usable: a
        later call connects again."""
        pid = os.getpid()
        # The connections stay registered: a thread that calls again reconnects the same
        # connection object (its thread-local still holds it), and a later close reaches it.
        live = self._all.get(pid)
        mine: List[_Connection] = []
        while live is not None:
            try:
                mine = list(live)
                break
            except RuntimeError:  # another thread registered a connection meanwhile: again
                continue
        for conn in mine:
            try:
                conn.close()
            except OSError:
                pass
        self._local.conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------

    def _once(
        self, method: str, path: str, body: Optional[bytes], headers: Dict[str, str]
    ) -> Tuple[int, bytes]:
        conn = self._connection()
        if conn.sock is not None and _dropped(conn.sock):
            conn.close()
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (head + "\r\n").encode("latin-1") + (body or b"")
        try:
            conn.send(request)
        except OSError as error:
            self._discard()
            raise _NotWritten(error) from error
        try:
            status, payload, keep = conn.answer()
        except (OSError, _ProtocolError) as error:
            self._discard()
            raise _Written(error) from error
        if not keep:
            self._discard()
        return status, payload

    def _request(
        self,
        method: str,
        path: str,
        body: Optional[Mapping[str, Any]] = None,
        *,
        query: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        retry_written: bool = False,
        context: Optional[Mapping[str, object]] = None,
        decode: Callable[[bytes], Any] = json.loads,
        rename: Optional[Mapping[str, str]] = None,
    ) -> Any:
        """One call; its answer read by ``decode`` from the JSON bytes. ``retry_written``: the
        request may be sent again after it was written (queries, sends with an idempotency
        key). ``rename``: the caller's names of the body's fields, for a refusal."""
        if query:
            params = {k: v for k, v in query.items() if v is not None}
            if params:
                path = path + "?" + urlencode(params)
        path = self._prefix + path
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        all_headers = {"Host": self._host_header, "Accept": "application/json"}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
            all_headers["Content-Length"] = str(len(data))
        if self._token is not None and self._socket_path is None:
            all_headers["Authorization"] = f"Bearer {self._token}"
        if headers:
            all_headers.update(headers)
        attempt = 0
        while True:
            try:
                status, payload = self._once(method, path, data, all_headers)
            except _NotWritten as wrapper:
                cause: BaseException = wrapper.__cause__ or wrapper
                if isinstance(cause, _socket.timeout) or attempt >= self.retries:
                    raise Unavailable(
                        f"commlog server {self._where()} unavailable: {cause}",
                        "unavailable",
                        outcome="not_applied",
                        attempts=attempt + 1,
                    ) from cause
            except _Written as wrapper:
                cause = wrapper.__cause__ or wrapper
                if not retry_written or isinstance(cause, _socket.timeout) or attempt >= self.retries:
                    raise Unavailable(
                        f"commlog server {self._where()}: no answer to {method} {path} ({cause}); "
                        "the call may or may not have been applied",
                        "unavailable",
                        outcome="unknown",
                        attempts=attempt + 1,
                    ) from cause
            else:
                if 200 <= status < 300:
                    try:
                        return decode(payload) if payload else None
                    except ValueError:
                        raise Unavailable(
                            f"commlog server {self._where()}: answer to {method} {path} is not JSON",
                            "unavailable",
                            status=status,
                        ) from None
                error = _error(status, payload, context or {}, rename)
                if error.kind not in _NOT_APPLIED_KINDS or attempt >= self.retries:
                    raise error
                # The server is stopping and did not apply the call: a restarted one may.
                self._discard()
            time.sleep(self.backoff * (2**attempt))
            attempt += 1

    def _where(self) -> str:
        return f"unix:{self._socket_path}" if self._socket_path else str(self._url)

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
        """Records a message sent; its ``Message`` (``.id`` for the follow-ups).

        ``external_id`` (the provider's message id) makes the call idempotent: the same id
        again returns the message it created (with other fields: ``Conflict``). Without it, an
        ``Idempotency-Key`` made for this call covers its retries."""
        body: Dict[str, Any] = {
            "user_id": _user(user_id),
            "channel": _name(channel, "channel"),
            "message_type": _name(message_type, "message_type"),
            "cost_micros": to_micros(cost, "cost"),
        }
        if sent_at is not None:
            body["sent_at"] = _time(sent_at, "sent_at")
        headers: Dict[str, str] = {}
        if external_id is not None:
            body["external_id"] = to_external_id(external_id)
        else:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        answer: Message = self._request(
            "POST",
            "/v1/messages",
            body,
            headers=headers,
            retry_written=True,
            decode=Message.from_json,
            rename=_SENT_FIELDS,
        )
        return answer

    def _follow_up(
        self, message_id: MessageId, what: str, body: Optional[Dict[str, Any]]
    ) -> Message:
        path, context = _message_path(message_id)
        answer: Message = self._request(
            "POST", f"{path}/{what}", body if body else {}, context=context, decode=Message.from_json
        )
        return answer

    def track_message_delivered(self, message_id: MessageId, delivery_time: TimeLike = None) -> Message:
        """Records the delivery (``None``: now); the message as it now stands."""
        at = _time(delivery_time, "delivery_time")
        return self._follow_up(message_id, "delivered", {"at": at} if at else None)

    def track_message_opened(self, message_id: MessageId, open_time: TimeLike = None) -> Message:
        """Records the open (``None``: now); the message as it now stands."""
        at = _time(open_time, "open_time")
        return self._follow_up(message_id, "opened", {"at": at} if at else None)

    def track_user_action(
        self, message_id: MessageId, action_type: str, timestamp: TimeLike = None
    ) -> Message:
        """Records an action the message led to (a name containing "click" is a click)."""
        body: Dict[str, Any] = {"action": _name(action_type, "action_type")}
        at = _time(timestamp, "timestamp")
        if at:
            body["at"] = at
        return self._follow_up(message_id, "actions", body)

    def track_message_failed(
        self, message_id: MessageId, reason: str, failed_at: TimeLike = None
    ) -> Message:
        """Records a failed delivery and its reason."""
        body: Dict[str, Any] = {"reason": _name(reason, "reason")}
        at = _time(failed_at, "failed_at")
        if at:
            body["at"] = at
        return self._follow_up(message_id, "failed", body)

    def track_financial_outcome(
        self, user_id: int, action: str, impact_amount: MoneyLike, at: TimeLike = None
    ) -> FinancialOutcome:
        """Records a financial outcome of a user (``impact_amount`` in dollars)."""
        body: Dict[str, Any] = {
            "user_id": _user(user_id),
            "outcome": _name(action, "action"),
            "amount_micros": to_micros(impact_amount, "impact_amount"),
        }
        if at is not None:
            body["at"] = _time(at, "at")
        answer: FinancialOutcome = self._request(
            "POST", "/v1/outcomes", body, decode=FinancialOutcome.from_json, rename=_OUTCOME_FIELDS
        )
        return answer

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
        body: Dict[str, Any] = {
            "scope": _name(scope, "scope"),
            "month": to_required_month(month),
            "amount_micros": to_micros(amount, "amount"),
        }
        percent = _percent(alert_percent)
        if percent is not None:
            body["alert_percent"] = percent
        answer: Dict[str, Any] = dict(
            self._request("PUT", "/v1/budgets", body, rename=_BUDGET_FIELDS)
        )
        answer["amount"] = micros_to_dollars(answer["amount_micros"])
        return answer

    # -- queries ----------------------------------------------------------------------------

    def _get(
        self,
        path: str,
        query: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, object]] = None,
        decode: Callable[[bytes], Any] = json.loads,
    ) -> Any:
        return self._request(
            "GET",
            path,
            query=query,
            retry_written=True,
            context=context,
            decode=decode,
            rename=_QUERY_FIELDS,
        )

    def message(self, id_or_external_id: MessageId) -> Message:
        """A message by its id (int) or its external id (str)."""
        path, context = _message_path(id_or_external_id, "id_or_external_id")
        answer: Message = self._get(path, context=context, decode=Message.from_json)
        return answer

    def message_by_external_id(self, external_id: str) -> Optional[Message]:
        """The message sent with this external id, or None."""
        ref = to_external_id(external_id)
        try:
            return self.message(ref)
        except UnknownMessage:
            return None

    def get_external_id(self, message_id: int) -> Optional[str]:
        """The external id a message was sent with, or None."""
        if not isinstance(to_ref(message_id, "message_id"), int):
            raise InvalidInput(
                f"message_id {message_id!r} is not a message id (int)",
                field="message_id",
                value=repr(message_id),
            )
        path, context = _message_path(message_id)
        answer = self._get(f"{path}/external-id", context=context)
        external_id: Optional[str] = answer["external_id"]
        return external_id

    def get_user_communication_history(self, user_id: int, limit: int = 50) -> List[Message]:
        """The user's messages, newest sent first, at most ``limit``."""
        count = to_limit(limit)
        # The server refuses limit 0, which the store answers with no message: ask for one
        # (so that the user id is still checked) and answer none.
        answer: List[Message] = self._get(
            f"/v1/users/{_user(user_id)}/history", {"limit": max(count, 1)}, decode=messages_from_json
        )
        return answer if count else []

    @staticmethod
    def _filter(
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
    ) -> Dict[str, Any]:
        return {
            "user": _opt_user(user_id),
            "type": _opt_name(message_type, "message_type"),
            "channel": _opt_name(channel, "channel"),
            "start": _time(start_date, "start_date"),
            "end": _time(end_date, "end_date"),
        }

    def get_communication_stats(
        self,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
    ) -> Stats:
        """Counts, rates (percent) and costs of the messages matching every filter given."""
        query = self._filter(user_id, message_type, channel, start_date, end_date)
        return Stats(self._get("/v1/stats", query))

    def get_user_engagement(
        self,
        user_id: int,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
    ) -> View:
        """How the user engages: by channel, by message type, by hour, trend, preferred channel."""
        query = self._filter(None, message_type, channel, start_date, end_date)
        return View(self._get(f"/v1/engagement/{_user(user_id)}", query))

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
        query = self._filter(user_id, message_type, None, start_date, end_date)
        query["period"] = to_period(period)
        return View(self._get("/v1/channels", query))

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
        query = self._filter(user_id, message_type, channel, start_date, end_date)
        query["month"] = _month(month)
        return View(self._get("/v1/costs", query))

    def get_financial_impact(
        self,
        user_id: Optional[int] = None,
        message_type: Optional[str] = None,
        channel: Optional[str] = None,
        start_date: TimeLike = None,
        end_date: TimeLike = None,
    ) -> View:
        """The outcomes, attributed to the messages that preceded them, and each channel's ROI."""
        query = self._filter(user_id, message_type, channel, start_date, end_date)
        return View(self._get("/v1/impact", query))

    def info(self) -> Dict[str, Any]:
        """The server's ``/v1/info``: version, store directory, sync policy, counts."""
        return dict(self._get("/v1/info"))

    def health(self) -> bool:
        """True if the server answers ``/healthz``."""
        try:
            return bool(self._get("/healthz").get("status") == "ok")
        except CommlogError:
            return False
