"""GET /docs in a real browser: headless Chromium renders Swagger UI from the service's
own assets (no network beyond loopback), with every operation and the request examples.

Skipped when no Chromium binary is installed (Debian package `chromium`).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.main import create_app
from tests.e2e.conftest import Server, start_server, stop_server

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for name in BROWSERS if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium binary")

SPEC = create_app().openapi()
OPERATION_IDS = [op["operationId"] for item in SPEC["paths"].values() for op in item.values()]


@pytest.fixture(scope="module")
def docs_server() -> Iterator[Server]:
    server = start_server()
    yield server
    stop_server(server)


def chromium(tmp_path: Path, url: str, *mode: str) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    return subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1280,2000", "--virtual-time-budget=8000", *mode, url],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )


def test_swagger_ui_renders_every_operation_and_the_examples(docs_server, tmp_path):
    # A deep link opens one operation, as a reader following a link from the README would.
    done = chromium(tmp_path, docs_server.url + "/docs#/losses/losses-categorical", "--dump-dom")
    dom = done.stdout
    assert 'id="swagger-ui"' in dom, done.stderr[-2000:]
    for operation_id in OPERATION_IDS:
        tag = operation_id.split("-", 1)[0]
        assert f'id="operations-{tag}-{operation_id}"' in dom, operation_id
    assert "xentropy" in dom and SPEC["info"]["version"] in dom
    opened = dom[dom.index('id="operations-losses-losses-categorical"'):]
    text = html.unescape(re.sub(r"<[^>]+>", " ", opened[:60_000]))
    text = re.sub(r"\s+", " ", text)
    assert "/v1 /losses /categorical" in text or "/v1/losses/categorical" in text
    assert "Example 1" in text and "Example 2" in text  # the named request examples
    assert '"logits" : [ [ 2 , 1 , 0.1 ]' in text  # the first one, shown
    assert '"loss" : 0.2934380179170596' in text  # the documented response


def test_screenshot(docs_server, tmp_path):
    shot = tmp_path / "docs.png"
    done = chromium(tmp_path, docs_server.url + "/docs", f"--screenshot={shot}")
    assert shot.exists(), done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # not a blank page
    print(f"screenshot: {shot}")
