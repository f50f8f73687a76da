"""A real uvicorn process on loopback: the service as clients see it."""

from __future__ import annotations

import httpx
import numpy as np
import pytest


def test_health_ready_and_info(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert "limits" in httpx.get(server.url + "/v1/info").json()


def test_categorical_round_trip(server):
    body = {"logits": [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]], "labels": [0, 1],
            "return_gradient": True}
    r = httpx.post(server.url + "/v1/losses/categorical", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    out = r.json()
    z = np.array(body["logits"])
    p = np.exp(z - np.log(np.exp(z).sum(1, keepdims=True)))
    expected_grad = (p - np.eye(3)[[0, 1]]) / 2
    np.testing.assert_allclose(out["gradient"], expected_grad, rtol=1e-12)


def test_nan_token_is_rejected_by_the_real_server(server):
    r = httpx.post(
        server.url + "/v1/losses/binary",
        content=b'{"logits": [0.5, NaN], "targets": [1, 0]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "logits", 1]
    assert "NaN" not in r.text


@pytest.mark.parametrize("n", [1, 1000])
def test_large_and_small_batches(server, n):
    rng = np.random.default_rng(n)
    body = {"logits": rng.normal(size=(n, 50)).tolist(), "labels": rng.integers(0, 50, n).tolist()}
    r = httpx.post(server.url + "/v1/losses/categorical", json=body, timeout=30)
    assert r.status_code == 200 and np.isfinite(r.json()["loss"])
    assert httpx.get(server.url + "/healthz").status_code == 200
