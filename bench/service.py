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

import httpx
import numpy as np
import orjson

from bench._util import best_of, peak_rss_bytes, row, rss_bytes, uvicorn_server
from xentropy.losses import softmax_cross_entropy_with_integer_labels

OURS, NAIVE = "app.main:app", "bench.naive_app:app"
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
                             "target <= 1.5" if not gradient else ""))
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
                         "target <= 3"))
    return lines


def _wrk_rps(url: str, body: bytes, seconds: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        lua_body = body.decode().replace("\\", "\\\\").replace('"', '\\"')
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.body = "{lua_body}"\n'
        )
        out = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(script), url],
            capture_output=True, text=True, check=True,
        ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    return float(match.group(1))


def _httpx_rps(url: str, body: bytes, seconds: int) -> float:
    import asyncio

    async def main() -> float:
        count = 0
        stop = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=10) as client:
            async def worker() -> None:
                nonlocal count
                while time.monotonic() < stop:
                    r = await client.post(url, content=body, headers=JSON)
                    assert r.status_code == 200
                    count += 1
            await asyncio.gather(*(worker() for _ in range(16)))
        return count / seconds

    return asyncio.run(main())


def small_requests(quick: bool = False) -> list[str]:
    z, y = _batch(256, 10)
    body = orjson.dumps({"logits": z.tolist(), "labels": y.tolist()})
    seconds = 3 if quick else 8
    rps = _wrk_rps if shutil.which("wrk") else _httpx_rps
    tool = "wrk -t1 -c16" if shutil.which("wrk") else "httpx async, 16 clients"
    with uvicorn_server(OURS) as (ours, _):
        ours_rps = rps(ours + "/v1/losses/categorical", body, seconds)
    with uvicorn_server(NAIVE) as (naive, _):
        hello_rps = rps(naive + "/hello", body, seconds)
    return [
        f"small requests: 256x10 batches, {tool}, {seconds} s, one worker each",
        f"  /v1/losses/categorical {ours_rps:9.0f} req/s   hello-world {hello_rps:9.0f} req/s"
        f"   ratio {ours_rps / hello_rps:5.2f}  target >= 0.70",
    ]


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
