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


def memory(quick: bool = False) -> list[str]:
    limit = 64 * 1024 * 1024
    c = 1000
    z, y = _batch(1, c)
    row_bytes = len(orjson.dumps(z.tolist()[0])) + 1
    n = int((limit - 4096) / row_bytes)
    z, y = _batch(n, c)
    body = orjson.dumps({"logits": z.tolist(), "labels": y.tolist()})
    assert len(body) <= limit, len(body)
    with uvicorn_server(OURS) as (url, proc), httpx.Client(timeout=300) as client:
        idle = rss_bytes(proc.pid)
        r = client.post(url + "/v1/losses/categorical", content=body, headers=JSON)
        assert r.status_code == 200, r.text[:300]
        peak = peak_rss_bytes(proc.pid)
    mb = 1024 * 1024
    return [
        f"memory: one {len(body) / mb:.1f} MiB JSON request ({n}x{c}), server RSS",
        f"  idle {idle / mb:.0f} MiB, peak {peak / mb:.0f} MiB: peak/body "
        f"{peak / len(body):.2f}, (peak-idle)/body {(peak - idle) / len(body):.2f}  target <= 4",
    ]
