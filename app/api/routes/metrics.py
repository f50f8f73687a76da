"""GET /metrics: Prometheus text format, aggregated over every worker process.

With one worker the metrics live in this process (plus the process and GC collectors).
With several, ``xentropy serve`` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before the workers start; each worker writes its values there and whichever worker
answers /metrics aggregates all of them with a ``MultiProcessCollector``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re

from fastapi import APIRouter, Depends, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from app.api.auth import require_metrics_key
from app.api.metrics_store import FAILURES, safely
from app.api.schemas.common import ERROR_RESPONSES

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")

router = APIRouter(dependencies=[Depends(require_metrics_key)])
REGISTRY.register(FAILURES)  # one process: the default registry serves /metrics


def multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead_workers(path: str) -> None:
    """Drop the live-gauge files of workers that are gone (killed, not shut down), so
    that ``livesum`` gauges such as requests in progress do not count them forever."""
    pids = set()
    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        match = _LIVE_GAUGE_FILE.fullmatch(os.path.basename(name))
        if match:
            pids.add(int(match.group(1)))
    for pid in pids:
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(pid, path)


def mark_this_process_dead() -> None:
    """At a worker's shutdown: its live gauges leave the aggregate."""
    path = multiproc_dir()
    if path is not None:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(os.getpid(), path)


@router.get(
    "/metrics",
    tags=["service"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format.",
        },
        401: {
            **ERROR_RESPONSES[401],
            "description": "API keys are configured, XENTROPY_METRICS_REQUIRE_KEY is true "
            "(the default) and the request carries none or a wrong one.",
        },
        503: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The metric files of the workers cannot be read (the service "
            "itself goes on serving).",
        },
    },
)
def metrics() -> Response:
    """Requests, errors, latency and body-size histograms per method, route template and
    status, summed over every worker process."""
    path = multiproc_dir()
    if path is None:
        registry = REGISTRY
    else:
        mark_dead_workers(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)
        registry.register(FAILURES)
    text = safely(generate_latest, registry)
    if text is None:  # unreadable metric files: say so, and go on serving the rest
        return Response("metrics unavailable: the metric files cannot be read\n",
                        status_code=503, media_type="text/plain")
    return Response(text, media_type=CONTENT_TYPE_LATEST)
