"""`"return_state": true` and POST /v1/merge over HTTP (in-process).

A batch split into parts, each part POSTed with `return_state`, the states merged by
`/v1/merge`: the `result` equals the whole batch's response without the per-sample
fields (every float within 1e-12, counts exact). States are checked like any input: each
broken rule is a 422 at `["body", "states", i, ...]`, never a 500.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

from app.api.schemas.states import STATE_MODELS

MERGE = "/v1/merge"
RNG = np.random.default_rng(12)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return {k: v for key, item in items for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix: value}


def assert_same_answer(whole: dict[str, Any], merged: dict[str, Any],
                       approximate: set[str] = frozenset()) -> None:
    """Every key of the whole batch's answer, the per-sample ones aside; counts and
    strings equal, floats within 1e-12 (1e-13 absolute for the calibration errors)."""
    a = _flat({k: v for k, v in whole.items() if k not in ("losses", "gradient", "per_row",
                                                           "temperature", "state",
                                                           "approximate")})
    b = _flat({k: v for k, v in merged.items() if k not in ("approximate", "temperature")})
    assert a.keys() == b.keys()
    for key, value in a.items():
        top = key.split(".")[0]
        if top in approximate or (top == "per_class" and key.endswith(".ece.")
                                  and "per_class.ece" in approximate):
            continue
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key
        else:
            assert b[key] == value, key


def _split_post(client: Any, path: str, body: dict[str, Any], per_sample: tuple[str, ...],
                parts: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    n = len(body[per_sample[0]])
    whole = client.post(path, json=body)
    assert whole.status_code == 200, whole.text
    states = []
    for part in np.array_split(np.arange(n), parts):
        if part.size == 0:
            continue
        piece = {k: ([v[i] for i in part] if k in per_sample else v) for k, v in body.items()}
        r = client.post(path, json={**piece, "return_state": True})
        if r.status_code == 422 and body.get("convention") == "pytorch":
            # A part whose own mean PyTorch gives as NaN (every label ignored) is refused,
            # state or not (see the README): such parts have to be left out.
            assert set(piece["labels"]) == {-100}
            assert r.json()["detail"][0]["type"] == "undefined_in_convention"
            pytest.skip("a part of ignored labels only has no PyTorch mean")
        assert r.status_code == 200, r.text
        states.append(r.json()["state"])
    return whole.json(), states


def _merge(client: Any, states: list[dict[str, Any]]) -> dict[str, Any]:
    r = client.post(MERGE, json={"states": states})
    assert r.status_code == 200, r.text
    return r.json()


N, C = 57, 4
LOGITS = RNG.normal(scale=2.0, size=(N, C))
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
LABELS = RNG.integers(0, C, N)
WEIGHTS = RNG.uniform(0.1, 3.0, N)

CASES = [
    ("/v1/losses/categorical", {"logits": LOGITS.tolist(), "labels": LABELS.tolist()},
     ("logits", "labels")),
    ("/v1/losses/categorical", {"probabilities": PROBS.tolist(), "labels": LABELS.tolist(),
                                "sample_weights": WEIGHTS.tolist(), "label_smoothing": 0.1,
                                "class_weights": [1.0, 2.0, 0.5, 1.5], "units": "bits"},
     ("probabilities", "labels", "sample_weights")),
    ("/v1/losses/categorical", {"logits": LOGITS.tolist(),
                                "labels": np.where(LABELS == 0, -100, LABELS).tolist(),
                                "convention": "pytorch", "label_smoothing": 0.2},
     ("logits", "labels")),
    ("/v1/losses/categorical", {"logits": LOGITS.tolist(), "targets": PROBS.tolist(),
                                "focal_gamma": 2.0, "reduction": "sum"},
     ("logits", "targets")),
    ("/v1/losses/binary", {"logits": LOGITS.tolist(),
                           "targets": (PROBS > 0.25).astype(float).tolist(),
                           "pos_weight": 2.0, "mask": (RNG.random((N, C)) < 0.8).tolist(),
                           "normalization": "samples"},
     ("logits", "targets", "mask")),
    ("/v1/losses/binary", {"probabilities": PROBS[:, 0].tolist(),
                           "targets": (LABELS == 0).astype(float).tolist(),
                           "sample_weights": WEIGHTS.tolist(), "convention": "sklearn"},
     ("probabilities", "targets", "sample_weights")),
    ("/v1/losses/binary", {"probabilities": PROBS.tolist(),
                           "targets": (PROBS > 0.3).astype(float).tolist(),
                           "convention": "keras", "focal_gamma": 2.0},
     ("probabilities", "targets")),
    ("/v1/divergences", {"p": PROBS.tolist(), "q_logits": (LOGITS * 0.5).tolist()},
     ("p", "q_logits")),
    ("/v1/divergences", {"p": PROBS.tolist(), "q": PROBS[::-1].tolist(), "units": "bits",
                         "reduction": "sum"}, ("p", "q")),
    ("/v1/calibration", {"probabilities": PROBS.tolist(), "labels": LABELS.tolist(),
                         "n_bins": 10}, ("probabilities", "labels")),
    ("/v1/calibration", {"logits": LOGITS.tolist(), "labels": LABELS.tolist(),
                         "sample_weights": WEIGHTS.tolist(), "fit_temperature": True},
     ("logits", "labels", "sample_weights")),
    ("/v1/calibration", {"probabilities": PROBS[:, 1].tolist(),
                         "labels": (LABELS == 1).astype(int).tolist(), "binning": "quantile",
                         "n_bins": 5}, ("probabilities", "labels")),
]


@pytest.mark.parametrize(("path", "body", "per_sample"), CASES,
                         ids=[f"{p.rsplit('/', 1)[-1]}-{i}" for i, (p, _, _) in enumerate(CASES)])
@pytest.mark.parametrize("parts", [1, 5, 57])
def test_parts_merged_give_the_whole_batch(client, path, body, per_sample, parts):
    whole, states = _split_post(client, path, body, per_sample, parts)
    out = _merge(client, states)
    assert set(out) == {"state", "result"}
    result = out["result"]
    approximate = {a["statistic"] for a in result.get("approximate", [])}
    assert_same_answer(whole, result, approximate)
    if path == "/v1/calibration":
        assert result["temperature"] is None and "ace" in approximate
        for name in approximate & {"ece", "mce", "rmsce", "ace"}:
            bound = next(a["error_bound"] for a in result["approximate"]
                         if a["statistic"] == name)
            assert abs(result[name] - whole[name]) <= bound + 1e-13, name
    # the merged state merges again: with itself split in two trees, the same answer
    again = _merge(client, [out["state"]])
    assert again == out
    if len(states) > 2:
        left = _merge(client, states[:2])["state"]
        right = _merge(client, states[2:][::-1])["state"]
        assert_same_answer(out["result"], _merge(client, [right, left])["result"], approximate)


def test_a_state_is_the_library_state_and_its_documented_schema(client):
    import xentropy

    for path, body, _ in CASES:
        r = client.post(path, json={**body, "return_state": True}).json()
        state = r["state"]
        assert list(r)[-1] == "state"
        model = STATE_MODELS[state["kind"]]
        # the documented fields in order; optional ones (replicates) only when held
        assert list(state) == [f for f in model.model_fields if f in state]
        model.model_validate(state)
        assert xentropy.state_from_json(state).to_json() == state
        # plain JSON numbers, whatever the response encoding of arrays
        if path != "/v1/calibration":
            encoded = client.post(path, json={**body, "return_state": True,
                                              "response_encoding": "base64"}).json()
            assert encoded["state"] == state


def test_state_json_of_the_library_is_accepted_by_the_service(client):
    import xentropy

    states = [xentropy.softmax_cross_entropy_with_integer_labels(
        LOGITS[s], LABELS[s], return_state=True).state.to_json()
        for s in (slice(0, 20), slice(20, N))]
    out = _merge(client, states)
    whole = client.post("/v1/losses/categorical",
                        json={"logits": LOGITS.tolist(), "labels": LABELS.tolist()}).json()
    assert_same_answer(whole, out["result"])
    # and the service's merged state finalizes in the library to the same numbers
    mine = xentropy.finalize(xentropy.state_from_json(out["state"]))
    assert mine.loss == out["result"]["loss"]


def test_return_state_needs_a_reduction(client):
    for path, body in (("/v1/losses/categorical", {"logits": [[1.0, 2.0]], "labels": [0]}),
                       ("/v1/divergences", {"p": [[1.0]], "q": [[1.0]]})):
        r = client.post(path, json={**body, "reduction": "none", "return_state": True})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "return_state"]


def test_ten_thousand_states_merge(client):
    import xentropy

    one = xentropy.divergences([[0.5, 0.5]], [[0.9, 0.1]], return_state=True).state.to_json()
    out = _merge(client, [one] * 10_000)
    assert out["result"]["n_samples"] == 10_000
    assert out["result"]["kl_divergence"] == pytest.approx(
        xentropy.divergences([[0.5, 0.5]], [[0.9, 0.1]]).kl_divergence, rel=1e-12)
    r = client.post(MERGE, json={"states": [one] * 10_001})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "states"]


# --------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def good(client: Any) -> dict[str, list[dict[str, Any]]]:
    """Two valid states of each kind, from two halves of a batch."""
    out = {}
    for path, body, per_sample in CASES[:1] + CASES[4:5] + CASES[7:8] + CASES[9:10]:
        _, states = _split_post(client, path, body, per_sample, 2)
        out[states[0]["kind"]] = states
    return out


def _mutate(state: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(state)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


REFUSED = [
    # (kind, what is changed in states[1], value, loc after ["body", "states", 1], type)
    ("categorical_loss", ("colour",), "blue", ("colour",), "extra_forbidden"),
    ("categorical_loss", ("options", "colour"), "blue", ("options", "colour"), "extra_forbidden"),
    ("categorical_loss", ("weight",), KeyError, ("weight",), "missing"),
    ("categorical_loss", ("kind",), "calibration", ("n_counted",), "extra_forbidden"),
    ("categorical_loss", ("kind",), "entropy", ("kind",), "enum"),
    ("categorical_loss", ("version",), 2, ("version",), "unsupported_version"),
    ("categorical_loss", ("n_samples",), -3, ("n_samples",), "out_of_range"),
    ("categorical_loss", ("n_counted",), 1.5, ("n_counted",), "type_error"),
    ("categorical_loss", ("n_counted",), "3", ("n_counted",), "type_error"),
    ("categorical_loss", ("n_counted",), 10**30, ("n_counted",), "out_of_range"),
    ("categorical_loss", ("n_counted",), 1, ("n_counted",), "inconsistent_state"),
    ("categorical_loss", ("loss",), [1e308, 1e308], ("loss",), "not_normalised"),
    ("categorical_loss", ("loss",), [1.0, None], ("loss", 1), "type_error"),
    ("categorical_loss", ("options", "units"), "bits", ("options", "units"), "states_disagree"),
    ("categorical_loss", ("options", "n_classes"), 7, ("options", "n_classes"),
     "states_disagree"),
    ("categorical_loss", ("options", "convention"), "pytorch", ("options", "ignore_index"),
     "inconsistent_state"),
    ("categorical_loss", ("options", "convention"), "keras", ("options", "convention"),
     "states_disagree"),
    ("binary_loss", ("options", "normalization"), "weights", ("options", "normalization"),
     "states_disagree"),
    ("binary_loss", ("options", "pos_weight"), [1.0, 2.0], ("options", "pos_weight"),
     "shape_mismatch"),
    ("divergences", ("n_samples",), 0, ("entropy",), "inconsistent_state"),
    ("divergences", ("options", "reduction"), "none", ("options", "reduction"), "enum"),
    ("calibration", ("options", "units"), "bits", ("options", "units"), "states_disagree"),
    ("calibration", ("options", "n_bins"), 11, ("histogram", "min", 0), "inconsistent_state"),
    ("calibration", ("options", "binning"), "quantile", ("per_class", "cells", "weight"),
     "not_applicable"),
    ("calibration", ("histogram", "count", 0), 100, ("histogram", "count"),
     "inconsistent_state"),
    ("calibration", ("totals", "brier"), [1e6, 0.0], ("totals", "brier"), "inconsistent_state"),
    ("calibration", ("per_class",), None, ("per_class",), "not_applicable"),
    ("calibration", ("per_class",), [], ("per_class",), "type_error"),
]


@pytest.mark.parametrize(("kind", "where", "value", "loc", "type_"), REFUSED,
                         ids=[f"{k}-{'.'.join(map(str, w))}-{t}" for k, w, _, _, t in REFUSED])
def test_invalid_states_are_422_at_their_position(client, good, kind, where, value, loc,
                                                  type_):
    body = {"states": [good[kind][0], _mutate(good[kind][1], where, value)]}
    r = client.post(MERGE, json=body)
    assert r.status_code == 422, r.text
    (item,) = r.json()["detail"]
    assert (item["loc"], item["type"]) == (["body", "states", 1, *loc], type_), item


@pytest.mark.parametrize("text", [
    b'{"states": [{"kind": "divergences", "version": 1, "n_samples": NaN}]}',
    b'{"states": [{"kind": "divergences", "version": 1, "n_samples": Infinity}]}',
    b'{"states": [[1, 2]]}',
    b'{"states": [null]}',
    b'{"states": {"kind": "divergences"}}',
    b'{"states": []}',
    b'{}',
    b'{"states": [], "more": 1}',
    b'{"states": [{"kind": "x", "kind": "y"}]}',
    b'{"states": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
])
def test_malformed_bodies_are_422_not_500(client, text):
    r = client.post(MERGE, content=text, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:2] in (["body", "states"], ["body", "more"], ["body"])


def test_states_of_different_kinds_or_bins_do_not_merge(client, good):
    for other, loc in ((good["calibration"][0], ["kind"]),):
        r = client.post(MERGE, json={"states": [good["categorical_loss"][0], other]})
        assert r.status_code == 422
        (item,) = r.json()["detail"]
        assert (item["loc"], item["type"]) == (["body", "states", 1, *loc], "states_disagree")
    ten = client.post("/v1/calibration", json={"probabilities": [0.2, 0.9], "labels": [0, 1],
                                              "n_bins": 10, "return_state": True}).json()
    five = client.post("/v1/calibration", json={"probabilities": [0.4, 0.6], "labels": [1, 1],
                                               "n_bins": 5, "return_state": True}).json()
    r = client.post(MERGE, json={"states": [ten["state"], ten["state"], five["state"]]})
    assert r.json()["detail"][0]["loc"] == ["body", "states", 2, "options", "n_bins"]


def test_non_finite_sum_is_named(client, good):
    state = good["divergences"][0]
    hi = json.dumps(state["entropy"][0])
    text = json.dumps({"states": [state]}).replace(f'"entropy": [{hi}', '"entropy": [NaN', 1)
    r = client.post(MERGE, content=text.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "states", 0, "entropy", 0],
                                   "msg": "expected a finite number", "type": "not_finite"}]


def test_merged_states_without_samples_are_refused(client, good):
    import xentropy

    empty = xentropy.empty_like(xentropy.state_from_json(good["calibration"][0])).to_json()
    r = client.post(MERGE, json={"states": [empty, empty]})
    assert r.status_code == 422
    assert r.json()["detail"][0] == {"loc": ["body", "states"], "type": "zero_denominator",
                                     "msg": "the merged states hold no samples of positive "
                                     "weight: no mean exists"}


def test_the_openapi_document_has_one_state_component_per_kind(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for kind, model in STATE_MODELS.items():
        component = schemas[model.__name__]
        assert component["properties"]["kind"]["const"] == kind
        assert component["additionalProperties"] is False
        assert all(prop.get("description") for prop in component["properties"].values())
        (example,) = component["examples"]
        assert example["kind"] == kind
    merge = client.get("/openapi.json").json()["paths"]["/v1/merge"]["post"]
    assert merge["operationId"] == "states-merge"
    for path in ("/v1/losses/categorical", "/v1/losses/binary", "/v1/divergences",
                 "/v1/calibration"):
        request = schemas[{"/v1/losses/categorical": "CategoricalLossRequest",
                           "/v1/losses/binary": "BinaryLossRequest",
                           "/v1/divergences": "DivergenceRequest",
                           "/v1/calibration": "CalibrationRequest"}[path]]
        assert request["properties"]["return_state"]["type"] == "boolean"


def test_the_element_limit_counts_the_numbers_of_states(small_limits_client, client):
    import xentropy

    one = xentropy.divergences([[0.5, 0.5]], [[0.9, 0.1]], return_state=True).state.to_json()
    r = small_limits_client.post(MERGE, json={"states": [one] * 10})  # 4096 bytes, 100 numbers
    assert r.status_code == 413


def test_the_bins_limits_of_the_service_apply_to_merges():
    import warnings

    import xentropy
    from app.main import create_app
    from app.settings import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    state = xentropy.calibration_report([[0.2, 0.8]], [1], n_bins=20,
                                        return_state=True).state.to_json()
    with TestClient(create_app(Settings(max_bins=10)), raise_server_exceptions=False) as c:
        r = c.post(MERGE, json={"states": [state]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "states", 0, "options", "n_bins"]
