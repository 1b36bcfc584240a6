"""A fake ``commlog serve`` on a Unix socket that answers canned bytes, for the client's
transport tests."""

from __future__ import annotations

import re
import socket
import threading
from typing import List, Optional


class FakeServer:
    """Answers each request with the next of ``answers`` (raw bytes), on one connection as long
    as the client keeps it; ``None`` closes the connection after reading the request. An answer
    with ``Connection: close`` closes the connection after it is sent."""

    def __init__(self, path: str, answers: List[Optional[bytes]]) -> None:
        self.path = path
        self.answers = list(answers)
        self.requests: List[bytes] = []
        self.connections = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.answers:
                    request = self._read_request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    answer = self.answers.pop(0)
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if re.search(rb"(?i)\r\nconnection: *close\r\n", answer):
                        break

    @staticmethod
    def _read_request(conn: socket.socket) -> Optional[bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        while match and len(body) < int(match.group(1)):
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)
