"""Timing and server helpers shared by the benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from statistics import median

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def best_of(fn: Callable[[], object], repeat: int = 7, min_time: float = 0.0) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs (after one warm-up), in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serving(proc: subprocess.Popen[bytes], url: str, probe: str, name: str
             ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Wait (30 s at most) until ``url + probe`` answers, yield, then stop ``proc``."""
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + probe, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{name} did not start") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def uvicorn_server(app: str, *, workers: int = 1, env: dict[str, str] | None = None
                   ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``uvicorn APP`` (httptools, uvloop) on a free loopback port."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})})
    probe = "/healthz" if "app.main" in app else "/hello"
    with _serving(proc, f"http://127.0.0.1:{port}", probe, app) as served:
        yield served


@contextmanager
def xentropy_server(*, env: dict[str, str] | None = None, cwd: str = ROOT
                    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``xentropy serve`` (``python -m app serve``: the service's own uvicorn settings,
    logging configuration and HTTP protocol) with one worker on a free loopback port; the
    access log, on by default, goes to /dev/null. ``cwd``: the checkout to run (another
    worktree, to compare two versions in one run)."""
    port = free_port()
    full_env = {**os.environ, "XENTROPY_LOG_LEVEL": "info", **(env or {})}
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    with _serving(proc, f"http://127.0.0.1:{port}", "/healthz", "xentropy serve") as served:
        yield served


def healthz_latencies(url: str, seconds: float, every: float = 0.01) -> list[float]:
    """GET ``url``/healthz every ``every`` seconds for ``seconds`` on a connection of its
    own, as a load balancer's probe would: each answer's latency in seconds (each a 200)."""
    latencies: list[float] = []
    with httpx.Client(timeout=10) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            assert client.get(url + "/healthz").status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(every)
    return latencies


def _status_bytes(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} for pid {pid}")


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of a process: its peak resident set size."""
    return _status_bytes(pid, "VmHWM")


def rss_bytes(pid: int) -> int:
    """VmRSS of a process: its resident set size now."""
    return _status_bytes(pid, "VmRSS")


def row(name: str, ours: float, base: float, base_name: str, target: str = "") -> str:
    ratio = ours / base if base else float("inf")
    return f"{name:<38} {ours * 1e3:10.2f} ms  {base_name:<28} {base * 1e3:10.2f} ms  " \
           f"ratio {ratio:6.2f}  {target}"
