"""The hostile-input suite against a real uvicorn process (real sockets, real thread pool
stacks for the deep nesting, real streaming for the huge bodies): every case of
tests/hostile.py, then 200 MB bodies with the server's memory measured from /proc.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.hostile import CAT, POSTS, SHORT, VALID, Case, check_answer, check_refusal, raw
from tests.test_hostile_input import CASES, endless_rows

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")

MIB = 1 << 20
LIMIT = 8 * MIB  # small, so that "bounded by the limit" and "200 MB" are far apart


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[Server]:
    server = start_server(env={"XENTROPY_MAX_BODY_BYTES": str(LIMIT),
                               "XENTROPY_ACCESS_LOG": "false"})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def http(hostile_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_server.url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[name for name, _ in CASES])
def test_hostile_request_over_a_real_socket(http, case):
    r = http.post(case.path, content=case.body, headers=case.request_headers())
    check_refusal(r.status_code, r.content, case)


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
def test_200_mb_body_is_413_with_bounded_server_memory(hostile_server, declared):
    pid = hostile_server.process.pid
    peak_before = status_kib(pid, "VmHWM")
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(sum(len(c) for c in endless_rows(200 * MIB)))
    t0 = time.monotonic()
    r = httpx.post(hostile_server.url + CAT, content=endless_rows(200 * MIB), headers=headers,
                   timeout=60)
    elapsed = time.monotonic() - t0
    check_refusal(r.status_code, r.content, Case(CAT, b"", 413, says="limit"))
    growth_mib = (status_kib(pid, "VmHWM") - peak_before) / 1024
    # The body is held up to the limit (8 MiB), never the 200 MB that were sent.
    assert growth_mib < 4 * LIMIT / MIB, f"peak RSS grew by {growth_mib:.0f} MiB"
    assert elapsed < 30
    assert httpx.get(hostile_server.url + "/healthz", timeout=5).status_code == 200


def test_concurrent_hostile_bodies_leave_the_server_healthy(hostile_server):
    """Eight clients at once, each sending the heaviest refusals (deep nesting, 100 000
    keys, a megabyte key, a 200 MB stream): all 4xx, and the server answers after."""
    heavy = [c for name, c in CASES if name.split("-", 1)[1] in
             ("deep-nesting-in-field", "deep-objects-in-field", "many-unknown-keys",
              "megabyte-key", "invalid-utf8-in-key", "shape-product-overflows-int64")]
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            with httpx.Client(base_url=hostile_server.url, timeout=60) as http:
                for case in heavy[k::2]:
                    r = http.post(case.path, content=case.body, headers=case.request_headers())
                    check_refusal(r.status_code, r.content, case)
                if k == 0:
                    r = http.post(CAT, content=endless_rows(200 * MIB),
                                  headers={"content-type": "application/json"})
                    assert r.status_code == 413
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("path", POSTS, ids=[SHORT[p] for p in POSTS])
def test_the_server_still_answers_after_the_suite(http, path):
    assert http.get("/healthz").status_code == 200
    r = http.post(path, content=raw(VALID[path]), headers={"content-type": "application/json"})
    check_answer(path, r.status_code, r.content)
