"""The OpenAPI document: FastAPI's, plus the request bodies our handlers parse themselves,
and security requirements that say what the running configuration enforces.

Handlers read the raw body (to parse arrays without per-element Python objects), so
FastAPI does not see their body models; ``json_request_body`` declares them instead.

FastAPI declares the API-key schemes as required on every operation that depends on
them, but with no key configured those operations answer without one. The document
therefore declares an operation's security only where the running configuration enforces
it (keys configured; for /metrics also XENTROPY_METRICS_REQUIRE_KEY): what clients and
fuzzers read is what the service does. Both schemes stay listed in
``components.securitySchemes`` either way. A client generated from the committed document
(no keys) takes a plain or an authenticated client on every operation, so it works with
both configurations.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.settings import Settings, get_settings

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
    # Pydantic's own output wins for models that responses share with request bodies
    # (encoded arrays, enums): FastAPI's document models turn integer bounds into floats.
    components.update(defs.get("$defs", {}))
    _restore_examples(components)
    schema["components"]["schemas"] = dict(sorted(components.items()))  # as the docs list them
    _declare_enforced_security(app, schema)
    app.openapi_schema = schema
    return schema


def app_settings(app: FastAPI) -> Settings:
    """The settings ``app`` runs with: those given to ``create_app`` (kept as a dependency
    override), else the environment's."""
    provider = app.dependency_overrides.get(get_settings, get_settings)
    settings = provider()
    assert isinstance(settings, Settings)
    return settings


def _metrics_paths() -> set[str]:
    """Paths whose key requirement follows XENTROPY_METRICS_REQUIRE_KEY."""
    from app.api.routes import metrics  # routes import this module: import when needed

    return {route.path for route in metrics.router.routes if isinstance(route, APIRoute)}


def _declare_enforced_security(app: FastAPI, schema: dict[str, Any]) -> None:
    """Keep each operation's ``security`` only where the settings the app runs with
    enforce a key: every key-protected operation when keys are configured, /metrics only
    with XENTROPY_METRICS_REQUIRE_KEY too."""
    settings = app_settings(app)
    keys = bool(settings.api_key_digests)
    metrics_paths = _metrics_paths()
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "security" not in operation:
                continue
            enforced = keys and (path not in metrics_paths or settings.metrics_require_key)
            if not enforced:
                del operation["security"]


def _restore_examples(components: dict[str, Any]) -> None:
    """Put back the nulls of model examples: FastAPI encodes the document with
    ``exclude_none``, which also drops null values inside examples (an empty calibration
    bin's ``"accuracy": null``), so that they would no longer show the real answers.
    The examples are taken again from the models' ``json_schema_extra``."""
    for name, model in _app_models().items():
        extra = model.model_config.get("json_schema_extra")
        if name in components and isinstance(extra, dict) and "examples" in extra:
            components[name]["examples"] = extra["examples"]


def _app_models() -> dict[str, type[BaseModel]]:
    """This app's pydantic models by class name (names that two models share are left
    out: their components are named differently)."""
    found: dict[str, list[type[BaseModel]]] = {}
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sub.__module__.startswith("app."):
                found.setdefault(sub.__name__, []).append(sub)
    return {name: models[0] for name, models in found.items() if len(set(models)) == 1}
