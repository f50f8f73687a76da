"""The one place where exceptions become HTTP responses.

Every 4xx body has FastAPI's shape. Validation errors never echo the input back: an
input may hold NaN, which JSON cannot carry, and a 20 MB array has no place in an error.
Every message and every ``loc`` part is cut to a few hundred characters here, whatever
raised it, so that no input, however it reached a message, is sent back at length.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.api.codec import ElementLimitError
from xentropy._validation import InputError

logger = logging.getLogger("xentropy")


class BodyError(Exception):
    """A body refused before parsing: 408 (not received in time), 413 (too large) or 415
    (not JSON)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


#: Longest error message sent back (a message quoting input is cut here).
MAX_MESSAGE = 300


def _capped(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def input_error_item(exc: InputError) -> dict[str, Any]:
    loc: list[Any] = ["body"]
    if exc.field:
        loc.append(exc.field)
    loc.extend(exc.position)
    return {"loc": [_short(part) for part in loc], "msg": _capped(exc.message),
            "type": _capped(exc.kind, 64)}


def _short(part: Any) -> Any:
    """A ``loc`` part as sent back: field names cut to 64 characters (never echo a huge key)."""
    return part if not isinstance(part, str) or len(part) <= 64 else part[:61] + "..."


def pydantic_error_items(errors: list[Any], prefix: tuple[Any, ...] = ("body",)) -> list[Any]:
    """Pydantic errors without ``input``/``ctx``/``url`` (may hold NaN or huge arrays)."""
    items = []
    for err in errors:
        # FIX: an unknown key of 10 MB was echoed twice (loc and msg): a 20 MB answer.
        loc = [_short(part) for part in err.get("loc", ())]
        if prefix and (not loc or loc[0] != prefix[0]):
            loc = [*prefix, *loc]
        msg = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}: not part of this endpoint's body"
        items.append(
            {"loc": loc, "msg": _capped(msg), "type": _capped(err.get("type", "value_error"), 64)}
        )
    return items


def _unprocessable(items: list[Any]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": items})


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers: InputError and validation -> 422, BodyError -> 413/415."""

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return _unprocessable([input_error_item(exc)])

    @app.exception_handler(ValidationError)
    async def _model_error(request: Request, exc: ValidationError) -> JSONResponse:
        return _unprocessable(pydantic_error_items(exc.errors()))

    @app.exception_handler(RequestValidationError)
    async def _request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _unprocessable(pydantic_error_items(list(exc.errors()), prefix=()))

    @app.exception_handler(BodyError)
    async def _body_error(request: Request, exc: BodyError) -> JSONResponse:
        # A client too slow to send its body is not offered the connection for another
        # request: "Connection: close" makes the server close it after this answer.
        headers = {"connection": "close"} if exc.status_code == 408 else None
        return JSONResponse(
            status_code=exc.status_code, content={"detail": _capped(exc.detail)},
            headers=headers,
        )

    @app.exception_handler(ElementLimitError)
    async def _too_many_elements(request: Request, exc: ElementLimitError) -> JSONResponse:
        return JSONResponse(status_code=413, content={"detail": exc.detail})

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(request: Request, exc: ClientDisconnect) -> Response:
        # The client left while its body was streaming in: nobody reads this answer, and
        # it is not a server error (499, nginx's "client closed request", in the logs).
        return Response(status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = _capped(exc.detail) if isinstance(exc.detail, str) else exc.detail
        return JSONResponse(
            status_code=exc.status_code, content={"detail": detail}, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a client error: log it with its traceback, say nothing internal.
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": "internal error"})
