"""The compute lane (app.api.lane) answers exactly what FastAPI's routed path answers.

Every request below is sent to two applications with the same settings, one with the
lane and one without (``create_app(..., compute_lane=False)``): status, headers and body
must be byte-identical, whatever the route, the input or the error.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import orjson
import pytest
from fastapi import APIRouter, Depends, Header, Response
from fastapi.routing import iter_route_contexts

from app.api.body import JsonBody, SettingsDep
from app.api.lane import ComputeLane, served_by_lane
from app.main import create_app
from app.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

KEY = "lane-key-1"
SETTINGS = Settings(api_keys=[KEY], max_body_bytes=4096, max_elements=300)
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json"}
LOGITS = [[2.0, 1.0, 0.1], [0.5, -1.0, 3.0]]
VOLATILE = {"x-request-id", "date"}

CASES: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("categorical", "/v1/losses/categorical",
     orjson.dumps({"logits": LOGITS, "labels": [0, 2], "return_gradient": True}), {}),
    ("categorical NaN", "/v1/losses/categorical",
     b'{"logits": [[1, NaN, 2]], "labels": [0]}', {}),
    ("categorical unknown field", "/v1/losses/categorical",
     orjson.dumps({"logits": LOGITS, "labels": [0, 2], "nope": 1}), {}),
    ("categorical label out of range", "/v1/losses/categorical",
     orjson.dumps({"logits": LOGITS, "labels": [0, 7]}), {}),
    ("categorical too many elements", "/v1/losses/categorical",
     orjson.dumps({"logits": [[0.5] * 100] * 4, "labels": [0] * 4}), {}),
    ("binary", "/v1/losses/binary",
     orjson.dumps({"logits": [0.5, -2.0], "targets": [1, 0], "reduction": "none"}), {}),
    ("divergences", "/v1/divergences",
     orjson.dumps({"p": [[0.5, 0.5]], "q": [[0.9, 0.1]]}), {}),
    ("calibration", "/v1/calibration",
     orjson.dumps({"probabilities": [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
                   "labels": [0, 1, 1], "n_bins": 2}), {}),
    ("diagram", "/v1/calibration/diagram",
     orjson.dumps({"probabilities": [[0.9, 0.1], [0.2, 0.8]], "labels": [0, 1]}), {}),
    ("merge, no states", "/v1/merge", b'{"states": []}', {}),
    ("broken JSON", "/v1/losses/categorical", b'{"logits": [[1, 2]', {}),
    ("empty body", "/v1/losses/categorical", b"", {}),
    ("not JSON", "/v1/losses/categorical", b"a=1", {"Content-Type": "text/plain"}),
    ("gzip", "/v1/losses/categorical", orjson.dumps({"logits": LOGITS, "labels": [0, 1]}),
     {"Content-Encoding": "gzip"}),
    ("too large", "/v1/losses/categorical", b'{"logits": [[' + b"1," * 3000 + b"1]]}", {}),
    ("no key", "/v1/losses/categorical", b"{}", {"Authorization": ""}),
    ("wrong key", "/v1/losses/binary", b"{}", {"Authorization": "Bearer nope"}),
    ("X-API-Key", "/v1/divergences", orjson.dumps({"p": [[1.0]], "q": [[1.0]]}),
     {"Authorization": "", "X-API-Key": KEY}),
    ("basic scheme", "/v1/divergences", b"{}", {"Authorization": "Basic abc"}),
]


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(create_app(SETTINGS), raise_server_exceptions=False) as lane, \
            TestClient(create_app(SETTINGS, compute_lane=False),
                       raise_server_exceptions=False) as routed:
        yield lane, routed


def _answer(client: TestClient, path: str, body: bytes, headers: dict[str, str]):
    sent = {**JSON, **AUTH, **headers}
    response = client.post(path, content=body, headers={k: v for k, v in sent.items() if v})
    kept = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    return response.status_code, kept, response.content


@pytest.mark.parametrize(("name", "path", "body", "headers"), CASES, ids=[c[0] for c in CASES])
def test_the_lane_answers_what_the_router_answers(clients, name, path, body, headers):
    lane, routed = clients
    assert _answer(lane, path, body, headers) == _answer(routed, path, body, headers)


def test_the_cases_cover_every_status_the_lane_produces(clients):
    lane, _ = clients
    statuses = {_answer(lane, path, body, headers)[0] for _, path, body, headers in CASES}
    assert statuses == {200, 401, 413, 415, 422}


def test_other_methods_and_paths_go_through_fastapi(clients):
    lane, routed = clients
    for method, path in (("GET", "/v1/losses/categorical"), ("POST", "/v1/losses/categorical/"),
                         ("POST", "/v1/losses"), ("GET", "/healthz")):
        a = lane.request(method, path, headers=AUTH)
        b = routed.request(method, path, headers=AUTH)
        assert (a.status_code, a.content) == (b.status_code, b.content)


def test_the_lane_serves_every_post_compute_route():
    app = create_app(SETTINGS)
    lane = ComputeLane(app.router, fastapi_app=app)
    posts = {route.path for route in iter_route_contexts(app.routes)
             if route.methods == {"POST"}}
    assert set(lane._build()) == posts == {
        "/v1/losses/categorical", "/v1/losses/binary", "/v1/calibration",
        "/v1/calibration/diagram", "/v1/divergences", "/v1/merge",
    }


def test_a_route_with_another_dependency_is_left_to_fastapi():
    """A dependency the lane does not call (a header, another Depends) keeps the route on
    FastAPI's path, so that adding one can never be skipped silently."""
    router = APIRouter()

    async def tenant(x_tenant: str = Header()) -> str:
        return x_tenant

    @router.post("/v1/extra")
    async def extra(body: JsonBody, settings: SettingsDep,
                    who: str = Depends(tenant)) -> Response:
        return Response(who)

    @router.post("/v1/plain")
    async def plain(body: JsonBody, settings: SettingsDep) -> Response:
        return Response(bytes(body))

    app = create_app(SETTINGS)
    app.include_router(router)  # without the API key: not a lane route either
    served = {route.path for route in iter_route_contexts(app.routes) if served_by_lane(route)}
    assert "/v1/extra" not in served and "/v1/plain" not in served
    with TestClient(app) as client:
        r = client.post("/v1/extra", content=b"{}", headers={**JSON, "X-Tenant": "t1"})
        assert (r.status_code, r.text) == (200, "t1")
