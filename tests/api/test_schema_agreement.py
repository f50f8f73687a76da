"""The request schemas and the service agree: what schemathesis found, kept as cases.

Each body is checked twice: against its JSON schema in the OpenAPI document (draft
2020-12, as OpenAPI 3.1 uses) and against the service.
"""

from __future__ import annotations

import json

import jsonschema_rs  # schemathesis' validator
import pytest

from app.main import create_app

SPEC = create_app().openapi()
REQUESTS = {
    "/v1/losses/categorical": "CategoricalLossRequest",
    "/v1/losses/binary": "BinaryLossRequest",
    "/v1/calibration": "CalibrationRequest",
    "/v1/divergences": "DivergenceRequest",
}


def schema_valid(path: str, body: dict) -> bool:
    # "#/components/..." references resolve inside this root, which carries the components.
    root = {"$ref": f"#/components/schemas/{REQUESTS[path]}", "components": SPEC["components"]}
    return jsonschema_rs.Draft202012Validator(root).is_valid(body)


CAT, BIN, CAL, DIV = REQUESTS
ENCODED_12 = {"dtype": "float64", "shape": [1, 2], "data": "AAAAAAAA8D8AAAAAAAAAQA=="}

ACCEPTED = [
    # JSON null for an optional array is "absent", as the schema's anyOf [..., null] says
    (CAT, {"logits": [[1.0, 2.0]], "probabilities": None, "labels": [0], "targets": None,
           "class_weights": None, "focal_alpha": None}),
    (DIV, {"p": [[0.5, 0.5]], "q": None, "q_logits": [[0.0, 1.0]]}),
    # JSON Schema's integer is any number without a fractional part: 1.0 is one
    (CAT, {"logits": [[1.0, 2.0]], "labels": [1.0]}),
    (CAT, {"logits": [[1.0, 2.0]], "labels": [0], "ignore_index": -100.0}),
    (CAL, {"probabilities": [0.2, 0.7], "labels": [0, 1], "n_bins": 3.0}),
    (CAT, {"logits": dict(ENCODED_12, shape=[1.0, 2.0]), "labels": [1]}),
    (BIN, {"logits": [1.0, 2.0], "targets": [1, 0], "mask": [1.0, 0.0]}),
]
REFUSED = [
    # exactly one of two fields, now written in the schema (allOf/oneOf)
    (CAT, {"labels": [0]}, ["body", "logits"]),
    (CAT, {"logits": [[1.0, 2.0]], "probabilities": [[0.5, 0.5]], "labels": [0]},
     ["body", "probabilities"]),
    (CAT, {"logits": [[1.0, 2.0]], "labels": None, "targets": None}, ["body", "labels"]),
    (DIV, {"p": [[0.5, 0.5]], "q": [[0.5, 0.5]], "q_logits": [[0.0, 0.0]]}, ["body", "q_logits"]),
    (CAT, {"logits": [[1.0, 2.0]], "targets": [[1.0, 0.0]], "ignore_index": 0},
     ["body", "ignore_index"]),
    # null where an array is required
    (DIV, {"p": None, "q": [[0.5, 0.5]]}, ["body", "p"]),
    # whole numbers only
    (CAT, {"logits": [[1.0, 2.0]], "labels": [1.5]}, ["body", "labels", 0]),
    (CAL, {"probabilities": [0.2], "labels": [0], "n_bins": 2.5}, ["body", "n_bins"]),
    (BIN, {"logits": [1.0], "targets": [1], "mask": [0.5]}, ["body", "mask", 0]),
    (CAT, {"logits": dict(ENCODED_12, shape=[1, 2.5]), "labels": [1]},
     ["body", "logits", "shape", 1]),
    # encoded arrays: dtype per kind, rank per field, sizes >= 1, base64 alphabet
    (CAT, {"logits": [[1.0, 2.0]], "labels": dict(ENCODED_12, shape=[2])},
     ["body", "labels", "dtype"]),
    (CAT, {"logits": dict(ENCODED_12, shape=[2]), "labels": [0]}, ["body", "logits", "shape"]),
    (CAT, {"logits": dict(ENCODED_12, shape=[0, 2], data=""), "labels": [0]},
     ["body", "logits", "shape", 0]),
    (CAT, {"logits": dict(ENCODED_12, shape=[2**63 - 1, 0], data=""), "labels": [0]},
     ["body", "logits", "shape", 1]),
    (CAT, {"logits": dict(ENCODED_12, data="@@@@"), "labels": [0]}, ["body", "logits", "data"]),
    # element bounds, now in the schema too
    (CAT, {"probabilities": [[1.5, -0.5]], "labels": [0]}, ["body", "probabilities", 0, 0]),
    (BIN, {"logits": [1.0], "targets": [1], "focal_alpha": 1.5}, ["body", "focal_alpha"]),
    (CAL, {"probabilities": [0.5], "labels": [0], "sample_weights": [-1]},
     ["body", "sample_weights", 0]),
]


@pytest.mark.parametrize(("path", "body"), ACCEPTED, ids=[json.dumps(b) for _, b in ACCEPTED])
def test_schema_valid_and_accepted(client, path, body):
    assert schema_valid(path, body)
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("path", "body", "loc"), REFUSED,
                         ids=[json.dumps(b) for _, b, _ in REFUSED])
def test_schema_invalid_and_refused(client, path, body, loc):
    assert not schema_valid(path, body)
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_whole_numbers_give_the_same_answer_as_integers(client):
    as_ints = client.post(CAT, json={"logits": [[1.0, 2.0], [3.0, 0.5]], "labels": [1, 0]})
    as_floats = client.post(CAT, json={"logits": [[1.0, 2.0], [3.0, 0.5]], "labels": [1.0, 0]})
    assert as_ints.json() == as_floats.json()


def test_a_null_array_is_named_as_such(client):
    r = client.post(DIV, json={"p": None, "q": [[0.5, 0.5]]})
    assert r.json()["detail"][0]["msg"] == (
        "expected an array (nested lists) or an encoded array, got null"
    )
