"""Fixtures: a real ``commlog-serve`` on a temporary store, driven over its Unix socket.

The binary is ``$COMMLOG_SERVE_BIN``, else ``../target/release/commlog-serve`` relative to
``python/`` (``cargo build --release -p commlog-server --bin commlog-serve``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
if find_spec("commlog") is None:
    sys.path.append(str(PYTHON_DIR))


def serve_binary() -> Path:
    """The ``commlog-serve`` binary; skips the test if it was not built."""
    configured = os.environ.get("COMMLOG_SERVE_BIN")
    path = Path(configured) if configured else PYTHON_DIR.parent / "target" / "release" / "commlog-serve"
    if not path.is_file():
        pytest.skip(
            f"no commlog-serve binary at {path} (build it with "
            "`cargo build --release -p commlog-server --bin commlog-serve` or set COMMLOG_SERVE_BIN)"
        )
    return path


def native_built() -> bool:
    """True if the embedded store's native module ``commlog._native`` can be imported."""
    try:
        import commlog._native  # noqa: F401
    except ImportError:
        return False
    return True


class Server:
    """A ``commlog-serve`` process on ``DIR/store`` (socket ``DIR/store/commlog.sock``)."""

    def __init__(self, root: Path, extra: Optional[List[str]] = None) -> None:
        self.root = root
        self.dir = root / "store"
        self.socket = str(self.dir / "commlog.sock")
        self.log = root / "serve.log"
        self.extra = list(extra or [])
        self.process: Optional[subprocess.Popen[bytes]] = None

    def start(self, timeout: float = 30.0) -> "Server":
        binary = serve_binary()
        env = {k: v for k, v in os.environ.items() if k != "COMMLOG_TOKEN"}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(binary), "--dir", str(self.dir), "--sync", "always", *self.extra],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"commlog-serve exited with {self.process.returncode}: {self.log.read_text()}"
                )
            if self._answers():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"commlog-serve did not start: {self.log.read_text()}")
            time.sleep(0.01)

    def _answers(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(self.socket)
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return probe.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
        finally:
            probe.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError("commlog-serve did not stop on SIGTERM")
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (a Unix socket path has at most 107 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="cl-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(short_tmp: Path) -> Iterator[Server]:
    """A running server on a fresh store, stopped (SIGTERM) at teardown."""
    srv = Server(short_tmp).start()
    try:
        yield srv
    finally:
        try:
            code = srv.stop()
        finally:
            srv.kill()
        assert code == 0, f"commlog-serve exit status {code}: {srv.log.read_text()}"


@pytest.fixture
def both(server: Server, short_tmp: Path) -> Iterator[Tuple[Any, Any]]:
    """An embedded ``Store`` and a ``Client`` of ``server``, each on a store of its own, to
    compare their answers (needs the native module: its tests skip without it)."""
    from commlog.client import Client
    from commlog.store import Store

    store = Store(short_tmp / "embedded")
    client = Client(socket=server.socket)
    try:
        yield store, client
    finally:
        store.close()
        client.close()


@pytest.fixture
def client(server: Server) -> Iterator["object"]:
    from commlog.client import Client

    c = Client(socket=server.socket)
    try:
        yield c
    finally:
        c.close()
