"""Request ids, Prometheus metrics and JSON access logs: one pure ASGI middleware.

Pure ASGI (not ``BaseHTTPMiddleware``): request and response bodies stream through
untouched, so the body reader can still refuse an oversized body while it streams in.
Bodies and credentials are never logged; only sizes are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.metrics_store import safely

REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ROUTE = "<unmatched>"
NO_RESPONSE = 499  # status recorded when no response was sent (nginx's "client closed")

access_logger = logging.getLogger("xentropy.access")
logger = logging.getLogger("xentropy")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LABELS = ("method", "route", "status")
_SIZE_BUCKETS = tuple(float(4**k) for k in range(4, 15))  # 256 B .. 256 MiB
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

# Module-level, so registered once per process whatever the number of apps (tests build
# many). With PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps them in files that
# /metrics aggregates across workers (see app.api.routes.metrics).
REQUESTS = Counter(
    "xentropy_http_requests", "HTTP requests answered, by route template.", _LABELS
)
ERRORS = Counter(
    "xentropy_http_errors",
    "HTTP requests answered with status >= 400 (or failed with an unhandled exception).",
    _LABELS,
)
LATENCY = Histogram(
    "xentropy_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response.",
    _LABELS,
    buckets=_LATENCY_BUCKETS,
)
REQUEST_SIZE = Histogram(
    "xentropy_http_request_size_bytes",
    "Request body bytes read by the service.",
    _LABELS,
    buckets=_SIZE_BUCKETS,
)
RESPONSE_SIZE = Histogram(
    "xentropy_http_response_size_bytes", "Response body bytes sent.", _LABELS,
    buckets=_SIZE_BUCKETS,
)
IN_PROGRESS = Gauge(
    "xentropy_http_requests_in_progress",
    "Requests being served now.",
    ("method",),
    multiprocess_mode="livesum",
)

# Label children bound once per label set (what ``.labels()`` looks up on every call, with
# its argument checks and a lock): (method, route, status) -> (requests, errors or None,
# latency, request size, response size). Bounded like the metrics themselves: methods,
# route templates and statuses are few. A child whose creation failed is not cached.
_BOUND: dict[tuple[str, str, int], tuple[Any, Any, Any, Any, Any]] = {}
_BOUND_IN_PROGRESS: dict[str, Any] = {}

_INTERNAL_ERROR = b'{"detail":"internal error"}'
_SHUTTING_DOWN = b'{"detail":"the service is shutting down; retry the request"}'
RETRY_AFTER_SECONDS = 1

# Requests cancelled by the graceful-shutdown timeout whose handler still runs (a plain
# `def` handler holds a worker thread, which nothing can interrupt): app.main's lifespan
# ends the process without waiting for them.
_abandoned: set[asyncio.Task[None]] = set()


_in_flight = 0


def abandoned_requests() -> int:
    """How many requests cancelled at shutdown are still computing."""
    return sum(not task.done() for task in _abandoned)


def requests_in_flight() -> int:
    """Requests this process has not answered yet (abandoned ones excluded)."""
    return _in_flight


def _forget(task: asyncio.Task[None]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: nobody waits for it any more


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-ID if it is sane (1-128 of ``A-Za-z0-9._:-``), else a new
    random one (32 hex digits)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/losses/{kind}``, never the raw path),
    so that metric labels stay few whatever clients send."""
    route = scope.get("route")
    if route is None and scope.get("endpoint") is not None:
        # Plain Starlette routes (/docs, /openapi.json) leave only their endpoint behind.
        app = scope.get("app")
        for candidate in getattr(app, "routes", ()):
            if getattr(candidate, "endpoint", None) is scope["endpoint"]:
                route = candidate
                break
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


class ObservabilityMiddleware:
    """Gives every HTTP request an id (echoed as X-Request-ID), counts it in the
    Prometheus metrics and writes one JSON access-log line for it."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        global _in_flight
        _in_flight += 1
        start = time.perf_counter()
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 0
        bytes_in = 0
        bytes_out = 0

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        answered_by_shutdown = False

        async def tagging_send(message: Message) -> None:
            nonlocal status, bytes_out
            if answered_by_shutdown:
                return  # this request was answered 503 when the shutdown cancelled it
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        # Metric updates never fail a request (a full or unwritable metrics directory is
        # counted and logged by app.api.metrics_store instead).
        in_progress = _BOUND_IN_PROGRESS.get(method)
        if in_progress is None:
            in_progress = safely(IN_PROGRESS.labels, method)
            if in_progress is not None:
                _BOUND_IN_PROGRESS[method] = in_progress
        if in_progress is not None:
            safely(in_progress.inc)
        # The application runs in a task of its own, shielded: when uvicorn cancels this
        # request at the end of XENTROPY_GRACEFUL_TIMEOUT, this task answers 503 at once
        # instead of waiting for a handler that cannot be interrupted (FIX: the client got
        # a 500 only when the computation ended, logged as 499, and the process outlived
        # the timeout by as long).
        inner = asyncio.ensure_future(self.app(scope, counting_receive, tagging_send))
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            if inner.done():
                raise
            _abandoned.add(inner)
            inner.add_done_callback(_forget)
            answered_by_shutdown = True  # from now on, what the handler sends is dropped
            if status == 0:
                status = 503
                bytes_out = len(_SHUTTING_DOWN)
                with contextlib.suppress(Exception):  # the client may be gone
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 503,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(bytes_out).encode()),
                                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                                (b"connection", b"close"),
                                (REQUEST_ID_HEADER.encode(), request_id.encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": _SHUTTING_DOWN})
        except Exception:
            if status == 0:
                # The error handler's 500 would leave through the server error middleware,
                # outside this one, without the request id: send the same answer here.
                # Re-raised below, so app.api.errors still logs the traceback.
                with contextlib.suppress(Exception):  # the client may be gone
                    await tagging_send(
                        {
                            "type": "http.response.start",
                            "status": 500,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
                            ],
                        }
                    )
                    await tagging_send({"type": "http.response.body", "body": _INTERNAL_ERROR})
                status = 500
            raise
        finally:
            _in_flight -= 1
            if in_progress is not None:
                safely(in_progress.dec)
            duration = time.perf_counter() - start
            route = route_template(scope)
            # No response at all: cancelled (graceful-shutdown timeout) or the client gone.
            final = status or NO_RESPONSE
            safely(self._record, method, route, final, duration, bytes_in, bytes_out)
            if self.access_log:
                self._log(scope, request_id, method, route, final, duration, bytes_in, bytes_out)

    @staticmethod
    def _record(
        method: str, route: str, status: int, duration: float, bytes_in: int, bytes_out: int
    ) -> None:
        key = (method, route, status)
        bound = _BOUND.get(key)
        if bound is None:
            labels = (method, route, str(status))
            bound = (
                REQUESTS.labels(*labels),
                ERRORS.labels(*labels) if status >= 400 else None,
                LATENCY.labels(*labels),
                REQUEST_SIZE.labels(*labels),
                RESPONSE_SIZE.labels(*labels),
            )
            _BOUND[key] = bound
        requests, errors, latency, request_size, response_size = bound
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(duration)
        request_size.observe(bytes_in)
        response_size.observe(bytes_out)

    @staticmethod
    def _log(
        scope: Scope,
        request_id: str,
        method: str,
        route: str,
        status: int,
        duration: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        record: dict[str, Any] = {
            "time": _utc_now_ms(),
            "method": method,
            "route": route,
            "path": scope.get("path", "")[:256],  # never the query string
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "request_id": request_id,
            "client": client[0] if client else None,
        }
        try:
            line = orjson.dumps(record).decode()
        except TypeError:  # pragma: no cover - a lone surrogate in the path
            line = json.dumps(record, separators=(",", ":"))
        write = _line_writer()
        if write is not None:
            write(line)
        else:
            access_logger.info(line)


def _line_writer() -> Callable[[str], None] | None:
    """The access log's one handler's ``write_line`` when it would write the message as
    it is (``app.cli.BackgroundStreamHandler`` as ``xentropy serve`` configures it): the
    line goes to its queue without a LogRecord. Otherwise (tests capturing records,
    another configuration) the logging module takes the record."""
    handlers = access_logger.handlers
    if access_logger.propagate or access_logger.filters or len(handlers) != 1:
        return None
    handler = handlers[0]
    as_is = getattr(handler, "writes_lines_as_is", None)
    return handler.write_line if as_is is not None and as_is() else None  # type: ignore[attr-defined]


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _utc_now_ms() -> str:
    """Now in UTC as ``2026-12-01T23:11:01.058Z`` (milliseconds, truncated, as
    ``datetime.isoformat(timespec="milliseconds")`` gives), the date and time of the
    current second formatted once per second."""
    global _second
    now = time.time()
    second = int(now)
    cached, text = _second
    if second != cached:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return f"{text}.{int((now - second) * 1000):03d}Z"
