"""/docs and /redoc are served with local assets (no CDN): they work offline."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest

from app.api.docs import ASSETS_URL, install_docs
from app.main import create_app
from app.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def docs_client() -> Iterator[TestClient]:
    # With an API key configured: the documentation stays open all the same.
    app = create_app(Settings(api_keys=["docs-key"], access_log=False))
    install_docs(app)
    install_docs(app)  # a second call changes nothing
    with TestClient(app) as c:
        yield c


def _sources(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_pages_load_only_local_assets(docs_client, page):
    r = docs_client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    sources = _sources(r.text)
    assert sources and all(s.startswith(ASSETS_URL + "/") for s in sources), sources
    assert "cdn." not in r.text and "fonts.googleapis" not in r.text
    for source in sources:
        asset = docs_client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 1000, source


def test_swagger_ui_loads_the_document_with_deep_links(docs_client):
    html = docs_client.get("/docs").text
    assert "url: '/openapi.json'" in html and '"deepLinking": true' in html
    assert docs_client.get("/docs/oauth2-redirect").status_code == 200
    assert docs_client.get("/openapi.json").status_code == 200


def test_the_bundle_is_swagger_ui_5(docs_client):
    """OpenAPI 3.1 (FastAPI's) needs Swagger UI 5."""
    bundle = docs_client.get(ASSETS_URL + "/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle and "isOAS31" in bundle


def test_docs_routes_are_replaced_not_added(docs_client):
    paths = [getattr(r, "path", None) for r in docs_client.app.routes]
    assert paths.count("/docs") == 1 and paths.count("/redoc") == 1
