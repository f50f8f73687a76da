"""/docs (Swagger UI) and /redoc served from local assets: no CDN, so they work offline.

FastAPI's own pages load their JavaScript and CSS from a CDN. The ``fastapi-offline``
package ships the same Swagger UI 5 and ReDoc bundles; ``install_docs`` replaces
FastAPI's two pages (same URLs) with ones that load those files from
``/docs/assets``, a static mount. Call it once from ``create_app``; calling it again is
a no-op.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route

#: Where the Swagger UI and ReDoc bundles are served from.
ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
_MOUNT_NAME = "docs-assets"

#: Swagger UI options on top of FastAPI's defaults (the app's own take precedence).
SWAGGER_UI_PARAMETERS = {"displayRequestDuration": True}


def install_docs(app: FastAPI) -> None:
    """Serve /docs (Swagger UI), its OAuth2 redirect page and /redoc from local assets,
    at the app's ``docs_url``, ``swagger_ui_oauth2_redirect_url`` and ``redoc_url``."""
    if any(getattr(route, "name", None) == _MOUNT_NAME for route in app.router.routes):
        return
    openapi_url = app.openapi_url
    if openapi_url is None:  # no document, nothing to show
        return
    pages = (app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url)
    replaced = {path for path in pages if path is not None}
    app.router.routes[:] = [r for r in app.router.routes if not _is_page(r, replaced)]
    app.router.routes.append(
        Mount(ASSETS_URL, app=StaticFiles(directory=ASSETS_DIR), name=_MOUNT_NAME)
    )
    parameters = {**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})}
    title = app.title
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    if app.docs_url is not None:

        async def swagger_ui(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{title} - Swagger UI",
                swagger_js_url=asset(request, "swagger-ui-bundle.js"),
                swagger_css_url=asset(request, "swagger-ui.css"),
                swagger_favicon_url=asset(request, "favicon.png"),
                oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
                init_oauth=app.swagger_ui_init_oauth,
                swagger_ui_parameters=parameters,
            )

        app.add_route(app.docs_url, swagger_ui, include_in_schema=False)
        if oauth2_redirect_url is not None:

            async def oauth2_redirect(request: Request) -> HTMLResponse:
                return get_swagger_ui_oauth2_redirect_html()

            app.add_route(oauth2_redirect_url, oauth2_redirect, include_in_schema=False)

    if app.redoc_url is not None:

        async def redoc(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{title} - ReDoc",
                redoc_js_url=asset(request, "redoc.standalone.js"),
                redoc_favicon_url=asset(request, "favicon.png"),
                with_google_fonts=False,
            )

        app.add_route(app.redoc_url, redoc, include_in_schema=False)


def _is_page(route: BaseRoute, paths: set[str]) -> bool:
    """FastAPI's own docs pages: plain Starlette routes (not API routes) at the docs URLs."""
    return isinstance(route, Route) and not isinstance(route, APIRoute) and route.path in paths
