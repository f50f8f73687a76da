"""create_app(): the FastAPI application with its routers, error handlers and docs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from app import __version__
from app.api.auth import AUTH_RESPONSES, require_api_key
from app.api.body import current_settings
from app.api.docs import install_docs
from app.api.errors import install_error_handlers
from app.api.lane import ComputeLane
from app.api.middleware import ObservabilityMiddleware, abandoned_requests, requests_in_flight
from app.api.openapi import build_openapi
from app.api.routes import calibration, divergences, losses, metrics, service, states
from app.settings import Settings, get_settings

logger = logging.getLogger("xentropy")

DESCRIPTION = """\
Cross-entropy losses, their analytic gradients and calibration statistics for batches
of model outputs. Every numeric array accepts nested JSON lists or an encoded array
(`{"dtype", "shape", "data"}`, base64 of little-endian C-order bytes). Computation is
in float64; responses never contain NaN or Infinity.
"""

TAGS = [
    {"name": "losses", "description": "Categorical and binary cross-entropy with gradients."},
    {"name": "calibration", "description": "Calibration statistics and reliability diagrams."},
    {"name": "divergences", "description": "Entropy, cross-entropy, KL and JS divergence."},
    {"name": "states", "description": "Merge the states of batches into one answer."},
    {"name": "service", "description": "Health, readiness and service information."},
]


def operation_id(route: APIRoute) -> str:
    """Stable operationIds for generated clients: "<tag>-<route name>"."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def drain_on_sigterm(app: FastAPI, delay: float) -> Callable[[], None] | None:
    """Under uvicorn (main thread), wrap its SIGTERM handler: /readyz turns 503 at once,
    and uvicorn's graceful shutdown (stop accepting, finish in-flight requests) starts
    ``delay`` seconds later, so that load balancers see the 503 and stop sending traffic
    while the listener is still open. A second SIGTERM skips the rest of the delay.
    Returns a function that puts uvicorn's handler back, or None outside uvicorn."""
    if threading.current_thread() is not threading.main_thread():
        return None
    uvicorn_handler = signal.getsignal(signal.SIGTERM)
    if not isinstance(getattr(uvicorn_handler, "__self__", None), uvicorn.Server):
        return None
    assert callable(uvicorn_handler)
    loop = asyncio.get_running_loop()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if app.state.draining or delay <= 0:
            app.state.draining = True
            uvicorn_handler(signum, frame)
            return
        app.state.draining = True
        loop.call_soon_threadsafe(loop.call_later, delay, uvicorn_handler, signum, None)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, uvicorn_handler)

    return restore


async def exit_if_requests_are_stuck(answer_wait: float = 0.5) -> None:
    """At the end of the lifespan (after uvicorn's graceful-shutdown timeout cancelled what
    was still running): give the cancelled requests a moment to send their 503, then, if
    handlers are still computing in worker threads (which cannot be interrupted, and which
    the interpreter would wait for), end the process now: XENTROPY_GRACEFUL_TIMEOUT bounds
    the shutdown, whatever the requests cost."""
    deadline = time.monotonic() + answer_wait
    while requests_in_flight() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stuck = abandoned_requests()
    if not stuck:
        return
    logger.warning(
        "%d request(s) still computing at the end of the graceful-shutdown timeout were "
        "answered 503; exiting without waiting for them", stuck,
    )
    for handler in logging.getLogger("xentropy.access").handlers:  # queued lines
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def create_app(settings: Settings | None = None, *, compute_lane: bool = True) -> FastAPI:
    """Build the application. ``settings`` overrides the environment (tests use it);
    ``compute_lane=False`` routes every request through FastAPI's dependency solving
    (the tests and benchmarks compare the two paths)."""
    config = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.draining = False
        restore = drain_on_sigterm(app, config.drain_delay)
        app.state.ready = True
        yield
        app.state.ready = False
        if restore is not None:
            restore()
        metrics.mark_this_process_dead()
        await exit_if_requests_are_stuck()

    app = FastAPI(
        title="xentropy",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # FIX: Starlette's trailing-slash redirect built its Location from the request's
        # Host header (an open redirect for anyone who controls that header): /v1/info/ is
        # now a 404 like any other unknown path.
        redirect_slashes=False,
    )
    if settings is not None:
        async def given_settings() -> Settings:
            return settings

        app.dependency_overrides[current_settings] = given_settings
        app.dependency_overrides[get_settings] = lambda: settings  # for app_settings()
    # Every /v1 router behind the API key (a no-op when no key is configured).
    for router in (losses.router, calibration.router, divergences.router, states.router,
                   service.v1_router):
        app.include_router(
            router, dependencies=[Depends(require_api_key)], responses=AUTH_RESPONSES
        )
    app.include_router(service.router)
    app.include_router(metrics.router)
    install_error_handlers(app)
    install_docs(app)
    if compute_lane:
        app.add_middleware(ComputeLane, fastapi_app=app)  # inside the observability layer
    app.add_middleware(ObservabilityMiddleware, access_log=config.access_log)

    def openapi() -> dict[str, Any]:
        return build_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_app()
