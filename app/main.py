"""create_app(): the FastAPI application with its routers, error handlers and docs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app import __version__
from app.api.errors import install_error_handlers
from app.api.openapi import build_openapi
from app.api.routes import losses, service
from app.settings import Settings, get_settings

DESCRIPTION = """\
Cross-entropy losses, their analytic gradients and calibration statistics for batches
of model outputs. Every numeric array accepts nested JSON lists or an encoded array
(`{"dtype", "shape", "data"}`, base64 of little-endian C-order bytes). Computation is
in float64; responses never contain NaN or Infinity.
"""

TAGS = [
    {"name": "losses", "description": "Categorical and binary cross-entropy with gradients."},
    {"name": "service", "description": "Health, readiness and service information."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application. ``settings`` overrides the environment (tests use it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ready = True
        yield
        app.state.ready = False

    app = FastAPI(
        title="xentropy",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    app.include_router(losses.router)
    app.include_router(service.router)
    install_error_handlers(app)

    def openapi() -> dict[str, Any]:
        return build_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_app()
