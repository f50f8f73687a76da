"""The committed OpenAPI document is the app's, and it is complete enough to generate from."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import __version__
from app.main import create_app
from app.settings import Settings

SPEC_FILE = Path(__file__).parents[1] / "openapi" / "openapi.json"
SPEC = create_app().openapi()


def test_committed_spec_matches_the_app():
    committed = json.loads(SPEC_FILE.read_text())
    assert committed == json.loads(json.dumps(SPEC)), "run `make openapi` and commit the result"


def _operations():
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_operations_have_ids_tags_and_descriptions():
    ids = [op["operationId"] for _, _, op in _operations()]
    assert len(ids) == len(set(ids))
    for path, method, op in _operations():
        assert op.get("tags"), (path, method)
        assert op.get("description") or op.get("summary"), (path, method)
        assert "-" in op["operationId"] and " " not in op["operationId"]


def test_every_request_field_is_described():
    for name, schema in SPEC["components"]["schemas"].items():
        if name.endswith("Request"):
            for field, prop in schema["properties"].items():
                assert prop.get("description"), f"{name}.{field} has no description"


EXAMPLES = [
    (path, example["value"])
    for path, method, op in _operations()
    if method == "post"
    for example in op["requestBody"]["content"]["application/json"].get("examples", {}).values()
]


def test_every_post_has_examples():
    posts = {path for path, method, _ in _operations() if method == "post"}
    assert posts == {path for path, _ in EXAMPLES}


@pytest.mark.parametrize(("path", "body"), EXAMPLES)
def test_examples_are_valid_requests(client, path, body):
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text


# ----------------------------------------------------------------------------- spec quality

SCHEMAS = SPEC["components"]["schemas"]


def _resolve(schema: dict) -> dict:
    ref = schema.get("$ref", "")
    return SCHEMAS[ref.rsplit("/", 1)[-1]] if ref.startswith("#/components/schemas/") else schema


def _walk(node, path=()):
    """Every dict in the document, with its path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def test_every_property_of_every_model_is_described():
    missing = [
        f"{name}.{field}"
        for name, schema in SCHEMAS.items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert not missing, f"properties without a description: {missing}"


def test_every_model_and_operation_is_described():
    for name, schema in SCHEMAS.items():
        assert schema.get("description"), name
    for path, method, op in _operations():
        assert op.get("summary") and op.get("description"), (path, method)
        for status, response in op["responses"].items():
            assert response.get("description"), (path, method, status)


def test_enums_are_named_components():
    inline = [path for path, node in _walk(SPEC) if "enum" in node
              and not (len(path) == 3 and path[:2] == ("components", "schemas"))]
    assert not inline, f"inline enums (make them a named StrEnum): {inline}"
    for name in ("Reduction", "Normalization", "Units", "ResponseEncoding", "Binning"):
        assert SCHEMAS[name]["enum"], name


def test_encoded_arrays_are_named_components():
    def is_encoded(node):
        return {"dtype", "shape", "data"} <= set(node.get("properties", {}))

    encoded = {name for name, schema in SCHEMAS.items() if is_encoded(schema)}
    assert encoded and all(name.startswith("Encoded") for name in encoded)
    inline = [path for path, node in _walk(SPEC) if is_encoded(node)
              and not (len(path) == 3 and path[:2] == ("components", "schemas"))]
    assert not inline, inline
    # every array field of a request takes nested lists or one of them
    for name in ("CategoricalLossRequest", "BinaryLossRequest", "CalibrationRequest",
                 "DivergenceRequest"):
        for field, prop in SCHEMAS[name]["properties"].items():
            refs = {_resolve(branch).get("title") for branch in prop.get("anyOf", [])}
            if any(branch.get("type") == "array" for branch in prop.get("anyOf", [])):
                assert refs & encoded, f"{name}.{field}"


def test_encoded_array_examples_decode_to_their_shape():
    for name, schema in SCHEMAS.items():
        if name.startswith("Encoded"):
            (example,) = schema["examples"]
            dtype = np.dtype({"bool": "?"}.get(example["dtype"], example["dtype"]))
            data = np.frombuffer(base64.b64decode(example["data"]), dtype.newbyteorder("<"))
            assert data.size == math.prod(example["shape"]), name
            assert schema["properties"]["shape"]["minItems"] <= len(example["shape"])
            assert len(example["shape"]) <= schema["properties"]["shape"]["maxItems"]


ERROR_MODELS = {"401": "ErrorBody", "408": "ErrorBody", "413": "ErrorBody",
                "415": "ErrorBody", "422": "ValidationErrorBody"}


def test_error_responses_are_documented_with_their_body():
    for path, method, op in _operations():
        required = {"408", "413", "415", "422"} if method == "post" else set()
        if op.get("security"):
            required.add("401")
        assert required <= set(op["responses"]), (path, method)
        for status in required & set(op["responses"]):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{ERROR_MODELS[status]}"}, (
                path, status)


def test_error_bodies_have_examples_of_the_real_shape(client):
    r = client.post("/v1/losses/categorical", json={"logits": [[1, 2, 3]], "labels": [7]})
    assert r.json() == SCHEMAS["ValidationErrorBody"]["examples"][0]
    r = client.post("/v1/losses/categorical", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json() == SCHEMAS["ErrorBody"]["examples"][0]


def test_service_version_is_the_document_version(client):
    assert client.get("/v1/info").json()["version"] == SPEC["info"]["version"] == __version__


def _json_200(op):
    content = op["responses"]["200"].get("content", {})
    if "application/json" not in content:
        return None
    return _resolve(content["application/json"]["schema"])


def test_every_json_response_has_an_example():
    for path, method, op in _operations():
        schema = _json_200(op)
        if schema is not None and schema.get("properties"):
            assert schema.get("examples"), (path, method)


FIRST_EXAMPLES = {
    path: next(iter(op["requestBody"]["content"]["application/json"]["examples"].values()))
    for path, method, op in _operations()
    if method == "post" and _json_200(op) is not None
}


@pytest.mark.parametrize("path", sorted(FIRST_EXAMPLES))
def test_response_example_is_the_answer_to_the_first_request_example(client, path):
    """The documented response is what the service answers to the documented request."""
    op = SPEC["paths"][path]["post"]
    (documented,) = _json_200(op)["examples"]
    answer = client.post(path, json=FIRST_EXAMPLES[path]["value"]).json()
    flat_answer, flat_documented = _flat(answer), _flat(documented)
    assert flat_answer.keys() == flat_documented.keys()
    for key, value in flat_documented.items():
        if isinstance(value, float):
            assert flat_answer[key] == pytest.approx(value, rel=1e-9, abs=1e-15), key
        else:
            assert flat_answer[key] == value, key


def _flat(value, prefix=""):
    """{"a.b.0.": leaf}: nested JSON flattened, leaves compared one by one."""
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return {k: v for key, item in items for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix: value}


# ------------------------------------------------------------- security, as configured

SECURITY_CONFIGS = {
    "no-keys": Settings(access_log=False),
    "keys": Settings(api_keys=["openapi-test-key"], access_log=False),
    "keys-metrics-open": Settings(api_keys=["openapi-test-key"], metrics_require_key=False,
                                  access_log=False),
}


def _request(client: TestClient, path: str, method: str, op: dict) -> int:
    if method == "get":
        return client.get(path).status_code
    examples = op["requestBody"]["content"]["application/json"]["examples"]
    return client.post(path, json=next(iter(examples.values()))["value"]).status_code


@pytest.mark.parametrize("config", SECURITY_CONFIGS)
def test_declared_security_is_what_the_service_enforces(config):
    """An operation declares the key schemes exactly when, in the running configuration,
    it refuses a request without a key (schemathesis' ignored_auth check, in-process)."""
    app = create_app(SECURITY_CONFIGS[config])
    doc = app.openapi()
    assert set(doc["components"]["securitySchemes"]) == {"BearerAuth", "ApiKeyHeader"}
    secured = []
    with TestClient(app) as client:
        for path, item in doc["paths"].items():
            for method, op in item.items():
                status = _request(client, path, method, op)
                if op.get("security"):
                    assert op["security"] == [{"BearerAuth": []}, {"ApiKeyHeader": []}]
                    assert status == 401, (path, status)
                    secured.append(path)
                else:
                    assert status == 200, (path, status)
    v1 = {path for path in doc["paths"] if path.startswith("/v1")}
    expected = {"no-keys": set(), "keys": v1 | {"/metrics"}, "keys-metrics-open": v1}[config]
    assert set(secured) == expected


def test_the_committed_document_is_the_default_configuration():
    committed = json.loads(SPEC_FILE.read_text())
    assert committed == json.loads(json.dumps(create_app(SECURITY_CONFIGS["no-keys"]).openapi()))
    assert not any(op.get("security") for item in committed["paths"].values()
                   for op in item.values())
