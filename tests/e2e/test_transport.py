"""Limits of the HTTP transport (app/protocol.py), each against a real `xentropy serve`.

(a) Request heads: at most XENTROPY_MAX_HEADER_BYTES (431), XENTROPY_MAX_HEADER_COUNT
    fields (431), a target of at most XENTROPY_MAX_URL_BYTES (414); a 100 MiB header line
    no longer stalls everyone else's /healthz (it did for 7-12 s, and was then answered 200).
(b) XENTROPY_HEADER_TIMEOUT: a partial head gets 408, an idle connection is closed.
(c) XENTROPY_MAX_CONNECTIONS: 1 100 idle connections under a 1 024-descriptor limit do
    not lock a new client out (they did: about 1 010 of them and nobody was served);
    when every connection has a request in progress, a new one gets 503.
(d) XENTROPY_WRITE_TIMEOUT: a client that never reads its response does not keep the
    response's memory.
Keep-alive and pipelined requests are served as before.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import Server, start_server, stop_server, wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

MAX_HEAD = 64 * 1024  # the defaults
MAX_URL = 8 * 1024
MAX_FIELDS = 100
HEADER_TIMEOUT = 1.0


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` on a new connection, read until the server closes it; returns what
    was read and after how long the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        t0 = time.monotonic()
        s.sendall(data)
        answer = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        return answer, time.monotonic() - t0


def head_of(size: int, *, extra: bytes = b"") -> bytes:
    """A GET /healthz whose head (request line, headers, final blank line) is ``size``
    bytes long."""
    start = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra + b"X-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


def status_and_detail(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["detail"] if status >= 400 else ""


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_server(env={"XENTROPY_HEADER_TIMEOUT": str(HEADER_TIMEOUT)})
    yield s
    stop_server(s)


# ------------------------------------------------------------------------------ (a)


def test_a_head_at_the_limit_is_served_and_one_byte_more_is_431(server):
    port = port_of(server)
    answer, _ = exchange(port, head_of(MAX_HEAD))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    answer, closed_after = exchange(port, head_of(MAX_HEAD + 1))
    status, detail = status_and_detail(answer)
    assert status == 431 and f"limit of {MAX_HEAD} bytes" in detail
    assert b"connection: close" in answer.lower() and closed_after < 2


def test_more_header_fields_than_the_limit_is_431(server):
    port = port_of(server)
    def fields(n: int) -> bytes:  # Host and Connection are two of them
        return b"".join(b"X-F%d: 1\r\n" % i for i in range(n - 2))
    answer, _ = exchange(port, head_of(2048, extra=fields(MAX_FIELDS - 1)))  # + X-Pad
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    answer, _ = exchange(port, head_of(2048, extra=fields(MAX_FIELDS)))
    status, detail = status_and_detail(answer)
    assert status == 431 and f"more than {MAX_FIELDS} header fields" in detail


def test_a_request_target_longer_than_the_limit_is_414(server):
    port = port_of(server)
    def get(target_size: int) -> bytes:
        target = b"/healthz?q=" + b"a" * (target_size - len(b"/healthz?q="))
        return b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert exchange(port, get(MAX_URL))[0].startswith(b"HTTP/1.1 200 ")
    status, detail = status_and_detail(exchange(port, get(MAX_URL + 1))[0])
    assert status == 414 and f"limit of {MAX_URL} bytes" in detail


def test_a_100_mib_header_line_does_not_stall_anyone(server):
    """FIX (severe): one connection sending a 100 MiB header line stalled /healthz on every
    other connection for 7.7-25 s (httptools joins the pieces of a header quadratically, on
    the event loop), peaked the server at 270 MiB, and was then answered 200. Now the head
    is refused at the limit: for two seconds, two attackers at a time each try to send
    100 MiB of header line on a new connection, while /healthz is probed."""
    port = port_of(server)
    pid = server.process.pid
    hwm_before = vm_kib(pid, "VmHWM")
    until = time.monotonic() + 2.0
    attempts: list[tuple[float, int]] = []  # (seconds, MiB the server let in)

    def attack() -> None:
        megabyte = b"a" * (1 << 20)
        while time.monotonic() < until:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                t0 = time.monotonic()
                sent = 0
                try:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
                    for _ in range(100):
                        s.sendall(megabyte)
                        sent += 1
                    s.sendall(b"\r\n\r\n")
                except OSError:
                    pass  # closed by the server, as it should
                attempts.append((time.monotonic() - t0, sent))

    attackers = [threading.Thread(target=attack) for _ in range(2)]
    latencies = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for t in attackers:
            t.start()
        while any(t.is_alive() for t in attackers):
            t0 = time.monotonic()
            assert http.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.01)
    for t in attackers:
        t.join()
    assert attempts and all(sent < 100 for _, sent in attempts), "a 100 MiB head got in"
    assert max(took for took, _ in attempts) < 2
    assert len(latencies) >= 10
    assert max(latencies) < 0.5, f"/healthz took {max(latencies):.2f} s during the attack"
    growth_mib = (vm_kib(pid, "VmHWM") - hwm_before) / 1024
    assert growth_mib < 16, f"peak RSS grew by {growth_mib:.0f} MiB"


def test_keep_alive_and_pipelined_requests_are_served(server):
    port = port_of(server)
    get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    last = b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    answer, _ = exchange(port, get * 20 + last)
    assert answer.count(b"HTTP/1.1 200 OK") == 21
    with httpx.Client(base_url=server.url, timeout=5) as http:  # one connection, reused
        for _ in range(20):
            r = http.post("/v1/losses/categorical", json={"logits": [[1.0, 2.0]], "labels": [1]})
            assert r.status_code == 200


def test_transport_refusals_are_counted_and_logged(server):
    exchange(port_of(server), head_of(MAX_HEAD + 1))
    metrics = httpx.get(server.url + "/metrics", timeout=5).text
    assert 'xentropy_http_refused_total{reason="header_too_large"}' in metrics
    lines = [json.loads(x) for x in server.output().splitlines() if x.startswith("{")]
    refused = [x for x in lines if x.get("reason") == "header_too_large"]
    assert refused and refused[0]["status"] == 431 and refused[0]["route"] == "<transport>"


# ------------------------------------------------------------------------------ (b)


def test_a_partial_head_gets_408_after_the_header_timeout(server):
    answer, closed_after = exchange(port_of(server), b"POST /v1/losses/categorical HTTP/1.1\r\nHo")
    status, detail = status_and_detail(answer)
    assert status == 408 and "head was not received within 1 s" in detail
    assert HEADER_TIMEOUT - 0.1 < closed_after < HEADER_TIMEOUT + 1.5


def test_an_idle_connection_is_closed_after_the_header_timeout(server):
    answer, closed_after = exchange(port_of(server), b"")
    assert answer == b""
    assert HEADER_TIMEOUT - 0.1 < closed_after < HEADER_TIMEOUT + 1.5


# ------------------------------------------------------------------------------ (c)


def _fd_limit_1024() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_idle_connections_cannot_lock_everyone_out():
    """FIX: about 1 010 idle connections exhausted a 1 024-descriptor limit and nobody was
    served again. With the limit fitted to the descriptors, a new connection closes the one
    idle longest; the idle ones also go at the header timeout."""
    server = start_server(env={"XENTROPY_HEADER_TIMEOUT": "3"}, preexec_fn=_fd_limit_1024)
    idle: list[socket.socket] = []
    try:
        pid = server.process.pid
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", port_of(server)), timeout=5))
        time.sleep(0.3)
        assert open_fds(pid) < 1024
        t0 = time.monotonic()
        for _ in range(5):
            with httpx.Client(base_url=server.url, timeout=5) as http:
                assert http.get("/healthz").status_code == 200  # (was: ReadTimeout)
        assert time.monotonic() - t0 < 2.5
        # the connection limit was fitted to the descriptors, and says so
        assert "serving at most 960 connections" in server.output()
        limit = httpx.get(server.url + "/v1/info", timeout=5).json()["limits"]
        assert limit["max_connections"] == 960
        # ... and what was left of the flood is gone at the header timeout.
        wait_for(lambda: open_fds(pid) < 100, 6, "idle connections to be closed")
    finally:
        for s in idle:
            s.close()
        stop_server(server)


def test_a_new_connection_gets_503_when_every_connection_is_busy():
    server = start_server(env={"XENTROPY_MAX_CONNECTIONS": "3", "XENTROPY_BODY_TIMEOUT": "3"})
    busy: list[socket.socket] = []
    try:
        for _ in range(3):  # requests in progress: headers sent, body awaited
            s = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
            s.sendall(b"POST /v1/losses/categorical HTTP/1.1\r\nHost: t\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            busy.append(s)
        time.sleep(0.3)
        get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        answer, closed_after = exchange(port_of(server), get)
        status, detail = status_and_detail(answer)
        assert status == 503 and "too many connections" in detail
        assert b"retry-after: 1" in answer.lower() and closed_after < 2
    finally:
        for s in busy:
            s.close()
        stop_server(server)


# ------------------------------------------------------------------------------ (d)


def test_a_client_that_never_reads_does_not_keep_its_response():
    """FIX: a client that never read its answer kept the answer's bytes in the server's
    write buffer for as long as it stayed connected (4 × 253 MiB held 1 GB)."""
    server = start_server(env={"XENTROPY_WRITE_TIMEOUT": "1"})
    try:
        pid = server.process.pid
        rows, cols = 1000, 2000  # a ~45 MB answer: the gradient and per-sample losses
        logits = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
        body = json.dumps({
            "logits": {"dtype": "float32", "shape": [rows, cols],
                       "data": base64.b64encode(logits.tobytes()).decode()},
            "labels": [0] * rows, "reduction": "none", "return_gradient": True,
        }).encode()
        baseline = vm_kib(pid, "VmRSS")
        s = socket.create_connection(("127.0.0.1", port_of(server)), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"POST /v1/losses/categorical HTTP/1.1\r\nHost: t\r\n"
                  b"Content-Type: application/json\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
        try:
            wait_for(lambda: vm_kib(pid, "VmRSS") > baseline + 30 * 1024, 20,
                     "the answer to be buffered")
            t_full = time.monotonic()
            wait_for(lambda: vm_kib(pid, "VmRSS") < baseline + 20 * 1024, 10,
                     "the buffered answer to be freed")
            assert time.monotonic() - t_full < 5
            metrics = httpx.get(server.url + "/metrics", timeout=5).text
            assert 'xentropy_http_refused_total{reason="write_timeout"} 1.0' in metrics
        finally:
            s.close()
    finally:
        stop_server(server)
