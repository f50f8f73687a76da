"""A client that leaves while its body streams in is not a server error."""

from __future__ import annotations

import json
import socket
import time

import httpx


def test_client_leaving_mid_body_is_logged_as_499_without_a_traceback(server):
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/losses/categorical HTTP/1.1\r\nHost: t\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"logits\":")
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and 499 not in _statuses(server.output()):
        time.sleep(0.1)
    assert 499 in _statuses(server.output())
    assert "Traceback" not in server.output()
    assert httpx.get(server.url + "/healthz").status_code == 200


def _statuses(output: str) -> list[int]:
    statuses = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                statuses.append(json.loads(line).get("status"))
            except json.JSONDecodeError:  # a line still being written
                pass
    return statuses
