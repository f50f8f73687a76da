"""/v1/calibration, /v1/calibration/diagram and /v1/divergences over HTTP (in-process)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

CAL, DIAGRAM, DIV = "/v1/calibration", "/v1/calibration/diagram", "/v1/divergences"
SVG = "{http://www.w3.org/2000/svg}"


def test_temperature_scaling_exact_case(client):
    body = {"logits": [[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]], "labels": [0, 1, 2, 1],
            "fit_temperature": True}
    out = client.post(CAL, json=body).json()
    t = out["temperature"]
    assert t["temperature"] == pytest.approx(3 / math.log(6), abs=1e-6)
    assert t["nll_before"] == pytest.approx(0.844923, abs=1e-6)
    assert t["nll_after"] == pytest.approx(0.735622, abs=1e-6)
    assert out["nll"] == t["nll_before"] and out["ece"] == t["ece_before"]


def test_binary_report_against_scikit_learn(client):
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, 500)
    y = (rng.uniform(size=500) < p).astype(int)
    out = client.post(CAL, json={"probabilities": p.tolist(), "labels": y.tolist(),
                                 "n_bins": 10}).json()
    assert out["n_classes"] == 2 and out["per_class"] is None
    assert out["brier"] == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    assert out["nll"] == pytest.approx(log_loss(y, p), rel=1e-12)
    assert out["accuracy"] == pytest.approx(np.mean((p > 0.5) == y))
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    bins = [b for b in out["bins"] if b["count"]]
    np.testing.assert_allclose([b["accuracy"] for b in bins], prob_true, rtol=1e-12)
    np.testing.assert_allclose([b["mean_confidence"] for b in bins], prob_pred, rtol=1e-12)
    assert len(out["bins"]) == 10 and sum(b["count"] for b in out["bins"]) == 500


def test_empty_bins_are_returned_with_nulls(client):
    out = client.post(CAL, json={"probabilities": [0.95, 0.9], "labels": [1, 0],
                                 "n_bins": 4}).json()
    assert [b["count"] for b in out["bins"]] == [0, 0, 0, 2]
    assert out["bins"][0]["mean_confidence"] is None and out["bins"][0]["accuracy"] is None
    assert out["bins"][0]["lower"] == 0.0 and out["bins"][-1]["upper"] == 1.0


def test_per_class_section(client):
    body = {"probabilities": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4],
                              [0.6, 0.3, 0.1]], "labels": [0, 1, 2, 1]}
    out = client.post(CAL, json=body).json()
    per_class = out["per_class"]
    assert [c["class"] for c in per_class] == [0, 1, 2]
    assert [c["count"] for c in per_class] == [1, 2, 1]
    assert per_class[1]["recall"] == 0.5 and per_class[1]["frequency"] == 0.5
    assert per_class[0]["mean_probability"] == pytest.approx(0.425)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"probabilities": [[0.5, 0.5]], "labels": [2]}, ["body", "labels", 0]),
        ({"probabilities": [[0.5, 0.6]], "labels": [0]}, ["body", "probabilities", 0]),
        ({"probabilities": [0.5], "labels": [0], "n_bins": 0}, ["body", "n_bins"]),
        ({"probabilities": [0.5], "labels": [0], "binning": "kmeans"}, ["body", "binning"]),
        ({"probabilities": [0.5], "labels": [0], "fit_temperature": True},
         ["body", "fit_temperature"]),
        ({"probabilities": [0.5, 0.5], "labels": [0]}, ["body", "labels"]),
        ({"logits": [0.5], "probabilities": [0.5], "labels": [0]}, ["body", "probabilities"]),
        ({"probabilities": [0.5], "labels": [0], "sample_weights": [-1]},
         ["body", "sample_weights", 0]),
        ({"probabilities": [0.5], "labels": [0], "bins": 3}, ["body", "bins"]),
    ],
)
def test_bad_calibration_input(client, body, loc):
    r = client.post(CAL, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_diagram_is_valid_svg_with_one_bar_per_non_empty_bin(client):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 4)) * 2
    labels = rng.integers(0, 4, 300)
    body = {"logits": z.tolist(), "labels": labels.tolist(), "n_bins": 10}
    report = client.post(CAL, json=body).json()
    r = client.post(DIAGRAM, json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.text)
    assert root.tag == f"{SVG}svg"
    bars = [e for e in root.iter(f"{SVG}rect") if e.get("class") == "bar"]
    assert len(bars) == sum(1 for b in report["bins"] if b["count"] > 0)
    texts = "".join(e.text or "" for e in root.iter(f"{SVG}text"))
    assert f"ECE = {100 * report['ece']:.2f}%" in texts
    assert "N = 300" in texts


def test_divergences_identity_and_shapes(client):
    body = {"p": [[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]], "q": [[0.4, 0.4, 0.2], [0.2, 0.2, 0.6]]}
    out = client.post(DIV, json=body).json()
    assert out["cross_entropy"] == pytest.approx(out["entropy"] + out["kl_divergence"], rel=1e-12)
    assert 0 <= out["js_divergence"] <= math.log(2)
    rows = client.post(DIV, json=dict(body, reduction="none")).json()
    assert rows["entropy"] is None and len(rows["per_row"]["kl_divergence"]) == 2
    assert rows["per_row"]["entropy"][0] == pytest.approx(math.log(2))


def test_divergence_zero_q_gives_large_finite_kl(client):
    out = client.post(DIV, json={"p": [[0.5, 0.5]], "q": [[1.0, 0.0]]}).json()
    assert math.isfinite(out["kl_divergence"]) and out["kl_divergence"] > 10


def test_divergence_gradient_wrt_q_logits(client):
    p, z = np.array([[0.2, 0.8]]), np.array([[0.0, 1.5]])
    out = client.post(DIV, json={"p": p.tolist(), "q_logits": z.tolist(),
                                 "return_gradient": True}).json()
    q = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(out["gradient"], q - p, rtol=1e-12)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"p": [[0.5, 0.5]]}, ["body", "q"]),
        ({"p": [[0.5, 0.5]], "q": [[0.5, 0.5]], "q_logits": [[0, 0]]}, ["body", "q_logits"]),
        ({"p": [[0.5, 0.6]], "q": [[0.5, 0.5]]}, ["body", "p", 0]),
        ({"p": [[0.5, 0.5]], "q": [[0.5, 0.5], [0.5, 0.5]]}, ["body", "q"]),
        ({"p": [[0.5, 0.5]], "q": [[0.5, 0.5]], "epsilon": 0}, ["body", "epsilon"]),
    ],
)
def test_bad_divergence_input(client, body, loc):
    r = client.post(DIV, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_bins_are_bounded_by_the_service_limits_shown_in_info():
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    settings = Settings(max_bins=100, max_class_bins=1000)
    with TestClient(create_app(settings)) as c:
        limits = c.get("/v1/info").json()["limits"]
        assert (limits["max_bins"], limits["max_class_bins"]) == (100, 1000)
        body = {"probabilities": [[0.5, 0.5]], "labels": [0]}
        assert c.post("/v1/calibration", json={**body, "n_bins": 100}).status_code == 200
        r = c.post("/v1/calibration", json={**body, "n_bins": 101})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "n_bins"]
        assert "XENTROPY_MAX_BINS" in r.json()["detail"][0]["msg"]
        wide = {"probabilities": [[0.1] * 10], "labels": [0], "n_bins": 101}
        r = c.post("/v1/calibration/diagram", json={**wide, "n_bins": 100})  # 10 × 100 = 1000
        assert r.status_code == 200
        r = c.post("/v1/calibration", json={"probabilities": [[1 / 11] * 11], "labels": [0],
                                            "n_bins": 100})
        assert r.status_code == 422 and "11 × 100" in r.json()["detail"][0]["msg"]


def test_one_sample_with_thousands_of_classes_and_bins_is_cheap(client):
    """Issue 11: 1 sample × 1000 classes × 10 000 bins took seconds and a GB; the per-class
    statistics are sparse now (the library test bounds the memory)."""
    body = {"probabilities": [[1 / 1000] * 1000], "labels": [3], "n_bins": 10_000}
    r = client.post("/v1/calibration", json=body)
    assert r.status_code == 200
    out = r.json()
    assert len(out["bins"]) == 10_000 and len(out["per_class"]) == 1000


def test_bootstrap_work_is_bounded_before_any_replicate():
    """Issue: 10 000 resamples of smooth_ece took ~30 s even for 10 samples, and as much
    again per group; XENTROPY_MAX_BOOTSTRAP_WORK bounds the work before it starts (lowered
    here so that the admitted request is quick)."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings
    from xentropy.calibration import calibration_bootstrap_work

    body = {"probabilities": [0.2, 0.7, 0.9, 0.4], "labels": [0, 1, 1, 0],
            "groups": ["a", "b", "a", "b"], "confidence_level": 0.9,
            "estimators": ["smooth_ece"]}
    # 3 runs (the batch, 2 groups) of 200 000 + 500 + 41·N per replicate: 602 164.
    per_replicate = calibration_bootstrap_work(
        4, groups=body["groups"], confidence_level=0.9, bootstrap={"n_resamples": 1},
        estimators=["smooth_ece"])
    assert per_replicate == 3 * 200_500 + 41 * 8
    settings = Settings(max_bootstrap_work=5 * per_replicate)
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/info").json()["limits"]["max_bootstrap_work"] == 5 * per_replicate
        ok = c.post(CAL, json={**body, "bootstrap": {"n_resamples": 5}})
        assert ok.status_code == 200 and "smooth_ece" in ok.json()["intervals"]
        r = c.post(CAL, json={**body, "bootstrap": {"n_resamples": 6}})
        assert r.status_code == 422
        (item,) = r.json()["detail"]
        assert item["loc"] == ["body", "bootstrap", "n_resamples"]
        assert item["type"] == "out_of_range"
        assert item["msg"] == (
            f"expected at most {5 * per_replicate} sample-replicates of bootstrap work (this "
            f"service's XENTROPY_MAX_BOOTSTRAP_WORK), got {6 * per_replicate}: 6 replicates "
            f"of {per_replicate} each; ask for at most 5 resamples, fewer groups or "
            "estimators, or send fewer rows")
        # The diagram takes the same body and the same bound; without groups it fits.
        assert c.post(f"{CAL}/diagram", json={**body, "bootstrap": {"n_resamples": 6}}
                      ).status_code == 422
        alone = {k: v for k, v in body.items() if k != "groups"}
        assert c.post(CAL, json={**alone, "bootstrap": {"n_resamples": 6}}).status_code == 200


def test_pathological_bootstrap_is_refused_at_the_default_limit(client):
    """10 000 resamples × smooth_ece × 10 000 groups: refused at once (it would take days)."""
    n = 10_000
    body = {"probabilities": [0.5] * n, "labels": [0, 1] * (n // 2), "groups": list(range(n)),
            "confidence_level": 0.9, "estimators": ["smooth_ece"],
            "bootstrap": {"n_resamples": 10_000}}
    r = client.post(CAL, json=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "bootstrap", "n_resamples"]
    assert "XENTROPY_MAX_BOOTSTRAP_WORK" in r.json()["detail"][0]["msg"]
