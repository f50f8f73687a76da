"""Issue 13's additions to ``calibration_report`` (and ``/v1/calibration``), each number
against an oracle that is not our code: Kumar et al.'s ``uncertainty-calibration``
(class-wise and debiased), ``relplot.smECE``, ``scipy.stats.binomtest`` (Clopper–Pearson),
brute-force loops written here (the sweep, AURC) and closed forms (optimal AURC); the
identities between fields; determinism; errors that name the field."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from tests.xentropy.calibration_science.test_estimators import _brute_force_sweep, _multiclass
from tests.xentropy.calibration_science.test_selective import _brute_force
from xentropy._validation import InputError
from xentropy.calibration import calibration_report
from xentropy.calibration.intervals import bootstrap_intervals, bootstrap_weights

kumar = pytest.importorskip("calibration.utils")
calibration = pytest.importorskip("calibration")
relplot = pytest.importorskip("relplot")

CAL = "/v1/calibration"


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- classwise


def test_classwise_report_matches_kumar_marginal_and_its_identities() -> None:
    probs, y = _multiclass(1500, 5, seed=4)
    r = calibration_report(probs, y, n_bins=15, binning="quantile", mode="classwise")
    # 15 divides 1500: Kumar's default marginal call uses the same equal-mass bins.
    theirs = calibration.get_calibration_error(probs, y, p=1, debias=False, mode="marginal")
    assert r.classwise_ece == pytest.approx(theirs, abs=1e-12)
    assert r.classwise_ece == pytest.approx(np.mean([k.ece for k in r.per_class]), abs=1e-15)
    u = calibration_report(probs, y, n_bins=15, mode="classwise")
    uniform = kumar.lower_bound_scaling_ce(probs, y, p=1, debias=False, num_bins=15,
                                           binning_scheme=kumar.get_equal_prob_bins,
                                           mode="marginal")
    assert u.classwise_ece == pytest.approx(uniform, abs=1e-12)
    # The top-level statistics stay top-label, exactly those of the plain report.
    plain = calibration_report(probs, y, n_bins=15)
    assert (u.ece, u.mce, u.rmsce, u.bins) == (plain.ece, plain.mce, plain.rmsce, plain.bins)
    assert [k.ece for k in u.per_class] == [k.ece for k in plain.per_class]
    assert plain.classwise_ece is None and plain.per_class[0].bins is None
    for k in u.per_class:
        assert len(k.bins) == 15 and sum(b.count for b in k.bins) == 1500
        assert k.ece <= k.rmsce + 1e-15 <= k.mce + 2e-15
        gaps = [abs(b.accuracy - b.mean_confidence) for b in k.bins if b.accuracy is not None]
        assert max(gaps) == pytest.approx(k.mce, abs=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_per_class_nll_and_brier_recombine_into_the_top_level(weighted: bool) -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(400, 4)) * 2
    y = rng.integers(0, 4, 400)
    w = rng.uniform(0, 3, 400) if weighted else None
    r = calibration_report(logits=z, labels=y, sample_weights=w, mode="classwise",
                           units="bits")
    weight = np.bincount(y, weights=np.ones(400) if w is None else w, minlength=4)
    assert sum(wk * k.nll for wk, k in zip(weight, r.per_class, strict=True)) / weight.sum() \
        == pytest.approx(r.nll, rel=1e-12)
    assert sum(wk * k.brier for wk, k in zip(weight, r.per_class, strict=True)) / weight.sum() \
        == pytest.approx(r.brier, rel=1e-12)
    # Against the per-sample formulas directly (class 2's samples alone, in bits).
    p = _softmax(z)
    sel = y == 2
    ww = np.ones(400)[sel] if w is None else w[sel]
    nll = -np.log2(p[sel, 2])
    brier = ((p[sel] - np.eye(4)[2]) ** 2).sum(axis=1)
    assert r.per_class[2].nll == pytest.approx(np.average(nll, weights=ww), rel=1e-12)
    assert r.per_class[2].brier == pytest.approx(np.average(brier, weights=ww), rel=1e-12)


def test_a_class_nobody_has_gets_null_means() -> None:
    r = calibration_report([[0.5, 0.2, 0.3], [0.1, 0.8, 0.1]], [0, 1], mode="classwise")
    assert r.per_class[2].count == 0 and r.per_class[2].nll is None
    assert r.per_class[2].brier is None


# ----------------------------------------------------------------------------- estimators


def test_estimators_through_the_report_match_their_oracles() -> None:
    probs, y = _multiclass(1200, 4, seed=7)
    r = calibration_report(probs, y, n_bins=15, estimators=["ece_debiased", "ece_sweep",
                                                            "smooth_ece"])
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    # Kumar's debiased L2 error on the same (uniform) bins, top-label.
    theirs = kumar.lower_bound_scaling_ce(probs, y, p=2, debias=True, num_bins=15,
                                          binning_scheme=kumar.get_equal_prob_bins,
                                          mode="top-label")
    assert r.estimates.ece_debiased == pytest.approx(theirs, abs=1e-12)
    # 15 equal-mass bins: 15 divides 1200, Kumar's default call.
    q = calibration_report(probs, y, binning="quantile", estimators=["ece_debiased"])
    default = calibration.get_calibration_error(probs, y, p=2, debias=True, mode="top-label")
    assert q.estimates.ece_debiased == pytest.approx(default, abs=1e-12)
    assert r.estimates.smooth_ece == pytest.approx(relplot.smECE(conf, correct), abs=1e-6)
    b, ece = _brute_force_sweep(conf, correct)
    assert (r.estimates.sweep_n_bins, r.estimates.ece_sweep) == (b, pytest.approx(ece,
                                                                                 abs=1e-12))
    assert r.estimates.smooth_curve is not None and len(r.estimates.smooth_curve.mesh) == 200


def test_binary_estimators_use_the_positive_class_probability() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(size=600)
    y = (rng.uniform(size=600) < p**1.3).astype(int)
    r = calibration_report(p, y, estimators=["smooth_ece", "ece_debiased"], n_bins=10)
    assert r.estimates.smooth_ece == pytest.approx(relplot.smECE(p, y), abs=1e-6)
    theirs = kumar.lower_bound_scaling_ce(p, y, p=2, debias=True, num_bins=10,
                                          binning_scheme=kumar.get_equal_prob_bins,
                                          mode="top-label")
    assert r.estimates.ece_debiased == pytest.approx(theirs, abs=1e-12)
    assert r.estimates.ece_sweep is None


# ----------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("level", [0.9, 0.95])
def test_bin_intervals_are_binomtests_clopper_pearson(level: float) -> None:
    probs, y = _multiclass(700, 3, seed=3)
    w = np.random.default_rng(0).uniform(0, 2, 700)  # weights do not enter the counts
    r = calibration_report(probs, y, n_bins=12, confidence_level=level, sample_weights=w,
                           mode="classwise", bootstrap={"n_resamples": 20})
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.arange(13) / 12
    b = np.searchsorted(edges[1:-1], conf, side="left")
    for j, bin_ in enumerate(r.bins):
        n, k = int((b == j).sum()), int(correct[b == j].sum())
        assert bin_.count == n
        if n == 0:
            assert bin_.accuracy_interval is None
            continue
        ci = binomtest(k, n).proportion_ci(level, method="exact")
        np.testing.assert_allclose(bin_.accuracy_interval, (ci.low, ci.high), rtol=0,
                                   atol=1e-12)
    for cls in r.per_class:  # class-wise bins: positives of the class among the bin
        for bin_ in cls.bins:
            if bin_.count:
                lo, hi = bin_.accuracy_interval
                assert 0.0 <= lo <= hi <= 1.0


def test_report_intervals_are_the_bootstrap_of_the_same_samples() -> None:
    probs, y = _multiclass(500, 3, seed=8)
    opts = {"n_resamples": 300, "seed": 11, "method": "multinomial", "stream": 2}
    r = calibration_report(probs, y, n_bins=10, estimators=["ece_debiased"],
                           confidence_level=0.9, bootstrap=opts, units="bits")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    nll = -np.log(probs[np.arange(500), y])
    brier = ((probs - np.eye(3)[y]) ** 2).sum(axis=1)
    b = bootstrap_intervals(conf, correct, nll=nll, brier=brier, correct=correct, n_bins=10,
                            estimators=["ece_debiased"], confidence_level=0.9, **opts)
    for name in ("brier", "accuracy", "ece", "mce", "rmsce", "ace", "ece_debiased"):
        assert getattr(r.intervals, name) == b.intervals[name], name
    assert r.intervals.nll == pytest.approx(tuple(v / math.log(2) for v in b.intervals["nll"]),
                                            rel=1e-15)
    # A percentile interval by hand from the replicate weights: the ECE over fixed bins.
    v = bootstrap_weights(500, n_resamples=300, seed=11, method="multinomial", stream=2)
    order = np.argsort(conf, kind="stable")
    bins = np.searchsorted((np.arange(11) / 10)[1:-1], conf[order], side="left")
    gap = correct[order] - conf[order]
    reps = [np.abs(np.bincount(bins, weights=row * gap, minlength=10)).sum() / row.sum()
            for row in v]
    assert r.intervals.ece == pytest.approx(tuple(np.quantile(reps, [0.05, 0.95])), abs=1e-12)
    lo, hi = r.intervals.ece
    assert lo <= r.ece <= hi


def test_intervals_are_deterministic_for_a_seed() -> None:
    probs, y = _multiclass(300, 3, seed=9)
    a = calibration_report(probs, y, confidence_level=0.95, bootstrap={"seed": 5})
    b = calibration_report(probs, y, confidence_level=0.95, bootstrap={"seed": 5})
    c = calibration_report(probs, y, confidence_level=0.95, bootstrap={"seed": 6})
    assert a.intervals == b.intervals and a.intervals != c.intervals
    assert a.intervals.method == "poisson" and a.intervals.n_resamples == 1000


# ----------------------------------------------------------------------------- selective


def test_risk_coverage_matches_a_brute_force_sort() -> None:
    probs, y = _multiclass(300, 4, seed=1)
    probs = np.round(probs, 2)  # ties in confidence
    probs /= probs.sum(axis=1, keepdims=True)
    w = np.random.default_rng(1).uniform(0, 2, 300)
    r = calibration_report(probs, y, sample_weights=w, risk_coverage={"n_points": 10000})
    conf = probs.max(axis=1)
    ok = (probs.argmax(axis=1) == y).astype(float)
    aurc, curve = _brute_force(conf, ok, w)
    assert r.selective.aurc == pytest.approx(aurc, abs=1e-12)
    assert len(r.selective.curve) == len(curve)
    err = 1 - np.average(ok, weights=w)
    assert r.selective.optimal_aurc == pytest.approx(err + (1 - err) * math.log(1 - err),
                                                     abs=1e-15)
    assert r.selective.e_aurc == r.selective.aurc - r.selective.optimal_aurc


def test_binary_risk_coverage_ranks_by_top_label_confidence() -> None:
    # Perfectly ranked: the errors are the least confident (|p − 0.5| smallest).
    p = np.array([0.99, 0.02, 0.9, 0.15, 0.6, 0.45])
    y = np.array([1, 0, 1, 0, 0, 1])  # the last two are wrong
    r = calibration_report(p, y, risk_coverage=True)
    top = np.maximum(p, 1 - p)
    aurc, _ = _brute_force(top, ((p > 0.5) == y).astype(float), np.ones(6))
    assert r.selective.aurc == pytest.approx(aurc, abs=1e-15)
    # By hand: risks 0, 0, 0, 0, 1/5, 2/6 at coverages k/6.
    assert r.selective.aurc == pytest.approx((1 / 5 + 2 / 6) / 6, abs=1e-15)


# ----------------------------------------------------------------------------- options


def test_the_plain_report_is_unchanged() -> None:
    probs, y = _multiclass(50, 3, seed=0)
    r = calibration_report(probs, y)
    assert (r.classwise_ece, r.estimates, r.intervals, r.selective) == (None,) * 4
    assert all(b.accuracy_interval is None for b in r.bins)
    assert all(k.bins is None and k.mce is None for k in r.per_class)
    # per-class NLL and Brier are always there (the contract): the class means of the
    # per-sample terms, which average back to the top level
    counts = np.bincount(y, minlength=3)
    assert sum(c * k.nll for c, k in zip(counts, r.per_class, strict=True)) / 50 == \
        pytest.approx(r.nll, rel=1e-13)
    assert sum(c * k.brier for c, k in zip(counts, r.per_class, strict=True)) / 50 == \
        pytest.approx(r.brier, rel=1e-13)


@pytest.mark.parametrize(("kwargs", "field", "position", "kind"), [
    ({"mode": "marginal"}, "mode", (), "enum"),
    ({"estimators": ["ece_sweep", "nope"]}, "estimators", (1,), "enum"),
    ({"estimators": ["ece_sweep", "ece_sweep"]}, "estimators", (1,), "duplicate"),
    ({"estimators": "ece_sweep"}, "estimators", (), "type_error"),
    ({"confidence_level": 1.0}, "confidence_level", (), "out_of_range"),
    ({"confidence_level": 0.9, "bootstrap": {"n_resamples": 10_001}}, "bootstrap",
     ("n_resamples",), "out_of_range"),
    ({"confidence_level": 0.9, "bootstrap": {"method": "jackknife"}}, "bootstrap",
     ("method",), "enum"),
    ({"confidence_level": 0.9, "bootstrap": {"seed": -1}}, "bootstrap", ("seed",),
     "out_of_range"),
    ({"confidence_level": 0.9, "bootstrap": {"resamples": 5}}, "bootstrap", ("resamples",),
     "extra_forbidden"),
    ({"bootstrap": {"seed": 1}}, "bootstrap", (), "not_applicable"),
    ({"risk_coverage": {"n_points": 1}}, "risk_coverage", ("n_points",), "out_of_range"),
    ({"risk_coverage": "yes"}, "risk_coverage", (), "type_error"),
    ({"mode": "classwise", "binning": "quantile", "return_state": True}, "mode", (),
     "not_mergeable"),
    ({"confidence_level": 0.9, "binning": "quantile", "return_state": True},
     "confidence_level", (), "not_mergeable"),
    ({"confidence_level": 0.9, "bootstrap": {"method": "multinomial"}, "return_state": True},
     "bootstrap", ("method",), "not_mergeable"),
])
def test_invalid_options_name_the_field(kwargs, field, position, kind) -> None:
    with pytest.raises(InputError) as err:
        calibration_report([[0.6, 0.4], [0.3, 0.7]], [0, 1], **kwargs)
    assert (err.value.field, err.value.position, err.value.kind) == (field, position, kind)


def test_classwise_needs_classes() -> None:
    with pytest.raises(InputError) as err:
        calibration_report([0.2, 0.9], [0, 1], mode="classwise")
    assert err.value.field == "mode" and err.value.kind == "not_applicable"


# ----------------------------------------------------------------------------- the API

EVERYTHING = {"mode": "classwise", "estimators": ["ece_debiased", "ece_sweep", "smooth_ece"],
              "confidence_level": 0.9, "bootstrap": {"n_resamples": 200, "seed": 3},
              "risk_coverage": {"n_points": 5}}


def test_the_api_answers_the_library(client) -> None:
    probs, y = _multiclass(200, 3, seed=5)
    body = {"probabilities": probs.tolist(), "labels": y.tolist(), "n_bins": 6, **EVERYTHING}
    out = client.post(CAL, json=body).json()
    r = calibration_report(probs, y, n_bins=6, **EVERYTHING)
    assert out["classwise_ece"] == r.classwise_ece
    assert out["estimates"] == {"ece_debiased": r.estimates.ece_debiased,
                                "ece_sweep": r.estimates.ece_sweep,
                                "smooth_ece": r.estimates.smooth_ece}
    assert set(out["intervals"]) == {"nll", "brier", "accuracy", "ece", "mce", "rmsce", "ace",
                                     "ece_debiased", "ece_sweep", "smooth_ece"}
    assert out["intervals"]["ece"] == list(r.intervals.ece)
    assert out["selective"]["aurc"] == r.selective.aurc
    assert len(out["selective"]["curve"]) <= 5
    assert out["per_class"][1]["nll"] == r.per_class[1].nll
    assert out["per_class"][1]["bins"][2]["accuracy_interval"] == list(
        r.per_class[1].bins[2].accuracy_interval)
    assert out["bins"][3]["accuracy_interval"] == list(r.bins[3].accuracy_interval)
    # The diagram takes the same body.
    svg = client.post(f"{CAL}/diagram", json=body)
    assert svg.status_code == 200 and svg.text.startswith("<")


def test_the_api_without_the_options_is_unchanged(client) -> None:
    out = client.post(CAL, json={"probabilities": [[0.6, 0.4], [0.3, 0.7]],
                                 "labels": [0, 1]}).json()
    for key in ("classwise_ece", "estimates", "intervals", "selective"):
        assert key not in out
    assert "accuracy_interval" not in out["bins"][0] and "bins" not in out["per_class"][0]
    assert {"nll", "brier"} <= set(out["per_class"][0])


def test_risk_coverage_true_and_binary_through_the_api(client) -> None:
    out = client.post(CAL, json={"probabilities": [0.99, 0.02, 0.9, 0.15, 0.6, 0.45],
                                 "labels": [1, 0, 1, 0, 0, 1], "risk_coverage": True})
    assert out.json()["selective"]["aurc"] == pytest.approx((1 / 5 + 2 / 6) / 6, abs=1e-15)


@pytest.mark.parametrize(("extra", "loc", "kind"), [
    ({"mode": "marginal"}, ["body", "mode"], "enum"),
    ({"estimators": ["smooth_ece", "x"]}, ["body", "estimators", 1], "enum"),
    ({"estimators": ["smooth_ece", "smooth_ece"]}, ["body", "estimators", 1], "duplicate"),
    ({"confidence_level": 0}, ["body", "confidence_level"], "out_of_range"),
    ({"confidence_level": 0.9, "bootstrap": {"n_resamples": 0}},
     ["body", "bootstrap", "n_resamples"], "out_of_range"),
    ({"confidence_level": 0.9, "bootstrap": {"n_resamples": 2.5}},
     ["body", "bootstrap", "n_resamples"], None),
    ({"confidence_level": 0.9, "bootstrap": {"method": "jack"}},
     ["body", "bootstrap", "method"], None),
    ({"confidence_level": 0.9, "bootstrap": {"sed": 1}}, ["body", "bootstrap", "sed"],
     "extra_forbidden"),
    ({"confidence_level": 0.9, "bootstrap": 5}, ["body", "bootstrap"], None),
    ({"bootstrap": {"seed": 1}}, ["body", "bootstrap"], "not_applicable"),
    ({"risk_coverage": {"n_points": 10_001}}, ["body", "risk_coverage", "n_points"],
     "out_of_range"),
    ({"risk_coverage": "true"}, ["body", "risk_coverage"], None),
    ({"confidence_level": 0.9, "bootstrap": {"method": "multinomial"}, "return_state": True},
     ["body", "bootstrap", "method"], "not_mergeable"),
    ({"mode": "classwise", "binning": "quantile", "return_state": True}, ["body", "mode"],
     "not_mergeable"),
])
def test_invalid_options_are_422_at_the_field(client, extra, loc, kind) -> None:
    body = {"probabilities": [[0.6, 0.4], [0.3, 0.7]], "labels": [0, 1], **extra}
    r = client.post(CAL, json=body)
    assert r.status_code == 422
    items = r.json()["detail"]
    assert any(item["loc"][:len(loc)] == loc for item in items), items
    if kind is not None:
        assert items[0]["loc"] == loc and items[0]["type"] == kind, items


def test_classwise_bins_count_in_the_element_limit(client) -> None:
    """With classwise every class's every bin is in the answer: C × n_bins × 8 numbers
    count against XENTROPY_MAX_ELEMENTS (20 000 000) like the request's arrays."""
    body = {"probabilities": [[0.5] * 2, [0.5] * 2], "labels": [0, 1], "n_bins": 10_000}
    wide = {**body, "probabilities": [[1 / 300] * 300], "labels": [0]}
    assert client.post(CAL, json={**wide, "mode": "classwise"}).status_code == 413
    assert client.post(CAL, json=wide).status_code == 200  # the sparse per-class ECE only
    assert client.post(CAL, json={**body, "mode": "classwise"}).status_code == 200


def test_the_additions_memory_is_bounded_per_sample() -> None:
    """bench/README's estimate, asserted: on top of the plain report, the bootstrap holds
    about 15 float64 per sample and one block of 2**20 weights, class-wise bins one column
    at a time (tracemalloc sees every NumPy buffer)."""
    import tracemalloc

    n, c = 200_000, 5
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, c))
    y = rng.integers(0, c, n)

    def peak(**options) -> int:
        tracemalloc.start()
        try:
            calibration_report(logits=z, labels=y, **options)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    plain = peak()
    extras = peak(mode="classwise", confidence_level=0.9, estimators=["ece_debiased"],
                  bootstrap={"n_resamples": 8}, risk_coverage=True)
    assert extras <= plain + 200 * n + 48 * 2**20, (plain, extras)
