"""The OpenAPI document: FastAPI's, plus the request bodies our handlers parse themselves.

Handlers read the raw body (to parse arrays without per-element Python objects), so
FastAPI does not see their body models; ``json_request_body`` declares them instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

_BODY_MODELS: list[type[BaseModel]] = []


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model``."""
    if model not in _BODY_MODELS:
        _BODY_MODELS.append(model)
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    examples = examples if isinstance(examples, list) else []
    content: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    if examples:
        content["examples"] = {
            f"example{i + 1}": {"summary": f"Example {i + 1}", "value": value}
            for i, value in enumerate(examples)
        }
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """Generate (once) the document served at /openapi.json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    _, defs = models_json_schema(
        [(m, "validation") for m in _BODY_MODELS], ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in defs.get("$defs", {}).items():
        components.setdefault(name, definition)
    app.openapi_schema = schema
    return schema
