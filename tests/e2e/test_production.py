"""`xentropy serve` as production runs it: real uvicorn processes on loopback.

SIGTERM drains in-flight requests, a killed worker is replaced, metrics add up over
workers, API keys and JSON access logs work end to end. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import cli
from bench.load import worker_pids as workers_of
from tests.e2e.conftest import Server, start_server, stop_server, wait_for

CAT = "/v1/losses/categorical"
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def metric(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def slow_body(rows: int, seconds: float) -> Iterator[bytes]:
    """A valid categorical request, uploaded over ``seconds``: the request stays in
    flight (its handler waits for the body) for as long as the test needs."""
    parts = [b'{"labels": [' + b", ".join([b"0"] * rows) + b'], "logits": [']
    parts += [b"[2.0, 1.0, 0.1]" + (b"," if i < rows - 1 else b"") for i in range(rows)]
    parts.append(b"]}")
    pause = seconds / len(parts)
    for part in parts:
        time.sleep(pause)
        yield part


def test_sigterm_drains_in_flight_requests_then_exits_0():
    server = start_server(env={"XENTROPY_DRAIN_DELAY": "1.0", "XENTROPY_GRACEFUL_TIMEOUT": "15"})
    try:
        results: list[httpx.Response | BaseException] = []

        def post() -> None:
            try:
                results.append(httpx.post(
                    server.url + CAT, content=slow_body(12, 3.0), timeout=20,
                    headers={"content-type": "application/json"},
                ))
            except BaseException as exc:  # reported below
                results.append(exc)

        threads = [threading.Thread(target=post) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: metric(server, "xentropy_http_requests_in_progress", method="POST") == 3,
                 5, "three requests in flight")
        server.process.send_signal(signal.SIGTERM)
        t_term = time.monotonic()

        # Draining: /readyz says so (the listener stays open XENTROPY_DRAIN_DELAY s)...
        ready = wait_for(lambda: httpx.get(server.url + "/readyz", timeout=2), 1, "readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        assert httpx.get(server.url + "/healthz", timeout=2).status_code == 200

        # ... then new connections are refused while the requests still run.
        def refused() -> bool:
            try:
                httpx.get(server.url + "/healthz", timeout=1)
            except httpx.ConnectError:
                return True
            return False

        wait_for(refused, 3, "the listener to close")
        assert time.monotonic() - t_term >= 0.9
        assert any(t.is_alive() for t in threads), "requests finished before the drain"

        for t in threads:
            t.join(timeout=20)
        assert len(results) == 3
        for r in results:
            assert isinstance(r, httpx.Response), r
            assert r.status_code == 200 and r.json()["n_samples"] == 12
        assert server.process.wait(timeout=15) == 0
        logged = [json.loads(line) for line in server.output().splitlines()
                  if line.startswith("{")]
        assert [x["status"] for x in logged if x["route"] == CAT] == [200, 200, 200]
    finally:
        stop_server(server)


def test_graceful_timeout_bounds_the_drain():
    server = start_server("--graceful-timeout", "1")
    try:
        outcome: list[object] = []

        def post() -> None:
            try:
                outcome.append(httpx.post(
                    server.url + CAT, content=slow_body(12, 8.0), timeout=20,
                    headers={"content-type": "application/json"},
                ).status_code)
            except httpx.TransportError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=post)
        thread.start()
        wait_for(lambda: metric(server, "xentropy_http_requests_in_progress", method="POST") == 1,
                 5, "a request in flight")
        t_term = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
        assert time.monotonic() - t_term < 4  # 1 s for the request, not the 8 it needed
        thread.join(timeout=15)
        # The upload was cut short by the shutdown: a 503 (or, if the client was still
        # sending when the server closed, a transport error), logged as 503.
        assert outcome and (outcome[0] == 503 or isinstance(outcome[0], httpx.TransportError))
        logged = [json.loads(line) for line in server.output().splitlines()
                  if line.startswith("{")]
        assert [x["status"] for x in logged if x["route"] == CAT] == [503]
    finally:
        stop_server(server)


def test_graceful_timeout_holds_with_handlers_that_cannot_be_interrupted():
    """FIX: with XENTROPY_GRACEFUL_TIMEOUT=1 and three CPU-bound requests in flight (plain
    `def` handlers, each holding a worker thread), the process exited 4.8-11.7 s after
    SIGTERM, when the computations ended, and the clients got 500 (logged 499). Now each
    gets a 503 with Retry-After at the timeout, logged as 503, and the process exits."""
    server = start_server("--graceful-timeout", "1", module="tests.e2e.slow_app")
    try:
        answers: list[httpx.Response | BaseException] = []

        def get() -> None:
            try:
                answers.append(httpx.get(server.url + "/test/busy?seconds=8", timeout=20))
            except BaseException as exc:  # reported below
                answers.append(exc)

        threads = [threading.Thread(target=get) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: metric(server, "xentropy_http_requests_in_progress", method="GET") == 4,
                 5, "three requests in flight")  # and this /metrics request
        t_term = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
        exited_after = time.monotonic() - t_term
        for t in threads:
            t.join(timeout=10)
        assert exited_after < 2.5, f"exited {exited_after:.1f} s after SIGTERM"
        assert len(answers) == 3
        for r in answers:
            assert isinstance(r, httpx.Response), r
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "shutting down" in r.json()["detail"] and r.headers["x-request-id"]
        logged = [json.loads(line) for line in server.output().splitlines()
                  if line.startswith("{")]
        assert [x["status"] for x in logged if x["route"] == "/test/busy"] == [503] * 3
        assert "exiting without waiting for them" in server.output()
    finally:
        stop_server(server)


def test_killed_worker_is_replaced_and_metrics_add_up():
    server = start_server("--workers", "2", env={"XENTROPY_METRICS_REQUIRE_KEY": "false"})
    try:
        parent = server.process.pid
        workers = wait_for(lambda: len(workers_of(parent)) == 2 and workers_of(parent), 20,
                           "two workers")
        environ = Path(f"/proc/{min(workers)}/environ").read_bytes().split(b"\0")
        (multiproc,) = [e.split(b"=", 1)[1].decode() for e in environ
                        if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
        assert Path(multiproc).is_dir()

        # fresh connections, spread over both workers; /metrics sums every worker
        for _ in range(20):
            assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        assert metric(server, "xentropy_http_requests_total", route="/healthz") >= 20

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        t_kill = time.monotonic()

        def answers() -> bool:
            try:
                return httpx.get(server.url + "/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, 5, "an answer after the kill")
        assert time.monotonic() - t_kill < 5
        replaced = wait_for(
            lambda: (w := workers_of(parent)) and len(w) == 2 and victim not in w and w, 15,
            "a replacement worker",
        )
        assert victim not in replaced
        # the dead worker's counts stay in the totals; its live gauges are dropped
        assert metric(server, "xentropy_http_requests_total", route="/healthz") >= 20
        assert not list(Path(multiproc).glob(f"gauge_live*_{victim}.db"))

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        assert not Path(multiproc).exists(), "the metrics directory outlived the server"
    finally:
        stop_server(server)


def test_api_keys_request_ids_and_json_logs(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# the only key\nkey-0123456789\n")
    server = start_server("--log-level", "info", env={"XENTROPY_API_KEYS_FILE": str(keys)})
    try:
        body = {"logits": [[2.0, 1.0, 0.1]], "labels": [0]}
        r = httpx.post(server.url + CAT, json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = httpx.post(server.url + CAT, json=body,
                       headers={"X-API-Key": "key-0123456789", "X-Request-ID": "e2e-42"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "e2e-42"
        r = httpx.get(server.url + "/v1/info", headers={"Authorization": "Bearer key-0123456789"})
        assert r.status_code == 200
        assert httpx.get(server.url + "/metrics").status_code == 401
        assert httpx.get(server.url + "/readyz").status_code == 200
        assert "server" not in r.headers  # no "uvicorn" banner
        assert cli.main(["healthcheck", "--url", server.url + "/healthz"]) == 0
        output = server.output()
    finally:
        stop_server(server)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert "key-0123456789" not in output
    mine = [line for line in lines if line["request_id"] == "e2e-42"]
    assert len(mine) == 1
    assert mine[0]["status"] == 200 and mine[0]["route"] == CAT and mine[0]["bytes_in"] > 0
    assert mine[0]["client"] == "127.0.0.1"
