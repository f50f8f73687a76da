"""Hostile input on every POST endpoint, in-process: each request gets the documented 4xx
with a ``loc`` and a message the sender can act on, never a 5xx, never NaN or Infinity,
and the service still answers afterwards. The cases and checks are in tests/hostile.py
(tests/e2e/test_hostile_server.py sends the same ones to a real uvicorn).

Also here: a 200 MB body streamed in (refused after reading at most the limit), the
duplicate-key contract, and the time and memory of malformed bodies just under the limit
(in a subprocess, peak RSS from /proc).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.main import create_app
from app.settings import Settings
from tests.hostile import (
    BIN,
    CAL,
    CAT,
    DIV,
    EXTREME_BUT_VALID,
    POSTS,
    SHORT,
    VALID,
    Case,
    check_answer,
    check_refusal,
    hostile_cases,
    raw,
    run_measure_costs,
)

CASES = hostile_cases()


def send(client: Any, case: Case) -> Any:
    return client.post(case.path, content=case.body, headers=case.request_headers())


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[name for name, _ in CASES])
def test_hostile_request_gets_a_fixable_4xx(client, case):
    r = send(client, case)
    check_refusal(r.status_code, r.content, case)


@pytest.mark.parametrize(
    ("path", "body"), [(p, b) for _, p, b in EXTREME_BUT_VALID],
    ids=[name for name, _, _ in EXTREME_BUT_VALID],
)
def test_extreme_but_valid_magnitudes_give_finite_answers(client, path, body):
    r = client.post(path, content=raw(body), headers={"content-type": "application/json"})
    answer = check_answer(path, r.status_code, r.content)
    if path in (CAT, BIN) and body.get("reduction", "mean") != "none":
        assert answer["loss"] >= 0
    if path == DIV and body.get("reduction", "mean") != "none":
        assert min(answer["kl_divergence"], answer["cross_entropy"]) >= 0


# Regression: with epsilon < 2^-54, 1 − epsilon rounds to 1 and a probability of exactly 1
# used to escape clipping; the loss was NaN inside and the answer a spurious 422
# "overflow" for an ordinary request.
TINY_EPSILON = [
    (BIN, {"probabilities": [1.0, 0.5], "targets": [1, 1], "epsilon": 1e-17}),
    (BIN, {"probabilities": [1.0], "targets": [0], "epsilon": 1e-300}),
    (CAT, {"probabilities": [[0.0, 1.0]], "labels": [1], "epsilon": 1e-300,
           "focal_gamma": 0.5, "return_gradient": True}),
]


@pytest.mark.parametrize(("path", "body"), TINY_EPSILON,
                         ids=["binary-p1-t1", "binary-p1-t0", "categorical-focal-p1"])
def test_tiny_epsilon_with_a_probability_of_one_is_answered(client, path, body):
    r = client.post(path, content=raw(body), headers={"content-type": "application/json"})
    check_answer(path, r.status_code, r.content)


# ------------------------------------------------------------------------ duplicate keys

# The contract a strict service keeps: a key sent twice is ambiguous (RFC 8259 leaves the
# meaning to the receiver; parsers disagree on which value wins), so it is refused, naming
# the key (msgspec alone would keep the last value silently).
DUPLICATES = [
    (CAT, b'{"logits": [[1, 2]], "labels": [0], "labels": [5]}', "labels"),
    (CAT, b'{"logits": [[1, 2]], "labels": [0], "reduction": "sum", "reduction": "none"}',
     "reduction"),
    (BIN, b'{"logits": [1, 2], "targets": [1, 0], "logits": [0, 0]}', "logits"),
    (DIV, b'{"p": [[1, 0]], "q": [[0.5, 0.5]], "units": "bits", "units": "nats"}', "units"),
    (CAL, b'{"probabilities": [0.5], "labels": [1], "n_bins": 3, "n_bins": 4}', "n_bins"),
]


@pytest.mark.parametrize(("path", "body", "key"), DUPLICATES,
                         ids=[f"{SHORT[p]}-{k}" for p, _, k in DUPLICATES])
def test_duplicate_keys_are_refused_naming_the_key(client, path, body, key):
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    check_refusal(r.status_code, r.content, Case(path, body, 422, ["body", key]))


def test_duplicate_keys_in_the_fallback_parser_are_refused_too(client):
    """A NaN token sends the body through the standard library's parser."""
    body = b'{"logits": [[1, NaN]], "labels": [0], "labels": [1]}'
    r = client.post(CAT, content=body, headers={"content-type": "application/json"})
    check_refusal(r.status_code, r.content, Case(CAT, body, 422, ["body", "labels"]))


# ------------------------------------------------------------------- streamed huge bodies


def run_asgi(app: Any, path: str, chunks: Iterator[bytes],
             headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, int]:
    """Drive the ASGI app with a streamed body; returns (status, body, bytes it pulled).
    The chunks are produced lazily: the test never holds the whole body."""
    pulled = 0
    status = 0
    out = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.extend(message.get("body", b""))

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"test"), *headers],
        "client": ("127.0.0.1", 1234), "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    return status, bytes(out), pulled


MIB = 1 << 20


def endless_rows(total: int) -> Iterator[bytes]:
    """``total`` bytes of one valid-looking categorical body, 1 MiB per chunk (the same
    chunk object each time)."""
    yield b'{"labels": [0], "logits": ['
    chunk = b"[0.25, 1.5]," * (MIB // 12)
    for _ in range(total // len(chunk)):
        yield chunk
    yield b"[0.0, 1.0]]}"


@pytest.mark.parametrize("path", POSTS, ids=[SHORT[p] for p in POSTS])
def test_200_mb_streamed_body_is_413_after_reading_at_most_the_limit(path):
    app = create_app(Settings())  # the default limit, 64 MiB
    limit = Settings().max_body_bytes
    status, body, pulled = run_asgi(
        app, path, endless_rows(200 * MIB), [(b"content-type", b"application/json")]
    )
    check_refusal(status, body, Case(path, b"", 413, says="limit"))
    assert limit < pulled <= limit + MIB + 64, pulled  # stopped at the first chunk beyond


def test_declared_200_mb_body_is_413_before_reading_anything():
    app = create_app(Settings())
    status, body, pulled = run_asgi(
        app, CAT, endless_rows(200 * MIB),
        [(b"content-type", b"application/json"), (b"content-length", b"209715200")],
    )
    check_refusal(status, body, Case(CAT, b"", 413, says="209715200"))
    assert pulled == 0


def test_body_read_timeout_is_a_408(monkeypatch):
    """A client that stops sending half-way gets a 408 after XENTROPY_BODY_TIMEOUT, with
    Connection: close (the real-socket version is in tests/e2e/test_faults.py)."""
    app = create_app(Settings(body_timeout=0.3))
    headers: list[tuple[bytes, bytes]] = []

    async def run() -> tuple[int, bytes]:
        sent = False
        out = bytearray()
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b'{"logits": [[1', "more_body": True}
            await asyncio.sleep(3600)  # the client stalls
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.extend(message["headers"])
            elif message["type"] == "http.response.body":
                out.extend(message.get("body", b""))

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": CAT, "raw_path": CAT.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("test", 80),
            "headers": [(b"host", b"test"), (b"content-type", b"application/json")],
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=5)
        return status, bytes(out)

    status, body = asyncio.run(run())
    check_refusal(status, body, Case(CAT, b"", 408, says="0.3 s"))
    assert (b"connection", b"close") in headers


# ------------------------------------------------------------------------- afterwards


def test_the_service_still_answers_after_the_suite(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    for path in (CAT, BIN, DIV, CAL):
        r = client.post(path, content=json.dumps(VALID[path]),
                        headers={"content-type": "application/json"})
        check_answer(path, r.status_code, r.content)


# ------------------------------------------------------------- the cost of malformed bodies

MALFORMED = ["nan-option", "nan-last-logit", "string-last-logit", "trailing-comma",
             "option-as-a-list", "nan-last-label", "empty-rows"]


@pytest.fixture(scope="module")
def costs() -> dict[str, dict[str, float]]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs /proc/self/clear_refs to reset the peak RSS")
    return run_measure_costs()


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_body_costs_what_a_valid_one_costs(costs, name):
    """Bodies just under the limit holding the most numbers a body can (4 bytes each),
    malformed at their end: located without a Python object per number. Before, NaN in
    an option cost 16× the body and 6× the time of the valid body, a trailing comma 13×
    and 5×."""
    cost, valid = costs[name], costs["valid"]
    assert cost["peak_over_body"] <= 4, cost
    assert cost["seconds"] <= 2 * valid["seconds"], (cost, valid)


@pytest.mark.parametrize("name", ["valid", "valid-narrow"])
def test_parsing_costs_at_most_4_times_the_body_for_every_shape(costs, name):
    """The parser (body, arrays and its working blocks) holds at most 4× the body whatever
    the row length: rows are parsed in blocks of text, never a Python object per row (an
    N×3 request cost 8.7×). The computation then adds its own buffers: bench/README.md."""
    assert costs[f"{name}-parse-only"]["peak_over_body"] <= 4, costs[f"{name}-parse-only"]


def test_declared_shapes_beyond_the_element_limit_cost_nothing(costs):
    """An encoded uint8 mask of 25M elements (limit 20M): 413 before the data is decoded
    or widened (before: 8.75× the body)."""
    assert costs["encoded-mask-over-the-element-limit"]["peak_over_body"] <= 1.5
