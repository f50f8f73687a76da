"""/v1/calibration with multi-label input and groups, over HTTP (in-process TestClient).

Each slice of an answer is compared byte for byte with the answer to a separate request
holding that slice alone (the JSON of the entry, written back by orjson as the service
writes it, against the separate response's body).
"""

from __future__ import annotations

import base64
import warnings

import numpy as np
import orjson
import pytest

from app.main import create_app
from app.settings import Settings
from xentropy.calibration.slices import MACRO_METRICS, MAX_GROUPS

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

RNG = np.random.default_rng(2013)
N, C = 60, 4


def _post(client, body, path="/v1/calibration"):
    body = {k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v
            for k, v in body.items()}
    return client.post(path, content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                       headers={"content-type": "application/json"})


def _bytes_of(entry: dict) -> bytes:
    return orjson.dumps(entry)


def _multilabel():
    z = np.round(RNG.normal(scale=2.0, size=(N, C)), 3)
    p = np.round(1.0 / (1.0 + np.exp(-z)), 2)
    t = (RNG.random((N, C)) < p).astype(int)
    return z, p, t


@pytest.mark.parametrize("key", ["probabilities", "logits"])
@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_per_label_micro_and_macro_over_http(client, key, binning):
    z, p, t = _multilabel()
    x = p if key == "probabilities" else z
    w = np.round(RNG.uniform(0.0, 2.0, N), 3)
    options = {"n_bins": 5, "binning": binning, "sample_weights": w.tolist()}
    r = _post(client, {key: x.tolist(), "targets": t.tolist(), "multilabel": True,
                       **options})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["per_label"]) == C
    for k, label in enumerate(out["per_label"]):
        alone = _post(client, {key: x[:, k].tolist(), "labels": t[:, k].tolist(), **options})
        assert _bytes_of(label) == alone.content, k
    flat = _post(client, {key: x.ravel().tolist(), "labels": t.ravel().tolist(),
                          **options, "sample_weights": np.repeat(w, C).tolist()})
    assert _bytes_of(out["micro"]) == flat.content
    top = {k: v for k, v in out.items() if k not in ("per_label", "macro", "micro")}
    assert _bytes_of(top) == flat.content
    assert list(out["macro"]) == list(MACRO_METRICS)
    for name in MACRO_METRICS:
        mean = np.mean([label[name] for label in out["per_label"]])
        assert out["macro"][name] == pytest.approx(mean, rel=1e-15)


@pytest.mark.parametrize(
    ("targets", "loc"),
    [
        ([[0, 1, 0, 1]] * 2 + [[0, 3, 0, 1]], ["body", "targets", 2, 1]),
        ([[0, 1, 0, 1]] * 2 + [[0, 0.5, 0, 1]], ["body", "targets", 2, 1]),
        ([[0, 1, 0, 1]] * 2, ["body", "targets"]),
        ([[0, 1, 0]] * 3, ["body", "targets"]),
        ([0, 1, 1], ["body", "targets"]),
    ],
)
def test_bad_targets_are_422_with_their_position(client, targets, loc):
    body = {"probabilities": [[0.5, 0.2, 0.1, 0.9]] * 3, "targets": targets,
            "multilabel": True}
    r = _post(client, body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_labels_and_targets_exclude_each_other(client):
    body = {"probabilities": [[0.5, 0.2]] * 2, "multilabel": True}
    r = _post(client, {**body, "targets": [[0, 1]] * 2, "labels": [0, 1]})
    assert r.status_code == 422
    r = _post(client, body)
    assert r.status_code == 422
    r = _post(client, {"probabilities": [0.5, 0.2], "targets": [1, 0]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "targets"]


def _first_appearance(values):
    return list(dict.fromkeys(values))


@pytest.mark.parametrize("kind", ["ints", "strings", "encoded"])
@pytest.mark.parametrize("shape", ["binary", "multiclass", "multilabel"])
def test_per_group_is_byte_equal_to_separate_requests(client, kind, shape):
    z = np.round(RNG.normal(scale=2.0, size=(N, C)), 3)
    if shape == "binary":
        x, truth = {"logits": z[:, 0]}, {"labels": (RNG.random(N) < 0.4).astype(int)}
    elif shape == "multiclass":
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        x, truth = {"probabilities": p}, {"labels": RNG.integers(0, C, N)}
    else:
        x = {"logits": z}
        truth = {"targets": (RNG.random((N, C)) < 0.5).astype(int), "multilabel": True}
    codes = RNG.integers(0, 5, N)
    codes[[3, 40]] = [7, 8]  # groups of one sample
    values = codes * 10 - 25
    if kind == "strings":
        groups: object = [f"day-{c}" for c in codes]
        expected = _first_appearance(groups)
    elif kind == "encoded":
        groups = {"dtype": "int32", "shape": [N],
                  "data": base64.b64encode(values.astype("<i4").tobytes()).decode()}
        expected = _first_appearance(values.tolist())
    else:
        groups = values.tolist()
        expected = _first_appearance(groups)
    w = np.round(RNG.uniform(0.1, 3.0, N), 2)
    options = {"n_bins": 4, "binning": "quantile" if shape == "binary" else "uniform"}
    body = {**x, **truth, "sample_weights": w, **options}
    r = _post(client, {**body, "groups": groups})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [e["group"] for e in out["per_group"]] == expected
    plain = {k: v for k, v in out.items() if k != "per_group"}
    assert _bytes_of(plain) == _post(client, body).content
    keys = np.array(groups if kind == "strings" else values.tolist(), dtype=object)
    for entry in out["per_group"]:
        rows = np.flatnonzero(keys == entry["group"])
        alone = _post(client, {
            **{k: v[rows] for k, v in x.items()},
            **{k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in truth.items()},
            "sample_weights": w[rows], **options,
        })
        assert next(iter(entry)) == "group"
        assert _bytes_of({k: v for k, v in entry.items() if k != "group"}) == alone.content


def test_more_than_max_groups_is_422_naming_the_field(client):
    n = MAX_GROUPS + 1
    p = np.round(RNG.random(n), 3)
    body = {"probabilities": p, "labels": (RNG.random(n) < p).astype(int),
            "groups": [f"g{i}" for i in range(n)]}
    r = _post(client, body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "groups", n - 1]
    assert "10000" in detail["msg"]
    # exactly the limit is served (and the body's 2 × 10 000 string quotes are allowed)
    r = _post(client, {**body, "groups": [*body["groups"][:-1], "g0"]})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["per_group"]) == MAX_GROUPS


@pytest.mark.parametrize(
    ("groups", "loc"),
    [
        (["a", "b", 3], ["body", "groups", 2]),
        ([1, 2, "c"], ["body", "groups", 2]),
        ([1, True, 3], ["body", "groups", 1]),
        ([1, 2.5, 3], ["body", "groups", 1]),
        ([1, 2], ["body", "groups"]),
        ([], ["body", "groups"]),
        ("abc", ["body", "groups"]),
    ],
)
def test_bad_groups_are_422_with_their_position(client, groups, loc):
    r = _post(client, {"probabilities": [0.2, 0.7, 0.9], "labels": [0, 1, 1],
                       "groups": groups})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_groups_bins_are_bounded_by_the_class_bins_and_the_element_limit():
    # groups × classes × bins <= XENTROPY_MAX_CLASS_BINS: 10 × 2 × 50 = 1000 is served
    settings = Settings(max_class_bins=1000, max_elements=40_000)
    p = np.round(RNG.random(200), 3)
    body = {"probabilities": p, "labels": (RNG.random(200) < p).astype(int),
            "groups": np.arange(200) % 10}
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert _post(c, {**body, "n_bins": 50}).status_code == 200
        r = _post(c, {**body, "n_bins": 51})
        assert r.status_code == 422 and "10 groups × 2 × 51" in r.json()["detail"][0]["msg"]
    # the answer's bins count with the request's arrays towards the element limit:
    # 11 reports of 6 × 500 + 6 × 2 + 16 numbers, with the request's 600
    settings = Settings(max_elements=600 + 11 * (6 * 500 + 28))
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert _post(c, {**body, "n_bins": 500}).status_code == 200
        r = _post(c, {**body, "n_bins": 501})
        assert r.status_code == 413


def test_merged_states_of_groups_through_merge(client):
    _, p, t = _multilabel()
    groups = [["a", "b", "c"][i % 3] for i in range(N)]
    body = {"probabilities": p, "targets": t, "multilabel": True, "n_bins": 5}
    whole = _post(client, {**body, "groups": groups}).json()
    states = [
        _post(client, {"probabilities": p[s], "targets": t[s], "multilabel": True,
                       "n_bins": 5, "groups": groups[s], "return_state": True}).json()["state"]
        for s in (slice(0, 1), slice(1, 25), slice(25, N))
    ]
    r = client.post("/v1/merge", json={"states": states})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert [e["group"] for e in result["per_group"]] == ["a", "b", "c"]
    for got, want in zip(result["per_group"], whole["per_group"], strict=True):
        assert got["n_samples"] == want["n_samples"]
        assert got["ece"] == pytest.approx(want["ece"], rel=1e-12, abs=1e-13)
        assert got["nll"] == pytest.approx(want["nll"], rel=1e-12)
        assert len(got["per_label"]) == C
        for a, b in zip(got["per_label"], want["per_label"], strict=True):
            assert [x["count"] for x in a["bins"]] == [x["count"] for x in b["bins"]]
            assert a["brier"] == pytest.approx(b["brier"], rel=1e-12)
    assert result["macro"]["ece"] == pytest.approx(whole["macro"]["ece"], rel=1e-12,
                                                   abs=1e-13)
    # a broken slice is a 422 at its path
    broken = [dict(states[0], per_group=states[0]["per_group"] * 2), states[1]]
    r = client.post("/v1/merge", json={"states": broken})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "states", 0, "per_group", 1, "group"]


def test_diagram_takes_multilabel_input_one_panel_per_label(client):
    from xentropy.calibration import (
        calibration_report,
        reliability_diagram,
        reliability_diagrams,
    )

    _, p, t = _multilabel()
    body = {"probabilities": p, "targets": t, "multilabel": True, "n_bins": 5}
    r = _post(client, body, "/v1/calibration/diagram")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    columns = [calibration_report(p[:, k], t[:, k], n_bins=5) for k in range(C)]
    assert r.text == reliability_diagrams(columns, [f"label {k}" for k in range(C)])
    assert r.text.count('class="panel"') == C
    # more than 16 labels: the micro diagram (all pairs pooled)
    wide_p, wide_t = np.tile(p, 5), np.tile(t, 5)
    r = _post(client, {**body, "probabilities": wide_p, "targets": wide_t},
              "/v1/calibration/diagram")
    assert r.status_code == 200
    micro = calibration_report(wide_p.ravel(), wide_t.ravel(), n_bins=5)
    assert r.text == reliability_diagram(micro)
    r = _post(client, {**body, "targets": t[:-1]}, "/v1/calibration/diagram")
    assert r.status_code == 422
