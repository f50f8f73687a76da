"""Health, readiness and service information."""

from __future__ import annotations

import platform
from typing import Any

import fastapi
import msgspec
import numpy as np
import pydantic
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app import __version__
from app.api.body import SettingsDep

router = APIRouter()
# /v1 routes: create_app includes this one behind the API key.
v1_router = APIRouter(prefix="/v1")


class Health(BaseModel):
    """Liveness or readiness."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str = Field(description='"ok", or why the process cannot serve.')


class Limits(BaseModel):
    """Request and connection limits (the XENTROPY_* setting of the same name)."""

    max_body_bytes: int = Field(description="Largest request body accepted; larger is a 413.")
    max_elements: int = Field(
        description="Most array elements in one request, counting those of the answer "
        "(per-sample losses, gradients); more is a 413."
    )
    max_header_bytes: int = Field(
        description="Largest request head (request line and headers); larger is a 431."
    )
    max_header_count: int = Field(description="Most header fields in a request; more is a 431.")
    max_url_bytes: int = Field(
        description="Longest request target (path and query); longer is a 414."
    )
    max_bins: int = Field(description="Most calibration bins (`n_bins`); more is a 422.")
    max_class_bins: int = Field(
        description="Most classes × bins of one calibration request; more is a 422."
    )
    max_bootstrap_work: int = Field(
        description="Most bootstrap work of one calibration request (replicates × samples of "
        "every report with intervals, plus the estimators' fixed costs); more is a 422."
    )
    body_timeout: float = Field(
        description="Seconds to send a request's body; slower is a 408, connection closed."
    )
    header_timeout: float = Field(
        description="Seconds to send a request's head; slower is a 408 (an idle connection is "
        "closed)."
    )
    write_timeout: float = Field(
        description="Seconds a response waits for the client to read any of it before the "
        "connection is closed."
    )
    max_connections: int = Field(
        description="Open connections per worker process; at the limit the longest-idle one "
        "is closed, or the new one gets 503 when all have requests in progress."
    )


class Info(BaseModel):
    """What is serving."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": "0.1.0",
                    "limits": {
                        "max_body_bytes": 67108864, "max_elements": 20000000,
                        "max_header_bytes": 65536, "max_header_count": 100,
                        "max_url_bytes": 8192, "max_bins": 10000,
                        "max_class_bins": 10000000, "max_bootstrap_work": 50000000000,
                        "body_timeout": 30.0, "header_timeout": 10.0, "write_timeout": 30.0,
                        "max_connections": 1000,
                    },
                    "libraries": {"python": "3.11.7", "numpy": "2.4.6", "fastapi": "0.165.0",
                                  "pydantic": "2.14.3", "msgspec": "0.22.0"},
                }
            ]
        }
    )

    version: str = Field(description="Version of the xentropy service.")
    limits: Limits = Field(description="The request limits this process enforces.")
    libraries: dict[str, str] = Field(description="Versions of the numeric and web stack.")


@router.get("/", include_in_schema=False)
async def index(request: Request) -> dict[str, Any]:
    """Where to start: a newcomer's ``curl localhost:8000`` gets links, not a bare 404."""
    root = request.scope.get("root_path", "")
    return {
        "service": "xentropy",
        "version": __version__,
        "docs": f"{root}/docs",
        "openapi": f"{root}/openapi.json",
        "info": f"{root}/v1/info",
        "health": f"{root}/healthz",
        "readme": "README.md at the root of the source tree (also the package description)",
    }


@router.get("/healthz", tags=["service"], response_model=Health, summary="Liveness")
async def healthz() -> dict[str, Any]:
    """200 while the process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["service"],
    response_model=Health,
    summary="Readiness",
    responses={503: {"model": Health, "description": "Not ready (starting or draining)."}},
)
async def readyz(request: Request) -> Any:
    """200 when the process can serve requests; 503 while starting, and from SIGTERM on
    while it drains (``"draining"``)."""
    state = request.app.state
    if getattr(state, "draining", False):
        return JSONResponse(status_code=503, content={"status": "draining"})
    if getattr(state, "ready", False):
        return {"status": "ok"}
    return JSONResponse(status_code=503, content={"status": "not ready"})


@v1_router.get("/info", tags=["service"], response_model=Info, summary="Service information")
async def info(settings: SettingsDep) -> dict[str, Any]:
    """Version, request limits and library versions."""
    return {
        "version": __version__,
        "limits": {name: getattr(settings, name) for name in Limits.model_fields},
        "libraries": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "fastapi": fastapi.__version__,
            "pydantic": pydantic.VERSION,
            "msgspec": msgspec.__version__,
        },
    }
