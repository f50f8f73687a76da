"""Reading and parsing request bodies: media type, size limit, fields -> validated model."""

from __future__ import annotations

import asyncio
import re
import types
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import msgspec
from fastapi import Depends, Request
from pydantic import BaseModel

from app.api.codec import Span, count_byte, decode_scalar, element_budget, quoted, split_body
from app.api.errors import BodyError
from app.api.schemas.common import (
    MAX_UNKNOWN_FIELDS,
    ArrayField,
    GroupArray,
    check_few_unknown_fields,
)
from app.settings import Settings, get_settings
from xentropy._validation import InputError

M = TypeVar("M", bound=BaseModel)


async def current_settings() -> Settings:
    """``get_settings()`` as a dependency. A coroutine: FastAPI runs a plain ``def``
    dependency in the thread pool, a hop per request that cost more than a small batch's
    whole computation. ``create_app(settings)`` overrides this one."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(current_settings)]


async def read_json_body(request: Request, settings: SettingsDep) -> bytes | bytearray:
    """The raw body of a JSON request, refused early when it is not JSON (415), larger
    than ``max_body_bytes`` (413, after reading at most the limit) or not received in full
    within ``body_timeout`` seconds (408: a slow or stalled client)."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        shown = media_type or "none"
        raise BodyError(415, f"expected Content-Type application/json, got {quoted(shown)[1:-1]}")
    # A compressed body would be parsed as if it were JSON (and a zip bomb has no size
    # limit): any content coding but identity is refused, naming it.
    codings = [
        coding.strip().lower()
        for value in request.headers.getlist("content-encoding")
        for coding in value.split(",")
    ]
    refused = [coding for coding in codings if coding not in ("", "identity")]
    if refused:
        raise BodyError(
            415, f"expected an uncompressed body, got Content-Encoding {quoted(refused[0])[1:-1]}"
            " (content codings are not supported: send the JSON as it is)",
        )
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"the body has {declared} bytes; the limit is {limit}")
    body = bytearray()
    timeout = settings.body_timeout
    try:
        # asyncio's own timeout: a third of the cost of anyio's cancel scope per request.
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyError(413, f"the body is larger than the limit of {limit} bytes")
    except TimeoutError:
        raise BodyError(
            408, f"the body was not received within {timeout:g} s ({len(body)} bytes arrived)"
        ) from None
    return body


_MAX_FIELDS = 20 + MAX_UNKNOWN_FIELDS
_MAX_STRINGS = 4096

JsonBody = Annotated[bytes | bytearray, Depends(read_json_body)]

_ARRAY_FIELDS: dict[type[BaseModel], frozenset[str]] = {}
_CONTAINER_FIELDS: dict[type[BaseModel], frozenset[str]] = {}


def _array_fields(model: type[BaseModel]) -> frozenset[str]:
    if model not in _ARRAY_FIELDS:
        _ARRAY_FIELDS[model] = frozenset(
            name
            for name, info in model.model_fields.items()
            if any(isinstance(m, ArrayField) for m in info.metadata)
            or any(isinstance(m, ArrayField) for arg in getattr(info.annotation, "__args__", ())
                   for m in getattr(arg, "__metadata__", ()))
        )
    return _ARRAY_FIELDS[model]


def _group_fields(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(
        name for name, info in model.model_fields.items()
        if any(isinstance(m, GroupArray) for m in info.metadata)
        or any(isinstance(m, GroupArray) for arg in getattr(info.annotation, "__args__", ())
               for m in getattr(arg, "__metadata__", ()))
    )


def _group_quotes(model: type[BaseModel], body: bytes | bytearray) -> int:
    """The quotes of a valid ``groups`` array of strings, which the string limit (meant
    to bound the keys of a body) does not count. Looked for only when the limit is
    exceeded; the array found is one JSON array of strings, so it holds no keys."""
    total = 0
    for name in _group_fields(model):
        found = re.search(rb'"' + re.escape(name.encode()) + rb'"[ \t\n\r]*:[ \t\n\r]*\[',
                          body)
        if found is None:
            continue
        start = found.end() - 1
        try:  # where the array ends: msgspec reports the trailing bytes' offset
            msgspec.json.decode(memoryview(body)[start:], type=list[str])
            continue  # nothing after the array: not the body's top-level object
        except msgspec.DecodeError as exc:
            end = _trailing_offset(exc)
        except msgspec.ValidationError:
            continue
        if end is not None:
            total += count_byte(body, b'"', start, start + end)
    return total


def _trailing_offset(exc: Exception) -> int | None:
    match = re.search(r"trailing characters \(byte (\d+)\)", str(exc))
    return int(match.group(1)) if match else None


def _admits_containers(annotation: Any) -> bool:
    """Whether a field of this type may hold a JSON array or object."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _admits_containers(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_admits_containers(arg) for arg in get_args(annotation))
    if origin is not None:
        return True  # list[...], dict[...], tuple[...], Literal[...] of containers...
    if annotation in (Any, object):
        return True
    return isinstance(annotation, type) and issubclass(
        annotation, BaseModel | list | dict | tuple | set | frozenset
    )


def _container_fields(model: type[BaseModel]) -> frozenset[str]:
    """The non-array fields that may take a JSON array or object (none today)."""
    if model not in _CONTAINER_FIELDS:
        _CONTAINER_FIELDS[model] = frozenset(
            name for name, info in model.model_fields.items()
            if name not in _array_fields(model) and _admits_containers(info.annotation)
        )
    return _CONTAINER_FIELDS[model]


def parse_request(model: type[M], body: bytes | bytearray, settings: Settings) -> M:
    """Validate a JSON body into ``model``; arrays become ndarrays.

    Array fields stay unparsed JSON (Spans of the body) until the codec reads them; every
    other field is parsed here and validated strictly by pydantic. A ``bytearray`` body
    is consumed: emptied once parsed, so that its memory is free before the computation.

    Raises:
      InputError, pydantic.ValidationError: mapped to 422 by app.api.errors.
      BodyError, ElementLimitError: 413 when the arrays hold more than ``max_elements``
        numbers (checked from counts and declared shapes before arrays are allocated).
    """
    # Cheap refusals before any parsing, so that a body built to be expensive (64 MiB of
    # "0," or of tiny keys) costs one scan, not gigabytes: a JSON array of N numbers has
    # N - 1 commas, and a valid body has a few dozen strings.
    most = settings.max_elements + 8 * _MAX_FIELDS
    if len(body) > most and count_byte(body, b",") > most:
        raise BodyError(
            413, f"the arrays hold more than {settings.max_elements} elements (the limit)"
        )
    quotes = count_byte(body, b'"')
    if quotes > 2 * _MAX_STRINGS and quotes - _group_quotes(model, body) > 2 * _MAX_STRINGS:
        raise InputError(
            "", f"expected the fields of this endpoint, got more than {_MAX_STRINGS} keys or "
            "strings", kind="extra_forbidden",
        )
    fields = split_body(body)
    check_few_unknown_fields(model, fields)  # before any value is decoded
    arrays = _array_fields(model)
    containers = _container_fields(model)
    data: dict[str, Any] = {
        key: _field_value(key, value, is_array=key in arrays, containers=key in containers)
        for key, value in fields.items()
    }
    del fields
    with element_budget(settings.max_elements):
        request = model.model_validate(data)
    del data
    if isinstance(body, bytearray):
        try:
            body.clear()  # every array is a copy or decoded data now; nothing points here
        except BufferError:  # pragma: no cover - a view still alive: keep the bytes
            pass
    present = (getattr(request, name) for name in arrays)
    n_elements = sum(a.size for a in present if a is not None)
    if n_elements > settings.max_elements:
        raise BodyError(
            413, f"the arrays hold {n_elements} elements; the limit is {settings.max_elements}"
        )
    return request


def _field_value(key: str, value: Span, *, is_array: bool, containers: bool) -> Any:
    """A top-level field for pydantic: scalars parsed, arrays left as Spans for the
    codec, except a JSON ``null``, which is None for every field (an optional array sent
    as null is absent, as the schema's ``anyOf [..., null]`` says)."""
    if not is_array:
        return decode_scalar(key, value, containers=containers)
    return None if value.is_null() else value
