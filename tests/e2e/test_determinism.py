"""Determinism, against `xentropy serve --workers 2`.

* The same request gives the same bytes: from either worker, on every repetition, and
  equal to the answer of the app run in-process (another process, another run).
* Batches can be split: with reduction "none", the per-sample losses (and gradient rows)
  of a batch are bit-identical to those of its parts sent separately. The reduced mean is
  not: the whole-batch mean sums N losses in numpy's pairwise order, while recombining the
  means of the parts (m1·n1 + m2·n2) / n rounds differently; they agree within 2 ulp
  (24 % of random batches differ at all), which is what the last test pins down.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from bench.load import (
    Kind,
    ServerProcess,
    drive,
    expected_answers,
    request_mix,
    start,
    stop,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

CAT, BIN, DIV = "/v1/losses/categorical", "/v1/losses/binary", "/v1/divergences"


@pytest.fixture(scope="module")
def two_workers() -> Iterator[ServerProcess]:
    server = start(2)
    yield server
    stop(server)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_same_request_same_bytes_on_every_worker_and_run(two_workers):
    kinds = request_mix(seed=3)
    # The encoded (base64) answers too: raw float64 bytes, so any difference would show.
    for kind in list(kinds[:5]):
        body = orjson.loads(kind.body)
        body["response_encoding"] = "base64"
        if kind.path != "/v1/calibration":
            kinds.append(Kind(kind.name + " base64", kind.path, orjson.dumps(body), 0.05, 200))
    expected_answers(kinds)  # in this process: the reference run
    workers = two_workers.workers()
    assert len(workers) == 2
    # Connections opened together are often all accepted by one worker (see the report),
    # so each worker in turn gets the traffic alone: the others are stopped (SIGSTOP)
    # while fresh connections are made, and can accept none of them.
    for serving in sorted(workers):
        others = workers - {serving}
        before = cpu_ticks(serving)
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            run = asyncio.run(drive(two_workers.url, kinds, clients=8, seconds=2.0, seed=5))
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)
        outcomes = run.outcomes()
        assert set(outcomes) == {"ok"}, outcomes  # "ok": exactly the reference bytes
        assert len(run.records) > 100
        assert cpu_ticks(serving) - before > 20, "the worker under test did not serve"


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(server.url + path, content=orjson.dumps(body),
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    return orjson.loads(r.content)


def split(body: dict[str, Any], parts: list[slice], per_row: tuple[str, ...]
          ) -> list[dict[str, Any]]:
    return [{k: (v[s] if k in per_row else v) for k, v in body.items()} for s in parts]


def batches() -> list[tuple[str, str, dict[str, Any], tuple[str, ...]]]:
    rng = np.random.default_rng(11)
    n, c = 301, 17
    logits = rng.normal(scale=4.0, size=(n, c)).tolist()
    labels = rng.integers(0, c, n).tolist()
    p = rng.dirichlet(np.ones(c), size=n)
    p[:, 0] = np.where(rng.random(n) < 0.2, 0.0, p[:, 0])
    p /= p.sum(axis=1, keepdims=True)
    q = rng.dirichlet(np.ones(c) * 0.3, size=n)
    return [
        ("categorical", CAT, {
            "logits": logits, "labels": labels, "reduction": "none", "return_gradient": True,
            "sample_weights": rng.uniform(0.1, 3.0, n).tolist(),
            "class_weights": rng.uniform(0.5, 2.0, c).tolist(), "label_smoothing": 0.1,
            "focal_gamma": 2.0, "ignore_index": 3,
        }, ("logits", "labels", "sample_weights")),
        ("categorical-probabilities", CAT, {
            "probabilities": p.tolist(), "targets": q.tolist(), "reduction": "none",
            "return_gradient": True, "units": "bits",
        }, ("probabilities", "targets")),
        ("binary", BIN, {
            "logits": logits, "targets": (rng.random((n, c)) < 0.3).astype(int).tolist(),
            "mask": (rng.random((n, c)) < 0.9).astype(int).tolist(), "pos_weight": 3.0,
            "reduction": "none", "return_gradient": True,
        }, ("logits", "targets", "mask")),
        ("divergences", DIV, {
            "p": p.tolist(), "q_logits": logits, "reduction": "none", "return_gradient": True,
        }, ("p", "q_logits")),
    ]


BATCHES = batches()


@pytest.mark.parametrize(("path", "body", "per_row"), [b[1:] for b in BATCHES],
                         ids=[b[0] for b in BATCHES])
def test_per_sample_values_do_not_depend_on_the_batch(two_workers, path, body, per_row):
    whole = post(two_workers, path, body)
    n = len(body[per_row[0]])
    for parts in ([slice(0, n // 2), slice(n // 2, n)],
                  [slice(0, 1), slice(1, 200), slice(200, n)]):
        answers = [post(two_workers, path, part) for part in split(body, parts, per_row)]
        if path == DIV:
            for name in ("entropy", "cross_entropy", "kl_divergence", "js_divergence"):
                rows = [v for a in answers for v in a["per_row"][name]]
                assert rows == whole["per_row"][name], name  # bit-identical floats
        else:
            assert [v for a in answers for v in a["losses"]] == whole["losses"]
        assert [row for a in answers for row in a["gradient"]] == whole["gradient"]


def test_reduced_mean_of_parts_agrees_within_two_ulp(two_workers):
    """Summation order: the mean of a whole batch and the recombined means of its halves
    may differ in the last bits (never more than 2 ulp), so clients that shard batches
    should recombine sums ("sum" is exact to recombine up to one rounding per part)."""
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(12):
        n, c = int(rng.integers(20, 2000)), int(rng.integers(2, 40))
        body = {"logits": rng.normal(scale=3.0, size=(n, c)).tolist(),
                "labels": rng.integers(0, c, n).tolist()}
        whole = post(two_workers, CAT, body)["loss"]
        h = n // 2
        halves = [post(two_workers, CAT, part)["loss"]
                  for part in split(body, [slice(0, h), slice(h, n)], ("logits", "labels"))]
        recombined = (halves[0] * h + halves[1] * (n - h)) / n
        worst = max(worst, abs(recombined - whole) / math.ulp(whole))
    assert worst <= 2.0, f"{worst} ulp"
