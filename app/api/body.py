"""Reading and parsing request bodies: media type, size limit, fields -> validated model."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import anyio
import msgspec
from fastapi import Depends, Request
from pydantic import BaseModel

from app.api.codec import decode_scalar, split_body
from app.api.errors import BodyError
from app.api.schemas.common import MAX_UNKNOWN_FIELDS, ArrayField, check_few_unknown_fields
from app.settings import Settings, get_settings
from xentropy._validation import InputError

M = TypeVar("M", bound=BaseModel)
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def read_json_body(request: Request, settings: SettingsDep) -> bytes | bytearray:
    """The raw body of a JSON request, refused early when it is not JSON (415), larger
    than ``max_body_bytes`` (413, after reading at most the limit) or not received in full
    within ``body_timeout`` seconds (408: a slow or stalled client)."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        shown = media_type or "none"
        raise BodyError(415, f"expected Content-Type application/json, got {shown}")
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"the body has {declared} bytes; the limit is {limit}")
    body = bytearray()
    timeout = settings.body_timeout
    try:
        with anyio.fail_after(timeout):
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


def _field_value(key: str, value: Any, *, is_array: bool) -> Any:
    """A top-level field for pydantic: scalars parsed, arrays left as Raw JSON for the
    codec, except a JSON ``null``, which is None for every field (an optional array sent
    as null is absent, as the schema's ``anyOf [..., null]`` says)."""
    if not isinstance(value, msgspec.Raw):
        return value  # the standard-library fallback parsed it already
    if not is_array:
        return decode_scalar(key, value)
    return None if len(value) == 4 and bytes(value) == b"null" else value  # no copy of big arrays


def parse_request(model: type[M], body: bytes | bytearray, settings: Settings) -> M:
    """Validate a JSON body into ``model``; arrays become ndarrays.

    Array fields stay unparsed JSON until their own typed decoder reads them (see codec);
    every other field is parsed here and validated strictly by pydantic.

    Raises:
      InputError, pydantic.ValidationError: mapped to 422 by app.api.errors.
      BodyError: 413 when the arrays hold more than ``max_elements`` numbers.
    """
    # Cheap refusals before any parsing, so that a body built to be expensive (64 MiB of
    # "0," or of tiny keys) costs one scan, not gigabytes: a JSON array of N numbers has
    # N - 1 commas, and a valid body has a few dozen strings.
    if body.count(b",") > settings.max_elements + 8 * _MAX_FIELDS:
        raise BodyError(
            413, f"the arrays hold more than {settings.max_elements} elements (the limit)"
        )
    if body.count(b'"') > 2 * _MAX_STRINGS:
        raise InputError(
            "", f"expected the fields of this endpoint, got more than {_MAX_STRINGS} keys or "
            "strings", kind="extra_forbidden",
        )
    fields = split_body(body)
    check_few_unknown_fields(model, fields)  # before any value is decoded
    arrays = _array_fields(model)
    data: dict[str, Any] = {
        key: _field_value(key, value, is_array=key in arrays) for key, value in fields.items()
    }
    request = model.model_validate(data)
    present = (getattr(request, name) for name in arrays)
    n_elements = sum(a.size for a in present if a is not None)
    if n_elements > settings.max_elements:
        raise BodyError(
            413, f"the arrays hold {n_elements} elements; the limit is {settings.max_elements}"
        )
    return request
