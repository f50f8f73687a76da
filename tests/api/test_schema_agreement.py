"""The request schemas and the service agree: what schemathesis found, kept as cases.

Each body is checked twice: against its JSON schema in the OpenAPI document (draft
2020-12, as OpenAPI 3.1 uses) and against the service.
"""

from __future__ import annotations

import json

import jsonschema_rs  # schemathesis' validator
import pytest

from app.main import create_app
from xentropy._divergences import DIVERGENCE_PARAMS
from xentropy._validation import InputError
from xentropy.calibration import CALIBRATION_PARAMS, calibration_report
from xentropy.losses import softmax_cross_entropy_with_integer_labels
from xentropy.options import BINARY_PARAMS, CATEGORICAL_PARAMS

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


# The option fields are generated from the library's constraint tables: the document says
# exactly what the library checks, and a broken rule is the same error either way.

TABLES = {CAT: CATEGORICAL_PARAMS, BIN: BINARY_PARAMS, CAL: CALIBRATION_PARAMS,
          DIV: DIVERGENCE_PARAMS}
_BOUNDS = {("low", False): "minimum", ("low", True): "exclusiveMinimum",
           ("high", False): "maximum", ("high", True): "exclusiveMaximum"}


def _branches(prop: dict) -> list[dict]:
    """The non-null alternatives of a property, refs resolved."""
    out = []
    for branch in prop.get("anyOf", [prop]):
        if "$ref" in branch:
            branch = SPEC["components"]["schemas"][branch["$ref"].rsplit("/", 1)[1]]
        if branch.get("type") != "null":
            out.append(branch)
    return out


def _check_option(prop: dict, name: str, param) -> None:
    assert prop["description"] == param.doc, name
    if param.kind == "choice":
        (enum,) = _branches(prop)
        assert tuple(enum["enum"]) == param.choices, name
    if param.kind == "choices":
        (array,) = _branches(prop)
        items = SPEC["components"]["schemas"][array["items"]["$ref"].rsplit("/", 1)[1]]
        assert tuple(items["enum"]) == param.choices, name
        assert prop["default"] == list(param.default), name
        return
    if param.kind == "object":
        # The sub-options are a component generated from the row's own table.
        (sub,) = [b for b in _branches(prop) if b.get("type") != "boolean"]
        assert set(sub["properties"]) == {key for key, _ in param.fields}, name
        assert sub["additionalProperties"] is False, name
        for key, row in param.fields:
            _check_option(sub["properties"][key], f"{name}.{key}", row)
        if param.flag:
            assert {"type": "boolean"} in prop["anyOf"], name
    if param.kind in ("number", "integer"):
        (branch,) = _branches(prop)
        for side, open_ in (("low", param.low_open), ("high", param.high_open)):
            bound = getattr(param, side)
            if bound is not None:
                assert branch[_BOUNDS[side, open_]] == bound, (name, side)
    if param.default is not None:
        assert prop["default"] == param.default, name


@pytest.mark.parametrize("path", list(TABLES))
def test_every_option_is_in_the_schema_as_the_table_declares_it(path):
    props = SPEC["components"]["schemas"][REQUESTS[path]]["properties"]
    for name, param in TABLES[path].items():
        _check_option(props[name], name, param)


@pytest.mark.parametrize(("body", "call", "field"), [
    ({"label_smoothing": 1.0}, lambda: softmax_cross_entropy_with_integer_labels(
        [[1.0, 2.0]], [0], label_smoothing=1.0), "label_smoothing"),
    ({"epsilon": 0.5}, lambda: softmax_cross_entropy_with_integer_labels(
        [[1.0, 2.0]], [0], epsilon=0.5), "epsilon"),
    ({"ignore_index": 2**64}, lambda: softmax_cross_entropy_with_integer_labels(
        [[1.0, 2.0]], [0], ignore_index=2**64), "ignore_index"),
])
def test_a_broken_rule_is_the_same_error_through_the_library_and_http(client, body, call,
                                                                      field):
    with pytest.raises(InputError) as err:
        call()
    r = client.post(CAT, json={"logits": [[1.0, 2.0]], "labels": [0], **body})
    assert r.status_code == 422
    (item,) = r.json()["detail"]
    assert item == {"loc": ["body", field], "msg": err.value.message, "type": err.value.kind}


def test_n_bins_is_the_same_error_through_the_library_and_http(client):
    with pytest.raises(InputError) as err:
        calibration_report([0.5], [1], n_bins=0)
    r = client.post(CAL, json={"probabilities": [0.5], "labels": [1], "n_bins": 0})
    assert r.json()["detail"] == [
        {"loc": ["body", "n_bins"], "msg": err.value.message, "type": err.value.kind}
    ]
