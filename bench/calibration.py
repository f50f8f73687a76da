"""`python -m bench calibration-extras`: /v1/calibration with issue 13's additions against
the plain report on the same batch, and the peak memory of the worst case just under the
limits.

One fresh uvicorn worker per request body; the batch is sent as encoded float32 logits
(int32 labels, and int32 groups: 100 groups drawn uniformly), so that 10^6 × 10 fits the
64 MiB body limit and the parse is about the same for all. Issue 13 item 9's figure is
classwise + intervals + groups against the plain report; classwise + intervals alone and
groups alone are shown too, to say what dominates.
"""

from __future__ import annotations

import base64
import os
import time

import httpx
import numpy as np
import orjson

from bench._util import peak_rss_bytes, rss_bytes, uvicorn_server

OURS = "app.main:app"
JSON = {"content-type": "application/json"}
EXTRAS = {"mode": "classwise", "confidence_level": 0.95,
          "bootstrap": {"n_resamples": 1000, "method": "poisson"}}


def _encoded(a: np.ndarray, dtype: str) -> dict[str, object]:
    arr = np.ascontiguousarray(a, dtype=dtype)
    return {"dtype": dtype, "shape": list(arr.shape),
            "data": base64.b64encode(arr.tobytes()).decode("ascii")}


N_GROUPS = 100


def _body(n: int, c: int, extra: dict[str, object], seed: int = 0,
          groups: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 2.0
    # Labels drawn from a tempered softmax: an overconfident model, every class present.
    p = np.exp(0.7 * z)
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1).clip(0, c - 1)
    if groups:
        extra = {**extra, "groups": _encoded(rng.integers(0, N_GROUPS, n), "int32")}
    return orjson.dumps({"logits": _encoded(z, "float32"), "labels": _encoded(y, "int32"),
                         **extra})


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(body: bytes) -> tuple[float, float, int, int]:
    """Wall and worker CPU time of one request to a fresh worker, its idle and peak RSS
    (the CPU time is the steadier figure on a shared machine)."""
    with uvicorn_server(OURS) as (url, proc), httpx.Client(timeout=600) as client:
        warm = client.post(url + "/v1/calibration", content=_body(1000, 10, {}), headers=JSON)
        assert warm.status_code == 200, warm.text[:300]
        idle = rss_bytes(proc.pid)
        cpu = _cpu_seconds(proc.pid)
        start = time.perf_counter()
        r = client.post(url + "/v1/calibration", content=body, headers=JSON)
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds(proc.pid) - cpu
        assert r.status_code == 200, r.text[:300]
        return elapsed, cpu, idle, peak_rss_bytes(proc.pid)


def extras(quick: bool = False) -> list[str]:
    n = 100_000 if quick else 1_000_000
    mb = 1024 * 1024
    lines = [f"calibration-extras: /v1/calibration on {n}x10 (encoded float32), one fresh "
             "worker per request"]
    plain, plain_cpu, _, plain_peak = _timed(_body(n, 10, {}))
    lines.append(f"  {'plain report':<42}  {plain * 1e3:8.0f} ms  CPU {plain_cpu * 1e3:8.0f} ms"
                 f"  peak RSS {plain_peak / mb:5.0f} MiB")
    for label, extra, groups in (
            ("classwise + 95% intervals (1000 Poisson)", EXTRAS, False),
            (f"{N_GROUPS} groups", {}, True),
            ("classwise + intervals + groups (issue 13)", EXTRAS, True)):
        took, cpu, _, peak = _timed(_body(n, 10, extra, groups=groups))
        lines.append(f"  {label:<42}  {took * 1e3:8.0f} ms  CPU {cpu * 1e3:8.0f} ms  peak RSS "
                     f"{peak / mb:5.0f} MiB  ratio {took / plain:5.2f} "
                     f"(CPU {cpu / plain_cpu:5.2f})")
    lines.append("  target: classwise + intervals + groups <= 10x the plain report")
    if not quick:
        # The worst case under the limits: the largest 10-class batch whose encoded body
        # fits 64 MiB (float32 logits + int32 labels, base64: 4/3 × 44 bytes per row).
        rows = (64 * mb - 4096) * 3 // 4 // 44
        body = _body(rows, 10, {**EXTRAS, "estimators": ["ece_debiased"]})
        worst, _, idle, peak = _timed(body)
        lines.append(f"  worst case {rows}x10, body {len(body) / mb:5.1f} MiB: "
                     f"{worst * 1e3:8.0f} ms  idle {idle / mb:4.0f} MiB  peak "
                     f"{peak / mb:5.0f} MiB  (peak-idle)/body {(peak - idle) / len(body):5.2f}")
    return lines
