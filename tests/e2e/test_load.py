"""Ten seconds of the load mix of bench/load.py against `xentropy serve --workers 2`:
every answer byte-identical to the in-process one (the 422s included), no transport
error, and the workers' memory flat after the warm-up. The 60-second soak is
`python -m bench.load --seconds 60 --clients 32 --workers 2` (figures in the README).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import load_test, report

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def test_ten_seconds_of_mixed_load_on_two_workers():
    figures = load_test(seconds=10, clients=32, workers=2, warmup=5)
    print(report(figures))  # shown with -s, and on failure
    assert figures["workers"] == 2
    assert figures["unexpected"] == 0, figures["outcomes"]
    assert figures["requests"] > 500 and figures["expected_422"] > 0
    rss = figures["rss_mib"]
    growth = rss["end"] - rss["after_warmup"]
    # glibc's per-thread arenas fill up during the first seconds under 32 clients; a leak
    # would keep growing: bounded here, and flat over the 60 s soak (README).
    assert growth < max(50.0, 0.25 * rss["after_warmup"]), rss


def test_healthz_stays_fast_while_large_requests_compute():
    """Two clients keep one worker busy with 1000×1000 JSON requests (about 0.1-0.25 s
    each, computed in the thread pool): /healthz, asked meanwhile, is answered between
    the big requests' steps, not after them. /healthz is a coroutine (no thread-pool
    hop); `python -m bench json` measures p50 3.5 ms and p99 11.5 ms on the quiet 2-core
    machine with the senders in processes of their own, against p99 6.7 ms for an idle
    server under the same load (bench/README.md; the issue's 5 ms p99 is not met). Big
    requests computed on the event loop hold /healthz for up to a whole request
    (measured with every request inline: median 110 ms, p99 147 ms): the bound below
    catches that."""
    import threading
    import time

    import httpx
    import numpy as np
    import orjson

    from bench._util import healthz_latencies
    from tests.e2e.conftest import start_server, stop_server

    rng = np.random.default_rng(0)
    body = orjson.dumps({"logits": rng.normal(size=(1000, 1000)).tolist(),
                         "labels": rng.integers(0, 1000, 1000).tolist()})
    server = start_server("--workers", "1", env={"XENTROPY_ACCESS_LOG": "false"})
    stop = threading.Event()
    big: list[int] = []

    def send_big() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                r = client.post(server.url + "/v1/losses/categorical", content=body,
                                headers={"content-type": "application/json"})
                big.append(r.status_code)

    senders = [threading.Thread(target=send_big, daemon=True) for _ in range(2)]
    try:
        for sender in senders:
            sender.start()
        time.sleep(1.0)
        latencies = healthz_latencies(server.url, 5.0)
    finally:
        stop.set()
        for sender in senders:
            sender.join(timeout=60)
        stop_server(server)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    print(f"/healthz under 1000x1000 load: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"{len(big)} big requests")
    assert big and set(big) == {200}
    assert p50 < 40.0, (p50, p99)
