"""The loss endpoints over HTTP (in-process): contract values, options, and every
bad-input class with its exact status and ``loc``."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import log_softmax

CAT = "/v1/losses/categorical"
BIN = "/v1/losses/binary"
VECTORS = json.loads((Path(__file__).parents[1] / "reference" / "pytorch-vectors.json").read_text())


def post_raw(client: Any, path: str, body: str | bytes, content_type: str = "application/json"):
    return client.post(path, content=body, headers={"content-type": content_type})


def encoded(arr: np.ndarray, dtype: str) -> dict[str, Any]:
    a = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def decode(value: dict[str, Any]) -> np.ndarray:
    assert value["dtype"] == "float64"
    return np.frombuffer(base64.b64decode(value["data"]), "<f8").reshape(value["shape"])


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["note"] for c in VECTORS["cases"]])
def test_pytorch_reference_vectors_over_http(client, case):
    body = dict(case["request"], return_gradient=True)
    r = client.post(case["endpoint"], json=body)
    assert r.status_code == 200, r.text
    out, expected = r.json(), case["expected"]
    if expected["loss"] is None:
        assert out["loss"] is None
    else:
        assert out["loss"] == pytest.approx(expected["loss"], rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(out["losses"], expected["losses"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["gradient"], expected["gradient"], rtol=1e-10, atol=1e-14)


def test_keras_binary_crossentropy_documented_example(client):
    body = {"probabilities": [[0.6, 0.4], [0.4, 0.6]], "targets": [[0, 1], [0, 0]]}
    assert client.post(BIN, json=body).json()["loss"] == pytest.approx(0.815, abs=1e-3)
    weighted = dict(body, sample_weights=[1, 0], normalization="samples")
    assert client.post(BIN, json=weighted).json()["loss"] == pytest.approx(0.458, abs=1e-3)
    per_element = client.post(BIN, json=dict(body, reduction="none")).json()
    assert per_element["loss"] is None
    np.testing.assert_allclose(np.mean(per_element["losses"], axis=1), [0.916, 0.714], atol=1e-3)


def test_categorical_probabilities_in_bits(client):
    body = {"probabilities": [[0.775, 0.116, 0.039, 0.070]], "labels": [0], "units": "bits"}
    out = client.post(CAT, json=body).json()
    assert out["loss"] == pytest.approx(0.3677, abs=1e-4)
    assert out["loss"] == pytest.approx(-math.log2(0.775), rel=1e-12)
    assert out["units"] == "bits"


def test_response_fields_and_presence_rules(client):
    body = {"logits": [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]], "labels": [0, 1]}
    plain = client.post(CAT, json=body).json()
    assert "losses" not in plain and "gradient" not in plain
    expected = -log_softmax(np.array(body["logits"]), axis=1)[[0, 1], [0, 1]].mean()
    assert plain["loss"] == pytest.approx(expected, rel=1e-12)
    assert plain | {"loss": None} == {
        "loss": None, "n_samples": 2, "n_classes": 3, "n_ignored": 0, "weight_sum": 2.0,
        "units": "nats", "reduction": "mean", "normalization": "weights",
        "convention": "xentropy", "resolved": plain["resolved"],
        "diagnostics": {"n_clipped": 0},
    }
    none = client.post(CAT, json=dict(body, reduction="none")).json()
    assert none["loss"] is None and len(none["losses"]) == 2 and "gradient" not in none
    with_grad = client.post(CAT, json=dict(body, return_gradient=True)).json()
    assert np.asarray(with_grad["gradient"]).shape == (2, 3)
    assert len(with_grad["losses"]) == 2


def test_ignore_index_and_diagnostics(client):
    body = {"logits": [[1.0, 2.0], [0.5, 0.1], [3.0, 1.0]], "labels": [0, -100, 1],
            "ignore_index": -100, "return_gradient": True}
    out = client.post(CAT, json=body).json()
    assert out["n_ignored"] == 1 and out["diagnostics"] == {"n_clipped": 0}
    assert out["weight_sum"] == 2.0
    assert out["losses"][1] == 0.0 and out["gradient"][1] == [0.0, 0.0]
    lp = log_softmax(np.array(body["logits"]), axis=1)
    assert out["loss"] == pytest.approx(-(lp[0, 0] + lp[2, 1]) / 2, rel=1e-12)


def test_clipped_probabilities_are_counted_and_have_zero_gradient(client):
    body = {"probabilities": [[1.0, 0.0], [0.3, 0.7]], "labels": [1, 1], "return_gradient": True}
    out = client.post(CAT, json=body).json()
    assert out["diagnostics"]["n_clipped"] == 2
    assert out["gradient"][0] == [0.0, 0.0]
    assert math.isfinite(out["loss"])
    assert out["losses"][0] == pytest.approx(-math.log(np.finfo(float).eps), rel=1e-12)


def test_binary_one_dimensional_input_and_mask(client):
    body = {"logits": [1.5, -0.3, 2.2], "targets": [1, 0, 1], "mask": [1, 1, 0],
            "pos_weight": 2.0, "return_gradient": True}
    out = client.post(BIN, json=body).json()
    x = np.array(body["logits"])
    expected = [2.0 * np.logaddexp(0, -x[0]), np.logaddexp(0, x[1]), 0.0]
    np.testing.assert_allclose(out["losses"], expected, rtol=1e-12)
    assert out["n_classes"] == 1 and out["n_ignored"] == 1 and out["weight_sum"] == 2.0


def test_encoded_arrays_in_and_out(client):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4))
    labels = np.array([0, 3, 1, 2, 3])
    as_lists = {"logits": logits.tolist(), "labels": labels.tolist(), "return_gradient": True}
    as_encoded = {"logits": encoded(logits, "float64"), "labels": encoded(labels, "int32"),
                  "return_gradient": True, "response_encoding": "base64"}
    a = client.post(CAT, json=as_lists).json()
    b = client.post(CAT, json=as_encoded).json()
    assert b["loss"] == a["loss"]
    np.testing.assert_array_equal(decode(b["gradient"]), a["gradient"])
    np.testing.assert_array_equal(decode(b["losses"]), a["losses"])
    f32 = client.post(CAT, json=dict(as_encoded, logits=encoded(logits, "float32"))).json()
    assert f32["loss"] == pytest.approx(a["loss"], rel=1e-6)


def test_float_scalars_accept_integers(client):
    body = {"logits": [[1, 2]], "labels": [0], "label_smoothing": 0, "focal_gamma": 2}
    assert client.post(CAT, json=body).status_code == 200


# ----------------------------------------------------------------------------- bad input

GOOD = {"logits": [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]], "labels": [0, 1]}

BAD_CATEGORICAL = [
    ("nan token", '{"logits": [[1, NaN, 2], [0, 0, 0]], "labels": [0, 1]}',
     ["body", "logits", 0, 1]),
    ("infinity token", '{"logits": [[1, 2, 3], [0, -Infinity, 0]], "labels": [0, 1]}',
     ["body", "logits", 1, 1]),
    ("overflowing literal", '{"logits": [[1, 2, 3], [0, 1e999, 0]], "labels": [0, 1]}',
     ["body", "logits", 1, 1]),
    ("ragged rows", '{"logits": [[1, 2, 3], [0, 1]], "labels": [0, 1]}', ["body", "logits", 1]),
    ("wrong rank", '{"logits": [1, 2, 3], "labels": [0]}', ["body", "logits"]),
    ("three dimensions", '{"logits": [[[1, 2]]], "labels": [0]}', ["body", "logits", 0, 0]),
    ("empty batch", '{"logits": [], "labels": []}', ["body", "logits"]),
    ("label out of range", '{"logits": [[1, 2, 3]], "labels": [7]}', ["body", "labels", 0]),
    ("negative label", '{"logits": [[1, 2, 3], [1, 2, 3]], "labels": [0, -1]}',
     ["body", "labels", 1]),
    ("fractional label", '{"logits": [[1, 2, 3]], "labels": [1.5]}', ["body", "labels", 0]),
    ("label too big for int64", '{"logits": [[1, 2]], "labels": [123456789012345678901234]}',
     ["body", "labels", 0]),
    ("label count mismatch", '{"logits": [[1, 2, 3], [1, 2, 3]], "labels": [0]}',
     ["body", "labels"]),
    ("targets shape mismatch", '{"logits": [[1, 2, 3]], "targets": [[1, 0]]}',
     ["body", "targets"]),
    ("targets not a distribution", '{"logits": [[1, 2]], "targets": [[0.5, 0.6]]}',
     ["body", "targets", 0]),
    ("probabilities above 1", '{"probabilities": [[1.5, -0.5]], "labels": [0]}',
     ["body", "probabilities", 0, 0]),
    ("probability rows off 1", '{"probabilities": [[0.5, 0.5], [0.5, 0.6]], "labels": [0, 1]}',
     ["body", "probabilities", 1]),
    ("negative class weight", '{"logits": [[1, 2]], "labels": [0], "class_weights": [1, -1]}',
     ["body", "class_weights", 1]),
    ("negative sample weight", '{"logits": [[1, 2]], "labels": [0], "sample_weights": [-2]}',
     ["body", "sample_weights", 0]),
    ("class weight count", '{"logits": [[1, 2]], "labels": [0], "class_weights": [1, 2, 3]}',
     ["body", "class_weights"]),
    ("label smoothing 1", '{"logits": [[1, 2]], "labels": [0], "label_smoothing": 1.0}',
     ["body", "label_smoothing"]),
    ("negative focal gamma", '{"logits": [[1, 2]], "labels": [0], "focal_gamma": -1}',
     ["body", "focal_gamma"]),
    ("epsilon too large", '{"probabilities": [[0.5, 0.5]], "labels": [0], "epsilon": 0.5}',
     ["body", "epsilon"]),
    ("boolean in logits", '{"logits": [[1, true]], "labels": [0]}', ["body", "logits", 0, 1]),
    ("string in logits", '{"logits": [[1, "2"]], "labels": [0]}', ["body", "logits", 0, 1]),
    ("null in logits", '{"logits": [[1, null]], "labels": [0]}', ["body", "logits", 0, 1]),
    ("boolean label", '{"logits": [[1, 2]], "labels": [true]}', ["body", "labels", 0]),
    ("string option", '{"logits": [[1, 2]], "labels": [0], "label_smoothing": "0.1"}',
     ["body", "label_smoothing"]),
    ("integer for a boolean", '{"logits": [[1, 2]], "labels": [0], "return_gradient": 1}',
     ["body", "return_gradient"]),
    ("both inputs", '{"logits": [[1, 2]], "probabilities": [[0.5, 0.5]], "labels": [0]}',
     ["body", "probabilities"]),
    ("neither input", '{"labels": [0]}', ["body", "logits"]),
    ("both label forms", '{"logits": [[1, 2]], "labels": [0], "targets": [[1, 0]]}',
     ["body", "targets"]),
    ("no labels", '{"logits": [[1, 2]]}', ["body", "labels"]),
    ("ignore_index with targets", '{"logits": [[1, 2]], "targets": [[1, 0]], "ignore_index": 0}',
     ["body", "ignore_index"]),
    ("misspelt option", '{"logits": [[1, 2]], "labels": [0], "reducton": "sum"}',
     ["body", "reducton"]),
    ("unknown enum value", '{"logits": [[1, 2]], "labels": [0], "reduction": "avg"}',
     ["body", "reduction"]),
    ("overflowing loss", '{"logits": [[1e308, -1e308]], "labels": [1]}', ["body", "logits", 0, 1]),
    ("array body", "[1, 2]", ["body"]),
    ("empty body", "", ["body"]),
    ("malformed json", '{"logits": [[1, 2]], "labels": [0]', ["body", 34]),
    ("bad base64",
     '{"logits": {"dtype": "float64", "shape": [1, 2], "data": "@@@"}, "labels": [0]}',
     ["body", "logits", "data"]),
    ("declared shape larger than data",
     '{"logits": {"dtype": "float64", "shape": [1, 3], "data": "AAAAAAAAAEAAAAAAAADwPw=="},'
     ' "labels": [0]}', ["body", "logits", "data"]),
    ("unknown dtype",
     '{"logits": {"dtype": "float16", "shape": [1, 1], "data": "AAA="}, "labels": [0]}',
     ["body", "logits", "dtype"]),
]


@pytest.mark.parametrize(
    ("name", "body", "loc"), BAD_CATEGORICAL, ids=[b[0] for b in BAD_CATEGORICAL]
)
def test_bad_categorical_input_is_a_precise_422(client, name, body, loc):
    r = post_raw(client, CAT, body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc, detail
    assert detail[0]["msg"] and detail[0]["type"]
    assert "NaN" not in r.text and "Infinity" not in r.text


BAD_BINARY = [
    ("targets shape", '{"logits": [[1, 2]], "targets": [1, 0]}', ["body", "targets"]),
    ("targets above 1", '{"logits": [1, 2], "targets": [1, 2]}', ["body", "targets", 1]),
    ("probability below 0", '{"probabilities": [0.5, -0.1], "targets": [1, 0]}',
     ["body", "probabilities", 1]),
    ("class weights on 1-D", '{"logits": [1, 2], "targets": [1, 0], "class_weights": [1]}',
     ["body", "class_weights"]),
    ("mask not 0/1", '{"logits": [1, 2], "targets": [1, 0], "mask": [1, 2]}', ["body", "mask", 1]),
    ("per-column pos_weight on 1-D", '{"logits": [1, 2], "targets": [1, 0], "pos_weight": [1, 2]}',
     ["body", "pos_weight"]),
    ("focal alpha above 1", '{"logits": [1, 2], "targets": [1, 0], "focal_alpha": 1.5}',
     ["body", "focal_alpha"]),
    ("missing targets", '{"logits": [1, 2]}', ["body", "targets"]),
]


@pytest.mark.parametrize(("name", "body", "loc"), BAD_BINARY, ids=[b[0] for b in BAD_BINARY])
def test_bad_binary_input_is_a_precise_422(client, name, body, loc):
    r = post_raw(client, BIN, body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc, r.text


def test_messages_name_the_rule(client):
    r = post_raw(client, CAT, '{"logits": [[1, 2, 3, 4, 5]], "labels": [7]}')
    assert r.json()["detail"][0]["msg"] == "label 7 is outside [0, 5)"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_non_json_media_type_is_415(client, content_type):
    r = post_raw(client, CAT, json.dumps(GOOD), content_type=content_type)
    assert r.status_code == 415
    assert "application/json" in r.json()["detail"]


def test_json_with_charset_is_accepted(client):
    r = post_raw(client, CAT, json.dumps(GOOD), content_type="application/json; charset=utf-8")
    assert r.status_code == 200


def test_invalid_utf8_is_422(client):
    r = post_raw(client, CAT, b'{"logits": [[1, 2]], "labels": [0], "units": "\xff"}')
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "units"] and "UTF-8" in detail["msg"]


def test_deep_nesting_is_422(client):
    r = post_raw(client, CAT, '{"logits": ' + "[" * 10000 + "]" * 10000 + ', "labels": [0]}')
    assert r.status_code == 422


def test_limits_give_413(small_limits_client):
    big = {"logits": [[0.0] * 10] * 20, "labels": [0] * 20}  # 200 elements > 100
    assert small_limits_client.post(CAT, json=big).status_code == 413
    huge = {"logits": [[0.0] * 100] * 100, "labels": [0] * 100}  # > 4096 bytes
    r = small_limits_client.post(CAT, json=huge)
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_service_endpoints(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    info = client.get("/v1/info").json()
    limits = info["limits"]  # a subset: the transport limits are listed there too
    assert (limits["max_body_bytes"], limits["max_elements"]) == (64 * 1024 * 1024, 20_000_000)
    assert info["version"] and info["libraries"]["numpy"] == np.__version__
