"""Load and soak on loopback: `python -m bench.load --seconds 60 --clients 32 --workers 2`.

Starts `xentropy serve --workers W` (or drives ``--url``), then C concurrent clients
(httpx AsyncClient, one connection each) send a realistic mix for S seconds: small and
large categorical batches, multi-label binary, divergences, calibration, and a share of
bad requests that must be 422s. Every answer is compared byte for byte with the answer
the same request gets from the app in-process (computed once at start): a wrong answer,
an unexpected status or a transport error is counted, never ignored.

Reports requests/s, latency percentiles (overall and per kind), the status counts, and
the server's memory: the RSS summed over the worker processes (from /proc) at start,
after the warm-up and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
JSON_HEADERS = {"content-type": "application/json"}


# ----------------------------------------------------------------------------- the mix


@dataclass
class Kind:
    """One kind of request in the mix."""

    name: str
    path: str
    body: bytes
    weight: float
    status: int  # the expected status
    expected: bytes = b""  # the expected answer, filled by expected_answers()


def request_mix(seed: int = 0) -> list[Kind]:
    """The mix: what a scoring service sees, by share of requests."""
    rng = np.random.default_rng(seed)

    def logits(n: int, c: int) -> list[list[float]]:
        return np.round(rng.normal(scale=2.0, size=(n, c)), 6).tolist()

    def rows(n: int, c: int) -> list[list[float]]:
        p = rng.dirichlet(np.ones(c), size=n)
        return p.tolist()

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    kinds = [
        Kind("categorical 32x10", "/v1/losses/categorical",
             dumps({"logits": logits(32, 10), "labels": rng.integers(0, 10, 32).tolist()}),
             0.40, 200),
        Kind("categorical 256x100 +grad", "/v1/losses/categorical",
             dumps({"logits": logits(256, 100), "labels": rng.integers(0, 100, 256).tolist(),
                    "return_gradient": True, "label_smoothing": 0.1}),
             0.12, 200),
        Kind("binary 1000x10 multi-label", "/v1/losses/binary",
             dumps({"logits": logits(1000, 10),
                    "targets": rng.integers(0, 2, (1000, 10)).tolist(),
                    "pos_weight": 2.0}),
             0.12, 200),
        Kind("divergences 128x50", "/v1/divergences",
             dumps({"p": rows(128, 50), "q": rows(128, 50), "return_gradient": True}),
             0.10, 200),
        Kind("calibration 2000x10", "/v1/calibration",
             dumps({"probabilities": rows(2000, 10), "labels": rng.integers(0, 10, 2000).tolist(),
                    "n_bins": 15}),
             0.10, 200),
        Kind("bad: NaN literal", "/v1/losses/categorical",
             b'{"logits": [[1.0, NaN, 0.5]], "labels": [0]}', 0.04, 422),
        Kind("bad: label out of range", "/v1/losses/categorical",
             dumps({"logits": logits(8, 5), "labels": [0, 1, 2, 3, 4, 5, 0, 1]}), 0.04, 422),
        Kind("bad: unknown field", "/v1/losses/binary",
             dumps({"logits": [0.5, -1.0], "targets": [1, 0], "reducton": "sum"}), 0.04, 422),
        Kind("bad: ragged rows", "/v1/divergences",
             b'{"p": [[0.5, 0.5], [1.0]], "q": [[0.5, 0.5], [0.5, 0.5]]}', 0.04, 422),
    ]
    return kinds


def expected_answers(kinds: list[Kind]) -> None:
    """Fill ``Kind.expected`` with the app's answer, computed in-process (the server must
    give exactly these bytes: the computation is deterministic)."""
    from app.main import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "use httpx2" deprecation notes of the test client
        from fastapi.testclient import TestClient

    with TestClient(create_app(), raise_server_exceptions=True) as client:
        for kind in kinds:
            r = client.post(kind.path, content=kind.body, headers=JSON_HEADERS)
            if r.status_code != kind.status:
                raise RuntimeError(f"{kind.name}: in-process status {r.status_code}")
            kind.expected = r.content


# ----------------------------------------------------------------------------- driving


@dataclass
class Record:
    """One request: when it started and ended (monotonic seconds), its kind, and the
    outcome: "ok", "wrong" (right status, other bytes), "status:NNN" (unexpected) or
    "error:ExceptionName" (no HTTP answer)."""

    start: float
    end: float
    kind: str
    outcome: str


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)

    def between(self, t0: float, t1: float) -> list[Record]:
        return [r for r in self.records if t0 <= r.start and r.end <= t1]

    def outcomes(self, records: list[Record] | None = None) -> Counter[str]:
        return Counter(r.outcome for r in (self.records if records is None else records))


async def drive(
    url: str,
    kinds: list[Kind],
    *,
    clients: int,
    seconds: float,
    run: Run | None = None,
    stop: threading.Event | None = None,
    seed: int = 1,
    timeout: float = 30.0,
    pause_on_error: float = 0.05,
) -> Run:
    """``clients`` concurrent clients, each on its own connection, sending the mix until
    ``seconds`` have passed (or ``stop`` is set). Every request is recorded in ``run``."""
    run = run if run is not None else Run()
    deadline = time.monotonic() + seconds
    weights = [k.weight for k in kinds]

    async def client(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                kind = rng.choices(kinds, weights)[0]
                t0 = time.monotonic()
                try:
                    r = await http.post(kind.path, content=kind.body, headers=JSON_HEADERS)
                except httpx.TransportError as exc:
                    run.records.append(Record(t0, time.monotonic(), kind.name,
                                              f"error:{type(exc).__name__}"))
                    await asyncio.sleep(pause_on_error)  # a refused port is not hammered
                    continue
                t1 = time.monotonic()
                if r.status_code != kind.status:
                    outcome = f"status:{r.status_code}"
                elif r.content != kind.expected:
                    outcome = "wrong"
                else:
                    outcome = "ok"
                run.records.append(Record(t0, t1, kind.name, outcome))

    await asyncio.gather(*(client(k) for k in range(clients)))
    return run


def drive_in_thread(url: str, kinds: list[Kind], **kwargs: Any
                    ) -> tuple[threading.Thread, Run, threading.Event]:
    """drive() in a background thread (for the fault tests); returns (thread, run, stop)."""
    run, stop = Run(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(drive(url, kinds, run=run, stop=stop, **kwargs)), daemon=True
    )
    thread.start()
    return thread, run, stop


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> set[int]:
        return worker_pids(self.process.pid)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(workers: int = 2, *, env: dict[str, str] | None = None, access_log: bool = False,
          timeout: float = 30.0) -> ServerProcess:
    """`xentropy serve` on a free loopback port, healthy and with every worker up."""
    port = free_port()
    fd, name = tempfile.mkstemp(prefix="xentropy-load-", suffix=".log")
    full_env = {**os.environ, "XENTROPY_ACCESS_LOG": "true" if access_log else "false",
                "XENTROPY_LOG_LEVEL": "warning", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        cwd=ROOT, env=full_env, stdout=fd, stderr=subprocess.STDOUT,
    )
    os.close(fd)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, Path(name))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.output()}")
        try:
            healthy = httpx.get(server.url + "/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            healthy = False
        if healthy and (workers == 1 or len(server.workers()) == workers):
            return server
        time.sleep(0.1)
    stop(server)
    raise RuntimeError("the server did not become healthy")


def stop(server: ServerProcess, timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        code = server.process.wait()
    with contextlib.suppress(OSError):
        server.log.unlink()
    return code


@contextlib.contextmanager
def serving(workers: int = 2, **kwargs: Any) -> Iterator[ServerProcess]:
    server = start(workers, **kwargs)
    try:
        yield server
    finally:
        stop(server)


def worker_pids(parent: int) -> set[int]:
    """uvicorn's worker processes: children of ``parent`` started by multiprocessing's
    spawn (not its resource tracker). With one worker, the server process itself."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found or {parent}


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def rss_bytes(pids: set[int]) -> int:
    """Resident set size summed over ``pids`` (VmRSS from /proc/PID/status)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


# ----------------------------------------------------------------------------- a run


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def load_test(*, seconds: float, clients: int, workers: int, warmup: float = 5.0,
              access_log: bool = False, url: str | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Warm up, then drive the mix for ``seconds``; the figures as a dict."""
    kinds = request_mix()
    expected_answers(kinds)
    with contextlib.ExitStack() as stack:
        if url is None:
            server = stack.enter_context(serving(workers, access_log=access_log, env=env))
            url = server.url
            pids = server.workers
        else:
            pids = set
        rss_start = rss_bytes(pids())
        asyncio.run(drive(url, kinds, clients=clients, seconds=warmup, seed=7))
        rss_warm = rss_bytes(pids())
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:  # RSS every second of the measured run: a leak is a slope
            while not done.wait(1.0):
                samples.append(rss_bytes(pids()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ticks_before = {pid: cpu_ticks(pid) for pid in pids()}
        cpu0 = time.process_time()
        t0 = time.monotonic()
        run = asyncio.run(drive(url, kinds, clients=clients, seconds=seconds, seed=11))
        elapsed = time.monotonic() - t0
        client_cpu = time.process_time() - cpu0
        done.set()
        sampler.join()
        rss_end = rss_bytes(pids())
        worker_count = len(pids())
        used = {pid: cpu_ticks(pid) - ticks for pid, ticks in ticks_before.items()}

    outcomes = run.outcomes()
    latencies = [r.end - r.start for r in run.records]
    per_kind = {}
    for kind in kinds:
        mine = [r for r in run.records if r.kind == kind.name]
        lat = [r.end - r.start for r in mine]
        per_kind[kind.name] = {
            "requests": len(mine), "expected_status": kind.status,
            "ok": sum(r.outcome == "ok" for r in mine),
            "p50_ms": percentile_ms(lat, 50), "p99_ms": percentile_ms(lat, 99),
        }
    expected_422 = sum(v["ok"] for k, v in per_kind.items() if k.startswith("bad:"))
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "arch": platform.machine(),
                    "python": platform.python_version()},
        "workers": worker_count, "clients": clients, "seconds": round(elapsed, 1),
        "access_log": access_log, "env": env or {},
        "requests": len(run.records),
        "requests_per_s": len(run.records) / elapsed,
        "p50_ms": percentile_ms(latencies, 50), "p95_ms": percentile_ms(latencies, 95),
        "p99_ms": percentile_ms(latencies, 99), "max_ms": max(latencies, default=0) * 1000,
        # Each worker's share of the CPU time the workers used during the measured run.
        "worker_cpu_share": sorted((round(v / max(1, sum(used.values())), 2)
                                    for v in used.values()), reverse=True),
        # CPU seconds of the workers and of this load generator: on a small machine they
        # share the cores, and the figures are those of the pair.
        "cpu_seconds": {"workers": round(sum(used.values()) / os.sysconf("SC_CLK_TCK"), 1),
                        "load_generator": round(client_cpu, 1)},
        "expected_422": expected_422,
        "unexpected": sum(n for o, n in outcomes.items() if o != "ok"),
        "outcomes": dict(outcomes),
        "rss_mib": {"start": rss_start / MIB, "after_warmup": rss_warm / MIB,
                    "end": rss_end / MIB,
                    # at 1/4, 1/2 and 3/4 of the measured run, then its maximum
                    "quarters": [samples[len(samples) * q // 4] / MIB for q in (1, 2, 3)]
                    if len(samples) >= 4 else [],
                    "max": max(samples, default=rss_end) / MIB},
        "per_kind": per_kind,
    }


def report(figures: dict[str, Any]) -> str:
    rss = figures["rss_mib"]
    m = figures["machine"]
    lines = [
        f"# {figures['date']}  nproc={m['nproc']} {m['arch']} python {m['python']}  "
        f"workers={figures['workers']} clients={figures['clients']} "
        f"access_log={'on' if figures['access_log'] else 'off'}"
        + "".join(f" {k}={v}" for k, v in figures["env"].items()),
        f"requests {figures['requests']} in {figures['seconds']} s: "
        f"{figures['requests_per_s']:.0f} req/s; latency p50 {figures['p50_ms']:.1f} ms, "
        f"p95 {figures['p95_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"max {figures['max_ms']:.0f} ms",
        f"CPU seconds: workers {figures['cpu_seconds']['workers']} (shares "
        f"{figures['worker_cpu_share']}), load generator "
        f"{figures['cpu_seconds']['load_generator']}; "
        f"expected 422s {figures['expected_422']}; unexpected outcomes "
        f"{figures['unexpected']} {figures['outcomes']}",
        f"server RSS (sum over workers): start {rss['start']:.0f} MiB, after warm-up "
        f"{rss['after_warmup']:.0f} MiB, at 1/4, 1/2, 3/4 of the run "
        f"{', '.join(f'{v:.0f}' for v in rss['quarters'])} MiB, end {rss['end']:.0f} MiB, "
        f"max {rss['max']:.0f} MiB (growth after warm-up "
        f"{rss['end'] - rss['after_warmup']:+.1f} MiB)",
        f"{'kind':<30} {'requests':>9} {'ok':>9} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for name, k in figures["per_kind"].items():
        lines.append(f"{name:<30} {k['requests']:>9} {k['ok']:>9} {k['p50_ms']:>8.1f} "
                     f"{k['p99_ms']:>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--access-log", choices=["off", "on", "both"], default="off")
    parser.add_argument("--url", default=None, help="drive a running server instead")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment of the server (repeatable)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.access_log]
    results = []
    for access_log in modes:
        env = dict(item.split("=", 1) for item in args.env)
        figures = load_test(seconds=args.seconds, clients=args.clients, workers=args.workers,
                            warmup=args.warmup, access_log=access_log, url=args.url, env=env)
        print(report(figures), flush=True)
        results.append(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(f["unexpected"] == 0 for f in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
