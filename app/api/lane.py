"""The compute routes' requests served past FastAPI's per-request dependency solving.

Every POST compute route has the same dependencies: the API key (``require_api_key``,
with the two security schemes), the settings and the JSON body (``read_json_body``).
FastAPI resolves them per request by walking its dependency tree, which cost about 0.2 ms
a request, more than a 256×10 batch's whole computation. This pure ASGI layer, inside
``ObservabilityMiddleware``, serves those routes by calling the same dependency functions
in FastAPI's order, then the endpoint itself, and turns exceptions into responses with the
application's own handlers: the answer, headers included, is the routed path's
(``tests/api/test_lane.py`` compares them byte for byte). FastAPI keeps declaring the
routes (the OpenAPI document, 404 and 405), and any route whose dependencies are not
exactly those, or any request under a ``root_path``, goes through FastAPI unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.auth import api_key_scheme, bearer_scheme, require_api_key
from app.api.body import current_settings, read_json_body

#: The dependency functions of a lane route: the whole tree, nothing else.
LANE_DEPENDENCIES = frozenset(
    {require_api_key, current_settings, bearer_scheme, api_key_scheme, read_json_body}
)

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def served_by_lane(route: RouteContext) -> bool:
    """Whether ``route`` (as included: its router's dependencies too) is a POST taking
    exactly ``(body, settings)`` from the lane's dependencies, behind the API key, and
    answering a Response it builds itself."""
    if not isinstance(route.route, APIRoute):
        return False
    dependant = route.dependant
    params = {sub.name: sub.call for sub in dependant.dependencies if sub.name}
    endpoint, path = route.endpoint, route.path
    return (
        route.methods == {"POST"}
        and path is not None and "{" not in path and endpoint is not None
        and params == {"body": read_json_body, "settings": current_settings}
        and any(sub.call is require_api_key for sub in dependant.dependencies)
        and set(_calls(dependant)) == LANE_DEPENDENCIES
        and not (dependant.path_params or dependant.query_params or dependant.header_params
                 or dependant.cookie_params or dependant.body_params)
        and inspect.signature(endpoint).return_annotation in (Response, "Response")
    )


class ComputeLane:
    """Serves the POSTs of the routes ``served_by_lane`` accepts; passes the rest on."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        #: path -> (the route as included, whether its endpoint is a coroutine)
        self._routes: dict[str, tuple[RouteContext, bool]] | None = None
        self._handlers: dict[Any, Handler] = {}

    def _build(self) -> dict[str, tuple[RouteContext, bool]]:
        """The routes and handlers, on the first request (routers are included by then)."""
        routes = {
            str(route.path): (route, inspect.iscoroutinefunction(route.endpoint))
            for route in iter_route_contexts(self.fastapi_app.routes) if served_by_lane(route)
        }
        # What Starlette gives its ExceptionMiddleware: every handler but the 500 one,
        # which stays with ServerErrorMiddleware (an unhandled error propagates as it does
        # from the router).
        self._handlers = {
            key: handler for key, handler in self.fastapi_app.exception_handlers.items()
            if key not in (500, Exception)
        }
        self._routes = routes
        return routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routes = self._routes if self._routes is not None else self._build()
        entry = (
            routes.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path")
            else None
        )
        if entry is None:
            await self.app(scope, receive, send)
            return
        route, coroutine = entry
        # What the router would have put in the scope (metrics and logs read the route).
        scope["router"] = self.fastapi_app.router
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        scope["route"] = route.route
        request = Request(scope, receive)
        try:
            response = await self._answer(route, coroutine, request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            answer: Any = (handler(request, exc) if inspect.iscoroutinefunction(handler)
                           else run_in_threadpool(handler, request, exc))
            response = await answer
        await response(scope, receive, send)

    async def _answer(self, route: RouteContext, coroutine: bool, request: Request
                      ) -> Response:
        # FastAPI's order: the router's dependency (the API key), then the parameters.
        provider = self.fastapi_app.dependency_overrides.get(current_settings, current_settings)
        settings = await provider()
        await require_api_key(
            settings, await bearer_scheme(request), await api_key_scheme(request)
        )
        body = await read_json_body(request, settings)
        endpoint: Callable[..., Any] = route.endpoint  # type: ignore[assignment]
        if coroutine:
            response = await endpoint(body=body, settings=settings)
        else:
            response = await run_in_threadpool(endpoint, body=body, settings=settings)
        if not isinstance(response, Response):  # pragma: no cover - served_by_lane checks
            raise TypeError(f"{route.path} answered {type(response).__name__}, not a Response")
        return response

    def _handler(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler
        return None
