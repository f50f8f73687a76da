"""Faults under load, each against real `xentropy serve` processes and bounded in time.

The load is bench/load.py's mix (every answer compared byte for byte with the in-process
answer); tests/e2e/test_production.py already holds the single-worker SIGTERM drain with
slow uploads, the graceful-timeout bound and the replaced worker's metrics.

(a) SIGTERM to two workers under load: served through the drain delay, in-flight
    requests complete, then new connections are refused (not accepted and reset), exit 0.
(b) SIGKILL of one worker under load: only the killed worker's in-flight requests fail
    (transport errors, no HTTP answer at all), the supervisor replaces it within 5 s and
    the replacement serves; no wrong answer anywhere.
(c) A client sending one byte a second gets a 408 at XENTROPY_BODY_TIMEOUT (+1 s) and its
    connection closed, while other clients are served.
(d) Eight clients just over the byte limit and eight just over the element limit at once:
    all 413, the workers' peak memory bounded, the server healthy after.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.load import (
    Kind,
    Record,
    ServerProcess,
    drive_in_thread,
    expected_answers,
    request_mix,
    start,
    stop,
)
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

CLIENTS = 16


@pytest.fixture(scope="module")
def kinds() -> list[Kind]:
    mix = request_mix()
    expected_answers(mix)
    return mix


def answered_wrongly(records: list[Record]) -> list[Record]:
    """Requests that got an HTTP answer other than the expected bytes (a wrong value, an
    unexpected status, a 5xx): never acceptable, whatever the fault."""
    return [r for r in records if r.outcome == "wrong" or r.outcome.startswith("status:")]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.fixture()
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(workers: int, **kwargs: Any) -> ServerProcess:
        server = start(workers, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        stop(server)


# ------------------------------------------------------------------------------ (a)


def trickle(seconds: float) -> Iterator[bytes]:
    """A valid categorical body sent in 20 pieces over ``seconds``."""
    rows = 19
    yield b'{"labels": [' + b", ".join([b"0"] * rows) + b'], "logits": ['
    for i in range(rows):
        time.sleep(seconds / 20)
        yield b"[2.0, 1.0, 0.1]" + (b"," if i < rows - 1 else b"]}")


def test_sigterm_under_load_drains_then_refuses_new_connections(server_factory, kinds):
    drain = 1.0
    server = server_factory(2, env={"XENTROPY_DRAIN_DELAY": str(drain),
                                    "XENTROPY_GRACEFUL_TIMEOUT": "10"})
    thread, run, stop_load = drive_in_thread(server.url, kinds, clients=CLIENTS, seconds=40,
                                             timeout=15)
    # One long request in flight across the whole shutdown: an upload that ends 2 s after
    # the listener closed. It must complete, and nobody may wait for it to be refused.
    slow: list[Any] = []
    uploader = threading.Thread(target=lambda: slow.append(httpx.post(
        server.url + "/v1/losses/categorical", content=trickle(drain + 3.0), timeout=30,
        headers={"content-type": "application/json"})))
    try:
        wait_for(lambda: sum(r.outcome == "ok" for r in run.records) > 100, 20, "load")
        uploader.start()
        time.sleep(0.3)
        t_term = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=20)
        t_exit = time.monotonic()
        time.sleep(0.5)  # the load goes on against the closed port
    finally:
        stop_load.set()
        thread.join(timeout=30)
        uploader.join(timeout=30)
    records = list(run.records)
    assert code == 0
    assert slow and slow[0].status_code == 200, slow
    assert not answered_wrongly(records)
    errors = [r for r in records if r.outcome.startswith("error:")]
    assert errors, "the load never noticed the shutdown"
    # Served through the drain delay (load balancers see /readyz 503 and move away).
    assert all(r.outcome == "ok" for r in records if r.end <= t_term + drain)
    assert any(r.outcome == "ok" and r.start > t_term + 0.5 * drain for r in records)
    # The listener closed at the first refusal; what was in flight then completed.
    t_close = min(r.start for r in errors)
    in_flight = [r for r in records if r.start < t_close < r.end]
    assert in_flight and all(r.outcome == "ok" for r in in_flight), in_flight
    # New connections are refused at once; at most a connection per client can have been
    # queued in the last instant before the last worker closed the socket.
    not_refused = [r for r in errors if r.outcome != "error:ConnectError"]
    assert len(not_refused) <= CLIENTS, not_refused
    hung = [r for r in errors if r.end - r.start > 0.5]
    assert not hung, f"{len(hung)} clients hung on a listener nobody served"
    assert all(r.outcome == "error:ConnectError" for r in records if r.start > t_exit)
    assert t_exit - t_term < drain + 10


# ------------------------------------------------------------------------------ (b)


def test_sigkill_of_a_worker_under_load(server_factory, kinds):
    server = server_factory(2)
    workers = server.workers()
    assert len(workers) == 2
    thread, run, stop_load = drive_in_thread(server.url, kinds, clients=CLIENTS, seconds=40,
                                             timeout=15)
    try:
        wait_for(lambda: sum(r.outcome == "ok" for r in run.records) > 100, 20, "load")
        victim = min(workers)
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(
            lambda: (w := server.workers()) and len(w) == 2 and victim not in w and w, 5,
            "a replacement worker")
        t_replaced = time.monotonic()
        (new,) = replaced - workers
        ticks = cpu_ticks(new)
        wait_for(lambda: cpu_ticks(new) > ticks + 10, 10, "the replacement to serve")
        time.sleep(max(0.0, t_kill + 4 - time.monotonic()))  # two more seconds of load
        t_end = time.monotonic()
    finally:
        stop_load.set()
        thread.join(timeout=30)
    records = list(run.records)
    assert not answered_wrongly(records)
    assert t_replaced - t_kill < 5
    # Answers went on (the other worker), and came within 5 s of the kill in any case.
    assert any(r.outcome == "ok" and r.start > t_kill and r.end < t_kill + 5 for r in records)
    # Only the requests in flight on the killed worker failed, right at the kill, with no
    # HTTP answer at all: at most one per client connection.
    errors = [r for r in records if r.outcome.startswith("error:")]
    assert len(errors) <= CLIENTS, errors
    assert all(t_kill - 15 < r.start < t_kill + 1 and r.end < t_kill + 2 for r in errors), errors
    later = [r for r in records if t_kill + 2 < r.start and r.end < t_end]
    assert later and all(r.outcome == "ok" for r in later)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0


# ------------------------------------------------------------------------------ (c)


def slow_upload(port: int, *, seconds: float, declared: int = 1000) -> tuple[float | None, bytes]:
    """Send headers, then one body byte a second; returns (seconds until the server closed
    the connection, or None, and what it answered)."""
    body = b'{"logits": [[1, 2]], "labels": [0]}'.ljust(declared)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/losses/categorical HTTP/1.1\r\nHost: test\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: " + str(declared).encode() + b"\r\n\r\n")
        t0 = time.monotonic()
        s.settimeout(0.05)
        answer = b""
        sent = 0
        next_byte = t0
        while time.monotonic() - t0 < seconds:
            if time.monotonic() >= next_byte:
                try:
                    s.send(body[sent:sent + 1])
                    sent += 1
                except OSError:
                    pass  # closed by the server
                next_byte += 1.0
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - t0, answer
            if not chunk:
                return time.monotonic() - t0, answer
            answer += chunk
    return None, answer


def test_slow_client_gets_408_and_others_are_served(server_factory):
    timeout = 2.0
    server = server_factory(1, env={"XENTROPY_BODY_TIMEOUT": str(timeout)})
    port = int(server.url.rsplit(":", 1)[1])
    results: list[tuple[float | None, bytes]] = []
    slow = [threading.Thread(target=lambda: results.append(slow_upload(port, seconds=8)))
            for _ in range(4)]
    for t in slow:
        t.start()
    # Meanwhile, one worker serves everyone else without delay.
    body = {"logits": [[2.0, 1.0, 0.1]], "labels": [0]}
    latencies = []
    with httpx.Client(base_url=server.url, timeout=5) as http:
        t_start = time.monotonic()
        while time.monotonic() - t_start < timeout:
            t0 = time.monotonic()
            assert http.post("/v1/losses/categorical", json=body).status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
    for t in slow:
        t.join(timeout=15)
    assert len(results) == 4
    for closed_after, answer in results:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"connection: close" in answer.lower()
        assert b"not received within 2 s" in answer
        assert closed_after is not None and closed_after < timeout + 1.0, closed_after
    assert max(latencies) < 1.0 and len(latencies) > 10


# ------------------------------------------------------------------------------ (d)


def peak_rss_kib(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total


def test_limits_hold_under_concurrency(server_factory):
    limit_bytes, limit_elements = 1 << 20, 100_000
    server = server_factory(2, env={"XENTROPY_MAX_BODY_BYTES": str(limit_bytes),
                                    "XENTROPY_MAX_ELEMENTS": str(limit_elements)})
    workers = server.workers()
    # Just over the byte limit: a valid request padded with whitespace to limit + 1 bytes.
    core = b'{"logits": [[2.0, 1.0, 0.1]], "labels": [0]}'
    too_big = core[:-1] + b" " * (limit_bytes + 1 - len(core)) + b"}"
    # Just over the element limit, well under the byte limit: 100 002 numbers in 400 kB.
    n = limit_elements // 2 + 1
    too_many = (b'{"logits": [' + b"0.5," * (n - 1) + b'0.5], "targets": ['
                + b"1," * (n - 1) + b"0]}")
    assert len(too_many) < limit_bytes
    for _ in range(2):  # warm both workers up to the same code paths first
        httpx.post(server.url + "/v1/losses/binary", content=too_many,
                   headers={"content-type": "application/json"}, timeout=30)
    before = peak_rss_kib(workers)
    statuses: list[tuple[str, int, str]] = []

    def send(what: str, body: bytes, chunked: bool) -> None:
        content: Any = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) \
            if chunked else body
        path = "/v1/losses/categorical" if what == "bytes" else "/v1/losses/binary"
        try:
            r = httpx.post(server.url + path, content=content, timeout=30,
                           headers={"content-type": "application/json"})
            statuses.append((what, r.status_code, r.text))
        except httpx.TransportError as exc:
            statuses.append((what, 0, repr(exc)))

    threads = [threading.Thread(target=send, args=("bytes", too_big, k % 2 == 0))
               for k in range(8)]
    threads += [threading.Thread(target=send, args=("elements", too_many, False))
                for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(statuses) == 16
    for what, status, text in statuses:
        assert status == 413, (what, status, text[:200])
        assert ("limit" in text) and ("elements" in text if what == "elements" else True)
    growth_mib = (peak_rss_kib(workers) - before) / 1024
    # 16 requests of about 1 MiB each, at once: each holds its body and, for the element
    # count, its parsed arrays (~100 000 numbers): tens of MiB at most, never unbounded.
    assert growth_mib < 64, f"peak RSS of the workers grew by {growth_mib:.0f} MiB"
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    r = httpx.post(server.url + "/v1/losses/categorical", content=core,
                   headers={"content-type": "application/json"}, timeout=5)
    assert r.status_code == 200
