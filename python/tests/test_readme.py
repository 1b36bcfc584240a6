"""The README's example of the client runs as written, against a real server."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import Server

README = Path(__file__).resolve().parents[1] / "README.md"


def client_example() -> str:
    """The README's Python block that makes a ``Client``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    examples = [block for block in blocks if "Client(socket=" in block]
    assert len(examples) == 1, "one example of the client in the README"
    return examples[0]


def test_the_readme_client_example_runs(server: Server) -> None:
    example = client_example()
    socket = re.search(r'Client\(socket="([^"]+)"\)', example)
    assert socket is not None
    code = example.replace(socket.group(1), server.socket)
    names: dict = {}
    exec(compile(code, str(README), "exec"), names)
    client = names["client"]
    try:
        assert client.get_external_id(names["m"].id) == "SM123"
        assert client.message_by_external_id("SM999") is None
        assert client.message("SM123").status == "clicked"
    finally:
        client.close()
