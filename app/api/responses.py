"""Responses from core results: one encoder for every endpoint.

:func:`encode_result` walks a library result (a frozen dataclass, its nested dataclasses
and arrays) along the fields of the endpoint's response model, in the model's order, so
the body's keys are the schema's properties in the schema's order, named as the schema
names them (``alias``). The library knows no wire names.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any

import numpy as np
from fastapi import Response
from pydantic import BaseModel

from app.api.codec import dumps, encode_array


class JSONBytes(Response):
    """A response whose body was already serialised by the codec."""

    media_type = "application/json"


@dataclasses.dataclass(frozen=True)
class _Key:
    attribute: str
    key: str
    required: bool
    nested: type[BaseModel] | None


@cache
def _plan(model: type[BaseModel]) -> tuple[_Key, ...]:
    """The model's fields in order: where each value comes from and goes to."""
    return tuple(
        _Key(name, info.alias or name, info.is_required(), _nested_model(info.annotation))
        for name, info in model.model_fields.items()
    )


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The response model inside ``X``, ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None


def encode_result(
    result: Any,
    model: type[BaseModel],
    *,
    encoding: str = "json",
    omit: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The body of ``model`` from ``result``: JSON-ready values, arrays per ``encoding``.

    A field with a default (documented as "present with ...") is left out when its value
    is None, and so is every name in ``omit``; required fields are always written
    (null included).
    """
    out: dict[str, Any] = {}
    for field in _plan(model):
        if field.attribute in omit:
            continue
        value = getattr(result, field.attribute)
        if value is None and not field.required:
            continue
        out[field.key] = _encode(value, field.nested, encoding)
    return out


def _encode(value: Any, nested: type[BaseModel] | None, encoding: str) -> Any:
    if isinstance(value, np.ndarray):
        return encode_array(value, encoding)
    if isinstance(value, tuple | list):
        return [_encode(item, nested, encoding) for item in value]
    if nested is not None and value is not None and not isinstance(value, dict):
        return encode_result(value, nested, encoding=encoding)
    if isinstance(value, np.generic):
        return value.item()
    return value


def json_response(content: dict[str, Any]) -> Response:
    return JSONBytes(dumps(content))


def result_response(
    result: Any, model: type[BaseModel], *, encoding: str = "json",
    omit: frozenset[str] = frozenset(),
) -> Response:
    """``encode_result`` serialised: the one way every endpoint answers."""
    return json_response(encode_result(result, model, encoding=encoding, omit=omit))
