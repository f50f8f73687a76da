"""GET / for newcomers, and no redirect built from the client's Host header."""

from __future__ import annotations

import pytest


def test_root_points_to_the_docs(client):
    # FIX: GET / was a bare 404 on a fresh clone.
    r = client.get("/")
    assert r.status_code == 200
    body = r.json()
    assert body["docs"] == "/docs" and body["openapi"] == "/openapi.json"
    assert "README" in body["readme"]
    for key in ("docs", "openapi", "info", "health"):
        assert client.get(body[key]).status_code == 200, key


@pytest.mark.parametrize("path", ["/v1/info/", "/healthz/", "/v1/losses/categorical/"])
def test_trailing_slash_is_a_404_not_a_redirect_to_the_host_header(client, path):
    # FIX: /v1/info/ answered 307 with "Location: http://<the request's Host>/v1/info".
    r = client.request("GET" if "losses" not in path else "POST", path,
                       headers={"host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404
    assert "location" not in r.headers
