"""Responses from core results: one encoder for every endpoint, and for the command.

:func:`encode_result` is the library's :func:`xentropy._wire.to_wire` (a result's fields in
the dataclass order, named and left out as the fields' metadata say) with this service's
array encoding. The response models document those keys in that order; a test keeps the
two in agreement (``tests/api/test_wire_agreement.py``), so ``xentropy evaluate --output``
writes what ``POST /v1/merge`` answers without importing the service.
"""

from __future__ import annotations

import typing
from functools import partial
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from app.api.codec import dumps, encode_array
from xentropy._wire import to_wire


class JSONBytes(Response):
    """A response whose body was already serialised by the codec."""

    media_type = "application/json"


def encode_result(
    result: Any, *, encoding: str = "json", omit: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The body of ``result``: JSON-ready values, arrays per ``encoding``, without the
    attributes in ``omit``; a state is written as its JSON form."""
    return to_wire(result, array=partial(encode_array, encoding=encoding), omit=omit)


def json_response(content: dict[str, Any]) -> Response:
    return JSONBytes(dumps(content))


def result_response(
    result: Any, *, encoding: str = "json", omit: frozenset[str] = frozenset(),
) -> Response:
    """``encode_result`` serialised: the one way every endpoint answers."""
    return json_response(encode_result(result, encoding=encoding, omit=omit))


def _nested_models(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The response model of field ``name`` of ``model`` (inside ``X | None``, ``list[X]``)."""
    return _nested(model.model_fields[name].annotation) if name in model.model_fields else None


def _nested(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested(arg)
        if found is not None:
            return found
    return None
