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
from pydantic import BaseModel, Field

from app import __version__
from app.api.body import SettingsDep

router = APIRouter()


class Health(BaseModel):
    """Liveness or readiness."""

    status: str = Field(description='"ok", or why the process cannot serve.')


class Limits(BaseModel):
    """Request limits (XENTROPY_MAX_BODY_BYTES, XENTROPY_MAX_ELEMENTS)."""

    max_body_bytes: int
    max_elements: int


class Info(BaseModel):
    """What is serving."""

    version: str = Field(description="Version of the xentropy service.")
    limits: Limits
    libraries: dict[str, str] = Field(description="Versions of the numeric and web stack.")


@router.get("/healthz", tags=["service"], response_model=Health, summary="Liveness")
def healthz() -> dict[str, Any]:
    """200 while the process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["service"],
    response_model=Health,
    summary="Readiness",
    responses={503: {"model": Health, "description": "Not ready (starting or draining)."}},
)
def readyz(request: Request) -> Any:
    """200 when the process can serve requests; 503 while starting or draining."""
    if getattr(request.app.state, "ready", False):
        return {"status": "ok"}
    return JSONResponse(status_code=503, content={"status": "not ready"})


@router.get("/v1/info", tags=["service"], response_model=Info, summary="Service information")
def info(settings: SettingsDep) -> dict[str, Any]:
    """Version, request limits and library versions."""
    return {
        "version": __version__,
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_elements": settings.max_elements,
        },
        "libraries": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "fastapi": fastapi.__version__,
            "pydantic": pydantic.VERSION,
            "msgspec": msgspec.__version__,
        },
    }
