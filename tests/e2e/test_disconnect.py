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
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "499" not in server.output():
        time.sleep(0.1)
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    assert any(entry.get("status") == 499 for entry in lines)
    assert "Traceback" not in server.output()
    assert httpx.get(server.url + "/healthz").status_code == 200
