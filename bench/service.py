"""Service benchmarks over loopback: JSON and encoded ingest, small requests, memory."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench._util import (
    best_of,
    healthz_latencies,
    peak_rss_bytes,
    row,
    rss_bytes,
    uvicorn_server,
    xentropy_server,
)
from xentropy.losses import softmax_cross_entropy_with_integer_labels

OURS, NAIVE, CEILING = "app.main:app", "bench.naive_app:app", "bench.ceiling_app:app"
JSON = {"content-type": "application/json"}


def _batch(n: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)), rng.integers(0, c, n)


def _post_time(client: httpx.Client, url: str, body: bytes, repeat: int) -> float:
    def once() -> None:
        r = client.post(url, content=body, headers=JSON)
        assert r.status_code == 200, r.text[:300]

    return best_of(once, repeat)


def _parse_floor(body: bytes) -> Callable[[], None]:
    def parse() -> None:
        obj = orjson.loads(body)
        np.asarray(obj["logits"], dtype=np.float64)

    return parse


def json_and_encoded(quick: bool = False) -> list[str]:
    repeat = 3 if quick else 5
    z, y = _batch(1000, 1000)
    lines = ["service: 1000x1000 float64 batch end to end over loopback (one worker each)"]
    with uvicorn_server(OURS) as (ours, _), uvicorn_server(NAIVE) as (naive, _), \
            httpx.Client(timeout=120) as client:
        for gradient in (False, True):
            body = orjson.dumps({"logits": z.tolist(), "labels": y.tolist(),
                                 "return_gradient": gradient})
            what = "loss+grad" if gradient else "loss"
            t_ours = _post_time(client, ours + "/v1/losses/categorical", body, repeat)

            lines.append(row(f"  JSON {what} ({len(body) / 1e6:.0f} MB)", t_ours,
                             best_of(_parse_floor(body), repeat), "orjson.loads+asarray floor",
                             "target <= 1.2" if not gradient else ""))
            t_naive = _post_time(client, naive + "/v1/losses/categorical", body, repeat)
            lines.append(row(f"  JSON {what}", t_ours, t_naive, "naive pydantic endpoint",
                             "target <= 0.33"))
        z32 = z.astype(np.float32)
        encoded = {"dtype": "float32", "shape": [1000, 1000],
                   "data": base64.b64encode(z32.tobytes()).decode()}
        labels = {"dtype": "int64", "shape": [1000],
                  "data": base64.b64encode(y.astype("<i8").tobytes()).decode()}
        body = orjson.dumps({"logits": encoded, "labels": labels})
        t_enc = _post_time(client, ours + "/v1/losses/categorical", body, repeat)

        def encoded_floor() -> None:
            logits = np.frombuffer(base64.b64decode(encoded["data"]), "<f4").reshape(1000, 1000)
            lab = np.frombuffer(base64.b64decode(labels["data"]), "<i8")
            softmax_cross_entropy_with_integer_labels(logits, lab)

        lines.append(row(f"  encoded float32 loss ({len(body) / 1e6:.1f} MB)", t_enc,
                         best_of(encoded_floor, repeat), "b64decode+frombuffer+core",
                         "target <= 1.3"))
    lines.append(healthz_under_load(z, y, seconds=3.0 if quick else 6.0))
    return lines


def healthz_under_load(z: np.ndarray, y: np.ndarray, *, seconds: float) -> str:
    """/healthz latency while two clients keep one ``xentropy serve`` worker (defaults:
    access log and metrics on) busy with ``z``/``y`` JSON requests: asked every 10 ms
    on a connection of its own, as a load balancer's probe would be. The two senders are
    processes of their own, so that the probe's latency is the server's, not that of a
    client thread waiting for its own process's GIL. The baseline, in the same run: the
    same probe of an idle server while the same load goes to another one (what the
    machine's CPU, shared by the senders and the busy server, leaves to any process)."""
    body = orjson.dumps({"logits": z.tolist(), "labels": y.tolist()})
    with xentropy_server() as (url, _), xentropy_server() as (other, _), \
            tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "body.json"
        path.write_bytes(body)
        ours, served = _probe_under_load(url, url, path, seconds)
        floor, _ = _probe_under_load(url, other, path, seconds)
    p50, p99 = np.percentile(ours, [50, 99]) * 1e3
    f50, f99 = np.percentile(floor, [50, 99]) * 1e3
    return (f"  /healthz while 2 clients send {z.shape[0]}x{z.shape[1]} JSON: p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms, max {max(ours) * 1e3:.1f} ms ({len(ours)} probes, {served} big "
            f"requests)  target p99 < 5\n"
            f"  /healthz of an idle server, the same load sent to another: p50 {f50:.2f} ms, "
            f"p99 {f99:.2f} ms (the machine's floor; ours / floor: p50 {p50 / f50:.2f}, "
            f"p99 {p99 / f99:.2f})")


def _probe_under_load(probed: str, loaded: str, body: Path, seconds: float
                      ) -> tuple[list[float], int]:
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    served = spawn.Value("i", 0)
    senders = [spawn.Process(target=_send_until, args=(loaded, str(body), stop, served),
                             daemon=True) for _ in range(2)]
    try:
        for sender in senders:
            sender.start()
        time.sleep(2.0)  # the senders import httpx and start sending
        latencies = healthz_latencies(probed, seconds)
    finally:
        stop.set()
        for sender in senders:
            sender.join(timeout=120)
    return latencies, served.value


def _send_until(url: str, path: str, stop: Any, served: Any) -> None:
    body = Path(path).read_bytes()
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            r = client.post(url + "/v1/losses/categorical", content=body, headers=JSON)
            assert r.status_code == 200, r.text[:300]
            with served.get_lock():
                served.value += 1


def _wrk(url: str, body: bytes | None, seconds: float) -> tuple[float, float, float]:
    """``wrk -t1 -c16 --latency`` against ``url`` (a POST of ``body``, or a GET): requests
    per second, p50 and p99 latency in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["wrk", "-t1", "-c16", f"-d{seconds:g}s", "--latency"]
        if body is not None:
            data = Path(tmp) / "body.json"
            data.write_bytes(body)
            script = Path(tmp) / "post.lua"
            script.write_text(
                'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f'local f = io.open("{data}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
            )
            args += ["-s", str(script)]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    return float(match.group(1)), _wrk_latency(out, "50"), _wrk_latency(out, "99")


def _wrk_latency(out: str, q: str) -> float:
    match = re.search(rf"^\s+{q}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not match:
        return float("nan")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]


def _httpx(url: str, body: bytes | None, seconds: float) -> tuple[float, float, float]:
    import asyncio

    async def main() -> tuple[float, float, float]:
        latencies: list[float] = []
        stop = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=10) as client:
            async def worker() -> None:
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    if body is None:
                        r = await client.get(url)
                    else:
                        r = await client.post(url, content=body, headers=JSON)
                    assert r.status_code == 200
                    latencies.append(time.perf_counter() - t0)
            await asyncio.gather(*(worker() for _ in range(16)))
        p50, p99 = np.percentile(latencies, [50, 99])
        return len(latencies) / seconds, float(p50), float(p99)

    return asyncio.run(main())


SMALL_SHAPES = [(32, 10), (256, 10), (4096, 10)]


def small_requests(quick: bool = False) -> list[str]:
    """Requests/s of ``xentropy serve`` (one worker) with its defaults (JSON access log
    and metrics on) and with the access log off, each against a hello-world FastAPI
    endpoint under uvicorn in the same run, and the ceiling of any path on this stack
    (``bench/ceiling_app.py``: raw ASGI, one simdjson call and the core, no validation,
    logs or metrics; and the same app only reading the body). The servers run side by
    side and are loaded in turn, round after round (interleaved, so that a change in the
    machine's load hits all of them), and each ratio is the median of the per-round
    ratios."""
    seconds = 2.0 if quick else 4.0
    rounds = 2 if quick else 3
    load = _wrk if shutil.which("wrk") else _httpx
    tool = "wrk -t1 -c16" if shutil.which("wrk") else "httpx async, 16 clients"
    lines = [f"small requests: {tool}, {rounds} interleaved rounds of {seconds:g} s, "
             f"one worker each; load average before: {_loadavg()}"]
    with uvicorn_server(NAIVE) as (hello, _), xentropy_server() as (defaults, _), \
            xentropy_server(env={"XENTROPY_ACCESS_LOG": "false"}) as (no_log, _), \
            uvicorn_server(CEILING) as (ceiling, _):
        for n, c in SMALL_SHAPES:
            z, y = _batch(n, c)
            body = orjson.dumps({"logits": z.tolist(), "labels": y.tolist()})
            targets = {
                "hello-world": (hello + "/hello", body),  # the same body, not read
                "defaults": (defaults + "/v1/losses/categorical", body),
                "access log off": (no_log + "/v1/losses/categorical", body),
                # What bounds any request path on this stack (bench/ceiling_app.py).
                "ceiling": (ceiling + "/v1/losses/categorical", body),
                "raw ASGI read": (ceiling + "/read", body),
            }
            for url, data in targets.values():
                load(url, data, 1.0)  # warm-up
            figures: dict[str, list[tuple[float, float, float]]] = {k: [] for k in targets}
            for _ in range(rounds):
                for name, (url, data) in targets.items():
                    figures[name].append(load(url, data, seconds))
            lines.append(f"  {n}x{c} ({len(body) / 1e3:.0f} kB body)")
            for name, runs in figures.items():
                rps = float(np.median([r[0] for r in runs]))
                p50 = float(np.median([r[1] for r in runs]))
                p99 = float(np.median([r[2] for r in runs]))
                text = f"    {name:<15} {rps:8.0f} req/s  p50 {p50 * 1e3:6.2f} ms  " \
                       f"p99 {p99 * 1e3:6.2f} ms"
                if name != "hello-world":
                    ratios = [r[0] / h[0] for r, h in zip(runs, figures["hello-world"],
                                                           strict=True)]
                    text += f"  vs hello-world {float(np.median(ratios)):5.2f} " \
                            f"(rounds {min(ratios):.2f}-{max(ratios):.2f})"
                    if name == "defaults" and (n, c) == (256, 10):
                        text += "  target >= 0.70"
                lines.append(text)
    lines.append(f"  load average after: {_loadavg()}")
    return lines


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _matrix_body(limit: int, c: int, *, short: bool, seed: int = 0) -> bytes:
    """A categorical request of N×c logits just under ``limit`` bytes: random normal
    floats (about 20 characters each) or 3-character numbers (the most numbers per byte)."""
    rng = np.random.default_rng(seed)
    if short:
        row = b"[" + b",".join([b"0.5", b"1.5", b"2.5"][i % 3] for i in range(c)) + b"]"
        n = (limit - 4096) // (len(row) + 3)  # the comma after a row, the label "0,"
        logits = b"[" + b",".join([row] * n) + b"]"
        return b'{"logits": ' + logits + b', "labels": [' + b"0," * (n - 1) + b"0]}"
    sample = max(1, 100_000 // c)  # rows to learn the average row length from
    row_bytes = len(orjson.dumps(rng.normal(size=(sample, c)).tolist())) / sample
    label_bytes = len(orjson.dumps(rng.integers(0, c, sample).tolist())) / sample
    n = int((limit - 4096) / (row_bytes + label_bytes) * 0.995)
    logits = orjson.dumps(rng.normal(size=(n, c)).tolist())
    labels = orjson.dumps(rng.integers(0, c, n).tolist())
    return b'{"logits": ' + logits + b', "labels": ' + labels + b"}"


def _peak(url_proc: tuple[str, subprocess.Popen[bytes]], path: str, body: bytes,
          status: int) -> tuple[int, int]:
    url, proc = url_proc
    with httpx.Client(timeout=300) as client:
        idle = rss_bytes(proc.pid)
        r = client.post(url + path, content=body, headers=JSON)
        assert r.status_code == status, r.text[:300]
    return idle, peak_rss_bytes(proc.pid)


def memory(quick: bool = False) -> list[str]:
    """Peak RSS (VmHWM) of a fresh server for one request just under the 64 MiB limit,
    per shape and number length: the parser holds the body, the float64 arrays and one
    block of ~1 MiB; the computation adds its buffers (one N×C float64 array for the
    categorical loss, several N-vectors: those dominate for narrow rows)."""
    limit = 64 * 1024 * 1024
    cases: list[tuple[str, str, bytes, int]] = [
        ("N×1000, 20-char floats", "/v1/losses/categorical",
         _matrix_body(limit, 1000, short=False), 200),
        ("N×3, 20-char floats", "/v1/losses/categorical",
         _matrix_body(limit, 3, short=False), 200),
        ("N×1000, 3-char numbers", "/v1/losses/categorical",
         _matrix_body(limit, 1000, short=True), 200),
        ("N×3, 3-char numbers", "/v1/losses/categorical",
         _matrix_body(limit, 3, short=True), 200),
    ]
    n = (limit - 4096) // 10
    cases.append(("binary N, 3-char numbers", "/v1/losses/binary",
                  b'{"logits": [' + b"0.5," * (n - 1) + b'0.5], "targets": ['
                  + b"1.0," * (n - 1) + b"1.0]}", 200))
    last = cases[2][2]
    cases.append(("N×1000 3-char, NaN in an option (422)", "/v1/losses/categorical",
                  last[:-1] + b', "focal_gamma": NaN}', 422))
    if quick:
        cases = cases[:2] + cases[3:4]
    mb = 1024 * 1024
    lines = ["memory: one request just under the 64 MiB limit, server RSS (fresh server each)"]
    for name, path, body, status in cases:
        assert len(body) <= limit, (name, len(body))
        with uvicorn_server(OURS) as server:
            idle, peak = _peak(server, path, body, status)
        lines.append(
            f"  {name:<38} {len(body) / mb:5.1f} MiB  idle {idle / mb:4.0f} MiB  peak "
            f"{peak / mb:5.0f} MiB  peak/body {peak / len(body):5.2f}  "
            f"(peak-idle)/body {(peak - idle) / len(body):5.2f}  target <= 4"
        )
    return lines
